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
    # A model the converter rejects: its error, as a ConversionError naming the model.
    from sklearn.cluster import AgglomerativeClustering

    with pytest.raises(sqlscore.ConversionError, match="AgglomerativeClustering could not be converted"):
        sqlscore.register(con, "clusters", AgglomerativeClustering().fit(num.head(50)), sample=num.head(50))
    with pytest.raises(TypeError, match="DuckDB or psycopg"):
        sqlscore.register(object(), "x", rf, sample=num)


def test_multiclass_bool_labels_and_decision_functions(con, data):
    from sklearn.linear_model import LogisticRegression, SGDClassifier

    df, y, target = data
    num = df[["age", "income", "balance"]]
    three = np.digitize(target, np.quantile(target, [1 / 3, 2 / 3]))
    multi = LogisticRegression(max_iter=1000).fit(num, three)
    sqlscore.register(con, "multi", multi, sample=num.head(100))
    # A multiclass model's score is its top class's probability.
    np.testing.assert_allclose(sqlscore.score_frame(con, "multi", num.head(40)),
                               multi.predict_proba(num.head(40)).max(axis=1), atol=1e-5)
    # Labels that are bools (or floats) on the scikit-learn side, int64 in ONNX.
    flags = LogisticRegression(max_iter=500).fit(num, y.astype(bool))
    assert sqlscore.register(con, "flags", flags, sample=num.head(100)).check.label_mismatches == 0
    # No probabilities: the decision function is what is compared.
    hinge = SGDClassifier(loss="hinge", random_state=0).fit((num - num.mean()) / num.std(), y)
    info = sqlscore.register(con, "hinge", hinge, sample=((num - num.mean()) / num.std()).head(100))
    # (skl2onnx names that output "probabilities" too; the values are decision values, not in [0, 1])
    assert info.check.scale > 1 and info.check.label_mismatches == 0
    np.testing.assert_allclose(sqlscore.score_frame(con, "hinge", ((num - num.mean()) / num.std()).head(20)),
                               hinge.decision_function(((num - num.mean()) / num.std()).head(20)), rtol=1e-4, atol=1e-4)


def test_column_names_are_kept_and_order_needs_names(con, data):
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    df, y, target = data
    odd = df.rename(columns={"age": "my age", "income": "label", "city": "home.city"})
    pipe = Pipeline([
        ("prep", ColumnTransformer([("num", StandardScaler(), ["my age", "label", "balance"]),
                                    ("cat", OneHotEncoder(handle_unknown="ignore"), ["home.city"])])),
        ("reg", LinearRegression()),
    ]).fit(odd, target)
    info = sqlscore.register(con, "odd_names", pipe, sample=odd.head(50))
    assert [i["name"] for i in info.inputs] == ["my age", "label", "balance", "home.city"]
    np.testing.assert_allclose(sqlscore.score_frame(con, "odd_names", odd.head(20)), pipe.predict(odd.head(20)),
                               rtol=1e-4)
    # Fit on a numpy array: no names, so the order is the sample's; a sample of another width is refused.
    num = df[["age", "income", "balance"]]
    bare = RandomForestRegressor(n_estimators=5, random_state=0).fit(num.to_numpy(), target)
    with pytest.raises(sqlscore.ConversionError, match="no feature names and was trained on 3 features"):
        sqlscore.register(con, "bare", bare, sample=df)
    with pytest.warns(UserWarning, match="taken as the training order"):
        sqlscore.register(con, "bare", bare, sample=num.head(50))


def test_pipeline_with_pandas_output_ending_in_xgboost(con, data):
    import xgboost
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    df, y, _ = data
    pipe = Pipeline([
        ("prep", ColumnTransformer([("num", "passthrough", ["age", "income", "balance"]),
                                    ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), ["city"])])
         .set_output(transform="pandas")),
        ("model", xgboost.XGBClassifier(n_estimators=10, max_depth=3)),
    ]).fit(df, y)
    sqlscore.register(con, "xgb_pandas", pipe, sample=df.head(100))
    np.testing.assert_allclose(sqlscore.score_frame(con, "xgb_pandas", df.head(30)),
                               pipe.predict_proba(df.head(30))[:, 1], rtol=1e-4, atol=1e-5)
    # The user's model keeps its feature names.
    assert pipe[-1].get_booster().feature_names is not None


def test_nullable_values_score_null(con, data):
    from sklearn.linear_model import LinearRegression

    df, _, target = data
    num = df[["age", "income", "balance"]]
    lr = LinearRegression().fit(num, target)
    sqlscore.register(con, "lin", lr, sample=num.head(50))
    frame = num.head(5).astype({"age": "Int64"})
    frame.loc[2, "age"] = pd.NA
    got = sqlscore.score_frame(con, "lin", frame)
    assert np.isnan(got[2]) and not np.isnan(got[[0, 1, 3, 4]]).any()


def test_postgres_transactions_are_the_callers(con, data):
    if not isinstance(con, psycopg.Connection):
        pytest.skip("PostgreSQL only")
    from sklearn.linear_model import LinearRegression

    df, _, target = data
    num = df[["age", "income", "balance"]]
    lr = LinearRegression().fit(num, target)
    # A failed registration leaves the connection usable.
    with pytest.raises(psycopg.Error):
        sqlscore.register(con, "bad@name", lr, sample=num.head(20))
    assert con.execute("SELECT 1").fetchone() == (1,)
    con.commit()
    # Inside the caller's transaction: registered with it, and rolled back with it.
    with pytest.raises(RuntimeError, match="undo"):
        with con.transaction():
            assert sqlscore.register(con, "rolled_back", lr, sample=num.head(20)).version == 1
            raise RuntimeError("undo")
    assert con.execute("SELECT count(*) FROM sqlscore.models WHERE name = 'rolled_back'").fetchone() == (0,)
    # score_frame commits nothing of the caller's.
    sqlscore.register(con, "kept", lr, sample=num.head(20))
    con.execute("CREATE TABLE pending (x int)")
    sqlscore.score_frame(con, "kept", num.head(3))
    con.rollback()
    assert con.execute("SELECT to_regclass('pending')").fetchone() == (None,)
    con.commit()
