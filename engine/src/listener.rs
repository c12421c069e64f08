//! Listening to queries (Spark's `StreamingQueryListener`): a [`QueryListener`] added to a
//! query with [`crate::StreamingQueryBuilder::listener`] is told when the query starts, of
//! every progress report, and when it ends, so that metrics and monitors see every batch
//! without polling the handle (which keeps only the last 100 reports).
//!
//! The calls run on the query's own task, between batches: a listener must return quickly
//! (update counters, send to a channel), never block.

use crate::progress::StreamingQueryProgress;

/// Which query an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryIdentity {
    /// The query id, stable across restarts.
    pub id: String,
    /// This run's id.
    pub run_id: String,
    /// The query name, if any.
    pub name: Option<String>,
}

/// Receives a query's events (Spark's `StreamingQueryListener`). Every method has an empty
/// default: implement what you need.
pub trait QueryListener: Send + Sync + 'static {
    /// The query's loop started ([`crate::StreamingQueryBuilder::start`]).
    fn on_query_started(&self, _query: &QueryIdentity) {}

    /// A trigger was reported: every batch, and triggers without data at most every 10 s.
    fn on_query_progress(&self, _progress: &StreamingQueryProgress) {}

    /// The query's loop ended: stopped or finished (`error` is `None`), or failed.
    fn on_query_terminated(&self, _query: &QueryIdentity, _error: Option<&str>) {}
}
