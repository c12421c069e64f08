//! Live updates: a watcher observes the sink's commits (PostgreSQL `LISTEN sluice_batches`
//! plus a poll of `sluice_commits`; SQLite: the poll alone), recomputes the cached results in
//! use (and the default *Top* and *Anomalies*) in the background, then publishes a [`Live`]
//! status that `GET /api/events` streams to browsers as Server-Sent Events.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::mpsc;

use crate::cache::refreshing;
use crate::db::{Db, Val, is_missing_table};
use crate::endpoints::{Endpoint, cached_json};
use crate::params::Params;
use crate::state::{AppState, Live};

/// The channel the sink notifies after each committed batch (PostgreSQL).
pub(crate) const CHANNEL: &str = "sluice_batches";
/// The table the sink updates in every committed batch's transaction.
pub(crate) const COMMITS_TABLE: &str = "sluice_commits";

/// Longest wait for the refresh after a commit before the pages are told about it anyway.
const REFRESH_WAIT: Duration = Duration::from_secs(10);

/// What identifies the state of `sluice_commits`: latest commit time, sum of batch ids, rows.
type Signature = (Option<i64>, Option<i64>, Option<i64>);

impl AppState {
    /// Reads the commit signature; a missing commits table reads as "no commit yet".
    async fn commit_signature(&self) -> Result<Signature, sqlx::Error> {
        let at = self.db.epoch_ms("max(committed_at)");
        let sql =
            format!("SELECT {at}, CAST(sum(batch_id) AS BIGINT), count(*) FROM {COMMITS_TABLE}");
        match self.db.fetch(&sql, &[]).await {
            Ok(rows) => {
                let row = rows.into_iter().next().unwrap_or_default();
                let get = |i: usize| row.get(i).and_then(Val::i64);
                Ok((get(0), get(1), get(2)))
            }
            Err(error) if is_missing_table(&error) => Ok((None, None, None)),
            Err(error) => Err(error),
        }
    }
}

impl AppState {
    /// Computes (or refreshes) the heavy default results: *Top* and *Anomalies* over the
    /// default period, as the page asks for them.
    async fn warm_defaults(self: &Arc<Self>) {
        if self.config.data_ttl.is_zero() {
            return;
        }
        for endpoint in [Endpoint::Top, Endpoint::Anomalies] {
            if let Err(error) = refreshing(cached_json(self, endpoint, Params::default())).await {
                tracing::debug!(%error, ?endpoint, "dashboard: cannot warm the cache");
            }
        }
    }

    /// After a commit: the cached results in use are recomputed (requests meanwhile get the
    /// previous ones), and the default ones computed if need be.
    async fn refresh_after_commit(self: &Arc<Self>) {
        self.cache.invalidate_data();
        tokio::join!(self.cache.refresh_data(), self.warm_defaults());
    }
}

/// Watches commits until the server shuts down.
pub(crate) async fn watch_commits(state: Arc<AppState>) {
    let warm = tokio::spawn({
        let state = state.clone();
        async move { state.warm_defaults().await }
    });
    let refresh = state.config.refresh;
    let (tx, mut rx) = mpsc::channel::<Value>(256);
    let listener = match &state.db {
        Db::Postgres(pool) => Some(tokio::spawn(listen(pool.clone(), tx, refresh))),
        Db::Sqlite(_) => None,
    };
    let mut shutdown = state.shutdown.subscribe();
    let mut interval = tokio::time::interval(refresh);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Signature> = None;
    loop {
        let mut batch = tokio::select! {
            _ = interval.tick() => None,
            Some(payload) = rx.recv() => Some(payload),
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        // Coalesce a burst of notifications into one update.
        while let Ok(payload) = rx.try_recv() {
            batch = Some(payload);
        }
        match state.commit_signature().await {
            Ok(signature) => {
                let changed = last.is_some_and(|l| l != signature) || batch.is_some();
                let first = last.is_none();
                last = Some(signature);
                let was_connected = state.live.borrow().connected;
                if changed || first || !was_connected {
                    if changed {
                        tracing::debug!(?signature, "dashboard: new commit observed");
                        // The pages reload when told: tell them once the cache is current.
                        let refresh =
                            tokio::time::timeout(REFRESH_WAIT, state.refresh_after_commit());
                        tokio::select! {
                            done = refresh => if done.is_err() {
                                tracing::debug!("dashboard: refresh still running, publishing the commit");
                            },
                            _ = shutdown.wait_for(|stop| *stop) => break,
                        }
                    }
                    state.live.send_modify(|live| {
                        if changed {
                            live.seq += 1;
                            live.observed_ms = Some(chrono::Utc::now().timestamp_millis());
                        }
                        if batch.is_some() {
                            live.batch = batch.take();
                        }
                        live.last_commit_ms = signature.0;
                        live.connected = true;
                    });
                }
            }
            Err(error) => {
                tracing::debug!(%error, "dashboard: cannot read {COMMITS_TABLE}");
                if state.live.borrow().connected {
                    state.live.send_modify(|live| live.connected = false);
                }
            }
        }
    }
    if let Some(listener) = listener {
        listener.abort();
    }
    warm.abort();
}

/// Forwards `sluice_batches` notifications (their JSON payload, or `null`), reconnecting
/// every `retry` while the server is unreachable.
async fn listen(pool: PgPool, tx: mpsc::Sender<Value>, retry: Duration) {
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(CHANNEL).await {
                Ok(()) => loop {
                    match listener.recv().await {
                        Ok(notification) => {
                            let payload =
                                serde_json::from_str(notification.payload()).unwrap_or(Value::Null);
                            if tx.send(payload).await.is_err() {
                                return;
                            }
                        }
                        Err(error) => {
                            tracing::debug!(%error, "dashboard: LISTEN connection lost");
                            break;
                        }
                    }
                },
                Err(error) => tracing::debug!(%error, "dashboard: LISTEN failed"),
            },
            Err(error) => tracing::debug!(%error, "dashboard: cannot connect the listener"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(retry).await;
    }
}

/// The SSE event for a live status: `hello` first, then `batch` on every change.
pub(crate) fn event(live: &Live, first: bool) -> axum::response::sse::Event {
    let event = axum::response::sse::Event::default().event(if first { "hello" } else { "batch" });
    event
        .json_data(live)
        .unwrap_or_else(|_| axum::response::sse::Event::default().event("batch"))
}
