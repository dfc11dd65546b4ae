-- One round of 04_search_path: every sqlscore entry point called under the search_path the
-- including file set, then the checks that none of the hostile objects ran.
SELECT sqlscore.register_model('sp_model', (SELECT b FROM sp_onnx WHERE k OPERATOR(pg_catalog.=) 'lr')) AS v1;
SELECT sqlscore.register_model('sp_model', (SELECT b FROM sp_onnx WHERE k OPERATOR(pg_catalog.=) 'gbm'), 'second') AS v2;
SELECT sqlscore.activate_model('sp_model', 1);
SELECT version, active FROM sqlscore.model_versions WHERE name OPERATOR(pg_catalog.=) 'sp_model' ORDER BY version;
SELECT jsonb_typeof(sqlscore.inspect_model('sp_check', (SELECT b FROM sp_onnx WHERE k OPERATOR(pg_catalog.=) 'lr'))) AS inspect_model;
SELECT round(sqlscore.score('sp_model', 1, 2, 3, 4, 5, 6, 7, 8)::numeric, 6) AS active_v1,
       round(sqlscore.score('sp_model@2', 1, 2, 3, 4, 5, 6, 7, 8)::numeric, 6) AS v2,
       sqlscore.predict('sp_model', 1, 2, 3, 4, 5, 6, 7, 8) AS label;
SELECT id, round(score::numeric, 6) AS score
FROM sqlscore.score_batch('sp_model', 'SELECT 7, 1::float8, 2::float8, 3::float8, 4::float8, 5::float8, 6::float8, 7::float8, 8::float8');
SELECT sqlscore.runtime_info() ? 'cached_models' AS runtime_info;
-- A job, declared, run in this backend, inspected and dropped under the same search_path.
CREATE TABLE public.sp_src (id bigserial PRIMARY KEY, x0 float8, x1 float8, x2 float8, x3 float8,
                            x4 float8, x5 float8, x6 float8, x7 float8);
INSERT INTO public.sp_src (x0, x1, x2, x3, x4, x5, x6, x7) VALUES (1, 2, 3, 4, 5, 6, 7, 8), (8, 7, 6, 5, 4, 3, 2, 1);
SELECT sqlscore.create_job('sp_job', 'public.sp_src', 'id', '''sp_model''', 'public.sp_out',
                           features => '{x0,x1,x2,x3,x4,x5,x6,x7}', carry => '{x0}');
CALL sqlscore.run_job('sp_job');
SELECT status, rows_scored, rows_rejected FROM sqlscore.job_runs WHERE job OPERATOR(pg_catalog.=) 'sp_job';
SELECT backlog FROM sqlscore.jobs WHERE name OPERATOR(pg_catalog.=) 'sp_job';
SELECT id, x0, round(score::numeric, 6) AS score, model, model_version FROM public.sp_out ORDER BY id;
SELECT sqlscore.drop_job('sp_job', drop_target => true);
DROP TABLE public.sp_src;

SELECT sqlscore.drop_model('sp_model', 2) AS dropped_v2;
-- The failing drop's message shows the name as the function built it (a hijacked || would show).
SELECT public.sp_try($$SELECT sqlscore.drop_model('sp_model', 99)$$);
RESET search_path;
SELECT fn, called_by, count(*) FROM evil.log GROUP BY fn, called_by ORDER BY fn;
SELECT rolsuper AS mallory_is_superuser FROM pg_roles WHERE rolname = 'mallory';
SELECT name, version, active, description, size = length(onnx) AS size_ok,
       sha256 = encode(sha256(onnx), 'hex') AS sha_ok, inputs = '[{"name": "X", "type": "float", "shape": [-1, 8], "width": 8}]' AS inputs_ok
FROM sqlscore.model_versions WHERE name = 'sp_model' ORDER BY version;
SELECT (SELECT count(*) FROM (SELECT name, version, active, sha256 FROM sqlscore.models WHERE name <> 'sp_model'
                              EXCEPT SELECT name, version, active, sha256 FROM sp_before) a)
     + (SELECT count(*) FROM (SELECT name, version, active, sha256 FROM sp_before
                              EXCEPT SELECT name, version, active, sha256 FROM sqlscore.models WHERE name <> 'sp_model') b)
       AS other_models_changed;
