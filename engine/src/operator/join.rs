//! Stream–stream inner joins (Spark's `StreamingSymmetricHashJoinExec`, `docs/semantics.md`
//! §7).
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

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMicrosecondType};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::expr::{Between, Cast, TryCast};
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Expr, JoinType, LogicalPlan, Operator};

use super::StatefulOperator;
use super::codec;
use crate::error::{Result, SluiceError};
use crate::progress::StateOperatorProgress;
use crate::watermark::{BatchWatermarks, WatermarkSpec};

/// Bounds on `left.ts - right.ts`, in microseconds, read from the join condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct TimeBounds {
    /// `left.ts - right.ts >= lo`.
    pub(crate) lo: Option<i64>,
    /// `left.ts - right.ts <= hi`.
    pub(crate) hi: Option<i64>,
}

/// One side of the join: its source and stored rows.
struct Side {
    source: String,
    schema: SchemaRef,
    /// The source's event-time column (its watermark's), if it declares one.
    event_time: Option<usize>,
    rows: Vec<RecordBatch>,
}

impl Side {
    fn stored(&self) -> usize {
        self.rows.iter().map(RecordBatch::num_rows).sum()
    }

    /// Event times of `batch` in µs (null where the row has none).
    fn times(
        &self,
        batch: &RecordBatch,
    ) -> Result<Option<arrow::array::TimestampMicrosecondArray>> {
        let Some(column) = self.event_time else {
            return Ok(None);
        };
        let times = arrow::compute::cast(
            batch.column(column),
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        )?;
        Ok(Some(
            times.as_primitive::<TimestampMicrosecondType>().clone(),
        ))
    }

    /// The rows of `batches` whose event time passes `keep` (rows without one are kept).
    fn filter(
        &self,
        batches: Vec<RecordBatch>,
        keep: impl Fn(i64) -> bool,
    ) -> Result<(Vec<RecordBatch>, u64)> {
        let mut out = Vec::with_capacity(batches.len());
        let mut removed = 0u64;
        for batch in batches {
            let Some(times) = self.times(&batch)? else {
                out.push(batch);
                continue;
            };
            let mask = BooleanArray::from_iter(
                (0..times.len()).map(|i| Some(!times.is_valid(i) || keep(times.value(i)))),
            );
            removed += (batch.num_rows() - mask.true_count()) as u64;
            let kept = filter_record_batch(&batch, &mask)?;
            if kept.num_rows() > 0 {
                out.push(kept);
            }
        }
        Ok((out, removed))
    }
}

/// A stream–stream inner join's state and its progress (see the module documentation).
pub(crate) struct StreamJoin {
    state_name: String,
    left: Side,
    right: Side,
    bounds: TimeBounds,
    progress: StateOperatorProgress,
}

/// The slots' contents for one of the two runs of a batch: (left rows, right rows).
pub(crate) type JoinInputs = (Vec<RecordBatch>, Vec<RecordBatch>);

impl StreamJoin {
    /// The sources joined: (left, right).
    pub(crate) fn sources(&self) -> (&str, &str) {
        (&self.left.source, &self.right.source)
    }

    /// One line for `explain`: the sources and how long each side's rows are kept.
    pub(crate) fn describe(&self) -> String {
        let kept = |side: &Side, bound: Option<i64>, sign: &str| match (side.event_time, bound) {
            (Some(column), Some(bound)) => format!(
                "until {}.{} <= watermark {sign} {} s",
                side.source,
                side.schema.field(column).name(),
                bound.unsigned_abs() as f64 / 1e6,
            ),
            _ => "forever (no event-time range bounds it)".into(),
        };
        format!(
            "StreamJoin (inner, both sides stored): {} rows kept {}; {} rows kept {}",
            self.left.source,
            kept(
                &self.left,
                self.bounds.lo,
                if self.bounds.lo.is_some_and(|lo| lo < 0) {
                    "-"
                } else {
                    "+"
                }
            ),
            self.right.source,
            kept(
                &self.right,
                self.bounds.hi,
                if self.bounds.hi.is_some_and(|hi| hi > 0) {
                    "-"
                } else {
                    "+"
                }
            ),
        )
    }

    /// Drops the late rows of the batch's new input; returns (new left, new right).
    pub(crate) fn admit(
        &mut self,
        left: Vec<RecordBatch>,
        right: Vec<RecordBatch>,
        watermarks: Option<BatchWatermarks>,
    ) -> Result<JoinInputs> {
        self.progress = StateOperatorProgress {
            operator_name: "symmetricHashJoin".into(),
            ..StateOperatorProgress::default()
        };
        let Some(watermarks) = watermarks else {
            return Ok((left, right));
        };
        let late_us = watermarks.late.saturating_mul(1000);
        let (left, late_left) = self.left.filter(left, |t| t > late_us)?;
        let (right, late_right) = self.right.filter(right, |t| t > late_us)?;
        self.progress.num_rows_dropped_by_watermark = late_left + late_right;
        Ok((left, right))
    }

    /// The first run: the new left rows against the stored right rows.
    pub(crate) fn first_run(&self, left: &[RecordBatch]) -> JoinInputs {
        (left.to_vec(), self.right.rows.clone())
    }

    /// Stores the new left rows (those that can still match), then gives the second run: the
    /// stored left rows against the new right rows.
    pub(crate) fn second_run(
        &mut self,
        left: Vec<RecordBatch>,
        right: &[RecordBatch],
        watermarks: Option<BatchWatermarks>,
    ) -> Result<JoinInputs> {
        let left = self.storable(Which::Left, left, watermarks)?;
        self.progress.num_rows_updated += left.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        self.left.rows.extend(left);
        Ok((self.left.rows.clone(), right.to_vec()))
    }

    /// Stores the new right rows, then evicts what the batch's watermark makes unmatchable.
    pub(crate) fn finish(
        &mut self,
        right: Vec<RecordBatch>,
        watermarks: Option<BatchWatermarks>,
        started: std::time::Instant,
    ) -> Result<()> {
        let right = self.storable(Which::Right, right, watermarks)?;
        self.progress.num_rows_updated += right.iter().map(|b| b.num_rows() as u64).sum::<u64>();
        self.right.rows.extend(right);
        let mut removed = 0;
        for which in [Which::Left, Which::Right] {
            let rows = std::mem::take(&mut self.side(which).rows);
            let (kept, evicted) = self.storable_counted(which, rows, watermarks)?;
            removed += evicted;
            self.side(which).rows = kept;
        }
        self.progress.num_rows_removed = removed;
        self.progress.num_rows_total = (self.left.stored() + self.right.stored()) as u64;
        self.progress.memory_used_bytes = self
            .left
            .rows
            .iter()
            .chain(&self.right.rows)
            .map(|b| b.get_array_memory_size() as u64)
            .sum();
        self.progress.commit_time_ms = started.elapsed().as_millis() as u64;
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
            Which::Left => self.bounds.lo.map(|lo| eviction.saturating_add(lo)),
            Which::Right => self.bounds.hi.map(|hi| eviction.saturating_sub(hi)),
        }
    }

    fn storable(
        &self,
        which: Which,
        rows: Vec<RecordBatch>,
        watermarks: Option<BatchWatermarks>,
    ) -> Result<Vec<RecordBatch>> {
        Ok(self.storable_counted(which, rows, watermarks)?.0)
    }

    /// The rows of side `which` that may still match, and how many may not.
    fn storable_counted(
        &self,
        which: Which,
        rows: Vec<RecordBatch>,
        watermarks: Option<BatchWatermarks>,
    ) -> Result<(Vec<RecordBatch>, u64)> {
        let side = match which {
            Which::Left => &self.left,
            Which::Right => &self.right,
        };
        match self.state_watermark(which, watermarks) {
            Some(threshold) => side.filter(rows, |t| t > threshold),
            None => Ok((rows, 0)),
        }
    }

    /// Both sides' stored rows, encoded as one Arrow IPC file each, length-prefixed.
    fn encode_sides(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for side in [&self.left, &self.right] {
            let rows = concat_batches(&side.schema, &side.rows)?;
            let bytes = codec::encode(&side.schema, Some(&rows))?;
            out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(&bytes);
        }
        Ok(out)
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

    fn encode_state(&self) -> Result<Vec<u8>> {
        self.encode_sides()
    }

    fn restore_state(&mut self, bytes: &[u8], location: &str) -> Result<()> {
        let mut rest = bytes;
        for which in [Which::Left, Which::Right] {
            let unreadable = || SluiceError::checkpoint(location, "unreadable join state");
            let (length, tail) = rest.split_first_chunk::<8>().ok_or_else(unreadable)?;
            let length = usize::try_from(u64::from_le_bytes(*length)).map_err(|_| unreadable())?;
            if tail.len() < length {
                return Err(unreadable());
            }
            let (file, tail) = tail.split_at(length);
            let side = self.side(which);
            let rows = codec::decode(
                file,
                &side.schema,
                location,
                &format!("the columns of source '{}' changed", side.source),
            )?;
            side.rows = if rows.num_rows() > 0 {
                vec![rows]
            } else {
                Vec::new()
            };
            rest = tail;
        }
        Ok(())
    }

    fn progress(&self) -> &StateOperatorProgress {
        &self.progress
    }

    fn state_changed(&self) -> bool {
        self.progress.num_rows_updated > 0 || self.progress.num_rows_removed > 0
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
    if join.join_type != JoinType::Inner {
        return refuse(format!(
            "{} joins between two streams are not supported yet: inner joins are",
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
        Ok(Side {
            source: source.to_string(),
            schema,
            event_time,
            rows: Vec::new(),
        })
    };
    let (left_side, right_side) = (side(&left)?, side(&right)?);
    let event_column = |side: &Side| side.event_time.map(|i| side.schema.field(i).name().clone());
    let bounds = match (event_column(&left_side), event_column(&right_side)) {
        (Some(l), Some(r)) => {
            let conjuncts: Vec<&Expr> = join.filter.iter().flat_map(split_conjunction).collect();
            let is = |column: &Column, name: &str, plan: &LogicalPlan| {
                column.name == name && plan.schema().has_column(column)
            };
            time_bounds(&conjuncts, &|c: &Column| {
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
    Ok(Some(StreamJoin {
        state_name: format!("join-{left}-{right}"),
        left: left_side,
        right: right_side,
        bounds,
        progress: StateOperatorProgress {
            operator_name: "symmetricHashJoin".into(),
            ..StateOperatorProgress::default()
        },
    }))
}

/// The bounds on `left.ts - right.ts` that comparisons among `conjuncts` set, where
/// `side(column)` tells whether a column is the left (`true`) or right (`false`) event time.
pub(crate) fn time_bounds(
    conjuncts: &[&Expr],
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
            (op, b_off - a_off)
        } else {
            // b_ts - a_ts (left - right) flips the comparison and the constant.
            (flip(op), a_off - b_off)
        };
        match op {
            Operator::Gt | Operator::GtEq => {
                bounds.lo = Some(bounds.lo.map_or(constant, |lo| lo.max(constant)));
            }
            Operator::Lt | Operator::LtEq => {
                bounds.hi = Some(bounds.hi.map_or(constant, |hi| hi.min(constant)));
            }
            _ => {}
        }
    };
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
