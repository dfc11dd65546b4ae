//! What a scoring job does with one batch of source rows, whatever database runs it: group the
//! rows by the model each one names (one ONNX Runtime call per model per batch), score each group,
//! and apply the job's error policy row by row. The front ends fetch the rows, resolve models in
//! their registries and write the outcomes; the semantics live here so PostgreSQL jobs and DuckDB
//! jobs behave the same.

use std::collections::HashMap;
use std::sync::Arc;

use crate::batch::Batch;
use crate::engine::{Model, NullPolicy};
use crate::error::{Error, Result};
use crate::execute::{Predictions, RunOptions, Want};

/// What a job does with a row it cannot score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// The run fails; the failing batch is not committed and the run records the error.
    Raise,
    /// The row is written with a NULL score.
    Null,
    /// The row goes to the job's rejects with the error; the rest of the batch is written.
    Reject,
}

impl OnError {
    pub const SPELLINGS: &'static str = "'raise', 'null' or 'reject'";

    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Raise => "raise",
            OnError::Null => "null",
            OnError::Reject => "reject",
        }
    }

    /// How NULL features are treated under this policy: a NULL is an error to raise or reject,
    /// and simply a NULL score under `null`.
    pub fn null_policy(self) -> NullPolicy {
        match self {
            OnError::Null => NullPolicy::Null,
            OnError::Raise | OnError::Reject => NullPolicy::Error,
        }
    }
}

impl std::str::FromStr for OnError {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "raise" => Ok(OnError::Raise),
            "null" => Ok(OnError::Null),
            "reject" => Ok(OnError::Reject),
            _ => Err(Error::InvalidSetting {
                name: "on_error".into(),
                value: s.into(),
                reason: format!("expected {}", OnError::SPELLINGS),
            }),
        }
    }
}

/// Which results a job writes besides the score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outputs {
    pub label: bool,
    pub probabilities: bool,
}

impl Outputs {
    /// From the job's `outputs` list: `score` (always written), `label`, `probabilities`.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let mut o = Outputs::default();
        for n in names {
            match n.trim().to_ascii_lowercase().as_str() {
                "score" => {}
                "label" => o.label = true,
                "probabilities" => o.probabilities = true,
                _ => {
                    return Err(Error::InvalidSetting {
                        name: "outputs".into(),
                        value: n.into(),
                        reason: "expected 'score', 'label' or 'probabilities'".into(),
                    })
                }
            }
        }
        Ok(o)
    }
}

/// The result for one source row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RowOutcome {
    pub score: Option<f64>,
    pub label: Option<String>,
    pub probabilities: Option<Vec<f64>>,
    /// The version that scored the row (None when it was rejected before a model was found).
    pub version: Option<i32>,
    /// Why the row was rejected (`OnError::Reject` only); such rows are not written to the target.
    pub rejected: Option<String>,
}

/// Groups row indexes by the model each row names, in first-seen order. Rows naming no model
/// (a NULL model expression) come back separately.
pub fn group_by_model<S: AsRef<str>>(models: &[Option<S>]) -> (Vec<(&str, Vec<usize>)>, Vec<usize>) {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    let mut unnamed = Vec::new();
    // Rows usually arrive in runs of one model (sorted or clustered data): skip the hash then.
    let mut last: Option<(&str, usize)> = None;
    for (r, m) in models.iter().enumerate() {
        match m {
            None => unnamed.push(r),
            Some(m) => {
                let m = m.as_ref();
                let g = match last {
                    Some((name, g)) if name == m => g,
                    _ => *index.entry(m).or_insert_with(|| {
                        groups.push((m, Vec::new()));
                        groups.len() - 1
                    }),
                };
                last = Some((m, g));
                groups[g].1.push(r);
            }
        }
    }
    (groups, unnamed)
}

/// Scores a batch whose rows name their models, one call per model and wanted output.
///
/// `resolve` finds a model and the version it stands for. A model that cannot be found, or whose
/// inputs the features do not fit (missing, wrong type or count), fails the batch under every
/// policy: that is a broken job, not bad rows, and rejecting every row would drain the backlog
/// into the rejects. Errors of particular rows (a NULL feature, a value that does not convert, a
/// runtime failure) follow `on_error`: under `Null` and `Reject` the group is re-scored row by row
/// so that only the rows at fault get a NULL score or are rejected. Returns one outcome per row,
/// in row order.
pub fn score_grouped<S: AsRef<str>>(
    batch: &Batch<'_>,
    models: &[Option<S>],
    resolve: impl FnMut(&str) -> Result<(Arc<Model>, i32)>,
    outputs: Outputs,
    on_error: OnError,
    opts: RunOptions,
) -> Result<Vec<RowOutcome>> {
    score_grouped_on(batch, models, resolve, outputs, on_error, opts, None)
}

/// [`score_grouped`], with the models' groups scored at once on `pool`'s threads: ONNX Runtime
/// sessions may run concurrently, and a job's batch holds many models (one per sensor), so this
/// spreads one batch over the cores without splitting any model's rows. Models are resolved
/// first, on the caller's thread (resolving reads the host's registry). Results are the same as
/// [`score_grouped`]'s.
pub fn score_grouped_parallel<S: AsRef<str>>(
    batch: &Batch<'_>,
    models: &[Option<S>],
    resolve: impl FnMut(&str) -> Result<(Arc<Model>, i32)>,
    outputs: Outputs,
    on_error: OnError,
    opts: RunOptions,
    pool: &rayon::ThreadPool,
) -> Result<Vec<RowOutcome>> {
    score_grouped_on(batch, models, resolve, outputs, on_error, opts, Some(pool))
}

fn score_grouped_on<S: AsRef<str>>(
    batch: &Batch<'_>,
    models: &[Option<S>],
    mut resolve: impl FnMut(&str) -> Result<(Arc<Model>, i32)>,
    outputs: Outputs,
    on_error: OnError,
    opts: RunOptions,
    pool: Option<&rayon::ThreadPool>,
) -> Result<Vec<RowOutcome>> {
    let opts = RunOptions { null_policy: on_error.null_policy(), ..opts };
    let mut out = vec![RowOutcome::default(); models.len()];
    let (groups, unnamed) = group_by_model(models);
    if !unnamed.is_empty() {
        let why = "the job's model expression gave NULL for this row".to_string();
        match on_error {
            OnError::Raise => {
                return Err(Error::InvalidSetting {
                    name: "model".into(),
                    value: "NULL".into(),
                    reason: "the job's model expression gave NULL for a row; every row needs a model name".into(),
                })
            }
            OnError::Null => {}
            OnError::Reject => unnamed.iter().for_each(|&r| out[r].rejected = Some(why.clone())),
        }
    }
    let mut resolved = Vec::with_capacity(groups.len());
    for (name, rows) in groups {
        let (model, version) = resolve(name)?;
        resolved.push((name, rows, model, version));
    }
    let score = |(name, rows, model, version): &(&str, Vec<usize>, Arc<Model>, i32)| {
        score_group(model, name, *version, batch, rows, outputs, on_error, opts)
    };
    let scored: Vec<Vec<RowOutcome>> = match pool {
        Some(pool) if resolved.len() > 1 => {
            use rayon::prelude::*;
            pool.install(|| resolved.par_iter().map(score).collect::<Result<_>>())?
        }
        _ => resolved.iter().map(score).collect::<Result<_>>()?,
    };
    for ((_, rows, _, _), results) in resolved.iter().zip(scored) {
        for (&r, res) in rows.iter().zip(results) {
            out[r] = res;
        }
    }
    Ok(out)
}

/// One model's rows, with the error policy applied; one outcome per row of `rows`.
#[allow(clippy::too_many_arguments)]
fn score_group(
    model: &Model,
    name: &str,
    version: i32,
    batch: &Batch<'_>,
    rows: &[usize],
    outputs: Outputs,
    on_error: OnError,
    opts: RunOptions,
) -> Result<Vec<RowOutcome>> {
    match score_rows(model, name, batch, rows, outputs, opts) {
        Ok(results) => Ok(results.into_iter().map(|res| RowOutcome { version: Some(version), ..res }).collect()),
        // Features that do not fit the model (a renamed input, a wrong type) are the job's
        // fault, not the rows': every policy fails the batch rather than setting rows aside.
        Err(e) if !row_level(&e) => Err(e),
        Err(e) if on_error == OnError::Raise => Err(e),
        Err(e) => {
            // Find the rows at fault: the others are scored as usual.
            let mut failed = 0;
            let mut out = Vec::with_capacity(rows.len());
            for &r in rows {
                match score_rows(model, name, batch, &[r], outputs, opts) {
                    Ok(mut one) => out.push(RowOutcome { version: Some(version), ..one.remove(0) }),
                    Err(e) if !row_level(&e) => return Err(e),
                    Err(e) => {
                        failed += 1;
                        let rejected = (on_error == OnError::Reject).then(|| e.to_string());
                        out.push(RowOutcome { version: Some(version), rejected, ..Default::default() });
                    }
                }
            }
            // A runtime failure on every row is the model's, not the data's.
            if failed == rows.len() && matches!(e, Error::Execution { .. }) {
                return Err(e);
            }
            Ok(out)
        }
    }
}

/// Errors that belong to particular rows' values (so a policy may set those rows aside), as
/// opposed to the job's features not fitting the model.
fn row_level(e: &Error) -> bool {
    matches!(e, Error::NullFeature { .. } | Error::LossyValue { .. } | Error::Execution { .. })
}

fn score_rows(
    model: &Model,
    name: &str,
    batch: &Batch<'_>,
    rows: &[usize],
    outputs: Outputs,
    opts: RunOptions,
) -> Result<Vec<RowOutcome>> {
    let scores = model.predict(name, batch, rows, Want::Score, opts)?.into_scores();
    let mut out: Vec<RowOutcome> = scores.into_iter().map(|score| RowOutcome { score, ..Default::default() }).collect();
    if outputs.label {
        for (o, l) in out.iter_mut().zip(model.predict(name, batch, rows, Want::Label, opts)?.into_labels()) {
            o.label = l;
        }
    }
    if outputs.probabilities {
        let p = model.predict(name, batch, rows, Want::Probabilities, opts)?;
        for (o, p) in out.iter_mut().zip(Predictions::into_probabilities(p)) {
            o.probabilities = p;
        }
    }
    Ok(out)
}

/// Running statistics of a run's scores, merged across batches and workers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScoreStats {
    pub count: u64,
    pub nulls: u64,
    pub sum: f64,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl ScoreStats {
    pub fn add(&mut self, score: Option<f64>) {
        match score {
            None => self.nulls += 1,
            Some(s) => {
                self.count += 1;
                self.sum += s;
                self.min = Some(self.min.map_or(s, |m| m.min(s)));
                self.max = Some(self.max.map_or(s, |m| m.max(s)));
            }
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_first_seen_order_and_set_aside_null_models() {
        let m = |s: &str| Some(s.to_string());
        let models = vec![m("b"), m("a"), None, m("b"), m("c"), m("a")];
        let (groups, unnamed) = group_by_model(&models);
        assert_eq!(groups, vec![("b", vec![0, 3]), ("a", vec![1, 5]), ("c", vec![4])]);
        assert_eq!(unnamed, vec![2]);
    }

    #[test]
    fn policies_parse_and_map_nulls() {
        assert_eq!("Reject".parse::<OnError>().unwrap(), OnError::Reject);
        assert_eq!(OnError::Null.null_policy(), NullPolicy::Null);
        assert_eq!(OnError::Raise.null_policy(), NullPolicy::Error);
        let e = "skip".parse::<OnError>().unwrap_err().to_string();
        assert!(e.contains("on_error") && e.contains("'reject'"), "{e}");
        assert_eq!(Outputs::parse(["score", "label"]).unwrap(), Outputs { label: true, probabilities: false });
        assert!(Outputs::parse(["odds"]).is_err());
    }

    #[test]
    fn stats_merge_scores_and_nulls() {
        let mut s = ScoreStats::default();
        for v in [Some(1.0), None, Some(3.0), Some(-1.0)] {
            s.add(v);
        }
        assert_eq!((s.count, s.nulls, s.min, s.max), (3, 1, Some(-1.0), Some(3.0)));
        assert_eq!(s.mean(), Some(1.0));
    }
}
