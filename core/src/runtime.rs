//! Finding and starting ONNX Runtime. The library is loaded at run time (`ort` load-dynamic), so a
//! build never downloads anything; this module decides which `libonnxruntime.so` a process uses
//! and turns "not found" into an error that says where it looked.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// ORT allows one environment per process; it lives for the rest of the process.
static ENVIRONMENT: Mutex<Option<ort::environment::Environment>> = Mutex::new(None);

/// Where the process's ONNX Runtime came from, for `sqlscore_info()`-style introspection.
static LOADED_FROM: Mutex<Option<PathBuf>> = Mutex::new(None);

/// A path set by the host (a Postgres GUC): it wins over `ORT_DYLIB_PATH` and the search.
static CONFIGURED: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Set by hosts that must not look for the library in places a user controls (a database server:
/// `VIRTUAL_ENV` or a build tree would let whoever controls them choose code the server runs).
static EXPLICIT_ONLY: AtomicBool = AtomicBool::new(false);

/// From now on only the configured path or `ORT_DYLIB_PATH` are used; no search.
pub fn restrict_to_explicit() {
    EXPLICIT_ONLY.store(true, Ordering::SeqCst);
}

/// Sets (or clears) the library the next load uses. No effect once ONNX Runtime is loaded: a
/// process cannot swap it.
pub fn set_library_path(path: Option<PathBuf>) {
    *CONFIGURED.lock() = path.filter(|p| !p.as_os_str().is_empty());
}

/// The places searched, in order, when `ORT_DYLIB_PATH` is not set.
pub fn candidate_paths() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Some(home) = std::env::var_os("SQLSCORE_HOME") {
        roots.push(PathBuf::from(home).join(".venv"));
    }
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        roots.push(PathBuf::from(venv));
    }
    // The source tree this binary was built from: `make` puts the pinned wheel in its .venv.
    roots.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(".venv"));
    let mut out = Vec::new();
    for root in roots {
        let lib = root.join("lib");
        let Ok(entries) = std::fs::read_dir(&lib) else {
            out.push(lib.join("python3.*/site-packages/onnxruntime/capi"));
            continue;
        };
        for entry in entries.flatten() {
            let capi = entry.path().join("site-packages/onnxruntime/capi");
            if let Some(found) = find_versioned(&capi) {
                out.push(found);
            } else {
                out.push(capi);
            }
        }
    }
    out
}

/// The wheel ships `libonnxruntime.so.1.NN.0` without an unversioned symlink.
fn find_versioned(dir: &Path) -> Option<PathBuf> {
    let mut hits: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so") || n == "libonnxruntime.dylib")
        })
        .collect();
    hits.sort();
    hits.pop()
}

fn resolve() -> Result<PathBuf> {
    let explicit = CONFIGURED.lock().clone().map(|p| (p, "the configured path")).or_else(|| {
        std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()).map(|p| (PathBuf::from(p), "ORT_DYLIB_PATH"))
    });
    if let Some((p, source)) = explicit {
        // An explicit setting is never silently replaced by a fallback.
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::RuntimeNotFound {
                reason: format!("{source} {} does not exist", p.display()),
                searched: vec![p.display().to_string()],
            })
        };
    }
    if EXPLICIT_ONLY.load(Ordering::SeqCst) {
        return Err(Error::RuntimeNotFound {
            reason: "no library is configured (the setting is empty and ORT_DYLIB_PATH is not set in the server's environment)".into(),
            searched: Vec::new(),
        });
    }
    let candidates = candidate_paths();
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| Error::RuntimeNotFound {
        reason: "ORT_DYLIB_PATH is not set and no onnxruntime wheel was found".into(),
        searched: candidates.iter().map(|p| p.display().to_string()).collect(),
    })
}

/// Loads ONNX Runtime once per process and returns its environment. A failure is not cached:
/// after the user fixes the path, the next call succeeds.
pub fn environment() -> Result<ort::environment::Environment> {
    let mut guard = ENVIRONMENT.lock();
    if let Some(env) = guard.as_ref() {
        return Ok(env.clone());
    }
    let path = resolve()?;
    let builder = ort::init_from(&path)
        .map_err(|e| Error::RuntimeNotFound { reason: e.to_string(), searched: vec![path.display().to_string()] })?;
    let env = builder.with_name("sqlscore").with_telemetry(false).build().map_err(|e| Error::RuntimeNotFound {
        reason: format!("loaded {} but could not start it: {e}", path.display()),
        searched: vec![path.display().to_string()],
    })?;
    *LOADED_FROM.lock() = Some(path);
    *guard = Some(env.clone());
    Ok(env)
}

/// The library file in use, once loaded.
pub fn loaded_from() -> Option<PathBuf> {
    LOADED_FROM.lock().clone()
}
