//! `sqlscore model push|list` for a DuckDB database file, and `sqlscore sql`.

use std::path::{Path, PathBuf};

use clap::Subcommand;

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
            "SELECT name, version, latest, left(sha256, 12) AS sha256, size, engine, description, created_at \
             FROM sqlscore_model_list ORDER BY name, version",
        ),
    }
}

pub fn sql(db: &Path, query: &str) -> Result<(), BoxError> {
    let conn = sqlscore_duckdb::open(db)?;
    crate::display::print_query(&conn, query)
}
