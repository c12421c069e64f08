//! Kafka offsets as the source keeps them in the checkpoint, and the decisions made on them:
//! where a new query starts, how a read limit is split across partitions, and what counts as
//! data loss. Pure functions, tested without a broker.
//!
//! The checkpoint format is Spark's: `{"topic":{"0":23,"1":45}}`, each number being the next
//! offset to read in that partition.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};
use sluice_engine::{Offset, SluiceError};

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition number.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`'s partition `partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// The next offset to read in each partition.
pub type PartitionOffsets = BTreeMap<TopicPartition, i64>;

/// Spark's JSON form of partition offsets, `{"topic":{"0":23}}`.
pub fn to_json(offsets: &PartitionOffsets) -> Offset {
    let mut topics: BTreeMap<&str, Map<String, Value>> = BTreeMap::new();
    for (tp, offset) in offsets {
        topics
            .entry(tp.topic.as_str())
            .or_default()
            .insert(tp.partition.to_string(), Value::from(*offset));
    }
    Offset::new(Value::Object(
        topics
            .into_iter()
            .map(|(topic, partitions)| (topic.to_string(), Value::Object(partitions)))
            .collect(),
    ))
}

/// Parses Spark's JSON form of partition offsets.
pub fn from_json(value: &Value) -> Result<PartitionOffsets, String> {
    let topics = value
        .as_object()
        .ok_or_else(|| format!("expected {{\"topic\":{{\"partition\":offset}}}}, got {value}"))?;
    let mut offsets = PartitionOffsets::new();
    for (topic, partitions) in topics {
        let partitions = partitions
            .as_object()
            .ok_or_else(|| format!("topic '{topic}': expected an object of partitions"))?;
        for (partition, offset) in partitions {
            let partition: i32 = partition
                .parse()
                .map_err(|_| format!("topic '{topic}': '{partition}' is not a partition number"))?;
            let offset = offset
                .as_i64()
                .ok_or_else(|| format!("{topic}-{partition}: offset {offset} is not an integer"))?;
            offsets.insert(TopicPartition::new(topic.clone(), partition), offset);
        }
    }
    Ok(offsets)
}

/// Spark's `-2` in `startingOffsets`: the partition's earliest offset.
pub const EARLIEST: i64 = -2;
/// Spark's `-1` in `startingOffsets`: the partition's latest offset.
pub const LATEST: i64 = -1;

/// Where a brand-new query starts reading (`starting_offsets`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StartingOffsets {
    /// After everything already in the topics (Spark's default for streaming).
    #[default]
    Latest,
    /// From the first offset still available.
    Earliest,
    /// Per partition, `-2` meaning earliest and `-1` latest; partitions not named start at
    /// latest, as in Spark.
    Specific(PartitionOffsets),
}

impl std::str::FromStr for StartingOffsets {
    type Err = SluiceError;

    /// `latest`, `earliest`, or Spark's JSON `{"topic":{"0":23,"1":-2}}`.
    fn from_str(text: &str) -> Result<Self, SluiceError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "latest" => Ok(Self::Latest),
            "earliest" => Ok(Self::Earliest),
            _ => {
                let value: Value = serde_json::from_str(text).map_err(|e| {
                    SluiceError::Config(format!(
                        "starting_offsets must be 'latest', 'earliest' or JSON like \
                         {{\"topic\":{{\"0\":23}}}}: {e}"
                    ))
                })?;
                let offsets = from_json(&value)
                    .map_err(|e| SluiceError::Config(format!("starting_offsets: {e}")))?;
                if let Some((tp, offset)) = offsets.iter().find(|(_, o)| **o < EARLIEST) {
                    return Err(SluiceError::Config(format!(
                        "starting_offsets: {tp} has offset {offset}; use -2 (earliest), \
                         -1 (latest) or an offset ≥ 0"
                    )));
                }
                Ok(Self::Specific(offsets))
            }
        }
    }
}

/// The earliest and latest offsets of a partition (its low and high watermarks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// The first offset still stored.
    pub earliest: i64,
    /// The offset the next message will get.
    pub latest: i64,
}

/// The offsets a new query starts from, for the partitions that exist now.
pub fn resolve_starting(
    starting: &StartingOffsets,
    bounds: &BTreeMap<TopicPartition, Bounds>,
) -> PartitionOffsets {
    bounds
        .iter()
        .map(|(tp, b)| {
            let offset = match starting {
                StartingOffsets::Latest => b.latest,
                StartingOffsets::Earliest => b.earliest,
                StartingOffsets::Specific(given) => match given.get(tp).copied() {
                    Some(EARLIEST) => b.earliest,
                    Some(LATEST) | None => b.latest,
                    Some(offset) => offset,
                },
            };
            (tp.clone(), offset)
        })
        .collect()
}

/// How far a batch ending at `end` is behind the `latest` offsets, as the source's progress
/// metrics: Spark's `minOffsetsBehindLatest`, `maxOffsetsBehindLatest` and
/// `avgOffsetsBehindLatest` over the partitions of `latest` (a partition missing from `end`
/// counts from 0, as in Spark; numbers formatted as Java does), and one
/// `offsetsBehindLatest:<topic>:<partition>` per partition (Sluice). Empty without partitions.
pub fn offsets_behind_latest(
    end: &PartitionOffsets,
    latest: &PartitionOffsets,
) -> BTreeMap<String, String> {
    let behind: Vec<(&TopicPartition, i64)> = latest
        .iter()
        .map(|(tp, &latest)| (tp, latest - end.get(tp).copied().unwrap_or(0)))
        .collect();
    let mut metrics = BTreeMap::new();
    let (Some(min), Some(max)) = (
        behind.iter().map(|(_, b)| *b).min(),
        behind.iter().map(|(_, b)| *b).max(),
    ) else {
        return metrics;
    };
    let sum: i64 = behind.iter().map(|(_, b)| *b).sum();
    metrics.insert("minOffsetsBehindLatest".into(), min.to_string());
    metrics.insert("maxOffsetsBehindLatest".into(), max.to_string());
    metrics.insert(
        "avgOffsetsBehindLatest".into(),
        java_double(sum as f64 / behind.len() as f64),
    );
    for (tp, behind) in behind {
        metrics.insert(
            format!("offsetsBehindLatest:{}:{}", tp.topic, tp.partition),
            behind.to_string(),
        );
    }
    metrics
}

/// A double as Java's `Double.toString` writes it (`12.5`, `3.0`, `1.0E7`), as Spark's
/// progress maps carry them.
fn java_double(value: f64) -> String {
    let with_point = |digits: String| {
        if digits.contains(['.', 'N', 'i']) {
            digits
        } else {
            digits + ".0"
        }
    };
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let magnitude = value.abs();
    if value == 0.0 || value.is_nan() || (1e-3..1e7).contains(&magnitude) {
        return with_point(format!("{value}"));
    }
    let scientific = format!("{value:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    format!("{}E{exponent}", with_point(mantissa.to_string()))
}

/// Spark's split of `max_offsets_per_trigger` across partitions: each partition gets a share
/// proportional to its backlog (`latest - start`), rounded down, or up when below one.
pub fn rate_limit(
    start: &PartitionOffsets,
    latest: &PartitionOffsets,
    limit: u64,
) -> PartitionOffsets {
    let backlog =
        |tp: &TopicPartition, end: i64| (end - start.get(tp).copied().unwrap_or(0)).max(0);
    let total: i64 = latest.iter().map(|(tp, &end)| backlog(tp, end)).sum();
    if total <= limit as i64 {
        return latest.clone();
    }
    latest
        .iter()
        .map(|(tp, &end)| {
            let begin = start.get(tp).copied().unwrap_or(0);
            let size = backlog(tp, end);
            let share = limit as f64 * (size as f64 / total as f64);
            let share = if share < 1.0 {
                share.ceil()
            } else {
                share.floor()
            } as i64;
            (tp.clone(), (begin + share).min(end).max(begin))
        })
        .collect()
}

/// Offsets that cannot be read as planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataLoss {
    /// The partition's messages before `earliest` were deleted (retention) while the query
    /// still had to read them from `wanted`.
    Deleted {
        /// The partition.
        partition: TopicPartition,
        /// Where the query had to start.
        wanted: i64,
        /// The first offset still stored.
        earliest: i64,
    },
    /// The partition no longer exists (its topic was deleted).
    Vanished {
        /// The partition.
        partition: TopicPartition,
    },
    /// The partition ends before where the query is: its offsets went backwards (the topic
    /// was deleted and created again, or truncated). Spark's "offset was changed".
    Reset {
        /// The partition.
        partition: TopicPartition,
        /// Where the query had to start.
        wanted: i64,
        /// The offset the partition's next message will get now.
        latest: i64,
        /// The first offset stored now: where reading continues.
        earliest: i64,
    },
}

impl fmt::Display for DataLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Deleted {
                partition,
                wanted,
                earliest,
            } => write!(
                f,
                "{partition}: offsets {wanted}..{earliest} were deleted before they were read \
                 (the earliest offset is now {earliest})"
            ),
            Self::Vanished { partition } => {
                write!(f, "{partition} no longer exists (was its topic deleted?)")
            }
            Self::Reset {
                partition,
                wanted,
                latest,
                earliest,
            } => write!(
                f,
                "{partition}: offset was changed from {wanted} to {latest} (the partition now \
                 ends before where the query is: was the topic recreated or truncated?); \
                 reading would continue from offset {earliest}"
            ),
        }
    }
}

/// The partitions of `start` that cannot be read from their offset given the current
/// `bounds`: vanished, deleted before they were read, or gone backwards.
pub fn data_loss(
    start: &PartitionOffsets,
    bounds: &BTreeMap<TopicPartition, Bounds>,
) -> Vec<DataLoss> {
    start
        .iter()
        .filter_map(|(tp, &wanted)| match bounds.get(tp) {
            None => Some(DataLoss::Vanished {
                partition: tp.clone(),
            }),
            Some(b) if wanted < b.earliest => Some(DataLoss::Deleted {
                partition: tp.clone(),
                wanted,
                earliest: b.earliest,
            }),
            Some(b) if wanted > b.latest => Some(DataLoss::Reset {
                partition: tp.clone(),
                wanted,
                latest: b.latest,
                earliest: b.earliest,
            }),
            Some(_) => None,
        })
        .collect()
}
