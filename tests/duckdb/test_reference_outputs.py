"""Every committed model, registered and scored through SQL, equals Python onnxruntime, on the
native evaluator and on ONNX Runtime."""
import json

import pytest

from conftest import ALL_MODELS, load_reference_table, reference, register

TOL = 1e-5


ENGINES = ["native", "onnxruntime"]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", ALL_MODELS)
def test_positional_matches_reference(con, name, engine):
    con.execute(f"SET sqlscore_engine = '{engine}'")
    ref = reference(name)
    register(con, name, name)
    cols = ", ".join(load_reference_table(con, "t", ref))
    expected = ref["expected"]

    scores = [r[0] for r in con.execute(f"SELECT score('{name}', {cols}) FROM t ORDER BY id").fetchall()]
    assert len(scores) == ref["rows"]
    assert max(abs(g - w) for g, w in zip(scores, expected["score"])) <= TOL

    if expected["label"] is not None:
        labels = [r[0] for r in con.execute(f"SELECT predict('{name}', {cols}) FROM t ORDER BY id").fetchall()]
        assert labels == expected["label"]
    else:
        with pytest.raises(Exception, match="no label output"):
            con.execute(f"SELECT predict('{name}', {cols}) FROM t").fetchall()

    if expected["probabilities"] is not None:
        probas = [r[0] for r in con.execute(f"SELECT predict_proba('{name}', {cols}) FROM t ORDER BY id").fetchall()]
        for got, want in zip(probas, expected["probabilities"]):
            assert len(got) == len(want)
            assert max(abs(g - w) for g, w in zip(got, want)) <= TOL

    # score_all returns JSON with every raw output under its ONNX name.
    first = json.loads(con.execute(f"SELECT score_all('{name}', {cols}) FROM t ORDER BY id LIMIT 1").fetchone()[0])
    assert set(first) == set(ref["outputs"])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", ALL_MODELS)
def test_whole_row_binds_by_name(con, name, engine):
    """SELECT score('m', t) FROM t: columns bound to inputs by name (multi-input models) or, for a
    single wide input, field order; the id column is ignored when names match."""
    con.execute(f"SET sqlscore_engine = '{engine}'")
    ref = reference(name)
    register(con, name, name)
    cols = load_reference_table(con, "t", ref)
    named = len(ref["inputs"]) > 1
    source = "t" if named else f"(SELECT {', '.join(cols)} FROM t ORDER BY id) t"
    got = [r[0] for r in con.execute(f"SELECT score('{name}', t) FROM {source}" + (" ORDER BY id" if named else "")).fetchall()]
    assert max(abs(g - w) for g, w in zip(got, ref["expected"]["score"])) <= TOL


def test_text_categorical_by_name_in_any_column_order(con):
    ref = reference("column_transformer")
    register(con, "ct", "column_transformer")
    load_reference_table(con, "customers", ref)
    got = con.execute(
        "SELECT score('ct', c) FROM (SELECT income, id, city, age FROM customers ORDER BY id) c"
    ).fetchall()
    assert max(abs(g[0] - w) for g, w in zip(got, ref["expected"]["score"])) <= TOL
    # The unseen city (last row) still scores: OneHotEncoder(handle_unknown='ignore').
    assert got[-1][0] is not None


def test_literals_decimals_and_integers_are_accepted(con):
    register(con, "lr", "logistic_binary")
    # 1.5 is a DECIMAL literal in DuckDB, 2 an INTEGER: both feed a float input.
    a = con.execute("SELECT score('lr', 1.5, 2, 3.25, 4, 5, 6, 7, 8)").fetchone()[0]
    b = con.execute("SELECT score('lr', 1.5::DOUBLE, 2.0, 3.25::FLOAT, 4.0, 5.0, 6.0, 7.0, 8.0)").fetchone()[0]
    assert a == pytest.approx(b, abs=1e-7)


def test_array_column_feeds_a_wide_input(con):
    ref = reference("logistic_binary")
    register(con, "lr", "logistic_binary")
    cols = load_reference_table(con, "t", ref)
    got = con.execute(f"SELECT score('lr', [{', '.join(cols)}]::DOUBLE[8]) FROM t ORDER BY id").fetchall()
    assert max(abs(g[0] - w) for g, w in zip(got, ref["expected"]["score"])) <= TOL
    got = con.execute(f"SELECT score('lr', [{', '.join(cols)}]) FROM t ORDER BY id").fetchall()
    assert max(abs(g[0] - w) for g, w in zip(got, ref["expected"]["score"])) <= TOL


def test_model_by_file_path(con):
    ref = reference("gbm_regressor")
    cols = ", ".join(load_reference_table(con, "t", ref))
    from conftest import model_path
    got = con.execute(f"SELECT score('{model_path('gbm_regressor')}', {cols}) FROM t ORDER BY id").fetchall()
    assert max(abs(g[0] - w) for g, w in zip(got, ref["expected"]["score"])) <= TOL
