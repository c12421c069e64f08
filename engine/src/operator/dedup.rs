//! Streaming deduplication of a source's rows (Spark's `dropDuplicates` and
//! `dropDuplicatesWithinWatermark`, `docs/semantics.md` §6).
//!
//! Declared per source on the query builder, it runs on the source's rows before the SQL: the
//! first row of each key is kept, later ones are dropped, across batches. The keys seen are
//! the operator's state, checkpointed with each batch:
//!
//! - [`DedupMode::DropDuplicates`]: with a watermark on the source and its event-time column
//!   among the keys, rows at or before the previous batch's watermark are dropped as late and
//!   keys whose event time is at or before the batch's watermark are evicted; otherwise the
//!   state keeps every key forever, as in Spark.
//! - [`DedupMode::WithinWatermark`]: requires a watermark; a key expires at its first event
//!   time plus the watermark delay, whatever the key columns.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, Int64Array, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit, TimestampMillisecondType};
use arrow::row::{RowConverter, SortField};

use super::codec;
use super::{StatefulOperator, StoredState, single_part};
use crate::error::{Result, SluiceError};
use crate::progress::StateOperatorProgress;
use crate::watermark::{BatchWatermarks, WatermarkSpec};

/// Which Spark deduplication a source applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DedupMode {
    /// `dropDuplicates(keys)`.
    DropDuplicates,
    /// `dropDuplicatesWithinWatermark(keys)`.
    WithinWatermark,
}

/// The deduplication state of one source.
pub(crate) struct Deduplicator {
    /// The state directory in the checkpoint, `dedup-<source>`.
    state_name: String,
    mode: DedupMode,
    keys: Vec<usize>,
    converter: RowConverter,
    /// The event-time column and the watermark delay, when the source has a watermark.
    event_time: Option<(usize, i64)>,
    /// Whether the event-time column is a key (eviction by watermark for `DropDuplicates`).
    event_time_is_key: bool,
    /// Key (in the row format, so that lookups need no allocation) → expiry in ms
    /// (`i64::MAX`: never).
    seen: HashMap<Vec<u8>, i64>,
    state_schema: SchemaRef,
    /// The last batch's progress row.
    progress: StateOperatorProgress,
}

impl Deduplicator {
    /// Deduplicates rows of source `source` (of `schema`) on `columns`; `watermark` is the
    /// source's, if declared.
    pub(crate) fn new(
        source: &str,
        schema: &Schema,
        columns: &[String],
        mode: DedupMode,
        watermark: Option<&WatermarkSpec>,
    ) -> Result<Self> {
        if columns.is_empty() {
            return Err(SluiceError::Config(format!(
                "deduplication of source '{source}' needs key columns"
            )));
        }
        let keys = columns
            .iter()
            .map(|c| {
                schema.index_of(c).map_err(|_| {
                    SluiceError::Config(format!(
                        "deduplication key '{c}' is not a column of source '{source}'"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let event_time = watermark
            .map(|w| schema.index_of(&w.column).map(|i| (i, w.delay_ms)))
            .transpose()
            .map_err(|e| SluiceError::Config(e.to_string()))?;
        if mode == DedupMode::WithinWatermark && event_time.is_none() {
            return Err(SluiceError::Config(format!(
                "dropDuplicatesWithinWatermark on source '{source}' requires a watermark on that source"
            )));
        }
        let event_time_is_key = event_time.is_some_and(|(i, _)| keys.contains(&i));
        let fields: Vec<Field> = keys
            .iter()
            .map(|&i| schema.field(i).clone().with_nullable(true))
            .collect();
        let converter = RowConverter::new(
            fields
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        let mut state_fields = fields;
        state_fields.push(Field::new("__expires_ms", DataType::Int64, false));
        Ok(Self {
            state_name: format!("dedup-{source}"),
            mode,
            keys,
            converter,
            event_time,
            event_time_is_key,
            seen: HashMap::new(),
            state_schema: Arc::new(Schema::new(state_fields)),
            progress: StateOperatorProgress::default(),
        })
    }

    /// The names of the key columns.
    pub(crate) fn key_names(&self) -> Vec<String> {
        self.state_schema.fields()[..self.keys.len()]
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// Whether late rows are dropped and keys evicted by the watermark.
    fn uses_watermark(&self) -> bool {
        self.mode == DedupMode::WithinWatermark || self.event_time_is_key
    }

    /// Keeps the first row of each new key, judging lateness and evicting keys with the batch's
    /// `watermarks` (`None` when the query declares none).
    pub(crate) fn apply(
        &mut self,
        batches: Vec<RecordBatch>,
        watermarks: Option<BatchWatermarks>,
    ) -> Result<Vec<RecordBatch>> {
        let watermarks = watermarks.filter(|_| self.uses_watermark());
        let started = std::time::Instant::now();
        let (mut updated, mut dropped) = (0u64, 0u64);
        let mut out = Vec::with_capacity(batches.len());
        for batch in batches {
            let columns: Vec<_> = self
                .keys
                .iter()
                .map(|&i| Arc::clone(batch.column(i)))
                .collect();
            let rows = self.converter.convert_columns(&columns)?;
            let times = match self.event_time {
                Some((i, _)) => Some(arrow::compute::cast(
                    batch.column(i),
                    &DataType::Timestamp(TimeUnit::Millisecond, None),
                )?),
                None => None,
            };
            let times = times
                .as_ref()
                .map(|t| t.as_primitive::<TimestampMillisecondType>());
            let mut keep = Vec::with_capacity(batch.num_rows());
            for (row, key) in rows.iter().enumerate() {
                let time = times.and_then(|t| t.is_valid(row).then(|| t.value(row)));
                if let (Some(watermarks), Some(time)) = (watermarks, time)
                    && watermarks.row_is_late(time)
                {
                    dropped += 1;
                    keep.push(false);
                    continue;
                }
                if self.seen.contains_key(key.as_ref()) {
                    keep.push(false);
                    continue;
                }
                let expires = match (self.mode, time, self.event_time) {
                    (DedupMode::WithinWatermark, Some(t), Some((_, delay))) => {
                        t.saturating_add(delay)
                    }
                    (DedupMode::DropDuplicates, Some(t), _) if self.event_time_is_key => t,
                    _ => i64::MAX,
                };
                self.seen.insert(key.as_ref().to_vec(), expires);
                updated += 1;
                keep.push(true);
            }
            out.push(filter_record_batch(&batch, &BooleanArray::from(keep))?);
        }
        let before = self.seen.len();
        if let Some(watermarks) = watermarks {
            self.seen
                .retain(|_, expires| !watermarks.key_expired(*expires));
        }
        let removed = (before - self.seen.len()) as u64;
        self.progress = StateOperatorProgress {
            operator_name: "dedupe".into(),
            num_rows_total: self.seen.len() as u64,
            num_rows_updated: updated,
            num_rows_removed: removed,
            num_rows_dropped_by_watermark: dropped,
            memory_used_bytes: self.seen.keys().map(|k| k.len() as u64 + 8).sum(),
            commit_time_ms: started.elapsed().as_millis() as u64,
        };
        Ok(out)
    }
}

impl StatefulOperator for Deduplicator {
    fn state_name(&self) -> &str {
        &self.state_name
    }

    /// The key columns and each key's expiry, as Arrow IPC.
    fn encode_state(&self, _partition: usize) -> Result<Vec<u8>> {
        let mut entries: Vec<(&Vec<u8>, i64)> = self.seen.iter().map(|(k, v)| (k, *v)).collect();
        entries.sort_unstable();
        let parser = self.converter.parser();
        let mut columns = self
            .converter
            .convert_rows(entries.iter().map(|(k, _)| parser.parse(k)))?;
        columns.push(Arc::new(Int64Array::from_iter_values(
            entries.iter().map(|(_, v)| *v),
        )));
        let batch = RecordBatch::try_new(self.state_schema.clone(), columns)?;
        codec::encode(&self.state_schema, Some(&batch))
    }

    fn restore_state(&mut self, parts: Vec<StoredState>) -> Result<()> {
        let part = single_part(parts, &self.state_name)?;
        let batch = codec::decode(
            &part.bytes,
            &self.state_schema,
            &part.location,
            "the deduplication keys changed",
        )?;
        let keys = self
            .converter
            .convert_columns(&batch.columns()[..self.keys.len()])?;
        let expiry = batch
            .column(self.keys.len())
            .as_primitive::<arrow::datatypes::Int64Type>();
        self.seen = keys
            .iter()
            .enumerate()
            .map(|(row, key)| (key.as_ref().to_vec(), expiry.value(row)))
            .collect();
        Ok(())
    }

    fn progress(&self) -> &StateOperatorProgress {
        &self.progress
    }

    /// Every deduplication runs the watermark's no-data batches, as Spark's does.
    fn waits_on_watermark(&self) -> bool {
        true
    }
}
