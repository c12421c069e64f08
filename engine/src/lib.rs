//! # Sluice engine
//!
//! A stream processing runtime on Apache Arrow and Apache DataFusion with the semantics of
//! Spark Structured Streaming's micro-batch execution: replayable [`Source`]s read between
//! offsets, a write-ahead offset log and a commit log in a [`Checkpoint`], DataFusion SQL
//! planned once and run on every micro-batch, and idempotent [`Sink`]s, which together give
//! exactly-once output across crashes and restarts.
//!
//! ```
//! use std::sync::Arc;
//! use arrow::array::{Float64Array, RecordBatch, StringArray};
//! use arrow::datatypes::{DataType, Field, Schema};
//! use sluice_engine::{MemorySink, MemorySource, StreamingQueryBuilder};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let schema = Arc::new(Schema::new(vec![
//!     Field::new("symbol", DataType::Utf8, true),
//!     Field::new("high_price", DataType::Float64, true),
//!     Field::new("low_price", DataType::Float64, true),
//! ]));
//! let ticks = MemorySource::new("ticks", schema.clone());
//! let output = MemorySink::new();
//! let query = StreamingQueryBuilder::new()
//!     .source("ticks", ticks.clone())
//!     .sql("SELECT symbol, high_price - low_price AS spread FROM ticks")
//!     .sink(output.clone())
//!     .start()
//!     .await?;
//!
//! ticks.add_batch(RecordBatch::try_new(schema, vec![
//!     Arc::new(StringArray::from(vec!["BTCUSDT"])),
//!     Arc::new(Float64Array::from(vec![66000.0])),
//!     Arc::new(Float64Array::from(vec![63000.0])),
//! ])?)?;
//! query.process_all_available().await?;
//! query.stop().await?;
//!
//! let rows = output.all_rows();
//! assert_eq!(rows[0].num_rows(), 1);
//! # Ok::<_, sluice_engine::SluiceError>(()) }).unwrap();
//! ```
//!
//! Modules by concept: [`source`] and [`sink`] (the traits at the seams and the built-in
//! connectors), [`json`] (JSON → Arrow with Spark's malformed-record modes), [`plan`] (SQL
//! planned once), [`checkpoint`] (offset and commit logs, recovery), [`query`] (the loop and the
//! query handle), [`trigger`], [`progress`].

pub mod aggregate;
pub mod checkpoint;
pub mod connector;
pub mod dedup;
pub mod error;
pub mod functions;
pub mod json;
pub mod offset;
pub mod output_mode;
pub mod plan;
pub mod progress;
pub mod query;
pub mod sink;
pub mod source;
pub mod state;
pub mod storage;
pub mod trigger;
pub mod watermark;
pub mod window;

pub use checkpoint::Checkpoint;
pub use error::{Result, SluiceError};
pub use json::{JsonDecoder, JsonOptions, MalformedStats, ParseMode};
pub use offset::Offset;
pub use output_mode::OutputMode;
pub use progress::StreamingQueryProgress;
pub use query::{MicroBatchExecution, QueryStatus, StreamingQuery, StreamingQueryBuilder};
pub use sink::{ConsoleSink, FileFormat, FileSink, MemorySink, Sink, SinkContext};
pub use source::{FileSource, MemorySource, ReadLimit, Source, SourceBatch};
pub use trigger::Trigger;
pub use watermark::WatermarkPolicy;
