//! The fetch loop of the Kafka source: reads one micro-batch's offset ranges with an
//! `assign`ed consumer, on a blocking thread, into raw or JSON-decoded rows and their message
//! metadata.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{BinaryBuilder, RecordBatch, UInt32Array};
use arrow::compute::take;
use arrow::datatypes::SchemaRef;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use sluice_engine::json::MalformedStats;
use sluice_engine::{JsonDecoder, Result, SluiceError, SourceBatch};
use tracing::debug;

use super::message_metadata::MessageMetadata;
use super::offsets::TopicPartition;

/// The offsets `[from, until)` of one partition, to read in one batch.
pub(crate) struct Range {
    pub(crate) partition: TopicPartition,
    pub(crate) from: i64,
    pub(crate) until: i64,
}

/// One batch being read: the ranges, where each stands, and the rows built so far.
pub(crate) struct Fetch {
    ranges: Vec<Range>,
    /// Per range, the next offset expected.
    next: Vec<i64>,
    decoder: Option<JsonDecoder>,
    value: BinaryBuilder,
    metadata: Option<MessageMetadata>,
    /// For FAILFAST errors: the range and offset of each record pushed to the decoder.
    records: Vec<(u32, i64)>,
    /// The source's name, for errors.
    name: String,
}

impl Fetch {
    /// A fetch of `ranges` for source `name`: values decoded by `decoder` (raw bytes without
    /// one), message metadata collected when `metadata` is given.
    pub(crate) fn new(
        name: &str,
        ranges: Vec<Range>,
        decoder: Option<JsonDecoder>,
        metadata: Option<MessageMetadata>,
    ) -> Self {
        Self {
            next: ranges.iter().map(|r| r.from).collect(),
            ranges,
            decoder,
            value: BinaryBuilder::new(),
            metadata,
            records: Vec::new(),
            name: name.to_string(),
        }
    }

    /// Reads every range to its end. Blocking: runs on a blocking thread.
    pub(crate) fn run(&mut self, consumer: &BaseConsumer, timeout: Duration) -> Result<()> {
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

    /// The rows read, in the source's `schema`.
    pub(crate) fn finish(mut self, schema: SchemaRef) -> Result<SourceBatch> {
        let metadata = self.metadata.as_mut().map(MessageMetadata::finish);
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
