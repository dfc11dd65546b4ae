//! The SQL layer created in the user's database at LOAD: the registry table, a view resolving
//! `name` (latest version) and `name@version`, and the user-facing macros. Macros, not Rust
//! functions, because only SQL can read the registry in the caller's own transaction.

/// Feature arguments supported in positional form; past this, pass the row (`score('m', t)`) or
/// an array column.
pub const MAX_POSITIONAL_FEATURES: usize = 64;

const TABLES: &str = r#"
CREATE TABLE IF NOT EXISTS sqlscore_models (
    name        VARCHAR NOT NULL,
    version     INTEGER NOT NULL,
    sha256      VARCHAR NOT NULL,
    inputs      JSON NOT NULL,
    outputs     JSON NOT NULL,
    description VARCHAR,
    size        BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    onnx        BLOB NOT NULL,
    PRIMARY KEY (name, version)
);
-- Columns named __sqlscore_*: the macros substitute the user's model expression inside a
-- subquery over this view, where a user column called `ref` would otherwise bind to the view's.
CREATE OR REPLACE VIEW sqlscore_model_refs AS
    SELECT name || '@' || version AS __sqlscore_ref, sha256 AS __sqlscore_sha256, onnx AS __sqlscore_onnx
    FROM sqlscore_models
    UNION ALL
    SELECT m.name, m.sha256, m.onnx
    FROM sqlscore_models m
    JOIN (SELECT name, max(version) AS version FROM sqlscore_models GROUP BY name) latest
      ON m.name = latest.name AND m.version = latest.version;
CREATE OR REPLACE VIEW sqlscore_model_list AS
    SELECT name, version,
           version = max(version) OVER (PARTITION BY name) AS latest,
           sha256, inputs, outputs, description, size, created_at,
           -- Which evaluator runs the model under sqlscore_engine = 'auto', and why not native
           -- (the function answers 'native' or 'onnxruntime: why').
           split_part(e, ': ', 1) AS engine,
           nullif(substr(e, length(split_part(e, ': ', 1)) + 3), '') AS engine_reason
    FROM (SELECT *, sqlscore_model_engine(sha256, onnx) AS e FROM sqlscore_models);
CREATE OR REPLACE MACRO sqlscore_register(model_name, model_path, description := NULL) AS TABLE
    SELECT model_name AS name,
           coalesce((SELECT max(m.version) FROM sqlscore_models m WHERE m.name = model_name), 0) + 1 AS version,
           r.sha256,
           r.inputs::JSON AS inputs,
           r.outputs::JSON AS outputs,
           description::VARCHAR AS description,
           r.size,
           current_timestamp AS created_at,
           r.onnx
    FROM sqlscore_read_model(model_path, model_name) r;
"#;

/// One macro with an overload per feature count: DuckDB macros have no varargs.
///
/// The model argument is cast to VARCHAR (`score(42, ...)` asks for model '42' instead of failing
/// to bind with the internal function's signature in the message), and a zero-feature overload
/// lets the engine report the model's expected features instead of DuckDB listing 64 overloads.
fn scoring_macro(name: &str, implementation: &str, cast: &str) -> String {
    let model = "CAST(model AS VARCHAR)";
    let lookup = format!(
        "(SELECT {{'sha256': __sqlscore_sha256, 'onnx': __sqlscore_onnx}} FROM sqlscore_model_refs \
         WHERE __sqlscore_ref = {model})"
    );
    let known = "(SELECT string_agg(DISTINCT k.name, ', ' ORDER BY k.name) FROM sqlscore_models k)";
    let overloads: Vec<String> = (0..=MAX_POSITIONAL_FEATURES)
        .map(|n| {
            let params: Vec<String> = (1..=n).map(|i| format!(", f{i}")).collect();
            let params = params.concat();
            format!("(model{params}) AS {implementation}({model}, {lookup}, {known}{params}){cast}")
        })
        .collect();
    format!("CREATE OR REPLACE MACRO {name}{};", overloads.join(",\n    ").trim_start_matches(|c| c != '('))
}

/// Every statement to run at LOAD, in order.
pub fn statements() -> Vec<String> {
    let mut out: Vec<String> = TABLES.split(";\n").map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
    out.push(scoring_macro("score", "sqlscore_score_impl", ""));
    out.push(scoring_macro("predict", "sqlscore_predict_impl", ""));
    out.push(scoring_macro("predict_proba", "sqlscore_predict_proba_impl", ""));
    out.push(scoring_macro("score_all", "sqlscore_score_all_impl", "::JSON"));
    out
}
