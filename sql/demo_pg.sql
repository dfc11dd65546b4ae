-- The IoT demo inside PostgreSQL (sqlscore demo --db postgres://...): same distributions as the
-- DuckDB demo (mean = 10*(s+1) + 3*d, std = 1 + 0.25*s + 0.1*d, ~0.5% injected anomalies).
DROP TABLE IF EXISTS readings, anomaly_scores;
SELECT setseed(0.42);
CREATE TABLE readings AS
SELECT (d * {sensors} + s) * {steps} + t AS id,
       'd' || d AS device_id,
       'd' || d || '_s' || s AS sensor_id,
       timestamp '2026-01-01' + make_interval(secs => t * {interval}) AS ts,
       CASE WHEN roll < 0.005
            THEN mean + std * (6 + 4 * u2) * (CASE WHEN roll < 0.0025 THEN 1 ELSE -1 END)
            ELSE mean + std * sqrt(-2 * ln(u1)) * cos(2 * pi() * u2)
       END AS value,
       roll < 0.005 AS injected
FROM (
    SELECT d, s, t, 10 * (s + 1) + 3 * d AS mean, 1 + 0.25 * s + 0.1 * d AS std,
           1 - random() AS u1, random() AS u2, random() AS roll
    FROM generate_series(0, {devices} - 1) d, generate_series(0, {sensors} - 1) s,
         generate_series(0, {steps} - 1) t
) g;
CREATE TABLE anomaly_scores (
    id bigint, device_id text, sensor_id text, ts timestamp, value float8,
    score float8, is_anomaly boolean, injected boolean
);
-- @score
INSERT INTO anomaly_scores
SELECT id, device_id, sensor_id, ts, value, s, s < 0, injected
FROM (SELECT r.*, sqlscore.score('anomaly_' || sensor_id, value) AS s FROM readings r) x
