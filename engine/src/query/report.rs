//! What one trigger measures (phase timings, rows and malformed records per source, event
//! times, state operators) and the progress report built from it (Spark's
//! `StreamingQueryProgress`), logged and handed to the query's handles.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::handle::Shared;
use crate::checkpoint::SourceRange;
use crate::json::MalformedStats;
use crate::offset::Offset;
use crate::progress::{
    SinkProgress, SourceProgress, StateOperatorProgress, StreamingQueryProgress, rate,
};
use crate::source::Source;
use crate::watermark::{EventTimeStats, format_millis};

/// A trigger without data is reported at most this often (Spark's
/// `noDataProgressEventInterval`).
const NO_DATA_PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// Phase timings of one trigger, by Spark's phase names (`latestOffset`, `walCommit`,
/// `getBatch`, `addBatch`, `commitOffsets`, `triggerExecution`).
#[derive(Default)]
pub(super) struct Timings(BTreeMap<String, u64>);

impl Timings {
    /// Adds the time since `since` to `phase` and returns now, the start of the next phase.
    pub(super) fn record(&mut self, phase: &str, since: Instant) -> Instant {
        let now = Instant::now();
        *self.0.entry(phase.to_string()).or_default() += (now - since).as_millis() as u64;
        now
    }
}

/// What the loop measures during one trigger, for its progress report.
pub(super) struct TriggerRun {
    /// When the trigger started, wall clock (the report's timestamp).
    pub(super) wall_start: chrono::DateTime<chrono::Utc>,
    /// When the trigger started, monotonic.
    pub(super) started: Instant,
    /// Phase timings.
    pub(super) timings: Timings,
    /// Per source, by name.
    pub(super) sources: BTreeMap<String, SourceRun>,
    /// `max`, `min`, `avg` event time and `watermark`, formatted as Spark does.
    pub(super) event_time: BTreeMap<String, String>,
    /// The stateful operators' progress rows.
    pub(super) state: Vec<StateOperatorProgress>,
}

impl TriggerRun {
    /// Starts measuring a trigger now.
    pub(super) fn start() -> Self {
        Self {
            wall_start: chrono::Utc::now(),
            started: Instant::now(),
            timings: Timings::default(),
            sources: BTreeMap::new(),
            event_time: BTreeMap::new(),
            state: Vec::new(),
        }
    }

    /// The source run of `name`, created empty on first use.
    pub(super) fn source(&mut self, name: &str) -> &mut SourceRun {
        self.sources.entry(name.to_string()).or_default()
    }

    /// Records the batch's event-time statistics and the watermark it ran with.
    pub(super) fn record_event_time(&mut self, stats: &EventTimeStats, watermark_ms: i64) {
        if let Some(avg) = stats.avg() {
            self.event_time
                .insert("max".into(), format_millis(stats.max));
            self.event_time
                .insert("min".into(), format_millis(stats.min));
            self.event_time.insert("avg".into(), format_millis(avg));
        }
        self.event_time
            .insert("watermark".into(), format_millis(watermark_ms));
    }
}

/// What the loop tracks about one source during a trigger.
#[derive(Default)]
pub(super) struct SourceRun {
    /// Rows read.
    pub(super) rows: u64,
    /// Malformed records met while reading.
    pub(super) malformed: MalformedStats,
    /// The source's latest offset, when the trigger asked for it.
    pub(super) latest: Option<Offset>,
    /// The source's own metrics, when the trigger asked for its latest offset.
    pub(super) metrics: BTreeMap<String, String>,
}

/// Where a report's sources stood: the batch's offset ranges, or (for a trigger without a
/// batch) the committed offsets.
pub(super) enum Offsets<'a> {
    /// The ranges the batch read.
    Batch(&'a BTreeMap<String, SourceRange>),
    /// The committed offsets, unchanged by a trigger that found no data.
    Committed(&'a BTreeMap<String, Offset>),
}

/// Builds the query's progress reports and publishes them to its handles.
pub(super) struct Reporter {
    id: String,
    run_id: String,
    name: Option<String>,
    /// The name, or the id, for logs.
    label: String,
    shared: Arc<Shared>,
    previous_trigger: Option<Instant>,
    last_report: Option<Instant>,
}

impl Reporter {
    /// A reporter for query `id` (named `name`, if any) in run `run_id`.
    pub(super) fn new(
        id: String,
        run_id: String,
        name: Option<String>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            label: name.clone().unwrap_or_else(|| id.clone()),
            id,
            run_id,
            name,
            shared,
            previous_trigger: None,
            last_report: None,
        }
    }

    /// Whether a trigger without data should be reported: the first, then one every 10 s.
    pub(super) fn no_data_report_due(&self) -> bool {
        self.last_report
            .is_none_or(|at| at.elapsed() >= NO_DATA_PROGRESS_INTERVAL)
    }

    /// Builds, logs and publishes the report of `run`, batch `batch_id`.
    pub(super) fn report(
        &mut self,
        run: TriggerRun,
        batch_id: u64,
        sources: &[(String, Box<dyn Source>)],
        offsets: Offsets<'_>,
        sink: SinkProgress,
    ) {
        let TriggerRun {
            wall_start,
            started,
            timings,
            sources: runs,
            event_time,
            state,
        } = run;
        let execution_ms = timings
            .0
            .get("triggerExecution")
            .copied()
            .unwrap_or_default();
        let since_previous = self.previous_trigger.map_or(execution_ms, |previous| {
            (started - previous).as_millis() as u64
        });
        self.previous_trigger = Some(started);
        self.last_report = Some(Instant::now());
        let sources: Vec<SourceProgress> = sources
            .iter()
            .map(|(name, source)| {
                let run = runs.get(name);
                let rows = run.map_or(0, |r| r.rows);
                let (start, end) = match offsets {
                    Offsets::Batch(ranges) => {
                        let range = ranges.get(name);
                        (range.map(|r| r.start.clone()), range.map(|r| r.end.clone()))
                    }
                    Offsets::Committed(committed) => {
                        (committed.get(name).cloned(), committed.get(name).cloned())
                    }
                };
                SourceProgress {
                    description: source.description(),
                    start_offset: start,
                    end_offset: end,
                    latest_offset: run.and_then(|r| r.latest.clone()),
                    num_input_rows: rows,
                    input_rows_per_second: rate(rows, since_previous),
                    processed_rows_per_second: rate(rows, execution_ms),
                    malformed_records: run.map(|r| r.malformed.clone()).unwrap_or_default(),
                    metrics: run.map(|r| r.metrics.clone()).unwrap_or_default(),
                }
            })
            .collect();
        let input_rows = sources.iter().map(|s| s.num_input_rows).sum();
        let progress = StreamingQueryProgress {
            id: self.id.clone(),
            run_id: self.run_id.clone(),
            name: self.name.clone(),
            timestamp: wall_start.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            batch_id,
            batch_duration: execution_ms,
            num_input_rows: input_rows,
            input_rows_per_second: rate(input_rows, since_previous),
            processed_rows_per_second: rate(input_rows, execution_ms),
            duration_ms: timings.0,
            event_time,
            state_operators: state,
            sources,
            sink,
        };
        tracing::info!(
            query = %self.label,
            batch = progress.batch_id,
            input_rows = progress.num_input_rows,
            rows_per_second = progress.processed_rows_per_second as u64,
            duration_ms = progress.batch_duration,
            output_rows = progress.sink.num_output_rows,
            "micro-batch progress"
        );
        self.shared.push_progress(progress);
    }
}
