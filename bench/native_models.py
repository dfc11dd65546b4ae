"""Models for `sqlscore bench-native`: the shapes of the native-evaluator targets (issue [6]),
exported by skl2onnx exactly as users' models are. 20 float features, seeded.

    .venv/bin/python bench/native_models.py target/bench/native
"""
import sys
from pathlib import Path

import numpy as np
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import (ExtraTreesRegressor, GradientBoostingClassifier, GradientBoostingRegressor,
                              IsolationForest, RandomForestClassifier)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM
from skl2onnx import to_onnx

F = 20


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    X, y = make_classification(n_samples=4000, n_features=F, n_informative=10, random_state=0)
    X = X.astype(np.float32)
    Xr, yr = make_regression(n_samples=4000, n_features=F, noise=5.0, random_state=0)
    Xr = Xr.astype(np.float32)
    models = {
        "gbc_100x3": (GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=0), X, y),
        "gbr_100x3": (GradientBoostingRegressor(n_estimators=100, max_depth=3, random_state=0), Xr, yr),
        "rfc_100x10": (RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0), X, y),
        "rfc_100_full": (RandomForestClassifier(n_estimators=100, random_state=0), X[:1500], y[:1500]),
        "etr_100x12": (ExtraTreesRegressor(n_estimators=100, max_depth=12, random_state=0), Xr, yr),
        "iforest_100": (IsolationForest(n_estimators=100, random_state=0), X, None),
        "logreg": (LogisticRegression(max_iter=1000), X, y),
        "scaler_ocsvm": (make_pipeline(StandardScaler(), OneClassSVM(nu=0.05, gamma="scale")), X[:3000], None),
    }
    for name, (model, data, target) in models.items():
        model.fit(data, target) if target is not None else model.fit(data)
        options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
        onx = to_onnx(model, data[:1], options=options, target_opset={"": 17, "ai.onnx.ml": 3})
        (out / f"{name}.onnx").write_bytes(onx.SerializeToString())
        print(name, len(onx.graph.node), "nodes")
    np.random.default_rng(0).standard_normal((2048, F)).astype(np.float32).tofile(out / "x_2048x20.f32")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench/native"))
