-- The demo's BI views in PostgreSQL, over the job's target anomaly_scores and sqlscore's job views
-- (created by `sqlscore demo --db postgres://...`; safe to rerun). The same views, columns and
-- types as sql/bi_views.sql defines in DuckDB: the dashboard (dashboard/) reads either through the
-- same datasets. The score is the OneClassSVM decision function: below 0 is an anomaly.
-- {job} is the demo job's name.
--
-- CREATE OR REPLACE keeps what was granted on the views (the dashboard's read-only role reads
-- them and nothing else: scripts/dashboard.sh). sqlscore's job tables show each role its own jobs
-- only (row-level security), so the job views read them through two SECURITY DEFINER functions of
-- this file's owner, limited to the demo job, that nobody else may call directly.

CREATE OR REPLACE FUNCTION bi_job_runs()
RETURNS TABLE (run_id bigint, job text, status text, started_at timestamptz, finished_at timestamptz,
               rows_scored bigint, rows_rejected bigint, rows_per_s numeric, error text)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT r.run_id, r.job::text, r.status::text, r.started_at, r.finished_at, r.rows_scored, r.rows_rejected,
           r.rows_per_s, r.error::text
    FROM sqlscore.job_runs r WHERE r.job = '{job}'
$$;
REVOKE ALL ON FUNCTION bi_job_runs() FROM PUBLIC;

CREATE OR REPLACE FUNCTION bi_jobs()
RETURNS TABLE (job text, last_run_id bigint, last_finished_at timestamptz, backlog bigint, lag interval)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT j.name::text, j.last_run_id, j.last_finished_at, j.backlog, j.lag
    FROM sqlscore.jobs j WHERE j.name = '{job}'
$$;
REVOKE ALL ON FUNCTION bi_jobs() FROM PUBLIC;

CREATE OR REPLACE VIEW anomaly_readings AS
SELECT id, device_id, sensor_id, ts, value, score, score < 0 AS is_anomaly, injected,
       model, model_version::bigint AS model_version, run_id, scored_at, NULL::text AS source_file
FROM anomaly_scores;

CREATE OR REPLACE VIEW anomalies_by_sensor AS
SELECT device_id, sensor_id,
       count(*)                              AS readings,
       count(*) FILTER (WHERE is_anomaly)    AS anomalies,
       round(100.0 * count(*) FILTER (WHERE is_anomaly) / count(*), 3)::float8 AS anomaly_pct,
       min(score)                            AS worst_score
FROM anomaly_readings
GROUP BY device_id, sensor_id;

CREATE OR REPLACE VIEW anomalies_by_hour AS
SELECT date_trunc('hour', ts)                              AS hour, device_id,
       count(*)                                            AS readings,
       count(*) FILTER (WHERE is_anomaly)                  AS anomalies,
       count(*) FILTER (WHERE injected)                    AS injected,
       count(*) FILTER (WHERE injected AND is_anomaly)     AS injected_found
FROM anomaly_readings
GROUP BY date_trunc('hour', ts), device_id;

CREATE OR REPLACE VIEW score_histogram AS
SELECT round(greatest(-0.3, least(0.1, floor(score * 100) / 100))::numeric, 2)::float8 AS score_bin,
       count(*)                           AS readings,
       count(*) FILTER (WHERE is_anomaly) AS anomalies
FROM anomaly_readings
WHERE score IS NOT NULL
GROUP BY 1;

CREATE OR REPLACE VIEW detection_quality AS
SELECT count(*) FILTER (WHERE injected AND is_anomaly)         AS true_positives,
       count(*) FILTER (WHERE injected AND NOT is_anomaly)     AS missed,
       count(*) FILTER (WHERE NOT injected AND is_anomaly)     AS false_alarms,
       count(*) FILTER (WHERE NOT injected AND NOT is_anomaly) AS true_negatives
FROM anomaly_readings;

-- Statuses as sqlscore.job_runs shows them: a run whose backends are all gone is failed.
CREATE OR REPLACE VIEW job_history AS
SELECT run_id, job, status, started_at, finished_at,
       extract(epoch FROM coalesce(finished_at, clock_timestamp()) - started_at)::float8 AS duration_s,
       rows_scored, rows_rejected, NULL::bigint AS files_scored, rows_per_s::float8 AS rows_per_s, error
FROM bi_job_runs();

-- What is waiting: rows queued for the job, and how long the oldest has waited.
CREATE OR REPLACE VIEW job_backlog AS
SELECT j.job, j.last_run_id, r.status AS last_status, j.last_finished_at,
       coalesce(j.backlog, 0)::bigint AS backlog, 'rows'::text AS backlog_unit,
       coalesce(extract(epoch FROM j.lag), 0)::float8 AS lag_s
FROM bi_jobs() j LEFT JOIN bi_job_runs() r ON r.run_id = j.last_run_id;

CREATE OR REPLACE VIEW score_drift AS
SELECT s.run_id, r.started_at AS run_started_at, s.model, s.model_version::bigint AS model_version,
       count(*)                                                    AS readings,
       avg(s.score)                                                AS score_mean,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY s.score)       AS score_p95,
       count(*) FILTER (WHERE s.score < 0)                         AS anomalies
FROM anomaly_scores s LEFT JOIN bi_job_runs() r ON r.run_id = s.run_id
GROUP BY s.run_id, r.started_at, s.model, s.model_version;

CREATE OR REPLACE VIEW score_drift_by_run AS
SELECT s.run_id, r.started_at AS run_started_at,
       count(*)                                                    AS readings,
       avg(s.score)                                                AS score_mean,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY s.score)       AS score_p95,
       count(*) FILTER (WHERE s.score < 0)                         AS anomalies
FROM anomaly_scores s LEFT JOIN bi_job_runs() r ON r.run_id = s.run_id
GROUP BY s.run_id, r.started_at;
