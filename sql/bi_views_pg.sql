-- The demo's BI views in PostgreSQL, over the job's target anomaly_scores and sqlscore's job views
-- (created by `sqlscore demo --db postgres://...`; safe to rerun). The same views, columns and
-- types as sql/bi_views.sql defines in DuckDB: the dashboard (dashboard/) reads either through the
-- same datasets. The score is the OneClassSVM decision function: below 0 is an anomaly.
-- {job} is the demo job's name. Dropped and re-created: CREATE OR REPLACE cannot change columns.
DROP VIEW IF EXISTS anomaly_readings, anomalies_by_sensor, anomalies_by_hour, score_histogram,
    detection_quality, job_history, job_backlog, score_drift, score_drift_by_run CASCADE;

CREATE VIEW anomaly_readings AS
SELECT id, device_id, sensor_id, ts, value, score, score < 0 AS is_anomaly, injected,
       model, model_version::bigint AS model_version, run_id, scored_at
FROM anomaly_scores;

CREATE VIEW anomalies_by_sensor AS
SELECT device_id, sensor_id,
       count(*)                              AS readings,
       count(*) FILTER (WHERE is_anomaly)    AS anomalies,
       round(100.0 * count(*) FILTER (WHERE is_anomaly) / count(*), 3)::float8 AS anomaly_pct,
       min(score)                            AS worst_score
FROM anomaly_readings
GROUP BY device_id, sensor_id;

CREATE VIEW anomalies_by_hour AS
SELECT date_trunc('hour', ts)                              AS hour,
       count(*)                                            AS readings,
       count(*) FILTER (WHERE is_anomaly)                  AS anomalies,
       count(*) FILTER (WHERE injected)                    AS injected,
       count(*) FILTER (WHERE injected AND is_anomaly)     AS injected_found
FROM anomaly_readings
GROUP BY date_trunc('hour', ts);

CREATE VIEW score_histogram AS
SELECT round(greatest(-0.3, least(0.1, floor(score * 100) / 100))::numeric, 2)::float8 AS score_bin,
       count(*)                           AS readings,
       count(*) FILTER (WHERE is_anomaly) AS anomalies
FROM anomaly_readings
WHERE score IS NOT NULL
GROUP BY 1;

CREATE VIEW detection_quality AS
SELECT count(*) FILTER (WHERE injected AND is_anomaly)         AS true_positives,
       count(*) FILTER (WHERE injected AND NOT is_anomaly)     AS missed,
       count(*) FILTER (WHERE NOT injected AND is_anomaly)     AS false_alarms,
       count(*) FILTER (WHERE NOT injected AND NOT is_anomaly) AS true_negatives
FROM anomaly_readings;

CREATE VIEW job_history AS
SELECT run_id, job, status, started_at, finished_at,
       extract(epoch FROM coalesce(finished_at, clock_timestamp()) - started_at)::float8 AS duration_s,
       rows_scored, rows_rejected, rows_per_s::float8 AS rows_per_s, error
FROM sqlscore.job_runs;

-- What is waiting: rows queued for the job, and how long the oldest has waited.
CREATE VIEW job_backlog AS
SELECT name AS job, last_run_id, last_status, last_finished_at,
       coalesce(backlog, 0)::bigint AS backlog, 'rows'::text AS backlog_unit,
       coalesce(extract(epoch FROM lag), 0)::float8 AS lag_s
FROM sqlscore.jobs
WHERE name = '{job}';

CREATE VIEW score_drift AS
SELECT s.run_id, r.started_at AS run_started_at, s.model, s.model_version::bigint AS model_version,
       count(*)                                                    AS readings,
       avg(s.score)                                                AS score_mean,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY s.score)       AS score_p95,
       count(*) FILTER (WHERE s.score < 0)                         AS anomalies
FROM anomaly_scores s LEFT JOIN sqlscore.job_runs r ON r.run_id = s.run_id
GROUP BY s.run_id, r.started_at, s.model, s.model_version;

CREATE VIEW score_drift_by_run AS
SELECT s.run_id, r.started_at AS run_started_at,
       count(*)                                                    AS readings,
       avg(s.score)                                                AS score_mean,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY s.score)       AS score_p95,
       count(*) FILTER (WHERE s.score < 0)                         AS anomalies
FROM anomaly_scores s LEFT JOIN sqlscore.job_runs r ON r.run_id = s.run_id
GROUP BY s.run_id, r.started_at;
