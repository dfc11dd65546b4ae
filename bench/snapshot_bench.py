#!/usr/bin/env python3
"""What a dashboard's snapshot costs a DuckDB job (make bench-snapshot; BENCHMARKS.md).

    .venv/bin/python bench/snapshot_bench.py [--db target/bench/lake/job_1.duckdb] [--reps 3]

Input: the database of bench/lake_bench.py's job_1 phase (10M readings scored by a lake job with
1,000 per-sensor models, `scores` holding 10M rows), copied to a scratch file per measurement.

Measured, each the whole command, best of --reps:
  cp              copying the database file (the naive snapshot: only correct with no writer)
  publish         `sqlscore snapshot --db F`: enable and publish a copy (tables in one read
                  transaction, views re-created, synced, renamed into place)
  noop            `sqlscore job run bench` with nothing new, without a snapshot
  noop+snapshot   the same with the snapshot enabled: the run publishes when it ends
  run, run+snapshot  the whole job again (scores and ledger emptied first): 10M rows scored,
                  without and with the snapshot (published during the run and at its end)
Prints publish / cp, and what the snapshot adds to a run with nothing new and to a full run.
"""
import argparse
import json
import shutil
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / "target" / "release" / "sqlscore"


def timed(cmd):
    t = time.perf_counter()
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=ROOT)
    s = time.perf_counter() - t
    if p.returncode != 0:
        raise SystemExit(f"{cmd}: rc {p.returncode}\n{p.stdout}\n{p.stderr}")
    return s, p.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", type=Path, default=ROOT / "target/bench/lake/job_1.duckdb")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", type=Path, default=ROOT / "target/bench/snapshot.json")
    a = ap.parse_args()
    if not a.db.exists():
        raise SystemExit(f"{a.db}: run `make bench-lake` first (its job_1 phase makes this database)")
    work = a.db.parent / "snapshot-bench"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    src = work / "src.duckdb"
    res = {"db": str(a.db), "bytes": a.db.stat().st_size}

    def fresh():
        shutil.copyfile(a.db, src)
        for p in work.glob("src.snapshot.duckdb*"):
            p.unlink()

    best = lambda xs: min(xs)  # noqa: E731 - the least disturbed repetition
    reset = ("DELETE FROM scores; DELETE FROM sqlscore_job_files; DELETE FROM sqlscore_job_runs; "
             "CHECKPOINT")
    cp, publish, noop, noop_snap, full, full_snap = [], [], [], [], [], []
    for _ in range(a.reps):
        fresh()
        t = time.perf_counter()
        shutil.copyfile(src, work / "copy.duckdb")
        subprocess.run(["sync"], check=True)
        cp.append(time.perf_counter() - t)
        noop.append(timed([CLI, "job", "run", "bench", "--db", src, "--quiet"])[0])
        s, out = timed([CLI, "snapshot", "--db", src])
        publish.append(s)
        noop_snap.append(timed([CLI, "job", "run", "bench", "--db", src, "--quiet"])[0])
        for snap, out_list in [(False, full), (True, full_snap)]:
            fresh()
            timed([CLI, "sql", "--db", src, reset])
            if snap:
                timed([CLI, "snapshot", "--db", src])
            s_run, run_out = timed([CLI, "job", "run", "bench", "--db", src, "--quiet"])
            assert "10000000 rows scored" in run_out or "succeeded" in run_out, run_out
            out_list.append(s_run)
    res.update(cp_s=best(cp), publish_s=best(publish), noop_s=best(noop), noop_snapshot_s=best(noop_snap),
               run_s=best(full), run_snapshot_s=best(full_snap), publish_out=out.strip())
    lake = ROOT / "target/bench/lake.json"
    job_s = json.loads(lake.read_text())["job_1"]["s"] if lake.exists() else None
    res["job_1_s"] = job_s
    out = subprocess.run([str(CLI), "sql", "--db", str(src), "SELECT count(*) AS n FROM scores"],
                         capture_output=True, text=True).stdout
    res["rows"] = int(next(line for line in out.splitlines() if line.strip().isdigit()))
    print(f"database: {a.db} ({res['bytes'] / 1e6:.0f} MB, {res['rows']:,} rows in scores); best of {a.reps}")
    print(f"  cp of the file (+ sync)           {res['cp_s']:7.2f} s")
    print(f"  sqlscore snapshot (publish)       {res['publish_s']:7.2f} s   publish / cp = {res['publish_s'] / res['cp_s']:.2f}")
    if job_s:
        print(f"  the job run that scored the rows  {job_s:7.2f} s   publish / run = {res['publish_s'] / job_s:.2f}")
    print(f"  job run, nothing new              {res['noop_s']:7.2f} s")
    print(f"  job run, nothing new + snapshot   {res['noop_snapshot_s']:7.2f} s   (one publication, at its end)")
    print(f"  job run, all rows                 {res['run_s']:7.2f} s")
    print(f"  job run, all rows + snapshot      {res['run_snapshot_s']:7.2f} s   "
          f"run+snapshot / run = {res['run_snapshot_s'] / res['run_s']:.2f}")
    a.json.write_text(json.dumps(res, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
