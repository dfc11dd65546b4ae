//! `sqlscore bench-native`: the native evaluator against ONNX Runtime on the same model and the
//! same rows, one thread each, in one run: ms per batch of 2,048 rows, the ratio, the per-call
//! cost of a single row, and the compile time of a large forest. The models come from
//! `bench/native_models.py` (skl2onnx exports of the model shapes).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use ort::value::Tensor as OrtTensor;
use prost::Message;
use sqlscore_core::native::proto::{
    decode_model, dtype, AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TypeProto,
    ValueInfoProto,
};
use sqlscore_core::native::{Data, Plan, Tensor};

use crate::BoxError;

#[derive(Args)]
pub struct BenchNativeArgs {
    /// Folder written by bench/native_models.py.
    #[arg(long, default_value = "target/bench/native")]
    dir: PathBuf,
    /// Rows per batch.
    #[arg(long, default_value_t = 2048)]
    batch: usize,
    /// Minimum time spent measuring each case.
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
}

const MODELS: &[(&str, &str)] = &[
    ("gbc_100x3", "GradientBoostingClassifier, 100 trees, depth 3"),
    ("gbr_100x3", "GradientBoostingRegressor, 100 trees, depth 3"),
    ("rfc_100x10", "RandomForestClassifier, 100 trees, depth 10"),
    ("etr_100x12", "ExtraTreesRegressor, 100 trees, depth 12"),
    ("rfc_100_full", "RandomForestClassifier, 100 trees, fully grown"),
    ("iforest_100", "IsolationForest, 100 trees"),
    ("logreg", "LogisticRegression"),
    ("scaler_ocsvm", "StandardScaler + OneClassSVM (rbf)"),
];

/// Median time of `f` over repeated runs lasting at least `budget`.
fn median(budget: Duration, mut f: impl FnMut()) -> Duration {
    f();
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed() < budget || times.len() < 5 {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort_unstable();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn run(args: BenchNativeArgs) -> Result<(), BoxError> {
    let x: Vec<f32> = std::fs::read(args.dir.join("x_2048x20.f32"))?
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let width = 20;
    let n = args.batch.min(x.len() / width);
    let x = &x[..n * width];
    let budget = Duration::from_secs_f64(args.seconds);
    let env = sqlscore_core::runtime::environment()?;
    println!("| model | ONNX Runtime, ms / {n} rows | native, ms / {n} rows | native speed-up | ORT, us / 1 row | native, us / 1 row |");
    println!("|---|---|---|---|---|---|");
    for (name, what) in MODELS {
        let path = args.dir.join(format!("{name}.onnx"));
        let bytes = std::fs::read(&path)?;
        let plan = Plan::compile(&decode_model(&bytes)?).map_err(|e| format!("{name}: {e}"))?;
        let mut session = ort::session::Session::builder(&env)
            .map_err(|e| e.to_string())?
            .with_intra_threads(1)
            .map_err(|e| e.to_string())?
            .commit_from_memory(&bytes)
            .map_err(|e| e.to_string())?;
        let input = session.inputs()[0].name().to_string();
        let mut ort_run = |rows: &[f32]| -> f64 {
            let t = OrtTensor::from_array(([rows.len() / width, width], rows.to_vec())).expect("tensor");
            let out = session.run(vec![(input.clone(), t.into_dyn())]).expect("ort run");
            let mut sum = 0f64;
            for (_, v) in out.iter() {
                if let Ok((_, d)) = v.try_extract_tensor::<f32>() {
                    sum += d[0] as f64;
                }
            }
            sum
        };
        let native_run = |rows: &[f32]| -> f64 {
            let t = Tensor::f32(vec![rows.len() / width, width], rows.to_vec());
            let out = plan.run(vec![t]).expect("native run");
            out.iter().map(|t| if let Data::F32(v) = &t.data { v[0] as f64 } else { 0.0 }).sum()
        };
        let ort_batch = median(budget, || {
            std::hint::black_box(ort_run(x));
        });
        let native_batch = median(budget, || {
            std::hint::black_box(native_run(x));
        });
        let ort_one = median(budget / 4, || {
            std::hint::black_box(ort_run(&x[..width]));
        });
        let native_one = median(budget / 4, || {
            std::hint::black_box(native_run(&x[..width]));
        });
        println!(
            "| {what} | {:.3} | {:.3} | **{:.1}x** | {:.1} | {:.2} |",
            ms(ort_batch),
            ms(native_batch),
            ort_batch.as_secs_f64() / native_batch.as_secs_f64(),
            ort_one.as_secs_f64() * 1e6,
            native_one.as_secs_f64() * 1e6,
        );
    }
    let (trees, nodes) = (500, 5000);
    let model = synthetic_forest(trees, nodes, width);
    let bytes = model.encode_to_vec();
    let t = Instant::now();
    let decoded = decode_model(&bytes)?;
    let plan = Plan::compile(&decoded).map_err(|e| e.to_string())?;
    let compile = t.elapsed();
    std::hint::black_box(&plan);
    println!();
    println!(
        "Compile (decode + plan) of a {trees}-tree forest with {} nodes per tree ({:.1} MB): {:.0} ms",
        nodes - 1,
        bytes.len() as f64 / 1e6,
        ms(compile)
    );
    Ok(())
}

/// A regressor of `trees` random trees with `nodes - 1` nodes each (complete binary trees cut
/// to size), as a converter would write it.
fn synthetic_forest(trees: usize, nodes: usize, width: usize) -> ModelProto {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let per_tree = nodes - 1; // odd: every branch has two children
    let mut a: std::collections::BTreeMap<&str, Vec<i64>> = Default::default();
    let (mut values, mut weights, mut modes) = (Vec::new(), Vec::new(), Vec::new());
    for t in 0..trees {
        for id in 0..per_tree {
            let leaf = 2 * id + 1 >= per_tree;
            a.entry("nodes_treeids").or_default().push(t as i64);
            a.entry("nodes_nodeids").or_default().push(id as i64);
            a.entry("nodes_featureids").or_default().push((next() % width as u64) as i64);
            a.entry("nodes_truenodeids").or_default().push(if leaf { 0 } else { 2 * id as i64 + 1 });
            a.entry("nodes_falsenodeids").or_default().push(if leaf { 0 } else { 2 * id as i64 + 2 });
            values.push(((next() % 2000) as f32 - 1000.0) / 500.0);
            modes.push(if leaf { b"LEAF".to_vec() } else { b"BRANCH_LEQ".to_vec() });
            if leaf {
                a.entry("target_treeids").or_default().push(t as i64);
                a.entry("target_nodeids").or_default().push(id as i64);
                a.entry("target_ids").or_default().push(0);
                weights.push((next() % 1000) as f32 / 1000.0);
            }
        }
    }
    let mut attribute: Vec<AttributeProto> = a
        .into_iter()
        .map(|(name, ints)| AttributeProto { name: name.into(), ints, r#type: 7, ..Default::default() })
        .collect();
    attribute.push(AttributeProto { name: "nodes_values".into(), floats: values, r#type: 6, ..Default::default() });
    attribute.push(AttributeProto { name: "target_weights".into(), floats: weights, r#type: 6, ..Default::default() });
    attribute.push(AttributeProto { name: "nodes_modes".into(), strings: modes, r#type: 8, ..Default::default() });
    attribute.push(AttributeProto { name: "n_targets".into(), i: 1, r#type: 2, ..Default::default() });
    let tensor = |dims: Vec<i64>| Some(TypeProto::tensor(dtype::FLOAT, &dims));
    ModelProto {
        ir_version: 8,
        opset_import: vec![
            OperatorSetIdProto { domain: String::new(), version: 17 },
            OperatorSetIdProto { domain: "ai.onnx.ml".into(), version: 3 },
        ],
        graph: Some(GraphProto {
            node: vec![NodeProto {
                input: vec!["X".into()],
                output: vec!["Y".into()],
                op_type: "TreeEnsembleRegressor".into(),
                domain: "ai.onnx.ml".into(),
                attribute,
                ..Default::default()
            }],
            name: "forest".into(),
            input: vec![ValueInfoProto { name: "X".into(), r#type: tensor(vec![-1, width as i64]) }],
            output: vec![ValueInfoProto { name: "Y".into(), r#type: tensor(vec![-1, 1]) }],
            ..Default::default()
        }),
        ..Default::default()
    }
}
