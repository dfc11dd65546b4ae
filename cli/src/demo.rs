//! The seed scenario (what `make demo` runs): IoT readings land as Parquet files in a lake
//! folder, one OneClassSVM anomaly model per (device, sensor) is registered in an embedded DuckDB
//! file, and a scoring job (`'anomaly_' || sensor_id` picks each reading's model) scores the
//! folder incrementally: the first run scores the backlog, and when a new file lands the next run
//! scores only that file. Every call of the demo lands one more file.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use duckdb::Connection;
use sqlscore_duckdb::jobs::{self, JobSpec};

use crate::BoxError;

const SQL_GENERATE: &str = include_str!("../../sql/demo/01_generate_readings.sql");
const SQL_BI_VIEWS: &str = include_str!("../../sql/bi_views.sql");
const JOB: &str = "anomaly";
/// Hours of readings per lake file.
const FILE_HOURS: u32 = 6;

#[derive(Args)]
pub struct DemoArgs {
    #[arg(long, default_value_t = 3)]
    devices: u32,
    #[arg(long, default_value_t = 5)]
    sensors: u32,
    /// Hours of readings in the backlog (landed as files of 6 hours each).
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
    /// The "data lake" folder; readings land in its readings/ folder.
    #[arg(long, default_value = "demo-data")]
    data: PathBuf,
    /// DuckDB and scoring threads (default: the job default, the cores but one).
    #[arg(long)]
    threads: Option<u32>,
    #[arg(long)]
    quiet: bool,
}

fn fill(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(template.to_string(), |s, (k, v)| s.replace(&format!("{{{k}}}"), v))
}

/// Lands lake file number `index` (6 hours of readings) unless it is there already; returns its
/// path and whether it was written now.
fn land(conn: &Connection, args: &DemoArgs, dir: &Path, index: u32) -> Result<(PathBuf, bool), BoxError> {
    let steps_per_file = u64::from(FILE_HOURS) * 3600 / u64::from(args.interval.max(1));
    let path = dir.join(format!("readings-{index:04}.parquet"));
    if path.exists() {
        return Ok((path, false));
    }
    // Written under a hidden name and renamed: a job never sees half a file.
    let tmp = dir.join(format!(".readings-{index:04}.parquet.tmp"));
    let vars = [
        ("devices", args.devices.to_string()),
        ("sensors", args.sensors.to_string()),
        ("first", (u64::from(index) * steps_per_file).to_string()),
        ("last", (u64::from(index + 1) * steps_per_file).to_string()),
        ("interval", args.interval.to_string()),
        ("parquet", tmp.display().to_string().replace('\'', "''")),
    ];
    conn.execute_batch(&fill(SQL_GENERATE, &vars))?;
    std::fs::rename(&tmp, &path)?;
    Ok((path, true))
}

pub fn run(args: DemoArgs) -> Result<(), BoxError> {
    let db = args.db.display().to_string();
    if crate::pg::is_url(&db) {
        println!(
            "sqlscore demo (Postgres): {} devices x {} sensors x {} h every {} s -> {}",
            args.devices,
            args.sensors,
            args.hours,
            args.interval,
            crate::pg::redact(&db)
        );
        return crate::pg::demo(&db, &args.models, args.devices, args.sensors, args.hours, args.interval);
    }
    let lake = args.data.join("readings");
    std::fs::create_dir_all(&lake)?;
    let conn = sqlscore_duckdb::open(&args.db)?;
    if let Some(t) = args.threads {
        conn.execute_batch(&format!("SET threads = {t}"))?;
    }
    println!(
        "sqlscore demo: {} devices x {} sensors, a reading every {} s, lake {} -> {}",
        args.devices,
        args.sensors,
        args.interval,
        lake.display(),
        args.db.display()
    );

    // The backlog: the first `hours` of readings, as files of 6 hours.
    let t = Instant::now();
    let backlog_files = args.hours.div_ceil(FILE_HOURS).max(1);
    let mut landed = 0;
    for i in 0..backlog_files {
        landed += u32::from(land(&conn, &args, &lake, i)?.1);
    }
    println!(
        "  backlog: {backlog_files} files of {FILE_HOURS} h in {} ({landed} written now, {:.2} s)",
        lake.display(),
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let (new, kept) = register_models(&conn, &args.models, args.devices, args.sensors)?;
    println!("  models: {new} registered, {kept} already current ({:.2} s)", t.elapsed().as_secs_f64());

    if jobs::job(&conn, JOB).is_err() {
        // A demo file from before the demo was a job has its own anomaly_scores (scored by one
        // INSERT, rebuilt on every run): the demo owns it, so the job's target replaces it.
        let old: bool = conn.query_row(
            "SELECT count(*) > 0 FROM duckdb_columns() WHERE table_name = 'anomaly_scores' AND column_name = 'is_anomaly'",
            [],
            |r| r.get(0),
        )?;
        if old {
            conn.execute_batch("DROP TABLE anomaly_scores")?;
            println!("  replaced the previous demo's anomaly_scores (one INSERT per demo) by the job's target");
        }
        let mut spec = JobSpec::new(
            JOB,
            &format!("{}/*.parquet", lake.display()),
            "id",
            "'anomaly_' || sensor_id",
            "anomaly_scores",
        );
        spec.features = Some(vec!["value".into()]);
        spec.carry = ["device_id", "sensor_id", "ts", "value", "injected"].map(String::from).to_vec();
        jobs::create_job(&conn, &spec)?;
        println!("  job {JOB}: created: {}/*.parquet -> anomaly_scores, model 'anomaly_' || sensor_id", lake.display());
    }
    // The views read the lake folder for the backlog: the job's own (absolute) glob.
    let glob = jobs::job(&conn, JOB)?.spec.source;
    conn.execute_batch(&fill(SQL_BI_VIEWS, &[("job", JOB.to_string()), ("glob", glob.replace('\'', "''"))]))?;

    run_job(&conn, &args)?;

    // New readings land: the next 6 hours after the newest file. The next run scores only them.
    let next = (0..).find(|i| !lake.join(format!("readings-{i:04}.parquet")).exists()).unwrap_or(0);
    let (path, _) = land(&conn, &args, &lake, next)?;
    println!("  new readings landed: {} (hours {}-{})", path.display(), next * FILE_HOURS, (next + 1) * FILE_HOURS);
    run_job(&conn, &args)?;

    summary(&conn)?;
    println!(
        "anomaly_scores, the BI views (anomaly_readings, anomalies_by_sensor, anomalies_by_hour, score_histogram, \
         detection_quality, job_history, job_backlog, score_drift, score_drift_by_run) and the job's history are in {}; \
         run the job again with: sqlscore job run {JOB} --db {}; see them in a browser: make dashboard",
        args.db.display(),
        args.db.display()
    );
    Ok(())
}

fn run_job(conn: &Connection, args: &DemoArgs) -> Result<(), BoxError> {
    let mut report = crate::jobs::Reporter::new(JOB, args.quiet);
    let s = crate::jobs::run_reported(conn, JOB, &args.db, args.threads.map(|t| t as usize), &mut report)?;
    report.finish(&s);
    match s.error {
        None => Ok(()),
        Some(e) => Err(e.into()),
    }
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

fn summary(conn: &Connection) -> Result<(), BoxError> {
    let (readings, anomalies): (i64, i64) =
        conn.query_row("SELECT count(*), count(*) FILTER (WHERE is_anomaly) FROM anomaly_readings", [], |r| {
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
