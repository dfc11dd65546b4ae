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

/// When a resolution was made: the statement, and the command within it (a function or DO
/// block that activates a version and then scores sees the change).
type Epoch = (pg_sys::TimestampTz, pg_sys::CommandId);

struct Resolved {
    epoch: Epoch,
    model: Arc<Model>,
}

static RESOLVED: Mutex<Option<HashMap<String, Resolved>>> = Mutex::new(None);

/// The backend's engine, with the current settings applied.
pub fn engine() -> &'static Engine {
    let engine = ENGINE.get_or_init(|| Engine::new(guc::engine_config()));
    let wanted = guc::engine_config();
    if wanted.max_model_bytes != engine.config().max_model_bytes {
        engine.set_config(wanted);
    }
    if sqlscore_core::runtime::loaded_from().is_none() {
        sqlscore_core::runtime::set_library_path(guc::library_path());
    }
    engine
}

/// The model for `model` in this statement.
pub fn resolve(model: &str) -> PgResult<Arc<Model>> {
    let epoch = unsafe { (pg_sys::GetCurrentStatementStartTimestamp(), pg_sys::GetCurrentCommandId(false)) };
    {
        let guard = RESOLVED.lock();
        if let Some(r) = guard.as_ref().and_then(|m| m.get(model)) {
            if r.epoch == epoch {
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
    map.insert(model.to_string(), Resolved { epoch, model: found.clone() });
    Ok(found)
}

fn lookup(model: &str) -> PgResult<Arc<Model>> {
    let (name, version) = sqlscore_core::parse_ref(model).map_err(report)?;
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
            let read = Spi::connect(|c| {
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
            });
            read.map_err(|e| Error::Internal(format!("reading the bytes of {model}: {e}")))
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
