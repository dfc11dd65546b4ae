//! `LOAD 'sqlscore.duckdb_extension'` lands here: take the C API struct, register the Rust
//! functions on the database, then create the SQL layer through a short-lived connection
//! (closed before returning, so it never keeps the database alive).

use std::sync::Arc;

use libduckdb_sys as sys;
use sqlscore_core::Engine;

use super::ffi::{cstring, guarded, query};
use super::{engine_info, read_model, scalar, settings, setup};

/// The C API whose struct has everything used here (scalar bind data, client context and
/// configuration options became stable in v1.5.6): loads into DuckDB 1.5.6 and 2.0.x.
const MIN_C_API: &str = "v1.5.6";

/// # Safety
/// Called by DuckDB's loader with the extension info and a valid access struct.
#[no_mangle]
pub unsafe extern "C" fn sqlscore_init_c_api(
    info: sys::duckdb_extension_info,
    access: *const sys::duckdb_extension_access,
) -> bool {
    if access.is_null() {
        return false;
    }
    // SAFETY: DuckDB's loader passes a live info and access struct for the duration of the call.
    let result = guarded(|| unsafe { init(info, access) });
    match result {
        Ok(()) => true,
        Err(msg) => {
            // SAFETY: access is non-null and live; set_error copies the message.
            if let Some(set_error) = unsafe { (*access).set_error } {
                let c = cstring(&msg);
                // SAFETY: set_error is DuckDB's own; info is live; the message is copied.
                unsafe { set_error(info, c.as_ptr()) };
            }
            false
        }
    }
}

/// # Safety
/// `info` and `access` are what DuckDB passed to the entry point.
unsafe fn init(info: sys::duckdb_extension_info, access: *const sys::duckdb_extension_access) -> Result<(), String> {
    // SAFETY: info/access come from DuckDB's loader (contract); the API struct is initialised
    // before any other C API call; the connection opened here is closed before returning.
    unsafe {
        if !sys::duckdb_rs_extension_api_init(info, access, MIN_C_API)? {
            return Err(format!("this DuckDB does not offer C API {MIN_C_API}"));
        }
        let get_database = (*access).get_database.ok_or("no get_database in extension access")?;
        let db = get_database(info);
        if db.is_null() {
            return Err("DuckDB passed no database".into());
        }
        let mut con: sys::duckdb_connection = std::ptr::null_mut();
        if sys::duckdb_connect(*db, &mut con) != sys::duckdb_state_DuckDBSuccess {
            return Err("could not connect to the database".into());
        }
        // One engine (settings + model cache) per database instance.
        let engine = Arc::new(Engine::default());
        let registered = scalar::register(con, &engine)
            .and_then(|_| read_model::register(con, &engine))
            .and_then(|_| engine_info::register(con, &engine));
        settings::register(con, &engine.config());
        if registered.is_ok() {
            // A read-only database keeps the SQL layer it already has: failures here are not fatal.
            for sql in setup::statements() {
                if query(con, &sql).is_err() {
                    break;
                }
            }
        }
        sys::duckdb_disconnect(&mut con);
        registered
    }
}
