//! Model validation for the registry's PL/pgSQL (`registry.sql`) and troubleshooting.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use pgrx::JsonB;
use sqlscore_core::Error;

use crate::errors::report;
use crate::registry::engine;

/// Loads the bytes into ONNX Runtime (validating them: size, no external files, outputs that
/// answer per row) and describes the model. Used by `sqlscore.register_model` before anything is
/// written. Not STRICT: NULL arguments are errors naming them. Loading runs the model's graph
/// (the registration probe), so only roles that may register models (INSERT on
/// `sqlscore.model_versions`) may hand this backend bytes to load.
#[pg_extern(volatile, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn inspect_model(name: Option<&str>, onnx: Option<&[u8]>) -> Result<JsonB, ErrorReport> {
    let null = |argument: &str| {
        report(Error::NullArgument { function: "sqlscore.inspect_model".into(), argument: argument.into() })
    };
    let name = name.ok_or_else(|| null("name"))?;
    let onnx = onnx.ok_or_else(|| null("onnx"))?;
    if !crate::registry::can_register()? {
        return Err(report(Error::PermissionDenied {
            action: "loading model bytes (inspect_model, register_model)".into(),
            needed: "INSERT on sqlscore.model_versions".into(),
        }));
    }
    sqlscore_core::validate_name(name).map_err(report)?;
    let model = engine().load_bytes(name, onnx).map_err(report)?;
    Ok(JsonB(model.info.describe(&model.sha256, model.size)))
}

/// Which evaluator a registered model runs on under `sqlscore.engine = auto` ('native' or
/// 'onnxruntime'), and when not native why: the first node the native evaluator does not
/// support. Loads the model as scoring would (from the registry, into this backend's cache); a
/// model that cannot load says 'unavailable' and why, so listing models never fails.
fn engine_of(model: &str) -> (String, Option<String>) {
    match crate::registry::resolve(model) {
        Ok(m) => {
            let (engine, why) = m.engine(sqlscore_core::Evaluator::Auto);
            (engine.to_string(), why)
        }
        Err(e) => ("unavailable".into(), Some(e.message().to_string())),
    }
}

#[pg_extern(stable, parallel_safe, strict)]
#[search_path(pg_catalog, pg_temp)]
fn model_engine(model: &str) -> String {
    engine_of(model).0
}

#[pg_extern(stable, parallel_safe, strict)]
#[search_path(pg_catalog, pg_temp)]
fn model_engine_reason(model: &str) -> Option<String> {
    engine_of(model).1
}

extension_sql!(
    r#"
-- Unreferenced columns of a view are not computed: listing names loads no model.
CREATE VIEW sqlscore.models AS
SELECT name, version, active, sha256, inputs, outputs, description, size, created_at, created_by,
       sqlscore.model_engine(name || '@' || version) AS engine,
       sqlscore.model_engine_reason(name || '@' || version) AS engine_reason
FROM sqlscore.model_versions;
GRANT SELECT ON sqlscore.models TO PUBLIC;
"#,
    name = "models_view",
    requires = [model_engine, model_engine_reason]
);

/// Which libonnxruntime this backend loaded, and its cache: for troubleshooting.
#[pg_extern(volatile, parallel_safe)]
#[search_path(pg_catalog, pg_temp)]
fn runtime_info() -> JsonB {
    let e = engine();
    let config = e.config();
    JsonB(serde_json::json!({
        "onnxruntime_library": sqlscore_core::runtime::loaded_from().map(|p| p.display().to_string()),
        "cached_models": e.cached_models(),
        "cached_bytes": e.cached_bytes(),
        "cache_limit_bytes": config.cache_bytes,
        "intra_threads": config.intra_threads,
        "engine": config.evaluator.name(),
        "max_intra_threads": sqlscore_core::max_intra_threads(),
    }))
}

/// Raises a Rust panic inside the backend, to check that it becomes an ordinary ERROR (with no
/// Rust backtrace for the client) and the backend keeps serving. Only in builds with the
/// `test-hooks` feature (`make test-pg` installs one); the shipped extension has no such function.
#[cfg(feature = "test-hooks")]
#[pg_extern(volatile)]
fn selftest_panic() -> bool {
    // SAFETY: superuser() only reads the session's role state.
    if !unsafe { pg_sys::superuser() } {
        return false;
    }
    panic!("sqlscore self-test panic");
}
