//! What the endpoint reports on: the metrics and the running queries.

use std::sync::{Arc, PoisonError, RwLock};

use sluice_engine::StreamingQuery;

use super::metrics::Metrics;

/// The metrics and the queries the endpoint reports on; cheap to clone.
#[derive(Clone, Default)]
pub struct Telemetry {
    pub(super) metrics: Arc<Metrics>,
    queries: Arc<RwLock<Option<Arc<[StreamingQuery]>>>>,
}

impl Telemetry {
    /// The metrics, to add as a listener to every query.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The queries once started (before that, the endpoint reports none and is not ready);
    /// called again as a worker's tasks change.
    pub fn watch(&self, queries: Arc<[StreamingQuery]>) {
        *self.queries.write().unwrap_or_else(PoisonError::into_inner) = Some(queries);
    }

    /// The queries watched, if started.
    pub(super) fn queries(&self) -> Option<Arc<[StreamingQuery]>> {
        self.queries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
