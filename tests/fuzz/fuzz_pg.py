"""The PostgreSQL half of the fuzz tier: generates bad calls and bad models and runs them through
psycopg against a server that has the `sqlscore` extension installed (SQLSCORE_PG_URL, e.g. a
throwaway cluster from `scripts/pg-cluster.sh start`).

It works in a database of its own (`sqlscore_fuzz`, dropped and recreated at the start, dropped
at the end), so it never touches the models of the database the URL names. When the server is on
this machine, each backend it uses gets an address-space cap (FUZZ_BACKEND_MEM_GB, default 3) so a
runaway allocation fails instead of taking the machine's memory; parallel workers are switched
off except in the parallel case (their processes are not capped). Models known to allocate
without bound are skipped when the cap cannot be set (a remote server).

A statement fails the test when it gives SQLSTATE XX000/XX001/XX002 or a message with "internal
error", "panic" or a Rust backtrace (internal), loses the connection (crash: the backend died),
runs into statement_timeout (FUZZ_TIMEOUT, default 20 s) or ignores a cancel (hang), returns
values from a misaligned model, or registers/scores an external-data model (see fuzzlib).

Covered:
- targeted: SET sqlscore.* to odd values (and set_config(..., NULL)) then score; the ONNX Runtime
  library GUC pointed at non-libraries in a fresh backend; register_model / activate_model /
  drop_model / inspect_model with NULLs, empty and '@' names, bad bytes; every bad model sent as
  a bytea parameter, registered, and also forced into the registry (UPDATE of a good model's row:
  the scoring path meets it even when registration refuses it), then scored per row (VARIADIC
  float8, real[], a row) and in batches of 1, 5 and 2,500 rows; other registry tampering (sha256,
  inputs/outputs, active flag, version); odd values and
  arrays (2-D, non-1 lower bounds, 100,000 elements) for each overload; score_batch /
  predict_batch with NULL arguments, odd batch sizes and odd queries (DDL, several statements,
  errors inside the cursor, nested batches, non-integer keys); per-row model columns; parallel
  workers; cancellation of long per-row and batch scoring.
- random (FUZZ_CALLS cases, seeded by FUZZ_SEED): per-row, batch, registration and SET calls
  drawn from the same pools.
"""
from __future__ import annotations

import hashlib
import os
import pathlib
import random
import resource
import threading
import time

import psycopg
from psycopg import conninfo

import bad_models
from fuzzlib import CRASH, ERROR, HANG, INTERNAL, MAX_CRASHES_PER_CASE, MAX_HANGS, OK, Case, Outcome, Run, Stmt, is_internal_message, judge

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
REPO_MODELS = ROOT / "models"
TIMEOUT = float(os.environ.get("FUZZ_TIMEOUT", "20"))
BACKEND_MEM_GB = float(os.environ.get("FUZZ_BACKEND_MEM_GB", "3"))
# The server's log, when local (tests/fuzz/run.sh sets it): a crash report quotes what the dying
# backend wrote there (the Rust panic or allocation failure, the signal).
SERVER_LOG = os.environ.get("FUZZ_PG_LOG")
FUZZ_DB = "sqlscore_fuzz"
TABLE_ROWS = 2500
CANCEL_GRACE = 5.0     # seconds a statement may run past a 300 ms statement_timeout
INTERNAL_STATES = {"XX000", "XX001", "XX002"}
# Models that made an uncapped process allocate without bound on some build.
MEMORY_HUNGRY = {"odd_huge_declared_dims"}

FUNCTIONS = bad_models.SCORING_FUNCTIONS
SESSION = [
    f"SET statement_timeout = '{int(TIMEOUT * 1000)}ms'",
    "SET max_parallel_workers_per_gather = 0",
    "SET client_min_messages = warning",
]
CLEANUP = ["ROLLBACK", "RESET sqlscore.null_policy", "RESET sqlscore.intra_threads", "RESET sqlscore.batch_size",
           "RESET sqlscore.max_model_size_mb", "RESET parallel_setup_cost", "RESET parallel_tuple_cost",
           "RESET min_parallel_table_scan_size", *SESSION]


def q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def dq(s: str) -> str:
    """A dollar-quoted literal (for queries handed to score_batch)."""
    return "$q$" + s + "$q$"


SETUP_TABLES = f"""
CREATE TYPE xr AS (x float8, y float8);
CREATE TABLE scratch (id int, x1 float8, x2 float8, x3 float8);
CREATE TABLE t AS SELECT
    g AS id,
    g * 0.5::float8 AS x1,
    CASE WHEN mod(g, 7) = 3 THEN NULL ELSE g * 0.25::float8 END AS x2,
    1.0::float8 / (g + 1) AS x3,
    (g * 1.5)::real AS r,
    (g / 3.0)::numeric AS n,
    (g::numeric * 1e300) AS big,
    CASE WHEN mod(g, 5) = 0 THEN NULL ELSE 'city' || mod(g, 3) END AS s,
    DATE '2024-01-01' + mod(g, 30) AS d,
    '\\x0001'::bytea AS b,
    CASE WHEN mod(g, 11) = 0 THEN NULL WHEN mod(g, 13) = 0 THEN ARRAY[1.0, NULL, 3.0]::float8[]
         ELSE (SELECT coalesce(array_agg(i * 1.0::float8), '{{}}') FROM generate_series(1, mod(g, 6)) i) END AS l,
    ARRAY[g, 2, 3]::real[] AS rl,
    g::bigint * 1000000000000 AS i8,
    mod(g, 2) = 0 AS bo,
    jsonb_build_object('a', g) AS j,
    TIMESTAMPTZ '2024-01-01' + g * INTERVAL '1 second' AS ts,
    '00000000-0000-0000-0000-000000000001'::uuid AS u,
    ARRAY[g, 1, 2] AS ia,
    NULL::float8 AS nul,
    ARRAY[g * 1.0, 2.0, 3.0]::float8[] AS "X",
    'paris'::text AS city, (20 + mod(g, 50))::float8 AS age, (1000 * g)::float8 AS income,
    CASE mod(g, 6) WHEN 0 THEN 'lin' WHEN 1 THEN NULL WHEN 2 THEN 'nope' WHEN 3 THEN 'lin@1'
         WHEN 4 THEN 'vec' ELSE 'lin@99' END AS m
FROM generate_series(1, {TABLE_ROWS}) g;
CREATE TABLE cx AS SELECT city, age, income FROM t LIMIT 10;
"""

NUMBERS = ["1", "0", "-1", "1.5", "1e308", "'NaN'", "'Infinity'", "'-Infinity'", "1e-320", "2::smallint", "3::int",
           "4::bigint", "5::numeric", "6::real", "'7'", "NULL", "NULL::float8", "1e400::numeric", "'1e309'",
           "9223372036854775807::bigint", "'NaN'::numeric"]
TABLE_NUMBERS = ["x1", "x2", "x3", "id", "r", "n", "i8", "nul", "big", "CASE WHEN mod(id, 3) = 0 THEN NULL ELSE x1 END"]
ODD_ONE_VALUES = [
    "1", "1.5", "NULL", "'abc'", "'abc'::text", "now()", "'{\"a\": 1}'::jsonb", "ROW(1, 2, 3)",
    "ROW(1.0::float8, 2.0::float8, 3.0::float8)", "ROW('paris'::text, 1, 2)", "ROW()", "ROW(NULL)", "(1, 2)::xr",
    "'1'::money", "point(1, 2)", "int4range(1, 2)", "'\\x00'::bytea", "ARRAY[ROW(1)]", "'{1,2,3}'::int[]",
    "'{1,2,3}'::float8[]", "'{{1,2},{3,4}}'::real[]", "'[0:2]={1,2,3}'::real[]", "'[-5:-3]={1,2,3}'::real[]",
    "'{}'::real[]", "NULL::real[]", "'{1,NULL,3}'::real[]", "'{1,2,3}'::real[]", "'{NaN,Infinity,-Infinity}'::real[]",
    "array_fill(1.0::real, ARRAY[100000])", "array_fill(1.0::real, ARRAY[3, 1])", "array_fill(1.0::real, ARRAY[0])",
    "'NaN'::numeric", "1e300::numeric * 1e300::numeric", "'Infinity'::float8", "true", "1::smallint",
    "9223372036854775807::bigint", "'2024-01-01'::date", "'00000000-0000-0000-0000-000000000001'::uuid",
    "repeat('x', 1000000)", "NULL::t", "(SELECT t FROM t LIMIT 1)", "ROW('paris'::text, 30.0::float8, NULL::float8)",
    "ROW(NULL::text, NULL::float8, NULL::float8)", "(SELECT cx FROM cx LIMIT 1)", "'{\"X\": [1, 2, 3]}'::json",
    "ARRAY[1, 2, 3]::numeric[]", "'(1,2)'::xr",
]
VARIADIC_ARRAYS = [
    "NULL::float8[]", "'{}'::float8[]", "'{{1,2},{3,4}}'::float8[]", "'[0:2]={1,2,3}'::float8[]",
    "array_fill(1.0::float8, ARRAY[100000])", "ARRAY[1, NULL, 3]::float8[]", "'{1,2,3}'::float8[]",
    "'{NaN,Infinity,-Infinity}'::float8[]", "array_fill(1.0::float8, ARRAY[3, 1])", "array_fill(1.0::float8, ARRAY[1, 3])",
    "'[2147483645:2147483647]={1,2,3}'::float8[]",
]
ODD_MODEL_REFS = [
    "NULL", "NULL::text", "''", "' '", "'lin@'", "'lin@-1'", "'lin@0'", "'lin@99999999999'",
    "'lin@99999999999999999999999'", "'lin@1@2'", "'@1'", "'@'", "'lin@1.5'", "'lin@ 1'", "'lin@+1'", "'LIN'", "'nope'",
    "'/dev/zero'", "'/etc/passwd'", "'x.onnx'", "'postgresql.conf'", "repeat('m', 100000)", "chr(1)",
    "'\u00e9t\u00e9'", "E'lin\\n'", "'lin'::varchar(2)",
]
BATCH_QUERIES = [
    "SELECT id, x1, x2, x3 FROM t", "", " ", "SELECT", "SELECT 1", "SELECT NULL, 1, 2, 3", "SELECT id FROM t",
    "SELECT s, x1, x2, x3 FROM t", "SELECT x1, x2, x3, id FROM t", "SELECT id::numeric, x1, x2, x3 FROM t",
    "SELECT i8, x1, x2, x3 FROM t", "SELECT 9223372036854775807::numeric + 1, 1, 2, 3",
    "CREATE TEMP TABLE zz AS SELECT 1", "INSERT INTO scratch VALUES (1, 2, 3, 4) RETURNING id, x1, x2, x3",
    "UPDATE scratch SET x1 = 0 RETURNING id, x1, x2, x3", "DELETE FROM scratch RETURNING id, x1, x2, x3",
    "SELECT id, x1, x2, x3 FROM t; SELECT 1", "SELECT id, x1, x2, x3 FROM t WHERE false",
    "SELECT id, l[1], l[2], l[3] FROM t", "SELECT id, t FROM t", "SELECT id, city, age, income FROM t",
    "SELECT 1/0, 1, 2, 3", "SELECT id, x1, x2, x3 FROM nonexistent", "SELECT $1, 1, 2, 3",
    "VALUES (1, 2.0, 3.0, 4.0)", "SELECT id, x1, x2, x3 FROM t FOR UPDATE", "SELECT id, b, d, j FROM t",
    "SELECT id, r, n, i8 FROM t", "SELECT id, \"X\" FROM t", "SELECT g, 1.0, 2.0, 3.0 FROM generate_series(1, 30000) g",
    "SELECT id, score, score, score FROM sqlscore.score_batch('lin', 'SELECT id, x1, x2, x3 FROM t')",
    "SELECT * FROM sqlscore.score_batch('lin', 'SELECT id, x1, x2, x3 FROM t')",
    "SELECT id, sqlscore.score('lin', x1, x2, x3), 2, 3 FROM t", "SELECT id, x1, x2, x3 FROM t LIMIT 0",
    "SELECT NULL::int, NULL::float8, NULL, NULL", "SELECT 1, 'a', 'b', 'c'", "COMMIT", "ROLLBACK", "SHOW ALL",
    "EXPLAIN SELECT 1", "SELECT id, big, big, big FROM t", "SELECT id, x1, x1, x1, x1, x1, x1, x1, x1 FROM t",
    "SELECT id, x1, x2, x3 FROM t WHERE sqlscore.drop_model('victim') > 0",
    "SELECT id, x1, x2, x3 FROM t WHERE sqlscore.register_model('victim', '\\x00'::bytea) > 0",
    "SELECT g::smallint, 1, 2, 3 FROM generate_series(1, 3) g", "SELECT true, 1, 2, 3", "SELECT id, rl FROM t",
    "SELECT id, ia, ia, ia FROM t", "SELECT id, u, ts, bo FROM t", "SELECT id, x1, x2, x3 FROM t ORDER BY random()",
    "TABLE t",
]


class Generator:
    def __init__(self, seed: int, models: dict[str, bytes], capped: bool):
        self.rng = random.Random(seed)
        self.models = {k: v for k, v in models.items() if capped or k not in MEMORY_HUNGRY}
        self.good = {
            "lin": (models["good_linear"], 3), "vec": (models["good_vector"], 3),
            "two": (models["good_two_inputs"], 3), "lab": (models["good_string_label"], 3),
            "lr": ((REPO_MODELS / "logistic_binary.onnx").read_bytes(), 8),
            "ct": ((REPO_MODELS / "column_transformer.onnx").read_bytes(), 3),
            "im": ((REPO_MODELS / "int64_model.onnx").read_bytes(), 3),
            "rf": ((REPO_MODELS / "rf_3class.onnx").read_bytes(), 4),
            "f64": ((REPO_MODELS / "float64_model.onnx").read_bytes(), 3),
        }

    def setup(self) -> list[Stmt]:
        out = [Stmt("CREATE EXTENSION sqlscore")]
        for name, (blob, _) in self.good.items():
            out.append(Stmt("SELECT sqlscore.register_model(%s, %s)", (name, blob)))
        out.append(Stmt("SELECT sqlscore.register_model(%s, %s)", ("lin", self.good["lin"][0])))   # lin@2
        out.append(Stmt("SELECT sqlscore.register_model(%s, %s)", ("victim", self.good["lin"][0])))
        out.append(Stmt(SETUP_TABLES))
        return out

    # ------------------------------------------------------------------ targeted
    def targeted(self) -> list[Case]:
        return (self._settings_cases() + self._library_cases() + self._registry_cases() + self._bad_model_cases()
                + self._tamper_cases() + self._type_cases() + self._batch_cases() + self._misc_cases())

    PROBE = [Stmt("SELECT sqlscore.score('lin', 1, 2, 3), sqlscore.predict('lab', 1, 2, 3), sqlscore.score('lin', NULL, 2, 3)"),
             Stmt("SELECT count(*), count(score) FROM sqlscore.score_batch('lin', 'SELECT id, x1, x2, x3 FROM t')"),
             Stmt("SELECT count(sqlscore.score('lin', x1, x2, x3)) FROM t")]

    def _settings_cases(self) -> list[Case]:
        values = {
            "sqlscore.null_policy": ["''", "bogus", "DEFAULT", "'ERROR'", "error", "null", "1"],
            "sqlscore.intra_threads": ["0", "-1", "65", "1000000", "'abc'", "1.5", "64", "DEFAULT"],
            "sqlscore.batch_size": ["0", "1", "-5", "1000001", "2147483647", "'x'", "DEFAULT"],
            "sqlscore.max_model_size_mb": ["0", "1", "1048577"],
            "sqlscore.nope": ["1"],
        }
        cases = []
        for guc, vals in values.items():
            for v in vals:
                cases.append(Case(f"targeted/setting/{guc}={v}", [Stmt(f"SET {guc} = {v}"), *self.PROBE]))
            cases.append(Case(f"targeted/setting/{guc}=set_config-NULL",
                              [Stmt(f"SELECT set_config('{guc}', NULL, false)"), *self.PROBE]))
            cases.append(Case(f"targeted/setting/{guc}=set_config-local",
                              [Stmt("BEGIN"), Stmt(f"SELECT set_config('{guc}', '', true)"), *self.PROBE, Stmt("COMMIT")]))
        cases.append(Case("targeted/setting/null-policy-error-batch", [
            Stmt("SET sqlscore.null_policy = error"),
            Stmt("SELECT count(*) FROM sqlscore.score_batch('lin', 'SELECT id, x1, x2, x3 FROM t')"),
            Stmt("SELECT count(sqlscore.score('lin', x1, x2, x3)) FROM t")]))
        return cases

    def _library_cases(self) -> list[Case]:
        """sqlscore.onnxruntime_library is read when a backend first scores: a fresh backend each."""
        cases = []
        for lib in ("/etc/passwd", "/dev/zero", "/nonexistent/libonnxruntime.so", "/tmp", "", "/usr/lib/x86_64-linux-gnu/libc.so.6",
                    "/usr/lib/x86_64-linux-gnu/libm.so.6"):
            cases.append(Case(f"targeted/library/{lib}", [
                Stmt(f"SET sqlscore.onnxruntime_library = {q(lib)}"),
                Stmt("SELECT sqlscore.score('lin', 1, 2, 3)"),
                Stmt("SELECT sqlscore.inspect_model('n', %s)", (self.good["lin"][0],)),
                Stmt("SELECT sqlscore.runtime_info()"),
            ], isolated=True))
        return cases

    def _registry_cases(self) -> list[Case]:
        good = self.good["lin"][0]
        cases = []
        regs = [(None, good), ("", good), ("a@b", good), ("n" * 100000, good), ("n", None), ("n", b""), (None, None),
                ("n\u00e9", good), (" ", good), ("n", b"\x00")]
        for name, blob in regs:
            tag = f"{(name or 'NULL')[:12]!r},{'NULL' if blob is None else len(blob)}"
            cases.append(Case(f"targeted/register/{tag}", [
                Stmt("SELECT sqlscore.register_model(%s, %s)", (name, blob)),
                Stmt("SELECT sqlscore.inspect_model(%s, %s)", (name, blob)),
                Stmt("SELECT sqlscore.register_model(%s, %s, %s)", (name, blob, None)),
            ]))
        cases.append(Case("targeted/register/description", [
            Stmt("SELECT sqlscore.register_model('desc', %s, %s)", (good, "d" * 1000000)),
            Stmt("SELECT sqlscore.register_model('desc', %s, %s)", (good, "")),
            Stmt("SELECT sqlscore.drop_model('desc')"),
        ]))
        calls = ["activate_model(NULL, 1)", "activate_model('lin', NULL)", "activate_model('lin', -1)",
                 "activate_model('lin', 2147483647)", "activate_model('nope', 1)", "activate_model(NULL, NULL)",
                 "activate_model('', 1)", "activate_model('lin@1', 1)", "drop_model(NULL)", "drop_model(NULL, 1)",
                 "drop_model('nope')", "drop_model('nope', -1)", "drop_model('')", "inspect_model(NULL, NULL)",
                 "inspect_model('n', NULL)", "inspect_model(NULL, '\\x00'::bytea)", "inspect_model('n', '\\x00'::bytea)",
                 "inspect_model('', '\\x00'::bytea)", "register_model('n', NULL, NULL)",
                 "register_model(NULL, '\\x00'::bytea, 'd')"]
        cases.append(Case("targeted/registry-nulls", [Stmt(f"SELECT sqlscore.{c}") for c in calls]))
        cases.append(Case("targeted/registry/drop-activate-cycle", [
            Stmt("SELECT sqlscore.register_model('dropme', %s)", (good,)),
            Stmt("SELECT sqlscore.register_model('dropme', %s)", (good,)),
            Stmt("SELECT sqlscore.score('dropme', 1, 2, 3), sqlscore.score('dropme@1', 1, 2, 3)"),
            Stmt("SELECT sqlscore.drop_model('dropme', 2)"),
            Stmt("SELECT sqlscore.score('dropme', 1, 2, 3), sqlscore.score('dropme@2', 1, 2, 3)"),
            Stmt("SELECT sqlscore.activate_model('dropme', 2)"),
            Stmt("SELECT sqlscore.drop_model('dropme')"),
            Stmt("SELECT sqlscore.score('dropme', 1, 2, 3)"),
        ]))
        cases.append(Case("targeted/registry/transaction", [
            Stmt("BEGIN"), Stmt("SELECT sqlscore.register_model('txn', %s)", (good,)),
            Stmt("SELECT sqlscore.score('txn', 1, 2, 3)"), Stmt("ROLLBACK"),
            Stmt("SELECT sqlscore.score('txn', 1, 2, 3)"),
            Stmt("BEGIN"), Stmt("SELECT sqlscore.activate_model('lin', 1)"),
            Stmt("SELECT sqlscore.score('lin', 1, 2, 3)"), Stmt("SELECT sqlscore.activate_model('lin', 2)"),
            Stmt("SELECT * FROM sqlscore.score_batch('lin', 'SELECT id, x1, x2, x3 FROM t LIMIT 3')"), Stmt("COMMIT"),
        ]))
        return cases


    def _bad_model_cases(self) -> list[Case]:
        """Each bad model twice: registered through register_model (refused or not), and forced into
        the registry (a good model registered, then its row's bytes and sha256 replaced) so the
        scoring path meets it even when registration refuses it."""
        cases = []
        good = self.good["lin"][0]
        for name, blob in self.models.items():
            kind = bad_models.kind(name)
            if kind == bad_models.GOOD:
                continue
            reg, forced = f"bad_{name}", f"forced_{name}"
            refuse = "refused" if kind == bad_models.EXTERNAL else None
            stmts = [Stmt("SELECT sqlscore.inspect_model(%s, %s)", (reg, blob), refuse),
                     Stmt("SELECT sqlscore.register_model(%s, %s)", (reg, blob), refuse),
                     Stmt("SELECT sqlscore.register_model(%s, %s)", (forced, good)),
                     Stmt("UPDATE sqlscore.model_versions SET onnx = %s, sha256 = %s WHERE name = %s",
                          (blob, hashlib.sha256(blob).hexdigest(), forced))]
            for r in (q(reg), q(forced)):
                stmts += self._scoring_stmts(name, r)
            cases.append(Case(f"targeted/bad-model/{name}", stmts))
        return cases

    def _scoring_stmts(self, name: str, r: str) -> list[Stmt]:
        stmts = []
        for fn in FUNCTIONS:
            stmts.append(Stmt(f"SELECT sqlscore.{fn}({r}, 1, 2, 3)", expect=bad_models.expectation(name, 1, fn)))
            stmts.append(Stmt(f"SELECT sqlscore.{fn}({r}, '{{1,2,3}}'::real[])", expect=bad_models.expectation(name, 1, fn)))
            stmts.append(Stmt(f"SELECT sqlscore.{fn}({r}, ROW(1.0::float8, 2.0::float8, 3.0::float8))",
                              expect=bad_models.expectation(name, 1, fn)))
            stmts.append(Stmt(f"SELECT sqlscore.{fn}({r}, g, 2, 3) FROM generate_series(1, 5) g",
                              expect=bad_models.expectation(name, 1, fn)))
        for batch_fn, fn in (("score_batch", "score"), ("predict_batch", "predict")):
            for rows, size in ((5, "NULL"), (TABLE_ROWS, "NULL"), (5, "1"), (5, "2")):
                n = rows if size == "NULL" else int(size)
                query = dq(f"SELECT g, g::float8, 2.0, 3.0 FROM generate_series(1, {rows}) g")
                stmts.append(Stmt(f"SELECT * FROM sqlscore.{batch_fn}({r}, {query}, {size})",
                                  expect=bad_models.expectation(name, n, fn)))
            stmts.append(Stmt(f"SELECT * FROM sqlscore.{batch_fn}({r}, 'SELECT id, x1, x2, x3 FROM t')"))
        stmts.append(Stmt(f"SELECT sqlscore.score({r}, 1)"))
        stmts.append(Stmt(f"SELECT sqlscore.score({r}, 'a'::text)"))
        stmts.append(Stmt(f"SELECT sqlscore.score({r}, t) FROM t LIMIT 5"))
        stmts.append(Stmt(f"SELECT sqlscore.score({r}, x1, x2, x3) FROM t"))
        return stmts

    def _tamper_cases(self) -> list[Case]:
        """model_versions is a table a superuser can edit: rows that skipped register_model."""
        cases = []
        cases.append(Case("targeted/tamper/sha-and-columns", [
            Stmt("SELECT sqlscore.register_model('tamper2', %s)", (self.good["lin"][0],)),
            Stmt("UPDATE sqlscore.model_versions SET sha256 = 'x' WHERE name = 'tamper2'"),
            Stmt("SELECT sqlscore.score('tamper2', 1, 2, 3)"),
            Stmt("UPDATE sqlscore.model_versions SET inputs = 'null', outputs = '{}' WHERE name = 'tamper2'"),
            Stmt("SELECT sqlscore.score('tamper2', 1, 2, 3)"),
            Stmt("UPDATE sqlscore.model_versions SET active = false WHERE name = 'tamper2'"),
            Stmt("SELECT sqlscore.score('tamper2', 1, 2, 3)"),
            Stmt("UPDATE sqlscore.model_versions SET version = -1 WHERE name = 'tamper2'"),
            Stmt("SELECT sqlscore.score('tamper2@-1', 1, 2, 3)"),
        ]))
        return cases

    def _type_cases(self) -> list[Case]:
        cases = []
        for i, v in enumerate(ODD_ONE_VALUES):
            cases.append(Case(f"targeted/type/one/{i}:{v[:30]}", [
                *[Stmt(f"SELECT sqlscore.{fn}('lin', {v})") for fn in FUNCTIONS],
                Stmt(f"SELECT sqlscore.score('ct', {v})"), Stmt(f"SELECT sqlscore.score('im', {v})"),
                Stmt(f"SELECT sqlscore.score('two', {v})"),
            ]))
        for i, v in enumerate(NUMBERS):
            cases.append(Case(f"targeted/type/variadic/{i}:{v[:30]}", [
                *[Stmt(f"SELECT sqlscore.{fn}('lin', {v}, 2, 3)") for fn in FUNCTIONS],
                Stmt(f"SELECT sqlscore.score('im', {v}, {v}, {v})"), Stmt(f"SELECT sqlscore.score('ct', {v}, {v}, {v})"),
                Stmt(f"SELECT sqlscore.score('f64', {v}, 2, 3)"),
            ]))
        for i, v in enumerate(VARIADIC_ARRAYS):
            cases.append(Case(f"targeted/type/variadic-array/{i}:{v[:30]}", [
                *[Stmt(f"SELECT sqlscore.{fn}('lin', VARIADIC {v})") for fn in FUNCTIONS],
                Stmt(f"SELECT sqlscore.score('lr', VARIADIC {v})"),
            ]))
        cases.append(Case("targeted/type/table-rows", [
            Stmt("SELECT sqlscore.score('lin', t) FROM t"), Stmt("SELECT sqlscore.score('ct', t) FROM t"),
            Stmt("SELECT sqlscore.score('ct', c) FROM cx c"), Stmt("SELECT sqlscore.score_all('ct', c) FROM cx c"),
            Stmt("SELECT sqlscore.score('lin', rl) FROM t"), Stmt("SELECT sqlscore.score('lin', l::real[]) FROM t"),
            Stmt("SELECT sqlscore.score('lin', VARIADIC l) FROM t"), Stmt("SELECT sqlscore.score('lin', \"X\") FROM t"),
            Stmt("SELECT sqlscore.score('lin', ROW(\"X\")) FROM t"),
            Stmt("SELECT sqlscore.score('lin', x) FROM (SELECT \"X\" FROM t) x"),
            Stmt("SELECT sqlscore.score('lin', " + ", ".join(["1"] * 99) + ")"),
            Stmt("SELECT sqlscore.score('lr', " + ", ".join(["NULL"] * 8) + ")"),
        ]))
        return cases

    def _batch_cases(self) -> list[Case]:
        cases = []
        models = ["NULL", "'lin'", "'nope'", "'lin@'", "''", "'ct'", "'lab'"]
        for i, query in enumerate(BATCH_QUERIES + [None]):
            qsql = "NULL" if query is None else dq(query)
            stmts = []
            for m in models:
                stmts.append(Stmt(f"SELECT count(*), count(score) FROM sqlscore.score_batch({m}, {qsql})"))
            stmts.append(Stmt(f"SELECT count(*), count(label) FROM sqlscore.predict_batch('lab', {qsql}, NULL)"))
            stmts.append(Stmt(f"SELECT count(*) FROM sqlscore.score_batch('lin', {qsql}, 1)"))
            cases.append(Case(f"targeted/batch/{i}:{(query or 'NULL')[:40]}", stmts))
        sizes = ["NULL", "0", "-1", "1", "2", "2147483647", "(-2147483647 - 1)"]
        cases.append(Case("targeted/batch/sizes", [
            Stmt(f"SELECT count(*), count(score) FROM sqlscore.{fn}('lin', 'SELECT id, x1, x2, x3 FROM t', {s})")
            for fn in ("score_batch",) for s in sizes
        ] + [Stmt(f"SELECT count(*) FROM sqlscore.predict_batch({m}, {qq}, {s})")
             for m, qq, s in (("NULL", "NULL", "NULL"), ("'lab'", "NULL", "0"), ("NULL", "'SELECT 1'", "-1"))]))
        cases.append(Case("targeted/batch/in-transaction-and-join", [
            Stmt("BEGIN"),
            Stmt("SELECT count(*) FROM sqlscore.score_batch('lin', 'SELECT id, x1, x2, x3 FROM t') b JOIN t USING (id)"),
            Stmt("SELECT * FROM sqlscore.score_batch('nope', 'SELECT id, x1, x2, x3 FROM t')"),
            Stmt("SELECT 1"), Stmt("ROLLBACK"),
            Stmt("SELECT (sqlscore.score_batch('lin', 'SELECT id, x1, x2, x3 FROM t LIMIT 3')).*"),
            Stmt("SELECT sqlscore.score_batch(m, 'SELECT id, x1, x2, x3 FROM t LIMIT 2') FROM t LIMIT 12"),
            Stmt("SELECT * FROM t, LATERAL sqlscore.score_batch('lin', 'SELECT ' || t.id || ', 1, 2, 3') WHERE t.id < 4"),
        ]))
        return cases

    def _misc_cases(self) -> list[Case]:
        return [
            Case("targeted/per-row-model-column", [
                *[Stmt(f"SELECT sqlscore.{fn}(m, x1, x2, x3) FROM t") for fn in FUNCTIONS],
                Stmt("SELECT sqlscore.score(CASE WHEN mod(id, 2) = 0 THEN 'lin' ELSE NULL END, x1, x2, x3) FROM t"),
                Stmt("SELECT sqlscore.score(CASE WHEN mod(id, 2) = 0 THEN 'lin' ELSE 'lr' END, x1, x2, x3) FROM t"),
            ]),
            Case("targeted/parallel", [
                Stmt("SET max_parallel_workers_per_gather = 2"), Stmt("SET parallel_setup_cost = 0"),
                Stmt("SET parallel_tuple_cost = 0"), Stmt("SET min_parallel_table_scan_size = 0"),
                Stmt("SELECT sum(sqlscore.score('lin', x1, x2, x3)) FROM t"),
                Stmt("SELECT count(sqlscore.score(m, x1, x2, x3)) FROM t"),
                Stmt("SELECT count(sqlscore.score('nope', x1, x2, x3)) FROM t"),
                Stmt("SELECT count(sqlscore.score_all('bad_misaligned_double_rows', x1, 2, 3)) FROM t",
                     expect="no_values"),
            ]),
            Case("targeted/cancel", [
                Stmt("SET statement_timeout = '300ms'"),
                Stmt("SELECT count(*) FROM sqlscore.score_batch('lin', "
                     "'SELECT g, 1.0, 2.0, 3.0 FROM generate_series(1, 100000000) g', 1000)", expect="cancel"),
                Stmt("SELECT count(*) FROM sqlscore.score_batch('lin', "
                     "'SELECT g, 1.0, 2.0, 3.0 FROM generate_series(1, 100000000) g')", expect="cancel"),
                Stmt("SELECT sum(sqlscore.score('lin', g, 2, 3)) FROM generate_series(1, 100000000) g", expect="cancel"),
            ]),
        ]

    # ------------------------------------------------------------------ random
    def random_cases(self, n: int) -> list[Case]:
        return [self._random_case(i) for i in range(n)]

    def _model_ref(self, with_table: bool) -> tuple[str, int, str | None]:
        r = self.rng.random()
        if r < 0.55:
            name = self.rng.choice(sorted(self.good))
            return q(self.rng.choice([name, name, name + "@1"])), self.good[name][1], None
        if r < 0.75:
            name = self.rng.choice(sorted(n for n in self.models if bad_models.kind(n) != bad_models.GOOD))
            return q(self.rng.choice(["bad_", "forced_"]) + name), 3, name
        return self.rng.choice(ODD_MODEL_REFS + (["m", "s"] if with_table else [])), 3, None

    def _random_case(self, i: int) -> Case:
        rng = self.rng
        stmts = []
        if rng.random() < 0.12:
            guc, v = rng.choice([("sqlscore.null_policy", "error"), ("sqlscore.null_policy", "null"),
                                 ("sqlscore.intra_threads", "2"), ("sqlscore.intra_threads", "0"),
                                 ("sqlscore.batch_size", "1"), ("sqlscore.batch_size", "3"), ("sqlscore.batch_size", "0")])
            stmts.append(Stmt(f"SET {guc} = {v}"))
        form = rng.random()
        src = rng.choice(["", "", " FROM t", " FROM t LIMIT 7", " FROM generate_series(1, 3) g"])
        with_table = "FROM t" in src
        if form < 0.65:
            fn = rng.choice(FUNCTIONS)
            ref, want, model = self._model_ref(with_table)
            shape = rng.random()
            if shape < 0.6:
                count = want if rng.random() < 0.6 else rng.randint(1, 9)
                pool = NUMBERS + (TABLE_NUMBERS * 2 if with_table else [])
                feats = ", ".join(rng.choice(pool) if rng.random() < 0.4 else rng.choice(["1", "2.5"]) for _ in range(count))
            elif shape < 0.75:
                feats = "VARIADIC " + rng.choice(VARIADIC_ARRAYS)
            else:
                feats = rng.choice(ODD_ONE_VALUES + (["t", "rl", "l::real[]", "ROW(x1, x2, x3)"] if with_table else []))
            expect = None
            if model and bad_models.kind(model) == bad_models.EXTERNAL:
                expect = "refused"
            elif model and feats in ("1, 2.5, 1", "1, 1, 1", "2.5, 2.5, 2.5") and bad_models.misaligned(model, 1, fn):
                expect = "no_values"
            stmts.append(Stmt(f"SELECT sqlscore.{fn}({ref}, {feats}){src}", expect=expect))
        elif form < 0.85:
            batch_fn = rng.choice(["score_batch", "predict_batch"])
            ref, _, model = self._model_ref(False)
            query = rng.choice(BATCH_QUERIES + ["SELECT id, x1, x2, x3 FROM t"] * 5)
            qsql = "NULL" if rng.random() < 0.05 else dq(query)
            size = rng.choice(["NULL", "NULL", "1", "7", "0", "-1"])
            expect = "refused" if model and bad_models.kind(model) == bad_models.EXTERNAL else None
            stmts.append(Stmt(f"SELECT count(*) FROM sqlscore.{batch_fn}({ref}, {qsql}, {size})", expect=expect))
        else:
            model = rng.choice(sorted(self.models))
            blob = self.models[model]
            if rng.random() < 0.3:    # flip a few bytes: a new, probably broken, model
                b = bytearray(blob)
                for _ in range(rng.randint(1, 4)):
                    if b:
                        b[rng.randrange(len(b))] = rng.getrandbits(8)
                blob = bytes(b)
            expect = "refused" if bad_models.kind(model) == bad_models.EXTERNAL and blob == self.models[model] else None
            name = rng.choice(["r", "r", "r@1", ""])
            stmts.append(Stmt("SELECT sqlscore.register_model(%s, %s)", (name, blob), expect))
            stmts.append(Stmt(f"SELECT sqlscore.score({q(name)}, 1, 2, 3), sqlscore.score_all({q(name)}, x1, x2, x3) "
                              "FROM t LIMIT 4", expect=expect))
            stmts.append(Stmt(f"SELECT count(*) FROM sqlscore.score_batch({q(name)}, 'SELECT id, x1, x2, x3 FROM t')",
                              expect=expect))
            stmts.append(Stmt("DELETE FROM sqlscore.model_versions WHERE name = 'r'"))
        return Case(f"random/{i}", stmts)


# --------------------------------------------------------------------------- running

def cap_backend(pid: int) -> bool:
    """Caps a local backend's address space; True when it is capped (now or already, e.g. a
    cluster started under `prlimit --as`), False for a remote server or without the privilege."""
    cap = int(BACKEND_MEM_GB * (1 << 30))
    try:
        resource.prlimit(pid, resource.RLIMIT_AS, (cap, cap))
        return True
    except (OSError, ValueError):
        pass
    try:
        for line in pathlib.Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max address space"):
                soft = line.split()[3]
                return soft != "unlimited" and int(soft) <= 16 << 30
    except OSError:
        pass
    return False


class Runner:
    def __init__(self, url: str):
        self.url = url
        self.conn: psycopg.Connection | None = None
        self.capped = True
        self.outcomes: list[Outcome] = []

    def connect(self, retries_s: float = 60.0) -> None:
        deadline = time.monotonic() + retries_s
        while True:
            try:
                self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
                break
            except psycopg.OperationalError:   # the server restarting after a backend crash
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.pid = self.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        self.capped = self.capped and cap_backend(self.pid)
        for s in SESSION:
            self.conn.execute(s)

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001
                pass
            self.conn = None

    def _watchdog(self, pid: int) -> threading.Timer:
        """statement_timeout cannot stop code that never checks for interrupts: past it, cancel,
        then terminate the backend from another connection."""
        def fire():
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as admin:
                    admin.execute("SELECT pg_cancel_backend(%s)", (pid,))
                    time.sleep(5)
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            except Exception:  # noqa: BLE001
                pass
        t = threading.Timer(TIMEOUT + 10, fire)
        t.daemon = True
        t.start()
        return t

    def _log_size(self) -> int:
        try:
            return os.path.getsize(SERVER_LOG) if SERVER_LOG else 0
        except OSError:
            return 0

    def _log_since(self, offset: int) -> str:
        """The lines the server logged since `offset` that explain a crash."""
        if not SERVER_LOG:
            return ""
        time.sleep(0.5)     # let the postmaster log the signal
        try:
            with open(SERVER_LOG, "rb") as f:
                f.seek(offset)
                text = f.read(1 << 20).decode(errors="replace")
        except OSError:
            return ""
        keep = [l.strip() for l in text.splitlines()
                if not l.startswith((" ", "\t", "note:", "stack backtrace")) and not l.lstrip()[:1].isdigit()
                or "terminated by signal" in l]
        return " | ".join(keep[-6:])

    def execute(self, stmt: Stmt) -> tuple[str, str, list | None, bool, float]:
        """(class, message, rows, has values, seconds) of one statement."""
        assert self.conn is not None
        t0 = time.monotonic()
        log_at = self._log_size()
        timer = self._watchdog(self.pid)
        try:
            with self.conn.cursor() as cur:
                cur.execute(stmt.sql, stmt.params if stmt.params else None)
                rows = cur.fetchall() if cur.description else []
            values = any(v is not None for r in rows for v in r)
            shown = [[v if isinstance(v, (int, float, bool, type(None))) else str(v)[:300] for v in r] for r in rows[:50]]
            return OK, "", shown, values, time.monotonic() - t0
        except psycopg.Error as e:
            secs = time.monotonic() - t0
            if self.conn.broken or self.conn.closed or e.sqlstate is None and isinstance(e, psycopg.OperationalError):
                log = self._log_since(log_at)
                return CRASH, f"connection lost: {' '.join(str(e).split())}" + (f" | server log: {log}" if log else ""), \
                    None, False, secs
            diag = e.diag
            msg = f"{e.sqlstate}: {diag.message_primary or e}"
            for part in (diag.message_detail, diag.message_hint, diag.context):
                if part:
                    msg += f" | {part}"
            if e.sqlstate in INTERNAL_STATES or is_internal_message(msg):
                return INTERNAL, msg, None, False, secs
            if e.sqlstate == "57014" and stmt.expect != "cancel":
                return HANG, msg, None, False, secs
            if e.sqlstate == "57P01":   # terminated by our watchdog
                return HANG, msg, None, False, secs
            return ERROR, msg, None, False, secs
        finally:
            timer.cancel()

    def run_case(self, case: Case) -> None:
        if case.isolated:
            self.close()
            self.connect()
        for j, stmt in enumerate(case.stmts):
            cls, msg, rows, values, secs = self.execute(stmt)
            if stmt.expect == "cancel" and secs > CANCEL_GRACE:
                cls, msg = HANG, f"not cancelled within {CANCEL_GRACE:.0f}s of a 300ms statement_timeout ({secs:.1f}s): {msg}"
            self.outcomes.append(Outcome(case.name, [s.sql for s in case.stmts[: j + 1]], stmt.sql, cls, msg, rows,
                                         judge(stmt, cls, values, msg), secs))
            if cls == CRASH:
                self.close()
                self.connect()
                if sum(o.case == case.name and o.cls == CRASH for o in self.outcomes) >= MAX_CRASHES_PER_CASE:
                    break
        for s in CLEANUP:
            try:
                self.conn.execute(s)
            except psycopg.Error:
                if self.conn.broken:
                    self.close()
                    self.connect()
        if case.isolated:
            self.close()
            self.connect()


def library_note(conn) -> str:
    """Which build: the size and time of the server's sqlscore.so, when it is on this machine."""
    try:
        libdir = conn.execute("SELECT setting FROM pg_config WHERE name = 'PKGLIBDIR'").fetchone()[0]
        st = os.stat(os.path.join(libdir, "sqlscore.so"))
        return f" ({libdir}/sqlscore.so, {st.st_size} bytes, modified {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st.st_mtime))})"
    except Exception:  # noqa: BLE001  (remote server, no privilege)
        return ""


def run(url: str, seed: int, calls: int) -> Run:
    """Recreates the database `sqlscore_fuzz` on the server at `url`, runs the targeted cases and
    `calls` random ones in it, drops it."""
    t0 = time.monotonic()
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {FUZZ_DB} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {FUZZ_DB}")
    runner = Runner(conninfo.make_conninfo(url, dbname=FUZZ_DB))
    try:
        runner.connect()
        gen = Generator(seed, bad_models.bad_models(seed), runner.capped)
        for stmt in gen.setup():
            runner.conn.execute(stmt.sql, stmt.params if stmt.params else None)
        cases = gen.targeted() + gen.random_cases(calls)
        stopped = []
        for i, case in enumerate(cases):
            if sum(o.cls == HANG for o in runner.outcomes) >= MAX_HANGS:
                stopped = [f"stopped after {MAX_HANGS} hangs: cases {i}..{len(cases) - 1} did not run"]
                break
            runner.run_case(case)
        version = runner.conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'sqlscore'").fetchone()
        where = conninfo.conninfo_to_dict(url)
        notes = stopped + [f"server {where.get('host', '?')}:{where.get('port', '?')}, sqlscore {version[0] if version else '?'}"
                 + library_note(runner.conn)]
        if not runner.capped:
            notes.append(f"backend memory could not be capped: skipped {', '.join(sorted(MEMORY_HUNGRY))}; start the "
                         "cluster under `prlimit --as=...` (tests/fuzz/run.sh does) to include them")
        return Run("postgres", runner.outcomes, len(cases), time.monotonic() - t0, notes)
    finally:
        runner.close()
        with psycopg.connect(url, autocommit=True, connect_timeout=30) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {FUZZ_DB} WITH (FORCE)")


if __name__ == "__main__":
    import sys

    from fuzzlib import summary

    url = os.environ["SQLSCORE_PG_URL"]
    seed = int(os.environ.get("FUZZ_SEED", "1"))
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("FUZZ_CALLS", "1000"))
    print(summary(run(url, seed, calls)))
