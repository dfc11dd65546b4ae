"""What both fuzzers share: cases and statements, outcome classes, the oracles that turn an
outcome into a failure, and the summary report.

Outcome classes (what happened to one statement):
    ok        it returned (rows, possibly none)
    error     a clean SQL error
    internal  an error that is a bug: DuckDB "internal error"/INTERNAL/panic, PostgreSQL XX000 or a
              message with "internal error", "panic" or a Rust backtrace
    crash     the process (DuckDB) or the backend (PostgreSQL) died
    hang      it did not finish within the per-statement timeout

Failures (what fails the test): every internal, crash and hang, plus two oracles on `ok`:
    misaligned      a statement marked expect="no_values" (a model whose output row count is not
                    the input's) returned non-NULL values: silently misaligned scores
    external-data   a statement marked expect="refused" (registering or scoring a model whose
                    tensors live in external data files) succeeded with values
and one on `error`:
    out of memory   an error saying memory ran out: every fuzz statement is small, the process
                    runs under an address-space cap (a few GB), so this is an unbounded
                    allocation (reading /dev/zero, sizing buffers from a model's declared shape)
                    that would take the whole machine's memory without the cap
"""
from __future__ import annotations

import collections
import dataclasses
import os
import re

OK, ERROR, INTERNAL, CRASH, HANG = "ok", "error", "internal", "crash", "hang"
# Each hang costs FUZZ_TIMEOUT seconds: past this many, a run stops early (and fails).
MAX_HANGS = int(os.environ.get("FUZZ_MAX_HANGS", "3"))
# After a crash a case goes on with its next statement (in a fresh process / connection), up to
# this many crashes; then the run moves on to the next case.
MAX_CRASHES_PER_CASE = 3
CLASSES = (OK, ERROR, INTERNAL, CRASH, HANG)
MISALIGNED, EXTERNAL_ACCEPTED, OUT_OF_MEMORY = "misaligned", "external-data accepted", "out of memory"

# An error message that reveals a bug rather than a bad input. "INTERNAL" is matched case-sensitively
# (DuckDB's "INTERNAL Error"), the rest in any case. Fuzzed strings never contain these words, so
# they cannot leak in through an echoed model name.
_INTERNAL_CASED = re.compile(r"INTERNAL")
_INTERNAL_ANY_CASE = re.compile(r"internal error|panic|panicked at|stack backtrace|RUST_BACKTRACE|rust_begin_unwind",
                                re.IGNORECASE)


def is_internal_message(msg: str) -> bool:
    return bool(_INTERNAL_CASED.search(msg) or _INTERNAL_ANY_CASE.search(msg))


@dataclasses.dataclass
class Stmt:
    sql: str
    params: tuple = ()
    # None: any clean outcome is fine. "no_values": an ok result must hold no non-NULL value
    # (misaligned model). "refused": must not succeed with values (external data). "cancel"
    # (PostgreSQL): statement_timeout cancelling it is expected, but it must stop promptly.
    expect: str | None = None


@dataclasses.dataclass
class Case:
    name: str                    # what it exercises, e.g. "targeted/null-setting" or "random/17"
    stmts: list[Stmt]
    isolated: bool = False       # DuckDB: run in a fresh process of its own (it changes global state)


@dataclasses.dataclass
class Outcome:
    case: str
    stmts: list[str]             # the case's statements up to and including this one
    sql: str
    cls: str                     # one of CLASSES
    message: str = ""
    rows: list | None = None
    failure: str | None = None   # None, INTERNAL, CRASH, HANG, MISALIGNED or EXTERNAL_ACCEPTED
    seconds: float = 0.0


_OUT_OF_MEMORY = re.compile(r"out of memory|memory allocation of \d+ bytes failed|bad_alloc|cannot allocate memory",
                            re.IGNORECASE)


def is_out_of_memory(msg: str) -> bool:
    return bool(_OUT_OF_MEMORY.search(msg))


def judge(stmt: Stmt, cls: str, values: bool, message: str = "") -> str | None:
    """The failure class of one statement's outcome, or None. `values`: whether an ok result held
    a non-NULL value (in any row, not only the reported ones)."""
    if cls in (INTERNAL, CRASH, HANG):
        return cls
    if cls == ERROR and is_out_of_memory(message):
        return OUT_OF_MEMORY
    if cls == OK and stmt.expect == "no_values" and values:
        return MISALIGNED
    if cls == OK and stmt.expect == "refused" and values:
        return EXTERNAL_ACCEPTED
    return None


def short(s: str, n: int = 300) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 3] + "..."


def signature(o: Outcome) -> str:
    """Groups failures that are the same bug: the class plus the message with numbers, quoted
    text and paths blurred."""
    msg = o.message.split("\n")[0]
    msg = re.sub(r"'[^']*'", "'…'", msg)
    msg = re.sub(r"/\S+", "/…", msg)
    msg = re.sub(r"\d+", "#", msg)
    if o.failure in (MISALIGNED, EXTERNAL_ACCEPTED):
        msg = o.case.split("/")[1] if "/" in o.case else o.case
    return f"{o.failure}: {short(msg, 160)}"


@dataclasses.dataclass
class Run:
    engine: str
    outcomes: list[Outcome]
    cases: int
    seconds: float
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.failure]


def summary(run: Run) -> str:
    engine, outcomes, seconds, cases = run.engine, run.outcomes, run.seconds, run.cases
    counts = collections.Counter(o.cls for o in outcomes)
    fails = run.failures
    lines = [
        f"== {engine}: {cases} cases, {len(outcomes)} statements in {seconds:.1f}s: "
        + ", ".join(f"{c}={counts.get(c, 0)}" for c in CLASSES)
        + f"; failures={len(fails)} ("
        + ", ".join(f"{k}={v}" for k, v in sorted(collections.Counter(o.failure for o in fails).items()))
        + ")"
    ]
    lines += [f"  note: {n}" for n in run.notes]
    groups: dict[str, list[Outcome]] = collections.defaultdict(list)
    for o in fails:
        groups[signature(o)].append(o)
    for sig, members in groups.items():
        lines.append(f"  [{len(members)}x] {sig}")
        for o in members[:3]:
            ctx = " ; ".join(short(s, 200) for s in o.stmts[:-1])
            lines.append(f"      case {o.case}: {short(o.sql, 400)}")
            if ctx:
                lines.append(f"        after: {short(ctx, 400)}")
            detail = o.message if o.message else f"rows={short(repr(o.rows), 200)}"
            lines.append(f"        -> {o.cls}: {short(detail, 400)}")
    return "\n".join(lines)
