//! Background workers. An async run (`submit_job`) starts dynamic workers for that run only; they
//! exit when the backlog is scored, so nothing runs while a job is idle. A stream
//! (`stream_job`) is one dynamic worker that drains the backlog, sleeps `every`, and repeats until
//! `stop_stream`. With `shared_preload_libraries = 'sqlscore'` a launcher in `sqlscore.database`
//! restarts the streams that were running when the server stopped or crashed.
//!
//! Workers run as the job's owner, hold the job's advisory lock shared while they work (so a
//! second run of the job is refused), and do every batch through `sqlscore._job_drive`, the same
//! procedure `run_job` uses: one commit per batch, failures recorded in the run.

use std::time::{Duration, Instant};

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use sqlscore_core::Error;

use crate::errors::report;
use crate::guc;

const LOCK_CLASS: i32 = 1_397_838_659; // 'SQSC', as sqlscore._job_lock_class()

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Async,
    Stream,
}

/// What a worker is told at start (in bgw_extra, at most 127 bytes).
#[derive(Debug, PartialEq, Eq)]
struct Assignment {
    database: u32,
    job_id: i32,
    run: i64,
    worker: i32,
    mode: Mode,
}

impl Assignment {
    fn encode(&self) -> String {
        let mode = if self.mode == Mode::Stream { "stream" } else { "async" };
        format!("{} {} {} {} {mode}", self.database, self.job_id, self.run, self.worker)
    }

    fn decode(s: &str) -> Option<Self> {
        let mut it = s.split_whitespace();
        Some(Assignment {
            database: it.next()?.parse().ok()?,
            job_id: it.next()?.parse().ok()?,
            run: it.next()?.parse().ok()?,
            worker: it.next()?.parse().ok()?,
            mode: match it.next()? {
                "stream" => Mode::Stream,
                "async" => Mode::Async,
                _ => return None,
            },
        })
    }
}

/// Starts run `run` of a job in background workers (`submit_job`, `stream_job`): records the run
/// (refusing while another is alive), starts the workers, and waits until each is queued on the
/// job's lock, which they get when this transaction commits. Returns the run id.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn _job_launch(name: &str, mode: &str, workers: i32) -> Result<i64, ErrorReport> {
    let mode = match mode {
        "async" => Mode::Async,
        "stream" => Mode::Stream,
        other => return Err(report(Error::Internal(format!("unknown run mode {other}")))),
    };
    let run = Spi::get_one_with_args::<i64>(
        "SELECT sqlscore._job_begin($1, $2, $3)",
        &[name.into(), (if mode == Mode::Stream { "stream" } else { "async" }).into(), workers.into()],
    )
    .map_err(|e| report(Error::Internal(e.to_string())))?
    .ok_or_else(|| report(Error::Internal("the run was not recorded".into())))?;
    let job_id = Spi::get_one_with_args::<i32>(
        "SELECT j.job_id FROM sqlscore.job_definitions j WHERE j.name = $1",
        &[name.into()],
    )
    .map_err(|e| report(Error::Internal(e.to_string())))?
    .unwrap_or_default();
    // SAFETY: MyDatabaseId and MyProcPid are set for the life of a backend.
    let (database, me) = unsafe { (pg_sys::MyDatabaseId, pg_sys::MyProcPid) };
    let mut pids = Vec::new();
    let mut handles = Vec::new();
    for worker in 0..workers {
        let a = Assignment { database: database.to_u32(), job_id, run, worker, mode };
        let handle = BackgroundWorkerBuilder::new(&format!("sqlscore job {name} run {run} worker {worker}"))
            .set_type("sqlscore job worker")
            .set_library("sqlscore")
            .set_function("sqlscore_job_worker")
            .set_extra(&a.encode())
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(None)
            .set_notify_pid(me)
            .load_dynamic()
            .map_err(|_| no_worker(name))?;
        let pid = handle.wait_for_startup().map_err(|_| no_worker(name))?;
        pids.push(pid);
        handles.push(handle);
    }
    // Wait (briefly) until every worker is queued on the job's lock: when this transaction
    // commits they are granted it before any other run can take it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let queued = Spi::get_one_with_args::<i64>(
            "SELECT count(*) FROM pg_locks k WHERE k.locktype = 'advisory' AND k.classid = $1::oid \
             AND k.objid = $2::oid AND k.pid = ANY ($3)",
            &[(LOCK_CLASS as i64).into(), (job_id as i64).into(), pids.clone().into()],
        )
        .map_err(|e| report(Error::Internal(e.to_string())))?
        .unwrap_or(0);
        if queued >= pids.len() as i64 {
            break;
        }
        // A worker that exited before queuing (it could not connect, say) fails the start: the
        // run would otherwise wait forever for its part.
        if handles.iter().any(|h| h.pid().is_err()) || Instant::now() > deadline {
            return Err(report(Error::Internal(format!(
                "job \"{name}\": a background worker exited while starting (see the server log)"
            ))));
        }
        check_for_interrupts!();
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(run)
}

fn no_worker(job: &str) -> ErrorReport {
    report(Error::Internal(format!(
        "job \"{job}\": could not start a background worker (all max_worker_processes slots in use?)"
    )))
    .set_hint("raise max_worker_processes (needs a restart), use fewer workers, or run it with CALL sqlscore.run_job")
}

/// Runs a statement in its own transaction.
fn in_transaction<R>(f: impl FnOnce() -> R) -> R {
    // SAFETY: a background worker connected to a database, outside any transaction; the
    // snapshot pushed here is popped before the commit.
    unsafe {
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let r = f();
    // SAFETY: pairs with the calls above.
    unsafe {
        pg_sys::PopActiveSnapshot();
        pg_sys::CommitTransactionCommand();
    }
    r
}

/// A failed batch: what `sqlscore._job_finish` records.
struct Failure {
    message: String,
    sqlstate: String,
}

/// Runs one batch in its own transaction; a PostgreSQL error (or a panic) aborts just that
/// transaction and comes back as a [`Failure`].
fn try_batch(sql: &str) -> Result<bool, Failure> {
    // SAFETY: a background worker outside any transaction. On success the snapshot is popped and
    // the transaction committed; on error AbortCurrentTransaction releases both.
    unsafe {
        pg_sys::StartTransactionCommand();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
    }
    let outcome = PgTryBuilder::new(|| Ok(Spi::get_one::<bool>(sql)))
        .catch_others(|e| {
            let report = match &e {
                CaughtError::PostgresError(r)
                | CaughtError::ErrorReport(r)
                | CaughtError::RustPanic { ereport: r, .. } => r,
            };
            // SAFETY: unpack_sql_state formats the code into a static buffer we copy at once.
            let sqlstate = unsafe {
                std::ffi::CStr::from_ptr(pg_sys::unpack_sql_state(report.sql_error_code() as i32))
                    .to_string_lossy()
                    .into_owned()
            };
            Err(Failure { message: report.message().to_string(), sqlstate })
        })
        .execute();
    match outcome {
        Ok(result) => {
            // SAFETY: pairs with the start above.
            unsafe {
                pg_sys::PopActiveSnapshot();
                pg_sys::CommitTransactionCommand();
            }
            result
                .map(|more| more.unwrap_or(false))
                .map_err(|e| Failure { message: e.to_string(), sqlstate: "XX000".into() })
        }
        Err(f) => {
            // SAFETY: the transaction failed; aborting it is what PostgreSQL expects next.
            unsafe { pg_sys::AbortCurrentTransaction() };
            Err(f)
        }
    }
}

/// Scores batches until the backlog is empty (true) or a batch fails (false, recorded in the
/// run). `epoch` scopes model resolution: models are looked up once per epoch.
fn drain(a: &Assignment, epoch: i64) -> bool {
    let sql = format!("SELECT sqlscore._job_step({}, {}, {epoch})", a.run, a.worker);
    loop {
        // SAFETY: plain reads of a process global set by PostgreSQL's signal handlers.
        unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, c"sqlscore job batch".as_ptr()) };
        match try_batch(&sql) {
            Ok(true) => continue,
            Ok(false) => return true,
            Err(f) => {
                let recorded = in_transaction(|| {
                    Spi::get_one_with_args::<String>(
                        "SELECT sqlscore._job_finish($1, $2, $3, $4)",
                        &[a.run.into(), a.worker.into(), f.message.as_str().into(), f.sqlstate.as_str().into()],
                    )
                });
                release(a.run);
                pgrx::log!("sqlscore worker: {}", recorded.ok().flatten().unwrap_or(f.message));
                return false;
            }
        }
    }
}

/// Drops the worker's hold on the job once the run's end is committed (the process would at exit).
fn release(run: i64) {
    in_transaction(|| Spi::run(&format!("SELECT sqlscore._job_release_run({run})"))).ok();
}

/// The main function of an async or streaming worker. It connects as the bootstrap superuser
/// (a job's owner may be a role that cannot log in) and does its bookkeeping so; every statement
/// of the job itself runs as the owner, in a security-restricted operation (`step::as_owner`).
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn sqlscore_job_worker(_arg: pg_sys::Datum) {
    // SIGTERM keeps PostgreSQL's default for workers (exit at once): a batch in flight rolls back.
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP);
    let Some(a) = Assignment::decode(BackgroundWorker::get_extra()) else {
        pgrx::log!("sqlscore worker: bad assignment {:?}", BackgroundWorker::get_extra());
        return;
    };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(a.database.into()), None);
    // Claims use SKIP LOCKED, which needs a fresh snapshot per statement.
    in_transaction(|| Spi::run("SET default_transaction_isolation = 'read committed'")).expect("setting isolation");
    // Granted once the transaction that started the run commits.
    in_transaction(|| Spi::run(&format!("SELECT pg_catalog.pg_advisory_lock_shared({LOCK_CLASS}, {})", a.job_id)))
        .expect("taking the job lock");
    let alive = in_transaction(|| {
        Spi::get_one::<bool>(&format!(
            "SELECT r.status OPERATOR(pg_catalog.=) 'running' FROM sqlscore.job_run_log r \
             WHERE r.run_id OPERATOR(pg_catalog.=) {}",
            a.run
        ))
    });
    if !matches!(alive, Ok(Some(true))) {
        // The starting transaction rolled back, or the run was cancelled before we started.
        return;
    }
    match a.mode {
        Mode::Async => {
            if drain(&a, 0) {
                in_transaction(|| Spi::run(&format!("SELECT sqlscore._job_finish({}, {})", a.run, a.worker))).ok();
                release(a.run);
            }
        }
        Mode::Stream => stream(&a),
    }
}

/// Drains the backlog every `every` until the stream is stopped (or its run cancelled). Each
/// drain is its own model-resolution epoch: a newly activated version is used from the next one.
fn stream(a: &Assignment) {
    for tick in 1.. {
        if !drain(a, tick) {
            return;
        }
        let state = in_transaction(|| {
            Spi::get_two::<bool, f64>(&format!(
                "SELECT j.streaming AND r.status OPERATOR(pg_catalog.=) 'running' AND NOT r.cancel_requested, \
                        pg_catalog.date_part('epoch', j.stream_every) \
                 FROM sqlscore.job_run_log r JOIN sqlscore.job_definitions j ON j.job_id OPERATOR(pg_catalog.=) r.job_id \
                 WHERE r.run_id OPERATOR(pg_catalog.=) {}",
                a.run
            ))
        });
        let (go, every) = match state {
            Ok((Some(go), every)) => (go, every.unwrap_or(1.0)),
            _ => (false, 1.0),
        };
        if !go {
            in_transaction(|| Spi::run(&format!("SELECT sqlscore._job_finish({}, 0)", a.run))).ok();
            release(a.run);
            return;
        }
        // SAFETY: reports this backend's state to pg_stat_activity; no preconditions.
        unsafe { pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null()) };
        // Sleep `every`, waking each second to notice stop_stream sooner.
        let until = Instant::now() + Duration::from_secs_f64(every.clamp(0.001, 86_400.0));
        while Instant::now() < until {
            let left = until.saturating_duration_since(Instant::now()).min(Duration::from_secs(1));
            if !BackgroundWorker::wait_latch(Some(left)) {
                return;
            }
            if left == Duration::from_secs(1) {
                let streaming = in_transaction(|| {
                    Spi::get_one::<bool>(&format!(
                        "SELECT j.streaming FROM sqlscore.job_definitions j WHERE j.job_id OPERATOR(pg_catalog.=) {}",
                        a.job_id
                    ))
                });
                if !matches!(streaming, Ok(Some(true))) {
                    break;
                }
            }
        }
    }
}

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Registers the launcher when the library is preloaded (`shared_preload_libraries`).
pub fn register_launcher() {
    BackgroundWorkerBuilder::new("sqlscore launcher")
        .set_type("sqlscore launcher")
        .set_library("sqlscore")
        .set_function("sqlscore_launcher")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

/// Restarts streams: every few seconds, each job marked streaming whose lock nobody holds gets a
/// new stream run and worker. It only reads the job list and starts workers; scoring happens in
/// the stream workers, as the jobs' owners.
#[pg_guard]
#[no_mangle]
pub extern "C-unwind" fn sqlscore_launcher(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = guc::launcher_database();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    pgrx::log!("sqlscore launcher: watching streams in database {database}");
    loop {
        let orphans: Vec<String> = in_transaction(|| {
            let installed = Spi::get_one::<bool>(
                "SELECT pg_catalog.to_regclass('sqlscore.job_definitions') IS NOT NULL \
                 AND pg_catalog.to_regprocedure('sqlscore._job_launch(text,text,integer)') IS NOT NULL",
            );
            if !matches!(installed, Ok(Some(true))) {
                return Vec::new();
            }
            Spi::connect(|c| {
                c.select(
                    &format!(
                        "SELECT j.name FROM sqlscore.job_definitions j WHERE j.streaming AND NOT EXISTS ( \
                           SELECT 1 FROM pg_catalog.pg_locks k WHERE k.locktype OPERATOR(pg_catalog.=) 'advisory' \
                           AND k.classid OPERATOR(pg_catalog.=) {LOCK_CLASS}::pg_catalog.oid \
                           AND k.objid OPERATOR(pg_catalog.=) j.job_id::pg_catalog.oid)"
                    ),
                    None,
                    &[],
                )
                .map(|rows| rows.filter_map(|r| r.get::<String>(1).ok().flatten()).collect())
                .unwrap_or_default()
            })
        });
        for name in orphans {
            pgrx::log!("sqlscore launcher: restarting the stream of job \"{name}\"");
            let sql = format!("SELECT sqlscore._job_launch({}, 'stream', 1) IS NOT NULL", quote_literal(&name));
            match try_batch(&sql) {
                Ok(_) => pgrx::log!("sqlscore launcher: job \"{name}\" streams again"),
                Err(f) => pgrx::log!("sqlscore launcher: could not restart job \"{name}\": {}", f.message),
            }
        }
        if !BackgroundWorker::wait_latch(Some(Duration::from_secs(5))) {
            return;
        }
    }
}
