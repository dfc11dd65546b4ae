//! Scoring jobs. The SQL surface, the queue and the run bookkeeping are in `jobs.sql`; here are
//! the parts that need Rust: one batch (`step`), the background workers of async and streaming
//! runs and the launcher that restarts streams after a server restart (`worker`), and checking a
//! model expression at create time.

mod step;
pub mod worker;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use sqlscore_core::{Error, QueryProblem};

use crate::errors::report;

/// The distinct model names `expr` gives over the rows of `source` (create_job and alter_job
/// check they are registered). The expression must be one SQL expression: the statement built
/// around it is parsed first and must be a single SELECT.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn _job_models(source: &str, expr: &str) -> Result<Vec<Option<String>>, ErrorReport> {
    let sql = format!("SELECT DISTINCT ({expr})::text FROM {source}");
    single_select(&sql, expr)?;
    Spi::connect(|client| {
        let rows = client.select(sql.as_str(), None, &[]).map_err(|e| {
            report(Error::BadQuery {
                function: "sqlscore.create_job".into(),
                problem: QueryProblem::Failed,
                reason: e.to_string(),
                hint: None,
            })
        })?;
        Ok(rows.map(|row| row.get::<String>(1).ok().flatten()).collect())
    })
}

/// Refuses anything but one SELECT: a model expression cannot smuggle in a second statement.
fn single_select(sql: &str, expr: &str) -> Result<(), ErrorReport> {
    let c = std::ffi::CString::new(sql).map_err(|_| {
        report(Error::InvalidSetting {
            name: "model".into(),
            value: expr.into(),
            reason: "the model expression contains a NUL byte".into(),
        })
    })?;
    // SAFETY: raw_parser only reads the NUL-terminated string and allocates its parse tree in the
    // current memory context; a syntax error is raised as a PostgreSQL ERROR.
    let (count, is_select) = unsafe {
        let list = pg_sys::raw_parser(c.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
        let count = if list.is_null() { 0 } else { (*list).length };
        let is_select = count == 1 && {
            let first = (*(*list).elements).ptr_value as *mut pg_sys::RawStmt;
            !first.is_null() && (*(*first).stmt).type_ == pg_sys::NodeTag::T_SelectStmt
        };
        (count, is_select)
    };
    if count != 1 || !is_select {
        return Err(report(Error::InvalidSetting {
            name: "model".into(),
            value: expr.into(),
            reason: "it must be a single SQL expression over the source's columns".into(),
        }));
    }
    Ok(())
}
