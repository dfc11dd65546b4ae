"""`sqlscore job ...` against PostgreSQL: the CLI (target/release/sqlscore) drives the server's jobs
(pg_extension/src/jobs.sql) through a postgres:// URL. What the CLI reports is checked against
sqlscore.job_runs and the target itself (check_exactly_once of test_jobs.py).

Needs the cluster of conftest.py (SQLSCORE_PG_URL); each test gets its own database, cloned from the
template with the anomaly_0..anomaly_4 models.

Run: SQLSCORE_PG_URL=postgres://postgres@127.0.0.1:5498/postgres \
     .venv/bin/python -m pytest -q -p no:cacheprovider tests/pg_jobs/test_cli_jobs.py
"""
from __future__ import annotations

import json
import pathlib
import subprocess
import urllib.parse

from psycopg import conninfo

from test_jobs import MODEL_EXPR, add_rows, check_exactly_once, make_source, one, run_row

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = ROOT / "target" / "release" / "sqlscore"


def cli_url(pg_url: str, dbname: str) -> str:
    """A postgres:// URL for database `dbname` of the server of SQLSCORE_PG_URL (the CLI takes URLs only)."""
    if pg_url.startswith(("postgres://", "postgresql://")):
        u = urllib.parse.urlsplit(pg_url)
        return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + dbname, u.query, u.fragment))
    d = conninfo.conninfo_to_dict(pg_url)
    auth = urllib.parse.quote(d.get("user", "postgres"), safe="")
    if d.get("password"):
        auth += ":" + urllib.parse.quote(d["password"], safe="")
    return f"postgres://{auth}@{d.get('host', '127.0.0.1')}:{d.get('port', 5432)}/{dbname}"


def sq(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([str(CLI), *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def last_json(p: subprocess.CompletedProcess):
    lines = p.stdout.strip().splitlines()
    assert lines, f"no output (rc {p.returncode}); stderr: {p.stderr}"
    return json.loads(lines[-1])


def cli_create(url, name, *extra, source="readings", target="scores"):
    return sq("job", "create", name, "--db", url, "--source", source, "--key", "id", "--model", MODEL_EXPR,
              "--target", target, "--features", "x", *extra)


def test_cli_create_run_status_runs(db, pg_url):
    url = cli_url(pg_url, db.name)
    c = db.connect()
    make_source(c, 5000)

    p = cli_create(url, "j", "--batch-rows", 1000)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"created job j: readings -> scores (model {MODEL_EXPR}, on_error reject); backlog 5000 rows", \
        p.stdout
    listing = last_json(sq("job", "list", "--db", url, "--json"))
    assert [(j["name"], j["source"], j["target"], j["backlog"], j["last_run_id"]) for j in listing] == \
        [("j", "readings", "scores", 5000, None)], listing

    # A CALL run, followed from a second connection.
    p = sq("job", "run", "j", "--db", url, "--json")
    assert p.returncode == 0, (p.stdout, p.stderr)
    s = last_json(p)
    assert (s["job"], s["status"], s["rows_scored"], s["rows_rejected"], s["error"]) == ("j", "succeeded", 5000, 0, None), s
    r = run_row(c, s["run_id"])
    assert (r["status"], r["started_by"], r["rows_scored"]) == ("succeeded", "call", 5000), r
    assert f"job j run {s['run_id']}: succeeded: 5000 rows scored, 0 rejected" in p.stdout, p.stdout
    check_exactly_once(c, "j")

    st = last_json(sq("job", "status", "j", "--db", url, "--json"))
    assert (st["job"], st["source"], st["key"], st["target"], st["on_error"], st["batch_rows"], st["backlog"]) == \
        ("j", "readings", "id", "scores", "reject", 1000, 0), st
    assert (st["last_run"]["run_id"], st["last_run"]["status"], st["last_run"]["rows_scored"]) == \
        (s["run_id"], "succeeded", 5000), st

    # An async run in two background workers, followed until it ends.
    add_rows(c, 3000, batch=1)
    assert last_json(sq("job", "status", "j", "--db", url, "--json"))["backlog"] == 3000
    p = sq("job", "run", "j", "--db", url, "--async", "--workers", 2, "--json")
    assert p.returncode == 0, (p.stdout, p.stderr)
    a = last_json(p)
    assert (a["status"], a["rows_scored"], a["rows_rejected"], a["error"]) == ("succeeded", 3000, 0, None), a
    assert a["run_id"] > s["run_id"]
    r = run_row(c, a["run_id"])
    assert (r["status"], r["started_by"], r["workers"], r["rows_scored"]) == ("succeeded", "async", 2, 3000), r
    assert "submitted to 2 background worker(s): 3000 rows queued" in p.stdout, p.stdout
    check_exactly_once(c, "j")

    runs = last_json(sq("job", "runs", "j", "--db", url, "--json"))
    assert [(x["run_id"], x["job"], x["status"], x["started_by"], x["rows_scored"]) for x in runs] == [
        (a["run_id"], "j", "succeeded", "async", 3000), (s["run_id"], "j", "succeeded", "call", 5000)], runs
    assert runs[0]["workers"] == 2
    # Plain output: a table, one row per run.
    p = sq("job", "runs", "j", "--db", url)
    assert p.returncode == 0 and p.stdout.splitlines()[-1] == "(2 rows)", p.stdout

    # Nothing new: nothing scored, still a success.
    p = sq("job", "run", "j", "--db", url, "--json")
    assert p.returncode == 0, (p.stdout, p.stderr)
    n = last_json(p)
    assert (n["status"], n["rows_scored"]) == ("succeeded", 0), n
    assert one(c, "SELECT count(*) FROM scores") == 8000

    p = sq("job", "cancel", "j", "--db", url)
    assert p.returncode == 0 and "has no run in progress" in p.stdout, (p.stdout, p.stderr)
    p = sq("job", "drop", "j", "--db", url)
    assert p.returncode == 0 and "dropped job j" in p.stdout, (p.stdout, p.stderr)
    assert last_json(sq("job", "list", "--db", url, "--json")) == []
    assert one(c, "SELECT count(*) FROM scores") == 8000  # the target stays


def test_cli_refuses_file_sources_for_postgres(db, pg_url, tmp_path):
    url = cli_url(pg_url, db.name)
    c = db.connect()
    make_source(c, 10)
    for source in (f"{tmp_path}/lake/*.parquet", "lake/readings.csv"):
        p = cli_create(url, "g", source=source)
        assert p.returncode == 1, (p.stdout, p.stderr)
        assert 'job "g": PostgreSQL jobs read a table; file sources' in p.stderr, p.stderr
        assert "DuckDB" in p.stderr, p.stderr
    assert last_json(sq("job", "list", "--db", url, "--json")) == []
    assert one(c, "SELECT count(*) FROM sqlscore.job_definitions") == 0


def test_cli_failures_against_postgres(db, pg_url):
    url = cli_url(pg_url, db.name)
    c = db.connect()
    make_source(c, 3000)
    c.execute("UPDATE readings SET x = NULL WHERE id = 1500")
    p = cli_create(url, "strict", "--on-error", "raise", "--batch-rows", 1000)
    assert p.returncode == 0, p.stderr

    # on_error raise: exit 1, the run failed, its error names the job and the run; the batch
    # before the failing one is committed.
    p = sq("job", "run", "strict", "--db", url, "--json")
    assert p.returncode == 1, (p.stdout, p.stderr)
    s = last_json(p)
    assert s["status"] == "failed" and s["run_id"] is not None, s
    r = run_row(c, s["run_id"])
    assert r["status"] == "failed" and r["error"], r
    assert s["error"] == f'job "strict" run {s["run_id"]}: {r["error"]}', (s, r)
    assert f'job "strict" run {s["run_id"]}' in p.stderr, p.stderr
    assert s["rows_scored"] == r["rows_scored"] == 1000, (s, r)
    assert one(c, "SELECT count(*) FROM scores") == 1000
    runs = last_json(sq("job", "runs", "strict", "--db", url, "--json"))
    assert [(x["run_id"], x["status"], x["error"]) for x in runs] == [(s["run_id"], "failed", r["error"])], runs

    # An unknown job.
    p = sq("job", "run", "nope", "--db", url, "--json")
    assert p.returncode == 1 and "no such job" in p.stderr, (p.stdout, p.stderr)
    p = sq("job", "status", "nope", "--db", url)
    assert p.returncode == 1 and "no such job" in p.stderr, (p.stdout, p.stderr)


def test_cli_run_while_a_run_is_under_way_is_busy_and_cancel_stops_it(db, pg_url):
    """A second run of a running job exits 4 (busy) with a JSON line; `job cancel` stops the run."""
    from test_jobs import async_run_under_way, wait_run

    url = cli_url(pg_url, db.name)
    c, run = async_run_under_way(db, 200_000)
    p = sq("job", "run", "j", "--db", url, "--json")
    assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
    s = last_json(p)
    assert s["status"] == "busy" and "55P03" in s["error"], s
    p = sq("job", "cancel", "j", "--db", url)
    assert p.returncode == 0 and f"cancel requested for run {run}" in p.stdout, (p.stdout, p.stderr)
    assert wait_run(c, run)["status"] == "cancelled"
