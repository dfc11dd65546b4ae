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
pub fn demo(url: &str, models: &Path, devices: u32, sensors: u32, hours: u32, interval: u32) -> Result<(), BoxError> {
    let steps = i64::from(hours) * 3600 / i64::from(interval.max(1));
    with_client(url, async |c| {
        c.batch_execute("CREATE EXTENSION IF NOT EXISTS sqlscore").await.map_err(describe)?;
        let sql = include_str!("../../sql/demo_pg.sql")
            .replace("{devices}", &devices.to_string())
            .replace("{sensors}", &sensors.to_string())
            .replace("{steps}", &steps.to_string())
            .replace("{interval}", &interval.to_string());
        let (setup, score) = sql.split_once("-- @score").ok_or("demo_pg.sql lacks the -- @score marker")?;
        let t = Instant::now();
        c.batch_execute(setup).await.map_err(describe)?;
        println!(
            "  generated {} readings ({:.2} s)",
            i64::from(devices) * i64::from(sensors) * steps,
            t.elapsed().as_secs_f64()
        );
        let mut new = 0;
        for d in 0..devices {
            for s in 0..sensors {
                let name = format!("anomaly_d{d}_s{s}");
                let bytes = std::fs::read(models.join(format!("{name}.onnx")))?;
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
        let t = Instant::now();
        let n = c.execute(score.trim(), &[]).await.map_err(describe)?;
        let secs = t.elapsed().as_secs_f64();
        println!("  scored {n} readings in {secs:.2} s: {:.0} rows/s", n as f64 / secs);
        let r = c
            .query_one(
                "SELECT count(*) FILTER (WHERE is_anomaly), count(*) FILTER (WHERE injected AND is_anomaly), \
                 count(*) FILTER (WHERE injected AND NOT is_anomaly) FROM anomaly_scores",
                &[],
            )
            .await?;
        let (anomalies, found, missed): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
        println!("  {anomalies} anomalies; injected anomalies found: {found}, missed: {missed}");
        println!("anomaly_scores is in {url}");
        Ok(())
    })
}
