//! Scale-out over Kafka partitions: a worker's membership in its query's consumer group
//! ([`GroupMember`]), which tells the worker which tasks to run.
//!
//! Workers that run the same query with `distribution = 'kafka_partitions'` join one consumer
//! group subscribed to the query's topics. The group coordinator (a broker) and the assignor
//! split the partitions among the live members, and the member owning partition `p` runs
//! **task `p`**. A query reading one topic uses the cooperative sticky assignor: a rebalance
//! moves only the partitions it must, and the other tasks run on undisturbed. A query reading
//! several topics uses the range assignor, which gives partition `p` of every topic to the
//! same member (Kafka Streams' co-partitioning; the topics must have the same number of
//! partitions, checked when joining), with eager rebalances. The member reads no
//! message through the group: its partitions are paused, and each task reads its partition's
//! offsets with its own source and checkpoint, as Spark's Kafka source does. Nothing is ever
//! committed to the group.
//!
//! Either way a partition is revoked from its owner before it is assigned to another, and the
//! member waits ([`GroupEvent::Revoked`]) until the worker has stopped those tasks, so a
//! partition moves to its new owner only after the old one has finished its batch. A member
//! that stops heart-beating (killed, or cut off for `session.timeout.ms`) loses its
//! partitions without being asked; its tasks resume from their checkpoints, which never let
//! two runs commit the same batch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::TopicPartitionList;
use sluice_engine::{Result, SluiceError};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tracing::{info, warn};

use super::broker::client_config;

/// Our consumer settings for membership, which the user's `properties.*` may change. A killed
/// worker's tasks move after `session.timeout.ms` (librdkafka's default is 45 s); a worker
/// learns of a rebalance at its next heartbeat, so a short interval moves tasks sooner.
const MEMBER_DEFAULTS: [(&str, &str); 3] = [
    ("session.timeout.ms", "10000"),
    ("heartbeat.interval.ms", "500"),
    ("enable.partition.eof", "false"),
];

/// How long a revocation waits for the worker to stop its tasks (each finishes its batch) before
/// the member rejoins anyway: librdkafka's default `max.poll.interval.ms`.
const REVOKE_WAIT: Duration = Duration::from_secs(300);

/// What the group tells the worker.
#[derive(Debug)]
pub enum GroupEvent {
    /// These tasks (partition numbers) are now (also) this worker's: all of its tasks after an
    /// eager rebalance, the added ones after a cooperative one.
    Assigned(Vec<i32>),
    /// These tasks are taken away: stop them, then [`Release::done`] (or drop it).
    Revoked {
        /// The tasks to stop.
        tasks: Vec<i32>,
        /// Tells the member the tasks have stopped, so it may rejoin.
        release: Release,
    },
    /// The membership failed (e.g. a topic is missing or partitioned differently).
    Failed(String),
}

/// The worker's acknowledgement that revoked tasks have stopped; dropping it acknowledges too.
#[derive(Debug)]
pub struct Release(SyncSender<()>);

impl Release {
    /// The revoked tasks have stopped.
    pub fn done(self) {
        let _ = self.0.try_send(());
    }
}

/// This worker's membership in a consumer group, driven by its own thread until dropped
/// (leaving the group, which hands its tasks to the other members).
pub struct GroupMember {
    events: UnboundedReceiver<GroupEvent>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl GroupMember {
    /// Joins group `group` on the brokers `bootstrap` (with the user's librdkafka
    /// `properties`: SSL, SASL, timeouts), subscribed to `topics`.
    pub fn join(
        group: &str,
        bootstrap: &str,
        topics: &[String],
        properties: &BTreeMap<String, String>,
    ) -> Result<Self> {
        if topics.is_empty() {
            return Err(SluiceError::Config(
                "a consumer group needs at least one topic".into(),
            ));
        }
        let (sender, events) = unbounded_channel();
        // One topic: move as few tasks as possible; several: co-partition them.
        let strategy = if topics.len() == 1 {
            "cooperative-sticky"
        } else {
            "range"
        };
        // What the task model relies on is set over the user's properties.
        let consumer: BaseConsumer<MemberContext> =
            client_config(bootstrap, &MEMBER_DEFAULTS, properties)
                .set("group.id", group)
                .set("partition.assignment.strategy", strategy)
                .set("enable.auto.commit", "false")
                .create_with_context(MemberContext {
                    events: sender.clone(),
                })
                .map_err(|e| SluiceError::Config(format!("joining consumer group {group}: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let topics = topics.to_vec();
        let running = stop.clone();
        let group = group.to_string();
        let thread = std::thread::Builder::new()
            .name(format!("group {group}"))
            .spawn(move || member_loop(&consumer, &group, &topics, &running, &sender))
            .map_err(|e| SluiceError::Config(format!("starting the group member: {e}")))?;
        Ok(Self {
            events,
            stop,
            thread: Some(thread),
        })
    }

    /// The group's next word to this worker; `None` once the member has left.
    pub async fn next(&mut self) -> Option<GroupEvent> {
        self.events.recv().await
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Revocations during the leave are acknowledged at once (nothing runs any more): no
        // new event is accepted, and those waiting are dropped, releasing their callbacks.
        self.events.close();
        while self.events.try_recv().is_ok() {}
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Checks the topics, subscribes, then polls (which runs the rebalance callbacks) until told
/// to stop; dropping the consumer leaves the group.
fn member_loop(
    consumer: &BaseConsumer<MemberContext>,
    group: &str,
    topics: &[String],
    stop: &AtomicBool,
    events: &UnboundedSender<GroupEvent>,
) {
    let fail = |message: String| {
        let _ = events.send(GroupEvent::Failed(message));
    };
    if let Err(message) = check_co_partitioned(consumer, topics) {
        return fail(message);
    }
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    if let Err(e) = consumer.subscribe(&names) {
        return fail(format!(
            "subscribing group {group} to {}: {e}",
            topics.join(", ")
        ));
    }
    info!(group, topics = topics.join(","), "joined consumer group");
    while !stop.load(Ordering::Relaxed) {
        // Partitions are paused: polling serves heartbeats, rebalances and errors only.
        if let Some(Err(e)) = consumer.poll(Duration::from_millis(100)) {
            warn!(group, "consumer group: {e}");
        }
    }
    consumer.unsubscribe();
}

/// Every topic exists and all have the same number of partitions, so that partition `p` of
/// each is assigned to the same member.
fn check_co_partitioned(
    consumer: &BaseConsumer<MemberContext>,
    topics: &[String],
) -> std::result::Result<(), String> {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .map_err(|e| format!("reading the metadata of topic {topic}: {e}"))?;
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().len())
            .filter(|&n| n > 0)
            .ok_or_else(|| {
                format!("topic {topic} does not exist (create it before the workers)")
            })?;
        counts.push((topic, partitions));
        if counts[0].1 != partitions {
            let counts: Vec<String> = counts.iter().map(|(t, n)| format!("{t}: {n}")).collect();
            return Err(format!(
                "the topics of a distributed query must have the same number of partitions, \
                 so that partition p of each is one task ({})",
                counts.join(", ")
            ));
        }
    }
    Ok(())
}

/// The partition numbers of `list`, sorted, without repeats.
fn tasks_of(list: &TopicPartitionList) -> Vec<i32> {
    let mut tasks: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
    tasks.sort_unstable();
    tasks.dedup();
    tasks
}

/// Turns librdkafka's rebalance callbacks into [`GroupEvent`]s.
struct MemberContext {
    events: UnboundedSender<GroupEvent>,
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let tasks = tasks_of(list);
            if tasks.is_empty() {
                return;
            }
            let (release, stopped): (SyncSender<()>, Receiver<()>) = sync_channel(1);
            let event = GroupEvent::Revoked {
                tasks,
                release: Release(release),
            };
            if self.events.send(event).is_ok() && stopped.recv_timeout(REVOKE_WAIT).is_err() {
                warn!("revoked tasks did not stop in {REVOKE_WAIT:?}; rejoining the group");
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                if let Err(e) = consumer.pause(list) {
                    warn!("pausing the assigned partitions: {e}");
                }
                let _ = self.events.send(GroupEvent::Assigned(tasks_of(list)));
            }
            Rebalance::Revoke(_) => {}
            // The partitions are unassigned: the tasks must not run on.
            Rebalance::Error(e) => {
                let _ = self
                    .events
                    .send(GroupEvent::Failed(format!("consumer group rebalance: {e}")));
            }
        }
    }

    fn commit_callback(&self, _: KafkaResult<()>, _: &TopicPartitionList) {}
}
