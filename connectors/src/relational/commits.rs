//! The commit table, `sluice_commits(query_id, sink, batch_id, committed_at)`: one row per query
//! and sink holding the last batch written, updated in the batch's own transaction, which is
//! what makes the sink exactly-once. Its statements are written once here, in each dialect.

use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};

use super::table::Dialect;

/// The table that records the last committed batch of each query and sink.
pub const COMMITS_TABLE: &str = "sluice_commits";

/// The PostgreSQL channel notified after each committed batch.
pub const NOTIFY_CHANNEL: &str = "sluice_batches";

/// The commit table's statements in one dialect, parameters `(query_id, sink[, batch_id[,
/// committed_at]])`.
pub(crate) struct CommitStatements {
    /// `CREATE TABLE IF NOT EXISTS` (no parameters).
    pub(crate) create: String,
    /// Creates the row of a query and sink at batch -1 unless it exists.
    pub(crate) insert: SqlStr,
    /// The row's last committed batch.
    pub(crate) select: SqlStr,
    /// The same inside a batch's transaction, locking the row until it ends (PostgreSQL's
    /// `FOR UPDATE`; on SQLite, `BEGIN IMMEDIATE` already holds the database's write lock).
    pub(crate) lock: SqlStr,
    /// Sets the row's batch (`$3`) and commit time (`now()` on PostgreSQL, `?4` on SQLite,
    /// in [`super::SQLITE_TIMESTAMP_FORMAT`]).
    pub(crate) update: SqlStr,
}

impl CommitStatements {
    /// The statements in `dialect`.
    pub(crate) fn new(dialect: Dialect) -> Self {
        let p = |n: usize| match dialect {
            Dialect::Postgres => format!("${n}"),
            Dialect::Sqlite => format!("?{n}"),
        };
        let row = format!("query_id = {} AND sink = {}", p(1), p(2));
        let select = format!("SELECT batch_id FROM {COMMITS_TABLE} WHERE {row}");
        let (create, lock, committed_at) = match dialect {
            Dialect::Postgres => (
                format!(
                    "CREATE TABLE IF NOT EXISTS {COMMITS_TABLE} (query_id text NOT NULL, \
                     sink text NOT NULL, batch_id bigint NOT NULL, \
                     committed_at timestamptz NOT NULL DEFAULT now(), \
                     PRIMARY KEY (query_id, sink))"
                ),
                format!("{select} FOR UPDATE"),
                "now()".to_string(),
            ),
            Dialect::Sqlite => (
                format!(
                    "CREATE TABLE IF NOT EXISTS {COMMITS_TABLE} (query_id TEXT NOT NULL, \
                     sink TEXT NOT NULL, batch_id INTEGER NOT NULL, \
                     committed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')), \
                     PRIMARY KEY (query_id, sink))"
                ),
                select.clone(),
                p(4),
            ),
        };
        let sql = |text: String| AssertSqlSafe(text).into_sql_str();
        Self {
            create,
            insert: sql(format!(
                "INSERT INTO {COMMITS_TABLE} (query_id, sink, batch_id) VALUES ({}, {}, -1) \
                 ON CONFLICT (query_id, sink) DO NOTHING",
                p(1),
                p(2)
            )),
            lock: sql(lock),
            update: sql(format!(
                "UPDATE {COMMITS_TABLE} SET batch_id = {}, committed_at = {committed_at} \
                 WHERE {row}",
                p(3)
            )),
            select: sql(select),
        }
    }
}
