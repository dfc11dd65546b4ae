//! A job batch over per-sensor models: grouped scoring equals scoring each model's rows alone, and
//! the error policies act row by row.

mod common;

use std::sync::Arc;

use common::*;
use sqlscore_core::job::score_grouped;
use sqlscore_core::{Batch, Column, ColumnData, Engine, Error, Model, OnError, Outputs, RunOptions, Want};

const OPTS: RunOptions = RunOptions { batch_rows: 1024, ..RunOptions::DEFAULT };

fn sensor_models(engine: &Engine) -> Vec<Arc<Model>> {
    (0..3).map(|s| engine.load_path(&models_dir().join(format!("demo/anomaly_d0_s{s}.onnx"))).unwrap()).collect()
}

/// 300 readings spread over three sensors, some NULL; the feature column is named `value`.
fn readings() -> (Vec<f64>, Vec<u64>, Vec<Option<String>>) {
    let n: usize = 300;
    let values: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() * 3.0).collect();
    let mut validity = vec![u64::MAX; n.div_ceil(64)];
    for r in [7usize, 150, 299] {
        validity[r / 64] &= !(1 << (r % 64));
    }
    let models = (0..n).map(|i| Some(format!("anomaly_{}", i % 3))).collect();
    (values, validity, models)
}

/// The readings as a job's batch: one feature column named `value`, bound by position.
fn value_batch<'a>(values: &'a [f64], validity: &'a [u64]) -> Batch<'a> {
    Batch::new(vec![Column::new(Some("value".into()), ColumnData::F64(values), Some(validity))], values.len())
        .bound_by_position()
}

fn resolver(models: &[Arc<Model>]) -> impl FnMut(&str) -> sqlscore_core::Result<(Arc<Model>, i32)> + '_ {
    move |name| {
        let s: usize = name
            .trim_start_matches("anomaly_")
            .parse()
            .map_err(|_| Error::UnknownModel { model: name.into(), known: vec![] })?;
        models.get(s).cloned().map(|m| (m, 7)).ok_or(Error::UnknownModel { model: name.into(), known: vec![] })
    }
}

#[test]
fn grouped_scores_equal_each_model_alone_and_reject_only_null_rows() {
    let engine = Engine::default();
    let models = sensor_models(&engine);
    let (values, validity, names) = readings();
    let batch = value_batch(&values, &validity);
    let out = score_grouped(&batch, &names, resolver(&models), Outputs::default(), OnError::Reject, OPTS).unwrap();
    assert_eq!(out.len(), values.len());
    for (s, model) in models.iter().enumerate() {
        let rows: Vec<usize> = (0..values.len()).filter(|r| r % 3 == s && batch.columns[0].is_valid(*r)).collect();
        let alone = model.predict("m", &batch, &rows, Want::Score, OPTS).unwrap().into_scores();
        for (r, want) in rows.iter().zip(alone) {
            assert_eq!(out[*r].score, want, "row {r}");
            assert_eq!(out[*r].version, Some(7));
            assert!(out[*r].rejected.is_none());
        }
    }
    for r in [7, 150, 299] {
        let why = out[r].rejected.as_deref().unwrap_or_else(|| panic!("row {r} not rejected"));
        assert!(why.contains("value") && why.contains("NULL"), "{why}");
        assert_eq!(out[r].score, None);
    }
}

#[test]
fn null_policy_scores_null_and_raise_fails_naming_the_column() {
    let engine = Engine::default();
    let models = sensor_models(&engine);
    let (values, validity, names) = readings();
    let batch = value_batch(&values, &validity);
    let out = score_grouped(&batch, &names, resolver(&models), Outputs::default(), OnError::Null, OPTS).unwrap();
    assert!(out.iter().all(|o| o.rejected.is_none()));
    assert_eq!(out.iter().filter(|o| o.score.is_none()).count(), 3);
    let e = score_grouped(&batch, &names, resolver(&models), Outputs::default(), OnError::Raise, OPTS).unwrap_err();
    assert!(e.to_string().contains("column \"value\" is NULL"), "{e}");
}

#[test]
fn an_unknown_model_fails_the_batch_under_every_policy() {
    let engine = Engine::default();
    let models = sensor_models(&engine);
    let values = vec![0.5, 1.5];
    let batch = Batch::new(vec![Column::new(None, ColumnData::F64(&values), None)], 2);
    let names = vec![Some("anomaly_0".to_string()), Some("anomaly_9".to_string())];
    for policy in [OnError::Raise, OnError::Null, OnError::Reject] {
        let e = score_grouped(&batch, &names, resolver(&models), Outputs::default(), policy, OPTS).unwrap_err();
        assert!(matches!(e, Error::UnknownModel { ref model, .. } if model == "anomaly_9"), "{policy:?}: {e}");
    }
    // A NULL model name is a row error: rejected, or NULL, or the batch fails.
    let names = vec![Some("anomaly_0".to_string()), None];
    let out = score_grouped(&batch, &names, resolver(&models), Outputs::default(), OnError::Reject, OPTS).unwrap();
    assert!(out[0].score.is_some() && out[1].rejected.is_some());
    assert!(score_grouped(&batch, &names, resolver(&models), Outputs::default(), OnError::Raise, OPTS).is_err());
}

#[test]
fn labels_and_probabilities_come_with_the_score() {
    let engine = Engine::default();
    let lr = engine.load_path(&model_path("logistic_binary")).unwrap();
    let values: Vec<f64> = (0..8 * 5).map(|i| i as f64 * 0.1).collect();
    let columns: Vec<Vec<f64>> = (0..8).map(|k| (0..5).map(|r| values[r * 8 + k]).collect()).collect();
    let batch = Batch::new(columns.iter().map(|c| Column::new(None, ColumnData::F64(c), None)).collect(), 5);
    let names = vec![Some("lr".to_string()); 5];
    let out = score_grouped(
        &batch,
        &names,
        |_| Ok((lr.clone(), 1)),
        Outputs { label: true, probabilities: true },
        OnError::Raise,
        OPTS,
    )
    .unwrap();
    for o in &out {
        let p = o.probabilities.as_ref().unwrap();
        assert_eq!(p.len(), 2);
        assert!((o.score.unwrap() - p[1]).abs() < 1e-6, "score is the positive-class probability");
        assert!(o.label.is_some());
    }
}

#[test]
fn features_that_do_not_fit_fail_the_batch_even_under_reject() {
    let engine = Engine::default();
    let models = sensor_models(&engine);
    let words = ["a", "b"];
    let batch = Batch::new(vec![Column::new(Some("value".into()), ColumnData::Str(words.to_vec()), None)], 2);
    let names = vec![Some("anomaly_0".to_string()); 2];
    for policy in [OnError::Null, OnError::Reject] {
        let e = score_grouped(&batch, &names, resolver(&models), Outputs::default(), policy, OPTS).unwrap_err();
        assert!(matches!(e, Error::TypeMismatch { .. }), "{policy:?}: {e}");
    }
}
