//! The HTTP routes: the page, its assets, the JSON API and the SSE stream.

use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use serde_json::{Value, json};

use crate::endpoints::{Endpoint, cached_json};
use crate::error::ApiError;
use crate::params::Params;
use crate::state::AppState;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const ERRORS_JS: &str = include_str!("../assets/errors.js");
const CHARTS_JS: &str = include_str!("../assets/charts.js");
/// TradingView Lightweight Charts 5.2.1, vendored (see `assets/vendor/README.md`).
const LIGHTWEIGHT_CHARTS_JS: &str = include_str!("../assets/vendor/lightweight-charts.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");
const FAVICON_SVG: &str = include_str!("../assets/favicon.svg");

type Shared = State<Arc<AppState>>;
type Pairs = Result<Query<Vec<(String, String)>>, QueryRejection>;

/// The dashboard's routes over `state` (see the crate documentation for the endpoints).
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset("text/html; charset=utf-8", INDEX_HTML) }),
        )
        .route(
            "/assets/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/assets/errors.js",
            get(|| async { asset("text/javascript; charset=utf-8", ERRORS_JS) }),
        )
        .route(
            "/assets/charts.js",
            get(|| async { asset("text/javascript; charset=utf-8", CHARTS_JS) }),
        )
        .route(
            "/assets/vendor/lightweight-charts.js",
            get(|| async { asset("text/javascript; charset=utf-8", LIGHTWEIGHT_CHARTS_JS) }),
        )
        .route(
            "/assets/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE_CSS) }),
        )
        .route(
            "/favicon.svg",
            get(|| async { asset("image/svg+xml", FAVICON_SVG) }),
        )
        .route("/api/status", get(status))
        .route("/api/symbols", get(symbols))
        .route("/api/overview", get(overview))
        .route("/api/candles", get(candles))
        .route("/api/top", get(top))
        .route("/api/anomalies", get(anomalies))
        .route("/api/details", get(details))
        .route("/api/history.csv", get(history_csv))
        .route("/api/events", get(events))
        .fallback(|| async { ApiError::NotFound })
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// What every response may do in a browser: scripts only from the dashboard's own files (no
/// inline script, no other origin), data fetched only from itself, never framed by another
/// page (clickjacking), no content-type sniffing, no referrer sent along.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Adds the security headers to every response, API answers and errors included.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

fn json_response(value: &Value) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "dashboard: cannot serialize a response");
            ApiError::Internal.into_response()
        }
    }
}

fn params(pairs: Pairs) -> Result<Params, ApiError> {
    let Query(pairs) = pairs.map_err(|_| ApiError::BadRequest("malformed query string".into()))?;
    Params::from_pairs(&pairs)
}

async fn cached(
    state: &Arc<AppState>,
    endpoint: Endpoint,
    pairs: Pairs,
) -> Result<Response, ApiError> {
    let value = cached_json(state, endpoint, params(pairs)?).await?;
    Ok(json_response(&value))
}

async fn status(State(state): Shared) -> Result<Response, ApiError> {
    let live = state.live();
    let (connected, ticker) = match state.ticker_exists().await {
        Ok(exists) => (true, exists),
        Err(ApiError::Unavailable) => (false, false),
        Err(error) => return Err(error),
    };
    let candles = connected && state.candles_exists().await?;
    let latest = if ticker { state.latest().await? } else { None };
    let message = if !connected {
        "waiting for the database"
    } else if !ticker || latest.is_none() {
        "waiting for data"
    } else {
        "live"
    };
    Ok(json_response(&json!({
        "state": message,
        "backend": state.db.backend(),
        "connected": connected,
        "ticker_table": state.ticker_name,
        "candles_table": state.candles_name,
        "tables": { "ticker": ticker, "candles": candles },
        "latest_ms": latest.map(|t| t.timestamp_millis()),
        "last_commit_ms": live.last_commit_ms,
        "observed_ms": live.observed_ms,
        "seq": live.seq,
        "refresh_ms": u64::try_from(state.config.refresh.as_millis()).unwrap_or(u64::MAX),
        "server_ms": chrono::Utc::now().timestamp_millis(),
        "cache": state.cache.stats(),
    })))
}

async fn symbols(State(state): Shared) -> Result<Response, ApiError> {
    Ok(json_response(&state.symbols_json().await?))
}

async fn overview(State(state): Shared, pairs: Pairs) -> Result<Response, ApiError> {
    cached(&state, Endpoint::Overview, pairs).await
}

async fn candles(State(state): Shared, pairs: Pairs) -> Result<Response, ApiError> {
    cached(&state, Endpoint::Candles, pairs).await
}

async fn top(State(state): Shared, pairs: Pairs) -> Result<Response, ApiError> {
    cached(&state, Endpoint::Top, pairs).await
}

async fn anomalies(State(state): Shared, pairs: Pairs) -> Result<Response, ApiError> {
    cached(&state, Endpoint::Anomalies, pairs).await
}

async fn details(State(state): Shared, pairs: Pairs) -> Result<Response, ApiError> {
    cached(&state, Endpoint::Details, pairs).await
}

async fn history_csv(State(state): Shared, pairs: Pairs) -> Result<Response, ApiError> {
    let params = params(pairs)?;
    let (symbol, csv) = state.history_csv(&params).await?;
    // The symbol is validated ([A-Za-z0-9_.-]), so it is safe in a header.
    let disposition = HeaderValue::from_str(&format!(
        "attachment; filename=\"{symbol}_{}.csv\"",
        params.period
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"));
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        csv,
    )
        .into_response())
}

async fn events(
    State(state): Shared,
) -> Sse<impl Stream<Item = Result<axum::response::sse::Event, Infallible>>> {
    let live = state.live.subscribe();
    let shutdown = state.shutdown.subscribe();
    let retry = state.config.refresh;
    let stream = futures::stream::unfold(
        (live, shutdown, true),
        move |(mut live, mut shutdown, first)| async move {
            if *shutdown.borrow() {
                return None;
            }
            if !first {
                tokio::select! {
                    changed = live.changed() => changed.ok()?,
                    _ = shutdown.wait_for(|stop| *stop) => return None,
                }
            }
            let status = live.borrow_and_update().clone();
            let mut event = crate::live::event(&status, first);
            if first {
                event = event.retry(retry);
            }
            Some((Ok(event), (live, shutdown, false)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(state.config.refresh))
}
