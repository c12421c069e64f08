//! The routes of the endpoint, and the readiness rule (a pure function of what each query
//! reports).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sluice_engine::{StreamingQuery, Trigger};

use sluice_dashboard::http::HttpLimits;

use super::metrics::label;
use super::state::Telemetry;
use crate::process::shutdown_signal;

/// How long a query may go without reporting progress and still be ready, whatever its
/// trigger (a query without data reports every 10 s).
const STALE_AFTER: Duration = Duration::from_secs(60);

/// Binds `addr` and serves `telemetry`'s endpoint until the process is asked to stop. An address in
/// use is an error if `required`, else a warning (the default address is only a
/// convenience: two local pipelines must not fail over it).
pub async fn serve(telemetry: &Telemetry, addr: SocketAddr, required: bool) -> anyhow::Result<()> {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) if !required => {
            tracing::warn!(%addr, %error, "no metrics/health endpoint: cannot listen (--http-listen chooses another address)");
            return Ok(());
        }
        Err(error) => {
            return Err(error)
                .with_context(|| format!("listening on {addr} (--http-listen / SET http_listen)"));
        }
    };
    let bound = listener.local_addr()?;
    eprintln!("metrics and health on http://{bound}/metrics, /healthz, /readyz, /queries");
    let router = router(telemetry.clone());
    tokio::spawn(sluice_dashboard::http::serve(
        listener,
        router,
        HttpLimits::default(),
        shutdown_signal(),
    ));
    Ok(())
}

/// The endpoint's routes.
fn router(telemetry: Telemetry) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/queries", get(queries))
        .with_state(telemetry)
}

async fn metrics(State(telemetry): State<Telemetry>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        telemetry.metrics.encode(),
    )
        .into_response()
}

/// What readiness is decided on, for one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Facts {
    /// Whether its loop runs.
    pub(super) active: bool,
    /// Why it failed, if it did.
    pub(super) exception: Option<String>,
    /// Its trigger.
    pub(super) trigger: Trigger,
    /// How long ago it last reported progress, if ever.
    pub(super) since_progress: Option<Duration>,
}

/// Why a query is not ready, if it is not: stopped or failed, no trigger completed yet, or no
/// progress for longer than [`STALE_AFTER`] (or three trigger intervals, if longer): a loop
/// stuck in a batch.
pub(super) fn not_ready(facts: &Facts) -> Option<String> {
    if !facts.active {
        return Some(match &facts.exception {
            Some(error) => format!("failed: {error}"),
            None => "stopped".into(),
        });
    }
    let allowed = match facts.trigger {
        Trigger::ProcessingTime(interval) => STALE_AFTER.max(interval * 3),
        Trigger::Default | Trigger::AvailableNow => STALE_AFTER,
    };
    match facts.since_progress {
        None => Some("starting: no trigger completed yet".into()),
        Some(since) if since > allowed => Some(format!(
            "no progress for {} s (more than {} s): a batch may be stuck",
            since.as_secs(),
            allowed.as_secs()
        )),
        Some(_) => None,
    }
}

fn facts(telemetry: &Telemetry, query: &StreamingQuery) -> Facts {
    let name = label(query.name(), query.id());
    Facts {
        active: query.is_active(),
        exception: query.exception(),
        trigger: query.trigger(),
        since_progress: telemetry
            .metrics
            .last_reported(&name)
            .map(|at| at.elapsed()),
    }
}

async fn readyz(State(telemetry): State<Telemetry>) -> Response {
    let Some(queries) = telemetry.queries() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: no query started yet\n",
        )
            .into_response();
    };
    let reasons: Vec<String> = queries
        .iter()
        .filter_map(|q| {
            not_ready(&facts(&telemetry, q))
                .map(|why| format!("{}: {why}", label(q.name(), q.id())))
        })
        .collect();
    if reasons.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, reasons.join("\n") + "\n").into_response()
    }
}

async fn queries(State(telemetry): State<Telemetry>) -> Response {
    let queries = telemetry.queries().unwrap_or_else(|| Arc::from([]));
    let list: Vec<Value> = queries
        .iter()
        .map(|query| {
            let status = query.status();
            let facts = facts(&telemetry, query);
            json!({
                "name": query.name(),
                "id": query.id(),
                "runId": query.run_id(),
                "trigger": format!("{:?}", query.trigger()),
                "status": {
                    "message": status.message,
                    "isDataAvailable": status.is_data_available,
                    "isTriggerActive": status.is_trigger_active,
                    "isActive": status.is_active,
                },
                "ready": not_ready(&facts).is_none(),
                "notReady": not_ready(&facts),
                "exception": facts.exception,
                "lastProgress": query.last_progress(),
            })
        })
        .collect();
    axum::Json(list).into_response()
}
