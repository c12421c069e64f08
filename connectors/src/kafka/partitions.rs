//! Which partitions the Kafka source reads ([`Subscription`]) and, asked of the brokers, each
//! one's earliest and latest offsets.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset as KafkaOffset, TopicPartitionList};
use tracing::debug;

use super::offsets::{Bounds, TopicPartition};

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

/// Reads the partitions of `subscription` and each one's low and high watermarks.
pub(crate) fn partition_bounds(
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
