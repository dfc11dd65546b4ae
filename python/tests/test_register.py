"""sqlscore.register / score_frame against real DuckDB (the built extension, installed by name from
dist/repository) and real PostgreSQL (SQLSCORE_PG_URL, a server with the extension installed), with
models trained here by the libraries themselves. Run by `make test-python`."""
from __future__ import annotations

import os
import pathlib
import uuid

import duckdb
import numpy as np
import onnx
import pandas as pd
import psycopg
import pytest

import sqlscore

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Customers: numbers, an integer and a text column; a binary label and a numeric target."""
    rng = np.random.default_rng(7)
    n = 400
    df = pd.DataFrame({
        "age": rng.integers(18, 80, n),
        "income": rng.normal(50, 15, n),
        "balance": rng.normal(0, 1, n),
        "city": rng.choice(["Lyon", "Paris", "Nice"], n),
    })
    logit = 0.04 * (df.age - 45) + 0.05 * (df.income - 50) + 0.8 * df.balance + (df.city == "Paris") * 0.7
    y = (logit + rng.normal(0, 0.5, n) > 0).astype(int).to_numpy()
    target = (2.0 * df.income + 10 * df.balance + rng.normal(0, 1, n)).to_numpy()
    return df, y, target


@pytest.fixture(scope="module", params=["duckdb", "postgres"])
def con(request, tmp_path_factory):
    if request.param == "duckdb":
        home = tmp_path_factory.mktemp("ext")
        c = duckdb.connect(str(tmp_path_factory.mktemp("db") / "t.duckdb"),
                           config={"allow_unsigned_extensions": "true", "extension_directory": str(home)})
        c.execute(f"INSTALL sqlscore FROM '{ROOT / 'dist' / 'repository'}'")
        c.execute("LOAD sqlscore")
        yield c
        c.close()
        return
    url = os.environ.get("SQLSCORE_PG_URL")
    if not url:
        pytest.fail("SQLSCORE_PG_URL is not set (make test-python starts a cluster and sets it)", pytrace=False)
    name = f"sqlscore_py_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    c = psycopg.connect(url.rsplit("/", 1)[0] + "/" + name)
    c.execute("CREATE EXTENSION sqlscore")
    c.commit()
    yield c
    c.close()
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_pipeline_with_text_column_binds_by_name(con, data):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    df, y, _ = data
    pipe = Pipeline([
        ("prep", ColumnTransformer([("num", StandardScaler(), ["age", "income", "balance"]),
                                    ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"])])),
        ("clf", LogisticRegression(max_iter=500)),
    ]).fit(df, y)
    info = sqlscore.register(con, "churn", pipe, sample=df.head(100), description="notebook model")
    assert (info.name, info.version, info.engine) == ("churn", 1, "duckdb" if isinstance(con, duckdb.DuckDBPyConnection)
                                                      else "postgres")
    assert len(info.sha256) == 64
    assert [i["name"] for i in info.inputs] == ["age", "income", "balance", "city"]
    assert info.check.max_abs_diff < 1e-5 and info.check.label_mismatches == 0
    # Columns in another order, and an extra one: bound by name.
    frame = df.head(50)[["city", "balance", "income", "age"]].assign(extra=1.5)
    got = sqlscore.score_frame(con, "churn", frame)
    np.testing.assert_allclose(got, pipe.predict_proba(df.head(50))[:, 1], atol=1e-5)
    # A second registration is the next version.
    assert sqlscore.register(con, "churn", pipe, sample=df.head(20)).version == 2


def test_regressor_and_anomaly_detector(con, data):
    from sklearn.ensemble import IsolationForest, RandomForestRegressor

    df, _, target = data
    num = df[["age", "income", "balance"]]
    rf = RandomForestRegressor(n_estimators=20, max_depth=6, random_state=0).fit(num, target)
    info = sqlscore.register(con, "value", rf, sample=num.head(100))
    assert info.check.max_abs_diff < 1e-3 * max(1, np.abs(target).max())
    np.testing.assert_allclose(sqlscore.score_frame(con, "value", num.head(50)), rf.predict(num.head(50)), rtol=1e-4)
    iso = IsolationForest(n_estimators=30, random_state=0).fit(num)
    sqlscore.register(con, "odd", iso, sample=num.head(100))
    np.testing.assert_allclose(sqlscore.score_frame(con, "odd", num.head(50)), iso.decision_function(num.head(50)),
                               atol=1e-4)


@pytest.mark.parametrize("library", ["xgboost", "lightgbm", "catboost"])
def test_boosting_libraries(con, data, library):
    df, y, target = data
    num = df[["age", "income", "balance"]]
    if library == "xgboost":
        import xgboost

        model = xgboost.XGBClassifier(n_estimators=30, max_depth=3).fit(num, y)
        want = model.predict_proba(num.head(50))[:, 1]
    elif library == "lightgbm":
        import lightgbm

        model = lightgbm.LGBMRegressor(n_estimators=30, num_leaves=8, verbose=-1).fit(num, target)
        want = model.predict(num.head(50))
    else:
        import catboost

        model = catboost.CatBoostClassifier(iterations=30, depth=3, verbose=False, allow_writing_files=False).fit(num, y)
        want = model.predict_proba(num.head(50))[:, 1]
    info = sqlscore.register(con, f"m_{library}", model, sample=num.head(100))
    assert [i["name"] for i in info.inputs] == ["age", "income", "balance"]
    got = sqlscore.score_frame(con, f"m_{library}", num.head(50)[["balance", "age", "income"]])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("library", ["xgboost", "lightgbm"])
def test_pipeline_ending_in_a_booster(con, data, library):
    """A ColumnTransformer (text column included) feeding XGBoost / LightGBM inside one pipeline."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    df, y, target = data
    if library == "xgboost":
        import xgboost

        last, fit_y = xgboost.XGBClassifier(n_estimators=20, max_depth=3), y
    else:
        import lightgbm

        last, fit_y = lightgbm.LGBMRegressor(n_estimators=20, num_leaves=8, verbose=-1), target
    # Numbers passed through: a scaler computes in float64 in scikit-learn and float32 in ONNX, and
    # a value that lands on the other side of a split threshold changes a tree's leaf (the check
    # then refuses the model, as it should).
    pipe = Pipeline([
        ("prep", ColumnTransformer([("num", "passthrough", ["age", "income", "balance"]),
                                    ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["city"])])),
        ("model", last),
    ]).fit(df, fit_y)
    info = sqlscore.register(con, f"p_{library}", pipe, sample=df.head(100))
    assert [i["name"] for i in info.inputs] == ["age", "income", "balance", "city"]
    got = sqlscore.score_frame(con, f"p_{library}", df.head(50))
    want = pipe.predict_proba(df.head(50))[:, 1] if library == "xgboost" else pipe.predict(df.head(50))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_onnx_given_as_is(con):
    raw = (ROOT / "models" / "logistic_binary.onnx").read_bytes()
    a = sqlscore.register(con, "raw", raw)
    b = sqlscore.register(con, "raw", onnx.load_from_string(raw))
    assert (a.version, b.version) == (1, 2) and a.sha256 == b.sha256 and a.check is None


def test_refusals(con, data):
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LogisticRegression

    df, y, target = data
    num = df[["age", "income", "balance"]]
    rf = RandomForestRegressor(n_estimators=5, random_state=0).fit(num, target)
    # float32 thresholds inside the ONNX model: not bit-identical, so a zero tolerance refuses it...
    with pytest.raises(sqlscore.ConversionError, match="differs from the RandomForestRegressor"):
        sqlscore.register(con, "strict", rf, sample=num.head(100), tolerance=0)
    # ...unless told otherwise.
    assert sqlscore.register(con, "strict", rf, sample=num.head(100), tolerance=0, check_conversion=False).version == 1
    with pytest.raises(sqlscore.ConversionError, match="needs sample="):
        sqlscore.register(con, "nosample", rf)
    with pytest.raises(sqlscore.ConversionError, match="city"):
        sqlscore.register(con, "text", LogisticRegression().fit(df[["age"]].assign(city=0), y),
                          sample=df[["age", "city"]])
    with pytest.raises(sqlscore.ConversionError, match="no converter"):
        sqlscore.register(con, "what", object(), sample=num)
    with pytest.raises(sqlscore.ConversionError, match="lacks the column"):
        sqlscore.register(con, "short", rf, sample=num[["age", "income"]])
    with pytest.raises(TypeError, match="DuckDB or psycopg"):
        sqlscore.register(object(), "x", rf, sample=num)
