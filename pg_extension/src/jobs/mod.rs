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

/// The job whose run this session holds (a `CALL run_job` in progress), released if the CALL
/// ends by an error anywhere: a cancel or `statement_timeout` may land between two batches, after
/// a COMMIT and outside the procedure's exception block, and must not leave the job held.
static HELD_JOB: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
static CALLBACK: std::sync::Once = std::sync::Once::new();

fn advisory_tag(job_id: i32) -> pg_sys::LOCKTAG {
    // SAFETY: MyDatabaseId is set for the life of a backend connected to a database.
    let db = unsafe { pg_sys::MyDatabaseId };
    // SET_LOCKTAG_ADVISORY(tag, db, key1, key2, 2): the two-int4 form of pg_advisory_lock.
    pg_sys::LOCKTAG {
        locktag_field1: db.to_u32(),
        locktag_field2: 1_397_838_659,
        locktag_field3: job_id as u32,
        locktag_field4: 2,
        locktag_type: pg_sys::LockTagType::LOCKTAG_ADVISORY as u8,
        locktag_lockmethodid: pg_sys::USER_LOCKMETHOD as u8,
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn release_on_abort(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    if event != pg_sys::XactEvent::XACT_EVENT_ABORT {
        return;
    }
    let job_id = HELD_JOB.swap(0, std::sync::atomic::Ordering::Relaxed);
    if job_id == 0 {
        return;
    }
    let tag = advisory_tag(job_id);
    // SAFETY: session-level advisory locks are released with LockRelease(sessionLock = true),
    // only while this backend holds one (each call drops one of possibly several holds).
    unsafe {
        while pg_sys::LockHeldByMe(&tag, pg_sys::ExclusiveLock as i32) {
            if !pg_sys::LockRelease(&tag, pg_sys::ExclusiveLock as i32, true) {
                break;
            }
        }
    }
}

/// Whether this statement runs inside an explicit transaction block (`BEGIN ... COMMIT`), where a
/// procedure cannot commit.
#[pg_extern(volatile, parallel_unsafe)]
fn _job_in_transaction_block() -> bool {
    // SAFETY: reads the current transaction's block state; valid inside any function call.
    unsafe { pg_sys::IsTransactionBlock() }
}

/// Called by `_job_begin` once a call holds the job for this session (by `_job_finish` with 0).
#[pg_extern(volatile, parallel_unsafe)]
fn _job_watch_hold(job_id: i32) {
    CALLBACK.call_once(|| {
        // SAFETY: registers a process-wide callback once per backend; it only touches the lock
        // manager for a lock this backend holds.
        unsafe { pg_sys::RegisterXactCallback(Some(release_on_abort), std::ptr::null_mut()) };
    });
    HELD_JOB.store(job_id, std::sync::atomic::Ordering::Relaxed);
}
