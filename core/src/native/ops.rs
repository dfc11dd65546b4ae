//! The standard ONNX operators converters put around ML operators: casts, reshapes, column
//! selection, elementwise arithmetic with NumPy broadcasting, comparisons, reductions over the
//! class axis. Each follows ONNX Runtime's CPU kernel for the types our graphs use.

use super::proto::{dtype, NodeProto};
use super::tensor::{Data, Tensor};
use super::Kernel;

type R<T> = Result<T, String>;

/// Compiles one standard-domain node, or says why it cannot be.
pub fn compile(node: &NodeProto, opset: i64) -> R<Box<dyn Kernel>> {
    let op = node.op_type.as_str();
    Ok(match op {
        "Identity" => Box::new(Identity),
        "Cast" => Box::new(Cast { to: node.int("to", 0) as i32 }),
        "Reshape" => Box::new(Reshape { allowzero: node.int("allowzero", 0) != 0 }),
        "Flatten" => Box::new(Flatten { axis: node.int("axis", 1) }),
        "Squeeze" => Box::new(Squeeze { axes: node.ints("axes").to_vec() }),
        "Unsqueeze" => Box::new(Unsqueeze { axes: node.ints("axes").to_vec() }),
        "Concat" => Box::new(Concat { axis: node.int("axis", 1) }),
        "Gather" => Box::new(Gather { axis: node.int("axis", 0) }),
        "Neg" | "Abs" | "Log" | "Exp" | "Sqrt" | "Reciprocal" | "Sigmoid" | "Floor" | "Ceil" | "Sign" | "Relu"
        | "Tanh" | "Not" | "IsNaN" | "Erf" => Box::new(Unary(unary_of(op))),
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual"
        | "And" | "Or" | "Xor" | "Max" | "Min" | "Sum" | "Mean" => {
            if opset < 7 && node.attr("broadcast").is_some() {
                return Err(format!("{op} with the legacy 'broadcast' attribute (opset {opset})"));
            }
            Box::new(Nary(binary_of(op)))
        }
        "Where" => Box::new(Where),
        "Softmax" => {
            let default = if opset >= 13 { -1 } else { 1 };
            Box::new(Softmax { axis: node.int("axis", default), legacy: opset < 13 })
        }
        "ArgMax" | "ArgMin" => {
            if node.int("select_last_index", 0) != 0 {
                return Err(format!("{op} with select_last_index"));
            }
            Box::new(ArgExt { max: op == "ArgMax", axis: node.int("axis", 0), keepdims: node.int("keepdims", 1) != 0 })
        }
        "MatMul" => Box::new(Gemm { alpha: 1.0, beta: 1.0, trans_a: false, trans_b: false, matmul: true }),
        "Gemm" => Box::new(Gemm {
            alpha: node.float("alpha", 1.0),
            beta: node.float("beta", 1.0),
            trans_a: node.int("transA", 0) != 0,
            trans_b: node.int("transB", 0) != 0,
            matmul: false,
        }),
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" => Box::new(Reduce {
            op: op.to_string(),
            axes: node.ints("axes").to_vec(),
            keepdims: node.int("keepdims", 1) != 0,
            noop_with_empty_axes: node.int("noop_with_empty_axes", 0) != 0,
        }),
        "Clip" => Box::new(Clip { min: node.attr("min").map(|a| a.f), max: node.attr("max").map(|a| a.f) }),
        _ => return Err(String::new()),
    })
}

/// A Constant node's value, folded at compile time.
pub fn constant(node: &NodeProto) -> R<Tensor> {
    if let Some(t) = node.tensor("value") {
        return super::plan::tensor_from_proto(t);
    }
    if let Some(a) = node.attr("value_float") {
        return Ok(Tensor::f32(vec![], vec![a.f]));
    }
    if let Some(a) = node.attr("value_floats") {
        return Ok(Tensor::f32(vec![a.floats.len()], a.floats.clone()));
    }
    if let Some(a) = node.attr("value_int") {
        return Ok(Tensor::i64(vec![], vec![a.i]));
    }
    if let Some(a) = node.attr("value_ints") {
        return Ok(Tensor::i64(vec![a.ints.len()], a.ints.clone()));
    }
    Err("Constant without a supported value".into())
}

fn arg<'a>(inputs: &[&'a Tensor], i: usize, op: &str) -> R<&'a Tensor> {
    inputs.get(i).copied().ok_or_else(|| format!("{op}: input {i} is missing"))
}

struct Identity;
impl Kernel for Identity {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        Ok(vec![arg(inputs, 0, "Identity")?.clone()])
    }
}

/// Float to integer as ONNX Runtime does on x86-64 (cvttss2si): truncation, and the "integer
/// indefinite" value for NaN and out-of-range inputs.
pub(crate) fn f64_to_i64(x: f64) -> i64 {
    if x.is_nan() || !(i64::MIN as f64..i64::MAX as f64).contains(&x) {
        i64::MIN
    } else {
        x as i64
    }
}

struct Cast {
    to: i32,
}
impl Kernel for Cast {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, 0, "Cast")?;
        let data = match (&x.data, self.to) {
            (Data::F32(v), dtype::FLOAT) => Data::F32(v.clone()),
            (Data::F64(v), dtype::FLOAT) => Data::F32(v.iter().map(|x| *x as f32).collect()),
            (Data::I64(v), dtype::FLOAT) => Data::F32(v.iter().map(|x| *x as f32).collect()),
            (Data::Bool(v), dtype::FLOAT) => Data::F32(v.iter().map(|x| *x as u8 as f32).collect()),
            (Data::F32(v), dtype::DOUBLE) => Data::F64(v.iter().map(|x| *x as f64).collect()),
            (Data::F64(v), dtype::DOUBLE) => Data::F64(v.clone()),
            (Data::I64(v), dtype::DOUBLE) => Data::F64(v.iter().map(|x| *x as f64).collect()),
            (Data::Bool(v), dtype::DOUBLE) => Data::F64(v.iter().map(|x| *x as u8 as f64).collect()),
            (Data::F32(v), dtype::INT64) => Data::I64(v.iter().map(|x| f64_to_i64(*x as f64)).collect()),
            (Data::F64(v), dtype::INT64) => Data::I64(v.iter().map(|x| f64_to_i64(*x)).collect()),
            (Data::I64(v), dtype::INT64) => Data::I64(v.clone()),
            (Data::Bool(v), dtype::INT64 | dtype::INT32) => Data::I64(v.iter().map(|x| *x as i64).collect()),
            (Data::F32(v), dtype::INT32) => Data::I64(v.iter().map(|x| f64_to_i32(*x as f64)).collect()),
            (Data::F64(v), dtype::INT32) => Data::I64(v.iter().map(|x| f64_to_i32(*x)).collect()),
            (Data::I64(v), dtype::INT32) => Data::I64(v.iter().map(|x| *x as i32 as i64).collect()),
            (Data::F32(v), dtype::BOOL) => Data::Bool(v.iter().map(|x| *x != 0.0).collect()),
            (Data::F64(v), dtype::BOOL) => Data::Bool(v.iter().map(|x| *x != 0.0).collect()),
            (Data::I64(v), dtype::BOOL) => Data::Bool(v.iter().map(|x| *x != 0).collect()),
            (Data::Bool(v), dtype::BOOL) => Data::Bool(v.clone()),
            (Data::Str(v), dtype::STRING) => Data::Str(v.clone()),
            (d, to) => return Err(format!("Cast from {} to data type {to}", d.type_name())),
        };
        Ok(vec![Tensor::new(x.shape.clone(), data)])
    }
}

fn f64_to_i32(x: f64) -> i64 {
    if x.is_nan() || !(-2_147_483_648.0..2_147_483_648.0).contains(&x) {
        i32::MIN as i64
    } else {
        x as i32 as i64
    }
}

fn shape_values(t: &Tensor) -> R<Vec<i64>> {
    match &t.data {
        Data::I64(v) => Ok(v.clone()),
        d => Err(format!("a shape must be int64, not {}", d.type_name())),
    }
}

struct Reshape {
    allowzero: bool,
}
impl Kernel for Reshape {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, 0, "Reshape")?;
        let spec = shape_values(arg(inputs, 1, "Reshape")?)?;
        let mut shape = Vec::with_capacity(spec.len());
        let mut infer = None;
        for (i, &d) in spec.iter().enumerate() {
            match d {
                -1 if infer.is_none() => {
                    infer = Some(i);
                    shape.push(1);
                }
                0 if !self.allowzero => shape.push(*x.shape.get(i).ok_or("Reshape: 0 beyond the input's rank")?),
                d if d >= 0 => shape.push(d as usize),
                d => return Err(format!("Reshape: invalid dimension {d}")),
            }
        }
        let known: usize = shape.iter().product();
        if let Some(i) = infer {
            if known == 0 || x.len() % known != 0 {
                return Err(format!("Reshape: {} values do not fit {spec:?}", x.len()));
            }
            shape[i] = x.len() / known;
        } else if known != x.len() {
            return Err(format!("Reshape: {} values do not fit {spec:?}", x.len()));
        }
        Ok(vec![Tensor::new(shape, x.data.clone())])
    }
}

/// An axis in [-rank, rank) as an index.
fn norm_axis(axis: i64, rank: usize) -> R<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a as usize >= rank {
        return Err(format!("axis {axis} out of range for rank {rank}"));
    }
    Ok(a as usize)
}

struct Flatten {
    axis: i64,
}
impl Kernel for Flatten {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, 0, "Flatten")?;
        // Flatten also takes axis = rank (everything in the outer dimension).
        let rank = x.shape.len();
        let a = if self.axis == rank as i64 { rank } else { norm_axis(self.axis, rank)? };
        let outer: usize = x.shape[..a].iter().product();
        let inner: usize = x.shape[a..].iter().product();
        Ok(vec![Tensor::new(vec![outer, inner], x.data.clone())])
    }
}

struct Squeeze {
    axes: Vec<i64>,
}
impl Kernel for Squeeze {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, 0, "Squeeze")?;
        let axes = match inputs.get(1) {
            Some(t) => shape_values(t)?,
            None => self.axes.clone(),
        };
        let rank = x.shape.len();
        let drop: Vec<usize> = if axes.is_empty() {
            (0..rank).filter(|i| x.shape[*i] == 1).collect()
        } else {
            axes.iter().map(|a| norm_axis(*a, rank)).collect::<R<_>>()?
        };
        if let Some(a) = drop.iter().find(|a| x.shape[**a] != 1) {
            return Err(format!("Squeeze: axis {a} has size {}, not 1", x.shape[*a]));
        }
        let shape = x.shape.iter().enumerate().filter(|(i, _)| !drop.contains(i)).map(|(_, d)| *d).collect();
        Ok(vec![Tensor::new(shape, x.data.clone())])
    }
}

struct Unsqueeze {
    axes: Vec<i64>,
}
impl Kernel for Unsqueeze {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, 0, "Unsqueeze")?;
        let axes = match inputs.get(1) {
            Some(t) => shape_values(t)?,
            None => self.axes.clone(),
        };
        let out_rank = x.shape.len() + axes.len();
        let mut ins: Vec<usize> =
            axes.iter().map(|a| if *a < 0 { (*a + out_rank as i64) as usize } else { *a as usize }).collect();
        ins.sort_unstable();
        let mut shape = x.shape.clone();
        for a in ins {
            if a > shape.len() {
                return Err(format!("Unsqueeze: axis {a} out of range"));
            }
            shape.insert(a, 1);
        }
        Ok(vec![Tensor::new(shape, x.data.clone())])
    }
}

/// Copies `count` values starting at `from` of `src` onto the end of `dst` (same variant).
fn extend_from(dst: &mut Data, src: &Data, from: usize, count: usize) -> R<()> {
    match (dst, src) {
        (Data::F32(d), Data::F32(s)) => d.extend_from_slice(&s[from..from + count]),
        (Data::F64(d), Data::F64(s)) => d.extend_from_slice(&s[from..from + count]),
        (Data::I64(d), Data::I64(s)) => d.extend_from_slice(&s[from..from + count]),
        (Data::Bool(d), Data::Bool(s)) => d.extend_from_slice(&s[from..from + count]),
        (Data::Str(d), Data::Str(s)) => d.extend_from_slice(&s[from..from + count]),
        (d, s) => return Err(format!("mixed types {} and {}", d.type_name(), s.type_name())),
    }
    Ok(())
}

fn empty_like(d: &Data, cap: usize) -> Data {
    match d {
        Data::F32(_) => Data::F32(Vec::with_capacity(cap)),
        Data::F64(_) => Data::F64(Vec::with_capacity(cap)),
        Data::I64(_) => Data::I64(Vec::with_capacity(cap)),
        Data::Bool(_) => Data::Bool(Vec::with_capacity(cap)),
        Data::Str(_) => Data::Str(Vec::with_capacity(cap)),
    }
}

struct Concat {
    axis: i64,
}
impl Kernel for Concat {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let first = arg(inputs, 0, "Concat")?;
        let rank = first.shape.len();
        let a = norm_axis(self.axis, rank)?;
        let outer: usize = first.shape[..a].iter().product();
        for t in inputs {
            if t.shape.len() != rank || t.shape[..a] != first.shape[..a] || t.shape[a + 1..] != first.shape[a + 1..] {
                return Err(format!("Concat: shapes {:?} and {:?} do not fit on axis {a}", first.shape, t.shape));
            }
        }
        let total = super::tensor::check_elements(
            inputs.iter().try_fold(0usize, |a, t| a.checked_add(t.len())),
            "a Concat result",
        )?;
        let mut data = empty_like(&first.data, total);
        let blocks: Vec<usize> = inputs.iter().map(|t| t.shape[a..].iter().product()).collect();
        for o in 0..outer {
            for (t, b) in inputs.iter().zip(&blocks) {
                extend_from(&mut data, &t.data, o * b, *b)?;
            }
        }
        let mut shape = first.shape.clone();
        shape[a] = inputs.iter().map(|t| t.shape[a]).sum();
        Ok(vec![Tensor::new(shape, data)])
    }
}

struct Gather {
    axis: i64,
}
impl Kernel for Gather {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, 0, "Gather")?;
        let idx = shape_values(arg(inputs, 1, "Gather")?)?;
        let idx_shape = &inputs[1].shape;
        let rank = x.shape.len();
        let a = norm_axis(self.axis, rank)?;
        let dim = x.shape[a];
        let outer: usize = x.shape[..a].iter().product();
        let inner: usize = x.shape[a + 1..].iter().product();
        let idx: Vec<usize> = idx
            .iter()
            .map(|i| {
                let j = if *i < 0 { *i + dim as i64 } else { *i };
                if j < 0 || j as usize >= dim {
                    Err(format!("Gather: index {i} out of range for dimension {dim}"))
                } else {
                    Ok(j as usize)
                }
            })
            .collect::<R<_>>()?;
        let total = outer.checked_mul(idx.len()).and_then(|v| v.checked_mul(inner));
        let mut data = empty_like(&x.data, super::tensor::check_elements(total, "a Gather result")?);
        for o in 0..outer {
            for &j in &idx {
                extend_from(&mut data, &x.data, (o * dim + j) * inner, inner)?;
            }
        }
        let mut shape: Vec<usize> = x.shape[..a].to_vec();
        shape.extend_from_slice(idx_shape);
        shape.extend_from_slice(&x.shape[a + 1..]);
        Ok(vec![Tensor::new(shape, data)])
    }
}

#[derive(Clone, Copy)]
enum UnaryOp {
    Neg,
    Abs,
    Log,
    Exp,
    Sqrt,
    Reciprocal,
    Sigmoid,
    Floor,
    Ceil,
    Sign,
    Relu,
    Tanh,
    Not,
    IsNaN,
    Erf,
}

fn unary_of(op: &str) -> UnaryOp {
    match op {
        "Neg" => UnaryOp::Neg,
        "Abs" => UnaryOp::Abs,
        "Log" => UnaryOp::Log,
        "Exp" => UnaryOp::Exp,
        "Sqrt" => UnaryOp::Sqrt,
        "Reciprocal" => UnaryOp::Reciprocal,
        "Sigmoid" => UnaryOp::Sigmoid,
        "Floor" => UnaryOp::Floor,
        "Ceil" => UnaryOp::Ceil,
        "Sign" => UnaryOp::Sign,
        "Relu" => UnaryOp::Relu,
        "Tanh" => UnaryOp::Tanh,
        "Not" => UnaryOp::Not,
        "IsNaN" => UnaryOp::IsNaN,
        _ => UnaryOp::Erf,
    }
}

macro_rules! float_unary {
    ($op:expr, $x:expr, $t:ty) => {{
        let x: $t = $x;
        match $op {
            UnaryOp::Neg => -x,
            UnaryOp::Abs => x.abs(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Reciprocal => 1.0 / x,
            UnaryOp::Sigmoid => {
                if x >= 0.0 {
                    1.0 / (1.0 + (-x).exp())
                } else {
                    x.exp() / (1.0 + x.exp())
                }
            }
            UnaryOp::Floor => x.floor(),
            UnaryOp::Ceil => x.ceil(),
            UnaryOp::Sign => {
                if x.is_nan() {
                    x
                } else if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            }
            UnaryOp::Relu => x.max(0.0),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Erf => erf(x as f64) as $t,
            UnaryOp::Not | UnaryOp::IsNaN => x,
        }
    }};
}

/// Abramowitz–Stegun 7.1.26 is too coarse for 1e-5; this is the W. J. Cody rational form used
/// by libm, via the complementary error function's continued fraction for large |x|.
fn erf(x: f64) -> f64 {
    // Series for small |x|, continued fraction for large: accurate to ~1e-15 either way.
    if x.abs() < 2.5 {
        let mut sum = x;
        let mut term = x;
        let x2 = x * x;
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            n += 1.0;
            term *= -x2 / n;
            sum += term / (2.0 * n + 1.0);
            if n > 200.0 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        let ax = x.abs();
        let mut f = ax;
        for k in (1..60).rev() {
            f = ax + (k as f64 / 2.0) / f;
        }
        let erfc = (-ax * ax).exp() / (f * std::f64::consts::PI.sqrt());
        (1.0 - erfc).copysign(x)
    }
}

struct Unary(UnaryOp);
impl Kernel for Unary {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, 0, "unary")?;
        let op = self.0;
        let data = match (&x.data, op) {
            (Data::F32(v), UnaryOp::IsNaN) => Data::Bool(v.iter().map(|x| x.is_nan()).collect()),
            (Data::F64(v), UnaryOp::IsNaN) => Data::Bool(v.iter().map(|x| x.is_nan()).collect()),
            (Data::Bool(v), UnaryOp::Not) => Data::Bool(v.iter().map(|x| !x).collect()),
            (Data::F32(v), op) if !matches!(op, UnaryOp::Not) => {
                Data::F32(v.iter().map(|x| float_unary!(op, *x, f32)).collect())
            }
            (Data::F64(v), op) if !matches!(op, UnaryOp::Not) => {
                Data::F64(v.iter().map(|x| float_unary!(op, *x, f64)).collect())
            }
            (Data::I64(v), UnaryOp::Neg) => Data::I64(v.iter().map(|x| x.wrapping_neg()).collect()),
            (Data::I64(v), UnaryOp::Abs) => Data::I64(v.iter().map(|x| x.wrapping_abs()).collect()),
            (Data::I64(v), UnaryOp::Sign) => Data::I64(v.iter().map(|x| x.signum()).collect()),
            (Data::I64(v), UnaryOp::Relu) => Data::I64(v.iter().map(|x| (*x).max(0)).collect()),
            (d, _) => return Err(format!("elementwise operator on {}", d.type_name())),
        };
        Ok(vec![Tensor::new(x.shape.clone(), data)])
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    Mean,
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
    And,
    Or,
    Xor,
}

fn binary_of(op: &str) -> BinOp {
    match op {
        "Add" | "Sum" => BinOp::Add,
        "Sub" => BinOp::Sub,
        "Mul" => BinOp::Mul,
        "Div" => BinOp::Div,
        "Pow" => BinOp::Pow,
        "Max" => BinOp::Max,
        "Min" => BinOp::Min,
        "Mean" => BinOp::Mean,
        "Equal" => BinOp::Eq,
        "Less" => BinOp::Lt,
        "Greater" => BinOp::Gt,
        "LessOrEqual" => BinOp::Le,
        "GreaterOrEqual" => BinOp::Ge,
        "And" => BinOp::And,
        "Or" => BinOp::Or,
        _ => BinOp::Xor,
    }
}

/// NumPy broadcasting: the output shape and, per input, the strides to read it with.
fn broadcast(a: &[usize], b: &[usize]) -> R<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} cannot be broadcast")),
        };
    }
    super::tensor::check_elements(super::tensor::checked_product(&out), "a broadcast result")?;
    Ok(out)
}

/// For each output element, the index into an input of `shape` broadcast to `out`.
fn broadcast_index(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let total: usize = out.iter().product();
    let n: usize = shape.iter().product();
    if shape == out {
        return (0..total).collect();
    }
    if n == 1 {
        return vec![0; total];
    }
    let rank = out.len();
    let mut strides = vec![0usize; rank];
    let mut s = 1;
    for i in (0..shape.len()).rev() {
        let oi = i + rank - shape.len();
        strides[oi] = if shape[i] == 1 { 0 } else { s };
        s *= shape[i];
    }
    let mut idx = Vec::with_capacity(total);
    let mut counter = vec![0usize; rank];
    for _ in 0..total {
        idx.push(counter.iter().zip(&strides).map(|(c, s)| c * s).sum());
        for d in (0..rank).rev() {
            counter[d] += 1;
            if counter[d] < out[d] {
                break;
            }
            counter[d] = 0;
        }
    }
    idx
}

macro_rules! arith {
    ($op:expr, $a:expr, $b:expr) => {
        match $op {
            BinOp::Add | BinOp::Mean => $a + $b,
            BinOp::Sub => $a - $b,
            BinOp::Mul => $a * $b,
            BinOp::Div => $a / $b,
            BinOp::Pow => $a.powf($b),
            BinOp::Max => {
                if $a.is_nan() || $b.is_nan() {
                    $a + $b
                } else if $a >= $b {
                    $a
                } else {
                    $b
                }
            }
            BinOp::Min => {
                if $a.is_nan() || $b.is_nan() {
                    $a + $b
                } else if $a <= $b {
                    $a
                } else {
                    $b
                }
            }
            _ => unreachable!(),
        }
    };
}

fn cmp<T: PartialOrd>(op: BinOp, a: T, b: T) -> bool {
    match op {
        BinOp::Eq => a == b,
        BinOp::Lt => a < b,
        BinOp::Gt => a > b,
        BinOp::Le => a <= b,
        _ => a >= b,
    }
}

fn int_arith(op: BinOp, a: i64, b: i64) -> R<i64> {
    Ok(match op {
        BinOp::Add | BinOp::Mean => a.wrapping_add(b),
        BinOp::Sub => a.wrapping_sub(b),
        BinOp::Mul => a.wrapping_mul(b),
        BinOp::Div => a.checked_div(b).ok_or("integer division by zero")?,
        BinOp::Max => a.max(b),
        BinOp::Min => a.min(b),
        BinOp::Pow => (a as f64).powf(b as f64) as i64,
        _ => unreachable!(),
    })
}

/// One step of a binary or variadic elementwise operator.
fn binary(op: BinOp, a: &Tensor, b: &Tensor) -> R<Tensor> {
    let shape = broadcast(&a.shape, &b.shape)?;
    // The common cases skip the index vectors: same shape, or one side a single value.
    let same = a.shape == shape && b.shape == shape;
    let ia = if same { Vec::new() } else { broadcast_index(&a.shape, &shape) };
    let ib = if same { Vec::new() } else { broadcast_index(&b.shape, &shape) };
    let total: usize = shape.iter().product();
    let at = |i: usize| if same { i } else { ia[i] };
    let bt = |i: usize| if same { i } else { ib[i] };
    let is_cmp = matches!(op, BinOp::Eq | BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge);
    let data = match (&a.data, &b.data) {
        (Data::F32(x), Data::F32(y)) if is_cmp => Data::Bool((0..total).map(|i| cmp(op, x[at(i)], y[bt(i)])).collect()),
        (Data::F64(x), Data::F64(y)) if is_cmp => Data::Bool((0..total).map(|i| cmp(op, x[at(i)], y[bt(i)])).collect()),
        (Data::I64(x), Data::I64(y)) if is_cmp => Data::Bool((0..total).map(|i| cmp(op, x[at(i)], y[bt(i)])).collect()),
        (Data::Bool(x), Data::Bool(y)) if op == BinOp::Eq => {
            Data::Bool((0..total).map(|i| x[at(i)] == y[bt(i)]).collect())
        }
        (Data::Str(x), Data::Str(y)) if op == BinOp::Eq => {
            Data::Bool((0..total).map(|i| x[at(i)] == y[bt(i)]).collect())
        }
        (Data::Bool(x), Data::Bool(y)) => {
            let f = |p: bool, q: bool| match op {
                BinOp::And => Ok(p && q),
                BinOp::Or => Ok(p || q),
                BinOp::Xor => Ok(p ^ q),
                _ => Err("arithmetic on bool".to_string()),
            };
            Data::Bool((0..total).map(|i| f(x[at(i)], y[bt(i)])).collect::<R<_>>()?)
        }
        (Data::F32(x), Data::F32(y)) => Data::F32((0..total).map(|i| arith!(op, x[at(i)], y[bt(i)])).collect()),
        (Data::F64(x), Data::F64(y)) => Data::F64((0..total).map(|i| arith!(op, x[at(i)], y[bt(i)])).collect()),
        // Pow takes its exponent in any numeric type.
        (Data::F32(x), Data::I64(y)) if op == BinOp::Pow => {
            Data::F32((0..total).map(|i| x[at(i)].powf(y[bt(i)] as f32)).collect())
        }
        (Data::F64(x), Data::I64(y)) if op == BinOp::Pow => {
            Data::F64((0..total).map(|i| x[at(i)].powf(y[bt(i)] as f64)).collect())
        }
        (Data::F32(x), Data::F64(y)) if op == BinOp::Pow => {
            Data::F32((0..total).map(|i| x[at(i)].powf(y[bt(i)] as f32)).collect())
        }
        (Data::I64(x), Data::I64(y)) => {
            Data::I64((0..total).map(|i| int_arith(op, x[at(i)], y[bt(i)])).collect::<R<_>>()?)
        }
        (x, y) => return Err(format!("elementwise operator on {} and {}", x.type_name(), y.type_name())),
    };
    Ok(Tensor::new(shape, data))
}

/// Binary operators and their variadic forms (Sum, Max, Min, Mean), folded left to right as
/// ONNX Runtime does, so float sums round the same way.
struct Nary(BinOp);
impl Kernel for Nary {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let first = arg(inputs, 0, "elementwise")?;
        if inputs.len() == 1 {
            return Ok(vec![first.clone()]);
        }
        let mut acc = binary(self.0, first, inputs[1])?;
        for t in &inputs[2..] {
            acc = binary(self.0, &acc, t)?;
        }
        if self.0 == BinOp::Mean {
            let n = inputs.len();
            acc.data = match acc.data {
                Data::F32(v) => Data::F32(v.into_iter().map(|x| x / n as f32).collect()),
                Data::F64(v) => Data::F64(v.into_iter().map(|x| x / n as f64).collect()),
                d => return Err(format!("Mean of {}", d.type_name())),
            };
        }
        Ok(vec![acc])
    }
}

struct Where;
impl Kernel for Where {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let c = arg(inputs, 0, "Where")?;
        let (x, y) = (arg(inputs, 1, "Where")?, arg(inputs, 2, "Where")?);
        let Data::Bool(cond) = &c.data else { return Err("Where: condition is not bool".into()) };
        let shape = broadcast(&broadcast(&c.shape, &x.shape)?, &y.shape)?;
        let (ic, ix, iy) =
            (broadcast_index(&c.shape, &shape), broadcast_index(&x.shape, &shape), broadcast_index(&y.shape, &shape));
        let total = ic.len();
        let data = match (&x.data, &y.data) {
            (Data::F32(a), Data::F32(b)) => {
                Data::F32((0..total).map(|i| if cond[ic[i]] { a[ix[i]] } else { b[iy[i]] }).collect())
            }
            (Data::F64(a), Data::F64(b)) => {
                Data::F64((0..total).map(|i| if cond[ic[i]] { a[ix[i]] } else { b[iy[i]] }).collect())
            }
            (Data::I64(a), Data::I64(b)) => {
                Data::I64((0..total).map(|i| if cond[ic[i]] { a[ix[i]] } else { b[iy[i]] }).collect())
            }
            (Data::Str(a), Data::Str(b)) => {
                Data::Str((0..total).map(|i| if cond[ic[i]] { a[ix[i]].clone() } else { b[iy[i]].clone() }).collect())
            }
            (a, b) => return Err(format!("Where on {} and {}", a.type_name(), b.type_name())),
        };
        Ok(vec![Tensor::new(shape, data)])
    }
}

/// Softmax over the last axis of a 2-D view ([rows, classes]); opsets before 13 flatten from
/// `axis`, which is the same view for the [N, C] tensors classifiers produce.
struct Softmax {
    axis: i64,
    legacy: bool,
}
impl Kernel for Softmax {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, 0, "Softmax")?;
        let rank = x.shape.len();
        let a = norm_axis(self.axis, rank)?;
        if !self.legacy && a + 1 != rank {
            return Err(format!("Softmax over axis {a} of a rank-{rank} tensor"));
        }
        let width: usize = x.shape[a..].iter().product();
        let data = match &x.data {
            Data::F32(v) => {
                let mut out = v.clone();
                for row in out.chunks_mut(width.max(1)) {
                    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut s = 0f32;
                    for r in row.iter_mut() {
                        *r = (*r - m).exp();
                        s += *r;
                    }
                    for r in row.iter_mut() {
                        *r /= s;
                    }
                }
                Data::F32(out)
            }
            Data::F64(v) => {
                let mut out = v.clone();
                for row in out.chunks_mut(width.max(1)) {
                    let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let mut s = 0f64;
                    for r in row.iter_mut() {
                        *r = (*r - m).exp();
                        s += *r;
                    }
                    for r in row.iter_mut() {
                        *r /= s;
                    }
                }
                Data::F64(out)
            }
            d => return Err(format!("Softmax of {}", d.type_name())),
        };
        Ok(vec![Tensor::new(x.shape.clone(), data)])
    }
}

struct ArgExt {
    max: bool,
    axis: i64,
    keepdims: bool,
}
impl Kernel for ArgExt {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, 0, "ArgMax")?;
        let rank = x.shape.len();
        let a = norm_axis(self.axis, rank)?;
        let outer: usize = x.shape[..a].iter().product();
        let dim = x.shape[a];
        let inner: usize = x.shape[a + 1..].iter().product();
        let vals: Vec<f64> = match &x.data {
            Data::F32(v) => v.iter().map(|x| *x as f64).collect(),
            Data::F64(v) => v.clone(),
            Data::I64(v) => v.iter().map(|x| *x as f64).collect(),
            d => return Err(format!("ArgMax of {}", d.type_name())),
        };
        let mut out = Vec::with_capacity(outer * inner);
        for o in 0..outer {
            for i in 0..inner {
                let mut best = 0usize;
                for k in 1..dim {
                    let v = vals[(o * dim + k) * inner + i];
                    let b = vals[(o * dim + best) * inner + i];
                    if (self.max && v > b) || (!self.max && v < b) {
                        best = k;
                    }
                }
                out.push(best as i64);
            }
        }
        let mut shape = x.shape.clone();
        if self.keepdims {
            shape[a] = 1;
        } else {
            shape.remove(a);
        }
        Ok(vec![Tensor::i64(shape, out)])
    }
}

/// MatMul of [N, K] by [K, M] (or [K]) and Gemm; accumulates in the input's type.
struct Gemm {
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
    matmul: bool,
}

fn as_f64(t: &Tensor) -> R<Vec<f64>> {
    Ok(match &t.data {
        Data::F32(v) => v.iter().map(|x| *x as f64).collect(),
        Data::F64(v) => v.clone(),
        Data::I64(v) => v.iter().map(|x| *x as f64).collect(),
        d => return Err(format!("matrix of {}", d.type_name())),
    })
}

impl Kernel for Gemm {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let a = arg(inputs, 0, "Gemm")?;
        let b = arg(inputs, 1, "Gemm")?;
        let double = matches!(a.data, Data::F64(_));
        if a.shape.len() != 2 || !(b.shape.len() == 2 || (self.matmul && b.shape.len() == 1)) {
            return Err(format!("matrix product of shapes {:?} and {:?}", a.shape, b.shape));
        }
        let (n, k) = if self.trans_a { (a.shape[1], a.shape[0]) } else { (a.shape[0], a.shape[1]) };
        let (kb, m) = match (b.shape.len(), self.trans_b) {
            (1, _) => (b.shape[0], 1),
            (_, false) => (b.shape[0], b.shape[1]),
            (_, true) => (b.shape[1], b.shape[0]),
        };
        if k != kb {
            return Err(format!("matrix product of shapes {:?} and {:?}", a.shape, b.shape));
        }
        let (av, bv) = (as_f64(a)?, as_f64(b)?);
        super::tensor::check_elements(n.checked_mul(m), "a matrix product")?;
        let c = match inputs.get(2) {
            Some(c) if !self.matmul => {
                // C must broadcast to [n, m] (ONNX Runtime refuses other shapes).
                if c.shape.len() > 2 || broadcast(&c.shape, &[n, m])? != [n, m] {
                    return Err(format!("Gemm: C of shape {:?} does not broadcast to [{n}, {m}]", c.shape));
                }
                Some((as_f64(c)?, broadcast_index(&c.shape, &[n, m])))
            }
            _ => None,
        };
        let mut out = vec![0f64; n * m];
        for i in 0..n {
            for j in 0..m {
                // Sums in the input's precision, like the BLAS ONNX Runtime calls.
                let mut s32 = 0f32;
                let mut s64 = 0f64;
                for p in 0..k {
                    let x = if self.trans_a { av[p * n + i] } else { av[i * k + p] };
                    let y = if b.shape.len() == 1 {
                        bv[p]
                    } else if self.trans_b {
                        bv[j * k + p]
                    } else {
                        bv[p * m + j]
                    };
                    if double {
                        s64 += x * y;
                    } else {
                        s32 += (x as f32) * (y as f32);
                    }
                }
                let mut v = if double { s64 } else { s32 as f64 } * self.alpha as f64;
                if let Some((cv, ci)) = &c {
                    v += self.beta as f64 * cv[ci[i * m + j]];
                }
                out[i * m + j] = v;
            }
        }
        let shape = if b.shape.len() == 1 { vec![n] } else { vec![n, m] };
        Ok(vec![if double {
            Tensor::f64(shape, out)
        } else {
            Tensor::f32(shape, out.into_iter().map(|x| x as f32).collect())
        }])
    }
}

struct Clip {
    min: Option<f32>,
    max: Option<f32>,
}
impl Kernel for Clip {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, 0, "Clip")?;
        let bound = |i: usize, attr: Option<f32>| -> R<Option<f64>> {
            match inputs.get(i) {
                Some(t) => Ok(as_f64(t)?.first().copied()),
                None => Ok(attr.map(|v| v as f64)),
            }
        };
        let (lo, hi) = (bound(1, self.min)?, bound(2, self.max)?);
        let clip = |v: f64| {
            let v = lo.map_or(v, |l| if v < l { l } else { v });
            hi.map_or(v, |h| if v > h { h } else { v })
        };
        let data = match &x.data {
            Data::F32(v) => Data::F32(v.iter().map(|x| clip(*x as f64) as f32).collect()),
            Data::F64(v) => Data::F64(v.iter().map(|x| clip(*x)).collect()),
            Data::I64(v) => Data::I64(v.iter().map(|x| clip(*x as f64) as i64).collect()),
            d => return Err(format!("Clip of {}", d.type_name())),
        };
        Ok(vec![Tensor::new(x.shape.clone(), data)])
    }
}

/// ReduceSum/Mean/Max/Min over the given axes (attribute, or input from opset 13/18).
struct Reduce {
    op: String,
    axes: Vec<i64>,
    keepdims: bool,
    noop_with_empty_axes: bool,
}
impl Kernel for Reduce {
    fn run(&self, inputs: &[&Tensor]) -> R<Vec<Tensor>> {
        let x = arg(inputs, 0, &self.op)?;
        let axes = match inputs.get(1) {
            Some(t) => shape_values(t)?,
            None => self.axes.clone(),
        };
        if axes.is_empty() && self.noop_with_empty_axes {
            return Ok(vec![x.clone()]);
        }
        let rank = x.shape.len();
        let mut reduce = vec![axes.is_empty(); rank];
        for a in &axes {
            reduce[norm_axis(*a, rank)?] = true;
        }
        let out_shape: Vec<usize> = x.shape.iter().zip(&reduce).map(|(d, r)| if *r { 1 } else { *d }).collect();
        let total: usize = out_shape.iter().product();
        // Output index of every input element, walking the input in order.
        let mut strides = vec![0usize; rank];
        let mut s = 1;
        for i in (0..rank).rev() {
            strides[i] = if reduce[i] { 0 } else { s };
            s *= out_shape[i];
        }
        let mut target = Vec::with_capacity(x.len());
        let mut counter = vec![0usize; rank];
        for _ in 0..x.len() {
            target.push(counter.iter().zip(&strides).map(|(c, s)| c * s).sum::<usize>());
            for d in (0..rank).rev() {
                counter[d] += 1;
                if counter[d] < x.shape[d] {
                    break;
                }
                counter[d] = 0;
            }
        }
        let count = (x.len() / total.max(1)).max(1);
        macro_rules! go {
            ($v:expr, $t:ty) => {{
                let (init, f): ($t, fn($t, $t) -> $t) = match self.op.as_str() {
                    "ReduceMax" => (<$t>::NEG_INFINITY, |a, b| if b > a || b.is_nan() { b } else { a }),
                    "ReduceMin" => (<$t>::INFINITY, |a, b| if b < a || b.is_nan() { b } else { a }),
                    _ => (0.0, |a, b| a + b),
                };
                let mut acc = vec![init; total];
                for (v, t) in $v.iter().zip(&target) {
                    acc[*t] = f(acc[*t], *v);
                }
                if self.op == "ReduceMean" {
                    acc.iter_mut().for_each(|a| *a /= count as $t);
                }
                acc
            }};
        }
        let data = match &x.data {
            Data::F32(v) => Data::F32(go!(v, f32)),
            Data::F64(v) => Data::F64(go!(v, f64)),
            d => return Err(format!("{} of {}", self.op, d.type_name())),
        };
        let shape = if self.keepdims {
            out_shape
        } else {
            x.shape.iter().zip(&reduce).filter(|(_, r)| !**r).map(|(d, _)| *d).collect()
        };
        Ok(vec![Tensor::new(shape, data)])
    }
}
