"""Fixtures for the DuckDB extension tests: the built extension file loaded into the stock
PyPI duckdb, the committed models and their Python onnxruntime reference outputs."""
import json
import os
import pathlib

import duckdb
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
EXTENSION = pathlib.Path(os.environ.get("SQLSCORE_EXTENSION", ROOT / "dist" / "sqlscore.duckdb_extension"))
# The same code built with the `test-hooks` feature (fault injection), for the tests that need it.
TEST_EXTENSION = ROOT / "dist" / "test" / "sqlscore.duckdb_extension"
ALL_MODELS = [
    "logistic_binary", "rf_3class", "gbm_regressor", "gbm_classifier", "isolation_forest",
    "ocsvm_pipeline", "column_transformer", "int64_model", "float64_model",
]
SQL_TYPES = {"float": "DOUBLE", "double": "DOUBLE", "int64": "BIGINT", "string": "VARCHAR"}


def connect(path=":memory:", **config):
    con = duckdb.connect(str(path), config={"allow_unsigned_extensions": "true", **config})
    con.execute(f"LOAD '{EXTENSION}'")
    return con


@pytest.fixture
def con():
    c = connect()
    yield c
    c.close()


def reference(name):
    return json.loads((MODELS / "reference" / f"{name}.json").read_text())


def model_path(name):
    return str(MODELS / f"{name}.onnx")


def register(con, name, model):
    return con.execute(
        "INSERT INTO sqlscore_models FROM sqlscore_register(?, ?) RETURNING version", [name, model_path(model)]
    ).fetchone()[0]


def feature_columns(ref):
    """(column name, SQL type) per feature value, in model input order: X0..X7, or city/age/income."""
    cols = []
    for inp in ref["inputs"]:
        width = len(ref["columns"][inp["name"]][0])
        for k in range(width):
            cols.append((inp["name"] if width == 1 else f"{inp['name']}{k}", SQL_TYPES[inp["type"]], inp["name"], k))
    return cols


def load_reference_table(con, table, ref):
    """A table `table` with an `id` column and one column per feature value."""
    cols = feature_columns(ref)
    con.execute(f"CREATE OR REPLACE TABLE {table} (id INTEGER, " + ", ".join(f'"{c}" {t}' for c, t, _, _ in cols) + ")")
    rows = []
    for i in range(ref["rows"]):
        rows.append([i] + [ref["columns"][inp][i][k] for _, _, inp, k in cols])
    con.executemany(f"INSERT INTO {table} VALUES (" + ", ".join("?" * (len(cols) + 1)) + ")", rows)
    return [f'"{c}"' for c, _, _, _ in cols]
