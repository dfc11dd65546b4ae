#!/usr/bin/env python3
"""Benchmark of sqlscore scoring jobs: an incremental per-sensor anomaly job over a readings table.

    .venv/bin/python bench/jobs_bench.py --url postgres://postgres@127.0.0.1:5499/postgres \
        [--rows 10000000] [--models 1000] [--stream-rows 1000000] [--stream-seconds 20]

Setup: --models per-sensor models (StandardScaler + OneClassSVM, or IsolationForest with
--model-kind iforest) on 4 features, trained with scikit-learn and converted with skl2onnx
(cached under .cache/bench-models/), registered as anomaly_<sensor>; a table `readings` (id
bigserial, sensor_id, ts, f0..f3) with --rows rows, row i from sensor i % models (readings arrive
interleaved in time, as they do from a fleet), loaded with binary COPY.

Measured (each from the same state: the whole table as backlog, a fresh session, after a
CHECKPOINT):
  - CALL sqlscore.run_job('bench')                       (caller's backend)
  - sqlscore.submit_job('bench', 1) / ('bench', 2)       (background workers; polled)
  - the Python pipeline a team writes for the same incremental job: a watermark table, chunks of
    new rows read with psycopg, grouped by sensor, scored with one cached onnxruntime session per
    sensor, results COPYed back and the watermark moved in the same transaction.
Streaming (the table emptied first; --stream-rows rows in --copy-batch-row COPY transactions, as
fast as possible): ingest rows/s with no job, with the job defined but no stream, and with
sqlscore.stream_job('bench', '100 ms') active; then commit->score latency at a paced ingest
(--pace-rows rows/s for --stream-seconds s) with the stream active.

Order: setup, Python pipeline, run_job, submit_job x1, x2, streaming (--only picks phases). Each
job phase also reports the CPU seconds per 1M rows of the processes doing the work and the
machine's other load (cores busy beyond them): on a small shared machine the rows/s move with
whatever else runs, the CPU per row does not.

Prints a table with the issue's targets and writes JSON (--json, default target/bench/jobs.json).
Small sizes (e.g. --rows 200000 --models 50) check that everything works; their batches are a large
fraction of the table, for which PostgreSQL plans sequential scans, so take figures at >= 2M rows.
"""
import argparse
import datetime as dt
import functools
import hashlib
import json
import os
import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import psycopg

ROOT = Path(__file__).resolve().parent.parent
FEATURES = ("f0", "f1", "f2", "f3")
PG_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)
TS0_US = int((dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc) - PG_EPOCH).total_seconds()) * 1_000_000
MODEL_EXPR = "'anomaly_' || sensor_id"
PHASES = ("python", "run_job", "submit_1", "submit_2", "stream")
# Bumped when the generated models change, so a stale cache is never used.
MODEL_GEN = 1


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# CPU accounting (Linux, server on this machine; else empty). The machine has few cores and may be
# shared: the CPU time of the processes doing the work per row does not depend on what else runs,
# and the machine's busy time beyond them shows whether something else did.

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def proc_cpu(pid):
    """user+system CPU seconds of process `pid`, or None when it is not visible here."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return None


def proc_cpu_with_children(pid):
    """CPU seconds of `pid` and of its children that have ended (the postmaster reaps them)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / _TICK
    except (OSError, IndexError, ValueError):
        return None


POSTMASTER = None  # the server's postmaster pid when it runs on this machine (set in main)


def cluster_cpu():
    """CPU seconds used so far by the whole PostgreSQL cluster: the postmaster, its ended children
    and its live ones (backends, background workers, autovacuum, WAL writer, checkpointer)."""
    if POSTMASTER is None:
        return None
    total = proc_cpu_with_children(POSTMASTER)
    if total is None:
        return None
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == POSTMASTER:
                    total += (int(fields[11]) + int(fields[12])) / _TICK
            except (OSError, IndexError, ValueError):
                pass
    return total


class Machine:
    """What the machine did between start and stop: busy cores, and, given the CPU of the
    processes doing the measured work, how much went to the rest of the cluster (its background
    processes: autovacuum, WAL writer, checkpointer) and to processes outside it."""

    def __init__(self):
        self.t0, self.busy0 = time.perf_counter(), self._busy()
        self.cluster0, self.client0 = cluster_cpu(), time.process_time()

    @staticmethod
    def _busy():
        try:
            with open("/proc/stat") as f:
                v = [int(x) for x in f.readline().split()[1:]]
            return (sum(v) - v[3] - v[4]) / _TICK  # all but idle and iowait
        except (OSError, ValueError):
            return None

    def stop(self, server_cpu_s=None, count_client=False):
        """server_cpu_s: CPU of the backends/workers doing the work; count_client: the work includes
        this script's own CPU (the Python pipeline)."""
        wall = time.perf_counter() - self.t0
        busy1, cluster1, client = self._busy(), cluster_cpu(), time.process_time() - self.client0
        out = {}
        if self.busy0 is not None and busy1 is not None:
            out["busy_cores"] = (busy1 - self.busy0) / wall
        if server_cpu_s is not None:
            out["own_cpu_s"] = server_cpu_s + (client if count_client else 0.0)
        if server_cpu_s is not None and self.cluster0 is not None and cluster1 is not None:
            cluster = cluster1 - self.cluster0
            out["pg_background_cores"] = max(0.0, (cluster - server_cpu_s) / wall)
            if "busy_cores" in out:
                out["outside_cores"] = max(0.0, out["busy_cores"] - (cluster + client) / wall)
        return out


# ---------------------------------------------------------------------------------------------
# Sensors, models and data

def sensor_params(s):
    """Normal behaviour of sensor s: per-feature mean and standard deviation."""
    rng = np.random.default_rng(10_000 + s)
    return rng.uniform(-50, 50, len(FEATURES)), rng.uniform(0.5, 5.0, len(FEATURES))


@functools.lru_cache(maxsize=4)
def fleet_params(models):
    params = [sensor_params(s) for s in range(models)]
    return np.array([p[0] for p in params]), np.array([p[1] for p in params])


def model_cache_dir(args):
    key = f"gen{MODEL_GEN}-{args.model_kind}-f{len(FEATURES)}-n{args.train_points}"
    return ROOT / ".cache" / "bench-models" / key


def build_model(kind, s, train_points):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    mean, std = sensor_params(s)
    x = np.random.default_rng(s).normal(mean, std, (train_points, len(FEATURES)))
    if kind == "ocsvm":
        from sklearn.svm import OneClassSVM
        est = OneClassSVM(kernel="rbf", nu=0.02, gamma="scale", tol=1e-6)
    else:
        from sklearn.ensemble import IsolationForest
        est = IsolationForest(n_estimators=10, random_state=s)
    model = Pipeline([("scaler", StandardScaler()), ("anomaly", est)]).fit(x)
    onx = convert_sklearn(model, initial_types=[("X", FloatTensorType([None, len(FEATURES)]))],
                          target_opset={"": 17, "ai.onnx.ml": 3})
    onx.graph.name = f"anomaly_{s}"
    onx.doc_string = ""
    return onx.SerializeToString()


def ensure_models(args):
    """The model files for sensors 0..models-1; the missing ones are generated."""
    d = model_cache_dir(args)
    d.mkdir(parents=True, exist_ok=True)
    paths = [d / f"anomaly_{s}.onnx" for s in range(args.models)]
    missing = [s for s, p in enumerate(paths) if not p.exists()]
    if missing:
        log(f"training and converting {len(missing)} {args.model_kind} models into {d}")
        t = time.perf_counter()
        for i, s in enumerate(missing):
            tmp = paths[s].with_suffix(".tmp")
            tmp.write_bytes(build_model(args.model_kind, s, args.train_points))
            tmp.rename(paths[s])
            if (i + 1) % 200 == 0:
                log(f"  {i + 1}/{len(missing)}")
        log(f"  done in {time.perf_counter() - t:.1f} s")
    return paths


_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_COPY_TRAILER = struct.pack(">h", -1)
_ROW_DTYPE = np.dtype(
    [("n", ">i2"), ("l_sensor", ">i4"), ("sensor", ">i4"), ("l_ts", ">i4"), ("ts", ">i8")]
    + [x for f in FEATURES for x in ((f"l_{f}", ">i4"), (f, ">f8"))]
)
COPY_SQL = f"COPY readings (sensor_id, ts, {', '.join(FEATURES)}) FROM STDIN (FORMAT BINARY)"


def readings(start, n, models, seed):
    """Rows start..start+n-1 of the stream as one binary COPY payload: row i is sensor i % models,
    one reading per sensor per second, 0.5% of readings far off their sensor's normal range."""
    i = np.arange(start, start + n, dtype=np.int64)
    sensor = (i % models).astype(np.int32)
    all_means, all_stds = fleet_params(models)
    means, stds = all_means[sensor], all_stds[sensor]
    rng = np.random.default_rng(seed)
    x = means + stds * rng.standard_normal((n, len(FEATURES)))
    off = rng.random(n) < 0.005
    x[off] += 8 * stds[off]
    a = np.empty(n, _ROW_DTYPE)
    a["n"] = 2 + len(FEATURES)
    a["l_sensor"], a["sensor"] = 4, sensor
    a["l_ts"], a["ts"] = 8, TS0_US + (i // models) * 1_000_000
    for k, f in enumerate(FEATURES):
        a[f"l_{f}"], a[f] = 8, x[:, k]
    return _COPY_HEADER + a.tobytes() + _COPY_TRAILER


def copy_in(con, payload):
    with con.cursor().copy(COPY_SQL) as cp:
        cp.write(payload)


# ---------------------------------------------------------------------------------------------
# Database helpers

def connect(url, autocommit=True):
    return psycopg.connect(url, autocommit=autocommit)


def one(con, sql, params=None):
    row = con.execute(sql, params).fetchone()
    return row[0] if row else None


def job_exists(con, name="bench"):
    return one(con, "SELECT count(*) FROM sqlscore.job_definitions WHERE name = %s", (name,)) > 0


def stop_everything(con):
    """Stops a stream or run of the job left by an earlier (interrupted) run, drops the job."""
    if not job_exists(con):
        return
    con.execute("SELECT sqlscore.stop_stream('bench')")
    for (run,) in con.execute("SELECT run_id FROM sqlscore.job_runs WHERE job = 'bench' AND status = 'running'").fetchall():
        con.execute("SELECT sqlscore.cancel_run(%s)", (run,))
    deadline = time.time() + 60
    while True:
        try:
            con.execute("SELECT sqlscore.drop_job('bench', drop_target => true)")
            return
        except psycopg.errors.ObjectInUse:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def create_job(con, batch_size):
    """The job over the whole table; returns seconds taken (it queues every existing row)."""
    t = time.perf_counter()
    con.execute(
        "SELECT sqlscore.create_job('bench', 'readings', 'id', %s, 'scores', "
        "features => %s, carry => '{sensor_id}', batch_size => %s)",
        (MODEL_EXPR, list(FEATURES), batch_size))
    took = time.perf_counter() - t
    # Each measured run starts from the same queue state (a fresh queue, no dead tuples).
    con.execute("VACUUM ANALYZE sqlscore.job_queue")
    return took


def reset_job(con, batch_size):
    stop_everything(con)
    took = create_job(con, batch_size)
    con.execute("CHECKPOINT")
    return took


class Progress(threading.Thread):
    """Samples rows_scored of the job's latest run every `every` seconds (another session)."""

    def __init__(self, url, every=1.0):
        super().__init__(daemon=True)
        self.url, self.every, self.samples = url, every, []
        self.stop = threading.Event()

    def run(self):
        with connect(self.url) as con:
            while not self.stop.wait(self.every):
                r = con.execute("SELECT rows_scored FROM sqlscore.job_runs WHERE job = 'bench' "
                                "ORDER BY run_id DESC LIMIT 1").fetchone()
                if r:
                    self.samples.append((time.perf_counter(), int(r[0])))


def rate_profile(samples, t0, t1, total):
    """rows/s over the first and the last quarter of the rows: a run that slows down as it
    advances (queue or table bloat) shows here."""
    pts = [(t0, 0)] + samples + [(t1, total)]
    def time_at(rows):
        for (ta, ra), (tb, rb) in zip(pts, pts[1:]):
            if rb >= rows:
                return ta + (tb - ta) * ((rows - ra) / (rb - ra) if rb > ra else 1.0)
        return t1
    q = total / 4
    first = q / max(time_at(q) - t0, 1e-9)
    last = q / max(t1 - time_at(3 * q), 1e-9)
    return {"first_quarter_rows_per_s": first, "last_quarter_rows_per_s": last}


def check_run(con, run_id, rows):
    st, scored, rejected, err = con.execute(
        "SELECT status, rows_scored, rows_rejected, error FROM sqlscore.job_runs WHERE run_id = %s", (run_id,)).fetchone()
    if st != "succeeded" or scored != rows:
        raise SystemExit(f"run {run_id}: status {st}, {scored} of {rows} rows scored, {rejected} rejected: {err}")
    n = one(con, "SELECT count(*) FROM scores")
    if n != rows:
        raise SystemExit(f"run {run_id}: the target has {n} rows, expected {rows}")


# ---------------------------------------------------------------------------------------------
# Phases

def setup(args, paths):
    out = {}
    with connect(args.url) as con:
        con.execute("CREATE EXTENSION IF NOT EXISTS sqlscore")
        stop_everything(con)
        con.execute("DROP TABLE IF EXISTS readings, scores, py_scores, py_watermark")
        # Models: register what is missing or differs from the cached file.
        active = dict(con.execute("SELECT name, sha256 FROM sqlscore.model_versions "
                                  "WHERE active AND name LIKE 'anomaly\\_%'").fetchall())
        todo = []
        for s, p in enumerate(paths):
            b = p.read_bytes()
            if active.get(f"anomaly_{s}") != hashlib.sha256(b).hexdigest():
                todo.append((f"anomaly_{s}", b))
        t = time.perf_counter()
        if todo:
            log(f"registering {len(todo)} models")
            with con.transaction():
                con.cursor().executemany("SELECT sqlscore.register_model(%s, %s)", todo)
        out["register_models"] = {"models": len(todo), "s": time.perf_counter() - t}

        con.execute("CREATE TABLE readings (id bigserial PRIMARY KEY, sensor_id int NOT NULL, "
                    "ts timestamptz NOT NULL, " + ", ".join(f"{f} float8" for f in FEATURES) + ")")
        log(f"loading {args.rows:,} readings over {args.models} sensors (binary COPY)")
        t = time.perf_counter()
        chunk = 1_000_000
        for start in range(0, args.rows, chunk):
            n = min(chunk, args.rows - start)
            with con.transaction():
                copy_in(con, readings(start, n, args.models, seed=start))
        load_s = time.perf_counter() - t
        con.execute("VACUUM ANALYZE readings")
        out["load"] = {"rows": args.rows, "s": load_s, "rows_per_s": args.rows / load_s,
                       "vacuum_s": time.perf_counter() - t - load_s}
        log(f"  loaded in {load_s:.1f} s ({args.rows / load_s:,.0f} rows/s), vacuum {out['load']['vacuum_s']:.1f} s")
        con.execute("CREATE TABLE py_watermark (job text PRIMARY KEY, last_id bigint NOT NULL)")
        con.execute("CREATE TABLE py_scores (id bigint PRIMARY KEY, sensor_id int NOT NULL, score float8, "
                    "model text NOT NULL, scored_at timestamptz NOT NULL DEFAULT clock_timestamp())")
    return out


def phase_run_job(args):
    with connect(args.url) as con:
        create_s = reset_job(con, args.batch_size)
    log(f"run_job over {args.rows:,} rows (create_job queued them in {create_s:.1f} s)")
    prog = Progress(args.url)
    with connect(args.url) as con:
        pid = one(con, "SELECT pg_backend_pid()")
        prog.start()
        cpu0, m = proc_cpu(pid), Machine()
        t0 = time.perf_counter()
        run_id = con.execute("CALL sqlscore.run_job('bench')").fetchone()[0]
        t1 = time.perf_counter()
        cpu1 = proc_cpu(pid)
        cpu = cpu1 - cpu0 if cpu0 is not None and cpu1 is not None else None
        machine = m.stop(cpu)
        prog.stop.set()
        prog.join()
        check_run(con, run_id, args.rows)
        server_s = one(con, "SELECT extract(epoch FROM finished_at - started_at)::float8 FROM sqlscore.job_runs "
                            "WHERE run_id = %s", (run_id,))
    s = t1 - t0
    log(f"  {s:.2f} s, {args.rows / s:,.0f} rows/s")
    return {"s": s, "server_s": server_s, "rows_per_s": args.rows / s, "create_job_s": create_s,
            **rate_profile(prog.samples, t0, t1, args.rows), **machine}


def phase_submit(args, workers):
    with connect(args.url) as con:
        create_s = reset_job(con, args.batch_size)
    log(f"submit_job with {workers} worker(s) over {args.rows:,} rows")
    samples = []
    cpu = {}  # worker pid -> last CPU seconds seen (workers exit at the end: polled while alive)
    with connect(args.url) as con:
        m = Machine()
        t0 = time.perf_counter()
        run_id = one(con, "SELECT sqlscore.submit_job('bench', %s)", (workers,))
        while True:
            st, scored = con.execute("SELECT status, rows_scored FROM sqlscore.job_runs WHERE run_id = %s",
                                     (run_id,)).fetchone()
            now = time.perf_counter()
            if st != "running":
                break
            samples.append((now, int(scored)))
            for (pid,) in con.execute("SELECT pid FROM sqlscore.job_run_workers WHERE run_id = %s AND pid IS NOT NULL",
                                      (run_id,)).fetchall():
                c = proc_cpu(pid)
                if c is not None:
                    cpu[pid] = c
            time.sleep(args.poll)
        t1 = now
        machine = m.stop(sum(cpu.values()) if cpu else None)
        check_run(con, run_id, args.rows)
        server_s = one(con, "SELECT extract(epoch FROM finished_at - started_at)::float8 FROM sqlscore.job_runs "
                            "WHERE run_id = %s", (run_id,))
    log(f"  {server_s:.2f} s (server), {t1 - t0:.2f} s polled, {args.rows / server_s:,.0f} rows/s")
    return {"workers": workers, "s": server_s, "polled_s": t1 - t0, "rows_per_s": args.rows / server_s,
            "create_job_s": create_s, **rate_profile(samples, t0, t1, args.rows), **machine}


def python_pipeline(url, model_dir, chunk, timers):
    """The incremental job as a team writes it in Python: watermark, chunk, group, score, COPY."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sessions = {}

    def session(sensor):
        sess = sessions.get(sensor)
        if sess is None:
            sess = ort.InferenceSession(str(model_dir / f"anomaly_{sensor}.onnx"), so,
                                        providers=["CPUExecutionProvider"])
            sessions[sensor] = sess
        return sess

    total = 0
    with psycopg.connect(url) as con:
        pid = one(con, "SELECT pg_backend_pid()")
        con.commit()
        backend0 = proc_cpu(pid)
        while True:
            with con.transaction():
                t = time.perf_counter()
                wm = one(con, "SELECT last_id FROM py_watermark WHERE job = 'bench' FOR UPDATE")
                rows = con.execute(
                    "SELECT id, sensor_id, f0, f1, f2, f3 FROM readings WHERE id > %s ORDER BY id LIMIT %s",
                    (wm, chunk)).fetchall()
                if not rows:
                    break
                ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
                sensors = np.fromiter((r[1] for r in rows), np.int64, len(rows))
                x = np.array([r[2:] for r in rows], dtype=np.float32)
                t1 = time.perf_counter()
                scores = np.empty(len(rows), dtype=np.float64)
                order = np.argsort(sensors, kind="stable")
                uniq, starts = np.unique(sensors[order], return_index=True)
                for s, lo, hi in zip(uniq.tolist(), starts.tolist(), list(starts[1:]) + [len(order)]):
                    idx = order[lo:hi]
                    scores[idx] = session(s).run(["scores"], {"X": x[idx]})[0][:, 0]
                t2 = time.perf_counter()
                with con.cursor().copy("COPY py_scores (id, sensor_id, score, model) FROM STDIN") as cp:
                    for i, s, v in zip(ids.tolist(), sensors.tolist(), scores.tolist()):
                        cp.write_row((i, s, v, f"anomaly_{s}"))
                con.execute("UPDATE py_watermark SET last_id = %s WHERE job = 'bench'", (int(ids.max()),))
                t3 = time.perf_counter()
            timers["fetch_s"] += t1 - t
            timers["score_s"] += t2 - t1
            timers["write_s"] += t3 - t2
            total += len(rows)
        backend1 = proc_cpu(pid)
        timers["backend_cpu_s"] = backend1 - backend0 if backend0 is not None and backend1 is not None else None
    return total


def phase_python(args, model_dir):
    with connect(args.url) as con:
        con.execute("TRUNCATE py_scores")
        con.execute("DELETE FROM py_watermark")
        con.execute("INSERT INTO py_watermark VALUES ('bench', 0)")
        con.execute("VACUUM ANALYZE py_watermark")
        con.execute("CHECKPOINT")
    chunk = args.py_chunk or args.batch_size
    log(f"Python pipeline over {args.rows:,} rows, chunks of {chunk:,}")
    timers = {"fetch_s": 0.0, "score_s": 0.0, "write_s": 0.0}
    m = Machine()
    t0 = time.perf_counter()
    n = python_pipeline(args.url, model_dir, chunk, timers)
    s = time.perf_counter() - t0
    timers.update(m.stop(timers.pop("backend_cpu_s"), count_client=True))
    if n != args.rows:
        raise SystemExit(f"Python pipeline scored {n} rows, expected {args.rows}")
    log(f"  {s:.2f} s, {args.rows / s:,.0f} rows/s (fetch {timers['fetch_s']:.1f} s, score {timers['score_s']:.1f} s, "
        f"write {timers['write_s']:.1f} s)")
    return {"s": s, "rows_per_s": args.rows / s, "chunk": chunk, **timers}


def agreement(args):
    """Scores of the job and of the Python pipeline for the same rows (a sample)."""
    with connect(args.url) as con:
        n, diff = con.execute(
            "SELECT count(*), max(abs(s.score - p.score)) FROM scores s JOIN py_scores p USING (id) "
            "WHERE s.id <= 100000").fetchone()
    return {"rows_compared": n, "max_abs_diff": diff}


def ingest(con, payloads, rows, batch):
    """COPYs `rows` rows in `batch`-row transactions (autocommit COPY), as fast as possible."""
    m = Machine()
    t = time.perf_counter()
    done = 0
    k = 0
    while done < rows:
        copy_in(con, payloads[k % len(payloads)])
        done += batch
        k += 1
    took = time.perf_counter() - t
    machine = m.stop(0.0)
    return took, {k: v for k, v in machine.items() if k in ("busy_cores", "outside_cores")}


def wait_backlog_empty(con, timeout):
    t = time.perf_counter()
    while time.perf_counter() - t < timeout:
        b = one(con, "SELECT backlog FROM sqlscore.jobs WHERE name = 'bench'")
        if b == 0:
            return time.perf_counter() - t
        time.sleep(0.05)
    raise SystemExit(f"the stream did not drain its backlog within {timeout} s (backlog {b})")


def phase_stream(args):
    out = {}
    batch = args.copy_batch
    rows = (args.stream_rows // batch) * batch
    payloads = [readings(k * batch, batch, args.models, seed=10**9 + k) for k in range(min(rows // batch, 20))]
    with connect(args.url) as con:
        stop_everything(con)

        def fresh():
            con.execute("TRUNCATE readings")
            con.execute("VACUUM ANALYZE sqlscore.job_queue")
            con.execute("CHECKPOINT")

        fresh()
        log(f"ingest {rows:,} rows in {batch:,}-row COPY transactions: no job")
        s, machine = ingest(con, payloads, rows, batch)
        out["no_job"] = {"s": s, "rows_per_s": rows / s, **machine}
        log(f"  {rows / s:,.0f} rows/s")

        fresh()
        create_job(con, args.batch_size)
        con.execute("CHECKPOINT")
        log("ingest: job defined, no stream")
        s, machine = ingest(con, payloads, rows, batch)
        out["job_no_stream"] = {"s": s, "rows_per_s": rows / s, **machine}
        log(f"  {rows / s:,.0f} rows/s")
        stop_everything(con)

        fresh()
        create_job(con, args.batch_size)
        con.execute("CHECKPOINT")
        run_id = one(con, "SELECT sqlscore.stream_job('bench', '100 ms')")
        time.sleep(1.0)  # the worker is up and idle
        log(f"ingest: stream_job('bench', '100 ms') active (run {run_id})")
        s, machine = ingest(con, payloads, rows, batch)
        drain = wait_backlog_empty(con, timeout=max(600, 20 * s))
        scored = one(con, "SELECT count(*) FROM scores")
        out["stream"] = {"s": s, "rows_per_s": rows / s, "drain_after_ingest_s": drain,
                         "scored_rows_per_s": rows / (s + drain), "scored": scored, **machine}
        log(f"  {rows / s:,.0f} rows/s; backlog drained {drain:.2f} s after the last COPY")

        # Latency at a paced ingest, the stream still active.
        pb = args.pace_batch
        period = pb / args.pace_rows
        n_batches = max(1, int(args.stream_seconds / period))
        pace_payloads = [readings(k * pb, pb, args.models, seed=2 * 10**9 + k) for k in range(min(n_batches, 50))]
        log(f"latency: {args.pace_rows:,} rows/s in {pb:,}-row COPY transactions for {args.stream_seconds} s")
        first_id = one(con, "SELECT coalesce(max(id), 0) FROM readings") + 1
        commits = []  # (last id of the batch, commit time)
        late = 0
        t_start = time.perf_counter()
        for k in range(n_batches):
            due = t_start + k * period
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            elif now - due > period:
                late += 1
            with con.transaction():
                copy_in(con, pace_payloads[k % len(pace_payloads)])
                last = one(con, "SELECT currval(pg_get_serial_sequence('readings', 'id'))")
            commits.append((last, time.time()))
        paced_s = time.perf_counter() - t_start
        wait_backlog_empty(con, timeout=600)
        time.sleep(0.2)
        got = con.execute("SELECT id, extract(epoch FROM scored_at)::float8 FROM scores WHERE id >= %s ORDER BY id",
                          (first_id,)).fetchall()
        con.execute("SELECT sqlscore.stop_stream('bench')")
        deadline = time.time() + 30
        while one(con, "SELECT status FROM sqlscore.job_runs WHERE run_id = %s", (run_id,)) == "running":
            if time.time() > deadline:
                log("  the stream did not end within 30 s of stop_stream")
                break
            time.sleep(0.1)
        stream_run = con.execute("SELECT status, rows_scored, error FROM sqlscore.job_runs WHERE run_id = %s",
                                 (run_id,)).fetchone()
    ids = np.array([g[0] for g in got], dtype=np.int64)
    scored_at = np.array([g[1] for g in got])
    lasts = np.array([c[0] for c in commits], dtype=np.int64)
    commit_t = np.array([c[1] for c in commits])
    expected = int(lasts[-1] - first_id + 1)
    b = np.searchsorted(lasts, ids)  # the batch of each row: the first whose last id >= it
    lat = scored_at - commit_t[b]
    per_batch = np.array([scored_at[b == k].max() - commit_t[k] for k in range(len(commits)) if (b == k).any()])
    out["latency"] = {
        "target_rows_per_s": args.pace_rows, "batch_rows": pb, "batches": len(commits), "late_batches": late,
        "achieved_rows_per_s": expected / paced_s, "rows": expected, "scored": len(ids),
        "p50_s": float(np.percentile(lat, 50)), "p95_s": float(np.percentile(lat, 95)),
        "p99_s": float(np.percentile(lat, 99)), "max_s": float(lat.max()),
        "batch_fully_scored_p95_s": float(np.percentile(per_batch, 95)),
        "stream_run": {"status": stream_run[0], "rows_scored": int(stream_run[1]), "error": stream_run[2]},
    }
    L = out["latency"]
    log(f"  p50 {L['p50_s'] * 1000:.0f} ms, p95 {L['p95_s'] * 1000:.0f} ms, max {L['max_s'] * 1000:.0f} ms "
        f"({L['scored']:,} of {L['rows']:,} rows scored)")
    if len(ids) != expected:
        log(f"  WARNING: {expected - len(ids)} paced rows were not scored")
    with connect(args.url) as con:
        stop_everything(con)
    return out


# ---------------------------------------------------------------------------------------------
# Report

def report(args, res):
    def rps(x):
        return f"{x:,.0f}"

    lines = []
    lines.append("")
    lines.append(f"sqlscore jobs benchmark: {args.rows:,} readings, {args.models:,} per-sensor {args.model_kind} models, "
                 f"batch {args.batch_size:,}")
    if "setup" in res:
        st = res["setup"]
        lines.append(f"setup: registered {st['register_models']['models']} models in {st['register_models']['s']:.1f} s; "
                     f"COPY load {st['load']['s']:.1f} s ({rps(st['load']['rows_per_s'])} rows/s)")
    lines.append("")
    def cpu_cols(r):
        def f(key, scale=1.0, fmt="{:.2f}"):
            return fmt.format(r[key] * scale) if r.get(key) is not None else ""
        return (f"{f('own_cpu_s', 1e6 / args.rows, '{:.1f}')} | {f('pg_background_cores')} | "
                f"{f('outside_cores')}")

    lines.append("| incremental job over the full backlog | seconds | rows/s | first 1/4 rows/s | last 1/4 rows/s "
                 "| CPU s per 1M rows | PG background (cores) | outside load (cores) |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for key, label in [("run_job", "CALL sqlscore.run_job"), ("submit_1", "submit_job, 1 worker"),
                       ("submit_2", "submit_job, 2 workers")]:
        if key in res:
            r = res[key]
            lines.append(f"| {label} | {r['s']:.2f} | {rps(r['rows_per_s'])} | {rps(r['first_quarter_rows_per_s'])} | "
                         f"{rps(r['last_quarter_rows_per_s'])} | {cpu_cols(r)} |")
    if "python" in res:
        r = res["python"]
        lines.append(f"| Python pipeline (watermark, {r['chunk']:,}-row chunks, ORT per sensor, COPY) | {r['s']:.2f} | "
                     f"{rps(r['rows_per_s'])} | | | {cpu_cols(r)} |")
        lines.append(f"|   of which fetch {r['fetch_s']:.1f} s, score {r['score_s']:.1f} s, write {r['write_s']:.1f} s "
                     "| | | | | | | |")
    lines.append("(CPU: the scoring backend or workers; for Python, the script and its backend. PG background: the "
                 "rest of the cluster (autovacuum, WAL writer, checkpointer). Outside: other processes on the machine; "
                 "rows/s are only comparable where it is ~0)")
    if "run_job" in res:
        lines.append(f"(create_job, which queues the whole table: {res['run_job']['create_job_s']:.1f} s, not included)")
    if "stream" in res:
        s = res["stream"]
        lines.append("")
        lines.append(f"| COPY ingest, {args.stream_rows:,} rows in {args.copy_batch:,}-row transactions | seconds | rows/s "
                     "| busy cores | outside load (cores) |")
        lines.append("|---|---:|---:|---:|---:|")
        for key, label in [("no_job", "no job"), ("job_no_stream", "job defined, no stream"),
                           ("stream", "stream_job('bench', '100 ms') active")]:
            cols = [f"{s[key][k]:.2f}" if k in s[key] else "" for k in ("busy_cores", "outside_cores")]
            lines.append(f"| {label} | {s[key]['s']:.2f} | {rps(s[key]['rows_per_s'])} | {' | '.join(cols)} |")
        lines.append(f"(with the stream: backlog drained {s['stream']['drain_after_ingest_s']:.2f} s after the last COPY; "
                     f"{rps(s['stream']['scored_rows_per_s'])} rows/s ingested and scored)")
        L = s["latency"]
        lines.append(f"latency at {rps(L['target_rows_per_s'])} rows/s ({L['batch_rows']:,}-row COPYs, achieved "
                     f"{rps(L['achieved_rows_per_s'])} rows/s, {L['batches']} batches, {L['late_batches']} late): "
                     f"commit->scored p50 {L['p50_s'] * 1000:.0f} ms, p95 {L['p95_s'] * 1000:.0f} ms, "
                     f"p99 {L['p99_s'] * 1000:.0f} ms, max {L['max_s'] * 1000:.0f} ms; "
                     f"batch fully scored p95 {L['batch_fully_scored_p95_s'] * 1000:.0f} ms")
    if "agreement" in res:
        a = res["agreement"]
        lines.append(f"job vs Python scores, {a['rows_compared']:,} rows: max |diff| {a['max_abs_diff']}")

    # Ratios against the targets.
    checks = []
    if "run_job" in res and "python" in res:
        checks.append(("run_job / Python pipeline", res["run_job"]["rows_per_s"] / res["python"]["rows_per_s"], 3.0, "x"))
    if "submit_1" in res and "submit_2" in res:
        checks.append(("2 workers / 1 worker", res["submit_2"]["rows_per_s"] / res["submit_1"]["rows_per_s"], 1.7, "x"))
    if "stream" in res:
        s = res["stream"]
        checks.append(("ingest with stream / without job", s["stream"]["rows_per_s"] / s["no_job"]["rows_per_s"], 0.8, "x"))
        checks.append(("ingest with stream / job defined, no stream",
                       s["stream"]["rows_per_s"] / s["job_no_stream"]["rows_per_s"], None, "x"))
        checks.append(("ingest, job defined, no stream / without job (the queueing trigger)",
                       s["job_no_stream"]["rows_per_s"] / s["no_job"]["rows_per_s"], None, "x"))
        checks.append((f"p95 commit->score at {rps(args.pace_rows)} rows/s", s["latency"]["p95_s"], 2.0, "s<="))
    if checks:
        lines.append("")
        lines.append("| ratio | measured | target | |")
        lines.append("|---|---:|---:|---|")
        for name, v, target, kind in checks:
            if kind == "s<=":
                ok = "met" if v <= target else "MISSED"
                lines.append(f"| {name} | {v:.3f} s | <= {target:.1f} s | {ok} |")
            elif target is None:
                lines.append(f"| {name} | {v:.2f}x | | |")
            else:
                ok = "met" if v >= target else "MISSED"
                lines.append(f"| {name} | {v:.2f}x | >= {target:.1f}x | {ok} |")
        res["ratios"] = {name: v for name, v, _, _ in checks}
    print("\n".join(lines), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default=os.environ.get("SQLSCORE_PG_URL", "postgres://postgres@127.0.0.1:5499/postgres"))
    ap.add_argument("--rows", type=int, default=10_000_000, help="readings in the source table")
    ap.add_argument("--models", type=int, default=1000, help="sensors, one model each")
    ap.add_argument("--model-kind", choices=("ocsvm", "iforest"), default="ocsvm",
                    help="StandardScaler + OneClassSVM, or StandardScaler + IsolationForest(n_estimators=10)")
    ap.add_argument("--train-points", type=int, default=300, help="training readings per sensor")
    ap.add_argument("--batch-size", type=int, default=10_000, help="the job's batch_size (create_job's default)")
    ap.add_argument("--py-chunk", type=int, default=0, help="the Python pipeline's chunk (default: --batch-size)")
    ap.add_argument("--stream-rows", type=int, default=1_000_000, help="rows COPYed in each ingest measurement")
    ap.add_argument("--copy-batch", type=int, default=10_000, help="rows per COPY transaction when ingesting")
    ap.add_argument("--stream-seconds", type=float, default=20.0, help="duration of the paced-ingest latency run")
    ap.add_argument("--pace-rows", type=int, default=10_000, help="paced ingest rate, rows/s")
    ap.add_argument("--pace-batch", type=int, default=1_000, help="rows per COPY transaction at the paced rate")
    ap.add_argument("--poll", type=float, default=0.1, help="seconds between polls of job_runs")
    ap.add_argument("--only", default=",".join(PHASES),
                    help=f"comma-separated phases to run, of {','.join(PHASES)} (setup always runs)")
    ap.add_argument("--json", default=str(ROOT / "target" / "bench" / "jobs.json"), help="where to write results ('' for none)")
    args = ap.parse_args()
    phases = set(filter(None, args.only.split(",")))
    if phases - set(PHASES):
        ap.error(f"unknown phase(s) {', '.join(sorted(phases - set(PHASES)))}; known: {', '.join(PHASES)}")

    paths = ensure_models(args)
    res = {"params": {k: v for k, v in vars(args).items() if k != "url"}, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    global POSTMASTER
    with connect(args.url) as con:
        res["server"] = one(con, "SHOW server_version")
        try:
            pm = int(one(con, "SELECT split_part(pg_read_file('postmaster.pid'), E'\\n', 1)"))
            if (Path("/proc") / str(pm)).exists():
                POSTMASTER = pm
        except (psycopg.Error, ValueError, TypeError):
            pass
    t_all = time.perf_counter()
    res["setup"] = setup(args, paths)
    if "python" in phases:
        res["python"] = phase_python(args, paths[0].parent)
    if "run_job" in phases:
        res["run_job"] = phase_run_job(args)
        if "python" in phases:
            res["agreement"] = agreement(args)
    if "submit_1" in phases:
        res["submit_1"] = phase_submit(args, 1)
    if "submit_2" in phases:
        res["submit_2"] = phase_submit(args, 2)
    if "stream" in phases:
        res["stream"] = phase_stream(args)
    res["total_s"] = time.perf_counter() - t_all
    report(args, res)
    print(f"(whole benchmark: {res['total_s']:.0f} s)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
        print(f"results: {args.json}")


if __name__ == "__main__":
    main()
