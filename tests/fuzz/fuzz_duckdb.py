"""The DuckDB half of the fuzz tier: generates bad calls and bad models and runs them against the
built extension (dist/sqlscore.duckdb_extension) in the stock PyPI duckdb.

Statements run in a CHILD Python process (`_duckdb_child.py`) that reports each statement's
outcome as a JSON line before moving on, so a crash (SIGABRT, SIGSEGV: DuckDB dies with the
extension) is caught, pinned on the statement it was running, and the run goes on in a fresh
child. A statement that does not finish within FUZZ_TIMEOUT seconds (default 20) is a hang. The
child runs in the directory of the generated models, next to the decoy `secret.bin`, so a model
whose external data points at it could read it; its address space is capped (FUZZ_CHILD_MEM_GB,
default 3) so a runaway allocation fails instead of taking the machine's memory.

Covered:
- targeted cases, always run: NULL / out-of-range / wrong-typed settings (`sqlscore_null_policy`,
  `sqlscore_intra_threads`) followed by scoring; `sqlscore_register` / `sqlscore_read_model` with
  NULL, empty, huge, '@'-bearing names and odd paths (/dev/zero, /etc/passwd, a directory);
  every bad model registered and scored through each function over 1, 5 and 2,500 rows and by file
  path (misaligned outputs must be an error, external-data models must be refused); direct calls
  of `sqlscore_*_impl` with NULL, wrong, mismatched registry rows; registry tampering (UPDATE the
  stored bytes/sha256); every odd value type as a feature and as the row; odd model references
  (`m@`, `m@-1`, `m@99999999999`, '/dev/zero', 'x.onnx', ...); prepared parameters; transactions;
  `enable_external_access = false`.
- random cases (FUZZ_CALLS of them, seeded by FUZZ_SEED): a function, a model reference, a
  feature list and a FROM clause drawn from the same pools, sometimes after an odd SET.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import random
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import time

import bad_models
from fuzzlib import CRASH, ERROR, HANG, INTERNAL, MAX_CRASHES_PER_CASE, MAX_HANGS, OK, Case, Outcome, Run, Stmt, is_internal_message, judge

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REPO_MODELS = ROOT / "models"
EXTENSION = pathlib.Path(os.environ.get("SQLSCORE_EXTENSION", ROOT / "dist" / "sqlscore.duckdb_extension"))
PYTHON = os.environ.get("FUZZ_PYTHON", str(ROOT / ".venv" / "bin" / "python"))
TIMEOUT = float(os.environ.get("FUZZ_TIMEOUT", "20"))
CHILD_MEM_GB = float(os.environ.get("FUZZ_CHILD_MEM_GB", "3"))
TABLE_ROWS = 2500  # more than one DuckDB chunk (2,048 rows)

FUNCTIONS = bad_models.SCORING_FUNCTIONS
IMPLS = ("sqlscore_score_impl", "sqlscore_predict_impl", "sqlscore_predict_proba_impl", "sqlscore_score_all_impl")


def good_registered(models: dict[str, str]) -> dict[str, tuple[str, int]]:
    """The models registered in setup: name -> (model file, positional features it takes)."""
    return {
        "lin": (models["good_linear"], 3),
        "vec": (models["good_vector"], 3),
        "two": (models["good_two_inputs"], 3),
        "lab": (models["good_string_label"], 3),
        "lr": (str(REPO_MODELS / "logistic_binary.onnx"), 8),
        "ct": (str(REPO_MODELS / "column_transformer.onnx"), 3),
        "im": (str(REPO_MODELS / "int64_model.onnx"), 3),
        "rf": (str(REPO_MODELS / "rf_3class.onnx"), 4),
        "f64": (str(REPO_MODELS / "float64_model.onnx"), 3),
    }


def q(s: str) -> str:
    """An SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


# --------------------------------------------------------------------------- value pools (SQL)

NUMBERS = [
    "1", "0", "-1", "1.5", "1e308", "-1e308", "'nan'::DOUBLE", "'inf'::DOUBLE", "'-inf'::FLOAT", "1::TINYINT",
    "255::UTINYINT", "18446744073709551615::UBIGINT", "(-9223372036854775808)::BIGINT", "2::SMALLINT",
    "3::INTEGER", "4::FLOAT", "1.25::DECIMAL(4,2)", "1.5::DECIMAL(38,10)", "1234567890123456789.5::DECIMAL(38,10)",
    "170141183460469231731687303715884105727::HUGEINT", "1::UHUGEINT", "true", "false", "1e-45::FLOAT",
]
NULLS = ["NULL", "NULL::DOUBLE", "NULL::VARCHAR", "NULL::DOUBLE[]", "NULL::STRUCT(X DOUBLE[])", "NULL::BLOB",
         "NULL::DATE", "NULL::INTEGER[3]"]
ODD_VALUES = [
    "DATE '2024-01-01'", "TIMESTAMP '2024-01-01 00:00:00'", "TIMESTAMPTZ '2024-01-01 00:00:00+00'",
    "TIME '12:00:00'", "INTERVAL 1 DAY", "'\\x00\\xff'::BLOB", "''", "'abc'", "repeat('x', 1000000)", "'1.5'",
    "'00000000-0000-0000-0000-000000000001'::UUID", "MAP {'a': 1.0}", "MAP {}", "'101'::BIT", "union_value(a := 1)",
    "{'a': 1}", "[]", "[1, NULL, 3]", "[1, 2, 3]", "[1, 2, 3]::DOUBLE[3]", "[[1, 2], [3]]", "['a', 'b', 'c']",
    "[NULL, NULL, NULL]", "range(0, 1000)::DOUBLE[]", "[1, 2, 3]::FLOAT[]", "[1, 2, 3]::HUGEINT[]",
    "[1, 2, 3]::DECIMAL(38,10)[]", "[true, false, true]", "list_value(1.0, NULL, 2.0)", "'\u2603'", "chr(0)",
    "{'X': [1.0, 2.0, 3.0]}", "{'X': NULL}", "{'x': 1}", "{'city': 'paris', 'age': 30.0}",
    "{'city': NULL, 'age': NULL, 'income': NULL}", "{'city': 1, 'age': 'x', 'income': []}",
    "{'a': [1.0], 'b': [1.0, 2.0]}", "{'a': 1.0, 'b': [1.0, 2.0]}", "{'X': {'Y': 1}}", "{'X': [[1.0]]}",
    "[1, 2, 3, 4, 5, 6, 7, 8]::DOUBLE[8]", "[{'a': 1}]", "'1'::JSON", "'nan'", "1::ENUM_NOT_A_TYPE",
]
# Column expressions over table t (see SETUP_TABLE).
COLUMNS = [
    "x1", "x2", "x3", "id", "s", "d", "b", "l", "st", "h", "dec", "u", "mp", "ts", "arr", "n", "xi",
    "CASE WHEN id % 3 = 0 THEN NULL ELSE x1 END", "[x1, x2, x3]", "l[1:id % 5]", "x1::FLOAT", "id::HUGEINT",
    "{'X': [x1, x2, x3]}", "CASE WHEN id % 2 = 0 THEN [x1, x2, x3] ELSE NULL END",
]
SETUP_TABLE = f"""
CREATE TABLE t AS SELECT
    range::INTEGER AS id,
    range * 0.5 AS x1,
    CASE WHEN range % 7 = 3 THEN NULL ELSE range * 0.25 END AS x2,
    1.0 / (range + 1) AS x3,
    CASE WHEN range % 5 = 0 THEN NULL ELSE 'city' || (range % 3) END AS s,
    DATE '2024-01-01' + (range % 30)::INTEGER AS d,
    ('\\x00\\x01')::BLOB AS b,
    CASE WHEN range % 11 = 0 THEN NULL WHEN range % 13 = 0 THEN [1.0, NULL, 3.0]
         ELSE list_transform(range(range % 6), i -> i * 1.0) END AS l,
    {{'X': [range * 1.0, 2.0, 3.0]}} AS st,
    range::HUGEINT AS h,
    (range / 3)::DECIMAL(38,10) AS dec,
    '00000000-0000-0000-0000-000000000001'::UUID AS u,
    MAP {{'a': range * 1.0}} AS mp,
    TIMESTAMP '2024-01-01' + INTERVAL (range) SECOND AS ts,
    [range * 1.0, 1.0, 2.0]::DOUBLE[3] AS arr,
    NULL::DOUBLE AS n,
    range::BIGINT AS xi,
    CASE range % 6 WHEN 0 THEN 'lin' WHEN 1 THEN NULL WHEN 2 THEN 'nope' WHEN 3 THEN 'lin@1'
         WHEN 4 THEN 'vec' ELSE 'lin@99' END AS m
FROM range({TABLE_ROWS})
"""

ODD_MODEL_REFS = [
    "NULL", "NULL::VARCHAR", "''", "' '", "'lin@'", "'lin@-1'", "'lin@0'", "'lin@99999999999'",
    "'lin@99999999999999999999999'", "'lin@1@2'", "'@1'", "'@'", "'lin@1.5'", "'lin@ 1'", "'lin@+1'", "'LIN'", "'nope'",
    "'/etc/passwd'", "'x.onnx'", "'/'", "'.onnx'", "'/proc/self/status'", "'/nonexistent/m.onnx'",
    "repeat('m', 100000)", "repeat('/', 5000)", "chr(0)", "'lin' || chr(0)", "'\u00e9t\u00e9'", "42", "1.5",
    "DATE '2024-01-01'", "[1]", "'lin'::BLOB", "'secret.bin'", "'passwd_link'", "'models'", "'.'",
]

# Devices that never end: reading one runs until the memory cap. Targeted once each, never random.
SLOW_MODEL_REFS = ["'/dev/zero'", "'/dev/urandom'"]


class Generator:
    """Builds the targeted and random cases. Deterministic for a given seed and model directory."""

    def __init__(self, seed: int, models: dict[str, str]):
        self.rng = random.Random(seed)
        self.models = models
        self.registered = good_registered(models)
        self.good_bytes = pathlib.Path(models["good_linear"]).read_bytes()
        self.good_sha = hashlib.sha256(self.good_bytes).hexdigest()

    # ------------------------------------------------------------------ setup
    def setup(self) -> list[str]:
        out = []
        for name, (path, _) in self.registered.items():
            out.append(f"INSERT INTO sqlscore_models FROM sqlscore_register({q(name)}, {q(path)})")
        out.append(f"INSERT INTO sqlscore_models FROM sqlscore_register('lin', {q(self.models['good_linear'])})")  # lin@2
        out.append(SETUP_TABLE)
        return out

    CLEANUP = ["ROLLBACK", "RESET sqlscore_null_policy", "RESET sqlscore_intra_threads"]

    # ------------------------------------------------------------------ targeted
    def targeted(self) -> list[Case]:
        cases: list[Case] = []
        cases += self._settings_cases()
        cases += self._register_cases()
        cases += self._bad_model_cases()
        cases += self._impl_cases()
        cases += self._tamper_cases()
        cases += self._type_cases()
        cases += self._reference_cases()
        cases += self._misc_cases()
        return cases

    def _settings_cases(self) -> list[Case]:
        cases = []
        probe = "SELECT score('lin', 1, 2, 3), predict('lab', 1, 2, 3), score('lin', x1, x2, x3) FROM t LIMIT 3"
        values = {
            "sqlscore_null_policy": ["NULL", "''", "'ERROR'", "'Null'", "1", "'error '", "repeat('e', 100000)"],
            "sqlscore_intra_threads": ["NULL", "0", "-1", "65", "1000000", "'abc'", "1.5", "9223372036854775807"],
        }
        for setting, vals in values.items():
            for v in vals:
                cases.append(Case(f"targeted/setting/{setting}={v[:20]}",
                                  [Stmt(f"SET {setting} = {v}"), Stmt(probe)]))
                cases.append(Case(f"targeted/setting-local/{setting}={v[:20]}",
                                  [Stmt(f"SET SESSION {setting} = {v}"), Stmt("SELECT score('lin', NULL, 2, 3)")]))
        cases.append(Case("targeted/setting/null-policy-error-then-null-row",
                          [Stmt("SET sqlscore_null_policy = 'error'"), Stmt("SELECT score('lin', x1, x2, x3) FROM t")]))
        cases.append(Case("targeted/setting/reset-twice",
                          [Stmt("RESET sqlscore_null_policy"), Stmt("RESET sqlscore_null_policy"),
                           Stmt("SELECT current_setting('sqlscore_null_policy')")]))
        return cases

    def _register_cases(self) -> list[Case]:
        good = q(self.models["good_linear"])
        d = q(str(pathlib.Path(self.models["good_linear"]).parent))
        pairs = [
            ("NULL", "'x'"), ("'n'", "NULL"), ("NULL", "NULL"), ("NULL", good), ("''", good), ("' '", good),
            ("'n@1'", good), ("'@'", good), ("repeat('n', 100000)", good), ("'n'", "''"),
            ("'n'", "'/etc/passwd'"), ("'n'", d), ("'n'", "'/'"), ("'n'", "'/proc/self/mem'"),
            ("'n'", "repeat('a', 5000)"), ("'n'", "'secret.bin'"), ("'n'", "'passwd_link'"), ("1", good),
            ("'n'", "1"), ("'n' || chr(0)", good), ("'\u00e9'", good), ("'n'", "'nonexistent.onnx'"),
        ]
        cases = []
        for name, path in pairs:
            tag = f"{name[:16]},{path[-24:]}"
            cases.append(Case(f"targeted/register/{tag}",
                              [Stmt(f"FROM sqlscore_register({name}, {path})"),
                               Stmt(f"INSERT INTO sqlscore_models FROM sqlscore_register({name}, {path}) RETURNING name, version")]))
            cases.append(Case(f"targeted/read_model/{tag}", [Stmt(f"FROM sqlscore_read_model({path}, {name})")]))
        cases.append(Case("targeted/register/'n','/dev/zero'", [Stmt("FROM sqlscore_register('n', '/dev/zero')")]))
        for desc in ("NULL", "repeat('d', 1000000)", "42", "[1, 2]", "'\u2603'"):
            cases.append(Case(f"targeted/register/description={desc[:16]}",
                              [Stmt(f"FROM sqlscore_register('n', {good}, description := {desc})")]))
        cases.append(Case("targeted/register/transaction-rollback", [
            Stmt("BEGIN"), Stmt(f"INSERT INTO sqlscore_models FROM sqlscore_register('txn', {good})"),
            Stmt("SELECT score('txn', 1, 2, 3)"), Stmt("ROLLBACK"), Stmt("SELECT score('txn', 1, 2, 3)")]))
        cases.append(Case("targeted/register/parameters", [
            Stmt("FROM sqlscore_register(?, ?)", (None, self.models["good_linear"])),
            Stmt("FROM sqlscore_register(?, ?)", ("n", None)),
            Stmt("FROM sqlscore_register(?, ?)", ("n", b"\x00\x01")),
        ]))
        return cases

    def _bad_model_cases(self) -> list[Case]:
        cases = []
        feats = "range::DOUBLE, 2, 3"
        for name, path in self.models.items():
            kind = bad_models.kind(name)
            if kind == bad_models.GOOD:
                continue
            reg = f"bad_{name}"
            refuse = "refused" if kind == bad_models.EXTERNAL else None
            stmts = [Stmt(f"INSERT INTO sqlscore_models FROM sqlscore_register({q(reg)}, {q(path)}) RETURNING name, version",
                          expect=refuse)]
            for ref in (q(reg), q(path)):
                for fn in FUNCTIONS:
                    for n, src in ((1, "range(1)"), (5, "range(5)")):
                        stmts.append(Stmt(f"SELECT {fn}({ref}, {feats}) FROM {src}", expect=bad_models.expectation(name, n, fn)))
                stmts.append(Stmt(f"SELECT score({ref}, [1.0, 2.0, 3.0])", expect=bad_models.expectation(name, 1, "score")))
                stmts.append(Stmt(f"SELECT score({ref}, {{'X': [1.0, 2.0, 3.0]}})", expect=bad_models.expectation(name, 1, "score")))
            for fn in FUNCTIONS:
                big = f"SELECT {fn}({q(reg)}, id::DOUBLE, id * 0.5, 1.0) FROM t"
                stmts.append(Stmt(big, expect=bad_models.expectation(name, 2, fn)))
            stmts.append(Stmt(f"SELECT score({q(reg)}, 1)"))
            stmts.append(Stmt(f"SELECT score({q(reg)}, 1, 2, 3, 4, 5, 6, 7, 8)"))
            stmts.append(Stmt(f"SELECT score({q(reg)}, 'a', 'b', 'c')"))
            stmts.append(Stmt(f"SELECT score({q(reg)}, x1, x2, x3) FROM t"))   # NULL rows drop out of the batch
            stmts.append(Stmt(f"SELECT score({q(reg)}, t) FROM t LIMIT 5"))
            cases.append(Case(f"targeted/bad-model/{name}", stmts))
        return cases


    def _impl_cases(self) -> list[Case]:
        bad = pathlib.Path(self.models["corrupt_random_2"]).read_bytes()
        ext = pathlib.Path(self.models["ext_if_subgraph_secret"]).read_bytes()
        mis = pathlib.Path(self.models["misaligned_double_rows"]).read_bytes()
        sha = q(self.good_sha)
        rows = [
            ("NULL", (), None),
            ("{'sha256': NULL, 'onnx': NULL}", (), None),
            ("{'sha256': 'abc', 'onnx': '\\x00'::BLOB}", (), None),
            (f"{{'sha256': {sha}, 'onnx': NULL}}", (), None),
            ("{'sha256': NULL, 'onnx': ?}", (self.good_bytes,), None),
            (f"{{'sha256': {sha}, 'onnx': ?}}", (self.good_bytes,), None),
            ("{'sha256': 'deadbeef', 'onnx': ?}", (self.good_bytes,), None),
            (f"{{'sha256': {sha}, 'onnx': ?}}", (bad,), None),
            ("{'sha256': ?, 'onnx': ?}", (hashlib.sha256(bad).hexdigest(), bad), None),
            ("{'sha256': ?, 'onnx': ?}", (hashlib.sha256(ext).hexdigest(), ext), "refused"),
            ("{'sha256': ?, 'onnx': ?}", (hashlib.sha256(mis).hexdigest(), mis), "no_values"),
            ("{'sha256': ?, 'onnx': ?}", (hashlib.sha256(b"").hexdigest(), b""), None),
            ("{'sha256': 'x'}", (), None),
            ("{'sha256': 1, 'onnx': 2}", (), None),
            ("{'onnx': '\\x00'::BLOB, 'sha256': 'x', 'extra': 1}", (), None),
            ("'not a struct'", (), None),
            ("42", (), None),
        ]
        cases = []
        for i, (row, params, expect) in enumerate(rows):
            stmts = []
            for impl in IMPLS:
                for model in ("'lin'", "NULL", "'m'"):
                    for known in ("NULL", "''", "repeat('k, ', 10000)"):
                        stmts.append(Stmt(f"SELECT {impl}({model}, {row}, {known}, range::DOUBLE, 2, 3) FROM range(5)",
                                          params, expect))
                stmts.append(Stmt(f"SELECT {impl}('lin', {row}, NULL)", params))
                stmts.append(Stmt(f"SELECT {impl}('lin', {row}, NULL, NULL, NULL, NULL)", params))
            cases.append(Case(f"targeted/impl/{i}:{row[:40]}", stmts))
        cases.append(Case("targeted/impl/arity", [
            Stmt("SELECT sqlscore_score_impl()"), Stmt("SELECT sqlscore_score_impl('lin')"),
            Stmt("SELECT sqlscore_score_impl('lin', NULL)"), Stmt("SELECT sqlscore_score_impl(NULL, NULL, NULL)"),
            Stmt("SELECT sqlscore_score_impl(NULL, NULL, NULL, NULL)"),
        ]))
        return cases

    def _tamper_cases(self) -> list[Case]:
        """The registry is an ordinary table: rows edited after registration skipped its checks."""
        cases = []
        good = q(self.models["good_linear"])
        for name in ("ext_if_subgraph_secret", "ext_initializer_secret", "misaligned_double_rows",
                     "misaligned_one_row", "corrupt_truncated_59", "odd_float16_output", "corrupt_empty"):
            blob = pathlib.Path(self.models[name]).read_bytes()
            tname = f"tamper_{name}"
            cases.append(Case(f"targeted/tamper/{name}", [
                Stmt(f"INSERT INTO sqlscore_models FROM sqlscore_register({q(tname)}, {good})"),
                Stmt("UPDATE sqlscore_models SET onnx = ?, sha256 = ? WHERE name = ?",
                     (blob, hashlib.sha256(blob).hexdigest(), tname)),
                *[Stmt(f"SELECT {fn}({q(tname)}, range::DOUBLE, 2, 3) FROM range(5)", expect=bad_models.expectation(name, 5, fn))
                  for fn in FUNCTIONS],
            ]))
        cases.append(Case("targeted/tamper/sha-mismatch-and-odd-columns", [
            Stmt(f"INSERT INTO sqlscore_models FROM sqlscore_register('tamper2', {good})"),
            Stmt("UPDATE sqlscore_models SET sha256 = 'x' WHERE name = 'tamper2'"),
            Stmt("SELECT score('tamper2', 1, 2, 3)"),
            Stmt("UPDATE sqlscore_models SET sha256 = '' , onnx = ''::BLOB WHERE name = 'tamper2'"),
            Stmt("SELECT score('tamper2', 1, 2, 3)"),
            Stmt("UPDATE sqlscore_models SET version = -1 WHERE name = 'tamper2'"),
            Stmt("SELECT score('tamper2@-1', 1, 2, 3)"),
            Stmt("INSERT INTO sqlscore_models (name, version, sha256, inputs, outputs, size, onnx) "
                 "VALUES ('forged', 1, 'x', '[]', '[]', 0, ''::BLOB)"),
            Stmt("SELECT score('forged', 1, 2, 3)"),
            Stmt("INSERT INTO sqlscore_models (name, version, sha256, inputs, outputs, size, onnx) "
                 "VALUES ('lin', 3, 'x', 'null', '{}', -1, '\\x00'::BLOB)"),
            Stmt("SELECT score('lin', 1, 2, 3)"),
            Stmt("SELECT score('lin', x1, x2, x3) FROM t"),
            Stmt("DELETE FROM sqlscore_models WHERE name IN ('forged', 'tamper2') OR (name = 'lin' AND version = 3)"),
        ]))
        return cases

    def _type_cases(self) -> list[Case]:
        cases = []
        for i, v in enumerate(NUMBERS + NULLS + ODD_VALUES):
            stmts = [Stmt(f"SELECT {fn}('lin', {v}, 2, 3)") for fn in FUNCTIONS]
            stmts += [Stmt(f"SELECT score('lin', {v})"), Stmt(f"SELECT score('ct', {v}, 30.0, 1000.0)"),
                      Stmt(f"SELECT score('im', {v}, 2, 3)"), Stmt(f"SELECT score('two', 1, {v}, {v})"),
                      Stmt(f"SELECT score('lin', {v}, {v}, {v}) FROM range(3)")]
            cases.append(Case(f"targeted/type/{i}:{v[:30]}", stmts))
        cases.append(Case("targeted/type/table-columns", [
            Stmt(f"SELECT {fn}('lin', {c}, x2, x3) FROM t") for fn in ("score", "score_all") for c in COLUMNS
        ] + [Stmt(f"SELECT score('lin', {c}) FROM t") for c in COLUMNS] + [Stmt("SELECT score('lin', t) FROM t"),
                                                                         Stmt("SELECT score('ct', t) FROM t")]))
        cases.append(Case("targeted/type/many-features", [
            Stmt("SELECT score('lin', " + ", ".join(["1"] * 64) + ")"),
            Stmt("SELECT score('lin', " + ", ".join(["1"] * 65) + ")"),
            Stmt("SELECT score('lr', " + ", ".join(["NULL"] * 64) + ")"),
            Stmt("SELECT score('lin', range(0, 1000000)::DOUBLE[])"),
            Stmt("SELECT score('lin', range(0, 100000)::DOUBLE[], x1, x2) FROM t"),
            Stmt("SELECT score('lin', [1.0, 2.0, 3.0]) FROM range(100000)"),
        ]))
        return cases

    def _reference_cases(self) -> list[Case]:
        cases = []
        for i, ref in enumerate(ODD_MODEL_REFS + SLOW_MODEL_REFS):
            stmts = [Stmt(f"SELECT {fn}({ref}, 1, 2, 3)") for fn in FUNCTIONS]
            stmts.append(Stmt(f"SELECT score({ref}, x1, x2, x3) FROM t LIMIT 10"))
            if ref in SLOW_MODEL_REFS:
                stmts = stmts[:1]
            cases.append(Case(f"targeted/ref/{i}:{ref[:30]}", stmts))
        cases.append(Case("targeted/ref/per-row-model-column", [
            Stmt(f"SELECT {fn}(m, x1, x2, x3) FROM t") for fn in FUNCTIONS
        ] + [Stmt("SELECT score(CASE WHEN id % 2 = 0 THEN 'lin' ELSE NULL END, x1, x2, x3) FROM t"),
             Stmt("SELECT score(CASE WHEN id % 2 = 0 THEN 'lin' ELSE 'lr' END, x1, x2, x3) FROM t"),
             Stmt("SELECT score(CASE WHEN id % 2 = 0 THEN 'lin' ELSE " + q(self.models["misaligned_one_row"]) +
                  " END, id::DOUBLE, 2, 3) FROM t", expect="no_values")]))
        return cases

    def _misc_cases(self) -> list[Case]:
        return [
            Case("targeted/params", [
                Stmt("SELECT score(?, 1, 2, 3)", (None,)),
                Stmt("SELECT score('lin', ?, ?, ?)", (None, b"\x00", "abc")),
                Stmt("SELECT score(?, ?, ?, ?)", (b"lin", 1, 2, 3)),
                Stmt("SELECT score('lin', ?)", ([1.0, None, 3.0],)),
                Stmt("SELECT score('lin', ?)", ({"X": [1.0, 2.0, 3.0]},)),
            ]),
            Case("targeted/drop-and-reuse", [
                Stmt("SELECT score('vec', 1, 2, 3)"), Stmt("DELETE FROM sqlscore_models WHERE name = 'vec'"),
                Stmt("SELECT score('vec', 1, 2, 3)"),
                Stmt(f"INSERT INTO sqlscore_models FROM sqlscore_register('vec', {q(self.models['good_vector'])})"),
            ]),
            Case("targeted/aggregates-and-joins", [
                Stmt("SELECT count(*), sum(score('lin', x1, x2, x3)) FROM t"),
                Stmt("SELECT s, avg(score('lin', x1, x2, x3)) FROM t GROUP BY s ORDER BY s"),
                Stmt("SELECT a.id, score('lin', a.x1, b.x2, a.x3) FROM t a JOIN t b USING (id) WHERE a.id < 10"),
                Stmt("SELECT * FROM t WHERE score('lin', x1, x2, x3) > 1 LIMIT 3"),
                Stmt("SELECT score('lin', x1, x2, x3) OVER () FROM t LIMIT 1"),
            ]),
            Case("targeted/external-access-off", [
                Stmt("SET enable_external_access = false"),
                Stmt(f"SELECT score({q(self.models['good_linear'])}, 1, 2, 3)"),
                Stmt("SELECT score('/dev/zero', 1, 2, 3)"),
                Stmt(f"FROM sqlscore_register('x', {q(self.models['good_linear'])})"),
                Stmt("SELECT score('lin', 1, 2, 3)"),
            ], isolated=True),
        ]

    # ------------------------------------------------------------------ random
    def random_cases(self, n: int) -> list[Case]:
        return [self._random_case(i) for i in range(n)]

    def _model_ref(self, with_table: bool) -> tuple[str, int, str | None]:
        """(SQL expression, positional features it wants, generated model name if a file of ours)."""
        r = self.rng.random()
        if r < 0.5:
            name = self.rng.choice(sorted(self.registered))
            ref = self.rng.choice([q(name), q(name + "@1")]) if name != "lin" else self.rng.choice(["'lin'", "'lin@1'", "'lin@2'"])
            return ref, self.registered[name][1], None
        if r < 0.7:
            name = self.rng.choice(sorted(self.models))
            return q(self.models[name]), 3, name
        refs = ODD_MODEL_REFS + (["m", "s", "CASE WHEN id % 2 = 0 THEN 'lin' ELSE 'nope' END"] if with_table else [])
        return self.rng.choice(refs), 3, None

    def _value(self, with_table: bool) -> str:
        pools = [NUMBERS, NUMBERS, NULLS, ODD_VALUES] + ([COLUMNS, COLUMNS] if with_table else [])
        return self.rng.choice(self.rng.choice(pools))

    def _features(self, want: int, with_table: bool) -> list[str]:
        r = self.rng.random()
        if r < 0.15:   # one value: a list, a struct, the row
            return [self.rng.choice(["t", "[x1, x2, x3]", "{'X': [x1, x2, x3]}", "l", "st", "arr"] if with_table
                                    else ["[1.0, 2.0, 3.0]", "{'X': [1.0, 2.0, 3.0]}", "[]", "NULL::DOUBLE[]"])]
        if r < 0.65:
            count = want
        elif r < 0.95:
            count = self.rng.randint(1, 9)
        else:
            count = self.rng.randint(60, 70)
        return [self._value(with_table) if self.rng.random() < 0.3 else self.rng.choice(["1", "2.5", "x1" if with_table else "3"])
                for _ in range(count)]

    # Rows each FROM clause feeds one call with (the table's rows are never all NULL-free: unknown).
    _ROWS = {"": 1, " FROM range(3) r(id)": 3, " FROM t LIMIT 7": None, " FROM t WHERE id % 97 = 0": None, " FROM t": None}

    def _random_expect(self, model: str | None, fn: str, feats: list[str], src: str) -> str | None:
        """The oracle for a random call of one of our model files, where the row count is known."""
        if model is None:
            return None
        if bad_models.kind(model) == bad_models.EXTERNAL:
            return "refused"
        n = self._ROWS.get(src)
        constant = len(feats) == 3 and all(f in ("1", "2.5", "3", "0", "-1", "1.5") for f in feats)
        if n is not None and constant and bad_models.misaligned(model, n, fn):
            return "no_values"
        return None

    def _random_case(self, i: int) -> Case:
        rng = self.rng
        stmts = []
        if rng.random() < 0.12:
            setting = rng.choice(["sqlscore_null_policy", "sqlscore_intra_threads"])
            v = rng.choice(["NULL", "'error'", "'null'", "0", "-1", "2", "64", "1000000", "'x'", "''"])
            stmts.append(Stmt(f"SET {setting} = {v}"))
        form = rng.random()
        src = rng.choice(["", "", " FROM t", " FROM t LIMIT 7", " FROM t WHERE id % 97 = 0", " FROM range(3) r(id)"])
        with_table = src.startswith(" FROM t")
        if form < 0.75:
            fn = rng.choice(FUNCTIONS)
            ref, want, model = self._model_ref(with_table)
            feats = self._features(want, with_table)
            stmts.append(Stmt(f"SELECT {fn}({ref}, {', '.join(feats)}){src}", expect=self._random_expect(model, fn, feats, src)))
        elif form < 0.87:
            impl = rng.choice(IMPLS)
            ref, want, _ = self._model_ref(with_table)
            row = rng.choice(["NULL", "{'sha256': NULL, 'onnx': NULL}", f"{{'sha256': {q(self.good_sha)}, 'onnx': ?}}",
                              "{'sha256': 'x', 'onnx': ?}", "(SELECT {'sha256': sha256, 'onnx': onnx} FROM sqlscore_models LIMIT 1)"])
            params = (self.good_bytes if rng.random() < 0.5 else bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))),) \
                if "?" in row else ()
            known = rng.choice(["NULL", "''", "'lin, lr'"])
            feats = self._features(want, with_table)
            stmts.append(Stmt(f"SELECT {impl}({ref}, {row}, {known}, {', '.join(feats)}){src}", params))
        else:
            name = rng.choice(["'r'", "NULL", "''", "'r@1'", "repeat('r', 1000)", "'r' || chr(0)"])
            model = rng.choice(sorted(self.models))
            path = q(self.models[model]) if rng.random() < 0.8 else rng.choice(ODD_MODEL_REFS)
            expect = "refused" if bad_models.kind(model) == bad_models.EXTERNAL and path == q(self.models[model]) else None
            stmts.append(Stmt(f"INSERT INTO sqlscore_models FROM sqlscore_register({name}, {path}) RETURNING name, version",
                              expect=expect))
            stmts.append(Stmt(f"SELECT score({name}, 1, 2, 3), score_all({name}, x1, x2, x3) FROM t LIMIT 4",
                              expect=expect))
            stmts.append(Stmt("DELETE FROM sqlscore_models WHERE name NOT IN ('lin', 'vec', 'two', 'lab', 'lr', 'ct', 'im', 'rf', 'f64')"))
        return Case(f"random/{i}", stmts)


# --------------------------------------------------------------------------- running

def _encode(p):
    if isinstance(p, (bytes, bytearray)):
        return {"b64": base64.b64encode(bytes(p)).decode()}
    return p


def _limit_memory():
    gb = int(CHILD_MEM_GB * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (gb, gb))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.setsid()


class Runner:
    """Runs a plan's cases in child processes, restarting after crashes, hangs and fatal errors."""

    def __init__(self, workdir: pathlib.Path, setup: list[str], cases: list[Case], extension: pathlib.Path):
        self.workdir, self.cases, self.extension = workdir, cases, extension
        self.plan = workdir / "plan.json"
        self.plan.write_text(json.dumps({
            "setup": setup,
            "cleanup": Generator.CLEANUP,
            "cases": [{"isolated": c.isolated,
                       "stmts": [{"sql": s.sql, "params": [_encode(p) for p in s.params]} for s in c.stmts]}
                      for c in cases],
        }))
        self.outcomes: list[Outcome] = []
        self.restarts = 0
        self.stopped_at: int | None = None

    def _record(self, ci: int, si: int, cls: str, message: str = "", rows=None, seconds: float = 0.0,
                values: bool = False):
        case = self.cases[ci]
        stmt = case.stmts[si]
        if cls == ERROR and is_internal_message(message):
            cls = INTERNAL
        self.outcomes.append(Outcome(case.name, [s.sql for s in case.stmts[: si + 1]], stmt.sql, cls, message, rows,
                                     judge(stmt, cls, values, message), seconds))

    def run(self) -> list[Outcome]:
        pos = (0, 0)
        while pos[0] < len(self.cases):
            if sum(o.cls == HANG for o in self.outcomes) >= MAX_HANGS:
                self.stopped_at = pos[0]
                break
            pos = self._run_child(pos)
        return self.outcomes

    def _after_crash(self, ci: int, si: int) -> tuple[int, int]:
        """Where to go on after statement si of case ci crashed or hung."""
        name = self.cases[ci].name
        crashes = sum(o.case == name and o.cls in (CRASH, HANG) for o in self.outcomes)
        if crashes < MAX_CRASHES_PER_CASE and si + 1 < len(self.cases[ci].stmts):
            return ci, si + 1
        return ci + 1, 0

    def _run_child(self, pos: tuple[int, int]) -> tuple[int, int]:
        """Runs the plan from (case, statement) `pos` in one child; returns where to continue."""
        start = pos[0]
        self.restarts += 1
        stderr_path = self.workdir / "child.stderr"
        env = {**os.environ, "RUST_BACKTRACE": "0"}
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen([PYTHON, str(HERE / "_duckdb_child.py"), str(self.extension), str(self.plan), f"{pos[0]}:{pos[1]}"],
                                    stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                                    cwd=self.workdir / "models", env=env, preexec_fn=_limit_memory)
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        buf = b""
        current = None      # (case, stmt) started and not done
        started, stderr_at = time.monotonic(), 0
        last_done = (start, pos[1] - 1)
        ready = False
        deadline = time.monotonic() + max(TIMEOUT, 60)    # LOAD + setup
        try:
            while True:
                timeout = deadline - time.monotonic()
                if timeout <= 0:
                    if current is None:
                        raise RuntimeError(f"DuckDB fuzz child stuck outside a statement (ready={ready})")
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    self._record(*current, HANG, f"no result after {TIMEOUT:.0f}s (killed)")
                    return self._after_crash(*current)
                if not sel.select(timeout):
                    continue
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    try:
                        ev = json.loads(line)
                    except ValueError:      # something else wrote to stdout
                        continue
                    kind = ev["event"]
                    if kind == "ready":
                        ready = True
                    elif kind == "setup_error":
                        raise RuntimeError(f"DuckDB fuzz setup failed: {ev['sql'][:200]}: {ev['message']}")
                    elif kind == "start":
                        current = (ev["case"], ev["stmt"])
                        started = time.monotonic()
                        deadline = started + TIMEOUT
                        stderr_at = stderr_path.stat().st_size
                    elif kind == "done":
                        current = None
                        last_done = (ev["case"], ev["stmt"])
                        deadline = time.monotonic() + TIMEOUT     # the case's cleanup, the next start
                        self._record(ev["case"], ev["stmt"], OK if ev["outcome"] == "ok" else ERROR,
                                     ev.get("message", ""), ev.get("rows"), time.monotonic() - started,
                                     ev.get("values", False))
                    elif kind == "isolated_done":
                        proc.wait()
                        return ev["case"] + 1, 0
                    elif kind == "finished":
                        proc.wait()
                        return len(self.cases), 0
            rc = proc.wait()
        finally:
            sel.close()
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            proc.stdout.close()
        all_stderr = stderr_path.read_bytes()
        stderr = all_stderr.decode(errors="replace")
        if not ready:
            raise RuntimeError(f"DuckDB fuzz child failed to start (rc={rc}): {stderr[-2000:]}")
        if current is not None:
            how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exited with status {rc}"
            # What the child wrote while running this statement (a panic message, the abort reason).
            tail = " | ".join(all_stderr[stderr_at:].decode(errors="replace").strip().splitlines()[-8:])
            self._record(*current, CRASH, f"process {how} (this child ran cases {start}..{current[0]}): {tail[-800:]}")
            return self._after_crash(*current)
        if rc == 3:       # INTERNAL/FATAL error: the database was invalidated; already recorded
            ci, si = last_done
            return (ci, si + 1) if si + 1 < len(self.cases[ci].stmts) else (ci + 1, 0)
        raise RuntimeError(f"DuckDB fuzz child exited unexpectedly (rc={rc}): {stderr[-2000:]}")


def run(seed: int, calls: int, workdir: pathlib.Path | None = None) -> Run:
    """Generates and runs the targeted cases plus `calls` random ones."""
    t0 = time.monotonic()
    own = workdir is None
    tmp = tempfile.TemporaryDirectory(prefix="sqlscore-fuzz-duckdb-") if own else None
    work = pathlib.Path(tmp.name) if own else workdir
    try:
        models = bad_models.write_models(work, seed)
        # A private copy: the lead's rebuild may replace dist/ while this runs.
        ext = work / "sqlscore.duckdb_extension"
        ext.write_bytes(EXTENSION.read_bytes())
        gen = Generator(seed, models)
        cases = gen.targeted() + gen.random_cases(calls)
        runner = Runner(work, gen.setup(), cases, ext)
        outcomes = runner.run()
        stopped = [] if runner.stopped_at is None else [
            f"stopped after {MAX_HANGS} hangs: cases {runner.stopped_at}..{len(cases) - 1} did not run"]
        return Run("duckdb", outcomes, len(cases), time.monotonic() - t0, stopped +
                   [f"extension {EXTENSION} ({EXTENSION.stat().st_size} bytes, modified "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(EXTENSION.stat().st_mtime))}); "
                    f"{runner.restarts} child process(es); memory cap {CHILD_MEM_GB:g} GB"])
    finally:
        if tmp:
            tmp.cleanup()


if __name__ == "__main__":
    from fuzzlib import summary

    seed = int(os.environ.get("FUZZ_SEED", "1"))
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("FUZZ_CALLS", "1000"))
    print(summary(run(seed, calls)))
