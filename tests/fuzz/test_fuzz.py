"""The fuzz tier: bad SQL calls and bad ONNX models against both real engines, where a crash, a
hang, an internal error, silently misaligned scores or an accepted external-data model fail the
test (see fuzzlib for the outcome classes and oracles, bad_models for the models, fuzz_duckdb and
fuzz_pg for what each engine gets).

Each test runs every targeted case plus FUZZ_CALLS random ones (default 1000), generated from
FUZZ_SEED (default 1): the same seed gives the same statements. It prints a summary (statements
per outcome class, failures grouped by cause with example statements); on failure the summary is
the assertion message too.

    tests/fuzz/run.sh                        # both engines: starts and removes a throwaway cluster
    .venv/bin/python -m pytest -s tests/fuzz # DuckDB only, unless SQLSCORE_PG_URL is set

Environment: SQLSCORE_EXTENSION (the DuckDB extension file, default dist/), SQLSCORE_PG_URL (a
server with the sqlscore extension installed; the test works in a database `sqlscore_fuzz` it
creates and drops), FUZZ_REQUIRE_PG (fail instead of skipping PostgreSQL without a URL),
FUZZ_TIMEOUT (seconds before a statement is a hang, default 20), FUZZ_CHILD_MEM_GB /
FUZZ_BACKEND_MEM_GB (address-space caps, default 3).
"""
import os

import pytest

import fuzz_duckdb
import fuzz_pg
from fuzzlib import (CRASH, ERROR, EXTERNAL_ACCEPTED, INTERNAL, MISALIGNED, OK, OUT_OF_MEMORY, Run, Stmt,
                     is_internal_message, judge, summary)

SEED = int(os.environ.get("FUZZ_SEED", "1"))
CALLS = int(os.environ.get("FUZZ_CALLS", "1000"))


def check(run: Run) -> None:
    text = summary(run)
    print("\n" + text)
    failures = run.failures
    if failures:
        pytest.fail(f"{len(failures)} failing statement(s) (FUZZ_SEED={SEED}, FUZZ_CALLS={CALLS}):\n{text}",
                    pytrace=False)


def test_fuzz_duckdb():
    if not fuzz_duckdb.EXTENSION.exists():
        pytest.fail(f"{fuzz_duckdb.EXTENSION} does not exist: run `make extension` first")
    check(fuzz_duckdb.run(SEED, CALLS))


def test_fuzz_postgres():
    url = os.environ.get("SQLSCORE_PG_URL")
    if not url:
        if os.environ.get("FUZZ_REQUIRE_PG"):
            pytest.fail("FUZZ_REQUIRE_PG is set but SQLSCORE_PG_URL is not (tests/fuzz/run.sh sets both)")
        pytest.skip("SQLSCORE_PG_URL is not set (tests/fuzz/run.sh starts a throwaway cluster and sets it)")
    check(fuzz_pg.run(url, SEED, CALLS))


def test_oracles():
    """The classification itself, without an engine."""
    assert is_internal_message("Invalid Input Error: internal error (this is a bug in sqlscore): panic: index out of bounds")
    assert is_internal_message("INTERNAL Error: Attempted to access index 3 within vector of size 3")
    assert not is_internal_message("Invalid Input Error: unknown model 'nope'")
    assert judge(Stmt("q"), ERROR, False, "XX000: x") is None          # the PG runner maps XX000 to INTERNAL itself
    assert judge(Stmt("q"), INTERNAL, False) == INTERNAL
    assert judge(Stmt("q"), CRASH, False) == CRASH
    assert judge(Stmt("q", expect="no_values"), OK, True) == MISALIGNED
    assert judge(Stmt("q", expect="no_values"), OK, False) is None     # all NULL: nothing misaligned was returned
    assert judge(Stmt("q", expect="no_values"), ERROR, False, "output 'Y' has 1 row(s) for 5") is None
    assert judge(Stmt("q", expect="refused"), OK, True) == EXTERNAL_ACCEPTED
    assert judge(Stmt("q"), ERROR, False, "cannot read model file '/dev/zero': out of memory") == OUT_OF_MEMORY
