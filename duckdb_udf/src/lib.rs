//! sqlscore for DuckDB.
//!
//! * feature `loadable`: the `sqlscore.duckdb_extension` file. It registers the scoring functions
//!   through DuckDB's C extension API and, at `LOAD`, creates the model registry table and the SQL
//!   macros (`score`, `predict`, ...) that look models up in it. DuckDB gives a function no way to
//!   run SQL in the caller's transaction, so the macros pass the model row into the Rust function
//!   instead: per-row model choice becomes one hash join.
//! * feature `embed`: [`register`] for Rust programs that hold a `duckdb::Connection`.

mod dialect;
#[cfg(feature = "loadable")]
mod extension;

#[cfg(feature = "embed")]
mod embed;
/// Scoring jobs stored in a DuckDB file, run by the host ([`jobs::run_job`]).
#[cfg(feature = "embed")]
pub mod jobs;
/// Read-only copies of a database for dashboards: readers never hold the job's file.
#[cfg(feature = "embed")]
pub mod snapshot;
#[cfg(feature = "embed")]
pub use embed::{extension_path, open, register, register_model, EmbedError};
#[cfg(feature = "embed")]
pub use jobs::{create_job, run_job};
