"""The model may differ from row to row: each row is scored by its own model, even when one
chunk mixes many models (Infera scores a whole chunk with row 0's model: we must not)."""
from conftest import load_reference_table, reference, register


def test_rows_of_one_chunk_use_their_own_model(con):
    ref = reference("logistic_binary")
    cols = ", ".join(load_reference_table(con, "t", ref))
    register(con, "lr", "logistic_binary")
    register(con, "gbm", "gbm_classifier")
    alone = {
        m: dict(con.execute(f"SELECT id, score('{m}', {cols}) FROM t").fetchall()) for m in ("lr", "gbm")
    }
    mixed = con.execute(
        f"SELECT id, CASE WHEN id % 3 = 0 THEN 'gbm' ELSE 'lr' END AS m, score(m, {cols}) FROM t"
    ).fetchall()
    assert len(mixed) == ref["rows"]
    for id_, m, s in mixed:
        assert s == alone[m][id_], (id_, m)
    assert alone["lr"] != alone["gbm"]


def test_per_sensor_models_across_many_chunks(con):
    """The demo's shape: 'anomaly_' || sensor_id over rows interleaving 15 models."""
    import pathlib
    demo = pathlib.Path(__file__).resolve().parents[2] / "models" / "demo"
    sensors = [f"d{d}_s{s}" for d in range(3) for s in range(5)]
    for sensor in sensors:
        con.execute("INSERT INTO sqlscore_models FROM sqlscore_register(?, ?)",
                    [f"anomaly_{sensor}", str(demo / f"anomaly_{sensor}.onnx")])
    con.execute(
        "CREATE TABLE readings AS SELECT i AS id, 'd' || (i % 3) || '_s' || ((i // 3) % 5) AS sensor_id, "
        "(10 * (((i // 3) % 5) + 1) + 3 * (i % 3))::DOUBLE + ((i % 7) - 3) * 0.1 AS value FROM range(10000) r(i)"
    )
    per_row = dict(con.execute("SELECT id, score('anomaly_' || sensor_id, value) FROM readings").fetchall())
    for sensor in ("d0_s0", "d2_s4"):
        direct = con.execute(
            f"SELECT id, score('anomaly_{sensor}', value) FROM readings WHERE sensor_id = '{sensor}'"
        ).fetchall()
        assert direct and all(per_row[i] == s for i, s in direct)
    # Readings at their sensor's mean are normal for their own model (score >= 0) ...
    assert con.execute("SELECT count(*) FROM readings WHERE score('anomaly_' || sensor_id, value) < 0").fetchone()[0] == 0
    # ... and anomalous for a model of another sensor.
    assert con.execute("SELECT count(*) FROM readings WHERE score('anomaly_d0_s0', value) < 0").fetchone()[0] > 5000


def test_parallel_threads_give_same_results(con):
    register(con, "gbm", "gbm_regressor")
    con.execute(
        "CREATE TABLE big AS SELECT i AS id, " + ", ".join(f"sin(i * {k + 1}) AS x{k}" for k in range(8))
        + " FROM range(200000) r(i)"
    )
    q = "SELECT sum(score('gbm', x0, x1, x2, x3, x4, x5, x6, x7)), count(*) FROM big"
    con.execute("SET threads = 1")
    one = con.execute(q).fetchone()
    con.execute("SET threads = 4")
    four = con.execute(q).fetchone()
    assert one[1] == four[1] == 200000
    assert abs(one[0] - four[0]) < 1e-6 * abs(one[0])
