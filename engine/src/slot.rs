//! Batch slots: the plan leaves through which the engine hands rows to a physical plan planned
//! once. A source's table scans its slot, which holds the current micro-batch's rows; a stateful
//! operator feeds its intermediate results (state merged with new rows, rows to finalize) to the
//! next phase of the plan through one. Each execution reads what the slot holds at that moment.
//!
//! A slot has one partition per thread of the query's parallelism (`docs/semantics.md` §12): a
//! source's rows are cut into that many contiguous runs, so that running each partition of a
//! plan on its own core and reading the partitions back in order ([`collect_in_order`]) gives
//! the rows in their input order.

use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{LexOrdering, Partitioning};
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use datafusion::physical_plan::{ExecutionPlan, collect_partitioned};

use crate::error::Result;

/// Rows handed to a plan leaf before each execution: the current micro-batch of a source, or
/// an intermediate result of a stateful operator; one list of batches per partition.
#[derive(Debug)]
pub(crate) struct BatchSlot {
    schema: SchemaRef,
    partitions: Mutex<Vec<Vec<RecordBatch>>>,
}

impl BatchSlot {
    /// An empty slot of one partition for rows of `schema`.
    pub(crate) fn new(schema: SchemaRef) -> Arc<Self> {
        Self::partitioned(schema, 1)
    }

    /// An empty slot of `partitions` partitions (at least one) for rows of `schema`.
    pub(crate) fn partitioned(schema: SchemaRef, partitions: usize) -> Arc<Self> {
        Arc::new(Self {
            schema,
            partitions: Mutex::new(vec![Vec::new(); partitions.max(1)]),
        })
    }

    /// Replaces the slot's rows: `batches` in order, cut into one contiguous run of rows per
    /// partition (zero-copy slices), the first partition holding the first rows.
    pub(crate) fn set(&self, batches: Vec<RecordBatch>) {
        let mut partitions = self.lock();
        let count = partitions.len();
        *partitions = split_contiguous(batches, count);
    }

    /// Replaces the slot's rows partition by partition: `rows` has one list per partition of
    /// the slot; with another count, its rows are taken in order and cut anew as
    /// [`Self::set`] cuts them.
    pub(crate) fn set_partitions(&self, rows: Vec<Vec<RecordBatch>>) {
        let mut partitions = self.lock();
        let count = partitions.len();
        *partitions = match rows.len() == count {
            true => rows,
            false => split_contiguous(rows.into_iter().flatten().collect(), count),
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<RecordBatch>>> {
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// One partition stream per partition of the slot, for a table reading it.
    pub(crate) fn streams(self: &Arc<Self>) -> Vec<Arc<dyn PartitionStream>> {
        (0..self.lock().len())
            .map(|index| {
                Arc::new(SlotPartition {
                    slot: Arc::clone(self),
                    index,
                }) as Arc<dyn PartitionStream>
            })
            .collect()
    }

    /// A plan leaf reading the slot's rows at each execution, one output partition per
    /// partition of the slot, of unknown partitioning.
    pub(crate) fn exec(self: &Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(self.table_exec()?))
    }

    /// A plan leaf as [`Self::exec`], declaring `partitioning` (which must have as many
    /// partitions as the slot): the rows the engine puts in each partition must be those
    /// `partitioning` says.
    pub(crate) fn exec_partitioned_as(
        self: &Arc<Self>,
        partitioning: Partitioning,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(
            self.table_exec()?.with_output_partitioning(partitioning)?,
        ))
    }

    fn table_exec(self: &Arc<Self>) -> Result<StreamingTableExec> {
        Ok(StreamingTableExec::try_new(
            self.schema.clone(),
            self.streams(),
            None,
            Vec::<LexOrdering>::new(),
            false,
            None,
        )?)
    }
}

/// `batches` cut into `count` runs of consecutive rows, as even as whole rows allow.
pub(crate) fn split_contiguous(batches: Vec<RecordBatch>, count: usize) -> Vec<Vec<RecordBatch>> {
    let count = count.max(1);
    if count == 1 {
        return vec![batches];
    }
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let per_partition = total.div_ceil(count).max(1);
    let mut runs = vec![Vec::new(); count];
    let (mut run, mut room) = (0, per_partition);
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if room == 0 {
                run = (run + 1).min(count - 1);
                room = per_partition;
            }
            let take = room.min(batch.num_rows() - offset);
            runs[run].push(batch.slice(offset, take));
            offset += take;
            room -= take;
        }
    }
    runs
}

/// One partition of a [`BatchSlot`].
#[derive(Debug)]
struct SlotPartition {
    slot: Arc<BatchSlot>,
    index: usize,
}

impl PartitionStream for SlotPartition {
    fn schema(&self) -> &SchemaRef {
        &self.slot.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let batches = self
            .slot
            .lock()
            .get(self.index)
            .cloned()
            .unwrap_or_default();
        Box::pin(RecordBatchStreamAdapter::new(
            self.slot.schema.clone(),
            futures::stream::iter(batches.into_iter().map(Ok)),
        ))
    }
}

/// Runs `plan` once (after resetting its per-execution state), each output partition as its
/// own task, so on its own core; returns each partition's rows, in partition order.
pub(crate) async fn collect_partitions(
    plan: &Arc<dyn ExecutionPlan>,
    context: Arc<TaskContext>,
) -> Result<Vec<Vec<RecordBatch>>> {
    Ok(collect_partitioned(reset_plan_states(Arc::clone(plan))?, context).await?)
}

/// Runs `plan` as [`collect_partitions`] does and returns the partitions' rows one after the
/// other: rows of a plan that keeps partitions apart (projections, filters, partial
/// aggregations) come out in the order of the slots it reads.
pub(crate) async fn collect_in_order(
    plan: &Arc<dyn ExecutionPlan>,
    context: Arc<TaskContext>,
) -> Result<Vec<RecordBatch>> {
    Ok(collect_partitions(plan, context)
        .await?
        .into_iter()
        .flatten()
        .collect())
}
