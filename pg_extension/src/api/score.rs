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
//! Each call site (one `score(...)` in one query) keeps its resolved model, input binding and
//! settings in `fn_extra` for the statement: a row that names the same model with the same
//! column layout skips the registry lookup, the type checks and the settings reads.
//!
//! These functions carry no `SET search_path` (it would cost a GUC save/restore on every row): they
//! resolve no names through it. Their only SQL is registry.rs's, schema-qualified to the operator.

use std::sync::Arc;

use pgrx::prelude::*;
use pgrx::{AnyElement, JsonB};
use sqlscore_core::binding::{bind, Binding};
use sqlscore_core::{Model, Predictions, RunOptions, Want};

use pgrx::pg_sys::panic::ErrorReport;

use crate::convert::{any_element, Cell, Row};
use crate::errors::{report, PgResult};
use crate::guc;
use crate::registry::{resolve, statement_epoch, Epoch};

/// What a call site keeps between rows of one statement.
#[derive(Default)]
struct CallSite {
    prepared: Option<Prepared>,
}

struct Prepared {
    epoch: Epoch,
    model_ref: String,
    /// The row layout the binding was made for: named or not, and the cells' names.
    named: bool,
    width: usize,
    names: Option<Vec<String>>,
    model: Arc<Model>,
    binding: Binding,
    opts: RunOptions,
}

impl Prepared {
    fn fits(&self, epoch: Epoch, model: &str, row: &Row) -> bool {
        self.epoch == epoch
            && self.model_ref == model
            && self.width == row.cells.len()
            && self.named == row.names.is_some()
            && self.names == row.names
    }
}

fn run(fcinfo: pg_sys::FunctionCallInfo, model: &str, row: &Row, want: Want) -> PgResult<Predictions> {
    // SAFETY: fcinfo is the call info PostgreSQL passed to this function; fn_extra lives in its
    // fn_mcxt and pgrx drops the CallSite when that context goes.
    let mut site = unsafe { pgrx::pg_func_extra(fcinfo, CallSite::default) };
    let epoch = statement_epoch();
    let batch = row.batch();
    if !site.prepared.as_ref().is_some_and(|p| p.fits(epoch, model, row)) {
        let m = resolve(model)?;
        let opts = guc::run_options();
        m.check_want(model, want).map_err(report)?;
        let binding = bind(model, &m.info, &batch, opts.dialect).map_err(report)?;
        // A NULL cell passes any type check, so a binding made from it must not vouch for the
        // next row's value: such a row is scored with a binding of its own, not cached.
        if row.cells.iter().any(|c| matches!(c, Cell::Null)) {
            return m.predict_bound(model, &batch, &[0], want, opts, &binding).map_err(report);
        }
        site.prepared = Some(Prepared {
            epoch,
            model_ref: model.to_string(),
            named: row.names.is_some(),
            width: row.cells.len(),
            names: row.names.clone(),
            model: m,
            binding,
            opts,
        });
    }
    let p = site.prepared.as_ref().ok_or_else(|| report(sqlscore_core::Error::Internal("call site".into())))?;
    p.model.predict_bound(model, &batch, &[0], want, p.opts, &p.binding).map_err(report)
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
fn score_variadic(
    model: &str,
    features: VariadicArray<'_, f64>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Result<Option<f64>, ErrorReport> {
    run(fcinfo, model, &variadic(features), Want::Score).map(score_of)
}

#[pg_extern(stable, parallel_safe, cost = 200, name = "score")]
fn score_real(
    model: &str,
    features: Array<'_, f32>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Result<Option<f64>, ErrorReport> {
    run(fcinfo, model, &reals(features), Want::Score).map(score_of)
}

#[pg_extern(stable, parallel_safe, cost = 200, name = "score")]
fn score_row(model: &str, row: AnyElement, fcinfo: pg_sys::FunctionCallInfo) -> Result<Option<f64>, ErrorReport> {
    run(fcinfo, model, &any_element(&row)?, Want::Score).map(score_of)
}

/// The predicted label, as text.
#[pg_extern(stable, parallel_safe, cost = 200, name = "predict")]
fn predict_variadic(
    model: &str,
    features: VariadicArray<'_, f64>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Result<Option<String>, ErrorReport> {
    run(fcinfo, model, &variadic(features), Want::Label).map(label_of)
}

#[pg_extern(stable, parallel_safe, cost = 200, name = "predict")]
fn predict_real(
    model: &str,
    features: Array<'_, f32>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Result<Option<String>, ErrorReport> {
    run(fcinfo, model, &reals(features), Want::Label).map(label_of)
}

#[pg_extern(stable, parallel_safe, cost = 200, name = "predict")]
fn predict_row(model: &str, row: AnyElement, fcinfo: pg_sys::FunctionCallInfo) -> Result<Option<String>, ErrorReport> {
    run(fcinfo, model, &any_element(&row)?, Want::Label).map(label_of)
}

/// Class probabilities in the model's class order.
#[pg_extern(stable, parallel_safe, cost = 200, name = "predict_proba")]
fn predict_proba_variadic(
    model: &str,
    features: VariadicArray<'_, f64>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Result<Option<Vec<f64>>, ErrorReport> {
    run(fcinfo, model, &variadic(features), Want::Probabilities).map(proba_of)
}

#[pg_extern(stable, parallel_safe, cost = 200, name = "predict_proba")]
fn predict_proba_real(
    model: &str,
    features: Array<'_, f32>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Result<Option<Vec<f64>>, ErrorReport> {
    run(fcinfo, model, &reals(features), Want::Probabilities).map(proba_of)
}

#[pg_extern(stable, parallel_safe, cost = 200, name = "predict_proba")]
fn predict_proba_row(
    model: &str,
    row: AnyElement,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Result<Option<Vec<f64>>, ErrorReport> {
    run(fcinfo, model, &any_element(&row)?, Want::Probabilities).map(proba_of)
}

/// Every tensor output, keyed by ONNX output name.
#[pg_extern(stable, parallel_safe, cost = 200, name = "score_all")]
fn score_all_variadic(
    model: &str,
    features: VariadicArray<'_, f64>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Result<Option<JsonB>, ErrorReport> {
    run(fcinfo, model, &variadic(features), Want::All).map(all_of)
}

#[pg_extern(stable, parallel_safe, cost = 200, name = "score_all")]
fn score_all_real(
    model: &str,
    features: Array<'_, f32>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Result<Option<JsonB>, ErrorReport> {
    run(fcinfo, model, &reals(features), Want::All).map(all_of)
}

#[pg_extern(stable, parallel_safe, cost = 200, name = "score_all")]
fn score_all_row(model: &str, row: AnyElement, fcinfo: pg_sys::FunctionCallInfo) -> Result<Option<JsonB>, ErrorReport> {
    run(fcinfo, model, &any_element(&row)?, Want::All).map(all_of)
}
