//! The batch path for big jobs. Per-row functions pay ONNX Runtime's per-call cost on every row;
//! `score_batch(model, query)` reads the query through a cursor, `sqlscore.batch_size` rows at a
//! time, scores each batch in one run, and returns `(id, score)` rows batch by batch (in FROM,
//! PostgreSQL collects them in a tuplestore, which spills to disk past work_mem):
//!
//!     INSERT INTO scores SELECT * FROM sqlscore.score_batch('churn', 'SELECT id, age, income FROM customers');
//!
//! The query's first column is the row key (an integer type); the others are the features, bound
//! to the model's inputs by name (or in order, for a single-input model). Between batches the
//! query checks for cancellation, so `statement_timeout` and `pg_cancel_backend` stay prompt.

use std::sync::Arc;

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use sqlscore_core::{Error, Model, Predictions, QueryProblem, Want};

use crate::errors::{report, PgResult};
use crate::fetch::{copy_tuptable, Fetched, Leading};
use crate::guc;
use crate::registry::resolve;

/// Fetches the next `rows` rows of the cursor and copies them into typed columns.
fn fetch(function: &str, cursor_name: &str, rows: i64, leading: Leading) -> PgResult<(Fetched, bool)> {
    let name = std::ffi::CString::new(cursor_name).unwrap_or_default();
    // SAFETY: inside Spi::connect; the portal is the cursor this call opened (checked non-null);
    // SPI_tuptable holds SPI_processed tuples until SPI_freetuptable, which runs after they are
    // copied.
    Spi::connect(|_client| unsafe {
        let portal = pg_sys::SPI_cursor_find(name.as_ptr());
        if portal.is_null() {
            return Err(report(Error::Internal(format!("{function} lost its cursor"))));
        }
        pg_sys::SPI_cursor_fetch(portal, true, rows as _);
        let got = pg_sys::SPI_processed as usize;
        let fetched = copy_tuptable(function, pg_sys::SPI_tuptable, got, leading, true)?;
        if !pg_sys::SPI_tuptable.is_null() {
            pg_sys::SPI_freetuptable(pg_sys::SPI_tuptable);
        }
        let more = got as i64 == rows;
        if !more {
            pg_sys::SPI_cursor_close(portal);
        }
        Ok((fetched, more))
    })
}

/// Opens a cursor over `query` and returns an iterator that fetches `batch_size` rows at a time,
/// scores them with `score` and yields its rows batch by batch, checking for cancellation
/// between batches. An error is raised as PostgreSQL's.
fn batches<T: 'static>(
    function: &'static str,
    query: &str,
    batch_size: Option<i32>,
    leading: Leading,
    mut score: impl FnMut(Fetched) -> PgResult<Vec<T>> + 'static,
) -> PgResult<impl Iterator<Item = T>> {
    let rows = i64::from(batch_size.unwrap_or_else(|| guc::BATCH_SIZE.get()).max(1));
    let cursor = Spi::connect(|c| c.try_open_cursor(query, &[]).map(|cur| cur.detach_into_name())).map_err(|e| {
        report(Error::BadQuery {
            function: function.into(),
            problem: QueryProblem::Failed,
            reason: e.to_string(),
            hint: None,
        })
    })?;
    let mut buffer: std::vec::IntoIter<T> = Vec::new().into_iter();
    let mut done = false;
    Ok(std::iter::from_fn(move || loop {
        if let Some(item) = buffer.next() {
            return Some(item);
        }
        if done {
            return None;
        }
        check_for_interrupts!();
        let scored = fetch(function, &cursor, rows, leading).and_then(|(fetched, more)| {
            done = !more;
            if fetched.ids.is_empty() {
                Ok(Vec::new())
            } else {
                score(fetched)
            }
        });
        match scored {
            Ok(items) => buffer = items.into_iter(),
            Err(e) => {
                e.report(PgLogLevel::ERROR);
                return None;
            }
        }
    }))
}

/// An engine error from a run: a cancel is PostgreSQL's own error (statement_timeout,
/// pg_cancel_backend), raised as such.
fn run_error(e: Error) -> ErrorReport {
    check_for_interrupts!();
    report(e)
}

/// `score_batch` and `predict_batch`: one model for every row.
fn stream<T: 'static>(
    function: &'static str,
    model: Option<&str>,
    query: Option<&str>,
    batch_size: Option<i32>,
    want: Want,
    extract: fn(Predictions) -> Vec<Option<T>>,
) -> PgResult<impl Iterator<Item = (Option<i64>, Option<T>)>> {
    let null = |argument: &str| report(Error::NullArgument { function: function.into(), argument: argument.into() });
    let model = model.ok_or_else(|| null("model"))?;
    let query = query.ok_or_else(|| null("query"))?;
    let label = model.to_string();
    let model: Arc<Model> = resolve(model)?;
    model.check_want(&label, want).map_err(report)?;
    let opts = guc::run_options();
    batches(function, query, batch_size, Leading::Key, move |fetched| {
        let all: Vec<usize> = (0..fetched.len()).collect();
        let predictions = model.predict(&label, &fetched.batch(), &all, want, opts).map_err(run_error)?;
        Ok(fetched.ids.iter().copied().zip(extract(predictions)).collect())
    })
}

/// Scores every row of `query` in batches; returns (id, score) per row. Not STRICT: a NULL model
/// or query is an error naming the argument (a NULL batch size means the session's setting).
/// No fixed search_path: `query` is the caller's and resolves names as the caller does.
// The result type must be spelled out: pgrx reads the column names from the signature.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn score_batch(
    model: Option<&str>,
    query: Option<&str>,
    batch_size: default!(Option<i32>, "NULL"),
) -> Result<TableIterator<'static, (name!(id, Option<i64>), name!(score, Option<f64>))>, ErrorReport> {
    let rows = stream("sqlscore.score_batch", model, query, batch_size, Want::Score, Predictions::into_scores)?;
    Ok(TableIterator::new(rows))
}

/// Like `score_batch`, returning the predicted label.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn predict_batch(
    model: Option<&str>,
    query: Option<&str>,
    batch_size: default!(Option<i32>, "NULL"),
) -> Result<TableIterator<'static, (name!(id, Option<i64>), name!(label, Option<String>))>, ErrorReport> {
    let rows = stream("sqlscore.predict_batch", model, query, batch_size, Want::Label, Predictions::into_labels)?;
    Ok(TableIterator::new(rows))
}

/// Scores every row of `query` with the model the row names: the query returns the key, the model
/// name (e.g. `'anomaly_' || sensor_id`), then the features. Each batch is grouped by model and
/// each group scored in one ONNX Runtime call, so a thousand per-sensor models cost a thousand
/// calls per batch, not one per row. Returns (id, model, score) per row.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_unsafe)]
fn score_batch_grouped(
    query: Option<&str>,
    batch_size: default!(Option<i32>, "NULL"),
) -> Result<
    TableIterator<'static, (name!(id, Option<i64>), name!(model, Option<String>), name!(score, Option<f64>))>,
    ErrorReport,
> {
    const FUNCTION: &str = "sqlscore.score_batch_grouped";
    let query =
        query.ok_or_else(|| report(Error::NullArgument { function: FUNCTION.into(), argument: "query".into() }))?;
    let opts = guc::run_options();
    let rows = batches(FUNCTION, query, batch_size, Leading::KeyAndModel, move |fetched| {
        let batch = fetched.batch();
        let mut scores: Vec<Option<f64>> = vec![None; fetched.len()];
        let (groups, _) = sqlscore_core::job::group_by_model(&fetched.models);
        for (name, group) in groups {
            let out = resolve(name)?.predict(name, &batch, &group, Want::Score, opts).map_err(run_error)?;
            for (r, s) in group.iter().zip(out.into_scores()) {
                scores[*r] = s;
            }
        }
        Ok(fetched
            .ids
            .iter()
            .copied()
            .zip(fetched.models.iter().cloned())
            .zip(scores)
            .map(|((id, m), s)| (id, m, s))
            .collect())
    })?;
    Ok(TableIterator::new(rows))
}
