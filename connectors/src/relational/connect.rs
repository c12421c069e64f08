//! How the database URL picks a back end: `postgres://` or `postgresql://` for
//! `PostgresBackend`, `sqlite://` for `SqliteBackend`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use super::backend::Backend;
use super::error::RelationalError;
use super::postgres::PostgresBackend;
use super::sqlite::SqliteBackend;

/// The database used when none is configured: a SQLite file under `./data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/sluice.db";

/// How to reach the database, parsed from the URL.
pub(crate) enum Connect {
    /// A PostgreSQL server.
    Postgres(PgConnectOptions),
    /// A SQLite file.
    Sqlite(SqliteConnectOptions),
}

impl Connect {
    /// The back end of `url` (`postgres://`, `postgresql://` or `sqlite://`); `database` is
    /// the URL as errors show it. A SQLite file's directory is created.
    pub(crate) fn parse(url: &str, database: &str) -> Result<Self, RelationalError> {
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        let invalid = |e: sqlx::Error| {
            RelationalError::Config(format!("invalid database URL {database}: {e}"))
        };
        match scheme {
            Some("postgres" | "postgresql") => Ok(Self::Postgres(
                PgConnectOptions::from_str(url)
                    .map_err(invalid)?
                    .application_name("sluice"),
            )),
            Some("sqlite") => {
                let options = SqliteConnectOptions::from_str(url).map_err(invalid)?;
                if let Some(parent) = options.get_filename().parent() {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        RelationalError::Config(format!(
                            "cannot create the directory {} for {database}: {e}",
                            parent.display()
                        ))
                    })?;
                }
                Ok(Self::Sqlite(options))
            }
            _ => Err(RelationalError::Config(format!(
                "unsupported database URL {database}: expected postgres://, postgresql:// \
                 or sqlite://"
            ))),
        }
    }

    /// A back end that connects on first use, waiting at most `timeout` for a connection.
    pub(crate) fn backend(&self, timeout: Duration) -> Box<dyn Backend> {
        match self {
            Self::Postgres(options) => Box::new(PostgresBackend::new(options.clone(), timeout)),
            Self::Sqlite(options) => Box::new(SqliteBackend::new(options.clone(), timeout)),
        }
    }
}
