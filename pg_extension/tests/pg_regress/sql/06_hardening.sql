-- Bad input of every kind is an SQL error naming what is wrong (never XX000), and the backend
-- keeps serving. (Crash-free under generated input: tests/fuzz.)
SELECT sqlscore.register_model('h_lr', model('logistic_binary'));

-- NULL arguments: the per-row functions are STRICT (NULL in, NULL out); the others name the argument.
SELECT sqlscore.score(NULL, 1, 2, 3, 4, 5, 6, 7, 8) IS NULL AS null_model_scores_null;
SELECT try($$SELECT * FROM sqlscore.score_batch(NULL, 'SELECT 1, 2.0')$$);
SELECT try($$SELECT * FROM sqlscore.score_batch('h_lr', NULL)$$);
SELECT try($$SELECT * FROM sqlscore.predict_batch(NULL, NULL, NULL)$$);
SELECT try($$SELECT sqlscore.inspect_model(NULL, '\x00'::bytea)$$);
SELECT try($$SELECT sqlscore.inspect_model('x', NULL)$$);
SELECT try($$SELECT sqlscore.register_model(NULL, model('logistic_binary'))$$);

-- Lossy values are errors, not silent NaN; NUMERIC 'NaN' is NaN like float8 'NaN'.
SELECT try($$SELECT sqlscore.score('h_lr', t) FROM (SELECT 1e400::numeric AS a, 1 AS b, 2 AS c, 3 AS d, 4 AS e, 5 AS f, 6 AS g, 7 AS h) t$$);
SELECT try($$SELECT * FROM sqlscore.score_batch('h_lr', 'SELECT 1, 1e400::numeric, 1, 2, 3, 4, 5, 6, 7')$$);
SELECT sqlscore.score('h_lr', t) IS NOT NULL AS nan_scores
FROM (SELECT 'NaN'::numeric AS a, 1 AS b, 2 AS c, 3 AS d, 4 AS e, 5 AS f, 6 AS g, 7 AS h) t;

-- PostgreSQL's type names in messages, and hints that only mention what PostgreSQL can do.
SELECT try($$SELECT sqlscore.score('h_lr', t) FROM (SELECT 'a'::varchar AS a, 1 AS b, 2 AS c, 3 AS d, 4 AS e, 5 AS f, 6 AS g, 7 AS h) t$$);
CREATE FUNCTION hint_of(q text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE h text;
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT; RETURN h;
END $$;
SELECT hint_of($$SELECT sqlscore.score('h_nope', 1)$$) AS unknown_model_hint;
SELECT hint_of($$SELECT sqlscore.score('h_lr', t) FROM (SELECT 'a'::text AS a, 1 AS b, 2 AS c, 3 AS d, 4 AS e, 5 AS f, 6 AS g, 7 AS h) t$$) AS type_hint;

-- Thread counts are capped to the machine's cores.
SELECT try($$SET sqlscore.intra_threads = 100000$$);

-- Limits hold for bytes this backend has already loaded: a valid 1.1 MB model (a logistic
-- regression with a 1.1 MB ModelProto.doc_string, field 6) is loaded, then the limit drops to 1 MB.
CREATE TEMP TABLE big AS
SELECT model('logistic_binary') || '\x32e09143'::bytea || convert_to(repeat('x', 1100000), 'UTF8') AS onnx;
SELECT (sqlscore.inspect_model('h_big', onnx)->>'size')::int AS loaded_size FROM big;
SET sqlscore.max_model_size_mb = 1;
SELECT try($$SELECT sqlscore.inspect_model('h_big', onnx) FROM big$$);
RESET sqlscore.max_model_size_mb;

-- Test builds only: a panic is an ordinary error and the backend keeps scoring.
SELECT try($$SELECT sqlscore.selftest_panic()$$);
SELECT round(sqlscore.score('h_lr', 1, 2, 3, 4, 5, 6, 7, 8)::numeric, 6) AS still_scores;


-- Loading bytes runs the model's graph: only roles that may register models may ask for it.
CREATE ROLE h_reader;
GRANT USAGE ON SCHEMA public TO h_reader;
GRANT EXECUTE ON FUNCTION model(text) TO h_reader;
SET ROLE h_reader;
SELECT try($$SELECT sqlscore.inspect_model('x', '\x00'::bytea)$$);
SELECT try($$SELECT sqlscore.register_model('x', '\x00'::bytea)$$);
RESET ROLE;
DROP OWNED BY h_reader;
DROP ROLE h_reader;
SELECT sqlscore.drop_model('h_lr');
