//! Stream–stream joins, inner and outer (Spark's `StreamingSymmetricHashJoinExec`,
//! `docs/semantics.md` §7).
//!
//! Both sides buffer their rows as the operator's state, and every micro-batch runs the
//! query's SQL twice over the join's two source slots, in Spark's order:
//!
//! 1. the left side's new rows against the right side's **stored** rows; the new left rows
//!    are then stored;
//! 2. the left side's stored rows (the new ones included) against the right side's new rows;
//!    the new right rows are then stored.
//!
//! Each matching pair comes out once, in the batch where its later row arrives. Input rows at
//! or before the previous batch's watermark are dropped as late and counted, on each side
//! that has a watermark. A time-range condition between the two event-time columns bounds
//! the state: with `left.ts - right.ts` at least `lo` and at most `hi`, a left row can no
//! longer match once `left.ts <= watermark + lo`, a right row once
//! `right.ts <= watermark - hi`; such rows are evicted when the batch's watermark passes
//! them, and a new row already past it is joined but not stored (as in Spark). Without a
//! condition bounding a side, that side keeps every row (Spark allows it for inner joins).
//!
//! An outer join runs the two passes as an inner join (the query's plan with the join made
//! inner), finds which stored and new rows matched with a [`MatchPlan`] (the same join over
//! the rows numbered), and keeps a matched flag per stored row; the unmatched rows of a kept
//! side are output with nulls when evicted, through the query's plan as written run over them
//! and an empty other side.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch, UInt64Array};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{
    DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType, UInt64Type,
};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::execution::TaskContext;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::expr::{Between, Cast, TryCast};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Join, JoinType, LogicalPlan, Operator, Projection, TableScanBuilder,
};
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::{ExecutionPlan, collect};

use super::codec;
use super::{StatefulOperator, StoredState, single_part};
use crate::error::{Result, SluiceError};
use crate::progress::StateOperatorProgress;
use crate::slot::BatchSlot;
use crate::watermark::{BatchWatermarks, WatermarkSpec};

/// A bound on `left.ts - right.ts`, in microseconds, read from the join condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bound {
    pub(crate) value: i64,
    /// Whether the comparison is strict (`<`, `>`): Spark evicts a millisecond later for a
    /// non-strict one (`<=`, `>=`, `BETWEEN`, `=`).
    pub(crate) strict: bool,
}

impl Bound {
    /// The offset from the watermark at or before which a row can no longer match.
    fn threshold(self) -> i64 {
        if self.strict {
            self.value
        } else {
            self.value.saturating_sub(1000)
        }
    }
}

/// Bounds on `left.ts - right.ts`, read from the join condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TimeBounds {
    /// `left.ts - right.ts >= lo` (or `>` when strict).
    pub(crate) lo: Option<Bound>,
    /// `left.ts - right.ts <= hi` (or `<` when strict).
    pub(crate) hi: Option<Bound>,
}

/// One side of the join: its source, stored rows and which of them matched.
struct Side {
    source: String,
    schema: SchemaRef,
    /// The source's event-time column (its watermark's), if it declares one.
    event_time: Option<usize>,
    stored: RecordBatch,
    /// Per stored row: whether it matched a row of the other side (outer joins emit the
    /// unmatched ones with nulls when they are evicted).
    matched: Vec<bool>,
}

impl Side {
    fn new(source: &str, schema: SchemaRef, event_time: Option<usize>) -> Self {
        Self {
            source: source.to_string(),
            stored: RecordBatch::new_empty(schema.clone()),
            schema,
            event_time,
            matched: Vec::new(),
        }
    }

    /// Whether each row of `batch` passes `keep` on its event time (rows without one pass).
    fn mask(&self, batch: &RecordBatch, keep: impl Fn(i64) -> bool) -> Result<BooleanArray> {
        let Some(column) = self.event_time else {
            return Ok(BooleanArray::from(vec![true; batch.num_rows()]));
        };
        let times = arrow::compute::cast(
            batch.column(column),
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )?;
        let times = times.as_primitive::<TimestampMicrosecondType>();
        Ok(BooleanArray::from_iter(
            (0..times.len()).map(|i| Some(!times.is_valid(i) || keep(times.value(i)))),
        ))
    }

    /// The state with `more` rows (and their match flags) appended.
    fn append(&mut self, more: &RecordBatch, matched: &[bool]) -> Result<()> {
        self.stored = concat_batches(&self.schema, [&self.stored, more])?;
        self.matched.extend_from_slice(matched);
        Ok(())
    }

    /// Removes the stored rows failing `mask`; returns them with their match flags.
    fn evict(&mut self, keep: &BooleanArray) -> Result<(RecordBatch, Vec<bool>)> {
        let evicted = filter_record_batch(&self.stored, &arrow::compute::not(keep)?)?;
        let evicted_matched = select(&self.matched, keep, false);
        self.stored = filter_record_batch(&self.stored, keep)?;
        self.matched = select(&self.matched, keep, true);
        Ok((evicted, evicted_matched))
    }

    /// The stored rows with their match flags as a last column, for the checkpoint.
    fn with_flags(&self, kind: JoinType) -> Result<(SchemaRef, RecordBatch)> {
        let schema = flagged_schema(&self.schema, kind);
        let mut columns = self.stored.columns().to_vec();
        columns.push(Arc::new(BooleanArray::from(self.matched.clone())));
        Ok((schema.clone(), RecordBatch::try_new(schema, columns)?))
    }
}

/// `flags` where `mask` is `keep`.
fn select(flags: &[bool], mask: &BooleanArray, keep: bool) -> Vec<bool> {
    flags
        .iter()
        .enumerate()
        .filter(|(i, _)| mask.value(*i) == keep)
        .map(|(_, f)| *f)
        .collect()
}

/// A side's schema plus the match flag column of its checkpointed rows, named after the join
/// type (`__matched_left_outer`): a checkpoint of one join type does not restore into another,
/// whose flags would mean something else.
fn flagged_schema(schema: &SchemaRef, kind: JoinType) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let name = format!("__matched_{}", kind_name(kind).replace(' ', "_"));
    fields.push(Field::new(name, DataType::Boolean, false));
    Arc::new(Schema::new(fields))
}

/// The column of row numbers the match plan carries through each side.
const ROW: &str = "__sluice_row";

/// The rows' numbers of `batch`, as the last column of its schema extended by [`ROW`].
fn numbered(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    columns.push(Arc::new(UInt64Array::from_iter_values(
        0..batch.num_rows() as u64,
    )));
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// For outer joins: a plan giving the pairs of row numbers of the two sides that the join's
/// condition matches, over slots holding the sides' rows numbered.
pub(crate) struct MatchPlan {
    plan: Arc<dyn ExecutionPlan>,
    /// The sides' slots, and their schemas (the source's plus [`ROW`]).
    left: (Arc<BatchSlot>, SchemaRef),
    right: (Arc<BatchSlot>, SchemaRef),
}

impl MatchPlan {
    /// The (left row, right row) pairs of `left` and `right` that match.
    async fn pairs(
        &self,
        left: &RecordBatch,
        right: &RecordBatch,
        context: Arc<TaskContext>,
    ) -> Result<Vec<(usize, usize)>> {
        if left.num_rows() == 0 || right.num_rows() == 0 {
            return Ok(Vec::new());
        }
        self.left.0.set(vec![numbered(left, &self.left.1)?]);
        self.right.0.set(vec![numbered(right, &self.right.1)?]);
        let out = collect(reset_plan_states(Arc::clone(&self.plan))?, context).await;
        self.left.0.set(Vec::new());
        self.right.0.set(Vec::new());
        let mut pairs = Vec::new();
        for batch in out? {
            let l = batch.column(0).as_primitive::<UInt64Type>();
            let r = batch.column(1).as_primitive::<UInt64Type>();
            pairs.extend((0..batch.num_rows()).map(|i| (l.value(i) as usize, r.value(i) as usize)));
        }
        Ok(pairs)
    }
}

/// A stream–stream join's state and its progress (see the module documentation).
pub(crate) struct StreamJoin {
    state_name: String,
    kind: JoinType,
    left: Side,
    right: Side,
    bounds: TimeBounds,
    /// For outer and semi joins: which rows match.
    matches: Option<MatchPlan>,
    /// For outer joins: the query's own plan, which turns unmatched rows into the outer rows
    /// (the main plan runs the join as inner).
    outer_plan: Option<Arc<dyn ExecutionPlan>>,
    /// The schema the passes' output is given: the outer plan's (more columns nullable), or
    /// under an aggregation, the aggregation's partial phase's.
    output_schema: Option<SchemaRef>,
    /// Whether the last batch flagged a stored row as matched.
    flags_changed: bool,
    progress: StateOperatorProgress,
}

impl StreamJoin {
    /// The sources joined: (left, right).
    pub(crate) fn sources(&self) -> (&str, &str) {
        (&self.left.source, &self.right.source)
    }

    /// The watermark of the join's output (ms) for input watermark `watermark_ms`, as Spark
    /// propagates it to an operator after the join: the earlier of the two sides' state
    /// watermarks, before which no output row can come any more. `None` unless the
    /// condition bounds both sides.
    pub(crate) fn output_watermark(&self, watermark_ms: i64) -> Option<i64> {
        let watermarks = Some(BatchWatermarks {
            late: watermark_ms,
            eviction: watermark_ms,
        });
        let left = self.state_watermark(Which::Left, watermarks)?;
        let right = self.state_watermark(Which::Right, watermarks)?;
        // Never past the input watermark, never before the epoch (Spark's clamp).
        Some(left.min(right).div_euclid(1000).min(watermark_ms).max(0))
    }

    /// The join's type.
    pub(crate) fn kind(&self) -> JoinType {
        self.kind
    }

    /// The schema the join's output is given: an outer join's as written (the outer rows'
    /// columns nullable), or under an aggregation its partial phase's.
    pub(crate) fn outer_schema(&self) -> Option<SchemaRef> {
        self.output_schema.clone()
    }

    /// The query as written, for an outer join (which runs as inner, its outer rows through
    /// this plan).
    pub(crate) fn outer_plan(&self) -> Option<&Arc<dyn ExecutionPlan>> {
        self.outer_plan.as_ref()
    }

    /// Under an aggregation: the outer rows go through `outer_partial` (the query as
    /// written's partial aggregation), and every output takes `schema` (that of the partial
    /// aggregation the passes run).
    pub(crate) fn aggregate_outer_rows(
        &mut self,
        outer_partial: Arc<dyn ExecutionPlan>,
        schema: SchemaRef,
    ) {
        self.outer_plan = Some(outer_partial);
        self.output_schema = Some(schema);
    }

    /// Gives the join the plan finding its matching rows (outer and semi joins) and, for an
    /// outer join, the query's plan as written, which gives the outer rows.
    pub(crate) fn set_matching(
        &mut self,
        matches: MatchPlan,
        outer_plan: Option<Arc<dyn ExecutionPlan>>,
    ) {
        self.matches = Some(matches);
        self.output_schema = outer_plan.as_ref().map(|plan| plan.schema());
        self.outer_plan = outer_plan;
    }

    /// One line for `explain`: the join and how long each side's rows are kept.
    pub(crate) fn describe(&self) -> String {
        let kept = |side: &Side, bound: Option<Bound>, sign: &str| match (
            side.event_time,
            bound.map(|b| b.value),
        ) {
            (Some(column), Some(bound)) => format!(
                "until {}.{} <= watermark {sign} {} s",
                side.source,
                side.schema.field(column).name(),
                bound.unsigned_abs() as f64 / 1e6,
            ),
            _ => "forever (no event-time range bounds it)".into(),
        };
        let lo_sign = if self.bounds.lo.is_some_and(|lo| lo.value < 0) {
            "-"
        } else {
            "+"
        };
        let hi_sign = if self.bounds.hi.is_some_and(|hi| hi.value > 0) {
            "-"
        } else {
            "+"
        };
        format!(
            "StreamJoin ({}, both sides stored): {} rows kept {}; {} rows kept {}",
            kind_name(self.kind),
            self.left.source,
            kept(&self.left, self.bounds.lo, lo_sign),
            self.right.source,
            kept(&self.right, self.bounds.hi, hi_sign),
        )
    }

    /// One micro-batch: the new rows of both sides in `inputs`, the query's (inner) `plan`
    /// reading the two sources' `slots`. Returns the output rows (see the module
    /// documentation for the order).
    pub(crate) async fn run(
        &mut self,
        slots: &BTreeMap<String, Arc<BatchSlot>>,
        plan: &Arc<dyn ExecutionPlan>,
        mut inputs: BTreeMap<String, Vec<RecordBatch>>,
        context: Arc<TaskContext>,
        watermarks: Option<BatchWatermarks>,
    ) -> Result<Vec<RecordBatch>> {
        let started = std::time::Instant::now();
        self.progress = StateOperatorProgress {
            operator_name: "symmetricHashJoin".into(),
            ..StateOperatorProgress::default()
        };
        self.flags_changed = false;
        let mut new = Vec::with_capacity(2);
        for side in [&self.left, &self.right] {
            let rows = inputs.remove(&side.source).unwrap_or_default();
            let rows = concat_batches(&side.schema, &rows)?;
            // Late input: at or before the previous batch's watermark.
            let rows = match watermarks {
                Some(w) => {
                    let late = w.late.saturating_mul(1000);
                    let keep = side.mask(&rows, |t| t > late)?;
                    self.progress.num_rows_dropped_by_watermark +=
                        (rows.num_rows() - keep.true_count()) as u64;
                    filter_record_batch(&rows, &keep)?
                }
                None => rows,
            };
            new.push(rows);
        }
        let new_right = new
            .pop()
            .unwrap_or_else(|| RecordBatch::new_empty(self.right.schema.clone()));
        let new_left = new
            .pop()
            .unwrap_or_else(|| RecordBatch::new_empty(self.left.schema.clone()));
        let mut new_left_matched = vec![false; new_left.num_rows()];
        let mut new_right_matched = vec![false; new_right.num_rows()];

        // 1. New left rows against the stored right rows; the new left rows are stored (a
        //    semi join's only when they matched nothing: they have been output).
        let mut out = self
            .execute(slots, plan, &new_left, &self.right.stored, &context)
            .await?;
        if let Some(matches) = &self.matches {
            for (l, r) in matches
                .pairs(&new_left, &self.right.stored, Arc::clone(&context))
                .await?
            {
                new_left_matched[l] = true;
                self.flags_changed |= !std::mem::replace(&mut self.right.matched[r], true);
            }
        }
        let semi = self.kind == JoinType::LeftSemi;
        if semi {
            let unmatched =
                BooleanArray::from(new_left_matched.iter().map(|m| !m).collect::<Vec<_>>());
            let rows = filter_record_batch(&new_left, &unmatched)?;
            self.store(
                Which::Left,
                &rows,
                &vec![false; rows.num_rows()],
                watermarks,
            )?;
        } else {
            self.store(Which::Left, &new_left, &new_left_matched, watermarks)?;
        }

        // 2. Stored left rows (the new ones included; a semi join's not yet output) against
        //    the new right rows.
        let (left_rows, positions): (RecordBatch, Vec<usize>) = if semi {
            let unmatched =
                BooleanArray::from(self.left.matched.iter().map(|m| !m).collect::<Vec<_>>());
            let positions = (0..self.left.matched.len())
                .filter(|&i| !self.left.matched[i])
                .collect();
            (
                filter_record_batch(&self.left.stored, &unmatched)?,
                positions,
            )
        } else {
            (
                self.left.stored.clone(),
                (0..self.left.matched.len()).collect(),
            )
        };
        out.extend(
            self.execute(slots, plan, &left_rows, &new_right, &context)
                .await?,
        );
        if let Some(matches) = &self.matches {
            for (l, r) in matches
                .pairs(&left_rows, &new_right, Arc::clone(&context))
                .await?
            {
                self.flags_changed |=
                    !std::mem::replace(&mut self.left.matched[positions[l]], true);
                new_right_matched[r] = true;
            }
        }
        self.store(Which::Right, &new_right, &new_right_matched, watermarks)?;

        // 3. Eviction; an outer join's unmatched evicted rows come out with nulls.
        for which in [Which::Left, Which::Right] {
            let Some(threshold) = self.state_watermark(which, watermarks) else {
                continue;
            };
            let side = self.side(which);
            let keep = side.mask(&side.stored, |t| t > threshold)?;
            let (evicted, matched) = side.evict(&keep)?;
            self.progress.num_rows_removed += evicted.num_rows() as u64;
            let emits = match which {
                Which::Left => matches!(self.kind, JoinType::Left | JoinType::Full),
                Which::Right => matches!(self.kind, JoinType::Right | JoinType::Full),
            };
            if let (true, Some(outer_plan)) = (emits, &self.outer_plan) {
                let unmatched = BooleanArray::from(matched.iter().map(|m| !m).collect::<Vec<_>>());
                let unmatched = filter_record_batch(&evicted, &unmatched)?;
                if unmatched.num_rows() > 0 {
                    let (left, right) = match which {
                        Which::Left => {
                            (unmatched, RecordBatch::new_empty(self.right.schema.clone()))
                        }
                        Which::Right => {
                            (RecordBatch::new_empty(self.left.schema.clone()), unmatched)
                        }
                    };
                    out.extend(
                        self.execute(slots, outer_plan, &left, &right, &context)
                            .await?,
                    );
                }
            }
        }
        let out = match self.outer_schema() {
            Some(schema) => out
                .into_iter()
                .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
                .collect::<std::result::Result<_, _>>()?,
            None => out,
        };
        self.progress.num_rows_total =
            (self.left.stored.num_rows() + self.right.stored.num_rows()) as u64;
        self.progress.memory_used_bytes = (self.left.stored.get_array_memory_size()
            + self.right.stored.get_array_memory_size())
            as u64;
        self.progress.commit_time_ms = started.elapsed().as_millis() as u64;
        Ok(out)
    }

    /// Runs `plan` with `left` and `right` in the two sources' slots.
    async fn execute(
        &self,
        slots: &BTreeMap<String, Arc<BatchSlot>>,
        plan: &Arc<dyn ExecutionPlan>,
        left: &RecordBatch,
        right: &RecordBatch,
        context: &Arc<TaskContext>,
    ) -> Result<Vec<RecordBatch>> {
        if left.num_rows() == 0 && right.num_rows() == 0 {
            return Ok(Vec::new());
        }
        let slot = |source: &str| {
            slots
                .get(source)
                .ok_or_else(|| SluiceError::Config(format!("no slot for source '{source}'")))
        };
        slot(&self.left.source)?.set(vec![left.clone()]);
        slot(&self.right.source)?.set(vec![right.clone()]);
        let out = collect(reset_plan_states(Arc::clone(plan))?, Arc::clone(context)).await;
        slot(&self.left.source)?.set(Vec::new());
        slot(&self.right.source)?.set(Vec::new());
        Ok(out?)
    }

    /// Stores the new rows of side `which` that may still match (a row already past the
    /// side's state watermark is joined, not stored, as in Spark).
    fn store(
        &mut self,
        which: Which,
        rows: &RecordBatch,
        matched: &[bool],
        watermarks: Option<BatchWatermarks>,
    ) -> Result<()> {
        let threshold = self.state_watermark(which, watermarks);
        let side = self.side(which);
        let keep = match threshold {
            Some(threshold) => side.mask(rows, |t| t > threshold)?,
            None => BooleanArray::from(vec![true; rows.num_rows()]),
        };
        let kept = filter_record_batch(rows, &keep)?;
        side.append(&kept, &select(matched, &keep, true))?;
        self.progress.num_rows_updated += kept.num_rows() as u64;
        Ok(())
    }

    fn side(&mut self, which: Which) -> &mut Side {
        match which {
            Which::Left => &mut self.left,
            Which::Right => &mut self.right,
        }
    }

    /// The state watermark of a side in µs: its rows at or before it can match no future row
    /// of the other side (whose event times are after the watermark).
    fn state_watermark(&self, which: Which, watermarks: Option<BatchWatermarks>) -> Option<i64> {
        let eviction = watermarks?.eviction.saturating_mul(1000);
        match which {
            Which::Left => self
                .bounds
                .lo
                .map(|lo| eviction.saturating_add(lo.threshold())),
            Which::Right => self.bounds.hi.map(|hi| {
                let mirrored = Bound {
                    value: hi.value.saturating_neg(),
                    strict: hi.strict,
                };
                eviction.saturating_add(mirrored.threshold())
            }),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Which {
    Left,
    Right,
}

impl StatefulOperator for StreamJoin {
    fn state_name(&self) -> &str {
        &self.state_name
    }

    /// Both sides' stored rows with their match flags, one Arrow IPC file each,
    /// length-prefixed.
    fn encode_state(&self, _partition: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for side in [&self.left, &self.right] {
            let (schema, rows) = side.with_flags(self.kind)?;
            let bytes = codec::encode(&schema, Some(&rows))?;
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        Ok(out)
    }

    fn restore_state(&mut self, parts: Vec<StoredState>) -> Result<()> {
        let part = single_part(parts, &self.state_name)?;
        let location = part.location.as_str();
        let mut rest = part.bytes.as_slice();
        for which in [Which::Left, Which::Right] {
            let unreadable = || SluiceError::checkpoint(location, "unreadable join state");
            let (length, tail) = rest.split_first_chunk::<8>().ok_or_else(unreadable)?;
            let length = usize::try_from(u64::from_le_bytes(*length)).map_err(|_| unreadable())?;
            if tail.len() < length {
                return Err(unreadable());
            }
            let (file, tail) = tail.split_at(length);
            let kind = self.kind;
            let side = self.side(which);
            let rows = codec::decode(
                file,
                &flagged_schema(&side.schema, kind),
                location,
                &format!(
                    "the join changed (its type, or the columns of source '{}')",
                    side.source
                ),
            )?;
            let flags = rows.column(rows.num_columns() - 1).as_boolean();
            side.matched = (0..flags.len()).map(|i| flags.value(i)).collect();
            side.stored = rows.project(&(0..side.schema.fields().len()).collect::<Vec<_>>())?;
            rest = tail;
        }
        Ok(())
    }

    fn progress(&self) -> &StateOperatorProgress {
        &self.progress
    }

    fn state_changed(&self, _partition: usize) -> bool {
        // Match flags change without a row being added or removed.
        self.progress.num_rows_updated > 0
            || self.progress.num_rows_removed > 0
            || self.flags_changed
    }

    /// As Spark's: a no-data batch runs when the watermark can evict state.
    fn waits_on_watermark(&self) -> bool {
        self.bounds.lo.is_some() || self.bounds.hi.is_some()
    }
}

/// The stream–stream join of a planned (optimized) query, if it has one: checked against
/// what is supported (one inner join of two different sources), with the time bounds read
/// from its condition. `sources` are the query's sources and `watermarks` theirs.
pub(crate) fn plan_stream_join(
    plan: &LogicalPlan,
    sources: &[(String, SchemaRef)],
    watermarks: &BTreeMap<String, WatermarkSpec>,
) -> Result<Option<StreamJoin>> {
    let reads = |plan: &LogicalPlan| {
        let mut found: Vec<String> = Vec::new();
        let _ = plan.apply(|node| {
            if let LogicalPlan::TableScan(scan) = node {
                let table = scan.table_name.table().to_string();
                if sources.iter().any(|(name, _)| *name == table) {
                    found.push(table);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        });
        found
    };
    let mut joins = Vec::new();
    plan.apply(|node| {
        if let LogicalPlan::Join(join) = node {
            let (left, right) = (reads(&join.left), reads(&join.right));
            if !left.is_empty() && !right.is_empty() {
                joins.push((join.clone(), left, right));
            }
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let Some((join, left, right)) = joins.first().cloned() else {
        return Ok(None);
    };
    let refuse = |message: String| Err(SluiceError::Config(message));
    if joins.len() > 1 {
        return refuse("a query joins two streams once at most (for now)".into());
    }
    if !matches!(
        join.join_type,
        JoinType::Inner | JoinType::Left | JoinType::Right | JoinType::Full | JoinType::LeftSemi
    ) {
        return refuse(format!(
            "{} joins between two streams are not supported yet: inner, outer and left semi \
             joins are",
            join.join_type
        ));
    }
    let one = |names: &[String], side: &str| match names {
        [name] => Ok(name.clone()),
        _ => Err(SluiceError::Config(format!(
            "the {side} side of a stream-stream join must read one source, reads {}",
            names.join(", ")
        ))),
    };
    let (left, right) = (one(&left, "left")?, one(&right, "right")?);
    if left == right {
        return refuse(format!(
            "a stream-stream self-join of '{left}' is not supported yet"
        ));
    }
    let side = |source: &str| -> Result<Side> {
        let schema = sources
            .iter()
            .find(|(name, _)| name == source)
            .map(|(_, schema)| schema.clone())
            .ok_or_else(|| SluiceError::Config(format!("unknown source '{source}'")))?;
        let event_time = watermarks
            .get(source)
            .map(|w| schema.index_of(&w.column))
            .transpose()?;
        Ok(Side::new(source, schema, event_time))
    };
    let (left_side, right_side) = (side(&left)?, side(&right)?);
    let event_column = |side: &Side| side.event_time.map(|i| side.schema.field(i).name().clone());
    let bounds = match (event_column(&left_side), event_column(&right_side)) {
        (Some(l), Some(r)) => {
            let conjuncts: Vec<&Expr> = join.filter.iter().flat_map(split_conjunction).collect();
            let is = |column: &Column, name: &str, plan: &LogicalPlan| {
                column.name == name && plan.schema().has_column(column)
            };
            time_bounds(&conjuncts, &join.on, &|c: &Column| {
                if is(c, &l, &join.left) {
                    Some(true)
                } else if is(c, &r, &join.right) {
                    Some(false)
                } else {
                    None
                }
            })
        }
        _ => TimeBounds::default(),
    };
    // Spark's rule: an outer join must be able to tell when a row of the side it keeps can no
    // longer match, which takes watermarks and a range condition bounding that side.
    let (needs_left, needs_right) = match join.join_type {
        JoinType::Left | JoinType::LeftSemi => (true, false),
        JoinType::Right => (false, true),
        JoinType::Full => (true, true),
        _ => (false, false),
    };
    if (needs_left && bounds.lo.is_none()) || (needs_right && bounds.hi.is_none()) {
        return refuse(format!(
            "Stream-stream {} join between two streaming DataFrame/Datasets is not supported \
             without watermarks on both sides and a range condition between their event-time \
             columns bounding the side whose unmatched rows it outputs (e.g. ON … AND \
             right.ts BETWEEN left.ts AND left.ts + INTERVAL '1' MINUTE)",
            kind_name(join.join_type)
        ));
    }
    Ok(Some(StreamJoin {
        state_name: format!("join-{left}-{right}"),
        kind: join.join_type,
        matches: None,
        outer_plan: None,
        output_schema: None,
        flags_changed: false,
        left: left_side,
        right: right_side,
        bounds,
        progress: StateOperatorProgress {
            operator_name: "symmetricHashJoin".into(),
            ..StateOperatorProgress::default()
        },
    }))
}

/// Whether `plan` reads source `source`.
fn reads_source(plan: &LogicalPlan, source: &str) -> bool {
    let mut found = false;
    let _ = plan.apply(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            found |= scan.table_name.table() == source;
        }
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// The join of `left` and `right` in `plan`, made inner: an outer join's incremental runs
/// output its matches only (its outer rows come at eviction).
pub(crate) fn as_inner(plan: LogicalPlan, left: &str, right: &str) -> Result<LogicalPlan> {
    let rewritten = plan.transform_up(|node| {
        let node = match node {
            LogicalPlan::Join(join)
                if join.join_type != JoinType::Inner
                    && reads_source(&join.left, left)
                    && reads_source(&join.right, right) =>
            {
                LogicalPlan::Join(Join::try_new(
                    join.left,
                    join.right,
                    join.on,
                    join.filter,
                    JoinType::Inner,
                    join.join_constraint,
                    join.null_equality,
                    join.null_aware,
                )?)
            }
            other => other.recompute_schema()?,
        };
        Ok(Transformed::yes(node))
    })?;
    Ok(rewritten.data)
}

/// The [`MatchPlan`] of the join of `left` and `right` (source name and schema) in the
/// optimized plan `plan`: the join's inputs with each source's rows numbered, joined (inner)
/// on the join's condition, projected on the two row numbers.
pub(crate) async fn match_plan(
    state: &SessionState,
    plan: &LogicalPlan,
    left: (&str, &SchemaRef),
    right: (&str, &SchemaRef),
) -> Result<MatchPlan> {
    let mut found = None;
    plan.apply(|node| {
        if let LogicalPlan::Join(join) = node
            && reads_source(&join.left, left.0)
            && reads_source(&join.right, right.0)
        {
            found = Some(join.clone());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    let join =
        found.ok_or_else(|| SluiceError::Config("the stream-stream join vanished".into()))?;
    let numbered_side = |input: &LogicalPlan, (source, schema): (&str, &SchemaRef)| {
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new(ROW, DataType::UInt64, false));
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let slot = BatchSlot::new(schema.clone());
        let table = StreamingTable::try_new(schema.clone(), slot.streams())?;
        let table = provider_as_source(Arc::new(table));
        let row = schema.fields().len() - 1;
        let rewritten = input.clone().transform_up(|node| {
            let node = match node {
                LogicalPlan::TableScan(scan) if scan.table_name.table() == source => {
                    let projection = scan.projection.map(|mut p| {
                        p.push(row);
                        p
                    });
                    LogicalPlan::TableScan(
                        TableScanBuilder::new(scan.table_name, Arc::clone(&table))
                            .with_projection(projection)
                            .with_filters(scan.filters)
                            .with_fetch(scan.fetch)
                            .build()?,
                    )
                }
                LogicalPlan::Projection(projection) => {
                    let mut expr = projection.expr;
                    if let Ok((qualifier, field)) = projection
                        .input
                        .schema()
                        .qualified_field_with_unqualified_name(ROW)
                    {
                        expr.push(Expr::Column(Column::new(qualifier.cloned(), field.name())));
                    }
                    LogicalPlan::Projection(Projection::try_new(expr, projection.input)?)
                }
                other => other.recompute_schema()?,
            };
            Ok(Transformed::yes(node))
        })?;
        let rewritten = rewritten.data;
        let column = rewritten
            .schema()
            .qualified_field_with_unqualified_name(ROW)
            .map(|(qualifier, field)| Column::new(qualifier.cloned(), field.name()))
            .map_err(|_| {
                SluiceError::Config(format!(
                    "an outer join of two streams must read source '{source}' directly (through \
                     projections and filters only)"
                ))
            })?;
        Ok::<_, SluiceError>((rewritten, column, slot, schema))
    };
    let (left_input, left_row, left_slot, left_schema) = numbered_side(&join.left, left)?;
    let (right_input, right_row, right_slot, right_schema) = numbered_side(&join.right, right)?;
    let joined = Join::try_new(
        Arc::new(left_input),
        Arc::new(right_input),
        join.on.clone(),
        join.filter.clone(),
        JoinType::Inner,
        join.join_constraint,
        join.null_equality,
        join.null_aware,
    )?;
    let pairs = Projection::try_new(
        vec![
            Expr::Column(left_row).alias("left_row"),
            Expr::Column(right_row).alias("right_row"),
        ],
        Arc::new(LogicalPlan::Join(joined)),
    )?;
    let plan = state
        .create_physical_plan(&LogicalPlan::Projection(pairs))
        .await?;
    Ok(MatchPlan {
        plan,
        left: (left_slot, left_schema),
        right: (right_slot, right_schema),
    })
}

/// The bounds on `left.ts - right.ts` that comparisons among `conjuncts` and the join's key
/// `equalities` set, where `side(column)` tells whether a column is the left (`true`) or
/// right (`false`) event time.
fn time_bounds(
    conjuncts: &[&Expr],
    equalities: &[(Expr, Expr)],
    side: &dyn Fn(&Column) -> Option<bool>,
) -> TimeBounds {
    let mut bounds = TimeBounds::default();
    let mut add = |a: &Expr, op: Operator, b: &Expr| {
        let (Some((a_left, a_off)), Some((b_left, b_off))) = (term(a, side), term(b, side)) else {
            return;
        };
        if a_left == b_left {
            return;
        }
        // a_ts + a_off OP b_ts + b_off  ⇔  a_ts - b_ts OP b_off - a_off
        let (op, constant) = if a_left {
            (op, b_off.checked_sub(a_off))
        } else {
            // b_ts - a_ts (left - right) flips the comparison and the constant.
            (flip(op), a_off.checked_sub(b_off))
        };
        let Some(value) = constant else { return };
        let strict = matches!(op, Operator::Gt | Operator::Lt);
        let bound = Bound { value, strict };
        // The tighter bound wins; at the same value, the strict one.
        match op {
            Operator::Gt | Operator::GtEq => {
                bounds.lo = Some(match bounds.lo {
                    Some(lo) if (lo.value, lo.strict) >= (value, strict) => lo,
                    _ => bound,
                });
            }
            Operator::Lt | Operator::LtEq => {
                bounds.hi = Some(match bounds.hi {
                    Some(hi) if (hi.value, !hi.strict) <= (value, !strict) => hi,
                    _ => bound,
                });
            }
            _ => {}
        }
    };
    // Equalities the optimizer moved into the join keys (`l.ts = r.ts + INTERVAL …`).
    for (left, right) in equalities {
        add(left, Operator::GtEq, right);
        add(left, Operator::LtEq, right);
    }
    for conjunct in conjuncts {
        match conjunct {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
                Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
                    add(left, *op, right);
                }
                Operator::Eq => {
                    add(left, Operator::GtEq, right);
                    add(left, Operator::LtEq, right);
                }
                _ => {}
            },
            Expr::Between(Between {
                expr,
                negated: false,
                low,
                high,
            }) => {
                add(expr, Operator::GtEq, low);
                add(expr, Operator::LtEq, high);
            }
            _ => {}
        }
    }
    bounds
}

/// How a join type reads in messages.
fn kind_name(kind: JoinType) -> &'static str {
    match kind {
        JoinType::Inner => "inner",
        JoinType::Left => "left outer",
        JoinType::Right => "right outer",
        JoinType::Full => "full outer",
        JoinType::LeftSemi => "left semi",
        _ => "other",
    }
}

fn flip(op: Operator) -> Operator {
    match op {
        Operator::Lt => Operator::Gt,
        Operator::LtEq => Operator::GtEq,
        Operator::Gt => Operator::Lt,
        Operator::GtEq => Operator::LtEq,
        other => other,
    }
}

/// An event-time column plus or minus constant intervals: (is the left side's, offset µs).
fn term(expr: &Expr, side: &dyn Fn(&Column) -> Option<bool>) -> Option<(bool, i64)> {
    match expr {
        Expr::Column(column) => side(column).map(|left| (left, 0)),
        Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. }) => term(expr, side),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (is_left, offset) = term(left, side)?;
            let interval = interval_micros(right)?;
            match op {
                Operator::Plus => Some((is_left, offset.checked_add(interval)?)),
                Operator::Minus => Some((is_left, offset.checked_sub(interval)?)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A constant interval without months, in µs.
fn interval_micros(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
            i64::from(v.days)
                .checked_mul(86_400_000_000)?
                .checked_add(v.nanoseconds / 1000)
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => i64::from(v.days)
            .checked_mul(86_400_000_000)?
            .checked_add(i64::from(v.milliseconds) * 1000),
        Expr::Cast(Cast { expr, .. }) => interval_micros(expr),
        _ => None,
    }
}
