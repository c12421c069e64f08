//! Kafka source and sink on `rdkafka` (librdkafka, built from the bundled sources).
//!
//! # Source ([`KafkaSource`])
//!
//! Spark's Kafka source: the engine, not a consumer group, decides which offsets each
//! micro-batch reads and keeps them in its checkpoint (`{"topic":{"0":23}}`), so a batch re-run
//! after a crash reads exactly the same messages. Partitions are `assign`ed, never rebalanced.
//!
//! | Option | Spark | Default |
//! |---|---|---|
//! | [`Subscription::Topics`] / [`Subscription::Pattern`] / [`Subscription::Assign`] | `subscribe` / `subscribePattern` / `assign` | — |
//! | [`KafkaSource::starting_offsets`] | `startingOffsets` (new queries only) | `latest` |
//! | [`KafkaSource::max_offsets_per_trigger`] | `maxOffsetsPerTrigger`, split across partitions by backlog | all available |
//! | [`KafkaSource::fail_on_data_loss`] | `failOnDataLoss` | `true` |
//! | [`KafkaSource::include_headers`] | `includeHeaders` | `false` |
//! | [`KafkaSource::json`] | `from_json(value, schema)` done by the source, in batch | raw bytes |
//! | [`KafkaSource::commit_to_group`] | — (also commit offsets to a consumer group, for lag tools) | off |
//! | [`KafkaSource::property`] | `kafka.*` (any librdkafka property: SSL, SASL, timeouts) | — |
//!
//! Raw rows have Spark's schema: `key` and `value` (binary), `topic`, `partition`, `offset`,
//! `timestamp` (ms), `timestamp_type` (0 create time, 1 log-append time), and `headers` (a list
//! of `{key, value}`) on request. With [`KafkaSource::json`], the value is decoded straight into
//! the given columns by the engine's JSON decoder (malformed values counted and handled per
//! parse mode), and the metadata columns come after them with a leading underscore (`_key`,
//! `_topic`, `_partition`, `_offset`, `_timestamp`, `_timestamp_type`, `_headers`) when
//! [`KafkaSource::include_metadata`] asks for them.
//!
//! Partitions that appear while the query runs are read from their earliest offset. When
//! offsets to be read are gone (retention deleted them, or the topic was deleted), the query
//! stops with an error naming the partition and the offsets, or with `fail_on_data_loss(false)`
//! logs it, counts it ([`KafkaSource::data_loss_events`]) and continues from what is left.
//!
//! A broker that is down when the query starts fails it after a bounded wait
//! ([`KafkaSource::fetch_timeout`]); a broker that goes away while a batch is read is waited for
//! (librdkafka reconnects) until the same timeout, and the batch is then read completely.
//!
//! # Sink ([`KafkaSink`])
//!
//! Each output row becomes one message: the row as a JSON object, or one column's bytes
//! ([`KafkaSink::raw_value`]); the key is one column's value or, for several key columns, a
//! JSON object of them. The producer is idempotent (`enable.idempotence`, `acks=all`), so
//! librdkafka's retries never duplicate a message. Like Spark's Kafka sink the guarantee is
//! **at-least-once**: a batch re-run after a crash is sent again. (Kafka transactions would make
//! it exactly-once; they are out of scope for now.)
//!
//! # Broker address
//!
//! Tests, benches and the CLI read it from `KAFKA_BOOTSTRAP` ([`bootstrap_from_env`]).

mod offsets;
mod sink;
mod source;

pub use offsets::{
    Bounds, DataLoss, EARLIEST, LATEST, PartitionOffsets, StartingOffsets, TopicPartition,
    data_loss, from_json, rate_limit, resolve_starting, to_json,
};
pub use sink::KafkaSink;
pub use source::{KafkaSource, Subscription};

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

/// The environment variable holding the broker address (`host:port[,host:port]`).
pub const BOOTSTRAP_ENV: &str = "KAFKA_BOOTSTRAP";

/// The default broker address.
pub const DEFAULT_BOOTSTRAP: &str = "localhost:9092";

/// The broker address from `KAFKA_BOOTSTRAP`, or `localhost:9092`.
pub fn bootstrap_from_env() -> String {
    std::env::var(BOOTSTRAP_ENV)
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| DEFAULT_BOOTSTRAP.to_string())
}

/// librdkafka properties whose values are secrets, masked in descriptions and logs.
const SECRET_PROPERTIES: [&str; 4] = [
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
];

/// A client configuration: our defaults, then the user's properties, which win.
fn client_config(
    bootstrap: &str,
    defaults: &[(&str, &str)],
    properties: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    for (key, value) in defaults {
        config.set(*key, *value);
    }
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

/// The user's properties for display, secrets masked.
fn describe_properties(properties: &BTreeMap<String, String>) -> String {
    properties
        .iter()
        .map(|(key, value)| {
            if SECRET_PROPERTIES.contains(&key.as_str()) {
                format!("{key}=***")
            } else {
                format!("{key}={value}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}
