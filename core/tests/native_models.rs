//! The native evaluator against ONNX Runtime on real converter exports: every committed model
//! compiles natively and gives ONNX Runtime's answers (within 1e-5, same labels) for every kind of
//! call, and a graph with an operator the evaluator lacks falls back and says which.

mod common;

use common::*;
use prost::Message;
use serde_json::Value;
use sqlscore_core::native::proto::{
    dtype, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TypeProto, ValueInfoProto,
};
use sqlscore_core::{Batch, Column, ColumnData, Engine, Evaluator, Model, Predictions, RunOptions, Want};

const TOL: f64 = 1e-5;

/// 1e-5 absolute for values within [-1, 1] (probabilities, most scores); relative beyond, since a
/// float32 raw margin of 73 has an ulp of 7.6e-6 and ONNX Runtime's own GEMM blocking moves it.
fn near(x: f64, y: f64) -> bool {
    x == y || (x - y).abs() <= TOL * x.abs().max(1.0) || (x.is_nan() && y.is_nan())
}

fn opts(evaluator: Evaluator) -> RunOptions {
    RunOptions { batch_rows: 4096, evaluator, ..RunOptions::DEFAULT }
}

fn close_json(a: &Value, b: &Value, what: &str) {
    match (a, b) {
        // serde_json writes NaN as null: both sides must be null then.
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            assert!(near(x, y), "{what}: native {x} vs onnxruntime {y}");
        }
        (Value::Array(x), Value::Array(y)) => {
            assert_eq!(x.len(), y.len(), "{what}: lengths");
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                close_json(p, q, &format!("{what}[{i}]"));
            }
        }
        (Value::Object(x), Value::Object(y)) => {
            assert_eq!(x.keys().collect::<Vec<_>>(), y.keys().collect::<Vec<_>>(), "{what}: outputs");
            for (k, v) in x {
                close_json(v, &y[k], &format!("{what}.{k}"));
            }
        }
        _ => assert_eq!(a, b, "{what}"),
    }
}

/// Every call kind the front ends make, native against ONNX Runtime on the same rows: the whole
/// batch at once, then single rows and pairs (per-row SQL calls; small batches take other paths
/// in both evaluators).
pub fn assert_same(name: &str, model: &Model, batch: &Batch<'_>) {
    let all: Vec<usize> = (0..batch.len).collect();
    assert_same_rows(name, model, batch, &all);
    for i in 0..batch.len.min(6) {
        assert_same_rows(name, model, batch, &[i]);
    }
    for i in (0..batch.len.min(40)).step_by(7) {
        assert_same_rows(name, model, batch, &all[i..(i + 2).min(batch.len)]);
    }
}

fn assert_same_rows(name: &str, model: &Model, batch: &Batch<'_>, rows: &[usize]) {
    let rows = rows.to_vec();
    for want in [Want::Score, Want::Label, Want::Probabilities, Want::All] {
        let ort = model.predict(name, batch, &rows, want, opts(Evaluator::OnnxRuntime));
        let native = model.predict(name, batch, &rows, want, opts(Evaluator::Native));
        let (ort, native) = match (ort, native) {
            (Ok(a), Ok(b)) => (a, b),
            // Both refuse (a NaN a Binarizer will not take): the texts differ, the outcome not.
            (Err(_), Err(_)) => continue,
            (a, b) => {
                let short = |r: &dyn std::fmt::Debug| format!("{r:?}").chars().take(300).collect::<String>();
                panic!("{name} {want:?}: onnxruntime {}, native {}", short(&a), short(&b))
            }
        };
        match (ort, native) {
            (Predictions::Score(a), Predictions::Score(b)) => {
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    match (x, y) {
                        (Some(x), Some(y)) => {
                            assert!(near(*x, *y), "{name} score row {i}: native {y} vs onnxruntime {x}")
                        }
                        _ => assert_eq!(x, y, "{name} score row {i}"),
                    }
                }
            }
            (Predictions::Label(a), Predictions::Label(b)) => {
                if let Some(i) = (0..a.len()).find(|i| a[*i] != b[*i]) {
                    panic!("{name} label row {i}: native {:?} vs onnxruntime {:?}", b[i], a[i]);
                }
            }
            (Predictions::Probabilities(a), Predictions::Probabilities(b)) => {
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    let (x, y) = (x.as_ref().unwrap(), y.as_ref().unwrap());
                    assert_eq!(x.len(), y.len());
                    for (p, q) in x.iter().zip(y) {
                        assert!(near(*p, *q), "{name} probabilities row {i}: native {y:?} vs onnxruntime {x:?}");
                    }
                }
            }
            (Predictions::All(a), Predictions::All(b)) => {
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    let x: Value = serde_json::from_str(x.as_ref().unwrap()).unwrap();
                    let y: Value = serde_json::from_str(y.as_ref().unwrap()).unwrap();
                    close_json(&y, &x, &format!("{name} score_all row {i}"));
                }
            }
            (a, b) => panic!("{name}: {a:?} vs {b:?}"),
        }
    }
}

/// A deterministic xorshift, so failures reproduce.
pub struct Rng(u64);
impl Rng {
    pub fn bits(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn unit(&mut self) -> f64 {
        (self.bits() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The reference rows, then the same rows jittered (numbers scaled by up to ±50%, some NaN), so
/// inputs reach branches the 32 reference rows miss.
fn widened(cols: &[(String, Owned)], rng: &mut Rng, with_nan: bool) -> Vec<(String, Owned)> {
    cols.iter()
        .map(|(name, owned)| {
            let o = match owned {
                Owned::F64(v) => {
                    let mut out = v.clone();
                    for _ in 0..8 {
                        out.extend(v.iter().map(|x| {
                            if with_nan && rng.unit() < 0.03 {
                                f64::NAN
                            } else {
                                ((x * (0.5 + rng.unit())) as f32) as f64
                            }
                        }));
                    }
                    Owned::F64(out)
                }
                Owned::I64(v) => {
                    let mut out = v.clone();
                    for _ in 0..8 {
                        out.extend(v.iter().map(|x| x + (rng.bits() % 5) as i64 - 2));
                    }
                    Owned::I64(out)
                }
                Owned::Str(v) => Owned::Str(v.iter().cycle().take(v.len() * 9).cloned().collect()),
            };
            (name.clone(), o)
        })
        .collect()
}

#[test]
fn committed_models_run_natively_and_agree_with_onnxruntime() {
    let engine = Engine::default();
    let mut rng = Rng(0x5eed);
    for name in ALL_MODELS {
        let model = engine.load_bytes(name, &std::fs::read(model_path(name)).unwrap()).unwrap();
        assert_eq!(model.engine(Evaluator::Auto), ("native", None), "{name} should run natively");
        let reference = reference(name);
        let cols = reference_columns(&reference);
        assert_same(name, &model, &batch(&cols, false));
        // NaN features reach the trees' missing-value branches; the linear models and SVM just
        // propagate them (the same way on both evaluators).
        let wide = widened(&cols, &mut rng, true);
        assert_same(name, &model, &batch(&wide, false));
    }
}

#[test]
fn large_batches_split_across_threads_give_the_same_answers() {
    let engine = Engine::default();
    let model = engine.load_bytes("gbm", &std::fs::read(model_path("gbm_classifier")).unwrap()).unwrap();
    let mut rng = Rng(7);
    let cols: Vec<Vec<f64>> = (0..8).map(|_| (0..20_000).map(|_| rng.unit() * 4.0 - 2.0).collect()).collect();
    let batch = Batch::new(cols.iter().map(|c| Column::new(None, ColumnData::F64(c), None)).collect(), 20_000);
    let rows: Vec<usize> = (0..20_000).collect();
    let one = model.predict("gbm", &batch, &rows, Want::Probabilities, opts(Evaluator::Native)).unwrap();
    let two = model
        .predict("gbm", &batch, &rows, Want::Probabilities, RunOptions { intra_threads: 2, ..opts(Evaluator::Native) })
        .unwrap();
    assert_eq!(one, two);
    let ort = model.predict("gbm", &batch, &rows, Want::Probabilities, opts(Evaluator::OnnxRuntime)).unwrap();
    let (Predictions::Probabilities(a), Predictions::Probabilities(b)) = (one, ort) else { panic!() };
    for (x, y) in a.iter().zip(&b) {
        for (p, q) in x.as_ref().unwrap().iter().zip(y.as_ref().unwrap()) {
            assert!(near(*p, *q));
        }
    }
}

fn tensor_type(elem: i32, dims: &[i64]) -> Option<TypeProto> {
    Some(TypeProto::tensor(elem, dims))
}

/// X float[N, 3] -> `op` -> Y float[N, 3].
fn one_op_model(op: &str) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 17 }],
        graph: Some(GraphProto {
            node: vec![NodeProto {
                input: vec!["X".into()],
                output: vec!["Y".into()],
                op_type: op.into(),
                ..Default::default()
            }],
            name: "g".into(),
            input: vec![ValueInfoProto { name: "X".into(), r#type: tensor_type(dtype::FLOAT, &[-1, 3]) }],
            output: vec![ValueInfoProto { name: "Y".into(), r#type: tensor_type(dtype::FLOAT, &[-1, 3]) }],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn an_unsupported_operator_falls_back_to_onnxruntime_and_is_named() {
    let engine = Engine::default();
    let model = engine.load_bytes("rounder", &one_op_model("Round")).unwrap();
    let (which, why) = model.engine(Evaluator::Auto);
    assert_eq!(which, "onnxruntime");
    assert!(why.as_deref().is_some_and(|w| w.contains("Round")), "{why:?}");
    let cols = [vec![0.4, 1.6], vec![2.5, -0.5], vec![7.0, 8.2]];
    let batch = Batch::new(cols.iter().map(|c| Column::new(None, ColumnData::F64(c), None)).collect(), 2);
    // auto runs it on ONNX Runtime; native refuses, naming the operator and the setting.
    let auto = model.predict("rounder", &batch, &[0, 1], Want::Score, opts(Evaluator::Auto)).unwrap();
    assert_eq!(auto.into_scores(), vec![Some(0.0), Some(2.0)]);
    let err = model.predict("rounder", &batch, &[0, 1], Want::Score, opts(Evaluator::Native)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("rounder") && text.contains("Round") && text.contains("native"), "{text}");
    // A supported operator in the same frame runs natively.
    let model = engine.load_bytes("abs", &one_op_model("Abs")).unwrap();
    assert_eq!(model.engine(Evaluator::Auto), ("native", None));
    assert_same("abs", &model, &batch);
}

/// `models/native/<name>.json` rows: one positional column per feature value, NaN for null.
fn export_columns(spec: &Value) -> Vec<(String, Owned)> {
    let mut out = Vec::new();
    for input in spec["inputs"].as_array().unwrap() {
        let name = input["name"].as_str().unwrap();
        let rows = spec["columns"][name].as_array().unwrap();
        let width = rows[0].as_array().map_or(1, Vec::len);
        for k in 0..width {
            let cells = rows.iter().map(|r| r.as_array().map_or(r, |a| &a[k]));
            let owned = match input["type"].as_str().unwrap() {
                "string" => Owned::Str(cells.map(|v| v.as_str().unwrap().to_string()).collect()),
                "int64" | "int32" => Owned::I64(cells.map(|v| v.as_i64().unwrap()).collect()),
                _ => Owned::F64(cells.map(|v| v.as_f64().unwrap_or(f64::NAN)).collect()),
            };
            out.push((format!("{name}{k}"), owned));
        }
    }
    out
}

/// Every converter export in models/native (scikit-learn pipelines, LightGBM, XGBoost,
/// CatBoost; see its README) runs natively and agrees with ONNX Runtime, ZipMaps included.
#[test]
fn converter_exports_run_natively_and_agree_with_onnxruntime() {
    let dir = models_dir().join("native");
    let engine = Engine::default();
    let mut rng = Rng(0xfeed);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".onnx").map(String::from))
        .collect();
    names.sort();
    assert!(names.len() >= 40, "models/native has {} models", names.len());
    let mut fallbacks = Vec::new();
    for name in &names {
        let spec: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap()).unwrap();
        let model = engine.load_bytes(name, &std::fs::read(dir.join(format!("{name}.onnx"))).unwrap()).unwrap();
        if let (_, Some(why)) = model.engine(Evaluator::Auto) {
            fallbacks.push(format!("{name}: {why}"));
            continue;
        }
        let cols = export_columns(&spec);
        assert_same(name, &model, &batch(&cols, false));
        let wide = widened(&cols, &mut rng, true);
        assert_same(name, &model, &batch(&wide, false));
    }
    assert!(fallbacks.is_empty(), "these exports do not run natively:\n{}", fallbacks.join("\n"));
}

/// Shapes come from the model: a regressor declaring 2^40 targets must not make the process
/// allocate them (an abort kills the database). ONNX Runtime refuses it or fails its own
/// allocation as an error; the native evaluator refuses it at compile time.
#[test]
fn a_model_cannot_size_native_allocations() {
    use sqlscore_core::native::proto::AttributeProto;
    let ints = |name: &str, v: Vec<i64>| AttributeProto { name: name.into(), ints: v, r#type: 7, ..Default::default() };
    let node = NodeProto {
        input: vec!["X".into()],
        output: vec!["Y".into()],
        op_type: "TreeEnsembleRegressor".into(),
        domain: "ai.onnx.ml".into(),
        attribute: vec![
            ints("nodes_treeids", vec![0]),
            ints("nodes_nodeids", vec![0]),
            ints("nodes_featureids", vec![0]),
            ints("nodes_truenodeids", vec![0]),
            ints("nodes_falsenodeids", vec![0]),
            AttributeProto { name: "nodes_values".into(), floats: vec![0.0], r#type: 6, ..Default::default() },
            AttributeProto {
                name: "nodes_modes".into(),
                strings: vec![b"LEAF".to_vec()],
                r#type: 8,
                ..Default::default()
            },
            ints("target_treeids", vec![0]),
            ints("target_nodeids", vec![0]),
            ints("target_ids", vec![0]),
            AttributeProto { name: "target_weights".into(), floats: vec![1.0], r#type: 6, ..Default::default() },
            AttributeProto { name: "n_targets".into(), i: 1 << 40, r#type: 2, ..Default::default() },
        ],
        ..Default::default()
    };
    let err = sqlscore_core::native::tree::compile(&node).err().expect("refused");
    assert!(err.contains("targets"), "{err}");
    let bytes = ModelProto {
        ir_version: 8,
        opset_import: vec![
            OperatorSetIdProto { domain: String::new(), version: 17 },
            OperatorSetIdProto { domain: "ai.onnx.ml".into(), version: 3 },
        ],
        graph: Some(GraphProto {
            node: vec![node],
            name: "g".into(),
            input: vec![ValueInfoProto { name: "X".into(), r#type: tensor_type(dtype::FLOAT, &[-1, 3]) }],
            output: vec![ValueInfoProto { name: "Y".into(), r#type: tensor_type(dtype::FLOAT, &[-1, 1]) }],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec();
    // Loading either fails cleanly or leaves the model on ONNX Runtime; the process survives.
    if let Ok(model) = Engine::default().load_bytes("bomb", &bytes) {
        assert_eq!(model.engine(Evaluator::Auto).0, "onnxruntime");
    }
}
