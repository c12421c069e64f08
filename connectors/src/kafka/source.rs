//! The Kafka source: its options, offsets from the checkpoint, and the engine's [`Source`]
//! calls (the batch itself is read by [`super::fetch`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use sluice_engine::{
    JsonDecoder, JsonOptions, Offset, ReadLimit, Result, SluiceError, Source, SourceBatch,
};
use tracing::{debug, warn};

use super::broker::{client_config, describe_properties};
use super::fetch::{Fetch, Range};
use super::message_metadata::{self, MessageMetadata};
use super::offsets::{
    Bounds, DataLoss, PartitionOffsets, StartingOffsets, TopicPartition, data_loss, from_json,
    offsets_behind_latest, rate_limit, resolve_starting, to_json,
};
use super::partitions::{Subscription, partition_bounds};

/// How message values become columns.
enum Format {
    Raw,
    Json {
        schema: SchemaRef,
        options: JsonOptions,
    },
}

/// A Kafka source; see the [module docs](super).
pub struct KafkaSource {
    name: String,
    bootstrap: String,
    subscription: Subscription,
    pattern: Option<regex::Regex>,
    starting: StartingOffsets,
    max_offsets_per_trigger: Option<u64>,
    fail_on_data_loss: bool,
    include_headers: bool,
    include_metadata: bool,
    format: Format,
    group: Option<String>,
    fetch_timeout: Duration,
    properties: BTreeMap<String, String>,
    consumer: Option<Arc<BaseConsumer>>,
    available_now: Option<PartitionOffsets>,
    /// The partitions' latest offsets when [`Source::latest_offset`] last asked (for the lag
    /// metrics).
    latest_available: PartitionOffsets,
    data_loss_events: Arc<AtomicU64>,
}

impl KafkaSource {
    /// A source named `name` (its SQL table) reading `subscription` from the brokers at
    /// `bootstrap`. Nothing connects until the query starts.
    pub fn new(
        name: impl Into<String>,
        bootstrap: impl Into<String>,
        subscription: Subscription,
    ) -> Result<Self> {
        let name = name.into();
        let pattern = match &subscription {
            Subscription::Pattern(pattern) => {
                Some(regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                    SluiceError::Config(format!("Kafka source '{name}': subscribe_pattern: {e}"))
                })?)
            }
            Subscription::Topics(topics) if topics.is_empty() => {
                return Err(SluiceError::Config(format!(
                    "Kafka source '{name}': subscribe needs at least one topic"
                )));
            }
            _ => None,
        };
        Ok(Self {
            name,
            bootstrap: bootstrap.into(),
            subscription,
            pattern,
            starting: StartingOffsets::default(),
            max_offsets_per_trigger: None,
            fail_on_data_loss: true,
            include_headers: false,
            include_metadata: false,
            format: Format::Raw,
            group: None,
            fetch_timeout: Duration::from_secs(60),
            properties: BTreeMap::new(),
            consumer: None,
            available_now: None,
            latest_available: PartitionOffsets::new(),
            data_loss_events: Arc::default(),
        })
    }

    /// Where a brand-new query starts (`latest` by default); a restart resumes from the
    /// checkpoint whatever this says.
    pub fn starting_offsets(mut self, starting: StartingOffsets) -> Self {
        self.starting = starting;
        self
    }

    /// At most `n` offsets per micro-batch, split across partitions by backlog.
    pub fn max_offsets_per_trigger(mut self, n: u64) -> Self {
        self.max_offsets_per_trigger = Some(n);
        self
    }

    /// Whether offsets that vanished stop the query (default) or are logged and skipped.
    pub fn fail_on_data_loss(mut self, fail: bool) -> Self {
        self.fail_on_data_loss = fail;
        self
    }

    /// Adds the `headers` column (`_headers` with [`KafkaSource::json`]).
    pub fn include_headers(mut self, include: bool) -> Self {
        self.include_headers = include;
        self
    }

    /// Decodes each value as a JSON object of `schema` (see the engine's `JsonOptions` for
    /// the parse mode and the corrupt-record column).
    pub fn json(mut self, schema: SchemaRef, options: JsonOptions) -> Self {
        self.format = Format::Json { schema, options };
        self
    }

    /// With [`KafkaSource::json`], adds the message metadata after the value's columns
    /// (`_key`, `_topic`, `_partition`, `_offset`, `_timestamp`, `_timestamp_type`).
    pub fn include_metadata(mut self, include: bool) -> Self {
        self.include_metadata = include;
        self
    }

    /// Also commits each committed batch's offsets to consumer group `group`, so that lag
    /// tools see the query's progress. The checkpoint stays the source of truth.
    pub fn commit_to_group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// How long reading a batch (or reaching the broker at start) may take without progress
    /// before the query fails (default 60 s).
    pub fn fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// A librdkafka property (`security.protocol`, `sasl.mechanism`, `ssl.ca.location`, …);
    /// it overrides the source's defaults.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    /// A counter of data-loss events skipped with `fail_on_data_loss(false)`; clone it before
    /// handing the source to a query.
    pub fn data_loss_events(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.data_loss_events)
    }

    fn error(&self, message: impl Into<String>) -> SluiceError {
        SluiceError::source(&self.name, message)
    }

    /// The consumer, created on first use.
    fn consumer(&mut self) -> Result<Arc<BaseConsumer>> {
        if let Some(consumer) = &self.consumer {
            return Ok(Arc::clone(consumer));
        }
        let group = self
            .group
            .clone()
            .unwrap_or_else(|| format!("sluice-{}-{}", self.name, uuid::Uuid::new_v4()));
        let consumer: BaseConsumer = client_config(
            &self.bootstrap,
            &[
                ("group.id", &group),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "false"),
                // Transactions are not used; the test broker refuses read_committed.
                ("isolation.level", "read_uncommitted"),
                // Large fetches: a micro-batch reads many partitions at once.
                ("fetch.max.bytes", "104857600"),
                ("max.partition.fetch.bytes", "16777216"),
                ("queued.max.messages.kbytes", "262144"),
                ("fetch.wait.max.ms", "50"),
                // A batch drains the fetch queue as fast as it decodes; librdkafka's default
                // 1 s pause when the queue is momentarily full left the reader idle 80% of
                // the time.
                ("fetch.queue.backoff.ms", "10"),
            ],
            &self.properties,
        )
        .create()
        .map_err(|e| self.error(format!("cannot create a Kafka consumer: {e}")))?;
        let consumer = Arc::new(consumer);
        self.consumer = Some(Arc::clone(&consumer));
        Ok(consumer)
    }

    /// The partitions of the subscription and their bounds, now. Retries until the fetch
    /// timeout when the broker cannot be reached.
    async fn bounds(&mut self) -> Result<BTreeMap<TopicPartition, Bounds>> {
        let consumer = self.consumer()?;
        let subscription = self.subscription.clone();
        let pattern = self.pattern.clone();
        let timeout = self.fetch_timeout;
        let name = self.name.clone();
        let bootstrap = self.bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + timeout;
            loop {
                match partition_bounds(&consumer, &subscription, pattern.as_ref()) {
                    Ok(bounds) => return Ok(bounds),
                    Err(e) if Instant::now() >= deadline => {
                        return Err(SluiceError::source(
                            &name,
                            format!(
                                "cannot read partition metadata from Kafka at {bootstrap} \
                                 within {timeout:?}: {e}"
                            ),
                        ));
                    }
                    Err(e) => {
                        warn!(source = %name, "Kafka metadata request failed ({e}); retrying");
                        std::thread::sleep(Duration::from_millis(500));
                    }
                }
            }
        })
        .await
        .map_err(|e| self.error(format!("metadata task failed: {e}")))?
    }

    /// A fetch of `ranges` in this source's format.
    fn fetch(&self, ranges: Vec<Range>) -> Result<Fetch> {
        let (decoder, metadata) = match &self.format {
            Format::Raw => (None, true),
            Format::Json { schema, options } => {
                let mut decoder = JsonDecoder::new(Arc::clone(schema), options.clone())?;
                decoder.set_context(format!("Kafka source '{}'", self.name));
                (Some(decoder), self.include_metadata)
            }
        };
        let metadata = metadata.then(|| MessageMetadata::new(self.include_headers));
        Ok(Fetch::new(&self.name, ranges, decoder, metadata))
    }

    /// Applies `fail_on_data_loss` to the partitions of `start` that cannot be read.
    fn check_data_loss(&self, losses: &[DataLoss]) -> Result<()> {
        if losses.is_empty() {
            return Ok(());
        }
        let text: Vec<String> = losses.iter().map(ToString::to_string).collect();
        if self.fail_on_data_loss {
            return Err(self.error(format!(
                "data loss: {}. Some data may have been lost because it is no longer \
                 available in Kafka. If you want the query to continue, set \
                 fail_on_data_loss to false",
                text.join("; ")
            )));
        }
        self.data_loss_events
            .fetch_add(losses.len() as u64, Ordering::Relaxed);
        warn!(source = %self.name, "data loss, continuing (fail_on_data_loss = false): {}", text.join("; "));
        Ok(())
    }

    fn parse_offsets(&self, offset: &Offset) -> Result<PartitionOffsets> {
        from_json(offset.json()).map_err(|e| self.error(format!("invalid offset {offset}: {e}")))
    }
}

#[async_trait]
impl Source for KafkaSource {
    fn description(&self) -> String {
        let subscription = match &self.subscription {
            Subscription::Topics(topics) => format!("subscribe={}", topics.join(",")),
            Subscription::Pattern(pattern) => format!("subscribePattern={pattern}"),
            Subscription::Assign(partitions) => format!(
                "assign={}",
                partitions
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        let properties = describe_properties(&self.properties);
        let properties = if properties.is_empty() {
            String::new()
        } else {
            format!(", {properties}")
        };
        format!("KafkaV2[{subscription} @ {}{properties}]", self.bootstrap)
    }

    fn schema(&self) -> SchemaRef {
        match &self.format {
            Format::Raw => {
                let mut fields = vec![Field::new("value", DataType::Binary, true)];
                fields.extend(message_metadata::fields("", self.include_headers));
                // Spark's order: key, value, topic, partition, offset, timestamp, timestampType.
                fields.swap(0, 1);
                Arc::new(Schema::new(fields))
            }
            Format::Json { schema, options } => {
                // The decoder's output schema: the declared columns, nullable, and the
                // corrupt-record column; decoding it is infallible for a valid schema.
                let value = JsonDecoder::new(Arc::clone(schema), options.clone())
                    .map(|d| d.output_schema())
                    .unwrap_or_else(|_| Arc::clone(schema));
                let mut fields: Vec<Field> =
                    value.fields().iter().map(|f| f.as_ref().clone()).collect();
                if self.include_metadata {
                    fields.extend(message_metadata::fields("_", self.include_headers));
                }
                Arc::new(Schema::new(fields))
            }
        }
    }

    async fn initial_offset(&mut self) -> Result<Offset> {
        let bounds = self.bounds().await?;
        if let StartingOffsets::Specific(given) = &self.starting {
            let losses = data_loss(
                &given
                    .iter()
                    .filter(|(_, o)| **o >= 0)
                    .map(|(tp, o)| (tp.clone(), *o))
                    .collect(),
                &bounds,
            );
            self.check_data_loss(&losses)?;
        }
        Ok(to_json(&resolve_starting(&self.starting, &bounds)))
    }

    fn default_read_limit(&self) -> ReadLimit {
        self.max_offsets_per_trigger
            .map_or(ReadLimit::AllAvailable, ReadLimit::MaxRows)
    }

    async fn latest_offset(&mut self, start: &Offset, limit: ReadLimit) -> Result<Offset> {
        let start = self.parse_offsets(start)?;
        let bounds = self.bounds().await?;
        self.check_data_loss(&data_loss(&start, &bounds))?;
        // Partitions that vanished are not read any more; new ones start at their earliest.
        let mut from = PartitionOffsets::new();
        for (tp, b) in &bounds {
            let offset = match start.get(tp) {
                // Gone backwards (recreated or truncated) and accepted as data loss: from the
                // partition's new start, so that none of its new messages is skipped.
                Some(&offset) if offset > b.latest => b.earliest,
                Some(&offset) => offset.max(b.earliest),
                None => {
                    debug!(source = %self.name, partition = %tp, "new partition, read from offset {}", b.earliest);
                    b.earliest
                }
            };
            from.insert(tp.clone(), offset);
        }
        let mut latest: PartitionOffsets = bounds
            .iter()
            .map(|(tp, b)| (tp.clone(), b.latest.max(from[tp])))
            .collect();
        self.latest_available = latest.clone();
        if let Some(cap) = &self.available_now {
            for (tp, end) in latest.iter_mut() {
                *end = (*end)
                    .min(cap.get(tp).copied().unwrap_or(from[tp]))
                    .max(from[tp]);
            }
        }
        let end = match limit {
            ReadLimit::MaxRows(n) => rate_limit(&from, &latest, n),
            _ => latest,
        };
        // Nothing new: hand back `start` itself, so the engine sees no data.
        if end == from && from.keys().eq(start.keys()) {
            return Ok(to_json(&start));
        }
        Ok(to_json(&end))
    }

    async fn get_batch(&mut self, start: &Offset, end: &Offset) -> Result<SourceBatch> {
        let start = self.parse_offsets(start)?;
        let end = self.parse_offsets(end)?;
        let began = Instant::now();
        let bounds = self.bounds().await?;
        let bounded = began.elapsed();
        // Offsets that vanished since they were planned (retention, or a replay after a long
        // stop) are data loss too.
        let planned: PartitionOffsets = end
            .keys()
            .map(|tp| (tp.clone(), start.get(tp).copied().unwrap_or(0)))
            .filter(|(tp, _)| start.contains_key(tp))
            .collect();
        // A batch planned across a reset (its end below its start) was already reported when
        // it was planned.
        let planned_reset = |tp: &TopicPartition| matches!((start.get(tp), end.get(tp)), (Some(s), Some(e)) if e < s);
        let losses: Vec<DataLoss> = data_loss(&planned, &bounds)
            .into_iter()
            .filter(|loss| !matches!(loss, DataLoss::Reset { partition, .. } if planned_reset(partition)))
            .collect();
        self.check_data_loss(&losses)?;
        let mut ranges = Vec::new();
        for (tp, &until) in &end {
            let Some(b) = bounds.get(tp) else { continue };
            let from = match start.get(tp) {
                // Planned across a reset: from the partition's new start.
                Some(_) if planned_reset(tp) => b.earliest,
                Some(&offset) => offset.max(b.earliest),
                None => b.earliest,
            };
            if until > from {
                ranges.push(Range {
                    partition: tp.clone(),
                    from,
                    until,
                });
            }
        }
        let consumer = self.consumer()?;
        let mut fetch = self.fetch(ranges)?;
        let timeout = self.fetch_timeout;
        let fetch = tokio::task::spawn_blocking(move || {
            fetch.run(&consumer, timeout)?;
            Ok::<_, SluiceError>(fetch)
        })
        .await
        .map_err(|e| self.error(format!("fetch task failed: {e}")))??;
        let fetched = began.elapsed();
        let batch = fetch.finish(self.schema());
        debug!(source = %self.name, ?bounded, ?fetched, total = ?began.elapsed(), "Kafka batch read");
        batch
    }

    async fn commit(&mut self, end: &Offset) -> Result<()> {
        if self.group.is_none() {
            return Ok(());
        }
        let offsets = self.parse_offsets(end)?;
        let mut list = TopicPartitionList::new();
        for (tp, offset) in &offsets {
            list.add_partition_offset(&tp.topic, tp.partition, KafkaOffset::Offset(*offset))
                .map_err(|e| self.error(e.to_string()))?;
        }
        let consumer = self.consumer()?;
        // Best effort: the checkpoint is the source of truth.
        if let Err(e) = consumer.commit(&list, CommitMode::Async) {
            warn!(source = %self.name, "committing offsets to the consumer group failed: {e}");
        }
        Ok(())
    }

    async fn prepare_for_available_now(&mut self) -> Result<()> {
        let bounds = self.bounds().await?;
        self.available_now = Some(
            bounds
                .iter()
                .map(|(tp, b)| (tp.clone(), b.latest))
                .collect(),
        );
        Ok(())
    }

    fn metrics(&self, end: &Offset) -> BTreeMap<String, String> {
        self.parse_offsets(end)
            .map(|end| offsets_behind_latest(&end, &self.latest_available))
            .unwrap_or_default()
    }

    fn backlog(&self, start: &Offset) -> Option<u64> {
        let start = self.parse_offsets(start).ok()?;
        let remaining = self.available_now.as_ref()?.iter().map(|(tp, end)| {
            let from = start.get(tp).copied().unwrap_or(0);
            u64::try_from(end - from.min(*end)).unwrap_or(0)
        });
        Some(remaining.sum())
    }
}
