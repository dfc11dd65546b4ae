//! Every committed test model, run through the engine, matches Python onnxruntime's outputs.

mod common;

use common::*;
use sqlscore_core::{Engine, Predictions, RunOptions, Want};

const OPTS: RunOptions = RunOptions { batch_rows: 7, ..RunOptions::DEFAULT };

fn assert_close(model: &str, what: &str, got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{model} {what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= 1e-5, "{model} {what} row {i}: got {g}, want {w}");
    }
}

#[test]
fn all_models_match_python_reference() {
    let engine = Engine::default();
    for name in ALL_MODELS {
        let reference = reference(name);
        let model = engine.load_bytes(name, &std::fs::read(model_path(name)).unwrap()).unwrap();
        let cols = reference_columns(&reference);
        let batch = batch(&cols, false);
        let rows: Vec<usize> = (0..batch.len).collect();
        let expected = &reference["expected"];

        // batch_rows = 7 forces several ONNX Runtime runs per call: results must not depend on it.
        let Predictions::Score(scores) = model.predict(name, &batch, &rows, Want::Score, OPTS).unwrap() else {
            panic!()
        };
        let want: Vec<f64> = expected["score"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_close(name, "score", &scores.iter().map(|s| s.unwrap()).collect::<Vec<_>>(), &want);

        if let Some(labels) = expected["label"].as_array() {
            let Predictions::Label(got) = model.predict(name, &batch, &rows, Want::Label, OPTS).unwrap() else {
                panic!()
            };
            let want: Vec<String> = labels.iter().map(|v| v.as_str().unwrap().to_string()).collect();
            assert_eq!(got.into_iter().map(Option::unwrap).collect::<Vec<_>>(), want, "{name} labels");
        } else {
            let err = model.predict(name, &batch, &rows, Want::Label, OPTS).unwrap_err();
            assert!(err.to_string().contains("no label output"), "{name}: {err}");
        }

        if let Some(probas) = expected["probabilities"].as_array() {
            let Predictions::Probabilities(got) =
                model.predict(name, &batch, &rows, Want::Probabilities, OPTS).unwrap()
            else {
                panic!()
            };
            for (i, (g, w)) in got.iter().zip(probas).enumerate() {
                let w: Vec<f64> = w.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
                assert_close(name, &format!("probabilities row {i}"), g.as_ref().unwrap(), &w);
            }
        }

        // score_all carries every raw output under its ONNX name.
        let Predictions::All(all) = model.predict(name, &batch, &rows, Want::All, OPTS).unwrap() else { panic!() };
        let first: serde_json::Value = serde_json::from_str(all[0].as_ref().unwrap()).unwrap();
        for out in reference["outputs"].as_object().unwrap().keys() {
            assert!(first.get(out).is_some(), "{name}: score_all lacks output {out}: {first}");
        }
    }
}

#[test]
fn introspection_reports_inputs_outputs() {
    let engine = Engine::default();
    let m = engine.load_path(&model_path("column_transformer")).unwrap();
    let names: Vec<&str> = m.info.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["city", "age", "income"]);
    assert_eq!(m.info.signature(), "city: string, age: float, income: float");
    let json: serde_json::Value = serde_json::from_str(&m.info.inputs_json()).unwrap();
    assert_eq!(json[0]["type"], "string");
    assert_eq!(json[0]["shape"], serde_json::json!([-1, 1]));
    let lr = engine.load_path(&model_path("logistic_binary")).unwrap();
    assert_eq!(lr.info.feature_count(), 8);
    assert_eq!(lr.sha256.len(), 64);
}
