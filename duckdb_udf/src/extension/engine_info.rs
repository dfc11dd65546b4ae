//! `sqlscore_model_engine(sha256, onnx)`: which evaluator a registered model runs on under
//! `sqlscore_engine = 'auto'`, for the `engine` and `engine_reason` columns of
//! `sqlscore_model_list`. It loads the model as scoring would (same checks, same cache).

use std::sync::Arc;

use libduckdb_sys as sys;
use sqlscore_core::{Engine, Evaluator};

use super::ffi::{cstring, guarded, LogicalType, OutputVector, VectorRef};

pub const NAME: &str = "sqlscore_model_engine";

/// # Safety
/// `con` is a live connection.
pub unsafe fn register(con: sys::duckdb_connection, engine: &Arc<Engine>) -> Result<(), String> {
    let cname = cstring(NAME);
    let text = LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR);
    let blob = LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_BLOB);
    let state = Box::into_raw(Box::new(engine.clone()));
    // SAFETY: con is live (contract); the types live through the calls (DuckDB copies them); the
    // state box is owned by DuckDB from here and freed once by drop_state; the function object
    // is destroyed after registration.
    let rc = unsafe {
        let mut f = sys::duckdb_create_scalar_function();
        sys::duckdb_scalar_function_set_name(f, cname.as_ptr());
        sys::duckdb_scalar_function_add_parameter(f, text.0);
        sys::duckdb_scalar_function_add_parameter(f, blob.0);
        sys::duckdb_scalar_function_set_return_type(f, text.0);
        sys::duckdb_scalar_function_set_extra_info(f, state.cast(), Some(drop_state));
        sys::duckdb_scalar_function_set_function(f, Some(invoke));
        let rc = sys::duckdb_register_scalar_function(con, f);
        sys::duckdb_destroy_scalar_function(&mut f);
        rc
    };
    if rc != sys::duckdb_state_DuckDBSuccess {
        return Err(format!("could not register {NAME}"));
    }
    Ok(())
}

unsafe extern "C" fn drop_state(p: *mut std::os::raw::c_void) {
    if !p.is_null() {
        // SAFETY: p is the Arc<Engine> box given to DuckDB in register; DuckDB frees it once.
        drop(unsafe { Box::from_raw(p.cast::<Arc<Engine>>()) });
    }
}

/// `native`, or `onnxruntime: <why>`; a model that cannot load gives `unavailable: <error>`, so
/// listing models never fails because of one of them.
unsafe extern "C" fn invoke(
    info: sys::duckdb_function_info,
    input: sys::duckdb_data_chunk,
    output: sys::duckdb_vector,
) {
    let result = guarded(|| {
        // SAFETY: the extra info is the Arc<Engine> registered with this function, alive while it exists.
        let engine = unsafe { &*(sys::duckdb_scalar_function_get_extra_info(info) as *const Arc<Engine>) };
        // SAFETY: input and output are this callback's chunk and vector, alive until it returns.
        let n = unsafe { sys::duckdb_data_chunk_get_size(input) as usize };
        // SAFETY: the function has exactly two parameters; each input vector is flat with n rows.
        let (sha, onnx) = unsafe {
            (
                VectorRef::new(sys::duckdb_data_chunk_get_vector(input, 0), n),
                VectorRef::new(sys::duckdb_data_chunk_get_vector(input, 1), n),
            )
        };
        let (sha, onnx) = (sha.strings(), onnx.strings());
        // SAFETY: output is this callback's result vector with room for n rows.
        let mut out = unsafe { OutputVector::new(output, n) };
        for r in 0..n {
            let (Some(sha), Some(bytes)) =
                (sha.as_ref().and_then(|s| s.str(r)), onnx.as_ref().and_then(|o| o.bytes(r)))
            else {
                out.set_null(r).map_err(|e| e.to_string())?;
                continue;
            };
            let text = match engine.get_or_load(sha, sha, || Ok(bytes.to_vec())) {
                Ok(m) => match m.engine(Evaluator::Auto) {
                    (engine, None) => engine.to_string(),
                    (engine, Some(why)) => format!("{engine}: {why}"),
                },
                Err(e) => format!("unavailable: {e}"),
            };
            out.set_bytes(r, text.as_bytes()).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    if let Err(msg) = result {
        let c = cstring(&msg);
        // SAFETY: info is this callback's function info; DuckDB copies the message.
        unsafe { sys::duckdb_scalar_function_set_error(info, c.as_ptr()) };
    }
}
