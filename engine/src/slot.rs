//! Batch slots: the plan leaves through which the engine hands rows to a physical plan planned
//! once. A source's table scans its slot, which holds the current micro-batch's rows; a stateful
//! operator feeds its intermediate results (state merged with new rows, rows to finalize) to the
//! next phase of the plan through one. Each execution reads what the slot holds at that moment.

use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::LexOrdering;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};

use crate::error::Result;

/// Rows handed to a plan leaf before each execution: the current micro-batch of a source, or
/// an intermediate result of a stateful operator.
#[derive(Debug)]
pub(crate) struct BatchSlot {
    schema: SchemaRef,
    batches: Mutex<Vec<RecordBatch>>,
}

impl BatchSlot {
    /// An empty slot for rows of `schema`.
    pub(crate) fn new(schema: SchemaRef) -> Arc<Self> {
        Arc::new(Self {
            schema,
            batches: Mutex::new(Vec::new()),
        })
    }

    /// Replaces the slot's rows.
    pub(crate) fn set(&self, batches: Vec<RecordBatch>) {
        *self.batches.lock().unwrap_or_else(PoisonError::into_inner) = batches;
    }

    /// A plan leaf reading the slot's rows at each execution.
    pub(crate) fn exec(self: &Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        let partition: Arc<dyn PartitionStream> = Arc::clone(self) as _;
        Ok(Arc::new(StreamingTableExec::try_new(
            self.schema.clone(),
            vec![partition],
            None,
            Vec::<LexOrdering>::new(),
            false,
            None,
        )?))
    }
}

impl PartitionStream for BatchSlot {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batches = self
            .batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::iter(batches.into_iter().map(Ok)),
        ))
    }
}
