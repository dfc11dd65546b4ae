//! The Rust embedding API. A host program's `duckdb::Connection` gets sqlscore by loading the
//! same extension file SQL users load, so there is one build of the scoring code and the host
//! runs exactly what users run. DuckDB only loads unsigned extensions into a database opened with
//! `allow_unsigned_extensions`: [`open`] does that; [`register`] explains it when it is missing.

use std::path::{Path, PathBuf};

use duckdb::{Config, Connection};

#[derive(Debug)]
pub enum EmbedError {
    /// The extension file is not where we looked.
    ExtensionNotFound(Vec<PathBuf>),
    DuckDb(duckdb::Error),
}

impl std::fmt::Display for EmbedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmbedError::ExtensionNotFound(paths) => write!(
                f,
                "sqlscore.duckdb_extension not found (looked in: {}); run `make extension` or set SQLSCORE_EXTENSION",
                paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
            EmbedError::DuckDb(e) => {
                let text = e.to_string();
                if text.contains("unsigned") {
                    write!(
                        f,
                        "{text}\nHINT: open the database with allow_unsigned_extensions (sqlscore_duckdb::open does)"
                    )
                } else {
                    write!(f, "{text}")
                }
            }
        }
    }
}

impl std::error::Error for EmbedError {}

impl From<duckdb::Error> for EmbedError {
    fn from(e: duckdb::Error) -> Self {
        EmbedError::DuckDb(e)
    }
}

/// Where the extension file is: `SQLSCORE_EXTENSION`, next to the running program, or the
/// `dist/` of the source tree this crate was built from.
pub fn extension_path() -> Result<PathBuf, EmbedError> {
    let mut candidates = Vec::new();
    if let Some(p) = std::env::var_os("SQLSCORE_EXTENSION") {
        candidates.push(PathBuf::from(p));
    }
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        candidates.push(dir.join("sqlscore.duckdb_extension"));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/sqlscore.duckdb_extension"));
    candidates.iter().find(|p| p.is_file()).cloned().ok_or(EmbedError::ExtensionNotFound(candidates))
}

/// Adds sqlscore's functions to the connection's database (and, when it is writable, the model
/// registry and SQL macros).
pub fn register(conn: &Connection) -> Result<(), EmbedError> {
    let path = extension_path()?;
    conn.execute_batch(&format!("LOAD '{}'", path.display().to_string().replace('\'', "''")))?;
    Ok(())
}

/// Opens (or creates) a database file, or `:memory:`, ready for scoring.
pub fn open(path: impl AsRef<Path>) -> Result<Connection, EmbedError> {
    let config = Config::default().allow_unsigned_extensions()?;
    let conn = if path.as_ref() == Path::new(":memory:") {
        Connection::open_in_memory_with_flags(config)?
    } else {
        Connection::open_with_flags(path, config)?
    };
    register(&conn)?;
    Ok(conn)
}

/// Registers a model file under `name` in the connection's current transaction; returns the new
/// version and the model's sha256.
pub fn register_model(
    conn: &Connection,
    name: &str,
    file: &Path,
    description: Option<&str>,
) -> Result<(i32, String), EmbedError> {
    let mut stmt = conn.prepare(
        "INSERT INTO sqlscore_models FROM sqlscore_register(?, ?, description := ?) RETURNING version, sha256",
    )?;
    let row = stmt.query_row(duckdb::params![name, file.display().to_string(), description], |r| {
        Ok((r.get::<_, i32>(0)?, r.get::<_, String>(1)?))
    })?;
    Ok(row)
}

/// The file of the connection's current database; None for an in-memory one.
pub(crate) fn database_file(conn: &Connection) -> Option<PathBuf> {
    conn.query_row("SELECT file FROM pragma_database_list WHERE name = current_database()", [], |r| {
        r.get::<_, Option<String>>(0)
    })
    .ok()
    .flatten()
    .filter(|f| !f.is_empty())
    .map(PathBuf::from)
}
