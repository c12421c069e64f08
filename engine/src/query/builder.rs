//! Declaring a streaming query (Spark's `readStream`/`writeStream`): sources, SQL, sink,
//! trigger, checkpoint, watermarks and deduplication; then planning it, explaining it, or
//! building its [`MicroBatchExecution`] and starting it.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use datafusion::prelude::SessionContext;
use futures::FutureExt;
use tokio::sync::watch;

use super::execution::MicroBatchExecution;
use super::handle::{Shared, StreamingQuery};
use super::recovery::{recover, restore_state};
use super::report::Reporter;
use crate::checkpoint::{Checkpoint, plan_recovery};
use crate::distribution::PartitionedBy;
use crate::error::{Result, SluiceError};
use crate::listener::{QueryIdentity, QueryListener};
use crate::operator::dedup::{DedupMode, Deduplicator};
use crate::output_mode::{OutputMode, QueryShape, check_output_mode};
use crate::plan::{Declared, StreamPlan, streaming_session};
use crate::sink::{Sink, SinkContext};
use crate::source::Source;
use crate::trigger::Trigger;
use crate::watermark::{WatermarkPolicy, WatermarkSpec, WatermarkTracker, check_event_time_column};

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
    views: Vec<(String, String)>,
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
    listeners: Vec<Arc<dyn QueryListener>>,
    parallelism: usize,
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
            views: Vec::new(),
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
            listeners: Vec::new(),
            parallelism: default_parallelism(),
        }
    }

    /// How many partitions the query runs in, each on its own core (default: the machine's
    /// cores). Sources are told ([`Source::set_parallelism`]: a file source decodes a file in
    /// that many parts), the SQL runs on that many runs of the batch's rows, an aggregation's
    /// rows are hash-partitioned by its keys into as many state partitions
    /// (`state/<operator>/<partition>/`), and sinks are told (the file sink encodes in that
    /// many parts). The output is the same for every value (`docs/semantics.md` §12). A
    /// checkpoint written with one parallelism restarts with another: the state is
    /// re-partitioned.
    ///
    /// Values are kept between 1 and [`MAX_PARALLELISM`].
    pub fn parallelism(mut self, partitions: usize) -> Self {
        self.parallelism = partitions.clamp(1, MAX_PARALLELISM);
        self
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

    /// A view: a named query over the sources (and the views added before it) that the
    /// query's SQL reads as a table, as SQL's `CREATE VIEW` (Spark's temporary views). It is
    /// expanded into the query where it is read, so it runs as part of the query, with the
    /// same streaming rules: an aggregation in a view counts as one of the query's.
    pub fn view(mut self, name: impl Into<String>, sql: impl Into<String>) -> Self {
        self.views.push((name.into(), sql.into()));
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

    /// The output mode the sink receives: append for a per-batch query, whose SQL keeps no
    /// state across batches.
    fn effective_output_mode(&self) -> OutputMode {
        if self.per_batch {
            OutputMode::Append
        } else {
            self.output_mode
        }
    }

    /// Checks the declarations and plans the SQL with its stateful operators: everything
    /// `build` and `explain` share.
    ///
    /// The future borrows nothing of the builder (sources and sinks need not be `Sync`), so
    /// that `start` can run on any task.
    fn plan(&self) -> impl Future<Output = Result<StreamPlan>> + Send + 'static {
        let prepared = self.prepare_plan();
        async move { prepared?.plan().await }
    }

    /// What planning needs, checked and owned.
    fn prepare_plan(&self) -> Result<PlanInputs> {
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
        // In the sources' order, which is the order they deduplicate and report in.
        let dedups = tables
            .iter()
            .filter_map(|(source, _)| dedups.remove(source).map(|d| (source.clone(), d)))
            .collect();
        Ok(PlanInputs {
            session: self.session.clone(),
            tables,
            views: self.views.clone(),
            watermarks: self.watermarks.clone(),
            sql: sql.to_string(),
            per_batch: self.per_batch,
            mode: self.effective_output_mode(),
            output_mode: self.output_mode,
            dedups,
            parallelism: self.parallelism,
        })
    }

    /// Checks, without running anything, that the query can run as independent tasks, one per
    /// partition of its sources, when each source's partitions are keyed by the column `by`
    /// gives it: every stateful operator (aggregation, deduplication, join of two streams)
    /// must keep each of its groups within one partition. The error says which operator does
    /// not, and how to re-key the stream.
    pub async fn check_partitioned_by(&self, by: &PartitionedBy) -> Result<()> {
        self.plan().await?.check_partitioned(by)
    }

    /// Describes the streaming plan without running it or touching the checkpoint: sources with
    /// their watermarks and deduplication, the stateful operators and their keys, the output
    /// mode, the sink and trigger, then DataFusion's physical plan.
    pub async fn explain(&self) -> Result<String> {
        let plan = self.plan().await?;
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
        text += &format!("parallelism: {}\n", plan.parallelism());
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
        let mut plan = self.plan().await?;
        let output_mode = self.effective_output_mode();
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

        sink.open(&SinkContext {
            query_id: id.clone(),
            query_name: self.name.clone(),
            schema: plan.schema(),
            output_mode,
            key_columns: match self.per_batch {
                true => None,
                false => plan.aggregate().and_then(|a| a.output_key_columns()),
            },
            parallelism: self.parallelism,
        })
        .await?;

        let mut sources = self.sources;
        for (_, source) in &mut sources {
            source.set_parallelism(self.parallelism);
        }
        let mut tracker = WatermarkTracker::new(
            self.watermark_policy,
            self.watermarks
                .iter()
                .map(|(name, spec)| (name.clone(), spec.delay_ms))
                .collect(),
            0,
        );
        let label = self.name.clone().unwrap_or_else(|| id.clone());
        let start = recover(recovery, &checkpoint, &mut sources, &mut tracker, &label).await?;
        if let Some(version) = start.state_version {
            restore_state(
                &checkpoint,
                plan.operators_mut(),
                version,
                &start.state_checksums,
            )
            .await?;
        }
        // The restored state may be partitioned otherwise than it was stored: the first batch
        // writes every partition, and carries nothing over.
        let state_versions = BTreeMap::new();
        if self.trigger == Trigger::AvailableNow {
            for (_, source) in &mut sources {
                source.prepare_for_available_now().await?;
            }
        }
        let event_time_columns = self
            .watermarks
            .into_iter()
            .map(|(source, spec)| (source, spec.column))
            .collect();
        let run_id = uuid::Uuid::new_v4().to_string();
        let shared = Arc::new(Shared::new(self.listeners));
        Ok(MicroBatchExecution {
            label,
            reporter: Reporter::new(
                id.clone(),
                run_id.clone(),
                self.name.clone(),
                shared.clone(),
            ),
            id,
            run_id,
            name: self.name,
            sources,
            sink,
            plan,
            checkpoint,
            trigger: self.trigger,
            committed: start.committed,
            next_batch_id: start.next_batch_id,
            event_time_columns,
            tracker,
            state_versions,
            swept: false,
            rerun: start.pending.as_ref().map(|entry| entry.batch_id),
            pending: start.pending,
            shared,
        })
    }

    /// Adds a listener, told of the query's start, progress and end (Spark's
    /// `StreamingQueryListener`; see [`crate::listener`]).
    pub fn listener(mut self, listener: Arc<dyn QueryListener>) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Plans the query, recovers from the checkpoint and starts the micro-batch loop on the
    /// Tokio runtime.
    pub async fn start(self) -> Result<StreamingQuery> {
        let mut execution = self.build().await?;
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::clone(&execution.shared);
        shared.update(|s| s.active = true);
        let identity = QueryIdentity {
            id: execution.id.clone(),
            run_id: execution.run_id.clone(),
            name: execution.name.clone(),
        };
        for listener in shared.listeners() {
            listener.on_query_started(&identity);
        }
        let query = StreamingQuery::new(
            execution.id.clone(),
            execution.run_id.clone(),
            execution.name.clone(),
            execution.trigger,
            Arc::clone(&shared),
            stop,
        );
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
            // Listeners first: whoever awaits the termination then sees what they did. A
            // listener that panics is logged; the query still ends.
            for listener in shared.listeners() {
                let told = std::panic::catch_unwind(AssertUnwindSafe(|| {
                    listener.on_query_terminated(&identity, error.as_deref())
                }));
                if told.is_err() {
                    tracing::error!(query = %execution.label, "a query listener panicked when told the query ended");
                }
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

/// The most partitions a query may run in.
pub const MAX_PARALLELISM: usize = 1024;

/// The default parallelism: the cores this process may run on.
pub(crate) fn default_parallelism() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// A query's declarations, checked and owned, ready to be planned.
struct PlanInputs {
    session: SessionContext,
    tables: Vec<(String, arrow::datatypes::SchemaRef)>,
    views: Vec<(String, String)>,
    watermarks: BTreeMap<String, WatermarkSpec>,
    sql: String,
    per_batch: bool,
    /// The output mode the plan runs in (append for per-batch queries).
    mode: OutputMode,
    /// The output mode asked for, which the query's shape must support.
    output_mode: OutputMode,
    dedups: Vec<(String, Deduplicator)>,
    parallelism: usize,
}

impl PlanInputs {
    /// Plans the SQL with its stateful operators and checks the output mode.
    async fn plan(self) -> Result<StreamPlan> {
        let plan = StreamPlan::new(
            self.session,
            Declared {
                sources: &self.tables,
                views: &self.views,
                watermarks: &self.watermarks,
            },
            &self.sql,
            self.per_batch,
            self.mode,
            self.dedups,
            self.parallelism,
        )
        .await?;
        if !self.per_batch {
            plan.check_joins()?;
            let shape = QueryShape {
                aggregation: plan.aggregate().is_some(),
                window_key: plan.aggregate().is_some_and(|a| a.has_window_key()),
                session_window: plan.aggregate().is_some_and(|a| a.has_session_window()),
                watermark: !self.watermarks.is_empty(),
                sort: plan.sorts(),
                stream_join: plan.stream_join().is_some(),
            };
            check_output_mode(shape, self.output_mode)?;
        }
        Ok(plan)
    }
}
