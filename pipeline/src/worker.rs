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
use sluice_connectors::kafka::{GroupEvent, GroupMember};
use sluice_engine::{Location, PartitionedBy, SluiceError, StreamingQuery, Trigger};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::error::Result;
use crate::pipeline::{Pipeline, QueryDecl};

/// How often the worker looks at its tasks (to notice one that failed or, available-now,
/// finished).
const TICK: Duration = Duration::from_millis(200);

/// How long an available-now worker that was given no task waits for one before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// The tasks a worker runs now, by partition number.
type Tasks = Arc<Mutex<BTreeMap<i32, StreamingQuery>>>;

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
    /// Checks that `query` of `pipeline` can be split into tasks, joins its consumer group and
    /// starts running the tasks the group assigns.
    pub(crate) async fn start(pipeline: Pipeline, query: QueryDecl) -> Result<Self> {
        let plan = TaskPlan::new(&pipeline, &query).await?;
        let group = claim_group(&query)
            .await
            .map_err(|e| pipeline.query_error(&query, e))?;
        let member = GroupMember::join(&group, &plan.bootstrap, &plan.topics, &plan.properties)
            .map_err(|e| pipeline.query_error(&query, e))?;
        info!(query = query.name, group, "worker joined");
        let tasks = Tasks::default();
        let (stop, stopped) = watch::channel(false);
        let name = query.name.clone();
        let run = Run {
            pipeline,
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
    /// to the other workers); returns the worker's error if it had failed.
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

/// How a distributed query splits into tasks: its topics, checked.
pub(crate) struct TaskPlan {
    /// The topics of all its sources, in first-read order.
    pub(crate) topics: Vec<String>,
    bootstrap: String,
    properties: BTreeMap<String, String>,
}

impl TaskPlan {
    /// Checks that every source of `query` is a Kafka source reading topics, with its
    /// `partitioned_by` column, and that the query's stateful operators group by it.
    pub(crate) async fn new(pipeline: &Pipeline, query: &QueryDecl) -> Result<Self> {
        let fail = |e: SluiceError| pipeline.query_error(query, e);
        let mut by = PartitionedBy::new();
        let mut topics: Vec<String> = Vec::new();
        let mut first = None;
        for name in &query.sources {
            let source = pipeline.source(name).kafka().ok_or_else(|| {
                fail(SluiceError::Config(format!(
                    "source {name} is not a Kafka source"
                )))
            })?;
            let column = source.partitioned_by().ok_or_else(|| {
                fail(SluiceError::Config(format!(
                    "distribution = 'kafka_partitions' needs to know how the messages of {name} \
                     are keyed: declare the key column with the source option partitioned_by \
                     (our Binance producer keys by symbol: partitioned_by = 'symbol')"
                )))
            })?;
            by.insert(name.clone(), column.to_string());
            for topic in source.topics().map_err(fail)? {
                if !topics.contains(topic) {
                    topics.push(topic.clone());
                }
            }
            first.get_or_insert(source);
        }
        let first = first.ok_or_else(|| fail(SluiceError::Config("no source".into())))?;
        pipeline
            .builder(query, None)?
            .check_partitioned_by(&by)
            .await
            .map_err(fail)?;
        Ok(Self {
            topics,
            bootstrap: first.bootstrap().to_string(),
            properties: first.properties().clone(),
        })
    }
}

/// The file in a distributed query's checkpoint directory naming its consumer group.
const DISTRIBUTION_FILE: &str = "distribution";

/// The checkpoint directory of `query` (which a distributed query requires).
fn checkpoint_dir(query: &QueryDecl) -> Result<Location, SluiceError> {
    let dir = query.settings.checkpoint.as_deref().ok_or_else(|| {
        SluiceError::Config("a distributed query needs a checkpoint shared by its workers".into())
    })?;
    Location::parse(&format!("{dir}/{}", query.name))
}

/// The consumer group of `query`'s workers, kept in its checkpoint directory
/// (`distribution`, written once by the first worker: `sluice-<query>-<random>`), so that two
/// deployments of a query with different checkpoints never share a group, and all workers of
/// one do. A directory holding a one-process checkpoint is refused: its offsets and state
/// would be ignored, and its output written again.
async fn claim_group(query: &QueryDecl) -> Result<String, SluiceError> {
    let location = checkpoint_dir(query)?;
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
            "sluice-{}-{}",
            query.name,
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

/// Refuses to run `query` in one process over the checkpoint of a distributed run, whose
/// tasks' offsets and state it would not read.
pub(crate) async fn check_not_distributed(query: &QueryDecl) -> Result<(), SluiceError> {
    if query.settings.checkpoint.is_none() {
        return Ok(());
    }
    let location = checkpoint_dir(query)?;
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
    pipeline: Pipeline,
    query: QueryDecl,
    member: GroupMember,
    tasks: Tasks,
}

impl Run {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) -> Result<()> {
        let result = self.serve(&mut stopped).await;
        // Stop what still runs, then leave the group (dropping the member).
        let stopping = self.stop_tasks(None).await;
        result.and(stopping)
    }

    async fn serve(&mut self, stopped: &mut watch::Receiver<bool>) -> Result<()> {
        let available_now = self.query.settings.trigger == Trigger::AvailableNow;
        // Available-now: whether a task ran here, and since when the worker has had none.
        let mut ran = false;
        let mut idle_since: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = stopped.changed() => return Ok(()),
                event = self.member.next() => match event {
                    None => return Err(self.error("the consumer group member ended".into())),
                    Some(GroupEvent::Failed(message)) => return Err(self.error(message)),
                    Some(GroupEvent::Revoked { tasks, release }) => {
                        info!(query = self.query.name, ?tasks, "tasks revoked");
                        let stopped = self.stop_tasks(Some(&tasks)).await;
                        release.done();
                        stopped?;
                    }
                    Some(GroupEvent::Assigned(tasks)) => {
                        self.start_tasks(&tasks).await?;
                        ran |= !tasks.is_empty();
                        let running: Vec<i32> = lock(&self.tasks).keys().copied().collect();
                        info!(query = self.query.name, ?tasks, ?running, "tasks assigned");
                    }
                },
                _ = tokio::time::sleep(TICK) => {
                    self.check_tasks().await?;
                    // Available-now: done when the tasks that ran here have finished, or when
                    // none came (more workers than partitions; a cooperative rebalance
                    // first assigns a joining worker nothing, so wait for a second round).
                    if available_now && lock(&self.tasks).is_empty() {
                        let idle = *idle_since.get_or_insert_with(Instant::now);
                        if ran || idle.elapsed() > IDLE_EXIT {
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
        let (pipeline, query) = (&self.pipeline, &self.query);
        let starts = new.into_iter().map(|task| async move {
            let started = match pipeline.builder(query, Some(task)) {
                Ok(builder) => builder
                    .start()
                    .await
                    .map_err(|e| pipeline.query_error(query, e)),
                Err(e) => Err(e),
            };
            (task, started)
        });
        let mut failure = None;
        for (task, started) in futures::future::join_all(starts).await {
            match started {
                Ok(query) => {
                    lock(&self.tasks).insert(task, query);
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Removes the tasks that ended: an error ends the worker; an available-now task that
    /// finished is done.
    async fn check_tasks(&mut self) -> Result<()> {
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
        for (task, query) in ended {
            query
                .await_termination()
                .await
                .map_err(|e| self.pipeline.query_error(&self.query, e))?;
            info!(query = self.query.name, task, "task finished");
        }
        Ok(())
    }

    /// Stops `which` tasks (all with `None`) after their batch in progress; the first error.
    async fn stop_tasks(&mut self, which: Option<&[i32]>) -> Result<()> {
        let stopping: Vec<StreamingQuery> = {
            let mut tasks = lock(&self.tasks);
            let chosen: Vec<i32> = match which {
                None => tasks.keys().copied().collect(),
                Some(list) => list.to_vec(),
            };
            chosen.iter().filter_map(|t| tasks.remove(t)).collect()
        };
        let mut result = Ok(());
        for query in stopping {
            if let Err(e) = query.stop().await
                && result.is_ok()
            {
                result = Err(self.pipeline.query_error(&self.query, e));
            }
        }
        result
    }

    fn error(&self, message: String) -> crate::PipelineError {
        self.pipeline
            .query_error(&self.query, SluiceError::Config(message))
    }
}
