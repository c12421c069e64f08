//! The relational sink: a query's output into a table, one transaction per batch with its
//! commit row, transient failures retried (see the [module docs](super)).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use async_trait::async_trait;
use futures::future::BoxFuture;
use sluice_engine::{OutputMode, Sink, SinkContext, SluiceError};
use tracing::{debug, warn};

use super::backend::{Backend, BatchWrite, Written};
use super::commits::CommitStatements;
use super::commits::NOTIFY_CHANNEL;
use super::connect::Connect;
use super::error::{RelationalError, describe_error, redact_url};
use super::retry::{RetryPolicy, is_transient};
use super::table::{TableLayout, TableName};

/// What [`RelationalSink::open`] settled.
struct Opened {
    backend: Box<dyn Backend>,
    layout: TableLayout,
    query_id: String,
    mode: OutputMode,
    /// The last batch the table had committed when the sink opened, until the first batch
    /// checks the checkpoint agrees with it.
    committed_at_open: Option<i64>,
}

/// A sink into a PostgreSQL or SQLite table; see the [module docs](super).
///
/// ```no_run
/// # use sluice_connectors::relational::RelationalSink;
/// let sink = RelationalSink::new("postgres://sluice@localhost/sluice", "candles_1m")?
///     .primary_key(["symbol", "window_start"])
///     .index(["symbol"]);
/// # Ok::<(), sluice_connectors::relational::RelationalError>(())
/// ```
pub struct RelationalSink {
    database: String,
    password: Option<String>,
    table: TableName,
    connect: Connect,
    primary_key: Option<Vec<String>>,
    indexes: Vec<Vec<String>>,
    create_table: bool,
    commit_name: Option<String>,
    notify: Option<String>,
    retry: RetryPolicy,
    /// Transient failures retried during the current (or last) batch.
    batch_retries: AtomicU64,
    opened: Option<Opened>,
}

impl RelationalSink {
    /// A sink writing `table` (`name` or `schema.name`) of the database at `url`. Nothing
    /// connects until the query starts.
    pub fn new(url: &str, table: &str) -> Result<Self, RelationalError> {
        let database = redact_url(url);
        let password = url::Url::parse(url)
            .ok()
            .and_then(|u| u.password().map(str::to_string));
        let connect = Connect::parse(url, &database)?;
        Ok(Self {
            database,
            password,
            table: TableName::parse(table)?,
            connect,
            primary_key: None,
            indexes: Vec::new(),
            create_table: true,
            commit_name: None,
            notify: Some(NOTIFY_CHANNEL.to_string()),
            retry: RetryPolicy::default(),
            batch_retries: AtomicU64::new(0),
            opened: None,
        })
    }

    /// The key to upsert on (update mode) and the table's primary key when the sink creates
    /// it, instead of the query's group keys.
    pub fn primary_key<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.primary_key = Some(columns.into_iter().map(Into::into).collect());
        self
    }

    /// An index to create (if missing) on these table columns; may be called several times.
    pub fn index<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.indexes
            .push(columns.into_iter().map(Into::into).collect());
        self
    }

    /// Whether to create the table when it is missing (default `true`); with `false`, a
    /// missing table is an error at start.
    pub fn create_table(mut self, create: bool) -> Self {
        self.create_table = create;
        self
    }

    /// The sink's name in the commit table (default: the table name). Two sinks of one query
    /// writing the same table need different names.
    pub fn commit_name(mut self, name: impl Into<String>) -> Self {
        self.commit_name = Some(name.into());
        self
    }

    /// The PostgreSQL channel notified after each committed batch (default
    /// [`NOTIFY_CHANNEL`]); `None` turns notifications off.
    pub fn notify_channel(mut self, channel: Option<String>) -> Self {
        self.notify = channel;
        self
    }

    /// How transient failures are retried.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    fn sink_name(&self) -> String {
        self.commit_name
            .clone()
            .unwrap_or_else(|| self.table.to_string())
    }

    /// Runs `operation` until it succeeds, retrying transient failures per the policy.
    async fn with_retries<'a, T>(
        &self,
        what: &str,
        mut operation: impl FnMut() -> BoxFuture<'a, sqlx::Result<T>>,
    ) -> Result<T, RelationalError> {
        let mut retry = 0;
        loop {
            match operation().await {
                Ok(value) => return Ok(value),
                Err(error) if is_transient(&error) && retry < self.retry.max_retries => {
                    let delay = self.retry.delay(retry);
                    warn!(
                        database = %self.database,
                        table = %self.table,
                        "{what} failed ({}); retry {} of {} in {delay:?}",
                        self.describe_error(&error),
                        retry + 1,
                        self.retry.max_retries
                    );
                    tokio::time::sleep(delay).await;
                    retry += 1;
                    self.batch_retries.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    return Err(RelationalError::Database {
                        database: self.database.clone(),
                        operation: what.to_string(),
                        attempts: retry + 1,
                        message: self.describe_error(&error),
                    });
                }
            }
        }
    }

    /// The database's message with the fields that locate the problem, password masked.
    fn describe_error(&self, error: &sqlx::Error) -> String {
        describe_error(error, self.password.as_deref())
    }

    async fn setup(
        &self,
        backend: &dyn Backend,
        layout: &TableLayout,
        upsert: bool,
    ) -> Result<(), RelationalError> {
        let dialect = backend.dialect();
        let commits = CommitStatements::new(dialect).create;
        self.with_retries("creating the commit table", || {
            backend.execute_ddl(&commits)
        })
        .await?;
        let existing = self
            .with_retries("reading the table's columns", || {
                backend.describe(&layout.table)
            })
            .await?;
        match existing {
            Some((columns, unique_keys)) => {
                layout.validate(dialect, &columns, &unique_keys, upsert)?;
            }
            None if self.create_table => {
                let create = layout.create_table(dialect);
                self.with_retries("creating the table", || backend.execute_ddl(&create))
                    .await?;
            }
            None => {
                return Err(RelationalError::Schema {
                    table: layout.table.to_string(),
                    message: "the table does not exist and create_table is off".into(),
                });
            }
        }
        for columns in &self.indexes {
            let create = layout.create_index(columns)?;
            self.with_retries("creating an index", || backend.execute_ddl(&create))
                .await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for RelationalSink {
    fn description(&self) -> String {
        format!("RelationalSink[{} table={}]", self.database, self.table)
    }

    async fn open(&mut self, context: &SinkContext) -> sluice_engine::Result<()> {
        let sink = self.description();
        let to_engine = |e: RelationalError| SluiceError::SinkOpen {
            sink: sink.clone(),
            message: e.to_string(),
        };
        let key = match (&self.primary_key, &context.key_columns) {
            (Some(key), _) => key.clone(),
            (None, Some(key)) => key.clone(),
            (None, None) => Vec::new(),
        };
        let mode = context.output_mode;
        if mode == OutputMode::Update && key.is_empty() {
            return Err(to_engine(RelationalError::Config(format!(
                "table {}: update mode upserts on a key, and the query's group keys cannot be \
                 read from its output; set primary_key",
                self.table
            ))));
        }
        let layout = TableLayout::from_schema(self.table.clone(), &context.schema, &key)
            .map_err(to_engine)?;
        let backend = self.connect.backend(self.retry.connect_timeout);
        self.setup(backend.as_ref(), &layout, mode == OutputMode::Update)
            .await
            .map_err(to_engine)?;
        let name = self.sink_name();
        let last = self
            .with_retries("reading the commit table", || {
                backend.last_committed(&context.query_id, &name)
            })
            .await
            .map_err(to_engine)?;
        debug!(table = %self.table, sink = name, last_committed_batch = last, "relational sink opened");
        self.opened = Some(Opened {
            backend,
            layout,
            query_id: context.query_id.clone(),
            mode,
            committed_at_open: Some(last),
        });
        Ok(())
    }

    /// `numRetries`: the transient failures retried while writing the last batch.
    fn metrics(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(
            "numRetries".to_string(),
            self.batch_retries.load(Ordering::Relaxed).to_string(),
        )])
    }

    async fn add_batch(
        &mut self,
        batch_id: u64,
        batches: &[RecordBatch],
    ) -> sluice_engine::Result<()> {
        self.batch_retries.store(0, Ordering::Relaxed);
        let description = self.description();
        let failed = |message: String| SluiceError::Sink {
            sink: description.clone(),
            batch_id,
            message,
        };
        let first = self
            .opened
            .as_mut()
            .and_then(|o| o.committed_at_open.take());
        if let Some(committed) = first {
            check_not_ahead(committed, batch_id).map_err(&failed)?;
        }
        let Some(opened) = &self.opened else {
            return Err(failed("the sink was not opened".into()));
        };
        let sink = self.sink_name();
        let job = BatchWrite {
            query_id: &opened.query_id,
            sink: &sink,
            batch_id: i64::try_from(batch_id).map_err(|_| failed("batch id overflow".into()))?,
            batches,
            layout: &opened.layout,
            upsert: opened.mode == OutputMode::Update,
            replace: opened.mode == OutputMode::Complete,
            notify: self.notify.as_deref(),
        };
        let written = self
            .with_retries("writing the batch", || opened.backend.write(&job))
            .await
            .map_err(|e| failed(e.to_string()))?;
        match written {
            Written::Skipped => debug!(
                table = %self.table,
                batch_id,
                "batch already committed to the table; skipped"
            ),
            Written::Committed { rows } => {
                debug!(table = %self.table, batch_id, rows, input_rows = job.rows(), "batch committed")
            }
        }
        Ok(())
    }
}

/// Checks that the table's last committed batch (`committed`, -1 for none) is one the
/// checkpoint can be at when it runs batch `batch_id` first: the batch before (the usual
/// case) or that batch itself (the sink committed it, then the process died before the
/// checkpoint's commit). A table further ahead has commits the checkpoint never made: an older
/// checkpoint, a restored backup or an edited `sluice_commits` row. Writing on would skip every
/// batch up to the table's, silently, so the sink refuses.
pub(crate) fn check_not_ahead(committed: i64, batch_id: u64) -> Result<(), String> {
    match u64::try_from(committed) {
        Ok(committed) if committed > batch_id => Err(format!(
            "the table has batch {committed} committed for this query, but the checkpoint is at \
             batch {batch_id}: the checkpoint is older than the table (restored, copied, or \
             sluice_commits edited), and writing on would skip batches {batch_id}..={committed} \
             silently; restore the matching checkpoint, or start a new one (another checkpoint \
             location) with a fresh table"
        )),
        _ => Ok(()),
    }
}
