"""The `sqlscore` command: the demo on a small size (smoke test), and model push/list."""
import pathlib
import subprocess

import duckdb

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = ROOT / "target" / "release" / "sqlscore"


def run(*args, check=True):
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, cwd=ROOT, check=check, timeout=300)


def test_demo_small(tmp_path):
    """The demo is a lake job: the backlog is scored by the first run, and each call lands one more
    6-hour file that the next run scores alone."""
    db = tmp_path / "demo.duckdb"
    lake = tmp_path / "lake" / "readings"
    args = ["demo", "--devices", 2, "--sensors", 3, "--hours", 6, "--db", db, "--data", tmp_path / "lake", "--quiet"]
    out = run(*args)
    # 6 sensors x 360 readings per 6-hour file: the backlog file, then one that lands afterwards.
    assert "run 1: succeeded: 2160 rows scored, 0 rejected, 1 file" in out.stdout, out.stdout
    assert "run 2: succeeded: 2160 rows scored, 0 rejected, 1 file" in out.stdout, out.stdout
    assert sorted(p.name for p in lake.iterdir()) == ["readings-0000.parquet", "readings-0001.parquet"]

    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT id), count(DISTINCT sensor_id) FROM anomaly_scores").fetchone() == (4320, 4320, 6)
    assert con.execute("SELECT count(*) FROM anomaly_scores WHERE score IS NULL").fetchone()[0] == 0
    tp, missed, false_alarms, _ = con.execute("SELECT * FROM detection_quality").fetchone()
    # Injected anomalies are 6+ standard deviations out: every one is caught; few false alarms.
    assert tp > 0 and missed == 0
    assert false_alarms < 0.05 * 4320
    assert con.execute("SELECT count(*) FROM sqlscore_models").fetchone()[0] == 6
    assert con.execute("SELECT list(status ORDER BY run_id) FROM job_history").fetchone()[0] == ["succeeded"] * 2
    con.close()

    # Running it again: nothing new in the lake for the first run, then only the file that landed.
    out = run(*args)
    assert "0 registered, 6 already current" in out.stdout, out.stdout
    assert "run 3: succeeded: 0 rows scored" in out.stdout, out.stdout
    assert "run 4: succeeded: 2160 rows scored, 0 rejected, 1 file" in out.stdout, out.stdout
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT id) FROM anomaly_scores").fetchone() == (6480, 6480)
    assert con.execute("SELECT max(version) FROM sqlscore_models").fetchone()[0] == 1


def test_demo_without_trained_models_says_how_to_train(tmp_path):
    out = run("demo", "--devices", 9, "--sensors", 9, "--hours", 1, "--db", tmp_path / "d.duckdb",
              "--data", tmp_path, "--models", tmp_path / "none", "--quiet", check=False)
    assert out.returncode != 0
    assert "make_demo_models.py --devices 9 --sensors 9" in out.stderr


def test_model_push_and_list(tmp_path):
    db = tmp_path / "m.duckdb"
    out = run("model", "push", "--db", db, "--description", "first", "churn", "models/logistic_binary.onnx")
    assert out.stdout.startswith("registered churn@1 sha256=")
    run("model", "push", "--db", db, "churn", "models/gbm_classifier.onnx")
    listing = run("model", "list", "--db", db).stdout.splitlines()
    cells = [[c.strip() for c in line.split("|")] for line in listing]
    assert cells[0][:3] == ["name", "version", "latest"]
    assert cells[2][:3] == ["churn", "1", "false"] and cells[3][:3] == ["churn", "2", "true"]
    # Which evaluator each model runs on: both are native.
    engine = cells[0].index("engine")
    assert cells[2][engine] == "native" and cells[3][engine] == "native"
    # created_at prints as a timestamp, not a Rust debug form.
    assert "Timestamp(" not in listing[2] and listing[-1] == "(2 rows)"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    out = run("model", "push", "--db", db, "junk", bad, check=False)
    assert out.returncode != 0 and "not a valid ONNX model" in out.stderr
    got = run("sql", "--db", db, "SELECT round(score('churn@1', 1, 2, 3, 4, 5, 6, 7, 8), 6) AS s").stdout
    lines = [line.strip() for line in got.splitlines()]
    assert lines[0] == "s" and lines[-1] == "(1 row)"
    float(lines[2])


def test_sql_prints_values_like_duckdb(tmp_path):
    """Timestamps, lists, structs and NULLs as DuckDB's own client prints them."""
    got = run("sql", "--db", tmp_path / "v.duckdb",
              "SELECT TIMESTAMP '2026-01-01 10:00:00' AS t, TIMESTAMPTZ '2026-01-01 10:00:00.25+00' AS tz, "
              "DATE '2026-03-04' AS d, [0.94, 0.06] AS l, {'a': 1, 'b': 'x'} AS s, NULL AS n, 42 AS i").stdout
    row = [c.strip() for c in got.splitlines()[2].split("|")]
    assert row == ["2026-01-01 10:00:00", "2026-01-01 10:00:00.25+00", "2026-03-04", "[0.94, 0.06]",
                   "{'a': 1, 'b': x}", "NULL", "42"], got
    for debug in ("Timestamp(", "List(", "Double(", "Struct("):
        assert debug not in got


def test_demo_replaces_the_previous_demos_table(tmp_path):
    """A demo file from before the demo was a job (anomaly_scores rebuilt by one INSERT per run)
    is taken over: the job's target replaces the old table."""
    db = tmp_path / "old.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("CREATE TABLE anomaly_scores (id BIGINT, device_id VARCHAR, sensor_id VARCHAR, ts TIMESTAMP, "
                    "value DOUBLE, score DOUBLE, is_anomaly BOOLEAN, injected BOOLEAN)")
        con.execute("INSERT INTO anomaly_scores VALUES (1, 'd0', 'd0_s0', TIMESTAMP '2026-01-01', 1, 1, false, false)")
    out = run("demo", "--devices", 1, "--sensors", 2, "--hours", 6, "--db", db, "--data", tmp_path / "lake", "--quiet")
    assert "replaced the previous demo's anomaly_scores" in out.stdout, out.stdout
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT id) FROM anomaly_scores").fetchone() == (1440, 1440)
