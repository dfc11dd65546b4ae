"""Child process of the DuckDB fuzzer (run by fuzz_duckdb.py, never imported by pytest).

    python _duckdb_child.py EXTENSION PLAN.json CASE:STMT

Opens an in-memory DuckDB, LOADs the extension, runs the plan's setup statements, then runs the
plan's cases from statement STMT of case CASE on. Before each statement it prints a JSON line
{"event": "start", "case": i, "stmt": j} and after it {"event": "done", ..., "outcome": "ok" |
"error", ...}, flushed, so that when the process dies (SIGABRT, SIGSEGV) or hangs, the parent
knows which statement did it. It exits 3 after a DuckDB INTERNAL/FATAL error (the database is
invalidated then) and 4 after an `isolated` case, so the parent restarts it at the next case.
"""
import base64
import json
import sys

import duckdb

MAX_ROWS = 50        # rows of a result reported back
MAX_CELL = 300       # characters of one reported cell


def emit(**obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def decode(p):
    if isinstance(p, dict) and "b64" in p:
        return base64.b64decode(p["b64"])
    return p


def cell(v):
    if v is None or isinstance(v, (bool, int, float)):
        if isinstance(v, float) and v != v:
            return "NaN"
        if isinstance(v, float) and v in (float("inf"), float("-inf")):
            return str(v)
        return v
    s = repr(v) if isinstance(v, (bytes, bytearray)) else str(v)
    return s[:MAX_CELL]


def run(con, stmt):
    params = [decode(p) for p in stmt.get("params", [])]
    cur = con.execute(stmt["sql"], params) if params else con.execute(stmt["sql"])
    try:
        rows = cur.fetchall()
    except duckdb.InvalidInputException as e:
        if "no open result set" in str(e).lower():
            return [], 0, False
        raise
    values = any(v is not None for r in rows for v in r)
    return [[cell(v) for v in r] for r in rows[:MAX_ROWS]], len(rows), values


def main():
    extension, plan_path = sys.argv[1], sys.argv[2]
    start, first_stmt = (int(x) for x in sys.argv[3].split(":"))
    plan = json.loads(open(plan_path).read())
    con = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{extension}'")
    for sql in plan["setup"]:
        try:
            con.execute(sql).fetchall()
        except Exception as e:  # noqa: BLE001
            emit(event="setup_error", sql=sql, message=str(e))
            sys.exit(2)
    emit(event="ready", start=start)
    for i in range(start, len(plan["cases"])):
        case = plan["cases"][i]
        for j, stmt in enumerate(case["stmts"]):
            if i == start and j < first_stmt:
                continue
            emit(event="start", case=i, stmt=j)
            try:
                rows, n, values = run(con, stmt)
                emit(event="done", case=i, stmt=j, outcome="ok", rows=rows, nrows=n, values=values)
            except Exception as e:  # noqa: BLE001
                fatal = isinstance(e, (duckdb.InternalException, duckdb.FatalException))
                emit(event="done", case=i, stmt=j, outcome="error", error_type=type(e).__name__, message=str(e))
                if fatal:
                    sys.exit(3)
        for sql in plan["cleanup"]:
            try:
                con.execute(sql)
            except Exception:  # noqa: BLE001  (no transaction open, setting already reset, ...)
                pass
        if case.get("isolated"):
            emit(event="isolated_done", case=i)
            sys.exit(4)
    emit(event="finished")


if __name__ == "__main__":
    main()
