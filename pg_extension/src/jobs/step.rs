//! One batch of a job run, in the caller's transaction: claim keys from the job's queue, read
//! their rows, score them grouped by model (one ONNX Runtime call per model), write the results,
//! the rejects and the worker's progress. `sqlscore._job_drive` commits after each call, so the
//! claim, the results and the progress commit (or roll back) together.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use pgrx::datum::DatumWithOid;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::prelude::*;
use sqlscore_core::job::{group_by_model, score_grouped};
use sqlscore_core::{Error, Model, OnError, Outputs, ScoreStats};

use crate::errors::{report, PgResult};
use crate::fetch::{copy_tuptable, Leading};
use crate::guc;
use crate::registry::resolve_versioned;

/// Per (run, worker) of this backend: the last key claimed, where the next claim starts.
/// Per (run, worker) of this backend: where the next claim starts, and the mean keys per queue
/// entry seen so far (the first claim takes one entry).
static CURSORS: Mutex<Vec<(RunWorker, Cursor)>> = Mutex::new(Vec::new());

/// (run id, worker number).
type RunWorker = (i64, i32);
/// (claims start above this key, mean keys per queue entry).
type Cursor = (i64, f64);

fn cursor(run: i64, worker: i32) -> (i64, f64) {
    CURSORS.lock().iter().find(|(k, _)| *k == (run, worker)).map_or((i64::MIN, 10_000.0), |(_, v)| *v)
}

fn set_cursor(run: i64, worker: i32, after: i64, per_entry: f64) {
    let mut c = CURSORS.lock();
    c.retain(|(k, _)| *k != (run, worker));
    c.push(((run, worker), (after, per_entry.max(1.0))));
}

fn clear_cursor(run: i64, worker: i32) {
    CURSORS.lock().retain(|(k, _)| *k != (run, worker));
}

/// What a batch needs of its run and job.
struct Plan {
    job_id: i32,
    owner: pg_sys::Oid,
    job: String,
    batch_size: i64,
    fetch_sql: String,
    insert_sql: String,
    delete_sql: Option<String>,
    named: bool,
    on_error: OnError,
    outputs: Outputs,
}

/// Scores one batch of run `run` as worker `worker`. Returns whether more keys may be waiting
/// (the batch was full); false also when the run was cancelled or failed elsewhere. Models are
/// looked up once per statement, or, for a background worker's run, once per `epoch` of it (one
/// for an async run, one per drain of a stream), not once per batch: a thousand-model job would
/// otherwise spend more time in registry lookups than in ONNX Runtime.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn _job_step(run: i64, worker: i32, epoch: default!(Option<i64>, "NULL")) -> Result<bool, ErrorReport> {
    let Some(plan) = plan(run)? else { return Ok(false) };
    check_for_interrupts!();
    as_owner(plan.owner, || {
        Spi::connect_mut(|client| {
            // A batch touches a few thousand keys of tables whose statistics lag behind (the target
            // grows by a batch at a time): the planner would pick a sequential scan of the whole
            // target or source for `key = ANY(keys)`, once per batch. Index access is always right
            // here. JIT too is off: these statements run once per batch, and compiling them (and the
            // registry's checks) cost more than running them. The settings are restored before
            // the batch's own transaction ends.
            let saved = client
                .update(
                    "SELECT current_setting('enable_seqscan'), current_setting('jit'), \
                            set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true)",
                    None,
                    &[],
                )
                .map_err(spi_err(&plan.job, "planning"))?
                .first()
                .get_two::<String, String>()
                .ok();
            let (seqscan, jit) = saved.map_or((None, None), |(a, b)| (a, b));
            let more = step(client, run, worker, epoch, &plan)?;
            client
                .update(
                    "SELECT set_config('enable_seqscan', $1, true), set_config('jit', $2, true)",
                    None,
                    &[seqscan.unwrap_or("on".into()).into(), jit.unwrap_or("on".into()).into()],
                )
                .map_err(spi_err(&plan.job, "planning"))?;
            Ok(more)
        })
    })
}

/// Runs `f` as the job's owner in a security-restricted operation, whoever runs the job (the
/// owner, a member, a superuser, the bootstrap superuser of a background worker): the job's SQL
/// (its model expression, the statements generated from its definition) never runs with more
/// rights than its owner has, and cannot change role or session settings to get them (PostgreSQL
/// refuses SET ROLE and SET SESSION AUTHORIZATION inside a restricted operation, as for a
/// materialized view refresh). An error unwinds through the transaction (or subtransaction)
/// abort, which restores the user and context itself.
pub(crate) fn as_owner<R>(owner: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let (mut saved_user, mut saved_context) = (pg_sys::InvalidOid, 0);
    // SAFETY: plain reads and writes of the backend's current user and security context, inside
    // a transaction; restored below on success, and by the abort on error.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            owner,
            saved_context | (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32,
        );
    }
    let r = f();
    // SAFETY: restores what was read above.
    unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_context) };
    r
}

/// The median and 95th percentile of a run's scores, read from the job's target as its owner.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn _job_percentiles(run: i64) -> Result<Option<Vec<Option<f64>>>, ErrorReport> {
    let (target, owner) = Spi::get_two_with_args::<String, pg_sys::Oid>(
        "SELECT j.target::text, j.owner::oid FROM sqlscore.job_run_log r \
         JOIN sqlscore.job_definitions j ON j.job_id = r.job_id WHERE r.run_id = $1",
        &[run.into()],
    )
    .map_err(|e| report(Error::Internal(e.to_string())))?;
    let (Some(target), Some(owner)) = (target, owner) else { return Ok(None) };
    as_owner(owner, || {
        Spi::get_one_with_args::<Vec<Option<f64>>>(
            &format!(
                "SELECT percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY t.score) FROM {target} t WHERE t.run_id = $1"
            ),
            &[run.into()],
        )
        .map_err(|e| report(Error::Internal(e.to_string())))
    })
}

fn spi_err<'a>(job: &'a str, what: &str) -> impl Fn(pgrx::spi::SpiError) -> ErrorReport + 'a {
    let what = what.to_string();
    move |e| report(Error::Internal(format!("job \"{job}\": {what}: {e}")))
}

/// The run's job, or None when the run should stop (cancel requested, failed in another worker).
fn plan(run: i64) -> PgResult<Option<Plan>> {
    Spi::connect(|client| {
        let rows = client
            .select(
                "SELECT r.status = 'running' AND NOT r.cancel_requested, j.job_id, j.name, j.batch_size::bigint, \
                        j.fetch_sql, j.insert_sql, j.named, j.on_error, j.outputs, j.delete_sql, j.owner::oid \
                 FROM sqlscore.job_run_log r JOIN sqlscore.job_definitions j ON j.job_id = r.job_id \
                 WHERE r.run_id = $1",
                Some(1),
                &[run.into()],
            )
            .map_err(spi_err("?", "reading the run"))?;
        let Some(row) = rows.into_iter().next() else {
            return Err(report(Error::Internal(format!(
                "run {run} not found (its job was dropped, or the run belongs to a role you are not a member of)"
            ))));
        };
        let get = |e: pgrx::spi::SpiError| report(Error::Internal(format!("run {run}: {e}")));
        if !row.get::<bool>(1).map_err(get)?.unwrap_or(false) {
            return Ok(None);
        }
        let on_error: String = row.get(8).map_err(get)?.unwrap_or_default();
        let outputs: Vec<Option<String>> = row.get(9).map_err(get)?.unwrap_or_default();
        Ok(Some(Plan {
            job_id: row.get(2).map_err(get)?.unwrap_or_default(),
            job: row.get(3).map_err(get)?.unwrap_or_default(),
            batch_size: row.get(4).map_err(get)?.unwrap_or(10_000),
            fetch_sql: row.get(5).map_err(get)?.unwrap_or_default(),
            insert_sql: row.get(6).map_err(get)?.unwrap_or_default(),
            named: row.get(7).map_err(get)?.unwrap_or(true),
            on_error: on_error.parse().map_err(report)?,
            outputs: Outputs::parse(outputs.iter().flatten().map(String::as_str)).map_err(report)?,
            delete_sql: row.get(10).map_err(get)?,
            owner: row.get(11).map_err(get)?.unwrap_or(pg_sys::InvalidOid),
        }))
    })
}

fn step(
    client: &mut pgrx::spi::SpiClient<'_>,
    run: i64,
    worker: i32,
    epoch: Option<i64>,
    plan: &Plan,
) -> PgResult<bool> {
    let job = plan.job.as_str();
    // Claim the next queue entries no other worker holds, above where this worker's last batch
    // ended (index entries already claimed are skipped, not rescanned). A key committed late below
    // that point is found by the final pass from the start, before the run ends. Entries hold 1 to
    // 10,000 keys; how many to claim follows the size of the entries seen so far.
    let (after, per_entry) = cursor(run, worker);
    let want = ((plan.batch_size as f64 / per_entry).floor() as i64).clamp(1, plan.batch_size);
    let mut claimed: Vec<(i64, i64, pgrx::datum::TimestampWithTimeZone)> = client
        .update(
            "SELECT c.lo, c.hi, c.queued_at FROM sqlscore._job_claim($1, $2, $3) AS c",
            None,
            &[plan.job_id.into(), after.into(), (want as i32).into()],
        )
        .map_err(spi_err(job, "claiming keys"))?
        .filter_map(|row| Some((row.get::<i64>(1).ok()??, row.get::<i64>(2).ok()??, row.get(3).ok()??)))
        .collect();
    claimed.sort_by_key(|c| c.0);
    let full = claimed.len() as i64 >= want;
    if !full {
        if after != i64::MIN {
            // Rescan from the start once: out-of-order commits may have queued lower keys.
            set_cursor(run, worker, i64::MIN, per_entry);
            if claimed.is_empty() {
                return Ok(true);
            }
        } else {
            clear_cursor(run, worker);
            if claimed.is_empty() {
                return Ok(false);
            }
        }
    }
    // The batch: up to batch_size keys; what is left of the claimed entries goes back to the
    // queue in this same transaction (as claimed: nobody else could take it meanwhile).
    let mut keys: Vec<i64> = Vec::with_capacity(plan.batch_size as usize);
    let (mut back_lo, mut back_hi, mut back_at) = (Vec::new(), Vec::new(), Vec::new());
    let rows_claimed: i64 = claimed.iter().map(|(lo, hi, _)| hi - lo + 1).sum();
    for (lo, hi, at) in &claimed {
        let room = plan.batch_size - keys.len() as i64;
        if room <= 0 {
            back_lo.push(*lo);
            back_hi.push(*hi);
            back_at.push(*at);
        } else if hi - lo + 1 > room {
            keys.extend(*lo..lo + room);
            back_lo.push(lo + room);
            back_hi.push(*hi);
            back_at.push(*at);
        } else {
            keys.extend(*lo..=*hi);
        }
    }
    if !back_lo.is_empty() {
        client
            .update(
                "INSERT INTO sqlscore.job_queue (job_id, lo, hi, queued_at) \
                 SELECT $1, r.lo, r.hi, r.at FROM unnest($2::bigint[], $3::bigint[], $4::timestamptz[]) AS r(lo, hi, at)",
                None,
                &[plan.job_id.into(), back_lo.clone().into(), back_hi.into(), back_at.into()],
            )
            .map_err(spi_err(job, "returning unclaimed keys"))?;
    }
    if full {
        let last = claimed.iter().map(|(lo, _, _)| *lo).max().unwrap_or(after);
        // The next claim must see what went back to the queue.
        let resume = back_lo.iter().map(|b| b - 1).min().map_or(last, |b| b.min(last));
        set_cursor(run, worker, resume, rows_claimed as f64 / claimed.len() as f64);
    }
    // A short claim from the start of the queue means the backlog is drained.
    let more = full || after != i64::MIN || !back_lo.is_empty();
    let mut unique = keys.clone();
    unique.sort_unstable();
    unique.dedup();

    // Read the rows: key, model name, features.
    client.update(plan.fetch_sql.as_str(), None, &[unique.into()]).map_err(spi_err(job, "reading the source"))?;
    // SAFETY: the query above just ran on this SPI connection; SPI_tuptable and SPI_processed
    // describe its result until the next SPI call, and copy_tuptable copies everything out.
    let fetched = unsafe {
        copy_tuptable(
            "sqlscore.run_job",
            pg_sys::SPI_tuptable,
            pg_sys::SPI_processed as usize,
            Leading::KeyAndModel,
            plan.named,
        )?
    };
    check_for_interrupts!();

    // Resolve each model once per batch; one that is not registered fails the run, naming it.
    let (groups, _) = group_by_model(&fetched.models);
    let mut models: HashMap<String, (Arc<Model>, i32)> = HashMap::with_capacity(groups.len());
    for (name, _) in &groups {
        models.insert(name.to_string(), resolve_versioned(name, epoch.map(|e| (run, e)))?);
    }
    let batch = fetched.batch();
    let outcomes = score_grouped(
        &batch,
        &fetched.models,
        |name| models.get(name).cloned().ok_or_else(|| Error::Internal(format!("model {name} was not resolved"))),
        plan.outputs,
        plan.on_error,
        guc::run_options(),
    )
    .map_err(|e| {
        let null = matches!(e, Error::NullFeature { .. });
        let r = report(e);
        // The session's null_policy does not apply to jobs: their on_error does.
        if null {
            r.set_hint(
                "with on_error => 'raise' a NULL feature fails the run; \
                        sqlscore.alter_job(name, on_error => 'reject') sets such rows aside, 'null' scores them NULL",
            )
        } else {
            r
        }
    })?;
    check_for_interrupts!();

    // Split into written rows and rejects.
    let n = fetched.len();
    let mut out_keys = Vec::with_capacity(n);
    let mut scores = Vec::with_capacity(n);
    let mut out_models = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut labels: Vec<Option<String>> = Vec::with_capacity(n);
    let mut probabilities: Vec<Option<String>> = Vec::with_capacity(n);
    let (mut rej_keys, mut rej_models, mut rej_errors) = (Vec::new(), Vec::new(), Vec::new());
    let mut stats = ScoreStats::default();
    for (i, o) in outcomes.into_iter().enumerate() {
        let Some(key) = fetched.ids[i] else { continue };
        if let Some(why) = o.rejected {
            rej_keys.push(key);
            rej_models.push(fetched.models[i].clone());
            rej_errors.push(why);
            continue;
        }
        stats.add(o.score);
        out_keys.push(key);
        scores.push(o.score);
        out_models.push(fetched.models[i].clone());
        versions.push(o.version);
        labels.push(o.label);
        probabilities.push(o.probabilities.map(|p| {
            let cells: Vec<String> = p.iter().map(|v| v.to_string()).collect();
            format!("{{{}}}", cells.join(","))
        }));
    }
    let written = out_keys.len() as i64;
    if !out_keys.is_empty() {
        if let Some(delete) = &plan.delete_sql {
            // The statement skips itself when every key lies above the target's highest.
            let lowest = out_keys.iter().copied().min().unwrap_or(i64::MIN);
            client
                .update(delete.as_str(), None, &[out_keys.clone().into(), lowest.into()])
                .map_err(spi_err(job, "replacing old results"))?;
        }
        let args: [DatumWithOid; 7] = [
            out_keys.into(),
            run.into(),
            scores.into(),
            out_models.into(),
            versions.into(),
            labels.into(),
            probabilities.into(),
        ];
        client.update(plan.insert_sql.as_str(), None, &args).map_err(spi_err(job, "writing the target"))?;
    }
    let rejected = rej_keys.len() as i64;
    if !rej_keys.is_empty() {
        client
            .update(
                "INSERT INTO sqlscore.job_rejects (job_id, job, run_id, key, model, error) \
                 SELECT $1, $2, $3, r.key, r.model, r.error FROM unnest($4::bigint[], $5::text[], $6::text[]) AS r(key, model, error)",
                None,
                &[plan.job_id.into(), job.into(), run.into(), rej_keys.into(), rej_models.into(), rej_errors.into()],
            )
            .map_err(spi_err(job, "writing rejects"))?;
    }
    client
        .update(
            "UPDATE sqlscore.job_run_workers w SET rows_scored = w.rows_scored + $3, rows_rejected = w.rows_rejected + $4, \
                 score_count = w.score_count + $5, score_nulls = w.score_nulls + $6, score_sum = w.score_sum + $7, \
                 score_min = least(w.score_min, $8), score_max = greatest(w.score_max, $9), \
                 pid = pg_backend_pid(), updated_at = clock_timestamp() \
             WHERE w.run_id = $1 AND w.worker = $2",
            None,
            &[
                run.into(),
                worker.into(),
                written.into(),
                rejected.into(),
                (stats.count as i64).into(),
                (stats.nulls as i64).into(),
                stats.sum.into(),
                stats.min.into(),
                stats.max.into(),
            ],
        )
        .map_err(spi_err(job, "recording progress"))?;
    Ok(more)
}
