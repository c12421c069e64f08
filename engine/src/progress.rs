//! Progress reports: one [`StreamingQueryProgress`] per trigger, with Spark's field names
//! (`docs/semantics.md` §9), so tools reading Spark's progress JSON read ours.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::json::MalformedStats;
use crate::offset::Offset;

/// The progress of one trigger of a streaming query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamingQueryProgress {
    /// The query id, stable across restarts.
    pub id: String,
    /// This run's id, new at every start.
    pub run_id: String,
    /// The query name, if any.
    pub name: Option<String>,
    /// When the trigger started, ISO 8601 in UTC with milliseconds.
    pub timestamp: String,
    /// The batch this trigger ran (for a trigger without data: the next batch's id).
    pub batch_id: u64,
    /// Wall time of the trigger, ms.
    pub batch_duration: u64,
    /// Rows read from all sources.
    pub num_input_rows: u64,
    /// Rows read per second of wall time since the previous trigger started.
    pub input_rows_per_second: f64,
    /// Rows read per second of this trigger's execution time.
    pub processed_rows_per_second: f64,
    /// Time per phase, ms: `latestOffset`, `walCommit`, `getBatch`, `addBatch`,
    /// `commitOffsets`, `triggerExecution` (no `queryPlanning`: the plan is made once).
    pub duration_ms: BTreeMap<String, u64>,
    /// Event-time statistics (`max`, `min`, `avg`, `watermark`), when the query has a watermark.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub event_time: BTreeMap<String, String>,
    /// One entry per stateful operator.
    pub state_operators: Vec<StateOperatorProgress>,
    /// One entry per source.
    pub sources: Vec<SourceProgress>,
    /// The sink.
    pub sink: SinkProgress,
}

/// Progress of one stateful operator (Spark's `StateOperatorProgress`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateOperatorProgress {
    /// Operator name, e.g. `stateStoreSave`.
    pub operator_name: String,
    /// Rows held in state after the batch.
    pub num_rows_total: u64,
    /// Rows added or changed by the batch.
    pub num_rows_updated: u64,
    /// Rows evicted by the batch.
    pub num_rows_removed: u64,
    /// Input rows dropped as later than the watermark.
    pub num_rows_dropped_by_watermark: u64,
    /// Memory held by the state, bytes.
    pub memory_used_bytes: u64,
    /// Time spent committing the state, ms.
    pub commit_time_ms: u64,
}

/// Progress of one source (Spark's `SourceProgress`, plus malformed-record counts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceProgress {
    /// The source's description.
    pub description: String,
    /// Offset the batch started from (`null` before the first batch).
    pub start_offset: Option<Offset>,
    /// Offset the batch ended at.
    pub end_offset: Option<Offset>,
    /// The latest offset the source reported in this trigger.
    pub latest_offset: Option<Offset>,
    /// Rows read from this source.
    pub num_input_rows: u64,
    /// Rows per second of wall time since the previous trigger.
    pub input_rows_per_second: f64,
    /// Rows per second of this trigger's execution time.
    pub processed_rows_per_second: f64,
    /// Records that could not be decoded, whatever the parse mode did with them (Sluice).
    pub malformed_records: MalformedStats,
    /// The source's own metrics of the trigger (Spark's `metrics`): the Kafka source reports
    /// how far the batch's end is behind the latest offsets (`minOffsetsBehindLatest`,
    /// `maxOffsetsBehindLatest`, `avgOffsetsBehindLatest`, as Spark, and one
    /// `offsetsBehindLatest:<topic>:<partition>` per partition); empty for other sources.
    #[serde(default)]
    pub metrics: BTreeMap<String, String>,
}

/// Progress of the sink (Spark's `SinkProgress`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SinkProgress {
    /// The sink's description.
    pub description: String,
    /// Rows handed to the sink in this batch.
    pub num_output_rows: u64,
    /// The sink's own metrics of the batch (Spark's `metrics`): the relational sinks report
    /// `numRetries`, the transient failures retried while writing it; empty for other sinks.
    #[serde(default)]
    pub metrics: BTreeMap<String, String>,
}

/// Rows per second, 0 when no time elapsed (as Spark reports it).
pub fn rate(rows: u64, millis: u64) -> f64 {
    if millis == 0 {
        0.0
    } else {
        rows as f64 * 1000.0 / millis as f64
    }
}

impl StreamingQueryProgress {
    /// The progress as pretty JSON, as Spark's `prettyJson`.
    pub fn pretty_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
