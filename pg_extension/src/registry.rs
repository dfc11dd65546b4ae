//! Finding a model for a call: `name` (the active version) or `name@version`, read from
//! `sqlscore.model_versions`. Each backend remembers the answer for the current statement only, so
//! a newly activated version is used from the next statement on, and caches sessions by content
//! hash, so a version is loaded once per backend.
//!
//! Registry reads are **read-only SPI** (`read_only = true`): no new command and no new snapshot,
//! just the statement's own. That is what PostgreSQL allows inside a parallel worker and inside a
//! leader in parallel mode, so every worker of a `CREATE TABLE ... AS`, `SELECT INTO`,
//! `CREATE MATERIALIZED VIEW` or parallel `SELECT` resolves models itself (pgrx's `select` runs
//! read-write once the transaction has an xid, which a parallel CTAS always has). All SQL here is
//! schema-qualified down to its operators: it never depends on the caller's `search_path`.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pgrx::prelude::*;
use pgrx::spi::Spi;
use sqlscore_core::{Engine, Error, Model};

use crate::errors::{report, PgResult};
use crate::guc;

static ENGINE: OnceLock<Engine> = OnceLock::new();

/// When a resolution was made: the statement, and the command within it (a function or DO
/// block that activates a version and then scores sees the change).
pub type Epoch = (pg_sys::TimestampTz, pg_sys::CommandId);

/// The registry snapshot a statement scores against: its start and command id. Every name
/// resolves to the same version for the whole statement, and a cache keyed by this is fresh.
pub fn statement_epoch() -> Epoch {
    // SAFETY: plain reads of the current transaction's state, valid inside any function call.
    unsafe { (pg_sys::GetCurrentStatementStartTimestamp(), pg_sys::GetCurrentCommandId(false)) }
}

/// Models resolved in the current epoch; replaced wholesale when the epoch changes, so it never
/// keeps a dropped version alive past the statement that used it.
type Resolved = (Epoch, HashMap<String, (Arc<Model>, i32)>);
static RESOLVED: Mutex<Option<Resolved>> = Mutex::new(None);

/// Cached models are checked against the registry at most this often, or sooner once this many
/// models were loaded since the last check (a loop that registers, scores and drops versions
/// keeps at most that many dropped ones loaded).
const SWEEP_EVERY: Duration = Duration::from_secs(1);
const SWEEP_AFTER_LOADS: usize = 8;
/// (when, how many models were cached after it).
static LAST_SWEEP: Mutex<Option<(Instant, usize)>> = Mutex::new(None);

/// The backend's engine, with the current settings applied.
pub fn engine() -> &'static Engine {
    let wanted = guc::engine_config();
    let engine = ENGINE.get_or_init(|| Engine::new(wanted.clone()));
    let current = engine.config();
    if (wanted.max_model_bytes, wanted.cache_bytes) != (current.max_model_bytes, current.cache_bytes) {
        engine.set_config(wanted);
    }
    if sqlscore_core::runtime::loaded_from().is_none() {
        sqlscore_core::runtime::set_library_path(guc::library_path());
    }
    engine
}

/// The model for `model` in this statement.
pub fn resolve(model: &str) -> PgResult<Arc<Model>> {
    resolve_versioned(model, None).map(|(m, _)| m)
}

/// The model for `model` and the registry version it stands for, as of this statement, or of
/// `(run, epoch)` of a job run in a background worker (whose statements are its batches).
pub fn resolve_versioned(model: &str, run_epoch: Option<(i64, i64)>) -> PgResult<(Arc<Model>, i32)> {
    let epoch = match run_epoch {
        // Job epochs never equal a statement's: command ids stop well below u32::MAX.
        Some((run, e)) => (run.wrapping_mul(1 << 20).wrapping_add(e), pg_sys::CommandId::MAX),
        None => statement_epoch(),
    };
    {
        let guard = RESOLVED.lock();
        if let Some((e, map)) = guard.as_ref() {
            if *e == epoch {
                if let Some(m) = map.get(model) {
                    return Ok(m.clone());
                }
            }
        }
    }
    sweep(epoch)?;
    let found = lookup(model)?;
    let mut guard = RESOLVED.lock();
    match guard.as_mut() {
        Some((e, map)) if *e == epoch => {
            map.insert(model.to_string(), found.clone());
        }
        _ => *guard = Some((epoch, HashMap::from([(model.to_string(), found.clone())]))),
    }
    Ok(found)
}

/// Unloads cached models whose version is no longer registered (dropped) and gives the freed
/// memory back to the operating system.
fn sweep(epoch: Epoch) -> PgResult<()> {
    let cached = engine().cached_models();
    {
        let mut last = LAST_SWEEP.lock();
        if let Some((at, after)) = *last {
            if at.elapsed() < SWEEP_EVERY && cached < after + SWEEP_AFTER_LOADS {
                return Ok(());
            }
        }
        *last = Some((Instant::now(), cached));
    }
    if cached == 0 {
        return Ok(());
    }
    let live: HashSet<String> = read_only(c"SELECT sha256 FROM sqlscore.model_versions", &[], 0, |row| row.text(1))?
        .into_iter()
        .flatten()
        .collect();
    // Models resolved by an earlier statement are not needed past it: without this a backend
    // would keep the last statement's dropped versions alive until its next scoring statement.
    {
        let mut resolved = RESOLVED.lock();
        if resolved.as_ref().is_some_and(|(e, _)| *e != epoch) {
            *resolved = None;
        }
    }
    let dropped = engine().retain(|sha| live.contains(sha));
    *LAST_SWEEP.lock() = Some((Instant::now(), engine().cached_models()));
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if dropped > 0 {
        // SAFETY: malloc_trim only returns free heap pages to the OS; it has no preconditions.
        unsafe { libc::malloc_trim(0) };
    }
    let _ = dropped;
    Ok(())
}

fn lookup(model: &str) -> PgResult<(Arc<Model>, i32)> {
    let (name, version) = sqlscore_core::parse_ref(model).map_err(report)?;
    let name_arg = (pg_sys::TEXTOID, name.into_datum());
    let rows = match version {
        None => read_only(
            c"SELECT version, sha256 FROM sqlscore.model_versions \
              WHERE name OPERATOR(pg_catalog.=) $1 AND active",
            &[name_arg],
            1,
            |row| (row.int4(1), row.text(2)),
        )?,
        Some(v) => read_only(
            c"SELECT version, sha256 FROM sqlscore.model_versions \
              WHERE name OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $2",
            &[name_arg, (pg_sys::INT4OID, v.into_datum())],
            1,
            |row| (row.int4(1), row.text(2)),
        )?,
    };
    let Some((Some(version), Some(sha256))) = rows.into_iter().next() else {
        return Err(report(Error::UnknownModel { model: model.to_string(), known: known_names()? }));
    };
    let loaded = engine()
        .get_or_load(model, &sha256, || {
            let bytes = read_only(
                c"SELECT onnx FROM sqlscore.model_versions \
                  WHERE name OPERATOR(pg_catalog.=) $1 AND version OPERATOR(pg_catalog.=) $2",
                &[(pg_sys::TEXTOID, name.into_datum()), (pg_sys::INT4OID, version.into_datum())],
                1,
                |row| row.bytes(1),
            );
            match bytes {
                Ok(rows) => Ok(rows.into_iter().flatten().next().unwrap_or_default()),
                Err(_) => Err(Error::Internal(format!("could not read the bytes of {model}"))),
            }
        })
        .map_err(report)?;
    Ok((loaded, version))
}

/// Whether the current role may register models (INSERT on the registry).
pub fn can_register() -> PgResult<bool> {
    let rows =
        read_only(c"SELECT pg_catalog.has_table_privilege('sqlscore.model_versions', 'INSERT')", &[], 1, |row| {
            row.datum(1).map(|d| d.value() != 0)
        })?;
    Ok(rows.into_iter().flatten().next().unwrap_or(false))
}

fn known_names() -> PgResult<Vec<String>> {
    let names =
        read_only(c"SELECT DISTINCT name FROM sqlscore.model_versions ORDER BY name LIMIT 50", &[], 0, |row| {
            row.text(1)
        })?;
    Ok(names.into_iter().flatten().collect())
}

/// One row of a read-only registry query, read while SPI's memory is still valid.
pub struct RowReader {
    tuple: *mut pg_sys::HeapTupleData,
    desc: pg_sys::TupleDesc,
}

impl RowReader {
    fn datum(&self, col: i32) -> Option<pg_sys::Datum> {
        let mut is_null = false;
        // SAFETY: tuple and desc come from the live SPI_tuptable of the query being read, and
        // col is a column of that query.
        let d = unsafe { pg_sys::SPI_getbinval(self.tuple, self.desc, col, &mut is_null) };
        (!is_null).then_some(d)
    }

    fn text(&self, col: i32) -> Option<String> {
        // The column is of type text (the queries above select text columns).
        self.datum(col).and_then(|d| crate::convert::text_from_datum(d, "registry").ok())
    }

    fn int4(&self, col: i32) -> Option<i32> {
        // SAFETY: the column is of type integer.
        self.datum(col).and_then(|d| unsafe { i32::from_datum(d, false) })
    }

    fn bytes(&self, col: i32) -> Option<Vec<u8>> {
        // SAFETY: the column is of type bytea; the bytes are copied out before SPI_finish.
        self.datum(col).and_then(|d| unsafe { Vec::<u8>::from_datum(d, false) })
    }
}

/// Runs a query read-only (see the module doc) and maps each row while SPI memory is valid.
fn read_only<T>(
    sql: &CStr,
    args: &[(pg_sys::Oid, Option<pg_sys::Datum>)],
    limit: i64,
    mut map: impl FnMut(&RowReader) -> T,
) -> PgResult<Vec<T>> {
    let mut types: Vec<pg_sys::Oid> = args.iter().map(|(oid, _)| *oid).collect();
    let mut values: Vec<pg_sys::Datum> = args.iter().map(|(_, d)| d.unwrap_or(pg_sys::Datum::from(0usize))).collect();
    let nulls: Vec<std::ffi::c_char> =
        args.iter().map(|(_, d)| if d.is_some() { b' ' } else { b'n' } as std::ffi::c_char).collect();
    Spi::connect(|_client| {
        // SAFETY: inside Spi::connect (SPI is connected); the argument arrays have args.len()
        // entries each and outlive the call; PostgreSQL errors raised here unwind through pgrx's
        // guard as ordinary SQL errors.
        let rc = unsafe {
            pg_sys::SPI_execute_with_args(
                sql.as_ptr(),
                args.len() as i32,
                if args.is_empty() { std::ptr::null_mut() } else { types.as_mut_ptr() },
                if args.is_empty() { std::ptr::null_mut() } else { values.as_mut_ptr() },
                if args.is_empty() { std::ptr::null() } else { nulls.as_ptr() },
                true,
                limit,
            )
        };
        if rc != pg_sys::SPI_OK_SELECT as i32 {
            return Err(report(Error::Internal(format!("registry query returned SPI code {rc}"))));
        }
        // SAFETY: after a successful SELECT, SPI_tuptable holds SPI_processed rows until SPI_finish.
        unsafe {
            let table = pg_sys::SPI_tuptable;
            if table.is_null() {
                return Ok(Vec::new());
            }
            let n = pg_sys::SPI_processed as usize;
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let reader = RowReader { tuple: *(*table).vals.add(i), desc: (*table).tupdesc };
                out.push(map(&reader));
            }
            Ok(out)
        }
    })
}
