-- The batch-scoring job: one statement, the model chosen per row from the reading's sensor.
INSERT INTO anomaly_scores
SELECT id, device_id, sensor_id, ts, value, s AS score, s < 0 AS is_anomaly, injected
FROM (
    SELECT r.*, score('anomaly_' || sensor_id, value) AS s
    FROM read_parquet('{parquet}') r
);
