//! `sqlscore_score_impl` and friends: what the `score`/`predict`/`predict_proba`/`score_all`
//! macros call. Arguments: the model as the user wrote it, the registry row the macro looked up
//! (`{sha256, onnx}` or NULL), the registered names (for the "unknown model" hint), then features.
//! Rows of one chunk may name different models: they are grouped and each group is scored in one
//! batch. Anyone can call these functions directly with a row of their own making; that grants
//! nothing: the bytes must hash to the sha256 they come with and go through the same loading
//! checks as a registration.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use libduckdb_sys as sys;
use sqlscore_core::{Batch, Engine, Error, Predictions, RunOptions, Want};

use super::ffi::{cstring, guarded, user_message, LogicalType, OutputVector, VectorRef, DUCKDB};
use super::settings::CallSettings;
use super::vectors::Features;

/// Per-function state, owned by DuckDB through extra_info (per database, not a static).
pub struct FunctionState {
    pub engine: Arc<Engine>,
    pub want: Want,
}

pub const MODEL_ARGS: usize = 3;

/// # Safety
/// `con` is a live connection.
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
        let cname = cstring(name);
        let text = LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR);
        let row_type = LogicalType::structure(&[
            ("sha256", LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR)),
            ("onnx", LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_BLOB)),
        ]);
        let any = LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_ANY);
        let state = Box::into_raw(Box::new(FunctionState { engine: engine.clone(), want }));
        // SAFETY: con is live (contract); every type passed is alive for the call (DuckDB copies
        // types); the state box is handed to DuckDB, which frees it with drop_state exactly once;
        // the function object is destroyed after registration.
        let rc = unsafe {
            let mut f = sys::duckdb_create_scalar_function();
            sys::duckdb_scalar_function_set_name(f, cname.as_ptr());
            sys::duckdb_scalar_function_add_parameter(f, text.0);
            sys::duckdb_scalar_function_add_parameter(f, row_type.0);
            sys::duckdb_scalar_function_add_parameter(f, text.0);
            sys::duckdb_scalar_function_set_varargs(f, any.0);
            sys::duckdb_scalar_function_set_return_type(f, ret.0);
            // NULL arguments still reach us: NULL features give NULL rows, an unknown model an error.
            sys::duckdb_scalar_function_set_special_handling(f);
            sys::duckdb_scalar_function_set_extra_info(f, state.cast(), Some(drop_state));
            sys::duckdb_scalar_function_set_function(f, Some(invoke));
            sys::duckdb_scalar_function_set_bind(f, Some(bind));
            let rc = sys::duckdb_register_scalar_function(con, f);
            sys::duckdb_destroy_scalar_function(&mut f);
            rc
        };
        if rc != sys::duckdb_state_DuckDBSuccess {
            return Err(format!("could not register {name}"));
        }
    }
    Ok(())
}

unsafe extern "C" fn drop_state(p: *mut std::os::raw::c_void) {
    if !p.is_null() {
        // SAFETY: p is the FunctionState box given to DuckDB in register; DuckDB frees it once.
        drop(unsafe { Box::from_raw(p.cast::<FunctionState>()) });
    }
}

/// Reads the session's settings once per expression; execution gets them as bind data.
unsafe extern "C" fn bind(info: sys::duckdb_bind_info) {
    let result = guarded(|| {
        // SAFETY: the extra info is the FunctionState registered with this function; DuckDB keeps
        // it alive as long as the function exists.
        let state = unsafe { &*(sys::duckdb_scalar_function_bind_get_extra_info(info) as *const FunctionState) };
        // SAFETY: info is the bind info of the current callback.
        let settings = unsafe { super::settings::read(info, CallSettings::from_config(&state.engine.config())) }?;
        let data = Box::into_raw(Box::new(settings));
        // SAFETY: DuckDB owns the box from here and frees it with drop_settings (copies with
        // copy_settings), each exactly once.
        unsafe {
            sys::duckdb_scalar_function_set_bind_data(info, data.cast(), Some(drop_settings));
            sys::duckdb_scalar_function_set_bind_data_copy(info, Some(copy_settings));
        }
        Ok(())
    });
    if let Err(msg) = result {
        let c = cstring(&msg);
        // SAFETY: info is the bind info of the current callback; DuckDB copies the message.
        unsafe { sys::duckdb_scalar_function_bind_set_error(info, c.as_ptr()) };
    }
}

unsafe extern "C" fn drop_settings(p: *mut std::os::raw::c_void) {
    if !p.is_null() {
        // SAFETY: p is a CallSettings box made in bind or copy_settings; freed once by DuckDB.
        drop(unsafe { Box::from_raw(p.cast::<CallSettings>()) });
    }
}

unsafe extern "C" fn copy_settings(p: *mut std::os::raw::c_void) -> *mut std::os::raw::c_void {
    if p.is_null() {
        return p;
    }
    // SAFETY: p is a live CallSettings box (bind data); CallSettings is Copy.
    let settings = unsafe { *p.cast::<CallSettings>() };
    Box::into_raw(Box::new(settings)).cast()
}

unsafe extern "C" fn invoke(
    info: sys::duckdb_function_info,
    input: sys::duckdb_data_chunk,
    output: sys::duckdb_vector,
) {
    let result = guarded(|| {
        // SAFETY: extra info and bind data are the boxes this extension registered for the
        // function being called; DuckDB keeps both alive during the call.
        let (state, bound) = unsafe {
            (
                &*(sys::duckdb_scalar_function_get_extra_info(info) as *const FunctionState),
                sys::duckdb_scalar_function_get_bind_data(info) as *const CallSettings,
            )
        };
        let settings = if bound.is_null() {
            CallSettings::from_config(&state.engine.config())
        } else {
            // SAFETY: a non-null bind data pointer is a live CallSettings (see above).
            unsafe { *bound }
        };
        // SAFETY: input and output are the chunk and vector of this callback, alive until it returns.
        let (n, ncols) = unsafe {
            (sys::duckdb_data_chunk_get_size(input) as usize, sys::duckdb_data_chunk_get_column_count(input) as usize)
        };
        if ncols < MODEL_ARGS {
            return Err(user_message(&Error::Internal(format!("{ncols} arguments"))));
        }
        let args: Vec<VectorRef<'_>> = (0..ncols)
            // SAFETY: i < column count; each input vector is flat with n rows for this callback.
            .map(|i| unsafe { VectorRef::new(sys::duckdb_data_chunk_get_vector(input, i as u64), n) })
            .collect();
        // SAFETY: output is this callback's result vector with room for n rows.
        let mut out = unsafe { OutputVector::new(output, n) };
        score_chunk(state, settings, &args, n, &mut out).map_err(|e| user_message(&e))
    });
    if let Err(msg) = result {
        let c = cstring(&msg);
        // SAFETY: info is this callback's function info; DuckDB copies the message.
        unsafe { sys::duckdb_scalar_function_set_error(info, c.as_ptr()) };
    }
}

/// Where a group of rows gets its model from.
enum Source<'a> {
    Registered { sha256: &'a str, onnx: Option<&'a [u8]> },
    Unregistered,
}

/// Fault injection for the test that proves a panic becomes an SQL error: `SQLSCORE_FAULT=panic`.
/// Only in builds with the `test-hooks` feature; shipped builds have no such switch.
#[cfg(feature = "test-hooks")]
fn injected_panic() -> bool {
    static FAULT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FAULT.get_or_init(|| std::env::var("SQLSCORE_FAULT").is_ok_and(|v| v == "panic"))
}

#[cfg(not(feature = "test-hooks"))]
fn injected_panic() -> bool {
    false
}

fn score_chunk(
    state: &FunctionState,
    settings: CallSettings,
    args: &[VectorRef<'_>],
    n: usize,
    out: &mut OutputVector<'_>,
) -> Result<(), Error> {
    if injected_panic() {
        panic!("injected fault (SQLSCORE_FAULT=panic)");
    }
    let internal = |what: &str| Error::Internal(format!("sqlscore_*_impl: {what}"));
    let model_arg = args[0].strings().ok_or_else(|| internal("model argument is not VARCHAR"))?;
    let row = args[1];
    let sha = row.struct_child(0).and_then(|v| v.strings()).ok_or_else(|| internal("registry row has no sha256"))?;
    let onnx = row.struct_child(1).and_then(|v| v.strings()).ok_or_else(|| internal("registry row has no onnx"))?;

    // Group rows by model: the registry hash, or the model text when it is not registered.
    let mut groups: Vec<(&str, Source<'_>, Vec<usize>)> = Vec::new();
    let mut index: HashMap<&[u8], usize> = HashMap::new();
    let mut last: Option<(&[u8], usize)> = None;
    for r in 0..n {
        let Some(label) = model_arg.str(r) else {
            out.set_null(r)?;
            continue;
        };
        let registered = if row.is_valid(r) { sha.str(r) } else { None };
        let key: &[u8] = registered.map_or(label.as_bytes(), str::as_bytes);
        let g = match last {
            Some((k, g)) if k == key => g,
            _ => *index.entry(key).or_insert_with(|| {
                let source = match registered {
                    Some(sha256) => Source::Registered { sha256, onnx: onnx.bytes(r) },
                    None => Source::Unregistered,
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

    let mut features = Features::new(&args[MODEL_ARGS..], n)?;
    let batch = Batch::new(features.columns()?, n);
    let opts = RunOptions {
        null_policy: settings.null_policy,
        batch_rows: state.engine.config().batch_rows,
        intra_threads: settings.intra_threads,
        interrupt: None,
        dialect: &DUCKDB,
        evaluator: settings.evaluator,
    };

    for (label, source, rows) in &groups {
        let model = match source {
            Source::Registered { sha256, onnx: Some(onnx) } => {
                state.engine.get_or_load(label, sha256, || Ok(onnx.to_vec()))?
            }
            Source::Registered { .. } => {
                return Err(Error::InvalidModel {
                    model: label.to_string(),
                    reason: "its registry row has no ONNX bytes".into(),
                })
            }
            Source::Unregistered if looks_like_path(label) && !settings.external_access => {
                return Err(Error::ModelFile {
                    path: label.to_string(),
                    reason: "file access is disabled (enable_external_access = false); register the model instead"
                        .into(),
                });
            }
            Source::Unregistered if looks_like_path(label) => state.engine.load_path(Path::new(label))?,
            Source::Unregistered => {
                // `lr@x` is a malformed reference (as in PostgreSQL), not an unknown model.
                sqlscore_core::parse_ref(label)?;
                let known = args[2]
                    .strings()
                    .and_then(|k| k.str(rows[0]))
                    .map(|k| k.split(", ").map(str::to_string).collect())
                    .unwrap_or_default();
                return Err(Error::UnknownModel { model: label.to_string(), known });
            }
        };
        match model.predict(label, &batch, rows, state.want, opts)? {
            Predictions::Score(v) => scatter(rows, v, out, |o, r, x| o.set_f64(r, x)),
            Predictions::Label(v) => scatter(rows, v, out, |o, r, x| o.set_bytes(r, x.as_bytes())),
            Predictions::All(v) => scatter(rows, v, out, |o, r, x| o.set_bytes(r, x.as_bytes())),
            Predictions::Probabilities(v) => scatter(rows, v, out, |o, r, x| o.set_f64_list(r, &x)),
        }?;
    }
    Ok(())
}

fn scatter<T>(
    rows: &[usize],
    values: Vec<Option<T>>,
    out: &mut OutputVector<'_>,
    set: impl Fn(&mut OutputVector<'_>, usize, T) -> Result<(), Error>,
) -> Result<(), Error> {
    if values.len() != rows.len() {
        return Err(Error::Internal(format!("{} results for {} rows", values.len(), rows.len())));
    }
    for (&r, v) in rows.iter().zip(values) {
        match v {
            Some(x) => set(out, r, x)?,
            None => out.set_null(r)?,
        }
    }
    Ok(())
}

/// A model argument that is not a registered name is read as a file when it looks like one.
fn looks_like_path(s: &str) -> bool {
    s.ends_with(".onnx") || s.contains('/')
}
