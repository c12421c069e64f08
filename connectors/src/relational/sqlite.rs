//! The SQLite back end, the embedded default: one writer connection in WAL mode (readers such
//! as the dashboard never block it), `BEGIN IMMEDIATE` transactions, multi-row prepared
//! `INSERT`s, `ON CONFLICT … DO UPDATE` upserts. SQLite has no `NOTIFY`: readers poll
//! `sluice_commits.committed_at`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, Sqlite};

use super::backend::{Backend, BatchWrite, Written};
use super::commits::CommitStatements;
use super::pool::pool_options;
use super::table::{Dialect, ExistingColumn, TableLayout, TableName};
use super::values::{ColumnValues, Value, decimal_text};

/// SQLite's default limit on bound parameters per statement.
const MAX_PARAMETERS: usize = 32_766;

/// Rows per `INSERT` statement, at most.
const MAX_ROWS_PER_STATEMENT: usize = 500;

/// One SQLite database file.
pub(super) struct SqliteBackend {
    pool: SqlitePool,
    commits: CommitStatements,
}

impl SqliteBackend {
    /// A single-connection pool on the file, created if missing, with durable commits
    /// (`synchronous = FULL`: a committed batch survives a power loss, which exactly-once needs).
    pub(super) fn new(options: SqliteConnectOptions, connect_timeout: Duration) -> Self {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30));
        let pool = pool_options::<Sqlite>()
            .max_connections(1)
            .acquire_timeout(connect_timeout)
            .connect_lazy_with(options);
        Self {
            pool,
            commits: CommitStatements::new(Dialect::Sqlite),
        }
    }
}

#[async_trait]
impl Backend for SqliteBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn execute_ddl(&self, sql: &str) -> sqlx::Result<()> {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn describe(
        &self,
        table: &TableName,
    ) -> sqlx::Result<Option<(Vec<ExistingColumn>, Vec<Vec<String>>)>> {
        let schema = table.schema.as_deref().unwrap_or("main");
        let rows = sqlx::query(
            "SELECT name, type, \"notnull\", dflt_value IS NOT NULL, pk
             FROM pragma_table_info(?1, ?2) ORDER BY cid",
        )
        .bind(&table.name)
        .bind(schema)
        .fetch_all(&self.pool)
        .await?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut columns = Vec::new();
        let mut primary_key = Vec::new();
        for row in rows {
            let name: String = row.try_get(0)?;
            if row.try_get::<i64, _>(4)? > 0 {
                primary_key.push(name.clone());
            }
            columns.push(ExistingColumn {
                name,
                declared_type: row.try_get(1)?,
                not_null: row.try_get(2)?,
                has_default: row.try_get(3)?,
            });
        }
        let mut unique_keys: Vec<Vec<String>> = Vec::new();
        let indexes = sqlx::query(
            "SELECT il.name, ii.name FROM pragma_index_list(?1, ?2) il
             JOIN pragma_index_info(il.name, ?2) ii
             WHERE il.\"unique\" = 1 AND il.partial = 0 ORDER BY il.name, ii.seqno",
        )
        .bind(&table.name)
        .bind(schema)
        .fetch_all(&self.pool)
        .await?;
        let mut current: Option<String> = None;
        for row in indexes {
            let index: String = row.try_get(0)?;
            let column: String = row.try_get(1)?;
            if current.as_ref() != Some(&index) {
                unique_keys.push(Vec::new());
                current = Some(index);
            }
            if let Some(key) = unique_keys.last_mut() {
                key.push(column);
            }
        }
        if !primary_key.is_empty() {
            unique_keys.push(primary_key);
        }
        Ok(Some((columns, unique_keys)))
    }

    async fn last_committed(&self, query_id: &str, sink: &str) -> sqlx::Result<i64> {
        sqlx::query(self.commits.insert.clone())
            .bind(query_id)
            .bind(sink)
            .execute(&self.pool)
            .await?;
        sqlx::query_scalar(self.commits.select.clone())
            .bind(query_id)
            .bind(sink)
            .fetch_one(&self.pool)
            .await
    }

    async fn write(&self, job: &BatchWrite<'_>) -> sqlx::Result<Written> {
        // IMMEDIATE takes the write lock up front, so two writers queue on busy_timeout
        // instead of failing when a read transaction tries to upgrade.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let committed: i64 = sqlx::query_scalar(self.commits.lock.clone())
            .bind(job.query_id)
            .bind(job.sink)
            .fetch_one(&mut *tx)
            .await?;
        if committed >= job.batch_id {
            tx.rollback().await?;
            return Ok(Written::Skipped);
        }
        let layout = job.layout;
        if job.replace {
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DELETE FROM {}",
                layout.table.quoted()
            )))
            .execute(&mut *tx)
            .await?;
        }
        let per_statement =
            (MAX_PARAMETERS / layout.columns.len().max(1)).clamp(1, MAX_ROWS_PER_STATEMENT);
        let mut rows = 0;
        for batch in job.batches {
            let values: Vec<ColumnValues<'_>> = layout
                .columns
                .iter()
                .map(|column| ColumnValues::new(batch, column))
                .collect();
            let mut start = 0;
            while start < batch.num_rows() {
                let end = (start + per_statement).min(batch.num_rows());
                let sql = insert_statement(layout, end - start, job.upsert);
                let mut arguments = SqliteArguments::default();
                for row in start..end {
                    for column in &values {
                        bind(&mut arguments, column.get(row))?;
                    }
                }
                rows += sqlx::query_with(AssertSqlSafe(sql), arguments)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                start = end;
            }
        }
        sqlx::query(self.commits.update.clone())
            .bind(job.query_id)
            .bind(job.sink)
            .bind(job.batch_id)
            .bind(chrono::Utc::now().format(TIMESTAMP_FORMAT).to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Written::Committed { rows })
    }
}

/// How timestamps are stored: fixed-width UTC text, which sorts in time order and which
/// SQLite's date and time functions read.
pub const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";

/// `INSERT INTO t (…) VALUES (?, …), … [ON CONFLICT …]` for `rows` rows.
fn insert_statement(layout: &TableLayout, rows: usize, upsert: bool) -> String {
    let placeholders = format!("({})", vec!["?"; layout.columns.len()].join(", "));
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES {}",
        layout.table.quoted(),
        layout.column_list(),
        vec![placeholders; rows].join(", ")
    );
    if upsert {
        sql += &layout.upsert_clause();
    }
    sql
}

/// Binds one value in SQLite's storage form (see the type mapping in [`super::table`]).
fn bind(arguments: &mut SqliteArguments, value: Value<'_>) -> sqlx::Result<()> {
    use sqlx::Arguments;
    let result = match value {
        Value::Null => arguments.add(None::<i64>),
        Value::Text(text) => arguments.add(text.to_string()),
        Value::Float(v) => arguments.add(v),
        Value::Int(v) => arguments.add(v),
        Value::Bool(v) => arguments.add(v),
        Value::TimestampMicros(micros) => arguments.add(
            DateTime::from_timestamp_micros(micros).map(|t| t.format(TIMESTAMP_FORMAT).to_string()),
        ),
        Value::Date(days) => arguments.add(
            DateTime::from_timestamp(i64::from(days) * 86_400, 0)
                .map(|t| t.format("%Y-%m-%d").to_string()),
        ),
        Value::Decimal(digits, scale) => arguments.add(decimal_text(digits, scale)),
        Value::Bytes(bytes) => arguments.add(bytes.to_vec()),
    };
    result.map_err(sqlx::Error::Encode)
}
