"""DuckDB lake jobs through the `sqlscore job` command: the real binary (target/release/sqlscore),
real DuckDB files and Parquet/CSV lakes, the demo models (models/demo/anomaly_d*_s*.onnx: one
input X bound to the column `value`, StandardScaler + OneClassSVM).

Every check compares what a job wrote with the source itself or with the extension's own
`score('anomaly_' || sensor_id, value)` (dist/sqlscore.duckdb_extension loaded into the PyPI duckdb,
reading the same files): a job must score each source row exactly once, with the model its row
names, and give the very score the scalar function gives.

Python duckdb only reads here (it never writes a job's tables); a DuckDB file is locked by the
process that has it open, so every connection is closed before the CLI runs.

~25 s on 2 cores. Run: .venv/bin/python -m pytest -q -p no:cacheprovider tests/cli/test_lake_jobs.py
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import duckdb
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = ROOT / "target" / "release" / "sqlscore"
EXTENSION = pathlib.Path(os.environ.get("SQLSCORE_EXTENSION", ROOT / "dist" / "sqlscore.duckdb_extension"))
DEMO_MODELS = ROOT / "models" / "demo"
SENSORS = ["d0_s0", "d0_s1", "d0_s2", "d1_s0"]
MODEL_EXPR = "'anomaly_' || sensor_id"

# The big lake of the kill / cancel / reader tests: BIG_FILES files of BIG_ROWS rows; with
# --batch-rows BIG_BATCH (under a file's rows) each batch is exactly one file.
BIG_FILES = 30
BIG_ROWS = 20_000
BIG_BATCH = 5_000

# ---------------------------------------------------------------------------------------------
# helpers


def sq(*args, cwd=None, timeout=120, **kw) -> subprocess.CompletedProcess:
    """The CLI, never checked: the tests assert the exit status themselves."""
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, cwd=cwd or ROOT,
                          timeout=timeout, **kw)


def last_json(p: subprocess.CompletedProcess):
    lines = p.stdout.strip().splitlines()
    assert lines, f"no output (rc {p.returncode}); stderr: {p.stderr}"
    try:
        return json.loads(lines[-1])
    except ValueError:
        raise AssertionError(f"the last stdout line is not JSON: {lines[-1]!r}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")


def run_job(db, job, *extra, rc=0):
    """`sqlscore job run JOB --json`; checks the exit status; returns the summary JSON."""
    p = sq("job", "run", job, "--db", db, "--json", *extra)
    assert p.returncode == rc, f"rc {p.returncode} (expected {rc})\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return last_json(p)


def create_job(db, name, source, target, *extra, cwd=None):
    p = sq("job", "create", name, "--db", db, "--source", source, "--key", "id", "--model", MODEL_EXPR,
           "--target", target, "--features", "value", *extra, cwd=cwd)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"created job {name}: "), p.stdout
    return p


def status_json(db, job):
    p = sq("job", "status", job, "--db", db, "--json")
    assert p.returncode == 0, p.stderr
    return last_json(p)


def runs_json(db, job=None):
    p = sq("job", "runs", *([job] if job else []), "--db", db, "--json")
    assert p.returncode == 0, p.stderr
    return last_json(p)


def readings_sql(first_id, n, salt=0, null_ids=(), sensors=SENSORS):
    """n readings with ids first_id.. : sensor by id, a deterministic value that depends on salt."""
    sens = "[" + ", ".join(f"'{s}'" for s in sensors) + "]"
    nulls = ", ".join(str(i) for i in null_ids) or "NULL"
    return f"""
        SELECT i::BIGINT AS id,
               {sens}[(i % {len(sensors)}) + 1]::VARCHAR AS sensor_id,
               TIMESTAMP '2026-01-01 00:00:00' + to_seconds(i) AS ts,
               CASE WHEN i IN ({nulls}) THEN NULL
                    ELSE ((i * 7919 + {salt} * 104729) % 1000) / 125.0 - 4 END::DOUBLE AS value
        FROM range({first_id}, {first_id + n}) t(i)"""


def write_readings(path, first_id, n, salt=0, null_ids=(), fmt="parquet"):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opts = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
    with duckdb.connect() as c:
        c.execute(f"COPY ({readings_sql(first_id, n, salt, null_ids)}) TO '{path}' ({opts})")
    return path


def read(db, sql, params=None):
    """Rows of a query over a job's DuckDB file, read-only, closed at once."""
    with duckdb.connect(str(db), read_only=True) as c:
        return c.execute(sql, params).fetchall()


def one(db, sql, params=None):
    rows = read(db, sql, params)
    return rows[0][0] if len(rows) == 1 and len(rows[0]) == 1 else rows


def ext_connect(db):
    c = duckdb.connect(str(db), read_only=True, config={"allow_unsigned_extensions": "true"})
    c.execute(f"LOAD '{EXTENSION}'")
    return c


def target_relation(target):
    """SQL for a job's target: a table, or every Parquet file of a folder target."""
    if str(target).endswith("/"):
        return f"read_parquet('{target}*.parquet')"
    return target


def check_scores(db, target, source):
    """The target against the source and the extension's own score(): every source row exactly
    once, its model and version, the file it came from, and the very same score. `source` is a
    table of the database, or a glob of Parquet (or .csv) files. Returns the row count."""
    files = "/" in source
    if files:
        reader = "read_csv" if source.endswith(".csv") else "read_parquet"
        source = f"{reader}('{source}', filename = true)"
    with ext_connect(db) as c:
        r = c.execute(f"""
            WITH src AS (SELECT *, score('anomaly_' || sensor_id, value) AS expected FROM {source}),
                 t AS (SELECT * FROM {target_relation(target)})
            SELECT (SELECT count(*) FROM src) AS source_rows,
                   (SELECT count(*) FROM t) AS target_rows,
                   (SELECT count(*) - count(DISTINCT id) FROM t) AS duplicated,
                   (SELECT count(*) FROM src WHERE id NOT IN (SELECT id FROM t)) AS missing,
                   (SELECT count(*) FROM t WHERE id NOT IN (SELECT id FROM src)) AS extra,
                   (SELECT count(*) FROM t JOIN src USING (id) WHERE t.score IS DISTINCT FROM src.expected) AS wrong_score,
                   (SELECT max(abs(t.score - src.expected)) FROM t JOIN src USING (id)) AS max_diff,
                   (SELECT count(*) FROM t JOIN src USING (id)
                     WHERE t.model IS DISTINCT FROM 'anomaly_' || src.sensor_id OR t.model_version IS DISTINCT FROM 1)
                     AS wrong_model,
                   (SELECT count(*) FROM t JOIN src USING (id)
                     WHERE {"t.source_file IS DISTINCT FROM src.filename" if files else "false"}) AS wrong_file
        """).fetchone()
    names = ["source_rows", "target_rows", "duplicated", "missing", "extra", "wrong_score", "max_diff", "wrong_model",
             "wrong_file"]
    got = dict(zip(names, r))
    assert got["source_rows"] > 0, got
    assert got["target_rows"] == got["source_rows"], got
    assert got["duplicated"] == 0 and got["missing"] == 0 and got["extra"] == 0, got
    assert got["wrong_model"] == 0 and got["wrong_file"] == 0, got
    # The job and score() run the same ONNX Runtime sessions on the same float32 inputs: the
    # very same scores, not merely close ones.
    assert got["wrong_score"] == 0, f"scores differ from the extension's score(): {got}"
    return got["target_rows"]


def temp_leftovers(folder):
    return sorted(str(p) for p in pathlib.Path(folder).rglob("*") if "sqlscore-tmp" in p.name)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A DuckDB file with the demo models of SENSORS pushed through the CLI (copied per test)."""
    assert CLI.exists(), f"{CLI} is missing: build it first (make cli)"
    d = tmp_path_factory.mktemp("registry")
    db = d / "registry.duckdb"
    for s in SENSORS:
        p = sq("model", "push", f"anomaly_{s}", DEMO_MODELS / f"anomaly_{s}.onnx", "--db", db)
        assert p.returncode == 0 and p.stdout.startswith(f"registered anomaly_{s}@1 "), p.stdout + p.stderr
    return db


@pytest.fixture
def fresh_db(registry, tmp_path):
    """fresh_db(name): a copy of the registry (models registered, no job state)."""
    def make(name="jobs.duckdb"):
        db = tmp_path / name
        shutil.copy(registry, db)
        wal = pathlib.Path(str(registry) + ".wal")
        if wal.exists():
            shutil.copy(wal, str(db) + ".wal")
        return db
    return make


@pytest.fixture(scope="module")
def big_lake(tmp_path_factory):
    """BIG_FILES Parquet files of BIG_ROWS readings each (ids 1..BIG_FILES*BIG_ROWS)."""
    d = tmp_path_factory.mktemp("big") / "lake"
    d.mkdir()
    with duckdb.connect() as c:
        for f in range(BIG_FILES):
            c.execute(f"COPY ({readings_sql(1 + f * BIG_ROWS, BIG_ROWS)}) TO '{d}/r{f:03d}.parquet' (FORMAT parquet)")
    return d


@pytest.fixture(scope="module")
def big_reference(registry, big_lake, tmp_path_factory):
    """A fresh database's full, uninterrupted run over the big lake into a table `scores`."""
    db = tmp_path_factory.mktemp("ref") / "ref.duckdb"
    shutil.copy(registry, db)
    create_job(db, "full", f"{big_lake}/*.parquet", "scores", "--batch-rows", BIG_BATCH)
    s = run_job(db, "full")
    assert s["status"] == "succeeded" and s["rows_scored"] == BIG_FILES * BIG_ROWS, s
    assert s["files_scored"] == BIG_FILES and s["files_new"] == BIG_FILES, s
    check_scores(db, "scores", f"{big_lake}/*.parquet")
    return db


def run_file(db, job):
    return pathlib.Path(f"{db}.sqlscore-run-{job}.json")


def start_run(db, job, *extra):
    return subprocess.Popen([str(CLI), "job", "run", job, "--db", str(db), "--json", "--threads", "1", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


def wait_files_done(db, job, proc, n, timeout=60):
    """Until the run of process `proc` says (in its run file) that n files are committed."""
    rf = run_file(db, job)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            p = json.loads(rf.read_text())
            if p["pid"] == proc.pid and p["files_done"] >= n:
                return p
        except (OSError, ValueError):
            pass
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the run ended (rc {proc.returncode}) before {n} files were done; it is too fast to "
                        f"interrupt?\nstdout:\n{out}\nstderr:\n{err}")
        time.sleep(0.001)
    proc.kill()
    pytest.fail(f"timed out waiting for {n} files in {rf}")


def same_scores(db, target, reference_db):
    """(id, score) of the target, as a multiset, against the reference's full run."""
    with duckdb.connect() as c:
        c.execute(f"ATTACH '{reference_db}' AS ref (READ_ONLY)")
        if not str(target).endswith("/"):
            c.execute(f"ATTACH '{db}' AS j (READ_ONLY)")
            rel = f"j.{target}"
        else:
            rel = target_relation(target)
        r = c.execute(f"""SELECT
            (SELECT count(*) FROM {rel}) AS n,
            (SELECT count(*) - count(DISTINCT id) FROM {rel}) AS duplicated,
            (SELECT count(*) FROM (SELECT id, score FROM {rel} EXCEPT ALL SELECT id, score FROM ref.scores)) AS extra,
            (SELECT count(*) FROM (SELECT id, score FROM ref.scores EXCEPT ALL SELECT id, score FROM {rel})) AS missing
        """).fetchone()
    got = dict(zip(["n", "duplicated", "extra", "missing"], r))
    assert got == {"n": BIG_FILES * BIG_ROWS, "duplicated": 0, "extra": 0, "missing": 0}, got


# ---------------------------------------------------------------------------------------------
# 1. incremental over new files


def test_incremental_new_files(fresh_db, tmp_path):
    db = fresh_db()
    lake = tmp_path / "lake"
    sizes = {"r0": 1000, "r1": 1200, "r2": 1500}
    first = 1
    for name, n in sizes.items():
        write_readings(lake / f"{name}.parquet", first, n, salt=first)
        first += n
    # A relative glob, made absolute at create: a run from another directory sees the same files.
    create_job(db, "lake", "lake/*.parquet", "scores", "--carry", "sensor_id,ts", cwd=tmp_path)
    st = status_json(db, "lake")
    assert st["source"] == f"{tmp_path}/lake/*.parquet", st
    assert st["last_run"] is None and st["features"] == ["value"] and st["carry"] == ["sensor_id", "ts"], st

    s1 = run_job(db, "lake")
    total = sum(sizes.values())
    assert (s1["status"], s1["rows_scored"], s1["rows_rejected"], s1["files_scored"]) == ("succeeded", total, 0, 3), s1
    assert (s1["files_new"], s1["files_rewritten"], s1["files_unchanged"], s1["error"]) == (3, 0, 0, None), s1
    assert check_scores(db, "scores", f"{lake}/*.parquet") == total
    # Carried columns are the source's, the run id is this run's.
    bad = one(db, f"""SELECT count(*) FROM scores t JOIN read_parquet('{lake}/*.parquet') s USING (id)
                      WHERE t.sensor_id IS DISTINCT FROM s.sensor_id OR t.ts IS DISTINCT FROM s.ts
                         OR t.run_id IS DISTINCT FROM {s1['run_id']} OR t.scored_at IS NULL""")
    assert bad == 0
    cols = [r[0] for r in read(db, "DESCRIBE scores")]
    assert cols == ["id", "sensor_id", "ts", "score", "model", "model_version", "run_id", "scored_at", "source_file"]
    # The ledger: each file with its size, mtime and rows.
    ledger = read(db, "SELECT path, size, rows, run_id FROM sqlscore_job_files WHERE job = 'lake' ORDER BY path")
    assert ledger == [(str(lake / f"{k}.parquet"), os.stat(lake / f"{k}.parquet").st_size, n, s1["run_id"])
                      for k, n in sizes.items()], ledger

    # A fourth file: only it is scored.
    write_readings(lake / "r3.parquet", first, 800, salt=3)
    s2 = run_job(db, "lake")
    assert (s2["status"], s2["rows_scored"], s2["files_scored"]) == ("succeeded", 800, 1), s2
    assert (s2["files_new"], s2["files_rewritten"], s2["files_unchanged"]) == (1, 0, 3), s2
    assert s2["run_id"] > s1["run_id"]
    assert read(db, "SELECT min(id), max(id), count(*), count(DISTINCT source_file) FROM scores WHERE run_id = ?",
                [s2["run_id"]]) == [(first, first + 799, 800, 1)]
    assert one(db, "SELECT count(*) FROM scores WHERE run_id = ?", [s1["run_id"]]) == total
    assert check_scores(db, "scores", f"{lake}/*.parquet") == total + 800

    # Nothing new: nothing scored, quickly.
    t0 = time.monotonic()
    p = sq("job", "run", "lake", "--db", db, "--json")
    wall = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    s3 = last_json(p)
    assert (s3["status"], s3["rows_scored"], s3["files_scored"]) == ("succeeded", 0, 0), s3
    assert (s3["files_new"], s3["files_rewritten"], s3["files_unchanged"]) == (0, 0, 4), s3
    assert "nothing new (4 files already scored)" in p.stdout, p.stdout
    assert s3["seconds"] < 1.0 and wall < 5.0, (s3, wall)
    assert one(db, "SELECT count(*) FROM scores") == total + 800

    # The runs, newest first, and the list.
    runs = runs_json(db, "lake")
    assert [(r["run_id"], r["status"], r["rows_scored"], r["files_scored"]) for r in runs] == [
        (s3["run_id"], "succeeded", 0, 0), (s2["run_id"], "succeeded", 800, 1), (s1["run_id"], "succeeded", total, 3)]
    assert all(r["finished_at"] and r["error"] is None for r in runs), runs
    listing = last_json(sq("job", "list", "--db", db, "--json"))
    assert [(j["name"], j["target"], j["last_run_id"], j["last_status"]) for j in listing] == \
        [("lake", "scores", s3["run_id"], "succeeded")], listing


def test_csv_glob_source(fresh_db, tmp_path):
    db = fresh_db()
    lake = tmp_path / "csv"
    write_readings(lake / "a.csv", 1, 300, fmt="csv")
    write_readings(lake / "b.csv", 301, 200, fmt="csv")
    create_job(db, "c", f"{lake}/*.csv", "scores")
    s = run_job(db, "c")
    assert (s["status"], s["rows_scored"], s["files_new"]) == ("succeeded", 500, 2), s
    write_readings(lake / "c.csv", 501, 100, fmt="csv")
    s = run_job(db, "c")
    assert (s["rows_scored"], s["files_new"], s["files_unchanged"]) == (100, 1, 2), s
    assert check_scores(db, "scores", f"{lake}/*.csv") == 600


# ---------------------------------------------------------------------------------------------
# 2. incremental over new keys of a table in the same file


@pytest.mark.parametrize("target", ["table", "parquet"])
def test_incremental_table_source(fresh_db, tmp_path, target):
    db = fresh_db()
    tgt = "scores" if target == "table" else f"{tmp_path}/out/"
    with duckdb.connect(str(db)) as c:
        c.execute(f"CREATE TABLE readings AS {readings_sql(1, 2000)}")
        c.execute("ALTER TABLE readings ALTER id SET NOT NULL")
    create_job(db, "t", "readings", tgt, "--batch-rows", 500, "--carry", "sensor_id")
    st = status_json(db, "t")
    assert st["watermark"] is None and st["batch_rows"] == 500, st

    s1 = run_job(db, "t")
    assert (s1["status"], s1["rows_scored"], s1["files_scored"]) == ("succeeded", 2000, 0), s1
    assert status_json(db, "t")["watermark"] == 2000
    assert one(db, "SELECT batches FROM sqlscore_job_runs WHERE run_id = ?", [s1["run_id"]]) == 4
    check_scores(db, tgt, "readings")

    with duckdb.connect(str(db)) as c:
        c.execute(f"INSERT INTO readings {readings_sql(2001, 600, salt=5)}")
    s2 = run_job(db, "t")
    assert (s2["status"], s2["rows_scored"]) == ("succeeded", 600), s2
    st = status_json(db, "t")
    assert st["watermark"] == 2600 and st["last_run"]["run_id"] == s2["run_id"], st
    with duckdb.connect() as c:
        if target == "table":
            c.execute(f"ATTACH '{db}' AS j (READ_ONLY)")
            rel = "j.scores"
        else:
            rel = target_relation(tgt)
        assert c.execute(f"SELECT min(id), max(id), count(*) FROM {rel} WHERE run_id = ?",
                         [s2["run_id"]]).fetchone() == (2001, 2600, 600)
        cols = [r[0] for r in c.execute(f"DESCRIBE SELECT * FROM {rel}").fetchall()]
    assert cols == ["id", "sensor_id", "score", "model", "model_version", "run_id", "scored_at"], cols
    check_scores(db, tgt, "readings")

    s3 = run_job(db, "t")
    assert (s3["status"], s3["rows_scored"]) == ("succeeded", 0), s3
    assert status_json(db, "t")["watermark"] == 2600
    check_scores(db, tgt, "readings")
    if target == "parquet":
        assert temp_leftovers(tmp_path / "out") == []


# ---------------------------------------------------------------------------------------------
# 3. a rewritten file is scored again and replaces its earlier results


@pytest.mark.parametrize("target", ["table", "parquet"])
def test_rewritten_file_replaces_its_results(fresh_db, tmp_path, target):
    db = fresh_db()
    lake = tmp_path / "lake"
    out = tmp_path / "out"
    tgt = "scores" if target == "table" else f"{out}/"
    for f in range(3):
        write_readings(lake / f"r{f}.parquet", 1 + f * 1000, 1000)
    create_job(db, "rw", f"{lake}/*.parquet", tgt, "--batch-rows", 500)
    s1 = run_job(db, "rw")
    assert (s1["status"], s1["rows_scored"], s1["files_new"]) == ("succeeded", 3000, 3), s1
    check_scores(db, tgt, f"{lake}/*.parquet")

    # r1 rewritten in place: fewer rows (ids 1001..1600), other values; a later mtime.
    r1 = lake / "r1.parquet"
    old_size = r1.stat().st_size
    write_readings(r1, 1001, 600, salt=7)
    later_us = (r1.stat().st_mtime_ns // 1000) + 10_000_000
    os.utime(r1, ns=(later_us * 1000, later_us * 1000))
    assert r1.stat().st_size != old_size
    s2 = run_job(db, "rw")
    assert (s2["status"], s2["rows_scored"], s2["files_scored"]) == ("succeeded", 600, 1), s2
    assert (s2["files_new"], s2["files_rewritten"], s2["files_unchanged"]) == (0, 1, 2), s2
    assert one(db, "SELECT files_rewritten FROM sqlscore_job_runs WHERE run_id = ?", [s2["run_id"]]) == 1
    # Exactly the new contents: ids 1601..2000 gone, no duplicates, new scores.
    assert check_scores(db, tgt, f"{lake}/*.parquet") == 2600
    with duckdb.connect() as c:
        if target == "table":
            c.execute(f"ATTACH '{db}' AS j (READ_ONLY)")
            rel = "j.scores"
        else:
            rel = target_relation(tgt)
        got = c.execute(f"SELECT min(id), max(id), count(*), count(DISTINCT run_id), max(run_id) FROM {rel} "
                        "WHERE source_file = ?", [str(r1)]).fetchone()
        assert got == (1001, 1600, 600, 1, s2["run_id"]), got
        assert c.execute(f"SELECT count(*) FROM {rel} WHERE id BETWEEN 1601 AND 2000").fetchone()[0] == 0
        assert c.execute(f"SELECT count(*) FROM {rel} WHERE run_id = ?", [s1["run_id"]]).fetchone()[0] == 2000
    ledger = read(db, "SELECT size, mtime_us, rows, run_id FROM sqlscore_job_files WHERE job = 'rw' AND path = ?", [str(r1)])
    assert ledger == [(r1.stat().st_size, later_us, 600, s2["run_id"])], ledger
    assert one(db, "SELECT count(*) FROM sqlscore_job_files WHERE job = 'rw'") == 3

    # Touched only (same bytes, new mtime): rescored, still once.
    r2 = lake / "r2.parquet"
    t = r2.stat().st_mtime_ns + 20_000_000_000
    os.utime(r2, ns=(t, t))
    s3 = run_job(db, "rw")
    assert (s3["rows_scored"], s3["files_rewritten"], s3["files_unchanged"]) == (1000, 1, 2), s3
    assert check_scores(db, tgt, f"{lake}/*.parquet") == 2600

    if target == "parquet":
        assert sorted(p.name for p in out.iterdir()) == ["r0.parquet", "r1.parquet", "r2.parquet"]
        assert read(db, "SELECT path, output FROM sqlscore_job_files WHERE job = 'rw' ORDER BY path") == \
            [(str(lake / f"r{f}.parquet"), str(out / f"r{f}.parquet")) for f in range(3)]
        with duckdb.connect() as c:
            assert c.execute(f"SELECT count(*), min(id), max(id) FROM '{out}/r1.parquet'").fetchone() == (600, 1001, 1600)


# ---------------------------------------------------------------------------------------------
# 4. kill -9 mid-run, then run again: the same as one uninterrupted run


@pytest.mark.parametrize("target", ["table", "parquet"])
def test_kill9_mid_run_then_rerun(fresh_db, tmp_path, big_lake, big_reference, target):
    db = fresh_db()
    out = tmp_path / "out"
    tgt = "scores" if target == "table" else f"{out}/"
    create_job(db, "k", f"{big_lake}/*.parquet", tgt, "--batch-rows", BIG_BATCH)

    killed = []
    for need in (2, 3):  # killed twice: the second run starts from what the first left
        proc = start_run(db, "k")
        wait_files_done(db, "k", proc, need)
        proc.send_signal(signal.SIGKILL)
        out_text, err_text = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, out_text, err_text)
        killed.append(json.loads(run_file(db, "k").read_text())["run_id"])
    # Nothing was rescored by the second run: the first's committed files stayed.
    runs = {r[0]: r[1:] for r in read(db, "SELECT run_id, status, files_scored, rows_scored, error FROM sqlscore_job_runs "
                                          "WHERE job = 'k' ORDER BY run_id")}
    assert runs[killed[0]][0] == "failed" and runs[killed[0]][3].startswith("interrupted"), runs
    assert runs[killed[1]][0] == "running", runs  # nobody has recorded its end yet

    s = run_job(db, "k")
    runs = {r[0]: r[1:] for r in read(db, "SELECT run_id, status, files_scored, rows_scored, error FROM sqlscore_job_runs "
                                          "WHERE job = 'k' ORDER BY run_id")}
    assert len(runs) == 3, runs
    done_before = 0
    for rid in killed:
        status, files, rows, error = runs[rid]
        assert status == "failed" and error.startswith("interrupted: process"), runs[rid]
        assert 0 < files < BIG_FILES and rows == files * BIG_ROWS, runs[rid]
        done_before += files
    assert s["status"] == "succeeded", s
    assert s["files_unchanged"] == done_before and s["files_new"] == BIG_FILES - done_before, (s, runs)
    assert s["rows_scored"] == (BIG_FILES - done_before) * BIG_ROWS, (s, runs)
    assert one(db, "SELECT sum(rows_scored) FROM sqlscore_job_runs WHERE job = 'k'") == BIG_FILES * BIG_ROWS
    assert one(db, "SELECT count(*), count(DISTINCT path) FROM sqlscore_job_files WHERE job = 'k'") == \
        [(BIG_FILES, BIG_FILES)]
    assert not run_file(db, "k").exists(), "the run file of the last run was left behind"

    same_scores(db, tgt, big_reference)
    if target == "parquet":
        assert temp_leftovers(out) == []
        assert sorted(p.name for p in out.iterdir()) == [f"r{f:03d}.parquet" for f in range(BIG_FILES)]
        assert one(db, "SELECT count(*) FROM sqlscore_job_outputs WHERE job = 'k'") >= BIG_FILES


def test_status_after_kill9_does_not_show_a_dead_run_running(fresh_db, big_lake):
    db = fresh_db()
    create_job(db, "k", f"{big_lake}/*.parquet", "scores", "--batch-rows", BIG_BATCH)
    proc = start_run(db, "k")
    prog = wait_files_done(db, "k", proc, 2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    last = status_json(db, "k")["last_run"]
    assert last["run_id"] == prog["run_id"], last
    runs = runs_json(db, "k")
    listing = last_json(sq("job", "list", "--db", db, "--json"))
    assert last["status"] == "failed" and last["error"].startswith("interrupted"), last
    assert runs[0]["status"] == "failed" and listing[0]["last_status"] == "failed", (runs, listing)


# ---------------------------------------------------------------------------------------------
# 5. a Parquet target is never seen half written


def test_parquet_target_readers_never_see_partial_files(fresh_db, tmp_path, big_lake):
    db = fresh_db()
    out = tmp_path / "out"
    create_job(db, "p", f"{big_lake}/*.parquet", f"{out}/", "--batch-rows", BIG_BATCH)
    stop = threading.Event()
    seen = {"reads": 0, "partial_sets": 0, "errors": [], "files": []}

    def reader():
        c = duckdb.connect()
        ever = False
        while not stop.is_set():
            try:
                rows = c.execute(f"SELECT source_file, count(*), count(DISTINCT id) FROM read_parquet('{out}/*.parquet') "
                                 "GROUP BY ALL").fetchall()
                ever = True
            except duckdb.Error as e:
                if not ever and "No files found" in str(e):
                    continue  # nothing published yet
                seen["errors"].append(str(e))
                continue
            seen["reads"] += 1
            seen["files"].append(len(rows))
            if 0 < len(rows) < BIG_FILES:
                seen["partial_sets"] += 1
            bad = [r for r in rows if r[1] != BIG_ROWS or r[2] != BIG_ROWS]
            if bad:
                seen["errors"].append(f"incomplete files: {bad}")
        c.close()

    def footers():
        # Between the reads: every visible file, checked often, is a whole Parquet file (its
        # magic at both ends), as a file written in place would not be while it is written.
        while not stop.is_set():
            for q in out.glob("*.parquet"):
                try:
                    with open(q, "rb") as fh:
                        head = fh.read(4)
                        fh.seek(-4, os.SEEK_END)
                        tail = fh.read(4)
                except FileNotFoundError:
                    continue
                except OSError:  # shorter than 4 bytes
                    head = tail = b""
                if head != b"PAR1" or tail != b"PAR1":
                    seen["errors"].append(f"{q.name} is visible but not a whole Parquet file")
            time.sleep(0.0005)

    threads = [threading.Thread(target=reader, daemon=True), threading.Thread(target=footers, daemon=True)]
    for t in threads:
        t.start()
    try:
        proc = start_run(db, "p")
        out_text, err_text = proc.communicate(timeout=120)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert proc.returncode == 0, (out_text, err_text)
    s = json.loads(out_text.strip().splitlines()[-1])
    assert s["status"] == "succeeded" and s["rows_scored"] == BIG_FILES * BIG_ROWS, s
    assert seen["errors"] == [], seen["errors"][:5]
    assert seen["partial_sets"] > 0, f"no read happened while the run was under way: the test did not test ({seen['reads']} reads)"
    assert seen["files"] == sorted(seen["files"]), "a published file disappeared again"
    assert temp_leftovers(out) == []
    with duckdb.connect() as c:
        assert c.execute(f"SELECT count(*), count(DISTINCT id) FROM '{out}/*.parquet'").fetchone() == \
            (BIG_FILES * BIG_ROWS, BIG_FILES * BIG_ROWS)


# ---------------------------------------------------------------------------------------------
# 6. exit codes and messages


def test_on_error_raise_fails_with_a_precise_message(fresh_db, tmp_path):
    db = fresh_db()
    lake = tmp_path / "lake"
    for f in range(3):
        write_readings(lake / f"r{f}.parquet", 1 + f * 100, 100, null_ids=[250] if f == 2 else [])
    create_job(db, "strict", f"{lake}/*.parquet", "scores", "--on-error", "raise", "--batch-rows", 50)
    p = sq("job", "run", "strict", "--db", db, "--json")
    assert p.returncode == 1, (p.stdout, p.stderr)
    s = last_json(p)
    assert s["status"] == "failed", s
    run_id = s["run_id"]
    bad_file = str(lake / "r2.parquet")
    for text in (s["error"], p.stderr):
        assert f'job "strict" run {run_id}' in text, text
        assert bad_file in text, text
        assert "anomaly_d0_s2" in text and '"value"' in text and "NULL" in text, text  # id 250: SENSORS[250 % 4]
    assert (s["rows_scored"], s["files_scored"]) == (200, 2), s
    # The batches before the failing file are committed; the failing one is not.
    assert read(db, "SELECT count(*), min(id), max(id) FROM scores") == [(200, 1, 200)]
    assert one(db, "SELECT count(*) FROM sqlscore_job_files WHERE job = 'strict'") == 2
    r = runs_json(db, "strict")[0]
    assert (r["run_id"], r["status"], r["rows_scored"]) == (run_id, "failed", 200), r
    assert bad_file in r["error"] and "NULL" in r["error"], r
    st = status_json(db, "strict")
    assert st["last_run"]["status"] == "failed" and st["last_run"]["error"] == r["error"], st

    # Fixed upstream: the next run scores that file (never recorded as scored) and nothing else.
    write_readings(lake / "r2.parquet", 201, 100)
    s = run_job(db, "strict")
    assert (s["status"], s["rows_scored"], s["files_new"], s["files_unchanged"]) == ("succeeded", 100, 1, 2), s
    check_scores(db, "scores", f"{lake}/*.parquet")


def test_unknown_job(fresh_db):
    db = fresh_db()
    p = sq("job", "run", "nope", "--db", db, "--json")
    assert p.returncode == 1
    assert "no such job" in p.stderr and 'job "nope"' in p.stderr, p.stderr
    s = last_json(p)
    assert s["status"] == "failed" and "no such job" in s["error"], s
    for cmd in (["status", "nope"], ["drop", "nope"], ["runs", "nope"]):
        p = sq("job", *cmd, "--db", db)
        assert p.returncode == 1 and "no such job" in p.stderr, (cmd, p.stdout, p.stderr)
    p = sq("job", "cancel", "nope", "--db", db)
    assert p.returncode == 0 and "has no run in progress" in p.stdout, p.stdout


def test_database_held_by_another_process(fresh_db, tmp_path):
    db = fresh_db()
    write_readings(tmp_path / "lake" / "a.parquet", 1, 100)
    create_job(db, "j", f"{tmp_path}/lake/*.parquet", "scores")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); c.execute('SELECT 1'); "
                               "print('ready', flush=True); sys.stdin.read()", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        p = sq("job", "run", "j", "--db", db, "--json")
        assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
        s = last_json(p)
        assert s["status"] == "busy" and s["run_id"] is None and s["rows_scored"] == 0, s
        assert "in use by another process" in s["error"] and str(holder.pid) in s["error"], s
        p = sq("job", "run", "j", "--db", db)
        assert p.returncode == 4 and "in use by another process" in p.stderr, p.stderr
        p = sq("job", "status", "j", "--db", db)
        assert p.returncode == 4 and "in use by another process" in p.stderr, p.stderr
    finally:
        holder.stdin.close()
        holder.wait(30)
    s = run_job(db, "j")
    assert (s["status"], s["rows_scored"]) == ("succeeded", 100), s
    # The refused attempts recorded nothing.
    assert [r["run_id"] for r in runs_json(db, "j")] == [s["run_id"]]


@pytest.mark.parametrize("how", ["sigterm", "job_cancel"])
def test_cancel_a_run(fresh_db, big_lake, how):
    db = fresh_db()
    create_job(db, "c", f"{big_lake}/*.parquet", "scores", "--batch-rows", BIG_BATCH)
    proc = start_run(db, "c")
    prog = wait_files_done(db, "c", proc, 2)
    if how == "sigterm":
        proc.send_signal(signal.SIGTERM)
    else:
        st = last_json(sq("job", "status", "c", "--db", db, "--json"))
        assert st["status"] == "running" and st["pid"] == proc.pid and st["run_id"] == prog["run_id"], st
        assert st["files_total"] == BIG_FILES and st["rows_total"] == BIG_FILES * BIG_ROWS, st
        # A second run meanwhile cannot open the file: busy, naming the run in progress.
        p = sq("job", "run", "c", "--db", db)
        assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
        assert "in use by another process" in p.stderr, p.stderr
        assert f"job c run {prog['run_id']} is in progress (pid {proc.pid})" in p.stderr, p.stderr
        p = sq("job", "cancel", "c", "--db", db)
        assert p.returncode == 0 and f"cancel requested for run {prog['run_id']} (pid {proc.pid})" in p.stdout, \
            (p.stdout, p.stderr)
    out_text, err_text = proc.communicate(timeout=60)
    assert proc.returncode == 3, (proc.returncode, out_text, err_text)
    s = json.loads(out_text.strip().splitlines()[-1])
    assert s["status"] == "cancelled" and s["run_id"] == prog["run_id"], s
    assert f'job "c" run {s["run_id"]}' in s["error"] and "cancel" in s["error"], s
    assert 2 <= s["files_scored"] < BIG_FILES and s["rows_scored"] == s["files_scored"] * BIG_ROWS, s
    assert "cancelled after" in out_text and "error:" in err_text, (out_text, err_text)
    assert not run_file(db, "c").exists()
    # Committed batches stay; the rest is scored by the next run.
    r = runs_json(db, "c")[0]
    assert (r["status"], r["rows_scored"], r["files_scored"]) == ("cancelled", s["rows_scored"], s["files_scored"]), r
    assert one(db, "SELECT count(*) FROM scores") == s["rows_scored"]
    s2 = run_job(db, "c")
    assert s2["files_new"] == BIG_FILES - s["files_scored"] and s2["files_unchanged"] == s["files_scored"], s2
    assert s2["rows_scored"] + s["rows_scored"] == BIG_FILES * BIG_ROWS
    assert read(db, "SELECT count(*), count(DISTINCT id) FROM scores") == [(BIG_FILES * BIG_ROWS,) * 2]


# ---------------------------------------------------------------------------------------------
# 7. on_error reject and null


def test_on_error_reject_and_null(fresh_db, tmp_path):
    db = fresh_db()
    lake = tmp_path / "lake"
    null_ids = [42, 250]
    for f in range(3):
        write_readings(lake / f"r{f}.parquet", 1 + f * 100, 100, null_ids=[i for i in null_ids if f * 100 < i <= f * 100 + 100])
    create_job(db, "rej", f"{lake}/*.parquet", "scores_rej", "--on-error", "reject")
    create_job(db, "nul", f"{lake}/*.parquet", "scores_nul", "--on-error", "null")

    s = run_job(db, "rej")
    assert (s["status"], s["rows_scored"], s["rows_rejected"]) == ("succeeded", 298, 2), s
    rej = read(db, "SELECT key, source_file, model, error, run_id FROM sqlscore_job_rejects WHERE job = 'rej' ORDER BY key")
    assert [(k, f, m, rid) for k, f, m, _, rid in rej] == [
        (42, str(lake / "r0.parquet"), "anomaly_d0_s2", s["run_id"]),
        (250, str(lake / "r2.parquet"), "anomaly_d0_s2", s["run_id"]),
    ], rej
    for r in rej:
        assert '"value"' in r[3] and "NULL" in r[3], r
    assert one(db, "SELECT count(*) FROM scores_rej WHERE id IN (42, 250)") == 0
    assert one(db, "SELECT rows_rejected FROM sqlscore_job_runs WHERE run_id = ?", [s["run_id"]]) == 2

    s = run_job(db, "nul")
    assert (s["status"], s["rows_scored"], s["rows_rejected"]) == ("succeeded", 300, 0), s
    assert read(db, "SELECT id, model FROM scores_nul WHERE score IS NULL ORDER BY id") == \
        [(42, "anomaly_d0_s2"), (250, "anomaly_d0_s2")]
    assert one(db, "SELECT count(*) FROM scores_nul WHERE score IS NOT NULL") == 298
    assert one(db, "SELECT count(*) FROM sqlscore_job_rejects WHERE job = 'nul'") == 0

    # The file with id 250 fixed upstream: rescored, and its reject replaced.
    r2 = write_readings(lake / "r2.parquet", 201, 100)
    t = r2.stat().st_mtime_ns + 5_000_000_000
    os.utime(r2, ns=(t, t))
    s2 = run_job(db, "rej")
    assert (s2["rows_scored"], s2["rows_rejected"], s2["files_rewritten"]) == (100, 0, 1), s2
    assert [r[0] for r in read(db, "SELECT key FROM sqlscore_job_rejects WHERE job = 'rej'")] == [42]
    assert one(db, "SELECT count(*) FROM scores_rej") == 299


# ---------------------------------------------------------------------------------------------
# 8. progress: a bar on a terminal, log lines through a pipe


# `make test` installs tmux; in CI a missing tmux is a failure, not a skip.
@pytest.mark.skipif(shutil.which("tmux") is None and os.environ.get("CI") != "true", reason="tmux is not installed")
def test_progress_bar_on_a_terminal(fresh_db, tmp_path, big_lake):
    db = fresh_db()
    create_job(db, "bar", f"{big_lake}/*.parquet", "scores", "--batch-rows", BIG_BATCH)
    sock = f"sqlscore-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "pane.log"
    cmd = f"sleep 1; {CLI} job run bar --db {db} --threads 1; echo EXIT=$?; sleep 30"
    tmux = ["tmux", "-L", sock]
    subprocess.run([*tmux, "new-session", "-d", "-s", "t", "-x", "200", "-y", "50", cmd], check=True, timeout=20)
    try:
        # Everything the program writes to its terminal, escape sequences included.
        subprocess.run([*tmux, "pipe-pane", "-t", "t", "-o", f"cat >> {log}"], check=True, timeout=20)
        deadline = time.monotonic() + 60
        screen = ""
        while time.monotonic() < deadline:
            screen = subprocess.run([*tmux, "capture-pane", "-p", "-t", "t"], capture_output=True, text=True,
                                    timeout=20).stdout
            if "EXIT=" in screen:
                break
            time.sleep(0.2)
        raw = log.read_text(errors="replace") if log.exists() else ""
    finally:
        subprocess.run([*tmux, "kill-server"], timeout=20)
    assert "EXIT=0" in screen, screen
    assert re.search(r"job bar run \d+: succeeded: 600000 rows scored, 0 rejected, 30 files in [\d.]+ s", screen), screen
    # The bar: [====>   ] done/total rows ... ETA, redrawn in place.
    bars = re.findall(r"\[[=> ]{40}\] [\d,]+/600,000 rows .*?ETA", raw)
    assert len(bars) >= 2, raw[:3000]
    assert "\x1b[" in raw or "\r" in raw, "the bar is not redrawn in place"
    # No plain log lines on a terminal.
    assert "rows/s, ETA" not in screen, screen


def test_progress_log_lines_through_a_pipe(fresh_db, big_lake):
    db = fresh_db()
    create_job(db, "log", f"{big_lake}/*.parquet", "scores", "--batch-rows", BIG_BATCH)
    p = sq("job", "run", "log", "--db", db, "--threads", "1")
    assert p.returncode == 0, p.stderr
    assert "\x1b" not in p.stdout and "\r" not in p.stdout, repr(p.stdout[:500])
    lines = p.stdout.splitlines()
    assert re.fullmatch(r"job log run \d+: 30 new files, 0 rewritten, 0 already scored: 600000 rows in 30 batches",
                        lines[0]), lines
    progress = [x for x in lines if "rows/s" in x and "ETA" in x]
    assert progress and all(re.fullmatch(r"job log run \d+: \d+/600000 rows \(\d+%\), \d+ rows/s, ETA \d+ s", x)
                            for x in progress), lines
    assert progress[-1].split(": ", 1)[1].startswith("600000/600000 rows (100%)"), lines
    assert re.fullmatch(r"job log run \d+: succeeded: 600000 rows scored, 0 rejected, 30 files in [\d.]+ s "
                        r"\(\d+ rows/s\)", lines[-1]), lines
    # --quiet: the summary line only.
    create_job(db, "q", f"{big_lake}/*.parquet", "scores_q", "--batch-rows", BIG_BATCH)
    p = sq("job", "run", "q", "--db", db, "--quiet")
    assert p.returncode == 0 and len(p.stdout.splitlines()) == 1 and "succeeded: 600000 rows" in p.stdout, p.stdout


# ---------------------------------------------------------------------------------------------
# 9. `sqlscore sql` prints values as DuckDB does


def test_sql_prints_values_like_duckdb(tmp_path):
    db = tmp_path / "x.duckdb"
    p = sq("sql", "--db", db, "SELECT TIMESTAMP '2026-01-01 10:00:00' AS t, [0.94, 0.06] AS l, "
                              "[0.94, 0.06]::DOUBLE[] AS d, TIMESTAMPTZ '2026-01-01 10:00:00+00' AS tz, NULL::INTEGER AS n")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert [c.strip() for c in lines[0].split("|")] == ["t", "l", "d", "tz", "n"], lines
    cells = [c.strip() for c in lines[2].split("|")]
    assert cells == ["2026-01-01 10:00:00", "[0.94, 0.06]", "[0.94, 0.06]", "2026-01-01 10:00:00+00", "NULL"], lines
    assert lines[-1] == "(1 row)"
    for debug in ("Timestamp(", "List(", "Double(", "Decimal(", "Null"):
        assert debug not in p.stdout, p.stdout


# ---------------------------------------------------------------------------------------------
# 11. job create refuses what cannot work, and says why


def test_create_errors(fresh_db, tmp_path):
    db = fresh_db()
    lake = tmp_path / "lake"
    write_readings(lake / "a.parquet", 1, 50)
    glob = f"{lake}/*.parquet"

    def refused(*args, name="e"):
        p = sq("job", "create", name, "--db", db, *args)
        assert p.returncode == 1, (p.stdout, p.stderr)
        assert p.stderr.startswith(f'error: job "{name}": '), p.stderr
        return p.stderr

    base = ["--key", "id", "--model", MODEL_EXPR, "--target", "scores"]
    err = refused("--source", glob, *base, "--features", "valu")
    assert f'the source {glob} has no column "valu" (named as a feature)' in err, err
    assert "it has: id, sensor_id, ts, value" in err, err
    err = refused("--source", glob, *base, "--features", "value", "--carry", "site")
    assert 'no column "site" (named as a carried column)' in err and "it has: id, sensor_id, ts, value" in err, err
    err = refused("--source", glob, "--key", "ident", "--model", MODEL_EXPR, "--target", "scores")
    assert 'no column "ident" (named as the key)' in err, err
    for key, ty in (("sensor_id", "VARCHAR"), ("ts", "TIMESTAMP"), ("value", "DOUBLE")):
        err = refused("--source", glob, "--key", key, "--model", MODEL_EXPR, "--target", "scores")
        assert f'the key "{key}" is {ty}' in err and "integer" in err, err
    err = refused("--source", glob, "--key", "id", "--model", "'anomaly_x_' || sensor_id", "--target", "scores")
    assert "models that are not registered" in err, err
    for s in SENSORS:
        assert f'"anomaly_x_{s}"' in err, err
    err = refused("--source", glob, "--key", "id", "--model", "'anomaly_' || sensr_id", "--target", "scores")
    assert "sensr_id" in err, err
    missing = tmp_path / "nothing-yet"
    err = refused("--source", f"{missing}/*.parquet", *base)
    assert f"the source glob {missing}/*.parquet matches no file yet" in err, err
    err = refused("--source", f"{lake}/*.txt", *base)
    assert "must end in .parquet or .csv" in err, err
    err = refused("--source", glob, *base, "--on-error", "ignore")
    assert "ignore" in err, err
    err = refused("--source", glob, *base, "--batch-rows", "0")
    assert "batch_rows must be 1 to" in err, err
    # None of them left a job or a target behind.
    assert last_json(sq("job", "list", "--db", db, "--json")) == []
    assert one(db, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'scores'") == 0

    # A name taken; an existing target of another shape.
    create_job(db, "ok", glob, "scores")
    err = refused("--source", glob, *base, "--features", "value", name="ok")
    assert "a job of this name exists" in err, err
    err = refused("--source", glob, "--key", "id", "--model", MODEL_EXPR, "--target", "scores", "--features", "value",
                  "--carry", "sensor_id", name="other")
    assert "the target table scores exists with columns" in err, err

    # Dropping a job removes its bookkeeping; its target stays.
    assert run_job(db, "ok")["rows_scored"] == 50
    p = sq("job", "drop", "ok", "--db", db)
    assert p.returncode == 0 and "dropped job ok" in p.stdout, p.stderr
    assert last_json(sq("job", "list", "--db", db, "--json")) == []
    assert one(db, "SELECT count(*) FROM scores") == 50
    assert read(db, "SELECT (SELECT count(*) FROM sqlscore_job_runs WHERE job = 'ok'), "
                    "(SELECT count(*) FROM sqlscore_job_files WHERE job = 'ok')") == [(0, 0)]


# ---------------------------------------------------------------------------------------------
# what a read-only review found: each of these once destroyed, duplicated or lost data


def test_model_expression_cannot_run_sql(fresh_db, tmp_path):
    """The model expression is spliced into the queries a run reads with, and DuckDB runs every
    statement but the last of a prepared string: anything but one expression is refused unrun."""
    db = fresh_db()
    write_readings(tmp_path / "lake" / "a.parquet", 1, 10)
    with duckdb.connect(str(db)) as c:
        c.execute("CREATE TABLE victim (x INT)")
    for expr, why in [
        ("'anomaly_d0_s0') AS VARCHAR) FROM r; DROP TABLE IF EXISTS victim; SELECT CAST(('x'", "statements"),
        ("'anomaly_d0_s0') AS VARCHAR) FROM victim --", "FROM, WHERE"),
        ("'anomaly_d0_s0'), 1 AS x --", "statements"),
    ]:
        p = sq("job", "create", "inj", "--db", db, "--source", f"{tmp_path}/lake/*.parquet", "--key", "id",
               "--model", expr, "--target", "s", "--features", "value")
        assert p.returncode == 1 and "is not one SQL expression" in p.stderr, (expr, p.stderr)
    # One expression, but one that reads or writes elsewhere, or changes the fetch's shape.
    written = tmp_path / "profile.txt"
    for expr, why in [
        (f"'anomaly_' || coalesce((SELECT '' FROM enable_profiling(save_location := '{written}')), '')", "subquery"),
        ("'anomaly_' || (SELECT max(x)::VARCHAR FROM victim)", "subquery"),
        ("'anomaly_' || max(sensor_id)", "max() is not a scalar function"),
        ("'anomaly_' || COLUMNS('sensor_id')", "COLUMNS"),
        ("'anomaly_' || nextval('s')", "nextval()"),
    ]:
        p = sq("job", "create", "inj", "--db", db, "--source", f"{tmp_path}/lake/*.parquet", "--key", "id",
               "--model", expr, "--target", "s", "--features", "value")
        assert p.returncode == 1 and why in p.stderr, (expr, p.stderr)
    assert not written.exists()
    assert one(db, "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'victim'") == 1
    assert one(db, "SELECT count(*) FROM sqlscore_jobs") == 0
    # Functions, CASE and casts over the row's columns are what a model expression is for.
    create_job(db, "fine", f"{tmp_path}/lake/*.parquet", "s")
    p = sq("job", "create", "fine2", "--db", db, "--source", f"{tmp_path}/lake/*.parquet", "--key", "id",
           "--model", "CASE WHEN value > 100 THEN 'anomaly_d0_s0' ELSE 'anomaly_' || lower(sensor_id::VARCHAR) END",
           "--target", "s2", "--features", "value")
    assert p.returncode == 0, p.stderr


def test_target_folder_must_not_overlap_sources_or_other_jobs(fresh_db, tmp_path):
    db = fresh_db()
    write_readings(tmp_path / "lake" / "a.parquet", 1, 10)
    glob = f"{tmp_path}/lake/*.parquet"
    for target in (f"{tmp_path}/lake/", f"{tmp_path}/lake/out/", f"{tmp_path}/"):
        p = sq("job", "create", "o", "--db", db, "--source", glob, "--key", "id", "--model", MODEL_EXPR,
               "--target", target, "--features", "value")
        assert p.returncode == 1 and "overlap" in p.stderr, (target, p.stderr)
    create_job(db, "first", glob, f"{tmp_path}/out/")
    p = sq("job", "create", "second", "--db", db, "--source", glob, "--key", "id", "--model", MODEL_EXPR,
           "--target", f"{tmp_path}/out/sub/", "--features", "value")
    assert p.returncode == 1 and 'job "first"' in p.stderr, p.stderr
    # The source files are untouched by a run.
    before = (tmp_path / "lake" / "a.parquet").read_bytes()
    run_job(db, "first")
    assert (tmp_path / "lake" / "a.parquet").read_bytes() == before


def test_dot_dot_after_a_wildcard_is_refused(fresh_db, tmp_path):
    db = fresh_db()
    write_readings(tmp_path / "lake" / "sub" / "a.parquet", 1, 10)
    p = sq("job", "create", "d", "--db", db, "--source", f"{tmp_path}/lake/*/../sub/*.parquet", "--key", "id",
           "--model", MODEL_EXPR, "--target", f"{tmp_path}/out/", "--features", "value")
    assert p.returncode == 1 and "after a wildcard" in p.stderr, p.stderr
    # Before the first wildcard it is just a folder: normalised.
    create_job(db, "d", f"{tmp_path}/lake/x/../sub/*.parquet", "s")
    assert status_json(db, "d")["source"] == f"{tmp_path}/lake/sub/*.parquet"


def test_file_names_with_glob_characters_are_read_as_themselves(fresh_db, tmp_path):
    db = fresh_db()
    write_readings(tmp_path / "lake" / "r1.parquet", 1, 10)
    write_readings(tmp_path / "lake" / "r[1].parquet", 101, 5)
    create_job(db, "g", f"{tmp_path}/lake/*.parquet", "scores")
    s = run_job(db, "g")
    assert (s["rows_scored"], s["files_scored"]) == (15, 2), s
    got = dict(read(db, "SELECT source_file, count(*) FROM scores GROUP BY ALL"))
    assert got == {f"{tmp_path}/lake/r1.parquet": 10, f"{tmp_path}/lake/r[1].parquet": 5}, got
    assert one(db, "SELECT count(DISTINCT id) FROM scores") == 15


def test_table_sources_need_a_not_null_key_and_sparse_keys_batch_evenly(fresh_db):
    db = fresh_db()
    with duckdb.connect(str(db)) as c:
        c.execute(f"CREATE TABLE readings AS {readings_sql(1, 2000)}")
        c.execute("CREATE TYPE mood AS ENUM ('ok', 'bad')")
        c.execute("ALTER TABLE readings ADD COLUMN m mood DEFAULT 'ok'")
        c.execute('ALTER TABLE readings ADD COLUMN "Score" DOUBLE DEFAULT 1')
    p = sq("job", "create", "t", "--db", db, "--source", "readings", "--key", "id", "--model", MODEL_EXPR,
           "--target", "s", "--features", "value")
    assert p.returncode == 1 and "may be NULL" in p.stderr and "SET NOT NULL" in p.stderr, p.stderr
    with duckdb.connect(str(db)) as c:
        c.execute("ALTER TABLE readings ALTER id SET NOT NULL")
        # One far-away key (a snowflake-style id): batches still hold about batch_rows rows each.
        c.execute("UPDATE readings SET id = 1000000000000 WHERE id = 2000")
    p = sq("job", "create", "t", "--db", db, "--source", "readings", "--key", "id", "--model", MODEL_EXPR,
           "--target", "s", "--features", "value", "--carry", "m")
    assert p.returncode == 1 and "ENUM" in p.stderr, p.stderr
    p = sq("job", "create", "t", "--db", db, "--source", "readings", "--key", "id", "--model", MODEL_EXPR,
           "--target", "s", "--features", "value", "--carry", "Score")
    assert p.returncode == 1 and "clashes" in p.stderr, p.stderr
    create_job(db, "t", "readings", "s", "--batch-rows", 250)
    s = run_job(db, "t")
    assert s["rows_scored"] == 2000, s
    assert one(db, "SELECT batches FROM sqlscore_job_runs WHERE run_id = ?", [s["run_id"]]) <= 9
    assert one(db, "SELECT count(DISTINCT id) FROM s") == 2000


def test_json_last_line_on_every_failure(tmp_path):
    p = sq("job", "run", "x", "--db", tmp_path / "typo.duckdb", "--json")
    assert p.returncode == 1 and not (tmp_path / "typo.duckdb").exists()
    j = last_json(p)
    assert j["status"] == "failed" and "no such database file" in j["error"], j
