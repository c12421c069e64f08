//! Kafka source and sink on `rdkafka` (librdkafka, built from the bundled sources).
//!
//! # Source ([`KafkaSource`])
//!
//! Spark's Kafka source: the engine, not a consumer group, decides which offsets each
//! micro-batch reads and keeps them in its checkpoint (`{"topic":{"0":23}}`), so a batch re-run
//! after a crash reads exactly the same messages. Partitions are `assign`ed, never rebalanced.
//! A distributed query (`distribution = 'kafka_partitions'`) uses a consumer group only to
//! split the partitions among its workers ([`GroupMember`]), each task being a source that
//! reads one partition number ([`KafkaSourceFactory::build_task`]).
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
//! [`KafkaSource::include_metadata`] asks for them. In SQL, `kafka_header(_headers, 'name')`
//! ([`kafka_header_function`]) is a header's value (the last of that name, binary).
//!
//! Partitions that appear while the query runs are read from their earliest offset. When
//! offsets to be read are gone (retention deleted them, or the topic was deleted) or went
//! backwards (the topic was recreated or truncated: a partition now ends before where the query
//! is, Spark's "offset was changed"), the query stops with an error naming the partition and
//! the offsets, or with `fail_on_data_loss(false)` logs it, counts it
//! ([`KafkaSource::data_loss_events`]) and continues from what is left (a partition gone
//! backwards from its new start, so none of its new messages is skipped).
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
//!
//! # Modules
//!
//! - `source`: the source's options and the engine's calls; `fetch`: reading one batch's
//!   offset ranges; `message_metadata`: the metadata columns; `partitions`: the subscription
//!   and its partitions' offset bounds; `offsets`: offset arithmetic and the checkpoint's JSON.
//! - `spec`: both as pipeline files declare them ([`KAFKA_SOURCE`], [`KAFKA_SINK`]).
//! - `group`: a distributed query's membership in its consumer group, which assigns the
//!   worker its tasks (one per partition number).
//! - `sink`: the sink; `broker`: the broker address and client configurations, shared by
//!   the source, the sink and the Binance producer.

pub(crate) mod broker;
mod fetch;
mod group;
mod header;
mod message_metadata;
mod offsets;
mod partitions;
mod sink;
mod source;
mod spec;

pub use broker::{BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP, bootstrap_from_env};
pub use group::{GroupEvent, GroupMember, Release};
pub use header::kafka_header_function;
pub use offsets::{
    Bounds, DataLoss, EARLIEST, LATEST, PartitionOffsets, StartingOffsets, TopicPartition,
    data_loss, from_json, offsets_behind_latest, rate_limit, resolve_starting, to_json,
};
pub use partitions::Subscription;
pub use sink::KafkaSink;
pub use source::KafkaSource;
pub use spec::{KAFKA_SINK, KAFKA_SOURCE, KafkaSourceFactory};
