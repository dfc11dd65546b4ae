//! `sqlscore model push|list` for a DuckDB database file, and `sqlscore sql`.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use duckdb::types::ValueRef;

use crate::BoxError;

#[derive(Subcommand)]
pub enum ModelCommand {
    /// Validate a model file and store it (a new version) in the database: a DuckDB file or a
    /// postgres:// URL.
    Push {
        #[arg(long, default_value = "sqlscore-demo.duckdb")]
        db: String,
        #[arg(long)]
        description: Option<String>,
        name: String,
        file: PathBuf,
    },
    /// List the registered models and versions.
    List {
        #[arg(long, default_value = "sqlscore-demo.duckdb")]
        db: String,
    },
    /// Make a version the active one (Postgres; rollback = activate an older version).
    Activate {
        #[arg(long)]
        db: String,
        name: String,
        version: i32,
    },
}

pub fn run(cmd: ModelCommand) -> Result<(), BoxError> {
    match cmd {
        ModelCommand::Push { db, description, name, file } if crate::pg::is_url(&db) => {
            crate::pg::push(&db, &name, &file, description.as_deref())
        }
        ModelCommand::List { db } if crate::pg::is_url(&db) => crate::pg::list(&db),
        ModelCommand::Activate { db, name, version } if crate::pg::is_url(&db) => crate::pg::activate(&db, &name, version),
        ModelCommand::Activate { .. } => {
            Err("activate is for Postgres (--db postgres://...); in DuckDB, score name@version or register the version again".into())
        }
        ModelCommand::Push { db, description, name, file } => {
            let conn = sqlscore_duckdb::open(&db)?;
            let (version, sha) = sqlscore_duckdb::register_model(&conn, &name, &file, description.as_deref())?;
            println!("registered {name}@{version} sha256={sha}");
            Ok(())
        }
        ModelCommand::List { db } => sql(
            Path::new(&db),
            "SELECT name, version, latest, left(sha256, 12) AS sha256, size, description, created_at \
             FROM sqlscore_model_list ORDER BY name, version",
        ),
    }
}

pub fn sql(db: &Path, query: &str) -> Result<(), BoxError> {
    let conn = sqlscore_duckdb::open(db)?;
    let mut stmt = conn.prepare(query)?;
    let mut rows = stmt.query([])?;
    let mut header_done = false;
    while let Some(row) = rows.next()? {
        let stmt = row.as_ref();
        let n = stmt.column_count();
        if !header_done {
            let names: Vec<String> =
                (0..n).map(|i| stmt.column_name(i).map(|s| s.to_string()).unwrap_or_default()).collect();
            println!("{}", names.join(" | "));
            header_done = true;
        }
        let cells: Vec<String> = (0..n).map(|i| show(row.get_ref(i).ok())).collect();
        println!("{}", cells.join(" | "));
    }
    Ok(())
}

fn show(v: Option<ValueRef<'_>>) -> String {
    match v {
        None | Some(ValueRef::Null) => "NULL".into(),
        Some(ValueRef::Text(t)) => String::from_utf8_lossy(t).into_owned(),
        Some(ValueRef::Blob(b)) => format!("<{} bytes>", b.len()),
        Some(other) => match other.to_owned() {
            duckdb::types::Value::Boolean(b) => b.to_string(),
            duckdb::types::Value::Int(i) => i.to_string(),
            duckdb::types::Value::BigInt(i) => i.to_string(),
            duckdb::types::Value::HugeInt(i) => i.to_string(),
            duckdb::types::Value::Double(d) => d.to_string(),
            duckdb::types::Value::Float(d) => d.to_string(),
            other => format!("{other:?}"),
        },
    }
}
