//! In-memory sink for tests and embedding (Spark's memory sink, keeping batches apart).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::RecordBatch;
use async_trait::async_trait;

use super::Sink;
use crate::error::Result;

/// Keeps each micro-batch's output in memory, keyed by batch id.
///
/// Clone it before handing it to a query and read the results from the clone. A batch id that
/// is already stored is skipped, which is what makes a replayed batch appear once.
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    batches: Arc<Mutex<BTreeMap<u64, Vec<RecordBatch>>>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// The output of every batch so far, by batch id.
    pub fn batches(&self) -> BTreeMap<u64, Vec<RecordBatch>> {
        self.batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// All output rows so far, in batch order.
    pub fn all_rows(&self) -> Vec<RecordBatch> {
        self.batches().into_values().flatten().collect()
    }
}

#[async_trait]
impl Sink for MemorySink {
    fn description(&self) -> String {
        "MemorySink".into()
    }

    async fn add_batch(&mut self, batch_id: u64, batches: &[RecordBatch]) -> Result<()> {
        self.batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(batch_id)
            .or_insert_with(|| batches.to_vec());
        Ok(())
    }
}
