//! In-memory source for tests and embedding (Spark's `MemoryStream`).

use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{ReadLimit, Source, SourceBatch};
use crate::error::{Result, SluiceError};
use crate::offset::Offset;

/// The memory source's offset: the number of rows admitted so far.
#[derive(Debug, Serialize, Deserialize)]
struct RowOffset {
    rows: u64,
}

#[derive(Debug, Default)]
struct Data {
    batches: Vec<RecordBatch>,
    /// Running row count at the end of each batch.
    ends: Vec<u64>,
}

impl Data {
    fn total(&self) -> u64 {
        self.ends.last().copied().unwrap_or(0)
    }
}

/// An append-only in-memory stream of Arrow batches.
///
/// Clone it before handing it to a query: every clone shares the same data, so the test or
/// application keeps adding rows with [`MemorySource::add_batch`] while the query reads them.
/// Offsets count rows, so a `max_rows_per_trigger` limit splits added batches as needed.
#[derive(Debug, Clone)]
pub struct MemorySource {
    name: String,
    schema: SchemaRef,
    max_rows_per_trigger: Option<u64>,
    /// Row count fixed by `prepare_for_available_now` (per query, not shared by clones).
    available_now: Option<u64>,
    data: Arc<Mutex<Data>>,
}

impl MemorySource {
    /// A new empty stream of `schema`; `name` appears in progress reports.
    pub fn new(name: impl Into<String>, schema: SchemaRef) -> Self {
        Self {
            name: name.into(),
            schema,
            max_rows_per_trigger: None,
            available_now: None,
            data: Arc::default(),
        }
    }

    /// Admits at most `rows` rows per micro-batch.
    pub fn with_max_rows_per_trigger(mut self, rows: u64) -> Self {
        self.max_rows_per_trigger = Some(rows);
        self
    }

    /// Appends a batch; it must have exactly the source's schema.
    pub fn add_batch(&self, batch: RecordBatch) -> Result<()> {
        if batch.schema() != self.schema {
            return Err(SluiceError::source(
                &self.name,
                format!(
                    "batch schema {:?} differs from the source schema {:?}",
                    batch.schema(),
                    self.schema
                ),
            ));
        }
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let mut data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        let end = data.total() + batch.num_rows() as u64;
        data.batches.push(batch);
        data.ends.push(end);
        Ok(())
    }

    /// Total number of rows added so far.
    pub fn len(&self) -> u64 {
        self.data
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total()
    }

    /// Whether no row has been added yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn parse(&self, offset: &Offset) -> Result<u64> {
        offset
            .parse::<RowOffset>()
            .map(|o| o.rows)
            .map_err(|e| SluiceError::source(&self.name, format!("bad offset {offset}: {e}")))
    }
}

fn row_offset(rows: u64) -> Offset {
    Offset::new(serde_json::json!({ "rows": rows }))
}

#[async_trait]
impl Source for MemorySource {
    fn description(&self) -> String {
        format!("MemorySource[{}]", self.name)
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    async fn initial_offset(&mut self) -> Result<Offset> {
        Ok(row_offset(0))
    }

    fn default_read_limit(&self) -> ReadLimit {
        self.max_rows_per_trigger
            .map_or(ReadLimit::AllAvailable, ReadLimit::MaxRows)
    }

    async fn latest_offset(&mut self, start: &Offset, limit: ReadLimit) -> Result<Offset> {
        let start = self.parse(start)?;
        let available = self.available_now.unwrap_or_else(|| self.len());
        let end = match limit {
            ReadLimit::MaxRows(max) => available.min(start.saturating_add(max)),
            ReadLimit::AllAvailable | ReadLimit::MaxFiles(_) => available,
        };
        Ok(row_offset(end.max(start)))
    }

    async fn get_batch(&mut self, start: &Offset, end: &Offset) -> Result<SourceBatch> {
        let (start, end) = (self.parse(start)?, self.parse(end)?);
        let data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        if end > data.total() {
            return Err(SluiceError::source(
                &self.name,
                format!("offset {end} is beyond the {} rows added", data.total()),
            ));
        }
        let mut batches = Vec::new();
        let mut batch_start = 0;
        for (batch, &batch_end) in data.batches.iter().zip(&data.ends) {
            let (lo, hi) = (start.max(batch_start), end.min(batch_end));
            if lo < hi {
                batches.push(batch.slice((lo - batch_start) as usize, (hi - lo) as usize));
            }
            batch_start = batch_end;
        }
        Ok(SourceBatch {
            batches,
            ..Default::default()
        })
    }

    async fn prepare_for_available_now(&mut self) -> Result<()> {
        self.available_now = Some(self.len());
        Ok(())
    }

    fn backlog(&self, start: &Offset) -> Option<u64> {
        Some(self.available_now?.saturating_sub(self.parse(start).ok()?))
    }
}
