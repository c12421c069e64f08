//! What the endpoint reports on: the metrics and the running queries.

use std::sync::{Arc, OnceLock};

use sluice_engine::StreamingQuery;

use super::metrics::Metrics;

/// The metrics and the queries the endpoint reports on; cheap to clone.
#[derive(Clone, Default)]
pub struct Telemetry {
    pub(super) metrics: Arc<Metrics>,
    pub(super) queries: Arc<OnceLock<Arc<[StreamingQuery]>>>,
}

impl Telemetry {
    /// The metrics, to add as a listener to every query.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The queries once started (before that, the endpoint reports none and is not ready).
    pub fn watch(&self, queries: Arc<[StreamingQuery]>) {
        let _ = self.queries.set(queries);
    }
}
