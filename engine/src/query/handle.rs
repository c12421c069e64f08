//! The handle of a running query ([`StreamingQuery`], Spark's `StreamingQuery`) and the state
//! the micro-batch loop shares with it: status, recent progress, the stop signal.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::error::{Result, SluiceError};
use crate::listener::QueryListener;
use crate::progress::StreamingQueryProgress;
use crate::trigger::Trigger;

/// Progress reports kept by a query handle (Spark's `numRecentProgressUpdates`).
const RECENT_PROGRESS: usize = 100;

/// The status of a query (Spark's `StreamingQueryStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryStatus {
    /// What the loop is doing.
    pub message: String,
    /// Whether the last trigger found new data.
    pub is_data_available: bool,
    /// Whether a trigger is running.
    pub is_trigger_active: bool,
    /// Whether the loop is still running.
    pub is_active: bool,
    /// For an available-now run, how much of the data to process remains, summed over the
    /// sources in their own units (rows, messages, files); `None` for other triggers or when a
    /// source cannot tell (Sluice; Spark has no such field).
    pub backlog: Option<u64>,
    /// The backlog when the available-now run started: its whole work.
    pub backlog_total: Option<u64>,
}

/// What the loop tells the handle: the status fields, and what `process_all_available` and
/// `await_termination` wait on.
#[derive(Debug, Clone, Default)]
pub(super) struct LoopState {
    /// Whether the loop is running.
    pub(super) active: bool,
    /// See [`QueryStatus::backlog`].
    pub(super) backlog: Option<u64>,
    /// See [`QueryStatus::backlog_total`].
    pub(super) backlog_total: Option<u64>,
    /// Whether a trigger is running.
    pub(super) trigger_active: bool,
    /// Whether the last trigger found new data.
    pub(super) data_available: bool,
    /// What the loop is doing.
    pub(super) message: String,
    /// Number of triggers started so far.
    pub(super) triggers: u64,
    /// Number of the latest trigger that found no new data.
    pub(super) idle_trigger: u64,
    /// Why the loop stopped, if it failed.
    pub(super) error: Option<String>,
}

/// State shared by the loop (writer) and the handles (readers), and the query's listeners.
pub(super) struct Shared {
    state: watch::Sender<LoopState>,
    progress: Mutex<VecDeque<StreamingQueryProgress>>,
    listeners: Vec<Arc<dyn QueryListener>>,
}

impl Shared {
    /// Shared state of a loop that has not started, told to `listeners`.
    pub(super) fn new(listeners: Vec<Arc<dyn QueryListener>>) -> Self {
        Self {
            state: watch::channel(LoopState::default()).0,
            progress: Mutex::new(VecDeque::new()),
            listeners,
        }
    }

    /// The query's listeners.
    pub(super) fn listeners(&self) -> &[Arc<dyn QueryListener>] {
        &self.listeners
    }

    /// Changes the loop state, waking the handles that wait on it.
    pub(super) fn update(&self, change: impl FnOnce(&mut LoopState)) {
        self.state.send_modify(change);
    }

    /// Tells the listeners of a progress report and adds it to the recent ones, forgetting
    /// the oldest beyond the last 100.
    pub(super) fn push_progress(&self, progress: StreamingQueryProgress) {
        for listener in &self.listeners {
            listener.on_query_progress(&progress);
        }
        let mut recent = self.recent();
        if recent.len() == RECENT_PROGRESS {
            recent.pop_front();
        }
        recent.push_back(progress);
    }

    /// The most recent progress reports, oldest first.
    pub(super) fn recent_progress(&self) -> Vec<StreamingQueryProgress> {
        self.recent().iter().cloned().collect()
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, VecDeque<StreamingQueryProgress>> {
        self.progress.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running streaming query; clones are handles to the same query.
#[derive(Clone)]
pub struct StreamingQuery {
    id: String,
    run_id: String,
    name: Option<String>,
    trigger: Trigger,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl StreamingQuery {
    /// The handle of the loop that shares `shared` and stops on `stop`.
    pub(super) fn new(
        id: String,
        run_id: String,
        name: Option<String>,
        trigger: Trigger,
        shared: Arc<Shared>,
        stop: watch::Sender<bool>,
    ) -> Self {
        Self {
            id,
            run_id,
            name,
            trigger,
            shared,
            stop,
        }
    }

    /// The query id, stable across restarts from the same checkpoint.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// This run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The query name, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// When the query's batches start.
    pub fn trigger(&self) -> Trigger {
        self.trigger
    }

    fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.id.clone())
    }

    /// The latest progress report.
    pub fn last_progress(&self) -> Option<StreamingQueryProgress> {
        self.shared.recent().back().cloned()
    }

    /// The most recent progress reports (at most 100), oldest first.
    pub fn recent_progress(&self) -> Vec<StreamingQueryProgress> {
        self.shared.recent_progress()
    }

    /// What the query is doing now.
    pub fn status(&self) -> QueryStatus {
        let state = self.shared.state.borrow();
        QueryStatus {
            message: state.message.clone(),
            is_data_available: state.data_available,
            is_trigger_active: state.trigger_active,
            is_active: state.active,
            backlog: state.backlog,
            backlog_total: state.backlog_total,
        }
    }

    /// Why the query failed, if it did (Spark's `exception`).
    pub fn exception(&self) -> Option<String> {
        self.shared.state.borrow().error.clone()
    }

    /// Whether the loop is still running.
    pub fn is_active(&self) -> bool {
        self.shared.state.borrow().active
    }

    /// Waits until everything available when this is called has been processed and committed
    /// (a trigger that started after the call found nothing new), or the query stopped.
    /// Returns the query's error if it failed.
    pub async fn process_all_available(&self) -> Result<()> {
        let mut state = self.shared.state.subscribe();
        let since = state.borrow().triggers;
        let _ = state
            .wait_for(|s| !s.active || s.idle_trigger > since)
            .await;
        self.failure()
    }

    /// Stops the query after the batch in progress, leaving a consistent checkpoint, and waits
    /// for it to stop. Returns the query's error if it had failed.
    pub async fn stop(&self) -> Result<()> {
        let _ = self.stop.send(true);
        self.await_termination().await
    }

    /// Waits until the query stops (by `stop`, at the end of an available-now run, or on an
    /// error, which is returned).
    pub async fn await_termination(&self) -> Result<()> {
        let mut state = self.shared.state.subscribe();
        let _ = state.wait_for(|s| !s.active).await;
        self.failure()
    }

    fn failure(&self) -> Result<()> {
        match &self.shared.state.borrow().error {
            None => Ok(()),
            Some(message) => Err(SluiceError::QueryTerminated {
                query: self.label(),
                message: message.clone(),
            }),
        }
    }
}
