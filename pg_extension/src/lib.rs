//! sqlscore for PostgreSQL: a thin pgrx layer over `sqlscore-core`. SQL-facing functions live in
//! `api/` (one file per family), the model registry's tables and PL/pgSQL in `registry.sql`,
//! settings in `guc.rs`, and the one mapping of engine errors to SQLSTATEs in `errors.rs`.

// PostgreSQL reports errors by longjmp; pgrx declares its functions "C-unwind" and turns that
// into an unwind it catches at every #[pg_guard] boundary. Calls into them are the intended
// mechanism here, so this crate alone allows the lint the workspace denies.
#![allow(ffi_unwind_calls)]
// pgrx's SQL-facing functions return `Result<_, ErrorReport>` by value (its own convention, and
// what #[pg_extern] turns into an ERROR); boxing it at every call would only add an allocation.
#![allow(clippy::result_large_err)]

use pgrx::prelude::*;

mod api;
mod convert;
mod errors;
mod fetch;
mod guc;
mod jobs;
mod registry;

::pgrx::pg_module_magic!();

extension_sql_file!("registry.sql", name = "registry", bootstrap);
extension_sql_file!("jobs.sql", name = "jobs", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
    // A server loads ONNX Runtime only from the superuser setting or its own ORT_DYLIB_PATH,
    // never from a virtualenv or build tree found by searching.
    sqlscore_core::runtime::restrict_to_explicit();
    // Rust backtraces never reach SQL clients: pgrx would put a captured one in an error's
    // DETAIL. RUST_LIB_BACKTRACE=0 disables capture (it wins over RUST_BACKTRACE) while panics
    // still print to the server log through the default hook. _PG_init runs in the backend's
    // only thread, before ONNX Runtime starts any.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    // Preloaded: a launcher restarts the streams that were running when the server stopped.
    // SAFETY: a plain read of a postmaster global during _PG_init.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        jobs::worker::register_launcher();
    }
}
