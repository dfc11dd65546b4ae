//! Per-row scoring: `score`, `predict`, `predict_proba`, `score_all`, each taking the features as
//! `VARIADIC float8[]`, as a `real[]`, or as one value (a row, bound to inputs by name). STABLE,
//! not IMMUTABLE: activating another version changes results. PARALLEL SAFE: parallel workers
//! score their share of the rows, each with its own sessions.

use pgrx::prelude::*;
use pgrx::{AnyElement, JsonB};
use sqlscore_core::{Predictions, Want};

use crate::convert::{any_element, Cell, Row};
use pgrx::pg_sys::panic::ErrorReport;
use crate::errors::{report, PgResult};
use crate::guc;
use crate::registry::resolve;

fn run(model: &str, row: &Row, want: Want) -> PgResult<Predictions> {
    let m = resolve(model)?;
    m.predict(model, &row.batch(), &[0], want, guc::run_options()).map_err(report)
}

fn variadic(values: VariadicArray<'_, f64>) -> Row {
    Row::positional(values.iter().map(|v| v.map_or(Cell::Null, Cell::F64)).collect())
}

fn reals(values: Array<'_, f32>) -> Row {
    Row::positional(values.iter().map(|v| v.map_or(Cell::Null, |x| Cell::F64(x.into()))).collect())
}

fn score_of(p: Predictions) -> Option<f64> {
    p.into_scores().into_iter().next().flatten()
}

fn label_of(p: Predictions) -> Option<String> {
    p.into_labels().into_iter().next().flatten()
}

fn proba_of(p: Predictions) -> Option<Vec<f64>> {
    p.into_probabilities().into_iter().next().flatten()
}

fn all_of(p: Predictions) -> Option<JsonB> {
    p.into_json().into_iter().next().flatten().and_then(|s| serde_json::from_str(&s).ok()).map(JsonB)
}

/// The model's score: regression value, P(positive class), top-class probability, or anomaly score.
#[pg_extern(stable, parallel_safe, name = "score")]
fn score_variadic(model: &str, features: VariadicArray<'_, f64>) -> Result<Option<f64>, ErrorReport> {
    run(model, &variadic(features), Want::Score).map(score_of)
}

#[pg_extern(stable, parallel_safe, name = "score")]
fn score_real(model: &str, features: Array<'_, f32>) -> Result<Option<f64>, ErrorReport> {
    run(model, &reals(features), Want::Score).map(score_of)
}

#[pg_extern(stable, parallel_safe, name = "score")]
fn score_row(model: &str, row: AnyElement) -> Result<Option<f64>, ErrorReport> {
    run(model, &any_element(&row)?, Want::Score).map(score_of)
}

/// The predicted label, as text.
#[pg_extern(stable, parallel_safe, name = "predict")]
fn predict_variadic(model: &str, features: VariadicArray<'_, f64>) -> Result<Option<String>, ErrorReport> {
    run(model, &variadic(features), Want::Label).map(label_of)
}

#[pg_extern(stable, parallel_safe, name = "predict")]
fn predict_real(model: &str, features: Array<'_, f32>) -> Result<Option<String>, ErrorReport> {
    run(model, &reals(features), Want::Label).map(label_of)
}

#[pg_extern(stable, parallel_safe, name = "predict")]
fn predict_row(model: &str, row: AnyElement) -> Result<Option<String>, ErrorReport> {
    run(model, &any_element(&row)?, Want::Label).map(label_of)
}

/// Class probabilities in the model's class order.
#[pg_extern(stable, parallel_safe, name = "predict_proba")]
fn predict_proba_variadic(model: &str, features: VariadicArray<'_, f64>) -> Result<Option<Vec<f64>>, ErrorReport> {
    run(model, &variadic(features), Want::Probabilities).map(proba_of)
}

#[pg_extern(stable, parallel_safe, name = "predict_proba")]
fn predict_proba_real(model: &str, features: Array<'_, f32>) -> Result<Option<Vec<f64>>, ErrorReport> {
    run(model, &reals(features), Want::Probabilities).map(proba_of)
}

#[pg_extern(stable, parallel_safe, name = "predict_proba")]
fn predict_proba_row(model: &str, row: AnyElement) -> Result<Option<Vec<f64>>, ErrorReport> {
    run(model, &any_element(&row)?, Want::Probabilities).map(proba_of)
}

/// Every tensor output, keyed by ONNX output name.
#[pg_extern(stable, parallel_safe, name = "score_all")]
fn score_all_variadic(model: &str, features: VariadicArray<'_, f64>) -> Result<Option<JsonB>, ErrorReport> {
    run(model, &variadic(features), Want::All).map(all_of)
}

#[pg_extern(stable, parallel_safe, name = "score_all")]
fn score_all_real(model: &str, features: Array<'_, f32>) -> Result<Option<JsonB>, ErrorReport> {
    run(model, &reals(features), Want::All).map(all_of)
}

#[pg_extern(stable, parallel_safe, name = "score_all")]
fn score_all_row(model: &str, row: AnyElement) -> Result<Option<JsonB>, ErrorReport> {
    run(model, &any_element(&row)?, Want::All).map(all_of)
}
