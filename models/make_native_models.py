#!/usr/bin/env python3
"""Models exported by the real converters, with ONNX Runtime reference outputs,
for comparing the native evaluator with ORT.

Usage (from the repository root):

    /tmp/genvenv/bin/python models/make_native_models.py [--out models/native] [--only NAME ...]

Writes <out>/<name>.onnx, <out>/<name>.json, <out>/README.md and
<out>/requirements-gen.txt.  Everything is seeded; a rerun with the pinned
versions below gives the same bytes.

The scikit-learn models (skl2onnx) need only the project's venv
(python/requirements.txt).  The LightGBM / XGBoost / CatBoost models need a
separate, throwaway venv; these files are generated once and committed, so
`make test` never needs those packages.  Groups whose packages are missing are
skipped (their committed files are left as they are).  Pins used for the
committed files (the same as <out>/requirements-gen.txt; Python 3.11.7):

    python3.11 -m venv /tmp/genvenv
    /tmp/genvenv/bin/pip install -r models/native/requirements-gen.txt

    numpy==2.3.5  scipy==1.17.1  scikit-learn==1.7.2  skl2onnx==1.20.0
    onnx==1.19.1  onnxruntime==1.32.0  protobuf==7.36.2
    lightgbm==4.7.0  xgboost==3.2.0  catboost==1.2.10
    onnxmltools==1.16.0  onnxconverter-common==1.16.0

Reference JSON (<name>.json):
  model         file name of the .onnx
  producer      converter (and training library) with versions
  ops           sorted distinct op_types in the graph
  opset_import  {domain: version} ("" = ai.onnx)
  inputs        [{"name", "type" (float|double|int64|string), "shape"}]
  rows          64
  columns       {input_name: row-major list of rows}.  Float values are
                exactly representable in float32: multiples of 1/256, except
                in "threshold" rows, which hold float32 split thresholds
                copied from the graph; NaN is written as null (JSON has no
                NaN).
  output_specs  [{"name", "type", "shape"}] as onnxruntime reports them
  outputs       {output_name: value.tolist()} from onnxruntime 1.32
                (CPUExecutionProvider, intra_op_num_threads=1, default graph
                optimisations).  ZipMap outputs (sequence of maps) are a list
                of {str(class): prob} dicts, in ORT's key order.  NaN / inf in
                outputs would be written as null / "inf" / "-inf".
  row_notes     which rows are special: "nan" rows (NaN-aware models),
                "threshold" rows (some features set exactly to split thresholds
                of the graph's first tree ensemble), "outlier" rows, "unseen"
                categories
  ml_attrs      per ai.onnx.ml op_type, the distinct values of the attributes
                that change its semantics (post_transform, aggregate_function,
                nodes_modes, nodes_missing_value_tracks_true, kernel_type, ...)
  check         ORT vs the source library over the 64 rows (a sanity check of
                the converter, not of ORT): max abs diffs of predict_proba /
                predict / decision_function, and label mismatches
"""

import argparse
import importlib
import importlib.util
import json
import math
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

import sklearn
import skl2onnx
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import (
    DoubleTensorType,
    FloatTensorType,
    Int64TensorType,
    StringTensorType,
)

# The reference format is make_models.py's: one definition of an input spec.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_models import input_specs  # noqa: E402

N_REF = 64
OPSET = {"": 17, "ai.onnx.ml": 3}
HERE = os.path.dirname(os.path.abspath(__file__))

PINS = [
    # exact pins of /tmp/genvenv used for the committed files (pip freeze);
    # the first block is what the generator imports, the rest their deps
    "numpy==2.3.5",
    "scipy==1.17.1",
    "scikit-learn==1.7.2",
    "skl2onnx==1.20.0",
    "onnx==1.19.1",
    "onnxruntime==1.32.0",
    "protobuf==7.36.2",
    "lightgbm==4.7.0",
    "xgboost==3.2.0",
    "catboost==1.2.10",
    "onnxmltools==1.16.0",
    "onnxconverter-common==1.16.0",
    # their dependencies, as installed
    "cloudpickle==3.1.3", "contourpy==1.3.3", "cycler==0.12.1", "flatbuffers==25.12.19",
    "fonttools==4.68.0", "graphviz==0.21", "joblib==1.6.0", "kiwisolver==1.5.1",
    "matplotlib==3.11.2", "ml_dtypes==0.6.0", "narwhals==2.29.0", "nvidia-nccl-cu12==2.32.3",
    "packaging==26.4", "pandas==3.1.1", "pillow==13.0.0", "plotly==7.1.0", "pyparsing==3.3.3",
    "python-dateutil==4.0.0", "six==1.17.0", "threadpoolctl==3.8.0",
    "typing_extensions==4.16.0", "tzdata==2026.6",
]


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------

Q = 256.0  # every float input is a multiple of 1/256: exact in float32 and float64


def quant(x):
    return np.round(np.asarray(x, dtype=np.float64) * Q) / Q


def gen_tab(rng, n, f):
    """Mixed tabular features: normal, uniform, skewed, small integers."""
    cols = []
    for j in range(f):
        k = j % 4
        if k == 0:
            c = rng.normal(0.5 * j, 1.0 + 0.1 * j, n)
        elif k == 1:
            c = rng.uniform(-3.0, 3.0, n)
        elif k == 2:
            c = rng.lognormal(0.0, 0.6, n)
        else:
            c = rng.integers(0, 10, n).astype(np.float64)
        cols.append(c)
    return quant(np.stack(cols, axis=1))


def score_tab(x):
    """A nonlinear score on the first 8 (or fewer) features."""
    x = np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0)
    f = x.shape[1]
    s = 1.2 * x[:, 0] - 0.8 * x[:, 1 % f]
    if f > 2:
        s += 0.9 * np.log1p(x[:, 2]) + 0.3 * np.sin(2 * x[:, 1]) * x[:, 0]
    if f > 3:
        s += 0.25 * (x[:, 3] - 4.5)
    if f > 4:
        s += 0.5 * x[:, 4] * (x[:, 5 % f] > 0)
    if f > 6:
        s += -0.7 * np.abs(x[:, 6]) + 0.4 * x[:, 7 % f]
    return s


def y_reg(rng, x):
    return 3.0 * score_tab(x) + rng.normal(0, 0.3, len(x))


def y_bin(rng, x):
    return (score_tab(x) + rng.normal(0, 0.6, len(x)) > np.median(score_tab(x))).astype(np.int64)


def y_multi(rng, x, k=3):
    s = score_tab(x) + rng.normal(0, 0.5, len(x))
    cuts = np.quantile(s, np.linspace(0, 1, k + 1)[1:-1])
    return np.searchsorted(cuts, s).astype(np.int64)


def add_nans(rng, x, frac=0.12, cols=(0, 2, 5)):
    """NaNs in some columns; the target will depend on missingness."""
    x = x.copy()
    for j in cols:
        if j < x.shape[1]:
            x[rng.random(len(x)) < frac, j] = np.nan
    return x


def nan_effect(x):
    """Missingness moves the target, so trees learn both NaN directions."""
    e = np.zeros(len(x))
    if x.shape[1] > 0:
        e += 1.5 * np.isnan(x[:, 0])
    if x.shape[1] > 2:
        e -= 1.0 * np.isnan(x[:, 2])
    return e


def nan_rows(x, f):
    """Overwrite the last 8 rows with NaN patterns (incl. one all-NaN row)."""
    x = x.copy()
    pats = [[0], [2], [5 % f], [0, 2], [1, 3 % f], list(range(f)), [f - 1], [0, f - 1]]
    for r, p in enumerate(pats):
        x[N_REF - 8 + r, p] = np.nan
    return x


def ref_rows(seed, f, nan=False):
    x = gen_tab(np.random.default_rng(seed), N_REF, f)
    if nan:
        x = nan_rows(x, f)
    return x


# --------------------------------------------------------------------------
# ONNX helpers
# --------------------------------------------------------------------------

NP_TYPES = {"float": np.float32, "double": np.float64, "int64": np.int64, "string": object}


def _patch_skl2onnx_hist_gb():
    """skl2onnx 1.20 appends the Python bool False to
    nodes_missing_value_tracks_true for HistGradientBoosting leaves, which
    protobuf 7 refuses in an ints attribute ("Expected an int, got a
    boolean"). Cast it to int; the exported graph is what skl2onnx writes with
    an older protobuf."""
    from skl2onnx.common import tree_ensemble as te
    if getattr(te.add_node, "_sqlscore_patched", False):
        return
    orig = te.add_node

    def add_node(*args, nodes_missing_value_tracks_true=0, **kwargs):
        return orig(*args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true),
                    **kwargs)

    add_node._sqlscore_patched = True
    te.add_node = add_node


_patch_skl2onnx_hist_gb()


def skl(model, initial_types, options=None, opset=None):
    return convert_sklearn(model, initial_types=initial_types, options=options,
                           target_opset=opset or OPSET)


def nozip(model):
    return {id(model): {"zipmap": False}}


VOLATILE_METADATA = ("train_finish_time", "model_guid")  # CatBoost


def finalize(onx, name):
    """Make the file reproducible; otherwise the converter's output is kept
    as is: graph name (skl2onnx/onnxmltools use a random uuid) = model name,
    opset imports in a fixed order (skl2onnx collects domains in a set) with
    duplicates dropped, CatBoost's train time and random model guid removed
    from metadata_props."""
    onx.graph.name = name
    props = [(p.key, p.value) for p in onx.metadata_props if p.key not in VOLATILE_METADATA]
    del onx.metadata_props[:]
    for k, v in props:
        onx.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    seen = {}
    for o in onx.opset_import:
        seen[o.domain] = max(seen.get(o.domain, 0), o.version)
    del onx.opset_import[:]
    for d in sorted(seen):
        onx.opset_import.append(helper.make_opsetid(d, seen[d]))
    onnx.checker.check_model(onx)
    return onx


def all_nodes(graph):
    for n in graph.node:
        yield n
        for a in n.attribute:
            if a.g is not None and a.HasField("g"):
                yield from all_nodes(a.g)
            for g in a.graphs:
                yield from all_nodes(g)


def attr(node, name):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return None


def thresholds_by_feature(onx):
    """Split thresholds per input column of the first tree ensemble that reads
    a graph input directly, or None."""
    inputs = {i.name for i in onx.graph.input}
    for n in onx.graph.node:
        if n.op_type.startswith("TreeEnsemble") and n.input[0] in inputs:
            vals = attr(n, "nodes_values")
            if not vals:
                t = attr(n, "nodes_values_as_tensor")
                vals = numpy_helper.to_array(t).tolist() if t is not None else []
            feats = attr(n, "nodes_featureids")
            modes = attr(n, "nodes_modes")
            out = {}
            for v, f, m in zip(vals, feats, modes):
                m = m.decode() if isinstance(m, bytes) else m
                if m != "LEAF" and math.isfinite(v):
                    out.setdefault(int(f), []).append(v)
            return n.input[0], out
    return None


ML_ATTRS = ("post_transform", "aggregate_function", "nodes_modes",
            "nodes_missing_value_tracks_true", "kernel_type", "multi_class", "norm",
            "n_targets", "binarize_threshold", "replaced_value_float", "zeros", "default_int64",
            "default_float")


def ml_attrs(onx):
    """Distinct values of the attributes that change an ai.onnx.ml op's
    semantics, per op_type (merged over all nodes of that type)."""
    out = {}
    for n in all_nodes(onx.graph):
        if n.domain != "ai.onnx.ml":
            continue
        d = out.setdefault(n.op_type, {})
        for a in n.attribute:
            if a.name not in ML_ATTRS:
                continue
            v = helper.get_attribute_value(a)
            vals = v if isinstance(v, (list, tuple)) else [v]
            vals = [clean(x.decode() if isinstance(x, bytes) else x) for x in vals]
            d[a.name] = sorted(set(d.get(a.name, [])) | set(vals),
                               key=lambda v: (v is None, str(v)))
        # present but empty attributes are listed as []
    return {k: {a: out[k][a] for a in sorted(out[k])} for k in sorted(out)}


def clean(v):
    """JSON-safe value: NaN -> null, inf -> "inf"."""
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    if isinstance(v, list):
        return [clean(x) for x in v]
    if isinstance(v, dict):
        return {str(k): clean(x) for k, x in v.items()}
    if isinstance(v, bytes):
        return v.decode("utf-8")
    return v


def json_value(v):
    if isinstance(v, np.ndarray):
        if v.dtype == object:
            return [json_value(x) for x in v.tolist()]
        return clean(v.tolist())
    if isinstance(v, list):
        return [json_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): clean(float(x)) if isinstance(x, (float, np.floating)) else json_value(x)
                for k, x in v.items()}
    return clean(v)


def format_json(obj, indent=0):
    """One line per row: dicts indented, lists of lists/dicts one item a line."""
    pad = " " * indent
    if isinstance(obj, dict) and obj:
        items = [f'{pad}  {json.dumps(k)}: {format_json(v, indent + 2).lstrip()}'
                 for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}" + ("\n" if indent == 0 else "")
    if isinstance(obj, list) and obj and all(isinstance(x, (list, dict)) for x in obj):
        rows = [pad + "  " + json.dumps(x, separators=(",", ":"), allow_nan=False) for x in obj]
        return "[\n" + ",\n".join(rows) + f"\n{pad}]"
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def session(path_or_bytes):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path_or_bytes, so, providers=["CPUExecutionProvider"])


def to_np(out):
    """ORT output -> array of [rows, k] for comparisons (ZipMap -> matrix)."""
    if isinstance(out, list):
        return np.array([[float(v) for v in d.values()] for d in out])
    return np.asarray(out)


def maxdiff(a, b):
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b)))


# --------------------------------------------------------------------------
# writer
# --------------------------------------------------------------------------

class Writer:
    def __init__(self, out_dir, only):
        self.out = out_dir
        self.only = set(only or [])
        self.written = []
        self.skipped = []

    def skip(self, name, reason):
        self.skipped.append((name, reason))
        print(f"{name:38s} SKIPPED: {reason}", flush=True)

    def want(self, name):
        return not self.only or name in self.only

    def add(self, name, onx, producer, feeds, check=None, row_notes=None,
            threshold_rows=None):
        """feeds: {input: 2-D array in the input's dtype}.
        check: callable(outputs: dict) -> (what, maxdiff) vs the source library.
        threshold_rows: row indices where features are set to exact split
        thresholds of the first tree ensemble (before running ORT)."""
        onx = finalize(onx, name)
        notes = dict(row_notes or {})
        if threshold_rows:
            t = thresholds_by_feature(onx)
            if t is not None:
                inp, by_f = t
                x = feeds[inp].copy()
                feats = sorted(by_f)
                for k, r in enumerate(threshold_rows):
                    for j in feats[k % 2::2] if len(feats) > 1 else feats:
                        vals = sorted(set(by_f[j]))
                        x[r, j] = vals[(r * 7 + j * 3) % len(vals)]
                feeds = dict(feeds, **{inp: x})
                notes["threshold"] = list(threshold_rows)
        path = os.path.join(self.out, name + ".onnx")
        data = onx.SerializeToString()
        with open(path, "wb") as f:
            f.write(data)
        sess = session(path)
        names = [o.name for o in sess.get_outputs()]
        values = sess.run(None, feeds)
        outs = dict(zip(names, values))
        chk = None
        if check is not None:
            chk = check(outs, feeds)
        assert {len(v) for v in feeds.values()} == {N_REF}
        ops = sorted({n.op_type for n in all_nodes(onx.graph)})
        ref = {
            "model": name + ".onnx",
            "producer": producer,
            "ops": ops,
            "opset_import": {o.domain: o.version for o in onx.opset_import},
            "ml_attrs": ml_attrs(onx),
            "inputs": input_specs(onx),
            "rows": N_REF,
            "columns": {k: json_value(v) for k, v in feeds.items()},
            "output_specs": [{"name": o.name, "type": o.type, "shape": o.shape}
                             for o in sess.get_outputs()],
            "outputs": {n: json_value(v) for n, v in outs.items()},
            "row_notes": notes,
            "check": chk,
        }
        with open(os.path.join(self.out, name + ".json"), "w") as f:
            f.write(format_json(ref))
        self.written.append(name)
        print(f"{name:34s} {len(data):7d} B  {fmt_check(chk):42s} {' '.join(ops)}", flush=True)


def thr_rows():
    return list(range(N_REF - 16, N_REF - 8))


def pick(outs, *keys):
    for k in keys:
        if k in outs:
            return outs[k]
    raise KeyError(f"none of {keys} in {list(outs)}")


def chk_proba(m, xs=None):
    def f(outs, feeds):
        x = xs if xs is not None else next(iter(feeds.values()))
        p = to_np(pick(outs, "probabilities", "output_probability"))
        return {"predict_proba max_abs_diff": maxdiff(p, m.predict_proba(x))}
    return f


def chk_pred(m, key="variable", xs=None, fn="predict", col=None):
    """col: compare only this output column (binary SVC: ORT's
    SVMClassifier writes [decision, -decision])."""
    def f(outs, feeds):
        x = xs if xs is not None else next(iter(feeds.values()))
        ours = to_np(outs[key]).reshape(len(x), -1)
        theirs = np.asarray(getattr(m, fn)(x)).reshape(len(x), -1)
        name = f"{fn} max_abs_diff"
        if col is not None:
            ours = ours[:, col:col + 1]
            name = f"{fn} vs {key}[:, {col}] max_abs_diff"
        return {name: maxdiff(ours, theirs)}
    return f


def chk_label(m, xs=None):
    def f(outs, feeds):
        x = xs if xs is not None else next(iter(feeds.values()))
        ours = np.asarray(pick(outs, "label", "output_label")).reshape(-1)
        theirs = np.asarray(m.predict(x)).reshape(-1)
        return {"predict label mismatches": int(np.sum(ours.astype(str) != theirs.astype(str)))}
    return f


def chk_both(*fs):
    def f(outs, feeds):
        res = {}
        for g in fs:
            res.update(g(outs, feeds))
        return res
    return f


def fmt_check(chk):
    if not chk:
        return ""
    parts = []
    for k, v in chk.items():
        if k.endswith("mismatches"):
            parts.append(f"{v} label diffs")
        else:
            parts.append(f"{k.split()[0]} {v:.1e}")
    return ", ".join(parts)


# --------------------------------------------------------------------------
# scikit-learn / skl2onnx
# --------------------------------------------------------------------------

def build_sklearn(w):
    from sklearn.compose import ColumnTransformer
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        IsolationForest,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge, SGDClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import (
        Binarizer,
        KBinsDiscretizer,
        MinMaxScaler,
        Normalizer,
        OneHotEncoder,
        StandardScaler,
    )
    from sklearn.svm import SVC, SVR, LinearSVC, OneClassSVM
    from sklearn.tree import DecisionTreeClassifier

    P = f"skl2onnx {skl2onnx.__version__} (scikit-learn {sklearn.__version__})"
    F8 = [("X", FloatTensorType([None, 8]))]
    F4 = [("X", FloatTensorType([None, 4]))]

    def data(seed, n, f, nan=False):
        rng = np.random.default_rng(seed)
        x = gen_tab(rng, n, f)
        if nan:
            x = add_nans(rng, x)
        return rng, x

    # ---- classifiers with ZipMap (default options) -------------------------
    name = "skl_logreg_binary_zipmap"
    if w.want(name):
        rng, x = data(11, 1000, 8)
        m = LogisticRegression(max_iter=2000).fit(x, y_bin(rng, x))
        xr = ref_rows(1011, 8).astype(np.float32)
        w.add(name, skl(m, F8), P, {"X": xr}, chk_proba(m))

    name = "skl_rf_3class_strlabels_zipmap"
    if w.want(name):
        rng, x = data(12, 600, 8)
        labels = np.array(["low", "mid", "high"], dtype=object)
        m = RandomForestClassifier(n_estimators=10, max_depth=6, random_state=12).fit(
            x, labels[y_multi(rng, x)])
        xr = ref_rows(1012, 8).astype(np.float32)
        w.add(name, skl(m, F8), P, {"X": xr}, chk_both(chk_proba(m), chk_label(m)),
              threshold_rows=thr_rows())

    name = "skl_gbc_binary_intlabels_zipmap"
    if w.want(name):
        rng, x = data(13, 800, 8)
        m = GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=13).fit(
            x, np.array([-1, 7])[y_bin(rng, x)])
        xr = ref_rows(1013, 8).astype(np.float32)
        w.add(name, skl(m, F8), P, {"X": xr}, chk_both(chk_proba(m), chk_label(m)),
              threshold_rows=thr_rows())

    # ---- tree ensembles ------------------------------------------------------
    name = "skl_extratrees_reg_d12_30t"
    if w.want(name):
        rng, x = data(14, 130, 8)
        m = ExtraTreesRegressor(n_estimators=30, max_depth=12, random_state=14).fit(x, y_reg(rng, x))
        xr = ref_rows(1014, 8).astype(np.float32)
        w.add(name, skl(m, F8), P, {"X": xr}, chk_pred(m), threshold_rows=thr_rows())

    name = "skl_rf_reg_fullgrown_20t"
    if w.want(name):
        rng, x = data(15, 200, 8)
        m = RandomForestRegressor(n_estimators=20, random_state=15).fit(x, y_reg(rng, x))
        xr = ref_rows(1015, 8).astype(np.float32)
        w.add(name, skl(m, F8), P, {"X": xr}, chk_pred(m), threshold_rows=thr_rows())

    name = "skl_rf_reg_2targets"
    if w.want(name):
        rng, x = data(16, 500, 8)
        y = np.stack([y_reg(rng, x), np.sin(x[:, 1]) * 4 + x[:, 3]], axis=1)
        m = RandomForestRegressor(n_estimators=10, max_depth=6, random_state=16).fit(x, y)
        xr = ref_rows(1016, 8).astype(np.float32)
        w.add(name, skl(m, F8), P, {"X": xr}, chk_pred(m), threshold_rows=thr_rows())

    name = "skl_dtree_4class"
    if w.want(name):
        rng, x = data(17, 800, 8)
        m = DecisionTreeClassifier(max_depth=8, random_state=17).fit(x, y_multi(rng, x, 4))
        xr = ref_rows(1017, 8).astype(np.float32)
        w.add(name, skl(m, F8, nozip(m)), P, {"X": xr},
              chk_both(chk_proba(m), chk_label(m)), threshold_rows=thr_rows())

    name = "skl_gbc_3class"
    if w.want(name):
        rng, x = data(18, 800, 8)
        m = GradientBoostingClassifier(n_estimators=25, max_depth=3, random_state=18).fit(
            x, y_multi(rng, x, 3))
        xr = ref_rows(1018, 8).astype(np.float32)
        w.add(name, skl(m, F8, nozip(m)), P, {"X": xr},
              chk_both(chk_proba(m), chk_label(m)), threshold_rows=thr_rows())

    name = "skl_gbr"
    if w.want(name):
        rng, x = data(19, 800, 8)
        m = GradientBoostingRegressor(n_estimators=50, max_depth=3, random_state=19).fit(x, y_reg(rng, x))
        xr = ref_rows(1019, 8).astype(np.float32)
        w.add(name, skl(m, F8), P, {"X": xr}, chk_pred(m), threshold_rows=thr_rows())

    # ---- HistGradientBoosting (NaN-aware) --------------------------------------
    name = "skl_histgb_clf_binary_nan"
    if w.want(name):
        rng, x = data(20, 1500, 8, nan=True)
        y = (score_tab(x) + nan_effect(x) + rng.normal(0, 0.5, len(x)) > 0.8).astype(np.int64)
        m = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=15, random_state=20).fit(x, y)
        xr = ref_rows(1020, 8, nan=True).astype(np.float32)
        w.add(name, skl(m, F8, nozip(m)), P, {"X": xr},
              chk_both(chk_proba(m), chk_label(m)),
              row_notes={"nan": list(range(N_REF - 8, N_REF))}, threshold_rows=thr_rows())

    name = "skl_histgb_clf_3class_nan"
    if w.want(name):
        rng, x = data(21, 1500, 8, nan=True)
        s = score_tab(x) + nan_effect(x) + rng.normal(0, 0.5, len(x))
        y = np.searchsorted(np.quantile(s, [1 / 3, 2 / 3]), s).astype(np.int64)
        m = HistGradientBoostingClassifier(max_iter=15, max_leaf_nodes=15, random_state=21).fit(x, y)
        xr = ref_rows(1021, 8, nan=True).astype(np.float32)
        w.add(name, skl(m, F8, nozip(m)), P, {"X": xr},
              chk_both(chk_proba(m), chk_label(m)),
              row_notes={"nan": list(range(N_REF - 8, N_REF))}, threshold_rows=thr_rows())

    name = "skl_histgb_reg_nan"
    if w.want(name):
        rng, x = data(22, 1500, 8, nan=True)
        y = y_reg(rng, x) + 3 * nan_effect(x)
        m = HistGradientBoostingRegressor(max_iter=30, max_leaf_nodes=15, random_state=22).fit(x, y)
        xr = ref_rows(1022, 8, nan=True).astype(np.float32)
        w.add(name, skl(m, F8), P, {"X": xr}, chk_pred(m),
              row_notes={"nan": list(range(N_REF - 8, N_REF))}, threshold_rows=thr_rows())

    # ---- SVMs (4 features, small training sets) ------------------------------
    def svm_data(seed, k):
        rng, x = data(seed, 160, 4)
        y = y_bin(rng, x) if k == 2 else y_multi(rng, x, k)
        return x, y

    name = "skl_linearsvc_binary"
    if w.want(name):
        x, y = svm_data(30, 2)
        m = LinearSVC(random_state=30, max_iter=20000).fit(x, y)
        xr = ref_rows(1030, 4).astype(np.float32)
        w.add(name, skl(m, F4), P, {"X": xr},
              chk_both(chk_label(m), chk_pred(m, "probabilities", fn="decision_function")))

    name = "skl_linearsvc_3class"
    if w.want(name):
        x, y = svm_data(31, 3)
        m = LinearSVC(random_state=31, max_iter=20000).fit(x, y)
        xr = ref_rows(1031, 4).astype(np.float32)
        w.add(name, skl(m, F4), P, {"X": xr},
              chk_both(chk_label(m), chk_pred(m, "probabilities", fn="decision_function")))

    for kernel in ("linear", "poly", "rbf", "sigmoid"):
        for k in (2, 3):
            name = f"skl_svc_{kernel}_{'binary' if k == 2 else '3class'}"
            if not w.want(name):
                continue
            seed = 32 + 2 * ["linear", "poly", "rbf", "sigmoid"].index(kernel) + (k - 2)
            x, y = svm_data(seed, k)
            kw = {"degree": 3, "coef0": 1.0} if kernel == "poly" else {}
            if kernel == "sigmoid":
                kw = {"coef0": 0.0, "gamma": 0.05}
            m = SVC(kernel=kernel, C=1.0, random_state=seed, **kw).fit(x, y)
            xr = ref_rows(1000 + seed, 4).astype(np.float32)
            w.add(name, skl(m, F4), P, {"X": xr},
                  chk_both(chk_label(m), chk_pred(m, "probabilities", fn="decision_function",
                                                   col=0 if k == 2 else None)))

    for k in (2, 3):
        name = f"skl_svc_rbf_proba_{'binary' if k == 2 else '3class'}"
        if not w.want(name):
            continue
        seed = 40 + k
        x, y = svm_data(seed, k)
        m = SVC(kernel="rbf", probability=True, random_state=seed).fit(x, y)
        xr = ref_rows(1000 + seed, 4).astype(np.float32)
        w.add(name, skl(m, F4, nozip(m)), P, {"X": xr}, chk_both(chk_label(m), chk_proba(m)))

    name = "skl_svr_rbf"
    if w.want(name):
        rng, x = data(44, 200, 4)
        m = SVR(kernel="rbf", C=3.0, epsilon=0.2).fit(x, y_reg(rng, x))
        xr = ref_rows(1044, 4).astype(np.float32)
        w.add(name, skl(m, F4), P, {"X": xr}, chk_pred(m))

    # ---- linear models ---------------------------------------------------------
    name = "skl_linear_regression"
    if w.want(name):
        rng, x = data(50, 500, 8)
        m = LinearRegression().fit(x, y_reg(rng, x))
        xr = ref_rows(1050, 8).astype(np.float32)
        w.add(name, skl(m, F8), P, {"X": xr}, chk_pred(m))

    name = "skl_ridge"
    if w.want(name):
        rng, x = data(51, 500, 8)
        m = Ridge(alpha=3.0).fit(x, y_reg(rng, x))
        xr = ref_rows(1051, 8).astype(np.float32)
        w.add(name, skl(m, F8), P, {"X": xr}, chk_pred(m))

    name = "skl_logreg_multinomial_3class"
    if w.want(name):
        rng, x = data(52, 800, 8)
        m = LogisticRegression(max_iter=3000).fit(x, y_multi(rng, x, 3))
        xr = ref_rows(1052, 8).astype(np.float32)
        w.add(name, skl(m, F8, nozip(m)), P, {"X": xr}, chk_both(chk_proba(m), chk_label(m)))

    name = "skl_sgd_hinge_3class"
    if w.want(name):
        rng, x = data(53, 800, 8)
        m = SGDClassifier(loss="hinge", random_state=53, max_iter=2000, tol=1e-4).fit(
            StandardScaler().fit_transform(x), y_multi(rng, x, 3))
        xr = ref_rows(1053, 8).astype(np.float32)
        w.add(name, skl(m, F8, nozip(m)), P, {"X": xr}, chk_label(m))

    name = "skl_sgd_log_binary"
    if w.want(name):
        rng, x = data(54, 800, 8)
        m = SGDClassifier(loss="log_loss", random_state=54, max_iter=2000, tol=1e-4).fit(
            x / 4.0, y_bin(rng, x))
        xr = ref_rows(1054, 8).astype(np.float32)
        w.add(name, skl(m, F8, nozip(m)), P, {"X": xr}, chk_both(chk_proba(m), chk_label(m)))

    # ---- pipelines --------------------------------------------------------------
    name = "skl_pipe_scaler_logreg"
    if w.want(name):
        rng, x = data(60, 800, 8)
        m = Pipeline([("sc", StandardScaler()), ("lr", LogisticRegression(max_iter=2000))]).fit(
            x, y_bin(rng, x))
        xr = ref_rows(1060, 8).astype(np.float32)
        w.add(name, skl(m, F8, nozip(m)), P, {"X": xr}, chk_proba(m))

    name = "skl_pipe_minmax_normalizer_linreg"
    if w.want(name):
        rng, x = data(61, 500, 8)
        m = Pipeline([("mm", MinMaxScaler()), ("norm", Normalizer(norm="l2")),
                      ("lin", LinearRegression())]).fit(x, y_reg(rng, x))
        xr = ref_rows(1061, 8).astype(np.float32)
        w.add(name, skl(m, F8), P, {"X": xr}, chk_pred(m))

    name = "skl_pipe_imputer_gbr_nan"
    if w.want(name):
        rng, x = data(62, 800, 8, nan=True)
        m = Pipeline([("imp", SimpleImputer(strategy="mean")),
                      ("gbr", GradientBoostingRegressor(n_estimators=30, max_depth=3,
                                                        random_state=62))]).fit(x, y_reg(rng, x))
        xr = ref_rows(1062, 8, nan=True).astype(np.float32)
        w.add(name, skl(m, F8), P, {"X": xr}, chk_pred(m),
              row_notes={"nan": list(range(N_REF - 8, N_REF))})

    name = "skl_pipe_binarizer_logreg"
    if w.want(name):
        rng, x = data(63, 800, 8)
        m = Pipeline([("bin", Binarizer(threshold=0.5)),
                      ("lr", LogisticRegression(max_iter=2000))]).fit(x, y_bin(rng, x))
        xr = ref_rows(1063, 8).astype(np.float32)
        xr[:4, :] = 0.5  # exactly at the Binarizer threshold (x > t is 1)
        w.add(name, skl(m, F8, nozip(m)), P, {"X": xr}, chk_proba(m),
              row_notes={"at_binarizer_threshold": [0, 1, 2, 3]})

    name = "skl_pipe_columntransformer_onehot"
    if w.want(name):
        colors = np.array(["red", "green", "blue", "grey"], dtype=object)

        def ct_data(rng, n, unseen=False):
            color = rng.choice(colors, n).astype(object)
            size = rng.integers(1, 5, n).astype(np.int64)        # 1..4
            region = rng.choice([10, 20, 30], n).astype(np.int64)
            num = gen_tab(rng, n, 2)
            if unseen:
                color[-3:] = ["purple", "red", ""]
                size[-3:] = [4, 99, -1]
                region[-2:] = [0, 20]
            return color, size, region, num

        def ct_matrix(color, size, region, num):
            xt = np.empty((len(color), 5), dtype=object)
            xt[:, 0], xt[:, 1], xt[:, 2] = color, size, region
            xt[:, 3], xt[:, 4] = num[:, 0], num[:, 1]
            return xt

        rng = np.random.default_rng(64)
        color, size, region, num = ct_data(rng, 1000)
        eff = {"red": 1.0, "green": -0.5, "blue": 0.2, "grey": -0.8}
        s = (np.array([eff[c] for c in color]) + 0.4 * (size - 2.5) - 0.02 * (region - 20)
             + num[:, 0] - 0.5 * num[:, 1] + rng.normal(0, 0.5, 1000))
        y = (s > 0).astype(np.int64)
        pre = ColumnTransformer([
            ("color", OneHotEncoder(handle_unknown="ignore"), [0]),
            ("ints", OneHotEncoder(handle_unknown="ignore"), [1, 2]),
            ("num", StandardScaler(), [3, 4]),
        ])
        m = Pipeline([("pre", pre), ("lr", LogisticRegression(max_iter=2000))]).fit(
            ct_matrix(color, size, region, num), y)
        types = [("color", StringTensorType([None, 1])), ("size", Int64TensorType([None, 1])),
                 ("region", Int64TensorType([None, 1])), ("num", FloatTensorType([None, 2]))]
        try:
            onx = skl(m, types, nozip(m))
        except Exception as e:
            print(f"  {name}: 4-input export failed ({e}); skipped", file=sys.stderr)
            onx = None
        if onx is not None:
            rc, rs, rr, rn = ct_data(np.random.default_rng(1064), N_REF, unseen=True)
            xrt = ct_matrix(rc, rs, rr, rn)
            feeds = {"color": rc.reshape(-1, 1), "size": rs.reshape(-1, 1),
                     "region": rr.reshape(-1, 1), "num": rn.astype(np.float32)}
            w.add(name, onx, P, feeds, chk_proba(m, xs=xrt),
                  row_notes={"unseen": [N_REF - 3, N_REF - 2, N_REF - 1]})

    name = "skl_pipe_kbins_onehot_logreg"
    if w.want(name):
        rng, x = data(65, 800, 8)
        m = Pipeline([("kb", KBinsDiscretizer(n_bins=5, encode="onehot-dense",
                                              strategy="quantile", quantile_method="averaged_inverted_cdf")),
                      ("lr", LogisticRegression(max_iter=2000))]).fit(x, y_bin(rng, x))
        xr = ref_rows(1065, 8).astype(np.float32)
        w.add(name, skl(m, F8, nozip(m)), P, {"X": xr}, chk_proba(m))

    name = "skl_pipe_kbins_ordinal_linreg"
    if w.want(name):
        rng, x = data(66, 800, 8)
        m = Pipeline([("kb", KBinsDiscretizer(n_bins=4, encode="ordinal", strategy="uniform")),
                      ("lin", LinearRegression())]).fit(x, y_reg(rng, x))
        xr = ref_rows(1066, 8).astype(np.float32)
        w.add(name, skl(m, F8), P, {"X": xr}, chk_pred(m))

    name = "skl_pipe_pca_logreg_3class"
    if w.want(name):
        rng, x = data(67, 800, 8)
        m = Pipeline([("pca", PCA(n_components=3, random_state=67)),
                      ("lr", LogisticRegression(max_iter=2000))]).fit(x, y_multi(rng, x, 3))
        xr = ref_rows(1067, 8).astype(np.float32)
        w.add(name, skl(m, F8, nozip(m)), P, {"X": xr}, chk_both(chk_proba(m), chk_label(m)))

    # ---- anomaly -------------------------------------------------------------------
    def iforest(name, seed, max_features):
        rng = np.random.default_rng(seed)
        x = quant(rng.normal(0, 1, (1000, 6)))
        m = IsolationForest(n_estimators=50, max_features=max_features, max_samples=64,
                            contamination=0.05, random_state=seed).fit(x)
        xr = quant(np.random.default_rng(1000 + seed).normal(0, 1, (N_REF, 6)))
        xr[-4:] = quant(np.random.default_rng(2000 + seed).normal(0, 1, (4, 6))
                        + [[6, -6, 6, -6, 6, -6]])
        xr = xr.astype(np.float32)
        notes = {"outlier": list(range(N_REF - 4, N_REF))}
        if m._max_features != 6:
            # skl2onnx 1.20 refuses max_features < n_features ("does not
            # support the case when _max_features=3 != number of given
            # features 6") although its graph (a Gather of
            # estimators_features_ before each tree) handles it; lift the
            # check for the conversion only. The check against
            # decision_function below confirms the graph.
            real = m._max_features
            m._max_features = 6
            try:
                onx = skl(m, [("X", FloatTensorType([None, 6]))])
            finally:
                m._max_features = real
            notes["export"] = "skl2onnx max_features check bypassed (see make_native_models.py)"
        else:
            onx = skl(m, [("X", FloatTensorType([None, 6]))])
        w.add(name, onx, P, {"X": xr},
              chk_both(chk_pred(m, "scores", fn="decision_function"), chk_label(m)),
              row_notes=notes)

    if w.want("skl_isolation_forest_contam"):
        iforest("skl_isolation_forest_contam", 70, 1.0)
    if w.want("skl_isolation_forest_maxfeat"):
        iforest("skl_isolation_forest_maxfeat", 72, 0.5)

    name = "skl_pipe_scaler_ocsvm_rbf"
    if w.want(name):
        rng = np.random.default_rng(71)
        x = quant(rng.normal([10, -5, 100], [2, 1, 15], (600, 3)))
        m = Pipeline([("sc", StandardScaler()),
                      ("svm", OneClassSVM(kernel="rbf", nu=0.05, gamma="scale", tol=1e-7))]).fit(x)
        xr = quant(np.random.default_rng(1071).normal([10, -5, 100], [2, 1, 15], (N_REF, 3)))
        xr[-4:] = [[20, -5, 100], [10, 0, 100], [10, -5, 30], [0, 0, 0]]
        xr = xr.astype(np.float32)
        w.add(name, skl(m, [("X", FloatTensorType([None, 3]))]), P, {"X": xr},
              chk_pred(m, "scores", fn="decision_function"),
              row_notes={"outlier": list(range(N_REF - 4, N_REF))})

    # ---- double inputs -----------------------------------------------------------
    D8 = [("X", DoubleTensorType([None, 8]))]
    def try_export(name, m, types, options=None):
        try:
            onx = skl(m, types, options)
            session(onx.SerializeToString())
            return onx
        except Exception as e:
            msg = str(e).split("\n")[0][:200]
            w.skip(name, f"{type(e).__name__}: {msg}")
            return None

    # skl2onnx 1.20 tree converters write TreeEnsembleRegressor/Classifier
    # (ml opset 1, float attributes) with a double output for double input,
    # which ORT refuses ("Type (tensor(double)) of output arg (variable) of
    # node (TreeEnsembleRegressor) does not match expected type
    # (tensor(float))"); the attempt is kept so a newer skl2onnx shows up.
    name = "skl_gbr_double"
    if w.want(name):
        rng, x = data(80, 800, 8)
        m = GradientBoostingRegressor(n_estimators=40, max_depth=3, random_state=80).fit(x, y_reg(rng, x))
        onx = try_export(name, m, D8)
        if onx is not None:
            w.add(name, onx, P, {"X": ref_rows(1080, 8)}, chk_pred(m), threshold_rows=thr_rows())

    name = "skl_logreg_binary_double"
    if w.want(name):
        rng, x = data(81, 800, 8)
        m = LogisticRegression(max_iter=2000).fit(x, y_bin(rng, x))
        onx = try_export(name, m, D8, nozip(m))
        if onx is not None:
            w.add(name, onx, P, {"X": ref_rows(1081, 8)}, chk_both(chk_proba(m), chk_label(m)))

    name = "skl_logreg_3class_double"
    if w.want(name):
        rng, x = data(82, 800, 8)
        m = LogisticRegression(max_iter=3000).fit(x, y_multi(rng, x, 3))
        onx = try_export(name, m, D8, nozip(m))
        if onx is not None:
            w.add(name, onx, P, {"X": ref_rows(1082, 8)}, chk_both(chk_proba(m), chk_label(m)))


# --------------------------------------------------------------------------
# LightGBM / XGBoost via onnxmltools
# --------------------------------------------------------------------------

def build_lightgbm(w):
    import lightgbm as lgb
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType as MFloat

    P = f"onnxmltools {onnxmltools.__version__} (lightgbm {lgb.__version__})"
    common = dict(n_estimators=30, num_leaves=15, learning_rate=0.2, min_child_samples=10,
                  deterministic=True, force_row_wise=True, n_jobs=1, verbose=-1)
    F8 = [("X", MFloat([None, 8]))]
    nan_notes = {"nan": list(range(N_REF - 8, N_REF))}

    def conv(m, zipmap=True):
        return onnxmltools.convert_lightgbm(m, initial_types=F8, target_opset=15, zipmap=zipmap)

    name = "lgbm_clf_binary_nan_zipmap"
    if w.want(name):
        rng = np.random.default_rng(90)
        x = add_nans(rng, gen_tab(rng, 1500, 8))
        y = (score_tab(x) + nan_effect(x) + rng.normal(0, 0.5, len(x)) > 0.8).astype(np.int64)
        m = lgb.LGBMClassifier(random_state=90, **common).fit(x, y)
        xr = ref_rows(1090, 8, nan=True).astype(np.float32)
        w.add(name, conv(m), P, {"X": xr}, chk_both(chk_proba(m), chk_label(m)),
              row_notes=nan_notes, threshold_rows=thr_rows())

    name = "lgbm_clf_3class_nan"
    if w.want(name):
        rng = np.random.default_rng(91)
        x = add_nans(rng, gen_tab(rng, 1500, 8))
        s = score_tab(x) + nan_effect(x) + rng.normal(0, 0.5, len(x))
        y = np.searchsorted(np.quantile(s, [1 / 3, 2 / 3]), s).astype(np.int64)
        m = lgb.LGBMClassifier(random_state=91, **dict(common, n_estimators=15)).fit(x, y)
        xr = ref_rows(1091, 8, nan=True).astype(np.float32)
        w.add(name, conv(m, zipmap=False), P, {"X": xr}, chk_both(chk_proba(m), chk_label(m)),
              row_notes=nan_notes, threshold_rows=thr_rows())

    name = "lgbm_reg_nan"
    if w.want(name):
        rng = np.random.default_rng(92)
        x = add_nans(rng, gen_tab(rng, 1500, 8))
        y = y_reg(rng, x) + 3 * nan_effect(x)
        m = lgb.LGBMRegressor(random_state=92, **common).fit(x, y)
        xr = ref_rows(1092, 8, nan=True).astype(np.float32)
        w.add(name, conv(m), P, {"X": xr}, chk_pred(m), row_notes=nan_notes,
              threshold_rows=thr_rows())

    name = "lgbm_reg_categorical"
    if w.want(name):
        # feature 3 (integers 0..9) as a LightGBM categorical feature: the
        # converter writes its set splits as chains of BRANCH_EQ nodes
        rng = np.random.default_rng(93)
        x = gen_tab(rng, 1500, 8)
        cat_eff = np.array([2.0, -1.0, 0.5, 3.0, -2.0, 0.0, 1.0, -3.0, 2.5, -0.5])
        y = y_reg(rng, x) + 3 * cat_eff[x[:, 3].astype(int)]
        m = lgb.LGBMRegressor(random_state=93, **dict(common, n_estimators=20, min_data_per_group=5,
                                                     cat_smooth=1.0)).fit(x, y, categorical_feature=[3])
        xr = ref_rows(1093, 8).astype(np.float32)
        xr[-2:, 3] = [10.0, 42.0]  # categories not seen in training
        w.add(name, conv(m), P, {"X": xr}, chk_pred(m),
              row_notes={"unseen": [N_REF - 2, N_REF - 1]})


def build_xgboost(w):
    import onnxmltools
    import xgboost as xgb
    from onnxmltools.convert.common.data_types import FloatTensorType as MFloat

    P = f"onnxmltools {onnxmltools.__version__} (xgboost {xgb.__version__})"
    common = dict(n_estimators=30, max_depth=4, learning_rate=0.3, tree_method="hist",
                  n_jobs=1)
    F8 = [("X", MFloat([None, 8]))]
    nan_notes = {"nan": list(range(N_REF - 8, N_REF))}

    def conv(m):
        return onnxmltools.convert_xgboost(m, initial_types=F8, target_opset=15)

    name = "xgb_clf_binary_nan"
    if w.want(name):
        rng = np.random.default_rng(100)
        x = add_nans(rng, gen_tab(rng, 1500, 8))
        y = (score_tab(x) + nan_effect(x) + rng.normal(0, 0.5, len(x)) > 0.8).astype(np.int64)
        m = xgb.XGBClassifier(random_state=100, **common).fit(x, y)
        xr = ref_rows(1100, 8, nan=True).astype(np.float32)
        w.add(name, conv(m), P, {"X": xr}, chk_both(chk_proba(m), chk_label(m)),
              row_notes=nan_notes, threshold_rows=thr_rows())

    name = "xgb_clf_3class_nan"
    if w.want(name):
        rng = np.random.default_rng(101)
        x = add_nans(rng, gen_tab(rng, 1500, 8))
        s = score_tab(x) + nan_effect(x) + rng.normal(0, 0.5, len(x))
        y = np.searchsorted(np.quantile(s, [1 / 3, 2 / 3]), s).astype(np.int64)
        m = xgb.XGBClassifier(random_state=101, **dict(common, n_estimators=15)).fit(x, y)
        xr = ref_rows(1101, 8, nan=True).astype(np.float32)
        w.add(name, conv(m), P, {"X": xr}, chk_both(chk_proba(m), chk_label(m)),
              row_notes=nan_notes, threshold_rows=thr_rows())

    name = "xgb_reg_nan"
    if w.want(name):
        rng = np.random.default_rng(102)
        x = add_nans(rng, gen_tab(rng, 1500, 8))
        y = y_reg(rng, x) + 3 * nan_effect(x)
        m = xgb.XGBRegressor(random_state=102, **common).fit(x, y)
        xr = ref_rows(1102, 8, nan=True).astype(np.float32)
        w.add(name, conv(m), P, {"X": xr}, chk_pred(m), row_notes=nan_notes,
              threshold_rows=thr_rows())


# --------------------------------------------------------------------------
# CatBoost (its own ONNX export; classifiers always end in a ZipMap)
# --------------------------------------------------------------------------

def build_catboost(w):
    import catboost as cb

    P = f"catboost {cb.__version__} (save_model format=onnx)"
    common = dict(iterations=30, depth=4, learning_rate=0.3, thread_count=1,
                  allow_writing_files=False, verbose=False)

    def export(m, name):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, name + ".onnx")
            m.save_model(p, format="onnx", export_parameters={"onnx_graph_name": name})
            return onnx.load(p)

    def cb_proba(m):
        def f(outs, feeds):
            x = feeds["features"]
            key = "probabilities" if "probabilities" in outs else list(outs)[-1]
            labels = np.asarray(outs["label"]).reshape(-1).astype(str)
            return {"predict_proba max_abs_diff": maxdiff(to_np(outs[key]), m.predict_proba(x)),
                    "predict label mismatches":
                        int(np.sum(labels != np.asarray(m.predict(x)).reshape(-1).astype(str)))}
        return f

    def cb_pred(m):
        def f(outs, feeds):
            x = feeds["features"]
            return {"predict max_abs_diff": maxdiff(to_np(list(outs.values())[0]), m.predict(x))}
        return f

    name = "catboost_clf_binary"
    if w.want(name):
        rng = np.random.default_rng(110)
        x = gen_tab(rng, 1000, 8)
        m = cb.CatBoostClassifier(random_seed=110, **common).fit(x, y_bin(rng, x))
        xr = ref_rows(1110, 8).astype(np.float32)
        w.add(name, export(m, name), P, {"features": xr}, cb_proba(m), threshold_rows=thr_rows())

    name = "catboost_clf_3class"
    if w.want(name):
        rng = np.random.default_rng(111)
        x = gen_tab(rng, 1000, 8)
        m = cb.CatBoostClassifier(random_seed=111, loss_function="MultiClass",
                                  **dict(common, iterations=20)).fit(x, y_multi(rng, x, 3))
        xr = ref_rows(1111, 8).astype(np.float32)
        w.add(name, export(m, name), P, {"features": xr}, cb_proba(m), threshold_rows=thr_rows())

    name = "catboost_reg"
    if w.want(name):
        rng = np.random.default_rng(112)
        x = gen_tab(rng, 1000, 8)
        m = cb.CatBoostRegressor(random_seed=112, **common).fit(x, y_reg(rng, x))
        xr = ref_rows(1112, 8).astype(np.float32)
        w.add(name, export(m, name), P, {"features": xr}, cb_pred(m), threshold_rows=thr_rows())


GROUPS = [
    ("sklearn", ["sklearn", "skl2onnx"], build_sklearn),
    ("lightgbm", ["lightgbm", "onnxmltools"], build_lightgbm),
    ("xgboost", ["xgboost", "onnxmltools"], build_xgboost),
    ("catboost", ["catboost"], build_catboost),
]


# --------------------------------------------------------------------------
# verification, README
# --------------------------------------------------------------------------

def unclean(v):
    if v is None:
        return float("nan")
    if v == "inf":
        return float("inf")
    if v == "-inf":
        return float("-inf")
    return v


def verify(out_dir, names):
    """Rebuild the inputs from each JSON (null -> NaN), rerun ORT and check
    that it reproduces "outputs" exactly."""
    for name in names:
        with open(os.path.join(out_dir, name + ".json")) as f:
            ref = json.load(f)
        sess = session(os.path.join(out_dir, ref["model"]))
        feeds = {}
        for i in ref["inputs"]:
            rows = ref["columns"][i["name"]]
            if i["type"] in ("float", "double"):
                rows = [[unclean(v) for v in r] for r in rows]
            feeds[i["name"]] = np.array(rows, dtype=NP_TYPES[i["type"]])
            assert feeds[i["name"]].shape == (ref["rows"], i["shape"][1]), (name, i)
        outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        for n, v in outs.items():
            assert json_value(v) == ref["outputs"][n], (name, n)
    print(f"verified {len(names)} reference files")


README_HEAD = """# Converter-exported models for the native evaluator

Models exported by the real converters (skl2onnx, onnxmltools for LightGBM and
XGBoost, CatBoost's own ONNX export), each with 64 input rows and the raw
outputs of onnxruntime 1.32 (CPU, `intra_op_num_threads=1`), to compare the
native evaluator with ORT. The format of `<name>.json` is described at the top
of `models/make_native_models.py`; in short: `inputs`, `rows` (64), `columns`
(row-major input rows; float values are exact float32: multiples of 1/256 or
split thresholds copied from the graph; NaN written as `null`), `producer`, `ops`, `opset_import`, `output_specs`, `outputs` (ZipMap
outputs as a list of `{class: probability}` dicts with string keys),
`ml_attrs` (distinct post_transform / aggregate_function / nodes_modes /
missing_value_tracks_true / kernel_type ... per ai.onnx.ml op), `row_notes`
(which rows hold NaNs, exact split thresholds, outliers or unseen categories)
and `check` (ORT vs the source library: max abs diff and label mismatches, a
sanity check of the converter).

## Regenerate

These files are generated once and committed; `make test` needs none of the
packages below. From the repository root:

    python3.11 -m venv /tmp/genvenv
    /tmp/genvenv/bin/pip install -r models/native/requirements-gen.txt
    /tmp/genvenv/bin/python models/make_native_models.py

The scikit-learn models alone can be regenerated with the project venv
(`.venv/bin/python models/make_native_models.py`; the LightGBM/XGBoost/CatBoost
groups are then skipped and their files kept). `--only NAME ...` rebuilds
single models. Everything is seeded and single-threaded: a rerun with the
pinned versions writes the same bytes.

## What the converters could not export (pinned versions)

- **ai.onnx.ml opset 5 (`TreeEnsemble`)**: none of them emits it. skl2onnx 1.20
  writes `TreeEnsembleRegressor/Classifier` with the lowest ml opset it needs
  (1) even when `{'ai.onnx.ml': 5}` is requested; onnxmltools 1.16 and CatBoost
  1.2.10 have no `TreeEnsemble` writer. There is no v5 model here.
- **Double-input tree models** (`skl_gbr_double`): skl2onnx 1.20 writes a
  `TreeEnsembleRegressor` (ml opset 1, float attributes, no `*_as_tensor`) whose
  output it declares double; ORT 1.32 refuses to load it ("Type (tensor(double))
  of output arg (variable) of node (TreeEnsembleRegressor) does not match
  expected type (tensor(float))"). The same holds for RandomForest, DecisionTree
  and GradientBoostingClassifier. Double-input LogisticRegression works and is
  exported with standard ops (MatMul, Add, Sigmoid/Softmax, ...), unlike the
  float version (LinearClassifier).

## Workarounds in the generator

- **HistGradientBoosting**: skl2onnx 1.20 puts the Python bool `False` into
  `nodes_missing_value_tracks_true` for leaves, which protobuf 7 refuses in an
  ints attribute; the generator casts it to int (the graph is what skl2onnx
  writes with an older protobuf).
- **IsolationForest with `max_features < 1.0`**
  (`skl_isolation_forest_maxfeat`): skl2onnx 1.20 refuses it ("does not support
  the case when _max_features=3 != number of given features 6") although its
  graph (a `Gather` of each tree's feature subset) handles it; the check is
  lifted for the conversion, and ORT matches `decision_function` (see `check`).
- Reproducibility only: the graph name (a random uuid in skl2onnx/onnxmltools)
  is set to the model name, opset imports are sorted and de-duplicated, and
  CatBoost's `train_finish_time` / `model_guid` metadata are dropped.

## Converter quirks visible in the files

- Some declared output shapes do not match what ORT returns (ORT logs a
  `VerifyOutputSizes` warning): `skl_rf_reg_2targets` declares `variable`
  [N,1] but returns [N,2]; LightGBM classifiers declare `label` [1] (returns
  [N]); `catboost_reg` declares `predictions` [N] (returns [N,1]). Use the
  shapes in `outputs`, not `output_specs`.
- Binary `SVC` (`SVMClassifier`, no probability) returns `probabilities` as
  [decision_function, -decision_function]; binary `LinearSVC` returns one
  column.
- XGBoost and CatBoost models import only the `ai.onnx.ml` domain (no default
  domain); CatBoost uses ml opset 2, the IsolationForests ml opset 3, all
  others ml opset 1.

## Models

"""


def write_readme(out_dir):
    rows = []
    total = 0
    for fn in sorted(os.listdir(out_dir)):
        if not fn.endswith(".json"):
            continue
        with open(os.path.join(out_dir, fn)) as f:
            ref = json.load(f)
        size = os.path.getsize(os.path.join(out_dir, ref["model"]))
        total += size + os.path.getsize(os.path.join(out_dir, fn))
        ins = ", ".join(f"`{i['name']}` {i['type']}{i['shape']}".replace("None", "N")
                        for i in ref["inputs"])
        outs = ", ".join(f"`{o['name']}` {o['type']}" for o in ref["output_specs"])
        rows.append(f"| `{ref['model']}` | {ref['producer']} | {size} | {ins} | {outs} | "
                    f"{' '.join(ref['ops'])} | {fmt_check(ref.get('check'))} |")
    text = (README_HEAD
            + "| model | producer | bytes | inputs | outputs | ops | check |\n"
            + "|---|---|---|---|---|---|---|\n"
            + "\n".join(rows) + "\n\n"
            + f"{len(rows)} models; .onnx + .json total {total} bytes.\n")
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(text)
    print(f"\n{len(rows)} models in {out_dir}, .onnx + .json total {total} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "native"))
    ap.add_argument("--only", nargs="*", help="model names to rebuild")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if ort.__version__ != "1.32.0":
        sys.exit(f"onnxruntime {ort.__version__}: the references need 1.32.0")
    w = Writer(args.out, args.only)
    for group, mods, build in GROUPS:
        missing = [m for m in mods if importlib.util.find_spec(m) is None]
        if missing:
            print(f"-- {group}: skipped ({', '.join(missing)} not installed); "
                  f"existing files kept", flush=True)
            continue
        print(f"-- {group}", flush=True)
        build(w)
    verify(args.out, w.written)
    with open(os.path.join(args.out, "requirements-gen.txt"), "w") as f:
        f.write("# Pins used to generate models/native (python 3.11.7); see make_native_models.py\n")
        f.write("\n".join(PINS) + "\n")
    write_readme(args.out)


if __name__ == "__main__":
    main()
