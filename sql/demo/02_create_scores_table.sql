-- The results table BI tools read. Recreated on every demo run so the demo is repeatable.
CREATE OR REPLACE TABLE anomaly_scores (
    id         BIGINT,
    device_id  VARCHAR,
    sensor_id  VARCHAR,
    ts         TIMESTAMP,
    value      DOUBLE,
    score      DOUBLE,   -- OneClassSVM decision function: below 0 = anomaly
    is_anomaly BOOLEAN,
    injected   BOOLEAN   -- ground truth from the generator, to check the models
);
