//! Native tree kernels against ONNX Runtime (one intra-op thread) on random forests of realistic
//! shapes: milliseconds per 2,048-row batch and the speed-up. Not a test; a quick check of the
//! speed targets.
//!
//!     cargo run --release -p sqlscore-core --example tree_speed
//!
//! ORT is found like the tests find it (ORT_DYLIB_PATH, or the repository's .venv).
//!
//! On exported models (bench/native_models.py writes them to target/bench/native):
//!
//!     cargo run --release -p sqlscore-core --example tree_speed -- --onnx target/bench/native/etr_100x12.onnx
//!
//! times the file's first tree-ensemble node, compiled alone, on the 2,048 rows of
//! `x_2048x20.f32` beside it (or `--x FILE`: little-endian f32 rows of the file's width) against
//! ORT running the whole file (one intra-op thread; median of `--runs N`, default 50). A file
//! with several tree ensembles (skl2onnx's IsolationForest, one per tree) times all their trees
//! summed by a `Forest`, what the fused plan runs. Several files may follow `--onnx`;
//! `--native` times only the native side and adds the fastest run (steadier for comparing
//! layouts; for a profiler too). Time on a quiet machine: on a 2-core one, a cargo build running
//! beside it took the ExtraTrees ratio from 9x to 3.4x, and one busy loop moved others 2-3x
//! either way (native and ORT are timed one after the other, so the load hits them unevenly).

use std::time::Instant;

use prost::Message;
use sqlscore_core::native::proto::{
    tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    ValueInfoProto,
};
use sqlscore_core::native::tensor::Tensor;
use sqlscore_core::native::tree;

const ROWS: usize = 2048;
const WIDTH: usize = 20;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One tree as (feature, threshold, true, false) branches and leaves, node 0 the root.
#[derive(Clone)]
enum Node {
    Branch(usize, f64, usize, usize),
    Leaf,
}

/// Grows a tree by splitting random leaves above `max_depth` until it has `leaves` leaves:
/// `full` splits every leaf level by level (a complete tree, like gradient boosting's).
fn grow(rng: &mut Rng, leaves: usize, max_depth: usize, full: bool) -> Vec<Node> {
    let mut nodes = vec![Node::Leaf];
    let mut open = vec![(0usize, 0usize)]; // (node, depth)
    let mut count = 1;
    while count < leaves && !open.is_empty() {
        let k = if full { 0 } else { rng.below(open.len()) };
        let (at, depth) = open.remove(k);
        if depth >= max_depth {
            continue;
        }
        let (t, f) = (nodes.len(), nodes.len() + 1);
        nodes.push(Node::Leaf);
        nodes.push(Node::Leaf);
        // Thresholds spread like a trained tree's: inputs are uniform in [0, 1).
        nodes[at] = Node::Branch(rng.below(WIDTH), rng.unit(), t, f);
        open.push((t, depth + 1));
        open.push((f, depth + 1));
        count += 1;
    }
    nodes
}

fn depth(nodes: &[Node], i: usize) -> usize {
    match nodes[i] {
        Node::Branch(_, _, t, f) => 1 + depth(nodes, t).max(depth(nodes, f)),
        Node::Leaf => 0,
    }
}

fn ints(name: &str, v: Vec<i64>) -> AttributeProto {
    AttributeProto { name: name.into(), ints: v, r#type: 7, ..Default::default() }
}
fn floats(name: &str, v: Vec<f32>) -> AttributeProto {
    AttributeProto { name: name.into(), floats: v, r#type: 6, ..Default::default() }
}
fn text(name: &str, v: &str) -> AttributeProto {
    AttributeProto { name: name.into(), s: v.into(), r#type: 3, ..Default::default() }
}

/// A regressor (`classes == 0`) or classifier over `trees`; leaf weights random.
fn ensemble(rng: &mut Rng, trees: &[Vec<Node>], classes: usize, agg: &str, post: &str) -> NodeProto {
    let (mut tid, mut nid, mut feat, mut modes, mut vals, mut tr, mut fa) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut wt, mut wn, mut wi, mut ww) = (vec![], vec![], vec![], vec![]);
    for (t, nodes) in trees.iter().enumerate() {
        for (i, n) in nodes.iter().enumerate() {
            tid.push(t as i64);
            nid.push(i as i64);
            match *n {
                Node::Branch(f, v, a, b) => {
                    feat.push(f as i64);
                    modes.push(b"BRANCH_LEQ".to_vec());
                    vals.push(v as f32);
                    tr.push(a as i64);
                    fa.push(b as i64);
                }
                Node::Leaf => {
                    feat.push(0);
                    modes.push(b"LEAF".to_vec());
                    vals.push(0.0);
                    tr.push(0);
                    fa.push(0);
                    for c in 0..classes.max(1) {
                        wt.push(t as i64);
                        wn.push(i as i64);
                        wi.push(c as i64);
                        ww.push(rng.unit() as f32 - 0.3);
                    }
                }
            }
        }
    }
    let prefix = if classes == 0 { "target" } else { "class" };
    let mut attrs = vec![
        ints("nodes_treeids", tid),
        ints("nodes_nodeids", nid),
        ints("nodes_featureids", feat),
        AttributeProto { name: "nodes_modes".into(), strings: modes, r#type: 8, ..Default::default() },
        floats("nodes_values", vals),
        ints("nodes_truenodeids", tr),
        ints("nodes_falsenodeids", fa),
        ints(&format!("{prefix}_treeids"), wt),
        ints(&format!("{prefix}_nodeids"), wn),
        ints(&format!("{prefix}_ids"), wi),
        floats(&format!("{prefix}_weights"), ww),
        text("post_transform", post),
    ];
    let op = if classes == 0 {
        attrs.push(AttributeProto { name: "n_targets".into(), i: 1, r#type: 2, ..Default::default() });
        attrs.push(text("aggregate_function", agg));
        "TreeEnsembleRegressor"
    } else {
        attrs.push(ints("classlabels_int64s", (0..classes.max(2) as i64).collect()));
        "TreeEnsembleClassifier"
    };
    NodeProto { op_type: op.into(), domain: "ai.onnx.ml".into(), attribute: attrs, ..Default::default() }
}

fn value_info(name: &str, elem: i32, dims: &[Option<i64>]) -> ValueInfoProto {
    ValueInfoProto::tensor(name, elem, &dims.iter().map(|d| d.unwrap_or(-1)).collect::<Vec<_>>())
}

fn model(node: &NodeProto) -> Vec<u8> {
    let mut node = node.clone();
    let outputs = if node.op_type == "TreeEnsembleClassifier" {
        vec![value_info("label", 7, &[None]), value_info("probabilities", 1, &[None, None])]
    } else {
        vec![value_info("Y", 1, &[None, None])]
    };
    node.input = vec!["X".into()];
    node.output = outputs.iter().map(|o| o.name.clone()).collect();
    ModelProto {
        ir_version: 8,
        opset_import: vec![
            OperatorSetIdProto { domain: String::new(), version: 17 },
            OperatorSetIdProto { domain: "ai.onnx.ml".into(), version: 3 },
        ],
        graph: Some(GraphProto {
            node: vec![node],
            name: "g".into(),
            input: vec![value_info("X", 1, &[None, Some(WIDTH as i64)])],
            output: outputs,
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

/// Median milliseconds of `f` over `runs` runs (after one warm-up).
fn median_ms(runs: usize, f: impl FnMut()) -> f64 {
    spread_ms(runs, f).1
}

/// Fastest and median milliseconds of `f` over `runs` runs (after one warm-up).
fn spread_ms(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (t[0], t[runs / 2])
}

fn ort_session(bytes: &[u8]) -> ort::session::Session {
    let env = sqlscore_core::runtime::environment().expect("ONNX Runtime");
    ort::session::Session::builder(&env)
        .unwrap()
        .with_intra_threads(1)
        .unwrap()
        .with_inter_threads(1)
        .unwrap()
        .commit_from_memory(bytes)
        .unwrap()
}

fn compare(name: &str, node: &NodeProto, x: &[f32], runs: usize) {
    let kernel = tree::compile(node).unwrap();
    let input = Tensor::f32(vec![ROWS, WIDTH], x.to_vec());
    // `tree_speed <name prefix>`: only that model, native only, for a profiler
    // (`tree_speed compile`: only the load time).
    if let Some(only) = std::env::args().nth(1) {
        if name.starts_with(&only) {
            let ms = median_ms(2000, || {
                std::hint::black_box(kernel.run(&[&input]).unwrap());
            });
            println!("{name:<44} native {ms:7.3} ms");
        }
        return;
    }
    let native = median_ms(runs, || {
        std::hint::black_box(kernel.run(&[&input]).unwrap());
    });
    let mut session = ort_session(&model(node));
    let ort_ms = median_ms(runs, || {
        let value = ort::value::Tensor::from_array((vec![ROWS as i64, WIDTH as i64], x.to_vec())).unwrap();
        std::hint::black_box(session.run(vec![("X", value)]).unwrap());
    });
    // One row per call: the per-call floor.
    let one = Tensor::f32(vec![1, WIDTH], x[..WIDTH].to_vec());
    let native1 = median_ms(runs, || {
        for _ in 0..100 {
            std::hint::black_box(kernel.run(&[&one]).unwrap());
        }
    }) * 10.0;
    let ort1 = median_ms(runs, || {
        for _ in 0..100 {
            let value = ort::value::Tensor::from_array((vec![1i64, WIDTH as i64], x[..WIDTH].to_vec())).unwrap();
            std::hint::black_box(session.run(vec![("X", value)]).unwrap());
        }
    }) * 10.0;
    println!(
        "{name:<44} native {native:7.3} ms   ORT {ort_ms:7.3} ms   x{:5.1}   1 row: {native1:5.1} us vs {ort1:5.1} us",
        ort_ms / native
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--onnx") {
        return onnx_files(&args[1..]);
    }
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let x: Vec<f32> = (0..ROWS * WIDTH).map(|_| rng.unit() as f32).collect();
    let runs = 30;

    let gb: Vec<Vec<Node>> = (0..100).map(|_| grow(&mut rng, 8, 3, true)).collect();
    compare("GB regressor, 100 trees depth 3", &ensemble(&mut rng, &gb, 0, "SUM", "NONE"), &x, runs);
    compare("GB classifier (binary), 100 trees depth 3", &ensemble(&mut rng, &gb, 1, "SUM", "LOGISTIC"), &x, runs);

    let xgb: Vec<Vec<Node>> = (0..100).map(|_| grow(&mut rng, 64, 6, true)).collect();
    compare("XGBoost-like regressor, 100 trees depth 6", &ensemble(&mut rng, &xgb, 0, "SUM", "NONE"), &x, runs);

    let rf: Vec<Vec<Node>> = (0..100).map(|_| grow(&mut rng, 330, 10, false)).collect();
    let nodes: usize = rf.iter().map(|t| t.len()).sum::<usize>() / rf.len();
    let name = format!("RF regressor, 100 trees depth 10 ({nodes} nodes)");
    compare(&name, &ensemble(&mut rng, &rf, 0, "AVERAGE", "NONE"), &x, runs);
    compare("RF classifier 3 classes, depth 10", &ensemble(&mut rng, &rf, 3, "SUM", "NONE"), &x, runs);

    let et: Vec<Vec<Node>> = (0..100).map(|_| grow(&mut rng, 1100, 12, false)).collect();
    let nodes: usize = et.iter().map(|t| t.len()).sum::<usize>() / et.len();
    compare(
        &format!("ExtraTrees regressor, depth 12 ({nodes} nodes)"),
        &ensemble(&mut rng, &et, 0, "AVERAGE", "NONE"),
        &x,
        runs,
    );

    let deep: Vec<Vec<Node>> = (0..100).map(|_| grow(&mut rng, 768, 64, false)).collect();
    let d = deep.iter().map(|t| depth(t, 0)).max().unwrap();
    let nodes: usize = deep.iter().map(|t| t.len()).sum::<usize>() / deep.len();
    compare(
        &format!("deep RF regressor (depth {d}, {nodes} nodes)"),
        &ensemble(&mut rng, &deep, 0, "AVERAGE", "NONE"),
        &x,
        runs,
    );

    let only = std::env::args().nth(1);
    if only.as_ref().is_some_and(|a| a != "compile") {
        return;
    }
    if only.is_none() {
        isolation_forest(&mut rng, &x, runs);
    }
    // Load time of a large forest: 500 trees of 5,000 nodes.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let big: Vec<Vec<Node>> = (0..500).map(|_| grow(&mut rng, 2500, 64, false)).collect();
    let node = ensemble(&mut rng, &big, 0, "SUM", "NONE");
    let started = Instant::now();
    let _kernel = tree::compile(&node).unwrap();
    let took = started.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let spec = tree::parse(&node).unwrap();
    let parse = started.elapsed().as_secs_f64() * 1e3;
    println!("compile 500 trees x 5,000 nodes: {took:.0} ms ({parse:.0} ms of it parsing)");
    drop(spec);
}

/// IsolationForest-like: 100 trees of depth 8 summed by `Forest` (the fused graph's core),
/// against ORT on the committed skl2onnx IsolationForest (the whole 2,710-node graph).
fn isolation_forest(rng: &mut Rng, x: &[f32], runs: usize) {
    let iso: Vec<Vec<Node>> = (0..100).map(|_| grow(rng, 120, 8, false)).collect();
    let spec = tree::parse(&ensemble(rng, &iso, 0, "SUM", "NONE")).unwrap();
    let forest = tree::Forest::new(&spec.trees).unwrap();
    let mut out = vec![0f32; ROWS];
    let native = median_ms(runs, || forest.sum_f32(x, ROWS, WIDTH, &mut out).unwrap());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/isolation_forest.onnx");
    let mut session = ort_session(&std::fs::read(path).unwrap());
    let x8: Vec<f32> = x.chunks(WIDTH).flat_map(|r| r[..8].to_vec()).collect();
    let ort_ms = median_ms(runs, || {
        let value = ort::value::Tensor::from_array((vec![ROWS as i64, 8], x8.clone())).unwrap();
        std::hint::black_box(session.run(vec![("X", value)]).unwrap());
    });
    println!(
        "{:<44} native {native:7.3} ms   ORT {ort_ms:7.3} ms   x{:5.1}",
        "IsolationForest: Forest sum vs ORT graph",
        ort_ms / native
    );
}

/// `--onnx FILE... [--x ROWS] [--native] [--runs N]`: exported models against ORT.
fn onnx_files(args: &[String]) {
    let mut files = Vec::new();
    let (mut rows_file, mut native_only, mut runs) = (None, false, 50);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--x" => rows_file = it.next().cloned(),
            "--native" => native_only = true,
            "--runs" => runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            _ => files.push(std::path::PathBuf::from(a)),
        }
    }
    for path in files {
        let Ok(bytes) = std::fs::read(&path) else {
            eprintln!("{} is missing: run .venv/bin/python bench/native_models.py target/bench/native", path.display());
            std::process::exit(1);
        };
        let rows_path =
            rows_file.clone().map(std::path::PathBuf::from).unwrap_or_else(|| path.with_file_name("x_2048x20.f32"));
        let x: Vec<f32> = std::fs::read(&rows_path)
            .unwrap_or_else(|e| panic!("{}: {e}", rows_path.display()))
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let model = sqlscore_core::native::proto::decode_model(&bytes).expect("an ONNX model");
        let graph = model.graph.as_ref().expect("a graph");
        let ensembles: Vec<&NodeProto> = graph.node.iter().filter(|n| n.op_type.starts_with("TreeEnsemble")).collect();
        let Some(&node) = ensembles.first() else { panic!("{} has no tree ensemble", path.display()) };
        let spec = tree::parse(node).unwrap();
        let width = spec.required_width.max(1);
        let width = graph
            .input
            .first()
            .and_then(|i| match i.r#type.as_ref()?.value.as_ref()? {
                type_proto::Value::TensorType(t) => match t.shape.as_ref()?.dim.get(1)?.value {
                    Some(tensor_shape_proto::dimension::Value::DimValue(w)) => Some(w as usize),
                    _ => None,
                },
                _ => None,
            })
            .unwrap_or(width);
        let n = x.len() / width;
        let x = &x[..n * width];
        let nodes: usize = spec.trees.iter().map(|t| t.nodes.len()).sum();
        let name = format!(
            "{} ({} trees, {} nodes/tree)",
            path.file_stem().unwrap().to_string_lossy(),
            spec.trees.len(),
            nodes / spec.trees.len().max(1)
        );
        if ensembles.len() > 1 {
            // skl2onnx's IsolationForest: one single-tree regressor per tree. Time the trees
            // summed by a `Forest` (what the fused plan runs; feature ids are the file's).
            let trees: Vec<tree::TreeSpec> = ensembles.iter().flat_map(|n| tree::parse(n).unwrap().trees).collect();
            let forest = tree::Forest::new(&trees).unwrap();
            let w = forest.required_width().max(width);
            let xs: Vec<f32> = x.chunks(width).flat_map(|r| (0..w).map(|f| r[f % width])).collect();
            let mut out = vec![0f32; n];
            let (fastest, native) = spread_ms(runs, || forest.sum_f32(&xs, n, w, &mut out).unwrap());
            let name = format!("{} ({} trees, Forest sum)", path.file_stem().unwrap().to_string_lossy(), trees.len());
            if native_only {
                println!("{name:<48} native {native:7.3} ms   (fastest {fastest:.3} ms)");
                continue;
            }
            let mut session = ort_session(&bytes);
            let input_name = session.inputs()[0].name().to_string();
            let ort_ms = median_ms(runs, || {
                let value = ort::value::Tensor::from_array((vec![n as i64, width as i64], x.to_vec())).unwrap();
                std::hint::black_box(session.run(vec![(input_name.clone(), value.into_dyn())]).unwrap());
            });
            println!(
                "{name:<48} native {native:7.3} ms   ORT {ort_ms:7.3} ms   x{:5.1}   (whole graph)",
                ort_ms / native
            );
            continue;
        }
        let started = Instant::now();
        let kernel = tree::compile(node).unwrap();
        let compile_ms = started.elapsed().as_secs_f64() * 1e3;
        let input = Tensor::f32(vec![n, width], x.to_vec());
        let (fastest, native) = spread_ms(runs, || {
            std::hint::black_box(kernel.run(&[&input]).unwrap());
        });
        if native_only {
            println!("{name:<48} native {native:7.3} ms   (fastest {fastest:.3} ms, compile {compile_ms:.0} ms)");
            continue;
        }
        let mut session = ort_session(&bytes);
        let input_name = session.inputs()[0].name().to_string();
        let ort_ms = median_ms(runs, || {
            let value = ort::value::Tensor::from_array((vec![n as i64, width as i64], x.to_vec())).unwrap();
            std::hint::black_box(session.run(vec![(input_name.clone(), value.into_dyn())]).unwrap());
        });
        println!(
            "{name:<48} native {native:7.3} ms   ORT {ort_ms:7.3} ms   x{:5.1}   ({n} rows, load {compile_ms:.0} ms)",
            ort_ms / native
        );
    }
}
