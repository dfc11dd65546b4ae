-- Privilege hygiene: sqlscore's functions must not run objects that another role planted in the
-- caller's search_path. mallory (no privileges) owns schema evil, where she defines functions and
-- operators that shadow or out-match the built-ins sqlscore's SQL uses. They are SECURITY INVOKER:
-- called by a superuser, they log the call and make mallory a superuser, and they return wrong
-- values. A superuser then uses every sqlscore entry point with evil first in the search_path.
-- Expected: evil.log stays empty, mallory stays unprivileged, the registry stays right.
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS evil CASCADE;
DROP ROLE IF EXISTS mallory;
RESET client_min_messages;
CREATE ROLE mallory;
CREATE SCHEMA evil AUTHORIZATION mallory;
-- The model bytes, read now: model() is an SQL function, its body would be parsed under the
-- hostile search_path below (that would be this test's fault, not sqlscore's).
CREATE TABLE sp_onnx AS
SELECT 'lr'::text AS k, model('logistic_binary') AS b
UNION ALL SELECT 'gbm', model('gbm_classifier');
-- The registry as the earlier tests left it: to check that nothing else changed, and to restore it.
CREATE TABLE sp_before AS SELECT * FROM sqlscore.model_versions;

SET ROLE mallory;
CREATE TABLE evil.log (fn text, called_by name);
-- Every hostile object calls this: it records the call, then does what only a superuser may.
CREATE FUNCTION evil.pwn(fn text) RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    INSERT INTO evil.log VALUES (fn, current_user);
    BEGIN
        ALTER ROLE mallory SUPERUSER;
    EXCEPTION WHEN insufficient_privilege THEN NULL;
    END;
END $$;
-- Exact look-alikes of what registry.sql and the Rust lookups call: pg_catalog hides them while it
-- is searched first (implicitly), not when the caller puts evil before pg_catalog (round 2).
CREATE FUNCTION evil.pg_advisory_xact_lock(bigint) RETURNS void LANGUAGE plpgsql AS
$$ BEGIN PERFORM evil.pwn('pg_advisory_xact_lock(bigint)'); END $$;
CREATE FUNCTION evil.hashtext(text) RETURNS integer LANGUAGE plpgsql AS
$$ BEGIN PERFORM evil.pwn('hashtext(text)'); RETURN 0; END $$;
CREATE FUNCTION evil.length(bytea) RETURNS integer LANGUAGE plpgsql AS
$$ BEGIN PERFORM evil.pwn('length(bytea)'); RETURN -1; END $$;
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS
$$ BEGIN PERFORM evil.pwn('now()'); RETURN 'epoch'; END $$;
-- coalesce is syntax, never a function call: this one must never run either.
CREATE FUNCTION evil.coalesce(integer, integer) RETURNS integer LANGUAGE plpgsql AS
$$ BEGIN PERFORM evil.pwn('coalesce(integer,integer)'); RETURN 41; END $$;
CREATE FUNCTION evil.max_step(integer, integer) RETURNS integer LANGUAGE plpgsql AS
$$ BEGIN PERFORM evil.pwn('max(integer)'); RETURN 41; END $$;
CREATE AGGREGATE evil.max(integer) (SFUNC = evil.max_step, STYPE = integer, INITCOND = '41');
CREATE FUNCTION evil.text_eq(text, text) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN PERFORM evil.pwn('=(text,text)'); RETURN true; END $$;
CREATE OPERATOR evil.= (FUNCTION = evil.text_eq, LEFTARG = text, RIGHTARG = text);
CREATE FUNCTION evil.int_eq(integer, integer) RETURNS boolean LANGUAGE plpgsql AS
$$ BEGIN PERFORM evil.pwn('=(integer,integer)'); RETURN true; END $$;
CREATE OPERATOR evil.= (FUNCTION = evil.int_eq, LEFTARG = integer, RIGHTARG = integer);
CREATE FUNCTION evil.int_plus(integer, integer) RETURNS integer LANGUAGE plpgsql AS
$$ BEGIN PERFORM evil.pwn('+(integer,integer)'); RETURN 41; END $$;
CREATE OPERATOR evil.+ (FUNCTION = evil.int_plus, LEFTARG = integer, RIGHTARG = integer);
CREATE FUNCTION evil.text_cat(text, text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN PERFORM evil.pwn('||(text,text)'); RETURN 'pwned'; END $$;
CREATE OPERATOR evil.|| (FUNCTION = evil.text_cat, LEFTARG = text, RIGHTARG = text);
CREATE FUNCTION evil.jsonb_field_text(jsonb, text) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN PERFORM evil.pwn('->>(jsonb,text)'); RETURN 'pwned'; END $$;
CREATE OPERATOR evil.->> (FUNCTION = evil.jsonb_field_text, LEFTARG = jsonb, RIGHTARG = text);
CREATE FUNCTION evil.jsonb_field(jsonb, text) RETURNS jsonb LANGUAGE plpgsql AS
$$ BEGIN PERFORM evil.pwn('->(jsonb,text)'); RETURN '[]'; END $$;
CREATE OPERATOR evil.-> (FUNCTION = evil.jsonb_field, LEFTARG = jsonb, RIGHTARG = text);
-- Better matches than the built-ins, whatever the position of pg_catalog: an integer argument
-- matches (integer) exactly where pg_catalog only has (bigint); '@' || an integer matches
-- (text, integer) better than pg_catalog's (text, anynonarray).
CREATE FUNCTION evil.pg_advisory_xact_lock(integer) RETURNS void LANGUAGE plpgsql AS
$$ BEGIN PERFORM evil.pwn('pg_advisory_xact_lock(integer)'); END $$;
CREATE FUNCTION evil.text_int_cat(text, integer) RETURNS text LANGUAGE plpgsql AS
$$ BEGIN PERFORM evil.pwn('||(text,integer)'); RETURN 'pwned'; END $$;
CREATE OPERATOR evil.|| (FUNCTION = evil.text_int_cat, LEFTARG = text, RIGHTARG = integer);
RESET ROLE;

-- The test's own error catcher must not be hijackable either (its || would resolve to evil's).
CREATE FUNCTION public.sp_try(q text) RETURNS text LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN EXECUTE q; RETURN 'ok';
EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM;
END $$;

-- Round 1: evil first, pg_catalog implicitly searched before it.
\getenv regress_sql SQLSCORE_REGRESS_SQL
\set round_file :regress_sql/include/search_path_round.sql
SET search_path = evil, public, sqlscore;
\i :round_file
SELECT sqlscore.drop_model('sp_model');
-- Start round 2 from a clean slate even where round 1 was hijacked.
TRUNCATE evil.log;
ALTER ROLE mallory NOSUPERUSER;
DELETE FROM sqlscore.model_versions;
INSERT INTO sqlscore.model_versions SELECT * FROM sp_before;

-- Round 2: the caller puts evil before pg_catalog itself. sqlscore must not depend on the
-- caller's search_path at all (registry functions pin theirs, SPI lookups qualify operators).
SET search_path = evil, pg_catalog, public, sqlscore;
\i :round_file

-- Clean up: the registry as it was before this test, whatever a hijack did to it.
DELETE FROM sqlscore.model_versions;
INSERT INTO sqlscore.model_versions SELECT * FROM sp_before;
DROP TABLE sp_onnx, sp_before;
DROP FUNCTION public.sp_try(text);
SET client_min_messages = warning;
DROP SCHEMA evil CASCADE;
RESET client_min_messages;
DROP ROLE mallory;
