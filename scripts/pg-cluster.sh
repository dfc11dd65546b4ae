#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster for tests and the Postgres demo, owned by the `postgres` user
# (the server refuses to run as root), on its own port and data directory.
#   scripts/pg-cluster.sh start|stop|url
# ONNX Runtime is copied next to the data directory so the server can read it whatever the
# permissions of this checkout, and named in the cluster's config (sqlscore.onnxruntime_library).
set -euo pipefail
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}
PGPORT=${SQLSCORE_PGPORT:-5499}
ROOT=${SQLSCORE_PGROOT:-/tmp/sqlscore-pg}
DATA=$ROOT/data
HERE=$(cd "$(dirname "$0")/.." && pwd)
as_pg() { if [ "$(id -un)" = postgres ]; then "$@"; else sudo -u postgres "$@"; fi; }

case "${1:-}" in
start)
    lib=$(ls "$HERE"/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.* | sort | tail -1)
    if [ -f "$DATA/PG_VERSION" ] && as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        echo "cluster already running on port $PGPORT"; exit 0
    fi
    rm -rf "$ROOT"
    install -d -o postgres -g postgres "$ROOT"
    install -o postgres -g postgres -m 0644 "$lib" "$ROOT/libonnxruntime.so"
    as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 >/dev/null
    cat <<CONF | as_pg tee -a "$DATA/postgresql.conf" >/dev/null
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$ROOT'
shared_preload_libraries = 'pg_cron,sqlscore'
sqlscore.database = 'postgres'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16
sqlscore.onnxruntime_library = '$ROOT/libonnxruntime.so'
CONF
    # RUST_BACKTRACE=1: the tests check that even then no Rust backtrace reaches a client.
    as_pg env RUST_BACKTRACE=1 "$PGBIN/pg_ctl" -D "$DATA" -l "$ROOT/server.log" -w start >/dev/null
    echo "cluster running: postgres://postgres@127.0.0.1:$PGPORT/postgres"
    ;;
stop)
    if [ -f "$DATA/PG_VERSION" ]; then as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null || true; fi
    rm -rf "$ROOT"
    ;;
url)
    echo "postgres://postgres@127.0.0.1:$PGPORT/postgres"
    ;;
*)
    echo "usage: $0 start|stop|url" >&2; exit 2
    ;;
esac
