#!/usr/bin/env python3
"""Train and export the sqlscore test models plus reference outputs.

Usage (from the repository root):

    .venv/bin/python models/make_models.py [--out models]

Writes <out>/<name>.onnx and <out>/reference/<name>.json for every model.
Everything is seeded, and the exported files are byte-for-byte reproducible
with the pinned versions in python/requirements.txt.

Reference "expected" rule (the engine implements the same rule):
  probabilities = the 2-D float output named "probabilities", else null
  label         = the output named "label", flattened, as strings
                  (ints as decimal text), else null
  score         = probabilities[:, 1] with 2 classes,
                  max(probabilities[row]) with > 2 classes,
                  otherwise the first float/double output that is not
                  "probabilities", flattened to one value per row.
"""

import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper

import onnxruntime as ort
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    IsolationForest,
    RandomForestClassifier,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import OneClassSVM
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import (
    DoubleTensorType,
    FloatTensorType,
    Int64TensorType,
    StringTensorType,
)

TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
N_TRAIN = 2000
N_REF = 32
# OneClassSVM solver tolerance (see make_demo_models.py: the default 1e-3
# flags ~20% of normal data as anomalous with nu=0.01)
OCSVM_TOL = 1e-7

# weights shared by the 8-feature synthetic problems
W8 = np.array([1.5, -2.0, 0.7, 0.0, 1.1, -0.4, 0.9, -1.3])


# --------------------------------------------------------------------------
# data generators: gen(rng, n) -> inputs dict (and a target where relevant)
# --------------------------------------------------------------------------

def gen_x8(rng, n):
    return rng.normal(0.0, 1.0, size=(n, 8)).astype(np.float32)


def target_binary8(rng, x):
    logit = x.astype(np.float64) @ W8 + 0.5 * x[:, 0] * x[:, 2] + rng.normal(0, 0.7, len(x))
    return (logit > 0).astype(np.int64)


def target_reg8(rng, x):
    x = x.astype(np.float64)
    return x @ W8 * 3.0 + 2.0 * np.sin(x[:, 3] * 2) + x[:, 5] ** 2 + rng.normal(0, 0.3, len(x))


def gen_anomaly8(rng, n, outliers):
    x = rng.normal(0.0, 1.0, size=(n, 8))
    if outliers:
        # last rows: clear outliers
        k = outliers
        x[-k:] = rng.normal(0.0, 1.0, size=(k, 8)) * 1.5 + rng.choice([-6.0, 6.0], size=(k, 8))
    return x.astype(np.float32)


SENSOR_MEAN, SENSOR_STD = 50.0, 5.0


def gen_sensor(rng, n, outliers):
    x = rng.normal(SENSOR_MEAN, SENSOR_STD, size=(n, 1))
    if outliers:
        x[-outliers:, 0] = [80.0, 15.0, 95.5, 2.0][:outliers]
    return x.astype(np.float32)


CITIES = np.array(["paris", "london", "berlin", "madrid", "rome"], dtype=object)
CITY_EFFECT = {"paris": 0.8, "london": 0.3, "berlin": -0.2, "madrid": -0.6, "rome": 0.1}


def gen_customers(rng, n, unseen_city=None):
    city = rng.choice(CITIES, size=n).astype(object)
    if unseen_city is not None:
        city[-1] = unseen_city
    age = rng.uniform(18, 80, size=n).astype(np.float32)
    income = np.round(rng.lognormal(10.5, 0.5, size=n), 2).astype(np.float32)
    return city, age, income


def target_customers(rng, city, age, income):
    eff = np.array([CITY_EFFECT.get(c, 0.0) for c in city])
    logit = eff + 0.04 * (age - 45) + 1.2 * (np.log(income.astype(np.float64)) - 10.5) + rng.normal(0, 0.5, len(city))
    return (logit > 0).astype(np.int64)


def gen_int3(rng, n):
    return np.stack(
        [rng.integers(0, 20, n), rng.integers(0, 5, n), rng.integers(-10, 11, n)], axis=1
    ).astype(np.int64)


def target_int3(rng, x):
    logit = 0.3 * (x[:, 0] - 10) - 0.8 * (x[:, 1] - 2) + 0.15 * x[:, 2] + rng.normal(0, 1, len(x))
    return (logit > 0).astype(np.int64)


def gen_x3_double(rng, n):
    return rng.normal(0.0, 2.0, size=(n, 3)).astype(np.float64)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def no_zipmap(model):
    return {id(model): {"zipmap": False}}


def to_onnx(model, initial_types, options=None):
    onx = convert_sklearn(
        model,
        initial_types=initial_types,
        options=options,
        target_opset=TARGET_OPSET,
    )
    return onx


def finalize(onx, name):
    """Make the file deterministic and self-describing."""
    onx.graph.name = name
    onx.doc_string = ""
    onx.producer_name = "sqlscore/make_models.py (skl2onnx)"
    # skl2onnx collects opset domains in a set: fix their order so that the
    # file does not depend on PYTHONHASHSEED
    opsets = sorted(((o.domain, o.version) for o in onx.opset_import))
    del onx.opset_import[:]
    for domain, version in opsets:
        onx.opset_import.append(helper.make_opsetid(domain, version))
    onnx.checker.check_model(onx)
    return onx


def prepend_cast_input(onx, input_name, to_type_elem, new_elem, shape):
    """Replace graph input `input_name` by one of element type `new_elem`
    followed by a Cast to `to_type_elem` feeding the original consumers."""
    g = onx.graph
    old = [i for i in g.input if i.name == input_name][0]
    casted = input_name + "_cast"
    for node in g.node:
        for k, v in enumerate(node.input):
            if v == input_name:
                node.input[k] = casted
    cast = helper.make_node("Cast", [input_name], [casted], to=to_type_elem, name="CastInput")
    new_input = helper.make_tensor_value_info(input_name, new_elem, shape)
    nodes = [cast] + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    idx = list(g.input).index(old)
    g.input.remove(old)
    g.input.insert(idx, new_input)
    return onx


ELEM_NAMES = {
    TensorProto.FLOAT: "float",
    TensorProto.DOUBLE: "double",
    TensorProto.INT64: "int64",
    TensorProto.STRING: "string",
}


def input_specs(onx):
    specs = []
    for i in onx.graph.input:
        tt = i.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        specs.append({"name": i.name, "type": ELEM_NAMES[tt.elem_type], "shape": shape})
    return specs


def label_to_str(v):
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return repr(float(v))


def expected_from_outputs(names, values):
    outs = dict(zip(names, values))
    probs = outs.get("probabilities")
    if probs is not None and not (isinstance(probs, np.ndarray) and probs.ndim == 2
                                  and probs.dtype in (np.float32, np.float64)):
        probs = None
    label = outs.get("label")
    label_list = None
    if label is not None:
        label_list = [label_to_str(v) for v in np.asarray(label).reshape(-1).tolist()]
    if probs is not None:
        if probs.shape[1] == 2:
            score = probs[:, 1]
        else:
            score = probs.max(axis=1)
    else:
        score = None
        for n, v in zip(names, values):
            if n == "probabilities":
                continue
            if isinstance(v, np.ndarray) and v.dtype in (np.float32, np.float64):
                score = v.reshape(len(v), -1)
                assert score.shape[1] == 1, (n, v.shape)
                score = score[:, 0]
                break
        assert score is not None, names
    return {
        "score": score.tolist(),
        "label": label_list,
        "probabilities": probs.tolist() if probs is not None else None,
    }


def json_value(v):
    if isinstance(v, np.ndarray):
        if v.dtype == object:
            return [json_value(x) for x in v.tolist()]
        return v.tolist()
    if isinstance(v, list):
        return [json_value(x) for x in v]
    if isinstance(v, bytes):
        return v.decode("utf-8")
    return v


def format_json(obj, indent=0):
    """json with one line per row: nested dicts are indented, lists of
    lists get one inner list per line, other values are compact."""
    pad = " " * indent
    if isinstance(obj, dict):
        items = [
            f'{pad}  {json.dumps(k)}: {format_json(v, indent + 2).lstrip()}'
            for k, v in obj.items()
        ]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}" + ("\n" if indent == 0 else "")
    if isinstance(obj, list) and obj and all(isinstance(x, (list, dict)) for x in obj):
        rows = [pad + "  " + json.dumps(x, separators=(",", ":")) for x in obj]
        return "[\n" + ",\n".join(rows) + f"\n{pad}]"
    return json.dumps(obj, separators=(",", ":"))


def write_model(out_dir, name, onx, kind, feeds, sk_check=None):
    """Save model, run it in onnxruntime and write the reference JSON.

    feeds: {input_name: 2-D numpy array} already in the graph input dtype.
    sk_check: optional callable(outputs_dict) doing sanity checks vs sklearn.
    """
    path = os.path.join(out_dir, name + ".onnx")
    onnx.save_model(onx, path)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(None, feeds)
    if sk_check is not None:
        sk_check(dict(zip(names, values)))
    rows = {len(v) for v in feeds.values()}
    assert rows == {N_REF}, rows
    ref = {
        "model": name + ".onnx",
        "kind": kind,
        "inputs": input_specs(onx),
        "rows": N_REF,
        "columns": {k: json_value(v) for k, v in feeds.items()},
        "output_specs": [
            {"name": o.name, "type": o.type, "shape": o.shape} for o in sess.get_outputs()
        ],
        "outputs": {n: json_value(v) for n, v in zip(names, values)},
        "expected": expected_from_outputs(names, values),
    }
    ref_dir = os.path.join(out_dir, "reference")
    os.makedirs(ref_dir, exist_ok=True)
    with open(os.path.join(ref_dir, name + ".json"), "w") as f:
        f.write(format_json(ref))
    shapes = ", ".join(f"{o.name}:{o.type}{o.shape}" for o in sess.get_outputs())
    print(f"{name:20s} {os.path.getsize(path):8d} B  outputs: {shapes}")


def close(a, b, tol=1e-4):
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    assert a.shape == b.shape, (a.shape, b.shape)
    err = np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))
    assert err < tol, err


# --------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------

def build_all(out_dir):
    # 1. logistic_binary
    rng = np.random.default_rng(1)
    x = gen_x8(rng, N_TRAIN)
    y = target_binary8(rng, x)
    m = LogisticRegression(max_iter=1000).fit(x, y)
    onx = to_onnx(m, [("X", FloatTensorType([None, 8]))], no_zipmap(m))
    xr = gen_x8(np.random.default_rng(101), N_REF)
    write_model(out_dir, "logistic_binary", finalize(onx, "logistic_binary"), "binary",
                {"X": xr},
                lambda o: close(o["probabilities"], m.predict_proba(xr)))

    # 2. rf_3class (iris, string labels)
    iris = load_iris()
    xi = iris.data.astype(np.float32)
    yi = np.array(iris.target_names, dtype=object)[iris.target]
    m = RandomForestClassifier(n_estimators=20, max_depth=5, random_state=2).fit(xi, yi)
    onx = to_onnx(m, [("X", FloatTensorType([None, 4]))], no_zipmap(m))
    r = np.random.default_rng(102)
    # rows: iris samples with a little jitter (same distribution as training)
    idx = r.choice(len(xi), N_REF, replace=False)
    xr = np.round(xi[idx] + r.normal(0, 0.1, size=(N_REF, 4)), 2).astype(np.float32)
    write_model(out_dir, "rf_3class", finalize(onx, "rf_3class"), "multiclass",
                {"X": xr},
                lambda o: close(o["probabilities"], m.predict_proba(xr)))

    # 3. gbm_regressor
    rng = np.random.default_rng(3)
    x = gen_x8(rng, N_TRAIN)
    y = target_reg8(rng, x)
    m = GradientBoostingRegressor(n_estimators=100, max_depth=3, random_state=3).fit(x, y)
    onx = to_onnx(m, [("X", FloatTensorType([None, 8]))])
    xr = gen_x8(np.random.default_rng(103), N_REF)
    write_model(out_dir, "gbm_regressor", finalize(onx, "gbm_regressor"), "regressor",
                {"X": xr},
                lambda o: close(o["variable"], m.predict(xr), 1e-3))

    # 4. gbm_classifier
    rng = np.random.default_rng(4)
    x = gen_x8(rng, N_TRAIN)
    y = target_binary8(rng, x)
    m = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=4).fit(x, y)
    onx = to_onnx(m, [("X", FloatTensorType([None, 8]))], no_zipmap(m))
    xr = gen_x8(np.random.default_rng(104), N_REF)
    write_model(out_dir, "gbm_classifier", finalize(onx, "gbm_classifier"), "binary",
                {"X": xr},
                lambda o: close(o["probabilities"], m.predict_proba(xr)))

    # 5. isolation_forest
    rng = np.random.default_rng(5)
    x = gen_anomaly8(rng, N_TRAIN, 0)
    m = IsolationForest(n_estimators=100, random_state=5).fit(x)
    onx = to_onnx(m, [("X", FloatTensorType([None, 8]))])
    xr = gen_anomaly8(np.random.default_rng(105), N_REF, 4)

    def chk_if(o):
        close(o["scores"], m.decision_function(xr), 1e-4)
        assert (np.asarray(o["label"]).reshape(-1) == m.predict(xr)).all()
        assert (np.asarray(o["label"]).reshape(-1)[-4:] == -1).all()

    write_model(out_dir, "isolation_forest", finalize(onx, "isolation_forest"), "anomaly",
                {"X": xr}, chk_if)

    # 6. ocsvm_pipeline (1 sensor value)
    rng = np.random.default_rng(6)
    x = gen_sensor(rng, N_TRAIN, 0)
    m = Pipeline([("scaler", StandardScaler()),
                  ("ocsvm", OneClassSVM(kernel="rbf", nu=0.01, gamma="scale",
                                         tol=OCSVM_TOL))]).fit(x)
    onx = to_onnx(m, [("X", FloatTensorType([None, 1]))])
    xr = gen_sensor(np.random.default_rng(106), N_REF, 4)

    def chk_svm(o):
        ours = np.asarray(o["scores"], dtype=np.float64).reshape(-1)
        theirs = m.decision_function(xr)
        assert np.max(np.abs(ours - theirs)) < 1e-5, np.max(np.abs(ours - theirs))
        lab = np.asarray(o["label"]).reshape(-1)
        clear = np.abs(theirs) > 1e-5
        assert (lab[clear] == m.predict(xr)[clear]).all()
        assert (lab[-4:] == -1).all()

    write_model(out_dir, "ocsvm_pipeline", finalize(onx, "ocsvm_pipeline"), "anomaly",
                {"X": xr}, chk_svm)

    # 7. column_transformer (separate named inputs city / age / income)
    rng = np.random.default_rng(7)
    city, age, income = gen_customers(rng, N_TRAIN)
    y = target_customers(rng, city, age, income)
    xt = np.empty((N_TRAIN, 3), dtype=object)
    xt[:, 0], xt[:, 1], xt[:, 2] = city, age, income
    pre = ColumnTransformer([
        ("city", OneHotEncoder(handle_unknown="ignore"), [0]),
        ("num", StandardScaler(), [1, 2]),
    ])
    m = Pipeline([("pre", pre), ("clf", LogisticRegression(max_iter=1000))]).fit(xt, y)
    onx = to_onnx(m, [("city", StringTensorType([None, 1])),
                      ("age", FloatTensorType([None, 1])),
                      ("income", FloatTensorType([None, 1]))],
                  no_zipmap(m))
    rc, ra, ri = gen_customers(np.random.default_rng(107), N_REF, unseen_city="tokyo")
    xrt = np.empty((N_REF, 3), dtype=object)
    xrt[:, 0], xrt[:, 1], xrt[:, 2] = rc, ra, ri
    feeds = {
        "city": rc.reshape(-1, 1),
        "age": ra.reshape(-1, 1),
        "income": ri.reshape(-1, 1),
    }
    write_model(out_dir, "column_transformer", finalize(onx, "column_transformer"), "binary",
                feeds,
                lambda o: close(o["probabilities"], m.predict_proba(xrt)))

    # 8. int64_model
    rng = np.random.default_rng(8)
    x = gen_int3(rng, N_TRAIN)
    y = target_int3(rng, x)
    m = LogisticRegression(max_iter=1000).fit(x, y)
    int64_mode = "direct"
    try:
        onx = to_onnx(m, [("X", Int64TensorType([None, 3]))], no_zipmap(m))
        ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as e:  # pragma: no cover - fallback path
        print("int64 direct export failed, using Cast wrapper:", e, file=sys.stderr)
        int64_mode = "cast"
        onx = to_onnx(m, [("X", FloatTensorType([None, 3]))], no_zipmap(m))
        onx = prepend_cast_input(onx, "X", TensorProto.FLOAT, TensorProto.INT64, [None, 3])
    xr = gen_int3(np.random.default_rng(108), N_REF)
    write_model(out_dir, "int64_model", finalize(onx, "int64_model"), "binary",
                {"X": xr},
                lambda o: close(o["probabilities"], m.predict_proba(xr)))
    print(f"  (int64_model export mode: {int64_mode})")

    # 9. float64_model
    rng = np.random.default_rng(9)
    x = gen_x3_double(rng, N_TRAIN)
    y = x @ np.array([2.5, -1.25, 0.5]) + 7.0 + rng.normal(0, 0.1, N_TRAIN)
    m = LinearRegression().fit(x, y)
    onx = to_onnx(m, [("X", DoubleTensorType([None, 3]))])
    xr = gen_x3_double(np.random.default_rng(109), N_REF)
    write_model(out_dir, "float64_model", finalize(onx, "float64_model"), "regressor",
                {"X": xr},
                lambda o: close(o["variable"], m.predict(xr), 1e-10))


ONNX_DTYPES = {"float": np.float32, "double": np.float64, "int64": np.int64, "string": object}


def verify_references(out_dir):
    """Reload every reference file, rebuild the inputs from its JSON (as the
    engine's tests will) and check onnxruntime reproduces "outputs" exactly."""
    ref_dir = os.path.join(out_dir, "reference")
    for fn in sorted(os.listdir(ref_dir)):
        with open(os.path.join(ref_dir, fn)) as f:
            ref = json.load(f)
        sess = ort.InferenceSession(os.path.join(out_dir, ref["model"]),
                                    providers=["CPUExecutionProvider"])
        feeds = {
            i["name"]: np.array(ref["columns"][i["name"]], dtype=ONNX_DTYPES[i["type"]])
            for i in ref["inputs"]
        }
        for i in ref["inputs"]:
            assert feeds[i["name"]].shape == (ref["rows"], i["shape"][1]), (fn, i)
        names = [o.name for o in sess.get_outputs()]
        values = sess.run(None, feeds)
        for n, v in zip(names, values):
            assert json_value(v) == ref["outputs"][n], (fn, n)
        assert expected_from_outputs(names, values) == ref["expected"], fn
        assert len(ref["expected"]["score"]) == ref["rows"], fn
    print("reference files verified")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)),
                    help="output directory (default: the models/ directory)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    build_all(args.out)
    verify_references(args.out)


if __name__ == "__main__":
    main()
