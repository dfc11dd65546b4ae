-- Evaluators: sqlscore.engine, the registry's engine column, and ZipMap classifiers.
-- (The suite runs twice, under engine = auto and engine = onnxruntime: this file pins its own.)
SET sqlscore.engine = auto;
SELECT sqlscore.register_model('e_lr', model('logistic_binary'));
SELECT sqlscore.register_model('e_round', model('round'));
SELECT name, engine, engine_reason FROM sqlscore.models WHERE name LIKE 'e\_%' ORDER BY name;

-- auto runs Round on ONNX Runtime; native refuses it, naming the operator and the setting.
SELECT sqlscore.score('e_round', 0.4, 2.5, 7.0) AS rounded;
SET sqlscore.engine = native;
SELECT try($$SELECT sqlscore.score('e_round', 0.4, 2.5, 7.0)$$);
SELECT round(sqlscore.score('e_lr', 0.5, -1, 2, 0, 1.5, -0.5, 0.25, 3)::numeric, 6) AS native_score;
SET sqlscore.engine = onnxruntime;
SELECT round(sqlscore.score('e_lr', 0.5, -1, 2, 0, 1.5, -0.5, 0.25, 3)::numeric, 6) AS onnxruntime_score;
SET sqlscore.engine = sometimes;
RESET sqlscore.engine;

-- ZipMap outputs (CatBoost always, skl2onnx by default) give probabilities like any classifier,
-- on both evaluators, per row and in score_batch.
SELECT sqlscore.register_model('e_cat', model('catboost_clf_3class'));
SELECT sqlscore.register_model('e_zip', model('skl_logreg_binary_zipmap'));
SELECT name, outputs FROM sqlscore.models WHERE name IN ('e_cat', 'e_zip') ORDER BY name;
CREATE TABLE e_rows AS SELECT i::bigint AS id, (i % 7) / 3.0 AS x0, (i % 5) / 2.0 - 1 AS x1, i / 10.0 AS x2,
       (i % 3) - 1.0 AS x3, 0.5 AS x4, -0.5 AS x5, (i % 4) / 4.0 AS x6, 1.0 AS x7
FROM generate_series(1, 6) i;
SET sqlscore.engine = native;
CREATE TABLE e_native AS
SELECT id, sqlscore.predict('e_cat', x0, x1, x2, x3, x4, x5, x6, x7) AS label,
       sqlscore.predict_proba('e_cat', x0, x1, x2, x3, x4, x5, x6, x7) AS proba,
       sqlscore.score('e_zip', x0, x1, x2, x3, x4, x5, x6, x7) AS zip_score
FROM e_rows;
SET sqlscore.engine = onnxruntime;
CREATE TABLE e_ort AS
SELECT id, sqlscore.predict('e_cat', x0, x1, x2, x3, x4, x5, x6, x7) AS label,
       sqlscore.predict_proba('e_cat', x0, x1, x2, x3, x4, x5, x6, x7) AS proba,
       sqlscore.score('e_zip', x0, x1, x2, x3, x4, x5, x6, x7) AS zip_score
FROM e_rows;
RESET sqlscore.engine;
SELECT n.id, n.label, n.label = o.label AS same_label,
       (SELECT max(abs(a - b)) FROM unnest(n.proba, o.proba) u(a, b)) < 1e-5 AS same_proba,
       abs(n.zip_score - o.zip_score) < 1e-5 AS same_score, array_length(n.proba, 1) AS classes
FROM e_native n JOIN e_ort o USING (id) ORDER BY n.id;
SELECT count(*) AS rows, bool_and(s.score IS NOT NULL) AS all_scored
FROM sqlscore.score_batch('e_zip', 'SELECT id, x0, x1, x2, x3, x4, x5, x6, x7 FROM e_rows') s;

-- A row whose first value is NULL binds like any other: the next row's text is still refused
-- (the call site does not cache a binding a NULL vouched for).
SELECT sqlscore.register_model('e_ct', model('column_transformer'));
SELECT try($$SELECT sqlscore.score('e_ct', r) FROM (VALUES ('paris'::text, NULL::text, 52000.0::float8),
                                                        ('rome', 'abc', 18000.0)) r(city, age, income)$$);
