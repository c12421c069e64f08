//! The Kafka sink: one message per output row, idempotent producer, at-least-once.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use arrow_json::LineDelimitedWriter;
use async_trait::async_trait;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use sluice_engine::{Result, Sink, SinkContext, SluiceError};

use super::broker::{describe_properties, idempotent_producer};

/// Deliveries awaited at most at once before the sink waits for the oldest.
const MAX_IN_FLIGHT: usize = 100_000;

/// A Kafka sink; see the [module docs](super).
pub struct KafkaSink {
    bootstrap: String,
    topic: String,
    key_columns: Vec<String>,
    raw_value: Option<String>,
    properties: BTreeMap<String, String>,
    producer: Option<FutureProducer>,
    /// Positions of the key columns and of the raw value column in the output.
    key_positions: Vec<usize>,
    value_position: Option<usize>,
}

impl KafkaSink {
    /// A sink writing to `topic` on the brokers at `bootstrap`; each row is a JSON object and
    /// messages have no key until [`KafkaSink::key_columns`] names some.
    pub fn new(bootstrap: impl Into<String>, topic: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            topic: topic.into(),
            key_columns: Vec::new(),
            raw_value: None,
            properties: BTreeMap::new(),
            producer: None,
            key_positions: Vec::new(),
            value_position: None,
        }
    }

    /// The columns whose values make the message key (so a key's messages share a partition).
    pub fn key_columns<S: Into<String>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.key_columns = columns.into_iter().map(Into::into).collect();
        self
    }

    /// Sends the bytes of column `column` (binary or string) as the value, instead of the
    /// row as JSON.
    pub fn raw_value(mut self, column: impl Into<String>) -> Self {
        self.raw_value = Some(column.into());
        self
    }

    /// A librdkafka producer property; it overrides the sink's defaults.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(key.into(), value.into());
        self
    }

    fn failed(&self, batch_id: u64, message: impl Into<String>) -> SluiceError {
        SluiceError::Sink {
            sink: self.description(),
            batch_id,
            message: message.into(),
        }
    }
}

/// Each row of `batch` as one JSON object (its bytes, without the newline).
fn json_rows(batch: &RecordBatch) -> std::result::Result<(Vec<u8>, Vec<usize>), SluiceError> {
    let mut buffer = Vec::with_capacity(batch.num_rows() * 128);
    let mut writer = LineDelimitedWriter::new(&mut buffer);
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    let ends = buffer
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i)
        .collect();
    Ok((buffer, ends))
}

#[async_trait]
impl Sink for KafkaSink {
    fn description(&self) -> String {
        let properties = describe_properties(&self.properties);
        let properties = if properties.is_empty() {
            String::new()
        } else {
            format!(", {properties}")
        };
        format!("KafkaSink[{} @ {}{properties}]", self.topic, self.bootstrap)
    }

    async fn open(&mut self, context: &SinkContext) -> Result<()> {
        let sink = self.description();
        let position = |name: &str| {
            context
                .schema
                .index_of(name)
                .map_err(|_| SluiceError::SinkOpen {
                    sink: sink.clone(),
                    message: format!("'{name}' is not a column of the query's output"),
                })
        };
        self.key_positions = self
            .key_columns
            .iter()
            .map(|c| position(c))
            .collect::<Result<_>>()?;
        self.value_position = match &self.raw_value {
            Some(column) => {
                let index = position(column)?;
                let data_type = context.schema.field(index).data_type();
                if !matches!(data_type, DataType::Binary | DataType::Utf8) {
                    return Err(SluiceError::SinkOpen {
                        sink,
                        message: format!(
                            "raw value column '{column}' is {data_type}; it must be binary or string"
                        ),
                    });
                }
                Some(index)
            }
            None => None,
        };
        let producer = idempotent_producer(
            &self.bootstrap,
            &[
                ("linger.ms", "5"),
                ("queue.buffering.max.messages", "1000000"),
                ("message.timeout.ms", "120000"),
            ],
            &self.properties,
        )
        .map_err(|e| SluiceError::SinkOpen {
            sink: self.description(),
            message: format!("cannot create a Kafka producer: {e}"),
        })?;
        self.producer = Some(producer);
        Ok(())
    }

    async fn add_batch(&mut self, batch_id: u64, batches: &[RecordBatch]) -> Result<()> {
        let Some(producer) = &self.producer else {
            return Err(self.failed(batch_id, "the sink was not opened"));
        };
        let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
        let mut sent = 0u64;
        for batch in batches {
            let (json, ends) = match self.value_position {
                Some(_) => (Vec::new(), Vec::new()),
                None => json_rows(batch).map_err(|e| self.failed(batch_id, e.to_string()))?,
            };
            let keys = self.keys(batch).map_err(|e| self.failed(batch_id, e))?;
            for row in 0..batch.num_rows() {
                let value: Option<&[u8]> = match self.value_position {
                    Some(index) => raw_bytes(batch.column(index).as_ref(), row),
                    None => {
                        let start = if row == 0 { 0 } else { ends[row - 1] + 1 };
                        Some(&json[start..ends[row]])
                    }
                };
                let mut record = FutureRecord::<[u8], [u8]>::to(&self.topic);
                if let Some(value) = value {
                    record = record.payload(value);
                }
                if let Some(key) = keys.as_ref().map(|k| k[row].as_bytes()) {
                    record = record.key(key);
                }
                loop {
                    match producer.send_result(record) {
                        Ok(delivery) => {
                            pending.push_back(delivery);
                            break;
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            // Back-pressure: wait for the oldest delivery before queuing more.
                            record = back;
                            match pending.pop_front() {
                                Some(oldest) => self.delivered(batch_id, oldest).await?,
                                None => tokio::time::sleep(Duration::from_millis(10)).await,
                            }
                        }
                        Err((e, _)) => return Err(self.failed(batch_id, e.to_string())),
                    }
                }
                sent += 1;
                if pending.len() >= MAX_IN_FLIGHT
                    && let Some(oldest) = pending.pop_front()
                {
                    self.delivered(batch_id, oldest).await?;
                }
            }
        }
        while let Some(delivery) = pending.pop_front() {
            self.delivered(batch_id, delivery).await?;
        }
        tracing::debug!(topic = %self.topic, batch_id, messages = sent, "batch delivered");
        Ok(())
    }
}

impl KafkaSink {
    /// Waits for one message's delivery report.
    async fn delivered(&self, batch_id: u64, delivery: DeliveryFuture) -> Result<()> {
        match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(self.failed(
                batch_id,
                format!("delivery to topic '{}' failed: {e}", self.topic),
            )),
            Err(_) => Err(self.failed(batch_id, "the producer was dropped")),
        }
    }

    /// The key of each row: one column's text, or a JSON object of several columns.
    fn keys(&self, batch: &RecordBatch) -> std::result::Result<Option<Vec<String>>, String> {
        match self.key_positions.as_slice() {
            [] => Ok(None),
            [index] => {
                let column = batch.column(*index);
                let formatter = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
                    .map_err(|e| e.to_string())?;
                Ok(Some(
                    (0..batch.num_rows())
                        .map(|row| formatter.value(row).to_string())
                        .collect(),
                ))
            }
            positions => {
                let keys = batch.project(positions).map_err(|e| e.to_string())?;
                let (json, ends) = json_rows(&keys).map_err(|e| e.to_string())?;
                let mut start = 0;
                Ok(Some(
                    ends.iter()
                        .map(|&end| {
                            let key = String::from_utf8_lossy(&json[start..end]).into_owned();
                            start = end + 1;
                            key
                        })
                        .collect(),
                ))
            }
        }
    }
}

/// The bytes of a binary or string value, `None` when null.
fn raw_bytes(column: &dyn Array, row: usize) -> Option<&[u8]> {
    if column.is_null(row) {
        return None;
    }
    match column.data_type() {
        DataType::Binary => Some(column.as_binary::<i32>().value(row)),
        _ => Some(column.as_string::<i32>().value(row).as_bytes()),
    }
}
