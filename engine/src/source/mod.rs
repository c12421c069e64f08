//! Streaming sources: the `Source` trait, the built-in memory and file sources, and the
//! computed-columns wrapper.
//!
//! The contract is Spark's `MicroBatchStream`: the engine asks a source for the latest offset it
//! can serve (bounded by a read limit), writes the chosen offsets ahead to the checkpoint, then
//! asks for exactly the data between two offsets, and finally tells the source what is
//! committed. Because a batch is always read by its `(start, end]` offsets, a batch re-run after
//! a crash reads the same data: sources must be *replayable* for exactly-once output.

mod computed;
mod file;
mod memory;

pub use computed::ComputedColumns;
pub use file::FileSource;
pub use memory::MemorySource;

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;

use crate::error::Result;
use crate::json::MalformedStats;
use crate::offset::Offset;

/// How much a source may admit into one micro-batch (Spark's `ReadLimit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadLimit {
    /// Everything available.
    #[default]
    AllAvailable,
    /// At most this many rows (or offsets, for partitioned logs such as Kafka).
    MaxRows(u64),
    /// At most this many files.
    MaxFiles(u64),
}

/// The data of one micro-batch read from a source.
#[derive(Debug, Default)]
pub struct SourceBatch {
    /// Rows in the source's schema, in offset order.
    pub batches: Vec<RecordBatch>,
    /// Records that could not be decoded (counted whatever the parse mode).
    pub malformed: MalformedStats,
}

/// A replayable streaming source.
///
/// Offsets are opaque JSON ([`Offset`]) owned by the source. The engine guarantees the call
/// order `initial_offset` → (`latest_offset` → `get_batch` → `commit`)*, and after a restart
/// calls `get_batch` again with the offsets it logged, so `get_batch(start, end)` must return the
/// same rows every time it is called with the same offsets.
#[async_trait]
pub trait Source: Send + 'static {
    /// Short description for progress reports (`sources[].description`).
    fn description(&self) -> String;

    /// The schema of every batch returned by [`Source::get_batch`].
    fn schema(&self) -> SchemaRef;

    /// The query's parallelism, given once when the query is built, before any offset is
    /// asked for: how many threads the source may use to read and decode a batch. Ignored by
    /// default.
    fn set_parallelism(&mut self, _threads: usize) {}

    /// The offset a brand-new query starts from (nothing read yet). Called once per new
    /// query; a restarted query resumes from its checkpoint instead.
    async fn initial_offset(&mut self) -> Result<Offset>;

    /// The read limit used for each trigger (from the source's options).
    fn default_read_limit(&self) -> ReadLimit {
        ReadLimit::AllAvailable
    }

    /// The furthest offset after `start` that this trigger may read, within `limit`. Returns
    /// `start` itself when there is nothing new.
    async fn latest_offset(&mut self, start: &Offset, limit: ReadLimit) -> Result<Offset>;

    /// The rows in `(start, end]`.
    async fn get_batch(&mut self, start: &Offset, end: &Offset) -> Result<SourceBatch>;

    /// Everything up to `end` is committed and will never be asked for again.
    async fn commit(&mut self, _end: &Offset) -> Result<()> {
        Ok(())
    }

    /// For the available-now trigger: fix the data available now as the end of the run, so
    /// later `latest_offset` calls never go beyond it.
    async fn prepare_for_available_now(&mut self) -> Result<()>;

    /// After [`Source::prepare_for_available_now`]: how much of the data fixed then remains
    /// after `start`, in the source's own unit (rows, messages, files), if the source can
    /// tell; shown as the progress of bounded runs. `None` by default.
    fn backlog(&self, _start: &Offset) -> Option<u64> {
        None
    }

    /// The source's own metrics for a trigger whose batch ends at `end` (Spark's
    /// `ReportsSourceMetrics`), reported as `sources[].metrics` after
    /// [`Source::latest_offset`]: e.g. how far `end` is behind the latest data. Empty by
    /// default.
    fn metrics(&self, _end: &Offset) -> BTreeMap<String, String> {
        BTreeMap::new()
    }
}

/// A boxed source is a source, so sources chosen at run time (e.g. from a pipeline file's
/// `connector` option) plug into [`crate::StreamingQueryBuilder::source`] and
/// [`ComputedColumns`].
#[async_trait]
impl Source for Box<dyn Source> {
    fn description(&self) -> String {
        self.as_ref().description()
    }

    fn schema(&self) -> SchemaRef {
        self.as_ref().schema()
    }

    fn set_parallelism(&mut self, threads: usize) {
        self.as_mut().set_parallelism(threads);
    }

    async fn initial_offset(&mut self) -> Result<Offset> {
        self.as_mut().initial_offset().await
    }

    fn default_read_limit(&self) -> ReadLimit {
        self.as_ref().default_read_limit()
    }

    async fn latest_offset(&mut self, start: &Offset, limit: ReadLimit) -> Result<Offset> {
        self.as_mut().latest_offset(start, limit).await
    }

    async fn get_batch(&mut self, start: &Offset, end: &Offset) -> Result<SourceBatch> {
        self.as_mut().get_batch(start, end).await
    }

    async fn commit(&mut self, end: &Offset) -> Result<()> {
        self.as_mut().commit(end).await
    }

    async fn prepare_for_available_now(&mut self) -> Result<()> {
        self.as_mut().prepare_for_available_now().await
    }

    fn backlog(&self, start: &Offset) -> Option<u64> {
        self.as_ref().backlog(start)
    }

    fn metrics(&self, end: &Offset) -> BTreeMap<String, String> {
        self.as_ref().metrics(end)
    }
}
