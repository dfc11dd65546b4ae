-- Views for BI dashboards over anomaly_scores, the demo job's target (created by the demo; safe
-- to rerun). The score is the OneClassSVM decision function: below 0 is an anomaly.
CREATE OR REPLACE VIEW anomaly_readings AS
SELECT id, device_id, sensor_id, ts, value, score, score < 0 AS is_anomaly, injected,
       model, model_version, run_id, scored_at, source_file
FROM anomaly_scores;

CREATE OR REPLACE VIEW anomalies_by_sensor AS
SELECT device_id, sensor_id,
       count(*)                              AS readings,
       count(*) FILTER (WHERE is_anomaly)    AS anomalies,
       round(100.0 * count(*) FILTER (WHERE is_anomaly) / count(*), 3)::DOUBLE AS anomaly_pct,
       min(score)                            AS worst_score
FROM anomaly_readings
GROUP BY ALL;

CREATE OR REPLACE VIEW anomalies_by_hour AS
SELECT date_trunc('hour', ts) AS hour, device_id,
       count(*) FILTER (WHERE is_anomaly) AS anomalies,
       count(*)                           AS readings
FROM anomaly_readings
GROUP BY ALL;

-- How well the per-sensor models find the injected anomalies.
CREATE OR REPLACE VIEW detection_quality AS
SELECT count(*) FILTER (WHERE injected AND is_anomaly)         AS true_positives,
       count(*) FILTER (WHERE injected AND NOT is_anomaly)     AS missed,
       count(*) FILTER (WHERE NOT injected AND is_anomaly)     AS false_alarms,
       count(*) FILTER (WHERE NOT injected AND NOT is_anomaly) AS true_negatives
FROM anomaly_readings;

-- What the scoring job did, run by run (operators' view).
CREATE OR REPLACE VIEW job_history AS
SELECT run_id, job, status, started_at, finished_at, rows_scored, rows_rejected, files_scored, error
FROM sqlscore_job_runs;
