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
//! table `sluice_commits(query_id, sink, batch_id, committed_at)` ([`COMMITS_TABLE`]), which
//! the transaction locks first. A batch whose id is not above the committed one is skipped,
//! so a batch replayed after a crash — whether the crash came before or after the database
//! commit — is stored once.
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
//!
//! # Modules
//!
//! [`RelationalSink`] (`sink`) drives a `Backend` (`backend`) — `postgres` or `sqlite`, picked
//! by the URL (`connect`) — through [`table`] (the target table from the query's schema),
//! `commits` (the commit table's statements in each dialect), `values` (typed column access),
//! `retry` ([`RetryPolicy`]) and `error` ([`RelationalError`]); `spec` declares the sink to
//! pipeline files ([`POSTGRES_SINK`], [`SQLITE_SINK`]).

mod backend;
mod commits;
mod connect;
mod error;
pub(crate) mod pool;
mod postgres;
mod retry;
mod sink;
mod spec;
mod sqlite;
pub(crate) mod table;
mod values;

pub use self::commits::{COMMITS_TABLE, NOTIFY_CHANNEL};
pub use self::connect::DEFAULT_DATABASE_URL;
pub use self::error::{RelationalError, redact_url};
pub use self::retry::RetryPolicy;
pub use self::sink::RelationalSink;
pub use self::spec::{POSTGRES_SINK, SQLITE_SINK};
pub use self::sqlite::TIMESTAMP_FORMAT as SQLITE_TIMESTAMP_FORMAT;
