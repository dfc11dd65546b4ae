//! A compiled graph: every node turned into a kernel at load, values held in numbered slots, run
//! node by node over whole batches. Compilation fails on the first node the native evaluator
//! does not support, naming it, so the engine can fall back to ONNX Runtime and say why.

use std::borrow::Cow;
use std::collections::HashMap;

use super::proto::{dtype, GraphProto, ModelProto, TensorProto};
use super::tensor::{Data, Tensor};
use super::Kernel;

/// Why a graph does not run natively: the first node (or input) that cannot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// `TreeEnsembleClassifier`, `If`, ... or a description when no single operator is at fault.
    pub op: String,
    pub reason: String,
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reason.is_empty() {
            write!(f, "{}", self.op)
        } else if self.op.starts_with("the ") {
            write!(f, "{}: {}", self.op, self.reason)
        } else {
            write!(f, "{} ({})", self.op, self.reason)
        }
    }
}

fn unsupported(op: &str, reason: impl Into<String>) -> Unsupported {
    Unsupported { op: op.into(), reason: reason.into() }
}

pub(crate) struct Step {
    pub op: String,
    pub kernel: Box<dyn Kernel>,
    pub inputs: Vec<usize>,
    pub outputs: Vec<usize>,
}

pub struct Plan {
    /// Graph inputs in declaration order (initializers excluded): name and slot.
    pub(crate) inputs: Vec<(String, usize)>,
    /// Graph outputs: name and slot.
    pub(crate) outputs: Vec<(String, usize)>,
    pub(crate) consts: Vec<(usize, Tensor)>,
    pub(crate) steps: Vec<Step>,
    pub(crate) slots: usize,
    /// Slots to free after each step (their last reader), so long graphs keep little alive.
    pub(crate) frees: Vec<Vec<usize>>,
}

/// Opset versions of the default and ML domains.
#[derive(Debug, Clone, Copy)]
pub struct Opsets {
    pub onnx: i64,
    pub ml: i64,
}

impl Opsets {
    pub fn of(model: &ModelProto) -> Self {
        let mut o = Opsets { onnx: 1, ml: 1 };
        for i in &model.opset_import {
            match i.domain.as_str() {
                "" | "ai.onnx" => o.onnx = o.onnx.max(i.version),
                "ai.onnx.ml" => o.ml = o.ml.max(i.version),
                _ => {}
            }
        }
        o
    }
}

/// A tensor initializer or Constant value as a native tensor.
pub fn tensor_from_proto(t: &TensorProto) -> Result<Tensor, String> {
    if t.data_location != 0 {
        return Err("external data".into());
    }
    if t.dims.iter().any(|d| *d < 0) {
        return Err(format!("tensor '{}' has a negative dimension {:?}", t.name, t.dims));
    }
    let shape: Vec<usize> = t.dims.iter().map(|d| *d as usize).collect();
    let data = match t.data_type {
        dtype::FLOAT => Data::F32(t.to_f32().ok_or("float tensor")?),
        dtype::DOUBLE => Data::F64(t.to_f64().ok_or("double tensor")?),
        dtype::INT64 | dtype::INT32 | dtype::INT8 | dtype::UINT8 => Data::I64(t.to_i64().ok_or("integer tensor")?),
        dtype::BOOL => Data::Bool(t.to_i64().ok_or("bool tensor")?.into_iter().map(|v| v != 0).collect()),
        dtype::STRING => Data::Str(t.to_strings().ok_or("string tensor")?),
        other => return Err(format!("tensor of data type {other}")),
    };
    if Some(data.len()) != super::tensor::checked_product(&shape) {
        return Err(format!("tensor '{}' has {} values for shape {shape:?}", t.name, data.len()));
    }
    Ok(Tensor::new(shape, data))
}

impl Plan {
    /// Compiles the model's graph, or names the first thing that cannot run natively.
    pub fn compile(model: &ModelProto) -> Result<Plan, Unsupported> {
        let graph = model.graph.as_ref().ok_or_else(|| unsupported("graph", "the model has no graph"))?;
        if !model.functions.is_empty() {
            return Err(unsupported("local functions", ""));
        }
        if !graph.sparse_initializer.is_empty() {
            return Err(unsupported("sparse initializers", ""));
        }
        let opsets = Opsets::of(model);
        let mut graph = graph.clone();
        super::fuse::fold_tree_leaves(&mut graph, opsets).map_err(|e| unsupported("IsolationForest fusion", e))?;
        Self::compile_graph(&graph, opsets)
    }

    pub(crate) fn compile_graph(graph: &GraphProto, opsets: Opsets) -> Result<Plan, Unsupported> {
        let mut slot_of: HashMap<String, usize> = HashMap::new();
        let mut next = 0usize;
        let mut slot = |name: &str, map: &mut HashMap<String, usize>| -> usize {
            *map.entry(name.to_string()).or_insert_with(|| {
                next += 1;
                next - 1
            })
        };
        let mut consts = Vec::new();
        for init in &graph.initializer {
            let t = tensor_from_proto(init).map_err(|e| unsupported("initializer", e))?;
            consts.push((slot(&init.name, &mut slot_of), t));
        }
        let initialized: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let mut inputs = Vec::new();
        for input in &graph.input {
            if initialized.contains(input.name.as_str()) {
                continue;
            }
            inputs.push((input.name.clone(), slot(&input.name, &mut slot_of)));
        }
        let mut steps = Vec::new();
        for node in &graph.node {
            let op = node.op_type.as_str();
            let domain = node.domain.as_str();
            if matches!(domain, "" | "ai.onnx") && op == "Constant" {
                let t = super::ops::constant(node).map_err(|e| unsupported(op, e))?;
                let out = node.output.first().ok_or_else(|| unsupported(op, "no output"))?;
                consts.push((slot(out, &mut slot_of), t));
                continue;
            }
            let kernel: Box<dyn Kernel> = match domain {
                "" | "ai.onnx" => super::ops::compile(node, opsets.onnx),
                "ai.onnx.ml" if matches!(op, "TreeEnsembleRegressor" | "TreeEnsembleClassifier" | "TreeEnsemble") => {
                    super::tree::compile(node)
                }
                "ai.onnx.ml" => super::ml::compile(node),
                super::fuse::DOMAIN => super::fuse::compile(node),
                other => Err(format!("of domain '{other}'")),
            }
            .map_err(|e| unsupported(op, e))?;
            // An empty name marks an omitted optional input: fine only at the end.
            let named: Vec<&String> = node.input.iter().rev().skip_while(|n| n.is_empty()).collect();
            if named.iter().any(|n| n.is_empty()) {
                return Err(unsupported(op, "an omitted optional input before a given one"));
            }
            let mut ins = Vec::new();
            for name in named.into_iter().rev() {
                let s =
                    *slot_of.get(name).ok_or_else(|| unsupported(op, format!("input '{name}' is never produced")))?;
                ins.push(s);
            }
            let outs = node.output.iter().map(|o| slot(o, &mut slot_of)).collect();
            steps.push(Step { op: op.to_string(), kernel, inputs: ins, outputs: outs });
        }
        let mut outputs = Vec::new();
        for o in &graph.output {
            let s = *slot_of
                .get(&o.name)
                .ok_or_else(|| unsupported("graph output", format!("'{}' is never produced", o.name)))?;
            outputs.push((o.name.clone(), s));
        }
        // Free each computed slot after its last reader, unless it is a graph output.
        let mut last: HashMap<usize, usize> = HashMap::new();
        for (i, s) in steps.iter().enumerate() {
            for &x in &s.inputs {
                last.insert(x, i);
            }
        }
        let kept: std::collections::HashSet<usize> =
            outputs.iter().map(|o| o.1).chain(consts.iter().map(|c| c.0)).chain(inputs.iter().map(|i| i.1)).collect();
        let mut frees = vec![Vec::new(); steps.len()];
        for (s, i) in last {
            if !kept.contains(&s) {
                frees[i].push(s);
            }
        }
        Ok(Plan { inputs, outputs, consts, steps, slots: next, frees })
    }

    /// Names of the graph's inputs, in order.
    pub fn input_names(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|(n, _)| n.as_str())
    }

    /// Runs the graph on one tensor per graph input (in order); returns one per graph output.
    pub fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, String> {
        if inputs.len() != self.inputs.len() {
            return Err(format!("{} inputs given, the graph takes {}", inputs.len(), self.inputs.len()));
        }
        let mut vals: Vec<Option<Cow<'_, Tensor>>> = vec![None; self.slots];
        for (s, t) in &self.consts {
            vals[*s] = Some(Cow::Borrowed(t));
        }
        for ((_, s), t) in self.inputs.iter().zip(inputs) {
            vals[*s] = Some(Cow::Owned(t));
        }
        for (i, step) in self.steps.iter().enumerate() {
            let outs = {
                let mut args: Vec<&Tensor> = Vec::with_capacity(step.inputs.len());
                for &s in &step.inputs {
                    args.push(vals[s].as_deref().ok_or_else(|| format!("{}: an input was not computed", step.op))?);
                }
                step.kernel.run(&args).map_err(|e| format!("{}: {e}", step.op))?
            };
            if outs.len() < step.outputs.len() {
                return Err(format!("{} returned {} outputs, {} expected", step.op, outs.len(), step.outputs.len()));
            }
            for (&s, t) in step.outputs.iter().zip(outs) {
                // Every later kernel indexes by shape: a kernel's shape must describe its data.
                if super::tensor::checked_product(&t.shape) != Some(t.len()) {
                    return Err(format!("{}: an output of shape {:?} holds {} values", step.op, t.shape, t.len()));
                }
                vals[s] = Some(Cow::Owned(t));
            }
            for &s in &self.frees[i] {
                vals[s] = None;
            }
        }
        self.outputs
            .iter()
            .map(|(name, s)| {
                vals[*s].take().map(Cow::into_owned).ok_or_else(|| format!("output '{name}' was not computed"))
            })
            .collect()
    }
}
