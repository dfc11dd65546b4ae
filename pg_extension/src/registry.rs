//! Finding a model for a call: `name` (the active version) or `name@version`, read from
//! `sqlscore.model_versions` through SPI. Each backend caches the answer for the current
//! statement only, so a newly activated version is used from the next statement on, and caches
//! sessions by content hash, so a version is loaded once per backend.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use pgrx::prelude::*;
use sqlscore_core::{Engine, Error, Model};

use crate::errors::{invalid, report, PgResult};
use crate::guc;

static ENGINE: OnceLock<Engine> = OnceLock::new();

struct Resolved {
    statement: pg_sys::TimestampTz,
    model: Arc<Model>,
}

static RESOLVED: Mutex<Option<HashMap<String, Resolved>>> = Mutex::new(None);

/// The backend's engine, with the current settings applied.
pub fn engine() -> &'static Engine {
    let engine = ENGINE.get_or_init(|| Engine::new(guc::engine_config()));
    let wanted = guc::engine_config();
    let current = engine.config();
    if wanted.intra_threads != current.intra_threads
        || wanted.max_model_bytes != current.max_model_bytes
        || wanted.batch_rows != current.batch_rows
        || wanted.null_policy != current.null_policy
    {
        engine.set_config(wanted);
    }
    if sqlscore_core::runtime::loaded_from().is_none() {
        sqlscore_core::runtime::set_library_path(guc::library_path());
    }
    engine
}

/// `churn` -> (churn, None); `churn@3` -> (churn, Some(3)).
fn parse_ref(model: &str) -> PgResult<(&str, Option<i32>)> {
    match model.rsplit_once('@') {
        None => Ok((model, None)),
        Some((name, v)) => v.parse::<i32>().map(|v| (name, Some(v))).map_err(|_| {
            invalid(
                PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
                format!("invalid model reference '{model}': expected name or name@version"),
                Some("versions are integers, e.g. churn@3"),
            )
        }),
    }
}

/// The model for `model` in this statement.
pub fn resolve(model: &str) -> PgResult<Arc<Model>> {
    let statement = unsafe { pg_sys::GetCurrentStatementStartTimestamp() };
    {
        let guard = RESOLVED.lock();
        if let Some(r) = guard.as_ref().and_then(|m| m.get(model)) {
            if r.statement == statement {
                return Ok(r.model.clone());
            }
        }
    }
    let found = lookup(model)?;
    let mut guard = RESOLVED.lock();
    let map = guard.get_or_insert_with(HashMap::new);
    if map.len() > 10_000 {
        map.clear();
    }
    map.insert(model.to_string(), Resolved { statement, model: found.clone() });
    Ok(found)
}

fn lookup(model: &str) -> PgResult<Arc<Model>> {
    let (name, version) = parse_ref(model)?;
    // Read-only SPI (select): allowed in parallel workers, unlike Spi::get_one.
    let row: Option<(i32, String)> = Spi::connect(|c| {
        let table = match version {
            None => c.select(
                "SELECT version, sha256 FROM sqlscore.model_versions WHERE name = $1 AND active",
                Some(1),
                &[name.into()],
            )?,
            Some(v) => c.select(
                "SELECT version, sha256 FROM sqlscore.model_versions WHERE name = $1 AND version = $2",
                Some(1),
                &[name.into(), v.into()],
            )?,
        };
        let mut out = None;
        for row in table {
            out = Some((row.get::<i32>(1)?.unwrap_or_default(), row.get::<String>(2)?.unwrap_or_default()));
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .map_err(spi_error)?;
    let Some((version, sha256)) = row else {
        return Err(report(Error::UnknownModel { model: model.to_string(), known: known_names()? }));
    };
    engine()
        .get_or_load(model, &sha256, || {
            Spi::connect(|c| {
                let t = c.select(
                    "SELECT onnx FROM sqlscore.model_versions WHERE name = $1 AND version = $2",
                    Some(1),
                    &[name.into(), version.into()],
                )?;
                let mut bytes = Vec::new();
                for row in t {
                    bytes = row.get::<Vec<u8>>(1)?.unwrap_or_default();
                }
                Ok::<_, pgrx::spi::Error>(bytes)
            })
            .unwrap_or_default()
        })
        .map_err(report)
}

fn known_names() -> PgResult<Vec<String>> {
    Spi::connect(|c| {
        let t = c.select("SELECT DISTINCT name FROM sqlscore.model_versions ORDER BY name LIMIT 50", None, &[])?;
        let mut names = Vec::new();
        for row in t {
            names.push(row.get::<String>(1)?.unwrap_or_default());
        }
        Ok::<_, pgrx::spi::Error>(names)
    })
    .map_err(spi_error)
}

pub fn spi_error(e: pgrx::spi::Error) -> pgrx::pg_sys::panic::ErrorReport {
    invalid(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, format!("sqlscore registry query failed: {e}"), None)
}
