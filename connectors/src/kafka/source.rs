//! The Kafka source: offsets from the checkpoint, messages fetched by `assign`, rows in Arrow.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
    StructBuilder, TimestampMillisecondBuilder, UInt32Array,
};
use arrow::compute::take;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message, Timestamp};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use sluice_engine::json::MalformedStats;
use sluice_engine::{
    JsonDecoder, JsonOptions, Offset, ReadLimit, Result, SluiceError, Source, SourceBatch,
};
use tracing::{debug, warn};

use super::offsets::{
    Bounds, DataLoss, PartitionOffsets, StartingOffsets, TopicPartition, data_loss, from_json,
    rate_limit, resolve_starting, to_json,
};
use super::{client_config, describe_properties};

/// Which partitions the source reads.
#[derive(Debug, Clone)]
pub enum Subscription {
    /// Every partition of these topics (Spark's `subscribe`).
    Topics(Vec<String>),
    /// Every partition of the topics whose whole name matches this regular expression
    /// (`subscribePattern`).
    Pattern(String),
    /// Exactly these partitions (`assign`).
    Assign(Vec<TopicPartition>),
}

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
                match fetch_bounds(&consumer, &subscription, pattern.as_ref()) {
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

    /// The columns of the message metadata, named with `prefix`.
    fn metadata_fields(&self, prefix: &str) -> Vec<Field> {
        let mut fields = vec![
            Field::new(format!("{prefix}key"), DataType::Binary, true),
            Field::new(format!("{prefix}topic"), DataType::Utf8, false),
            Field::new(format!("{prefix}partition"), DataType::Int32, false),
            Field::new(format!("{prefix}offset"), DataType::Int64, false),
            Field::new(
                format!("{prefix}timestamp"),
                DataType::Timestamp(TimeUnit::Millisecond, None),
                true,
            ),
            Field::new(format!("{prefix}timestamp_type"), DataType::Int32, false),
        ];
        if self.include_headers {
            fields.push(Field::new(
                format!("{prefix}headers"),
                DataType::List(Arc::new(Field::new("item", header_type(), true))),
                true,
            ));
        }
        fields
    }
}

/// `{key: string, value: binary}`, one message header.
fn header_type() -> DataType {
    DataType::Struct(header_fields())
}

fn header_fields() -> Fields {
    Fields::from(vec![
        Field::new("key", DataType::Utf8, true),
        Field::new("value", DataType::Binary, true),
    ])
}

/// Reads the partitions of `subscription` and each one's low and high watermarks.
fn fetch_bounds(
    consumer: &BaseConsumer,
    subscription: &Subscription,
    pattern: Option<&regex::Regex>,
) -> std::result::Result<BTreeMap<TopicPartition, Bounds>, String> {
    let timeout = Duration::from_secs(10);
    let partitions: Vec<TopicPartition> = match subscription {
        Subscription::Assign(partitions) => partitions.clone(),
        Subscription::Topics(topics) => {
            let mut all = Vec::new();
            for topic in topics {
                let metadata = consumer
                    .fetch_metadata(Some(topic), timeout)
                    .map_err(|e| e.to_string())?;
                for t in metadata.topics() {
                    if t.error().is_some() {
                        debug!(topic = t.name(), "topic not available yet: {:?}", t.error());
                        continue;
                    }
                    all.extend(
                        t.partitions()
                            .iter()
                            .map(|p| TopicPartition::new(t.name(), p.id())),
                    );
                }
            }
            all
        }
        Subscription::Pattern(_) => {
            let metadata = consumer
                .fetch_metadata(None, timeout)
                .map_err(|e| e.to_string())?;
            metadata
                .topics()
                .iter()
                .filter(|t| t.error().is_none() && pattern.is_some_and(|p| p.is_match(t.name())))
                .flat_map(|t| {
                    t.partitions()
                        .iter()
                        .map(|p| TopicPartition::new(t.name(), p.id()))
                })
                .collect()
        }
    };
    // One ListOffsets request per broker for all partitions (the special timestamps -2 and -1
    // ask for the earliest and latest offsets), rather than two requests per partition.
    let list =
        |timestamp: KafkaOffset| -> std::result::Result<BTreeMap<TopicPartition, i64>, String> {
            let mut request = TopicPartitionList::new();
            for tp in &partitions {
                request
                    .add_partition_offset(&tp.topic, tp.partition, timestamp)
                    .map_err(|e| format!("{tp}: {e}"))?;
            }
            let reply = consumer
                .offsets_for_times(request, timeout)
                .map_err(|e| e.to_string())?;
            reply
                .elements()
                .iter()
                .map(|e| {
                    let tp = TopicPartition::new(e.topic(), e.partition());
                    if let Err(error) = e.error() {
                        return Err(format!("{tp}: {error}"));
                    }
                    match e.offset() {
                        KafkaOffset::Offset(offset) => Ok((tp, offset)),
                        other => Err(format!("{tp}: no offset in the reply ({other:?})")),
                    }
                })
                .collect()
        };
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    // `Beginning` and `End` are the raw timestamps -2 and -1.
    let earliest = list(KafkaOffset::Beginning)?;
    let latest = list(KafkaOffset::End)?;
    Ok(partitions
        .into_iter()
        .filter_map(|tp| {
            let bounds = Bounds {
                earliest: *earliest.get(&tp)?,
                latest: *latest.get(&tp)?,
            };
            Some((tp, bounds))
        })
        .collect())
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
                fields.extend(self.metadata_fields(""));
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
                    fields.extend(self.metadata_fields("_"));
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
        self.check_data_loss(&data_loss(&planned, &bounds))?;
        let mut ranges = Vec::new();
        for (tp, &until) in &end {
            let Some(b) = bounds.get(tp) else { continue };
            let from = start.get(tp).copied().unwrap_or(b.earliest).max(b.earliest);
            if until > from {
                ranges.push(Range {
                    partition: tp.clone(),
                    from,
                    until,
                });
            }
        }
        let consumer = self.consumer()?;
        let mut fetch = Fetch::new(self, ranges)?;
        let timeout = self.fetch_timeout;
        let fetch = tokio::task::spawn_blocking(move || {
            fetch.run(&consumer, timeout)?;
            Ok::<_, SluiceError>(fetch)
        })
        .await
        .map_err(|e| self.error(format!("fetch task failed: {e}")))??;
        let fetched = began.elapsed();
        let batch = fetch.finish(self);
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

    fn backlog(&self, start: &Offset) -> Option<u64> {
        let start = self.parse_offsets(start).ok()?;
        let remaining = self.available_now.as_ref()?.iter().map(|(tp, end)| {
            let from = start.get(tp).copied().unwrap_or(0);
            u64::try_from(end - from.min(*end)).unwrap_or(0)
        });
        Some(remaining.sum())
    }
}

/// The offsets `[from, until)` of one partition, to read in one batch.
struct Range {
    partition: TopicPartition,
    from: i64,
    until: i64,
}

/// One batch being read: the ranges, where each stands, and the rows built so far.
struct Fetch {
    ranges: Vec<Range>,
    /// Per range, the next offset expected.
    next: Vec<i64>,
    decoder: Option<JsonDecoder>,
    value: BinaryBuilder,
    metadata: Option<Metadata>,
    /// For FAILFAST errors: the range and offset of each record pushed to the decoder.
    records: Vec<(u32, i64)>,
    /// The source's name, for errors.
    name: String,
}

/// Builders of the metadata columns.
struct Metadata {
    key: BinaryBuilder,
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    timestamp: TimestampMillisecondBuilder,
    timestamp_type: Int32Builder,
    headers: Option<ListBuilder<StructBuilder>>,
}

impl Metadata {
    fn new(headers: bool) -> Self {
        Self {
            key: BinaryBuilder::new(),
            topic: StringBuilder::new(),
            partition: Int32Builder::new(),
            offset: Int64Builder::new(),
            timestamp: TimestampMillisecondBuilder::new(),
            timestamp_type: Int32Builder::new(),
            headers: headers
                .then(|| ListBuilder::new(StructBuilder::from_fields(header_fields(), 0))),
        }
    }

    fn append<M: Message>(&mut self, message: &M) {
        self.key.append_option(message.key());
        self.topic.append_value(message.topic());
        self.partition.append_value(message.partition());
        self.offset.append_value(message.offset());
        let (millis, kind) = match message.timestamp() {
            Timestamp::NotAvailable => (None, -1),
            Timestamp::CreateTime(t) => (Some(t), 0),
            Timestamp::LogAppendTime(t) => (Some(t), 1),
        };
        self.timestamp.append_option(millis.filter(|t| *t >= 0));
        self.timestamp_type.append_value(kind);
        if let Some(list) = &mut self.headers {
            if let Some(headers) = message.headers() {
                let entries = list.values();
                for header in headers.iter() {
                    if let Some(key) = entries.field_builder::<StringBuilder>(0) {
                        key.append_value(header.key);
                    }
                    if let Some(value) = entries.field_builder::<BinaryBuilder>(1) {
                        value.append_option(header.value);
                    }
                    entries.append(true);
                }
            }
            list.append(true);
        }
    }

    fn finish(&mut self) -> Vec<ArrayRef> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.key.finish()),
            Arc::new(self.topic.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.timestamp.finish()),
            Arc::new(self.timestamp_type.finish()),
        ];
        if let Some(headers) = &mut self.headers {
            columns.push(Arc::new(headers.finish()));
        }
        columns
    }
}

impl Fetch {
    fn new(source: &KafkaSource, ranges: Vec<Range>) -> Result<Self> {
        let (decoder, metadata) = match &source.format {
            Format::Raw => (None, true),
            Format::Json { schema, options } => {
                let mut decoder = JsonDecoder::new(Arc::clone(schema), options.clone())?;
                decoder.set_context(format!("Kafka source '{}'", source.name));
                (Some(decoder), source.include_metadata)
            }
        };
        Ok(Self {
            next: ranges.iter().map(|r| r.from).collect(),
            ranges,
            decoder,
            value: BinaryBuilder::new(),
            metadata: metadata.then(|| Metadata::new(source.include_headers)),
            records: Vec::new(),
            name: source.name.clone(),
        })
    }

    /// Reads every range to its end. Blocking: runs on a blocking thread.
    fn run(&mut self, consumer: &BaseConsumer, timeout: Duration) -> Result<()> {
        if self.ranges.is_empty() {
            return Ok(());
        }
        // topic → partition → range, looked up by borrowed names for every message.
        let mut index: HashMap<String, HashMap<i32, usize>> = HashMap::new();
        for (i, range) in self.ranges.iter().enumerate() {
            index
                .entry(range.partition.topic.clone())
                .or_default()
                .insert(range.partition.partition, i);
        }
        let lookup =
            |topic: &str, partition: i32| index.get(topic).and_then(|p| p.get(&partition)).copied();
        let mut assignment = TopicPartitionList::new();
        for range in &self.ranges {
            assignment
                .add_partition_offset(
                    &range.partition.topic,
                    range.partition.partition,
                    KafkaOffset::Offset(range.from),
                )
                .map_err(|e| SluiceError::source(&self.name, e.to_string()))?;
        }
        consumer.assign(&assignment).map_err(|e| {
            SluiceError::source(&self.name, format!("cannot assign partitions: {e}"))
        })?;
        let mut open = self.ranges.len();
        let mut last_progress = Instant::now();
        let result = loop {
            if open == 0 {
                break Ok(());
            }
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let Some(i) = lookup(message.topic(), message.partition()) else {
                        continue;
                    };
                    let offset = message.offset();
                    let until = self.ranges[i].until;
                    if offset < self.next[i] || offset >= until {
                        continue;
                    }
                    self.next[i] = offset + 1;
                    if let Err(e) = self.append(i as u32, &message) {
                        break Err(e);
                    }
                    if self.next[i] >= until {
                        open -= 1;
                    }
                    last_progress = Instant::now();
                }
                Some(Err(e)) => {
                    // Transport errors are retried by librdkafka; report and keep polling.
                    debug!("Kafka consumer error while fetching: {e}");
                }
                None => {
                    // A range may end on offsets that carry no message (transaction markers,
                    // compaction): the consumer's position tells when it is past the end.
                    if let Ok(positions) = consumer.position() {
                        for element in positions.elements() {
                            let Some(i) = lookup(element.topic(), element.partition()) else {
                                continue;
                            };
                            if let KafkaOffset::Offset(position) = element.offset()
                                && self.next[i] < self.ranges[i].until
                                && position >= self.ranges[i].until
                            {
                                self.next[i] = self.ranges[i].until;
                                open -= 1;
                            }
                        }
                    }
                    if open > 0 && last_progress.elapsed() > timeout {
                        let waiting: Vec<String> = self
                            .ranges
                            .iter()
                            .zip(&self.next)
                            .filter(|(r, next)| **next < r.until)
                            .map(|(r, next)| {
                                format!("{} at offset {next} of {}", r.partition, r.until)
                            })
                            .collect();
                        break Err(SluiceError::source(
                            &self.name,
                            format!(
                                "no message from Kafka for {timeout:?} while reading {}",
                                waiting.join(", ")
                            ),
                        ));
                    }
                }
            }
        };
        let _ = consumer.unassign();
        result
    }

    fn append<M: Message>(&mut self, range: u32, message: &M) -> Result<()> {
        match &mut self.decoder {
            Some(decoder) => {
                self.records.push((range, message.offset()));
                if let Err(e) = decoder.push(message.payload().unwrap_or_default()) {
                    return Err(self.locate(e));
                }
            }
            None => self.value.append_option(message.payload()),
        }
        if let Some(metadata) = &mut self.metadata {
            metadata.append(message);
        }
        Ok(())
    }

    /// A FAILFAST error with the partition and offset of the record instead of its position.
    fn locate(&self, error: SluiceError) -> SluiceError {
        match error {
            SluiceError::MalformedRecord {
                position,
                reason,
                sample,
                ..
            } => {
                let (range, offset) = self.records[position - 1];
                SluiceError::MalformedRecord {
                    context: format!(
                        "Kafka source '{}', {} offset {offset}",
                        self.name, self.ranges[range as usize].partition
                    ),
                    position,
                    reason,
                    sample,
                }
            }
            other => other,
        }
    }

    /// The rows read, in the source's schema.
    fn finish(mut self, source: &KafkaSource) -> Result<SourceBatch> {
        let schema = source.schema();
        let metadata = self.metadata.as_mut().map(Metadata::finish);
        let Some(decoder) = &mut self.decoder else {
            let mut columns = metadata.unwrap_or_default();
            columns.insert(1, Arc::new(self.value.finish()));
            let batch = RecordBatch::try_new(schema, columns)?;
            return Ok(SourceBatch {
                batches: if batch.num_rows() > 0 {
                    vec![batch]
                } else {
                    vec![]
                },
                malformed: MalformedStats::default(),
            });
        };
        let decoded = match decoder.finish() {
            Ok(decoded) => decoded,
            Err(e) => return Err(self.locate(e)),
        };
        let batches = match metadata {
            None => decoded
                .batches
                .into_iter()
                .map(|b| RecordBatch::try_new(Arc::clone(&schema), b.columns().to_vec()))
                .collect::<std::result::Result<Vec<_>, _>>()?,
            Some(metadata) => {
                // Align the metadata of each record with the rows it produced.
                let indices = UInt32Array::from_iter_values(
                    decoded.record_positions.iter().map(|p| (*p - 1) as u32),
                );
                let mut offset = 0;
                let mut batches = Vec::new();
                for batch in decoded.batches {
                    let rows = indices.slice(offset, batch.num_rows());
                    offset += batch.num_rows();
                    let mut columns = batch.columns().to_vec();
                    for column in &metadata {
                        columns.push(take(column.as_ref(), &rows, None)?);
                    }
                    batches.push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
                }
                batches
            }
        };
        Ok(SourceBatch {
            batches,
            malformed: decoded.malformed,
        })
    }
}
