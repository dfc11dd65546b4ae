#!/usr/bin/env python3
"""Train the IoT demo anomaly models: one per (device, sensor).

Usage (from the repository root):

    .venv/bin/python models/make_demo_models.py [--devices 3] [--sensors 5]
        [--out models/demo] [--force]

Each model is Pipeline(StandardScaler, OneClassSVM(rbf, nu=0.01,
gamma='scale', tol=1e-7)) on one float feature, exported as
<out>/anomaly_d{d}_s{s}.onnx (d, s 0-based) with input X float[None,1] and
outputs label int64[None,1] (1 normal / -1 anomaly) and scores float[None,1]
(= sklearn decision_function; negative means anomalous).

Normal behaviour of sensor s on device d (the Rust demo data generator uses
the same formula):

    mean = 10*(s+1) + 3*d
    std  = 1 + 0.25*s + 0.1*d

Training data: numpy.random.default_rng(1000*d + s).normal(mean, std, 1000).
Existing files are skipped unless --force.
"""

import argparse
import os
import sys
import time

import numpy as np
import onnx
from onnx import helper
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType

# keep in sync with make_models.py
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
N_TRAIN = 1000
# libsvm's default tol=1e-3 leaves the decision function so noisy around 0
# that ~20% of fresh normal readings score < 0; 1e-7 gives ~1.5-2.5% (nu=1%),
# fewer support vectors and faster training.
OCSVM_TOL = 1e-7


def sensor_mean(d, s):
    return 10.0 * (s + 1) + 3.0 * d


def sensor_std(d, s):
    return 1.0 + 0.25 * s + 0.1 * d


def training_data(d, s):
    rng = np.random.default_rng(1000 * d + s)
    return rng.normal(sensor_mean(d, s), sensor_std(d, s), N_TRAIN).reshape(-1, 1)


def build_model(d, s):
    x = training_data(d, s)
    model = Pipeline([
        ("scaler", StandardScaler()),
        ("ocsvm", OneClassSVM(kernel="rbf", nu=0.01, gamma="scale", tol=OCSVM_TOL)),
    ]).fit(x)
    onx = convert_sklearn(
        model,
        initial_types=[("X", FloatTensorType([None, 1]))],
        target_opset=TARGET_OPSET,
    )
    # deterministic bytes: fixed graph name, sorted opset imports
    onx.graph.name = f"anomaly_d{d}_s{s}"
    onx.doc_string = ""
    onx.producer_name = "sqlscore/make_demo_models.py (skl2onnx)"
    opsets = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    for domain, version in opsets:
        onx.opset_import.append(helper.make_opsetid(domain, version))
    return onx


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=3)
    ap.add_argument("--sensors", type=int, default=5)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo"),
                    help="output directory (default: models/demo next to this script)")
    ap.add_argument("--force", action="store_true", help="overwrite existing files")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    if args.devices < 1 or args.sensors < 1:
        ap.error("--devices and --sensors must be >= 1")

    os.makedirs(args.out, exist_ok=True)
    t0 = time.time()
    written = skipped = 0
    for d in range(args.devices):
        for s in range(args.sensors):
            path = os.path.join(args.out, f"anomaly_d{d}_s{s}.onnx")
            if not args.force and os.path.exists(path):
                skipped += 1
                continue
            onx = build_model(d, s)
            tmp = path + ".tmp"
            with open(tmp, "wb") as f:
                f.write(onx.SerializeToString())
            os.replace(tmp, path)  # never leave a partial file behind
            written += 1
    if not args.quiet:
        print(f"{written} written, {skipped} skipped (already present) in {args.out} "
              f"[{time.time() - t0:.1f}s]", file=sys.stderr)


if __name__ == "__main__":
    main()
