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

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    include!("tests.rs");
}

#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    /// The test server does not inherit ORT_DYLIB_PATH: hand it the library through the GUC.
    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        let lib = sqlscore_core::runtime::candidate_paths()
            .into_iter()
            .find(|p| p.is_file())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        vec![Box::leak(format!("sqlscore.onnxruntime_library = '{lib}'").into_boxed_str())]
    }
}
