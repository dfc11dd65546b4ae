"""Registering a model in the sqlscore registry of a DuckDB or PostgreSQL connection, and scoring a
DataFrame through it. The connection is the caller's: a DuckDB connection with the sqlscore
extension loaded, or a psycopg (3) connection to a database with `CREATE EXTENSION sqlscore`."""
from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from .convert import Check, ConversionError, check, feeds, to_onnx

# A converted model's largest difference from the original, relative to the reference values'
# scale (at least 1): float32 inside ONNX models against float64 in scikit-learn and friends.
DEFAULT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Registered:
    """What `register` stored."""

    name: str
    version: int
    sha256: str
    inputs: list[dict]
    engine: str
    check: Check | None


def _engine(con: Any) -> str:
    module = type(con).__module__
    if module.startswith("duckdb") or module.startswith("_duckdb"):
        return "duckdb"
    if module.startswith("psycopg2"):
        raise TypeError("psycopg2 connections are not supported: use psycopg 3 (pip install 'psycopg[binary]')")
    if module.startswith("psycopg"):
        import psycopg

        if not isinstance(con, psycopg.Connection):
            raise TypeError(f"con must be a synchronous psycopg connection, not {type(con).__name__}")
        return "postgres"
    raise TypeError(f"con must be a DuckDB or psycopg connection, not {module}.{type(con).__name__}")


def _as_model(model: Any, sample: Any) -> tuple[onnx.ModelProto, Any]:
    """The ONNX model, and the original when it was converted here (None for ONNX given as is)."""
    if isinstance(model, onnx.ModelProto):
        return model, None
    if isinstance(model, (bytes, bytearray, memoryview)):
        return onnx.load_from_string(bytes(model)), None
    if isinstance(model, (str, os.PathLike)):
        return onnx.load(os.fspath(model)), None
    if sample is None:
        raise ConversionError(f"a fitted {type(model).__name__} needs sample= (a DataFrame of a few rows): "
                              "its columns name and type the model's inputs, and its rows check the conversion")
    try:
        return to_onnx(model, sample), model
    except ConversionError:
        raise
    except Exception as e:  # noqa: BLE001 - the converters' own errors, named for the user
        raise ConversionError(f"{type(model).__name__} could not be converted to ONNX: {type(e).__name__}: {e}") from e


def register(con: Any, name: str, model: Any, sample: Any = None, description: str | None = None, *,
             tolerance: float = DEFAULT_TOLERANCE, check_conversion: bool = True) -> Registered:
    """Converts `model` (a fitted scikit-learn estimator or pipeline, an XGBoost / LightGBM /
    CatBoost model, or ONNX bytes / an `onnx.ModelProto` / a path) and registers it as the next
    version of `name` in the sqlscore registry `con` reaches (DuckDB or PostgreSQL).

    With a sample DataFrame, the model's inputs are named and typed after its columns, so
    `score('name', t)` binds a table's columns by name. The converted model is run on the sample
    and compared with the original (`Registered.check`); a difference above `tolerance` (relative
    to the values' scale, at least 1) or a changed label raises ConversionError, unless
    `check_conversion=False`. Returns name, version, sha256 and the inputs the registry recorded.
    """
    engine = _engine(con)
    m, original = _as_model(model, sample)
    result: Check | None = None
    if original is not None:
        try:
            result = check(original, m, sample)
        except Exception as e:  # noqa: BLE001 - the converters' and libraries' own errors
            if check_conversion:
                raise ConversionError(f"model {name!r}: the conversion could not be checked on the sample: {e}; pass "
                                      "check_conversion=False to register it unchecked") from e
            result = None
    if result is not None:
        scale = max(1.0, result.scale)
        if check_conversion and (result.max_abs_diff > tolerance * scale or result.label_mismatches):
            raise ConversionError(
                f"model {name!r}: the ONNX form differs from the {type(original).__name__} on the sample: output "
                f"{result.output!r} max |diff| {result.max_abs_diff:.3g} (tolerance {tolerance * scale:.3g}), "
                f"{result.label_mismatches} of {result.rows} labels differ; pass check_conversion=False to register "
                "it anyway")
    elif sample is not None:
        feeds(m, sample)  # the sample's columns cover the model's inputs
    if engine == "postgres":
        # PostgreSQL truncates identifiers to 63 bytes: a longer input name could never bind to a column.
        long = [i.name for i in m.graph.input if len(i.name.encode()) > 63]
        if long:
            raise ConversionError(f"model {name!r}: input name(s) longer than PostgreSQL's 63-byte identifiers: "
                                  f"{', '.join(map(repr, long))}")
    data = m.SerializeToString()
    if engine == "duckdb":
        version, sha, inputs = _register_duckdb(con, name, data, description)
    else:
        version, sha, inputs = _register_postgres(con, name, data, description)
    return Registered(name=name, version=version, sha256=sha, inputs=inputs, engine=engine, check=result)


def _register_duckdb(con: Any, name: str, data: bytes, description: str | None) -> tuple[int, str, list[dict]]:
    # The extension reads and validates the file itself (sqlscore_register): written to a private
    # temporary file, removed afterwards.
    fd, path = tempfile.mkstemp(suffix=".onnx")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        row = con.execute(
            "INSERT INTO sqlscore_models FROM sqlscore_register(?, ?, description := ?) "
            "RETURNING version, sha256, inputs::VARCHAR",
            [name, path, description],
        ).fetchone()
    finally:
        os.unlink(path)
    return int(row[0]), str(row[1]), json.loads(row[2])


def _register_postgres(con: Any, name: str, data: bytes, description: str | None) -> tuple[int, str, list[dict]]:
    # In the caller's transaction when one is open (a savepoint: a failure leaves it usable; the
    # version is committed with the caller's work), else in one of its own, committed here.
    with con.transaction(), con.cursor() as cur:
        cur.execute("SELECT sqlscore.register_model(%s, %s, %s)", [name, data, description])
        version = int(cur.fetchone()[0])
        cur.execute("SELECT sha256, inputs::text FROM sqlscore.models WHERE name = %s AND version = %s",
                    [name, version])
        sha, inputs = cur.fetchone()
    return version, sha, json.loads(inputs)


def score_frame(con: Any, name: str, df: Any) -> np.ndarray:
    """`score('name', row)` for every row of a DataFrame, through the database `con` reaches: the
    columns bind to the model's inputs by name. A quick check from Python that the registered
    model scores as expected; one value per row, in order (NaN for NULL)."""
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise TypeError("df must be a pandas DataFrame")
    if df.columns.duplicated().any():
        raise ValueError("df has duplicate column names")
    # Text, whatever pandas holds it in (categories would reach DuckDB as ENUM).
    df = df.rename(columns=str).astype({c: str for c in df.columns if isinstance(df[c].dtype, pd.CategoricalDtype)})
    # The column that keeps the rows' order: a name the frame does not use.
    row = "__sqlscore_row"
    while row in df.columns:
        row += "_"
    if _engine(con) == "duckdb":
        view = f"__sqlscore_score_frame_{uuid.uuid4().hex}"
        con.register(view, df.reset_index(drop=True).assign(**{row: np.arange(len(df))}))
        try:
            fields = ", ".join(f"{_q(c)} := t.{_q(c)}" for c in df.columns)
            rows = con.execute(f"SELECT score(?, struct_pack({fields})) FROM {view} t ORDER BY t.{_q(row)}",
                               [name]).fetchall()
        finally:
            con.unregister(view)
        return np.array([np.nan if r[0] is None else r[0] for r in rows], dtype=np.float64)
    return _score_postgres(con, name, df, row)


def _q(ident: str) -> str:
    return '"' + str(ident).replace('"', '""') + '"'


def _score_postgres(con: Any, name: str, df: Any, row: str) -> np.ndarray:
    import pandas as pd

    def pg_type(s: Any) -> str:
        if pd.api.types.is_bool_dtype(s.dtype):
            return "boolean"
        if pd.api.types.is_integer_dtype(s.dtype):
            return "bigint"
        if pd.api.types.is_float_dtype(s.dtype):
            return "double precision"
        return "text"

    def value(v: Any) -> Any:
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            return None
        return v.item() if hasattr(v, "item") else v

    table = f"__sqlscore_score_frame_{uuid.uuid4().hex}"
    cols = list(df.columns)
    # A transaction of its own, or a savepoint in the caller's: an error leaves the caller's
    # transaction usable, and nothing of the caller's is committed here.
    with con.transaction(), con.cursor() as cur:
        cur.execute(f"CREATE TEMP TABLE {table} ({_q(row)} bigint, "
                    + ", ".join(f"{_q(c)} {pg_type(df[c])}" for c in cols) + ") ON COMMIT DROP")
        with cur.copy(f"COPY pg_temp.{table} ({_q(row)}, {', '.join(_q(c) for c in cols)}) FROM STDIN") as copy:
            for i, values in enumerate(df.itertuples(index=False, name=None)):
                copy.write_row([i, *map(value, values)])
        # The row binds by name: the model's inputs are looked up in it (the ordering column is
        # one more field, which no input names).
        cur.execute(f"SELECT sqlscore.score(%s, t) FROM pg_temp.{table} t ORDER BY t.{_q(row)}", [name])
        out = [r[0] for r in cur.fetchall()]
        cur.execute(f"DROP TABLE pg_temp.{table}")
    return np.array([np.nan if v is None else v for v in out], dtype=np.float64)
