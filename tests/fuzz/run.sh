#!/usr/bin/env bash
# The fuzz tier against both engines: the built DuckDB extension (dist/) and a throwaway
# PostgreSQL 15 cluster (port 5511, /tmp/sqlscore-pg-fuzz; the extension must be installed:
# `make pg-install`), started under an address-space cap so a runaway allocation in a backend
# fails instead of taking the machine's memory, and removed at the end whatever happens.
#   tests/fuzz/run.sh [pytest args]      e.g. FUZZ_SEED=7 FUZZ_CALLS=5000 tests/fuzz/run.sh -x
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export SQLSCORE_PGPORT=${SQLSCORE_PGPORT:-5511}
export SQLSCORE_PGROOT=${SQLSCORE_PGROOT:-/tmp/sqlscore-pg-fuzz}
GB=${FUZZ_BACKEND_MEM_GB:-3}
trap 'scripts/pg-cluster.sh stop' EXIT
# Backends inherit the postmaster's limit (sudo -u postgres keeps it).
prlimit --as=$((GB * 1024 * 1024 * 1024)) scripts/pg-cluster.sh start
export SQLSCORE_PG_URL=$(scripts/pg-cluster.sh url)
export FUZZ_REQUIRE_PG=1 FUZZ_PG_LOG=$SQLSCORE_PGROOT/server.log
.venv/bin/python -m pytest -s -q -p no:cacheprovider tests/fuzz "$@"
