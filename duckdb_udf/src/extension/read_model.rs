//! `sqlscore_read_model(path, name)`: reads an .onnx file, validates it by loading it into ONNX
//! Runtime, and returns one row (sha256, inputs, outputs, size, onnx) for the `sqlscore_register`
//! macro to insert into `sqlscore_models`. Validation happens at bind time, so a bad file fails
//! the INSERT before anything is written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use libduckdb_sys as sys;
use sqlscore_core::{Engine, Error};

use super::ffi::{cstring, guarded, take_duckdb_string, user_message, LogicalType};
use super::vectors::Output;

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

pub unsafe fn register(con: sys::duckdb_connection, engine: &Arc<Engine>) -> Result<(), String> {
    unsafe {
        let mut f = sys::duckdb_create_table_function();
        let name = cstring("sqlscore_read_model");
        sys::duckdb_table_function_set_name(f, name.as_ptr());
        sys::duckdb_table_function_add_parameter(f, LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR).0);
        sys::duckdb_table_function_add_parameter(f, LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR).0);
        let extra = Box::into_raw(Box::new(engine.clone()));
        sys::duckdb_table_function_set_extra_info(f, extra.cast(), Some(drop_box::<Arc<Engine>>));
        sys::duckdb_table_function_set_bind(f, Some(bind));
        sys::duckdb_table_function_set_init(f, Some(init));
        sys::duckdb_table_function_set_function(f, Some(produce));
        let rc = sys::duckdb_register_table_function(con, f);
        sys::duckdb_destroy_table_function(&mut f);
        if rc != sys::duckdb_state_DuckDBSuccess {
            return Err("could not register sqlscore_read_model".into());
        }
    }
    Ok(())
}

unsafe extern "C" fn drop_box<T>(p: *mut std::os::raw::c_void) {
    if !p.is_null() {
        drop(unsafe { Box::from_raw(p.cast::<T>()) });
    }
}

unsafe fn string_param(info: sys::duckdb_bind_info, i: u64) -> String {
    unsafe {
        let mut v = sys::duckdb_bind_get_parameter(info, i);
        let s = take_duckdb_string(sys::duckdb_get_varchar(v));
        sys::duckdb_destroy_value(&mut v);
        s
    }
}

unsafe extern "C" fn bind(info: sys::duckdb_bind_info) {
    let result = guarded(|| unsafe {
        let engine = &*(sys::duckdb_bind_get_extra_info(info) as *const Arc<Engine>);
        let path = string_param(info, 0);
        let name = string_param(info, 1);
        sqlscore_core::validate_name(&name).map_err(|e| user_message(&e))?;
        if !super::settings::external_access(info) {
            return Err(format!(
                "cannot read model file '{path}': file access is disabled (enable_external_access = false)"
            ));
        }
        let onnx = std::fs::read(&path)
            .map_err(|e| user_message(&Error::ModelFile { path: path.clone(), reason: e.to_string() }))?;
        let model = engine.load_bytes(&name, &onnx).map_err(|e| user_message(&e))?;
        for (col, ty) in COLUMNS {
            let c = cstring(col);
            sys::duckdb_bind_add_result_column(info, c.as_ptr(), LogicalType::new(ty).0);
        }
        let data = BindData {
            sha256: model.sha256.clone(),
            inputs: model.info.inputs_json(),
            outputs: model.info.outputs_json(),
            onnx,
        };
        sys::duckdb_bind_set_bind_data(info, Box::into_raw(Box::new(data)).cast(), Some(drop_box::<BindData>));
        Ok(())
    });
    if let Err(msg) = result {
        let c = cstring(&msg);
        unsafe { sys::duckdb_bind_set_error(info, c.as_ptr()) };
    }
}

unsafe extern "C" fn init(info: sys::duckdb_init_info) {
    let done = Box::into_raw(Box::new(AtomicBool::new(false)));
    unsafe { sys::duckdb_init_set_init_data(info, done.cast(), Some(drop_box::<AtomicBool>)) };
}

unsafe extern "C" fn produce(info: sys::duckdb_function_info, output: sys::duckdb_data_chunk) {
    let result = guarded(|| unsafe {
        let data = &*(sys::duckdb_function_get_bind_data(info) as *const BindData);
        let done = &*(sys::duckdb_function_get_init_data(info) as *const AtomicBool);
        if done.swap(true, Ordering::SeqCst) {
            sys::duckdb_data_chunk_set_size(output, 0);
            return Ok(());
        }
        let col = |i: u64| Output::new(sys::duckdb_data_chunk_get_vector(output, i));
        col(0).set_str(0, &data.sha256);
        col(1).set_str(0, &data.inputs);
        col(2).set_str(0, &data.outputs);
        *(sys::duckdb_vector_get_data(sys::duckdb_data_chunk_get_vector(output, 3)) as *mut i64) = data.onnx.len() as i64;
        let blob = sys::duckdb_data_chunk_get_vector(output, 4);
        sys::duckdb_vector_assign_string_element_len(blob, 0, data.onnx.as_ptr().cast(), data.onnx.len() as u64);
        sys::duckdb_data_chunk_set_size(output, 1);
        Ok(())
    });
    if let Err(msg) = result {
        let c = cstring(&msg);
        unsafe { sys::duckdb_function_set_error(info, c.as_ptr()) };
    }
}
