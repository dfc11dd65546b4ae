"""Golden SQL files (tests/duckdb/golden/*.test) in DuckDB's sqllogictest dialect, run against the
built extension in the stock PyPI duckdb (1.5.6) and, when present, DuckDB 2.0.1.

Records (separated by blank lines; `#` lines between records are comments):

    statement ok            the SQL must succeed
    statement error         the SQL must fail; after `----`, the expected message: a substring
    ----                    of the actual one (or `<REGEX>:pattern`, matched against all of it)
    <message>
    query <types> [rowsort] the SQL's rows, one per line, values separated by tabs: NULL,
    ----                    true/false, lists as [a, b], '' as (empty); one type letter per
    <rows>                  column (I integer, R float/decimal: compared to 1e-6, T other;
                            checked against the result's types)
    restart                 a fresh in-memory database (in a fresh process) from here on

`${MODELS}` in a file stands for the models directory (and actual output is written back with it).

Every file runs once per evaluator (`SQLSCORE_ENGINE=auto`, which is native for every committed
model, and `onnxruntime`). The two agree within 1e-5, not to the last digit, so numbers inside
text values (JSON, lists) compare to 1e-5 (relative beyond 1), like R columns.

Every stretch of records between `restart`s runs in its own child process, on a fresh in-memory
database with the extension loaded, so a crash (abort) fails that file's test and names the
record, instead of killing pytest.

SQLSCORE_GOLDEN_REWRITE=1 rewrites the records whose expected output differs from the actual one
(like pg_regress's expected files; records that pass are left as written). Review with git diff.
"""
import json
import os
import pathlib
import re
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GOLDEN = HERE / "golden"
MODELS = ROOT / "models"
DUCKDB_2 = ROOT / ".venv" / "duckdb-2.0.1"
PLACEHOLDER = "${MODELS}"
REWRITE = os.environ.get("SQLSCORE_GOLDEN_REWRITE") == "1"
TIMEOUT_S = 300


# ---------------------------------------------------------------------------------------------
# Parsing


class Record:
    def __init__(self, kind, header, sql, expected, start, end):
        self.kind = kind          # 'ok', 'error', 'query', 'restart'
        self.header = header      # the first line as written
        self.sql = sql            # with ${MODELS} unexpanded
        self.expected = expected  # list of lines after ----, or None
        self.start = start        # 0-based line index of the header
        self.end = end            # 0-based index one past the record's last line

    @property
    def types(self):
        return self.header.split()[1] if self.kind == "query" else ""

    @property
    def sort(self):
        parts = self.header.split()
        return parts[2] if self.kind == "query" and len(parts) > 2 else "nosort"

    def to_json(self):
        return {"kind": self.kind, "sql": self.sql, "line": self.start + 1, "sort": self.sort}


def parse(text):
    lines = text.split("\n")
    records = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            i += 1
            continue
        start = i
        words = line.split()
        if words == ["restart"]:
            records.append(Record("restart", line, "", None, start, i + 1))
            i += 1
            continue
        if words[:2] == ["statement", "ok"]:
            kind = "ok"
        elif words[:2] == ["statement", "error"]:
            kind = "error"
        elif words[0] == "query" and len(words) >= 2:
            kind = "query"
        else:
            raise ValueError(f"line {i + 1}: unknown record header {line!r}")
        i += 1
        sql = []
        while i < len(lines) and lines[i].strip() and lines[i] != "----":
            sql.append(lines[i])
            i += 1
        expected = None
        if i < len(lines) and lines[i] == "----":
            i += 1
            expected = []
            while i < len(lines) and lines[i].strip():
                expected.append(lines[i])
                i += 1
        if not sql:
            raise ValueError(f"line {start + 1}: record without SQL")
        records.append(Record(kind, line, "\n".join(sql), expected, start, i))
    return lines, records


def segments(records):
    """The records between `restart`s: each runs in its own process."""
    out, cur = [], []
    for r in records:
        if r.kind == "restart":
            if cur:
                out.append(cur)
            cur = []
        else:
            cur.append(r)
    if cur:
        out.append(cur)
    return out


# ---------------------------------------------------------------------------------------------
# The child: runs one segment's records and prints one JSON line per record as it completes.


def render(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(render(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"'{k}': {render(x)}" for k, x in v.items()) + "}"
    if isinstance(v, float):
        return repr(v)
    s = str(v)
    return "(empty)" if s == "" else s


def type_letter(t):
    t = str(t).upper()
    if t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
             "UBIGINT", "UHUGEINT"):
        return "I"
    if t in ("FLOAT", "DOUBLE") or t.startswith("DECIMAL"):
        return "R"
    return "T"


def normalize(s):
    return s.replace(str(MODELS), PLACEHOLDER)


def child_main(spec_path):
    spec = json.loads(pathlib.Path(spec_path).read_text())
    import duckdb
    con = duckdb.connect(":memory:", config={"allow_unsigned_extensions": "true"})
    con.execute(f"LOAD '{spec['extension']}'")
    print(json.dumps({"duckdb": duckdb.__version__}), flush=True)
    for rec in spec["records"]:
        sql = rec["sql"].replace(PLACEHOLDER, str(MODELS))
        out = {"line": rec["line"]}
        try:
            cur = con.execute(sql)
            rows = cur.fetchall() if cur.description else []
            out["types"] = "".join(type_letter(d[1]) for d in cur.description) if cur.description else ""
            out["rows"] = [[normalize(render(v)) for v in row] for row in rows]
        except Exception as e:  # noqa: BLE001 - every DuckDB error is a result here
            out["error"] = normalize(str(e))
        print(json.dumps(out), flush=True)


# ---------------------------------------------------------------------------------------------
# The parent: runs the segments, compares, optionally rewrites.


def run_segment(recs, pythonpath, tmp_path, n, engine="auto"):
    sys.path.insert(0, str(HERE))
    from conftest import EXTENSION
    spec = tmp_path / f"segment{n}.json"
    spec.write_text(json.dumps({"extension": str(EXTENSION), "records": [r.to_json() for r in recs]}))
    env = dict(os.environ)
    env["SQLSCORE_ENGINE"] = engine
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    proc = subprocess.run([sys.executable, __file__, "--child", str(spec)], capture_output=True, text=True,
                          env=env, timeout=TIMEOUT_S, cwd=ROOT)
    results = {}
    version = None
    for line in proc.stdout.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if "duckdb" in obj:
            version = obj["duckdb"]
        elif "line" in obj:
            results[obj["line"]] = obj
    crash = None
    if proc.returncode != 0:
        done = [r for r in recs if r.start + 1 in results]
        crashed = recs[len(done)] if len(done) < len(recs) else None
        where = f"line {crashed.start + 1}: {crashed.sql!r}" if crashed else "after the last record"
        crash = (f"child process died (exit status {proc.returncode}) at {where}\n"
                 f"stderr: {proc.stderr.strip()[-2000:]}")
    return version, results, crash


def first_paragraph(msg):
    return msg.split("\n\n")[0].rstrip()


def error_matches(expected_lines, actual):
    if expected_lines is None:
        return True
    want = "\n".join(expected_lines)
    if want.startswith("<REGEX>:"):
        return re.fullmatch(want[len("<REGEX>:"):], actual, re.DOTALL) is not None
    if want.startswith("<!REGEX>:"):
        return re.fullmatch(want[len("<!REGEX>:"):], actual, re.DOTALL) is None
    return want in actual


NUMBER = re.compile(r"-?\d+\.\d+(?:[eE][-+]?\d+)?")


def numbers_close(want, got):
    """Text equal once its decimal numbers are compared to 1e-5 (relative beyond 1)."""
    if NUMBER.sub("#", want) != NUMBER.sub("#", got):
        return False
    return all(abs(float(a) - float(b)) <= 1e-5 * max(1.0, abs(float(a)))
               for a, b in zip(NUMBER.findall(want), NUMBER.findall(got)))


def values_equal(want, got, letter):
    if want == got:
        return True
    if letter != "R":
        return numbers_close(want, got)
    if letter == "R":
        try:
            a, b = float(want), float(got)
        except ValueError:
            return False
        return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))
    return False


def rows_match(rec, actual_rows):
    want = [line.split("\t") for line in (rec.expected or [])]
    got = [list(r) for r in actual_rows]
    if rec.sort == "rowsort":
        want, got = sorted(want), sorted(got)
    if len(want) != len(got):
        return False
    letters = rec.types
    for w, g in zip(want, got):
        if len(w) != len(g):
            return False
        for k, (a, b) in enumerate(zip(w, g)):
            if not values_equal(a, b, letters[k] if k < len(letters) else "T"):
                return False
    return True


def check(rec, res):
    """None when the record passed, else a description of the difference."""
    if res is None:
        return "not run"
    err = res.get("error")
    if rec.kind == "ok":
        return None if err is None else f"expected success, got error:\n{err}"
    if rec.kind == "error":
        if err is None:
            return f"expected an error, the statement succeeded (rows: {res['rows']})"
        if not error_matches(rec.expected, err):
            return "error message differs:\n  expected: " + "\n".join(rec.expected) + f"\n  actual:   {err}"
        return None
    if err is not None:
        return f"expected rows, got error:\n{err}"
    if res["types"] != rec.types:
        return f"expected column types {rec.types}, got {res['types']}"
    if not rows_match(rec, res["rows"]):
        got = "\n".join("\t".join(r) for r in res["rows"])
        return "rows differ:\n--- expected\n" + "\n".join(rec.expected or []) + "\n--- actual\n" + got
    return None


def rewritten(rec, res):
    """The record's new text from its actual result."""
    sql = rec.sql.split("\n")
    err = res.get("error")
    if err is not None:
        return ["statement error", *sql, "----", *first_paragraph(err).split("\n")]
    if rec.kind == "query":
        rows = [r for r in res["rows"]]
        if rec.sort == "rowsort":
            rows = sorted(rows)
        header = " ".join(["query", res["types"]] + rec.header.split()[2:])
        return [header, *sql, "----", *("\t".join(r) for r in rows)]
    return ["statement ok", *sql]


def golden_files():
    return sorted(GOLDEN.glob("*.test"))


def run_file(path, pythonpath, tmp_path, rewrite, engine="auto"):
    text = path.read_text()
    lines, records = parse(text)
    failures, replacements = [], {}
    version = None
    for n, recs in enumerate(segments(records)):
        version, results, crash = run_segment(recs, pythonpath, tmp_path, n, engine)
        for rec in recs:
            res = results.get(rec.start + 1)
            if res is None:
                continue
            diff = check(rec, res)
            if diff:
                failures.append(f"{path.name}:{rec.start + 1}: {rec.sql}\n{diff}")
                if rewrite:
                    replacements[rec.start] = (rec.end, rewritten(rec, res))
        if crash:
            failures.append(f"{path.name}: {crash}")
    if rewrite and replacements:
        out, i = [], 0
        while i < len(lines):
            if i in replacements:
                end, new = replacements[i]
                out.extend(new)
                i = end
            else:
                out.append(lines[i])
                i += 1
        path.write_text("\n".join(out))
    return version, failures


# ---------------------------------------------------------------------------------------------
# pytest


def _params():
    import pytest
    out = []
    for f in golden_files():
        for engine in ("auto", "onnxruntime"):
            out.append(pytest.param(f, None, engine, id=f"{f.stem}-duckdb1.5-{engine}"))
        out.append(pytest.param(f, DUCKDB_2, "auto", id=f"{f.stem}-duckdb2.0",
                                marks=pytest.mark.skipif(not DUCKDB_2.is_dir(), reason="no .venv/duckdb-2.0.1")))
    return out


if __name__ != "__main__":
    import pytest

    @pytest.mark.parametrize("path,pythonpath,engine", _params())
    def test_golden(path, pythonpath, engine, tmp_path):
        # Rewrite from the pinned DuckDB on ONNX Runtime only; the rest check against the same
        # expectations.
        rewrite = REWRITE and pythonpath is None and engine == "onnxruntime"
        version, failures = run_file(path, pythonpath, tmp_path, rewrite, engine)
        if pythonpath is not None and version is not None:
            assert version.startswith("2."), f"expected DuckDB 2.x from {pythonpath}, got {version}"
        if rewrite and failures:
            pytest.skip(f"rewrote {path.name} ({len(failures)} record(s) differed); review with git diff")
        assert not failures, "\n\n".join(failures)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        child_main(sys.argv[2])
    else:
        print("usage: run with pytest (SQLSCORE_GOLDEN_REWRITE=1 to rewrite expected output)", file=sys.stderr)
        sys.exit(2)
