//! `sqlscore bench-pg`: the Postgres hot paths on one table of N rows x 8 float8 features:
//! `INSERT ... SELECT` with the per-row function and with `score_batch`, raw ONNX Runtime from
//! Rust on the same data, the Python pipeline (psycopg COPY -> numpy -> onnxruntime -> COPY),
//! and the per-row function under 1 and 2 parallel workers and under default settings (CREATE
//! TABLE AS from a fresh session: PostgreSQL 15 does not run INSERT ... SELECT in parallel).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use clap::Args;

use crate::pg::{describe, with_client};
use crate::BoxError;

#[derive(Args)]
pub struct BenchPgArgs {
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5499/postgres")]
    url: String,
    #[arg(long, default_value_t = 1_000_000)]
    rows: i64,
    #[arg(long, value_delimiter = ',', default_value = "logistic_binary,gbm_classifier")]
    models: Vec<String>,
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
}

pub fn run(args: BenchPgArgs) -> Result<(), BoxError> {
    let features = "x0, x1, x2, x3, x4, x5, x6, x7";
    let x: Vec<f32> = with_client(&args.url, async |c| {
        c.batch_execute(&format!(
            "CREATE EXTENSION IF NOT EXISTS sqlscore; DROP TABLE IF EXISTS bench_pg, bench_out, bench_ctas; \
             SELECT setseed(0.5); \
             CREATE TABLE bench_pg AS SELECT i::bigint AS id, {} FROM generate_series(1, {}) i; \
             ANALYZE bench_pg; CREATE TABLE bench_out (id bigint, score float8);",
            (0..8).map(|k| format!("random() * 2 - 1 AS x{k}")).collect::<Vec<_>>().join(", "),
            args.rows
        ))
        .await
        .map_err(describe)?;
        let mut x = Vec::with_capacity(args.rows as usize * 8);
        for r in c.query(&format!("SELECT {features} FROM bench_pg ORDER BY id"), &[]).await? {
            for k in 0..8 {
                x.push(r.get::<_, f64>(k) as f32);
            }
        }
        Ok(x)
    })?;
    println!(
        "\n{} rows x 8 float8 in a Postgres table; sqlscore.intra_threads = 1, raw ORT and Python 1 thread\n",
        args.rows
    );
    println!("| model | INSERT..SELECT per-row fn | INSERT..SELECT score_batch | raw ORT (Rust) | batch / raw | per-row / raw | Python pipeline | CTAS per-row, 1 worker | 2 workers | speed-up | CTAS, default settings |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for model in &args.models {
        let path = PathBuf::from(format!("models/{model}.onnx"));
        let bytes = std::fs::read(&path)?;
        let name = format!("bench_{model}");
        let timings = with_client(&args.url, async |c| {
            c.query_one("SELECT sqlscore.register_model($1, $2)", &[&name, &bytes]).await.map_err(describe)?;
            c.batch_execute(&format!("SELECT sqlscore.score('{name}', {features}) FROM bench_pg LIMIT 100"))
                .await
                .map_err(describe)?;
            let timed = async |sql: String| -> Result<f64, BoxError> {
                let t = Instant::now();
                c.batch_execute(&sql).await.map_err(describe)?;
                Ok(t.elapsed().as_secs_f64())
            };
            c.batch_execute("TRUNCATE bench_out; SET max_parallel_workers_per_gather = 0").await?;
            let per_row =
                timed(format!("INSERT INTO bench_out SELECT id, sqlscore.score('{name}', {features}) FROM bench_pg"))
                    .await?;
            c.batch_execute("TRUNCATE bench_out").await?;
            let batch = timed(format!(
                "INSERT INTO bench_out SELECT * FROM sqlscore.score_batch('{name}', 'SELECT id, {features} FROM bench_pg')"
            ))
            .await?;
            Ok((per_row, batch))
        })?;
        let (per_row, batch) = timings;
        // CREATE TABLE AS from a fresh session each time (no backend has the model loaded):
        // forced 1 and 2 workers, then PostgreSQL's default parallel settings (COST 200 decides).
        let mut ctas = Vec::new();
        for setup in [
            "SET max_parallel_workers_per_gather = 1; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; \
             SET parallel_leader_participation = off",
            "SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; \
             SET parallel_leader_participation = off",
            "",
        ] {
            ctas.push(with_client(&args.url, async |c| {
                c.batch_execute(&format!("DROP TABLE IF EXISTS bench_ctas; {setup}")).await.map_err(describe)?;
                let t = Instant::now();
                c.batch_execute(&format!(
                    "CREATE TABLE bench_ctas AS SELECT id, sqlscore.score('{name}', {features}) AS score FROM bench_pg"
                ))
                .await
                .map_err(describe)?;
                Ok(t.elapsed().as_secs_f64())
            })?);
        }
        let (w1, w2, default) = (ctas[0], ctas[1], ctas[2]);
        let (raw, _) = crate::bench::raw_ort(&path, &x, 8, 1)?;
        let python = python(&args, &path)?;
        println!(
            "| {model} | {per_row:.2} s | {batch:.2} s | {raw:.2} s | {:.2}x | {:.2}x | {} | {w1:.2} s | {w2:.2} s | {:.2}x | {default:.2} s |",
            raw / batch,
            raw / per_row,
            python.map_or("-".into(), |p| format!("{p:.2} s")),
            w1 / w2
        );
    }
    Ok(())
}

fn python(args: &BenchPgArgs, model: &std::path::Path) -> Result<Option<f64>, BoxError> {
    if !args.python.exists() {
        return Ok(None);
    }
    let out =
        Command::new(&args.python).arg("bench/python_pipeline_pg.py").arg(&args.url).arg(model).arg("1").output()?;
    if !out.status.success() {
        return Err(format!("python pipeline failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok(v["total_s"].as_f64())
}
