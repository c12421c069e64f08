//! Reaching the brokers, shared by the Kafka source, the Kafka sink and the Binance producer:
//! the broker address, client configurations (our defaults, then the user's librdkafka
//! properties) and their description with secrets masked.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureProducer;

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

/// The settings of every producer: idempotent (librdkafka's retries never duplicate a
/// message) and acknowledged by all in-sync replicas.
pub(crate) const IDEMPOTENT_PRODUCER: [(&str, &str); 2] =
    [("enable.idempotence", "true"), ("acks", "all")];

/// A client configuration: our defaults, then the user's properties, which win.
pub(crate) fn client_config(
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

/// An idempotent producer ([`IDEMPOTENT_PRODUCER`]) with the caller's `defaults`, then the
/// user's properties.
pub(crate) fn idempotent_producer(
    bootstrap: &str,
    defaults: &[(&str, &str)],
    properties: &BTreeMap<String, String>,
) -> Result<FutureProducer, KafkaError> {
    let mut all = IDEMPOTENT_PRODUCER.to_vec();
    all.extend_from_slice(defaults);
    client_config(bootstrap, &all, properties).create()
}

/// The user's properties for display, secrets masked.
pub(crate) fn describe_properties(properties: &BTreeMap<String, String>) -> String {
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
