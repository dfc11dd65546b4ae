//! sqlscore for PostgreSQL: a thin pgrx layer over `sqlscore-core`. SQL-facing functions live in
//! `api/` (one file per family), the model registry's tables and PL/pgSQL in `registry.sql`,
//! settings in `guc.rs`, and the one mapping of engine errors to SQLSTATEs in `errors.rs`.

use pgrx::prelude::*;

mod api;
mod convert;
mod errors;
mod guc;
mod registry;

::pgrx::pg_module_magic!();

extension_sql_file!("registry.sql", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::init();
}
