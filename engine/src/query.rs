//! Streaming queries: the builder (Spark's `readStream`/`writeStream`), the micro-batch loop
//! and the handle of a running query.
//!
//! The loop follows Spark's `MicroBatchExecution` (`../shared/spec/spark-semantics.md` §1):
//! for each trigger, ask every source for its latest offset within its read limit; if there is
//! new data, write `offsets/N` ahead, read exactly those offsets, run the planned SQL, hand the
//! result to the sink as batch N, write `commits/N`, then tell the sources. A restart resumes
//! after the last commit or re-runs the uncommitted batch N with its logged offsets and
//! timestamp, so with an idempotent sink every batch lands exactly once.

use std::collections::{BTreeMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;
use futures::FutureExt;
use tokio::sync::watch;

use crate::aggregate::BatchWatermarks;
use crate::checkpoint::{
    Checkpoint, CommitEntry, OffsetEntry, Recovery, SourceRange, plan_recovery,
};
use crate::dedup::{DedupMode, Deduplicator};
use crate::error::{Result, SluiceError};
use crate::offset::Offset;
use crate::output_mode::{OutputMode, QueryShape, check_output_mode};
use crate::plan::{StreamPlan, streaming_session};
use crate::progress::{
    SinkProgress, SourceProgress, StateOperatorProgress, StreamingQueryProgress, rate,
};
use crate::sink::{Sink, SinkContext};
use crate::source::Source;
use crate::trigger::Trigger;
use crate::watermark::{
    EventTimeStats, WatermarkPolicy, WatermarkSpec, WatermarkTracker, batch_stats,
    check_event_time_column, format_millis,
};

/// Name of the aggregation's state directory in the checkpoint (`state/0/<batch>.arrow`).
const AGGREGATE_OPERATOR: &str = "0";

/// Progress reports kept by a query handle (Spark's `numRecentProgressUpdates`).
const RECENT_PROGRESS: usize = 100;

/// A trigger without data is reported at most this often (Spark's
/// `noDataProgressEventInterval`).
const NO_DATA_PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

/// Builds and starts a streaming query.
///
/// ```no_run
/// # async fn example() -> sluice_engine::Result<()> {
/// use std::sync::Arc;
/// use arrow::datatypes::{DataType, Field, Schema};
/// use sluice_engine::{ConsoleSink, FileSource, JsonOptions, StreamingQueryBuilder, Trigger};
///
/// let schema = Arc::new(Schema::new(vec![
///     Field::new("symbol", DataType::Utf8, true),
///     Field::new("close_price", DataType::Float64, true),
/// ]));
/// let query = StreamingQueryBuilder::new()
///     .source("ticks", FileSource::new("ticks", "data/in", schema, JsonOptions::default())?)
///     .sql("SELECT symbol, close_price FROM ticks WHERE close_price > 100")
///     .sink(ConsoleSink::stdout())
///     .trigger(Trigger::AvailableNow)
///     .checkpoint_location("data/checkpoint")
///     .start()
///     .await?;
/// query.await_termination().await?;
/// # Ok(()) }
/// ```
pub struct StreamingQueryBuilder {
    session: SessionContext,
    sources: Vec<(String, Box<dyn Source>)>,
    sql: Option<String>,
    sink: Option<Box<dyn Sink>>,
    trigger: Trigger,
    checkpoint: Option<String>,
    retained_batches: Option<u64>,
    name: Option<String>,
    output_mode: OutputMode,
    watermarks: BTreeMap<String, WatermarkSpec>,
    watermark_policy: WatermarkPolicy,
    per_batch: bool,
    dedups: BTreeMap<String, (Vec<String>, DedupMode)>,
}

impl Default for StreamingQueryBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamingQueryBuilder {
    /// A builder with a fresh DataFusion session configured for micro-batches.
    pub fn new() -> Self {
        Self {
            session: streaming_session(),
            sources: Vec::new(),
            sql: None,
            sink: None,
            trigger: Trigger::Default,
            checkpoint: None,
            retained_batches: None,
            name: None,
            output_mode: OutputMode::Append,
            watermarks: BTreeMap::new(),
            watermark_policy: WatermarkPolicy::Min,
            per_batch: false,
            dedups: BTreeMap::new(),
        }
    }

    /// The DataFusion session the query is planned in: register UDFs, UDAFs and static tables
    /// here before `start`.
    pub fn session(&self) -> &SessionContext {
        &self.session
    }

    /// Adds a streaming source, queried in SQL as table `name`.
    pub fn source(mut self, name: impl Into<String>, source: impl Source) -> Self {
        self.sources.push((name.into(), Box::new(source)));
        self
    }

    /// The query (a `SELECT`) over the sources and the session's tables.
    pub fn sql(mut self, sql: impl Into<String>) -> Self {
        self.sql = Some(sql.into());
        self
    }

    /// Where the output goes.
    pub fn sink(mut self, sink: impl Sink) -> Self {
        self.sink = Some(Box::new(sink));
        self
    }

    /// When batches run (default: [`Trigger::Default`]).
    pub fn trigger(mut self, trigger: Trigger) -> Self {
        self.trigger = trigger;
        self
    }

    /// The checkpoint directory or URL. Without one the query keeps its checkpoint in memory
    /// and starts from scratch every time (fine for console output and tests).
    pub fn checkpoint_location(mut self, location: impl Into<String>) -> Self {
        self.checkpoint = Some(location.into());
        self
    }

    /// How many offset and commit entries the checkpoint keeps (default 100).
    pub fn retained_batches(mut self, batches: u64) -> Self {
        self.retained_batches = Some(batches);
        self
    }

    /// What the sink receives each batch (default: append). Checked against the query when it
    /// starts, with Spark's rules.
    pub fn output_mode(mut self, mode: OutputMode) -> Self {
        self.output_mode = mode;
        self
    }

    /// Declares a watermark on source `source`'s timestamp column `column`: data more than
    /// `delay` behind the latest event time seen may be dropped as late, and windows that end
    /// before the watermark are final (Spark's `withWatermark`).
    pub fn watermark(
        mut self,
        source: impl Into<String>,
        column: impl Into<String>,
        delay: Duration,
    ) -> Self {
        self.watermarks.insert(
            source.into(),
            WatermarkSpec {
                column: column.into(),
                delay_ms: i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
            },
        );
        self
    }

    /// How the watermarks of several sources combine (default: the minimum).
    pub fn watermark_policy(mut self, policy: WatermarkPolicy) -> Self {
        self.watermark_policy = policy;
        self
    }

    /// Drops rows of `source` whose `columns` repeat a row already seen, in any batch (Spark's
    /// `dropDuplicates`). With a watermark on the source and its event-time column among the
    /// keys, late rows are dropped and old keys forgotten; otherwise keys are kept forever.
    pub fn drop_duplicates<S: Into<String>>(
        self,
        source: impl Into<String>,
        columns: impl IntoIterator<Item = S>,
    ) -> Self {
        self.deduplicate(source.into(), columns, DedupMode::DropDuplicates)
    }

    /// Drops rows of `source` whose `columns` repeat a row seen less than the watermark delay
    /// earlier in event time (Spark's `dropDuplicatesWithinWatermark`); needs a watermark on
    /// the source.
    pub fn drop_duplicates_within_watermark<S: Into<String>>(
        self,
        source: impl Into<String>,
        columns: impl IntoIterator<Item = S>,
    ) -> Self {
        self.deduplicate(source.into(), columns, DedupMode::WithinWatermark)
    }

    fn deduplicate<S: Into<String>>(
        mut self,
        source: String,
        columns: impl IntoIterator<Item = S>,
        mode: DedupMode,
    ) -> Self {
        let columns = columns.into_iter().map(Into::into).collect();
        self.dedups.insert(source, (columns, mode));
        self
    }

    /// Runs the SQL on each micro-batch alone, as a batch query, like Spark's `foreachBatch`:
    /// aggregations, `DISTINCT` and `DISTINCT ON` see only the batch's rows and keep no state.
    /// This is how the seed job deduplicates per batch.
    pub fn foreach_batch(mut self) -> Self {
        self.per_batch = true;
        self
    }

    /// A name for the query, shown in progress and logs.
    pub fn query_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Checks the declarations and plans the SQL: everything `build` and `explain` share.
    async fn plan(&self) -> Result<(StreamPlan, BTreeMap<String, Deduplicator>)> {
        let sql = self
            .sql
            .as_deref()
            .ok_or_else(|| SluiceError::Config("the query has no SQL".into()))?;
        if self.sources.is_empty() {
            return Err(SluiceError::Config("the query has no source".into()));
        }
        let mut names: Vec<&String> = self.sources.iter().map(|(name, _)| name).collect();
        names.sort();
        if let Some(pair) = names.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(SluiceError::Config(format!(
                "source '{}' is registered twice",
                pair[0]
            )));
        }
        let tables: Vec<_> = self
            .sources
            .iter()
            .map(|(name, s)| (name.clone(), s.schema()))
            .collect();
        let schema_of = |source: &str, what: &str| {
            tables
                .iter()
                .find(|(name, _)| name == source)
                .map(|(_, schema)| schema.clone())
                .ok_or_else(|| {
                    SluiceError::Config(format!("{what} declared on unknown source '{source}'"))
                })
        };
        for (source, spec) in &self.watermarks {
            check_event_time_column(
                source,
                schema_of(source, "watermark")?.as_ref(),
                &spec.column,
            )?;
        }
        let mut dedups = BTreeMap::new();
        for (source, (columns, mode)) in &self.dedups {
            let schema = schema_of(source, "deduplication")?;
            let dedup =
                Deduplicator::new(source, &schema, columns, *mode, self.watermarks.get(source))?;
            dedups.insert(source.clone(), dedup);
        }
        let plan = StreamPlan::new(self.session.clone(), &tables, sql, self.per_batch).await?;
        if !self.per_batch {
            plan.check_joins()?;
            let shape = QueryShape {
                aggregation: plan.aggregate().is_some(),
                window_key: plan.aggregate().is_some_and(|a| a.has_window_key()),
                session_window: plan.aggregate().is_some_and(|a| a.has_session_window()),
                watermark: !self.watermarks.is_empty(),
                sort: plan.sorts(),
            };
            check_output_mode(shape, self.output_mode)?;
        }
        Ok((plan, dedups))
    }

    /// Describes the streaming plan without running it or touching the checkpoint: sources with
    /// their watermarks and deduplication, the stateful operators and their keys, the output
    /// mode, the sink and trigger, then DataFusion's physical plan.
    pub async fn explain(&self) -> Result<String> {
        let (plan, _) = self.plan().await?;
        let mut text = String::from("== Streaming query ==\n");
        if let Some(name) = &self.name {
            text += &format!("name: {name}\n");
        }
        text += "sources:\n";
        for (name, source) in &self.sources {
            text += &format!("  {name}: {}", source.description());
            if let Some(spec) = self.watermarks.get(name) {
                text += &format!(", watermark {} - {} ms", spec.column, spec.delay_ms);
            }
            if let Some((columns, mode)) = self.dedups.get(name) {
                let function = match mode {
                    DedupMode::DropDuplicates => "dropDuplicates",
                    DedupMode::WithinWatermark => "dropDuplicatesWithinWatermark",
                };
                text += &format!(", {function}({})", columns.join(", "));
            }
            text += "\n";
        }
        if self.watermarks.len() > 1 {
            text += &format!("watermark policy: {:?}\n", self.watermark_policy);
        }
        match (self.per_batch, plan.aggregate()) {
            (true, _) => text += "execution: per batch (foreachBatch), no state across batches\n",
            (false, Some(aggregate)) => {
                text += &format!("stateful operator: {}\n", aggregate.describe())
            }
            (false, None) => text += "stateful operator: none\n",
        }
        text += &format!("output mode: {}\n", self.output_mode);
        if let Some(sink) = &self.sink {
            text += &format!("sink: {}\n", sink.description());
        }
        text += &format!(
            "trigger: {:?}\n== Physical plan ==\n{}",
            self.trigger,
            plan.display()
        );
        Ok(text)
    }

    /// Plans the query and recovers from the checkpoint, without starting a loop: the caller
    /// drives the batches with [`MicroBatchExecution::run_trigger`] (tests, benchmarks, or an
    /// application with its own scheduler).
    ///
    /// Everything that can be checked before data flows is checked here: the SQL, the
    /// checkpoint's consistency and that it belongs to these sources.
    pub async fn build(self) -> Result<MicroBatchExecution> {
        let (plan, dedups) = self.plan().await?;
        let mut sink = self
            .sink
            .ok_or_else(|| SluiceError::Config("the query has no sink".into()))?;

        let location = self.checkpoint.unwrap_or_else(|| "memory:///".to_string());
        let mut checkpoint = Checkpoint::open(&location)?;
        if let Some(batches) = self.retained_batches {
            checkpoint = checkpoint.with_retained_batches(batches);
        }
        let id = checkpoint.metadata().await?.id;
        let recovery = plan_recovery(
            checkpoint.latest_offsets().await?,
            checkpoint.latest_commit().await?,
        )?;

        let output_mode = if self.per_batch {
            OutputMode::Append
        } else {
            self.output_mode
        };
        sink.open(&SinkContext {
            query_id: id.clone(),
            query_name: self.name.clone(),
            schema: plan.schema(),
            output_mode,
            key_columns: match self.per_batch {
                true => None,
                false => plan.aggregate().and_then(|a| a.output_key_columns()),
            },
        })
        .await?;

        let (state, _) = watch::channel(LoopState::default());
        let mut execution = MicroBatchExecution {
            label: self.name.clone().unwrap_or_else(|| id.clone()),
            id,
            run_id: uuid::Uuid::new_v4().to_string(),
            name: self.name,
            sources: self.sources,
            sink,
            plan,
            checkpoint,
            trigger: self.trigger,
            committed: BTreeMap::new(),
            next_batch_id: 0,
            output_mode,
            tracker: WatermarkTracker::new(
                self.watermark_policy,
                self.watermarks
                    .iter()
                    .map(|(name, spec)| (name.clone(), spec.delay_ms))
                    .collect(),
                0,
            ),
            watermarks: self.watermarks,
            dedups,
            last_batch_watermark_ms: 0,
            swept: false,
            aggregate_state_version: None,
            pending: None,
            shared: Arc::new(Shared {
                state,
                progress: Mutex::new(VecDeque::new()),
            }),
            previous_trigger: None,
            last_progress: None,
        };
        execution.recover(recovery).await?;
        Ok(execution)
    }

    /// Plans the query, recovers from the checkpoint and starts the micro-batch loop on the
    /// Tokio runtime.
    pub async fn start(self) -> Result<StreamingQuery> {
        let mut execution = self.build().await?;
        let (stop, stop_rx) = watch::channel(false);
        let shared = execution.shared.clone();
        shared.update(|s| s.active = true);
        let query = StreamingQuery {
            id: execution.id.clone(),
            run_id: execution.run_id.clone(),
            name: execution.name.clone(),
            shared: shared.clone(),
            stop,
        };
        tokio::spawn(async move {
            let outcome = AssertUnwindSafe(execution.run(stop_rx))
                .catch_unwind()
                .await;
            let error = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("the micro-batch loop panicked".to_string()),
            };
            if let Some(error) = &error {
                tracing::error!(query = %execution.label, %error, "streaming query failed");
            }
            shared.update(|s| {
                s.active = false;
                s.trigger_active = false;
                s.error = error;
                s.message = "Stopped".into();
            });
        });
        Ok(query)
    }
}

/// The status of a query (Spark's `StreamingQueryStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryStatus {
    /// What the loop is doing.
    pub message: String,
    /// Whether the last trigger found new data.
    pub is_data_available: bool,
    /// Whether a trigger is running.
    pub is_trigger_active: bool,
    /// Whether the loop is still running.
    pub is_active: bool,
    /// For an available-now run, how much of the data to process remains, summed over the
    /// sources in their own units (rows, messages, files); `None` for other triggers or when a
    /// source cannot tell (Sluice; Spark has no such field).
    pub backlog: Option<u64>,
    /// The backlog when the available-now run started: its whole work.
    pub backlog_total: Option<u64>,
}

#[derive(Debug, Clone, Default)]
struct LoopState {
    active: bool,
    backlog: Option<u64>,
    backlog_total: Option<u64>,
    trigger_active: bool,
    data_available: bool,
    message: String,
    /// Number of triggers started so far.
    triggers: u64,
    /// Number of the latest trigger that found no new data.
    idle_trigger: u64,
    /// Why the loop stopped, if it failed.
    error: Option<String>,
}

struct Shared {
    state: watch::Sender<LoopState>,
    progress: Mutex<VecDeque<StreamingQueryProgress>>,
}

impl Shared {
    fn update(&self, change: impl FnOnce(&mut LoopState)) {
        self.state.send_modify(change);
    }

    fn push_progress(&self, progress: StreamingQueryProgress) {
        let mut recent = self.progress.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == RECENT_PROGRESS {
            recent.pop_front();
        }
        recent.push_back(progress);
    }
}

/// A running streaming query.
pub struct StreamingQuery {
    id: String,
    run_id: String,
    name: Option<String>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl StreamingQuery {
    /// The query id, stable across restarts from the same checkpoint.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// This run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The query name, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.id.clone())
    }

    /// The latest progress report.
    pub fn last_progress(&self) -> Option<StreamingQueryProgress> {
        self.shared
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .back()
            .cloned()
    }

    /// The most recent progress reports (at most 100), oldest first.
    pub fn recent_progress(&self) -> Vec<StreamingQueryProgress> {
        self.shared
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// What the query is doing now.
    pub fn status(&self) -> QueryStatus {
        let state = self.shared.state.borrow();
        QueryStatus {
            message: state.message.clone(),
            is_data_available: state.data_available,
            is_trigger_active: state.trigger_active,
            is_active: state.active,
            backlog: state.backlog,
            backlog_total: state.backlog_total,
        }
    }

    /// Whether the loop is still running.
    pub fn is_active(&self) -> bool {
        self.shared.state.borrow().active
    }

    /// Waits until everything available when this is called has been processed and committed
    /// (a trigger that started after the call found nothing new), or the query stopped.
    /// Returns the query's error if it failed.
    pub async fn process_all_available(&self) -> Result<()> {
        let mut state = self.shared.state.subscribe();
        let since = state.borrow().triggers;
        let _ = state
            .wait_for(|s| !s.active || s.idle_trigger > since)
            .await;
        self.failure()
    }

    /// Stops the query after the batch in progress, leaving a consistent checkpoint, and waits
    /// for it to stop. Returns the query's error if it had failed.
    pub async fn stop(&self) -> Result<()> {
        let _ = self.stop.send(true);
        self.await_termination().await
    }

    /// Waits until the query stops (by `stop`, at the end of an available-now run, or on an
    /// error, which is returned).
    pub async fn await_termination(&self) -> Result<()> {
        let mut state = self.shared.state.subscribe();
        let _ = state.wait_for(|s| !s.active).await;
        self.failure()
    }

    fn failure(&self) -> Result<()> {
        match &self.shared.state.borrow().error {
            None => Ok(()),
            Some(message) => Err(SluiceError::QueryTerminated {
                query: self.label(),
                message: message.clone(),
            }),
        }
    }
}

/// Phase timings of one trigger, in the order Spark reports them.
#[derive(Default)]
struct Timings(BTreeMap<String, u64>);

impl Timings {
    fn record(&mut self, phase: &str, since: Instant) -> Instant {
        let now = Instant::now();
        *self.0.entry(phase.to_string()).or_default() += (now - since).as_millis() as u64;
        now
    }
}

/// What the loop measures during one trigger, for its progress report.
struct TriggerRun {
    wall_start: chrono::DateTime<chrono::Utc>,
    started: Instant,
    timings: Timings,
    sources: BTreeMap<String, SourceRun>,
    event_time: BTreeMap<String, String>,
    state: Vec<StateOperatorProgress>,
}

/// What the loop tracks about one source during a trigger.
struct SourceRun {
    rows: u64,
    malformed: crate::json::MalformedStats,
    latest: Option<Offset>,
}

/// A planned query and its checkpoint: runs micro-batches one trigger at a time.
///
/// [`StreamingQueryBuilder::start`] drives it in a background loop; [`StreamingQueryBuilder::build`]
/// hands it over to be driven by the caller.
pub struct MicroBatchExecution {
    /// The name, or the id, for logs and errors.
    label: String,
    id: String,
    run_id: String,
    name: Option<String>,
    sources: Vec<(String, Box<dyn Source>)>,
    sink: Box<dyn Sink>,
    plan: StreamPlan,
    checkpoint: Checkpoint,
    trigger: Trigger,
    /// End offsets of the last committed batch: where the next batch starts.
    committed: BTreeMap<String, Offset>,
    next_batch_id: u64,
    output_mode: OutputMode,
    /// Watermarks declared per source.
    watermarks: BTreeMap<String, WatermarkSpec>,
    /// Deduplication declared per source.
    dedups: BTreeMap<String, Deduplicator>,
    /// The query's watermark: its current value is the next batch's `batchWatermarkMs`.
    tracker: WatermarkTracker,
    /// `batchWatermarkMs` of the last batch run: input of the next batch is late against it.
    last_batch_watermark_ms: i64,
    /// Whether this run already swept the checkpoint of entries beyond retention.
    swept: bool,
    /// The batch whose checkpointed aggregation state equals the one in memory.
    aggregate_state_version: Option<u64>,
    /// A logged but uncommitted batch to run again before anything else.
    pending: Option<OffsetEntry>,
    shared: Arc<Shared>,
    previous_trigger: Option<Instant>,
    last_progress: Option<Instant>,
}

impl MicroBatchExecution {
    /// Sets the start offsets from the checkpoint, checking it matches the sources.
    async fn recover(&mut self, recovery: Recovery) -> Result<()> {
        let check_sources = |entry: &OffsetEntry, checkpoint: &str| -> Result<()> {
            let logged: Vec<&String> = entry.sources.keys().collect();
            let mut ours: Vec<&String> = self.sources.iter().map(|(n, _)| n).collect();
            ours.sort();
            if logged != ours {
                return Err(SluiceError::checkpoint(
                    checkpoint,
                    format!(
                        "was written for sources {logged:?} but the query reads {ours:?}; \
                         use a new checkpoint location to change a query's sources"
                    ),
                ));
            }
            Ok(())
        };
        match recovery {
            Recovery::New => {
                for (name, source) in &mut self.sources {
                    let start = match self.checkpoint.source_start(name).await? {
                        Some(offset) => offset,
                        None => {
                            let offset = source.initial_offset().await?;
                            self.checkpoint.write_source_start(name, &offset).await?;
                            offset
                        }
                    };
                    self.committed.insert(name.clone(), start);
                }
            }
            Recovery::Resume { last, commit } => {
                check_sources(&last, self.checkpoint.display())?;
                for (name, source) in &mut self.sources {
                    let end = last.sources[name.as_str()].end.clone();
                    source.commit(&end).await?;
                    self.committed.insert(name.clone(), end);
                }
                self.next_batch_id = last.batch_id + 1;
                self.tracker.reset(commit.next_batch_watermark_ms);
                self.last_batch_watermark_ms = last.batch_watermark_ms;
                self.restore_state(last.batch_id).await?;
                tracing::info!(query = %self.label, batch = last.batch_id, "resuming after the last committed batch");
            }
            Recovery::Rerun(entry) => {
                check_sources(&entry, self.checkpoint.display())?;
                for (name, range) in &entry.sources {
                    self.committed.insert(name.clone(), range.start.clone());
                }
                self.next_batch_id = entry.batch_id;
                self.tracker.reset(entry.batch_watermark_ms);
                if let Some(previous) = entry.batch_id.checked_sub(1) {
                    let logged = self.checkpoint.offsets(previous).await?.ok_or_else(|| {
                        SluiceError::checkpoint(
                            self.checkpoint.display(),
                            format!("offsets/{previous} is missing"),
                        )
                    })?;
                    self.last_batch_watermark_ms = logged.batch_watermark_ms;
                    self.restore_state(previous).await?;
                }
                tracing::info!(query = %self.label, batch = entry.batch_id, "re-running the uncommitted batch with its logged offsets");
                self.pending = Some(entry);
            }
        }
        if self.trigger == Trigger::AvailableNow {
            for (_, source) in &mut self.sources {
                source.prepare_for_available_now().await?;
            }
        }
        Ok(())
    }

    /// The names of the stateful operators' state directories.
    fn state_operators(&self) -> Vec<String> {
        let aggregate = self
            .plan
            .aggregate()
            .map(|_| AGGREGATE_OPERATOR.to_string());
        aggregate
            .into_iter()
            .chain(self.dedups.keys().map(|s| dedup_operator(s)))
            .collect()
    }

    /// Loads the stateful operators' state as of committed batch `version`.
    async fn restore_state(&mut self, version: u64) -> Result<()> {
        let missing = |location: String| {
            SluiceError::checkpoint(
                location,
                "missing: the checkpoint has no state for its last committed batch",
            )
        };
        if let Some(aggregate) = self.plan.aggregate_mut() {
            match self
                .checkpoint
                .read_state(AGGREGATE_OPERATOR, version)
                .await?
            {
                (Some(bytes), location) => {
                    aggregate.restore_state(&bytes, &location)?;
                    self.aggregate_state_version = Some(version);
                }
                (None, location) => return Err(missing(location)),
            }
        }
        for (source, dedup) in &mut self.dedups {
            match self
                .checkpoint
                .read_state(&dedup_operator(source), version)
                .await?
            {
                (Some(bytes), location) => dedup.restore_state(&bytes, &location)?,
                (None, location) => return Err(missing(location)),
            }
        }
        Ok(())
    }

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
        self.shared
            .progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    /// The id the next new batch will get.
    pub fn next_batch_id(&self) -> u64 {
        self.next_batch_id
    }

    async fn run(&mut self, mut stop: watch::Receiver<bool>) -> Result<()> {
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
    /// batch if any source has new data. Returns whether a batch ran.
    pub async fn run_trigger(&mut self) -> Result<bool> {
        let mut run = TriggerRun {
            wall_start: chrono::Utc::now(),
            started: Instant::now(),
            timings: Timings::default(),
            sources: BTreeMap::new(),
            event_time: BTreeMap::new(),
            state: Vec::new(),
        };
        let trigger = {
            let mut number = 0;
            self.shared.update(|s| {
                s.triggers += 1;
                number = s.triggers;
                s.trigger_active = true;
                s.message = "Getting offsets from sources".into();
            });
            number
        };

        let entry = match self.pending.take() {
            Some(entry) => entry,
            None => {
                let mut ranges = BTreeMap::new();
                let mut has_data = false;
                let phase = Instant::now();
                for (name, source) in &mut self.sources {
                    let start = self.committed[name.as_str()].clone();
                    let end = source
                        .latest_offset(&start, source.default_read_limit())
                        .await?;
                    has_data |= end != start;
                    run.sources.insert(
                        name.clone(),
                        SourceRun {
                            rows: 0,
                            malformed: Default::default(),
                            latest: Some(end.clone()),
                        },
                    );
                    ranges.insert(name.clone(), SourceRange { start, end });
                }
                let phase = run.timings.record("latestOffset", phase);
                // Spark's no-data batch: the watermark alone moved, so state may emit or evict.
                // (Spark: append and update aggregations and deduplication; complete mode never
                // evicts, so it has no no-data batches.)
                let evicts =
                    self.plan.aggregate().is_some() && self.output_mode != OutputMode::Complete;
                let watermark_moved = (evicts || !self.dedups.is_empty())
                    && self.tracker.is_enabled()
                    && self.tracker.current() > self.last_batch_watermark_ms;
                if !has_data && !watermark_moved {
                    self.shared.update(|s| {
                        s.idle_trigger = trigger;
                        s.trigger_active = false;
                        s.data_available = false;
                        s.message = "Waiting for data to arrive".into();
                    });
                    if self
                        .last_progress
                        .is_none_or(|at| at.elapsed() >= NO_DATA_PROGRESS_INTERVAL)
                    {
                        run.timings.record("triggerExecution", run.started);
                        self.report(run, self.next_batch_id, None, 0);
                    }
                    return Ok(false);
                }
                let entry = OffsetEntry {
                    batch_id: self.next_batch_id,
                    batch_watermark_ms: self.tracker.current(),
                    batch_timestamp_ms: run.wall_start.timestamp_millis(),
                    sources: ranges,
                };
                self.checkpoint.write_offsets(&entry).await?;
                run.timings.record("walCommit", phase);
                entry
            }
        };
        self.shared.update(|s| {
            s.data_available = true;
            s.message = format!("Processing new data (batch {})", entry.batch_id);
        });

        let phase = Instant::now();
        let mut inputs: BTreeMap<String, Vec<RecordBatch>> = BTreeMap::new();
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
            let source_run = run.sources.entry(name.clone()).or_insert(SourceRun {
                rows: 0,
                malformed: Default::default(),
                latest: None,
            });
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
            if let Some(spec) = self.watermarks.get(name.as_str()) {
                let stats = batch_stats(&batch.batches, &spec.column)?;
                self.tracker.observe(name, &stats);
                event_times.merge(stats);
            }
            let rows = match self.dedups.get_mut(name.as_str()) {
                Some(dedup) => {
                    let (rows, progress) = dedup.apply(
                        batch.batches,
                        self.last_batch_watermark_ms,
                        entry.batch_watermark_ms,
                    )?;
                    run.state.push(progress);
                    rows
                }
                None => batch.batches,
            };
            inputs.insert(name.clone(), rows);
        }
        let phase = run.timings.record("getBatch", phase);

        let watermarks = self.tracker.is_enabled().then_some(BatchWatermarks {
            late: self.last_batch_watermark_ms,
            eviction: entry.batch_watermark_ms,
        });
        let (output, state) = self
            .plan
            .execute(
                inputs,
                entry.batch_timestamp_ms,
                self.output_mode,
                watermarks,
            )
            .await?;
        let output_rows: u64 = output.iter().map(|b| b.num_rows() as u64).sum();
        self.sink.add_batch(entry.batch_id, &output).await?;
        let phase = run.timings.record("addBatch", phase);

        for (source, dedup) in &self.dedups {
            let operator = dedup_operator(source);
            self.checkpoint
                .write_state(&operator, entry.batch_id, dedup.encode_state()?)
                .await?;
        }
        if let Some(aggregate) = self.plan.aggregate() {
            let stored_previous = self
                .aggregate_state_version
                .is_some_and(|version| version + 1 == entry.batch_id);
            if !aggregate.state_changed() && stored_previous {
                self.checkpoint
                    .carry_state(AGGREGATE_OPERATOR, entry.batch_id)
                    .await?;
            } else {
                self.checkpoint
                    .write_state(
                        AGGREGATE_OPERATOR,
                        entry.batch_id,
                        aggregate.encode_state()?,
                    )
                    .await?;
            }
            self.aggregate_state_version = Some(entry.batch_id);
        }
        let next_watermark = self.tracker.advance();
        self.checkpoint
            .write_commit(&CommitEntry {
                batch_id: entry.batch_id,
                next_batch_watermark_ms: next_watermark,
            })
            .await?;
        self.last_batch_watermark_ms = entry.batch_watermark_ms;
        if self.tracker.is_enabled() {
            if let (Some(avg), stats) = (event_times.avg(), event_times) {
                run.event_time
                    .insert("max".into(), format_millis(stats.max));
                run.event_time
                    .insert("min".into(), format_millis(stats.min));
                run.event_time.insert("avg".into(), format_millis(avg));
            }
            run.event_time
                .insert("watermark".into(), format_millis(entry.batch_watermark_ms));
        }
        run.state.extend(state);
        for (name, source) in &mut self.sources {
            let end = entry.sources[name.as_str()].end.clone();
            source.commit(&end).await?;
            self.committed.insert(name.clone(), end);
        }
        if self.swept {
            self.checkpoint
                .purge_expired(entry.batch_id, &self.state_operators())
                .await?;
        } else {
            // The first batch of a run sweeps whatever an earlier run left beyond retention.
            self.checkpoint.purge(entry.batch_id).await?;
            self.swept = true;
        }
        run.timings.record("commitOffsets", phase);
        run.timings.record("triggerExecution", run.started);

        self.next_batch_id = entry.batch_id + 1;
        self.report(run, entry.batch_id, Some(&entry.sources), output_rows);
        self.shared.update(|s| {
            s.trigger_active = false;
            s.message = "Waiting for next trigger".into();
        });
        Ok(true)
    }

    /// Builds, logs and publishes a progress report.
    fn report(
        &mut self,
        run: TriggerRun,
        batch_id: u64,
        ranges: Option<&BTreeMap<String, SourceRange>>,
        output_rows: u64,
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
        self.last_progress = Some(Instant::now());
        let sources: Vec<SourceProgress> = self
            .sources
            .iter()
            .map(|(name, source)| {
                let run = runs.get(name);
                let rows = run.map_or(0, |r| r.rows);
                let range = ranges.and_then(|r| r.get(name));
                SourceProgress {
                    description: source.description(),
                    start_offset: range.map_or_else(
                        || self.committed.get(name).cloned(),
                        |r| Some(r.start.clone()),
                    ),
                    end_offset: range.map_or_else(
                        || self.committed.get(name).cloned(),
                        |r| Some(r.end.clone()),
                    ),
                    latest_offset: run.and_then(|r| r.latest.clone()),
                    num_input_rows: rows,
                    input_rows_per_second: rate(rows, since_previous),
                    processed_rows_per_second: rate(rows, execution_ms),
                    malformed_records: run.map(|r| r.malformed.clone()).unwrap_or_default(),
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
            sink: SinkProgress {
                description: self.sink.description(),
                num_output_rows: output_rows,
            },
        };
        tracing::info!(
            query = %self.label,
            batch = progress.batch_id,
            input_rows = progress.num_input_rows,
            rows_per_second = progress.processed_rows_per_second as u64,
            duration_ms = progress.batch_duration,
            output_rows,
            "micro-batch progress"
        );
        self.shared.push_progress(progress);
    }
}

/// Name of a source's deduplication state directory in the checkpoint.
fn dedup_operator(source: &str) -> String {
    format!("dedup-{source}")
}
