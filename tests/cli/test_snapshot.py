"""`sqlscore snapshot`: the read-only copy of a DuckDB file that dashboards read. Readers of the
copy never block a job (a reader of the job's own file would), never see half a copy, and see each
run's results once the run ends."""
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import duckdb

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = ROOT / "target" / "release" / "sqlscore"


def run(*args, check=True):
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, cwd=ROOT, check=check, timeout=300)


def demo(tmp_path, db):
    return run("demo", "--devices", 2, "--sensors", 3, "--hours", 6, "--db", db, "--data", tmp_path / "lake", "--quiet")


# Opens the copy, prints its readings, waits for a line on stdin, prints them again.
HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
q = "SELECT count(*) FROM anomaly_readings"
print(con.execute(q).fetchone()[0], flush=True)
sys.stdin.readline()
print(con.execute(q).fetchone()[0], flush=True)
"""


def counts(path):
    """(readings scored, rows the runs say they scored) in one connection to `path`."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute(
            "SELECT (SELECT count(*) FROM anomaly_readings), (SELECT sum(rows_scored) FROM job_history)"
        ).fetchone()
    finally:
        con.close()


def test_snapshot_follows_runs_and_never_blocks_them(tmp_path):
    db = tmp_path / "demo.duckdb"
    demo(tmp_path, db)
    out = run("snapshot", "--db", db)
    snap = tmp_path / "demo.snapshot.duckdb"
    assert f"published to {snap}" in out.stdout, out.stdout
    assert counts(snap) == (4320, 4320)

    # A dashboard holding the copy open for the whole run, in a process of its own (DuckDB's Python
    # client shares one instance per path within a process while a connection is open): the run
    # is not blocked, and this reader keeps its consistent (older) view.
    held = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(snap)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert held.stdout.readline().strip() == "4320"
    # Another reader opens, queries and closes the copy in a loop while the demo lands a file and
    # runs (each connection opens whatever file the path names at that moment).
    seen, errors, stop = [], [], threading.Event()

    def reader():
        while not stop.is_set():
            try:
                seen.append(counts(snap))
            except Exception as e:  # noqa: BLE001 - any failure is what this test looks for
                errors.append(repr(e))

    t = threading.Thread(target=reader)
    t.start()
    try:
        out = demo(tmp_path, db)
    finally:
        stop.set()
        t.join()
    assert "snapshot for dashboards published" in out.stdout, out.stdout
    assert errors == []
    # Each copy is one transaction's view: the readings match the runs' counts in every copy seen.
    assert seen and all(readings == scored for readings, scored in seen), seen[-5:]
    assert {r for r, _ in seen} <= {4320, 6480}
    held_after, _ = held.communicate("\n", timeout=60)
    assert held_after.strip() == "4320"
    # The new file's rows are in the copy once the run has ended, and in the job's own file.
    assert counts(snap) == (6480, 6480)
    main = duckdb.connect(str(db), read_only=True)
    assert main.execute("SELECT count(*) FROM anomaly_scores").fetchone()[0] == 6480
    # The copy has the tables and views a dashboard reads, the registry without the model bytes,
    # and when it was taken.
    main.close()
    con = duckdb.connect(str(snap), read_only=True)
    cols = [r[0] for r in con.execute("DESCRIBE sqlscore_models").fetchall()]
    assert "onnx" not in cols and "sha256" in cols
    published, source = con.execute("SELECT epoch(published_at), source FROM sqlscore_snapshot_info").fetchone()
    assert source == str(db) and abs(published - time.time()) < 120
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
    assert {"anomaly_readings", "anomalies_by_hour", "anomalies_by_sensor", "score_histogram", "job_history",
            "job_backlog", "score_drift", "score_drift_by_run", "detection_quality"} <= views
    assert con.execute("SELECT backlog, last_status FROM job_backlog").fetchone() == (0, "succeeded")
    con.close()
    # No temporary copies left behind.
    assert [p.name for p in tmp_path.iterdir() if "sqlscore-tmp" in p.name] == []


def test_backlog_sees_a_landed_file_before_any_run(tmp_path):
    db = tmp_path / "demo.duckdb"
    demo(tmp_path, db)
    run("snapshot", "--db", db)
    lake = tmp_path / "lake" / "readings"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT * FROM '{lake}/readings-0000.parquet' LIMIT 10) TO '{lake}/late.parquet'")
    snap = duckdb.connect(str(tmp_path / "demo.snapshot.duckdb"), read_only=True)
    backlog, unit, lag = snap.execute("SELECT backlog, backlog_unit, lag_s FROM job_backlog").fetchone()
    assert (backlog, unit) == (1, "files") and 0 <= lag < 120


def test_off_stops_publishing_and_bad_paths_are_refused(tmp_path):
    db = tmp_path / "demo.duckdb"
    demo(tmp_path, db)
    snap = tmp_path / "bi.duckdb"
    run("snapshot", "--db", db, "--to", snap)
    before = snap.stat().st_mtime_ns
    out = run("snapshot", "--db", db, "--off")
    assert "snapshots off" in out.stdout
    out = run("job", "run", "anomaly", "--db", db)
    assert "snapshot" not in out.stdout
    assert snap.stat().st_mtime_ns == before

    bad = run("snapshot", "--db", db, "--to", tmp_path / "bi.txt", check=False)
    assert bad.returncode != 0 and "must end in .duckdb" in bad.stderr
    same = run("snapshot", "--db", db, "--to", db, check=False)
    assert same.returncode != 0 and "cannot be the database file itself" in same.stderr
    missing = run("snapshot", "--db", tmp_path / "none.duckdb", check=False)
    assert missing.returncode != 0 and "no such database" in missing.stderr


def test_a_failed_copy_does_not_fail_the_run(tmp_path):
    db = tmp_path / "demo.duckdb"
    demo(tmp_path, db)
    gone = tmp_path / "gone"
    gone.mkdir()
    run("snapshot", "--db", db, "--to", gone / "bi.duckdb")
    (gone / "bi.duckdb").unlink()
    gone.rmdir()
    out = run("job", "run", "anomaly", "--db", db)
    assert "succeeded" in out.stdout
    assert "warning: the dashboard's copy was not updated: snapshot" in out.stderr, out.stderr


def test_the_database_itself_is_refused_however_named(tmp_path):
    db = tmp_path / "demo.duckdb"
    demo(tmp_path, db)
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.duckdb").symlink_to(db)
    for to in [tmp_path / "sub" / ".." / "demo.duckdb", tmp_path / "link.duckdb"]:
        out = run("snapshot", "--db", db, "--to", to, check=False)
        assert out.returncode != 0 and "cannot be the database file itself" in out.stderr, (to, out.stderr)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM sqlscore_models").fetchone()[0] == 6


def test_leftovers_wal_and_permissions(tmp_path):
    db = tmp_path / "demo.duckdb"
    demo(tmp_path, db)
    db.chmod(0o600)
    snap = tmp_path / "demo.snapshot.duckdb"
    run("snapshot", "--db", db)
    assert snap.stat().st_mode & 0o777 == 0o600
    # Someone opened the copy read-write and left a WAL with a table in it; a killed publisher
    # left a temporary copy.
    con = duckdb.connect(str(snap))
    con.execute("SET checkpoint_threshold = '1GB'; CREATE TABLE phantom AS SELECT 1 AS x")
    shutil.copyfile(f"{snap}.wal", tmp_path / "saved.wal")
    con.close()
    shutil.copyfile(tmp_path / "saved.wal", f"{snap}.wal")
    dead = tmp_path / ".demo.snapshot.duckdb.999999-0.sqlscore-tmp"
    dead.write_bytes(b"x" * 1000)
    run("job", "run", "anomaly", "--db", db)
    con = duckdb.connect(str(snap), read_only=True)
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'phantom'").fetchone()[0] == 0
    con.close()
    assert not dead.exists()
    assert [p.name for p in tmp_path.iterdir() if "sqlscore-tmp" in p.name] == []
