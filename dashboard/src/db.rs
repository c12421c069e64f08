//! Database access: one pool on PostgreSQL or SQLite, dialect-specific SQL fragments, and a
//! small dynamic row type so that each query is written once for both back ends.
//!
//! Every value from a request is bound as a parameter (`$1`, `$2`, …: SQLite accepts the same
//! numbered form); table names come only from the configuration and are validated and quoted.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgPool, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, Row};

use crate::error::DashboardError;

/// How the sink stores timestamps in SQLite: fixed-width UTC text.
pub const SQLITE_TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// A connection pool on one of the supported databases.
#[derive(Clone, Debug)]
pub(crate) enum Db {
    /// PostgreSQL.
    Postgres(PgPool),
    /// SQLite (a file written by the sink in WAL mode).
    Sqlite(SqlitePool),
}

/// A value bound to a query parameter.
#[derive(Clone, Debug)]
pub(crate) enum Arg {
    /// Text (symbols, table names).
    Text(String),
    /// A 64-bit integer (limits).
    Int(i64),
    /// An instant: `timestamptz` on PostgreSQL, the sink's fixed-width text on SQLite.
    Ts(DateTime<Utc>),
}

/// A value read from a result column.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    /// SQL `NULL` (or a type the dashboard does not read).
    Null,
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(String),
}

impl Val {
    /// The value as a float (integers converted), `None` for null or text.
    pub(crate) fn f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Real(r) => Some(*r),
            _ => None,
        }
    }

    /// The value as an integer (floats rounded), `None` for null or text.
    pub(crate) fn i64(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            Self::Real(r) if r.is_finite() => Some(r.round() as i64),
            _ => None,
        }
    }

    /// The value as text, `None` unless it is text.
    pub(crate) fn text(&self) -> Option<&str> {
        match self {
            Self::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// Whether an error means a table does not exist.
pub(crate) fn is_missing_table(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("42P01") || db.message().contains("no such table")
        }
        _ => false,
    }
}

/// Pool options with sqlx's maintenance task off (no idle timeout, no maximum lifetime, no
/// minimum of connections): in sqlx-core 0.9.0 that task can race with a connection's
/// release and spin a runtime worker at 100 % (upstream issue #3645, fixed after 0.9.0). A
/// connection the server closed is replaced on its next use.
fn pool_options<DB: sqlx::Database>() -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .idle_timeout(None)
        .max_lifetime(None)
        .min_connections(0)
}

impl Db {
    /// A lazy pool on `url` (`postgres://…`, `postgresql://…` or `sqlite://…`): connections are
    /// opened on first use, so the server starts before the database or its file exists.
    pub(crate) fn connect_lazy(url: &str) -> Result<Self, DashboardError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url)
                .map_err(DashboardError::DatabaseUrl)?
                .application_name("sluice-dashboard");
            let pool = pool_options::<sqlx::Postgres>()
                .max_connections(6)
                .acquire_timeout(Duration::from_secs(3))
                .connect_lazy_with(options);
            Ok(Self::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            // A plain reader (never creates the file): in WAL mode it does not block the sink's
            // writer, and a short busy timeout keeps requests from hanging on a checkpoint.
            let options = SqliteConnectOptions::from_str(url)
                .map_err(DashboardError::DatabaseUrl)?
                .create_if_missing(false)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .busy_timeout(Duration::from_millis(500))
                .pragma("cache_size", "-65536")
                .pragma("mmap_size", "268435456")
                .pragma("query_only", "ON");
            let pool = pool_options::<sqlx::Sqlite>()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(3))
                .connect_lazy_with(options);
            Ok(Self::Sqlite(pool))
        } else {
            Err(DashboardError::Config(
                "database_url must start with postgres://, postgresql:// or sqlite:".into(),
            ))
        }
    }

    /// `"postgres"` or `"sqlite"`.
    pub(crate) fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// SQL for the Unix time in milliseconds (an integer) of a timestamp expression.
    pub(crate) fn epoch_ms(&self, expr: &str) -> String {
        match self {
            Self::Postgres(_) => format!("(extract(epoch from {expr}) * 1000)::int8"),
            Self::Sqlite(_) => {
                format!("CAST(round((julianday({expr}) - 2440587.5) * 86400000.0) AS INTEGER)")
            }
        }
    }

    /// SQL for the minute a timestamp expression falls in (a grouping key).
    pub(crate) fn minute(&self, expr: &str) -> String {
        match self {
            Self::Postgres(_) => format!("date_trunc('minute', {expr})"),
            Self::Sqlite(_) => format!("substr({expr}, 1, 16)"),
        }
    }

    /// Whether a table (or view) named by a validated name exists.
    pub(crate) async fn table_exists(&self, name: &str) -> Result<bool, sqlx::Error> {
        match self {
            Self::Postgres(pool) => {
                sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
                    .bind(crate::params::quote_table_name(name))
                    .fetch_one(pool)
                    .await
            }
            Self::Sqlite(pool) => {
                let (schema, table) = match name.split_once('.') {
                    Some((schema, table)) => (schema, table),
                    None => ("main", name),
                };
                // The schema part is a validated identifier; quote it all the same.
                let sql = format!(
                    "SELECT count(*) FROM \"{schema}\".sqlite_master \
                     WHERE type IN ('table', 'view') AND name = $1"
                );
                let count: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
                    .bind(table.to_owned())
                    .fetch_one(pool)
                    .await?;
                Ok(count > 0)
            }
        }
    }

    /// Runs a query written with `$n` parameters and returns its rows as [`Val`]s.
    pub(crate) async fn fetch(
        &self,
        sql: &str,
        args: &[Arg],
    ) -> Result<Vec<Vec<Val>>, sqlx::Error> {
        match self {
            Self::Postgres(pool) => {
                let mut query = sqlx::query(AssertSqlSafe(sql.to_owned()));
                for arg in args {
                    query = match arg {
                        Arg::Text(text) => query.bind(text.clone()),
                        Arg::Int(int) => query.bind(*int),
                        Arg::Ts(ts) => query.bind(*ts),
                    };
                }
                let rows = query.fetch_all(pool).await?;
                Ok(rows.iter().map(pg_values).collect())
            }
            Self::Sqlite(pool) => {
                let mut query = sqlx::query(AssertSqlSafe(sql.to_owned()));
                for arg in args {
                    query = match arg {
                        Arg::Text(text) => query.bind(text.clone()),
                        Arg::Int(int) => query.bind(*int),
                        Arg::Ts(ts) => query.bind(ts.format(SQLITE_TIMESTAMP_FORMAT).to_string()),
                    };
                }
                let rows = query.fetch_all(pool).await?;
                Ok(rows.iter().map(sqlite_values).collect())
            }
        }
    }

    /// Closes the pool.
    pub(crate) async fn close(&self) {
        match self {
            Self::Postgres(pool) => pool.close().await,
            Self::Sqlite(pool) => pool.close().await,
        }
    }
}

fn pg_values(row: &PgRow) -> Vec<Val> {
    (0..row.len())
        .map(|i| {
            if let Ok(v) = row.try_get::<Option<f64>, _>(i) {
                v.map_or(Val::Null, Val::Real)
            } else if let Ok(v) = row.try_get::<Option<i64>, _>(i) {
                v.map_or(Val::Null, Val::Int)
            } else if let Ok(v) = row.try_get::<Option<i32>, _>(i) {
                v.map_or(Val::Null, |v| Val::Int(v.into()))
            } else if let Ok(v) = row.try_get::<Option<f32>, _>(i) {
                v.map_or(Val::Null, |v| Val::Real(v.into()))
            } else if let Ok(v) = row.try_get::<Option<String>, _>(i) {
                v.map_or(Val::Null, Val::Text)
            } else {
                Val::Null
            }
        })
        .collect()
}

fn sqlite_values(row: &SqliteRow) -> Vec<Val> {
    use sqlx::{TypeInfo, ValueRef};
    (0..row.len())
        .map(|i| {
            let Ok(raw) = row.try_get_raw(i) else {
                return Val::Null;
            };
            if raw.is_null() {
                return Val::Null;
            }
            match raw.type_info().name() {
                "INTEGER" | "BOOLEAN" => row.try_get::<i64, _>(i).map_or(Val::Null, Val::Int),
                "REAL" | "NUMERIC" => row.try_get::<f64, _>(i).map_or(Val::Null, Val::Real),
                "TEXT" => row.try_get::<String, _>(i).map_or(Val::Null, Val::Text),
                _ => Val::Null,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sqlx-core 0.9.0's pool maintenance task can spin a worker at 100 % (upstream #3645):
    /// the dashboard's pools never start it.
    #[tokio::test]
    async fn pools_run_no_maintenance_task() {
        for url in [
            "postgres://sluice:sluice@127.0.0.1:1/sluice",
            "sqlite://does-not-exist.db",
        ] {
            let settings = match Db::connect_lazy(url).unwrap() {
                Db::Postgres(pool) => (
                    pool.options().get_idle_timeout(),
                    pool.options().get_max_lifetime(),
                    pool.options().get_min_connections(),
                ),
                Db::Sqlite(pool) => (
                    pool.options().get_idle_timeout(),
                    pool.options().get_max_lifetime(),
                    pool.options().get_min_connections(),
                ),
            };
            assert_eq!(settings, (None, None, 0), "{url}");
        }
    }
}
