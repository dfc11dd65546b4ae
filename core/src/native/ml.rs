//! The ai.onnx.ml operators other than tree ensembles: linear models, SVMs, and the preprocessing
//! steps of scikit-learn pipelines. Each computes in the precision ONNX Runtime's CPU kernel uses
//! (mostly float32, whatever the input) so answers agree to the last few ulps.

use std::collections::HashMap;

use super::post;
use super::proto::{NodeProto, TensorProto};
use super::tensor::{Data, Tensor};
use super::Kernel;

type R<T> = Result<T, String>;

pub fn compile(node: &NodeProto) -> R<Box<dyn Kernel>> {
    Ok(match node.op_type.as_str() {
        "LinearClassifier" => Box::new(LinearClassifier::new(node)?),
        "LinearRegressor" => Box::new(LinearRegressor::new(node)?),
        "Scaler" => Box::new(Scaler { offset: node.floats("offset").to_vec(), scale: node.floats("scale").to_vec() }),
        "Normalizer" => Box::new(Normalizer { norm: node.string("norm").unwrap_or_else(|| "MAX".into()) }),
        "SVMRegressor" => Box::new(SvmRegressor::new(node)?),
        "SVMClassifier" => Box::new(SvmClassifier::new(node)?),
        "OneHotEncoder" => Box::new(OneHot::new(node)?),
        "LabelEncoder" => Box::new(LabelEncoder::new(node)?),
        "ArrayFeatureExtractor" => Box::new(ArrayFeatureExtractor),
        "Imputer" => Box::new(Imputer::new(node)?),
        "Binarizer" => Box::new(Binarizer { threshold: node.float("threshold", 0.0) }),
        "FeatureVectorizer" => {
            let dims = node.ints("inputdimensions");
            if dims.iter().any(|d| *d < 0 || *d > super::tensor::MAX_ELEMENTS as i64) {
                return Err(format!("FeatureVectorizer: inputdimensions {dims:?}"));
            }
            Box::new(FeatureVectorizer { dims: dims.iter().map(|d| *d as usize).collect() })
        }
        _ => return Err(String::new()),
    })
}

/// Any numeric input as float32, the way the ML kernels cast before their GEMM.
pub(crate) fn to_f32(t: &Tensor) -> R<std::borrow::Cow<'_, [f32]>> {
    Ok(match &t.data {
        Data::F32(v) => std::borrow::Cow::Borrowed(v.as_slice()),
        Data::F64(v) => v.iter().map(|x| *x as f32).collect(),
        Data::I64(v) => v.iter().map(|x| *x as f32).collect(),
        Data::Bool(v) => v.iter().map(|x| *x as u8 as f32).collect(),
        Data::Str(_) => return Err("a numeric input, not strings".into()),
    })
}

/// [rows, features] of an input as ML kernels read it (a 1-D input is one row).
fn rows_cols(t: &Tensor) -> (usize, usize) {
    match t.shape.len() {
        0 => (1, 1),
        1 => (1, t.shape[0]),
        _ => (t.shape[0], t.len() / t.shape[0].max(1)),
    }
}

fn arg<'a>(inputs: &[&'a Tensor], op: &str) -> R<&'a Tensor> {
    inputs.first().copied().ok_or_else(|| format!("{op}: no input"))
}

/// x · wᵀ + b in float32, each sum fused and in feature order like MLAS ([`super::dense`]).
fn gemm_rows(x: &[f32], rows: usize, cols: usize, w: &[f32], targets: usize, b: &[f32], out: &mut Vec<f32>) {
    out.resize(rows * targets, 0.0);
    super::dense::dot_rows(x, rows, cols, w, targets, out);
    for row in out.chunks_mut(targets.max(1)) {
        for (t, v) in row.iter_mut().enumerate() {
            *v += b.get(t).copied().unwrap_or(0.0);
        }
    }
}

enum Labels {
    Ints(Vec<i64>),
    Strings(Vec<String>),
}

impl Labels {
    fn of(node: &NodeProto) -> Labels {
        let s = node.strings("classlabels_strings");
        if !s.is_empty() {
            Labels::Strings(s)
        } else {
            Labels::Ints(node.ints("classlabels_ints").to_vec())
        }
    }

    fn len(&self) -> usize {
        match self {
            Labels::Ints(v) => v.len(),
            Labels::Strings(v) => v.len(),
        }
    }

    /// A label tensor from chosen class indices (or the binary case's fixed pair).
    fn tensor(&self, picks: Vec<LabelPick>) -> Tensor {
        let n = picks.len();
        match self {
            Labels::Ints(v) => Tensor::new(
                vec![n],
                Data::I64(
                    picks
                        .into_iter()
                        .map(|p| match p {
                            LabelPick::Index(i) => v[i],
                            LabelPick::Binary(pos) => {
                                if v.len() == 2 {
                                    v[pos as usize]
                                } else {
                                    pos as i64
                                }
                            }
                        })
                        .collect(),
                ),
            ),
            Labels::Strings(v) => Tensor::new(
                vec![n],
                Data::Str(
                    picks
                        .into_iter()
                        .map(|p| match p {
                            LabelPick::Index(i) => v[i].clone(),
                            LabelPick::Binary(pos) => {
                                if v.len() == 2 {
                                    v[pos as usize].clone()
                                } else {
                                    (pos as u8).to_string()
                                }
                            }
                        })
                        .collect(),
                ),
            ),
        }
    }
}

enum LabelPick {
    Index(usize),
    Binary(bool),
}

struct LinearClassifier {
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    labels: Labels,
    post: post::Transform,
}

impl LinearClassifier {
    fn new(node: &NodeProto) -> R<Self> {
        let coefficients = node.floats("coefficients").to_vec();
        let intercepts = node.floats("intercepts").to_vec();
        if coefficients.is_empty() || intercepts.is_empty() || !coefficients.len().is_multiple_of(intercepts.len()) {
            return Err("LinearClassifier: coefficients do not match intercepts".into());
        }
        let labels = Labels::of(node);
        let post = post::Transform::parse(&node.string("post_transform").unwrap_or_default())?;
        if intercepts.len() == 1 && labels.len() == 2 && post == post::Transform::Probit {
            return Err("LinearClassifier: PROBIT on a single-score binary model".into());
        }
        if intercepts.len() > 1 && labels.len() < intercepts.len() {
            return Err("LinearClassifier: fewer class labels than classes".into());
        }
        Ok(LinearClassifier { coefficients, intercepts, labels, post })
    }
}

impl Kernel for LinearClassifier {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, "LinearClassifier")?;
        let (rows, cols) = rows_cols(x);
        let classes = self.intercepts.len();
        if cols * classes != self.coefficients.len() {
            return Err(format!(
                "LinearClassifier: input has {cols} features, the model {}",
                self.coefficients.len() / classes
            ));
        }
        let xf = to_f32(x)?;
        let mut scores = Vec::new();
        gemm_rows(&xf, rows, cols, &self.coefficients, classes, &self.intercepts, &mut scores);
        let picks: Vec<LabelPick> = if classes == 1 {
            scores.iter().map(|s| LabelPick::Binary(*s > 0.0)).collect()
        } else {
            scores
                .chunks(classes)
                .map(|row| {
                    let mut best = 0;
                    for (j, v) in row.iter().enumerate().skip(1) {
                        if *v > row[best] {
                            best = j;
                        }
                    }
                    LabelPick::Index(best)
                })
                .collect()
        };
        let labels = self.labels.tensor(picks);
        // One score column and two labels: ONNX Runtime writes [1 - s, s] (no sigmoid, even
        // with LOGISTIC); otherwise the post transform applies per row.
        let (width, out) = if classes == 1 && self.labels.len() == 2 {
            (2, post::second_class(&scores, self.post, 1))
        } else {
            let mut s = scores;
            post::batched(&mut s, classes, self.post);
            (classes, s)
        };
        Ok(vec![labels, Tensor::f32(vec![rows, width], out)])
    }
}

struct LinearRegressor {
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    targets: usize,
    post: post::Transform,
}

impl LinearRegressor {
    fn new(node: &NodeProto) -> R<Self> {
        let targets = node.int("targets", 1).max(1) as usize;
        let coefficients = node.floats("coefficients").to_vec();
        if coefficients.is_empty() || !coefficients.len().is_multiple_of(targets) {
            return Err("LinearRegressor: coefficients do not match targets".into());
        }
        Ok(LinearRegressor {
            coefficients,
            intercepts: node.floats("intercepts").to_vec(),
            targets,
            post: post::Transform::parse(&node.string("post_transform").unwrap_or_default())?,
        })
    }
}

impl Kernel for LinearRegressor {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, "LinearRegressor")?;
        let (rows, cols) = rows_cols(x);
        if cols * self.targets != self.coefficients.len() {
            return Err(format!("LinearRegressor: input has {cols} features"));
        }
        let xf = to_f32(x)?;
        let mut out = Vec::new();
        gemm_rows(&xf, rows, cols, &self.coefficients, self.targets, &self.intercepts, &mut out);
        post::batched(&mut out, self.targets, self.post);
        Ok(vec![Tensor::f32(vec![rows, self.targets], out)])
    }
}

struct Scaler {
    offset: Vec<f32>,
    scale: Vec<f32>,
}

impl Kernel for Scaler {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, "Scaler")?;
        let (_, cols) = rows_cols(x);
        let fits = |v: &[f32]| v.len() == 1 || v.len() == cols;
        if !fits(&self.offset) || !fits(&self.scale) {
            return Err(format!(
                "Scaler: offset/scale have {}/{} values for {cols} features",
                self.offset.len(),
                self.scale.len()
            ));
        }
        let xf = to_f32(x)?;
        let pick = |v: &[f32], j: usize| if v.len() == 1 { v[0] } else { v[j] };
        let out = xf
            .iter()
            .enumerate()
            .map(|(i, v)| (v - pick(&self.offset, i % cols)) * pick(&self.scale, i % cols))
            .collect();
        Ok(vec![Tensor::f32(x.shape.clone(), out)])
    }
}

struct Normalizer {
    norm: String,
}

impl Kernel for Normalizer {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, "Normalizer")?;
        let (_, cols) = rows_cols(x);
        let mut v = to_f32(x)?.into_owned();
        for row in v.chunks_mut(cols.max(1)) {
            let d = match self.norm.as_str() {
                "MAX" => row.iter().copied().fold(f32::MIN, f32::max),
                "L1" => row.iter().map(|x| x.abs()).sum(),
                "L2" => row.iter().map(|x| x * x).sum::<f32>().sqrt(),
                other => return Err(format!("Normalizer: norm {other}")),
            };
            for r in row.iter_mut() {
                *r /= d;
            }
        }
        Ok(vec![Tensor::f32(x.shape.clone(), v)])
    }
}

use super::dense::{kernels, Supports, SvmKernel};

struct SvmRegressor {
    kernel: SvmKernel,
    gamma: f32,
    coef0: f32,
    degree: f32,
    /// The support vectors, or in linear (liblinear) mode the coefficients as one vector.
    support: Supports,
    vectors: usize,
    coefficients: Vec<f32>,
    rho: f32,
    one_class: bool,
    post: post::Transform,
}

/// `kernel_type` and `kernel_params` (gamma, coef0, degree) shared by both SVM operators.
fn svm_kernel(node: &NodeProto) -> R<(SvmKernel, f32, f32, f32)> {
    let (gamma, coef0, degree) = match node.floats("kernel_params") {
        [] => (0.0, 0.0, 0.0),
        [g, c, d, ..] => (*g, *c, *d),
        _ => return Err("kernel_params needs 3 values".into()),
    };
    let kernel = match node.string("kernel_type").as_deref().unwrap_or("LINEAR") {
        "LINEAR" => SvmKernel::Linear,
        "POLY" => SvmKernel::Poly,
        "RBF" => SvmKernel::Rbf,
        _ => SvmKernel::Sigmoid,
    };
    Ok((kernel, gamma, coef0, degree))
}

impl SvmRegressor {
    fn new(node: &NodeProto) -> R<Self> {
        let (kernel, gamma, coef0, degree) = svm_kernel(node).map_err(|e| format!("SVMRegressor: {e}"))?;
        let vectors = node.int("n_supports", 0).max(0) as usize;
        let support = node.floats("support_vectors").to_vec();
        let coefficients = node.floats("coefficients").to_vec();
        if vectors > 0 && (!support.len().is_multiple_of(vectors) || coefficients.len() < vectors) {
            return Err("SVMRegressor: support vectors do not match n_supports".into());
        }
        let support = if vectors > 0 { Supports::new(&support, vectors) } else { Supports::new(&coefficients, 1) };
        Ok(SvmRegressor {
            kernel: if vectors == 0 { SvmKernel::Linear } else { kernel },
            gamma,
            coef0,
            degree,
            support,
            vectors,
            coefficients,
            rho: node.floats("rho").first().copied().unwrap_or(0.0),
            one_class: node.int("one_class", 0) != 0,
            post: post::Transform::parse(&node.string("post_transform").unwrap_or_default())?,
        })
    }

    fn params(&self) -> [f32; 3] {
        [self.gamma, self.coef0, self.degree]
    }
}

impl Kernel for SvmRegressor {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, "SVMRegressor")?;
        let (rows, cols) = rows_cols(x);
        if cols != self.support.features {
            return Err(format!("SVMRegressor: input has {cols} features, the model {}", self.support.features));
        }
        let xf = to_f32(x)?;
        let mut out = Vec::with_capacity(rows);
        let mut k = vec![0f32; self.support.vectors];
        for r in 0..rows {
            let xr = &xf[r * cols..(r + 1) * cols];
            if self.vectors > 0 {
                kernels(self.kernel, self.params(), xr, &self.support, 0.0, &mut k);
                let mut s = 0f32;
                for (a, b) in k.iter().zip(&self.coefficients) {
                    s += a * b;
                }
                out.push(s + self.rho);
            } else {
                kernels(SvmKernel::Linear, self.params(), xr, &self.support, self.rho, &mut k);
                out.push(k[0]);
            }
        }
        if self.one_class {
            for v in out.iter_mut() {
                *v = if *v > 0.0 { 1.0 } else { -1.0 };
            }
        }
        post::batched(&mut out, 1, self.post);
        Ok(vec![Tensor::f32(vec![rows, 1], out)])
    }
}

struct OneHot {
    ints: HashMap<i64, usize>,
    strings: HashMap<String, usize>,
    count: usize,
    zeros: bool,
}

impl OneHot {
    fn new(node: &NodeProto) -> R<Self> {
        let ints: HashMap<i64, usize> = node.ints("cats_int64s").iter().enumerate().map(|(i, v)| (*v, i)).collect();
        let strings: HashMap<String, usize> =
            node.strings("cats_strings").into_iter().enumerate().map(|(i, v)| (v, i)).collect();
        let count = node.ints("cats_int64s").len().max(node.strings("cats_strings").len());
        if count == 0 {
            return Err("OneHotEncoder without categories".into());
        }
        Ok(OneHot { ints, strings, count, zeros: node.int("zeros", 1) != 0 })
    }
}

impl Kernel for OneHot {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, "OneHotEncoder")?;
        let n = x.len();
        let mut out = vec![0f32; super::tensor::check_elements(n.checked_mul(self.count), "a OneHotEncoder result")?];
        let mut set = |i: usize, hit: Option<&usize>| -> R<()> {
            match hit {
                Some(c) => out[i * self.count + c] = 1.0,
                None if !self.zeros => return Err("OneHotEncoder: unknown category (zeros = 0)".into()),
                None => {}
            }
            Ok(())
        };
        match &x.data {
            Data::Str(v) => {
                for (i, s) in v.iter().enumerate() {
                    set(i, self.strings.get(s))?;
                }
            }
            Data::I64(v) => {
                for (i, s) in v.iter().enumerate() {
                    set(i, self.ints.get(s))?;
                }
            }
            // Floats are truncated to int64 before the lookup, as in ONNX Runtime.
            Data::F32(v) => {
                for (i, s) in v.iter().enumerate() {
                    set(i, self.ints.get(&super::ops::f64_to_i64(*s as f64)))?;
                }
            }
            Data::F64(v) => {
                for (i, s) in v.iter().enumerate() {
                    set(i, self.ints.get(&super::ops::f64_to_i64(*s)))?;
                }
            }
            Data::Bool(_) => return Err("OneHotEncoder on bool".into()),
        }
        let mut shape = x.shape.clone();
        shape.push(self.count);
        Ok(vec![Tensor::f32(shape, out)])
    }
}

/// Keys and values of a LabelEncoder, whichever attribute form (opset 1, 2 or 4) carries them.
#[derive(Clone)]
enum Column {
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Strings(Vec<String>),
}

fn column_of(node: &NodeProto, prefix: &str) -> Option<Column> {
    if let Some(t) = node.tensor(&format!("{prefix}_tensor")) {
        return tensor_column(t);
    }
    let ints = node.ints(&format!("{prefix}_int64s"));
    if !ints.is_empty() {
        return Some(Column::Ints(ints.to_vec()));
    }
    let floats = node.floats(&format!("{prefix}_floats"));
    if !floats.is_empty() {
        return Some(Column::Floats(floats.to_vec()));
    }
    let strings = node.strings(&format!("{prefix}_strings"));
    (!strings.is_empty()).then_some(Column::Strings(strings))
}

fn tensor_column(t: &TensorProto) -> Option<Column> {
    use super::proto::dtype;
    match t.data_type {
        dtype::STRING => t.to_strings().map(Column::Strings),
        dtype::FLOAT | dtype::DOUBLE => t.to_f32().map(Column::Floats),
        _ => t.to_i64().map(Column::Ints),
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    Float(u32),
    Str(String),
}

struct LabelEncoder {
    map: HashMap<Key, usize>,
    values: Column,
    default: Column,
}

impl LabelEncoder {
    fn new(node: &NodeProto) -> R<Self> {
        // Opset 1's classes_strings form is left to ONNX Runtime.
        let (Some(keys), Some(values)) = (column_of(node, "keys"), column_of(node, "values")) else {
            return Err("LabelEncoder without keys and values (opset 1's classes_strings)".into());
        };
        let map: HashMap<Key, usize> = match &keys {
            Column::Ints(v) => v.iter().enumerate().map(|(i, k)| (Key::Int(*k), i)).collect(),
            Column::Floats(v) => v.iter().enumerate().map(|(i, k)| (Key::Float(float_key(*k)), i)).collect(),
            Column::Strings(v) => v.iter().enumerate().map(|(i, k)| (Key::Str(k.clone()), i)).collect(),
        };
        let len = |c: &Column| match c {
            Column::Ints(v) => v.len(),
            Column::Floats(v) => v.len(),
            Column::Strings(v) => v.len(),
        };
        if len(&keys) != len(&values) {
            return Err(format!("LabelEncoder: {} keys and {} values", len(&keys), len(&values)));
        }
        let default = if let Some(t) = node.tensor("default_tensor") {
            tensor_column(t).ok_or("LabelEncoder: default_tensor of an unsupported type")?
        } else {
            match &values {
                Column::Ints(_) => Column::Ints(vec![node.int("default_int64", -1)]),
                Column::Floats(_) => Column::Floats(vec![node.float("default_float", -0.0)]),
                Column::Strings(_) => {
                    Column::Strings(vec![node.string("default_string").unwrap_or_else(|| "_Unused".into())])
                }
            }
        };
        if len(&default) != 1 {
            return Err("LabelEncoder: the default must be one value".into());
        }
        Ok(LabelEncoder { map, values, default })
    }
}

/// Float keys compare by value: NaN keys match NaN, and 0.0 matches -0.0.
fn float_key(x: f32) -> u32 {
    if x.is_nan() {
        f32::NAN.to_bits()
    } else if x == 0.0 {
        0
    } else {
        x.to_bits()
    }
}

impl Kernel for LabelEncoder {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, "LabelEncoder")?;
        let keys: Vec<Option<usize>> = match &x.data {
            Data::I64(v) => v.iter().map(|k| self.map.get(&Key::Int(*k)).copied()).collect(),
            Data::F32(v) => v.iter().map(|k| self.map.get(&Key::Float(float_key(*k))).copied()).collect(),
            Data::F64(v) => v.iter().map(|k| self.map.get(&Key::Float(float_key(*k as f32))).copied()).collect(),
            Data::Str(v) => v.iter().map(|k| self.map.get(&Key::Str(k.clone())).copied()).collect(),
            Data::Bool(_) => return Err("LabelEncoder on bool".into()),
        };
        let data = match (&self.values, &self.default) {
            (Column::Ints(v), Column::Ints(d)) => Data::I64(keys.iter().map(|k| k.map_or(d[0], |i| v[i])).collect()),
            (Column::Floats(v), Column::Floats(d)) => {
                Data::F32(keys.iter().map(|k| k.map_or(d[0], |i| v[i])).collect())
            }
            (Column::Strings(v), Column::Strings(d)) => {
                Data::Str(keys.iter().map(|k| k.map_or_else(|| d[0].clone(), |i| v[i].clone())).collect())
            }
            _ => return Err("LabelEncoder: default of another type than the values".into()),
        };
        Ok(vec![Tensor::new(x.shape.clone(), data)])
    }
}

struct ArrayFeatureExtractor;

impl Kernel for ArrayFeatureExtractor {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, "ArrayFeatureExtractor")?;
        let Some(Data::I64(idx)) = inputs.get(1).map(|t| &t.data) else {
            return Err("ArrayFeatureExtractor: indices must be int64".into());
        };
        let last = *x.shape.last().ok_or("ArrayFeatureExtractor on a scalar")?;
        if let Some(bad) = idx.iter().find(|i| **i < 0 || **i as usize >= last) {
            return Err(format!("ArrayFeatureExtractor: index {bad} out of range for {last} columns"));
        }
        let outer = x.len() / last.max(1);
        let pick = |i: usize, j: i64| i * last + j as usize;
        let data = match &x.data {
            Data::F32(v) => Data::F32((0..outer).flat_map(|i| idx.iter().map(move |j| v[pick(i, *j)])).collect()),
            Data::F64(v) => Data::F64((0..outer).flat_map(|i| idx.iter().map(move |j| v[pick(i, *j)])).collect()),
            Data::I64(v) => Data::I64((0..outer).flat_map(|i| idx.iter().map(move |j| v[pick(i, *j)])).collect()),
            Data::Str(v) => {
                Data::Str((0..outer).flat_map(|i| idx.iter().map(move |j| v[pick(i, *j)].clone())).collect())
            }
            Data::Bool(v) => Data::Bool((0..outer).flat_map(|i| idx.iter().map(move |j| v[pick(i, *j)])).collect()),
        };
        let mut shape = x.shape.clone();
        if let Some(l) = shape.last_mut() {
            *l = idx.len();
        }
        if shape.len() == 1 {
            shape = vec![1, idx.len()];
        }
        Ok(vec![Tensor::new(shape, data)])
    }
}

struct Imputer {
    floats: Vec<f32>,
    replaced_float: f32,
    ints: Vec<i64>,
    replaced_int: i64,
}

impl Imputer {
    fn new(node: &NodeProto) -> R<Self> {
        let floats = node.floats("imputed_value_floats").to_vec();
        let ints = node.ints("imputed_value_int64s").to_vec();
        if floats.is_empty() && ints.is_empty() {
            return Err("Imputer without imputed values".into());
        }
        Ok(Imputer {
            floats,
            replaced_float: node.float("replaced_value_float", 0.0),
            ints,
            replaced_int: node.int("replaced_value_int64", 0),
        })
    }
}

impl Kernel for Imputer {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, "Imputer")?;
        let (_, cols) = rows_cols(x);
        let data = match &x.data {
            Data::F32(_) | Data::F64(_) => {
                if self.floats.len() != 1 && self.floats.len() != cols {
                    return Err(format!("Imputer: {} values for {cols} features", self.floats.len()));
                }
                let v = to_f32(x)?;
                let nan = self.replaced_float.is_nan();
                Data::F32(
                    v.iter()
                        .enumerate()
                        .map(|(i, x)| {
                            let hit = if nan { x.is_nan() } else { *x == self.replaced_float };
                            if hit {
                                self.floats[if self.floats.len() == 1 { 0 } else { i % cols }]
                            } else {
                                *x
                            }
                        })
                        .collect(),
                )
            }
            Data::I64(v) => {
                if self.ints.len() != 1 && self.ints.len() != cols {
                    return Err(format!("Imputer: {} values for {cols} features", self.ints.len()));
                }
                Data::I64(
                    v.iter()
                        .enumerate()
                        .map(|(i, x)| {
                            if *x == self.replaced_int {
                                self.ints[if self.ints.len() == 1 { 0 } else { i % cols }]
                            } else {
                                *x
                            }
                        })
                        .collect(),
                )
            }
            d => return Err(format!("Imputer on {}", d.type_name())),
        };
        Ok(vec![Tensor::new(x.shape.clone(), data)])
    }
}

struct Binarizer {
    threshold: f32,
}

impl Kernel for Binarizer {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, "Binarizer")?;
        // ONNX Runtime refuses NaN here rather than binarizing it.
        let nan = match &x.data {
            Data::F32(v) => v.iter().position(|x| x.is_nan()),
            Data::F64(v) => v.iter().position(|x| x.is_nan()),
            _ => None,
        };
        if let Some(i) = nan {
            return Err(format!("Binarizer: input value {i} is NaN"));
        }
        let data = match &x.data {
            Data::F32(v) => Data::F32(v.iter().map(|x| if *x > self.threshold { 1.0 } else { 0.0 }).collect()),
            Data::F64(v) => Data::F64(v.iter().map(|x| if *x > self.threshold as f64 { 1.0 } else { 0.0 }).collect()),
            Data::I64(v) => Data::I64(v.iter().map(|x| if (*x as f32) > self.threshold { 1 } else { 0 }).collect()),
            d => return Err(format!("Binarizer on {}", d.type_name())),
        };
        Ok(vec![Tensor::new(x.shape.clone(), data)])
    }
}

struct FeatureVectorizer {
    dims: Vec<usize>,
}

impl Kernel for FeatureVectorizer {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let rows = inputs.first().map(|t| rows_cols(t).0).ok_or("FeatureVectorizer: no input")?;
        if self.dims.len() != inputs.len() || inputs.iter().any(|t| rows_cols(t).0 != rows) {
            return Err(format!(
                "FeatureVectorizer: {} inputdimensions for {} inputs of {rows} rows",
                self.dims.len(),
                inputs.len()
            ));
        }
        let widths: Vec<usize> = inputs.iter().map(|t| rows_cols(t).1).collect();
        let total: usize = self.dims.iter().sum();
        let mut out = vec![0f32; super::tensor::check_elements(rows.checked_mul(total), "a FeatureVectorizer result")?];
        let mut offset = 0;
        for (i, t) in inputs.iter().enumerate() {
            let v = to_f32(t)?;
            let w = widths[i];
            let d = self.dims[i];
            for r in 0..rows {
                for c in 0..d.min(w) {
                    out[r * total + offset + c] = v[r * w + c];
                }
            }
            offset += d;
        }
        Ok(vec![Tensor::f32(vec![rows, total], out)])
    }
}

/// SVMClassifier as ONNX Runtime computes it: one-vs-one votes over pairs of classes (libsvm
/// mode) or one score per class (liblinear mode), optional Platt probabilities, and its rules
/// for the binary label and the second score column.
struct SvmClassifier {
    kernel: SvmKernel,
    gamma: f32,
    coef0: f32,
    degree: f32,
    vectors_per_class: Vec<usize>,
    starts: Vec<usize>,
    vectors: usize,
    /// The support vectors, or in linear (liblinear) mode one coefficient row per class.
    support: Supports,
    coefficients: Vec<f32>,
    rho: Vec<f32>,
    prob_a: Vec<f32>,
    prob_b: Vec<f32>,
    labels: Labels,
    classes: usize,
    all_positive: bool,
    post: post::Transform,
}

impl SvmClassifier {
    fn new(node: &NodeProto) -> R<Self> {
        let (kernel, gamma, coef0, degree) = svm_kernel(node).map_err(|e| format!("SVMClassifier: {e}"))?;
        let vectors_per_class: Vec<usize> =
            node.ints("vectors_per_class").iter().map(|v| (*v).max(0) as usize).collect();
        let mut starts = Vec::new();
        let mut vectors = 0;
        for v in &vectors_per_class {
            starts.push(vectors);
            vectors += v;
        }
        let labels = Labels::of(node);
        let classes = labels.len();
        let coefficients = node.floats("coefficients").to_vec();
        let rho = node.floats("rho").to_vec();
        let (prob_a, prob_b) = (node.floats("prob_a").to_vec(), node.floats("prob_b").to_vec());
        let pairs = classes * classes.saturating_sub(1) / 2;
        let support = node.floats("support_vectors").to_vec();
        let bad = |why: &str| Err(format!("SVMClassifier: {why}"));
        if classes < 2 || coefficients.is_empty() || prob_a.len() != prob_b.len() {
            return bad("needs two or more classes, coefficients, and as many prob_a as prob_b");
        }
        if vectors > 0 {
            if vectors_per_class.len() != classes
                || !support.len().is_multiple_of(vectors)
                || coefficients.len() < (classes - 1) * vectors
                || rho.len() < pairs
                || (!prob_a.is_empty() && prob_a.len() < pairs)
            {
                return bad("vectors_per_class, support vectors, coefficients or rho do not fit the classes");
            }
        } else if !coefficients.len().is_multiple_of(classes) || rho.is_empty() {
            return bad("coefficients do not fit the classes");
        }
        Ok(SvmClassifier {
            kernel: if vectors == 0 { SvmKernel::Linear } else { kernel },
            gamma,
            coef0,
            degree,
            vectors_per_class,
            starts,
            vectors,
            all_positive: coefficients.iter().all(|c| *c >= 0.0),
            support: if vectors > 0 { Supports::new(&support, vectors) } else { Supports::new(&coefficients, classes) },
            coefficients,
            rho,
            prob_a,
            prob_b,
            labels,
            classes,
            post: post::Transform::parse(&node.string("post_transform").unwrap_or_default())?,
        })
    }
}

/// libsvm's pairwise-coupling probabilities (Wu, Lin and Weng), in float as ONNX Runtime does.
fn multiclass_probability(k: usize, r: &[f32], p: &mut [f32]) {
    let mut q = vec![0f32; k * k];
    let mut qp = vec![0f32; k];
    let eps = 0.005f32 / k as f32;
    for i in 0..k {
        p[i] = 1.0 / k as f32;
        for j in 0..i {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = q[j * k + i];
        }
        for j in i + 1..k {
            q[i * k + i] += r[j * k + i] * r[j * k + i];
            q[i * k + j] = -r[j * k + i] * r[i * k + j];
        }
    }
    for _ in 0..100 {
        let mut pqp = 0f32;
        for i in 0..k {
            qp[i] = 0.0;
            for j in 0..k {
                qp[i] += q[i * k + j] * p[j];
            }
            pqp += p[i] * qp[i];
        }
        let mut max_error = 0f32;
        for v in &qp {
            let e = (v - pqp).abs();
            if e > max_error {
                max_error = e;
            }
        }
        if max_error < eps {
            break;
        }
        for i in 0..k {
            let diff = (-qp[i] + pqp) / q[i * k + i];
            p[i] += diff;
            pqp = (pqp + diff * (diff * q[i * k + i] + 2.0 * qp[i])) / (1.0 + diff) / (1.0 + diff);
            for j in 0..k {
                qp[j] = (qp[j] + diff * q[i * k + j]) / (1.0 + diff);
                p[j] /= 1.0 + diff;
            }
        }
    }
}

/// First index of the maximum, as `std::max_element` picks it.
fn first_max<T: PartialOrd + Copy>(v: &[T]) -> usize {
    let mut best = 0;
    for (i, x) in v.iter().enumerate().skip(1) {
        if *x > v[best] {
            best = i;
        }
    }
    best
}

impl Kernel for SvmClassifier {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, "SVMClassifier")?;
        let (rows, cols) = rows_cols(x);
        let xf = to_f32(x)?;
        let k = self.classes;
        let pairs = k * (k - 1) / 2;
        let have_proba = !self.prob_a.is_empty();
        let svc = self.vectors > 0;
        if cols != self.support.features {
            return Err(format!("SVMClassifier: input has {cols} features, the model {}", self.support.features));
        }
        let width = if svc && !have_proba {
            if k > 2 {
                pairs
            } else {
                2
            }
        } else {
            k
        };
        let (per_row, second): (usize, i8) = if svc && !have_proba {
            (
                pairs,
                if k <= 2 {
                    if self.post == post::Transform::None {
                        2
                    } else {
                        0
                    }
                } else {
                    -1
                },
            )
        } else {
            (k, -1)
        };
        let mut out = vec![0f32; rows * width];
        let mut picks = Vec::with_capacity(rows);
        let mut kernel_values = vec![0f32; self.support.vectors];
        let mut votes = vec![0i64; k];
        let mut pair_scores = vec![0f32; pairs];
        let mut probs2 = vec![0f32; k * k];
        for r in 0..rows {
            let xr = &xf[r * cols..(r + 1) * cols];
            let cur = &mut out[r * width..(r + 1) * width];
            let (max_weight, maxclass) = if svc {
                kernels(self.kernel, [self.gamma, self.coef0, self.degree], xr, &self.support, 0.0, &mut kernel_values);
                votes.iter_mut().for_each(|v| *v = 0);
                let mut idx = 0;
                for i in 0..k - 1 {
                    let (si, ni) = (self.starts[i], self.vectors_per_class[i]);
                    for j in i + 1..k {
                        let (sj, nj) = (self.starts[j], self.vectors_per_class[j]);
                        let mut sum = 0f64;
                        let row_j = self.vectors * (j - 1);
                        for m in 0..ni {
                            sum += (self.coefficients[row_j + si + m] * kernel_values[si + m]) as f64;
                        }
                        let row_i = self.vectors * i;
                        for m in 0..nj {
                            sum += (self.coefficients[row_i + sj + m] * kernel_values[sj + m]) as f64;
                        }
                        sum += self.rho[idx] as f64;
                        pair_scores[idx] = sum as f32;
                        votes[if sum > 0.0 { i } else { j }] += 1;
                        idx += 1;
                    }
                }
                if have_proba {
                    probs2.iter_mut().for_each(|v| *v = 0.0);
                    let mut index = 0;
                    for i in 0..k - 1 {
                        let mut p2 = (i + 1) * k + i;
                        for p1 in i * k + i + 1..i * k + k {
                            let v1 = 1.0 - post::logistic(pair_scores[index] * self.prob_a[index] + self.prob_b[index]);
                            // std::max/std::min: a NaN passes through (Rust's max/min would drop it).
                            let v2 = if v1 < 1.0e-7 { 1.0e-7 } else { v1 };
                            let v2 = if 1.0 - 1.0e-7 < v2 { 1.0 - 1.0e-7 } else { v2 };
                            probs2[p1] = v2;
                            probs2[p2] = 1.0 - v2;
                            p2 += k;
                            index += 1;
                        }
                    }
                    multiclass_probability(k, &probs2, cur);
                } else {
                    cur[..pairs].copy_from_slice(&pair_scores);
                }
                (0f32, first_max(&votes))
            } else {
                kernels(SvmKernel::Linear, [0.0; 3], xr, &self.support, self.rho[0], &mut kernel_values);
                cur[..k].copy_from_slice(&kernel_values[..k]);
                let m = first_max(&cur[..k]);
                (cur[m], m)
            };
            picks.push(if pairs == 1 {
                // ONNX Runtime's ChooseClass for two labels.
                let positive = if self.all_positive { max_weight >= 0.5 } else { max_weight > 0.0 };
                if !have_proba && positive {
                    LabelPick::Index(1)
                } else {
                    LabelPick::Index(maxclass)
                }
            } else {
                LabelPick::Index(maxclass)
            });
            if per_row > 1 {
                post::batched(&mut cur[..per_row], per_row, self.post);
            } else if self.post == post::Transform::Probit {
                cur[0] = post::probit(cur[0]);
            } else if second >= 0 {
                let s = cur[0];
                cur.copy_from_slice(&post::second_class(&[s], self.post, second as u8));
            }
        }
        Ok(vec![self.labels.tensor(picks), Tensor::f32(vec![rows, width], out)])
    }
}
