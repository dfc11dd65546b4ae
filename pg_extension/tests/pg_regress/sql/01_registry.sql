-- Model registry: register (validated first), versions, activation (rollback), drop.
-- Models are read from the directory the runner copies them to (readable by the server).
CREATE EXTENSION sqlscore;
CREATE FUNCTION try(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM;
END $$;
-- model('name') reads $SQLSCORE_PGROOT/models/name.onnx (the path is fixed when it is created).
\getenv pgroot SQLSCORE_PGROOT
\set ECHO none
SELECT format($f$CREATE FUNCTION model(file text) RETURNS bytea LANGUAGE sql AS
  $b$ SELECT pg_read_binary_file(%L || file || '.onnx') $b$$f$, :'pgroot' || '/models/') \gexec
\set ECHO all

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

-- Inside one statement (a function), a newly activated version is used from the next command on.
SELECT sqlscore.register_model('flip', model('logistic_binary'));
SELECT sqlscore.register_model('flip', model('gbm_classifier'));
CREATE FUNCTION flip_versions() RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE before float8; after float8;
BEGIN
    before := sqlscore.score('flip', 1, 2, 3, 4, 5, 6, 7, 8);
    PERFORM sqlscore.activate_model('flip', 1);
    after := sqlscore.score('flip', 1, 2, 3, 4, 5, 6, 7, 8);
    RETURN before <> after AND after = sqlscore.score('flip@1', 1, 2, 3, 4, 5, 6, 7, 8);
END $$;
SELECT flip_versions() AS sees_activation;

-- A role with no privileges of its own scores and lists (granted to PUBLIC) but cannot register.
SET client_min_messages = warning;
DROP ROLE IF EXISTS sqlscore_analyst;
RESET client_min_messages;
CREATE ROLE sqlscore_analyst;
SET ROLE sqlscore_analyst;
SELECT round(sqlscore.score('flip', 1, 2, 3, 4, 5, 6, 7, 8)::numeric, 6) AS analyst_score;
SELECT name, version, active FROM sqlscore.models ORDER BY version;
SELECT try(format('SELECT sqlscore.register_model(%L, %L::bytea)', 'mine',
                  (SELECT onnx FROM sqlscore.model_versions WHERE name = 'flip' AND version = 1)));
RESET ROLE;
DROP ROLE sqlscore_analyst;
SELECT sqlscore.drop_model('flip');
