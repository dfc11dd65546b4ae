"""The evaluator setting (`sqlscore_engine`), the registry's `engine` column, and classifiers
whose probabilities come out of a ZipMap, through SQL."""
import json

import onnx
import pytest
from onnx import TensorProto, helper

from conftest import MODELS, register

NATIVE = MODELS / "native"


def rounder(path):
    """X float[N, 3] -> Round -> Y: valid for ONNX Runtime, not an operator the native evaluator has."""
    graph = helper.make_graph(
        [helper.make_node("Round", ["X"], ["Y"])], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return str(path)


def test_model_list_says_which_evaluator_and_why(con, tmp_path):
    register(con, "churn", "logistic_binary")
    con.execute("INSERT INTO sqlscore_models FROM sqlscore_register('rounder', ?)", [rounder(tmp_path / "r.onnx")])
    rows = dict((r[0], r[1:]) for r in con.execute(
        "SELECT name, engine, engine_reason FROM sqlscore_model_list ORDER BY name").fetchall())
    assert rows["churn"] == ("native", None)
    assert rows["rounder"][0] == "onnxruntime"
    assert "Round" in rows["rounder"][1]


def test_the_setting_picks_the_evaluator(con, tmp_path):
    con.execute("INSERT INTO sqlscore_models FROM sqlscore_register('rounder', ?)", [rounder(tmp_path / "r.onnx")])
    assert con.execute("SELECT score('rounder', 0.4, 2.5, 7.0)").fetchone()[0] == 0.0  # auto: ONNX Runtime
    con.execute("SET sqlscore_engine = 'native'")
    with pytest.raises(Exception) as e:
        con.execute("SELECT score('rounder', 0.4, 2.5, 7.0)").fetchall()
    assert "rounder" in str(e.value) and "Round" in str(e.value) and "sqlscore_engine" in str(e.value)
    con.execute("SET sqlscore_engine = 'onnxruntime'")
    assert con.execute("SELECT score('rounder', 0.4, 2.5, 7.0)").fetchone()[0] == 0.0
    con.execute("SET sqlscore_engine = 'sometimes'")
    with pytest.raises(Exception, match="sqlscore_engine"):
        con.execute("SELECT score('rounder', 0.4, 2.5, 7.0)").fetchall()


@pytest.mark.parametrize("engine", ["native", "onnxruntime"])
@pytest.mark.parametrize("name", ["catboost_clf_3class", "catboost_clf_binary", "skl_logreg_binary_zipmap",
                                  "skl_rf_3class_strlabels_zipmap", "lgbm_clf_binary_nan_zipmap"])
def test_zipmap_classifiers_give_probabilities(con, name, engine):
    """CatBoost always exports a ZipMap; skl2onnx and onnxmltools do by default. score,
    predict_proba and score_all read their probabilities like any classifier's."""
    spec = json.loads((NATIVE / f"{name}.json").read_text())
    con.execute(f"SET sqlscore_engine = '{engine}'")
    con.execute("INSERT INTO sqlscore_models FROM sqlscore_register(?, ?)", [name, str(NATIVE / f"{name}.onnx")])
    (inp,) = spec["inputs"]
    rows = spec["columns"][inp["name"]]
    width = len(rows[0])
    con.execute(f"CREATE TABLE t AS SELECT * FROM (VALUES {', '.join(str(tuple([i] + [float('nan') if v is None else v for v in r])).replace('nan', chr(39) + 'nan' + chr(39) + '::DOUBLE') for i, r in enumerate(rows))}) v(id, {', '.join(f'x{k}' for k in range(width))})")
    cols = ", ".join(f"x{k}" for k in range(width))
    zipmap = next(v for k, v in spec["outputs"].items() if isinstance(v[0], dict))
    labels = [str(v) for v in next(v for k, v in spec["outputs"].items() if not isinstance(v[0], dict))]
    got = con.execute(f"SELECT predict_proba('{name}', {cols}), predict('{name}', {cols}), score('{name}', {cols}) "
                      "FROM t ORDER BY id").fetchall()
    for (proba, label, score), want, want_label in zip(got, zipmap, labels):
        want = list(want.values())
        assert max(abs(p - w) for p, w in zip(proba, want)) <= 1e-5
        assert label == want_label
        assert score == pytest.approx(want[1] if len(want) == 2 else max(want), abs=1e-5)
    first = json.loads(con.execute(f"SELECT score_all('{name}', {cols}) FROM t ORDER BY id LIMIT 1").fetchone()[0])
    assert any(isinstance(v, list) and len(v) == len(zipmap[0]) for v in first.values()), first
