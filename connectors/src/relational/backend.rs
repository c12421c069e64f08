//! The seam between the sink's logic and a database: the [`Backend`] trait that PostgreSQL and
//! SQLite implement, and the batch they write ([`BatchWrite`]).

use arrow::array::RecordBatch;
use async_trait::async_trait;

use super::table::{Dialect, ExistingColumn, TableLayout, TableName};

/// One batch for a back end to write in one transaction.
pub(crate) struct BatchWrite<'a> {
    pub(crate) query_id: &'a str,
    pub(crate) sink: &'a str,
    pub(crate) batch_id: i64,
    pub(crate) batches: &'a [RecordBatch],
    pub(crate) layout: &'a TableLayout,
    /// Update mode: upsert on the layout's key.
    pub(crate) upsert: bool,
    /// Complete mode: the batch replaces the table's content.
    pub(crate) replace: bool,
    /// The channel to notify on commit (PostgreSQL).
    pub(crate) notify: Option<&'a str>,
}

impl BatchWrite<'_> {
    /// The JSON payload of the commit notification.
    pub(crate) fn notification(&self, rows: u64) -> String {
        serde_json::json!({
            "table": self.layout.table.to_string(),
            "sink": self.sink,
            "query_id": self.query_id,
            "batch_id": self.batch_id,
            "rows": rows,
        })
        .to_string()
    }

    /// The rows of the batch.
    pub(crate) fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// What happened to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// Its id was already committed: nothing written.
    Skipped,
    /// Written and committed; the rows inserted or updated.
    Committed { rows: u64 },
}

/// A database the sink writes to.
#[async_trait]
pub(crate) trait Backend: Send + Sync {
    /// The SQL dialect of its statements.
    fn dialect(&self) -> Dialect;

    /// Runs DDL (idempotent `CREATE … IF NOT EXISTS`), serialized against other sinks.
    async fn execute_ddl(&self, sql: &str) -> sqlx::Result<()>;

    /// The table's columns and unique keys, or `None` if it does not exist.
    async fn describe(
        &self,
        table: &TableName,
    ) -> sqlx::Result<Option<(Vec<ExistingColumn>, Vec<Vec<String>>)>>;

    /// The last batch committed by this query and sink (-1 if none), creating its row.
    async fn last_committed(&self, query_id: &str, sink: &str) -> sqlx::Result<i64>;

    /// Writes one batch and its commit row in one transaction.
    async fn write(&self, job: &BatchWrite<'_>) -> sqlx::Result<Written>;
}
