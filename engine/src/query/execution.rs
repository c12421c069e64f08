//! The micro-batch loop (Spark's `MicroBatchExecution`, `docs/semantics.md` §1).
//!
//! Each trigger runs Spark's phases in order:
//!
//! 1. **Latest offsets and offset log** ([`MicroBatchExecution::construct_next_batch`]): ask
//!    every source for its latest offset within its read limit; if there is new data, or the
//!    watermark moved for a stateful operator waiting on it, write `offsets/N` ahead.
//! 2. **Read the batch** ([`MicroBatchExecution::read_batch`]): exactly those offsets, with
//!    each source's event times observed by the watermark.
//! 3. **Add the batch** ([`MicroBatchExecution::add_batch`]): run the planned SQL and its
//!    stateful operators with the batch's watermarks, hand the result to the sink as batch N.
//! 4. **Commit** ([`MicroBatchExecution::commit_batch`]): persist every stateful operator's
//!    state, write `commits/N`, then tell the sources and trim the checkpoint.
//!
//! A restart resumes after the last commit or re-runs the uncommitted batch N with its logged
//! offsets, watermark and timestamp (see [`super::recovery`]), so with an idempotent sink
//! every batch lands exactly once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use tokio::sync::watch;

use super::handle::Shared;
use super::report::{Offsets, Reporter, TriggerRun};
use crate::checkpoint::{Checkpoint, CommitEntry, OffsetEntry, SourceRange, checksum, state_unit};
use crate::error::{Result, SluiceError};
use crate::offset::Offset;
use crate::plan::StreamPlan;
use crate::progress::{SinkProgress, StreamingQueryProgress};
use crate::sink::Sink;
use crate::source::Source;
use crate::trigger::Trigger;
use crate::watermark::{EventTimeStats, WatermarkTracker, batch_stats};

/// A planned query and its checkpoint: runs micro-batches one trigger at a time.
///
/// [`StreamingQueryBuilder::start`](super::StreamingQueryBuilder::start) drives it in a
/// background loop; [`StreamingQueryBuilder::build`](super::StreamingQueryBuilder::build) hands
/// it over to be driven by the caller.
pub struct MicroBatchExecution {
    /// The name, or the id, for logs and errors.
    pub(super) label: String,
    pub(super) id: String,
    pub(super) run_id: String,
    pub(super) name: Option<String>,
    pub(super) sources: Vec<(String, Box<dyn Source>)>,
    pub(super) sink: Box<dyn Sink>,
    /// The SQL and its stateful operators.
    pub(super) plan: StreamPlan,
    pub(super) checkpoint: Checkpoint,
    pub(super) trigger: Trigger,
    /// End offsets of the last committed batch: where the next batch starts.
    pub(super) committed: BTreeMap<String, Offset>,
    pub(super) next_batch_id: u64,
    /// The event-time column of each source that declares a watermark.
    pub(super) event_time_columns: BTreeMap<String, String>,
    /// The query's watermarks: the next batch's, and the one the last batch ran with.
    pub(super) tracker: WatermarkTracker,
    /// Per stateful operator, the batch whose checkpointed state equals the one in memory, and
    /// that state file's checksum.
    pub(super) state_versions: BTreeMap<String, (u64, String)>,
    /// Whether this run already swept the checkpoint of entries beyond retention.
    pub(super) swept: bool,
    /// A logged but uncommitted batch to run again before anything else.
    pub(super) pending: Option<OffsetEntry>,
    /// The batch run again after a restart, until it commits (its attempts are then forgotten).
    pub(super) rerun: Option<u64>,
    pub(super) shared: Arc<Shared>,
    pub(super) reporter: Reporter,
}

impl MicroBatchExecution {
    /// The query id, stable across restarts from the same checkpoint.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The schema of the query's output.
    pub fn output_schema(&self) -> arrow::datatypes::SchemaRef {
        self.plan.schema()
    }

    /// The most recent progress reports (at most 100), oldest first.
    pub fn recent_progress(&self) -> Vec<StreamingQueryProgress> {
        self.shared.recent_progress()
    }

    /// The id the next new batch will get.
    pub fn next_batch_id(&self) -> u64 {
        self.next_batch_id
    }

    /// Runs triggers until `stop` is set, an available-now run has nothing left, or a batch
    /// fails.
    pub(super) async fn run(&mut self, mut stop: watch::Receiver<bool>) -> Result<()> {
        loop {
            if *stop.borrow() {
                return Ok(());
            }
            let started = Instant::now();
            if self.trigger == Trigger::AvailableNow {
                let backlog = self.backlog();
                self.shared.update(|s| {
                    s.backlog = backlog;
                    s.backlog_total = s.backlog_total.or(backlog);
                });
            }
            let had_data = self.run_trigger().await?;
            if !had_data && self.trigger == Trigger::AvailableNow {
                return Ok(());
            }
            let delay = self.trigger.delay(started.elapsed(), had_data);
            if !delay.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    /// What remains of an available-now run after the committed offsets, if every source
    /// can tell.
    fn backlog(&self) -> Option<u64> {
        self.sources
            .iter()
            .map(|(name, source)| source.backlog(&self.committed[name.as_str()]))
            .sum()
    }

    /// Runs one trigger: the uncommitted batch left by a crash if there is one, else a new
    /// batch if any source has new data (or the watermark moved for a stateful operator).
    /// Returns whether a batch ran.
    pub async fn run_trigger(&mut self) -> Result<bool> {
        let mut run = TriggerRun::start();
        let mut trigger = 0;
        self.shared.update(|s| {
            s.triggers += 1;
            trigger = s.triggers;
            s.trigger_active = true;
            s.message = "Getting offsets from sources".into();
        });

        let entry = match self.pending.take() {
            Some(entry) => entry,
            None => match self.construct_next_batch(&mut run).await? {
                Some(entry) => entry,
                None => {
                    self.shared.update(|s| {
                        s.idle_trigger = trigger;
                        s.trigger_active = false;
                        s.data_available = false;
                        s.message = "Waiting for data to arrive".into();
                    });
                    if self.reporter.no_data_report_due() {
                        run.timings.record("triggerExecution", run.started);
                        self.reporter.report(
                            run,
                            self.next_batch_id,
                            &self.sources,
                            Offsets::Committed(&self.committed),
                            SinkProgress {
                                description: self.sink.description(),
                                num_output_rows: 0,
                                metrics: BTreeMap::new(),
                            },
                        );
                    }
                    return Ok(false);
                }
            },
        };
        self.shared.update(|s| {
            s.data_available = true;
            s.message = format!("Processing new data (batch {})", entry.batch_id);
        });

        let phase = Instant::now();
        let (inputs, event_times) = self.read_batch(&entry, &mut run).await?;
        let phase = run.timings.record("getBatch", phase);
        let output_rows = self.add_batch(&entry, inputs).await?;
        let phase = run.timings.record("addBatch", phase);
        self.commit_batch(&entry, &event_times, &mut run).await?;
        run.timings.record("commitOffsets", phase);
        run.timings.record("triggerExecution", run.started);

        self.next_batch_id = entry.batch_id + 1;
        self.reporter.report(
            run,
            entry.batch_id,
            &self.sources,
            Offsets::Batch(&entry.sources),
            SinkProgress {
                description: self.sink.description(),
                num_output_rows: output_rows,
                metrics: self.sink.metrics(),
            },
        );
        self.shared.update(|s| {
            s.trigger_active = false;
            s.message = "Waiting for next trigger".into();
        });
        Ok(true)
    }

    /// Phase 1: asks the sources for their latest offsets and, if a batch is due, logs it in
    /// `offsets/N` before anything is read. `None` when there is nothing to do.
    async fn construct_next_batch(&mut self, run: &mut TriggerRun) -> Result<Option<OffsetEntry>> {
        let mut ranges = BTreeMap::new();
        let mut has_data = false;
        let phase = Instant::now();
        for (name, source) in &mut self.sources {
            let start = self.committed[name.as_str()].clone();
            let end = source
                .latest_offset(&start, source.default_read_limit())
                .await?;
            has_data |= end != start;
            let reported = run.source(name);
            reported.metrics = source.metrics(&end);
            reported.latest = Some(end.clone());
            ranges.insert(name.clone(), SourceRange { start, end });
        }
        let phase = run.timings.record("latestOffset", phase);
        let waiting = self
            .plan
            .operators()
            .iter()
            .any(|operator| operator.waits_on_watermark());
        if !has_data && !self.tracker.runs_no_data_batch(waiting) {
            return Ok(None);
        }
        let entry = OffsetEntry {
            batch_id: self.next_batch_id,
            batch_watermark_ms: self.tracker.current(),
            batch_timestamp_ms: run.wall_start.timestamp_millis(),
            sources: ranges,
        };
        self.checkpoint.write_offsets(&entry).await?;
        run.timings.record("walCommit", phase);
        Ok(Some(entry))
    }

    /// Phase 2: reads each source's logged range, checks its schema, counts its rows and
    /// malformed records, and observes its event times for the watermark.
    async fn read_batch(
        &mut self,
        entry: &OffsetEntry,
        run: &mut TriggerRun,
    ) -> Result<(BTreeMap<String, Vec<RecordBatch>>, EventTimeStats)> {
        let mut inputs = BTreeMap::new();
        let mut event_times = EventTimeStats::default();
        for (name, source) in &mut self.sources {
            let range = &entry.sources[name.as_str()];
            let batch = if range.start == range.end {
                Default::default()
            } else {
                source.get_batch(&range.start, &range.end).await?
            };
            let schema = source.schema();
            if let Some(bad) = batch.batches.iter().find(|b| b.schema() != schema) {
                return Err(SluiceError::source(
                    name.as_str(),
                    format!(
                        "returned a batch of schema {:?}, declared {:?}",
                        bad.schema(),
                        schema
                    ),
                ));
            }
            let source_run = run.source(name);
            source_run.rows = batch.batches.iter().map(|b| b.num_rows() as u64).sum();
            source_run.malformed = batch.malformed;
            if source_run.malformed.count > 0 {
                tracing::warn!(
                    query = %self.label, source = %name, batch = entry.batch_id,
                    malformed = source_run.malformed.count,
                    first_error = source_run.malformed.first_error.as_deref().unwrap_or_default(),
                    "malformed records"
                );
            }
            if let Some(column) = self.event_time_columns.get(name.as_str()) {
                let stats = batch_stats(&batch.batches, column)?;
                self.tracker.observe(name, &stats);
                event_times.merge(stats);
            }
            inputs.insert(name.clone(), batch.batches);
        }
        Ok((inputs, event_times))
    }

    /// Phase 3: runs the plan and its stateful operators on the batch's rows with the batch's
    /// watermarks and hands the output to the sink. Returns the number of rows written.
    async fn add_batch(
        &mut self,
        entry: &OffsetEntry,
        inputs: BTreeMap<String, Vec<RecordBatch>>,
    ) -> Result<u64> {
        let watermarks = self.tracker.batch_watermarks(entry.batch_watermark_ms);
        let output = self
            .plan
            .execute(inputs, entry.batch_timestamp_ms, watermarks)
            .await?;
        self.sink.add_batch(entry.batch_id, &output).await?;
        Ok(output.iter().map(|b| b.num_rows() as u64).sum())
    }

    /// Phase 4: persists every stateful operator's state (carried over when the batch did not
    /// change it), writes `commits/N` with the next batch's watermark, tells the sources what
    /// is committed, and trims the checkpoint to its retention.
    async fn commit_batch(
        &mut self,
        entry: &OffsetEntry,
        event_times: &EventTimeStats,
        run: &mut TriggerRun,
    ) -> Result<()> {
        let mut state_checksums = BTreeMap::new();
        for operator in self.plan.operators() {
            for partition in 0..operator.partitions() {
                let unit = state_unit(operator.state_name(), partition);
                let previous = entry.batch_id.checked_sub(1);
                let stored_previous = self
                    .state_versions
                    .get(&unit)
                    .filter(|(version, _)| Some(*version) == previous)
                    .map(|(_, sum)| sum.clone());
                let sum = match stored_previous {
                    Some(sum) if !operator.state_changed(partition) => {
                        self.checkpoint.carry_state(&unit, entry.batch_id).await?;
                        sum
                    }
                    _ => {
                        let bytes = operator.encode_state(partition)?;
                        let sum = checksum(&bytes);
                        self.checkpoint
                            .write_state(&unit, entry.batch_id, bytes)
                            .await?;
                        sum
                    }
                };
                self.state_versions
                    .insert(unit.clone(), (entry.batch_id, sum.clone()));
                state_checksums.insert(unit, sum);
            }
            run.state.push(operator.progress().clone());
        }
        let next_watermark = self.tracker.finish_batch(entry.batch_watermark_ms);
        self.checkpoint
            .write_commit(&CommitEntry {
                batch_id: entry.batch_id,
                next_batch_watermark_ms: next_watermark,
                state_checksums,
            })
            .await?;
        if self.rerun == Some(entry.batch_id) {
            self.checkpoint.clear_reruns(entry.batch_id).await?;
            self.rerun = None;
        }
        if self.tracker.is_enabled() {
            run.record_event_time(event_times, entry.batch_watermark_ms);
        }
        for (name, source) in &mut self.sources {
            let end = entry.sources[name.as_str()].end.clone();
            source.commit(&end).await?;
            self.committed.insert(name.clone(), end);
        }
        if self.swept {
            let operators: Vec<String> = self.state_versions.keys().cloned().collect();
            self.checkpoint
                .purge_expired(entry.batch_id, &operators)
                .await?;
        } else {
            // The first batch of a run sweeps whatever an earlier run left beyond retention.
            self.checkpoint.purge(entry.batch_id).await?;
            self.swept = true;
        }
        Ok(())
    }
}
