//! The PostgreSQL back end: binary `COPY … FROM STDIN` for every write, a staging table for
//! upserts, `DELETE` + `COPY` for complete mode, `pg_notify` on commit.

use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use sqlx::Postgres;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::{AssertSqlSafe, Connection, Row};

use super::backend::{Backend, BatchWrite, Written};
use super::commits::CommitStatements;
use super::pool::pool_options;
use super::table::{Dialect, ExistingColumn, SqlColumn, SqlType, TableName, quote_ident};
use super::values::{ColumnValues, Value};

/// Rows are sent to the server in chunks of about this many bytes.
const COPY_CHUNK_BYTES: usize = 1 << 20;

/// Microseconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// The advisory lock key that serializes the sinks' DDL ("sluice" in ASCII).
const DDL_LOCK: i64 = 0x736c_7569_6365;

/// Days from the Unix epoch to 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;

/// A pool of connections to one PostgreSQL database.
pub(super) struct PostgresBackend {
    pool: PgPool,
    commits: CommitStatements,
}

impl PostgresBackend {
    /// A pool that connects on first use (so that connecting is retried like any write).
    pub(super) fn new(options: PgConnectOptions, connect_timeout: Duration) -> Self {
        let pool = pool_options::<Postgres>()
            .max_connections(2)
            .acquire_timeout(connect_timeout)
            .connect_lazy_with(options);
        Self {
            pool,
            commits: CommitStatements::new(Dialect::Postgres),
        }
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn execute_ddl(&self, sql: &str) -> sqlx::Result<()> {
        // Concurrent `CREATE TABLE IF NOT EXISTS` of one table can fail on a catalog unique
        // index; sinks starting together take turns on an advisory lock instead.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(DDL_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut *tx).await?;
        tx.commit().await
    }

    async fn describe(
        &self,
        table: &TableName,
    ) -> sqlx::Result<Option<(Vec<ExistingColumn>, Vec<Vec<String>>)>> {
        // `to_regclass` resolves the name as SQL would (search_path when unqualified).
        let relation: Option<i64> = sqlx::query_scalar("SELECT to_regclass($1)::oid::bigint")
            .bind(table.quoted())
            .fetch_one(&self.pool)
            .await?;
        let Some(oid) = relation else {
            return Ok(None);
        };
        let columns = sqlx::query(
            "SELECT a.attname::text, format_type(a.atttypid, NULL), a.attnotnull,
                    a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''
             FROM pg_attribute a
             WHERE a.attrelid = $1::bigint::oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
        )
        .bind(oid)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|row| {
            Ok(ExistingColumn {
                name: row.try_get(0)?,
                declared_type: row.try_get(1)?,
                not_null: row.try_get(2)?,
                has_default: row.try_get(3)?,
            })
        })
        .collect::<sqlx::Result<Vec<_>>>()?;
        let unique_keys = sqlx::query_scalar(
            "SELECT array_agg(a.attname::text ORDER BY a.attname)
             FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = $1::bigint::oid AND i.indisunique AND i.indpred IS NULL
             GROUP BY i.indexrelid",
        )
        .bind(oid)
        .fetch_all(&self.pool)
        .await?;
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
        let mut connection = self.pool.acquire().await?;
        let mut tx = connection.begin().await?;
        // The commit row is locked for the whole transaction: a second writer of the same
        // query waits here, then sees the batch committed and skips it.
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
        let target = layout.table.quoted();
        let rows = if job.rows() == 0 && !job.replace {
            0
        } else if job.upsert {
            let stage = quote_ident(&format!("sluice_stage_{}", layout.table.name));
            sqlx::raw_sql(AssertSqlSafe(format!(
                "CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {target}) ON COMMIT DELETE ROWS"
            )))
            .execute(&mut *tx)
            .await?;
            copy_in(&mut tx, &stage, job).await?;
            let upsert = format!(
                "INSERT INTO {target} ({columns}) SELECT {columns} FROM {stage}{clause}",
                columns = layout.column_list(),
                clause = layout.upsert_clause()
            );
            sqlx::raw_sql(AssertSqlSafe(upsert))
                .execute(&mut *tx)
                .await?
                .rows_affected()
        } else {
            if job.replace {
                sqlx::raw_sql(AssertSqlSafe(format!("DELETE FROM {target}")))
                    .execute(&mut *tx)
                    .await?;
            }
            copy_in(&mut tx, &target, job).await?
        };
        sqlx::query(self.commits.update.clone())
            .bind(job.query_id)
            .bind(job.sink)
            .bind(job.batch_id)
            .execute(&mut *tx)
            .await?;
        if let Some(channel) = job.notify.filter(|_| rows > 0 || job.replace) {
            // Notifications are transactional: listeners hear of the batch once it commits.
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(job.notification(rows))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Written::Committed { rows })
    }
}

/// Streams the job's rows into `target` with binary `COPY`; returns the rows copied.
async fn copy_in(
    connection: &mut sqlx::PgConnection,
    target: &str,
    job: &BatchWrite<'_>,
) -> sqlx::Result<u64> {
    let layout = job.layout;
    let statement = format!(
        "COPY {target} ({}) FROM STDIN (FORMAT binary)",
        layout.column_list()
    );
    let mut copy = connection.copy_in_raw(&statement).await?;
    let mut buffer = BytesMut::with_capacity(COPY_CHUNK_BYTES + 4096);
    write_copy_header(&mut buffer);
    for batch in job.batches {
        let values: Vec<ColumnValues<'_>> = layout
            .columns
            .iter()
            .map(|column| ColumnValues::new(batch, column))
            .collect();
        for row in 0..batch.num_rows() {
            write_copy_row(&mut buffer, &layout.columns, &values, row);
            if buffer.len() >= COPY_CHUNK_BYTES {
                copy.send(buffer.split().freeze()).await?;
            }
        }
    }
    buffer.put_i16(-1);
    copy.send(buffer.freeze()).await?;
    copy.finish().await
}

/// The binary `COPY` signature, flags and header extension length.
pub(super) fn write_copy_header(buffer: &mut BytesMut) {
    buffer.put_slice(b"PGCOPY\n\xff\r\n\0");
    buffer.put_i32(0);
    buffer.put_i32(0);
}

/// One tuple of binary `COPY`: the field count, then each field's length and bytes.
pub(super) fn write_copy_row(
    buffer: &mut BytesMut,
    columns: &[SqlColumn],
    values: &[ColumnValues<'_>],
    row: usize,
) {
    buffer.put_i16(columns.len() as i16);
    for (column, values) in columns.iter().zip(values) {
        write_copy_value(buffer, column.sql_type, values.get(row));
    }
}

/// One field in PostgreSQL's binary format for `sql_type` (big-endian, length-prefixed).
fn write_copy_value(buffer: &mut BytesMut, sql_type: SqlType, value: Value<'_>) {
    match (sql_type, value) {
        (_, Value::Null) => buffer.put_i32(-1),
        (_, Value::Text(text)) => {
            buffer.put_i32(text.len() as i32);
            buffer.put_slice(text.as_bytes());
        }
        (_, Value::Bytes(bytes)) => {
            buffer.put_i32(bytes.len() as i32);
            buffer.put_slice(bytes);
        }
        (SqlType::Real, Value::Float(v)) => {
            buffer.put_i32(4);
            buffer.put_f32(v as f32);
        }
        (_, Value::Float(v)) => {
            buffer.put_i32(8);
            buffer.put_f64(v);
        }
        (SqlType::Integer, Value::Int(v)) => {
            buffer.put_i32(4);
            buffer.put_i32(v as i32);
        }
        (SqlType::SmallInt, Value::Int(v)) => {
            buffer.put_i32(2);
            buffer.put_i16(v as i16);
        }
        (_, Value::Int(v)) => {
            buffer.put_i32(8);
            buffer.put_i64(v);
        }
        (_, Value::Bool(v)) => {
            buffer.put_i32(1);
            buffer.put_u8(u8::from(v));
        }
        (_, Value::TimestampMicros(micros)) => {
            buffer.put_i32(8);
            buffer.put_i64(micros - PG_EPOCH_MICROS);
        }
        (_, Value::Date(days)) => {
            buffer.put_i32(4);
            buffer.put_i32(days - PG_EPOCH_DAYS);
        }
        (_, Value::Decimal(digits, scale)) => write_numeric(buffer, digits, scale),
    }
}

/// `digits × 10^-scale` in `numeric`'s binary form: base-10000 digits with a weight, a sign
/// and the display scale.
pub(super) fn write_numeric(buffer: &mut BytesMut, digits: i128, scale: i8) {
    let (mut magnitude, scale) = if scale < 0 {
        let factor = 10u128.pow(u32::from(scale.unsigned_abs()));
        (digits.unsigned_abs() * factor, 0u32)
    } else {
        (digits.unsigned_abs(), u32::from(scale.unsigned_abs()))
    };
    // Align the fraction to whole base-10000 digits.
    let padding = (4 - scale % 4) % 4;
    magnitude *= 10u128.pow(padding);
    let fraction_groups = (scale + padding) / 4;
    let mut groups = Vec::new();
    while magnitude > 0 {
        groups.push((magnitude % 10_000) as i16);
        magnitude /= 10_000;
    }
    while (groups.len() as u32) < fraction_groups {
        groups.push(0);
    }
    groups.reverse();
    let weight = groups.len() as i16 - fraction_groups as i16 - 1;
    buffer.put_i32(8 + 2 * groups.len() as i32);
    buffer.put_i16(groups.len() as i16);
    buffer.put_i16(weight);
    buffer.put_u16(if digits < 0 { 0x4000 } else { 0 });
    buffer.put_u16(scale as u16);
    for group in groups {
        buffer.put_i16(group);
    }
}
