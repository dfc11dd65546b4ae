#!/usr/bin/env bash
# Apache Superset for sqlscore's dashboard, offline, on 127.0.0.1.
#
#   scripts/dashboard.sh start    install (first time or lock changed), set up, (re)start the
#                                 server, wait for /health
#   scripts/dashboard.sh stop     stop the server and its workers (safe when not running)
#   scripts/dashboard.sh status   running or not, and the URL (exit 3 when not running)
#   scripts/dashboard.sh url      print the dashboard URL
#
# `start` while the server runs restarts it, so a changed config, lock or bundle takes effect.
# Safe to run twice; every setup step is stamped and skipped when nothing changed.
#
# Environment:
#   SQLSCORE_DASHBOARD_HOME            state dir (default <repo>/.cache/superset): metadata DB,
#                                      secret key, admin password (both mode 0600), logs, pid file
#   SQLSCORE_DASHBOARD_PORT            port (default 8088)
#   SQLSCORE_DASHBOARD_VENV            venv (default <repo>/.cache/superset-venv)
#   SQLSCORE_DASHBOARD_ADMIN_PASSWORD  admin password (default: generated once, kept in the state
#                                      dir; a new value is set on the admin at the next start)
#   SUPERSET_SECRET_KEY                Flask secret key (default: generated once, kept in the state
#                                      dir)
#   SQLSCORE_DASHBOARD_BUNDLE          an assets bundle zip (dashboard/bundle.py) to import,
#                                      overwriting every object in it, on start;
#                                      re-imported when the zip changes, or always with
#                                      SQLSCORE_DASHBOARD_REIMPORT=1
#   SQLSCORE_DASHBOARD_CACHE_S         seconds chart results may be cached (default 10)
#   SQLSCORE_DASHBOARD_WORKERS         gunicorn workers (default 2)
#   SQLSCORE_CLI                       the sqlscore command (default <repo>/target/release/sqlscore)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s\n' "$PWD/$1" ;; esac; }
STATE="$(abspath "${SQLSCORE_DASHBOARD_HOME:-$REPO/.cache/superset}")"
VENV="$(abspath "${SQLSCORE_DASHBOARD_VENV:-$REPO/.cache/superset-venv}")"
PORT="${SQLSCORE_DASHBOARD_PORT:-8088}"
WORKERS="${SQLSCORE_DASHBOARD_WORKERS:-2}"
REQS="$REPO/dashboard/requirements.txt"
URL="http://127.0.0.1:$PORT/superset/dashboard/sqlscore/"
PIDFILE="$STATE/server.pid"
LOG="$STATE/server.log"
SETUP_LOG="$STATE/setup.log"
PY="$VENV/bin/python"

export SQLSCORE_DASHBOARD_HOME="$STATE"
export SUPERSET_HOME="$STATE"
export SUPERSET_CONFIG_PATH="$REPO/dashboard/superset_config.py"
export PYTHONDONTWRITEBYTECODE=1  # keep dashboard/ free of __pycache__ (pip precompiled the venv)
unset FLASK_APP FLASK_DEBUG || true

say() { printf 'dashboard: %s\n' "$*"; }
die() { printf 'dashboard: error: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
sha() { sha256sum "$1" | cut -d' ' -f1; }

# Runs a setup command with its output in setup.log; shows the log's tail when it fails.
run_logged() {
    local what="$1"; shift
    local t0; t0="$(now)"
    printf '\n== %s: %s\n' "$(date -Is)" "$what" >>"$SETUP_LOG"
    if ! "$@" >>"$SETUP_LOG" 2>&1; then
        tail -n 40 "$SETUP_LOG" >&2
        die "$what failed (full log: $SETUP_LOG)"
    fi
    say "$what ($(since "$t0") s)"
}

server_pid() {  # prints the server's pid when it runs, else fails
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid="$(cat "$PIDFILE" 2>/dev/null)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # The pid may have been reused by another program since: it must be our gunicorn.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "gunicorn.*superset.app:create_app" || return 1
    printf '%s\n' "$pid"
}

http_status() {  # prints the HTTP status of a GET (000 when nothing answers)
    python3 - "$1" <<'EOF'
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=3).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
EOF
}

port_busy() {
    python3 - "$PORT" <<'EOF'
import socket, sys
s = socket.socket()
s.settimeout(1)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
EOF
}

cmd_stop() {
    local pid
    if ! pid="$(server_pid)"; then
        rm -f "$PIDFILE"
        say "not running"
        return 0
    fi
    # gunicorn runs in its own session (setsid): TERM its process group, master and workers.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$PIDFILE"
    say "stopped (pid $pid)"
}

cmd_status() {
    local pid
    if pid="$(server_pid)"; then
        say "running (pid $pid, health $(http_status "http://127.0.0.1:$PORT/health")): $URL"
    else
        say "not running ($URL when started)"
        return 3
    fi
}

find_python() {
    local p
    for p in "${PYTHON:-}" python3 /usr/bin/python3 python3.11; do
        [[ -n "$p" ]] && command -v "$p" >/dev/null 2>&1 || continue
        if "$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            printf '%s\n' "$p"; return 0
        fi
    done
    die "Python 3.11 is needed (the lock's wheels are cp311); set PYTHON=/path/to/python3.11"
}

ensure_venv() {
    local want; want="$(sha "$REQS")"
    if [[ -x "$VENV/bin/superset" && "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" == "$want" ]]; then
        return 0
    fi
    local t0 py; t0="$(now)"; py="$(find_python)"
    say "installing Superset into $VENV (dashboard/requirements.txt changed or new)"
    rm -rf "$VENV"
    if ! "$py" -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        say "python3-venv missing: installing it with apt-get"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
        "$py" -m venv "$VENV"
    fi
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r "$REQS"
    printf '%s\n' "$want" >"$VENV/.requirements.sha256"
    say "installed ($(since "$t0") s)"
}

ensure_secrets() {
    ( umask 077
      if [[ -z "${SUPERSET_SECRET_KEY:-}" && ! -s "$STATE/secret_key" ]]; then
          "$PY" -c 'import secrets; print(secrets.token_urlsafe(48))' >"$STATE/secret_key"
      fi
      if [[ -n "${SQLSCORE_DASHBOARD_ADMIN_PASSWORD:-}" ]]; then
          if [[ "$(cat "$STATE/admin_password" 2>/dev/null)" != "$SQLSCORE_DASHBOARD_ADMIN_PASSWORD" ]]; then
              printf '%s\n' "$SQLSCORE_DASHBOARD_ADMIN_PASSWORD" >"$STATE/admin_password"
              rm -f "$STATE/.admin-password.stamp"
          fi
      elif [[ ! -s "$STATE/admin_password" ]]; then
          "$PY" -c 'import secrets; print(secrets.token_urlsafe(18))' >"$STATE/admin_password"
          rm -f "$STATE/.admin-password.stamp"
      fi )
    chmod 600 "$STATE/admin_password"
    [[ -f "$STATE/secret_key" ]] && chmod 600 "$STATE/secret_key"
    return 0
}

# Runs a `superset fab` command that prompts for the admin password (twice): on stdin, so the
# password never shows in the process list.
with_password() {
    local pw; pw="$(cat "$STATE/admin_password")"
    printf '%s\n%s\n' "$pw" "$pw" | "$@"
}

# Metadata DB schema, admin user, roles: once per lock (a new Superset may migrate the schema).
ensure_metadata() {
    local stamp="$STATE/.metadata.stamp" want
    want="$(sha "$REQS") $(sha "$SUPERSET_CONFIG_PATH")"
    if [[ "$(cat "$stamp" 2>/dev/null)" == "$want" && -s "$STATE/superset.db" ]]; then
        return 0
    fi
    rm -f "$STATE/.bundle.stamp"
    run_logged "superset db upgrade" "$VENV/bin/superset" db upgrade
    run_logged "superset fab create-admin (Superset skips an existing admin)" \
        with_password "$VENV/bin/superset" fab create-admin --username admin \
        --firstname sqlscore --lastname admin --email admin@localhost
    printf '%s\n' "$(sha "$STATE/admin_password")" >"$STATE/.admin-password.stamp"
    run_logged "superset init" "$VENV/bin/superset" init
    printf '%s\n' "$want" >"$stamp"
}

ensure_admin_password() {  # the password file changed (env var): set it on the existing admin
    if [[ "$(cat "$STATE/.admin-password.stamp" 2>/dev/null)" != "$(sha "$STATE/admin_password")" ]]; then
        run_logged "superset fab reset-password" \
            with_password "$VENV/bin/superset" fab reset-password --username admin
        printf '%s\n' "$(sha "$STATE/admin_password")" >"$STATE/.admin-password.stamp"
    fi
}

import_bundle() {
    local zip="${SQLSCORE_DASHBOARD_BUNDLE:-}"
    [[ -n "$zip" ]] || return 0
    zip="$(abspath "$zip")"
    [[ -f "$zip" ]] || die "SQLSCORE_DASHBOARD_BUNDLE=$zip: no such file"
    # This script's import step is part of what was imported.
    local want; want="$(sha "$zip") $zip $(sha "${BASH_SOURCE[0]}")"
    if [[ "${SQLSCORE_DASHBOARD_REIMPORT:-0}" != 1 && "$(cat "$STATE/.bundle.stamp" 2>/dev/null)" == "$want" ]]; then
        say "bundle $zip already imported (SQLSCORE_DASHBOARD_REIMPORT=1 forces it)"
        return 0
    fi
    # Superset's assets import overwrites every object of the bundle (database, datasets, charts,
    # dashboard) by uuid; `superset import-dashboards` would overwrite the dashboard only and keep
    # an existing database's URI and existing charts as they were.
    run_logged "import $zip (overwrite)" "$PY" - "$zip" <<'EOF'
import logging
import sys
from zipfile import ZipFile

logging.disable(logging.WARNING)
from superset.app import create_app

app = create_app()
with app.app_context():
    from flask import g
    from superset import security_manager
    from superset.commands.importers.v1.assets import ImportAssetsCommand
    from superset.commands.importers.v1.utils import get_contents_from_bundle

    g.user = security_manager.find_user(username="admin")
    with ZipFile(sys.argv[1]) as bundle:
        contents = get_contents_from_bundle(bundle)
    ImportAssetsCommand(contents).run()
    # A chart saved in the UI names itself in its query context's form_data (slice_id), which
    # is how the data API knows the request is that chart's (dashboard/superset_config.py lets
    # viewers run nothing else); the ids exist only now.
    import json
    import yaml
    from superset import db
    from superset.models.slice import Slice

    for name, text in contents.items():
        if not name.startswith("charts/"):
            continue
        chart = db.session.query(Slice).filter_by(uuid=yaml.safe_load(text)["uuid"]).one()
        qc = json.loads(chart.query_context)
        qc["form_data"]["slice_id"] = chart.id
        chart.query_context = json.dumps(qc)
    db.session.commit()
    print("imported", len(contents), "files")
EOF
    printf '%s\n' "$want" >"$STATE/.bundle.stamp"
}

# Anonymous read-only viewing: `superset init` sets the Public role to Superset's built-in minimal
# viewer set (PUBLIC_ROLE_LIKE = "Public" in dashboard/superset_config.py), which has no data
# access; add all_datasource_access (read every dataset, existing and future). Cheap check first,
# straight in the metadata DB, so a manual `superset init` is repaired on the next start.
public_has_data_access() {
    "$PY" - "$STATE/superset.db" <<'EOF'
import sqlite3, sys
con = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
n = con.execute("""
    SELECT count(*) FROM ab_permission_view_role pvr
    JOIN ab_role r ON r.id = pvr.role_id
    JOIN ab_permission_view pv ON pv.id = pvr.permission_view_id
    JOIN ab_permission p ON p.id = pv.permission_id
    JOIN ab_view_menu v ON v.id = pv.view_menu_id
    WHERE r.name = 'Public' AND p.name = 'all_datasource_access'
      AND v.name = 'all_datasource_access'""").fetchone()[0]
sys.exit(0 if n else 1)
EOF
}

ensure_public_role() {
    public_has_data_access 2>/dev/null && return 0
    run_logged "Public role: all_datasource_access on all_datasource_access" "$PY" - <<'EOF'
import logging
logging.disable(logging.WARNING)
from superset.app import create_app

app = create_app()
with app.app_context():
    from superset import db, security_manager as sm

    public = sm.find_role(app.config["AUTH_ROLE_PUBLIC"])
    if public is None:
        raise SystemExit("no Public role: did `superset init` run?")
    pv = sm.add_permission_view_menu("all_datasource_access", "all_datasource_access")
    if pv not in public.permissions:
        public.permissions.append(pv)
    db.session.commit()
    print("Public:", ", ".join(sorted(f"{p.permission.name} on {p.view_menu.name}"
                                      for p in public.permissions)))
EOF
}

start_server() {
    local t0; t0="$(now)"
    if port_busy; then
        die "port $PORT is in use by another program (set SQLSCORE_DASHBOARD_PORT)"
    fi
    : >"$LOG"
    # setsid: the server gets its own process group (stop signals master and workers together).
    setsid nohup "$VENV/bin/gunicorn" \
        --bind "127.0.0.1:$PORT" --workers "$WORKERS" --worker-class gthread --threads 4 \
        --timeout 120 --graceful-timeout 10 \
        --access-logfile - --error-logfile - \
        "superset.app:create_app()" >>"$LOG" 2>&1 </dev/null &
    local pid=$!
    printf '%s\n' "$pid" >"$PIDFILE"
    local code=000
    for _ in $(seq 1 120); do
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        code="$(http_status "http://127.0.0.1:$PORT/health")"
        [[ "$code" == 200 ]] && break
        sleep 1
    done
    if [[ "$code" != 200 ]]; then
        if kill -0 "$pid" 2>/dev/null; then
            say "server did not become healthy in 120 s (last /health: $code); log tail:" >&2
        else
            say "server exited during start; log tail:" >&2
        fi
        tail -n 40 "$LOG" >&2
        cmd_stop >&2 || true
        exit 1
    fi
    say "server up, pid $pid ($(since "$t0") s), log $LOG"
}

# The BI views the dashboard's datasets read (sql/bi_views.sql, sql/bi_views_pg.sql): the
# datasets dashboard/bundle.py declares (standard library only, so any python3 reads them).
BI_VIEWS="$(python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import bundle; print(" ".join(bundle.DATASETS))' \
    "$REPO/dashboard")"

# A URL with its password hidden, for messages.
redact() { sed -E 's#(://[^:/@]*):[^@]*@#\1:***@#' <<<"$1"; }

# `up DB`: the dashboard bundle (dashboard/bundle.py) for DB's connection, imported, then started.
# A DuckDB file is read through its snapshot copy (`sqlscore snapshot`, which also makes every later
# job run republish it): Superset never opens the file jobs write, so neither blocks the other.
# A PostgreSQL database is read as a role that may read the BI views and nothing else.
cmd_up() {
    local db="${1:-sqlscore-demo.duckdb}" uri
    ( umask 077; mkdir -p "$STATE" )
    chmod 700 "$STATE"
    ensure_venv
    case "$db" in
        postgres://*|postgresql://*)
            rm -f "$STATE/duckdb_snapshot"
            uri="$(SQLSCORE_DASHBOARD_PG_URL="$db" "$PY" "$REPO/dashboard/pg_viewer.py" "$STATE" $BI_VIEWS)" \
                || die "$(redact "$db"): see above (the demo's BI views come from \`sqlscore demo --db URL\` or make demo-pg)"
            say "reading $(redact "$db") as $(redact "${uri#postgresql+psycopg2://}")"
            ;;
        *)
            [[ -f "$db" ]] || die "$db: no such DuckDB file: run \`make demo\` first (or: make dashboard DB=postgres://...)"
            local cli="${SQLSCORE_CLI:-$REPO/target/release/sqlscore}" snap
            [[ -x "$cli" ]] || die "$cli not built: run \`make cli\`"
            snap="$("$cli" snapshot --db "$db" --quiet)" || die "could not publish a snapshot of $db (is a job holding it? retry when it ends)"
            "$PY" - "$snap" "$BI_VIEWS" <<'EOF' || die "$db lacks the demo's BI views (a demo file from before the dashboard?): run \`make demo\` again"
import sys
import duckdb
want = set(sys.argv[2].split())
con = duckdb.connect(sys.argv[1], read_only=True)
missing = want - {r[0] for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()}
con.close()
if missing:
    print("dashboard: missing views:", ", ".join(sorted(missing)), file=sys.stderr)
    sys.exit(1)
EOF
            ( umask 077; printf '%s\n' "$snap" >"$STATE/duckdb_snapshot" )
            say "reading $db through its snapshot $snap (every job run of $db republishes it)"
            uri="duckdb:///:memory:"
            ;;
    esac
    ( umask 077; "$PY" "$REPO/dashboard/bundle.py" --uri "$uri" --out "$STATE/bundle.zip" >/dev/null )
    SQLSCORE_DASHBOARD_BUNDLE="$STATE/bundle.zip" cmd_start
}

cmd_start() {
    local t0; t0="$(now)"
    if server_pid >/dev/null; then
        say "already running: restarting"
        cmd_stop
    fi
    ( umask 077; mkdir -p "$STATE" )
    chmod 700 "$STATE"
    ensure_venv
    ensure_secrets
    ensure_metadata
    ensure_admin_password
    import_bundle
    ensure_public_role
    start_server
    say "admin user: admin, password: cat $STATE/admin_password"
    say "started in $(since "$t0") s: $URL"
}

case "${1:-}" in
    up) cmd_up "${2:-}" ;;
    # The dashboard tests (make test-dashboard) run in this venv: Superset's own drivers read the
    # data directly, and playwright drives the system chromium.
    pytest) shift; ensure_venv; exec "$PY" -m pytest "$@" ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    url) printf '%s\n' "$URL" ;;
    *) echo "usage: $0 up [DB]|start|stop|status|url|pytest ARGS" >&2; exit 2 ;;
esac
