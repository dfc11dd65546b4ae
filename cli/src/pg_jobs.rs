//! `sqlscore job ...` against PostgreSQL: the server runs the jobs (issue [4]'s SQL); this side
//! calls it and follows progress through `sqlscore.job_runs` from a second connection.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_postgres::Client;

use crate::jobs::{JobCommand, Outcome, Reporter};
use crate::pg::{describe, with_client};
use crate::BoxError;

/// The latest run of a job as `sqlscore.job_runs` shows it.
struct RunRow {
    run_id: i64,
    status: String,
    rows_scored: i64,
    rows_rejected: i64,
    seconds: f64,
    error: Option<String>,
}

const RUN_COLUMNS: &str = "run_id, status, rows_scored, rows_rejected, \
    extract(epoch FROM coalesce(finished_at, clock_timestamp()) - started_at)::float8, error";

fn run_row(r: &tokio_postgres::Row) -> RunRow {
    RunRow {
        run_id: r.get(0),
        status: r.get(1),
        rows_scored: r.get(2),
        rows_rejected: r.get(3),
        seconds: r.get(4),
        error: r.get(5),
    }
}

async fn run_by_id(c: &Client, run_id: i64) -> Result<Option<RunRow>, BoxError> {
    Ok(c.query_opt(&format!("SELECT {RUN_COLUMNS} FROM sqlscore.job_runs WHERE run_id = $1"), &[&run_id])
        .await
        .map_err(describe)?
        .map(|r| run_row(&r)))
}

async fn latest_run(c: &Client, job: &str) -> Result<Option<RunRow>, BoxError> {
    Ok(c.query_opt(
        &format!("SELECT {RUN_COLUMNS} FROM sqlscore.job_runs WHERE job = $1 ORDER BY run_id DESC LIMIT 1"),
        &[&job],
    )
    .await
    .map_err(describe)?
    .map(|r| run_row(&r)))
}

async fn backlog(c: &Client, job: &str) -> Result<i64, BoxError> {
    let row = c.query_opt("SELECT backlog FROM sqlscore.jobs WHERE name = $1", &[&job]).await.map_err(describe)?;
    row.map(|r| r.get::<_, i64>(0)).ok_or_else(|| format!("job \"{job}\": no such job in this database").into())
}

fn finish(job: &str, r: &RunRow, json_out: bool) -> Outcome {
    let rate = r.rows_scored as f64 / r.seconds.max(1e-3);
    println!(
        "job {job} run {}: {}: {} rows scored, {} rejected in {:.2} s ({rate:.0} rows/s)",
        r.run_id, r.status, r.rows_scored, r.rows_rejected, r.seconds
    );
    if let Some(e) = &r.error {
        eprintln!("error: job \"{job}\" run {}: {e}", r.run_id);
    }
    if json_out {
        println!(
            "{}",
            json!({"job": job, "run_id": r.run_id, "status": r.status, "rows_scored": r.rows_scored,
                   "rows_rejected": r.rows_rejected, "seconds": r.seconds,
                   "error": r.error.as_ref().map(|e| format!("job \"{job}\" run {}: {e}", r.run_id))})
        );
    }
    match r.status.as_str() {
        "succeeded" => Outcome::Ok,
        "cancelled" => Outcome::Cancelled,
        _ => Outcome::Failed,
    }
}

pub fn run(cmd: JobCommand) -> Result<Outcome, BoxError> {
    match cmd {
        JobCommand::Create(a) => {
            let (name, source, key, model, target, features, carry, on_error, outputs, batch) = a.parts();
            if sqlscore_core::Source::parse(source).is_ok_and(|s| !matches!(s, sqlscore_core::Source::Table(_))) {
                return Err(format!(
                    "job \"{name}\": PostgreSQL jobs read a table; file sources ('{source}') are for DuckDB databases"
                )
                .into());
            }
            let url = a.db().to_string();
            with_client(&url, async |c| {
                let carry: Option<Vec<String>> = (!carry.is_empty()).then(|| carry.to_vec());
                let features: Option<Vec<String>> = features.map(<[String]>::to_vec);
                let batch: i32 = batch.unwrap_or(10_000).min(i32::MAX as u64) as i32;
                c.execute(
                    "SELECT sqlscore.create_job(name => $1, source => $2::text::regclass, key => $3::text::name, model => $4, \
                     target => $5, features => $6, carry => $7, on_error => $8, outputs => $9, batch_size => $10)",
                    &[&name, &source, &key, &model, &target, &features, &carry, &on_error, &outputs, &batch],
                )
                .await
                .map_err(describe)?;
                let backlog = backlog(c, name).await?;
                println!("created job {name}: {source} -> {target} (model {model}, on_error {on_error}); backlog {backlog} rows");
                Ok(Outcome::Ok)
            })
        }
        JobCommand::List { db, json: json_out } => with_client(&db, async |c| {
            let rows = c
                .query(
                    "SELECT name, source::text, model, target::text, on_error, last_run_id, last_status, backlog \
                     FROM sqlscore.jobs ORDER BY name",
                    &[],
                )
                .await
                .map_err(describe)?;
            if json_out {
                let v: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        json!({"name": r.get::<_, String>(0), "source": r.get::<_, String>(1), "model": r.get::<_, String>(2),
                               "target": r.get::<_, String>(3), "on_error": r.get::<_, String>(4),
                               "last_run_id": r.get::<_, Option<i64>>(5), "last_status": r.get::<_, Option<String>>(6),
                               "backlog": r.get::<_, i64>(7)})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else {
                let table: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| {
                        vec![
                            r.get::<_, String>(0),
                            r.get::<_, String>(1),
                            r.get::<_, String>(2),
                            r.get::<_, String>(3),
                            r.get::<_, String>(4),
                            r.get::<_, Option<i64>>(5).map_or(String::new(), |id| {
                                format!("{id} ({})", r.get::<_, Option<String>>(6).unwrap_or_default())
                            }),
                            r.get::<_, i64>(7).to_string(),
                        ]
                    })
                    .collect();
                crate::display::print_table(
                    &["name", "source", "model", "target", "on_error", "last run", "backlog"],
                    &table,
                );
            }
            Ok(Outcome::Ok)
        }),
        JobCommand::Run(a) => {
            let db = a.db().to_string();
            let name = a.name().to_string();
            let json_out = a.json();
            let mut report = Reporter::new(&name, a.quiet());
            if a.run_async() {
                let workers = a.workers();
                return with_client(&db, async |c| {
                    let total = backlog(c, &name).await?;
                    let run_id: Option<i64> = c
                        .query_one("SELECT sqlscore.submit_job($1, $2)", &[&name, &workers])
                        .await
                        .map_err(describe)?
                        .get(0);
                    let Some(run_id) = run_id else {
                        println!("job {name}: nothing new");
                        if json_out {
                            println!(
                                "{}",
                                json!({"job": name, "run_id": null, "status": "succeeded", "rows_scored": 0, "rows_rejected": 0, "seconds": 0.0, "error": null})
                            );
                        }
                        return Ok(Outcome::Ok);
                    };
                    report.planned(
                        run_id,
                        &format!("submitted to {workers} background worker(s): {total} rows queued"),
                        Some(total as u64),
                    );
                    let started = Instant::now();
                    loop {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let Some(r) = run_by_id(c, run_id).await? else { continue };
                        report.progress(
                            run_id,
                            r.rows_scored as u64,
                            Some(total as u64),
                            started.elapsed().as_secs_f64(),
                        );
                        if r.status != "running" {
                            return Ok(finish(&name, &r, json_out));
                        }
                    }
                });
            }
            // CALL commits per batch, so it runs on its own connection while this one follows it.
            let url = db.clone();
            with_client(&db, async |watch| {
                let total = backlog(watch, &name).await?;
                let before = latest_run(watch, &name).await?.map(|r| r.run_id);
                let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
                let conn_task = tokio::spawn(async move {
                    let _ = connection.await;
                });
                let call_name = name.clone();
                let call = tokio::spawn(async move {
                    let r = client.query_one("CALL sqlscore.run_job($1, 'call', NULL)", &[&call_name]).await;
                    r.map(|row| row.get::<_, Option<i64>>(0))
                });
                let started = Instant::now();
                let mut announced = None;
                while !call.is_finished() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    if let Some(r) = latest_run(watch, &name).await? {
                        if Some(r.run_id) != before && r.status == "running" {
                            if announced != Some(r.run_id) {
                                announced = Some(r.run_id);
                                report.planned(r.run_id, &format!("{total} rows queued"), Some(total as u64));
                            }
                            report.progress(
                                r.run_id,
                                r.rows_scored as u64,
                                Some(total as u64),
                                started.elapsed().as_secs_f64(),
                            );
                        }
                    }
                }
                let result = call.await.map_err(|e| format!("job {name}: {e}"))?;
                drop(conn_task);
                match result {
                    Ok(Some(run_id)) => {
                        let r = run_by_id(watch, run_id).await?.ok_or("the run vanished")?;
                        Ok(finish(&name, &r, json_out))
                    }
                    Ok(None) => {
                        println!("job {name}: nothing new");
                        if json_out {
                            println!(
                                "{}",
                                json!({"job": name, "run_id": null, "status": "succeeded", "rows_scored": 0, "rows_rejected": 0, "seconds": started.elapsed().as_secs_f64(), "error": null})
                            );
                        }
                        Ok(Outcome::Ok)
                    }
                    Err(e) => {
                        // The run failed: its row says why (the batch that failed was rolled back).
                        let latest = latest_run(watch, &name).await?;
                        match latest.filter(|r| Some(r.run_id) != before) {
                            Some(r) if r.status != "running" => Ok(finish(&name, &r, json_out)),
                            _ => {
                                // The caller prints the JSON line for --json.
                                Err(format!("job \"{name}\": {}", describe(e)).into())
                            }
                        }
                    }
                }
            })
        }
        JobCommand::Status { name, db, json: json_out } => with_client(&db, async |c| {
            let row = c
                .query_opt(
                    "SELECT source::text, key::text, model, target::text, on_error, batch_size, backlog, \
                     extract(epoch FROM lag)::float8, schedule, streaming FROM sqlscore.jobs WHERE name = $1",
                    &[&name],
                )
                .await
                .map_err(describe)?
                .ok_or_else(|| format!("job \"{name}\": no such job in this database"))?;
            let last = latest_run(c, &name).await?;
            let (source, key, model, target, on_error): (String, String, String, String, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
            let (batch, backlog, lag, schedule, streaming): (i32, i64, Option<f64>, Option<String>, bool) =
                (row.get(5), row.get(6), row.get(7), row.get(8), row.get(9));
            if json_out {
                println!(
                    "{}",
                    json!({"job": name, "source": source, "key": key, "model": model, "target": target, "on_error": on_error,
                           "batch_rows": batch, "backlog": backlog, "lag_seconds": lag, "schedule": schedule, "streaming": streaming,
                           "last_run": last.as_ref().map(|r| json!({"run_id": r.run_id, "status": r.status, "rows_scored": r.rows_scored,
                               "rows_rejected": r.rows_rejected, "seconds": r.seconds, "error": r.error}))})
                );
                return Ok(Outcome::Ok);
            }
            println!("job {name}");
            println!("  source:   {source} (key {key})");
            println!("  model:    {model}");
            println!("  target:   {target}");
            println!("  on_error: {on_error}; batch_rows: {batch}");
            println!("  backlog:  {backlog} rows{}", lag.map_or(String::new(), |l| format!(", oldest {l:.1} s ago")));
            if let Some(s) = schedule {
                println!("  schedule: {s}");
            }
            if streaming {
                println!("  streaming");
            }
            match last {
                Some(r) => println!(
                    "  last run: {} {} ({} rows scored, {} rejected, {:.2} s){}",
                    r.run_id,
                    r.status,
                    r.rows_scored,
                    r.rows_rejected,
                    r.seconds,
                    r.error.map_or(String::new(), |e| format!("\n  error: {e}"))
                ),
                None => println!("  never run"),
            }
            Ok(Outcome::Ok)
        }),
        JobCommand::Runs { name, db, limit, json: json_out } => with_client(&db, async |c| {
            let limit = limit as i64;
            let rows = c
                .query(
                    &format!(
                        "SELECT {RUN_COLUMNS}, job, started_by, workers, started_at::text FROM sqlscore.job_runs \
                         WHERE $1::text IS NULL OR job = $1 ORDER BY run_id DESC LIMIT $2"
                    ),
                    &[&name, &limit],
                )
                .await
                .map_err(describe)?;
            if json_out {
                let v: Vec<_> = rows
                    .iter()
                    .map(|r| {
                        let x = run_row(r);
                        json!({"run_id": x.run_id, "job": r.get::<_, String>(6), "status": x.status, "started_by": r.get::<_, String>(7),
                               "workers": r.get::<_, i32>(8), "started_at": r.get::<_, String>(9), "seconds": x.seconds,
                               "rows_scored": x.rows_scored, "rows_rejected": x.rows_rejected, "error": x.error})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
                return Ok(Outcome::Ok);
            }
            let table: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    let x = run_row(r);
                    vec![
                        x.run_id.to_string(),
                        r.get::<_, String>(6),
                        x.status,
                        r.get::<_, String>(7),
                        r.get::<_, String>(9),
                        format!("{:.2}", x.seconds),
                        x.rows_scored.to_string(),
                        x.rows_rejected.to_string(),
                        x.error.unwrap_or_default(),
                    ]
                })
                .collect();
            crate::display::print_table(
                &[
                    "run_id",
                    "job",
                    "status",
                    "started_by",
                    "started_at",
                    "seconds",
                    "rows_scored",
                    "rows_rejected",
                    "error",
                ],
                &table,
            );
            Ok(Outcome::Ok)
        }),
        JobCommand::Cancel { name, db } => with_client(&db, async |c| {
            let running: Vec<i64> = c
                .query("SELECT run_id FROM sqlscore.job_runs WHERE job = $1 AND status = 'running'", &[&name])
                .await
                .map_err(describe)?
                .iter()
                .map(|r| r.get(0))
                .collect();
            if running.is_empty() {
                println!("job {name} has no run in progress");
            }
            for id in running {
                c.execute("SELECT sqlscore.cancel_run($1)", &[&id]).await.map_err(describe)?;
                println!("job {name}: cancel requested for run {id}");
            }
            Ok(Outcome::Ok)
        }),
        JobCommand::Drop { name, db } => with_client(&db, async |c| {
            c.execute("SELECT sqlscore.drop_job($1)", &[&name]).await.map_err(describe)?;
            println!("dropped job {name} (its target stays)");
            Ok(Outcome::Ok)
        }),
    }
}
