"""`sqlscore demo --db postgres://...`: the IoT scenario as a PostgreSQL job, with the BI views the
dashboard reads, which must have the same names, columns and types as the DuckDB demo's."""
import pathlib
import subprocess

import duckdb
import psycopg

from conftest import connect

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = ROOT / "target" / "release" / "sqlscore"
VIEWS = ["anomaly_readings", "anomalies_by_sensor", "anomalies_by_hour", "score_histogram", "detection_quality",
         "job_history", "job_backlog", "score_drift", "score_drift_by_run"]
# PostgreSQL's type names as DuckDB spells them.
PG_TO_DUCKDB = {"bigint": "BIGINT", "text": "VARCHAR", "double precision": "DOUBLE", "boolean": "BOOLEAN",
                "timestamp without time zone": "TIMESTAMP", "timestamp with time zone": "TIMESTAMP WITH TIME ZONE"}


def demo(db, *extra):
    return subprocess.run([str(CLI), "demo", "--devices", "2", "--sensors", "3", "--hours", "6", "--db", str(db), *extra],
                          capture_output=True, text=True, cwd=ROOT, check=True, timeout=300)


def test_pg_demo_is_a_job_with_the_duckdb_demos_views(pg_url, tmp_path):
    name = "sqlscore_demo_t"
    with connect(pg_url) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    url = pg_url.rsplit("/", 1)[0] + "/" + name
    try:
        out = demo(url).stdout
        # The backlog (6 sensors x 360 readings), then the next 6 hours, each scored by a run.
        assert "job anomaly run 1: succeeded: 2160 rows scored, 0 rejected" in out, out
        assert "job anomaly run 2: succeeded: 2160 rows scored, 0 rejected" in out, out
        out = demo(url).stdout
        assert "models: 0 registered, 6 already current" in out, out
        assert "job anomaly run 3: succeeded: 2160 rows scored" in out, out
        with psycopg.connect(url) as c:
            assert c.execute("SELECT count(*), count(DISTINCT id) FROM anomaly_readings").fetchone() == (6480, 6480)
            assert c.execute("SELECT sum(rows_scored) FROM job_history").fetchone()[0] == 6480
            assert c.execute("SELECT count(*) FROM score_drift_by_run").fetchone()[0] == 3
            tp, missed, _, _ = c.execute("SELECT * FROM detection_quality").fetchone()
            assert tp > 0 and missed == 0
            assert c.execute("SELECT backlog, backlog_unit, last_status FROM job_backlog").fetchone() == (0, "rows", "succeeded")
            pg_cols = {
                v: [(n, PG_TO_DUCKDB.get(t, t)) for n, t in c.execute(
                    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = %s::regclass AND attnum > 0 ORDER BY attnum", [v]).fetchall()]
                for v in VIEWS
            }
    finally:
        with connect(pg_url) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    db = tmp_path / "demo.duckdb"
    demo(db, "--data", tmp_path / "lake", "--quiet")
    con = duckdb.connect(str(db), read_only=True)
    for v in VIEWS:
        duck = [(n, t) for n, t, *_ in con.execute(f"DESCRIBE {v}").fetchall()]
        assert pg_cols[v] == duck, v
