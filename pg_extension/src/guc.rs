//! Settings. `sqlscore.onnxruntime_library` is superuser-only: it makes the server load a file.
//! Limits that protect the server (model size, cache size) are superuser-only too; thread counts
//! are capped to the machine's cores.

use std::ffi::CString;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::prelude::*;
use sqlscore_core::{EngineConfig, Evaluator, NullPolicy, RunOptions};

use crate::errors::POSTGRES;

pub static ORT_LIBRARY: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
pub static INTRA_THREADS: GucSetting<i32> = GucSetting::<i32>::new(1);
pub static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(10_000);
pub static MAX_MODEL_MB: GucSetting<i32> = GucSetting::<i32>::new(1024);
pub static CACHE_MB: GucSetting<i32> = GucSetting::<i32>::new(1024);
pub static JOB_HISTORY_DAYS: GucSetting<i32> = GucSetting::<i32>::new(14);
pub static LAUNCHER_DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"postgres"));

#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum NullMode {
    #[name = c"null"]
    Null,
    #[name = c"error"]
    Error,
}
pub static NULL_POLICY: GucSetting<NullMode> = GucSetting::<NullMode>::new(NullMode::Null);

#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum EngineMode {
    #[name = c"auto"]
    Auto,
    #[name = c"native"]
    Native,
    #[name = c"onnxruntime"]
    OnnxRuntime,
}
pub static ENGINE: GucSetting<EngineMode> = GucSetting::<EngineMode>::new(EngineMode::Auto);

pub fn init() {
    GucRegistry::define_string_guc(
        c"sqlscore.onnxruntime_library",
        c"Path of libonnxruntime.so to load.",
        c"Empty: ORT_DYLIB_PATH of the server's environment, then the project venv. Read when a backend first scores.",
        &ORT_LIBRARY,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"sqlscore.intra_threads",
        c"ONNX Runtime intra-op threads per session.",
        c"Parallel query already runs one scoring backend per worker; 1 avoids oversubscribing cores.",
        &INTRA_THREADS,
        1,
        i32::try_from(sqlscore_core::max_intra_threads()).unwrap_or(1),
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"sqlscore.batch_size",
        c"Rows per ONNX Runtime run in the batch functions.",
        c"Queries are cancellable between batches.",
        &BATCH_SIZE,
        1,
        1_000_000,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"sqlscore.null_policy",
        c"What a NULL feature does: 'null' (that row scores NULL) or 'error'.",
        c"",
        &NULL_POLICY,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"sqlscore.engine",
        c"Which evaluator runs models: 'auto' (native where supported), 'native' or 'onnxruntime'.",
        c"sqlscore.models shows, per model, which one 'auto' picks and why.",
        &ENGINE,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"sqlscore.max_model_size_mb",
        c"Largest model accepted, in MB.",
        c"",
        &MAX_MODEL_MB,
        1,
        1 << 20,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"sqlscore.model_cache_mb",
        c"Memory each backend may keep in loaded models, in MB.",
        c"Least recently used models are unloaded beyond it; dropped versions are unloaded within a second.",
        &CACHE_MB,
        1,
        1 << 20,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"sqlscore.job_history_days",
        c"Days job runs and rejects are kept.",
        c"Older finished runs and rejects of a job are deleted when the job next starts a run.",
        &JOB_HISTORY_DAYS,
        1,
        100_000,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"sqlscore.database",
        c"Database whose streaming jobs the launcher restarts (needs shared_preload_libraries = 'sqlscore').",
        c"",
        &LAUNCHER_DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    // SAFETY: called from _PG_init in the backend's main thread with a static C string.
    unsafe { pg_sys::MarkGUCPrefixReserved(c"sqlscore".as_ptr()) };
}

pub fn launcher_database() -> String {
    LAUNCHER_DATABASE.get().map(|c| c.to_string_lossy().into_owned()).unwrap_or_else(|| "postgres".into())
}

pub fn library_path() -> Option<std::path::PathBuf> {
    ORT_LIBRARY.get().map(|c| std::path::PathBuf::from(c.to_string_lossy().into_owned()))
}

pub fn engine_config() -> EngineConfig {
    EngineConfig {
        intra_threads: INTRA_THREADS.get().max(1) as usize,
        batch_rows: BATCH_SIZE.get().max(1) as usize,
        null_policy: null_policy(),
        evaluator: evaluator(),
        max_model_bytes: (MAX_MODEL_MB.get().max(1) as usize) << 20,
        cache_capacity: 4096,
        cache_bytes: (CACHE_MB.get().max(1) as usize) << 20,
    }
}

pub fn evaluator() -> Evaluator {
    match ENGINE.get() {
        EngineMode::Auto => Evaluator::Auto,
        EngineMode::Native => Evaluator::Native,
        EngineMode::OnnxRuntime => Evaluator::OnnxRuntime,
    }
}

pub fn null_policy() -> NullPolicy {
    match NULL_POLICY.get() {
        NullMode::Null => NullPolicy::Null,
        NullMode::Error => NullPolicy::Error,
    }
}

/// A scoring call's options: the session's settings, PostgreSQL's words for messages, and the
/// backend's cancel flags.
pub fn run_options() -> RunOptions {
    RunOptions { interrupt: Some(interrupt_pending), ..RunOptions::from_config(&engine_config(), &POSTGRES) }
}

/// Whether statement_timeout, pg_cancel_backend or pg_terminate_backend asked this backend to
/// stop. Runs on sqlscore's watcher thread: it only reads the flags PostgreSQL's signal handlers
/// set (volatile sig_atomic_t), it never calls into PostgreSQL.
fn interrupt_pending() -> bool {
    // SAFETY: plain reads of process globals that signal handlers write; volatile reads of
    // sig_atomic_t are what C code does with them, and a stale value only delays the stop.
    unsafe {
        std::ptr::read_volatile(&raw const pg_sys::InterruptPending) != 0
            && (std::ptr::read_volatile(&raw const pg_sys::QueryCancelPending) != 0
                || std::ptr::read_volatile(&raw const pg_sys::ProcDiePending) != 0)
    }
}
