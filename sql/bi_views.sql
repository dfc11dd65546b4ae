-- The demo's BI views in DuckDB, over the job's target anomaly_scores and the job tables
-- (created by `sqlscore demo`; safe to rerun). sql/bi_views_pg.sql defines the same views, with the
-- same columns and types, in PostgreSQL: the dashboard (dashboard/) reads either through the same
-- datasets. The score is the OneClassSVM decision function: below 0 is an anomaly.
-- {job} is the demo job's name, {glob} its source glob (absolute).

CREATE OR REPLACE VIEW anomaly_readings AS
SELECT id, device_id, sensor_id, ts, value, score, score < 0 AS is_anomaly, injected,
       model, CAST(model_version AS BIGINT) AS model_version, run_id, scored_at, source_file
FROM anomaly_scores;

CREATE OR REPLACE VIEW anomalies_by_sensor AS
SELECT device_id, sensor_id,
       count(*)                              AS readings,
       count(*) FILTER (WHERE is_anomaly)    AS anomalies,
       CAST(round(100.0 * count(*) FILTER (WHERE is_anomaly) / count(*), 3) AS DOUBLE) AS anomaly_pct,
       min(score)                            AS worst_score
FROM anomaly_readings
GROUP BY device_id, sensor_id;

-- Per hour of reading time, with the injected anomalies (the demo's ground truth) next to what
-- the models flagged.
CREATE OR REPLACE VIEW anomalies_by_hour AS
SELECT date_trunc('hour', ts)                              AS hour, device_id,
       count(*)                                            AS readings,
       count(*) FILTER (WHERE is_anomaly)                  AS anomalies,
       count(*) FILTER (WHERE injected)                    AS injected,
       count(*) FILTER (WHERE injected AND is_anomaly)     AS injected_found
FROM anomaly_readings
GROUP BY date_trunc('hour', ts), device_id;

-- The score distribution in bins of 0.01; the long tail below -0.3 (and above 0.1) is kept in
-- the end bins.
CREATE OR REPLACE VIEW score_histogram AS
SELECT CAST(round(greatest(-0.3, least(0.1, floor(score * 100) / 100)), 2) AS DOUBLE) AS score_bin,
       count(*)                           AS readings,
       count(*) FILTER (WHERE is_anomaly) AS anomalies
FROM anomaly_readings
WHERE score IS NOT NULL
GROUP BY 1;

-- How well the per-sensor models find the injected anomalies.
CREATE OR REPLACE VIEW detection_quality AS
SELECT count(*) FILTER (WHERE injected AND is_anomaly)         AS true_positives,
       count(*) FILTER (WHERE injected AND NOT is_anomaly)     AS missed,
       count(*) FILTER (WHERE NOT injected AND is_anomaly)     AS false_alarms,
       count(*) FILTER (WHERE NOT injected AND NOT is_anomaly) AS true_negatives
FROM anomaly_readings;

-- What the scoring jobs did, run by run (operators' view). A run whose process was killed stays
-- `running` here until the job's next run records it as failed (`sqlscore job runs` shows it
-- failed at once: it checks the process).
CREATE OR REPLACE VIEW job_history AS
SELECT run_id, job, status, started_at, finished_at,
       CAST(epoch(coalesce(finished_at, current_timestamp) - started_at) AS DOUBLE) AS duration_s,
       rows_scored, rows_rejected, files_scored,
       CAST(round(rows_scored / greatest(epoch(coalesce(finished_at, current_timestamp) - started_at), 0.001), 1)
            AS DOUBLE) AS rows_per_s,
       error
FROM sqlscore_job_runs;

-- What is waiting: files of the lake the job has not scored (new, or rewritten since), and how
-- long the oldest of them has waited. Read from the folder when the view is queried, so a
-- dashboard sees a file land before any run. read_blob gives whole seconds: a file rewritten with
-- the same size within the second it was scored shows no backlog (the job itself compares
-- microseconds and does rescore it).
CREATE OR REPLACE VIEW job_backlog AS
WITH landed AS (
    SELECT filename AS path, size, epoch_us(last_modified) AS mtime_us FROM read_blob('{glob}')
), pending AS (
    SELECT l.* FROM landed l
    WHERE NOT EXISTS (SELECT 1 FROM sqlscore_job_files f
                      WHERE f.job = '{job}' AND f.path = l.path AND f.size = l.size
                        AND f.mtime_us // 1000000 = l.mtime_us // 1000000)
), last_run AS (
    SELECT run_id, status, finished_at FROM sqlscore_job_runs WHERE job = '{job}' ORDER BY run_id DESC LIMIT 1
)
SELECT '{job}' AS job,
       (SELECT run_id FROM last_run)      AS last_run_id,
       (SELECT status FROM last_run)      AS last_status,
       (SELECT finished_at FROM last_run) AS last_finished_at,
       (SELECT count(*) FROM pending)     AS backlog,
       'files'                            AS backlog_unit,
       CAST(coalesce(epoch_us(current_timestamp) - (SELECT min(mtime_us) FROM pending), 0) / 1e6 AS DOUBLE) AS lag_s;

-- Score drift: mean and 95th percentile of the score per run and model, and per run.
CREATE OR REPLACE VIEW score_drift AS
SELECT s.run_id, r.started_at AS run_started_at, s.model, CAST(s.model_version AS BIGINT) AS model_version,
       count(*)                                                    AS readings,
       avg(s.score)                                                AS score_mean,
       CAST(percentile_cont(0.95) WITHIN GROUP (ORDER BY s.score) AS DOUBLE) AS score_p95,
       count(*) FILTER (WHERE s.score < 0)                         AS anomalies
FROM anomaly_scores s LEFT JOIN sqlscore_job_runs r ON r.run_id = s.run_id
GROUP BY s.run_id, r.started_at, s.model, s.model_version;

CREATE OR REPLACE VIEW score_drift_by_run AS
SELECT s.run_id, r.started_at AS run_started_at,
       count(*)                                                    AS readings,
       avg(s.score)                                                AS score_mean,
       CAST(percentile_cont(0.95) WITHIN GROUP (ORDER BY s.score) AS DOUBLE) AS score_p95,
       count(*) FILTER (WHERE s.score < 0)                         AS anomalies
FROM anomaly_scores s LEFT JOIN sqlscore_job_runs r ON r.run_id = s.run_id
GROUP BY s.run_id, r.started_at;
