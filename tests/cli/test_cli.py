"""The `sqlscore` command: the demo on a small size (smoke test), and model push/list."""
import pathlib
import subprocess

import duckdb

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = ROOT / "target" / "release" / "sqlscore"


def run(*args, check=True):
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, cwd=ROOT, check=check, timeout=300)


def test_demo_small(tmp_path):
    db = tmp_path / "demo.duckdb"
    args = ["demo", "--devices", 2, "--sensors", 3, "--hours", 2, "--db", db, "--data", tmp_path / "lake", "--quiet"]
    out = run(*args)
    assert "scored 720 readings with 6 models" in out.stdout, out.stdout
    assert (tmp_path / "lake" / "readings.parquet").exists()

    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*), count(DISTINCT sensor_id) FROM anomaly_scores").fetchone() == (720, 6)
    assert con.execute("SELECT count(*) FROM anomaly_scores WHERE score IS NULL").fetchone()[0] == 0
    tp, missed, false_alarms, _ = con.execute("SELECT * FROM detection_quality").fetchone()
    # Injected anomalies are 6+ standard deviations out: every one is caught; few false alarms.
    assert tp > 0 and missed == 0
    assert false_alarms < 0.05 * 720
    assert con.execute("SELECT count(*) FROM sqlscore_models").fetchone()[0] == 6
    con.close()

    # Running it again is safe: same rows, no new model versions.
    out = run(*args)
    assert "0 registered, 6 already current" in out.stdout, out.stdout
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM anomaly_scores").fetchone()[0] == 720
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
    assert listing[0].startswith("name | version | latest")
    assert listing[1].startswith("churn | 1 | false") and listing[2].startswith("churn | 2 | true")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    out = run("model", "push", "--db", db, "junk", bad, check=False)
    assert out.returncode != 0 and "not a valid ONNX model" in out.stderr
    got = run("sql", "--db", db, "SELECT round(score('churn@1', 1, 2, 3, 4, 5, 6, 7, 8), 6) AS s").stdout
    assert got.splitlines()[0] == "s"
