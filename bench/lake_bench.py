#!/usr/bin/env python3
"""Benchmark of sqlscore lake jobs (DuckDB): an incremental per-sensor anomaly job over a folder of
Parquet files, run with `sqlscore job run`, against the Python pipeline a team writes for it.

    .venv/bin/python bench/lake_bench.py [--rows 10000000] [--models 1000] [--files 100] \
        [--dir target/bench/lake] [--cli target/release/sqlscore] [--only python,job_1,...]

Setup (cached between runs):
  - --models per-sensor models (StandardScaler + OneClassSVM on 4 features, skl2onnx), the same
    files as bench/jobs_bench.py (.cache/bench-models/), named anomaly_<sensor>;
  - the lake: <dir>/readings/readings-00000.parquet ... (--files files, --rows rows in all;
    id BIGINT 1..rows, sensor_id VARCHAR, ts TIMESTAMP, f0..f3 DOUBLE; row i from sensor
    i % models, one reading per sensor per second, 0.5% far off their sensor's normal range: the
    distribution of jobs_bench.py), skipped when <dir>/readings.manifest.json matches;
  - <dir>/template.duckdb: the models registered through the loadable extension
    (INSERT INTO sqlscore_models FROM sqlscore_register(...), one transaction). Every phase starts
    from its own copy of it (<dir>/<phase>.duckdb): same registry, no job state, no scores.

Phases (--only picks; order as listed):
  python          bench/lake_pipeline.py, the job as a team writes it: a JSON state file of the
                  files scored (size + mtime), pyarrow reads of the new files 10 at a time, rows
                  grouped by sensor, one onnxruntime session per sensor, the scores inserted into
                  scores_py of the DuckDB file from Arrow, the state file replaced after each
                  commit. Run as its own process; the whole process is timed.
  job_1, job_2    `sqlscore job create bench ... --target scores` (not timed), then
                  `sqlscore job run bench --threads N --json`, the whole process timed. Checked:
                  status succeeded, rows_scored = rows, and scores has rows distinct ids.
  noop            right after job_1, on its database: `sqlscore job run bench --json` again, with
                  nothing new: the cost of the exactly-once bookkeeping (target < 1 s).
  job_2           as job_1 on a fresh copy, 2 threads.
  agree           the scores of 100,000 random ids in the job's table and in scores_py.
  parquet_target  job_2 with --target <dir>/out/ (a Parquet folder) instead of a table.

Each timed command reports the CPU seconds of its process (wait4 rusage: user + system, its
threads and children included), its peak RSS, the machine's busy cores over the phase (/proc/stat)
and how much of that was other processes ("outside load"), and the 1-minute load average before
and after: on a small shared machine rows/s move with whatever else runs, CPU per row does not.

Prints a table with the issue's targets (job >= 3x the Python pipeline; a run with nothing new
< 1 s; 2 threads vs 1) and writes JSON (--json). A quick check that everything works:
--rows 200000 --models 50 --files 10 --dir /tmp/lakebench-small.
"""
import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))
import jobs_bench  # noqa: E402  (models and the readings' distribution)

FEATURES = jobs_bench.FEATURES
MODEL_EXPR = jobs_bench.MODEL_EXPR  # 'anomaly_' || sensor_id
PHASES = ("python", "job_1", "noop", "job_2", "agree", "parquet_target")
DEFAULT_PHASES = ("python", "job_1", "noop", "job_2", "agree")
# Bumped when the generated lake changes, so a stale one is never used.
LAKE_GEN = 1
TS0 = np.datetime64("2025-01-01T00:00:00", "us")
AGREE_ROWS = 100_000

log = jobs_bench.log


# ---------------------------------------------------------------------------------------------
# Machine and process accounting

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def busy_seconds():
    """CPU seconds the whole machine has been busy (all but idle and iowait), or None."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (sum(v) - v[3] - v[4]) / _TICK
    except (OSError, ValueError):
        return None


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def run_measured(cmd, name, args, check=True):
    """Runs `cmd` to its end, timed from process start to exit. Returns wall seconds, the
    process's CPU seconds and peak RSS (wait4), the machine's load over the run, and its stdout;
    stdout and stderr are also kept in <dir>/logs/<name>.{out,err}."""
    logs = Path(args.dir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out_path, err_path = logs / f"{name}.out", logs / f"{name}.err"
    load0, busy0 = loadavg(), busy_seconds()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        t0 = time.perf_counter()
        p = subprocess.Popen([str(c) for c in cmd], stdout=out, stderr=err, cwd=ROOT)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    p.returncode = rc = os.waitstatus_to_exitcode(status)
    busy1 = busy_seconds()
    cpu = ru.ru_utime + ru.ru_stime
    res = {"wall_s": wall, "cpu_s": cpu, "cores": cpu / wall, "max_rss_mb": ru.ru_maxrss / 1024,
           "load_before": load0, "load_after": loadavg(), "rc": rc}
    if busy0 is not None and busy1 is not None:
        res["busy_cores"] = (busy1 - busy0) / wall
        res["outside_cores"] = max(0.0, res["busy_cores"] - res["cores"])
    stdout = out_path.read_text()
    if check and rc != 0:
        tail = "\n".join((stdout + err_path.read_text()).splitlines()[-30:])
        raise SystemExit(f"{name}: `{' '.join(str(c) for c in cmd)}` exited with {rc}:\n{tail}")
    return res, stdout


def last_json(stdout, name):
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    try:
        return json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise SystemExit(f"{name}: the last line of stdout is not a JSON object:\n{stdout[-2000:]}")


# ---------------------------------------------------------------------------------------------
# The lake

def lake_rows(start, n, models, seed):
    """Rows start..start+n-1 of the stream (ids start+1..start+n) as an Arrow table: row i is
    sensor i % models, one reading per sensor per second, 0.5% far off the sensor's range."""
    i = np.arange(start, start + n, dtype=np.int64)
    sensor = i % models
    all_means, all_stds = jobs_bench.fleet_params(models)
    means, stds = all_means[sensor], all_stds[sensor]
    rng = np.random.default_rng(seed)
    x = means + stds * rng.standard_normal((n, len(FEATURES)))
    off = rng.random(n) < 0.005
    x[off] += 8 * stds[off]
    names = pa.array([str(s) for s in range(models)], pa.string())
    cols = {
        "id": pa.array(i + 1),
        "sensor_id": names.take(pa.array(sensor)),  # a plain string column (not dictionary)
        "ts": pa.array(TS0 + (i // models) * np.timedelta64(1, "s"), pa.timestamp("us")),
    }
    for k, f in enumerate(FEATURES):
        cols[f] = pa.array(x[:, k])
    return pa.table(cols)


def ensure_lake(args):
    """The lake's Parquet files; regenerated unless the manifest says they match the parameters."""
    d = Path(args.dir) / "readings"
    manifest_path = Path(args.dir) / "readings.manifest.json"
    want = {"gen": LAKE_GEN, "rows": args.rows, "models": args.models, "files": args.files}
    try:
        have = json.loads(manifest_path.read_text())
        if {k: have.get(k) for k in want} == want and all(
                (d / name).exists() and (d / name).stat().st_size == size for name, size in have["sizes"].items()):
            log(f"lake: {args.files} files, {args.rows:,} rows in {d} (cached)")
            return {"cached": True, "bytes": sum(have["sizes"].values()), "generate_s": have.get("generate_s")}
    except (FileNotFoundError, json.JSONDecodeError, KeyError, AttributeError):
        pass
    log(f"lake: writing {args.rows:,} rows over {args.models} sensors into {args.files} Parquet files in {d}")
    manifest_path.unlink(missing_ok=True)
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    t = time.perf_counter()
    sizes = {}
    for k in range(args.files):
        lo, hi = k * args.rows // args.files, (k + 1) * args.rows // args.files
        name = f"readings-{k:05d}.parquet"
        tmp = d / f"{name}.tmp"
        pq.write_table(lake_rows(lo, hi - lo, args.models, seed=lo), tmp)
        tmp.rename(d / name)
        sizes[name] = (d / name).stat().st_size
    took = time.perf_counter() - t
    manifest_path.write_text(json.dumps({**want, "generate_s": took, "sizes": sizes}, indent=1) + "\n")
    log(f"  {took:.1f} s, {sum(sizes.values()) / 2**20:.0f} MiB")
    return {"cached": False, "bytes": sum(sizes.values()), "generate_s": took}


# ---------------------------------------------------------------------------------------------
# Databases

def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def remove_db(path):
    for p in (Path(path), Path(f"{path}.wal")):
        p.unlink(missing_ok=True)


def ensure_template(args, paths):
    """<dir>/template.duckdb with every model registered; rebuilt when the extension or the models
    change."""
    template = Path(args.dir) / "template.duckdb"
    key_path = Path(args.dir) / "template.key.json"
    ext = Path(args.extension).resolve()
    if not ext.exists():
        raise SystemExit(f"{ext} does not exist (make extension)")
    key = {"extension_sha256": sha256_file(ext), "models": [str(p) for p in paths]}
    try:
        if template.exists() and json.loads(key_path.read_text()) == key:
            log(f"template database: {len(paths)} models registered in {template} (cached)")
            return {"cached": True}
    except (FileNotFoundError, json.JSONDecodeError):
        pass
    log(f"template database: registering {len(paths)} models in {template}")
    key_path.unlink(missing_ok=True)
    remove_db(template)
    t = time.perf_counter()
    con = duckdb.connect(str(template), config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{ext}'")
    con.execute("BEGIN")
    for p in paths:
        con.execute("INSERT INTO sqlscore_models FROM sqlscore_register(?, ?)", [p.stem, str(p)])
    con.execute("COMMIT")
    n = con.execute("SELECT count(*) FROM sqlscore_models").fetchone()[0]
    con.execute("CHECKPOINT")
    con.close()
    took = time.perf_counter() - t
    if n != len(paths):
        raise SystemExit(f"template database: {n} models registered, expected {len(paths)}")
    key_path.write_text(json.dumps(key) + "\n")
    log(f"  {took:.1f} s")
    return {"cached": False, "register_s": took, "models": n}


def fresh_db(args, name):
    """A copy of the template for one phase: same registry, no job state."""
    db = Path(args.dir) / f"{name}.duckdb"
    remove_db(db)
    shutil.copyfile(Path(args.dir) / "template.duckdb", db)
    return db


def count_distinct(sql_from):
    con = duckdb.connect()
    try:
        return con.execute(f"SELECT count(*), count(DISTINCT id) FROM {sql_from}").fetchone()
    finally:
        con.close()


def table_counts(db, table):
    """count(*), count(DISTINCT id) of `table` in DB (opened after the writer exited)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"SELECT count(*), count(DISTINCT id) FROM {table}").fetchone()
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# Phases

def source_glob(args):
    return str(Path(args.dir).resolve() / "readings" / "*.parquet")


def phase_python(args, model_dir):
    db = fresh_db(args, "python")
    state = Path(args.dir) / "py-state.json"
    state.unlink(missing_ok=True)
    log(f"python: lake_pipeline.py over {args.rows:,} rows ({args.py_files_per_txn} files per transaction)")
    cmd = [sys.executable, BENCH / "lake_pipeline.py", db, source_glob(args), model_dir, state,
           "--files-per-txn", args.py_files_per_txn]
    if args.py_threads:
        cmd += ["--threads", args.py_threads]
    m, stdout = run_measured(cmd, "python", args)
    r = last_json(stdout, "python")
    if r["rows"] != args.rows:
        raise SystemExit(f"python: {r['rows']:,} rows scored, expected {args.rows:,}")
    n, distinct = table_counts(db, "scores_py")
    if n != args.rows or distinct != args.rows:
        raise SystemExit(f"python: scores_py has {n:,} rows ({distinct:,} distinct ids), expected {args.rows:,}")
    out = {"s": m["wall_s"], "rows_per_s": args.rows / m["wall_s"], "pipeline": r, **m}
    log(f"  {m['wall_s']:.2f} s, {out['rows_per_s']:,.0f} rows/s (in-script {r['seconds']:.2f} s: read "
        f"{r['read_s']:.1f} s, score {r['score_s']:.1f} s, write {r['write_s']:.1f} s)")
    return out


def cli_job_create(args, db, name, target):
    cmd = [args.cli, "job", "create", "bench", "--db", db, "--source", source_glob(args), "--key", "id",
           "--model", MODEL_EXPR, "--target", target, "--features", ",".join(FEATURES), "--carry", "sensor_id"]
    m, _ = run_measured(cmd, f"{name}-create", args)
    return m["wall_s"]


def cli_job_run(args, db, name, threads=None):
    cmd = [args.cli, "job", "run", "bench", "--db", db] + (["--threads", threads] if threads else []) + ["--json"]
    m, stdout = run_measured(cmd, name, args)
    return m, last_json(stdout, name)


def check_job_run(name, r, rows):
    if r.get("status") != "succeeded" or r.get("rows_scored") != rows:
        raise SystemExit(f"{name}: run {r.get('run_id')}: status {r.get('status')}, {r.get('rows_scored')} of "
                         f"{rows:,} rows scored, {r.get('rows_rejected')} rejected: {r.get('error')}")


def phase_job(args, name, threads, parquet=False):
    db = fresh_db(args, name)
    if parquet:
        out_dir = Path(args.dir).resolve() / "out"
        if out_dir.exists():
            shutil.rmtree(out_dir)
        target = f"{out_dir}/"
    else:
        target = "scores"
    create_s = cli_job_create(args, db, name, target)
    log(f"{name}: sqlscore job run --threads {threads} over {args.rows:,} rows -> {target} "
        f"(job create: {create_s:.2f} s)")
    m, r = cli_job_run(args, db, name, threads)
    check_job_run(name, r, args.rows)
    if parquet:
        n, distinct = count_distinct(f"read_parquet('{out_dir}/**/*.parquet')")
    else:
        n, distinct = table_counts(db, "scores")
    if n != args.rows or distinct != args.rows:
        raise SystemExit(f"{name}: the target has {n:,} rows ({distinct:,} distinct ids), expected {args.rows:,}")
    out = {"threads": threads, "target": target, "s": m["wall_s"], "rows_per_s": args.rows / m["wall_s"],
           "job_seconds": r.get("seconds"), "create_s": create_s, "run": r, **m}
    log(f"  {m['wall_s']:.2f} s, {out['rows_per_s']:,.0f} rows/s (the run's own seconds: {r.get('seconds')}; "
        f"{m['cpu_s']:.1f} CPU s)")
    return out


def phase_noop(args):
    """A second run on job_1's database: nothing new to score."""
    db = Path(args.dir) / "job_1.duckdb"
    log("noop: sqlscore job run again with nothing new")
    m, r = cli_job_run(args, db, "noop")
    ok = r.get("status") == "succeeded" and r.get("rows_scored") == 0
    n, distinct = table_counts(db, "scores")
    if n != args.rows or distinct != args.rows:
        ok = False
    out = {"s": m["wall_s"], "job_seconds": r.get("seconds"), "run": r, "ok": ok,
           "scores_rows": n, "scores_distinct_ids": distinct, **m}
    log(f"  {m['wall_s']:.3f} s (the run's own seconds: {r.get('seconds')})")
    if not ok:
        log(f"  WARNING: expected status succeeded, 0 rows scored and {args.rows:,} rows kept; got {r}, "
            f"{n:,} rows ({distinct:,} distinct ids)")
    return out


def phase_agree(args):
    """max |job score - Python score| over AGREE_ROWS random ids (one job database vs the Python one)."""
    py = Path(args.dir) / "python.duckdb"
    job = next((Path(args.dir) / f"{n}.duckdb" for n in ("job_1", "job_2")
                if (Path(args.dir) / f"{n}.duckdb").exists()), None)
    if not py.exists() or job is None:
        log("agree: skipped (needs python.duckdb and job_1.duckdb or job_2.duckdb: run the python and job phases)")
        return None
    k = min(AGREE_ROWS, args.rows)
    ids = np.random.default_rng(7).choice(args.rows, size=k, replace=False) + 1
    sample = pa.table({"id": pa.array(ids, pa.int64())})
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{job}' AS j (READ_ONLY)")
        con.execute(f"ATTACH '{py}' AS p (READ_ONLY)")
        con.register("sample", sample)
        n, both, diff, over = con.execute(
            "SELECT count(*), count(js.score) FILTER (WHERE ps.score IS NOT NULL), max(abs(js.score - ps.score)), "
            "count(*) FILTER (WHERE abs(js.score - ps.score) > 1e-6) "
            "FROM sample s LEFT JOIN j.scores js USING (id) LEFT JOIN p.scores_py ps USING (id)").fetchone()
    except duckdb.Error as e:  # e.g. the job's target names its columns differently: report, go on
        log(f"agree: failed: {e}")
        return {"job_db": job.name, "error": str(e)}
    finally:
        con.close()
    out = {"job_db": job.name, "rows_sampled": n, "rows_compared": both, "max_abs_diff": diff, "over_1e-6": over}
    log(f"agree: {both:,} of {n:,} sampled ids in both; max |diff| {diff}, {over} above 1e-6")
    return out


# ---------------------------------------------------------------------------------------------
# Report

def report(args, res):
    def rps(x):
        return f"{x:,.0f}"

    py = res.get("python")
    lines = ["", f"sqlscore lake jobs benchmark: {args.rows:,} readings in {args.files} Parquet files, "
                 f"{args.models:,} per-sensor {args.model_kind} models"]
    if "lake" in res:
        lk = res["lake"]
        lines.append(f"lake: {lk['bytes'] / 2**20:.0f} MiB" + (f", generated in {lk['generate_s']:.1f} s"
                                                              if lk.get("generate_s") else ""))
    if res.get("template", {}).get("register_s") is not None:
        lines.append(f"registered {res['template']['models']} models in {res['template']['register_s']:.1f} s")
    lines.append("")
    lines.append("| phase | seconds | rows/s | vs Python | CPU s | CPU s per 1M rows | peak RSS MiB "
                 "| busy cores | outside load | load avg before/after |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def secs(v):
        return f"{v:.3f}" if isinstance(v, (int, float)) else str(v)

    def row(label, r, rows=True):
        ratio = f"{r['rows_per_s'] / py['rows_per_s']:.2f}x" if rows and py else ""
        busy = f"{r['busy_cores']:.2f}" if "busy_cores" in r else ""
        outside = f"{r['outside_cores']:.2f}" if "outside_cores" in r else ""
        load = (f"{r['load_before']:.2f} / {r['load_after']:.2f}" if r.get("load_before") is not None else "")
        per_m = f"{r['cpu_s'] * 1e6 / args.rows:.1f}" if rows else ""
        lines.append(f"| {label} | {r['s']:.3f} | {rps(r['rows_per_s']) if rows else ''} | {ratio} | "
                     f"{r['cpu_s']:.2f} | {per_m} | {r['max_rss_mb']:.0f} | {busy} | {outside} | {load} |")

    if py:
        p = py["pipeline"]
        row(f"Python pipeline (pyarrow, ORT per sensor, {args.py_files_per_txn} files/txn)", py)
        lines.append(f"|   of which read {p['read_s']:.1f} s, score {p['score_s']:.1f} s (sessions "
                     f"{p['session_create_s']:.1f} s), write {p['write_s']:.1f} s, in-script {p['seconds']:.1f} s "
                     "| | | | | | | | | |")
    for key, label in [("job_1", "sqlscore job run --threads 1"), ("job_2", "sqlscore job run --threads 2"),
                       ("parquet_target", "job run --threads 2, Parquet folder target")]:
        if key in res:
            row(f"{label} (run's own: {secs(res[key]['job_seconds'])} s)", res[key])
    if "noop" in res:
        row(f"job run with nothing new (run's own: {secs(res['noop']['job_seconds'])} s)", res["noop"], rows=False)
    lines.append("(seconds: the whole process, start to exit. CPU: that process (user + system, all threads). "
                 "Outside load: other processes on the machine, in cores; rows/s compare only where it is ~0)")
    if res.get("agree") and "error" in res["agree"]:
        lines.append(f"job vs Python scores: not compared ({res['agree']['error']})")
    elif res.get("agree"):
        a = res["agree"]
        lines.append(f"job vs Python scores, {a['rows_compared']:,} random ids: max |diff| {a['max_abs_diff']} "
                     f"({a['over_1e-6']} above 1e-6)")

    checks = []
    for key, label in [("job_1", "job run, 1 thread / Python pipeline"), ("job_2", "job run, 2 threads / Python pipeline")]:
        if key in res and py:
            checks.append((label, res[key]["rows_per_s"] / py["rows_per_s"], 3.0, "x"))
    if "job_1" in res and "job_2" in res:
        checks.append(("2 threads / 1 thread", res["job_2"]["rows_per_s"] / res["job_1"]["rows_per_s"], None, "x"))
    if "noop" in res:
        checks.append(("run with nothing new (whole command)", res["noop"]["s"], 1.0, "s<"))
    if checks:
        lines.append("")
        lines.append("| target | measured | target | |")
        lines.append("|---|---:|---:|---|")
        for name, v, target, kind in checks:
            if kind == "s<":
                ok = "met" if v < target else "MISSED"
                if not res["noop"]["ok"]:
                    ok += " (but the run was not a clean no-op: see the log)"
                lines.append(f"| {name} | {v:.3f} s | < {target:.1f} s | {ok} |")
            elif target is None:
                lines.append(f"| {name} | {v:.2f}x | | |")
            else:
                lines.append(f"| {name} | {v:.2f}x | >= {target:.1f}x | {'met' if v >= target else 'MISSED'} |")
        res["ratios"] = {name: v for name, v, _, _ in checks}
    print("\n".join(lines), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=10_000_000, help="readings in the lake")
    ap.add_argument("--models", type=int, default=1000, help="sensors, one model each")
    ap.add_argument("--files", type=int, default=100, help="Parquet files the readings are spread over")
    ap.add_argument("--dir", default=str(ROOT / "target" / "bench" / "lake"),
                    help="working folder: the lake, the databases, logs")
    ap.add_argument("--cli", default=str(ROOT / "target" / "release" / "sqlscore"))
    ap.add_argument("--extension", default=str(ROOT / "dist" / "sqlscore.duckdb_extension"),
                    help="the loadable extension, to register the models")
    ap.add_argument("--model-kind", choices=("ocsvm", "iforest"), default="ocsvm",
                    help="StandardScaler + OneClassSVM, or StandardScaler + IsolationForest (as jobs_bench.py)")
    ap.add_argument("--train-points", type=int, default=300, help="training readings per sensor")
    ap.add_argument("--py-files-per-txn", type=int, default=10, help="files per transaction of the Python pipeline")
    ap.add_argument("--py-threads", type=int, default=0,
                    help="cap the Python pipeline's DuckDB and pyarrow threads (0: the libraries' defaults)")
    ap.add_argument("--only", default=",".join(DEFAULT_PHASES),
                    help=f"comma-separated phases, of {','.join(PHASES)} (default: {','.join(DEFAULT_PHASES)})")
    ap.add_argument("--json", default=str(ROOT / "target" / "bench" / "lake.json"), help="where to write results ('' for none)")
    args = ap.parse_args()
    phases = set(filter(None, args.only.split(",")))
    if phases - set(PHASES):
        ap.error(f"unknown phase(s) {', '.join(sorted(phases - set(PHASES)))}; known: {', '.join(PHASES)}")
    if "noop" in phases and "job_1" not in phases:
        ap.error("noop runs on job_1's database right after it: add job_1")
    if args.rows < args.files or args.files < 1:
        ap.error("--files must be between 1 and --rows")
    args.dir = str(Path(args.dir).resolve())
    args.cli = str(Path(args.cli).resolve())
    if phases & {"job_1", "job_2", "noop", "parquet_target"}:
        if not Path(args.cli).exists():
            raise SystemExit(f"{args.cli} does not exist (make cli)")
        probe = subprocess.run([args.cli, "job", "--help"], capture_output=True, text=True)
        if probe.returncode != 0:
            raise SystemExit(f"{args.cli} has no `job` command:\n{probe.stderr.strip()[-1000:]}")

    Path(args.dir).mkdir(parents=True, exist_ok=True)
    paths = jobs_bench.ensure_models(args)
    res = {"params": vars(args), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "nproc": os.cpu_count(),
           "versions": {"duckdb": duckdb.__version__, "pyarrow": pa.__version__}}
    t_all = time.perf_counter()
    res["lake"] = ensure_lake(args)
    res["template"] = ensure_template(args, paths)
    if "python" in phases:
        res["python"] = phase_python(args, paths[0].parent)
    if "job_1" in phases:
        res["job_1"] = phase_job(args, "job_1", 1)
    if "noop" in phases:
        res["noop"] = phase_noop(args)
    if "job_2" in phases:
        res["job_2"] = phase_job(args, "job_2", 2)
    if "agree" in phases:
        res["agree"] = phase_agree(args)
    if "parquet_target" in phases:
        res["parquet_target"] = phase_job(args, "parquet_target", 2, parquet=True)
    res["total_s"] = time.perf_counter() - t_all
    report(args, res)
    print(f"(whole benchmark: {res['total_s']:.0f} s)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
        print(f"results: {args.json}")


if __name__ == "__main__":
    main()
