//! Errors: [`DashboardError`] for the server's life cycle, [`ApiError`] for one request.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why the dashboard could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A configuration value is invalid (bad table name, unsupported URL scheme, …).
    #[error("invalid dashboard configuration: {0}")]
    Config(String),
    /// The database URL could not be parsed into connection options.
    #[error("invalid database URL: {0}")]
    DatabaseUrl(#[source] sqlx::Error),
    /// The listening socket could not be bound, or the server failed while serving.
    #[error("HTTP server error: {0}")]
    Io(#[from] std::io::Error),
}

/// The failure of one API request, rendered as `{"error": "<message>"}` with an HTTP status.
///
/// Database errors are logged with `tracing` and never shown to the browser: the client gets a
/// generic message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// A parameter is invalid (HTTP 400); the message names the parameter.
    #[error("{0}")]
    BadRequest(String),
    /// Unknown API path (HTTP 404).
    #[error("not found")]
    NotFound,
    /// The database cannot be reached (HTTP 503).
    #[error("database unavailable")]
    Unavailable,
    /// Any other server-side failure (HTTP 500).
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if is_unavailable(&error) {
            tracing::warn!(%error, "dashboard: database unavailable");
            Self::Unavailable
        } else {
            tracing::error!(%error, "dashboard: query failed");
            Self::Internal
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.to_string() });
        (self.status(), Json(body)).into_response()
    }
}

/// Whether an error means the database cannot be reached (rather than a failed query).
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => true,
        // SQLITE_CANTOPEN: the file does not exist (yet).
        sqlx::Error::Database(db) => db.code().as_deref() == Some("14"),
        _ => false,
    }
}
