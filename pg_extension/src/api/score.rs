//! Per-row scoring: `score`, `predict`, `predict_proba`, `score_all`, each taking the features as
//! `VARIADIC float8[]`, as a `real[]`, or as one value (a row, bound to inputs by name). STABLE,
//! not IMMUTABLE: activating another version changes results. PARALLEL SAFE: parallel workers
//! score their share of the rows, each with its own sessions and its own read-only registry
//! lookup (registry.rs).
//!
//! `COST 200`: a call costs about 5 us (ONNX Runtime's per-call overhead), some 200 times a cheap
//! built-in operator (`cpu_operator_cost`). With the default `COST 1` the planner thought scoring
//! free and never chose parallel workers for `CREATE TABLE ... AS SELECT score(...)`; with 200 a
//! table past `min_parallel_table_scan_size` gets workers under default settings.
//!
//! These functions carry no `SET search_path` (it would cost a GUC save/restore on every row): they
//! resolve no names through it. Their only SQL is registry.rs's, schema-qualified to the operator.

use pgrx::prelude::*;
use pgrx::{AnyElement, JsonB};
use sqlscore_core::{Predictions, Want};

use pgrx::pg_sys::panic::ErrorReport;

use crate::convert::{any_element, Cell, Row};
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
#[pg_extern(stable, parallel_safe, cost = 200, name = "score")]
fn score_variadic(model: &str, features: VariadicArray<'_, f64>) -> Result<Option<f64>, ErrorReport> {
    run(model, &variadic(features), Want::Score).map(score_of)
}

#[pg_extern(stable, parallel_safe, cost = 200, name = "score")]
fn score_real(model: &str, features: Array<'_, f32>) -> Result<Option<f64>, ErrorReport> {
    run(model, &reals(features), Want::Score).map(score_of)
}

#[pg_extern(stable, parallel_safe, cost = 200, name = "score")]
fn score_row(model: &str, row: AnyElement) -> Result<Option<f64>, ErrorReport> {
    run(model, &any_element(&row)?, Want::Score).map(score_of)
}

/// The predicted label, as text.
#[pg_extern(stable, parallel_safe, cost = 200, name = "predict")]
fn predict_variadic(model: &str, features: VariadicArray<'_, f64>) -> Result<Option<String>, ErrorReport> {
    run(model, &variadic(features), Want::Label).map(label_of)
}

#[pg_extern(stable, parallel_safe, cost = 200, name = "predict")]
fn predict_real(model: &str, features: Array<'_, f32>) -> Result<Option<String>, ErrorReport> {
    run(model, &reals(features), Want::Label).map(label_of)
}

#[pg_extern(stable, parallel_safe, cost = 200, name = "predict")]
fn predict_row(model: &str, row: AnyElement) -> Result<Option<String>, ErrorReport> {
    run(model, &any_element(&row)?, Want::Label).map(label_of)
}

/// Class probabilities in the model's class order.
#[pg_extern(stable, parallel_safe, cost = 200, name = "predict_proba")]
fn predict_proba_variadic(model: &str, features: VariadicArray<'_, f64>) -> Result<Option<Vec<f64>>, ErrorReport> {
    run(model, &variadic(features), Want::Probabilities).map(proba_of)
}

#[pg_extern(stable, parallel_safe, cost = 200, name = "predict_proba")]
fn predict_proba_real(model: &str, features: Array<'_, f32>) -> Result<Option<Vec<f64>>, ErrorReport> {
    run(model, &reals(features), Want::Probabilities).map(proba_of)
}

#[pg_extern(stable, parallel_safe, cost = 200, name = "predict_proba")]
fn predict_proba_row(model: &str, row: AnyElement) -> Result<Option<Vec<f64>>, ErrorReport> {
    run(model, &any_element(&row)?, Want::Probabilities).map(proba_of)
}

/// Every tensor output, keyed by ONNX output name.
#[pg_extern(stable, parallel_safe, cost = 200, name = "score_all")]
fn score_all_variadic(model: &str, features: VariadicArray<'_, f64>) -> Result<Option<JsonB>, ErrorReport> {
    run(model, &variadic(features), Want::All).map(all_of)
}

#[pg_extern(stable, parallel_safe, cost = 200, name = "score_all")]
fn score_all_real(model: &str, features: Array<'_, f32>) -> Result<Option<JsonB>, ErrorReport> {
    run(model, &reals(features), Want::All).map(all_of)
}

#[pg_extern(stable, parallel_safe, cost = 200, name = "score_all")]
fn score_all_row(model: &str, row: AnyElement) -> Result<Option<JsonB>, ErrorReport> {
    run(model, &any_element(&row)?, Want::All).map(all_of)
}
