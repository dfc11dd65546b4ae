//! Limits that protect the host: model size on every path that loads bytes, bounded file reads,
//! a byte-bounded cache that releases dropped models, thread caps, and cancellation of long runs.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use sqlscore_core::{
    max_intra_threads, read_model_file, Batch, Column, ColumnData, Engine, EngineConfig, Error, ErrorKind, Evaluator,
    RunOptions, Want,
};

const OPTS: RunOptions = RunOptions { batch_rows: 1 << 20, ..RunOptions::DEFAULT };

#[test]
fn size_limit_holds_for_bytes_already_loaded() {
    let engine = Engine::default();
    let bytes = std::fs::read(model_path("gbm_regressor")).unwrap();
    engine.load_bytes("gbm", &bytes).unwrap();
    engine.set_config(EngineConfig { max_model_bytes: bytes.len() - 1, ..engine.config() });
    let err = engine.load_bytes("gbm", &bytes).unwrap_err();
    assert!(matches!(err, Error::ModelTooLarge { .. }), "{err}");
    let sha = sqlscore_core::sha256_hex(&bytes);
    let err = engine.get_or_load("gbm", &sha, || Ok(bytes.clone())).unwrap_err();
    assert!(matches!(err, Error::ModelTooLarge { .. }), "{err}");
}

#[test]
fn model_files_are_read_with_a_bound_and_only_when_regular() {
    let err = read_model_file(std::path::Path::new("/dev/zero"), 1 << 20).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let err = read_model_file(std::path::Path::new("/tmp"), 1 << 20).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    let err = read_model_file(&model_path("gbm_regressor"), 1000).unwrap_err();
    assert!(matches!(err, Error::ModelTooLarge { limit: 1000, .. }), "{err}");
    let engine = Engine::default();
    assert!(engine.load_path(std::path::Path::new("/dev/zero")).is_err());
    // A FIFO is refused without waiting for a writer (opening it blocking would hang).
    let fifo = std::env::temp_dir().join(format!("sqlscore-fifo-{}", std::process::id()));
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let err = read_model_file(&fifo, 1 << 20).unwrap_err();
    std::fs::remove_file(&fifo).unwrap();
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[test]
fn cache_is_bounded_in_bytes_and_releases_dropped_models() {
    let lr = std::fs::read(model_path("logistic_binary")).unwrap();
    let gbm = std::fs::read(model_path("gbm_regressor")).unwrap();
    // Room for the larger model alone: loading the other evicts the least recently used.
    let engine = Engine::new(EngineConfig { cache_bytes: 2 * gbm.len() + 1, ..EngineConfig::default() });
    engine.load_bytes("gbm", &gbm).unwrap();
    engine.load_bytes("lr", &lr).unwrap();
    assert_eq!(engine.cached_models(), 1);
    assert!(engine.cached_bytes() <= 2 * gbm.len());

    let engine = Engine::default();
    let a = engine.load_bytes("lr", &lr).unwrap();
    engine.load_bytes("gbm", &gbm).unwrap();
    assert_eq!(engine.cached_models(), 2);
    let dropped = engine.retain(|sha| sha == a.sha256);
    assert_eq!((dropped, engine.cached_models()), (1, 1));
}

#[test]
fn thread_counts_are_capped_to_the_machine() {
    let engine = Engine::default();
    let m = engine.load_path(&model_path("logistic_binary")).unwrap();
    let x = [0.5f64; 4];
    let cols = vec![Column::new(None, ColumnData::F64(&x), None); 8];
    let opts = RunOptions { intra_threads: 10_000, ..OPTS };
    // Asking for 10,000 threads runs on at most the machine's cores instead of failing or spawning them.
    assert!(m.predict("lr", &Batch::new(cols, 4), &[0, 1, 2, 3], Want::Score, opts).is_ok());
    assert!(max_intra_threads() >= 1);
}

static CANCEL: AtomicBool = AtomicBool::new(false);

fn cancel_requested() -> bool {
    CANCEL.load(Ordering::Relaxed)
}

#[test]
fn a_long_call_stops_soon_after_cancel() {
    let engine = Engine::default();
    let m = engine.load_path(&model_path("isolation_forest")).unwrap();
    let n = 400_000;
    let values: Vec<f64> = (0..n * 8).map(|i| (i % 97) as f64 / 13.0).collect();
    let cols: Vec<Column<'_>> =
        (0..8).map(|k| Column::new(None, ColumnData::F64(&values[k * n..(k + 1) * n]), None)).collect();
    let batch = Batch::new(cols, n);
    let rows: Vec<usize> = (0..n).collect();
    // ONNX Runtime's terminate flag, set by the watcher thread while a run is under way (the
    // native evaluator scores these rows in well under the 300 ms below).
    let opts = RunOptions { interrupt: Some(cancel_requested), evaluator: Evaluator::OnnxRuntime, ..OPTS };
    let started = Instant::now();
    let err = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            CANCEL.store(true, Ordering::Relaxed);
        });
        m.predict("if", &batch, &rows, Want::Score, opts).unwrap_err()
    });
    // Scoring all rows takes seconds; a Cancelled error (not a result) shows the call stopped
    // part-way. The time is printed, not asserted: tests make no timing claims.
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    eprintln!("cancelled after {:?}", started.elapsed());
}

static POLLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Pending from the second poll on: the call has run once and must stop before the next run.
fn pending_after_first_run() -> bool {
    POLLS.fetch_add(1, Ordering::Relaxed) >= 1
}

#[test]
fn native_calls_check_for_cancel_between_runs() {
    let engine = Engine::default();
    let m = engine.load_path(&model_path("isolation_forest")).unwrap();
    let n = 100_000;
    let values: Vec<f64> = (0..n * 8).map(|i| (i % 97) as f64 / 13.0).collect();
    let cols: Vec<Column<'_>> =
        (0..8).map(|k| Column::new(None, ColumnData::F64(&values[k * n..(k + 1) * n]), None)).collect();
    let batch = Batch::new(cols, n);
    let rows: Vec<usize> = (0..n).collect();
    let opts = RunOptions { interrupt: Some(pending_after_first_run), evaluator: Evaluator::Native, ..OPTS };
    let err = m.predict("if", &batch, &rows, Want::Score, opts).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(POLLS.load(Ordering::Relaxed) >= 2);
}
