//! The relational sink: a streaming query's output into a PostgreSQL or SQLite table, with
//! exactly-once batches.
//!
//! One implementation, two back ends chosen by URL: `postgres://…` (or `postgresql://…`) for
//! production, `sqlite://path` for the embedded default ([`DEFAULT_DATABASE_URL`]), which needs
//! no server.
//!
//! # What each output mode does
//!
//! | mode     | PostgreSQL                                        | SQLite                          |
//! |----------|---------------------------------------------------|---------------------------------|
//! | append   | binary `COPY … FROM STDIN`                        | multi-row prepared `INSERT`     |
//! | update   | `COPY` into a temporary table, then `INSERT … SELECT … ON CONFLICT (key) DO UPDATE` | `INSERT … ON CONFLICT (key) DO UPDATE` |
//! | complete | `DELETE` then `COPY`, in one transaction          | `DELETE` then `INSERT`          |
//!
//! The key of an upsert is the `primary_key` given to the sink, else the query's group keys
//! as the engine reports them ([`SinkContext::key_columns`]); a window key stands for its
//! start column (`window_start`).
//!
//! # Exactly-once
//!
//! Each batch is written in one transaction together with an update of its row in the commit
//! table `sluice_commits(query_id, sink, batch_id, committed_at)`, which the transaction locks
//! first. A batch whose id is not above the committed one is skipped, so a batch replayed after
//! a crash — whether the crash came before or after the database commit — is stored once.
//!
//! # Failures
//!
//! Connection errors (refused, dropped, server shutting down), serialization failures and
//! SQLite's busy errors are retried with exponential backoff; the transaction is re-run from
//! the start, which is safe thanks to the commit table. When the retries run out, or on any
//! other error (a constraint violation, a type error), `add_batch` fails: the engine stops the
//! query without committing the batch, and the error names the table, the batch and, where
//! the database says, the column. Passwords are masked in descriptions, logs and errors.
//!
//! # Live readers
//!
//! On PostgreSQL each committed batch that changed the table sends `NOTIFY sluice_batches`
//! with a JSON payload `{"table", "sink", "query_id", "batch_id", "rows"}` (delivered on
//! commit). SQLite readers poll `sluice_commits.committed_at`.

mod postgres;
mod sqlite;
pub mod table;
mod values;

use std::str::FromStr;
use std::time::Duration;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use futures::future::BoxFuture;
use sluice_engine::{OutputMode, Sink, SinkContext, SluiceError};
use sqlx::postgres::{PgConnectOptions, PgDatabaseError};
use sqlx::sqlite::SqliteConnectOptions;
use tracing::{debug, warn};

use self::postgres::PostgresBackend;
use self::sqlite::SqliteBackend;
pub use self::sqlite::TIMESTAMP_FORMAT as SQLITE_TIMESTAMP_FORMAT;
use self::table::{Dialect, ExistingColumn, TableLayout, TableName};

/// The database used when none is configured: a SQLite file under `./data/`.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/sluice.db";

/// The PostgreSQL channel notified after each committed batch.
pub const NOTIFY_CHANNEL: &str = "sluice_batches";

/// The table that records the last committed batch of each query and sink.
pub const COMMITS_TABLE: &str = "sluice_commits";

/// Errors of the relational sink.
#[derive(Debug, thiserror::Error)]
pub enum RelationalError {
    /// An option, URL or the query's shape does not fit the sink.
    #[error("relational sink: {0}")]
    Config(String),

    /// The existing table cannot take the query's rows.
    #[error("table {table} does not match the query: {message}")]
    Schema {
        /// The table.
        table: String,
        /// What does not match, naming the column.
        message: String,
    },

    /// The database refused or failed an operation (after retries, when retrying made sense).
    #[error("{database}: {operation} failed after {attempts} attempt(s): {message}")]
    Database {
        /// The database URL, password masked.
        database: String,
        /// What the sink was doing.
        operation: String,
        /// How many times it tried.
        attempts: u32,
        /// The database's message, with its column, constraint and detail when given.
        message: String,
    },
}

/// How a transient failure is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first delay; each retry doubles it, up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest delay between attempts.
    pub max_backoff: Duration,
    /// How long one attempt waits for a connection (a refused or unreachable server fails
    /// the attempt after this).
    pub connect_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 6 retries from 200 ms, doubling up to 5 s, 5 s to connect: an outage of 11 to 46 s
    /// (refused or unreachable) is ridden out.
    fn default() -> Self {
        Self {
            max_retries: 6,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0-based).
    pub fn delay(&self, retry: u32) -> Duration {
        self.initial_backoff
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_backoff)
    }
}

/// Whether an error may go away if the same transaction is tried again: the connection was
/// refused, dropped or shut down (SQLSTATE class 08, 57P01–57P03), too many connections
/// (53300), a serialization failure or deadlock (40001, 40P01), SQLite busy or locked.
pub fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"
                        // SQLITE_BUSY, SQLITE_LOCKED and their extended codes
                        | "5" | "6" | "261" | "262" | "517"
                )
        }),
        _ => false,
    }
}

/// A database URL with its password replaced by `***`, for descriptions, logs and errors.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // Setting a password only fails on URLs that cannot have one.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_string(),
        Err(_) => "<unparseable database URL>".to_string(),
    }
}

/// One batch for a back end to write in one transaction.
struct BatchWrite<'a> {
    query_id: &'a str,
    sink: &'a str,
    batch_id: i64,
    batches: &'a [RecordBatch],
    layout: &'a TableLayout,
    /// Update mode: upsert on the layout's key.
    upsert: bool,
    /// Complete mode: the batch replaces the table's content.
    replace: bool,
    /// The channel to notify on commit (PostgreSQL).
    notify: Option<&'a str>,
}

impl BatchWrite<'_> {
    /// The JSON payload of the commit notification.
    fn notification(&self, rows: u64) -> String {
        serde_json::json!({
            "table": self.layout.table.to_string(),
            "sink": self.sink,
            "query_id": self.query_id,
            "batch_id": self.batch_id,
            "rows": rows,
        })
        .to_string()
    }

    fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// What happened to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    /// Its id was already committed: nothing written.
    Skipped,
    /// Written and committed; the rows inserted or updated.
    Committed { rows: u64 },
}

/// The seam between the sink's logic and a database.
#[async_trait]
trait Backend: Send + Sync {
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

/// How to reach the database, parsed from the URL.
enum Connect {
    Postgres(PgConnectOptions),
    Sqlite(SqliteConnectOptions),
}

impl Connect {
    /// A back end that connects on first use, waiting at most `timeout` for a connection.
    fn backend(&self, timeout: Duration) -> Box<dyn Backend> {
        match self {
            Self::Postgres(options) => Box::new(PostgresBackend::new(options.clone(), timeout)),
            Self::Sqlite(options) => Box::new(SqliteBackend::new(options.clone(), timeout)),
        }
    }
}

/// What [`RelationalSink::open`] settled.
struct Opened {
    backend: Box<dyn Backend>,
    layout: TableLayout,
    query_id: String,
    mode: OutputMode,
}

/// A sink into a PostgreSQL or SQLite table; see the [module docs](self).
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
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        let invalid = |e: sqlx::Error| {
            RelationalError::Config(format!("invalid database URL {database}: {e}"))
        };
        let connect = match scheme {
            Some("postgres" | "postgresql") => Connect::Postgres(
                PgConnectOptions::from_str(url)
                    .map_err(invalid)?
                    .application_name("sluice"),
            ),
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
                Connect::Sqlite(options)
            }
            _ => {
                return Err(RelationalError::Config(format!(
                    "unsupported database URL {database}: expected postgres://, postgresql:// \
                     or sqlite://"
                )));
            }
        };
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
        let mut message = match error.as_database_error() {
            Some(db) => {
                let mut message = db.message().to_string();
                if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
                    message += &format!(" (SQLSTATE {}", pg.code());
                    for (label, value) in [
                        ("column", pg.column()),
                        ("constraint", pg.constraint()),
                        ("detail", pg.detail()),
                        ("where", pg.r#where()),
                    ] {
                        if let Some(value) = value {
                            message += &format!(", {label}: {value}");
                        }
                    }
                    message += ")";
                } else if let Some(code) = db.code() {
                    message += &format!(" (code {code})");
                }
                message
            }
            None => error.to_string(),
        };
        if let Some(password) = self.password.as_deref().filter(|p| !p.is_empty()) {
            message = message.replace(password, "***");
        }
        message
    }

    async fn setup(
        &self,
        backend: &dyn Backend,
        layout: &TableLayout,
        upsert: bool,
    ) -> Result<(), RelationalError> {
        let dialect = backend.dialect();
        let commits = match dialect {
            Dialect::Postgres => format!(
                "CREATE TABLE IF NOT EXISTS {COMMITS_TABLE} (query_id text NOT NULL, \
                 sink text NOT NULL, batch_id bigint NOT NULL, \
                 committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (query_id, sink))"
            ),
            Dialect::Sqlite => format!(
                "CREATE TABLE IF NOT EXISTS {COMMITS_TABLE} (query_id TEXT NOT NULL, \
                 sink TEXT NOT NULL, batch_id INTEGER NOT NULL, \
                 committed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')), \
                 PRIMARY KEY (query_id, sink))"
            ),
        };
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
        });
        Ok(())
    }

    async fn add_batch(
        &mut self,
        batch_id: u64,
        batches: &[RecordBatch],
    ) -> sluice_engine::Result<()> {
        let failed = |message: String| SluiceError::Sink {
            sink: self.description(),
            batch_id,
            message,
        };
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
