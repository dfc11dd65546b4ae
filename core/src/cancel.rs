//! Stopping an ONNX Runtime run from outside it. One run over many rows can take seconds, and the
//! database's cancel (statement_timeout, pg_cancel_backend) cannot interrupt foreign code. ONNX
//! Runtime checks a terminate flag between graph nodes; one process-wide watcher thread polls each
//! running call's interrupt check (a front end's `fn() -> bool`, e.g. PostgreSQL's pending-interrupt
//! flags) and sets that flag. Between runs the executor also checks, and it keeps each run short
//! (see `execute.rs`), so a single tree-ensemble node cannot hold a cancel for long either.
//!
//! Threads created here and ONNX Runtime's own pool threads start with every signal blocked, so a
//! signal aimed at the host process (PostgreSQL's SIGINT for cancel) is always handled by the host's
//! own thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// A front end's "has the user cancelled?" check. It runs on the watcher thread, so it may only
/// read flags (it must not call into the database).
pub type InterruptCheck = fn() -> bool;

/// How often a watched run's check is polled.
const POLL: Duration = Duration::from_millis(20);

struct Watched {
    id: u64,
    options: Arc<ort::session::RunOptions>,
    check: Option<InterruptCheck>,
    deadline: Option<Instant>,
}

struct Watcher {
    runs: Mutex<Vec<Watched>>,
    wake: Condvar,
    next_id: AtomicU64,
}

fn watcher() -> &'static Watcher {
    static WATCHER: OnceLock<&'static Watcher> = OnceLock::new();
    WATCHER.get_or_init(|| {
        let w: &'static Watcher = Box::leak(Box::new(Watcher {
            runs: Mutex::new(Vec::new()),
            wake: Condvar::new(),
            next_id: AtomicU64::new(1),
        }));
        // If the thread cannot start, watched runs still stop between chunks.
        let _ = with_signals_blocked(|| {
            std::thread::Builder::new().name("sqlscore-cancel".into()).spawn(move || watch_loop(w))
        });
        w
    })
}

fn watch_loop(w: &'static Watcher) {
    let mut runs = w.runs.lock();
    loop {
        if runs.is_empty() {
            w.wake.wait(&mut runs);
            continue;
        }
        let now = Instant::now();
        for run in runs.iter() {
            let cancelled = run.check.is_some_and(|check| check()) || run.deadline.is_some_and(|d| now >= d);
            if cancelled {
                let _ = run.options.terminate();
            }
        }
        w.wake.wait_for(&mut runs, POLL);
    }
}

/// A run registered with the watcher; unregisters on drop.
pub(crate) struct Watch {
    id: u64,
    pub options: Arc<ort::session::RunOptions>,
}

impl Watch {
    /// Registers a run; None when there is nothing to watch for.
    pub fn start(check: Option<InterruptCheck>, deadline: Option<Instant>) -> Option<Watch> {
        if check.is_none() && deadline.is_none() {
            return None;
        }
        let options = Arc::new(ort::session::RunOptions::new().ok()?);
        let w = watcher();
        let id = w.next_id.fetch_add(1, Ordering::Relaxed);
        w.runs.lock().push(Watched { id, options: options.clone(), check, deadline });
        w.wake.notify_one();
        Some(Watch { id, options })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut runs = watcher().runs.lock();
        if let Some(i) = runs.iter().position(|r| r.id == self.id) {
            runs.swap_remove(i);
        }
    }
}

/// Runs `f` (which may create threads) with every signal blocked in the calling thread, so the
/// threads it creates inherit a fully blocked mask; the caller's mask is restored afterwards.
pub(crate) fn with_signals_blocked<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(unix)]
    {
        /// Restores the caller's mask when dropped, also if `f` panics.
        struct Restore(Option<libc::sigset_t>);
        impl Drop for Restore {
            fn drop(&mut self) {
                if let Some(old) = &self.0 {
                    // SAFETY: `old` is the mask pthread_sigmask returned for this thread.
                    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
                }
            }
        }
        // SAFETY: sigset_t is plain data that sigfillset/pthread_sigmask initialise; both calls
        // only touch the calling thread's signal mask, which Restore puts back.
        let _restore = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            Restore((libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old) == 0).then_some(old))
        };
        f()
    }
    #[cfg(not(unix))]
    {
        f()
    }
}
