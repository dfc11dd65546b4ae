-- sqlscore on DuckDB: the whole surface in one script (run from the repository root).
SET allow_unsigned_extensions = true;  -- only at startup: use duckdb -unsigned or config
LOAD 'dist/sqlscore.duckdb_extension';

-- Register a model: it is validated, and stored with its bytes in this database.
INSERT INTO sqlscore_models FROM sqlscore_register('churn', 'models/logistic_binary.onnx',
                                                   description := 'binary churn model')
RETURNING name, version, sha256, inputs, outputs;

-- Score with positional features ...
SELECT score('churn', 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8) AS p_churn,
       predict('churn', 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8) AS label,
       predict_proba('churn', 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8) AS probabilities,
       score_all('churn', 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8) AS all_outputs;

-- ... or a whole row, bound to the model's inputs by name (text categoricals included).
INSERT INTO sqlscore_models FROM sqlscore_register('credit', 'models/column_transformer.onnx');
CREATE OR REPLACE TABLE applicants AS
SELECT * FROM (VALUES ('paris', 35.0, 52000.0), ('rome', 61.0, 18000.0)) v(city, age, income);
SELECT city, score('credit', a) AS p FROM applicants a;

-- A specific version, and the registry.
SELECT score('churn@1', 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8);
SELECT name, version, latest, sha256, size, created_at FROM sqlscore_model_list;
