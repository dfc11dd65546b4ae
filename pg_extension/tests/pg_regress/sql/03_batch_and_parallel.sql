-- The batch path equals the per-row path; the per-row path runs in parallel workers.
CREATE TABLE readings AS
SELECT i AS id, sin(i) AS x0, cos(i) AS x1, sin(i * 2) AS x2, cos(i * 3) AS x3,
       (i % 7)::float8 AS x4, (i % 5)::int AS x5, (i % 3)::real AS x6, 0.5::numeric AS x7
FROM generate_series(1, 20000) i;
SELECT count(*) AS rows, round(sum(score)::numeric, 4) AS batch_sum
FROM sqlscore.score_batch('reg', 'SELECT id, x0, x1, x2, x3, x4, x5, x6, x7 FROM readings', 1024);
SELECT round(sum(sqlscore.score('reg', x0, x1, x2, x3, x4, x5, x6, x7))::numeric, 4) AS per_row_sum FROM readings;
SELECT count(*) AS mismatches FROM readings r
JOIN sqlscore.score_batch('lr', 'SELECT id, x0, x1, x2, x3, x4, x5, x6, x7 FROM readings') b ON b.id = r.id
WHERE abs(b.score - sqlscore.score('lr', r.x0, r.x1, r.x2, r.x3, r.x4, r.x5, r.x6, r.x7)) > 1e-6;
SELECT label, count(*) FROM sqlscore.predict_batch('lr', 'SELECT id, x0, x1, x2, x3, x4, x5, x6, x7 FROM readings') GROUP BY label ORDER BY label;
SELECT try($$SELECT * FROM sqlscore.score_batch('lr', 'SELECT id FROM no_such_table')$$);

SET max_parallel_workers_per_gather = 2;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
EXPLAIN (COSTS OFF, VERBOSE)
SELECT id, sqlscore.score('reg', x0, x1, x2, x3, x4, x5, x6, x7) FROM readings;
SELECT round(sum(sqlscore.score('reg', x0, x1, x2, x3, x4, x5, x6, x7))::numeric, 4) AS parallel_sum FROM readings;
-- The first column is the integer row key.
SELECT try($$SELECT * FROM sqlscore.score_batch('lr', 'SELECT x0, id FROM readings')$$);
-- A NULL key gives a NULL id; the row is still scored.
SELECT id IS NULL AS null_id, score IS NOT NULL AS scored
FROM sqlscore.score_batch('lr', 'SELECT NULL::int, x0, x1, x2, x3, x4, x5, x6, x7 FROM readings LIMIT 1');
