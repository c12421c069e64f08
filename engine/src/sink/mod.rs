//! Streaming sinks: the `Sink` trait and the built-in memory, file and console sinks.
//!
//! The engine calls [`Sink::add_batch`] once per micro-batch, and again with the same id and
//! the same rows when a batch is re-run after a crash (the batch was written ahead to the
//! offset log but its commit was not). A sink gives exactly-once output by making `add_batch`
//! idempotent per batch id: skip an id it already stored, or overwrite it with identical data.

mod console;
mod file;
mod memory;

pub use console::ConsoleSink;
pub use file::{FileFormat, FileSink};
pub use memory::MemorySink;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;

use crate::error::Result;
use crate::output_mode::OutputMode;

/// What a sink learns about its query before the first batch.
#[derive(Debug, Clone)]
pub struct SinkContext {
    /// The query's stable id (kept across restarts in the checkpoint's `metadata`).
    pub query_id: String,
    /// The query's name, if it has one.
    pub query_name: Option<String>,
    /// The schema of every batch the sink will receive.
    pub schema: SchemaRef,
    /// How the query writes its result: new rows only, updated rows, or the whole table.
    pub output_mode: OutputMode,
    /// The output columns that identify a row of the result (the group keys of a stateful
    /// aggregation, window included), when the engine can tell; an update-mode sink upserts
    /// on them. `None` for stateless queries.
    pub key_columns: Option<Vec<String>>,
    /// The query's parallelism: how many threads the sink may use to encode a batch.
    pub parallelism: usize,
}

/// A destination for the output of a streaming query.
#[async_trait]
pub trait Sink: Send + 'static {
    /// Short description for progress reports (`sink.description`).
    fn description(&self) -> String;

    /// Called once when the query starts, before any batch; may create tables or files.
    async fn open(&mut self, _context: &SinkContext) -> Result<()> {
        Ok(())
    }

    /// Writes the output of micro-batch `batch_id`. Must be idempotent per `batch_id`.
    async fn add_batch(&mut self, batch_id: u64, batches: &[RecordBatch]) -> Result<()>;

    /// The sink's own metrics of the last [`Sink::add_batch`] (Spark's `SinkProgress.metrics`),
    /// e.g. the retries it took. Empty by default.
    fn metrics(&self) -> std::collections::BTreeMap<String, String> {
        std::collections::BTreeMap::new()
    }
}

/// A boxed sink is a sink, so sinks chosen at run time (e.g. from a pipeline file's
/// `connector` option) plug into [`crate::StreamingQueryBuilder::sink`].
#[async_trait]
impl Sink for Box<dyn Sink> {
    fn description(&self) -> String {
        self.as_ref().description()
    }

    async fn open(&mut self, context: &SinkContext) -> Result<()> {
        self.as_mut().open(context).await
    }

    async fn add_batch(&mut self, batch_id: u64, batches: &[RecordBatch]) -> Result<()> {
        self.as_mut().add_batch(batch_id, batches).await
    }

    fn metrics(&self) -> std::collections::BTreeMap<String, String> {
        self.as_ref().metrics()
    }
}
