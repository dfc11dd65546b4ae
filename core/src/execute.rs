//! Scoring a selection of rows: bind columns, skip NULL rows, fill one tensor per input, run ONNX
//! Runtime in batches of `batch_rows`, and turn outputs into what SQL returns (score, label,
//! probabilities, or every output as JSON).

use ort::session::SessionInputValue;
use ort::value::{DynValue, Tensor};

use crate::batch::{Batch, ColumnData};
use crate::binding::{bind, Binding};
use crate::engine::{Model, NullPolicy};
use crate::error::{exec_err, Error, Result};
use crate::model::{ElemType, ModelInfo};

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
        if let Predictions::Score(v) = self { v } else { Vec::new() }
    }

    pub fn into_labels(self) -> Vec<Option<String>> {
        if let Predictions::Label(v) = self { v } else { Vec::new() }
    }

    pub fn into_probabilities(self) -> Vec<Option<Vec<f64>>> {
        if let Predictions::Probabilities(v) = self { v } else { Vec::new() }
    }

    /// `score_all` rows as JSON text.
    pub fn into_json(self) -> Vec<Option<String>> {
        if let Predictions::All(v) = self { v } else { Vec::new() }
    }
}

/// Options of one scoring call (the front end's settings).
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    pub null_policy: NullPolicy,
    pub batch_rows: usize,
    /// ONNX Runtime intra-op threads of the session the call runs on.
    pub intra_threads: usize,
}

impl RunOptions {
    pub fn from_config(c: &crate::EngineConfig) -> Self {
        RunOptions { null_policy: c.null_policy, batch_rows: c.batch_rows, intra_threads: c.intra_threads }
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
        let binding = bind(label, &self.info, batch)?;
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
        for chunk in scored_rows.chunks(opts.batch_rows.max(1)) {
            self.run_chunk(label, batch, &binding, chunk, want, opts.intra_threads.max(1), &mut scored)?;
        }
        if !any_null {
            return Ok(scored);
        }
        Ok(spread(scored, &valid))
    }

    fn run_chunk(
        &self,
        label: &str,
        batch: &Batch<'_>,
        binding: &Binding,
        rows: &[usize],
        want: Want,
        intra_threads: usize,
        out: &mut Predictions,
    ) -> Result<()> {
        let n = rows.len();
        let mut inputs: Vec<(String, SessionInputValue<'_>)> = Vec::with_capacity(self.info.inputs.len());
        for (input, slots) in self.info.inputs.iter().zip(&binding.slots) {
            let shape = tensor_shape(&input.shape, n, input.width);
            let value: DynValue = match input.elem {
                ElemType::Float => {
                    let mut buf = vec![0f32; n * input.width];
                    for (j, &(c, k)) in slots.iter().enumerate() {
                        fill(&batch.columns[c].data, k, rows, &mut buf, input.width, j, |x| x as f32);
                    }
                    Tensor::from_array((shape, buf)).map_err(exec_err(label))?.into_dyn()
                }
                ElemType::Double => {
                    let mut buf = vec![0f64; n * input.width];
                    for (j, &(c, k)) in slots.iter().enumerate() {
                        fill(&batch.columns[c].data, k, rows, &mut buf, input.width, j, |x| x);
                    }
                    Tensor::from_array((shape, buf)).map_err(exec_err(label))?.into_dyn()
                }
                ElemType::Int64 | ElemType::Int32 | ElemType::Bool => {
                    let mut buf = vec![0i64; n * input.width];
                    for (j, &(c, _)) in slots.iter().enumerate() {
                        let data = &batch.columns[c].data;
                        for (i, &r) in rows.iter().enumerate() {
                            buf[i * input.width + j] = data.i64_at(r);
                        }
                    }
                    match input.elem {
                        ElemType::Int64 => Tensor::from_array((shape, buf)).map_err(exec_err(label))?.into_dyn(),
                        ElemType::Int32 => {
                            if let Some(x) = buf.iter().find(|x| i32::try_from(**x).is_err()) {
                                return Err(Error::TypeMismatch {
                                    model: label.into(),
                                    input: input.name.clone(),
                                    column: "a value".into(),
                                    expected: "an int32".into(),
                                    got: format!("{x}, out of range"),
                                });
                            }
                            let v: Vec<i32> = buf.into_iter().map(|x| x as i32).collect();
                            Tensor::from_array((shape, v)).map_err(exec_err(label))?.into_dyn()
                        }
                        _ => {
                            let v: Vec<bool> = buf.into_iter().map(|x| x != 0).collect();
                            Tensor::from_array((shape, v)).map_err(exec_err(label))?.into_dyn()
                        }
                    }
                }
                ElemType::String => {
                    // ort copies strings into its own tensor anyway; it wants owned ('static) data.
                    let mut buf: Vec<String> = vec![String::new(); n * input.width];
                    for (j, &(c, _)) in slots.iter().enumerate() {
                        if let ColumnData::Str(values) = &batch.columns[c].data {
                            for (i, &r) in rows.iter().enumerate() {
                                buf[i * input.width + j] = values[r].to_string();
                            }
                        }
                    }
                    let buf: std::sync::Arc<[String]> = buf.into();
                    Tensor::from_string_array((shape, buf)).map_err(exec_err(label))?.into_dyn()
                }
            };
            inputs.push((input.name.clone(), value.into()));
        }
        self.with_session(label, intra_threads, |session| {
            let outputs = session.run(inputs).map_err(exec_err(label))?;
            let info = &self.info;
            let get = |idx: usize| -> Result<OutTensor> {
                let o = &info.outputs[idx];
                let value = outputs.get(&o.name).ok_or_else(|| Error::Internal(format!("output {} missing", o.name)))?;
                OutTensor::extract(label, value, o.elem, n)
            };
            collect(label, info, want, n, &get, out)
        })
    }
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

impl OutTensor {
    fn extract(label: &str, value: &DynValue, elem: Option<ElemType>, n: usize) -> Result<Self> {
        let width_of = |len: usize| if n == 0 { 1 } else { (len / n).max(1) };
        let err = exec_err(label);
        Ok(match elem {
            Some(ElemType::Float) => {
                let (_, v) = value.try_extract_tensor::<f32>().map_err(&err)?;
                OutTensor::Num { width: width_of(v.len()), values: v.iter().map(|x| *x as f64).collect() }
            }
            Some(ElemType::Double) => {
                let (_, v) = value.try_extract_tensor::<f64>().map_err(&err)?;
                OutTensor::Num { width: width_of(v.len()), values: v.to_vec() }
            }
            Some(ElemType::Int64) => {
                let (_, v) = value.try_extract_tensor::<i64>().map_err(&err)?;
                OutTensor::Int { width: width_of(v.len()), values: v.to_vec() }
            }
            Some(ElemType::Int32) => {
                let (_, v) = value.try_extract_tensor::<i32>().map_err(&err)?;
                OutTensor::Int { width: width_of(v.len()), values: v.iter().map(|x| *x as i64).collect() }
            }
            Some(ElemType::Bool) => {
                let (_, v) = value.try_extract_tensor::<bool>().map_err(&err)?;
                OutTensor::Int { width: width_of(v.len()), values: v.iter().map(|x| *x as i64).collect() }
            }
            Some(ElemType::String) => {
                let (_, v) = value.try_extract_strings().map_err(&err)?;
                OutTensor::Text { width: width_of(v.len()), values: v }
            }
            None => return Err(Error::Internal("non-tensor output requested".into())),
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
                    return Err(Error::Internal("probabilities are not numeric".into()));
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
                    return Err(Error::Internal("score output is not numeric".into()));
                };
                dst.extend((0..n).map(|i| Some(values[i * width])));
            } else {
                return Err(Error::Unsupported { model: label.into(), wanted: "score()".into(), reason: "no numeric output".into() });
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
