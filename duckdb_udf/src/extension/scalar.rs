//! `sqlscore_score_impl` and friends: what the `score`/`predict`/`predict_proba`/`score_all`
//! macros call. Arguments: the model as the user wrote it, the registry row the macro looked up
//! (`{sha256, onnx}` or NULL), the registered names (for the "unknown model" hint), then features.
//! Rows of one chunk may name different models: they are grouped and each group is scored in one
//! batch.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use libduckdb_sys as sys;
use sqlscore_core::{Batch, Engine, Error, Predictions, RunOptions, Want};

use super::ffi::{cstring, guarded, is_valid, string_at, user_message, validity, LogicalType};
use super::settings::CallSettings;
use super::vectors::{Features, Output};

/// Per-function state, owned by DuckDB through extra_info (per database, not a static).
pub struct FunctionState {
    pub engine: Arc<Engine>,
    pub want: Want,
}

pub const MODEL_ARGS: usize = 3;

pub unsafe fn register(con: sys::duckdb_connection, engine: &Arc<Engine>) -> Result<(), String> {
    let functions: [(&str, Want, LogicalType); 4] = [
        ("sqlscore_score_impl", Want::Score, LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE)),
        ("sqlscore_predict_impl", Want::Label, LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR)),
        (
            "sqlscore_predict_proba_impl",
            Want::Probabilities,
            LogicalType::list(&LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE)),
        ),
        ("sqlscore_score_all_impl", Want::All, LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR)),
    ];
    for (name, want, ret) in functions {
        unsafe {
            let mut f = sys::duckdb_create_scalar_function();
            let cname = cstring(name);
            sys::duckdb_scalar_function_set_name(f, cname.as_ptr());
            sys::duckdb_scalar_function_add_parameter(f, LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR).0);
            let row_type = LogicalType::structure(&[
                ("sha256", LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR)),
                ("onnx", LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_BLOB)),
            ]);
            sys::duckdb_scalar_function_add_parameter(f, row_type.0);
            sys::duckdb_scalar_function_add_parameter(f, LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR).0);
            sys::duckdb_scalar_function_set_varargs(f, LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_ANY).0);
            sys::duckdb_scalar_function_set_return_type(f, ret.0);
            // NULL arguments still reach us: NULL features give NULL rows, an unknown model an error.
            sys::duckdb_scalar_function_set_special_handling(f);
            let state = Box::new(FunctionState { engine: engine.clone(), want });
            sys::duckdb_scalar_function_set_extra_info(f, Box::into_raw(state).cast(), Some(drop_state));
            sys::duckdb_scalar_function_set_function(f, Some(invoke));
            sys::duckdb_scalar_function_set_bind(f, Some(bind));
            let rc = sys::duckdb_register_scalar_function(con, f);
            sys::duckdb_destroy_scalar_function(&mut f);
            if rc != sys::duckdb_state_DuckDBSuccess {
                return Err(format!("could not register {name}"));
            }
        }
    }
    Ok(())
}

unsafe extern "C" fn drop_state(p: *mut std::os::raw::c_void) {
    if !p.is_null() {
        drop(unsafe { Box::from_raw(p.cast::<FunctionState>()) });
    }
}

/// Reads the session's settings once per expression; execution gets them as bind data.
unsafe extern "C" fn bind(info: sys::duckdb_bind_info) {
    let result = guarded(|| unsafe {
        let state = &*(sys::duckdb_scalar_function_bind_get_extra_info(info) as *const FunctionState);
        let settings = super::settings::read(info, CallSettings::from_config(&state.engine.config()))?;
        sys::duckdb_scalar_function_set_bind_data(info, Box::into_raw(Box::new(settings)).cast(), Some(drop_settings));
        sys::duckdb_scalar_function_set_bind_data_copy(info, Some(copy_settings));
        Ok(())
    });
    if let Err(msg) = result {
        let c = cstring(&msg);
        unsafe { sys::duckdb_scalar_function_bind_set_error(info, c.as_ptr()) };
    }
}

unsafe extern "C" fn drop_settings(p: *mut std::os::raw::c_void) {
    if !p.is_null() {
        drop(unsafe { Box::from_raw(p.cast::<CallSettings>()) });
    }
}

unsafe extern "C" fn copy_settings(p: *mut std::os::raw::c_void) -> *mut std::os::raw::c_void {
    let settings = unsafe { *p.cast::<CallSettings>() };
    Box::into_raw(Box::new(settings)).cast()
}

unsafe extern "C" fn invoke(info: sys::duckdb_function_info, input: sys::duckdb_data_chunk, output: sys::duckdb_vector) {
    let result = guarded(|| unsafe {
        let state = &*(sys::duckdb_scalar_function_get_extra_info(info) as *const FunctionState);
        let bound = sys::duckdb_scalar_function_get_bind_data(info) as *const CallSettings;
        let settings = if bound.is_null() { CallSettings::from_config(&state.engine.config()) } else { *bound };
        score_chunk(state, settings, input, output).map_err(|e| user_message(&e))
    });
    if let Err(msg) = result {
        let c = cstring(&msg);
        unsafe { sys::duckdb_scalar_function_set_error(info, c.as_ptr()) };
    }
}

/// Where a group of rows gets its model from.
enum Source<'a> {
    Registered { sha256: &'a str, onnx: &'a [u8] },
    Unregistered,
}

/// Fault injection for the test that proves a panic becomes an SQL error: `SQLSCORE_FAULT=panic`.
fn injected_panic() -> bool {
    static FAULT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FAULT.get_or_init(|| std::env::var("SQLSCORE_FAULT").is_ok_and(|v| v == "panic"))
}

unsafe fn score_chunk(
    state: &FunctionState,
    settings: CallSettings,
    input: sys::duckdb_data_chunk,
    output: sys::duckdb_vector,
) -> Result<(), Error> {
    if injected_panic() {
        panic!("injected fault (SQLSCORE_FAULT=panic)");
    }
    unsafe {
        let n = sys::duckdb_data_chunk_get_size(input) as usize;
        let ncols = sys::duckdb_data_chunk_get_column_count(input) as usize;
        let arg = |i: usize| sys::duckdb_data_chunk_get_vector(input, i as u64);
        let model_vec = arg(0);
        let model_valid = validity(model_vec, n);
        let model_data = sys::duckdb_vector_get_data(model_vec) as *const sys::duckdb_string_t;
        let row_vec = arg(1);
        let row_valid = validity(row_vec, n);
        let sha_vec = sys::duckdb_struct_vector_get_child(row_vec, 0);
        let sha_valid = validity(sha_vec, n);
        let sha_data = sys::duckdb_vector_get_data(sha_vec) as *const sys::duckdb_string_t;
        let onnx_data =
            sys::duckdb_vector_get_data(sys::duckdb_struct_vector_get_child(row_vec, 1)) as *const sys::duckdb_string_t;

        let mut out = Output::new(output);
        // Group rows by model: the registry hash, or the model text when it is not registered.
        let mut groups: Vec<(&str, Source<'_>, Vec<usize>)> = Vec::new();
        let mut index: HashMap<&[u8], usize> = HashMap::new();
        let mut last: Option<(&[u8], usize)> = None;
        for r in 0..n {
            if !is_valid(model_valid, r) {
                out.set_null(r);
                continue;
            }
            let registered = is_valid(row_valid, r) && is_valid(sha_valid, r);
            let key: &[u8] = if registered { string_at(sha_data, r) } else { string_at(model_data, r) };
            let g = match last {
                Some((k, g)) if k == key => g,
                _ => *index.entry(key).or_insert_with(|| {
                    let label = std::str::from_utf8_unchecked(string_at(model_data, r));
                    let source = if registered {
                        Source::Registered {
                            sha256: std::str::from_utf8_unchecked(key),
                            onnx: string_at(onnx_data, r),
                        }
                    } else {
                        Source::Unregistered
                    };
                    groups.push((label, source, Vec::new()));
                    groups.len() - 1
                }),
            };
            last = Some((key, g));
            groups[g].2.push(r);
        }
        if groups.is_empty() {
            return Ok(());
        }

        let feature_vectors: Vec<sys::duckdb_vector> = (MODEL_ARGS..ncols).map(arg).collect();
        let features = Features::new(&feature_vectors, n);
        let batch = Batch::new(features.columns(), n);
        let opts = RunOptions {
            null_policy: settings.null_policy,
            batch_rows: state.engine.config().batch_rows,
            intra_threads: settings.intra_threads,
        };

        for (label, source, rows) in &groups {
            let model = match source {
                Source::Registered { sha256, onnx } => state.engine.get_or_load(label, sha256, || Ok(onnx.to_vec()))?,
                Source::Unregistered if looks_like_path(label) && !settings.external_access => {
                    return Err(Error::ModelFile {
                        path: label.to_string(),
                        reason: "file access is disabled (enable_external_access = false); register the model instead".into(),
                    });
                }
                Source::Unregistered if looks_like_path(label) => state.engine.load_path(Path::new(label))?,
                Source::Unregistered => {
                    let known_vec = arg(2);
                    let known = if is_valid(validity(known_vec, n), rows[0]) {
                        let raw = string_at(sys::duckdb_vector_get_data(known_vec) as *const sys::duckdb_string_t, rows[0]);
                        String::from_utf8_lossy(raw).split(", ").map(str::to_string).collect()
                    } else {
                        Vec::new()
                    };
                    return Err(Error::UnknownModel { model: label.to_string(), known });
                }
            };
            match model.predict(label, &batch, rows, state.want, opts)? {
                Predictions::Score(v) => scatter(rows, v, &mut out, |o, r, x| o.set_f64(r, x)),
                Predictions::Label(v) => scatter(rows, v, &mut out, |o, r, x| o.set_str(r, &x)),
                Predictions::All(v) => scatter(rows, v, &mut out, |o, r, x| o.set_str(r, &x)),
                Predictions::Probabilities(v) => scatter(rows, v, &mut out, |o, r, x| o.set_f64_list(r, &x)),
            }
        }
        Ok(())
    }
}

fn scatter<T>(rows: &[usize], values: Vec<Option<T>>, out: &mut Output, set: impl Fn(&mut Output, usize, T)) {
    for (&r, v) in rows.iter().zip(values) {
        match v {
            Some(x) => set(out, r, x),
            None => out.set_null(r),
        }
    }
}

/// A model argument that is not a registered name is read as a file when it looks like one.
fn looks_like_path(s: &str) -> bool {
    s.ends_with(".onnx") || s.contains('/')
}
