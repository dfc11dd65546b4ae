-- Scoring jobs: the SQL surface and its errors. (Concurrency, kill -9, streams, pg_cron and the
-- benchmark are in tests/pg_jobs.)
SELECT sqlscore.register_model('j_anomaly_' || s, model('anomaly_d0_s' || s)) FROM generate_series(0, 2) s;
CREATE TABLE j_readings (id bigserial PRIMARY KEY, sensor_id int NOT NULL, x float8, note text);
INSERT INTO j_readings (sensor_id, x, note) SELECT i % 3, sin(i), 'r' || i FROM generate_series(1, 3000) i;
CREATE TABLE j_nokey (id bigint, sensor_id int, x float8);
CREATE TABLE j_textkey (id text PRIMARY KEY, sensor_id int, x float8);

-- Everything checkable is checked at create time, naming the job and what is wrong.
SELECT try($$SELECT sqlscore.create_job('j', 'j_missing', 'id', '''j_anomaly_0''', 'j_out')$$);
SELECT try($$SELECT sqlscore.create_job('j', 'j_readings', 'idd', '''j_anomaly_0''', 'j_out')$$);
SELECT try($$SELECT sqlscore.create_job('j', 'j_textkey', 'id', '''j_anomaly_0''', 'j_out')$$);
SELECT try($$SELECT sqlscore.create_job('j', 'j_nokey', 'id', '''j_anomaly_0''', 'j_out')$$);
SELECT try($$SELECT sqlscore.create_job('j', 'j_readings', 'id', $m$'j_anomaly_' || sensr_id$m$, 'j_out', features => '{x}')$$);
SELECT try($$SELECT sqlscore.create_job('j', 'j_readings', 'id', $m$'j_anomaly_' || (sensor_id + 1)$m$, 'j_out', features => '{x}')$$);
SELECT try($$SELECT sqlscore.create_job('j', 'j_readings', 'id', $m$'j_anomaly_0'); DROP TABLE j_readings; --$m$, 'j_out')$$);
SELECT try($$SELECT sqlscore.create_job('j', 'j_readings', 'id', '''j_anomaly_0''', 'j_out', features => '{y}')$$);
SELECT try($$SELECT sqlscore.create_job('j', 'j_readings', 'id', '''j_anomaly_0''', 'j_out', features => '{x}', carry => '{score}')$$);
SELECT try($$SELECT sqlscore.create_job('j', 'j_readings', 'id', '''j_anomaly_0''', 'j_out', features => '{x}', on_error => 'skip')$$);
SELECT try($$SELECT sqlscore.create_job('j', 'j_readings', 'id', '''j_anomaly_0''', 'j_readings', features => '{x}')$$);
-- Nothing was left behind by the failures.
SELECT count(*) AS jobs, to_regclass('j_out') AS target FROM sqlscore.job_definitions;

-- One model per sensor; the target is created with the key, carried columns and results.
SELECT sqlscore.create_job('j', 'j_readings', 'id', $$'j_anomaly_' || sensor_id$$, 'j_out',
                           features => '{x}', carry => '{sensor_id,note}', batch_size => 1000);
SELECT try($$SELECT sqlscore.create_job('j', 'j_readings', 'id', '''j_anomaly_0''', 'j_out2', features => '{x}')$$);
\d j_out
SELECT name, source, key, model, target, features, carry, on_error, outputs, streaming, backlog, last_status FROM sqlscore.jobs;

-- A run scores the backlog in batches, once; a second run has nothing to do.
CALL sqlscore.run_job('j');
CALL sqlscore.run_job('j');
SELECT run_id, job, started_by, workers, status, rows_scored, rows_rejected, score_count, score_nulls, error
FROM sqlscore.job_runs ORDER BY run_id;
SELECT count(*) AS rows, count(DISTINCT id) AS keys, min(model_version) AS v FROM j_out;
-- The same scores as scoring each row directly.
SELECT count(*) AS mismatches FROM j_out o JOIN j_readings r USING (id)
WHERE o.sensor_id <> r.sensor_id OR o.note <> r.note OR o.model <> 'j_anomaly_' || r.sensor_id
   OR abs(o.score - sqlscore.score('j_anomaly_' || r.sensor_id, r.x)) > 1e-9;
-- Monitoring figures are the target's.
SELECT r.rows_scored = t.n AS rows_match, abs(r.score_mean - t.mean) < 1e-9 AS mean_matches,
       r.score_min = t.min AND r.score_max = t.max AS range_matches,
       abs(r.score_p50 - t.p50) < 1e-9 AND abs(r.score_p95 - t.p95) < 1e-9 AS percentiles_match
FROM sqlscore.job_runs r,
     LATERAL (SELECT count(*) n, avg(score) mean, min(score) min, max(score) max,
                     percentile_cont(0.5) WITHIN GROUP (ORDER BY score) p50,
                     percentile_cont(0.95) WITHIN GROUP (ORDER BY score) p95
              FROM j_out o WHERE o.run_id = r.run_id) t
WHERE r.run_id = (SELECT min(run_id) FROM sqlscore.job_runs);

-- on_error = 'reject' (the default): a row with a NULL feature goes to job_rejects, the rest is written.
INSERT INTO j_readings (sensor_id, x, note) VALUES (1, NULL, 'null x'), (2, 0.5, 'fine');
CALL sqlscore.run_job('j');
SELECT job, key, model, error FROM sqlscore.job_rejects ORDER BY key;
SELECT status, rows_scored, rows_rejected FROM sqlscore.job_runs ORDER BY run_id DESC LIMIT 1;
-- on_error = 'null': the row is written with a NULL score.
SELECT sqlscore.alter_job('j', on_error => 'null');
INSERT INTO j_readings (sensor_id, x, note) VALUES (1, NULL, 'null again');
CALL sqlscore.run_job('j');
SELECT r.note, o.score IS NULL AS null_score FROM j_out o JOIN j_readings r USING (id) WHERE r.note = 'null again';
SELECT status, rows_scored, score_nulls FROM sqlscore.job_runs ORDER BY run_id DESC LIMIT 1;
-- on_error = 'raise': the run fails naming the job, run and column; the failing batch is not
-- committed and the row stays in the backlog.
SELECT sqlscore.alter_job('j', on_error => 'raise');
INSERT INTO j_readings (sensor_id, x, note) VALUES (2, NULL, 'raise me');
CALL sqlscore.run_job('j');
SELECT status, rows_scored, regexp_replace(error, 'run \d+', 'run N') AS error FROM sqlscore.job_runs ORDER BY run_id DESC LIMIT 1;
SELECT backlog FROM sqlscore.jobs WHERE name = 'j';
DELETE FROM j_readings WHERE note = 'raise me';

-- A model dropped between runs fails the run with a message naming it.
SELECT sqlscore.alter_job('j', on_error => 'reject');
INSERT INTO j_readings (sensor_id, x, note) VALUES (2, 0.1, 'orphan');
SELECT sqlscore.drop_model('j_anomaly_2');
CALL sqlscore.run_job('j');
SELECT status, regexp_replace(error, 'run \d+', 'run N') AS error FROM sqlscore.job_runs ORDER BY run_id DESC LIMIT 1;
SELECT sqlscore.register_model('j_anomaly_2', model('anomaly_d0_s2'));
CALL sqlscore.run_job('j');
SELECT status, rows_scored FROM sqlscore.job_runs ORDER BY run_id DESC LIMIT 1;
SELECT model_version FROM j_out o JOIN j_readings r USING (id) WHERE r.note = 'orphan';

-- Retention: finished runs older than sqlscore.job_history_days go when the job next runs.
SELECT min(run_id) AS first_run FROM sqlscore.job_run_log WHERE job = 'j' \gset
UPDATE sqlscore.job_run_log SET finished_at = now() - interval '30 days' WHERE run_id = :first_run;
SET sqlscore.job_history_days = 7;
CALL sqlscore.run_job('j');
RESET sqlscore.job_history_days;
SELECT count(*) FILTER (WHERE run_id = :first_run) AS expired_kept, count(*) > 0 AS others_kept FROM sqlscore.job_runs;

-- outputs may add the label (and probabilities, for classifiers).
CREATE TABLE j_labelled (id bigserial PRIMARY KEY, x float8 NOT NULL);
INSERT INTO j_labelled (x) VALUES (0.1), (5.0);
SELECT sqlscore.create_job('jl', 'j_labelled', 'id', '''j_anomaly_0''', 'j_labelled_out', features => '{x}',
                           outputs => '{score,label}');
CALL sqlscore.run_job('jl');
SELECT o.id, o.label IS NOT NULL AS labelled, o.label = sqlscore.predict('j_anomaly_0', l.x) AS label_matches
FROM j_labelled_out o JOIN j_labelled l USING (id) ORDER BY id;
SELECT sqlscore.drop_job('jl', drop_target => true);

-- alter_job checks like create_job.
SELECT try($$SELECT sqlscore.alter_job('j', model => '''j_nope''')$$);
SELECT try($$SELECT sqlscore.alter_job('j_none', batch_size => 10)$$);
SELECT try($$SELECT sqlscore.alter_job('j', batch_size => 0)$$);

-- An async run in background workers, waited for.
CREATE FUNCTION wait_run(run bigint) RETURNS text LANGUAGE plpgsql AS $$
DECLARE s text;
BEGIN
    FOR i IN 1..600 LOOP
        SELECT status INTO s FROM sqlscore.job_runs WHERE run_id = run;
        EXIT WHEN s <> 'running';
        PERFORM pg_sleep(0.05);
        PERFORM pg_stat_clear_snapshot();
    END LOOP;
    RETURN s;
END $$;
INSERT INTO j_readings (sensor_id, x, note) SELECT i % 3, cos(i), 'async' FROM generate_series(1, 2500) i;
SELECT sqlscore.submit_job('j', 2) AS run \gset
SELECT wait_run(:run);
SELECT started_by, workers, status, rows_scored FROM sqlscore.job_runs WHERE run_id = :run;
SELECT count(*) AS unscored FROM j_readings r WHERE NOT EXISTS (SELECT 1 FROM j_out o WHERE o.id = r.id)
  AND NOT EXISTS (SELECT 1 FROM sqlscore.job_rejects x WHERE x.key = r.id);
SELECT try($$SELECT sqlscore.submit_job('j', 0)$$);

-- cancel_run, schedules without pg_cron in this database, unknown runs and jobs.
SELECT try($$SELECT sqlscore.cancel_run(-1)$$);
SELECT sqlscore.cancel_run(:run) AS cancelled_finished_run;
SELECT try($$SELECT sqlscore.schedule_job('j', '*/5 * * * *')$$);
SELECT hint_of($$SELECT sqlscore.schedule_job('j', '*/5 * * * *')$$) AS schedule_hint;
CALL sqlscore.run_job('j_none');
-- A CALL that cannot commit (here inside try()'s exception block) is refused before anything starts.
SELECT try($$CALL sqlscore.run_job('j')$$) AS cannot_commit;
SELECT try($$SELECT sqlscore.stream_job('j', '0 seconds')$$);

-- Rejected rows can be put back in the queue once fixed.
UPDATE j_readings SET x = 0.25 WHERE note = 'null x';
SELECT sqlscore.requeue_rejects('j') AS requeued;
CALL sqlscore.run_job('j');
SELECT (SELECT count(*) FROM sqlscore.job_rejects) AS rejects, o.score IS NOT NULL AS scored
FROM j_out o JOIN j_readings r USING (id) WHERE r.note = 'null x';

-- Other roles see and run only their own jobs.
CREATE ROLE j_other;
GRANT SELECT, INSERT ON j_readings TO j_other;
GRANT USAGE ON SEQUENCE j_readings_id_seq TO j_other;
SET ROLE j_other;
SELECT count(*) AS visible_jobs FROM sqlscore.jobs;
SELECT count(*) AS visible_runs FROM sqlscore.job_runs;
CALL sqlscore.run_job('j');
WITH u AS (UPDATE sqlscore.job_definitions SET model = '''x''' WHERE name = 'j' RETURNING 1) SELECT count(*) AS changed FROM u;
-- Writers need no privileges on the queue: the trigger queues for them.
INSERT INTO j_readings (sensor_id, x, note) VALUES (0, 0.2, 'by other');
RESET ROLE;
SELECT backlog FROM sqlscore.jobs WHERE name = 'j';

-- A role that is not a superuser creates and runs its own job; whoever runs it (here a
-- superuser), the job's SQL runs as its owner, and cannot change role.
CREATE ROLE j_alice;
CREATE SCHEMA j_alice AUTHORIZATION j_alice;
CREATE TABLE j_alice.seen (who text);
ALTER TABLE j_alice.seen OWNER TO j_alice;
CREATE FUNCTION j_alice.model_for(sensor int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO j_alice.seen VALUES (current_user);
    RETURN 'j_anomaly_' || sensor;
END $$;
ALTER FUNCTION j_alice.model_for(int) OWNER TO j_alice;
SET ROLE j_alice;
CREATE TABLE j_alice.readings (id bigserial PRIMARY KEY, sensor_id int, x float8);
INSERT INTO j_alice.readings (sensor_id, x) SELECT i % 3, i FROM generate_series(1, 30) i;
SELECT sqlscore.create_job('alice', 'j_alice.readings', 'id', 'j_alice.model_for(sensor_id)', 'scores', features => '{x}');
CALL sqlscore.run_job('alice');
RESET ROLE;
TRUNCATE j_alice.seen;
INSERT INTO j_alice.readings (sensor_id, x) VALUES (1, 0.5);
CALL sqlscore.run_job('alice');
SELECT DISTINCT who FROM j_alice.seen;
SELECT run_as, status, rows_scored FROM sqlscore.job_runs WHERE job = 'alice' ORDER BY run_id;
CREATE OR REPLACE FUNCTION j_alice.model_for(sensor int) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('role', 'postgres', false);
    RETURN 'j_anomaly_' || sensor;
END $$;
INSERT INTO j_alice.readings (sensor_id, x) VALUES (1, 0.5);
CALL sqlscore.run_job('alice');
SELECT sqlscore.drop_job('alice', drop_target => true);
DROP SCHEMA j_alice CASCADE;
DROP ROLE j_alice;

-- on_error => 'null' writes a row whose model expression is NULL, with NULL model and score.
CREATE TABLE j_nullmodel (id bigserial PRIMARY KEY, sensor_id int, x float8);
INSERT INTO j_nullmodel (sensor_id, x) VALUES (0, 0.1), (NULL, 0.2);
SELECT sqlscore.create_job('jn', 'j_nullmodel', 'id', $$'j_anomaly_' || sensor_id$$, 'j_nullmodel_out',
                           features => '{x}', on_error => 'null');
CALL sqlscore.run_job('jn');
SELECT id, model, model_version, score IS NULL AS null_score FROM j_nullmodel_out ORDER BY id;
SELECT sqlscore.drop_job('jn', drop_target => true);

-- drop_job removes the trigger, queue and history; the target stays unless asked.
SELECT sqlscore.drop_job('j');
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'j_readings'::regclass AND NOT tgisinternal;
SELECT (SELECT count(*) FROM sqlscore.job_queue) AS queued, (SELECT count(*) FROM sqlscore.job_run_log) AS runs,
       (SELECT count(*) FROM sqlscore.job_rejects) AS rejects, to_regclass('j_out') IS NOT NULL AS target_kept;
INSERT INTO j_readings (sensor_id, x, note) VALUES (0, 0.3, 'after drop');
DROP TABLE j_out;
REVOKE ALL ON j_readings FROM j_other;
REVOKE ALL ON SEQUENCE j_readings_id_seq FROM j_other;
DROP ROLE j_other;

-- The batch function groups rows by the model they name, as jobs do.
SELECT count(*) AS rows, count(DISTINCT b.model) AS models,
       count(*) FILTER (WHERE abs(b.score - sqlscore.score('j_anomaly_' || r.sensor_id, r.x)) > 1e-9) AS mismatches
FROM sqlscore.score_batch_grouped($$SELECT id, 'j_anomaly_' || sensor_id, x FROM j_readings WHERE x IS NOT NULL$$, 500) b
JOIN j_readings r ON r.id = b.id;
SELECT try($$SELECT * FROM sqlscore.score_batch_grouped('SELECT id, 42, x FROM j_readings')$$);
SELECT try($$SELECT * FROM sqlscore.score_batch_grouped($q$SELECT id, 'j_nope', x FROM j_readings$q$)$$);
