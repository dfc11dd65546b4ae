//! Scoring a selection of rows: bind columns, skip NULL rows, fill one tensor per input, run ONNX
//! Runtime in batches of `batch_rows`, and turn outputs into what SQL returns (score, label,
//! probabilities, or every output as JSON).

use std::time::{Duration, Instant};

use ort::session::SessionInputValue;
use ort::value::{DynValue, Tensor};

use crate::batch::{Batch, Column, ColumnData};
use crate::binding::{bind, Binding};
use crate::cancel::{InterruptCheck, Watch};
use crate::engine::{max_intra_threads, Evaluator, Model, NullPolicy};
use crate::error::{exec_err, Dialect, Error, Result};
use crate::model::{ElemType, ModelInfo};
use crate::native::{Data, Plan, Tensor as NativeTensor};

/// Runs of at least this many rows are watched for cancellation while ONNX Runtime works; shorter
/// ones finish before a watcher would notice.
const WATCH_MIN_ROWS: usize = 256;
/// Rows of the first run of a call: small, so that the time per row is known before a run is sized.
const FIRST_RUN_ROWS: usize = 2048;
/// Runs are sized to take about this long, so a cancel between runs is prompt.
const TARGET_RUN: Duration = Duration::from_millis(100);
/// The registration probe must answer within this.
const PROBE_DEADLINE: Duration = Duration::from_secs(10);
/// Feature values one run may hold (128 MB of f64): wide inputs get fewer rows per run.
const MAX_RUN_VALUES: usize = 1 << 24;

/// What the caller wants per row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// One number: regression value, positive-class probability (binary), top-class probability
    /// (multi-class), or the model's anomaly score (IsolationForest/OneClassSVM decision function).
    Score,
    /// The predicted label as text.
    Label,
    /// Class probabilities, in the model's class order.
    Probabilities,
    /// Every tensor output, as a JSON object keyed by output name.
    All,
}

impl Want {
    fn describe(self) -> &'static str {
        match self {
            Want::Score => "score()",
            Want::Label => "predict()",
            Want::Probabilities => "predict_proba()",
            Want::All => "score_all()",
        }
    }
}

/// Results for the selected rows, in selection order; None where the row had a NULL feature.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    Score(Vec<Option<f64>>),
    Label(Vec<Option<String>>),
    Probabilities(Vec<Option<Vec<f64>>>),
    All(Vec<Option<String>>),
}

impl Predictions {
    fn with_capacity(want: Want, n: usize) -> Self {
        match want {
            Want::Score => Predictions::Score(Vec::with_capacity(n)),
            Want::Label => Predictions::Label(Vec::with_capacity(n)),
            Want::Probabilities => Predictions::Probabilities(Vec::with_capacity(n)),
            Want::All => Predictions::All(Vec::with_capacity(n)),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Predictions::Score(v) => v.len(),
            Predictions::Label(v) => v.len(),
            Predictions::Probabilities(v) => v.len(),
            Predictions::All(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The scores, or an empty vector when these are not scores.
    pub fn into_scores(self) -> Vec<Option<f64>> {
        if let Predictions::Score(v) = self {
            v
        } else {
            Vec::new()
        }
    }

    pub fn into_labels(self) -> Vec<Option<String>> {
        if let Predictions::Label(v) = self {
            v
        } else {
            Vec::new()
        }
    }

    pub fn into_probabilities(self) -> Vec<Option<Vec<f64>>> {
        if let Predictions::Probabilities(v) = self {
            v
        } else {
            Vec::new()
        }
    }

    /// `score_all` rows as JSON text.
    pub fn into_json(self) -> Vec<Option<String>> {
        if let Predictions::All(v) = self {
            v
        } else {
            Vec::new()
        }
    }
}

/// Options of one scoring call (the front end's settings).
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub null_policy: NullPolicy,
    /// Most rows per ONNX Runtime run. Runs are also kept short (about 100 ms) so a cancel is
    /// prompt; results do not depend on how rows are split.
    pub batch_rows: usize,
    /// ONNX Runtime intra-op threads of the session the call runs on (capped to the machine's cores).
    pub intra_threads: usize,
    /// Polled between runs and, by a watcher thread, during long runs.
    pub interrupt: Option<InterruptCheck>,
    /// Type names and settings in the user's engine, for messages.
    pub dialect: &'static Dialect,
    /// Native evaluator, ONNX Runtime, or native where supported.
    pub evaluator: Evaluator,
}

impl RunOptions {
    /// NULL features score NULL, runs of at most 16,384 rows on one thread, no interrupt check,
    /// neutral words: what tests and the CLI use.
    pub const DEFAULT: RunOptions = RunOptions {
        null_policy: NullPolicy::Null,
        batch_rows: 16_384,
        intra_threads: 1,
        interrupt: None,
        dialect: &Dialect::NEUTRAL,
        evaluator: Evaluator::Auto,
    };

    pub fn from_config(c: &crate::EngineConfig, dialect: &'static Dialect) -> Self {
        RunOptions {
            null_policy: c.null_policy,
            batch_rows: c.batch_rows,
            intra_threads: c.intra_threads,
            interrupt: None,
            dialect,
            evaluator: c.evaluator,
        }
    }
}

/// Everything a run needs besides its rows.
struct Call<'a, 'b> {
    label: &'a str,
    batch: &'a Batch<'b>,
    binding: &'a Binding,
    want: Want,
    intra_threads: usize,
    interrupt: Option<InterruptCheck>,
    deadline: Option<Instant>,
    evaluator: Evaluator,
}

/// Sizes runs from the time per row measured so far.
struct Pacer {
    rows: usize,
    max: usize,
}

impl Pacer {
    fn new(max: usize) -> Self {
        let max = max.max(1);
        Pacer { rows: FIRST_RUN_ROWS.min(max), max }
    }

    fn observe(&mut self, rows: usize, took: Duration) {
        let per_row = took.as_secs_f64() / rows.max(1) as f64;
        self.rows =
            if per_row > 0.0 { ((TARGET_RUN.as_secs_f64() / per_row) as usize).clamp(1, self.max) } else { self.max };
    }
}

impl Model {
    /// Checks up front that the model can answer `want`, so a query fails before any work.
    pub fn check_want(&self, label: &str, want: Want) -> Result<()> {
        let roles = &self.info.roles;
        let missing = match want {
            Want::Score if roles.probabilities.is_none() && roles.score.is_none() => {
                Some("it has no numeric output".to_string())
            }
            Want::Label if roles.label.is_none() => {
                Some("it has no label output (a regressor or anomaly score model? use score())".to_string())
            }
            Want::Probabilities if roles.probabilities.is_none() => {
                if self.info.outputs.iter().any(|o| o.elem.is_none()) {
                    Some("its probabilities are a ZipMap (sequence of maps), not a tensor".to_string())
                } else {
                    Some("it has no probabilities output (not a classifier?)".to_string())
                }
            }
            _ => None,
        };
        match missing {
            Some(reason) => Err(Error::Unsupported { model: label.into(), wanted: want.describe().into(), reason }),
            None => Ok(()),
        }
    }

    /// Scores `rows` of `batch`. `label` is how the user named the model, for messages.
    pub fn predict(
        &self,
        label: &str,
        batch: &Batch<'_>,
        rows: &[usize],
        want: Want,
        opts: RunOptions,
    ) -> Result<Predictions> {
        self.check_want(label, want)?;
        let binding = bind(label, &self.info, batch, opts.dialect)?;
        self.predict_bound(label, batch, rows, want, opts, &binding)
    }

    /// [`Model::predict`] for a caller that already checked `want` and bound this batch's
    /// column layout ([`crate::binding::bind`]): a per-row front end binds once per call site
    /// and reuses the binding for every row of the same layout.
    pub fn predict_bound(
        &self,
        label: &str,
        batch: &Batch<'_>,
        rows: &[usize],
        want: Want,
        opts: RunOptions,
        binding: &Binding,
    ) -> Result<Predictions> {
        // Rows with a NULL in any feature they use are not sent to ONNX Runtime.
        let mut valid: Vec<bool> = vec![true; rows.len()];
        let mut any_null = false;
        for &c in &binding.used_columns {
            let col = &batch.columns[c];
            if col.validity.is_none() && !matches!(col.data, crate::batch::ColumnData::Null) {
                continue;
            }
            for (i, &r) in rows.iter().enumerate() {
                if !col.is_valid(r) {
                    if opts.null_policy == NullPolicy::Error {
                        return Err(Error::NullFeature { model: label.into(), column: col.describe(c) });
                    }
                    valid[i] = false;
                    any_null = true;
                }
            }
        }
        let scored_rows: Vec<usize> = if any_null {
            rows.iter().zip(&valid).filter(|(_, v)| **v).map(|(r, _)| *r).collect()
        } else {
            rows.to_vec()
        };
        let mut scored = Predictions::with_capacity(want, scored_rows.len());
        let call = Call {
            label,
            batch,
            binding,
            want,
            intra_threads: opts.intra_threads.clamp(1, max_intra_threads()),
            interrupt: opts.interrupt,
            deadline: None,
            evaluator: opts.evaluator,
        };
        if opts.evaluator == Evaluator::Native {
            if let Err(why) = self.native() {
                return Err(Error::Unsupported {
                    model: label.into(),
                    wanted: format!("the native evaluator ({} = native)", opts.dialect.engine_setting),
                    reason: format!("not supported natively: {why}"),
                });
            }
        }
        let per_row = self.info.feature_count().max(1);
        let mut pacer = Pacer::new(opts.batch_rows.min((MAX_RUN_VALUES / per_row).max(1)));
        let mut start = 0;
        while start < scored_rows.len() {
            if opts.interrupt.is_some_and(|pending| pending()) {
                return Err(Error::Cancelled { model: label.into() });
            }
            let end = (start + pacer.rows).min(scored_rows.len());
            // Timing only sizes the next run: a call done in one run (every per-row call)
            // skips the clock.
            let began = (end < scored_rows.len()).then(Instant::now);
            self.run_chunk(&call, &scored_rows[start..end], &mut scored)?;
            if let Some(began) = began {
                pacer.observe(end - start, began.elapsed());
            }
            start = end;
        }
        if !any_null {
            return Ok(scored);
        }
        Ok(spread(scored, &valid))
    }

    /// Runs the model once on a 2-row input of zeros (empty strings for text) and checks that
    /// every output answers one row per input row: a model that cannot is refused when it is
    /// registered or loaded, never discovered mid-query. A model that fails on zeros (an encoder
    /// that refuses unknown categories) is not refused here; its outputs are still checked on
    /// every run.
    pub(crate) fn probe(&self, label: &str, intra_threads: usize) -> Result<()> {
        match self.probe_with(label, intra_threads, Evaluator::OnnxRuntime) {
            Ok(_) | Err(Error::Execution { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Runs the native plan on the probe's input and compares it with ONNX Runtime's answer: a
    /// plan that fails or disagrees (beyond the 1e-5 contract) is dropped, with the reason, and
    /// the model runs on ONNX Runtime. A safety net under the tests, not a substitute for them.
    pub(crate) fn probe_native(&mut self, label: &str) {
        if self.native().is_err() {
            return;
        }
        // Nothing to compare with when ONNX Runtime itself refuses the test input.
        let Ok(ort) = self.probe_with(label, 1, Evaluator::OnnxRuntime) else { return };
        // A kernel bug must cost the model its native plan, not its loading.
        let native =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.probe_with(label, 1, Evaluator::Native)))
                .unwrap_or_else(|_| Err(Error::Internal("the native evaluator panicked".into())));
        let problem = match (Ok::<_, Error>(ort), native) {
            (Ok(a), Ok(b)) => match json_close(&a, &b) {
                true => None,
                false => {
                    let first = |v: &[Option<String>]| v.first().cloned().flatten().unwrap_or_default();
                    Some(format!(
                        "its answer to a test input differs from ONNX Runtime's: {} instead of {} (please report this)",
                        first(&b),
                        first(&a)
                    ))
                }
            },
            (Ok(_), Err(e)) => Some(format!("it failed on a test input: {e}")),
            (Err(_), _) => None,
        };
        if let Some(reason) = problem {
            self.set_native_unsupported(crate::native::Unsupported { op: "the compiled graph".into(), reason });
        }
    }

    fn probe_with(&self, label: &str, intra_threads: usize, evaluator: Evaluator) -> Result<Vec<Option<String>>> {
        const ZEROS: [f64; 2] = [0.0; 2];
        const INT_ZEROS: [i64; 2] = [0; 2];
        let mut columns = Vec::new();
        for input in &self.info.inputs {
            for _ in 0..input.width {
                let data = match input.elem {
                    ElemType::String => ColumnData::Str(vec![""; 2]),
                    ElemType::Float | ElemType::Double => ColumnData::F64(&ZEROS),
                    ElemType::Int64 | ElemType::Int32 | ElemType::Bool => ColumnData::I64(&INT_ZEROS),
                };
                columns.push(Column::new(None, data, None));
            }
        }
        let batch = Batch::new(columns, 2);
        let binding = bind(label, &self.info, &batch, &Dialect::NEUTRAL)?;
        let call = Call {
            label,
            batch: &batch,
            binding: &binding,
            want: Want::All,
            // The session built at load: the probe must not build (and keep) another.
            intra_threads,
            interrupt: None,
            deadline: Some(Instant::now() + PROBE_DEADLINE),
            evaluator,
        };
        let mut out = Predictions::with_capacity(Want::All, 2);
        match self.run_chunk(&call, &[0, 1], &mut out) {
            Err(Error::Cancelled { .. }) => Err(Error::InvalidModel {
                model: label.into(),
                reason: format!("it did not answer a 2-row test input within {} s", PROBE_DEADLINE.as_secs()),
            }),
            Ok(()) => Ok(out.into_json()),
            Err(e) => Err(e),
        }
    }

    fn run_chunk(&self, call: &Call<'_, '_>, rows: &[usize], out: &mut Predictions) -> Result<()> {
        if call.evaluator != Evaluator::OnnxRuntime {
            if let Ok(plan) = self.native() {
                return self.run_native(plan, call, rows, out);
            }
        }
        let (label, want) = (call.label, call.want);
        let n = rows.len();
        let mut inputs: Vec<(String, SessionInputValue<'_>)> = Vec::with_capacity(self.info.inputs.len());
        for (input, t) in self.info.inputs.iter().zip(self.input_tensors(call, rows)?) {
            let shape: Vec<i64> = t.shape.iter().map(|d| *d as i64).collect();
            let value: DynValue = match (input.elem, t.data) {
                (_, Data::F32(v)) => Tensor::from_array((shape, v)).map_err(exec_err(label))?.into_dyn(),
                (_, Data::F64(v)) => Tensor::from_array((shape, v)).map_err(exec_err(label))?.into_dyn(),
                (ElemType::Int32, Data::I64(v)) => {
                    // In range: checked when the buffer was filled.
                    let v: Vec<i32> = v.into_iter().map(|x| x as i32).collect();
                    Tensor::from_array((shape, v)).map_err(exec_err(label))?.into_dyn()
                }
                (_, Data::I64(v)) => Tensor::from_array((shape, v)).map_err(exec_err(label))?.into_dyn(),
                (_, Data::Bool(v)) => Tensor::from_array((shape, v)).map_err(exec_err(label))?.into_dyn(),
                // ort copies strings into its own tensor anyway; it wants owned ('static) data.
                (_, Data::Str(v)) => {
                    let v: std::sync::Arc<[String]> = v.into();
                    Tensor::from_string_array((shape, v)).map_err(exec_err(label))?.into_dyn()
                }
            };
            inputs.push((input.name.clone(), value.into()));
        }
        let watch = if n >= WATCH_MIN_ROWS || call.deadline.is_some() {
            Watch::start(call.interrupt, call.deadline)
        } else {
            None
        };
        self.with_session(label, call.intra_threads, |session| {
            let outputs = match &watch {
                Some(w) => session.run_with_options(inputs, &*w.options),
                None => session.run(inputs),
            };
            let outputs = outputs.map_err(|e| {
                let terminated = watch.as_ref().is_some_and(|_| e.to_string().contains("terminate flag"));
                if terminated {
                    Error::Cancelled { model: label.into() }
                } else {
                    exec_err(label)(e)
                }
            })?;
            let info = &self.info;
            let get = |idx: usize| -> Result<OutTensor> {
                let o = &info.outputs[idx];
                let value = outputs.get(&o.name).ok_or_else(|| Error::OutputShape {
                    model: label.into(),
                    output: o.name.clone(),
                    reason: "was not returned by ONNX Runtime".into(),
                })?;
                OutTensor::extract(label, &o.name, value, o.elem, n)
            };
            collect(label, info, want, n, &get, out)
        })
    }
}

/// How errors name the native evaluator.
const NATIVE: &str = "the native evaluator";

/// Rows per native run below which splitting across threads costs more than it saves.
const PARALLEL_MIN_ROWS: usize = 4096;

impl Model {
    /// The native path of [`Model::run_chunk`]: the same input buffers, the plan instead of a
    /// session, the same output checks. Large runs are split by rows (never by trees) across
    /// `intra_threads` threads; each part is independent, so results do not depend on the split.
    fn run_native(&self, plan: &Plan, call: &Call<'_, '_>, rows: &[usize], out: &mut Predictions) -> Result<()> {
        let label = call.label;
        let n = rows.len();
        let threads = call.intra_threads.min(n / PARALLEL_MIN_ROWS.max(1)).max(1);
        let outputs = if threads > 1 {
            let part = n.div_ceil(threads);
            let pool = native_pool(threads)?;
            let parts: Vec<Result<Vec<NativeTensor>>> = pool.install(|| {
                use rayon::prelude::*;
                rows.par_chunks(part).map(|r| self.native_run_rows(plan, call, r)).collect()
            });
            let parts: Vec<Vec<NativeTensor>> = parts.into_iter().collect::<Result<_>>()?;
            concat_rows(parts).map_err(|message| Error::Execution {
                model: label.into(),
                evaluator: NATIVE,
                message,
            })?
        } else {
            self.native_run_rows(plan, call, rows)?
        };
        let info = &self.info;
        let get = |idx: usize| -> Result<OutTensor> {
            let o = &info.outputs[idx];
            let pos = plan.outputs.iter().position(|(name, _)| *name == o.name).ok_or_else(|| Error::OutputShape {
                model: label.into(),
                output: o.name.clone(),
                reason: "was not returned by the native evaluator".into(),
            })?;
            OutTensor::from_native(label, &o.name, &outputs[pos], n)
        };
        collect(label, info, call.want, n, &get, out)
    }

    /// One tensor per model input (in the model's order) holding `rows` of the bound columns:
    /// what both evaluators run on. The one type dispatch per column is here, then tight loops.
    fn input_tensors(&self, call: &Call<'_, '_>, rows: &[usize]) -> Result<Vec<NativeTensor>> {
        let (batch, binding) = (call.batch, call.binding);
        let n = rows.len();
        let mut out = Vec::with_capacity(self.info.inputs.len());
        for (input, slots) in self.info.inputs.iter().zip(&binding.slots) {
            let shape: Vec<usize> =
                tensor_shape(&input.shape, n, input.width).into_iter().map(|d| d as usize).collect();
            let w = input.width;
            let data = match input.elem {
                ElemType::Float => {
                    let mut buf = vec![0f32; n * w];
                    for (j, &(c, k)) in slots.iter().enumerate() {
                        fill(&batch.columns[c].data, k, rows, &mut buf, w, j, |x| x as f32);
                    }
                    Data::F32(buf)
                }
                ElemType::Double => {
                    let mut buf = vec![0f64; n * w];
                    for (j, &(c, k)) in slots.iter().enumerate() {
                        fill(&batch.columns[c].data, k, rows, &mut buf, w, j, |x| x);
                    }
                    Data::F64(buf)
                }
                ElemType::Int64 | ElemType::Int32 | ElemType::Bool => {
                    let mut buf = vec![0i64; n * w];
                    for (j, &(c, _)) in slots.iter().enumerate() {
                        let data = &batch.columns[c].data;
                        for (i, &r) in rows.iter().enumerate() {
                            buf[i * w + j] = data.i64_at(r);
                        }
                    }
                    match input.elem {
                        ElemType::Bool => Data::Bool(buf.into_iter().map(|x| x != 0).collect()),
                        ElemType::Int32 => {
                            if let Some(x) = buf.iter().find(|x| i32::try_from(**x).is_err()) {
                                return Err(Error::TypeMismatch {
                                    model: call.label.into(),
                                    input: input.name.clone(),
                                    column: "a value".into(),
                                    expected: "an int32".into(),
                                    got: format!("{x}, out of range"),
                                });
                            }
                            Data::I64(buf)
                        }
                        _ => Data::I64(buf),
                    }
                }
                ElemType::String => {
                    let mut buf: Vec<String> = vec![String::new(); n * w];
                    for (j, &(c, _)) in slots.iter().enumerate() {
                        if let ColumnData::Str(values) = &batch.columns[c].data {
                            for (i, &r) in rows.iter().enumerate() {
                                buf[i * w + j] = values[r].to_string();
                            }
                        }
                    }
                    Data::Str(buf)
                }
            };
            out.push(NativeTensor::new(shape, data));
        }
        Ok(out)
    }

    fn native_run_rows(&self, plan: &Plan, call: &Call<'_, '_>, rows: &[usize]) -> Result<Vec<NativeTensor>> {
        let mut by_name: Vec<(&str, NativeTensor)> =
            self.info.inputs.iter().map(|i| i.name.as_str()).zip(self.input_tensors(call, rows)?).collect();
        let mut inputs = Vec::with_capacity(by_name.len());
        for name in plan.input_names() {
            let pos = by_name.iter().position(|(n, _)| *n == name).ok_or_else(|| {
                Error::Internal(format!("native plan input '{name}' is not among the model's inputs"))
            })?;
            inputs.push(by_name.swap_remove(pos).1);
        }
        plan.run(inputs).map_err(|message| Error::Execution { model: call.label.into(), evaluator: NATIVE, message })
    }
}

/// One rayon pool per thread count, built on first use and kept: native runs split rows over it.
/// Its threads start with every signal blocked, so a database's signal handlers stay on the
/// database's own thread.
fn native_pool(threads: usize) -> Result<std::sync::Arc<rayon::ThreadPool>> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static POOLS: OnceLock<Mutex<HashMap<usize, Arc<rayon::ThreadPool>>>> = OnceLock::new();
    let mut pools = POOLS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = pools.get(&threads) {
        return Ok(p.clone());
    }
    let pool = crate::cancel::with_signals_blocked(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("sqlscore-native-{i}"))
            .build()
            .map_err(|e| Error::Internal(format!("cannot start {threads} scoring threads: {e}")))
    })?;
    let pool = Arc::new(pool);
    pools.insert(threads, pool.clone());
    Ok(pool)
}

/// Joins per-thread outputs along the row axis.
fn concat_rows(parts: Vec<Vec<NativeTensor>>) -> std::result::Result<Vec<NativeTensor>, String> {
    let mut it = parts.into_iter();
    let Some(mut acc) = it.next() else { return Ok(Vec::new()) };
    for part in it {
        for (a, b) in acc.iter_mut().zip(part) {
            if a.shape.len() != b.shape.len() || a.shape.get(1..) != b.shape.get(1..) || a.shape.is_empty() {
                return Err(format!("parts of shapes {:?} and {:?} cannot be joined", a.shape, b.shape));
            }
            a.shape[0] += b.shape[0];
            match (&mut a.data, b.data) {
                (Data::F32(x), Data::F32(y)) => x.extend(y),
                (Data::F64(x), Data::F64(y)) => x.extend(y),
                (Data::I64(x), Data::I64(y)) => x.extend(y),
                (Data::Bool(x), Data::Bool(y)) => x.extend(y),
                (Data::Str(x), Data::Str(y)) => x.extend(y),
                _ => return Err("parts of different types".into()),
            }
        }
    }
    Ok(acc)
}

/// Two `score_all` answers agree: same keys and shapes, numbers within 1e-4 (NaN equal to NaN).
fn json_close(a: &[Option<String>], b: &[Option<String>]) -> bool {
    fn close(x: &serde_json::Value, y: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        match (x, y) {
            (V::Number(p), V::Number(q)) => {
                let (p, q) = (p.as_f64().unwrap_or(f64::NAN), q.as_f64().unwrap_or(f64::NAN));
                (p - q).abs() <= 1e-4 * (1.0 + p.abs())
            }
            (V::Array(p), V::Array(q)) => p.len() == q.len() && p.iter().zip(q).all(|(x, y)| close(x, y)),
            (V::Object(p), V::Object(q)) => {
                p.len() == q.len() && p.iter().all(|(k, v)| q.get(k).is_some_and(|w| close(v, w)))
            }
            _ => x == y,
        }
    }
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => match (serde_json::from_str(x), serde_json::from_str(y)) {
                (Ok(p), Ok(q)) => close(&p, &q),
                _ => x == y,
            },
            (x, y) => x == y,
        })
}

/// Re-inserts NULL results for rows that were skipped.
fn spread(scored: Predictions, valid: &[bool]) -> Predictions {
    fn go<T>(v: Vec<Option<T>>, valid: &[bool]) -> Vec<Option<T>> {
        let mut it = v.into_iter();
        valid.iter().map(|ok| if *ok { it.next().flatten() } else { None }).collect()
    }
    match scored {
        Predictions::Score(v) => Predictions::Score(go(v, valid)),
        Predictions::Label(v) => Predictions::Label(go(v, valid)),
        Predictions::Probabilities(v) => Predictions::Probabilities(go(v, valid)),
        Predictions::All(v) => Predictions::All(go(v, valid)),
    }
}

fn tensor_shape(model_shape: &[i64], n: usize, width: usize) -> Vec<i64> {
    match model_shape.len() {
        0 | 1 => vec![n as i64],
        2 => vec![n as i64, width as i64],
        _ => std::iter::once(n as i64).chain(model_shape[1..].iter().copied()).collect(),
    }
}

/// Fills feature slot `slot` of a row-major buffer from one column. One type dispatch per column,
/// then a tight loop: this is the hot path of every scoring call.
fn fill<T: Copy>(
    data: &ColumnData<'_>,
    k: usize,
    rows: &[usize],
    buf: &mut [T],
    stride: usize,
    slot: usize,
    conv: impl Fn(f64) -> T,
) {
    macro_rules! go {
        ($v:expr) => {
            for (i, &r) in rows.iter().enumerate() {
                buf[i * stride + slot] = conv($v[r] as f64);
            }
        };
    }
    match data {
        ColumnData::F64(v) => go!(v),
        ColumnData::F32(v) => go!(v),
        ColumnData::I32(v) => go!(v),
        ColumnData::I64(v) => go!(v),
        other => {
            for (i, &r) in rows.iter().enumerate() {
                buf[i * stride + slot] = conv(other.f64_at(r, k));
            }
        }
    }
}

/// An output tensor copied out of ONNX Runtime, with values per row.
enum OutTensor {
    Num { values: Vec<f64>, width: usize },
    Int { values: Vec<i64>, width: usize },
    Text { values: Vec<String>, width: usize },
}

/// Values per row of an output, after checking that it has exactly one row per input row and
/// at least one value per row. Nothing is read from an output before this holds.
fn row_width(model: &str, output: &str, shape: &[i64], len: usize, n: usize) -> Result<usize> {
    let err = |reason: String| Error::OutputShape { model: model.into(), output: output.into(), reason };
    let Some((&rows, rest)) = shape.split_first() else {
        return Err(err("is a single value, not one value per input row".into()));
    };
    if rows != n as i64 {
        return Err(err(format!("has {rows} row(s) for {n} input row(s) (shape {shape:?})")));
    }
    let width = rest.iter().try_fold(1usize, |acc, d| usize::try_from(*d).ok().and_then(|d| acc.checked_mul(d)));
    match width {
        Some(w) if w > 0 && Some(len) == w.checked_mul(n) => Ok(w),
        Some(0) => Err(err(format!("is empty (shape {shape:?})"))),
        _ => Err(err(format!("has {len} values, which does not match its shape {shape:?}"))),
    }
}

impl OutTensor {
    fn from_native(label: &str, name: &str, t: &NativeTensor, n: usize) -> Result<Self> {
        let shape: Vec<i64> = t.shape.iter().map(|d| *d as i64).collect();
        let width = row_width(label, name, &shape, t.len(), n)?;
        Ok(match &t.data {
            Data::F32(v) => OutTensor::Num { width, values: v.iter().map(|x| *x as f64).collect() },
            Data::F64(v) => OutTensor::Num { width, values: v.clone() },
            Data::I64(v) => OutTensor::Int { width, values: v.clone() },
            Data::Bool(v) => OutTensor::Int { width, values: v.iter().map(|x| *x as i64).collect() },
            Data::Str(v) => OutTensor::Text { width, values: v.clone() },
        })
    }

    fn extract(label: &str, name: &str, value: &DynValue, elem: Option<ElemType>, n: usize) -> Result<Self> {
        let err = exec_err(label);
        let width = |shape: &[i64], len: usize| row_width(label, name, shape, len, n);
        Ok(match elem {
            Some(ElemType::Float) => {
                let (shape, v) = value.try_extract_tensor::<f32>().map_err(&err)?;
                OutTensor::Num { width: width(shape, v.len())?, values: v.iter().map(|x| *x as f64).collect() }
            }
            Some(ElemType::Double) => {
                let (shape, v) = value.try_extract_tensor::<f64>().map_err(&err)?;
                OutTensor::Num { width: width(shape, v.len())?, values: v.to_vec() }
            }
            Some(ElemType::Int64) => {
                let (shape, v) = value.try_extract_tensor::<i64>().map_err(&err)?;
                OutTensor::Int { width: width(shape, v.len())?, values: v.to_vec() }
            }
            Some(ElemType::Int32) => {
                let (shape, v) = value.try_extract_tensor::<i32>().map_err(&err)?;
                OutTensor::Int { width: width(shape, v.len())?, values: v.iter().map(|x| *x as i64).collect() }
            }
            Some(ElemType::Bool) => {
                let (shape, v) = value.try_extract_tensor::<bool>().map_err(&err)?;
                OutTensor::Int { width: width(shape, v.len())?, values: v.iter().map(|x| *x as i64).collect() }
            }
            Some(ElemType::String) => {
                let (shape, v) = value.try_extract_strings().map_err(&err)?;
                OutTensor::Text { width: width(shape, v.len())?, values: v }
            }
            None => {
                return Err(Error::Unsupported {
                    model: label.into(),
                    wanted: "scoring".into(),
                    reason: format!("output '{name}' is not a tensor"),
                })
            }
        })
    }

    fn width(&self) -> usize {
        match self {
            OutTensor::Num { width, .. } | OutTensor::Int { width, .. } | OutTensor::Text { width, .. } => *width,
        }
    }

    fn num_row(&self, i: usize) -> Vec<f64> {
        let w = self.width();
        match self {
            OutTensor::Num { values, .. } => values[i * w..(i + 1) * w].to_vec(),
            OutTensor::Int { values, .. } => values[i * w..(i + 1) * w].iter().map(|x| *x as f64).collect(),
            OutTensor::Text { .. } => vec![f64::NAN; w],
        }
    }

    fn text_at(&self, i: usize) -> String {
        let w = self.width();
        match self {
            OutTensor::Num { values, .. } => format_number(values[i * w]),
            OutTensor::Int { values, .. } => values[i * w].to_string(),
            OutTensor::Text { values, .. } => values[i * w].clone(),
        }
    }

    fn json_row(&self, i: usize) -> serde_json::Value {
        let w = self.width();
        let row: Vec<serde_json::Value> = match self {
            OutTensor::Num { values, .. } => values[i * w..(i + 1) * w].iter().map(|x| serde_json::json!(x)).collect(),
            OutTensor::Int { values, .. } => values[i * w..(i + 1) * w].iter().map(|x| serde_json::json!(x)).collect(),
            OutTensor::Text { values, .. } => values[i * w..(i + 1) * w].iter().map(|x| serde_json::json!(x)).collect(),
        };
        if w == 1 {
            row.into_iter().next().unwrap_or(serde_json::Value::Null)
        } else {
            serde_json::Value::Array(row)
        }
    }
}

/// Labels of float-valued outputs read as integers when they are integers ("1", not "1.0").
fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

fn not_numeric(label: &str, info: &ModelInfo, output: usize) -> Error {
    Error::OutputShape {
        model: label.into(),
        output: info.outputs[output].name.clone(),
        reason: "is not numeric".into(),
    }
}

fn collect(
    label: &str,
    info: &ModelInfo,
    want: Want,
    n: usize,
    get: &dyn Fn(usize) -> Result<OutTensor>,
    out: &mut Predictions,
) -> Result<()> {
    let roles = &info.roles;
    match (want, out) {
        (Want::Score, Predictions::Score(dst)) => {
            if let Some(p) = roles.probabilities {
                let t = get(p)?;
                let OutTensor::Num { values, width } = t else {
                    return Err(not_numeric(label, info, p));
                };
                if width == 2 {
                    dst.extend((0..n).map(|i| Some(values[i * 2 + 1])));
                } else {
                    dst.extend((0..n).map(|i| {
                        Some(values[i * width..(i + 1) * width].iter().copied().fold(f64::NEG_INFINITY, f64::max))
                    }));
                }
            } else if let Some(s) = roles.score {
                let t = get(s)?;
                let OutTensor::Num { values, width } = t else {
                    return Err(not_numeric(label, info, s));
                };
                dst.extend((0..n).map(|i| Some(values[i * width])));
            } else {
                return Err(Error::Unsupported {
                    model: label.into(),
                    wanted: "score()".into(),
                    reason: "no numeric output".into(),
                });
            }
        }
        (Want::Label, Predictions::Label(dst)) => {
            let t = get(roles.label.ok_or_else(|| Error::Internal("no label role".into()))?)?;
            dst.extend((0..n).map(|i| Some(t.text_at(i))));
        }
        (Want::Probabilities, Predictions::Probabilities(dst)) => {
            let t = get(roles.probabilities.ok_or_else(|| Error::Internal("no probabilities role".into()))?)?;
            dst.extend((0..n).map(|i| Some(t.num_row(i))));
        }
        (Want::All, Predictions::All(dst)) => {
            let tensors: Vec<(String, OutTensor)> = info
                .outputs
                .iter()
                .enumerate()
                .filter(|(_, o)| o.elem.is_some())
                .map(|(idx, o)| get(idx).map(|t| (o.name.clone(), t)))
                .collect::<Result<_>>()?;
            dst.extend((0..n).map(|i| {
                let obj: serde_json::Map<String, serde_json::Value> =
                    tensors.iter().map(|(name, t)| (name.clone(), t.json_row(i))).collect();
                Some(serde_json::Value::Object(obj).to_string())
            }));
        }
        _ => return Err(Error::Internal("prediction buffer does not match request".into())),
    }
    Ok(())
}
