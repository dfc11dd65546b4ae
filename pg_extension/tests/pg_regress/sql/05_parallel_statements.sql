-- Scoring in parallel workers from every kind of statement that may run a parallel plan, each
-- from a fresh backend (\c: nothing cached, the first call resolves and loads the models).
-- parallel_leader_participation = off: the workers score every row. Evidence per statement: the
-- plan's Gather / Workers Launched lines (EXPLAIN ANALYZE runs the statement itself) where
-- EXPLAIN can show it, and worker_pid(), a parallel-safe function that stores which process
-- scored each row (none may be the leader); results must equal a serial computation.
CREATE TABLE par_features AS
SELECT i AS id, sin(i) AS x0, cos(i) AS x1, sin(i * 2) AS x2, cos(i * 3) AS x3,
       (i % 7)::float8 AS x4, (i % 5)::float8 AS x5, (i % 3)::float8 AS x6, 0.5::float8 AS x7
FROM generate_series(1, 20000) i;
ALTER TABLE par_features ADD PRIMARY KEY (id);
ANALYZE par_features;
SELECT sqlscore.register_model('par_reg', model('gbm_regressor'));
SELECT sqlscore.register_model('par_lr', model('logistic_binary'));

CREATE FUNCTION worker_pid() RETURNS integer LANGUAGE plpgsql PARALLEL SAFE AS
$$ BEGIN RETURN pg_backend_pid(); END $$;
-- The plan lines that do not depend on timing or costs.
CREATE FUNCTION parallel_plan(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE line text;
BEGIN
    FOR line IN EXECUTE 'EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) ' || q LOOP
        IF line ~ 'Workers Launched|Gather|Parallel' THEN
            RETURN NEXT line;
        END IF;
    END LOOP;
END $$;
-- A result table (id, s_reg, s_lr, pid) against the serial scores of the rows with id <= max_id.
CREATE FUNCTION check_scores(t regclass, max_id integer DEFAULT 20000)
RETURNS TABLE (row_count bigint, mismatches bigint, scored_by_leader bigint, worker_processes bigint)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY EXECUTE format($q$
        SELECT count(t.id),
               count(*) FILTER (WHERE t.id IS NULL OR r.id IS NULL
                                   OR (t.s_reg IS NULL) <> (r.s_reg IS NULL) OR abs(t.s_reg - r.s_reg) > 1e-9
                                   OR (t.s_lr IS NULL) <> (r.s_lr IS NULL) OR abs(t.s_lr - r.s_lr) > 1e-9),
               count(*) FILTER (WHERE t.pid = $1),
               count(DISTINCT t.pid) FILTER (WHERE t.pid <> $1)
        FROM %s t FULL JOIN (SELECT * FROM par_serial WHERE id <= $2) r ON r.id = t.id $q$, t)
    USING pg_backend_pid(), max_id;
END $$;
-- The same query in an SQL function and in a PL/pgSQL function (RETURN QUERY).
CREATE FUNCTION scores_sql() RETURNS TABLE (id integer, s_reg float8, s_lr float8, pid integer) LANGUAGE sql AS $$
    SELECT id, sqlscore.score('par_reg', x0, x1, x2, x3, x4, x5, x6, x7),
           sqlscore.score('par_lr', x0, x1, x2, x3, x4, x5, x6, x7), worker_pid()
    FROM par_features $$;
CREATE FUNCTION scores_plpgsql() RETURNS TABLE (id integer, s_reg float8, s_lr float8, pid integer) LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    SELECT f.id, sqlscore.score('par_reg', f.x0, f.x1, f.x2, f.x3, f.x4, f.x5, f.x6, f.x7),
           sqlscore.score('par_lr', f.x0, f.x1, f.x2, f.x3, f.x4, f.x5, f.x6, f.x7), worker_pid()
    FROM par_features f;
END $$;

-- The serial reference.
\c
SET max_parallel_workers_per_gather = 0;
CREATE TABLE par_serial AS
SELECT id, sqlscore.score('par_reg', x0, x1, x2, x3, x4, x5, x6, x7) AS s_reg,
       sqlscore.score('par_lr', x0, x1, x2, x3, x4, x5, x6, x7) AS s_lr
FROM par_features;
SELECT count(*) AS row_count, count(s_reg) AS scored, round(sum(s_reg)::numeric, 4) AS reg_sum FROM par_serial;

-- Forced parallel plans, the workers doing all the work; psql re-applies them after each \c.
\set parallel 'SET max_parallel_workers_per_gather = 2; SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; SET min_parallel_table_scan_size = 0; SET min_parallel_index_scan_size = 0; SET parallel_leader_participation = off;'

-- CREATE TABLE ... AS
\c
:parallel
SELECT * FROM parallel_plan($$
CREATE TABLE par_ctas AS
SELECT id, sqlscore.score('par_reg', x0, x1, x2, x3, x4, x5, x6, x7) AS s_reg,
       sqlscore.score('par_lr', x0, x1, x2, x3, x4, x5, x6, x7) AS s_lr, worker_pid() AS pid
FROM par_features $$);
SELECT * FROM check_scores('par_ctas');

-- SELECT ... INTO
\c
:parallel
SELECT * FROM parallel_plan($$
SELECT id, sqlscore.score('par_reg', x0, x1, x2, x3, x4, x5, x6, x7) AS s_reg,
       sqlscore.score('par_lr', x0, x1, x2, x3, x4, x5, x6, x7) AS s_lr, worker_pid() AS pid
INTO par_select_into
FROM par_features $$);
SELECT * FROM check_scores('par_select_into');

-- CREATE MATERIALIZED VIEW ... AS
\c
:parallel
SELECT * FROM parallel_plan($$
CREATE MATERIALIZED VIEW par_matview AS
SELECT id, sqlscore.score('par_reg', x0, x1, x2, x3, x4, x5, x6, x7) AS s_reg,
       sqlscore.score('par_lr', x0, x1, x2, x3, x4, x5, x6, x7) AS s_lr, worker_pid() AS pid
FROM par_features $$);
SELECT * FROM check_scores('par_matview');

-- REFRESH MATERIALIZED VIEW (EXPLAIN cannot show it: the pids show who scored)
\c
:parallel
REFRESH MATERIALIZED VIEW par_matview;
SELECT * FROM check_scores('par_matview');

-- A plain SELECT with aggregates: each aggregate against the serial one.
\c
:parallel
SELECT * FROM parallel_plan($$
SELECT count(*), sum(sqlscore.score('par_reg', x0, x1, x2, x3, x4, x5, x6, x7)) FROM par_features $$);
\c
:parallel
SELECT p.row_count, (p.row_count <> s.row_count)::int + (p.scored <> s.scored)::int + (p.reg_min <> s.reg_min)::int
              + (p.reg_max <> s.reg_max)::int + (abs(p.reg_sum - s.reg_sum) > 1e-6)::int
              + (abs(p.lr_sum - s.lr_sum) > 1e-6)::int AS mismatches
FROM (SELECT count(*) AS row_count, count(sqlscore.score('par_reg', x0, x1, x2, x3, x4, x5, x6, x7)) AS scored,
             min(sqlscore.score('par_reg', x0, x1, x2, x3, x4, x5, x6, x7)) AS reg_min,
             max(sqlscore.score('par_reg', x0, x1, x2, x3, x4, x5, x6, x7)) AS reg_max,
             sum(sqlscore.score('par_reg', x0, x1, x2, x3, x4, x5, x6, x7)) AS reg_sum,
             sum(sqlscore.score('par_lr', x0, x1, x2, x3, x4, x5, x6, x7)) AS lr_sum
      FROM par_features) p,
     (SELECT count(*) AS row_count, count(s_reg) AS scored, min(s_reg) AS reg_min, max(s_reg) AS reg_max,
             sum(s_reg) AS reg_sum, sum(s_lr) AS lr_sum
      FROM par_serial) s;

-- A query inside an SQL function (its plan is not EXPLAIN's to show: the pids show who scored)
\c
:parallel
CREATE TABLE par_sql_function AS SELECT * FROM scores_sql();
SELECT * FROM check_scores('par_sql_function');

-- A query inside a PL/pgSQL function
\c
:parallel
CREATE TABLE par_plpgsql_function AS SELECT * FROM scores_plpgsql();
SELECT * FROM check_scores('par_plpgsql_function');

-- A parallel index scan: WHERE id <= 10000 over the primary key.
\c
:parallel
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SELECT * FROM parallel_plan($$
CREATE TABLE par_index_scan AS
SELECT id, sqlscore.score('par_reg', x0, x1, x2, x3, x4, x5, x6, x7) AS s_reg,
       sqlscore.score('par_lr', x0, x1, x2, x3, x4, x5, x6, x7) AS s_lr, worker_pid() AS pid
FROM par_features WHERE id <= 10000 $$);
SELECT * FROM check_scores('par_index_scan', 10000);

\c
DROP MATERIALIZED VIEW IF EXISTS par_matview;
DROP TABLE IF EXISTS par_ctas, par_select_into, par_sql_function, par_plpgsql_function, par_index_scan, par_serial, par_features;
DROP FUNCTION scores_sql(), scores_plpgsql(), check_scores(regclass, integer), parallel_plan(text), worker_pid();
SELECT sqlscore.drop_model('par_reg') + sqlscore.drop_model('par_lr') AS dropped;
