-- Scoring functions: positional (VARIADIC float8[], real[]), whole row by name, per-row model.
SELECT sqlscore.register_model('lr', model('logistic_binary'));
SELECT sqlscore.register_model('ct', model('column_transformer'));
SELECT sqlscore.register_model('rf', model('rf_3class'));
SELECT sqlscore.register_model('reg', model('gbm_regressor'));
SELECT sqlscore.register_model('iso', model('isolation_forest'));

SELECT round(sqlscore.score('lr', 0.5, -1, 2, 0, 1.5, -0.5, 0.25, 3)::numeric, 6) AS score,
       sqlscore.predict('lr', 0.5, -1, 2, 0, 1.5, -0.5, 0.25, 3) AS label,
       (SELECT array_agg(round(p::numeric, 6)) FROM unnest(sqlscore.predict_proba('lr', 0.5, -1, 2, 0, 1.5, -0.5, 0.25, 3)) p) AS proba,
       jsonb_object_keys(sqlscore.score_all('lr', 0.5, -1, 2, 0, 1.5, -0.5, 0.25, 3)) AS outputs;
SELECT round(sqlscore.score('lr', ARRAY[0.5, -1, 2, 0, 1.5, -0.5, 0.25, 3]::real[])::numeric, 6) AS from_real_array;

-- Multi-class: label is the class name, score the top-class probability.
SELECT sqlscore.predict('rf', 5.1, 3.5, 1.4, 0.2) AS label, round(sqlscore.score('rf', 5.1, 3.5, 1.4, 0.2)::numeric, 4) AS p;
-- IsolationForest: label 1 = inlier, -1 = outlier; score below 0 = anomaly.
SELECT sqlscore.predict('iso', 0, 0, 0, 0, 0, 0, 0, 0) AS inlier, sqlscore.predict('iso', 9, -9, 9, -9, 9, -9, 9, -9) AS outlier;

-- A row binds to inputs by name: column order and extra columns do not matter; text categorical.
CREATE TABLE applicants (id int, income real, city text, age float8);
INSERT INTO applicants VALUES (1, 52000, 'paris', 35), (2, 18000, 'rome', 61), (3, 30000, 'tokyo', 44), (4, NULL, 'paris', 30);
SELECT id, round(sqlscore.score('ct', a)::numeric, 6) AS score, sqlscore.predict('ct', a) AS label
FROM applicants a ORDER BY id;
SELECT round(sqlscore.score('ct', ROW('paris'::text, 35.0, 52000.0))::numeric, 6) AS anonymous_record_positional;

-- The model may differ per row.
CREATE TABLE mixed AS SELECT i, CASE WHEN i % 2 = 0 THEN 'lr' ELSE 'reg' END AS m FROM generate_series(1, 4) i;
SELECT i, m, round(sqlscore.score(m, i, 1, 2, 3, 4, 5, 6, 7)::numeric, 6) AS score FROM mixed ORDER BY i;

-- NULL features: NULL result by default, an error with sqlscore.null_policy = error.
SELECT sqlscore.score('lr', 1, NULL, 3, 4, 5, 6, 7, 8) IS NULL AS null_result;
SET sqlscore.null_policy = error;
SELECT try($$SELECT sqlscore.score('lr', 1, NULL, 3, 4, 5, 6, 7, 8)$$);
RESET sqlscore.null_policy;

-- Bad input: each a clear error with its SQLSTATE.
SELECT try($$SELECT sqlscore.score('nope', 1)$$);
SELECT try($$SELECT sqlscore.score('lr@x', 1)$$);
SELECT try($$SELECT sqlscore.score('lr@7', 1)$$);
SELECT try($$SELECT sqlscore.score('lr', 1, 2, 3)$$);
SELECT try($$SELECT sqlscore.score('ct', 1, 2, 3)$$);
SELECT try($$SELECT sqlscore.score('ct', t) FROM (SELECT 'paris'::text AS city, 30.0::float8 AS age) t$$);
SELECT try($$SELECT sqlscore.score('lr', t) FROM (SELECT now() AS a, 1 AS b, 2 AS c, 3 AS d, 4 AS e, 5 AS f, 6 AS g, 7 AS h) t$$);
SELECT try($$SELECT sqlscore.predict_proba('reg', 1, 2, 3, 4, 5, 6, 7, 8)$$);
SELECT try($$SELECT sqlscore.predict('reg', 1, 2, 3, 4, 5, 6, 7, 8)$$);
SELECT try($$SELECT sqlscore.selftest_panic()$$);
SELECT 'backend still alive' AS after_panic;
