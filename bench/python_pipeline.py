#!/usr/bin/env python3
"""The pipeline a data team writes without sqlscore: pull rows out of DuckDB into numpy, score
them with Python onnxruntime, write the scores back. Timed end to end; prints JSON.

    python bench/python_pipeline.py DB MODEL.onnx THREADS [--per-row]

--per-row: the 1,000-models case: rows carry a sensor_id, each sensor has its own model
(MODEL is then the folder of anomaly_<sensor>.onnx files); rows are grouped per model.
"""
import json
import sys
import time

import duckdb
import numpy as np
import onnxruntime as ort
import pyarrow as pa


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def score_of(sess, outputs):
    names = [o.name for o in sess.get_outputs()]
    if "probabilities" in names:
        p = outputs[names.index("probabilities")]
        return p[:, 1] if p.shape[1] == 2 else p.max(axis=1)
    for name, out in zip(names, outputs):
        if name != "label" and out.dtype in (np.float32, np.float64):
            return out.reshape(len(out), -1)[:, 0]
    raise SystemExit("no score output")


def main():
    db, model, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    per_row = "--per-row" in sys.argv
    t0 = time.perf_counter()
    con = duckdb.connect(db)
    con.execute(f"SET threads = {threads}")
    if per_row:
        data = con.execute("SELECT id, sensor_id, value FROM bench_per_row").fetchnumpy()
        ids, sensors, values = data["id"], data["sensor_id"], data["value"].astype(np.float32)
        t1 = time.perf_counter()
        scores = np.empty(len(ids), dtype=np.float64)
        order = np.argsort(sensors, kind="stable")
        uniq, starts = np.unique(sensors[order], return_index=True)
        bounds = list(starts) + [len(order)]
        for i, sensor in enumerate(uniq):
            idx = order[bounds[i]:bounds[i + 1]]
            sess = session(f"{model}/anomaly_{sensor}.onnx", threads)
            scores[idx] = score_of(sess, sess.run(None, {"X": values[idx].reshape(-1, 1)}))
    else:
        cols = [f"x{k}" for k in range(8)]
        data = con.execute(f"SELECT id, {', '.join(cols)} FROM bench_data").fetchnumpy()
        ids = data["id"]
        x = np.stack([data[c] for c in cols], axis=1).astype(np.float32)
        t1 = time.perf_counter()
        sess = session(model, threads)
        scores = score_of(sess, sess.run(None, {sess.get_inputs()[0].name: x}))
    t2 = time.perf_counter()
    result = pa.table({"id": ids, "score": scores.astype(np.float64)})
    con.execute("CREATE OR REPLACE TABLE bench_out_python AS SELECT * FROM result")
    t3 = time.perf_counter()
    print(json.dumps({"total_s": t3 - t0, "fetch_s": t1 - t0, "score_s": t2 - t1, "write_s": t3 - t2, "rows": int(len(ids))}))


if __name__ == "__main__":
    main()
