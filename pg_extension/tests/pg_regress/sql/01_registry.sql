-- Model registry: register (validated first), versions, activation (rollback), drop.
-- Models are read from the directory the runner copies them to (readable by the server).
CREATE EXTENSION sqlscore;
CREATE FUNCTION try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
CREATE FUNCTION model(file text) RETURNS bytea LANGUAGE sql AS
$$ SELECT pg_read_binary_file('/tmp/sqlscore-pg/models/' || file || '.onnx') $$;

SELECT sqlscore.register_model('churn', model('logistic_binary'), 'first');
SELECT sqlscore.register_model('churn', model('gbm_classifier'));
SELECT name, version, active, description, inputs, outputs FROM sqlscore.models ORDER BY version;
SELECT sha256 = encode(sha256(model('logistic_binary')), 'hex') AS sha_matches
FROM sqlscore.models WHERE name = 'churn' AND version = 1;

-- The bare name is the active version; name@version pins one.
SELECT round(sqlscore.score('churn', 1, 2, 3, 4, 5, 6, 7, 8)::numeric, 6) AS active_v2,
       round(sqlscore.score('churn@1', 1, 2, 3, 4, 5, 6, 7, 8)::numeric, 6) AS v1;
SELECT sqlscore.activate_model('churn', 1);
SELECT name, version, active FROM sqlscore.models ORDER BY version;
SELECT round(sqlscore.score('churn', 1, 2, 3, 4, 5, 6, 7, 8)::numeric, 6) AS now_v1;
SELECT try($$SELECT sqlscore.activate_model('churn', 9)$$);

-- A bad model registers nothing.
SELECT try($$SELECT sqlscore.register_model('bad', '\x00010203'::bytea)$$);
SELECT try($$SELECT sqlscore.register_model('bad', substring(model('gbm_regressor') from 1 for 1000))$$);
SELECT try($$SELECT sqlscore.register_model('a@b', model('logistic_binary'))$$);
SELECT count(*) FROM sqlscore.model_versions WHERE name IN ('bad', 'a@b');

-- Dropping the active version makes the newest remaining one active.
SELECT sqlscore.drop_model('churn', 1);
SELECT name, version, active FROM sqlscore.models ORDER BY version;
SELECT try($$SELECT sqlscore.drop_model('nope')$$);
SELECT sqlscore.drop_model('churn');
SELECT count(*) FROM sqlscore.models;
