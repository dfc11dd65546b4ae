//! Loaded models and their sessions. Models are cached by the SHA-256 of their bytes, so the same
//! model registered under two names, or reloaded by another statement, costs one load; each model
//! keeps a pool of ONNX Runtime sessions because `Session::run` needs `&mut` and database threads
//! score chunks concurrently (a pool, not a global lock).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::ModelInfo;
use crate::native::{Plan, Unsupported};

/// What to do with a row whose features contain a NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NullPolicy {
    /// The row's result is NULL; the rest of the batch is scored (default).
    Null,
    /// The statement fails, naming the column.
    Error,
}

impl std::str::FromStr for NullPolicy {
    type Err = Error;

    /// The setting's spelling in every front end: `null` or `error`.
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "null" => Ok(NullPolicy::Null),
            "error" => Ok(NullPolicy::Error),
            other => Err(Error::InvalidSetting {
                name: "null_policy".into(),
                value: other.into(),
                reason: "expected 'null' or 'error'".into(),
            }),
        }
    }
}

/// Which evaluator runs a model: the `sqlscore.engine` (PostgreSQL) / `sqlscore_engine` (DuckDB)
/// setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Evaluator {
    /// Native where every node is supported, ONNX Runtime otherwise (the default).
    #[default]
    Auto,
    /// Native only: a model that cannot run natively is an error naming the first unsupported node.
    Native,
    /// ONNX Runtime only.
    OnnxRuntime,
}

impl Evaluator {
    pub fn name(self) -> &'static str {
        match self {
            Evaluator::Auto => "auto",
            Evaluator::Native => "native",
            Evaluator::OnnxRuntime => "onnxruntime",
        }
    }
}

impl std::str::FromStr for Evaluator {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Evaluator::Auto),
            "native" => Ok(Evaluator::Native),
            "onnxruntime" | "ort" => Ok(Evaluator::OnnxRuntime),
            other => Err(Error::InvalidSetting {
                name: "engine".into(),
                value: other.into(),
                reason: "expected 'auto', 'native' or 'onnxruntime'".into(),
            }),
        }
    }
}

/// Intra-op threads a caller may ask for: the machine's cores. More only oversubscribes them.
pub fn max_intra_threads() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()).min(256))
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// ONNX Runtime intra-op threads per session. The databases already run one scoring call
    /// per thread, so 1 avoids oversubscribing cores; raise it for single-threaded hosts.
    pub intra_threads: usize,
    /// Rows per ONNX Runtime run; larger inputs are split.
    pub batch_rows: usize,
    pub null_policy: NullPolicy,
    /// Which evaluator runs models (native where supported by default).
    pub evaluator: Evaluator,
    pub max_model_bytes: usize,
    /// Distinct models kept loaded; the least recently used is dropped beyond this.
    pub cache_capacity: usize,
    /// Memory the loaded models may take (estimated as their bytes once per idle session plus
    /// once for the copy kept to build sessions); the least recently used are dropped beyond it.
    pub cache_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            intra_threads: env_usize("SQLSCORE_INTRA_THREADS").unwrap_or(1),
            batch_rows: env_usize("SQLSCORE_BATCH_ROWS").unwrap_or(16_384),
            null_policy: std::env::var("SQLSCORE_NULL_POLICY")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(NullPolicy::Null),
            evaluator: std::env::var("SQLSCORE_ENGINE").ok().and_then(|v| v.parse().ok()).unwrap_or_default(),
            max_model_bytes: env_usize("SQLSCORE_MAX_MODEL_BYTES").unwrap_or(1 << 30),
            cache_capacity: 4096,
            cache_bytes: env_usize("SQLSCORE_CACHE_BYTES").unwrap_or(2 << 30),
        }
    }
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.trim().parse().ok().filter(|n| *n > 0)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A validated model: its description and a pool of ready sessions.
pub struct Model {
    pub sha256: String,
    pub info: ModelInfo,
    pub size: usize,
    /// What ONNX Runtime sessions are built from: the registered bytes, or the same graph with
    /// its ZipMap taken out ([`crate::native::zipmap`]).
    bytes: Arc<[u8]>,
    /// The compiled native plan, or why the graph cannot run natively.
    native: std::result::Result<Arc<Plan>, Unsupported>,
    /// Idle sessions with the intra-op thread count they were built with: callers (DuckDB
    /// sessions, Postgres backends) may ask for different counts at the same time.
    pool: Mutex<Vec<(usize, ort::session::Session)>>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model").field("sha256", &self.sha256).field("info", &self.info).finish()
    }
}

fn check_size(label: &str, size: usize, limit: usize) -> Result<()> {
    if size > limit {
        return Err(Error::ModelTooLarge { model: label.into(), size, limit });
    }
    Ok(())
}

impl Model {
    /// Every model enters through here: size limit, the graph check (no external files), ONNX
    /// Runtime's own validation, a description of its inputs and outputs, and the 2-row probe.
    fn load(label: &str, bytes: Arc<[u8]>, sha256: String, config: &EngineConfig) -> Result<Self> {
        check_size(label, bytes.len(), config.max_model_bytes)?;
        crate::graph_check::check_model_bytes(label, &bytes)?;
        let size = bytes.len();
        let (bytes, native) = prepare(&bytes);
        let threads = config.intra_threads.clamp(1, max_intra_threads());
        let session = build_session(label, &bytes, threads)?;
        let info = ModelInfo::from_session(label, &session)?;
        if info.inputs.is_empty() {
            return Err(Error::InvalidModel { model: label.into(), reason: "the graph has no inputs".into() });
        }
        let mut model = Model { sha256, info, size, bytes, native, pool: Mutex::new(vec![(threads, session)]) };
        model.probe(label, threads)?;
        model.probe_native(label);
        Ok(model)
    }

    /// The native plan, or why there is none.
    pub fn native(&self) -> std::result::Result<&Plan, &Unsupported> {
        self.native.as_deref()
    }

    /// Which evaluator `evaluator` picks for this model: `"native"` or `"onnxruntime"`, and
    /// when it is ONNX Runtime under `auto`, why (the first unsupported node).
    pub fn engine(&self, evaluator: Evaluator) -> (&'static str, Option<String>) {
        match (evaluator, &self.native) {
            (Evaluator::OnnxRuntime, _) => ("onnxruntime", Some("engine = onnxruntime".into())),
            (_, Ok(_)) => ("native", None),
            (_, Err(why)) => ("onnxruntime", Some(format!("not supported natively: {why}"))),
        }
    }

    pub(crate) fn set_native_unsupported(&mut self, why: Unsupported) {
        self.native = Err(why);
    }

    /// Estimated memory: the kept bytes plus about their size again per session.
    fn footprint(&self) -> usize {
        self.size.saturating_mul(1 + self.pool.lock().len().max(1))
    }

    /// Runs `f` with a session of its own, built with `intra_threads`; concurrent callers get
    /// separate sessions.
    pub(crate) fn with_session<R>(
        &self,
        label: &str,
        intra_threads: usize,
        f: impl FnOnce(&mut ort::session::Session) -> Result<R>,
    ) -> Result<R> {
        let popped = {
            let mut pool = self.pool.lock();
            pool.iter().rposition(|(t, _)| *t == intra_threads).map(|i| pool.swap_remove(i).1)
        };
        let mut session = match popped {
            Some(s) => s,
            None => build_session(label, &self.bytes, intra_threads)?,
        };
        let out = f(&mut session);
        self.pool.lock().push((intra_threads, session));
        out
    }
}

/// Decodes the graph once: strips a ZipMap (so probabilities are a tensor for both evaluators)
/// and compiles the native plan. A graph prost cannot read is left to ONNX Runtime to judge.
fn prepare(bytes: &Arc<[u8]>) -> (Arc<[u8]>, std::result::Result<Arc<Plan>, Unsupported>) {
    let proto = match crate::native::proto::decode_model(bytes) {
        Ok(p) => p,
        Err(e) => {
            return (
                bytes.clone(),
                Err(Unsupported { op: "model".into(), reason: format!("its protobuf could not be read: {e}") }),
            )
        }
    };
    let (proto, bytes) = match crate::native::zipmap::strip(&proto) {
        Some((p, b)) => (p, Arc::from(b)),
        None => (proto, bytes.clone()),
    };
    // The rewrites run kernels on the model's constants: a bug there must cost the model its
    // native plan, not its loading.
    let plan = std::panic::catch_unwind(|| Plan::compile(&proto)).unwrap_or_else(|_| {
        Err(Unsupported { op: "the native compiler".into(), reason: "it panicked on this graph".into() })
    });
    (bytes, plan.map(Arc::new))
}

fn build_session(label: &str, bytes: &[u8], intra_threads: usize) -> Result<ort::session::Session> {
    let env = crate::runtime::environment()?;
    let invalid = |e: String| Error::InvalidModel { model: label.into(), reason: e };
    // ONNX Runtime starts its pool threads here: they inherit a fully blocked signal mask.
    crate::cancel::with_signals_blocked(|| {
        ort::session::Session::builder(&env)
            .map_err(|e| invalid(e.to_string()))?
            .with_intra_threads(intra_threads)
            .map_err(|e| invalid(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| invalid(e.to_string()))?
            // Idle pool threads must not spin on a database server's cores.
            .with_config_entry("session.intra_op.allow_spinning", "0")
            .map_err(|e| invalid(e.to_string()))?
            .commit_from_memory(bytes)
            .map_err(|e| invalid(e.to_string()))
    })
}

struct Cached {
    model: Arc<Model>,
    last_used: u64,
}

/// Paths remembered for `load_path`; a program naming more files than this re-hashes them.
const MAX_PATHS: usize = 1024;

/// The engine a front end owns: settings plus the model cache.
pub struct Engine {
    config: RwLock<EngineConfig>,
    models: Mutex<(HashMap<String, Cached>, u64)>,
    /// path -> (mtime, len, sha256): reading a file per chunk is fine, hashing it is not.
    paths: Mutex<HashMap<PathBuf, (SystemTime, u64, String)>>,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(EngineConfig::default())
    }
}

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Engine {
            config: RwLock::new(config),
            models: Mutex::new((HashMap::new(), 0)),
            paths: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> EngineConfig {
        self.config.read().clone()
    }

    /// Defaults for later calls; loaded models stay cached (each call names its thread count).
    pub fn set_config(&self, config: EngineConfig) {
        *self.config.write() = config;
    }

    pub fn cached_models(&self) -> usize {
        self.models.lock().0.len()
    }

    fn lookup(&self, sha256: &str) -> Option<Arc<Model>> {
        let mut guard = self.models.lock();
        let (map, tick) = &mut *guard;
        *tick += 1;
        let now = *tick;
        map.get_mut(sha256).map(|c| {
            c.last_used = now;
            c.model.clone()
        })
    }

    fn insert(&self, model: Arc<Model>) -> Arc<Model> {
        let (capacity, budget) = {
            let c = self.config.read();
            (c.cache_capacity.max(1), c.cache_bytes)
        };
        let mut guard = self.models.lock();
        let (map, tick) = &mut *guard;
        *tick += 1;
        // Another thread may have loaded the same model meanwhile: keep one.
        if let Some(existing) = map.get(&model.sha256) {
            return existing.model.clone();
        }
        let mut used: usize = map.values().map(|c| c.model.footprint()).sum::<usize>() + model.footprint();
        // The least recently used go first; the new model stays even when it alone is over budget.
        while !map.is_empty() && (map.len() >= capacity || used > budget) {
            let Some(oldest) = map.iter().min_by_key(|(_, c)| c.last_used).map(|(k, _)| k.clone()) else {
                break;
            };
            if let Some(gone) = map.remove(&oldest) {
                used = used.saturating_sub(gone.model.footprint());
            }
        }
        map.insert(model.sha256.clone(), Cached { model: model.clone(), last_used: *tick });
        model
    }

    /// Drops cached models whose hash `keep` rejects (a registry's dropped versions), so their
    /// sessions' memory is released. Calls in flight keep theirs until they finish.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> usize {
        let mut guard = self.models.lock();
        let before = guard.0.len();
        guard.0.retain(|sha, _| keep(sha));
        before - guard.0.len()
    }

    /// Estimated bytes held by cached models.
    pub fn cached_bytes(&self) -> usize {
        self.models.lock().0.values().map(|c| c.model.footprint()).sum()
    }

    /// Validates and caches a model from its bytes. `label` names it in errors.
    pub fn load_bytes(&self, label: &str, bytes: &[u8]) -> Result<Arc<Model>> {
        // The limit holds even for bytes this process has already loaded.
        check_size(label, bytes.len(), self.config.read().max_model_bytes)?;
        let sha = sha256_hex(bytes);
        if let Some(m) = self.lookup(&sha) {
            return Ok(m);
        }
        let config = self.config();
        let model = Model::load(label, Arc::from(bytes), sha, &config)?;
        Ok(self.insert(Arc::new(model)))
    }

    /// The hot path for registered models: the registry hands over the hash it stored, so a
    /// cached model is found without touching (or hashing) its bytes.
    pub fn get_or_load(
        &self,
        label: &str,
        sha256: &str,
        bytes: impl FnOnce() -> Result<Vec<u8>>,
    ) -> Result<Arc<Model>> {
        if let Some(m) = self.lookup(sha256) {
            check_size(label, m.size, self.config.read().max_model_bytes)?;
            return Ok(m);
        }
        let bytes = bytes()?;
        let actual = sha256_hex(&bytes);
        if actual != sha256 {
            return Err(Error::InvalidModel {
                model: label.into(),
                reason: format!(
                    "stored sha256 {sha256} does not match its bytes ({actual}); the registry row was altered"
                ),
            });
        }
        self.load_bytes(label, &bytes)
    }

    /// A model given as a file path (`score('models/x.onnx', ...)`).
    pub fn load_path(&self, path: &Path) -> Result<Arc<Model>> {
        let label = path.display().to_string();
        let file_err = |e: std::io::Error| Error::ModelFile { path: label.clone(), reason: e.to_string() };
        let meta = std::fs::metadata(path).map_err(file_err)?;
        if !meta.is_file() {
            return Err(Error::ModelFile { path: label, reason: "not a regular file".into() });
        }
        let stamp = (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len());
        let known = self.paths.lock().get(path).cloned();
        if let Some((mtime, len, sha)) = known {
            if (mtime, len) == stamp {
                if let Some(m) = self.lookup(&sha) {
                    return Ok(m);
                }
            }
        }
        let bytes = read_model_file(path, self.config.read().max_model_bytes)?;
        let model = self.load_bytes(&label, &bytes)?;
        let mut paths = self.paths.lock();
        if paths.len() >= MAX_PATHS {
            paths.clear();
        }
        paths.insert(path.to_path_buf(), (stamp.0, stamp.1, model.sha256.clone()));
        Ok(model)
    }
}

/// Reads a model file: a regular file only (not a device or a pipe), never more than `limit`
/// bytes, whatever its metadata claims.
pub fn read_model_file(path: &Path, limit: usize) -> Result<Vec<u8>> {
    let label = path.display().to_string();
    let file_err = |e: std::io::Error| Error::ModelFile { path: label.clone(), reason: e.to_string() };
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below); it
    // changes nothing for reads of a regular file.
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(file_err)?;
    let meta = file.metadata().map_err(file_err)?;
    if !meta.is_file() {
        return Err(Error::ModelFile { path: label, reason: "not a regular file".into() });
    }
    let mut bytes = Vec::with_capacity((meta.len() as usize).min(limit));
    file.take((limit as u64).saturating_add(1)).read_to_end(&mut bytes).map_err(file_err)?;
    check_size(&label, bytes.len(), limit)?;
    Ok(bytes)
}
