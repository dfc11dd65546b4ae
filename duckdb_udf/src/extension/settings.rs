//! DuckDB settings: `SET sqlscore_null_policy = 'error'`, `SET sqlscore_intra_threads = 2`.
//! Registered at LOAD (defaults from the SQLSCORE_* environment), read in each scoring call's
//! bind step from the caller's client context, and carried to execution as bind data.

use libduckdb_sys as sys;
use sqlscore_core::{EngineConfig, NullPolicy, MAX_INTRA_THREADS};

use super::ffi::{cstring, take_duckdb_string, LogicalType};

pub const NULL_POLICY: &str = "sqlscore_null_policy";
pub const INTRA_THREADS: &str = "sqlscore_intra_threads";

/// What one scoring expression runs with.
#[derive(Clone, Copy, Debug)]
pub struct CallSettings {
    pub null_policy: NullPolicy,
    pub intra_threads: usize,
    /// DuckDB's `enable_external_access`: when false, model arguments that are file paths are
    /// refused, as DuckDB refuses its own file reads.
    pub external_access: bool,
}

impl CallSettings {
    pub fn from_config(c: &EngineConfig) -> Self {
        CallSettings { null_policy: c.null_policy, intra_threads: c.intra_threads, external_access: true }
    }
}

/// Registers the options (C API v1.5.6, which the extension requires).
pub unsafe fn register(con: sys::duckdb_connection, defaults: &EngineConfig) {
    let null_default = match defaults.null_policy {
        NullPolicy::Null => "null",
        NullPolicy::Error => "error",
    };
    unsafe {
        let text = cstring(null_default);
        option(
            con,
            NULL_POLICY,
            "sqlscore: what a NULL feature does: 'null' (that row scores NULL) or 'error'",
            LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR),
            sys::duckdb_create_varchar(text.as_ptr()),
        );
        option(
            con,
            INTRA_THREADS,
            "sqlscore: ONNX Runtime intra-op threads per session (DuckDB threads already parallelise)",
            LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT),
            sys::duckdb_create_int64(defaults.intra_threads as i64),
        );
    }
}

unsafe fn option(con: sys::duckdb_connection, name: &str, description: &str, ty: LogicalType, mut default: sys::duckdb_value) {
    unsafe {
        let mut opt = sys::duckdb_create_config_option();
        let (n, d) = (cstring(name), cstring(description));
        sys::duckdb_config_option_set_name(opt, n.as_ptr());
        sys::duckdb_config_option_set_description(opt, d.as_ptr());
        sys::duckdb_config_option_set_type(opt, ty.0);
        sys::duckdb_config_option_set_default_value(opt, default);
        sys::duckdb_config_option_set_default_scope(opt, sys::duckdb_config_option_scope_DUCKDB_CONFIG_OPTION_SCOPE_SESSION);
        sys::duckdb_register_config_option(con, opt);
        sys::duckdb_destroy_config_option(&mut opt);
        sys::duckdb_destroy_value(&mut default);
    }
}

/// Reads the settings in effect for the scalar function being bound.
pub unsafe fn read(info: sys::duckdb_bind_info, fallback: CallSettings) -> Result<CallSettings, String> {
    let mut ctx: sys::duckdb_client_context = std::ptr::null_mut();
    unsafe { sys::duckdb_scalar_function_get_client_context(info, &mut ctx) };
    unsafe { read_context(ctx, fallback) }
}

/// Whether DuckDB may read files for the table function being bound.
pub unsafe fn external_access(info: sys::duckdb_bind_info) -> bool {
    let mut ctx: sys::duckdb_client_context = std::ptr::null_mut();
    unsafe { sys::duckdb_table_function_get_client_context(info, &mut ctx) };
    let fallback = CallSettings { null_policy: NullPolicy::Null, intra_threads: 1, external_access: true };
    unsafe { read_context(ctx, fallback) }.map(|s| s.external_access).unwrap_or(true)
}

/// Reads the settings from a client context and destroys it.
unsafe fn read_context(mut ctx: sys::duckdb_client_context, fallback: CallSettings) -> Result<CallSettings, String> {
    let mut out = fallback;
    unsafe {
        if ctx.is_null() {
            return Ok(out);
        }
        let get = |name: &str| {
            let n = cstring(name);
            let mut scope = sys::duckdb_config_option_scope_DUCKDB_CONFIG_OPTION_SCOPE_INVALID;
            sys::duckdb_client_context_get_config_option(ctx, n.as_ptr(), &mut scope)
        };
        let mut v = get(NULL_POLICY);
        if !v.is_null() {
            let text = take_duckdb_string(sys::duckdb_get_varchar(v));
            sys::duckdb_destroy_value(&mut v);
            out.null_policy = match text.parse::<NullPolicy>() {
                Ok(p) => p,
                Err(_) => {
                    sys::duckdb_destroy_client_context(&mut ctx);
                    return Err(format!("invalid setting {NULL_POLICY} = '{text}': expected 'null' or 'error'"));
                }
            };
        }
        let mut v = get(INTRA_THREADS);
        if !v.is_null() {
            let n = sys::duckdb_get_int64(v);
            sys::duckdb_destroy_value(&mut v);
            if !(1..=MAX_INTRA_THREADS as i64).contains(&n) {
                sys::duckdb_destroy_client_context(&mut ctx);
                return Err(format!("invalid setting {INTRA_THREADS} = {n}: expected 1 to {MAX_INTRA_THREADS}"));
            }
            out.intra_threads = n as usize;
        }
        let mut v = get("enable_external_access");
        if !v.is_null() {
            out.external_access = sys::duckdb_get_bool(v);
            sys::duckdb_destroy_value(&mut v);
        }
        sys::duckdb_destroy_client_context(&mut ctx);
    }
    Ok(out)
}
