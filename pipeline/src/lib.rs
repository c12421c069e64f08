//! # Sluice pipeline files
//!
//! A whole streaming job in one SQL file, so that a standard job needs no Rust:
//!
//! ```sql
//! SET trigger = '1 second';
//! SET checkpoint = '${CHECKPOINT_DIR:-data/checkpoints}';
//!
//! CREATE TABLE ticks (
//!     symbol VARCHAR,
//!     close_price DOUBLE,
//!     "timestamp" BIGINT,
//!     ts AS to_timestamp_millis("timestamp"),          -- computed column
//!     WATERMARK FOR ts AS ts - INTERVAL '10' SECOND
//! ) WITH (connector = 'kafka', topic = 'projet-bdcc', format = 'json');
//!
//! CREATE TABLE candles WITH (connector = 'postgres', url = '${DATABASE_URL}', output_mode = 'update');
//!
//! INSERT INTO candles
//! SELECT symbol, window(ts, '1 minute') AS window, max_by(close_price, ts) AS close
//! FROM ticks GROUP BY symbol, window(ts, '1 minute');
//! ```
//!
//! - `CREATE TABLE name (columns) WITH (options)` declares a **source** (a table the queries
//!   read: `kafka`, `binance`, `websocket`, `file`, `memory`) or, when an `INSERT` writes it,
//!   a **sink** (`postgres`, `sqlite`, `kafka`, `file`, `console`, `memory`; no column list:
//!   its columns are the query's). Sources list their physical columns, computed columns
//!   (`name AS expr`) and at most one `WATERMARK FOR col AS col - INTERVAL 'n' unit`.
//! - `INSERT INTO sink <query>` is one streaming query; several `INSERT`s are several queries,
//!   each with its own checkpoint `<checkpoint>/<query name>` (the name defaults to the sink's).
//!   A live stream (`binance`, `websocket`) is read once for all of them (one shared
//!   connection per URL); Kafka and files are read by each query at its own offsets, as Spark
//!   does, so that each query's exactly-once output does not depend on the others.
//! - `CREATE VIEW name AS <query>` names a query that `INSERT`s and later views read as a
//!   table; each query reading it expands it into its own plan (see
//!   `StreamingQueryBuilder::view`).
//! - `SET key = value` sets `trigger`, `checkpoint`, `query_name`, `foreach_batch`,
//!   `watermark_policy`, `retained_batches`, `parallelism` for the `INSERT`s after it.
//! - `${VAR}` and `${VAR:-default}` are replaced from [`Variables`] (see [`vars`]).
//! - `INCLUDE 'file.sql'` reads another file's statements as if they were written in its
//!   place (see [`mod@include`]): the path is relative to the including file's directory, and an
//!   error in an included file names that file, its line and column, and the `INCLUDE`s that
//!   led there.
//!
//! Everything is validated when the file loads ([`Pipeline::load`]): an unknown option, a
//! value of the wrong type, an unknown setting, an unset variable, an unsupported output mode
//! is an error naming the line and column. The README's SQL reference lists every option.
//!
//! ```
//! use sluice_pipeline::{Pipeline, Variables};
//!
//! let error = Pipeline::parse(
//!     "job.sql",
//!     "CREATE TABLE t (x BIGINT) WITH (connector = 'memory', colour = 'red');\n\
//!      CREATE TABLE out WITH (connector = 'memory');\n\
//!      INSERT INTO out SELECT x FROM t;",
//!     &Variables::none(),
//! )
//! .err()
//! .unwrap();
//! assert!(error.to_string().starts_with("job.sql:1:55: unknown option 'colour'"));
//! ```

pub mod connector;
pub mod error;
pub mod include;
pub mod options;
pub mod parse;
pub mod pipeline;
pub mod types;
pub mod vars;
pub mod worker;

pub use error::{PipelineError, Position, Result, Site};
pub use pipeline::{DEFAULT_CHECKPOINT_DIR, Distribution, HttpListen, Pipeline, Variables};
pub use worker::Worker;
