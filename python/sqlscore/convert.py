"""Fitted models to ONNX, with the converter and options each library needs, and inputs named after
the columns of a sample DataFrame so the model binds to a table's columns by name.

- scikit-learn estimators and pipelines: skl2onnx. A model with a ColumnTransformer (string
  columns included) gets one input per column, as the ColumnTransformer selects them by name.
  Any other model is converted with one feature tensor, then given one input per column that a
  Concat feeds into it (`_named_inputs`).
- XGBoost and LightGBM (their scikit-learn API): onnxmltools; CatBoost: its own ONNX export. Both
  get one input per feature, in the order the model was trained on (its feature names).
- Classifiers export probabilities as a tensor (no ZipMap).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

# ai.onnx opset for skl2onnx / onnxmltools: what ONNX Runtime 1.17+ and sqlscore's native
# evaluator both run.
TARGET_OPSET = 15
ML_OPSET = 3


class ConversionError(ValueError):
    """The model cannot be converted, or its ONNX form does not agree with it."""


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "float" or "string"


def columns_of(sample: Any, names: Sequence[str] | None = None) -> list[Column]:
    """The input columns a sample DataFrame gives: numbers (and booleans) as float, text and
    categories as string. `names` picks and orders them (default: all, in the frame's order)."""
    import pandas as pd

    if not isinstance(sample, pd.DataFrame):
        raise ConversionError("sample must be a pandas DataFrame whose columns are the model's inputs")
    names = list(names) if names is not None else [str(c) for c in sample.columns]
    missing = [n for n in names if n not in sample.columns]
    if missing:
        raise ConversionError(f"the sample lacks the column(s) the model was trained on: {', '.join(missing)}")
    out = []
    for n in names:
        dtype = sample[n].dtype
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
            out.append(Column(n, "float"))
        elif pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype) or isinstance(
            dtype, pd.CategoricalDtype
        ):
            out.append(Column(n, "string"))
        else:
            raise ConversionError(f"column {n!r}: type {dtype} is not a number or text")
    return out


def feeds(model: onnx.ModelProto, sample: Any) -> dict[str, np.ndarray]:
    """ONNX Runtime inputs from the sample, one per graph input, by name."""
    out = {}
    for i in model.graph.input:
        if i.name not in sample.columns:
            raise ConversionError(f"the model's input {i.name!r} is not a column of the sample")
        col = sample[i.name]
        if i.type.tensor_type.elem_type == TensorProto.STRING:
            out[i.name] = col.astype(str).to_numpy(dtype=object).reshape(-1, 1)
        elif i.type.tensor_type.elem_type == TensorProto.DOUBLE:
            out[i.name] = col.to_numpy(dtype=np.float64).reshape(-1, 1)
        elif i.type.tensor_type.elem_type == TensorProto.INT64:
            out[i.name] = col.to_numpy(dtype=np.int64).reshape(-1, 1)
        else:
            out[i.name] = col.to_numpy(dtype=np.float32).reshape(-1, 1)
    return out


def _kind(model: Any) -> str:
    mod = type(model).__module__.split(".")[0]
    if mod in ("xgboost", "lightgbm", "catboost"):
        return mod
    if mod == "sklearn" or hasattr(model, "get_params"):
        return "sklearn"
    raise ConversionError(f"no converter for {type(model).__module__}.{type(model).__name__}: pass a fitted "
                          "scikit-learn, XGBoost, LightGBM or CatBoost model, or ONNX bytes")


def _feature_names(model: Any) -> list[str] | None:
    """The names of the features in the order the model was trained on, when it kept them."""
    import re

    for attr in ("feature_names_in_", "feature_names_", "feature_name_"):
        names = getattr(model, attr, None)
        if names is not None and not callable(names) and len(names):
            return [str(n) for n in names]
    booster = model.get_booster() if hasattr(model, "get_booster") else model
    names = getattr(booster, "feature_names", None)  # xgboost.Booster
    if names is None and callable(getattr(booster, "feature_name", None)):  # lightgbm.Booster
        names = booster.feature_name()
        # LightGBM names numpy-trained features Column_0, Column_1, ...: no names at all.
        if names and all(re.fullmatch(r"Column_\d+", n) for n in names):
            names = None
    return [str(n) for n in names] if names else None


def _n_features(model: Any) -> int | None:
    for get in (lambda m: m.n_features_in_, lambda m: m.get_booster().num_features(), lambda m: m.num_features(),
                lambda m: m.num_feature()):
        try:
            return int(get(model))
        except Exception:  # noqa: BLE001 - whichever the library has
            continue
    return None


def _training_columns(model: Any, sample: Any) -> list[Column]:
    """The sample's columns in the order the model was trained on. Without feature names the
    order cannot be known: the sample must then have exactly as many columns as the model has
    features, taken in the sample's order (with a warning)."""
    names = _feature_names(model)
    if names is not None:
        return columns_of(sample, names)
    n = _n_features(model)
    if n is not None and n != len(sample.columns):
        raise ConversionError(f"the {type(model).__name__} has no feature names and was trained on {n} features, but "
                              f"the sample has {len(sample.columns)} columns: pass exactly its {n} columns, in "
                              "training order (or fit the model on a DataFrame, which keeps the names)")
    import warnings

    warnings.warn(f"the {type(model).__name__} has no feature names: the sample's column order "
                  f"({', '.join(map(str, sample.columns))}) is taken as the training order", stacklevel=3)
    return columns_of(sample)


def _has_column_transformer(model: Any) -> bool:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if isinstance(model, ColumnTransformer):
        return True
    if isinstance(model, Pipeline):
        return any(_has_column_transformer(step) for _, step in model.steps)
    return False


def _final_estimator(model: Any) -> Any:
    from sklearn.pipeline import Pipeline

    while isinstance(model, Pipeline):
        model = model.steps[-1][1]
    return model


def _refuse_clashes(g: onnx.GraphProto, names: list[str], freed: set[str] = frozenset()) -> None:
    """Input names must not be names the graph already uses inside (other than `freed`, the
    inputs being renamed)."""
    taken = ({t for n in g.node for t in [*n.input, *n.output]} | {o.name for o in g.output}
             | {i.name for i in g.initializer}) - set(freed)
    clash = [n for n in names if n in taken]
    if clash:
        raise ConversionError(f"column name(s) {', '.join(map(repr, clash))} clash with names inside the converted "
                              "model: rename the column(s)")


def _named_inputs(m: onnx.ModelProto, columns: list[Column]) -> onnx.ModelProto:
    """Replaces a model's single feature tensor input by one [N, 1] input per column, concatenated
    in order into the old input."""
    g = m.graph
    if len(g.input) != 1:
        raise ConversionError(f"expected one feature input, the converted model has {len(g.input)}")
    old = g.input[0]
    _refuse_clashes(g, [c.name for c in columns])
    elem = old.type.tensor_type.elem_type
    new_inputs = [helper.make_tensor_value_info(c.name, elem, [None, 1]) for c in columns]
    concat = helper.make_node("Concat", [c.name for c in columns], [old.name], axis=1,
                              name="sqlscore_named_inputs")
    del g.input[:]
    g.input.extend(new_inputs)
    g.node.insert(0, concat)
    # Concat is a standard op: a graph of ai.onnx.ml ops only (XGBoost's) imports no standard opset.
    if not any(o.domain in ("", "ai.onnx") for o in m.opset_import):
        m.opset_import.append(helper.make_opsetid("", TARGET_OPSET))
    onnx.checker.check_model(m)
    return m


def to_onnx(model: Any, sample: Any, *, target_opset: int = TARGET_OPSET) -> onnx.ModelProto:
    """Converts a fitted model; `sample` (a DataFrame) names and types its inputs."""
    kind = _kind(model)
    if kind == "sklearn" and _has_column_transformer(model):
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType, StringTensorType

        cols = _training_columns(model, sample)
        types = [(c.name, StringTensorType([None, 1]) if c.kind == "string" else FloatTensorType([None, 1]))
                 for c in cols]
        plain = _register_booster_converters(model)
        m = convert_sklearn(plain, initial_types=types, target_opset={"": target_opset, "ai.onnx.ml": ML_OPSET},
                            options=_sklearn_options(plain))
        return _rename_inputs(m, [c.name for c in cols])
    cols = _training_columns(model, sample)
    text = [c.name for c in cols if c.kind == "string"]
    if text:
        raise ConversionError(f"column(s) {', '.join(text)} hold text: a {type(model).__name__} takes numbers only "
                              "(encode them in the pipeline, e.g. a ColumnTransformer with a OneHotEncoder)")
    n = len(cols)
    if kind == "sklearn":
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType

        plain = _register_booster_converters(model)
        m = convert_sklearn(plain, initial_types=[("__sqlscore_features", FloatTensorType([None, n]))],
                            target_opset={"": target_opset, "ai.onnx.ml": ML_OPSET}, options=_sklearn_options(plain))
    elif kind in ("xgboost", "lightgbm"):
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType as MFloat

        types = [("__sqlscore_features", MFloat([None, n]))]
        if kind == "xgboost":
            # onnxmltools reads the trees' dump, which names features f0, f1, ... only without
            # feature names: converted from a copy without them (the order is kept).
            import copy

            plain = copy.deepcopy(model)
            (plain.get_booster() if hasattr(plain, "get_booster") else plain).feature_names = None
            m = onnxmltools.convert_xgboost(plain, initial_types=types, target_opset=target_opset)
        else:
            m = onnxmltools.convert_lightgbm(model, initial_types=types, target_opset=target_opset, zipmap=False)
    else:  # catboost
        import tempfile

        with tempfile.NamedTemporaryFile(suffix=".onnx") as f:
            model.save_model(f.name, format="onnx")
            m = onnx.load(f.name)
    return _named_inputs(m, cols)


def _register_booster_converters(model: Any) -> Any:
    """Lets skl2onnx convert a scikit-learn pipeline that ends in an XGBoost or LightGBM model
    (onnxmltools' converters, registered with skl2onnx). Returns the model to convert: for XGBoost a
    copy whose booster has no feature names (the converter reads f0, f1, ... from its dump)."""
    final = _final_estimator(model)
    lib = type(final).__module__.split(".")[0]
    if lib not in ("xgboost", "lightgbm"):
        return model
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    if lib == "xgboost":
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost as convert
        from xgboost import XGBClassifier as Classifier, XGBRegressor as Regressor
    else:
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm as convert
        from lightgbm import LGBMClassifier as Classifier, LGBMRegressor as Regressor
    update_registered_converter(Classifier, f"sqlscore_{lib}_classifier", calculate_linear_classifier_output_shapes,
                                convert, options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
    update_registered_converter(Regressor, f"sqlscore_{lib}_regressor", calculate_linear_regressor_output_shapes,
                                convert)
    if lib != "xgboost" or final.get_booster().feature_names is None:
        return model
    import copy

    plain = copy.deepcopy(model)
    _final_estimator(plain).get_booster().feature_names = None
    return plain


def _sklearn_options(model: Any) -> dict:
    from sklearn.base import is_classifier

    final = _final_estimator(model)
    if is_classifier(final):
        return {id(final): {"zipmap": False}}
    return {}


def _rename_inputs(m: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """Gives the graph's inputs the column names back: skl2onnx rewrites names it finds unusual
    (`my col` -> `my_col`, `label` -> `label1`), and the registry binds columns by input name."""
    g = m.graph
    if len(g.input) != len(names):
        raise ConversionError(f"the converted model has {len(g.input)} inputs for {len(names)} columns")
    rename = {i.name: n for i, n in zip(g.input, names) if i.name != n}
    if not rename:
        return m
    _refuse_clashes(g, list(rename.values()), freed=set(rename))
    for i in g.input:
        i.name = rename.get(i.name, i.name)
    for node in g.node:
        node.input[:] = [rename.get(t, t) for t in node.input]
    onnx.checker.check_model(m)
    return m


@dataclass(frozen=True)
class Check:
    """How the ONNX form agreed with the original on the sample."""

    rows: int
    output: str
    max_abs_diff: float
    label_mismatches: int
    # The largest |value| of the original's output: differences are judged relative to it.
    scale: float


def _outputs(m: onnx.ModelProto, sample: Any) -> dict[str, Any]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds(m, sample))))


def check(model: Any, m: onnx.ModelProto, sample: Any) -> Check:
    """Runs the ONNX model with ONNX Runtime and the original on `sample`, and compares what a
    score means for the model: class probabilities (and labels) for a classifier, the decision
    function for an anomaly detector or a classifier without probabilities, the prediction for a
    regressor."""
    out = _outputs(m, sample)
    kind = _kind(model)
    if kind == "sklearn" and _has_column_transformer(model):
        x = sample
    else:
        x = sample[[c.name for c in _training_columns(model, sample)]]
        if _feature_names(model) is None:
            x = x.to_numpy()  # as it was fitted (scikit-learn warns about names it never saw)
    final = _final_estimator(model) if kind == "sklearn" else model
    values = list(out.items())
    labels = values[0][1] if len(values) > 1 else None
    if hasattr(final, "predict_proba") and len(values) > 1:
        ref = np.asarray(model.predict_proba(x), dtype=np.float64)
        name, got = values[1]
        got = _as_matrix(got, getattr(final, "classes_", None))
        mismatches = _label_mismatches(labels, model.predict(x))
    elif hasattr(final, "decision_function") and len(values) > 1:
        ref = np.asarray(model.decision_function(x), dtype=np.float64)
        name, got = values[1]
        got = _as_matrix(got, getattr(final, "classes_", None))
        if ref.ndim == 1 and got.ndim == 2 and got.shape[1] == 2:
            got = got[:, 1]  # a binary classifier's scores for both classes: the positive one's
        mismatches = _label_mismatches(labels, model.predict(x))
    else:
        ref = np.asarray(model.predict(x), dtype=np.float64)
        name, got = values[0]
        mismatches = 0
    got = np.asarray(got, dtype=np.float64).reshape(ref.shape)
    # A NaN on one side only is a disagreement, not a missing value.
    both_nan = np.isnan(got) & np.isnan(ref)
    diff = np.where(both_nan, 0.0, np.abs(got - ref))
    diff = np.where(np.isnan(diff), np.inf, diff)
    return Check(rows=len(sample), output=name, max_abs_diff=float(diff.max()) if diff.size else 0.0,
                 label_mismatches=mismatches,
                 scale=float(np.nanmax(np.abs(ref))) if ref.size and not np.all(np.isnan(ref)) else 0.0)


def _label_mismatches(onnx_labels: Any, predicted: Any) -> int:
    """Rows whose labels differ. ONNX labels are int64 (or strings) where the model's may be bool or
    float classes: numbers are compared as numbers, anything else as text."""
    a, b = np.asarray(onnx_labels).ravel(), np.asarray(predicted).ravel()
    if a.dtype.kind in "iufb" and b.dtype.kind in "iufb":
        return int(np.sum(a.astype(np.float64) != b.astype(np.float64)))
    return int(np.sum(a.astype(str) != b.astype(str)))


def _as_matrix(got: Any, classes: Any) -> np.ndarray:
    """Probabilities as an [N, classes] matrix, also from a ZipMap's list of {class: p} maps."""
    if isinstance(got, list) and got and isinstance(got[0], dict):
        keys = list(classes) if classes is not None else sorted(got[0])
        return np.array([[row[k] for k in keys] for row in got], dtype=np.float64)
    return np.asarray(got, dtype=np.float64)
