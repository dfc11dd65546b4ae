"""The model registry lives in the user's database: versions, transactions, persistence."""
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, connect, load_reference_table, model_path, reference, register


def test_register_returns_what_was_stored(con):
    row = con.execute(
        "INSERT INTO sqlscore_models FROM sqlscore_register('churn', ?, description := 'v1 model') "
        "RETURNING name, version, sha256, inputs, outputs, description",
        [model_path("logistic_binary")],
    ).fetchone()
    name, version, sha, inputs, outputs, description = row
    assert (name, version, description) == ("churn", 1, "v1 model")
    import hashlib
    assert sha == hashlib.sha256(open(model_path("logistic_binary"), "rb").read()).hexdigest()
    assert '"name":"X"' in inputs and '"type":"float"' in inputs
    assert '"name":"probabilities"' in outputs


def test_reregistering_adds_a_version_and_name_means_latest(con):
    assert register(con, "m", "gbm_regressor") == 1
    assert register(con, "m", "float64_model") == 2
    listing = con.execute("SELECT name, version, latest FROM sqlscore_model_list ORDER BY version").fetchall()
    assert listing == [("m", 1, False), ("m", 2, True)]
    # 'm' is version 2 (3 features); 'm@1' is the 8-feature GBM.
    assert con.execute("SELECT score('m', 1, 2, 3)").fetchone()[0] is not None
    assert con.execute("SELECT score('m@1', 1, 2, 3, 4, 5, 6, 7, 8)").fetchone()[0] is not None
    with pytest.raises(Exception, match="expects 3 feature"):
        con.execute("SELECT score('m', 1, 2, 3, 4, 5, 6, 7, 8)").fetchall()


def test_registration_is_transactional(con):
    con.execute("BEGIN")
    register(con, "temp", "logistic_binary")
    con.execute("ROLLBACK")
    assert con.execute("SELECT count(*) FROM sqlscore_models").fetchone()[0] == 0
    with pytest.raises(Exception, match="unknown model 'temp'"):
        con.execute("SELECT score('temp', 1, 2, 3, 4, 5, 6, 7, 8)").fetchall()


def test_models_persist_in_the_database_file(tmp_path):
    db = tmp_path / "scores.duckdb"
    moved = tmp_path / "lr.onnx"
    shutil.copy(model_path("logistic_binary"), moved)
    con = connect(db)
    con.execute("INSERT INTO sqlscore_models FROM sqlscore_register('lr', ?)", [str(moved)])
    before = con.execute("SELECT score('lr', 1, 2, 3, 4, 5, 6, 7, 8)").fetchone()[0]
    con.close()
    moved.unlink()  # the bytes live in the database, not at the path

    # A new process: nothing cached, nothing re-registered.
    code = f"""
import duckdb
c = duckdb.connect({str(db)!r}, config={{'allow_unsigned_extensions': 'true'}})
c.execute("LOAD '{ROOT / 'dist' / 'sqlscore.duckdb_extension'}'")
print(repr(c.execute("SELECT score('lr', 1, 2, 3, 4, 5, 6, 7, 8)").fetchone()[0]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert float(out) == before


def test_read_only_database_still_scores(tmp_path):
    db = tmp_path / "ro.duckdb"
    con = connect(db)
    register(con, "lr", "logistic_binary")
    con.close()
    ro = connect(db, access_mode="READ_ONLY")
    assert ro.execute("SELECT score('lr', 1, 2, 3, 4, 5, 6, 7, 8)").fetchone()[0] is not None


def test_bad_file_registers_nothing(con, tmp_path):
    register(con, "keep", "logistic_binary")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not an onnx model")
    truncated = tmp_path / "truncated.onnx"
    data = open(model_path("gbm_classifier"), "rb").read()
    truncated.write_bytes(data[: len(data) // 3])
    for path in (junk, truncated):
        with pytest.raises(Exception, match="model 'bad' is not a valid ONNX model"):
            con.execute("INSERT INTO sqlscore_models FROM sqlscore_register('bad', ?)", [str(path)])
    with pytest.raises(Exception, match="cannot read model file"):
        con.execute("INSERT INTO sqlscore_models FROM sqlscore_register('bad', '/nonexistent/m.onnx')")
    assert con.execute("SELECT list(name) FROM sqlscore_models").fetchone()[0] == ["keep"]


def test_invalid_model_names_are_refused(con):
    for bad in ("a@2", "x.onnx", ""):
        with pytest.raises(Exception, match="invalid model name"):
            con.execute("INSERT INTO sqlscore_models FROM sqlscore_register(?, ?)", [bad, model_path("logistic_binary")])
