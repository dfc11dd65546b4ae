//! Graph rewrites that turn converter idioms into one tree ensemble before compilation.
//!
//! skl2onnx writes an IsolationForest as, per tree, `Gather(X, features) -> TreeEnsembleRegressor`
//! whose leaf value is the leaf's node id, followed by about twenty elementwise nodes (Cast,
//! LabelEncoders, the path-length formula) and finally one `Sum` over all trees: 2,710 nodes
//! for 100 trees. Rather than matching that exact pattern, two general rewrites do it:
//!
//! 1. **Leaf folding.** A single-tree regressor whose output flows only through row-wise nodes
//!    (each reading nothing but that output and constants) is a function of *which leaf* a row
//!    reaches. Running those nodes once, at load, on every leaf's value gives each leaf its final
//!    value; the tree then produces it directly. The values come from the same kernels the
//!    graph would run, so rounding is unchanged.
//! 2. **Forest merging.** A `Sum` whose inputs are all such single-tree regressors over the same
//!    features (after mapping each tree's `Gather` of columns back to the input's columns)
//!    becomes one TreeEnsembleRegressor, trees in the `Sum`'s order: a left-to-right float sum,
//!    which is how the ensemble accumulates too.

use std::collections::{HashMap, HashSet};

use super::plan::{tensor_from_proto, Opsets, Plan};
use super::proto::{AttributeProto, GraphProto, NodeProto, TensorProto, ValueInfoProto};
use super::tensor::{Data, Tensor};
use super::Kernel;

/// Domain of nodes only the rewrites create (none today; reserved so a rewrite can name a
/// native-only kernel without clashing with a real operator).
pub const DOMAIN: &str = "sqlscore.native";

pub fn compile(node: &NodeProto) -> Result<Box<dyn Kernel>, String> {
    Err(format!("internal operator {}", node.op_type))
}

/// Row-wise operators: output row i depends only on input row i (given scalar constants).
const ROW_WISE: &[&str] = &[
    "Cast",
    "LabelEncoder",
    "Reshape",
    "Identity",
    "Flatten",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Max",
    "Min",
    "Log",
    "Exp",
    "Neg",
    "Abs",
    "Pow",
    "Equal",
    "Greater",
    "Less",
    "GreaterOrEqual",
    "LessOrEqual",
    "Where",
    "Not",
    "Sqrt",
    "Reciprocal",
    "Sign",
    "Floor",
    "Ceil",
    "Clip",
];

fn attr_ints(node: &NodeProto, name: &str) -> Vec<i64> {
    node.ints(name).to_vec()
}

fn set_attr(node: &mut NodeProto, attr: AttributeProto) {
    node.attribute.retain(|a| a.name != attr.name);
    node.attribute.push(attr);
}

fn ints_attr(name: &str, v: Vec<i64>) -> AttributeProto {
    AttributeProto { name: name.into(), ints: v, r#type: 7, ..Default::default() }
}

fn floats_attr(name: &str, v: Vec<f32>) -> AttributeProto {
    AttributeProto { name: name.into(), floats: v, r#type: 6, ..Default::default() }
}

/// A regressor holding exactly one tree, one target, no base value and no post transform: the
/// shape leaf folding needs. Returns its leaves' node ids and values.
fn single_tree_leaves(node: &NodeProto) -> Option<Vec<(i64, f32)>> {
    if node.op_type != "TreeEnsembleRegressor" || node.domain != "ai.onnx.ml" {
        return None;
    }
    let trees: HashSet<i64> = node.ints("nodes_treeids").iter().copied().collect();
    let post = node.string("post_transform").unwrap_or_default();
    let base = node.floats("base_values");
    if trees.len() != 1
        || node.int("n_targets", 1) != 1
        || !(post.is_empty() || post == "NONE")
        || base.iter().any(|b| *b != 0.0)
        || node.attr("nodes_values_as_tensor").is_some()
        || node.attr("target_weights_as_tensor").is_some()
        || node.attr("base_values_as_tensor").is_some()
        || node.ints("target_ids").iter().any(|t| *t != 0)
        || node.input.len() != 1
        || !matches!(node.string("aggregate_function").as_deref(), None | Some("SUM") | Some("AVERAGE"))
    {
        return None;
    }
    let modes = node.strings("nodes_modes");
    let ids = node.ints("nodes_nodeids");
    let leaves: HashSet<i64> =
        ids.iter().zip(&modes).filter(|(_, m)| m.as_str() == "LEAF").map(|(id, _)| *id).collect();
    let mut value: HashMap<i64, f32> = leaves.iter().map(|l| (*l, 0.0)).collect();
    for (n, w) in node.ints("target_nodeids").iter().zip(node.floats("target_weights")) {
        // Weights on non-leaf nodes are ignored by the evaluator; several on a leaf add up.
        if let Some(v) = value.get_mut(n) {
            *v += *w;
        }
    }
    let mut out: Vec<(i64, f32)> = value.into_iter().collect();
    out.sort_unstable_by_key(|(id, _)| *id);
    Some(out)
}

/// Rewrites `graph` in place; a graph without the idioms is left as it was.
pub fn fold_tree_leaves(graph: &mut GraphProto, opsets: Opsets) -> Result<(), String> {
    let consts: HashMap<String, TensorProto> = graph.initializer.iter().map(|t| (t.name.clone(), t.clone())).collect();
    let const_nodes: HashMap<String, usize> = graph
        .node
        .iter()
        .enumerate()
        .filter(|(_, n)| n.op_type == "Constant")
        .filter_map(|(i, n)| n.output.first().map(|o| (o.clone(), i)))
        .collect();
    let is_const = |name: &str| consts.contains_key(name) || const_nodes.contains_key(name);
    let outputs: HashSet<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for inp in &n.input {
            consumers.entry(inp.clone()).or_default().push(i);
        }
    }
    let mut removed: HashSet<usize> = HashSet::new();
    let mut folded: HashMap<String, usize> = HashMap::new();
    let mut any_folded = false;
    for t in 0..graph.node.len() {
        let Some(leaves) = single_tree_leaves(&graph.node[t]) else { continue };
        let Some(y) = graph.node[t].output.first().cloned() else { continue };
        // Grow the set of nodes that depend on y alone (plus constants), in graph order.
        let mut inside: HashSet<String> = HashSet::from([y.clone()]);
        let mut members: Vec<usize> = Vec::new();
        for (i, n) in graph.node.iter().enumerate().skip(t + 1) {
            if removed.contains(&i) || !ROW_WISE.contains(&n.op_type.as_str()) {
                continue;
            }
            let reads_inside = n.input.iter().any(|x| inside.contains(x));
            let pure = n.input.iter().all(|x| x.is_empty() || inside.contains(x) || is_const(x));
            if reads_inside && pure {
                members.push(i);
                inside.extend(n.output.iter().cloned());
            }
        }
        // Exactly one value may leave the set: the folded tree's new output.
        let member_set: HashSet<usize> = members.iter().copied().collect();
        let escaping: Vec<&String> = inside
            .iter()
            .filter(|v| {
                outputs.contains(*v) || consumers.get(*v).is_some_and(|c| c.iter().any(|i| !member_set.contains(i)))
            })
            .collect();
        if members.is_empty() || escaping.len() != 1 {
            continue;
        }
        let v = escaping[0].clone();
        // Evaluate the members on every leaf's value at once.
        let mut sub = GraphProto {
            node: members.iter().map(|i| graph.node[*i].clone()).collect(),
            input: vec![ValueInfoProto { name: y.clone(), r#type: None }],
            output: vec![ValueInfoProto { name: v.clone(), r#type: None }],
            ..Default::default()
        };
        let needed: HashSet<&String> = sub.node.iter().flat_map(|n| n.input.iter()).collect();
        sub.initializer = needed.iter().filter_map(|n| consts.get(*n).cloned()).collect();
        let mut const_defs: Vec<NodeProto> =
            needed.iter().filter_map(|n| const_nodes.get(*n).map(|i| graph.node[*i].clone())).collect();
        const_defs.append(&mut sub.node);
        sub.node = const_defs;
        let Ok(plan) = Plan::compile_graph(&sub, opsets) else { continue };
        let values = Tensor::f32(vec![leaves.len(), 1], leaves.iter().map(|(_, w)| *w).collect());
        let Ok(mut out) = plan.run(vec![values]) else { continue };
        let result = out.remove(0);
        let Data::F32(new) = &result.data else { continue };
        if new.len() != leaves.len() || !(result.shape == [leaves.len(), 1] || result.shape == [leaves.len()]) {
            continue;
        }
        // The tree now yields the folded value; a 1-D result keeps its shape through a Reshape.
        let node = &mut graph.node[t];
        let tree = node.ints("nodes_treeids")[0];
        set_attr(node, ints_attr("target_nodeids", leaves.iter().map(|(id, _)| *id).collect()));
        set_attr(node, ints_attr("target_treeids", vec![tree; leaves.len()]));
        set_attr(node, ints_attr("target_ids", vec![0; leaves.len()]));
        set_attr(node, floats_attr("target_weights", new.clone()));
        let two_d = result.shape.len() == 2;
        if two_d {
            node.output = vec![v.clone()];
        } else {
            let shape_name = format!("{v}__sqlscore_shape");
            node.output = vec![format!("{v}__sqlscore_tree")];
            graph.initializer.push(TensorProto {
                name: shape_name.clone(),
                dims: vec![1],
                data_type: super::proto::dtype::INT64,
                int64_data: vec![-1],
                ..Default::default()
            });
            graph.node.push(NodeProto {
                input: vec![format!("{v}__sqlscore_tree"), shape_name],
                output: vec![v.clone()],
                op_type: "Reshape".into(),
                ..Default::default()
            });
        }
        removed.extend(members);
        // Only [N, 1] trees may merge: a merged forest yields [N, 1].
        if two_d {
            folded.insert(v, t);
        } else {
            any_folded = true;
        }
    }
    if folded.is_empty() && !any_folded {
        return Ok(());
    }
    merge_sums(graph, &folded, &consts, &mut removed);
    let mut i = 0;
    graph.node.retain(|_| {
        i += 1;
        !removed.contains(&(i - 1))
    });
    prune(graph);
    // Reshapes appended above must follow their trees: restore a topological order.
    topo_sort(graph)
}

/// Replaces `Sum(v1..vk)` over folded single trees reading the same features by one forest.
fn merge_sums(
    graph: &mut GraphProto,
    folded: &HashMap<String, usize>,
    consts: &HashMap<String, TensorProto>,
    removed: &mut HashSet<usize>,
) {
    let producers: HashMap<String, usize> =
        graph.node.iter().enumerate().flat_map(|(i, n)| n.output.iter().map(move |o| (o.clone(), i))).collect();
    for s in 0..graph.node.len() {
        if graph.node[s].op_type != "Sum" || graph.node[s].input.len() < 2 {
            continue;
        }
        let trees: Option<Vec<usize>> = graph.node[s].input.iter().map(|v| folded.get(v).copied()).collect();
        let Some(trees) = trees else { continue };
        // Each tree's value must feed this Sum only (and once), or merging would lose a reader.
        let readers = |v: &String| graph.node.iter().map(|n| n.input.iter().filter(|i| *i == v).count()).sum::<usize>();
        let outputs: HashSet<&String> = graph.output.iter().map(|o| &o.name).collect();
        if graph.node[s].input.iter().any(|v| readers(v) != 1 || outputs.contains(v)) {
            continue;
        }
        // Each tree reads X directly or Gather(X, constant columns, axis 1).
        let mut source: Option<String> = None;
        let mut maps: Vec<Option<Vec<i64>>> = Vec::new();
        let mut ok = true;
        for &t in &trees {
            let Some(input) = graph.node[t].input.first() else {
                ok = false;
                break;
            };
            let (x, map) = match producers.get(input).map(|p| &graph.node[*p]) {
                Some(g) if g.op_type == "Gather" && g.int("axis", 0) == 1 && g.input.len() == 2 => {
                    let idx = consts.get(&g.input[1]).and_then(|c| tensor_from_proto(c).ok());
                    match idx.map(|t| t.data) {
                        Some(Data::I64(v)) if v.iter().all(|i| *i >= 0) => (g.input[0].clone(), Some(v)),
                        _ => {
                            ok = false;
                            break;
                        }
                    }
                }
                _ => (input.clone(), None),
            };
            if source.get_or_insert_with(|| x.clone()) != &x {
                ok = false;
                break;
            }
            maps.push(map);
        }
        let Some(x) = source.filter(|_| ok) else { continue };
        let mut merged = NodeProto {
            input: vec![x],
            output: graph.node[s].output.clone(),
            name: format!("{}__sqlscore_forest", graph.node[s].name),
            op_type: "TreeEnsembleRegressor".into(),
            domain: "ai.onnx.ml".into(),
            ..Default::default()
        };
        let mut cols: HashMap<&str, Vec<i64>> = HashMap::new();
        let mut floats: HashMap<&str, Vec<f32>> = HashMap::new();
        let mut modes: Vec<Vec<u8>> = Vec::new();
        for (k, (&t, map)) in trees.iter().zip(&maps).enumerate() {
            let node = &graph.node[t];
            let n = node.ints("nodes_nodeids").len();
            cols.entry("nodes_treeids").or_default().extend(std::iter::repeat_n(k as i64, n));
            let tn = node.ints("target_nodeids").len();
            cols.entry("target_treeids").or_default().extend(std::iter::repeat_n(k as i64, tn));
            for name in ["nodes_nodeids", "nodes_truenodeids", "nodes_falsenodeids", "target_nodeids", "target_ids"] {
                cols.entry(name).or_default().extend(attr_ints(node, name));
            }
            let mut mvt = attr_ints(node, "nodes_missing_value_tracks_true");
            mvt.resize(n, 0);
            cols.entry("nodes_missing_value_tracks_true").or_default().extend(mvt);
            let features = attr_ints(node, "nodes_featureids");
            let remapped = features.iter().map(|f| match map {
                Some(m) => m.get(*f as usize).copied().unwrap_or(-1),
                None => *f,
            });
            cols.entry("nodes_featureids").or_default().extend(remapped);
            for name in ["nodes_values", "target_weights"] {
                floats.entry(name).or_default().extend_from_slice(node.floats(name));
            }
            modes.extend(node.attr("nodes_modes").map(|a| a.strings.clone()).unwrap_or_default());
        }
        if cols["nodes_featureids"].iter().any(|f| *f < 0) {
            continue;
        }
        for (name, v) in cols {
            merged.attribute.push(ints_attr(name, v));
        }
        for (name, v) in floats {
            merged.attribute.push(floats_attr(name, v));
        }
        merged.attribute.push(AttributeProto {
            name: "nodes_modes".into(),
            strings: modes,
            r#type: 8,
            ..Default::default()
        });
        set_attr(&mut merged, AttributeProto { name: "n_targets".into(), i: 1, r#type: 2, ..Default::default() });
        set_attr(
            &mut merged,
            AttributeProto { name: "aggregate_function".into(), s: b"SUM".to_vec(), r#type: 3, ..Default::default() },
        );
        graph.node[s] = merged;
        removed.extend(trees);
    }
}

/// Drops nodes whose outputs nobody reads (the Gathers feeding merged trees).
fn prune(graph: &mut GraphProto) {
    loop {
        let used: HashSet<String> = graph
            .node
            .iter()
            .flat_map(|n| n.input.iter().cloned())
            .chain(graph.output.iter().map(|o| o.name.clone()))
            .collect();
        let before = graph.node.len();
        graph.node.retain(|n| n.output.iter().any(|o| used.contains(o)));
        if graph.node.len() == before {
            return;
        }
    }
}

fn topo_sort(graph: &mut GraphProto) -> Result<(), String> {
    let mut known: HashSet<String> = graph
        .initializer
        .iter()
        .map(|t| t.name.clone())
        .chain(graph.input.iter().map(|i| i.name.clone()))
        .chain(std::iter::once(String::new()))
        .collect();
    let mut pending: Vec<NodeProto> = std::mem::take(&mut graph.node);
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for n in pending {
            if n.input.iter().all(|i| known.contains(i)) {
                known.extend(n.output.iter().cloned());
                graph.node.push(n);
            } else {
                rest.push(n);
            }
        }
        if rest.len() == before {
            return Err("the rewritten graph has a cycle or a missing input".into());
        }
        pending = rest;
    }
    Ok(())
}
