//! Event-time watermarks (`docs/semantics.md` §2): every watermark rule of the engine, as plain
//! functions and values.
//!
//! - **The query's watermark.** A source declares a watermark on one of its timestamp columns
//!   with a delay. After each batch, that source's candidate is `max event time − delay`; the
//!   query's watermark is the minimum (default) or maximum of the sources' candidates, never
//!   moves backwards, starts at 0, and is in milliseconds. A source that has produced no data
//!   yet counts as 0 ([`WatermarkTracker`]).
//! - **The per-batch pair.** Batch N runs with two watermarks ([`BatchWatermarks`]): input is
//!   judged late against the watermark batch N−1 ran with, and state is emitted or evicted with
//!   the watermark logged for batch N. Stateful operators receive this one value.
//! - **Late and expired, per operator kind.** A window (aggregation) is late when it ended at
//!   or before the late-judging watermark and closed when it ended at or before the evicting
//!   one; a row (deduplication) is late when its event time is at or before the late-judging
//!   watermark, and a deduplication key expires at or before the evicting one.
//! - **No-data batches.** When no source has new data but the watermark moved past the one the
//!   last batch ran with, a batch still runs if a stateful operator may emit or evict on it
//!   (Spark's no-data batch; [`WatermarkTracker::runs_no_data_batch`]).
//!
//! What stays with each operator is which of these tests apply to it, since that depends on
//! the operator's own declaration: an aggregation in complete mode judges nothing late (its
//! result table is never final), and a deduplication uses the watermark only when its keys
//! include the event time (`dropDuplicates`, a key then expires at its event time) or always
//! (`dropDuplicatesWithinWatermark`, a key expires at its first event time plus the delay).

use std::collections::BTreeMap;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};

use crate::error::{Result, SluiceError};

/// A watermark declared on a source column: rows more than `delay_ms` behind the latest event
/// time may be dropped as late.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkSpec {
    /// The event-time column (a timestamp) of the source.
    pub column: String,
    /// How late data may arrive, in milliseconds.
    pub delay_ms: i64,
}

/// How the watermarks of several sources combine (Spark's `multipleWatermarkPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WatermarkPolicy {
    /// The slowest source sets the pace: no source's data is dropped too early.
    #[default]
    Min,
    /// The fastest source sets the pace: slower sources' data may be dropped as late.
    Max,
}

/// Event-time statistics of one batch of one source, in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventTimeStats {
    /// Latest event time.
    pub max: i64,
    /// Earliest event time.
    pub min: i64,
    /// Sum of event times (for the average).
    pub sum: i128,
    /// Number of non-null event times.
    pub count: u64,
}

impl EventTimeStats {
    /// Adds the non-null timestamps of `column` (any timestamp unit).
    pub fn observe(&mut self, column: &ArrayRef) -> Result<()> {
        let millis =
            arrow::compute::cast(column, &DataType::Timestamp(TimeUnit::Millisecond, None))?;
        let millis = millis.as_primitive::<TimestampMillisecondType>();
        for value in millis.iter().flatten() {
            if self.count == 0 {
                self.max = value;
                self.min = value;
            } else {
                self.max = self.max.max(value);
                self.min = self.min.min(value);
            }
            self.sum += i128::from(value);
            self.count += 1;
        }
        Ok(())
    }

    /// Combines the statistics of two batches.
    pub fn merge(&mut self, other: EventTimeStats) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other;
            return;
        }
        self.max = self.max.max(other.max);
        self.min = self.min.min(other.min);
        self.sum += other.sum;
        self.count += other.count;
    }

    /// Mean event time, if any.
    pub fn avg(&self) -> Option<i64> {
        (self.count > 0).then(|| (self.sum / i128::from(self.count)) as i64)
    }
}

/// Checks that `column` exists in a source and is a timestamp.
pub fn check_event_time_column(
    source: &str,
    schema: &arrow::datatypes::Schema,
    column: &str,
) -> Result<()> {
    match schema.field_with_name(column).map(|f| f.data_type()) {
        Ok(DataType::Timestamp(_, _)) => Ok(()),
        Ok(other) => Err(SluiceError::Config(format!(
            "watermark column '{column}' of source '{source}' must be a timestamp, not {other}"
        ))),
        Err(_) => Err(SluiceError::Config(format!(
            "watermark column '{column}' is not a column of source '{source}'"
        ))),
    }
}

/// The watermarks one stateful batch runs with, in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchWatermarks {
    /// The watermark the previous batch ran with: input at or before it is late.
    pub late: i64,
    /// The batch's own watermark (logged in `offsets/N`): state at or before it is final,
    /// emitted (append) or evicted.
    pub eviction: i64,
}

impl BatchWatermarks {
    /// Whether a window ending at `end_us` (µs, exclusive) is late input: it closed at or
    /// before the late-judging watermark, so its rows are dropped and counted.
    pub fn window_is_late(&self, end_us: i64) -> bool {
        end_us <= self.late.saturating_mul(1000)
    }

    /// Whether a window ending at `end_us` (µs, exclusive) is closed by this batch: final, so
    /// emitted in append mode and evicted from the state.
    pub fn window_is_closed(&self, end_us: i64) -> bool {
        end_us <= self.eviction.saturating_mul(1000)
    }

    /// Whether a row whose event time is `event_ms` is late input for a deduplication.
    pub fn row_is_late(&self, event_ms: i64) -> bool {
        event_ms <= self.late
    }

    /// Whether a deduplication key that expires at `expires_ms` is evicted by this batch.
    pub fn key_expired(&self, expires_ms: i64) -> bool {
        expires_ms <= self.eviction
    }
}

/// Tracks the query's watermark across batches, and the watermark the last batch ran with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkTracker {
    policy: WatermarkPolicy,
    delays: BTreeMap<String, i64>,
    candidates: BTreeMap<String, i64>,
    current: i64,
    /// The watermark the last batch ran with (`batchWatermarkMs` of its offsets entry).
    last_batch: i64,
}

impl WatermarkTracker {
    /// A tracker for sources `delays` (name → delay in ms), starting at `current` (0 for a new
    /// query, the checkpointed watermark after a restart, which each source then starts from).
    pub fn new(policy: WatermarkPolicy, delays: BTreeMap<String, i64>, current: i64) -> Self {
        let candidates = delays.keys().map(|name| (name.clone(), current)).collect();
        Self {
            policy,
            delays,
            candidates,
            current,
            last_batch: 0,
        }
    }

    /// Restores the tracker of a restarted query: the next batch runs with `next` (from the
    /// last commit, or the re-run batch's offsets entry) and the last batch ran with
    /// `last_batch`.
    pub fn restore(&mut self, next: i64, last_batch: i64) {
        self.reset(next);
        self.last_batch = last_batch;
    }

    /// Restarts from a checkpointed watermark: every source starts from it.
    pub fn reset(&mut self, current: i64) {
        self.current = current;
        for candidate in self.candidates.values_mut() {
            *candidate = current;
        }
    }

    /// Whether any source declares a watermark.
    pub fn is_enabled(&self) -> bool {
        !self.delays.is_empty()
    }

    /// The watermark now, ms.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// Records a batch's event times for `source` (ignored if it declares no watermark).
    pub fn observe(&mut self, source: &str, stats: &EventTimeStats) {
        if stats.count == 0 {
            return;
        }
        if let (Some(delay), Some(candidate)) =
            (self.delays.get(source), self.candidates.get_mut(source))
        {
            *candidate = (*candidate).max(stats.max - delay);
        }
    }

    /// The pair a batch logged with watermark `batch_ms` runs with; `None` when no source
    /// declares a watermark.
    pub fn batch_watermarks(&self, batch_ms: i64) -> Option<BatchWatermarks> {
        self.is_enabled().then_some(BatchWatermarks {
            late: self.last_batch,
            eviction: batch_ms,
        })
    }

    /// Whether a trigger that found no new data still runs a batch: the watermark moved past
    /// the one the last batch ran with, and a stateful operator may emit or evict on it
    /// (`operators_wait_on_watermark`).
    pub fn runs_no_data_batch(&self, operators_wait_on_watermark: bool) -> bool {
        operators_wait_on_watermark && self.is_enabled() && self.current > self.last_batch
    }

    /// Ends a batch that ran with watermark `batch_ms`: it becomes the late-judging watermark
    /// of the next batch, and the watermark advances with the batch's event times. Returns the
    /// watermark the next batch runs with.
    pub fn finish_batch(&mut self, batch_ms: i64) -> i64 {
        self.last_batch = batch_ms;
        self.advance()
    }

    /// Moves the watermark after a batch and returns it.
    pub fn advance(&mut self) -> i64 {
        let values = self.candidates.values().copied();
        let candidate = match self.policy {
            WatermarkPolicy::Min => values.min(),
            WatermarkPolicy::Max => values.max(),
        };
        if let Some(candidate) = candidate {
            self.current = self.current.max(candidate);
        }
        self.current
    }
}

/// Formats ms since the epoch as Spark's progress does (`2026-11-28T09:00:00.000Z`).
pub fn format_millis(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| millis.to_string())
}

/// The event-time statistics of `column` over `batches`.
pub fn batch_stats(batches: &[arrow::array::RecordBatch], column: &str) -> Result<EventTimeStats> {
    let mut stats = EventTimeStats::default();
    for batch in batches {
        if let Some(values) = batch.column_by_name(column)
            && values.null_count() < values.len()
        {
            stats.observe(values)?;
        }
    }
    Ok(stats)
}
