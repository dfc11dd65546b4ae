//! The Rust embedding API for lake jobs, as a host program uses it: open a DuckDB file with
//! sqlscore, register models, declare a job over a Parquet folder and run it with
//! `sqlscore_duckdb::jobs::run_job`. Needs the built extension (`make extension`) and the demo
//! models (`make demo-models`).

use std::path::{Path, PathBuf};

use sqlscore_duckdb::jobs::{self, Event, JobErrorKind, JobSpec, RunConfig};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("sqlscore-embed-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("lake")).unwrap();
    d
}

/// Writes one lake file of `n` readings of sensors d0_s0..d0_s2, ids from `first`.
fn land(conn: &duckdb::Connection, path: &Path, first: i64, n: i64) {
    conn.execute_batch(&format!(
        "COPY (SELECT {first} + i AS id, 'd0_s' || (i % 3) AS sensor_id, 10.0 + (i % 3) * 10 + (i % 5) * 0.1 AS value \
         FROM range({n}) t(i)) TO '{}' (FORMAT parquet)",
        path.display()
    ))
    .unwrap();
}

fn setup(name: &str) -> (PathBuf, duckdb::Connection) {
    let dir = tempdir(name);
    let conn = sqlscore_duckdb::open(dir.join("db.duckdb")).expect("open with the extension (make extension)");
    for s in 0..3 {
        let model = format!("anomaly_d0_s{s}");
        sqlscore_duckdb::register_model(&conn, &model, &root().join(format!("models/demo/{model}.onnx")), None)
            .unwrap();
    }
    (dir, conn)
}

#[test]
fn a_host_runs_a_lake_job_incrementally() {
    let (dir, conn) = setup("incremental");
    land(&conn, &dir.join("lake/a.parquet"), 0, 300);
    let glob = format!("{}/lake/*.parquet", dir.display());
    let mut spec = JobSpec::new("iot", &glob, "id", "'anomaly_' || sensor_id", "scores");
    spec.features = Some(vec!["value".into()]);
    spec.carry = vec!["sensor_id".into()];
    jobs::create_job(&conn, &spec).unwrap();

    let mut events = Vec::new();
    let mut on_event = |e: &Event| events.push(e.clone());
    let s = jobs::run_job(&conn, "iot", RunConfig { on_event: Some(&mut on_event), ..RunConfig::default() }).unwrap();
    assert_eq!((s.status.as_str(), s.rows_scored, s.files_scored), ("succeeded", 300, 1), "{s:?}");
    assert!(matches!(&events[0], Event::Planned { plan, .. } if plan.new_files == 1 && plan.rows == Some(300)));
    assert!(matches!(events.last(), Some(Event::Batch { rows_done: 300, .. })));

    // The job's scores are the extension's own score() of the same rows.
    let diff: f64 = conn
        .query_row(
            &format!(
                "SELECT max(abs(s.score - score('anomaly_' || r.sensor_id, r.value))) FROM scores s \
                 JOIN read_parquet('{glob}') r USING (id)"
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(diff < 1e-6, "job and score() differ by {diff}");

    land(&conn, &dir.join("lake/b.parquet"), 300, 60);
    let s = jobs::run_job(&conn, "iot", RunConfig::default()).unwrap();
    assert_eq!((s.rows_scored, s.plan.new_files, s.plan.unchanged_files), (60, 1, 1));
    let s = jobs::run_job(&conn, "iot", RunConfig::default()).unwrap();
    assert_eq!((s.rows_scored, s.plan.batches), (0, 0));
    let (n, ids): (i64, i64) =
        conn.query_row("SELECT count(*), count(DISTINCT id) FROM scores", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
    assert_eq!((n, ids), (360, 360));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn one_job_runs_once_at_a_time_in_a_process() {
    let (dir, conn) = setup("busy");
    land(&conn, &dir.join("lake/a.parquet"), 0, 30);
    let mut spec =
        JobSpec::new("iot", &format!("{}/lake/*.parquet", dir.display()), "id", "'anomaly_' || sensor_id", "scores");
    spec.features = Some(vec!["value".into()]);
    jobs::create_job(&conn, &spec).unwrap();

    // A second connection of the same host starts the same job while the first run is under way.
    let other = conn.try_clone().unwrap();
    let mut second = None;
    let mut on_event = |e: &Event| {
        if matches!(e, Event::Planned { .. }) && second.is_none() {
            second = Some(jobs::run_job(&other, "iot", RunConfig::default()).map(|s| s.status));
        }
    };
    let s = jobs::run_job(&conn, "iot", RunConfig { on_event: Some(&mut on_event), ..RunConfig::default() }).unwrap();
    assert_eq!(s.status, "succeeded");
    let err = second.expect("the callback ran").expect_err("a second run of a running job is refused");
    assert_eq!(err.kind, JobErrorKind::Busy);
    assert!(err.to_string().contains("job \"iot\"") && err.to_string().contains("already in progress"), "{err}");

    // An unknown model fails the run with the job, the run and the file named.
    land(&conn, &dir.join("lake/b.parquet"), 100, 3);
    conn.execute_batch(&format!(
        "COPY (SELECT 200 AS id, 'd9_s9' AS sensor_id, 1.0 AS value) TO '{}' (FORMAT parquet)",
        dir.join("lake/c.parquet").display()
    ))
    .unwrap();
    let s = jobs::run_job(&conn, "iot", RunConfig::default()).unwrap();
    assert_eq!(s.status, "failed");
    let e = s.error.unwrap().to_string();
    assert!(
        e.contains(&format!("job \"iot\" run {}", s.run_id)) && e.contains("c.parquet") && e.contains("anomaly_d9_s9"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Two jobs of one file run at once on two connections of a host, each publishing the file's
/// snapshot: every run succeeds, every copy is whole, and the caller's connection is left as it
/// was (no transaction open, its own catalog current).
#[test]
fn two_connections_publish_the_snapshot_at_once() {
    use sqlscore_duckdb::snapshot;
    let (dir, conn) = setup("snapshot");
    land(&conn, &dir.join("lake/a.parquet"), 0, 3000);
    for name in ["one", "two"] {
        let glob = format!("{}/lake/*.parquet", dir.display());
        let mut spec = JobSpec::new(name, &glob, "id", "'anomaly_' || sensor_id", &format!("scores_{name}"));
        spec.features = Some(vec!["value".into()]);
        jobs::create_job(&conn, &spec).unwrap();
    }
    let snap = dir.join("bi.duckdb");
    snapshot::enable(&conn, &snap, std::time::Duration::ZERO).unwrap();
    let snap_ref = &snap;
    let runs: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["one", "two"]
            .into_iter()
            .map(|name| {
                let c = conn.try_clone().unwrap();
                scope.spawn(move || {
                    let s = jobs::run_job(&c, name, RunConfig::default()).unwrap();
                    // And a user's publication on the same connection right after.
                    let p = snapshot::publish(&c, snap_ref);
                    (s, p)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (s, p) in &runs {
        assert_eq!(s.status, "succeeded", "{s:?}");
        assert!(matches!(&s.snapshot, Some(Ok(_))), "{:?}", s.snapshot);
        p.as_ref().unwrap();
    }
    let copy = duckdb::Connection::open_with_flags(
        &snap,
        duckdb::Config::default().access_mode(duckdb::AccessMode::ReadOnly).unwrap(),
    )
    .unwrap();
    let n: (i64, i64) = copy
        .query_row("SELECT (SELECT count(*) FROM scores_one), (SELECT count(*) FROM scores_two)", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(n, (3000, 3000));
    // The caller's connection: its own catalog, no transaction, nothing attached left behind.
    let (db, attached): (String, i64) = conn
        .query_row(
            "SELECT current_database(), (SELECT count(*) FROM duckdb_databases() WHERE database_name LIKE '__sqlscore_snapshot%')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((db.as_str(), attached), ("db", 0));
    conn.execute_batch("BEGIN; COMMIT").unwrap();
    let leftovers = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("sqlscore-tmp"))
        .count();
    assert_eq!(leftovers, 0);
}
