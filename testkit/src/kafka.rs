//! A Kafka-protocol broker for the tests: the one at `KAFKA_BOOTSTRAP` when set, otherwise
//! librdkafka's in-process mock cluster (a real implementation of the protocol, started
//! once per test process).

use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::mocking::MockCluster;

use crate::in_ci;

/// A request to the thread that owns the mock cluster: create a topic, answer when done.
type CreateTopic = (String, i32, mpsc::Sender<Result<(), String>>);

/// The broker the tests use.
pub struct Kafka {
    bootstrap: String,
    /// Set for the in-process mock: the channel to the thread that owns it.
    mock: Option<mpsc::Sender<CreateTopic>>,
}

impl Kafka {
    /// The external broker at `bootstrap`.
    pub fn at(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            mock: None,
        }
    }

    /// A new topic with a name no other test uses, with `partitions` partitions.
    pub async fn new_topic(&self, partitions: i32) -> String {
        let topic = format!("t-{}", unique_suffix());
        self.create_topic(&topic, partitions).await;
        topic
    }

    /// `host:port` of the broker, for `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// Whether this is librdkafka's in-process mock (no admin API: topics are created
    /// through the mock's own interface, and cannot be deleted).
    pub fn is_mock(&self) -> bool {
        self.mock.is_some()
    }

    /// Creates `topic` with `partitions` partitions.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        if let Some(mock) = &self.mock {
            let (reply, answer) = mpsc::channel();
            mock.send((topic.to_string(), partitions, reply))
                .expect("the mock cluster's thread is alive");
            answer
                .recv()
                .expect("the mock cluster answers")
                .unwrap_or_else(|e| panic!("create topic {topic} on the mock cluster: {e}"));
            return;
        }
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.bootstrap)
            .create()
            .expect("admin client");
        let results = admin
            .create_topics(
                &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .expect("create topic");
        for result in results {
            result.expect("topic created");
        }
    }
}

/// The broker for this test process: `KAFKA_BOOTSTRAP` when set; otherwise, outside CI, the
/// in-process mock cluster. Under `CI=true`, `KAFKA_BOOTSTRAP` is required: CI tests against
/// the external broker.
pub fn kafka() -> &'static Kafka {
    static KAFKA: OnceLock<Kafka> = OnceLock::new();
    KAFKA.get_or_init(|| match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(bootstrap) if !bootstrap.is_empty() => Kafka::at(bootstrap),
        _ if in_ci() => {
            panic!("CI=true but KAFKA_BOOTSTRAP is not set: the Kafka tests must run against it")
        }
        _ => start_mock(),
    })
}

/// Starts the mock cluster on a thread that keeps it for the life of the process (the mock
/// is not `Sync`, so the thread serves topic creation over a channel).
fn start_mock() -> Kafka {
    let (requests, inbox) = mpsc::channel::<CreateTopic>();
    let (address, bootstrap) = mpsc::channel();
    std::thread::Builder::new()
        .name("kafka-mock".into())
        .spawn(move || {
            let mock = MockCluster::new(1).expect("librdkafka's mock cluster");
            let _ = address.send(mock.bootstrap_servers());
            for (topic, partitions, reply) in inbox {
                let _ = reply.send(
                    mock.create_topic(&topic, partitions, 1)
                        .map_err(|e| e.to_string()),
                );
            }
        })
        .expect("start the mock cluster's thread");
    let bootstrap = bootstrap.recv().expect("the mock cluster's address");
    eprintln!(
        "KAFKA_BOOTSTRAP is not set: using librdkafka's in-process mock cluster at {bootstrap}"
    );
    Kafka {
        bootstrap,
        mock: Some(requests),
    }
}

/// A name part unique across test processes and calls: the process id, a counter and the
/// clock's nanoseconds.
fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
