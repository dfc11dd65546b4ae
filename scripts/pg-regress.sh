#!/usr/bin/env bash
# Golden SQL tests (pg_regress) against the running throwaway cluster (scripts/pg-cluster.sh).
# The tests read models from $SQLSCORE_PGROOT/models, copied here so the server can read them.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${SQLSCORE_PGROOT:-/tmp/sqlscore-pg}
PGPORT=${SQLSCORE_PGPORT:-5499}
REGRESS=$(/usr/lib/postgresql/15/bin/pg_config --pkglibdir)/pgxs/src/test/regress/pg_regress
install -d -o postgres -g postgres "$ROOT/models"
install -o postgres -g postgres -m 0644 "$HERE"/models/*.onnx "$HERE"/models/demo/*.onnx \
    "$HERE"/models/unsupported/*.onnx "$HERE"/models/native/catboost_clf_3class.onnx \
    "$HERE"/models/native/skl_logreg_binary_zipmap.onnx "$ROOT/models/"
export SQLSCORE_PGROOT="$ROOT"
# Files a test includes with \i (pg_regress feeds each test on standard input).
export SQLSCORE_REGRESS_SQL="$HERE/pg_extension/tests/pg_regress/sql"
OUT=${SQLSCORE_REGRESS_OUT:-$HERE/target/pg_regress}
mkdir -p "$OUT"
tests=$(cd "$HERE/pg_extension/tests/pg_regress/sql" && ls *.sql | sed 's/\.sql$//')
"$REGRESS" --host="$ROOT" --port="$PGPORT" --user=postgres \
    --inputdir="$HERE/pg_extension/tests/pg_regress" --outputdir="$OUT" \
    --dbname=sqlscore_regress $tests
