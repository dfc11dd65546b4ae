#!/usr/bin/env python3
"""The incremental lake-scoring job as a data team writes it in Python, without sqlscore: the
baseline of bench/lake_bench.py.

    .venv/bin/python bench/lake_pipeline.py DB 'LAKE/readings/*.parquet' MODEL_DIR STATE.json \
        [--files-per-txn 10] [--threads N] [--table scores_py]

Each run: list the glob, pick the files not in the JSON state file (or whose size or mtime
changed), read them in chunks of --files-per-txn files with pyarrow, group each chunk's rows by
sensor (dictionary-encode sensor_id, argsort the codes), score each group with that sensor's
model (anomaly_<sensor_id>.onnx in MODEL_DIR, one cached onnxruntime InferenceSession per model,
intra-op threads 1: groups are small), build an Arrow table (id, sensor_id, score, model,
scored_at), insert it into the DuckDB table --table of DB in one transaction, and after the commit
record the chunk's files in the state file (temp file + rename). A crash between the commit and
the rename scores those files twice on the next run: the usual at-least-once of such a script.

--threads N caps DuckDB's and pyarrow's threads at N (default: the libraries' defaults, as a team
leaves them). Prints one JSON line: rows, files, seconds and the read / score / write split.
"""
import argparse
import datetime as dt
import glob
import json
import os
import time
from pathlib import Path

import duckdb
import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

FEATURES = ("f0", "f1", "f2", "f3")


def load_state(path):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {"files": {}}


def save_state(path, state):
    """Atomically replaces the state file (write a temp file, fsync, rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def new_files(pattern, state):
    """(path, [size, mtime_ns]) of the files matching the glob that are not scored yet."""
    out = []
    for p in sorted(glob.glob(pattern)):
        st = os.stat(p)
        sig = [st.st_size, st.st_mtime_ns]
        if state["files"].get(p) != sig:
            out.append((p, sig))
    return out


class Models:
    """One onnxruntime session per model name, created on first use from MODEL_DIR/<name>.onnx."""

    def __init__(self, model_dir):
        self.dir = Path(model_dir)
        self.so = ort.SessionOptions()
        self.so.intra_op_num_threads = 1
        self.so.inter_op_num_threads = 1
        self.sessions = {}
        self.created_s = 0.0

    def get(self, name):
        entry = self.sessions.get(name)
        if entry is None:
            t = time.perf_counter()
            sess = ort.InferenceSession((self.dir / f"{name}.onnx").read_bytes(), self.so,
                                        providers=["CPUExecutionProvider"])
            outs = [o.name for o in sess.get_outputs()]
            # The anomaly score (sklearn's decision_function): skl2onnx names it "scores".
            out = "scores" if "scores" in outs else next(o.name for o in sess.get_outputs() if o.type == "tensor(float)")
            entry = (sess, sess.get_inputs()[0].name, out)
            self.sessions[name] = entry
            self.created_s += time.perf_counter() - t
        return entry


def score_table(table, models):
    """Scores: one array of float64 scores and the model name per row, grouped by sensor."""
    enc = pc.dictionary_encode(table.column("sensor_id").combine_chunks())
    codes = enc.indices.to_numpy(zero_copy_only=False)
    names = ["anomaly_" + s for s in enc.dictionary.to_pylist()]
    x = np.column_stack([table.column(f).to_numpy() for f in FEATURES]).astype(np.float32)
    order = np.argsort(codes, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(codes, minlength=len(names)))))
    scores = np.empty(len(codes), dtype=np.float64)
    for k, name in enumerate(names):
        lo, hi = bounds[k], bounds[k + 1]
        if lo == hi:
            continue
        idx = order[lo:hi]
        sess, inp, out = models.get(name)
        scores[idx] = sess.run([out], {inp: x[idx]})[0].reshape(hi - lo, -1)[:, 0]
    model = pa.array(names, pa.string()).take(enc.indices)
    return scores, model


def run(db, pattern, model_dir, state_path, table="scores_py", files_per_txn=10, threads=None, log=None):
    """One incremental run; returns its figures (rows, files, seconds, read_s, score_s, write_s)."""
    t0 = time.perf_counter()
    if threads:
        pa.set_cpu_count(threads)
        pa.set_io_thread_count(threads)
    state = load_state(state_path)
    todo = new_files(pattern, state)
    con = duckdb.connect(str(db))
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {table} (id BIGINT, sensor_id VARCHAR, score DOUBLE, "
                "model VARCHAR, scored_at TIMESTAMPTZ)")
    models = Models(model_dir)
    timers = {"list_s": time.perf_counter() - t0, "read_s": 0.0, "score_s": 0.0, "write_s": 0.0}
    rows = 0
    for c in range(0, len(todo), files_per_txn):
        chunk = todo[c:c + files_per_txn]
        t1 = time.perf_counter()
        data = ds.dataset([p for p, _ in chunk], format="parquet").to_table(
            columns=["id", "sensor_id", *FEATURES])
        t2 = time.perf_counter()
        scores, model = score_table(data, models)
        t3 = time.perf_counter()
        now = pa.scalar(dt.datetime.now(dt.timezone.utc), pa.timestamp("us", tz="UTC"))
        batch = pa.table({"id": data.column("id"), "sensor_id": data.column("sensor_id"),
                          "score": pa.array(scores), "model": model, "scored_at": pa.repeat(now, len(scores))})
        con.execute("BEGIN")
        con.register("batch", batch)
        con.execute(f"INSERT INTO {table} SELECT id, sensor_id, score, model, scored_at FROM batch")
        con.execute("COMMIT")
        con.unregister("batch")
        for p, sig in chunk:
            state["files"][p] = sig
        save_state(state_path, state)
        t4 = time.perf_counter()
        timers["read_s"] += t2 - t1
        timers["score_s"] += t3 - t2
        timers["write_s"] += t4 - t3
        rows += len(scores)
        if log:
            log(f"  {c + len(chunk)}/{len(todo)} files, {rows:,} rows")
    con.close()
    return {"rows": rows, "files": len(todo), "seconds": time.perf_counter() - t0,
            "sessions": len(models.sessions), "session_create_s": models.created_s, **timers}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("db")
    ap.add_argument("pattern", help="glob of the lake's Parquet files")
    ap.add_argument("model_dir", help="folder of anomaly_<sensor_id>.onnx")
    ap.add_argument("state", help="JSON state file of the files already scored")
    ap.add_argument("--table", default="scores_py")
    ap.add_argument("--files-per-txn", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="cap DuckDB's and pyarrow's threads (0: their defaults)")
    args = ap.parse_args()
    out = run(args.db, args.pattern, args.model_dir, args.state, args.table, args.files_per_txn, args.threads or None)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
