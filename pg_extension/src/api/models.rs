//! Model validation for the registry's PL/pgSQL (`registry.sql`).

use pgrx::prelude::*;
use pgrx::JsonB;

use pgrx::pg_sys::panic::ErrorReport;
use crate::errors::report;
use crate::registry::engine;

/// Loads the bytes into ONNX Runtime (validating them) and describes the model. Used by
/// `sqlscore.register_model` before anything is written.
#[pg_extern(volatile, parallel_safe)]
fn inspect_model(name: &str, onnx: &[u8]) -> Result<JsonB, ErrorReport> {
    sqlscore_core::validate_name(name).map_err(report)?;
    let model = engine().load_bytes(name, onnx).map_err(report)?;
    Ok(JsonB(model.info.describe(&model.sha256, model.size)))
}

/// Which libonnxruntime this backend loaded, and its cache: for troubleshooting.
#[pg_extern(volatile, parallel_safe)]
fn runtime_info() -> JsonB {
    let e = engine();
    JsonB(serde_json::json!({
        "onnxruntime_library": sqlscore_core::runtime::loaded_from().map(|p| p.display().to_string()),
        "cached_models": e.cached_models(),
        "intra_threads": e.config().intra_threads,
    }))
}

/// Raises a Rust panic inside the backend, to check (in tests, as superuser) that it becomes an
/// ordinary ERROR and the backend keeps serving: the FFI guard every function runs behind.
#[pg_extern(volatile)]
fn selftest_panic() -> bool {
    if !unsafe { pg_sys::superuser() } {
        return false;
    }
    panic!("sqlscore self-test panic");
}
