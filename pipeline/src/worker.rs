//! Scale-out: a worker of a distributed query (`SET distribution = 'kafka_partitions'`).
//!
//! As in Kafka Streams, the unit of work is a **task**: partition `p` of every topic the
//! query reads (the topics are co-partitioned: same partition count, same message keys). A
//! task is the query itself over that partition alone, with its own checkpoint
//! (`<checkpoint>/<query>/tasks/<p>`: offsets, commits, state, watermark) and its own rows in
//! the sinks' commit table (`<query>/task-<p>`), so a task runs the same wherever it runs.
//!
//! Every `sluice run` process with the query is a worker: it joins the query's consumer group
//! (`sluice-<query>`), and runs the tasks the group assigns it
//! ([`sluice_connectors::kafka::GroupMember`]). When the group rebalances (a worker joins,
//! leaves or dies), a worker stops its revoked tasks after their batch in progress, and the
//! new owner resumes each from its checkpoint: what a task committed stays committed once,
//! and what it had not committed is done again by the new owner, whose exactly-once sinks
//! skip what was already written. The output is therefore the same for any number of
//! workers and however the tasks move. The watermark is each task's own (Kafka Streams'
//! stream time), not Spark's global one: a query that needs the global watermark runs with
//! `distribution = 'spark'` in one process.
//!
//! A task's groups must stay within its partition: the query's stateful operators group by
//! the sources' `partitioned_by` column, checked when the worker starts
//! ([`sluice_engine::StreamingQueryBuilder::check_partitioned_by`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sluice_connectors::kafka::{GroupEvent, GroupMember, KafkaSourceFactory};
use sluice_engine::{Location, PartitionedBy, SluiceError, StreamingQuery, StreamingQueryBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::error::{PipelineError, Result};

/// How often the worker looks at its tasks (to notice one that failed or, available-now,
/// finished).
const TICK: Duration = Duration::from_millis(200);

/// How long an available-now worker that was given no task waits for one before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// The tasks a worker runs now, by partition number.
type Tasks = Arc<Mutex<BTreeMap<i32, StreamingQuery>>>;

/// What a worker needs of its query: its name and checkpoint, whether it runs available-now,
/// how to build the query of one task, and how to word an error of the query.
pub(crate) struct TaskQuery {
    /// The query's name.
    pub(crate) name: String,
    /// The checkpoint location (`SET checkpoint`), which holds every task's checkpoint.
    pub(crate) checkpoint: Option<String>,
    /// Whether the tasks run available-now (then the worker ends when they are done).
    pub(crate) available_now: bool,
    /// The builder of task `p`'s query.
    pub(crate) build: Arc<dyn Fn(i32) -> Result<StreamingQueryBuilder> + Send + Sync>,
    /// An engine error as the query's error (its file and `INSERT`).
    pub(crate) error: Arc<dyn Fn(SluiceError) -> PipelineError + Send + Sync>,
}

/// A worker of a distributed query: its group membership and the tasks it runs, driven by a
/// background task until [`Worker::stop`], an error, or (available-now) the end of its
/// tasks.
pub struct Worker {
    name: String,
    tasks: Tasks,
    stop: watch::Sender<bool>,
    handle: Option<JoinHandle<Result<()>>>,
}

impl Worker {
    /// Joins the consumer group of `query` (split as `plan` says) and starts running the tasks
    /// the group assigns.
    pub(crate) async fn start(query: TaskQuery, plan: TaskPlan) -> Result<Self> {
        let group = claim_group(query.checkpoint.as_deref(), &query.name)
            .await
            .map_err(&*query.error)?;
        let member = GroupMember::join(&group, &plan.bootstrap, &plan.topics, &plan.properties)
            .map_err(&*query.error)?;
        info!(
            query = query.name,
            group, "worker joining its consumer group"
        );
        let tasks = Tasks::default();
        let (stop, stopped) = watch::channel(false);
        let name = query.name.clone();
        let run = Run {
            query,
            member,
            tasks: tasks.clone(),
        };
        Ok(Self {
            name,
            tasks,
            stop,
            handle: Some(tokio::spawn(run.run(stopped))),
        })
    }

    /// The query's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tasks this worker runs now (handles to them), by partition number.
    pub fn tasks(&self) -> Vec<StreamingQuery> {
        lock(&self.tasks).values().cloned().collect()
    }

    /// Whether the worker has ended (stopped, failed, or finished its available-now tasks);
    /// [`Worker::stop`] then returns how.
    pub fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Stops the tasks after their batch in progress and leaves the group (handing the tasks
    /// to the other workers); returns the worker's error if it had failed. A worker dropped
    /// without `stop` stops the same way, in the background.
    pub async fn stop(&mut self) -> Result<()> {
        let _ = self.stop.send(true);
        match self.handle.take() {
            None => Ok(()),
            Some(handle) => match handle.await {
                Ok(result) => result,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Ok(()),
            },
        }
    }
}

/// How a distributed query splits into tasks: its topics and brokers, checked.
pub(crate) struct TaskPlan {
    /// The topics of all its sources, in first-read order.
    pub(crate) topics: Vec<String>,
    bootstrap: String,
    properties: BTreeMap<String, String>,
}

impl TaskPlan {
    /// Checks that every source (`name`, its Kafka factory if it is a Kafka source) reads
    /// Kafka topics of one cluster and declares its `partitioned_by` column, and that the
    /// stateful operators of the query `planned` group by those columns.
    pub(crate) async fn new(
        sources: &[(String, Option<&KafkaSourceFactory>)],
        planned: StreamingQueryBuilder,
    ) -> Result<Self, SluiceError> {
        let mut by = PartitionedBy::new();
        let mut topics: Vec<String> = Vec::new();
        let mut first: Option<&KafkaSourceFactory> = None;
        for (name, kafka) in sources {
            let source = kafka.ok_or_else(|| {
                SluiceError::Config(format!("source {name} is not a Kafka source"))
            })?;
            let column = source.partitioned_by().ok_or_else(|| {
                SluiceError::Config(format!(
                    "distribution = 'kafka_partitions' needs to know how the messages of {name} \
                     are keyed: declare the key column with the source option partitioned_by \
                     (our Binance producer keys by symbol: partitioned_by = 'symbol')"
                ))
            })?;
            by.insert(name.clone(), column.to_string());
            if let Some(first) = first
                && first.bootstrap() != source.bootstrap()
            {
                return Err(SluiceError::Config(format!(
                    "the sources of a distributed query read one Kafka cluster: {name} reads \
                     {}, another {}",
                    source.bootstrap(),
                    first.bootstrap()
                )));
            }
            for topic in source.topics()? {
                if !topics.contains(topic) {
                    topics.push(topic.clone());
                }
            }
            first.get_or_insert(source);
        }
        let first = first.ok_or_else(|| SluiceError::Config("the query reads no source".into()))?;
        planned.check_partitioned_by(&by).await?;
        Ok(Self {
            topics,
            bootstrap: first.bootstrap().to_string(),
            properties: first.properties().clone(),
        })
    }
}

/// The file in a distributed query's checkpoint directory naming its consumer group.
const DISTRIBUTION_FILE: &str = "distribution";

/// The checkpoint directory of query `name` under `checkpoint` (which a distributed query
/// requires).
fn checkpoint_dir(checkpoint: Option<&str>, name: &str) -> Result<Location, SluiceError> {
    let dir = checkpoint.ok_or_else(|| {
        SluiceError::Config("a distributed query needs a checkpoint shared by its workers".into())
    })?;
    Location::parse(&format!("{dir}/{name}"))
}

/// The consumer group of query `name`'s workers, kept in its checkpoint directory
/// (`distribution`, written once by the first worker: `sluice-<query>-<random>`), so that two
/// deployments of a query with different checkpoints never share a group, and all workers of
/// one do. A directory holding a one-process checkpoint is refused: its offsets and state
/// would be ignored, and its output written again.
async fn claim_group(checkpoint: Option<&str>, name: &str) -> Result<String, SluiceError> {
    let location = checkpoint_dir(checkpoint, name)?;
    let path = location.child(DISTRIBUTION_FILE);
    loop {
        match location.store.get(&path).await {
            Ok(found) => {
                let text = found.bytes().await?;
                let marker: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
                    SluiceError::Config(format!("{}/{DISTRIBUTION_FILE}: {e}", location.display))
                })?;
                return marker["group"].as_str().map(str::to_string).ok_or_else(|| {
                    SluiceError::Config(format!(
                        "{}/{DISTRIBUTION_FILE} names no consumer group",
                        location.display
                    ))
                });
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let offsets = location.child("offsets");
        if !location
            .store
            .list_with_delimiter(Some(&offsets))
            .await?
            .objects
            .is_empty()
        {
            return Err(SluiceError::Config(format!(
                "{} holds the checkpoint of a one-process run (distribution = 'spark'): a \
                 distributed query keeps one checkpoint per task and would read the topics again; \
                 give it another checkpoint location (or query name), or run it with \
                 distribution = 'spark'",
                location.display
            )));
        }
        let group = format!(
            "sluice-{name}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let marker = serde_json::json!({ "distribution": "kafka_partitions", "group": group });
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match location
            .store
            .put_opts(&path, PutPayload::from(marker.to_string()), options)
            .await
        {
            Ok(_) => return Ok(group),
            // Another worker wrote it first: read theirs.
            Err(object_store::Error::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Refuses to run query `name` in one process over the checkpoint of a distributed run,
/// whose tasks' offsets and state it would not read.
pub(crate) async fn check_not_distributed(
    checkpoint: Option<&str>,
    name: &str,
) -> Result<(), SluiceError> {
    if checkpoint.is_none() {
        return Ok(());
    }
    let location = checkpoint_dir(checkpoint, name)?;
    match location
        .store
        .head(&location.child(DISTRIBUTION_FILE))
        .await
    {
        Ok(_) => Err(SluiceError::Config(format!(
            "{} holds the checkpoints of a distributed run (distribution = \
             'kafka_partitions'): run the query distributed, or give it another checkpoint \
             location (or query name)",
            location.display
        ))),
        Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn lock(tasks: &Tasks) -> std::sync::MutexGuard<'_, BTreeMap<i32, StreamingQuery>> {
    tasks.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The worker's loop and what it owns.
struct Run {
    query: TaskQuery,
    member: GroupMember,
    tasks: Tasks,
}

impl Run {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) -> Result<()> {
        let result = self.serve(&mut stopped).await;
        // Stop what still runs, then leave the group: dropping the member waits for its
        // thread, so off the runtime's threads.
        let stopping = self.stop_tasks(None).await;
        let member = self.member;
        let _ = tokio::task::spawn_blocking(move || drop(member)).await;
        result.and(stopping)
    }

    async fn serve(&mut self, stopped: &mut watch::Receiver<bool>) -> Result<()> {
        // Available-now: whether a task finished here, whether a revocation awaits its
        // assignment, and since when the worker has had no task.
        let mut finished = false;
        let mut rebalancing = false;
        let mut idle_since: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = stopped.changed() => return Ok(()),
                event = self.member.next() => match event {
                    None => return Err(self.error("the consumer group member ended".into())),
                    Some(GroupEvent::Failed(message)) => return Err(self.error(message)),
                    Some(GroupEvent::Revoked { tasks, release }) => {
                        info!(query = self.query.name, ?tasks, "tasks revoked");
                        rebalancing = true;
                        let stopped = self.stop_tasks(Some(&tasks)).await;
                        release.done();
                        stopped?;
                    }
                    Some(GroupEvent::Assigned(tasks)) => {
                        rebalancing = false;
                        self.start_tasks(&tasks).await?;
                        let running: Vec<i32> = lock(&self.tasks).keys().copied().collect();
                        info!(query = self.query.name, ?tasks, ?running, "tasks assigned");
                    }
                },
                _ = tokio::time::sleep(TICK) => {
                    finished |= self.check_tasks().await?;
                    // Available-now: done when the tasks that ran here have finished (and no
                    // assignment is awaited), or when none came (more workers than
                    // partitions; a cooperative rebalance first assigns a joining worker
                    // nothing, so wait for another round).
                    if self.query.available_now && !rebalancing && lock(&self.tasks).is_empty() {
                        let idle = *idle_since.get_or_insert_with(Instant::now);
                        if finished || idle.elapsed() > IDLE_EXIT {
                            return Ok(());
                        }
                    } else {
                        idle_since = None;
                    }
                }
            }
        }
    }

    /// Starts the tasks not running yet, all at once (each plans its query, recovers from
    /// its checkpoint and opens its sink); those that started run even if another failed.
    async fn start_tasks(&mut self, tasks: &[i32]) -> Result<()> {
        let new: Vec<i32> = {
            let running = lock(&self.tasks);
            tasks
                .iter()
                .copied()
                .filter(|t| !running.contains_key(t))
                .collect()
        };
        let query = &self.query;
        let starts = new.into_iter().map(|task| async move {
            let started = match (query.build)(task) {
                Ok(builder) => builder.start().await.map_err(&*query.error),
                Err(e) => Err(e),
            };
            (task, started)
        });
        let mut failure = None;
        for (task, started) in futures::future::join_all(starts).await {
            match started {
                Ok(running) => {
                    lock(&self.tasks).insert(task, running);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Removes the tasks that ended: an error ends the worker; an available-now task that
    /// finished is done. Returns whether one finished.
    async fn check_tasks(&mut self) -> Result<bool> {
        let ended: Vec<(i32, StreamingQuery)> = {
            let mut tasks = lock(&self.tasks);
            let ended: Vec<i32> = tasks
                .iter()
                .filter(|(_, q)| !q.is_active())
                .map(|(&t, _)| t)
                .collect();
            ended
                .into_iter()
                .filter_map(|t| tasks.remove(&t).map(|q| (t, q)))
                .collect()
        };
        let finished = !ended.is_empty();
        for (task, query) in ended {
            query
                .await_termination()
                .await
                .map_err(&*self.query.error)?;
            info!(query = self.query.name, task, "task finished");
        }
        Ok(finished)
    }

    /// Stops `which` tasks (all with `None`) after their batch in progress, all at once;
    /// returns the first error.
    async fn stop_tasks(&mut self, which: Option<&[i32]>) -> Result<()> {
        let stopping: Vec<StreamingQuery> = {
            let mut tasks = lock(&self.tasks);
            let chosen: Vec<i32> = match which {
                None => tasks.keys().copied().collect(),
                Some(list) => list.to_vec(),
            };
            chosen.iter().filter_map(|t| tasks.remove(t)).collect()
        };
        let results = futures::future::join_all(stopping.iter().map(StreamingQuery::stop)).await;
        for error in results.iter().filter_map(|r| r.as_ref().err()) {
            warn!(query = self.query.name, "stopping a task: {error}");
        }
        match results.into_iter().find_map(Result::err) {
            None => Ok(()),
            Some(e) => Err((self.query.error)(e)),
        }
    }

    fn error(&self, message: String) -> PipelineError {
        (self.query.error)(SluiceError::Config(message))
    }
}
