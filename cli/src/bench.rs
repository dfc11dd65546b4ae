//! `sqlscore bench`: DuckDB `score()` against raw ONNX Runtime from Rust on the same data and the
//! Python pipeline a user would write (DuckDB -> numpy -> onnxruntime -> write back), at the same
//! thread count; and the per-row model case (N models x M rows). Prints a markdown table.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use clap::Args;
use duckdb::Connection;
use ort::value::Tensor;

use crate::BoxError;

#[derive(Args)]
pub struct BenchArgs {
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// DuckDB threads = ONNX Runtime intra-op threads for the baselines.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    #[arg(long, value_delimiter = ',', default_value = "logistic_binary,gbm_classifier,isolation_forest")]
    models: Vec<String>,
    /// Models in the per-row case (0 skips it).
    #[arg(long, default_value_t = 1000)]
    per_row_models: u32,
    #[arg(long, default_value_t = 1000)]
    rows_per_model: u32,
    #[arg(long, default_value = "target/bench/bench.duckdb")]
    db: PathBuf,
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
    /// Skip the Python pipeline baseline.
    #[arg(long)]
    no_python: bool,
}

struct Row {
    case: String,
    rows: u64,
    sqlscore_s: f64,
    raw_s: f64,
    raw_chunked_s: f64,
    python_s: Option<f64>,
    /// Model file (or folder, per-row) and mode for the Python baseline.
    python_arg: (String, bool),
}

pub fn run(args: BenchArgs) -> Result<(), BoxError> {
    if let Some(dir) = args.db.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(&args.db);
    let _ = std::fs::remove_file(args.db.with_extension("duckdb.wal"));
    let conn = sqlscore_duckdb::open(&args.db)?;
    conn.execute_batch(&format!("SET threads = {}; SET sqlscore_intra_threads = 1", args.threads))?;
    let features: Vec<String> = (0..8).map(|k| format!("x{k}")).collect();
    let feature_sql: Vec<String> =
        (0..8).map(|k| format!("(hash(i, {k}) % 2000000) / 1000000.0 - 1.0 AS x{k}")).collect();
    conn.execute_batch(&format!(
        "CREATE TABLE bench_data AS SELECT i AS id, {} FROM range({}) r(i)",
        feature_sql.join(", "),
        args.rows
    ))?;
    // The same data for the raw baseline, in the f32 row-major layout ONNX Runtime takes.
    let x = read_matrix(&conn, &features)?;
    // The same statement without a model: what DuckDB itself spends scanning and writing.
    let t = Instant::now();
    conn.execute_batch(&format!(
        "CREATE OR REPLACE TABLE bench_out AS SELECT id, ({}) AS score FROM bench_data",
        features.join(" + ")
    ))?;
    let plain_s = t.elapsed().as_secs_f64();
    let mut table = Vec::new();
    for model in &args.models {
        let path = PathBuf::from(format!("models/{model}.onnx"));
        sqlscore_duckdb::register_model(&conn, model, &path, None)?;
        // Warm-up: the first call loads the model; the timed run measures steady-state scoring.
        conn.execute_batch(&format!("SELECT score('{model}', {}) FROM bench_data LIMIT 10000", features.join(", ")))?;
        let t = Instant::now();
        conn.execute_batch(&format!(
            "CREATE OR REPLACE TABLE bench_out AS SELECT id, score('{model}', {}) AS score FROM bench_data",
            features.join(", ")
        ))?;
        let sqlscore_s = t.elapsed().as_secs_f64();
        let (raw_s, raw_chunked_s) = raw_ort(&path, &x, 8, args.threads as usize)?;
        let python_arg = (path.display().to_string(), false);
        table.push(Row {
            case: model.clone(),
            rows: args.rows,
            sqlscore_s,
            raw_s,
            raw_chunked_s,
            python_s: None,
            python_arg,
        });
    }
    if args.per_row_models > 0 {
        table.push(per_row(&conn, &args)?);
    }
    // The Python pipeline opens the same file: DuckDB allows one writing process at a time.
    drop(conn);
    if !args.no_python {
        for row in &mut table {
            row.python_s = python(&args, &row.python_arg.0, row.python_arg.1)?;
        }
    }
    print_table(&args, &table, plain_s);
    Ok(())
}

fn read_matrix(conn: &Connection, features: &[String]) -> Result<Vec<f32>, BoxError> {
    let mut stmt = conn.prepare(&format!("SELECT {} FROM bench_data ORDER BY id", features.join(", ")))?;
    let mut out = Vec::new();
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        for k in 0..features.len() {
            out.push(r.get::<_, f64>(k)? as f32);
        }
    }
    Ok(out)
}

/// ONNX Runtime from Rust with nothing around it: one session, one run over all rows (the best
/// case: no per-call cost), plus reading the outputs. Also timed in runs of DuckDB's chunk size
/// (2,048 rows), the batch a scalar function gets, to separate ORT's batch-size effects from ours.
pub(crate) fn raw_ort(model: &Path, x: &[f32], width: usize, threads: usize) -> Result<(f64, f64), BoxError> {
    let env = sqlscore_core::runtime::environment()?;
    let mut session = ort::session::Session::builder(&env)
        .map_err(|e| e.to_string())?
        .with_intra_threads(threads)
        .map_err(|e| e.to_string())?
        .commit_from_file(model)
        .map_err(|e| e.to_string())?;
    let input = session.inputs()[0].name().to_string();
    let n = x.len() / width;
    let t = Instant::now();
    let tensor = Tensor::from_array(([n, width], x.to_vec()))?;
    let outputs = session.run(vec![(input, tensor.into_dyn())])?;
    let mut checksum = 0f64;
    for (_, v) in outputs.iter() {
        if let Ok((_, data)) = v.try_extract_tensor::<f32>() {
            checksum += data.iter().map(|x| *x as f64).sum::<f64>();
        }
    }
    let one_run = t.elapsed().as_secs_f64();
    drop(outputs);
    let t = Instant::now();
    for chunk in x.chunks(2048 * width) {
        let tensor = Tensor::from_array(([chunk.len() / width, width], chunk.to_vec()))?;
        let outputs = session.run(vec![(session_input(&session), tensor.into_dyn())])?;
        for (_, v) in outputs.iter() {
            if let Ok((_, data)) = v.try_extract_tensor::<f32>() {
                checksum += data[0] as f64;
            }
        }
    }
    let chunked = t.elapsed().as_secs_f64();
    std::hint::black_box(checksum);
    Ok((one_run, chunked))
}

fn session_input(session: &ort::session::Session) -> String {
    session.inputs()[0].name().to_string()
}

fn python(args: &BenchArgs, model: &str, per_row: bool) -> Result<Option<f64>, BoxError> {
    if !args.python.exists() {
        eprintln!("  (no {}: skipping the Python baseline)", args.python.display());
        return Ok(None);
    }
    let mut cmd = Command::new(&args.python);
    cmd.arg("bench/python_pipeline.py").arg(&args.db).arg(model).arg(args.threads.to_string());
    if per_row {
        cmd.arg("--per-row");
    }
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(format!("python pipeline failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["total_s"].as_f64())
}

/// N models x M rows, the model chosen per row: `score('anomaly_' || sensor_id, value)`.
fn per_row(conn: &Connection, args: &BenchArgs) -> Result<Row, BoxError> {
    let n = args.per_row_models;
    let (devices, sensors) = grid(n);
    let dir = PathBuf::from(format!("target/bench/models-{devices}x{sensors}"));
    let status = Command::new(&args.python)
        .args([
            "models/make_demo_models.py",
            "--devices",
            &devices.to_string(),
            "--sensors",
            &sensors.to_string(),
            "--out",
        ])
        .arg(&dir)
        .status()?;
    if !status.success() {
        return Err("make_demo_models.py failed".into());
    }
    let t = Instant::now();
    conn.execute_batch("BEGIN")?;
    for d in 0..devices {
        for s in 0..sensors {
            let name = format!("anomaly_d{d}_s{s}");
            sqlscore_duckdb::register_model(conn, &name, &dir.join(format!("{name}.onnx")), None)?;
        }
    }
    conn.execute_batch("COMMIT")?;
    eprintln!("  registered {n} models in {:.2} s", t.elapsed().as_secs_f64());
    let rows = u64::from(n) * u64::from(args.rows_per_model);
    conn.execute_batch(&format!(
        "CREATE TABLE bench_per_row AS SELECT i AS id, 'd' || (i % {n} // {sensors}) || '_s' || (i % {n} % {sensors}) AS sensor_id, \
         (10 * ((i % {n} % {sensors}) + 1) + 3 * (i % {n} // {sensors}))::DOUBLE + ((hash(i) % 2000) / 1000.0 - 1.0) AS value \
         FROM range({rows}) r(i)"
    ))?;
    let q = "CREATE OR REPLACE TABLE bench_out AS SELECT id, score('anomaly_' || sensor_id, value) AS score FROM bench_per_row";
    let t = Instant::now();
    conn.execute_batch(q)?; // cold: every model's session is created inside this statement
    eprintln!("  per-row, cold (sessions created in the query): {:.2} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    conn.execute_batch(q)?;
    let interleaved_s = t.elapsed().as_secs_f64();
    // Rows arrive interleaved (reading i is sensor i % N): a 2,048-row chunk holds ~2 rows per
    // model, so each ONNX Runtime run scores 2 rows. Clustering rows by model first fixes that.
    let clustered = "CREATE OR REPLACE TABLE bench_out AS SELECT id, score('anomaly_' || sensor_id, value) AS score \
                     FROM (SELECT * FROM bench_per_row ORDER BY sensor_id)";
    let t = Instant::now();
    conn.execute_batch(clustered)?;
    let sqlscore_s = t.elapsed().as_secs_f64();
    eprintln!(
        "  per-row, rows interleaved: {interleaved_s:.2} s; clustered by model (ORDER BY sensor_id): {sqlscore_s:.2} s"
    );

    // Raw baseline: sessions made up front, rows already grouped per model.
    let env = sqlscore_core::runtime::environment()?;
    let mut sessions = Vec::new();
    for d in 0..devices {
        for s in 0..sensors {
            let session = ort::session::Session::builder(&env)
                .map_err(|e| e.to_string())?
                .with_intra_threads(1)
                .map_err(|e| e.to_string())?
                .commit_from_file(dir.join(format!("anomaly_d{d}_s{s}.onnx")))
                .map_err(|e| e.to_string())?;
            let mean = 10.0 * (s as f32 + 1.0) + 3.0 * d as f32;
            sessions.push((session, vec![mean; args.rows_per_model as usize]));
        }
    }
    let t = Instant::now();
    for (session, values) in &mut sessions {
        let tensor = Tensor::from_array(([values.len(), 1], values.clone()))?;
        let out = session.run(vec![("X".to_string(), tensor.into_dyn())])?;
        std::hint::black_box(out.len());
    }
    let raw_s = t.elapsed().as_secs_f64();
    // Raw ORT with the interleaved layout's run size: 2 rows per run.
    let t = Instant::now();
    for (session, values) in &mut sessions {
        for pair in values.chunks(2) {
            let tensor = Tensor::from_array(([pair.len(), 1], pair.to_vec()))?;
            let out = session.run(vec![("X".to_string(), tensor.into_dyn())])?;
            std::hint::black_box(out.len());
        }
    }
    let raw_chunked_s = t.elapsed().as_secs_f64();
    eprintln!("  raw ORT, 2 rows per run: {raw_chunked_s:.2} s (sqlscore interleaved: {interleaved_s:.2} s)");
    Ok(Row {
        case: format!("per-row: {n} models x {} rows, clustered", args.rows_per_model),
        rows,
        sqlscore_s,
        raw_s,
        raw_chunked_s,
        python_s: None,
        python_arg: (dir.display().to_string(), true),
    })
}

fn grid(n: u32) -> (u32, u32) {
    let mut sensors = (n as f64).sqrt() as u32;
    while sensors > 1 && !n.is_multiple_of(sensors) {
        sensors -= 1;
    }
    (n / sensors, sensors)
}

fn print_table(args: &BenchArgs, rows: &[Row], plain_s: f64) {
    println!("\nthreads = {} (DuckDB threads = ONNX Runtime intra-op threads); one timed run each", args.threads);
    println!(
        "the same CREATE TABLE ... AS SELECT over {} rows with x0 + ... + x7 instead of score(): {plain_s:.3} s\n",
        args.rows
    );
    println!("| case | rows | sqlscore in DuckDB | rows/s | raw ORT, one run | sqlscore / raw | raw ORT, chunk-sized runs | sqlscore / chunked raw | Python pipeline | Python time / sqlscore time |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let py = r.python_s.map_or("-".into(), |p| format!("{p:.3} s"));
        let vs_py = r.python_s.map_or("-".into(), |p| format!("{:.2}x", p / r.sqlscore_s));
        println!(
            "| {} | {} | {:.3} s | {:.0} | {:.3} s | {:.2}x | {:.3} s | {:.2}x | {} | {} |",
            r.case,
            r.rows,
            r.sqlscore_s,
            r.rows as f64 / r.sqlscore_s,
            r.raw_s,
            r.raw_s / r.sqlscore_s,
            r.raw_chunked_s,
            r.raw_chunked_s / r.sqlscore_s,
            py,
            vs_py
        );
    }
}
