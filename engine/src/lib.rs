//! # Sluice engine
//!
//! A stream processing runtime on Apache Arrow and Apache DataFusion with the semantics of
//! Spark Structured Streaming's micro-batch execution: replayable [`Source`]s read between
//! offsets, a write-ahead offset log and a commit log in a checkpoint, DataFusion SQL
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
//! Modules by concept, in the order a micro-batch meets them: [`source`] and [`sink`] (the
//! traits at the seams and the built-in connectors), [`json`] (JSON → Arrow with Spark's
//! malformed-record modes), [`connector`] (how a connector declares its options for pipeline
//! files), the query (builder, recovery, the micro-batch loop in Spark's
//! phases, progress reports, handle), the plan (SQL planned once, run on every batch), the
//! stateful operators (aggregation and deduplication, one `StatefulOperator` contract for
//! their checkpointed state), the watermark rules, the checkpoint (offset and commit logs), and
//! [`progress`] (the reports' types). What Sluice does batch by batch, and where it differs
//! from Spark, is written down in the repository's `docs/semantics.md`.

pub mod connector;
pub mod json;
pub mod listener;
pub mod progress;
pub mod sink;
pub mod source;

mod checkpoint;
mod distribution;
mod error;
mod fan_out;
mod functions;
mod location;
mod offset;
mod operator;
mod output_mode;
mod plan;
mod query;
mod slot;
mod trigger;
mod watermark;
mod window;

pub use distribution::PartitionedBy;
pub use error::{Result, SluiceError};
pub use functions::register_spark_aggregates;
pub use json::{JsonDecoder, JsonOptions, MalformedStats, ParseMode};
pub use listener::{QueryIdentity, QueryListener};
pub use location::Location;
pub use offset::Offset;
pub use output_mode::OutputMode;
pub use plan::streaming_session;
pub use progress::{StateOperatorProgress, StreamingQueryProgress};
pub use query::{
    MAX_PARALLELISM, MicroBatchExecution, QueryStatus, StreamingQuery, StreamingQueryBuilder,
};
pub use sink::{ConsoleSink, FileFormat, FileSink, MemorySink, Sink, SinkContext};
pub use source::{ComputedColumns, FileSource, MemorySource, ReadLimit, Source, SourceBatch};
pub use trigger::Trigger;
pub use watermark::WatermarkPolicy;
pub use window::parse_duration;

/// Engine internals exposed for the workspace's own integration tests and benchmarks: the
/// pure rules (recovery decision, retention, entry format, watermark tracking, window
/// arithmetic, output-mode checks) tested without disks or brokers, and the checkpoint type.
///
/// Not a stable API: anything here may change in any release. Applications use the items at
/// the crate root.
#[doc(hidden)]
pub mod internals {
    pub use crate::checkpoint::{
        Checkpoint, CommitEntry, OffsetEntry, Recovery, SourceRange, decode_entry, encode_entry,
        ids_to_purge, plan_recovery,
    };
    pub use crate::location::Location;
    pub use crate::output_mode::{QueryShape, check_output_mode};
    pub use crate::watermark::{BatchWatermarks, EventTimeStats, WatermarkTracker};
    pub use crate::window::WindowSpec;
}
