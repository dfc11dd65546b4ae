//! The Postgres side of the CLI, over tokio-postgres: model push/list/activate (models travel as
//! bytea parameters) and the demo scenario in a Postgres database.

use std::path::Path;
use std::time::Instant;

use tokio_postgres::{Client, NoTls};

use crate::BoxError;

pub fn is_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// Runs an async block on a single-threaded runtime with a connected client.
pub fn with_client<T>(url: &str, f: impl AsyncFnOnce(&Client) -> Result<T, BoxError>) -> Result<T, BoxError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build()?;
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        let conn = tokio::spawn(async move {
            let _ = connection.await;
        });
        let out = f(&client).await;
        drop(client);
        let _ = conn.await;
        out
    })
}

pub fn push(url: &str, name: &str, file: &Path, description: Option<&str>) -> Result<(), BoxError> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    with_client(url, async |c| {
        let row = c
            .query_one("SELECT sqlscore.register_model($1, $2, $3)", &[&name, &bytes, &description])
            .await
            .map_err(describe)?;
        let version: i32 = row.get(0);
        let sha: String = c
            .query_one("SELECT sha256 FROM sqlscore.models WHERE name = $1 AND version = $2", &[&name, &version])
            .await?
            .get(0);
        println!("registered {name}@{version} sha256={sha} (active)");
        Ok(())
    })
}

pub fn list(url: &str) -> Result<(), BoxError> {
    with_client(url, async |c| {
        let mut rows = Vec::new();
        for r in c
            .query(
                "SELECT name, version, active, left(sha256, 12), size, engine, coalesce(description, ''), created_at::text, created_by::text \
                 FROM sqlscore.models ORDER BY name, version",
                &[],
            )
            .await
            .map_err(describe)?
        {
            let (n, v, a, s, z, e, d, t, b): (String, i32, bool, String, i64, String, String, String, String) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5), r.get(6), r.get(7), r.get(8));
            rows.push(vec![n, v.to_string(), a.to_string(), s, z.to_string(), e, d, t, b]);
        }
        crate::display::print_table(
            &["name", "version", "active", "sha256", "size", "engine", "description", "created_at", "created_by"],
            &rows,
        );
        Ok(())
    })
}

pub fn activate(url: &str, name: &str, version: i32) -> Result<(), BoxError> {
    with_client(url, async |c| {
        c.execute("SELECT sqlscore.activate_model($1, $2)", &[&name, &version]).await.map_err(describe)?;
        println!("{name}@{version} is now active");
        Ok(())
    })
}

/// Server errors with their SQLSTATE, message and hint.
pub fn describe(e: tokio_postgres::Error) -> BoxError {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} ({})", db.message(), db.code().code());
            if let Some(h) = db.hint() {
                s.push_str(&format!("\nHINT: {h}"));
            }
            s.into()
        }
        None => e.into(),
    }
}

/// The IoT scenario inside Postgres: readings table, one model per (device, sensor), one
/// `INSERT ... SELECT sqlscore.score('anomaly_' || sensor_id, value)`.
/// A URL with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
            None => url.to_string(),
        },
        _ => url.to_string(),
    }
}

/// Hours of readings the demo lands per call after the backlog (as the DuckDB demo's files).
const LAND_HOURS: i64 = 6;
const JOB: &str = "anomaly";

/// The IoT demo in PostgreSQL, as a job: the first call lands the backlog (`hours` of readings),
/// creates the job `anomaly` (`'anomaly_' || sensor_id` picks each reading's model) and runs it;
/// then, and on every later call, it lands the next 6 hours and runs the job again, which scores
/// only them. The BI views (sql/bi_views_pg.sql) are re-created each time.
pub fn demo(url: &str, models: &Path, devices: u32, sensors: u32, hours: u32, interval: u32) -> Result<(), BoxError> {
    let interval = i64::from(interval.max(1));
    let sql = include_str!("../../sql/demo_pg.sql");
    let (setup, land) = sql
        .split_once("-- @setup")
        .and_then(|(_, rest)| rest.split_once("-- @land"))
        .ok_or("demo_pg.sql lacks its -- @setup / -- @land markers")?;
    let land = land.split_once('\n').map(|(_, body)| body).unwrap_or(land);
    let fill = |first: i64, last: i64| {
        land.replace("{devices}", &devices.to_string())
            .replace("{sensors}", &sensors.to_string())
            .replace("{first}", &first.to_string())
            .replace("{last}", &last.to_string())
            .replace("{interval}", &interval.to_string())
    };
    with_client(url, async |c| {
        c.batch_execute("CREATE EXTENSION IF NOT EXISTS sqlscore").await.map_err(describe)?;
        let has_job =
            c.query_opt("SELECT 1 FROM sqlscore.jobs WHERE name = $1", &[&JOB]).await.map_err(describe)?.is_some();
        if !has_job {
            // The demo owns these tables; an earlier demo's (one INSERT, no job) are replaced.
            // Without CASCADE: a user's view over them makes this fail instead of vanishing.
            c.batch_execute(
                "DROP VIEW IF EXISTS anomalies_by_sensor, anomalies_by_hour, score_histogram, detection_quality, \
                 job_history, job_backlog, score_drift, score_drift_by_run, anomaly_readings; \
                 DROP TABLE IF EXISTS anomaly_scores, readings",
            )
            .await
            .map_err(describe)?;
        }
        c.batch_execute(setup).await.map_err(describe)?;
        let mut new = 0;
        for d in 0..devices {
            for s in 0..sensors {
                let name = format!("anomaly_d{d}_s{s}");
                let bytes = std::fs::read(models.join(format!("{name}.onnx"))).map_err(|e| {
                    format!(
                        "{}: {e}\nHINT: train the models first: .venv/bin/python models/make_demo_models.py --devices {devices} --sensors {sensors}",
                        models.join(format!("{name}.onnx")).display()
                    )
                })?;
                let sha = sqlscore_core::sha256_hex(&bytes);
                let current = c
                    .query_opt(
                        "SELECT 1 FROM sqlscore.models WHERE name = $1 AND active AND sha256 = $2",
                        &[&name, &sha],
                    )
                    .await?;
                if current.is_none() {
                    c.query_one(
                        "SELECT sqlscore.register_model($1, $2, 'demo: StandardScaler + OneClassSVM')",
                        &[&name, &bytes],
                    )
                    .await
                    .map_err(describe)?;
                    new += 1;
                }
            }
        }
        println!("  models: {new} registered, {} already current", devices * sensors - new);
        let next = next_step(c, interval).await?;
        if !has_job {
            let last = next + i64::from(hours) * 3600 / interval;
            let t = Instant::now();
            let n = c.execute(&fill(next, last), &[]).await.map_err(describe)?;
            println!("  backlog: {n} readings landed in readings ({:.2} s)", t.elapsed().as_secs_f64());
            c.execute(
                "SELECT sqlscore.create_job($1, 'readings', 'id', $2, 'anomaly_scores', features => '{value}', \
                 carry => '{device_id,sensor_id,ts,value,injected}')",
                &[&JOB, &"'anomaly_' || sensor_id"],
            )
            .await
            .map_err(describe)?;
            println!("  job {JOB}: created: readings -> anomaly_scores, model 'anomaly_' || sensor_id");
            run_demo_job(c).await?;
        }
        let next = next_step(c, interval).await?;
        let n = c.execute(&fill(next, next + LAND_HOURS * 3600 / interval), &[]).await.map_err(describe)?;
        println!("  new readings landed: {n} (the next {LAND_HOURS} hours)");
        run_demo_job(c).await?;
        c.batch_execute(&include_str!("../../sql/bi_views_pg.sql").replace("{job}", JOB)).await.map_err(describe)?;
        let r = c
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE is_anomaly), count(*) FILTER (WHERE injected AND is_anomaly), \
                 count(*) FILTER (WHERE injected AND NOT is_anomaly) FROM anomaly_readings",
                &[],
            )
            .await?;
        let (readings, anomalies, found, missed): (i64, i64, i64, i64) = (r.get(0), r.get(1), r.get(2), r.get(3));
        println!("  {readings} readings, {anomalies} anomalies; injected anomalies found: {found}, missed: {missed}");
        let shown = redact(url);
        println!(
            "anomaly_scores, the BI views and the job's runs (sqlscore.job_runs) are in {shown}; \
             see them in a browser: make dashboard DB={shown}"
        );
        Ok(())
    })
}

/// The demo's step after its newest reading (0 in an empty table): where the next readings land.
async fn next_step(c: &Client, interval: i64) -> Result<i64, BoxError> {
    let row = c
        .query_one(
            "SELECT coalesce(floor(extract(epoch FROM max(ts) - timestamp '2026-01-01') / $1::float8)::bigint + 1, 0) \
             FROM readings",
            &[&(interval as f64)],
        )
        .await
        .map_err(describe)?;
    Ok(row.get(0))
}

/// Runs the demo job in this session (`CALL sqlscore.run_job`) and prints what the run did.
async fn run_demo_job(c: &Client) -> Result<(), BoxError> {
    let t = Instant::now();
    let row = c.query_one("CALL sqlscore.run_job($1)", &[&JOB]).await.map_err(describe)?;
    let run_id: i64 = row.get(0);
    let r = c
        .query_one(
            "SELECT status, rows_scored, rows_rejected, error FROM sqlscore.job_runs WHERE run_id = $1",
            &[&run_id],
        )
        .await
        .map_err(describe)?;
    let (status, scored, rejected, error): (String, i64, i64, Option<String>) =
        (r.get(0), r.get(1), r.get(2), r.get(3));
    let secs = t.elapsed().as_secs_f64();
    println!(
        "  job {JOB} run {run_id}: {status}: {scored} rows scored, {rejected} rejected in {secs:.2} s ({:.0} rows/s)",
        scored as f64 / secs.max(1e-3)
    );
    match error {
        Some(e) => Err(format!("job {JOB} run {run_id}: {e}").into()),
        None => Ok(()),
    }
}
