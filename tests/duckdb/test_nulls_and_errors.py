"""NULL handling and every bad input: a clear error naming the model and what was expected,
and the database keeps working afterwards."""
import os
import subprocess
import sys

import pytest

from conftest import EXTENSION, TEST_EXTENSION, load_reference_table, reference, register


def test_null_feature_gives_null_and_rest_is_scored(con):
    ref = reference("logistic_binary")
    cols = load_reference_table(con, "t", ref)
    register(con, "lr", "logistic_binary")
    con.execute(f"UPDATE t SET {cols[3]} = NULL WHERE id IN (2, 5)")
    got = dict(con.execute(f"SELECT id, score('lr', {', '.join(cols)}) FROM t").fetchall())
    assert got[2] is None and got[5] is None
    for i, want in enumerate(ref["expected"]["score"]):
        if i not in (2, 5):
            assert abs(got[i] - want) <= 1e-5
    labels = dict(con.execute(f"SELECT id, predict('lr', {', '.join(cols)}) FROM t").fetchall())
    assert labels[2] is None and labels[0] == ref["expected"]["label"][0]


def test_null_model_gives_null(con):
    register(con, "lr", "logistic_binary")
    assert con.execute("SELECT score(NULL, 1, 2, 3, 4, 5, 6, 7, 8)").fetchone()[0] is None
    # An untyped NULL literal among the features is a NULL feature, not a type error.
    assert con.execute("SELECT score('lr', 1, NULL, 3, 4, 5, 6, 7, 8)").fetchone()[0] is None


def test_null_row_struct_gives_null(con):
    ref = reference("column_transformer")
    load_reference_table(con, "c", ref)
    register(con, "ct", "column_transformer")
    got = con.execute(
        "SELECT score('ct', CASE WHEN id = 1 THEN NULL ELSE {'city': city, 'age': age, 'income': income} END) FROM c ORDER BY id"
    ).fetchall()
    assert got[1][0] is None and got[0][0] is not None


def expect_error(con, sql, *fragments):
    with pytest.raises(Exception) as info:
        con.execute(sql).fetchall()
    for f in fragments:
        assert f in str(info.value), str(info.value)
    return str(info.value)


def test_unknown_model_lists_registered_ones(con):
    expect_error(con, "SELECT score('nope', 1)", "unknown model 'nope'", "no models are registered yet")
    register(con, "lr", "logistic_binary")
    register(con, "gbm", "gbm_regressor")
    expect_error(con, "SELECT score('nope', 1)", "unknown model 'nope'", "registered models: gbm, lr")
    expect_error(con, "SELECT score('lr@7', 1)", "unknown model 'lr@7'")
    # Still usable afterwards.
    assert con.execute("SELECT score('lr', 1, 2, 3, 4, 5, 6, 7, 8)").fetchone()[0] is not None


def test_wrong_number_of_features(con):
    register(con, "lr", "logistic_binary")
    expect_error(con, "SELECT score('lr', 1, 2, 3)", "model 'lr' expects 8 feature value(s) (X: float[8]), got 3")


def test_text_for_float_and_number_for_text(con):
    register(con, "lr", "logistic_binary")
    expect_error(con, "SELECT score('lr', 1, 2, 'three', 4, 5, 6, 7, 8)",
                 "model 'lr': input 'X' expects a number (float), but feature 3 is VARCHAR")
    register(con, "ct", "column_transformer")
    expect_error(con, "SELECT score('ct', 42, 30.0, 1000.0)",
                 "model 'ct': input 'city' expects text (VARCHAR), but feature 1 is INTEGER")
    register(con, "im", "int64_model")
    expect_error(con, "SELECT score('im', 1.5, 2, 3)", "input 'X' expects an integer (int64)")
    expect_error(con, "SELECT score('lr', 1, 2, 3, 4, 5, 6, 7, DATE '2026-01-01')", "feature 8 is DATE")


def test_struct_missing_a_named_input(con):
    register(con, "ct", "column_transformer")
    expect_error(con, "SELECT score('ct', {'city': 'paris', 'age': 30.0})",
                 "model 'ct': the row has no field 'income' (float); its fields are: city, age")


def test_label_and_probabilities_on_a_regressor(con):
    register(con, "reg", "gbm_regressor")
    expect_error(con, "SELECT predict_proba('reg', 1, 2, 3, 4, 5, 6, 7, 8)", "model 'reg' cannot be used for predict_proba()")


def run_isolated(code, **env):
    full_env = {**os.environ, **env}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=120)


PRELUDE = f"""
import duckdb
c = duckdb.connect(config={{'allow_unsigned_extensions': 'true'}})
c.execute("LOAD '{EXTENSION}'")
def attempt(sql):
    try:
        print('OK', c.execute(sql).fetchall())
    except Exception as e:
        print('ERR', str(e).replace(chr(10), ' | '))
"""


def test_missing_onnx_runtime_library_is_a_clear_error():
    out = run_isolated(PRELUDE + """
attempt("SELECT score('models/logistic_binary.onnx', 1, 2, 3, 4, 5, 6, 7, 8)")
attempt("SELECT 41 + 1")
""", ORT_DYLIB_PATH="/nonexistent/libonnxruntime.so.1.32.0")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("ERR") and "ONNX Runtime library not found" in lines[0], lines
    assert "/nonexistent/libonnxruntime.so.1.32.0" in lines[0] and "ORT_DYLIB_PATH" in lines[0]
    assert lines[1] == "OK [(42,)]"


def test_settings_null_policy_and_threads(con):
    register(con, "lr", "logistic_binary")
    q = "SELECT score('lr', 1, NULL, 3, 4, 5, 6, 7, 8)"
    assert con.execute("SELECT current_setting('sqlscore_null_policy')").fetchone()[0] == "null"
    assert con.execute(q).fetchone()[0] is None
    con.execute("SET sqlscore_null_policy = 'error'")
    expect_error(con, q, "model 'lr': feature 2 is NULL")
    con.execute("SET sqlscore_null_policy = 'sometimes'")
    expect_error(con, "SELECT score('lr', 1, 2, 3, 4, 5, 6, 7, 8)", "invalid setting sqlscore_null_policy = 'sometimes'")
    con.execute("RESET sqlscore_null_policy")
    one = con.execute("SELECT score('lr', 1, 2, 3, 4, 5, 6, 7, 8)").fetchone()[0]
    con.execute("SET sqlscore_intra_threads = 2")
    assert con.execute("SELECT score('lr', 1, 2, 3, 4, 5, 6, 7, 8)").fetchone()[0] == one
    con.execute("SET sqlscore_intra_threads = 0")
    expect_error(con, "SELECT score('lr', 1, 2, 3, 4, 5, 6, 7, 8)", f"expected 1 to {os.cpu_count()} (this machine's cores)")
    # A NULL setting is an error naming it, not a crash of the host process.
    con.execute("SET sqlscore_intra_threads = NULL")
    expect_error(con, "SELECT score('lr', 1, 2, 3, 4, 5, 6, 7, 8)", "invalid setting sqlscore_intra_threads = NULL")
    con.execute("RESET sqlscore_intra_threads")
    con.execute("SET sqlscore_null_policy = NULL")
    expect_error(con, "SELECT score('lr', 1, 2, 3, 4, 5, 6, 7, 8)", "invalid setting sqlscore_null_policy = NULL",
                 "RESET sqlscore_null_policy")


def test_null_policy_default_from_environment():
    out = run_isolated(PRELUDE + """
attempt("SELECT score('models/logistic_binary.onnx', 1, 2, NULL, 4, 5, 6, 7, 8)")
""", SQLSCORE_NULL_POLICY="error")
    assert "model 'models/logistic_binary.onnx': feature 3 is NULL" in out.stdout, out.stdout + out.stderr


def test_a_panic_is_an_error_not_a_crash():
    """SQLSCORE_FAULT=panic makes the scoring callback panic: a switch only the test build
    (dist/test/, feature test-hooks) has."""
    script = """
attempt("SELECT score('models/logistic_binary.onnx', 1, 2, 3, 4, 5, 6, 7, 8)")
attempt("SELECT 41 + 1")
"""
    out = run_isolated(PRELUDE.replace(str(EXTENSION), str(TEST_EXTENSION)) + script, SQLSCORE_FAULT="panic")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("ERR") and "internal error" in lines[0] and "panic" in lines[0], lines
    assert lines[1] == "OK [(42,)]"
    # The shipped file has no such switch.
    out = run_isolated(PRELUDE + script, SQLSCORE_FAULT="panic")
    assert out.stdout.splitlines()[0].startswith("OK"), out.stdout + out.stderr


def test_null_element_in_an_array_feature_is_a_null_row(con):
    register(con, "lr", "logistic_binary")
    got = con.execute(
        "SELECT score('lr', [1, 2, NULL, 4, 5, 6, 7, 8]::DOUBLE[8]), score('lr', [1, 2, 3, 4, 5, 6, 7, 8]::DOUBLE[]),"
        " score('lr', [1, NULL, 3, 4, 5, 6, 7, 8])"
    ).fetchone()
    assert got[0] is None and got[1] is not None and got[2] is None
    con.execute("SET sqlscore_null_policy = 'error'")
    expect_error(con, "SELECT score('lr', [1, 2, NULL, 4, 5, 6, 7, 8]::DOUBLE[8])", "is NULL")


def test_non_numeric_and_nested_lists_are_refused(con):
    register(con, "lr", "logistic_binary")
    expect_error(con, "SELECT score('lr', ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'])", "a LIST of VARCHAR")
    expect_error(con, "SELECT score('lr', [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]])", "a LIST of LIST")


def test_file_models_respect_enable_external_access(tmp_path):
    from conftest import connect, model_path
    c = connect()
    c.execute("INSERT INTO sqlscore_models FROM sqlscore_register('lr', ?)", [model_path("logistic_binary")])
    c.execute("SET enable_external_access = false")
    expect_error(c, f"SELECT score('{model_path('gbm_regressor')}', 1, 2, 3, 4, 5, 6, 7, 8)", "file access is disabled")
    expect_error(c, f"INSERT INTO sqlscore_models FROM sqlscore_register('x', '{model_path('gbm_regressor')}')",
                 "file access is disabled")
    # Registered models keep working: their bytes are in the database.
    assert c.execute("SELECT score('lr', 1, 2, 3, 4, 5, 6, 7, 8)").fetchone()[0] is not None


def test_user_columns_named_like_registry_columns(con):
    register(con, "lr", "logistic_binary")
    got = con.execute(
        "SELECT score(ref, 1, 2, 3, 4, 5, 6, 7, 8) FROM (SELECT 'lr' AS ref, 'x' AS sha256, 'y' AS onnx)"
    ).fetchone()[0]
    assert got == con.execute("SELECT score('lr', 1, 2, 3, 4, 5, 6, 7, 8)").fetchone()[0]


def test_lists_with_null_rows_score_only_their_valid_rows(con):
    """NULL list rows carry garbage offsets in DuckDB: they must never be read (a former UB site)."""
    register(con, "lr", "logistic_binary")
    con.execute(
        "CREATE TABLE l AS SELECT i AS id, CASE WHEN i % 3 = 0 THEN NULL ELSE "
        "[i % 5, 1, 2, 3, 4, 5, 6, 7]::DOUBLE[] END AS x FROM range(5000) t(i)"
    )
    got = dict(con.execute("SELECT id, score('lr', x) FROM l").fetchall())
    want = dict(con.execute(
        "SELECT id, CASE WHEN id % 3 = 0 THEN NULL ELSE score('lr', id % 5, 1, 2, 3, 4, 5, 6, 7) END FROM l"
    ).fetchall())
    assert got == want


def test_wide_decimals_feed_like_doubles(con):
    """DECIMAL(38, 10) is stored as 128-bit hugeint, 8-byte aligned: read as two words (a former UB site)."""
    register(con, "lr", "logistic_binary")
    wide = con.execute("SELECT score('lr', 1.5::DECIMAL(38,10), 2, 3, 4, 5, 6, 7, -8.25::DECIMAL(38,10))").fetchone()[0]
    double = con.execute("SELECT score('lr', 1.5, 2, 3, 4, 5, 6, 7, -8.25)").fetchone()[0]
    assert abs(wide - double) < 1e-9


def external_data_model(tmp_path):
    """A tiny valid model whose weight lives in an external file next to it."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    w = numpy_helper.from_array(np.ones((8, 1), dtype=np.float32), "W")
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 8])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])
    g = helper.make_graph([helper.make_node("MatMul", ["X", "W"], ["Y"])], "g", [x], [y], [w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    path = tmp_path / "ext.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    return path


def test_models_that_read_external_files_are_refused_everywhere(con, tmp_path):
    path = external_data_model(tmp_path)
    expect_error(con, f"INSERT INTO sqlscore_models FROM sqlscore_register('ext', '{path}')",
                 "reads tensor 'W' from an external file 'weights.bin'", "models must be self-contained")
    expect_error(con, f"SELECT score('{path}', 1, 2, 3, 4, 5, 6, 7, 8)", "external file")
    # The internal function, called directly with the bytes and their true hash, refuses them too.
    data = path.read_bytes()
    import hashlib
    sha = hashlib.sha256(data).hexdigest()
    sql = ("SELECT sqlscore_score_impl('ext', {'sha256': '" + sha + "', 'onnx': from_hex('" + data.hex() + "')},"
           " NULL, 1, 2, 3, 4, 5, 6, 7, 8)")
    expect_error(con, sql, "external file")


def test_internal_functions_validate_what_they_are_given(con):
    register(con, "lr", "logistic_binary")
    # A registry row without bytes, and bytes that do not match their hash.
    expect_error(con, "SELECT sqlscore_score_impl('x', {'sha256': 'abc', 'onnx': NULL::BLOB}, NULL, 1.0)",
                 "model 'x' is not a valid ONNX model: its registry row has no ONNX bytes")
    expect_error(con, "SELECT sqlscore_score_impl('x', {'sha256': 'abc', 'onnx': 'xyz'::BLOB}, NULL, 1.0)",
                 "stored sha256 abc does not match its bytes")


def test_an_environment_thread_default_above_the_cores_is_capped_not_an_error():
    out = run_isolated(PRELUDE + """
attempt("SELECT score('models/logistic_binary.onnx', 1, 2, 3, 4, 5, 6, 7, 8) IS NOT NULL")
attempt("SELECT current_setting('sqlscore_intra_threads')")
""", SQLSCORE_INTRA_THREADS="64")
    lines = out.stdout.splitlines()
    assert lines[0] == "OK [(True,)]", out.stdout + out.stderr
    assert lines[1] == f"OK [({os.cpu_count()},)]", lines
