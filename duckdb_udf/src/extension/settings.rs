//! DuckDB settings: `SET sqlscore_null_policy = 'error'`, `SET sqlscore_intra_threads = 2`,
//! `SET sqlscore_engine = 'onnxruntime'`.
//! Registered at LOAD (defaults from the SQLSCORE_* environment), read in each scoring call's
//! bind step from the caller's client context, and carried to execution as bind data.

use libduckdb_sys as sys;
use sqlscore_core::{max_intra_threads, EngineConfig, Error, Evaluator, NullPolicy};

use super::ffi::{cstring, user_message, LogicalType, Value};

pub const NULL_POLICY: &str = "sqlscore_null_policy";
pub const INTRA_THREADS: &str = "sqlscore_intra_threads";
pub const ENGINE: &str = "sqlscore_engine";

/// What one scoring expression runs with.
#[derive(Clone, Copy, Debug)]
pub struct CallSettings {
    pub null_policy: NullPolicy,
    pub intra_threads: usize,
    pub evaluator: Evaluator,
    /// DuckDB's `enable_external_access`: when false, model arguments that are file paths are
    /// refused, as DuckDB refuses its own file reads.
    pub external_access: bool,
}

impl CallSettings {
    pub fn from_config(c: &EngineConfig) -> Self {
        CallSettings {
            null_policy: c.null_policy,
            intra_threads: c.intra_threads,
            evaluator: c.evaluator,
            external_access: false,
        }
    }
}

/// Registers the options (C API v1.5.6, which the extension requires).
///
/// # Safety
/// `con` is a live connection.
pub unsafe fn register(con: sys::duckdb_connection, defaults: &EngineConfig) {
    let null_default = match defaults.null_policy {
        NullPolicy::Null => "null",
        NullPolicy::Error => "error",
    };
    let text = cstring(null_default);
    let engine = cstring(defaults.evaluator.name());
    // SAFETY: con is live (contract); the values created here are handed to `option`, which
    // destroys them after DuckDB copied them.
    unsafe {
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
            // The environment's default, capped like every other thread count.
            sys::duckdb_create_int64(defaults.intra_threads.clamp(1, max_intra_threads()) as i64),
        );
        option(
            con,
            ENGINE,
            "sqlscore: which evaluator runs models: 'auto' (native where supported), 'native' or 'onnxruntime'",
            LogicalType::new(sys::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR),
            sys::duckdb_create_varchar(engine.as_ptr()),
        );
    }
}

/// # Safety
/// `con` is a live connection and `default` a value this function may destroy.
unsafe fn option(
    con: sys::duckdb_connection,
    name: &str,
    description: &str,
    ty: LogicalType,
    mut default: sys::duckdb_value,
) {
    let (n, d) = (cstring(name), cstring(description));
    // SAFETY: con and default are live (contract); the option copies name, description, type and
    // default; the option and the value are destroyed once here.
    unsafe {
        let mut opt = sys::duckdb_create_config_option();
        sys::duckdb_config_option_set_name(opt, n.as_ptr());
        sys::duckdb_config_option_set_description(opt, d.as_ptr());
        sys::duckdb_config_option_set_type(opt, ty.0);
        sys::duckdb_config_option_set_default_value(opt, default);
        sys::duckdb_config_option_set_default_scope(
            opt,
            sys::duckdb_config_option_scope_DUCKDB_CONFIG_OPTION_SCOPE_SESSION,
        );
        sys::duckdb_register_config_option(con, opt);
        sys::duckdb_destroy_config_option(&mut opt);
        sys::duckdb_destroy_value(&mut default);
    }
}

/// Reads the settings in effect for the scalar function being bound.
///
/// # Safety
/// `info` is the bind info of the current scalar-function bind callback.
pub unsafe fn read(info: sys::duckdb_bind_info, fallback: CallSettings) -> Result<CallSettings, String> {
    let mut ctx: sys::duckdb_client_context = std::ptr::null_mut();
    // SAFETY: info is live (contract); the context it returns is owned by Context below.
    unsafe { sys::duckdb_scalar_function_get_client_context(info, &mut ctx) };
    read_context(Context(ctx), fallback).map_err(|e| user_message(&e))
}

/// Whether DuckDB may read files for the table function being bound.
///
/// # Safety
/// `info` is the bind info of the current table-function bind callback.
pub unsafe fn external_access(info: sys::duckdb_bind_info) -> bool {
    let mut ctx: sys::duckdb_client_context = std::ptr::null_mut();
    // SAFETY: info is live (contract); the context it returns is owned by Context below.
    unsafe { sys::duckdb_table_function_get_client_context(info, &mut ctx) };
    let fallback = CallSettings {
        null_policy: NullPolicy::Null,
        intra_threads: 1,
        evaluator: Evaluator::Auto,
        external_access: false,
    };
    // Unknown means no: a failed read must not open file access.
    read_context(Context(ctx), fallback).map(|s| s.external_access).unwrap_or(false)
}

/// An owned client context, destroyed on drop.
struct Context(sys::duckdb_client_context);

impl Context {
    fn option(&self, name: &str) -> Option<Value> {
        let n = cstring(name);
        let mut scope = sys::duckdb_config_option_scope_DUCKDB_CONFIG_OPTION_SCOPE_INVALID;
        // SAFETY: self.0 is a live context (checked non-null by the caller); the value returned
        // is ours (Value destroys it).
        unsafe { Value::from_raw(sys::duckdb_client_context_get_config_option(self.0, n.as_ptr(), &mut scope)) }
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the context is owned by self and destroyed once.
            unsafe { sys::duckdb_destroy_client_context(&mut self.0) };
        }
    }
}

fn null_setting(name: &str, expected: &str) -> Error {
    Error::InvalidSetting {
        name: name.into(),
        value: "NULL".into(),
        reason: format!("expected {expected} (RESET {name} restores the default)"),
    }
}

/// Reads the settings from a client context. A setting that is NULL or out of range is an error
/// naming it: reading a NULL value with DuckDB's typed getters would throw inside DuckDB.
fn read_context(ctx: Context, fallback: CallSettings) -> Result<CallSettings, Error> {
    let mut out = fallback;
    if ctx.0.is_null() {
        return Ok(out);
    }
    if let Some(v) = ctx.option(NULL_POLICY) {
        let text = v.text().ok_or_else(|| null_setting(NULL_POLICY, "'null' or 'error'"))?;
        out.null_policy = text.parse::<NullPolicy>().map_err(|_| Error::InvalidSetting {
            name: NULL_POLICY.into(),
            value: format!("'{text}'"),
            reason: "expected 'null' or 'error'".into(),
        })?;
    }
    if let Some(v) = ctx.option(ENGINE) {
        let text = v.text().ok_or_else(|| null_setting(ENGINE, "'auto', 'native' or 'onnxruntime'"))?;
        out.evaluator = text.parse::<Evaluator>().map_err(|_| Error::InvalidSetting {
            name: ENGINE.into(),
            value: format!("'{text}'"),
            reason: "expected 'auto', 'native' or 'onnxruntime'".into(),
        })?;
    }
    let max = max_intra_threads();
    if let Some(v) = ctx.option(INTRA_THREADS) {
        let expected = format!("1 to {max} (this machine's cores)");
        let n = v.int64().ok_or_else(|| null_setting(INTRA_THREADS, &expected))?;
        if !(1..=max as i64).contains(&n) {
            return Err(Error::InvalidSetting {
                name: INTRA_THREADS.into(),
                value: n.to_string(),
                reason: format!("expected {expected}"),
            });
        }
        out.intra_threads = n as usize;
    }
    if let Some(v) = ctx.option("enable_external_access") {
        out.external_access = v.boolean().unwrap_or(false);
    }
    Ok(out)
}
