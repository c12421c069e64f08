//! Stateful streaming aggregation (`docs/semantics.md` §3): DataFusion's own aggregate, split
//! into its partial and final phases, with the partial states of every group kept across
//! micro-batches.
//!
//! The query is planned once. Each aggregation's `AggregateExec` (one, or one per stage of a
//! chain, §3.6) is taken apart:
//!
//! ```text
//!   upper plan (projection, HAVING, ORDER BY)  ◀─ Final ◀─ rows to emit ◀┐
//!                                                                        │ by output mode
//!   state (group keys + partial states) ◀─ PartialReduce(state ∪ new) ◀──┤ and watermark
//!   new partial states ◀─ Partial ◀─ the batch's rows (aggregate input)  ┘
//! ```
//!
//! Each batch only aggregates its own rows (`Partial`), drops the partial rows of windows that
//! ended at or before the previous batch's watermark (late data, counted as Spark counts it:
//! after partial aggregation), merges the rest into the state (`PartialReduce`, whose output
//! keeps the partial-state schema), then finalizes what the output mode emits (`Final`) and
//! evicts what the watermark closed. Raw rows are never kept or re-scanned. Any DataFusion
//! aggregate works, user-defined ones included, because only its own `state`/`merge` are used.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StructArray, TimestampMicrosecondArray,
    UInt32Array,
};
use arrow::compute::{and, concat_batches, filter_record_batch, take_record_batch};
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use arrow::row::{RowConverter, SortField};
use datafusion::common::hash_utils::create_hashes;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{Partitioning, ScalarFunctionExpr};
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use super::codec;
use super::{StatefulOperator, StoredState};
use crate::error::{Result, SluiceError};
use crate::output_mode::OutputMode;
use crate::progress::StateOperatorProgress;
use crate::slot::{BatchSlot, collect_in_order, collect_partitions};
use crate::watermark::BatchWatermarks;
use crate::window::{SESSION_WINDOW, is_window_type};

/// The column of `leaf` that column `index` of `plan` passes through unchanged: through
/// projections of plain columns and operators that keep their input's schema (filters, sorts,
/// limits, repartitions). `None` when the column is computed.
fn trace_to_leaf(
    plan: &Arc<dyn ExecutionPlan>,
    index: usize,
    leaf: &Arc<dyn ExecutionPlan>,
) -> Option<usize> {
    if Arc::ptr_eq(plan, leaf) {
        return Some(index);
    }
    let [child] = plan.children()[..] else {
        return None;
    };
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        let column = projection
            .expr()
            .get(index)?
            .expr
            .downcast_ref::<Column>()?;
        return trace_to_leaf(child, column.index(), leaf);
    }
    (plan.schema().fields() == child.schema().fields())
        .then(|| trace_to_leaf(child, index, leaf))
        .flatten()
}

/// A query's aggregations: one, or several chained one after the other (a window of
/// windows through `window_time`), which Spark 3.4+ allows in append mode. Each stage is an
/// aggregation with its own state (`state/0`, `state/1`, …); a stage's finalized rows are the
/// next one's input, in the same batch and with the same watermarks.
pub(crate) struct StatefulAggregate {
    stages: Vec<AggregateStage>,
}

/// One aggregation, split into phases, with its state.
pub(crate) struct AggregateStage {
    /// The state's directory in the checkpoint: the stage's position in the chain.
    state_name: String,
    /// What the sink receives each batch.
    mode: OutputMode,
    partial: Arc<dyn ExecutionPlan>,
    reduce: Arc<dyn ExecutionPlan>,
    reduce_input: Arc<BatchSlot>,
    finalize: Arc<dyn ExecutionPlan>,
    final_input: Arc<BatchSlot>,
    upper: Arc<dyn ExecutionPlan>,
    upper_input: Arc<BatchSlot>,
    /// The leaf of `upper` that reads the finalized rows.
    upper_leaf: Arc<dyn ExecutionPlan>,
    state_schema: SchemaRef,
    /// Number of group-key columns at the front of the state schema.
    keys: usize,
    /// Position of the window key, if the aggregation groups by a window.
    window: Option<usize>,
    /// Whether that window is a `session_window`, whose rows merge into sessions.
    session: bool,
    /// Whether the plan above the aggregation sorts.
    sorts: bool,
    /// The group-key columns rows are hash-partitioned by: every key but a session window
    /// (whose bounds change as sessions merge).
    partition_keys: Vec<usize>,
    /// The state, one part per partition: the rows of the groups whose keys hash to it.
    state: Vec<Option<RecordBatch>>,
    /// Whether the last batch changed each partition's state.
    changed: Vec<bool>,
    /// The last batch's progress row, summed over the partitions.
    progress: StateOperatorProgress,
}

/// The hash that assigns a group to a state partition: DataFusion's, with a fixed seed, so
/// that every process of a query agrees. A restored state is re-partitioned with it, so a
/// different hash in a later version only costs that.
const PARTITION_HASH: datafusion::common::hash_utils::RandomState =
    datafusion::common::hash_utils::RandomState::with_seed(0);

impl StatefulAggregate {
    /// Splits `plan` at its aggregations, to run in output mode `mode` with `partitions`
    /// state partitions; `None` if it has none. Chained aggregations are split from the first
    /// up, in append mode only.
    pub(crate) fn split(
        plan: &Arc<dyn ExecutionPlan>,
        mode: OutputMode,
        partitions: usize,
    ) -> Result<Option<Self>> {
        let mut stages = Vec::new();
        let mut plan = Arc::clone(plan);
        while let Some((stage, chained)) =
            AggregateStage::split(&plan, mode, stages.len(), partitions)?
        {
            // A stage reads the previous one's output: aggregations side by side (a UNION
            // ALL of two) are not a chain.
            if let Some(previous) = stages.last() {
                let previous: &AggregateStage = previous;
                let mut reads_previous = false;
                stage.partial.apply(|node| {
                    reads_previous |= Arc::ptr_eq(node, &previous.upper_leaf);
                    Ok(TreeNodeRecursion::Continue)
                })?;
                if !reads_previous {
                    return Err(SluiceError::Config(
                        "Multiple streaming aggregations are not supported with streaming \
                         DataFrames/Datasets unless each aggregates the previous one's output \
                         (a chain, in append mode)"
                            .into(),
                    ));
                }
            }
            plan = Arc::clone(&stage.upper);
            stages.push(stage);
            if !chained {
                break;
            }
        }
        Ok((!stages.is_empty()).then_some(Self { stages }))
    }

    /// The first aggregation's partial phase over its input: what a stream-stream join below
    /// it runs over its passes.
    pub(crate) fn first_partial(&self) -> Arc<dyn ExecutionPlan> {
        Arc::clone(&self.stages[0].partial)
    }

    /// The stages, first to last.
    pub(crate) fn stages(&self) -> &[AggregateStage] {
        &self.stages
    }

    /// The stages, mutably (to restore their state).
    pub(crate) fn stages_mut(&mut self) -> &mut [AggregateStage] {
        &mut self.stages
    }

    fn last(&self) -> &AggregateStage {
        &self.stages[self.stages.len() - 1]
    }

    /// Whether every aggregation groups by an event-time window.
    pub(crate) fn has_window_key(&self) -> bool {
        self.stages.iter().all(|s| s.window.is_some())
    }

    /// Whether an aggregation groups by a session window.
    pub(crate) fn has_session_window(&self) -> bool {
        self.stages.iter().any(|s| s.session)
    }

    /// Whether the plan above the first aggregation (which holds the others) sorts.
    pub(crate) fn sorts(&self) -> bool {
        self.stages[0].sorts
    }

    /// The output columns holding the last aggregation's group keys (see
    /// [`AggregateStage::output_key_columns`]).
    pub(crate) fn output_key_columns(&self) -> Option<Vec<String>> {
        self.last().output_key_columns()
    }

    /// The aggregations, for `explain`.
    pub(crate) fn describe(&self) -> String {
        self.stages
            .iter()
            .map(AggregateStage::describe)
            .collect::<Vec<_>>()
            .join("\nstateful operator: ")
    }

    /// Runs one batch: the source slots must hold the batch's rows, or `fresh` gives the
    /// first aggregation's partial aggregation of them (see [`Self::first_partial`]). Each
    /// stage's finalized rows feed the next; the last one's upper plan gives the rows for the
    /// sink.
    pub(crate) async fn run(
        &mut self,
        mut fresh: Option<Vec<RecordBatch>>,
        context: Arc<TaskContext>,
        watermarks: Option<BatchWatermarks>,
    ) -> Result<Vec<RecordBatch>> {
        let last = self.stages.len() - 1;
        let mut output = Vec::new();
        for (i, stage) in self.stages.iter_mut().enumerate() {
            output = stage
                .run(fresh.take(), Arc::clone(&context), watermarks, i == last)
                .await?;
        }
        for stage in &self.stages {
            stage.upper_input.set(Vec::new());
        }
        Ok(output)
    }
}

impl AggregateStage {
    /// Splits `plan` at the aggregation met last walking down (the first of a chain), the
    /// stage at `position` in the chain;
    /// with whether more aggregations follow in its upper plan. `None` if it has none.
    fn split(
        plan: &Arc<dyn ExecutionPlan>,
        mode: OutputMode,
        position: usize,
        partitions: usize,
    ) -> Result<Option<(Self, bool)>> {
        let mut aggregates = Vec::new();
        plan.apply(|node| {
            if let Some(aggregate) = node.downcast_ref::<AggregateExec>() {
                aggregates.push((Arc::clone(node), aggregate.clone()));
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        // The first aggregation is the deepest (the last met walking down): a single-phase
        // node, or the two phases DataFusion plans over an input of several partitions (a
        // UNION ALL of streams), whose final phase's node is the one replaced and whose
        // partial phase gives the input and expressions.
        let (node, aggregate, planned, chained) = match &aggregates[..] {
            [] => return Ok(None),
            [rest @ .., (node, last), (_, first)]
                if matches!(
                    last.mode(),
                    AggregateMode::Final | AggregateMode::FinalPartitioned
                ) && first.mode() == &AggregateMode::Partial =>
            {
                (
                    Arc::clone(node),
                    first.clone(),
                    last.schema(),
                    !rest.is_empty(),
                )
            }
            [rest @ .., (node, single)]
                if matches!(
                    single.mode(),
                    AggregateMode::Single | AggregateMode::SinglePartitioned
                ) =>
            {
                (
                    Arc::clone(node),
                    single.clone(),
                    single.schema(),
                    !rest.is_empty(),
                )
            }
            [.., (_, other)] => {
                return Err(SluiceError::Config(format!(
                    "unsupported aggregation plan (mode {:?})",
                    other.mode()
                )));
            }
        };
        if chained && mode != OutputMode::Append {
            return Err(SluiceError::Config(
                "Multiple streaming aggregations are not supported with streaming DataFrames/Datasets \
                 in update or complete output mode (this includes COUNT(DISTINCT ...): use \
                 approx_distinct); in append mode they chain, each grouping by a window of the \
                 event time (a window of windows through window_time)"
                    .into(),
            ));
        }
        let group_by = aggregate.group_expr();
        if !group_by.is_single() {
            return Err(SluiceError::Config(
                "GROUPING SETS, ROLLUP and CUBE are not supported in streaming aggregations".into(),
            ));
        }
        let aggr = aggregate.aggr_expr().to_vec();
        let no_filters = vec![None; aggr.len()];
        let input_schema = aggregate.input_schema();

        let partial: Arc<dyn ExecutionPlan> = Arc::new(AggregateExec::try_new(
            AggregateMode::Partial,
            group_by.clone(),
            aggr.clone(),
            aggregate.filter_expr().to_vec(),
            Arc::clone(aggregate.input()),
            Arc::clone(&input_schema),
        )?);
        let state_schema = partial.schema();
        // An aggregation without keys has one group: one partition (DataFusion's final phase
        // gives a row even for an empty partition).
        let partitions = match group_by.expr().is_empty() {
            true => 1,
            false => partitions.max(1),
        };
        let reduce_input = BatchSlot::partitioned(Arc::clone(&state_schema), partitions);
        let reduce: Arc<dyn ExecutionPlan> = Arc::new(AggregateExec::try_new(
            AggregateMode::PartialReduce,
            group_by.as_final(),
            aggr.clone(),
            no_filters.clone(),
            reduce_input.exec()?,
            Arc::clone(&input_schema),
        )?);
        let final_input = BatchSlot::partitioned(Arc::clone(&state_schema), partitions);
        let finalize: Arc<dyn ExecutionPlan> = Arc::new(AggregateExec::try_new(
            AggregateMode::FinalPartitioned,
            group_by.as_final(),
            aggr,
            no_filters,
            final_input.exec()?,
            input_schema,
        )?);
        if finalize.schema().fields() != planned.fields() {
            return Err(SluiceError::Config(format!(
                "internal: the final aggregation's schema {:?} differs from the planned {:?}",
                finalize.schema(),
                planned
            )));
        }
        let session = group_by.expr().iter().position(|(expr, _)| {
            expr.downcast_ref::<ScalarFunctionExpr>()
                .is_some_and(|f| f.name() == SESSION_WINDOW)
        });
        // The finalized rows of state partition p are the planned aggregation's hash
        // partition p (same keys, same hash), so the plan above keeps the partitioning it was
        // planned for; rows of merged sessions are partitioned by the other keys only.
        let planned_partitioning = node.output_partitioning().clone();
        let same_keys = |exprs: &[Arc<dyn datafusion::physical_expr::PhysicalExpr>]| {
            exprs.len() == group_by.expr().len()
                && exprs.iter().enumerate().all(|(key, expr)| {
                    expr.downcast_ref::<Column>()
                        .is_some_and(|column| column.index() == key)
                })
        };
        let (upper_input, upper_leaf) = if session.is_none()
            && matches!(&planned_partitioning, Partitioning::Hash(exprs, count)
                if *count == partitions && same_keys(exprs))
        {
            let slot = BatchSlot::partitioned(Arc::clone(&planned), partitions);
            let leaf = slot.exec_partitioned_as(planned_partitioning)?;
            (slot, leaf)
        } else {
            let slot = BatchSlot::new(Arc::clone(&planned));
            let leaf = slot.exec()?;
            (slot, leaf)
        };
        let upper = Arc::clone(plan)
            .transform_down(|n| {
                if Arc::ptr_eq(&n, &node) {
                    Ok(Transformed::new(
                        Arc::clone(&upper_leaf),
                        true,
                        TreeNodeRecursion::Jump,
                    ))
                } else {
                    Ok(Transformed::no(n))
                }
            })?
            .data;
        let mut sorts = false;
        upper.apply(|n| {
            sorts |= n.downcast_ref::<SortExec>().is_some();
            Ok(TreeNodeRecursion::Continue)
        })?;
        let keys = group_by.expr().len();
        if session.is_some() && keys < 2 {
            return Err(SluiceError::Config(
                "session_window requires at least one grouping key besides the session in streaming".into(),
            ));
        }
        let window = session
            .or_else(|| (0..keys).find(|&i| is_window_type(state_schema.field(i).data_type())));
        let partition_keys = (0..keys).filter(|&i| Some(i) != session).collect();
        Ok(Some((
            Self {
                state_name: position.to_string(),
                mode,
                partial,
                reduce,
                reduce_input,
                finalize,
                final_input,
                upper,
                upper_input,
                upper_leaf,
                state_schema,
                keys,
                window,
                session: session.is_some(),
                sorts,
                partition_keys,
                state: vec![None; partitions],
                changed: vec![false; partitions],
                progress: StateOperatorProgress::default(),
            },
            chained,
        )))
    }

    /// The names of the output columns that hold the group keys, in group-key order, when
    /// every key reaches the output unchanged (a plain column of the result, renamed or not).
    ///
    /// This is the key of an update-mode sink: one output row per group and window. `None`
    /// when a key is computed on, or dropped by, the plan above the aggregation.
    pub(crate) fn output_key_columns(&self) -> Option<Vec<String>> {
        let schema = self.upper.schema();
        (0..self.keys)
            .map(|key| {
                (0..schema.fields().len())
                    .find(|&column| {
                        trace_to_leaf(&self.upper, column, &self.upper_leaf) == Some(key)
                    })
                    .map(|column| schema.field(column).name().clone())
            })
            .collect()
    }

    /// The operator, its group keys and its window key, for `explain`.
    pub(crate) fn describe(&self) -> String {
        let keys: Vec<&str> = self.state_schema.fields()[..self.keys]
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let window = self.window.map_or("none".to_string(), |i| {
            self.state_schema.field(i).name().clone()
        });
        format!(
            "stateStoreSave: aggregation by [{}], window key: {window}, state columns: {}",
            keys.join(", "),
            self.state_schema.fields().len() - self.keys
        )
    }

    /// Runs one batch: its input's slots must hold the batch's rows, or `fresh` gives its
    /// partial aggregation of them. The last stage returns the rows for the sink; another
    /// leaves its finalized rows in its upper plan's slot, the next stage's input.
    ///
    /// The partial aggregation runs on each run of input rows on its own core; its rows are
    /// hash-partitioned by the group keys, and each state partition merges, emits and evicts
    /// its groups on its own core, as Spark's shuffle partitions do.
    async fn run(
        &mut self,
        fresh: Option<Vec<RecordBatch>>,
        context: Arc<TaskContext>,
        watermarks: Option<BatchWatermarks>,
        last: bool,
    ) -> Result<Vec<RecordBatch>> {
        let mode = self.mode;
        let started = std::time::Instant::now();
        let runs = match fresh {
            Some(rows) => vec![rows],
            None => collect_partitions(&self.partial, Arc::clone(&context)).await?,
        };
        let fresh = self.partition(runs)?;
        // Complete mode keeps every row, however late: its result table is never final.
        let late = watermarks.filter(|_| mode != OutputMode::Complete);
        let mut progress = StateOperatorProgress {
            operator_name: "stateStoreSave".into(),
            ..StateOperatorProgress::default()
        };
        // Each partition's rows to merge with the reduce plan, or already merged.
        let mut reduce = Vec::with_capacity(fresh.len());
        let mut merged = Vec::with_capacity(fresh.len());
        let mut kept_fresh = Vec::with_capacity(fresh.len());
        for (partition, rows) in fresh.into_iter().enumerate() {
            let (rows, dropped) = self.drop_late(rows, late)?;
            progress.num_rows_updated += rows.num_rows() as u64;
            progress.num_rows_dropped_by_watermark += dropped as u64;
            // New rows always go through the reduce plan, even into an empty state: the
            // partial aggregation may give a group several rows (one per run of input rows,
            // or when DataFusion skips partial aggregation on many distinct groups).
            let (input, done) = match self.state[partition].take() {
                None if rows.num_rows() == 0 => (Vec::new(), Some(rows.clone())),
                Some(state) if rows.num_rows() == 0 => (Vec::new(), Some(state)),
                state => {
                    // The stored state first, as Spark merges it: order-dependent aggregates
                    // (`last`, ties of `max_by`, `array_agg`) take the new rows as the later
                    // ones.
                    let mut input = match state {
                        Some(state) => concat_batches(&self.state_schema, [&state, &rows])?,
                        None => rows.clone(),
                    };
                    if self.session {
                        input = self.merge_sessions(input)?;
                    }
                    (vec![input], None)
                }
            };
            reduce.push(input);
            merged.push(done);
            kept_fresh.push(rows);
        }
        if merged.iter().any(Option::is_none) {
            self.reduce_input.set_partitions(reduce);
            let reduced = collect_partitions(&self.reduce, Arc::clone(&context)).await;
            self.reduce_input.set(Vec::new());
            for (done, rows) in merged.iter_mut().zip(reduced?) {
                if done.is_none() {
                    *done = Some(concat_batches(&self.state_schema, &rows)?);
                }
            }
        }

        let mut emits = Vec::with_capacity(merged.len());
        for (partition, (merged, fresh)) in merged.into_iter().zip(kept_fresh).enumerate() {
            let merged =
                merged.unwrap_or_else(|| RecordBatch::new_empty(self.state_schema.clone()));
            let (emit, keep, removed) = match mode {
                OutputMode::Complete => (merged.clone(), merged, 0),
                OutputMode::Update => {
                    let emit = self.rows_with_keys_of(&merged, &fresh)?;
                    let (closed, open) = self.split_closed(merged, watermarks)?;
                    (emit, open, closed.num_rows())
                }
                OutputMode::Append => {
                    let (closed, open) = self.split_closed(merged, watermarks)?;
                    let removed = closed.num_rows();
                    (closed, open, removed)
                }
            };
            progress.num_rows_removed += removed as u64;
            progress.num_rows_total += keep.num_rows() as u64;
            progress.memory_used_bytes += keep.get_array_memory_size() as u64;
            self.changed[partition] = fresh.num_rows() > 0 || removed > 0;
            self.state[partition] = (keep.num_rows() > 0).then_some(keep);
            emits.push(if emit.num_rows() == 0 {
                Vec::new()
            } else {
                vec![emit]
            });
        }

        let finals = if emits.iter().all(Vec::is_empty) {
            Vec::new()
        } else {
            self.final_input.set_partitions(emits);
            let finals = collect_partitions(&self.finalize, Arc::clone(&context)).await;
            self.final_input.set(Vec::new());
            finals?
        };
        let output = if !last {
            // The next stage reads them through its input, which reads this slot.
            self.upper_input.set_partitions(finals);
            Vec::new()
        } else if finals.iter().all(Vec::is_empty) {
            Vec::new()
        } else {
            self.upper_input.set_partitions(finals);
            let out = collect_in_order(&self.upper, context).await;
            self.upper_input.set(Vec::new());
            out?
        };
        progress.commit_time_ms = started.elapsed().as_millis() as u64;
        self.progress = progress;
        Ok(output)
    }

    /// The rows of `runs` (runs of consecutive rows, in order) for each state partition,
    /// in their order: the partition of a row is the hash of its partition keys.
    fn partition(&self, runs: Vec<Vec<RecordBatch>>) -> Result<Vec<RecordBatch>> {
        let count = self.state.len();
        let batches: Vec<RecordBatch> = runs.into_iter().flatten().collect();
        if count == 1 {
            return Ok(vec![concat_batches(&self.state_schema, &batches)?]);
        }
        let mut parts: Vec<Vec<RecordBatch>> = vec![Vec::new(); count];
        let mut hashes = Vec::new();
        for batch in &batches {
            let keys: Vec<&ArrayRef> = self
                .partition_keys
                .iter()
                .map(|&i| batch.column(i))
                .collect();
            hashes.clear();
            hashes.resize(batch.num_rows(), 0);
            create_hashes(keys, &PARTITION_HASH, &mut hashes)?;
            let mut indices: Vec<Vec<u32>> = vec![Vec::new(); count];
            for (row, hash) in hashes.iter().enumerate() {
                indices[(*hash % count as u64) as usize].push(row as u32);
            }
            for (part, rows) in parts.iter_mut().zip(indices) {
                if !rows.is_empty() {
                    part.push(take_record_batch(batch, &UInt32Array::from(rows))?);
                }
            }
        }
        parts
            .iter()
            .map(|part| Ok(concat_batches(&self.state_schema, part)?))
            .collect()
    }

    /// The window ends (µs) of each state row, if grouped by a window.
    fn window_ends<'a>(
        &self,
        batch: &'a RecordBatch,
    ) -> Option<&'a arrow::array::TimestampMicrosecondArray> {
        self.window.map(|i| {
            batch
                .column(i)
                .as_struct()
                .column(1)
                .as_primitive::<TimestampMicrosecondType>()
        })
    }

    /// Drops rows without a window (null event time) and, with watermarks, rows whose window
    /// is late; returns the rest and how many were late.
    fn drop_late(
        &self,
        batch: RecordBatch,
        watermarks: Option<BatchWatermarks>,
    ) -> Result<(RecordBatch, usize)> {
        let Some(ends) = self.window_ends(&batch) else {
            return Ok((batch, 0));
        };
        let has_window = BooleanArray::from_iter((0..ends.len()).map(|i| Some(ends.is_valid(i))));
        let keep = match watermarks {
            Some(watermarks) => {
                let on_time = BooleanArray::from_unary(ends, |end| !watermarks.window_is_late(end));
                and(&has_window, &on_time)?
            }
            None => has_window.clone(),
        };
        let late = has_window.true_count() - keep.true_count();
        Ok((filter_record_batch(&batch, &keep)?, late))
    }

    /// Splits state rows into those whose window the batch closes and the rest.
    fn split_closed(
        &self,
        batch: RecordBatch,
        watermarks: Option<BatchWatermarks>,
    ) -> Result<(RecordBatch, RecordBatch)> {
        let (Some(ends), Some(watermarks)) = (self.window_ends(&batch), watermarks) else {
            return Ok((batch.slice(0, 0), batch));
        };
        let closed = BooleanArray::from_unary(ends, |end| watermarks.window_is_closed(end));
        let open = arrow::compute::not(&closed)?;
        Ok((
            filter_record_batch(&batch, &closed)?,
            filter_record_batch(&batch, &open)?,
        ))
    }

    /// Gives each row the session it belongs to once overlapping sessions of the same group
    /// merge (`next.start <= current.end`), so that `PartialReduce` merges their states.
    fn merge_sessions(&self, batch: RecordBatch) -> Result<RecordBatch> {
        let Some(position) = self.window else {
            return Ok(batch);
        };
        let others: Vec<_> = (0..self.keys)
            .filter(|&i| i != position)
            .map(|i| Arc::clone(batch.column(i)))
            .collect();
        let converter = RowConverter::new(
            others
                .iter()
                .map(|c| SortField::new(c.data_type().clone()))
                .collect(),
        )?;
        let rows = converter.convert_columns(&others)?;
        let session = batch.column(position).as_struct();
        let starts = session.column(0).as_primitive::<TimestampMicrosecondType>();
        let ends = session.column(1).as_primitive::<TimestampMicrosecondType>();
        let mut order: Vec<usize> = (0..batch.num_rows()).collect();
        order.sort_unstable_by(|&a, &b| {
            rows.row(a)
                .cmp(&rows.row(b))
                .then(starts.value(a).cmp(&starts.value(b)))
        });
        let (mut new_starts, mut new_ends) = (vec![0i64; order.len()], vec![0i64; order.len()]);
        let mut i = 0;
        while i < order.len() {
            let (start, mut end, mut j) = (starts.value(order[i]), ends.value(order[i]), i);
            while j + 1 < order.len()
                && rows.row(order[j + 1]) == rows.row(order[i])
                && starts.value(order[j + 1]) <= end
            {
                j += 1;
                end = end.max(ends.value(order[j]));
            }
            for &row in &order[i..=j] {
                new_starts[row] = start;
                new_ends[row] = end;
            }
            i = j + 1;
        }
        let tz = match starts.data_type() {
            arrow::datatypes::DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        let merged = StructArray::new(
            session.fields().clone(),
            vec![
                Arc::new(TimestampMicrosecondArray::from(new_starts).with_timezone_opt(tz.clone())),
                Arc::new(TimestampMicrosecondArray::from(new_ends).with_timezone_opt(tz)),
            ],
            None,
        );
        let mut columns = batch.columns().to_vec();
        columns[position] = Arc::new(merged);
        Ok(RecordBatch::try_new(batch.schema(), columns)?)
    }

    /// The rows of `state` whose group key appears in `updates`.
    fn rows_with_keys_of(&self, state: &RecordBatch, updates: &RecordBatch) -> Result<RecordBatch> {
        if updates.num_rows() == 0 {
            return Ok(state.slice(0, 0));
        }
        let fields = self.state_schema.fields()[..self.keys]
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields)?;
        let updated = converter.convert_columns(&updates.columns()[..self.keys])?;
        let updated: HashSet<_> = updated.iter().collect();
        let rows = converter.convert_columns(&state.columns()[..self.keys])?;
        let mask = BooleanArray::from_iter(rows.iter().map(|row| Some(updated.contains(&row))));
        Ok(filter_record_batch(state, &mask)?)
    }
}

impl StatefulOperator for AggregateStage {
    fn state_name(&self) -> &str {
        &self.state_name
    }

    fn partitions(&self) -> usize {
        self.state.len()
    }

    /// A partition's group keys and partial aggregate states, as Arrow IPC.
    fn encode_state(&self, partition: usize) -> Result<Vec<u8>> {
        codec::encode(
            &self.state_schema,
            self.state.get(partition).and_then(Option::as_ref),
        )
    }

    /// Reads every stored part and hash-partitions its groups over this run's partitions.
    fn restore_state(&mut self, parts: Vec<StoredState>) -> Result<()> {
        let changed = "the state was written by a different query (its schema differs)";
        let mut rows = Vec::with_capacity(parts.len());
        for part in parts {
            rows.push(codec::decode(
                &part.bytes,
                &self.state_schema,
                &part.location,
                changed,
            )?);
        }
        let partitioned = self.partition(vec![rows])?;
        self.state = partitioned
            .into_iter()
            .map(|rows| (rows.num_rows() > 0).then_some(rows))
            .collect();
        Ok(())
    }

    fn progress(&self) -> &StateOperatorProgress {
        &self.progress
    }

    fn state_changed(&self, partition: usize) -> bool {
        self.changed.get(partition).copied().unwrap_or(true)
    }

    /// Append and update modes emit or evict the windows a watermark closes; complete mode
    /// keeps every group forever.
    fn waits_on_watermark(&self) -> bool {
        self.mode != OutputMode::Complete
    }
}
