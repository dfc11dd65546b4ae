"""Fixtures for the integration tests of sqlscore scoring jobs (tests/pg_jobs).

They need a PostgreSQL 15 server on this machine with sqlscore and pg_cron preloaded (the cluster
of scripts/pg-cluster.sh) and its URL in SQLSCORE_PG_URL. Some tests kill a worker with SIGKILL
(a crash restart of the whole server) or restart the server with pg_ctl: they find its data
directory from SQLSCORE_PGROOT (default /tmp/sqlscore-pg, as pg-cluster.sh) and check it is the
server the URL names.

Each test that can gets a database of its own, cloned from a template that has the extension and
the per-sensor anomaly models (anomaly_0..anomaly_4) registered; the tests that need the stream
launcher or pg_cron work in the database `postgres` (the only one those watch) and clean up
after themselves.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import pwd
import re
import shutil
import signal
import subprocess
import time

import psycopg
import pytest
from psycopg import conninfo
from psycopg.rows import dict_row

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEMO_MODELS = ROOT / "models" / "demo"
TEMPLATE = "sqlscore_jobs_tpl"
SENSORS = 5


def pytest_configure(config):
    config.addinivalue_line("markers", "cron: waits for pg_cron's next minute (up to ~75 s); deselect with -m 'not cron'")
    config.addinivalue_line("markers", "server_restart: crash-restarts or restarts the server")


def model_bytes(sensor: int) -> bytes:
    return (DEMO_MODELS / f"anomaly_d0_s{sensor}.onnx").read_bytes()


def register_anomaly_models(conn, only_missing: bool = False):
    for s in range(SENSORS):
        name = f"anomaly_{s}"
        # Only when the active version is not this very model (another suite, e.g. the
        # benchmark, may use the same names in the database `postgres`).
        if only_missing and conn.execute(
            "SELECT 1 FROM sqlscore.model_versions WHERE name = %s AND active AND sha256 = %s",
            [name, hashlib.sha256(model_bytes(s)).hexdigest()],
        ).fetchone():
            continue
        conn.execute("SELECT sqlscore.register_model(%s, %s)", [name, model_bytes(s)])


@pytest.fixture(scope="session")
def pg_url() -> str:
    url = os.environ.get("SQLSCORE_PG_URL")
    if not url:
        pytest.fail(
            "SQLSCORE_PG_URL is not set: these tests need a PostgreSQL 15 server with sqlscore and pg_cron "
            "preloaded, e.g. SQLSCORE_PGPORT=5498 SQLSCORE_PGROOT=/tmp/sqlscore-pg-t scripts/pg-cluster.sh start, "
            "then SQLSCORE_PG_URL=postgres://postgres@127.0.0.1:5498/postgres (make test-pg sets it)",
            pytrace=False,
        )
    return url


def url_for(url: str, dbname: str) -> str:
    return conninfo.make_conninfo(url, dbname=dbname)


def connect(url: str, autocommit: bool = True, **kw) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=autocommit, row_factory=dict_row, connect_timeout=5, **kw)


class Server:
    """The local server of SQLSCORE_PG_URL: its data directory, log, and ways to crash or restart it."""

    def __init__(self, url: str):
        self.url = url
        self.root = pathlib.Path(os.environ.get("SQLSCORE_PGROOT", "/tmp/sqlscore-pg"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.pgbin = pathlib.Path(os.environ.get("PGBIN", "/usr/lib/postgresql/15/bin"))

    def check_local(self):
        port = str(conninfo.conninfo_to_dict(self.url).get("port") or 5432)
        pidfile = self.data / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
        except OSError as e:
            pytest.fail(
                f"this test crashes/restarts the server and needs its data directory: cannot read {pidfile} ({e}); "
                f"set SQLSCORE_PGROOT to the root the cluster of {self.url} was started with",
                pytrace=False,
            )
        if len(lines) < 4 or lines[3].strip() != port:
            pytest.fail(f"{pidfile} is a server on port {lines[3:4]}, not the port {port} of SQLSCORE_PG_URL", pytrace=False)

    def _as_postgres(self, cmd: list[str]) -> list[str]:
        if pwd.getpwuid(os.geteuid()).pw_name == "postgres":
            return cmd
        return ["sudo", "-u", "postgres", *cmd]

    def kill9(self, pid: int):
        try:
            os.kill(pid, signal.SIGKILL)
        except PermissionError:
            subprocess.run(self._as_postgres(["kill", "-9", str(pid)]), check=True, timeout=10)

    def restart(self):
        cmd = self._as_postgres(["env", "RUST_BACKTRACE=1", str(self.pgbin / "pg_ctl"), "-D", str(self.data),
                                 "-l", str(self.log), "-m", "fast", "-w", "-t", "60", "restart"])
        if shutil.which("prlimit"):  # the address-space cap pg-cluster.sh starts it with (make test-pg)
            cmd = ["prlimit", f"--as={4 << 30}", *cmd]
        p = subprocess.run(cmd, cwd=self.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120, text=True)
        assert p.returncode == 0, f"pg_ctl restart failed: {p.stderr}"

    def wait_ready(self, timeout: float = 60.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                with connect(self.url) as c:
                    if not c.execute("SELECT pg_is_in_recovery() AS r").fetchone()["r"]:
                        return
            except psycopg.OperationalError as e:
                last = e
            time.sleep(0.2)
        raise AssertionError(f"the server did not come back within {timeout} s: {last}")

    def log_size(self) -> int:
        try:
            return self.log.stat().st_size
        except OSError:
            return -1

    def log_since(self, offset: int) -> str:
        if offset < 0:
            return ""
        try:
            with open(self.log, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


@pytest.fixture(scope="session")
def server(pg_url) -> Server:
    return Server(pg_url)


@pytest.fixture(autouse=True)
def no_rust_panic_in_log(request, pg_url):
    """No test may make the extension panic (a Rust panic is an internal error), even where it
    turned into a clean SQL error."""
    s = Server(pg_url)
    start = s.log_size()
    yield
    text = s.log_since(start)
    bad = [line for line in text.splitlines() if re.search(r"panicked at|stack backtrace|RUST_BACKTRACE", line)]
    assert not bad, "server log shows a Rust panic:\n" + "\n".join(bad[:20])


@pytest.fixture(scope="session")
def template(pg_url):
    with connect(pg_url) as c:
        c.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {TEMPLATE}")
    with connect(url_for(pg_url, TEMPLATE)) as t:
        t.execute("CREATE EXTENSION sqlscore")
        register_anomaly_models(t)
    yield TEMPLATE
    with connect(pg_url) as c:
        c.execute(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)")


class Db:
    """A database for one test; connections it opens are closed at the end."""

    def __init__(self, url: str, name: str):
        self.url = url
        self.name = name
        self._conns: list[psycopg.Connection] = []

    def connect(self, autocommit: bool = True) -> psycopg.Connection:
        c = connect(self.url, autocommit=autocommit)
        self._conns.append(c)
        return c

    def close(self):
        for c in self._conns:
            try:
                c.close()
            except Exception:
                pass
        self._conns.clear()


@pytest.fixture
def db(request, pg_url, template):
    name = "sqlscore_jobs_" + re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40]
    with connect(pg_url) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    d = Db(url_for(pg_url, name), name)
    yield d
    d.close()
    try:
        with connect(pg_url) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    except psycopg.OperationalError:
        pass  # the server is down after a failed restart test: nothing left to drop


@pytest.fixture
def postgres_db(pg_url):
    """The database `postgres` (watched by the stream launcher and pg_cron), with sqlscore and the
    anomaly models; the test drops what it creates."""
    with connect(pg_url) as c:
        c.execute("CREATE EXTENSION IF NOT EXISTS sqlscore")
        register_anomaly_models(c, only_missing=True)
    d = Db(pg_url, "postgres")
    yield d
    d.close()
