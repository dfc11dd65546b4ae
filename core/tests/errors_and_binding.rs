//! Binding by name, NULL handling, per-row selections and every bad-input error.

mod common;

use common::*;
use sqlscore_core::{
    Batch, Column, ColumnData, Dialect, Engine, Error, ErrorKind, NullPolicy, Predictions, RunOptions, Want,
};

const OPTS: RunOptions = RunOptions { batch_rows: 1024, ..RunOptions::DEFAULT };

fn scores(p: Predictions) -> Vec<Option<f64>> {
    match p {
        Predictions::Score(v) => v,
        other => panic!("{other:?}"),
    }
}

#[test]
fn by_name_binding_ignores_order_and_extra_columns() {
    let engine = Engine::default();
    let m = engine.load_path(&model_path("column_transformer")).unwrap();
    let reference = reference("column_transformer");
    let cols = reference_columns(&reference);
    let positional = batch(&cols, false);
    let rows: Vec<usize> = (0..positional.len).collect();
    let want = scores(m.predict("ct", &positional, &rows, Want::Score, OPTS).unwrap());

    // A row struct: fields reversed, plus an id column the model does not use.
    let ids: Vec<i64> = (0..positional.len as i64).collect();
    let mut named = batch(&cols, true);
    named.columns.reverse();
    named.columns.insert(1, Column::new(Some("id".into()), ColumnData::I64(&ids), None));
    let got = scores(m.predict("ct", &named, &rows, Want::Score, OPTS).unwrap());
    assert_eq!(got, want);
}

#[test]
fn struct_fields_bind_positionally_to_a_single_wide_input() {
    let engine = Engine::default();
    let m = engine.load_path(&model_path("logistic_binary")).unwrap();
    let reference = reference("logistic_binary");
    let cols = reference_columns(&reference);
    let rows: Vec<usize> = (0..32).collect();
    let a = scores(m.predict("lr", &batch(&cols, false), &rows, Want::Score, OPTS).unwrap());
    let b = scores(m.predict("lr", &batch(&cols, true), &rows, Want::Score, OPTS).unwrap());
    assert_eq!(a, b);
}

#[test]
fn null_feature_gives_null_row_and_rest_is_scored() {
    let engine = Engine::default();
    let m = engine.load_path(&model_path("logistic_binary")).unwrap();
    let reference = reference("logistic_binary");
    let cols = reference_columns(&reference);
    let full = batch(&cols, false);
    let rows: Vec<usize> = (0..32).collect();
    let want = scores(m.predict("lr", &full, &rows, Want::Score, OPTS).unwrap());

    // Rows 3 and 40-bit-pattern: mark row 3 and row 17 invalid in column 2.
    let mask: [u64; 1] = [!((1u64 << 3) | (1u64 << 17))];
    let mut with_nulls = full.clone();
    with_nulls.columns[2].validity = Some(&mask);
    let got = scores(m.predict("lr", &with_nulls, &rows, Want::Score, OPTS).unwrap());
    for i in 0..32 {
        if i == 3 || i == 17 {
            assert_eq!(got[i], None);
        } else {
            assert_eq!(got[i], want[i], "row {i}");
        }
    }

    let strict = RunOptions { null_policy: NullPolicy::Error, ..OPTS };
    let err = m.predict("lr", &with_nulls, &rows, Want::Score, strict).unwrap_err();
    assert!(matches!(err, Error::NullFeature { .. }));
    assert_eq!(err.to_string(), "model 'lr': feature 3 is NULL");
}

#[test]
fn selection_scores_only_chosen_rows_in_order() {
    let engine = Engine::default();
    let m = engine.load_path(&model_path("gbm_regressor")).unwrap();
    let cols = reference_columns(&reference("gbm_regressor"));
    let b = batch(&cols, false);
    let all: Vec<usize> = (0..32).collect();
    let want = scores(m.predict("gbm", &b, &all, Want::Score, OPTS).unwrap());
    let pick = [30usize, 2, 2, 9];
    let got = scores(m.predict("gbm", &b, &pick, Want::Score, OPTS).unwrap());
    assert_eq!(got, pick.iter().map(|&r| want[r]).collect::<Vec<_>>());
}

#[test]
fn wrong_arity_names_model_and_signature() {
    let engine = Engine::default();
    let m = engine.load_path(&model_path("logistic_binary")).unwrap();
    let x = [1.0f64; 4];
    let b = Batch::new(vec![Column::new(None, ColumnData::F64(&x), None); 3], 4);
    let err = m.predict("churn", &b, &[0, 1], Want::Score, OPTS).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UserInput);
    assert_eq!(err.to_string(), "model 'churn' expects 8 feature value(s) (X: float[8]), got 3");
    assert!(err.hint(&Dialect::NEUTRAL).unwrap().contains("input order"));
}

#[test]
fn text_for_float_and_float_for_text_are_rejected() {
    let engine = Engine::default();
    let lr = engine.load_path(&model_path("logistic_binary")).unwrap();
    let x = [1.0f64; 2];
    let s = vec!["a", "b"];
    let mut cols = vec![Column::new(None, ColumnData::F64(&x), None); 8];
    cols[5] = Column::new(None, ColumnData::Str(s.clone()), None);
    let err = lr.predict("lr", &Batch::new(cols, 2), &[0, 1], Want::Score, OPTS).unwrap_err();
    assert_eq!(err.to_string(), "model 'lr': input 'X' expects a number (float), but feature 6 is text");
    // Type names come from the front end's dialect, or from the column's own SQL type.
    const PG: Dialect =
        Dialect { text: "text", double: "double precision", cast_example: "x::double precision", ..Dialect::NEUTRAL };
    let mut cols = vec![Column::new(None, ColumnData::F64(&x), None); 8];
    cols[5] = Column::new(None, ColumnData::Str(s.clone()), None).with_sql_type("character varying");
    let err =
        lr.predict("lr", &Batch::new(cols, 2), &[0, 1], Want::Score, RunOptions { dialect: &PG, ..OPTS }).unwrap_err();
    assert!(err.to_string().ends_with("feature 6 is character varying"), "{err}");
    assert!(err.hint(&PG).unwrap().contains("x::double precision"));

    let ct = engine.load_path(&model_path("column_transformer")).unwrap();
    let cols = vec![
        Column::new(Some("city".into()), ColumnData::F64(&x), None),
        Column::new(Some("age".into()), ColumnData::F64(&x), None),
        Column::new(Some("income".into()), ColumnData::F64(&x), None),
    ];
    let err = ct.predict("ct", &Batch::new(cols, 2), &[0, 1], Want::Score, OPTS).unwrap_err();
    assert!(err.to_string().contains("input 'city' expects text, but column \"city\" is double"), "{err}");

    let int_model = engine.load_path(&model_path("int64_model")).unwrap();
    let cols = vec![Column::new(None, ColumnData::F64(&x), None); 3];
    let err = int_model.predict("im", &Batch::new(cols, 2), &[0], Want::Score, OPTS).unwrap_err();
    assert!(err.to_string().contains("expects an integer (int64)"), "{err}");
}

#[test]
fn struct_missing_a_named_input() {
    let engine = Engine::default();
    let ct = engine.load_path(&model_path("column_transformer")).unwrap();
    let x = [1.0f64; 2];
    let s = vec!["paris", "rome"];
    let cols = vec![
        Column::new(Some("city".into()), ColumnData::Str(s), None),
        Column::new(Some("age".into()), ColumnData::F64(&x), None),
    ];
    let err = ct.predict("ct", &Batch::new(cols, 2), &[0, 1], Want::Score, OPTS).unwrap_err();
    assert_eq!(err.to_string(), "model 'ct': the row has no field 'income' (float); its fields are: city, age");
}

#[test]
fn corrupt_and_non_onnx_bytes_are_invalid_models() {
    let engine = Engine::default();
    let err = engine.load_bytes("junk", b"definitely not a protobuf").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Model);
    assert!(err.to_string().starts_with("model 'junk' is not a valid ONNX model"), "{err}");
    let good = std::fs::read(model_path("gbm_regressor")).unwrap();
    let err = engine.load_bytes("truncated", &good[..good.len() / 2]).unwrap_err();
    assert!(matches!(err, Error::InvalidModel { .. }), "{err}");
    assert_eq!(engine.cached_models(), 0);
}

#[test]
fn tampered_registry_hash_is_detected() {
    let engine = Engine::default();
    let bytes = std::fs::read(model_path("logistic_binary")).unwrap();
    let err = engine.get_or_load("m", &"0".repeat(64), || Ok(bytes.clone())).unwrap_err();
    assert!(err.to_string().contains("does not match its bytes"), "{err}");
    let sha = sqlscore_core::sha256_hex(&bytes);
    let m = engine.get_or_load("m", &sha, || Ok(bytes.clone())).unwrap();
    // Cached by content hash: the second lookup never asks for the bytes.
    let again = engine.get_or_load("m", &sha, || panic!("bytes must not be read on a cache hit")).unwrap();
    assert!(std::sync::Arc::ptr_eq(&m, &again));
}

#[test]
fn names_and_references() {
    assert!(sqlscore_core::validate_name("churn").is_ok());
    for bad in ["", "a@1", "dir/m", "m.onnx"] {
        assert!(sqlscore_core::validate_name(bad).is_err(), "{bad}");
    }
    assert_eq!(sqlscore_core::parse_ref("churn@3").unwrap(), ("churn", Some(3)));
    assert_eq!(sqlscore_core::parse_ref("churn").unwrap(), ("churn", None));
    assert!(sqlscore_core::parse_ref("churn@x").is_err());
    assert_eq!("ERROR".parse::<NullPolicy>().unwrap(), NullPolicy::Error);
    assert!("maybe".parse::<NullPolicy>().is_err());
}

#[test]
fn unsupported_requests_are_explained() {
    let engine = Engine::default();
    let reg = engine.load_path(&model_path("gbm_regressor")).unwrap();
    let err = reg.check_want("gbm", Want::Probabilities).unwrap_err();
    assert!(err.to_string().contains("predict_proba()"), "{err}");
}

#[test]
fn sessions_are_shared_across_threads() {
    let engine = Engine::default();
    let m = engine.load_path(&model_path("gbm_classifier")).unwrap();
    let cols = reference_columns(&reference("gbm_classifier"));
    let b = batch(&cols, false);
    let rows: Vec<usize> = (0..32).collect();
    let want = scores(m.predict("g", &b, &rows, Want::Score, OPTS).unwrap());
    // Callers asking for different intra-op thread counts at once each get a matching session.
    std::thread::scope(|s| {
        for t in 0..4 {
            let (m, b, rows, want) = (&m, &b, &rows, &want);
            s.spawn(move || {
                let opts = RunOptions { intra_threads: 1 + t % 2, ..OPTS };
                for _ in 0..20 {
                    let got = scores(m.predict("g", b, rows, Want::Score, opts).unwrap());
                    for (g, w) in got.iter().zip(want) {
                        assert!((g.unwrap() - w.unwrap()).abs() < 1e-6);
                    }
                }
            });
        }
    });
}
