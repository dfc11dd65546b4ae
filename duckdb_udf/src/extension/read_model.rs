//! `sqlscore_read_model(path, name)`: reads an .onnx file, validates it by loading it into ONNX
//! Runtime, and returns one row (sha256, inputs, outputs, size, onnx) for the `sqlscore_register`
//! macro to insert into `sqlscore_models`. Validation happens at bind time, so a bad file fails
//! the INSERT before anything is written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use libduckdb_sys as sys;
use sqlscore_core::{read_model_file, Engine, Error};

use super::ffi::{cstring, guarded, user_message, LogicalType, OutputVector, Value};

struct BindData {
    sha256: String,
    inputs: String,
    outputs: String,
    onnx: Vec<u8>,
}

const COLUMNS: [(&str, sys::DUCKDB_TYPE); 5] = [
    ("sha256", sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR),
    ("inputs", sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR),
    ("outputs", sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR),
    ("size", sys::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT),
    ("onnx", sys::DUCKDB_TYPE_DUCKDB_TYPE_BLOB),
];

/// # Safety
/// `con` is a live connection.
pub unsafe fn register(con: sys::duckdb_connection, engine: &Arc<Engine>) -> Result<(), String> {
    let name = cstring("sqlscore_read_model");
    let text = LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR);
    let extra = Box::into_raw(Box::new(engine.clone()));
    // SAFETY: con is live (contract); DuckDB copies the name and types, owns `extra` from here and
    // frees it with drop_box exactly once; the function object is destroyed after registering.
    let rc = unsafe {
        let mut f = sys::duckdb_create_table_function();
        sys::duckdb_table_function_set_name(f, name.as_ptr());
        sys::duckdb_table_function_add_parameter(f, text.0);
        sys::duckdb_table_function_add_parameter(f, text.0);
        sys::duckdb_table_function_set_extra_info(f, extra.cast(), Some(drop_box::<Arc<Engine>>));
        sys::duckdb_table_function_set_bind(f, Some(bind));
        sys::duckdb_table_function_set_init(f, Some(init));
        sys::duckdb_table_function_set_function(f, Some(produce));
        let rc = sys::duckdb_register_table_function(con, f);
        sys::duckdb_destroy_table_function(&mut f);
        rc
    };
    if rc != sys::duckdb_state_DuckDBSuccess {
        return Err("could not register sqlscore_read_model".into());
    }
    Ok(())
}

unsafe extern "C" fn drop_box<T>(p: *mut std::os::raw::c_void) {
    if !p.is_null() {
        // SAFETY: p is a Box<T> this module handed to DuckDB, which frees it exactly once.
        drop(unsafe { Box::from_raw(p.cast::<T>()) });
    }
}

/// Parameter `i` as text; None when it is SQL NULL.
///
/// # Safety
/// `info` is the bind info of the current callback and `i` one of its parameters.
unsafe fn string_param(info: sys::duckdb_bind_info, i: u64) -> Option<String> {
    // SAFETY: info is live (contract); the returned value is ours (Value destroys it).
    unsafe { Value::from_raw(sys::duckdb_bind_get_parameter(info, i)) }?.text()
}

unsafe extern "C" fn bind(info: sys::duckdb_bind_info) {
    let result = guarded(|| {
        // SAFETY: the extra info is the Arc<Engine> registered with this function, alive as long
        // as the function; parameters 0 and 1 exist (the function declares two).
        let (engine, path, name) = unsafe {
            (
                &*(sys::duckdb_bind_get_extra_info(info) as *const Arc<Engine>),
                string_param(info, 0),
                string_param(info, 1),
            )
        };
        let null = |argument: &str| {
            user_message(&Error::NullArgument { function: "sqlscore_register".into(), argument: argument.into() })
        };
        let path = path.ok_or_else(|| null("the model path"))?;
        let name = name.ok_or_else(|| null("the model name"))?;
        sqlscore_core::validate_name(&name).map_err(|e| user_message(&e))?;
        // SAFETY: info is this table function's bind info.
        if !unsafe { super::settings::external_access(info) } {
            return Err(user_message(&Error::ModelFile {
                path,
                reason: "file access is disabled (enable_external_access = false)".into(),
            }));
        }
        let limit = engine.config().max_model_bytes;
        let onnx = read_model_file(std::path::Path::new(&path), limit).map_err(|e| user_message(&e))?;
        let model = engine.load_bytes(&name, &onnx).map_err(|e| user_message(&e))?;
        let data = Box::into_raw(Box::new(BindData {
            sha256: model.sha256.clone(),
            inputs: model.info.inputs_json(),
            outputs: model.info.outputs_json(),
            onnx,
        }));
        // SAFETY: info is live; DuckDB copies column names and types, and owns `data` from here
        // (freed with drop_box exactly once).
        unsafe {
            for (col, ty) in COLUMNS {
                let c = cstring(col);
                sys::duckdb_bind_add_result_column(info, c.as_ptr(), LogicalType::new(ty).0);
            }
            sys::duckdb_bind_set_bind_data(info, data.cast(), Some(drop_box::<BindData>));
        }
        Ok(())
    });
    if let Err(msg) = result {
        let c = cstring(&msg);
        // SAFETY: info is this callback's bind info; DuckDB copies the message.
        unsafe { sys::duckdb_bind_set_error(info, c.as_ptr()) };
    }
}

unsafe extern "C" fn init(info: sys::duckdb_init_info) {
    let done = Box::into_raw(Box::new(AtomicBool::new(false)));
    // SAFETY: info is this callback's init info; DuckDB owns `done` from here and frees it once.
    unsafe { sys::duckdb_init_set_init_data(info, done.cast(), Some(drop_box::<AtomicBool>)) };
}

unsafe extern "C" fn produce(info: sys::duckdb_function_info, output: sys::duckdb_data_chunk) {
    let result = guarded(|| {
        // SAFETY: bind and init data are the boxes set in bind/init, alive during the scan.
        let (data, done) = unsafe {
            (
                &*(sys::duckdb_function_get_bind_data(info) as *const BindData),
                &*(sys::duckdb_function_get_init_data(info) as *const AtomicBool),
            )
        };
        if done.swap(true, Ordering::SeqCst) {
            // SAFETY: output is this callback's chunk.
            unsafe { sys::duckdb_data_chunk_set_size(output, 0) };
            return Ok(());
        }
        // SAFETY: output is this callback's chunk with the 5 declared columns and room for a row.
        let col = |i: u64| unsafe { OutputVector::new(sys::duckdb_data_chunk_get_vector(output, i), 1) };
        let fill = || -> Result<(), Error> {
            col(0).set_bytes(0, data.sha256.as_bytes())?;
            col(1).set_bytes(0, data.inputs.as_bytes())?;
            col(2).set_bytes(0, data.outputs.as_bytes())?;
            col(3).set_i64(0, data.onnx.len() as i64)?;
            col(4).set_bytes(0, &data.onnx)
        };
        fill().map_err(|e| user_message(&e))?;
        // SAFETY: output is this callback's chunk; one row was written.
        unsafe { sys::duckdb_data_chunk_set_size(output, 1) };
        Ok(())
    });
    if let Err(msg) = result {
        let c = cstring(&msg);
        // SAFETY: info is this callback's function info; DuckDB copies the message.
        unsafe { sys::duckdb_function_set_error(info, c.as_ptr()) };
    }
}
