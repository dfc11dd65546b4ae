"""Integration tests of sqlscore scoring jobs (pg_extension/src/jobs.sql) against a live server.

Every check compares what the job wrote with the source itself: the target must hold each
committed source row exactly once, the runs' progress must add up to the source (the target's
primary key would hide a key scored twice; the runs' counts do not), nothing may stay queued,
and each score must be what sqlscore.score('anomaly_' || sensor_id, x) gives for that row.

Scores are compared with a tolerance of ABS_TOL: a job scores rows in batches (one ONNX Runtime
call per model and batch) while sqlscore.score scores one row per call, and ONNX Runtime gives a
batch results that can differ from one-row calls in the last bits of a float32 (up to about 5e-7
for these models; a job with batch_size 1 matches sqlscore.score bit for bit). Any real mix-up
(wrong row, model or feature) is orders of magnitude larger.

Some tests crash-restart (kill -9 of a worker) or restart the server (marker server_restart) and
need its data directory (SQLSCORE_PGROOT, as scripts/pg-cluster.sh); the pg_cron test waits for
the next minute (marker cron; -m "not cron" leaves it out).

Run: SQLSCORE_PG_URL=postgres://postgres@127.0.0.1:5498/postgres SQLSCORE_PGROOT=/tmp/sqlscore-pg-t \
     .venv/bin/python -m pytest -q -p no:cacheprovider tests/pg_jobs
"""
from __future__ import annotations

import pathlib
import random
import threading
import time

import psycopg
import pytest
from psycopg import errors

DEMO_MODELS = pathlib.Path(__file__).resolve().parents[2] / "models" / "demo"
ABS_TOL = 1e-5
MODEL_EXPR = "'anomaly_' || sensor_id"


# ---------------------------------------------------------------------------------------------
# helpers

def model_bytes(sensor):
    return (DEMO_MODELS / f"anomaly_d0_s{sensor}.onnx").read_bytes()


def one(c, sql, params=None):
    row = c.execute(sql, params).fetchone()
    return None if row is None else next(iter(row.values()))


def wait_for(pred, timeout, what, interval=0.05, explain=None):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            extra = f"\n{explain()}" if explain else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{extra}")
        time.sleep(interval)


def make_source(c, n, table="readings"):
    c.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, sensor_id integer NOT NULL, x double precision, "
              "batch integer NOT NULL DEFAULT 0)")
    add_rows(c, n, table)


def add_rows(c, n, table="readings", batch=0):
    c.execute(f"INSERT INTO {table} (sensor_id, x, batch) "
              "SELECT mod(g, 5), random() * 10, %s FROM generate_series(1, %s) g", [batch, n])


def create_job(c, name, source="readings", target="scores", batch_size=10000, on_error="reject", carry=None):
    c.execute("SELECT sqlscore.create_job(%s, %s::regclass, 'id', %s, %s, features => '{x}', carry => %s::text[], "
              "on_error => %s, batch_size => %s::integer)",
              [name, source, MODEL_EXPR, target, carry, on_error, batch_size])


def call_run(c, name):
    """CALL sqlscore.run_job (needs an autocommit connection); returns the run id."""
    return c.execute("CALL sqlscore.run_job(%s)", [name]).fetchone()["run_id"]


def submit(c, name, workers):
    return one(c, "SELECT sqlscore.submit_job(%s, %s::integer)", [name, workers])


def run_row(c, run):
    return c.execute("SELECT * FROM sqlscore.job_runs WHERE run_id = %s", [run]).fetchone()


def wait_run(c, run, timeout=60):
    return wait_for(lambda: (lambda r: r if r["status"] != "running" else None)(run_row(c, run)), timeout,
                    f"run {run} to end", interval=0.05, explain=lambda: run_row(c, run))


def wait_scored_some(c, run, timeout=20):
    """Until the run is running and has committed at least one batch."""
    def ok():
        r = run_row(c, run)
        assert r is not None, f"run {run} is not recorded"
        assert r["status"] == "running", f"run {run} ended before it could be interrupted (backlog too small?): {r}"
        return r if r["rows_scored"] > 0 else None
    return wait_for(ok, timeout, f"run {run} to commit a batch", interval=0.005)


def check_orphaned(r):
    """A run whose backend died: nothing could record its end, so the log still says running;
    sqlscore.job_runs may already show it failed (interrupted), as no backend holds the job."""
    assert r["status"] in ("running", "failed"), r
    if r["status"] == "failed":
        assert r["error"].startswith("interrupted"), r


def running_run(c, job):
    return one(c, "SELECT run_id FROM sqlscore.job_runs WHERE job = %s AND status = 'running' AND rows_scored > 0 "
                  "ORDER BY run_id DESC LIMIT 1", [job])


def backlog(c, job):
    return one(c, "SELECT backlog FROM sqlscore.jobs WHERE name = %s", [job])


def workers_in(c, dbname=None):
    return one(c, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'sqlscore job worker' "
                  "AND datname = coalesce(%s, current_database())", [dbname])


def in_thread(fn):
    """Runs fn in a thread; the returned dict gets 'result' or 'error'."""
    out = {}

    def body():
        try:
            out["result"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            out["error"] = e
    t = threading.Thread(target=body, daemon=True)
    t.start()
    out["thread"] = t
    return out


def check_scores(c, source="readings", target="scores", check_version=True):
    """Each target row against the direct score of its source row. Returns the figures."""
    r = c.execute(f"""
        SELECT count(*) AS n,
               count(*) FILTER (WHERE t.model IS DISTINCT FROM 'anomaly_' || s.sensor_id) AS wrong_model,
               count(*) FILTER (WHERE t.model_version IS DISTINCT FROM v.version) AS wrong_version,
               count(*) FILTER (WHERE (t.score IS NULL) <> (d.score IS NULL)) AS null_mismatch,
               count(*) FILTER (WHERE t.score IS DISTINCT FROM d.score) AS inexact,
               coalesce(max(abs(t.score - d.score)), 0) AS max_diff
        FROM {target} t JOIN {source} s USING (id)
        LEFT JOIN sqlscore.model_versions v ON v.name = 'anomaly_' || s.sensor_id AND v.active
        CROSS JOIN LATERAL (SELECT sqlscore.score('anomaly_' || s.sensor_id, s.x) AS score) d""").fetchone()
    assert r["wrong_model"] == 0, r
    if check_version:
        assert r["wrong_version"] == 0, r
    assert r["null_mismatch"] == 0, r
    assert r["max_diff"] <= ABS_TOL, f"scores differ from sqlscore.score: {r}"
    return r


def check_exactly_once(c, job, source="readings", target="scores", check_version=True):
    """The target is the whole source scored once: same keys, nothing twice, progress adds up,
    nothing left queued, scores right."""
    n = one(c, f"SELECT count(*) FROM {source}")
    keys = c.execute(f"""SELECT
        (SELECT count(*) FROM {source} s WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE t.id = s.id)) AS missing,
        (SELECT count(*) FROM {target} t WHERE NOT EXISTS (SELECT 1 FROM {source} s WHERE s.id = t.id)) AS extra,
        (SELECT count(*) - count(DISTINCT id) FROM {target}) AS duplicated,
        (SELECT count(*) FROM {target}) AS rows""").fetchone()
    assert keys == {"missing": 0, "extra": 0, "duplicated": 0, "rows": n}, keys
    runs = c.execute("SELECT coalesce(sum(rows_scored), 0) AS scored, coalesce(sum(rows_rejected), 0) AS rejected, "
                     "count(*) FILTER (WHERE status = 'running') AS running FROM sqlscore.job_runs WHERE job = %s",
                     [job]).fetchone()
    # The target's primary key and ON CONFLICT would hide a second scoring of a key; the runs'
    # counts would not: every scoring is counted once by the batch that committed it.
    assert runs["scored"] == n, f"runs scored {runs['scored']} rows for a source of {n}: {runs}"
    assert runs["rejected"] == 0 and runs["running"] == 0, runs
    assert backlog(c, job) == 0
    assert one(c, "SELECT count(*) FROM sqlscore.job_rejects WHERE job = %s", [job]) == 0
    return check_scores(c, source, target, check_version)


def drop_job_if_exists(c, job, tables):
    if one(c, "SELECT count(*) FROM sqlscore.job_definitions WHERE name = %s", [job]):
        if one(c, "SELECT streaming FROM sqlscore.jobs WHERE name = %s", [job]):
            c.execute("SELECT sqlscore.stop_stream(%s)", [job])
        for r in c.execute("SELECT run_id FROM sqlscore.job_runs WHERE job = %s AND status = 'running'", [job]).fetchall():
            c.execute("SELECT sqlscore.cancel_run(%s)", [r["run_id"]])
        deadline = time.monotonic() + 10
        while True:
            try:
                c.execute("SELECT sqlscore.drop_job(%s, true)", [job])
                break
            except errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    for t in tables:
        c.execute(f"DROP TABLE IF EXISTS {t}")


# ---------------------------------------------------------------------------------------------
# 1. exactly once under concurrent writers that commit out of order

def test_exactly_once_with_concurrent_writers(db):
    c = db.connect()
    make_source(c, 20000)
    create_job(c, "j", batch_size=500)
    stop = threading.Event()
    holder = {}
    seen = {"call": 0, "async": 0}

    def writer(seed):
        w = db.connect(autocommit=False)
        rng = random.Random(seed)
        committed = 0
        for _ in range(12):
            for _ in range(rng.randint(1, 3)):
                n = rng.randint(50, 1500)
                if rng.random() < 0.5:
                    w.execute("INSERT INTO readings (sensor_id, x, batch) "
                              "SELECT mod(g, 5), random() * 10, %s FROM generate_series(1, %s) g", [seed, n])
                else:
                    with w.cursor().copy("COPY readings (sensor_id, x, batch) FROM STDIN") as cp:
                        for _ in range(n):
                            cp.write_row((rng.randrange(5), rng.uniform(0, 10), seed))
            time.sleep(rng.uniform(0, 0.3))
            if rng.random() < 0.15:
                w.rollback()  # keys taken and never committed: must never be scored
            else:
                w.commit()
                committed += 1
        return committed

    def hold():
        # Takes ids first, commits them last: every other writer commits higher ids meanwhile.
        w = db.connect(autocommit=False)
        ids = [r["id"] for r in w.execute(
            "INSERT INTO readings (sensor_id, x, batch) SELECT mod(g, 5), random() * 10, 99 "
            "FROM generate_series(1, 300) g RETURNING id").fetchall()]
        time.sleep(2.5)
        w.commit()
        holder.update(lo=min(ids), hi=max(ids))

    def runner():
        r = db.connect()
        i = 0
        while not stop.is_set():
            i += 1
            if i % 3 == 0:
                run = submit(r, "j", 2)
                row = wait_run(r, run)
                assert row["status"] == "succeeded", row
                seen["async"] += 1
            else:
                call_run(r, "j")
                seen["call"] += 1
            time.sleep(0.02)

    run_t = in_thread(runner)
    # The runner's first run scores the initial rows (and loads ONNX Runtime in its backend)
    # before the writers start, so that runs keep coming while they write.
    wait_for(lambda: seen["call"] >= 1 or "error" in run_t, 60, "the first run")
    ws = [in_thread(lambda s=s: writer(s)) for s in (1, 2, 3)]
    h = in_thread(hold)
    for t in [*ws, h]:
        t["thread"].join(120)
        assert "error" not in t, t.get("error")
    stop.set()
    run_t["thread"].join(120)
    assert "error" not in run_t, run_t.get("error")
    call_run(c, "j")  # whatever the last loop left

    runs = c.execute("SELECT started_by, status FROM sqlscore.job_runs WHERE job = 'j'").fetchall()
    assert all(r["status"] == "succeeded" for r in runs), runs
    assert seen["call"] >= 3 and seen["async"] >= 1, f"the runner ran too few runs to test anything: {seen}"
    # The scenario happened: rows with higher ids were scored before the holder's lower ids
    # committed (and so before they were scored).
    overtaken = one(c, "SELECT count(*) FROM scores WHERE id > %s AND scored_at < "
                       "(SELECT min(t.scored_at) FROM scores t JOIN readings s USING (id) WHERE s.batch = 99)",
                    [holder["hi"]])
    assert overtaken > 0, "no run scored later ids before the held ones committed: the test did not test"
    assert one(c, "SELECT count(*) FROM readings WHERE batch = 99") == 300
    check_exactly_once(c, "j")


# ---------------------------------------------------------------------------------------------
# 2. a killed run loses nothing and scores nothing twice

def async_run_under_way(db, total):
    """Job j over `total` rows in small batches, submitted to one worker, that has committed a batch."""
    c = db.connect()
    make_source(c, total)
    create_job(c, "j", batch_size=50)
    run = submit(c, "j", 1)
    wait_scored_some(c, run)
    return c, run


@pytest.mark.server_restart
def test_kill9_of_a_worker_mid_run(db, server):
    server.check_local()
    total = 60000
    c, run = async_run_under_way(db, total)
    pid = one(c, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'sqlscore job worker' "
                 "AND datname = current_database()")
    assert pid, "no sqlscore job worker in pg_stat_activity while the run is running"
    server.kill9(pid)

    # A worker killed by a signal makes the postmaster restart every backend (crash restart).
    def dead():
        try:
            c.execute("SELECT 1")
            return False
        except psycopg.OperationalError:
            return True
    wait_for(dead, 20, "the crash restart to end our session")
    server.wait_ready()

    c = db.connect()
    rerun_after_interruption(c, run, total)


def rerun_after_interruption(c, run, total):
    """After run `run` of job j was killed: what it committed and what it left queued add up to the
    source; a re-run records it as interrupted and scores the rest exactly once."""
    r = run_row(c, run)
    check_orphaned(r)
    assert 0 < r["rows_scored"] < total, r
    assert backlog(c, "j") + r["rows_scored"] == total
    assert one(c, "SELECT count(*) FROM scores") == r["rows_scored"]

    c.execute("SELECT sqlscore.alter_job('j', batch_size => 5000)")
    run2 = call_run(c, "j")
    r = run_row(c, run)
    assert r["status"] == "failed" and r["error"].startswith("interrupted"), r
    assert r["finished_at"] is not None
    assert run_row(c, run2)["status"] == "succeeded"
    check_exactly_once(c, "j")


def test_terminate_backend_of_call_run_mid_run(db):
    total = 60000
    c = db.connect()
    make_source(c, total)
    create_job(c, "j", batch_size=50)
    w = db.connect()
    wpid = w.info.backend_pid
    t = in_thread(lambda: call_run(w, "j"))
    run = wait_for(lambda: running_run(c, "j"), 20, "the CALL to commit a batch", interval=0.005)
    assert one(c, "SELECT pg_terminate_backend(%s)", [wpid]) is True
    t["thread"].join(30)
    assert isinstance(t.get("error"), psycopg.OperationalError), t
    wait_for(lambda: one(c, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [wpid]) == 0, 10,
             "the terminated backend to exit")

    rerun_after_interruption(c, run, total)


# ---------------------------------------------------------------------------------------------
# 3. one run at a time

def test_second_run_is_refused(db):
    total = 60000
    c = db.connect()
    make_source(c, total)
    create_job(c, "j", batch_size=50)
    other = db.connect()

    def refused(sql, run):
        with pytest.raises(errors.LockNotAvailable, match="is already running") as e:
            other.execute(sql)
        assert e.value.sqlstate == "55P03"
        assert f"run {run}" in str(e.value), str(e.value)

    # While a CALL runs it.
    w = db.connect()
    t = in_thread(lambda: call_run(w, "j"))
    run = wait_for(lambda: running_run(c, "j"), 20, "the CALL to commit a batch", interval=0.005)
    refused("CALL sqlscore.run_job('j')", run)
    refused("SELECT sqlscore.submit_job('j', 1)", run)
    refused("SELECT sqlscore.stream_job('j', '1 second')", run)
    tried_at = one(c, "SELECT clock_timestamp()")
    t["thread"].join(60)
    assert t.get("result") == run, t
    r = run_row(c, run)
    assert r["status"] == "succeeded" and r["finished_at"] > tried_at, r

    # While background workers run it.
    add_rows(c, total, batch=1)
    run2 = submit(c, "j", 1)
    refused("CALL sqlscore.run_job('j')", run2)
    refused("SELECT sqlscore.submit_job('j', 2)", run2)
    tried_at = one(c, "SELECT clock_timestamp()")
    r = wait_run(c, run2)
    assert r["status"] == "succeeded" and r["finished_at"] > tried_at, r

    # A scheduled (pg_cron) run meeting a running one is skipped, not an error.
    add_rows(c, total, batch=2)
    run3 = submit(c, "j", 1)
    assert other.execute("CALL sqlscore.run_job('j', 'cron')").fetchone()["run_id"] is None
    assert wait_run(c, run3)["status"] == "succeeded"

    # A submit_job whose transaction rolls back starts nothing and leaves nothing behind.
    t = db.connect(autocommit=False)
    ghost = one(t, "SELECT sqlscore.submit_job('j', 2)")
    t.rollback()
    wait_for(lambda: workers_in(c) == 0, 10, "the workers of a rolled-back submit_job to exit")
    assert run_row(c, ghost) is None

    # The refused and skipped attempts recorded nothing.
    assert [x["run_id"] for x in c.execute("SELECT run_id FROM sqlscore.job_runs WHERE job = 'j' ORDER BY run_id")] \
        == [run, run2, run3]
    assert one(c, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    check_exactly_once(c, "j")


# ---------------------------------------------------------------------------------------------
# 4. one worker or two: the same result

def test_async_one_and_two_workers_agree(db, capsys):
    total = 40000
    c = db.connect()
    make_source(c, total)
    c.execute("UPDATE readings SET batch = mod(id, 7)")
    create_job(c, "one", target="scores_1w", batch_size=1000, carry=["sensor_id", "batch"])
    create_job(c, "two", target="scores_2w", batch_size=1000, carry=["sensor_id", "batch"])
    r1 = submit(c, "one", 1)
    r2 = submit(c, "two", 2)
    assert wait_run(c, r1)["status"] == "succeeded"
    assert wait_run(c, r2)["status"] == "succeeded"
    assert run_row(c, r2)["workers"] == 2
    per_worker = [r["rows_scored"] for r in c.execute(
        "SELECT rows_scored FROM sqlscore.job_run_workers WHERE run_id = %s ORDER BY worker", [r2])]
    assert len(per_worker) == 2 and sum(per_worker) == total, per_worker
    assert min(per_worker) > 0, f"one of the two workers scored nothing: {per_worker}"

    d = c.execute("""
        SELECT count(*) FILTER (WHERE a.id IS NULL OR b.id IS NULL) AS unmatched,
               count(*) FILTER (WHERE (a.sensor_id, a.batch, a.model, a.model_version)
                                      IS DISTINCT FROM (b.sensor_id, b.batch, b.model, b.model_version)) AS differ,
               count(*) FILTER (WHERE a.score IS DISTINCT FROM b.score) AS inexact,
               coalesce(max(abs(a.score - b.score)), 0) AS max_diff,
               count(*) AS n
        FROM scores_1w a FULL JOIN scores_2w b USING (id)""").fetchone()
    assert d["unmatched"] == 0 and d["differ"] == 0 and d["n"] == total, d
    assert d["max_diff"] <= ABS_TOL, d
    with capsys.disabled():
        print(f"\n  1 vs 2 workers: {d['inexact']} of {total} scores not bit-identical (max diff {d['max_diff']:.3g}); "
              f"rows per worker {per_worker}")
    check_exactly_once(c, "one", target="scores_1w")
    check_exactly_once(c, "two", target="scores_2w")


# ---------------------------------------------------------------------------------------------
# 5. streaming: new rows scored within moments of their commit

def test_stream_scores_new_rows_quickly(db, capsys, record_property):
    c = db.connect()
    make_source(c, 2000)
    create_job(c, "j", batch_size=1000)
    run = one(c, "SELECT sqlscore.stream_job('j', '100 ms')")
    wait_for(lambda: backlog(c, "j") == 0, 15, "the stream to drain the initial backlog")
    assert run_row(c, run)["started_by"] == "stream"

    w = db.connect(autocommit=False)
    rng = random.Random(5)
    committed_before = {}
    for b in range(1, 13):
        with w.cursor().copy("COPY readings (sensor_id, x, batch) FROM STDIN") as cp:
            for _ in range(1000):
                cp.write_row((rng.randrange(5), rng.uniform(0, 10), b))
        committed_before[b] = time.time()  # the commit happens after this instant
        w.commit()
        time.sleep(0.25)
    total = one(c, "SELECT count(*) FROM readings")
    wait_for(lambda: one(c, "SELECT count(*) FROM scores") == total, 15, "the stream to score every row")

    rows = c.execute("SELECT s.batch, extract(epoch FROM t.scored_at)::float8 AS at "
                     "FROM scores t JOIN readings s USING (id) WHERE s.batch > 0").fetchall()
    lat = sorted(r["at"] - committed_before[r["batch"]] for r in rows)
    p50, p95, worst = lat[len(lat) // 2], lat[int(len(lat) * 0.95)], lat[-1]
    record_property("stream_latency_p50_s", round(p50, 3))
    record_property("stream_latency_p95_s", round(p95, 3))
    record_property("stream_latency_max_s", round(worst, 3))
    with capsys.disabled():
        print(f"\n  stream latency over {len(lat)} rows (commit to scored_at): "
              f"p50 {p50:.3f} s, p95 {p95:.3f} s, max {worst:.3f} s")
    assert lat[0] > -0.1, "a row was scored before its transaction committed?"
    assert worst < 5.0, f"a row waited {worst:.2f} s to be scored (p95 {p95:.2f} s)"

    assert run_row(c, run)["status"] == "running"
    assert workers_in(c) == 1
    assert one(c, "SELECT sqlscore.stop_stream('j')") is True
    wait_for(lambda: workers_in(c) == 0, 5, "the stream worker to exit after stop_stream",
             explain=lambda: c.execute("SELECT pid, state, query FROM pg_stat_activity "
                                       "WHERE backend_type = 'sqlscore job worker'").fetchall())
    r = wait_run(c, run, 5)
    assert r["status"] == "succeeded", r
    assert one(c, "SELECT streaming FROM sqlscore.jobs WHERE name = 'j'") is False
    check_exactly_once(c, "j")

    # A stream sleeping a long interval still stops within moments.
    run = one(c, "SELECT sqlscore.stream_job('j', '1 hour')")
    wait_for(lambda: workers_in(c) == 1 and run_row(c, run)["status"] == "running", 5, "the hourly stream to start")
    time.sleep(0.3)
    stopped_at = time.monotonic()
    assert one(c, "SELECT sqlscore.stop_stream('j')") is True
    wait_for(lambda: workers_in(c) == 0, 5, "an hourly stream's worker to exit after stop_stream")
    with capsys.disabled():
        print(f"  an hourly stream stopped {time.monotonic() - stopped_at:.2f} s after stop_stream")
    assert wait_run(c, run, 5)["status"] == "succeeded"

    # cancel_run of a stream ends it too, for good.
    run = one(c, "SELECT sqlscore.stream_job('j', '100 ms')")
    wait_for(lambda: workers_in(c) == 1, 5, "the stream to start")
    assert one(c, "SELECT sqlscore.cancel_run(%s)", [run]) is True
    wait_for(lambda: workers_in(c) == 0, 5, "a cancelled stream's worker to exit")
    assert wait_run(c, run, 5)["status"] == "cancelled"
    assert one(c, "SELECT streaming FROM sqlscore.jobs WHERE name = 'j'") is False


# ---------------------------------------------------------------------------------------------
# 6. a stream comes back after a server restart (the launcher watches the database postgres)

@pytest.mark.server_restart
def test_stream_survives_server_restart(postgres_db, server):
    server.check_local()
    job, src, tgt = "pgjobs_restart", "pgjobs_restart_src", "pgjobs_restart_scores"
    c = postgres_db.connect()
    drop_job_if_exists(c, job, [tgt, src])
    try:
        make_source(c, 3000, src)
        create_job(c, job, source=src, target=tgt, batch_size=1000)
        run1 = one(c, "SELECT sqlscore.stream_job(%s, '100 ms')", [job])
        wait_for(lambda: one(c, f"SELECT count(*) FROM {tgt}") == 3000, 15, "the stream to score the first rows")

        server.restart()
        server.wait_ready()
        c = postgres_db.connect()
        run2 = wait_for(lambda: one(c, "SELECT run_id FROM sqlscore.job_runs WHERE job = %s AND run_id > %s "
                                       "AND started_by = 'stream' AND status = 'running'", [job, run1]),
                        30, "the launcher to restart the stream",
                        explain=lambda: c.execute("SELECT * FROM sqlscore.job_runs WHERE job = %s", [job]).fetchall())
        r1 = run_row(c, run1)
        assert r1["status"] == "failed" and r1["error"].startswith("interrupted"), r1
        assert workers_in(c) >= 1

        add_rows(c, 2000, src, batch=1)
        wait_for(lambda: one(c, f"SELECT count(*) FROM {tgt}") == 5000, 10, "the restarted stream to score new rows")
        assert one(c, f"SELECT count(DISTINCT run_id) FROM {tgt} t JOIN {src} s USING (id) WHERE s.batch = 1") == 1
        assert one(c, f"SELECT min(run_id) FROM {tgt} t JOIN {src} s USING (id) WHERE s.batch = 1") == run2

        # A stream worker ended by pg_terminate_backend is restarted by the launcher too.
        pid = one(c, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'sqlscore job worker' AND datname = 'postgres'")
        assert one(c, "SELECT pg_terminate_backend(%s)", [pid]) is True
        run3 = wait_for(lambda: one(c, "SELECT run_id FROM sqlscore.job_runs WHERE job = %s AND run_id > %s "
                                       "AND started_by = 'stream' AND status = 'running'", [job, run2]),
                        20, "the launcher to restart a terminated stream")
        r2 = run_row(c, run2)
        assert r2["status"] == "failed" and r2["error"].startswith("interrupted"), r2
        add_rows(c, 1000, src, batch=2)
        wait_for(lambda: one(c, f"SELECT count(*) FROM {tgt}") == 6000, 10, "the restarted stream to score new rows")

        assert one(c, "SELECT sqlscore.stop_stream(%s)", [job]) is True
        wait_for(lambda: workers_in(c) == 0, 5, "the stream worker to exit")
        assert wait_run(c, run3, 5)["status"] == "succeeded"
        check_exactly_once(c, job, src, tgt)
    finally:
        c = postgres_db.connect()
        drop_job_if_exists(c, job, [tgt, src])


# ---------------------------------------------------------------------------------------------
# 7. on_error

NULL_KEYS = [1500, 2222, 2999]


def test_on_error_reject_raise_null(db):
    total = 3000
    c = db.connect()
    make_source(c, total)
    c.execute("UPDATE readings SET x = NULL WHERE id = ANY (%s)", [NULL_KEYS])
    for mode in ("reject", "raise", "null"):
        create_job(c, f"j_{mode}", target=f"scores_{mode}", batch_size=1000, on_error=mode)

    # reject: the NULL rows go to job_rejects, with their key, model and an error; the others are written.
    run = call_run(c, "j_reject")
    r = run_row(c, run)
    assert r["status"] == "succeeded" and r["rows_scored"] == total - 3 and r["rows_rejected"] == 3, r
    rej = c.execute("SELECT j.key, j.model, j.error, j.run_id, 'anomaly_' || s.sensor_id AS expected_model "
                    "FROM sqlscore.job_rejects j JOIN readings s ON s.id = j.key WHERE j.job = 'j_reject' "
                    "ORDER BY j.key").fetchall()
    assert [x["key"] for x in rej] == NULL_KEYS
    for x in rej:
        assert x["model"] == x["expected_model"] and x["run_id"] == run and x["error"], x
    assert one(c, "SELECT count(*) FROM scores_reject WHERE id = ANY (%s)", [NULL_KEYS]) == 0
    assert one(c, "SELECT count(*) FROM scores_reject") == total - 3
    assert backlog(c, "j_reject") == 0
    check_scores(c, target="scores_reject")

    # raise: the run fails at the batch holding key 1500 (keys 1001-2000); that batch is not
    # committed, the one before it is.
    with pytest.raises(psycopg.Error) as e:
        call_run(c, "j_raise")
    r = c.execute("SELECT * FROM sqlscore.job_runs WHERE job = 'j_raise'").fetchone()
    assert r["status"] == "failed" and r["error"] and r["finished_at"] is not None, r
    assert r["error"] in str(e.value) and f"run {r['run_id']}" in str(e.value), (r["error"], str(e.value))
    assert r["rows_scored"] == 1000, r
    k = c.execute("SELECT min(id) AS lo, max(id) AS hi, count(*) AS n FROM scores_raise").fetchone()
    assert k == {"lo": 1, "hi": 1000, "n": 1000}, k
    assert backlog(c, "j_raise") == total - 1000
    assert one(c, "SELECT count(*) FROM sqlscore.job_rejects WHERE job = 'j_raise'") == 0
    check_scores(c, target="scores_raise")

    # raise with two background workers: the run fails, both workers stop, and what was
    # committed and what is still queued add up to the source.
    create_job(c, "j_raise2", target="scores_raise2", batch_size=100, on_error="raise")
    run = submit(c, "j_raise2", 2)
    r = wait_run(c, run)
    assert r["status"] == "failed" and r["error"], r
    wait_for(lambda: workers_in(c) == 0, 5, "the failed run's workers to exit")
    n = one(c, "SELECT count(*) FROM scores_raise2")
    assert n == r["rows_scored"] and 0 < n < total, (n, r)
    assert backlog(c, "j_raise2") + n == total
    assert one(c, "SELECT count(*) FROM scores_raise2 WHERE id = ANY (%s)", [NULL_KEYS]) == 0
    check_scores(c, target="scores_raise2")

    # null: every row written, the NULL rows with a NULL score.
    run = call_run(c, "j_null")
    r = run_row(c, run)
    assert r["status"] == "succeeded" and r["rows_scored"] == total and r["rows_rejected"] == 0, r
    assert r["score_nulls"] == 3 and r["score_count"] == total - 3, r
    assert [x["id"] for x in c.execute("SELECT id FROM scores_null WHERE score IS NULL ORDER BY id")] == NULL_KEYS
    check_exactly_once(c, "j_null", target="scores_null")


def test_dropped_model_fails_the_run(db):
    c = db.connect()
    make_source(c, 5000)
    create_job(c, "j", batch_size=1000)
    assert run_row(c, call_run(c, "j"))["status"] == "succeeded"
    add_rows(c, 2000, batch=1)
    c.execute("SELECT sqlscore.drop_model('anomaly_4')")
    with pytest.raises(psycopg.Error, match="anomaly_4") as e:
        call_run(c, "j")
    r = c.execute("SELECT * FROM sqlscore.job_runs WHERE job = 'j' ORDER BY run_id DESC LIMIT 1").fetchone()
    assert r["status"] == "failed" and "anomaly_4" in r["error"], (r, str(e.value))
    # Every batch of the new rows needs anomaly_4: nothing of them was written or dequeued.
    assert r["rows_scored"] == 0, r
    assert backlog(c, "j") == 2000
    assert one(c, "SELECT count(*) FROM scores") == 5000

    c.execute("SELECT sqlscore.register_model('anomaly_4', %s)", [model_bytes(4)])
    assert run_row(c, call_run(c, "j"))["status"] == "succeeded"
    failed = one(c, "SELECT count(*) FROM sqlscore.job_runs WHERE job = 'j' AND status = 'failed'")
    assert failed == 1
    check_exactly_once(c, "j", check_version=False)


# ---------------------------------------------------------------------------------------------
# 8. pg_cron

@pytest.mark.cron
def test_schedule_job_with_pg_cron(postgres_db):
    job, src, tgt = "pgjobs_cron", "pgjobs_cron_src", "pgjobs_cron_scores"
    c = postgres_db.connect()
    c.execute("CREATE EXTENSION IF NOT EXISTS pg_cron")
    drop_job_if_exists(c, job, [tgt, src])
    try:
        make_source(c, 2000, src)
        create_job(c, job, source=src, target=tgt, batch_size=500)
        cron_id = one(c, "SELECT sqlscore.schedule_job(%s, '* * * * *')", [job])
        assert one(c, "SELECT schedule FROM sqlscore.jobs WHERE name = %s", [job]) == "* * * * *"
        cj = c.execute("SELECT jobid, schedule, command FROM cron.job WHERE jobname = %s", ["sqlscore:" + job]).fetchone()
        assert cj and cj["jobid"] == cron_id and cj["schedule"] == "* * * * *" and "run_job" in cj["command"], cj

        def cron_run():
            r = c.execute("SELECT * FROM sqlscore.job_runs WHERE job = %s AND started_by = 'cron' "
                          "AND status <> 'running' ORDER BY run_id LIMIT 1", [job]).fetchone()
            if r:
                return r
            bad = c.execute("SELECT status, return_message FROM cron.job_run_details WHERE jobid = %s "
                            "AND status = 'failed'", [cron_id]).fetchone()
            assert bad is None, f"pg_cron's run of the job failed: {bad}"
            return None

        r = wait_for(cron_run, 75, "a run started by pg_cron to finish", interval=0.5,
                     explain=lambda: c.execute("SELECT * FROM cron.job_run_details WHERE jobid = %s",
                                               [cron_id]).fetchall())
        assert r["status"] == "succeeded" and r["error"] is None and r["rows_scored"] == 2000, r
        assert one(c, "SELECT sqlscore.unschedule_job(%s)", [job]) is True
        assert one(c, "SELECT count(*) FROM cron.job WHERE jobname = %s", ["sqlscore:" + job]) == 0
        assert one(c, "SELECT schedule FROM sqlscore.jobs WHERE name = %s", [job]) is None
        check_exactly_once(c, job, src, tgt)
    finally:
        c = postgres_db.connect()
        drop_job_if_exists(c, job, [tgt, src])


def test_schedule_job_needs_pg_cron(db):
    c = db.connect()
    make_source(c, 10)
    create_job(c, "j")
    with pytest.raises(errors.FeatureNotSupported, match="pg_cron"):
        c.execute("SELECT sqlscore.schedule_job('j', '* * * * *')")
    assert one(c, "SELECT schedule FROM sqlscore.jobs WHERE name = 'j'") is None


# ---------------------------------------------------------------------------------------------
# 9. cancel

def test_cancel_async_run_then_rerun(db):
    total = 60000
    c, run = async_run_under_way(db, total)
    assert one(c, "SELECT sqlscore.cancel_run(%s)", [run]) is True
    r = wait_run(c, run, 10)
    assert r["status"] == "cancelled" and r["cancel_requested"] is True, r
    assert 0 < r["rows_scored"] < total, r
    wait_for(lambda: workers_in(c) == 0, 5, "the cancelled run's worker to exit")
    assert backlog(c, "j") + r["rows_scored"] == total
    assert one(c, "SELECT sqlscore.cancel_run(%s)", [run]) is False  # already ended

    # cancel_run of a CALL running in another session: the CALL stops after its batch.
    w = db.connect()
    t = in_thread(lambda: call_run(w, "j"))
    run2 = wait_for(lambda: running_run(c, "j"), 20, "the CALL to commit a batch", interval=0.005)
    assert one(c, "SELECT sqlscore.cancel_run(%s)", [run2]) is True
    t["thread"].join(30)
    assert t.get("result") == run2, t  # the CALL itself ends without an error
    r2 = run_row(c, run2)
    assert r2["status"] == "cancelled" and r2["rows_scored"] > 0, r2
    done = r["rows_scored"] + r2["rows_scored"]
    assert done < total and backlog(c, "j") + done == total

    c.execute("SELECT sqlscore.alter_job('j', batch_size => 5000)")
    run3 = call_run(c, "j")
    r3 = run_row(c, run3)
    assert r3["status"] == "succeeded" and r3["rows_scored"] == total - done, r3
    check_exactly_once(c, "j")


def test_cancel_backend_of_call_run_never_leaves_the_job_held(db):
    """pg_cancel_backend (or statement_timeout) of a CALL run_job, at any moment: the run must
    end (cancelled) and the job must be free for other sessions while that session lives on."""
    c = db.connect()
    make_source(c, 0)
    # Small batches: many commits, so the cancel lands at all the moments of a run.
    create_job(c, "j", batch_size=20)
    rng = random.Random(11)
    problem = None
    for attempt in range(40):
        add_rows(c, 1500, batch=attempt)
        w = db.connect()
        pid = w.info.backend_pid
        t = in_thread(lambda: call_run(w, "j"))
        wait_for(lambda: running_run(c, "j"), 20, "the CALL to commit a batch", interval=0.002)
        time.sleep(rng.uniform(0.0, 0.02))
        one(c, "SELECT pg_cancel_backend(%s)", [pid])
        t["thread"].join(30)
        r = c.execute("SELECT * FROM sqlscore.job_runs WHERE job = 'j' ORDER BY run_id DESC LIMIT 1").fetchone()
        held = one(c, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", [pid])
        if held:
            problem = (f"attempt {attempt}: the CALL got {t.get('error') or t.get('result')!r}; its run {r['run_id']} "
                       f"is left '{r['status']}' and its session {'still holds' if held else 'holds no'} the job's "
                       "advisory lock, so other sessions' runs are refused until that session disconnects")
            break
        assert isinstance(t.get("error"), errors.QueryCanceled) or t.get("result") == r["run_id"], t
        # A cancel inside a batch is caught by the run (cancelled); one that lands between two
        # batches, right after a COMMIT, ends the CALL outside the run's handler: the backend
        # then drops the job's hold and the run shows as failed (interrupted), recorded so by
        # the next run.
        assert r["status"] in ("cancelled", "succeeded") or \
            (r["status"] == "failed" and "interrupted" in (r["error"] or "")), r
        call_run(c, "j")  # from another session, while w is still connected
    if problem:
        # Free the job, then check that nothing was lost or scored twice all the same.
        w.close()
        wait_for(lambda: one(c, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]) == 0, 10,
                 "the cancelled session to end")
        call_run(c, "j")
        check_exactly_once(c, "j")
        pytest.fail(problem, pytrace=False)
    check_exactly_once(c, "j")


def test_run_job_in_a_transaction_block_leaves_nothing_held(db):
    """CALL run_job needs autocommit; called in a transaction block it must fail and leave the
    job free (psycopg, like most drivers, opens a transaction block by default)."""
    c = db.connect()
    make_source(c, 1000)
    create_job(c, "j")
    t = db.connect(autocommit=False)
    with pytest.raises(psycopg.Error) as e:
        t.execute("CALL sqlscore.run_job('j')")
    assert e.value.sqlstate == "25001" and "transaction block" in str(e.value), str(e.value)
    t.rollback()
    held = one(c, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", [t.info.backend_pid])
    assert held == 0, (f"after CALL run_job failed in a transaction block ({str(e.value).splitlines()[0]!r}) and "
                       "ROLLBACK, the session still holds the job's advisory lock: every other session's run_job "
                       "is refused until it disconnects")
    assert one(c, "SELECT count(*) FROM sqlscore.job_runs WHERE job = 'j'") == 0
    call_run(c, "j")
    check_exactly_once(c, "j")


# ---------------------------------------------------------------------------------------------
# 10. the monitoring figures are the target's

def check_run_figures(c, run, target="scores"):
    r = run_row(c, run)
    a = c.execute(f"""SELECT count(*) AS n, count(score) AS n_scores, count(*) - count(score) AS nulls,
                             avg(score) AS mean, min(score) AS lo, max(score) AS hi,
                             percentile_cont(0.5) WITHIN GROUP (ORDER BY score) AS p50,
                             percentile_cont(0.95) WITHIN GROUP (ORDER BY score) AS p95
                      FROM {target} WHERE run_id = %s""", [run]).fetchone()
    rejects = one(c, "SELECT count(*) FROM sqlscore.job_rejects WHERE run_id = %s", [run])
    assert a["n"] > 0
    assert (r["rows_scored"], r["score_count"], r["score_nulls"], r["rows_rejected"]) == \
        (a["n"], a["n_scores"], a["nulls"], rejects), (r, a, rejects)
    assert r["score_mean"] == pytest.approx(a["mean"], rel=1e-9, abs=1e-12), (r, a)
    assert (r["score_min"], r["score_max"]) == (a["lo"], a["hi"]), (r, a)
    assert r["score_p50"] == pytest.approx(a["p50"], rel=1e-12, abs=1e-15), (r, a)
    assert r["score_p95"] == pytest.approx(a["p95"], rel=1e-12, abs=1e-15), (r, a)
    assert r["rows_per_s"] > 0 and r["finished_at"] >= r["started_at"], r
    return r


def unscored(c, job="j", source="readings", target="scores"):
    return one(c, f"SELECT count(*) FROM {source} s WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE t.id = s.id) "
                  "AND NOT EXISTS (SELECT 1 FROM sqlscore.job_rejects r WHERE r.job = %s AND r.key = s.id)", [job])


def test_monitoring_matches_target(db):
    c = db.connect()
    make_source(c, 30000)
    c.execute("UPDATE readings SET x = NULL WHERE mod(id, 997) = 0")  # some rejects
    create_job(c, "j", batch_size=2000)
    j = c.execute("SELECT backlog, lag, last_run_id FROM sqlscore.jobs WHERE name = 'j'").fetchone()
    assert j["backlog"] == unscored(c) == 30000 and j["lag"] is not None and j["last_run_id"] is None, j

    run1 = call_run(c, "j")
    r = check_run_figures(c, run1)
    assert r["rows_rejected"] == 30 and r["rows_scored"] == 30000 - 30, r
    j = c.execute("SELECT backlog, lag, last_run_id, last_status FROM sqlscore.jobs WHERE name = 'j'").fetchone()
    assert j == {"backlog": 0, "lag": None, "last_run_id": run1, "last_status": "succeeded"}, j
    assert unscored(c) == 0

    add_rows(c, 12000, batch=1)
    c.execute("UPDATE readings SET x = NULL WHERE batch = 1 AND mod(id, 1000) = 0")
    assert backlog(c, "j") == unscored(c) == 12000
    run2 = submit(c, "j", 2)
    assert wait_run(c, run2)["status"] == "succeeded"
    r = check_run_figures(c, run2)
    assert r["rows_scored"] + r["rows_rejected"] == 12000 and r["rows_rejected"] > 0, r
    assert backlog(c, "j") == 0 and unscored(c) == 0
    # Runs are counted apart: the target's rows per run are the runs' figures.
    assert one(c, "SELECT sum(rows_scored) FROM sqlscore.job_runs WHERE job = 'j'") == one(c, "SELECT count(*) FROM scores")
    check_scores(c)
