-- The IoT demo inside PostgreSQL (sqlscore demo --db postgres://...): the same distributions as
-- the DuckDB demo (sensor s of device d reads N(mean, std) with mean = 10*(s+1) + 3*d,
-- std = 1 + 0.25*s + 0.1*d; ~0.5% injected anomalies 6 to 10 standard deviations away), landed
-- into a table that the job `anomaly` scores: the demo inserts readings, the job scores what is new.
-- Random numbers come from md5() of (device, sensor, step), so the data is the same on every run.
-- @setup
CREATE TABLE IF NOT EXISTS readings (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_id text NOT NULL,
    sensor_id text NOT NULL,
    ts        timestamp NOT NULL,
    value     float8,
    injected  boolean NOT NULL
);
-- @land: steps {first} to {last} (exclusive), one reading every {interval} seconds.
INSERT INTO readings (device_id, sensor_id, ts, value, injected)
SELECT 'd' || d, 'd' || d || '_s' || s,
       timestamp '2026-01-01' + make_interval(secs => t * {interval}),
       CASE WHEN roll < 5
            THEN mean + std * (6 + 4 * u2) * (CASE WHEN roll % 2 = 0 THEN 1 ELSE -1 END)
            ELSE mean + std * sqrt(-2 * ln(u1)) * cos(2 * pi() * u2)
       END,
       roll < 5
FROM (
    SELECT d, s, t, 10 * (s + 1) + 3 * d AS mean, 1 + 0.25 * s + 0.1 * d AS std,
           (h1 % 1000000 + 0.5) / 1000000.0 AS u1, (h2 % 1000000) / 1000000.0 AS u2, h3 % 1000 AS roll
    FROM (
        SELECT d, s, t,
               ('x' || substr(md5(d || ',' || s || ',' || t || ',1'), 1, 8))::bit(32)::bigint AS h1,
               ('x' || substr(md5(d || ',' || s || ',' || t || ',2'), 1, 8))::bit(32)::bigint AS h2,
               ('x' || substr(md5(d || ',' || s || ',' || t || ',3'), 1, 8))::bit(32)::bigint AS h3
        FROM generate_series({first}, {last} - 1) t, generate_series(0, {devices} - 1) d,
             generate_series(0, {sensors} - 1) s
    ) h
) g
ORDER BY t, d, s
