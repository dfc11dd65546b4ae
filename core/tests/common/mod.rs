//! Shared helpers: the committed test models and their Python onnxruntime reference outputs.
#![allow(dead_code)]

use std::path::PathBuf;

use serde_json::Value;
use sqlscore_core::{Batch, Column, ColumnData};

pub fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models")
}

pub fn model_path(name: &str) -> PathBuf {
    models_dir().join(format!("{name}.onnx"))
}

pub fn reference(name: &str) -> Value {
    let text = std::fs::read_to_string(models_dir().join(format!("reference/{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

pub const ALL_MODELS: &[&str] = &[
    "logistic_binary",
    "rf_3class",
    "gbm_regressor",
    "gbm_classifier",
    "isolation_forest",
    "ocsvm_pipeline",
    "column_transformer",
    "int64_model",
    "float64_model",
];

/// Owned column storage the borrowed `Batch` points into.
pub enum Owned {
    F64(Vec<f64>),
    I64(Vec<i64>),
    Str(Vec<String>),
}

/// One positional column per feature value, in model input order, as a database would pass them.
pub fn reference_columns(reference: &Value) -> Vec<(String, Owned)> {
    let mut out = Vec::new();
    for input in reference["inputs"].as_array().unwrap() {
        let name = input["name"].as_str().unwrap();
        let rows = reference["columns"][name].as_array().unwrap();
        let width = rows[0].as_array().unwrap().len();
        for k in 0..width {
            let cells = rows.iter().map(|r| &r[k]);
            let owned = match input["type"].as_str().unwrap() {
                "string" => Owned::Str(cells.map(|v| v.as_str().unwrap().to_string()).collect()),
                "int64" => Owned::I64(cells.map(|v| v.as_i64().unwrap()).collect()),
                _ => Owned::F64(cells.map(|v| v.as_f64().unwrap()).collect()),
            };
            let col_name = if width == 1 { name.to_string() } else { format!("{name}{k}") };
            out.push((col_name, owned));
        }
    }
    out
}

pub fn batch<'a>(cols: &'a [(String, Owned)], named: bool) -> Batch<'a> {
    let mut len = 0;
    let columns = cols
        .iter()
        .map(|(name, owned)| {
            let data = match owned {
                Owned::F64(v) => {
                    len = v.len();
                    ColumnData::F64(v)
                }
                Owned::I64(v) => {
                    len = v.len();
                    ColumnData::I64(v)
                }
                Owned::Str(v) => {
                    len = v.len();
                    ColumnData::Str(v.iter().map(|s| s.as_str()).collect())
                }
            };
            Column::new(named.then(|| name.clone()), data, None)
        })
        .collect();
    Batch::new(columns, len)
}
