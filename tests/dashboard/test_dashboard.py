"""The "Sensor anomalies" dashboard end to end (make test-dashboard), once over a DuckDB demo file
and once over a PostgreSQL demo database, from the same bundle (dashboard/bundle.py):

* every chart's data, asked of Superset's API as an anonymous viewer, equals the same SQL run
  directly against the engine;
* new scores show without restarting anything, and with DuckDB a job run is never blocked by the
  dashboard (which reads the snapshot copy);
* viewers cannot write, run SQL or see connections;
* a headless Chromium screenshot in which every chart is drawn: no error boxes, no "No results",
  and ink in every chart's box (colored marks for line and bar charts, text for numbers and
  tables), checked on the image itself.

Runs in the dashboard's venv (scripts/dashboard.sh pytest): the direct SQL goes through the same
duckdb and psycopg2 Superset reads with. Needs SQLSCORE_PG_URL (a server with sqlscore installed)
and SQLSCORE_DASHBOARD_HOME / SQLSCORE_DASHBOARD_PORT for a Superset of its own (the Makefile sets
them).
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import duckdb
import numpy
import psycopg2
import pytest
import requests
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLI = ROOT / "target" / "release" / "sqlscore"
SCRIPT = ROOT / "scripts" / "dashboard.sh"
PORT = int(os.environ.get("SQLSCORE_DASHBOARD_PORT", "8097"))
BASE = f"http://127.0.0.1:{PORT}"
SHOTS = ROOT / "target" / "dashboard"
CACHE_S = int(os.environ.get("SQLSCORE_DASHBOARD_CACHE_S", "10"))

sys.path.insert(0, str(ROOT / "dashboard"))
import bundle  # noqa: E402

# What each chart shows, as SQL written independently of the chart definitions, with the same
# column labels and order. Ties are compared as sets (see `same_rows`).
EXPECTED = {
    "Readings scored": "SELECT SUM(readings) AS readings FROM anomalies_by_sensor",
    "Anomalies": "SELECT SUM(anomalies) AS anomalies FROM anomalies_by_sensor",
    "Backlog (not yet scored)": "SELECT SUM(backlog) AS backlog FROM job_backlog",
    "Lag (s, oldest unscored input)": "SELECT MAX(lag_s) AS lag_s FROM job_backlog",
    "Anomalies per hour": 'SELECT hour, SUM(anomalies) AS "flagged by the models", SUM(injected) AS "injected (ground truth)" '
                          "FROM anomalies_by_hour GROUP BY hour ORDER BY hour",
    "Anomalies per sensor (most first)": "SELECT sensor_id, SUM(anomalies) AS anomalies FROM anomalies_by_sensor "
                                         "GROUP BY sensor_id ORDER BY anomalies DESC, sensor_id",
    "Score distribution (log scale; below 0 = anomaly)": "SELECT score_bin, SUM(readings) AS readings FROM score_histogram "
                                                         "GROUP BY score_bin ORDER BY score_bin",
    "Score drift per run (mean, p95)": 'SELECT run_id, MAX(score_mean) AS "score mean", MAX(score_p95) AS "score p95" '
                                       "FROM score_drift_by_run GROUP BY run_id ORDER BY run_id",
    "Most anomalous readings": "SELECT ts, device_id, sensor_id, value, score, model, model_version, injected, run_id "
                               "FROM anomaly_readings ORDER BY score, id LIMIT 50",
    "Job runs": "SELECT run_id, job, status, started_at, duration_s, rows_scored, rows_rejected, rows_per_s, error "
                "FROM job_history ORDER BY run_id DESC LIMIT 100",
    "Jobs: backlog and lag": "SELECT job, last_run_id, last_status, last_finished_at, backlog, backlog_unit, lag_s "
                             "FROM job_backlog ORDER BY job LIMIT 100",
    "Score drift per run and model": "SELECT run_id, model, model_version, readings, score_mean, score_p95, anomalies "
                                     "FROM score_drift ORDER BY run_id DESC, model LIMIT 500",
    "Detection quality (injected anomalies)": "SELECT * FROM detection_quality LIMIT 10",
}
# Charts whose rows may tie on the sort key (their order among ties is the engine's).
UNORDERED = {"Anomalies per sensor (most first)"}


def sh(*args, env=None, timeout=600):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=ROOT, timeout=timeout,
                       env={**os.environ, **(env or {})})
    assert p.returncode == 0, f"{args}: rc {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


class Engine:
    """One demo database and how to read it directly."""

    def __init__(self, name: str, db: str, demo_args: list[str]):
        self.name, self.db, self.demo_args = name, db, demo_args

    def query(self, sql: str) -> tuple[list[str], list[tuple]]:
        if self.name == "duckdb":
            # The job's own file, read-only, closed at once (no job runs meanwhile in this test).
            con = duckdb.connect(self.db, read_only=True)
            try:
                cur = con.execute(sql)
                return [d[0] for d in cur.description], cur.fetchall()
            finally:
                con.close()
        con = psycopg2.connect(self.db)
        try:
            with con.cursor() as cur:
                cur.execute(sql)
                return [d[0] for d in cur.description], cur.fetchall()
        finally:
            con.close()

    def land_and_score(self):
        """Lands the next 6 hours of readings and runs the job (the demo does both)."""
        return sh(CLI, "demo", "--db", self.db, *self.demo_args)


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def engine(request, tmp_path_factory):
    if request.param == "duckdb":
        tmp = tmp_path_factory.mktemp("dash")
        db = tmp / "demo.duckdb"
        e = Engine("duckdb", str(db), ["--data", str(tmp / "lake"), "--quiet"])
    else:
        url = os.environ.get("SQLSCORE_PG_URL")
        if not url:
            pytest.fail("SQLSCORE_PG_URL is not set (make test-dashboard starts a cluster and sets it)", pytrace=False)
        name = "sqlscore_dashboard_t"
        c = psycopg2.connect(url)
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            cur.execute(f"CREATE DATABASE {name}")
        c.close()
        db = url.rsplit("/", 1)[0] + "/" + name
        e = Engine("postgres", db, [])
    sh(CLI, "demo", "--db", e.db, *e.demo_args)
    t = time.monotonic()
    out = sh(SCRIPT, "up", e.db)
    assert f"{BASE}/superset/dashboard/{bundle.SLUG}/" in out.stdout, out.stdout
    print(f"dashboard up over {e.name} in {time.monotonic() - t:.1f} s")
    yield e


def charts(session=None) -> dict[str, dict]:
    s = session or requests
    r = s.get(f"{BASE}/api/v1/dashboard/{bundle.SLUG}/charts", timeout=30)
    assert r.status_code == 200, r.text[:500]
    return {c["slice_name"]: c for c in r.json()["result"]}


def chart_data(chart_id: int) -> tuple[list[str], list[dict]]:
    r = requests.get(f"{BASE}/api/v1/chart/{chart_id}/data/", timeout=60)
    assert r.status_code == 200, f"chart {chart_id}: {r.status_code} {r.text[:500]}"
    result = r.json()["result"]
    assert len(result) == 1
    return result[0]["colnames"], result[0]["data"]


def norm(v):
    """A value as Superset's JSON gives it: timestamps as epoch milliseconds, numbers as floats."""
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.timezone.utc)
        return v.timestamp() * 1000
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    return float(v)


def close(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return a == b


def same_rows(title, got_cols, got, want_cols, want):
    assert got_cols == want_cols, title
    got = [tuple(norm(r[c]) for c in got_cols) for r in got]
    want = [tuple(norm(v) for v in r) for r in want]
    assert len(got) == len(want), f"{title}: {len(got)} rows from Superset, {len(want)} directly"
    if title in UNORDERED:
        got, want = sorted(got, key=repr), sorted(want, key=repr)
    for g, w in zip(got, want):
        assert len(g) == len(w) and all(close(x, y) for x, y in zip(g, w)), f"{title}: {g} != {w}"


def test_every_chart_is_the_sql_run_directly(engine):
    found = charts()
    assert set(found) == set(EXPECTED) == {c["title"] for c in bundle.charts()}
    for title, sql in EXPECTED.items():
        cols, rows = chart_data(found[title]["id"])
        want_cols, want = engine.query(sql)
        assert want, f"{title}: the demo has no rows for it"
        same_rows(title, cols, rows, want_cols, want)
    # Sorted by count, not as text: the per-sensor bars come most first.
    _, rows = chart_data(found["Anomalies per sensor (most first)"]["id"])
    counts = [r["anomalies"] for r in rows]
    assert counts == sorted(counts, reverse=True) and len(set(counts)) > 1


def test_new_scores_show_while_it_runs(engine):
    """A job run while Superset serves the dashboard: it is not blocked, and its scores show within
    the chart cache's lifetime (no restart, no forced refresh)."""
    found = charts()
    chart, other = found["Readings scored"]["id"], found["Anomalies"]["id"]
    _, rows = chart_data(chart)
    before = rows[0]["readings"]
    # A viewer keeps loading another chart, past the cache, while the job runs: with DuckDB,
    # Superset reads the snapshot copy, so neither waits for the other nor fails. (Not this chart:
    # its cached answer must age out by itself.)
    # Four at once: overlapping connections in one Superset worker must each see the newest copy.
    failures, stop = [], threading.Event()

    def viewer():
        while not stop.is_set():
            try:
                r = requests.get(f"{BASE}/api/v1/chart/{other}/data/?force=true", timeout=60)
                if r.status_code != 200:
                    failures.append((r.status_code, r.text[:300]))
            except Exception as e:  # noqa: BLE001 - any failure is what this test looks for
                failures.append(repr(e))

    viewers = [threading.Thread(target=viewer) for _ in range(4)]
    for t in viewers:
        t.start()
    try:
        out = engine.land_and_score()
    finally:
        stop.set()
        for t in viewers:
            t.join()
    assert "succeeded" in out.stdout, out.stdout
    assert failures == []
    want = engine.query("SELECT count(*) FROM anomaly_readings")[1][0][0]
    assert want > before
    t = time.monotonic()
    while True:
        _, rows = chart_data(chart)
        if rows[0]["readings"] == want:
            break
        # The cache's lifetime, plus one request's worth of slack.
        assert time.monotonic() - t < CACHE_S + 15, f"still {rows[0]['readings']} readings, {want} scored"
        time.sleep(1)
    print(f"{engine.name}: new scores visible {time.monotonic() - t:.1f} s after the run ended")


def test_viewers_can_only_read(engine):
    s = requests.Session()
    assert s.get(f"{BASE}/superset/dashboard/{bundle.SLUG}/?standalone=1", timeout=30).status_code == 200
    assert s.get(f"{BASE}/api/v1/database/", timeout=30).status_code in (401, 403)
    for method, path, body in [
        ("post", "/api/v1/chart/", {"slice_name": "x", "viz_type": "table", "datasource_id": 1, "datasource_type": "table"}),
        ("put", f"/api/v1/dashboard/{bundle.SLUG}", {"dashboard_title": "x"}),
        ("post", "/api/v1/sqllab/execute/", {"database_id": 1, "sql": "SELECT 1"}),
        ("post", "/api/v1/database/", {"database_name": "x", "sqlalchemy_uri": "sqlite://"}),
    ]:
        r = getattr(s, method)(f"{BASE}{path}", json=body, timeout=30)
        assert r.status_code in (400, 401, 403), f"{method} {path}: {r.status_code} {r.text[:200]}"
    sqllab = s.get(f"{BASE}/sqllab/", timeout=30, allow_redirects=False)
    assert sqllab.status_code in (302, 401, 403)


def test_viewers_run_only_the_saved_charts(engine):
    """An anonymous chart-data request with anything the saved chart does not hold (a metric of
    its own, a WHERE clause, no chart at all) is refused; the saved query is answered."""
    chart = charts()["Anomalies"]
    saved = requests.get(f"{BASE}/api/v1/chart/{chart['id']}", timeout=30).json()["result"]
    qc = json.loads(saved["query_context"])
    assert requests.post(f"{BASE}/api/v1/chart/data", json=qc, timeout=60).status_code == 200
    probe = ("MAX(length(pg_read_file('/etc/hostname')))" if engine.name == "postgres"
             else "MAX(length(current_setting('allowed_directories')::VARCHAR))")
    evil = [
        lambda q: q["queries"][0].update(metrics=[{"expressionType": "SQL", "sqlExpression": probe, "label": "x"}]),
        lambda q: q["queries"][0].update(extras={"where": "1 = 1"}),
        lambda q: (q["form_data"].pop("slice_id", None), q["form_data"].update(slice_id=None)),
        lambda q: q["queries"][0].update(columns=["model"]),
    ]
    for change in evil:
        q = json.loads(saved["query_context"])
        change(q)
        r = requests.post(f"{BASE}/api/v1/chart/data", json=q, timeout=60)
        assert r.status_code in (401, 403), (r.status_code, r.text[:300])
    if engine.name == "postgres":
        # What Superset connects as: a role that reads the BI views and nothing else.
        con = psycopg2.connect(engine.db)
        with con.cursor() as cur:
            cur.execute("SELECT rolsuper, has_table_privilege('sqlscore_dashboard', 'anomaly_scores', 'SELECT'), "
                        "has_table_privilege('sqlscore_dashboard', 'anomaly_readings', 'SELECT') "
                        "FROM pg_roles WHERE rolname = 'sqlscore_dashboard'")
            assert cur.fetchone() == (False, False, True)
        con.close()


def test_duckdb_connections_are_locked_down(engine):
    """Each DuckDB connection of Superset attaches the snapshot read-only, then may read no file
    outside the jobs' lake folders and change no setting (dashboard/superset_config.py)."""
    if engine.name != "duckdb":
        pytest.skip("DuckDB only")
    sys.path.insert(0, str(ROOT / "dashboard"))
    import superset_config

    con = duckdb.connect(":memory:")
    superset_config._attach_duckdb_snapshot(con, None)
    assert con.execute("SELECT count(*) FROM anomaly_readings").fetchone()[0] > 0
    assert con.execute("SELECT backlog FROM job_backlog").fetchone()[0] == 0
    for refused in ["SELECT * FROM read_text('/etc/hostname')", "SET enable_external_access = true",
                    f"ATTACH '{engine.db}' AS w", "CREATE TABLE sqlscore.t AS SELECT 1",
                    "COPY (SELECT 1) TO '/tmp/sqlscore-dashboard-probe.csv'"]:
        with pytest.raises(duckdb.Error):
            con.execute(refused)
    con.close()


def ink(img: Image.Image, colored: bool) -> int:
    """Pixels that are marks: saturated color (chart series), or dark (text)."""
    px = numpy.asarray(img.convert("RGB")).astype(int)
    hi, lo = px.max(axis=2), px.min(axis=2)
    return int(((hi - lo > 60) if colored else (hi < 110)).sum())


def test_screenshot_every_chart_drawn(engine):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"sensor-anomalies-{engine.name}.png"
    n_charts = len(EXPECTED)
    with sync_playwright() as p:
        chromium = shutil.which("chromium")
        assert chromium, "Debian's chromium is needed (make test-dashboard installs it)"
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1400})
            answers = []
            page.on("response", lambda r: answers.append(r.status) if "/api/v1/chart/data" in r.url else None)
            page.goto(f"{BASE}/superset/dashboard/{bundle.SLUG}/?standalone=1", wait_until="networkidle", timeout=90_000)
            page.wait_for_function(
                f"document.querySelectorAll('[data-test-chart-id]').length >= {n_charts} && "
                "document.querySelectorAll('.loading, [data-test=\"loading-indicator\"]').length === 0",
                timeout=60_000,
            )
            page.wait_for_timeout(2500)  # ECharts' entry animation
            assert answers.count(200) >= n_charts, answers
            for text in ["No results", "Unexpected error", "Error:"]:
                assert page.get_by_text(text).count() == 0, text
            assert page.locator(".ant-alert-error, [data-test='error-message'], .alert-danger").count() == 0
            page.screenshot(path=str(path), full_page=True)
            boxes = page.locator("[data-test-chart-id]").evaluate_all(
                "es => es.map(e => { const r = e.getBoundingClientRect(); return [e.getAttribute('data-test-chart-name'),"
                " e.getAttribute('data-test-viz-type'), r.x + window.scrollX, r.y + window.scrollY, r.width, r.height,"
                " e.querySelectorAll('canvas, svg').length]; })"
            )
        finally:
            browser.close()
    img = Image.open(path)
    assert {b[0] for b in boxes} == set(EXPECTED)
    for name, viz, x, y, w, h, drawings in boxes:
        assert w > 100 and h > 100, name
        # Below the title bar: the chart itself.
        crop = img.crop((int(x), int(y) + 40, int(x + w), int(y + h)))
        if viz.startswith("echarts"):
            assert drawings > 0, f"{name}: no canvas"
            assert ink(crop, colored=True) > 300, f"{name}: no series drawn ({path})"
        else:
            assert ink(crop, colored=False) > 150, f"{name}: nothing written ({path})"
    print(f"screenshot: {path}")
