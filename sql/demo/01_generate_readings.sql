-- IoT readings for the demo: {devices} devices x {sensors} sensors, one reading every
-- {interval} seconds, steps {first} to {last} (exclusive), written as one Parquet file of the
-- "data lake" (the demo lands one file per 6 hours of readings).
-- Sensor s of device d reads N(mean, std) with mean = 10*(s+1) + 3*d, std = 1 + 0.25*s + 0.1*d:
-- the same formula models/make_demo_models.py trains the per-sensor models on.
-- About 0.5% of readings are injected anomalies, 6 to 10 standard deviations away.
-- Random numbers come from hash(), so the data is the same on every run.
COPY (
    WITH grid AS (
        SELECT d.d AS device, s.s AS sensor, t.t AS step,
               10 * (s.s + 1) + 3 * d.d AS mean,
               1 + 0.25 * s.s + 0.1 * d.d AS std,
               (hash(d.d, s.s, t.t, 1) % 1000000 + 0.5) / 1000000.0 AS u1,
               (hash(d.d, s.s, t.t, 2) % 1000000) / 1000000.0 AS u2,
               hash(d.d, s.s, t.t, 3) % 1000 AS roll
        FROM range({devices}) d(d), range({sensors}) s(s), range({first}, {last}) t(t)
    )
    -- ids grow with time, so files landed later hold higher ids.
    SELECT step * {devices} * {sensors} + device * {sensors} + sensor AS id,
           'd' || device AS device_id,
           'd' || device || '_s' || sensor AS sensor_id,
           TIMESTAMP '2026-01-01 00:00:00' + to_seconds(step * {interval}) AS ts,
           CASE WHEN roll < 5
                THEN mean + std * (6 + 4 * u2) * (CASE WHEN roll % 2 = 0 THEN 1 ELSE -1 END)
                ELSE mean + std * sqrt(-2 * ln(u1)) * cos(2 * pi() * u2)
           END AS value,
           roll < 5 AS injected
    FROM grid
) TO '{parquet}' (FORMAT parquet);
