//! Tree ensembles: `TreeEnsembleRegressor` / `TreeEnsembleClassifier` (ai.onnx.ml 1–3) and
//! `TreeEnsemble` (ai.onnx.ml 5), with ONNX Runtime 1.32's answers at several times its speed.
//!
//! Three stages:
//! 1. [`parse`] reads the attributes into an [`EnsembleSpec`]: trees in ORT's order, each a small
//!    graph of [`NodeSpec`]s, with ORT's reading of them applied (roots, which weight a
//!    single-target leaf carries, v5's `BRANCH_MEMBER` and single-leaf trees).
//! 2. Each tree is laid out for the input's float type. Order tests become one form, `x <= t`
//!    plus a "NaN goes true" flag (children swapped for `>=`/`>`, `t` lowered by one ulp for
//!    `<`), so the top levels are a perfect binary tree in an array walked without branches
//!    (`i = 2i + 2 - go_true`), 16 rows in lock step; small trees test every node of a block at
//!    once by column and look the leaf up by the result bits; deep or sparse trees continue from
//!    the array into a compact tail (siblings side by side, `i = kids + 1 - go_true`, lanes
//!    stepping until none moves); `==`, `!=` and sets (and ORT's fusion of `BRANCH_EQ` chains),
//!    and trees whose nodes have two parents, take a pointer walk instead.
//! 3. The kernel runs blocks of rows, trees outer and rows inner, accumulating in the input's
//!    float type in tree order exactly as ORT does, then applies ORT's finalisation (base values,
//!    post transform, the two-class rules) row by row.
//!
//! The ORT 1.32 behaviours reproduced here were measured against its Python wheel; the tests in
//! `core/tests/native_trees.rs` compare every case with ORT itself. [`Forest`] is the same
//! machinery for graph rewrites that need a plain sum of trees (a fused IsolationForest).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use super::post::{logistic, probit, softmax, softmax_zero};

/// Most targets or classes an ensemble may declare: outputs are allocated per row from this
/// attribute, so a model cannot ask for more (it falls back to ONNX Runtime, which refuses it
/// or fails its own allocation as an error).
const MAX_OUTPUTS: usize = 1 << 16;
use super::proto::NodeProto;
use super::tensor::{Data, Tensor};
use super::Kernel;

// ---------------------------------------------------------------------------------------------
// Public specification
// ---------------------------------------------------------------------------------------------

/// The test at a branch. The row goes to `true_child` when the test holds, or when the value is
/// NaN and `missing_tracks_true` is set. A NaN fails every test except `Neq` (and `MemberTrunc`
/// when the set holds `i32::MIN`, as ORT's integer cast makes NaN `i32::MIN`).
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    Leq(f64),
    Lt(f64),
    Gte(f64),
    Gt(f64),
    Eq(f64),
    Neq(f64),
    /// Equal to one of the values. ORT 1.32 fuses chains of `BRANCH_EQ` on one feature with one
    /// true child and small positive integer values into such a node, and then tests NaN against
    /// the first node's `missing_tracks_true` only. [`parse`] leaves chains as written; the
    /// kernel from [`compile`] fuses them as ORT does (a [`Forest`] evaluates specs as written).
    Member(Vec<f64>),
    /// The value cast to `i32` (truncation; NaN and out-of-range values become `i32::MIN`, as on
    /// x86) is in the sorted set: ORT's `BRANCH_MEMBER_BIGSET`, which `TreeEnsemble` v5 uses for
    /// sets with 31 or more values or values outside 0..=30.
    MemberTrunc(Vec<i32>),
}

/// One node of a [`TreeSpec`]; children are indices into the same tree's `nodes`. Children may be
/// shared (LightGBM's chains share their true child) but there must be no cycle.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeSpec {
    Branch {
        feature: usize,
        rule: Rule,
        missing_tracks_true: bool,
        true_child: usize,
        false_child: usize,
    },
    /// `(target or class index, weight)` pairs in the order ORT applies them. [`parse`] gives a
    /// single-target ensemble's leaves exactly one pair (ORT uses only the first weight there,
    /// and a leaf without one contributes its own `nodes_values` entry).
    Leaf {
        weights: Vec<(usize, f64)>,
    },
}

/// One tree; its root is `nodes[0]`. `node_ids[i]` is the id `nodes[i]` had in the ONNX node
/// (`nodes_nodeids` for v1–3, the index into the node or leaf arrays for v5), so that a graph
/// rewrite can find a leaf again (skl2onnx's IsolationForest stores the leaf's node id as its
/// weight).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TreeSpec {
    pub nodes: Vec<NodeSpec>,
    pub node_ids: Vec<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    Sum,
    /// The sum divided by the number of trees (not by the number of contributions).
    Average,
    Min,
    Max,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Labels {
    Int(Vec<i64>),
    Str(Vec<String>),
}

/// Which operator the spec came from, and what its outputs are.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// `TreeEnsembleRegressor`: `Y` float [N, n_targets], also for double input.
    Regressor,
    /// `TreeEnsembleClassifier`: label [N] and float scores [N, n_classes].
    Classifier {
        labels: Labels,
        /// ORT's `binary_case_`: two classes and a single class id used by all weights.
        binary_case: bool,
        /// No class weight is negative (decides the binary threshold: 0.5 or 0).
        weights_all_positive: bool,
    },
    /// `TreeEnsemble` (v5): `Y` [N, n_targets] of the input's type.
    TreeEnsemble,
}

/// A parsed tree-ensemble node: everything the kernel needs, in ORT's terms.
#[derive(Clone, Debug, PartialEq)]
pub struct EnsembleSpec {
    pub op: Op,
    /// Trees in the order ORT sums them.
    pub trees: Vec<TreeSpec>,
    /// Targets (regressors) or classes (classifier). 1 selects ORT's single-output path.
    pub n_outputs: usize,
    pub aggregate: Aggregate,
    pub post_transform: PostTransform,
    pub base_values: Vec<f64>,
    /// Features the input must have: ORT refuses inputs narrower than its largest feature id + 1
    /// (counting every node, leaves included).
    pub required_width: usize,
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Compiles a tree-ensemble node into a kernel. Input: one tensor [N, F] (or [F], which ORT reads
/// as one row of one feature) of float, double or int64 (int64 is compared as float, as ORT does
/// for integer inputs).
pub fn compile(node: &NodeProto) -> Result<Box<dyn Kernel>, String> {
    let spec = parse(node)?;
    Ok(Box::new(TreeKernel::new(spec)?))
}

/// Reads a `TreeEnsembleRegressor`, `TreeEnsembleClassifier` or `TreeEnsemble` node.
pub fn parse(node: &NodeProto) -> Result<EnsembleSpec, String> {
    let spec = match node.op_type.as_str() {
        "TreeEnsembleRegressor" => parse_v3(node, false)?,
        "TreeEnsembleClassifier" => parse_v3(node, true)?,
        "TreeEnsemble" => parse_v5(node)?,
        other => return Err(format!("{other} is not a tree ensemble")),
    };
    for tree in &spec.trees {
        inspect(tree)?;
    }
    Ok(spec)
}

/// FxHash: node ids are small integers, and SipHash made loading a 2.5M-node forest take seconds.
#[derive(Default, Clone, Copy)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(*b as u64);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_i64(&mut self, v: i64) {
        self.write_u64(v as u64);
    }
    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

/// `name` (floats) or `name_as_tensor` (doubles, for double inputs); ORT refuses both at once.
fn floats_or_tensor(node: &NodeProto, name: &str) -> Result<Vec<f64>, String> {
    let plain = node.floats(name);
    if let Some(t) = node.tensor(&format!("{name}_as_tensor")) {
        let values = t.to_f64().ok_or_else(|| format!("{name}_as_tensor has an unsupported type"))?;
        if !values.is_empty() {
            if !plain.is_empty() {
                return Err(format!("both {name} and {name}_as_tensor are set"));
            }
            return Ok(values);
        }
    }
    Ok(plain.iter().map(|v| *v as f64).collect())
}

fn aggregate_named(name: &str) -> Result<Aggregate, String> {
    Ok(match name {
        "SUM" => Aggregate::Sum,
        "AVERAGE" => Aggregate::Average,
        "MIN" => Aggregate::Min,
        "MAX" => Aggregate::Max,
        other => return Err(format!("unknown aggregate_function '{other}'")),
    })
}

fn transform_named(name: &str) -> Result<PostTransform, String> {
    Ok(match name {
        "NONE" => PostTransform::None,
        "LOGISTIC" => PostTransform::Logistic,
        "SOFTMAX" => PostTransform::Softmax,
        "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
        "PROBIT" => PostTransform::Probit,
        other => return Err(format!("unknown post_transform '{other}'")),
    })
}

fn check_ids(ids: &[i64], n: usize, what: &str) -> Result<(), String> {
    match ids.iter().find(|&&i| i < 0 || i as u64 >= n as u64) {
        Some(bad) => Err(format!("{what} {bad} is outside 0..{n}")),
        None => Ok(()),
    }
}

fn feature_index(f: i64) -> Result<usize, String> {
    if (0..MAX_FEATURE as i64).contains(&f) {
        Ok(f as usize)
    } else {
        Err(format!("feature id {f} is out of range"))
    }
}

/// ai.onnx.ml 1–3. ORT lays each tree out from its root, the first node listed after the tree id
/// changes in `nodes_treeids` (a tree id seen again later starts another "tree").
fn parse_v3(node: &NodeProto, classifier: bool) -> Result<EnsembleSpec, String> {
    let tree_ids = node.ints("nodes_treeids");
    let node_ids = node.ints("nodes_nodeids");
    let features = node.ints("nodes_featureids");
    let modes: &[Vec<u8>] = node.attr("nodes_modes").map_or(&[], |a| a.strings.as_slice());
    let trues = node.ints("nodes_truenodeids");
    let falses = node.ints("nodes_falsenodeids");
    let missing = node.ints("nodes_missing_value_tracks_true");
    let values = floats_or_tensor(node, "nodes_values")?;
    let n = tree_ids.len();
    for (name, len) in [
        ("nodes_nodeids", node_ids.len()),
        ("nodes_featureids", features.len()),
        ("nodes_modes", modes.len()),
        ("nodes_truenodeids", trues.len()),
        ("nodes_falsenodeids", falses.len()),
        ("nodes_values", values.len()),
    ] {
        if len != n {
            return Err(format!("{name} has {len} entries for {n} nodes"));
        }
    }

    let prefix = if classifier { "class" } else { "target" };
    let w_trees = node.ints(&format!("{prefix}_treeids"));
    let w_nodes = node.ints(&format!("{prefix}_nodeids"));
    let w_ids = node.ints(&format!("{prefix}_ids"));
    let w_values = floats_or_tensor(node, &format!("{prefix}_weights"))?;
    if w_trees.len() != w_ids.len() || w_nodes.len() != w_ids.len() || w_values.len() != w_ids.len() {
        return Err(format!("the {prefix}_* attributes have different lengths"));
    }

    let (op, n_outputs, aggregate) = if classifier {
        let strings = node.strings("classlabels_strings");
        let labels = if strings.is_empty() {
            Labels::Int(node.ints("classlabels_int64s").to_vec())
        } else {
            Labels::Str(strings)
        };
        let count = match &labels {
            Labels::Int(v) => v.len(),
            Labels::Str(v) => v.len(),
        };
        let mut used: Vec<i64> = w_ids.to_vec();
        used.sort_unstable();
        used.dedup();
        let op = Op::Classifier {
            labels,
            binary_case: count == 2 && used.len() == 1,
            // ORT tests `w < 0`, which a NaN weight fails.
            weights_all_positive: w_values.iter().all(|w| *w >= 0.0 || w.is_nan()),
        };
        // The classifier's schema has no aggregate_function: ORT always sums.
        (op, count, Aggregate::Sum)
    } else {
        let targets = node.int("n_targets", 0);
        let agg = aggregate_named(&node.string("aggregate_function").unwrap_or_else(|| "SUM".into()))?;
        (Op::Regressor, usize::try_from(targets).unwrap_or(0), agg)
    };
    if n_outputs == 0 || n_outputs > MAX_OUTPUTS {
        return Err(format!("the number of targets or classes must be 1 to {MAX_OUTPUTS}"));
    }
    check_ids(w_ids, n_outputs, &format!("{prefix}_ids value"))?;
    let post_transform = transform_named(&node.string("post_transform").unwrap_or_else(|| "NONE".into()))?;
    let base_values = floats_or_tensor(node, "base_values")?;
    check_base(&op, n_outputs, base_values.len())?;
    if let Op::Classifier { labels: Labels::Str(_), .. } = &op {
        if n_outputs == 1 {
            // ORT labels such a row with class index 1, past the end of a one-string list.
            return Err("a classifier with one string label is not supported".into());
        }
    }

    // Modes as codes: 0 LEAF, 1..=6 LEQ, LT, GTE, GT, EQ, NEQ.
    let mut mode = Vec::with_capacity(n);
    for m in modes {
        mode.push(match m.as_slice() {
            b"LEAF" => 0u8,
            b"BRANCH_LEQ" => 1,
            b"BRANCH_LT" => 2,
            b"BRANCH_GTE" => 3,
            b"BRANCH_GT" => 4,
            b"BRANCH_EQ" => 5,
            b"BRANCH_NEQ" => 6,
            other => return Err(format!("unknown node mode '{}'", String::from_utf8_lossy(other))),
        });
    }
    let is_leaf = |i: usize| mode[i] == 0;
    let index = NodeIndex::new(tree_ids, node_ids)?;
    let child = |i: usize, id: i64, which: &str| -> Result<usize, String> {
        if id < 0 || id as u64 >= n as u64 {
            return Err(format!("node {} of tree {}: {which} node {id} is out of range", node_ids[i], tree_ids[i]));
        }
        match index.get(index.slot_of[i] as usize, id) {
            Some(c) if c == i => Err(format!("node {} of tree {} points to itself", node_ids[i], tree_ids[i])),
            Some(c) => Ok(c),
            None => Err(format!("node {} of tree {}: {which} node {id} does not exist", node_ids[i], tree_ids[i])),
        }
    };
    let mut kids = vec![(0usize, 0usize); n];
    for i in 0..n {
        if !is_leaf(i) {
            kids[i] = (child(i, trues[i], "true")?, child(i, falses[i], "false")?);
        }
    }
    let mut required_width = 1;
    for &f in features {
        required_width = required_width.max(feature_index(f)? + 1);
    }

    // Weights per leaf, in attribute order (ORT sorts them by (tree, node) with a stable tie):
    // `flat[start[i]..start[i + 1]]` for the node at position i.
    let mut at = Vec::with_capacity(w_ids.len());
    let mut start = vec![0usize; n + 1];
    for k in 0..w_ids.len() {
        let i = index.tree(w_trees[k]).and_then(|slot| index.get(slot, w_nodes[k])).ok_or_else(|| {
            format!("a weight names node {} of tree {}, which does not exist", w_nodes[k], w_trees[k])
        })?;
        at.push(i);
        start[i + 1] += 1;
    }
    for i in 0..n {
        start[i + 1] += start[i];
    }
    let mut fill = start.clone();
    let mut flat = vec![(0usize, 0.0f64); w_ids.len()];
    for (k, &i) in at.iter().enumerate() {
        flat[fill[i]] = (w_ids[k] as usize, w_values[k]);
        fill[i] += 1;
    }
    let leaf_weights = |i: usize| &flat[start[i]..start[i + 1]];

    let mut trees = Vec::new();
    // slot[i]: node i's index in the tree being built (u32::MAX: not yet); reset per tree.
    let mut slot = vec![u32::MAX; n];
    let mut touched = Vec::new();
    for root in 0..n {
        if root > 0 && tree_ids[root] == tree_ids[root - 1] {
            continue;
        }
        for &i in &touched {
            slot[i] = u32::MAX;
        }
        touched.clear();
        let count = index.counts[index.slot_of[root] as usize];
        let mut spec = TreeSpec { nodes: Vec::with_capacity(count), node_ids: Vec::with_capacity(count) };
        let mut stack = vec![root];
        slot[root] = 0;
        touched.push(root);
        spec.nodes.push(NodeSpec::Leaf { weights: Vec::new() });
        spec.node_ids.push(node_ids[root]);
        while let Some(i) = stack.pop() {
            let at = slot[i] as usize;
            let node = if is_leaf(i) {
                let weights = if n_outputs == 1 {
                    vec![leaf_weights(i).first().copied().unwrap_or((0, values[i]))]
                } else {
                    leaf_weights(i).to_vec()
                };
                NodeSpec::Leaf { weights }
            } else {
                let mut target = |c: usize| {
                    if slot[c] == u32::MAX {
                        slot[c] = spec.nodes.len() as u32;
                        touched.push(c);
                        spec.nodes.push(NodeSpec::Leaf { weights: Vec::new() });
                        spec.node_ids.push(node_ids[c]);
                        stack.push(c);
                    }
                    slot[c] as usize
                };
                let (t, f) = (target(kids[i].0), target(kids[i].1));
                let v = values[i];
                let rule = match mode[i] {
                    1 => Rule::Leq(v),
                    2 => Rule::Lt(v),
                    3 => Rule::Gte(v),
                    4 => Rule::Gt(v),
                    5 => Rule::Eq(v),
                    _ => Rule::Neq(v),
                };
                NodeSpec::Branch {
                    feature: features[i] as usize,
                    rule,
                    missing_tracks_true: missing.get(i) == Some(&1),
                    true_child: t,
                    false_child: f,
                }
            };
            spec.nodes[at] = node;
        }
        trees.push(spec);
    }
    Ok(EnsembleSpec { op, trees, n_outputs, aggregate, post_transform, base_values, required_width })
}

/// (tree id, node id) -> position in the node arrays, as ORT resolves child ids. Trees are few
/// and found in a small map; converters number a tree's nodes 0..n, so node ids index a dense
/// table per tree (a map when they are sparse). One global map of millions of pairs made loading
/// a 2.5M-node forest take a second, mostly in cache misses.
struct NodeIndex {
    trees: FastMap<i64, usize>,
    /// The tree slot of each position.
    slot_of: Vec<u32>,
    tables: Vec<Table>,
    /// Nodes per tree slot.
    counts: Vec<usize>,
}

enum Table {
    Dense(Vec<u32>),
    Sparse(FastMap<i64, u32>),
}

impl NodeIndex {
    fn new(tree_ids: &[i64], node_ids: &[i64]) -> Result<Self, String> {
        let mut trees: FastMap<i64, usize> = FastMap::default();
        let mut slot_of = Vec::with_capacity(tree_ids.len());
        let mut stats: Vec<(usize, i64, i64)> = Vec::new(); // (count, min id, max id)
        for (&t, &id) in tree_ids.iter().zip(node_ids) {
            let next = trees.len();
            let slot = *trees.entry(t).or_insert(next);
            if slot == stats.len() {
                stats.push((0, id, id));
            }
            let st = &mut stats[slot];
            *st = (st.0 + 1, st.1.min(id), st.2.max(id));
            slot_of.push(slot as u32);
        }
        let mut tables: Vec<Table> = stats
            .iter()
            .map(|&(count, min, max)| {
                if min >= 0 && (max as u64) < 2 * count as u64 + 64 {
                    Table::Dense(vec![u32::MAX; max as usize + 1])
                } else {
                    Table::Sparse(FastMap::default())
                }
            })
            .collect();
        for (i, (&slot, &id)) in slot_of.iter().zip(node_ids).enumerate() {
            let fresh = match &mut tables[slot as usize] {
                Table::Dense(v) => std::mem::replace(&mut v[id as usize], i as u32) == u32::MAX,
                Table::Sparse(m) => m.insert(id, i as u32).is_none(),
            };
            if !fresh {
                return Err(format!("node {id} appears twice in tree {}", tree_ids[i]));
            }
        }
        Ok(NodeIndex { trees, slot_of, tables, counts: stats.iter().map(|s| s.0).collect() })
    }

    fn tree(&self, tree_id: i64) -> Option<usize> {
        self.trees.get(&tree_id).copied()
    }

    fn get(&self, slot: usize, id: i64) -> Option<usize> {
        let at = match &self.tables[slot] {
            Table::Dense(v) => usize::try_from(id).ok().and_then(|i| v.get(i)).copied(),
            Table::Sparse(m) => m.get(&id).copied(),
        };
        at.filter(|&i| i != u32::MAX).map(|i| i as usize)
    }
}

/// ORT 1.32 refuses base values of other sizes (a classifier with two classes takes up to two).
fn check_base(op: &Op, n_outputs: usize, len: usize) -> Result<(), String> {
    let ok = match op {
        Op::Classifier { .. } if n_outputs <= 2 => len <= 2 && !(n_outputs == 1 && len == 2),
        _ => len == 0 || len == n_outputs,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{len} base values for {n_outputs} targets or classes"))
    }
}

/// ai.onnx.ml 5, as ORT 1.32 converts it to the v1–3 form: `BRANCH_MEMBER` with a small set of
/// values in 0..=30 becomes a chain of `BRANCH_EQ` (then fused like any chain), a larger set a
/// truncating integer set; a root whose two branches name the same leaf is that leaf.
fn parse_v5(node: &NodeProto) -> Result<EnsembleSpec, String> {
    let tensor = |name: &str| -> Result<Vec<f64>, String> {
        match node.tensor(name) {
            Some(t) => t.to_f64().ok_or_else(|| format!("{name} has an unsupported type")),
            None => Ok(Vec::new()),
        }
    };
    let splits = tensor("nodes_splits")?;
    let leaf_weights = tensor("leaf_weights")?;
    let membership = tensor("membership_values")?;
    let modes: Vec<i64> = match node.tensor("nodes_modes") {
        Some(t) => t.to_i64().ok_or("nodes_modes has an unsupported type")?,
        None => Vec::new(),
    };
    let features = node.ints("nodes_featureids");
    let trues = node.ints("nodes_truenodeids");
    let falses = node.ints("nodes_falsenodeids");
    let true_leaf = node.ints("nodes_trueleafs");
    let false_leaf = node.ints("nodes_falseleafs");
    let missing = node.ints("nodes_missing_value_tracks_true");
    let roots = node.ints("tree_roots");
    let targets = node.ints("leaf_targetids");
    let n = features.len();
    for (name, len) in [
        ("nodes_modes", modes.len()),
        ("nodes_splits", splits.len()),
        ("nodes_truenodeids", trues.len()),
        ("nodes_falsenodeids", falses.len()),
        ("nodes_trueleafs", true_leaf.len()),
        ("nodes_falseleafs", false_leaf.len()),
    ] {
        if len != n {
            return Err(format!("{name} has {len} entries for {n} nodes"));
        }
    }
    if !missing.is_empty() && missing.len() != n {
        return Err("nodes_missing_value_tracks_true does not match the nodes".into());
    }
    if targets.len() != leaf_weights.len() {
        return Err("leaf_targetids and leaf_weights differ in length".into());
    }
    let n_outputs = usize::try_from(node.int("n_targets", 0)).unwrap_or(0);
    if n_outputs == 0 || n_outputs > MAX_OUTPUTS {
        return Err(format!("n_targets must be 1 to {MAX_OUTPUTS}"));
    }
    check_ids(targets, n_outputs, "leaf_targetids value")?;
    check_ids(roots, n, "tree_roots value")?;
    let aggregate = match node.int("aggregate_function", 1) {
        0 => Aggregate::Average,
        1 => Aggregate::Sum,
        2 => Aggregate::Min,
        3 => Aggregate::Max,
        other => return Err(format!("unknown aggregate_function {other}")),
    };
    // ORT maps the integer through its own enum, where 1 is LOGISTIC and 2 SOFTMAX (the ONNX
    // specification says the opposite); what ORT computes is what we must match.
    let post_transform = match node.int("post_transform", 0) {
        0 => PostTransform::None,
        1 => PostTransform::Logistic,
        2 => PostTransform::Softmax,
        3 => PostTransform::SoftmaxZero,
        4 => PostTransform::Probit,
        other => return Err(format!("unknown post_transform {other}")),
    };

    // Membership sets, NaN-separated, one per BRANCH_MEMBER node in node order.
    let mut sets: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut pos = 0;
    for i in 0..n {
        if modes[i] == 6 {
            while pos < membership.len() && !membership[pos].is_nan() {
                sets[i].push(membership[pos]);
                pos += 1;
            }
            pos += 1;
            if sets[i].is_empty() {
                return Err(format!("BRANCH_MEMBER node {i} has no values"));
            }
        }
    }
    let mut required_width = 1;
    for &f in features {
        required_width = required_width.max(feature_index(f)? + 1);
    }

    let n_leaves = leaf_weights.len();
    let leaf = |l: i64| -> Result<NodeSpec, String> {
        if l < 0 || l as usize >= n_leaves {
            return Err(format!("leaf {l} is out of range"));
        }
        let l = l as usize;
        Ok(NodeSpec::Leaf { weights: vec![(targets[l] as usize, leaf_weights[l])] })
    };
    let mut trees = Vec::with_capacity(roots.len());
    for &root in roots {
        let r = root as usize;
        let mut spec = TreeSpec::default();
        if trues[r] == falses[r] && true_leaf[r] != 0 && false_leaf[r] != 0 {
            spec.nodes.push(leaf(trues[r])?);
            spec.node_ids.push(trues[r]);
            trees.push(spec);
            continue;
        }
        // Slots keyed by (is leaf, index); a node's first slot is the head of its EQ chain.
        let mut slot: FastMap<(bool, usize), usize> = FastMap::default();
        let mut stack = vec![r];
        slot.insert((false, r), 0);
        spec.nodes.push(NodeSpec::Leaf { weights: Vec::new() });
        spec.node_ids.push(root);
        while let Some(i) = stack.pop() {
            let at = slot[&(false, i)];
            let mut target = |is_leaf: bool, c: i64| -> Result<usize, String> {
                if c < 0 || (!is_leaf && c as usize >= n) {
                    return Err(format!("node {i}: child {c} is out of range"));
                }
                let key = (is_leaf, c as usize);
                if let Some(&s) = slot.get(&key) {
                    return Ok(s);
                }
                spec.nodes.push(if is_leaf { leaf(c)? } else { NodeSpec::Leaf { weights: Vec::new() } });
                spec.node_ids.push(c);
                if !is_leaf {
                    stack.push(c as usize);
                }
                slot.insert(key, spec.nodes.len() - 1);
                Ok(spec.nodes.len() - 1)
            };
            let t = target(true_leaf[i] != 0, trues[i])?;
            let f = target(false_leaf[i] != 0, falses[i])?;
            let feature = features[i] as usize;
            let mvt = missing.get(i) == Some(&1);
            let branch = |rule: Rule, true_child: usize, false_child: usize| NodeSpec::Branch {
                feature,
                rule,
                missing_tracks_true: mvt,
                true_child,
                false_child,
            };
            let v = splits[i];
            let node = match modes[i] {
                0 => branch(Rule::Leq(v), t, f),
                1 => branch(Rule::Lt(v), t, f),
                2 => branch(Rule::Gte(v), t, f),
                3 => branch(Rule::Gt(v), t, f),
                4 => branch(Rule::Eq(v), t, f),
                5 => branch(Rule::Neq(v), t, f),
                6 => {
                    let set = &sets[i];
                    let small = set.len() < 31 && set.iter().all(|v| (0.0..=30.0).contains(v));
                    if small {
                        // EQ chain: each value's false branch tests the next one.
                        let mut next_false = f;
                        for &value in set[1..].iter().rev() {
                            spec.nodes.push(branch(Rule::Eq(value), t, next_false));
                            spec.node_ids.push(i as i64);
                            next_false = spec.nodes.len() - 1;
                        }
                        branch(Rule::Eq(set[0]), t, next_false)
                    } else {
                        let mut ints = Vec::with_capacity(set.len());
                        for &value in set {
                            if value.fract() != 0.0 || !(i32::MIN as f64..=i32::MAX as f64).contains(&value) {
                                return Err(format!("membership value {value} is not an int32 (ORT refuses it)"));
                            }
                            ints.push(value as i32);
                        }
                        ints.sort_unstable();
                        ints.dedup();
                        branch(Rule::MemberTrunc(ints), t, f)
                    }
                }
                other => return Err(format!("unknown node mode {other}")),
            };
            spec.nodes[at] = node;
        }
        trees.push(spec);
    }
    Ok(EnsembleSpec {
        op: Op::TreeEnsemble,
        trees,
        n_outputs,
        aggregate,
        post_transform,
        base_values: Vec::new(),
        required_width,
    })
}

/// ORT 1.32 fuses a `BRANCH_EQ` whose false child is a `BRANCH_EQ` on the same feature with the
/// same true child (and so on down the chain) into one bit-mask test when every value is an
/// integer in 1..=32 (float thresholds) or 1..=64 (double thresholds). The fused node keeps the
/// first node's `missing_tracks_true`, which changes where NaN goes when the chain's flags
/// differ. The kernel fuses the same chains, visiting nodes in ORT's order (pre-order, false
/// child first); `None` when the tree has no such chain.
fn fuse_eq_chains(tree: &TreeSpec, max: f64) -> Option<TreeSpec> {
    let fusable = |node: &NodeSpec| match node {
        NodeSpec::Branch { rule: Rule::Eq(v), .. } => v.fract() == 0.0 && (1.0..=max).contains(v),
        _ => false,
    };
    if !tree.nodes.iter().any(fusable) {
        return None;
    }
    let mut tree = tree.clone();
    let mut seen = vec![false; tree.nodes.len()];
    let mut stack = vec![0usize];
    while let Some(i) = stack.pop() {
        if seen[i] {
            continue;
        }
        seen[i] = true;
        let NodeSpec::Branch { feature, true_child, false_child, .. } = tree.nodes[i] else { continue };
        if fusable(&tree.nodes[i]) {
            let mut values = Vec::new();
            if let NodeSpec::Branch { rule: Rule::Eq(v), .. } = &tree.nodes[i] {
                values.push(*v);
            }
            let mut end = false_child;
            while !seen[end] && fusable(&tree.nodes[end]) {
                let NodeSpec::Branch { feature: f2, true_child: t2, false_child: f_next, rule: Rule::Eq(v), .. } =
                    &tree.nodes[end]
                else {
                    break;
                };
                if *f2 != feature || *t2 != true_child {
                    break;
                }
                values.push(*v);
                seen[end] = true;
                end = *f_next;
            }
            if values.len() > 1 {
                if let NodeSpec::Branch { rule, false_child: fc, .. } = &mut tree.nodes[i] {
                    *rule = Rule::Member(values);
                    *fc = end;
                }
            }
            stack.push(true_child);
            stack.push(end);
            continue;
        }
        stack.push(true_child);
        stack.push(false_child);
    }
    Some(tree)
}

/// Shape facts about a tree, after checking its indices and that it has no cycle.
struct Shape {
    /// Branches on the longest root-to-leaf path.
    depth: usize,
    branches: usize,
    /// Some reachable branch uses `==`, `!=` or a set (pointer walk only).
    complex: bool,
    max_feature: usize,
}

fn inspect(tree: &TreeSpec) -> Result<Shape, String> {
    let n = tree.nodes.len();
    if n == 0 {
        return Err("a tree has no nodes".into());
    }
    // Iterative depth-first search: 0 = new, 1 = on the stack, 2 = done (depth known).
    let mut state = vec![0u8; n];
    let mut depth = vec![0usize; n];
    let mut shape = Shape { depth: 0, branches: 0, complex: false, max_feature: 0 };
    let mut stack = vec![(0usize, false)];
    while let Some((i, expanded)) = stack.pop() {
        match &tree.nodes[i] {
            NodeSpec::Leaf { .. } => state[i] = 2,
            NodeSpec::Branch { feature, rule, true_child, false_child, .. } => {
                let (t, f) = (*true_child, *false_child);
                if t >= n || f >= n {
                    return Err(format!("a branch points to node {} of a {n}-node tree", t.max(f)));
                }
                if expanded {
                    depth[i] = 1 + depth[t].max(depth[f]);
                    state[i] = 2;
                    continue;
                }
                match state[i] {
                    2 => continue,
                    1 => return Err("a tree has a cycle".into()),
                    _ => {}
                }
                state[i] = 1;
                shape.branches += 1;
                shape.max_feature = shape.max_feature.max(*feature);
                if *feature >= MAX_FEATURE {
                    return Err(format!("feature id {feature} is out of range"));
                }
                shape.complex |= !matches!(rule, Rule::Leq(_) | Rule::Lt(_) | Rule::Gte(_) | Rule::Gt(_));
                stack.push((i, true));
                for c in [t, f] {
                    match state[c] {
                        1 => return Err("a tree has a cycle".into()),
                        0 => stack.push((c, false)),
                        _ => {}
                    }
                }
            }
        }
    }
    shape.depth = depth[0];
    Ok(shape)
}

// ---------------------------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------------------------

/// The float types the kernels compute in (ORT's threshold and accumulator type).
trait Float:
    Copy
    + PartialOrd
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
    + std::ops::Add<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
{
    const ZERO: Self;
    const NAN: Self;
    fn from_f64(v: f64) -> Self;
    fn from_f32(v: f32) -> Self;
    fn to_f32(self) -> f32;
    fn is_nan(self) -> bool;
    /// The largest value below `self` (NaN for -inf, so that `x <= below(-inf)` never holds).
    fn below(self) -> Self;
    /// x86's truncating cast to i32: NaN and values out of range give `i32::MIN`.
    fn to_i32_x86(self) -> i32;
    /// The largest value ORT fuses into a `BRANCH_EQ` chain's bit mask (the type's bits).
    const FUSE_MAX: f64;
}

macro_rules! float_impl {
    ($t:ty, $bits:expr) => {
        impl Float for $t {
            const ZERO: Self = 0.0;
            const FUSE_MAX: f64 = $bits;
            const NAN: Self = <$t>::NAN;
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            fn from_f32(v: f32) -> Self {
                v as $t
            }
            fn to_f32(self) -> f32 {
                self as f32
            }
            fn is_nan(self) -> bool {
                self != self
            }
            fn below(self) -> Self {
                if self.is_nan() || self == <$t>::NEG_INFINITY {
                    <$t>::NAN
                } else if self == 0.0 {
                    -<$t>::from_bits(1)
                } else if self > 0.0 {
                    <$t>::from_bits(self.to_bits() - 1)
                } else {
                    <$t>::from_bits(self.to_bits() + 1)
                }
            }
            fn to_i32_x86(self) -> i32 {
                if (-2147483648.0..2147483648.0).contains(&self) {
                    self as i32
                } else {
                    i32::MIN
                }
            }
        }
    };
}
float_impl!(f32, 32.0);
float_impl!(f64, 64.0);

/// Feature word flags: the row goes to the true side when the value is NaN; the node is a
/// complex test whose index into `TreeCode::complex` is in the low bits. Otherwise the low bits
/// are the feature's column offset in a block, `feature * BLOCK_ROWS`.
const NAN_TRUE: u32 = 1 << 31;
const COMPLEX: u32 = 1 << 30;
const FEAT_MASK: u32 = COMPLEX - 1;
/// Features are numbered below this (their column offsets fit the feature word).
const MAX_FEATURE: usize = (FEAT_MASK as usize + 1) / BLOCK_ROWS;
/// Leaf ids (and walk indices) stay below this.
const MAX_INDEX: usize = 1 << 31;

/// Trees up to this depth (4,095 array nodes) are laid out entirely as a perfect array when the
/// padding stays within 4x their branches...
const PERFECT_MAX_DEPTH: usize = 12;
/// ...other trees get this many array levels, then the tail (or the walk). An array step costs
/// about half a tail step (the child is computed, not loaded, and no lane checks whether it
/// moved), so padding pays even in sparse trees. Measured on skl2onnx exports (100 trees, 2,048
/// rows): random forests of depth 10 (200 branches, all in the array) run 20% slower with 8
/// array levels; fully grown ones (depth 16-24, 160 branches) 4% slower with 8 and 6% with 6,
/// and 2% faster with 12 (not worth 4x the memory); ExtraTrees of depth 12 (1,240 branches, a
/// 48 KB array each, 4.8 MB in all, more than L2) 10-15% slower with 8 or 10 levels and a tail.
const HYBRID_TOP_LEVELS: usize = 10;
/// Perfect trees up to this depth without NaN-true nodes are evaluated a block at a time by
/// column: every node's test for every row, as one bit each (plain loops the compiler turns into
/// SIMD), then each row's leaf from a table indexed by its bits. Cheaper than walking while the
/// tree is small (gradient boosting's depth 3): 7 vector tests per row against 3 dependent
/// scalar steps. The table has 2^(2^depth - 1) entries.
const VECTOR_MAX_DEPTH: usize = 3;
/// Rows evaluated in lock step (their independent loads overlap in the CPU).
const LANES: usize = 16;
/// Rows per block: the block's rows stay in L1/L2 while every tree visits them.
const BLOCK_ROWS: usize = 512;

/// What an array exit holds (selects the kernel's loop): a leaf id, a tail node, a walk node.
const EXIT_LEAF: u8 = 0;
const EXIT_TAIL: u8 = 1;
const EXIT_WALK: u8 = 2;

/// An array node: the row goes to child `2i + 1` when `x[feat] <= thr` (or the value is NaN and
/// `feat` has `NAN_TRUE`), else to `2i + 2`.
#[derive(Clone, Copy, Debug)]
struct Split<T> {
    thr: T,
    feat: u32,
}

/// A walk node: `next[0]` when `x[feat] <= thr` (or NaN with `NAN_TRUE`), else `next[1]`. Leaves
/// are walk nodes too, from `TreeCode::first_leaf` on, looping to themselves: rows walked in lock
/// step just stay there until every lane has arrived.
#[derive(Clone, Copy, Debug)]
struct Step<T> {
    feat: u32,
    thr: T,
    next: [u32; 2],
}

/// A tail node (below the array, in trees too deep or too sparse for it): the row goes to
/// `kids` when `x[feat] <= thr` (or NaN with `NAN_TRUE`), else to `kids + 1`. Siblings sit side
/// by side, so a node holds one child index and a step is the array's arithmetic. Leaves are
/// tail nodes too, looping to themselves (`thr` NaN, `kids` their own index - 1).
#[derive(Clone, Copy, Debug)]
struct Node<T> {
    thr: T,
    feat: u32,
    kids: u32,
}

/// A test that is not `x <= t`, evaluated with a `match` (equality and set rules).
#[derive(Clone, Debug)]
struct Complex<T> {
    feature: usize,
    test: Test<T>,
    missing_tracks_true: bool,
    next: [u32; 2],
}

#[derive(Clone, Debug)]
enum Test<T> {
    Eq(T),
    Neq(T),
    Member(Vec<T>),
    Trunc(Vec<i32>),
}

/// One tree, laid out: `levels` array levels (node `i` has children `2i + 1` (true) and `2i + 2`),
/// whose `2^levels` exits are leaf ids, or (when the tree is deeper) walk nodes.
#[derive(Clone, Debug)]
struct TreeCode<T> {
    levels: usize,
    /// Rows must have more values than this (padding nodes read feature 0).
    max_feature: usize,
    /// Some array or tail node sends NaN to its true side (selects the slower loop).
    nan_in_top: bool,
    top: Vec<Split<T>>,
    /// Per array exit: a leaf id, or where the tree goes on below the array (a tail or walk node).
    exits: Vec<u32>,
    /// Below the array, when every test is an order test and no node has two parents.
    tail: Vec<Node<T>>,
    /// Per tail node: its leaf id (`u32::MAX` for a branch).
    tail_leaf: Vec<u32>,
    /// Below the array otherwise (complex tests, shared children): nodes with two child indices.
    walk: Vec<Step<T>>,
    first_leaf: u32,
    /// Leaf id of walk node `first_leaf + i`.
    walk_leaf: Vec<u32>,
    complex: Vec<Complex<T>>,
    /// Every leaf holds exactly one weight, for this target (gradient boosting's trees): its
    /// first-weight value is all there is to add.
    target: Option<u32>,
    /// Small perfect trees: the leaf id for each set of array-node test results (bit k: node k
    /// holds); empty for other trees.
    by_bits: Vec<u32>,
}

/// A branch rewritten to `x <= thr` selecting `next[0]`, NaN selecting `next[0]` when `nan_true`.
fn normalize<T: Float>(rule: &Rule, mvt: bool, t: usize, f: usize) -> Option<(T, bool, [usize; 2])> {
    Some(match *rule {
        // Against a NaN threshold every order test fails; only a tracked NaN goes true.
        Rule::Leq(v) | Rule::Lt(v) | Rule::Gte(v) | Rule::Gt(v) if v.is_nan() => (T::NAN, mvt, [t, f]),
        Rule::Leq(v) => (T::from_f64(v), mvt, [t, f]),
        Rule::Lt(v) => (T::from_f64(v).below(), mvt, [t, f]),
        // x >= v is !(x < v) for numbers: swap the children; NaN went true iff mvt.
        Rule::Gte(v) => (T::from_f64(v).below(), !mvt, [f, t]),
        Rule::Gt(v) => (T::from_f64(v), !mvt, [f, t]),
        _ => return None,
    })
}

/// A node's feature word: the feature's column offset in a block, plus the NaN flag.
fn flagged(feature: usize, nan_true: bool) -> u32 {
    (feature * BLOCK_ROWS) as u32 | if nan_true { NAN_TRUE } else { 0 }
}

/// Lays out one tree; `leaf_of` numbers its leaves (spec indices) in the forest's leaf tables.
fn lay_out<T: Float>(tree: &TreeSpec, shape: &Shape, leaf_of: &mut dyn FnMut(usize) -> u32) -> TreeCode<T> {
    let levels = array_levels(shape);
    let mut code = TreeCode {
        levels,
        max_feature: shape.max_feature,
        nan_in_top: false,
        top: Vec::with_capacity((1 << levels) - 1),
        exits: Vec::with_capacity(1 << levels),
        tail: Vec::new(),
        tail_leaf: Vec::new(),
        walk: Vec::new(),
        first_leaf: 0,
        walk_leaf: Vec::new(),
        complex: Vec::new(),
        target: None,
        by_bits: Vec::new(),
    };
    // Array levels, level by level. A slot holds a spec node; a leaf above the last level is
    // padded down to it (its array nodes compare against NaN, which never holds, and both
    // children repeat the leaf).
    let mut level = vec![0usize];
    for _ in 0..levels {
        let mut next = Vec::with_capacity(level.len() * 2);
        for &i in &level {
            match &tree.nodes[i] {
                NodeSpec::Branch { feature, rule, missing_tracks_true, true_child, false_child } => {
                    let (thr, nan_true, kids) = normalize::<T>(rule, *missing_tracks_true, *true_child, *false_child)
                        .expect("trees with complex tests have no array levels");
                    code.nan_in_top |= nan_true;
                    code.top.push(Split { thr, feat: flagged(*feature, nan_true) });
                    next.extend(kids);
                }
                NodeSpec::Leaf { .. } => {
                    code.top.push(Split { thr: T::NAN, feat: 0 });
                    next.extend([i, i]);
                }
            }
        }
        level = next;
    }
    if level.iter().all(|&i| matches!(tree.nodes[i], NodeSpec::Leaf { .. })) {
        code.exits = level.iter().map(|&i| leaf_of(i)).collect();
        if levels <= VECTOR_MAX_DEPTH && !code.nan_in_top {
            code.by_bits = (0..1usize << code.top.len())
                .map(|bits| {
                    let mut i = 0;
                    for _ in 0..levels {
                        i = 2 * i + 2 - (bits >> i & 1);
                    }
                    code.exits[i + 1 - (1 << levels)]
                })
                .collect();
        }
        return code;
    }
    if !shape.complex && single_parents(tree) {
        lay_tail(tree, &level, leaf_of, &mut code);
        return code;
    }
    // Walk: branches below the exits in pre-order (true child first, so a path's nodes sit
    // together), then one self-looping node per leaf.
    let mut walk_of = vec![u32::MAX; tree.nodes.len()];
    let mut branches = Vec::new();
    let mut leaves = Vec::new();
    let mut stack: Vec<usize> = level.iter().rev().copied().collect();
    while let Some(i) = stack.pop() {
        if walk_of[i] != u32::MAX {
            continue;
        }
        match tree.nodes[i] {
            NodeSpec::Branch { true_child, false_child, .. } => {
                walk_of[i] = branches.len() as u32;
                branches.push(i);
                stack.push(false_child);
                stack.push(true_child);
            }
            NodeSpec::Leaf { .. } => {
                walk_of[i] = u32::MAX - 1; // numbered below, after every branch
                leaves.push(i);
            }
        }
    }
    code.first_leaf = branches.len() as u32;
    for (k, &i) in leaves.iter().enumerate() {
        walk_of[i] = code.first_leaf + k as u32;
    }
    for &i in &branches {
        let NodeSpec::Branch { feature, ref rule, missing_tracks_true, true_child, false_child } = tree.nodes[i] else {
            continue;
        };
        let step = match normalize::<T>(rule, missing_tracks_true, true_child, false_child) {
            Some((thr, nan_true, [a, b])) => {
                Step { feat: flagged(feature, nan_true), thr, next: [walk_of[a], walk_of[b]] }
            }
            None => {
                let test = match rule {
                    Rule::Eq(v) => Test::Eq(T::from_f64(*v)),
                    Rule::Neq(v) => Test::Neq(T::from_f64(*v)),
                    Rule::Member(vs) => Test::Member(vs.iter().map(|v| T::from_f64(*v)).collect()),
                    Rule::MemberTrunc(vs) => Test::Trunc(vs.clone()),
                    _ => unreachable!("normalize handles the order rules"),
                };
                let next = [walk_of[true_child], walk_of[false_child]];
                code.complex.push(Complex { feature, test, missing_tracks_true, next });
                Step { feat: COMPLEX | (code.complex.len() - 1) as u32, thr: T::NAN, next: [0, 0] }
            }
        };
        code.walk.push(step);
    }
    for (k, &i) in leaves.iter().enumerate() {
        let me = code.first_leaf + k as u32;
        code.walk.push(Step { feat: 0, thr: T::NAN, next: [me, me] });
        code.walk_leaf.push(leaf_of(i));
    }
    code.exits = level.iter().map(|&i| walk_of[i]).collect();
    code
}

/// How many levels of a tree go in the array: all of a tree the padding does not swell much,
/// else the top levels (the array's step is the cheapest; see [`HYBRID_TOP_LEVELS`]).
fn array_levels(shape: &Shape) -> usize {
    if shape.complex {
        0
    } else if shape.depth <= PERFECT_MAX_DEPTH && (1usize << shape.depth) <= 4 * shape.branches.max(16) {
        shape.depth
    } else {
        shape.depth.min(HYBRID_TOP_LEVELS)
    }
}

/// Whether no reachable node has two parents (or one parent twice): a tail node sits beside its
/// sibling, so it can have only one.
fn single_parents(tree: &TreeSpec) -> bool {
    let mut parents = vec![false; tree.nodes.len()];
    let mut stack = vec![0usize];
    while let Some(i) = stack.pop() {
        if let NodeSpec::Branch { true_child, false_child, .. } = tree.nodes[i] {
            for c in [true_child, false_child] {
                if std::mem::replace(&mut parents[c], true) {
                    return false;
                }
                stack.push(c);
            }
        }
    }
    true
}

/// The tail below the array's exits (`level`: spec nodes, a padded leaf repeated): the exits'
/// nodes, then each branch's children side by side (the side its test selects first), depth
/// first with that child first, so that a path's nodes sit together.
fn lay_tail<T: Float>(tree: &TreeSpec, level: &[usize], leaf_of: &mut dyn FnMut(usize) -> u32, code: &mut TreeCode<T>) {
    let mut tail_of = vec![u32::MAX; tree.nodes.len()];
    // The spec node at each tail slot.
    let mut order = Vec::new();
    for &i in level {
        if tail_of[i] == u32::MAX {
            tail_of[i] = order.len() as u32;
            order.push(i);
        }
    }
    code.exits = level.iter().map(|&i| tail_of[i]).collect();
    let blank = Node { thr: T::NAN, feat: 0, kids: 0 };
    code.tail = vec![blank; order.len()];
    let mut stack: Vec<usize> = order.iter().rev().copied().collect();
    while let Some(i) = stack.pop() {
        let at = tail_of[i] as usize;
        match &tree.nodes[i] {
            NodeSpec::Branch { feature, rule, missing_tracks_true, true_child, false_child } => {
                let (thr, nan_true, [t, f]) = normalize::<T>(rule, *missing_tracks_true, *true_child, *false_child)
                    .expect("trees with complex tests have no tail");
                code.nan_in_top |= nan_true;
                let kids = order.len() as u32;
                code.tail[at] = Node { thr, feat: flagged(*feature, nan_true), kids };
                tail_of[t] = kids;
                tail_of[f] = kids + 1;
                order.extend([t, f]);
                code.tail.extend([blank; 2]);
                stack.push(f);
                stack.push(t);
            }
            // `x <= NaN` never holds: the row goes to `kids + 1`, here.
            NodeSpec::Leaf { .. } => code.tail[at].kids = (at as u32).wrapping_sub(1),
        }
    }
    code.tail_leaf = order
        .iter()
        .map(|&i| match tree.nodes[i] {
            NodeSpec::Leaf { .. } => leaf_of(i),
            NodeSpec::Branch { .. } => u32::MAX,
        })
        .collect();
}

impl<T: Float> TreeCode<T> {
    /// Whether [`TreeCode::leaves_by_column`] applies.
    fn by_column(&self) -> bool {
        !self.by_bits.is_empty()
    }

    /// [`TreeCode::leaves`] by testing every array node on every row (small perfect trees), 64
    /// rows at a time (fixed-length loops the compiler vectorizes; the rows past `out.len()` in
    /// the block are harmless to test).
    fn leaves_by_column(&self, xt: &[T], out: &mut [u32]) {
        const CHUNK: usize = 64;
        for (c, out) in out.chunks_mut(CHUNK).enumerate() {
            let mut bits = [0u32; CHUNK];
            for (k, s) in self.top.iter().enumerate() {
                let column: &[T; CHUNK] = xt[s.feat as usize + c * CHUNK..][..CHUNK].try_into().expect("64 values");
                let bit = 1u32 << k;
                for (b, v) in bits.iter_mut().zip(column) {
                    // NaN fails `<=`: bit clear, the false side, as without a NaN-true flag.
                    *b |= if *v <= s.thr { bit } else { 0 };
                }
            }
            for (o, &b) in out.iter_mut().zip(bits.iter()) {
                *o = self.by_bits[b as usize];
            }
        }
    }

    /// The leaf id each of `out.len()` rows of a block reaches; `xt` holds the block by
    /// column: row `r`'s feature `f` is `xt[f * BLOCK_ROWS + r]`.
    fn leaves(&self, xt: &[T], out: &mut [u32]) {
        // What makes the unchecked reads in `lanes` and `step` sound: every column a node reads
        // is in `xt` and every row is inside a column. (Array, tail and walk indices are in range
        // by construction; see `lay_out` and `lay_tail`.)
        assert!(
            xt.len() >= self.max_feature * BLOCK_ROWS + out.len() && out.len() <= BLOCK_ROWS,
            "the block does not hold the tree's features"
        );
        // Testing every node pays when there are rows enough to fill vectors. Otherwise one
        // loop per case, each compiled to the code it needs (the array-only loop ran 5% slower
        // sharing its body with the tail's).
        match (self.nan_in_top, !self.tail.is_empty(), !self.walk.is_empty()) {
            _ if self.by_column() && out.len() >= 2 * LANES => self.leaves_by_column(xt, out),
            (false, false, false) => self.leaves_with::<false, EXIT_LEAF>(xt, out),
            (true, false, false) => self.leaves_with::<true, EXIT_LEAF>(xt, out),
            (false, true, _) => self.leaves_with::<false, EXIT_TAIL>(xt, out),
            (true, true, _) => self.leaves_with::<true, EXIT_TAIL>(xt, out),
            (nan, false, true) => {
                if nan {
                    self.leaves_with::<true, EXIT_WALK>(xt, out)
                } else {
                    self.leaves_with::<false, EXIT_WALK>(xt, out)
                }
            }
        }
    }

    /// One function per case (not inlined): its lane loop gets registers to itself (inlined in
    /// one body with the others, the array-only loop ran 2-5% slower).
    #[inline(never)]
    fn leaves_with<const NAN: bool, const EXIT: u8>(&self, xt: &[T], out: &mut [u32]) {
        let mut lanes = out.chunks_exact_mut(LANES);
        let mut r = 0;
        for chunk in &mut lanes {
            self.lanes::<NAN, EXIT, LANES>(xt, r, chunk);
            r += LANES;
        }
        for o in lanes.into_remainder() {
            self.lanes::<NAN, EXIT, 1>(xt, r, std::slice::from_mut(o));
            r += 1;
        }
    }

    /// Rows `r..r + N` in lock step: through the array levels, then (deeper trees) the tail or
    /// the walk until every lane sits on a leaf. Reading by column, lane `g`'s value is at a
    /// constant offset from `xt[column + r]`: no per-row base to carry.
    #[inline(always)]
    fn lanes<const NAN: bool, const EXIT: u8, const N: usize>(&self, xt: &[T], r: usize, out: &mut [u32]) {
        let mut idx = [0usize; N];
        for _ in 0..self.levels {
            for (g, i) in idx.iter_mut().enumerate() {
                // SAFETY: after l < levels levels i < 2^(l+1) - 1 <= top.len() = 2^levels - 1
                // (a node's children are 2i+1 and 2i+2); the node's column is in xt and r + g <
                // out.len() (asserted in `leaves`), so the value index is inside xt.
                let (s, v) = unsafe {
                    let s = *self.top.get_unchecked(*i);
                    // Without NaN flags an array node's feature word is the bare column offset.
                    let column = if NAN { s.feat & FEAT_MASK } else { s.feat };
                    (s, *xt.get_unchecked(column as usize + r + g))
                };
                let go_true = (v <= s.thr) | (NAN & (s.feat & NAN_TRUE != 0) & v.is_nan());
                *i = 2 * *i + 2 - go_true as usize;
            }
        }
        let first_exit = (1usize << self.levels) - 1;
        if EXIT == EXIT_TAIL {
            let mut at: [u32; N] = std::array::from_fn(|g| self.exits[idx[g] - first_exit]);
            self.tail_walk::<NAN, N>(xt, r, &mut at);
            for (o, a) in out.iter_mut().zip(at) {
                *o = self.tail_leaf[a as usize];
            }
            return;
        }
        if EXIT == EXIT_LEAF {
            for (o, i) in out.iter_mut().zip(idx) {
                *o = self.exits[i - first_exit];
            }
            return;
        }
        let mut at: [u32; N] = std::array::from_fn(|g| self.exits[idx[g] - first_exit]);
        while at.iter().any(|a| *a < self.first_leaf) {
            for (g, a) in at.iter_mut().enumerate() {
                *a = self.step(*a, xt, r + g);
            }
        }
        for (o, a) in out.iter_mut().zip(at) {
            *o = self.walk_leaf[(a - self.first_leaf) as usize];
        }
    }

    /// Rows `r..r + M` from tail nodes `at` to their leaves, in lock step until none moves.
    #[inline(always)]
    fn tail_walk<const NAN: bool, const M: usize>(&self, xt: &[T], r: usize, at: &mut [u32; M]) {
        loop {
            let mut moved = false;
            for (g, a) in at.iter_mut().enumerate() {
                // SAFETY: tail indices stay in the tail (a branch's `kids + 1` is a slot laid
                // out after it, a leaf loops to itself); the node's column is in xt and r + g <
                // out.len() (asserted in `leaves`).
                let (s, v) = unsafe {
                    let s = *self.tail.get_unchecked(*a as usize);
                    let column = if NAN { s.feat & FEAT_MASK } else { s.feat };
                    (s, *xt.get_unchecked(column as usize + r + g))
                };
                let go_true = (v <= s.thr) | (NAN & (s.feat & NAN_TRUE != 0) & v.is_nan());
                let next = s.kids.wrapping_add(1 - go_true as u32);
                moved |= next != *a;
                *a = next;
            }
            if !moved {
                break;
            }
        }
    }

    #[inline(always)]
    fn step(&self, i: u32, xt: &[T], r: usize) -> u32 {
        let s = self.walk[i as usize];
        if s.feat & COMPLEX != 0 {
            let c = &self.complex[(s.feat & FEAT_MASK) as usize];
            return self.complex_step(c, xt[c.feature * BLOCK_ROWS + r]);
        }
        // SAFETY: the node's column is in xt and r < BLOCK_ROWS (asserted in `leaves`).
        let v = unsafe { *xt.get_unchecked((s.feat & FEAT_MASK) as usize + r) };
        let go_true = (v <= s.thr) | ((s.feat & NAN_TRUE != 0) & v.is_nan());
        s.next[!go_true as usize]
    }

    /// Whether a row at tail or walk node `i` (as the exits give it) has yet to reach its leaf.
    fn walking(&self, i: u32) -> bool {
        if !self.tail.is_empty() {
            self.tail_leaf[i as usize] == u32::MAX
        } else {
            !self.walk.is_empty() && i < self.first_leaf
        }
    }

    /// [`TreeCode::step`], or the tail's, reading a row as given.
    fn step_row(&self, i: u32, row: &[T]) -> u32 {
        if !self.tail.is_empty() {
            let s = self.tail[i as usize];
            let v = row[(s.feat & FEAT_MASK) as usize / BLOCK_ROWS];
            let go_true = (v <= s.thr) | ((s.feat & NAN_TRUE != 0) & v.is_nan());
            return s.kids.wrapping_add(1 - go_true as u32);
        }
        let s = self.walk[i as usize];
        if s.feat & COMPLEX != 0 {
            let c = &self.complex[(s.feat & FEAT_MASK) as usize];
            return self.complex_step(c, row[c.feature]);
        }
        let v = row[(s.feat & FEAT_MASK) as usize / BLOCK_ROWS];
        let go_true = (v <= s.thr) | ((s.feat & NAN_TRUE != 0) & v.is_nan());
        s.next[!go_true as usize]
    }

    #[cold]
    fn complex_step(&self, c: &Complex<T>, v: T) -> u32 {
        let holds = match &c.test {
            Test::Eq(t) => v == *t,
            Test::Neq(t) => v != *t,
            Test::Member(set) => set.contains(&v),
            Test::Trunc(set) => set.binary_search(&v.to_i32_x86()).is_ok(),
        };
        c.next[!(holds || c.missing_tracks_true && v.is_nan()) as usize]
    }
}

/// Laid-out trees plus the leaf tables they index.
#[derive(Clone, Debug)]
struct Code<T> {
    trees: Vec<TreeCode<T>>,
    /// Per leaf: its first weight (the single-output value).
    leaf_value: Vec<T>,
    /// Per leaf: its `(target, weight)` pairs, a range of `weights`.
    leaf_span: Vec<(u32, u32)>,
    weights: Vec<(u32, T)>,
    /// Every leaf has a weight for every output (no "has score" bookkeeping needed).
    dense: bool,
    /// When every leaf has exactly one weight per output (random forests): `matrix[leaf *
    /// n_outputs + target]`, added row by row. Empty otherwise.
    matrix: Vec<T>,
}

impl<T: Float> Code<T> {
    /// Lays out `trees`; `ort_fusion` applies ORT's `BRANCH_EQ` chain fusion first.
    fn new(trees: &[TreeSpec], n_outputs: usize, ort_fusion: bool) -> Result<Self, String> {
        let mut code = Code {
            trees: Vec::with_capacity(trees.len()),
            leaf_value: Vec::new(),
            leaf_span: Vec::new(),
            weights: Vec::new(),
            dense: true,
            matrix: Vec::new(),
        };
        let mut one_each = n_outputs > 1;
        for tree in trees {
            let fused = if ort_fusion { fuse_eq_chains(tree, T::FUSE_MAX) } else { None };
            let tree = fused.as_ref().unwrap_or(tree);
            let shape = inspect(tree)?;
            let mut numbered = vec![u32::MAX; tree.nodes.len()];
            let (values, spans, weights, dense, one_each) =
                (&mut code.leaf_value, &mut code.leaf_span, &mut code.weights, &mut code.dense, &mut one_each);
            // The target every leaf of this tree names with its only weight, if there is one.
            let mut target: Option<Option<usize>> = None;
            let mut leaf_of = |i: usize| -> u32 {
                if numbered[i] == u32::MAX {
                    let NodeSpec::Leaf { weights: w } = &tree.nodes[i] else { unreachable!("leaves only") };
                    let only = if w.len() == 1 { Some(w[0].0) } else { None };
                    target = Some(if target.is_none_or(|t| t == only) { only } else { None });
                    numbered[i] = values.len() as u32;
                    values.push(w.first().map_or(T::ZERO, |p| T::from_f64(p.1)));
                    spans.push((weights.len() as u32, w.len() as u32));
                    weights.extend(w.iter().map(|&(t, v)| (t as u32, T::from_f64(v))));
                    // Dense: the leaf names every output (its pairs cover 0..n_outputs).
                    *dense &= w.len() >= n_outputs && (0..n_outputs).all(|t| w.iter().any(|p| p.0 == t));
                    *one_each &= w.len() == n_outputs && *dense;
                }
                numbered[i]
            };
            let mut laid = lay_out(tree, &shape, &mut leaf_of);
            laid.target = target.flatten().map(|t| t as u32);
            code.trees.push(laid);
        }
        if code.weights.iter().any(|(t, _)| *t as usize >= n_outputs) {
            return Err("a leaf weight names a target beyond the outputs".into());
        }
        if one_each {
            // One weight per output and leaf: adding them by target order changes nothing.
            code.matrix = vec![T::ZERO; code.leaf_span.len() * n_outputs];
            for (l, &(s, len)) in code.leaf_span.iter().enumerate() {
                for &(t, w) in &code.weights[s as usize..(s + len) as usize] {
                    code.matrix[l * n_outputs + t as usize] = w;
                }
            }
        }
        if code.leaf_value.len() >= MAX_INDEX
            || code.trees.iter().any(|t| t.walk.len() >= MAX_INDEX || t.tail.len() >= MAX_INDEX)
        {
            return Err("the forest is too large".into());
        }
        Ok(code)
    }
}

// ---------------------------------------------------------------------------------------------
// Forest: the reusable single-output evaluator
// ---------------------------------------------------------------------------------------------

/// A single-output forest that sums each tree's leaf value over the trees in order, in the
/// input's float type: what ORT's `TreeEnsembleRegressor` with one target, `SUM`, no base value
/// and no transform computes. A leaf's value is its first weight (0 without one).
///
/// Graph rewrites (e.g. a fused IsolationForest, whose leaves carry a path length computed at
/// load) build one from [`TreeSpec`]s; [`parse`] gives the trees of an existing node. Rules are
/// evaluated as written: ORT's fusion of `BRANCH_EQ` chains (see [`Rule::Member`]) is applied by
/// the kernel from [`compile`] only (IsolationForest trees have no `BRANCH_EQ`).
pub struct Forest {
    trees: Vec<TreeSpec>,
    width: usize,
    f32: Code<f32>,
    f64: OnceLock<Code<f64>>,
}

impl Forest {
    /// Checks the trees (indices in range, no cycle) and lays them out for float input.
    pub fn new(trees: &[TreeSpec]) -> Result<Forest, String> {
        let mut width = 1;
        for t in trees {
            width = width.max(inspect(t)?.max_feature + 1);
        }
        let f32 = Code::new(trees, 1, false)?;
        Ok(Forest { trees: trees.to_vec(), width, f32, f64: OnceLock::new() })
    }

    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// Values each row must have: the largest feature any branch reads, plus one.
    pub fn required_width(&self) -> usize {
        self.width
    }

    /// `out[r]` = the sum over trees, in order and in f32 starting from 0, of the leaf row `r` of
    /// `x` (`n` rows of `width` values, row-major) reaches.
    pub fn sum_f32(&self, x: &[f32], n: usize, width: usize, out: &mut [f32]) -> Result<(), String> {
        self.check(x.len(), n, width, out.len())?;
        sum_single(&self.f32, x, width, &mut out[..n]);
        Ok(())
    }

    /// [`Forest::sum_f32`] for double input, summing in f64.
    pub fn sum_f64(&self, x: &[f64], n: usize, width: usize, out: &mut [f64]) -> Result<(), String> {
        self.check(x.len(), n, width, out.len())?;
        let code =
            self.f64.get_or_init(|| Code::new(&self.trees, 1, false).expect("checked when the forest was built"));
        sum_single(code, x, width, &mut out[..n]);
        Ok(())
    }

    fn check(&self, len: usize, n: usize, width: usize, out: usize) -> Result<(), String> {
        if width < self.width {
            return Err(format!("the trees read feature {} but rows have {width} values", self.width - 1));
        }
        if len < n.saturating_mul(width) || out < n {
            return Err(format!("{n} rows of {width} values do not fit the buffers"));
        }
        Ok(())
    }
}

/// Sum of leaf values per row, trees outer and rows inner per block.
fn sum_single<T: Float>(code: &Code<T>, x: &[T], width: usize, out: &mut [T]) {
    let mut leaf = [0u32; BLOCK_ROWS];
    let mut block = Block::new(width, out.len());
    for (b, acc) in out.chunks_mut(BLOCK_ROWS).enumerate() {
        let rows = acc.len();
        block.load(&x[b * BLOCK_ROWS * width..(b * BLOCK_ROWS + rows) * width]);
        acc.fill(T::ZERO);
        block.across_trees(&code.trees);
        for (t, tree) in code.trees.iter().enumerate() {
            let leaf = block.leaves(t, tree, &mut leaf[..rows]);
            for (a, &l) in acc.iter_mut().zip(leaf) {
                *a = *a + code.leaf_value[l as usize];
            }
        }
    }
}

/// A block of up to `BLOCK_ROWS` rows as the trees read it: by column (`columns[f * BLOCK_ROWS +
/// r]`), so that rows evaluated side by side read neighbouring values and small trees test a
/// node on many rows with one vector instruction. Batches smaller than `LANES` stay by row and
/// are evaluated with trees side by side instead (see [`leaves_across`]).
struct Block<T> {
    width: usize,
    columns: Vec<T>,
    /// Small batches: the rows as given, and every tree's leaf for every row, `[tree * rows + r]`.
    row_major: Vec<T>,
    across: Vec<u32>,
    rows: usize,
}

impl<T: Float> Block<T> {
    /// A block for batches of `n` rows.
    fn new(width: usize, n: usize) -> Self {
        let columns = if n < LANES { Vec::new() } else { vec![T::ZERO; width * BLOCK_ROWS] };
        Block { width, columns, row_major: Vec::new(), across: Vec::new(), rows: 0 }
    }

    /// Copies in `x`, rows of `width` values. Rows past them keep older values: their leaves are
    /// never read.
    fn load(&mut self, x: &[T]) {
        self.rows = x.len() / self.width.max(1);
        if self.columns.is_empty() {
            self.row_major.clear();
            self.row_major.extend_from_slice(x);
            return;
        }
        for (r, row) in x.chunks_exact(self.width).enumerate() {
            for (f, v) in row.iter().enumerate() {
                self.columns[f * BLOCK_ROWS + r] = *v;
            }
        }
    }

    /// For a small batch, finds every tree's leaves at once with trees side by side: one row
    /// alone through one tree at a time would be a single chain of dependent loads.
    fn across_trees(&mut self, trees: &[TreeCode<T>]) {
        if !self.columns.is_empty() {
            return;
        }
        let rows = self.rows;
        self.across.resize(trees.len() * rows, 0);
        let mut found = [0u32; LANES];
        for (r, row) in self.row_major.chunks_exact(self.width.max(1)).enumerate() {
            for (c, chunk) in trees.chunks(LANES).enumerate() {
                leaves_across(chunk, row, &mut found[..chunk.len()]);
                for (g, &l) in found[..chunk.len()].iter().enumerate() {
                    self.across[(c * LANES + g) * rows + r] = l;
                }
            }
        }
    }

    /// Tree `t`'s leaves for the block's rows (`buf` holds them unless found already).
    fn leaves<'b>(&'b self, t: usize, tree: &TreeCode<T>, buf: &'b mut [u32]) -> &'b [u32] {
        if self.columns.is_empty() {
            &self.across[t * self.rows..(t + 1) * self.rows]
        } else {
            tree.leaves(&self.columns, buf);
            buf
        }
    }
}

/// One row through up to `LANES` trees side by side: their walks are independent, so their loads
/// overlap as different rows' do in [`TreeCode::leaves`]. Reads the row as given (a feature
/// word's column offset divided back into the feature).
fn leaves_across<T: Float>(trees: &[TreeCode<T>], row: &[T], out: &mut [u32]) {
    let mut idx = [0usize; LANES];
    let levels = trees.iter().map(|t| t.levels).max().unwrap_or(0);
    for l in 0..levels {
        for (g, t) in trees.iter().enumerate() {
            if l < t.levels {
                let s = t.top[idx[g]];
                let v = row[(s.feat & FEAT_MASK) as usize / BLOCK_ROWS];
                let go_true = (v <= s.thr) | ((s.feat & NAN_TRUE != 0) & v.is_nan());
                idx[g] = 2 * idx[g] + 2 - go_true as usize;
            }
        }
    }
    let mut at = [0u32; LANES];
    let mut walking = false;
    for (g, t) in trees.iter().enumerate() {
        at[g] = t.exits[idx[g] + 1 - (1 << t.levels)];
        walking |= t.walking(at[g]);
    }
    while walking {
        walking = false;
        for (g, t) in trees.iter().enumerate() {
            if t.walking(at[g]) {
                at[g] = t.step_row(at[g], row);
                walking |= t.walking(at[g]);
            }
        }
    }
    for (g, t) in trees.iter().enumerate() {
        out[g] = if !t.tail.is_empty() {
            t.tail_leaf[at[g] as usize]
        } else if t.walk.is_empty() {
            at[g]
        } else {
            t.walk_leaf[(at[g] - t.first_leaf) as usize]
        };
    }
}

// ---------------------------------------------------------------------------------------------
// The kernel
// ---------------------------------------------------------------------------------------------

struct TreeKernel {
    spec: EnsembleSpec,
    f32: Code<f32>,
    f64: OnceLock<Code<f64>>,
}

/// What a classifier row is labelled with: a class index, or ORT's literal 1/0 (two classes not
/// in the binary case, or one class).
#[derive(Clone, Copy)]
enum Pick {
    Class(usize),
    Literal(i64),
}

impl TreeKernel {
    fn new(spec: EnsembleSpec) -> Result<Self, String> {
        let f32 = Code::new(&spec.trees, spec.n_outputs, true)?;
        Ok(TreeKernel { spec, f32, f64: OnceLock::new() })
    }

    fn code64(&self) -> &Code<f64> {
        self.f64.get_or_init(|| Code::new(&self.spec.trees, self.spec.n_outputs, true).expect("checked at compile"))
    }

    /// Scores `n` rows: `values` [n, outputs] (regressors) or labels plus f32 scores.
    fn score<T: Float>(&self, code: &Code<T>, x: &[T], n: usize, width: usize) -> Result<Scored<T>, String> {
        let no = self.spec.n_outputs;
        super::tensor::check_elements(n.checked_mul(no), "a tree ensemble's scores")?;
        let classifier = matches!(self.spec.op, Op::Classifier { .. });
        let base: Vec<T> = self.spec.base_values.iter().map(|v| T::from_f64(*v)).collect();
        let mut values = if classifier { Vec::new() } else { vec![T::ZERO; n * no] };
        let mut picks = Vec::with_capacity(if classifier { n } else { 0 });
        let mut probs = vec![0f32; if classifier { n * no } else { 0 }];
        let mut scratch = vec![0f32; no];
        let mut acc = vec![T::ZERO; n.min(BLOCK_ROWS) * no];
        let mut has = vec![false; n.min(BLOCK_ROWS) * no];
        let mut leaf = [0u32; BLOCK_ROWS];
        let agg = self.spec.aggregate;
        let sums = matches!(agg, Aggregate::Sum | Aggregate::Average);
        let mut block = Block::new(width, n);
        for start in (0..n).step_by(BLOCK_ROWS) {
            let rows = BLOCK_ROWS.min(n - start);
            block.load(&x[start * width..(start + rows) * width]);
            let (acc, has) = (&mut acc[..rows * no], &mut has[..rows * no]);
            acc.fill(T::ZERO);
            has.fill(false);
            block.across_trees(&code.trees);
            for (t, tree) in code.trees.iter().enumerate() {
                let leaf = block.leaves(t, tree, &mut leaf[..rows]);
                let (lv, spans, weights) = (&code.leaf_value, &code.leaf_span, &code.weights);
                if no == 1 && sums {
                    for (a, &l) in acc.iter_mut().zip(leaf.iter()) {
                        *a = *a + lv[l as usize];
                    }
                } else if no == 1 {
                    for r in 0..rows {
                        combine(agg, &mut acc[r], &mut has[r], lv[leaf[r] as usize]);
                    }
                } else if let (Some(t), true) = (tree.target, sums) {
                    let t = t as usize;
                    for r in 0..rows {
                        acc[r * no + t] = acc[r * no + t] + lv[leaf[r] as usize];
                        has[r * no + t] = true;
                    }
                } else if !code.matrix.is_empty() && sums {
                    for (out, &l) in acc.chunks_exact_mut(no).zip(leaf.iter()) {
                        let w = &code.matrix[l as usize * no..][..no];
                        for (o, w) in out.iter_mut().zip(w) {
                            *o = *o + *w;
                        }
                    }
                } else if code.dense && sums {
                    for (out, &l) in acc.chunks_exact_mut(no).zip(leaf.iter()) {
                        let (s, len) = spans[l as usize];
                        for &(t, w) in &weights[s as usize..(s + len) as usize] {
                            out[t as usize] = out[t as usize] + w;
                        }
                    }
                } else if sums {
                    for r in 0..rows {
                        let (s, len) = spans[leaf[r] as usize];
                        for &(t, w) in &weights[s as usize..(s + len) as usize] {
                            let k = r * no + t as usize;
                            acc[k] = acc[k] + w;
                            has[k] = true;
                        }
                    }
                } else {
                    for r in 0..rows {
                        let (s, len) = spans[leaf[r] as usize];
                        for &(t, w) in &weights[s as usize..(s + len) as usize] {
                            let k = r * no + t as usize;
                            combine(agg, &mut acc[k], &mut has[k], w);
                        }
                    }
                }
            }
            if code.dense && no > 1 && !code.trees.is_empty() {
                has.fill(true);
            }
            for r in 0..rows {
                let (a, h) = (&mut acc[r * no..(r + 1) * no], &mut has[r * no..(r + 1) * no]);
                let row = start + r;
                if classifier {
                    picks.push(self.finish_class(a, h, &base, &mut probs[row * no..(row + 1) * no])?);
                } else {
                    self.finish_values(a, h, &base, &mut scratch, &mut values[row * no..(row + 1) * no]);
                }
            }
        }
        Ok(if classifier { Scored::Classes(picks, probs) } else { Scored::Values(values) })
    }

    /// Regressor and v5 finalisation (ORT's `FinalizeScores1` / `FinalizeScores`).
    fn finish_values<T: Float>(&self, acc: &[T], has: &[bool], base: &[T], scratch: &mut [f32], out: &mut [T]) {
        let spec = &self.spec;
        let trees = T::from_f64(spec.trees.len() as f64);
        if spec.n_outputs == 1 {
            let origin = if base.len() == 1 { base[0] } else { T::ZERO };
            let s = match spec.aggregate {
                Aggregate::Sum => acc[0] + origin,
                Aggregate::Average => acc[0] / trees + origin,
                Aggregate::Min | Aggregate::Max if has[0] => acc[0] + origin,
                Aggregate::Min | Aggregate::Max => origin,
            };
            // ORT applies only PROBIT on the single-output path (LOGISTIC etc. are ignored).
            out[0] = if spec.post_transform == PostTransform::Probit { T::from_f32(probit(s.to_f32())) } else { s };
            return;
        }
        let use_base = base.len() == spec.n_outputs;
        for t in 0..spec.n_outputs {
            let b = if use_base { base[t] } else { T::ZERO };
            let v = match spec.aggregate {
                Aggregate::Sum if use_base => acc[t] + b,
                Aggregate::Sum => acc[t],
                Aggregate::Average if use_base => acc[t] / trees + b,
                Aggregate::Average => acc[t] / trees,
                Aggregate::Min | Aggregate::Max => b + if has[t] { acc[t] } else { T::ZERO },
            };
            // An output no leaf reached is written as 0, whatever its base value.
            out[t] = if has[t] { v } else { T::ZERO };
        }
        if spec.post_transform != PostTransform::None {
            for (s, o) in scratch.iter_mut().zip(out.iter()) {
                *s = o.to_f32();
            }
            transform_many(scratch, spec.post_transform);
            for (o, s) in out.iter_mut().zip(scratch.iter()) {
                *o = T::from_f32(*s);
            }
        }
    }

    /// Classifier finalisation, ORT's `TreeAggregatorClassifier` with its binary-case rules.
    fn finish_class<T: Float>(
        &self,
        pred: &mut [T],
        has: &mut [bool],
        base: &[T],
        probs: &mut [f32],
    ) -> Result<Pick, String> {
        let Op::Classifier { binary_case, weights_all_positive, .. } = self.spec.op else {
            unreachable!("classifier only")
        };
        let post = self.spec.post_transform;
        let n = self.spec.n_outputs;
        let as_f32 = |v: T, h: bool| if h { v.to_f32() } else { 0.0 };
        if n == 1 {
            let mut s = pred[0];
            if base.len() == 1 {
                s = s + base[0];
            }
            probs[0] = if post == PostTransform::Probit { probit(s.to_f32()) } else { s.to_f32() };
            return Ok(Pick::Literal(if s > T::ZERO { 1 } else { 0 }));
        }
        if n > 2 {
            for (k, b) in base.iter().enumerate() {
                pred[k] = if has[k] { pred[k] + *b } else { *b };
                has[k] = true;
            }
            let mut best: Option<usize> = None;
            for k in 0..n {
                if has[k] && best.is_none_or(|m| pred[k] > pred[m]) {
                    best = Some(k);
                }
            }
            let best = best.ok_or("no class has a score (ORT fails here too)")?;
            for k in 0..n {
                probs[k] = as_f32(pred[k], has[k]);
            }
            transform_many(probs, post);
            return Ok(Pick::Class(best));
        }
        // Two classes.
        let mut second = -1;
        let mut len = 2;
        match base.len() {
            2 if has[1] => {
                pred[1] = base[1] + pred[0];
                pred[0] = -pred[1];
            }
            2 => {
                pred[1] = pred[1] + base[1];
                pred[0] = pred[0] + base[0];
            }
            1 => {
                pred[0] = pred[0] + base[0];
                if !has[1] {
                    len = 1;
                }
            }
            _ => {
                second = 3;
                if !has[1] {
                    len = 1;
                }
            }
        }
        let positive = if len == 2 && has[1] {
            pred[1]
        } else if has[0] {
            pred[0]
        } else {
            T::ZERO
        };
        let pick = if binary_case {
            let (threshold, low, high) = if weights_all_positive { (T::from_f64(0.5), 1, 0) } else { (T::ZERO, 3, 2) };
            if positive > threshold {
                second = high;
                Pick::Class(1)
            } else {
                second = low;
                Pick::Class(0)
            }
        } else {
            Pick::Literal(if positive > T::ZERO { 1 } else { 0 })
        };
        let mut s = [as_f32(pred[0], has[0]), as_f32(pred[1], has[1])];
        let (p0, p1) = write_scores(&mut s[..len], post, second);
        probs[0] = p0;
        // ORT leaves the second score unwritten (whatever its buffer held) when only one score
        // exists and the transform is PROBIT or no binary rule applies; we write 0.
        probs[1] = p1.unwrap_or(0.0);
        Ok(pick)
    }
}

enum Scored<T> {
    Values(Vec<T>),
    Classes(Vec<Pick>, Vec<f32>),
}

/// One leaf weight into an accumulator, per ORT's aggregators (MIN/MAX start from the first
/// value, not from 0).
#[inline(always)]
fn combine<T: Float>(agg: Aggregate, acc: &mut T, has: &mut bool, w: T) {
    match agg {
        Aggregate::Sum | Aggregate::Average => *acc = *acc + w,
        Aggregate::Min => {
            if !*has || w < *acc {
                *acc = w;
            }
        }
        Aggregate::Max => {
            if !*has || w > *acc {
                *acc = w;
            }
        }
    }
    *has = true;
}

impl Kernel for TreeKernel {
    fn run(&self, inputs: &[&Tensor]) -> Result<Vec<Tensor>, String> {
        let x = inputs.first().ok_or("a tree ensemble needs one input")?;
        // ORT reads a 1-D input as one row with one feature.
        let (n, width) = match x.shape.as_slice() {
            [len] if *len > 0 => (1, 1),
            [n, w] => (*n, *w),
            shape => return Err(format!("a tree ensemble takes a 2-D input, not shape {shape:?}")),
        };
        if width < self.spec.required_width {
            return Err(format!(
                "the trees read feature {} but the input has {width} features",
                self.spec.required_width - 1
            ));
        }
        let len = n * width;
        if x.data.len() < len {
            return Err(format!("the input holds {} values, not {len}", x.data.len()));
        }
        let scored = match &x.data {
            Data::F64(v) => return self.outputs(self.score(self.code64(), &v[..len], n, width)?, n, true),
            Data::F32(v) => self.score(&self.f32, &v[..len], n, width)?,
            Data::I64(v) => {
                let v: Vec<f32> = v[..len].iter().map(|&i| i as f32).collect();
                self.score(&self.f32, &v, n, width)?
            }
            other => return Err(format!("a tree ensemble cannot read {} input", other.type_name())),
        };
        self.outputs(scored, n, false)
    }
}

impl TreeKernel {
    fn outputs<T: Float + Into<f64>>(&self, scored: Scored<T>, n: usize, double: bool) -> Result<Vec<Tensor>, String> {
        let no = self.spec.n_outputs;
        let shape = vec![n, no];
        Ok(match scored {
            Scored::Values(v) => match self.spec.op {
                Op::TreeEnsemble if double => vec![Tensor::f64(shape, v.into_iter().map(Into::into).collect())],
                _ => vec![Tensor::f32(shape, v.into_iter().map(|x| x.to_f32()).collect())],
            },
            Scored::Classes(picks, probs) => {
                let Op::Classifier { labels, .. } = &self.spec.op else { unreachable!("classifier only") };
                let label = match labels {
                    Labels::Int(ls) => Data::I64(
                        picks
                            .iter()
                            .map(|p| match *p {
                                Pick::Class(c) => ls[c],
                                Pick::Literal(v) => v,
                            })
                            .collect(),
                    ),
                    Labels::Str(ls) => Data::Str(
                        picks
                            .iter()
                            .map(|p| {
                                let i = match *p {
                                    Pick::Class(c) => c,
                                    Pick::Literal(v) => v as usize,
                                };
                                ls[i].clone()
                            })
                            .collect(),
                    ),
                };
                vec![Tensor::new(vec![n], label), Tensor::f32(shape, probs)]
            }
        })
    }
}

// ---------------------------------------------------------------------------------------------
// ORT's post transforms (ml_common.h), in float
// ---------------------------------------------------------------------------------------------

// The scalar transforms are shared with the other ML kernels (post.rs): ORT's tree kernels use
// the same `ComputeLogistic`/`ComputeProbit`/`ComputeSoftmax` (not MLAS's batched logistic).

/// Transforms of two or more scores.
fn transform_many(s: &mut [f32], post: PostTransform) {
    match post {
        PostTransform::None => {}
        PostTransform::Logistic => s.iter_mut().for_each(|v| *v = logistic(*v)),
        PostTransform::Probit => s.iter_mut().for_each(|v| *v = probit(*v)),
        PostTransform::Softmax => softmax(s),
        PostTransform::SoftmaxZero => softmax_zero(s),
    }
}

/// ORT's `write_scores` for a two-class classifier: one or two scores in, two out (`None` where
/// ORT writes nothing). `second` is ORT's `add_second_class`: 0/1 positive weights (scores
/// `1 - s, s`), 2/3 mixed weights (`-s, s`, or sigmoids with LOGISTIC), -1 none.
fn write_scores(s: &mut [f32], post: PostTransform, second: i32) -> (f32, Option<f32>) {
    if s.len() >= 2 {
        transform_many(s, post);
        return (s[0], Some(s[1]));
    }
    let v = s[0];
    match second {
        _ if post == PostTransform::Probit => (probit(v), None),
        0 | 1 if post == PostTransform::Logistic => {
            let p = logistic(v);
            (1.0 - p, Some(p))
        }
        0 | 1 => (1.0 - v, Some(v)),
        2 | 3 if post == PostTransform::Logistic => (logistic(-v), Some(logistic(v))),
        2 | 3 => (-v, Some(v)),
        _ => (v, None),
    }
}
