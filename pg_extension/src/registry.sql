-- The model registry: models are rows (bytea), so pg_dump, replication and backups carry them.
CREATE TABLE sqlscore.model_versions (
    name        text        NOT NULL CHECK (name <> '' AND position('@' IN name) = 0),
    version     integer     NOT NULL,
    active      boolean     NOT NULL DEFAULT false,
    sha256      text        NOT NULL,
    inputs      jsonb       NOT NULL,
    outputs     jsonb       NOT NULL,
    description text,
    size        bigint      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  name        NOT NULL DEFAULT current_user,
    onnx        bytea       NOT NULL,
    PRIMARY KEY (name, version)
);
-- At most one active version per name: scoring by bare name uses it.
CREATE UNIQUE INDEX model_versions_one_active ON sqlscore.model_versions (name) WHERE active;
-- Extension tables are not dumped by default; this makes pg_dump include the models.
SELECT pg_catalog.pg_extension_config_dump('sqlscore.model_versions', '');

-- Everyone may score and list models; registering, activating and dropping need write
-- privileges on model_versions (GRANT INSERT, UPDATE, DELETE ... TO your model admins).
GRANT USAGE ON SCHEMA sqlscore TO PUBLIC;
GRANT SELECT ON sqlscore.model_versions TO PUBLIC;

-- The view sqlscore.models is created after the functions it calls (api/models.rs).

-- Every function below runs with a fixed search_path (pg_catalog first, then pg_temp, which is
-- never searched for functions or operators) and names its tables and functions with their
-- schema: a role that puts its own `=`, `max` or `pg_advisory_xact_lock` first in a superuser's
-- search_path gets none of them called (PostgreSQL's "Security Considerations for Extension
-- Scripts"). Operators resolve in pg_catalog through that search_path.

-- Validates the model in ONNX Runtime first: a corrupt file raises and registers nothing.
CREATE FUNCTION sqlscore.register_model(name text, onnx bytea, description text DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    info jsonb := sqlscore.inspect_model(name, onnx);
    next_version integer;
BEGIN
    -- Serialise registrations of one name so versions are gapless and unique.
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(pg_catalog.concat('sqlscore.model:', name)));
    SELECT coalesce(pg_catalog.max(v.version), 0) + 1 INTO next_version
    FROM sqlscore.model_versions v WHERE v.name = register_model.name;
    UPDATE sqlscore.model_versions v SET active = false WHERE v.name = register_model.name AND v.active;
    INSERT INTO sqlscore.model_versions (name, version, active, sha256, inputs, outputs, description, size, onnx)
    VALUES (register_model.name, next_version, true, info->>'sha256', info->'inputs', info->'outputs',
            register_model.description, pg_catalog.length(onnx), onnx);
    RETURN next_version;
END $$;

CREATE FUNCTION sqlscore.activate_model(name text, version integer)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(pg_catalog.concat('sqlscore.model:', name)));
    IF NOT EXISTS (SELECT 1 FROM sqlscore.model_versions v
                   WHERE v.name = activate_model.name AND v.version = activate_model.version) THEN
        RAISE EXCEPTION 'unknown model version %@%', name, version
            USING ERRCODE = 'undefined_object',
                  HINT = 'see SELECT name, version FROM sqlscore.models';
    END IF;
    -- Two steps: the one-active unique index is checked row by row.
    UPDATE sqlscore.model_versions v SET active = false WHERE v.name = activate_model.name AND v.active;
    UPDATE sqlscore.model_versions v SET active = true
    WHERE v.name = activate_model.name AND v.version = activate_model.version;
END $$;

CREATE FUNCTION sqlscore.drop_model(name text, version integer DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    dropped integer;
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext(pg_catalog.concat('sqlscore.model:', name)));
    DELETE FROM sqlscore.model_versions v
    WHERE v.name = drop_model.name AND (drop_model.version IS NULL OR v.version = drop_model.version);
    GET DIAGNOSTICS dropped = ROW_COUNT;
    IF dropped = 0 THEN
        RAISE EXCEPTION 'unknown model %', pg_catalog.concat(name, '@' || version)
            USING ERRCODE = 'undefined_object';
    END IF;
    -- Dropping the active version leaves the newest remaining one active.
    UPDATE sqlscore.model_versions v SET active = true
    WHERE v.name = drop_model.name
      AND NOT EXISTS (SELECT 1 FROM sqlscore.model_versions a WHERE a.name = drop_model.name AND a.active)
      AND v.version = (SELECT pg_catalog.max(m.version) FROM sqlscore.model_versions m WHERE m.name = drop_model.name);
    RETURN dropped;
END $$;
