//! The seed scenario (what `make demo` runs): IoT readings as Parquet, one OneClassSVM anomaly
//! model per (device, sensor) registered in an embedded DuckDB file, scored by one
//! `INSERT INTO anomaly_scores SELECT ... score('anomaly_' || sensor_id, value) ...`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use duckdb::Connection;
use indicatif::{ProgressBar, ProgressStyle};

use crate::BoxError;

const SQL_GENERATE: &str = include_str!("../../sql/demo/01_generate_readings.sql");
const SQL_CREATE: &str = include_str!("../../sql/demo/02_create_scores_table.sql");
const SQL_SCORE: &str = include_str!("../../sql/demo/03_score.sql");
const SQL_BI_VIEWS: &str = include_str!("../../sql/bi_views.sql");

#[derive(Args)]
pub struct DemoArgs {
    #[arg(long, default_value_t = 3)]
    devices: u32,
    #[arg(long, default_value_t = 5)]
    sensors: u32,
    /// Hours of readings per sensor.
    #[arg(long, default_value_t = 24)]
    hours: u32,
    /// Seconds between two readings of one sensor.
    #[arg(long, default_value_t = 60)]
    interval: u32,
    /// The DuckDB file BI tools read afterwards, or a postgres:// URL to run it in Postgres.
    #[arg(long, default_value = "sqlscore-demo.duckdb")]
    db: PathBuf,
    /// Where models/make_demo_models.py wrote the per-sensor models.
    #[arg(long, default_value = "models/demo")]
    models: PathBuf,
    /// The "data lake" folder for the Parquet readings.
    #[arg(long, default_value = "demo-data")]
    data: PathBuf,
    /// DuckDB threads (default: all cores).
    #[arg(long)]
    threads: Option<u32>,
    #[arg(long)]
    quiet: bool,
}

fn fill(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(template.to_string(), |s, (k, v)| s.replace(&format!("{{{k}}}"), v))
}

pub fn run(args: DemoArgs) -> Result<(), BoxError> {
    let db = args.db.display().to_string();
    if crate::pg::is_url(&db) {
        println!(
            "sqlscore demo (Postgres): {} devices x {} sensors x {} h every {} s -> {db}",
            args.devices, args.sensors, args.hours, args.interval
        );
        return crate::pg::demo(&db, &args.models, args.devices, args.sensors, args.hours, args.interval);
    }
    let steps = u64::from(args.hours) * 3600 / u64::from(args.interval.max(1));
    let total_rows = u64::from(args.devices) * u64::from(args.sensors) * steps;
    std::fs::create_dir_all(&args.data)?;
    let parquet = args.data.join("readings.parquet");
    let vars = [
        ("devices", args.devices.to_string()),
        ("sensors", args.sensors.to_string()),
        ("steps", steps.to_string()),
        ("interval", args.interval.to_string()),
        ("hours", args.hours.to_string()),
        ("parquet", parquet.display().to_string().replace('\'', "''")),
    ];

    let conn = sqlscore_duckdb::open(&args.db)?;
    if let Some(t) = args.threads {
        conn.execute_batch(&format!("SET threads = {t}"))?;
    }
    println!(
        "sqlscore demo: {} devices x {} sensors x {} h every {} s = {} readings -> {}",
        args.devices,
        args.sensors,
        args.hours,
        args.interval,
        total_rows,
        args.db.display()
    );

    let t = Instant::now();
    conn.execute_batch(&fill(SQL_GENERATE, &vars))?;
    println!("  wrote {} ({:.2} s)", parquet.display(), t.elapsed().as_secs_f64());

    let t = Instant::now();
    let (new, kept) = register_models(&conn, &args.models, args.devices, args.sensors)?;
    println!("  models: {new} registered, {kept} already current ({:.2} s)", t.elapsed().as_secs_f64());

    conn.execute_batch(SQL_CREATE)?;
    let t = Instant::now();
    let inserted = with_progress(&conn, total_rows, args.quiet, |c| Ok(c.execute(&fill(SQL_SCORE, &vars), [])?))?;
    let secs = t.elapsed().as_secs_f64();
    conn.execute_batch(SQL_BI_VIEWS)?;
    println!(
        "  scored {inserted} readings with {} models in {secs:.2} s: {:.0} rows/s",
        args.devices * args.sensors,
        inserted as f64 / secs
    );
    summary(&conn)?;
    println!(
        "anomaly_scores and the BI views (anomalies_by_sensor, anomalies_by_hour, detection_quality) are in {}",
        args.db.display()
    );
    Ok(())
}

/// Registers each (device, sensor) model unless the latest version already has the same bytes,
/// so running the demo twice adds no versions.
fn register_models(conn: &Connection, dir: &Path, devices: u32, sensors: u32) -> Result<(u32, u32), BoxError> {
    let mut current = std::collections::HashMap::new();
    let mut stmt = conn.prepare("SELECT name, sha256 FROM sqlscore_model_list WHERE latest")?;
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
        let (name, sha) = row?;
        current.insert(name, sha);
    }
    let (mut new, mut kept) = (0, 0);
    conn.execute_batch("BEGIN")?;
    for d in 0..devices {
        for s in 0..sensors {
            let name = format!("anomaly_d{d}_s{s}");
            let file = dir.join(format!("{name}.onnx"));
            let bytes = std::fs::read(&file).map_err(|e| {
                format!(
                    "{}: {e}\nHINT: train the models first: .venv/bin/python models/make_demo_models.py --devices {devices} --sensors {sensors}",
                    file.display()
                )
            })?;
            if current.get(&name) == Some(&sqlscore_core::sha256_hex(&bytes)) {
                kept += 1;
                continue;
            }
            sqlscore_duckdb::register_model(conn, &name, &file, Some("demo: StandardScaler + OneClassSVM"))?;
            new += 1;
        }
    }
    conn.execute_batch("COMMIT")?;
    Ok((new, kept))
}

/// Runs a long statement while a bar follows DuckDB's own query progress.
fn with_progress<T>(
    conn: &Connection,
    total: u64,
    quiet: bool,
    f: impl FnOnce(&Connection) -> Result<T, BoxError>,
) -> Result<T, BoxError> {
    if quiet {
        return f(conn);
    }
    conn.set_query_progress_tracking(true)?;
    let handle = conn.progress_handle();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("  scoring [{bar:40}] {percent:>3}% {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let done = std::sync::atomic::AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let p = handle.query_progress();
                if let Some(pct) = p.percentage() {
                    bar.set_position((pct / 100.0 * total as f64) as u64);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let r = f(conn);
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        r
    });
    bar.set_position(total);
    bar.finish();
    result
}

fn summary(conn: &Connection) -> Result<(), BoxError> {
    let (readings, anomalies): (i64, i64) =
        conn.query_row("SELECT count(*), count(*) FILTER (WHERE is_anomaly) FROM anomaly_scores", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    println!(
        "  {readings} readings, {anomalies} anomalies ({:.2}%)",
        100.0 * anomalies as f64 / readings.max(1) as f64
    );
    let (tp, missed, false_alarms): (i64, i64, i64) =
        conn.query_row("SELECT true_positives, missed, false_alarms FROM detection_quality", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    println!("  injected anomalies found: {tp}, missed: {missed}; flagged normal readings: {false_alarms}");
    let mut stmt = conn.prepare(
        "SELECT device_id, sensor_id, readings, anomalies, anomaly_pct FROM anomalies_by_sensor \
         ORDER BY anomalies DESC, sensor_id LIMIT 20",
    )?;
    println!("  {:<8} {:<10} {:>10} {:>10} {:>8}", "device", "sensor", "readings", "anomalies", "%");
    for row in stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, f64>(4)?,
        ))
    })? {
        let (d, s, n, a, p) = row?;
        println!("  {d:<8} {s:<10} {n:>10} {a:>10} {p:>8.3}");
    }
    Ok(())
}
