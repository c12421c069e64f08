//! The HTTP server loop: an axum router served by hyper with the limits that `axum::serve`
//! does not set, so that idle or slow clients cannot exhaust the process.
//!
//! * **Header-read timeout.** A connection has [`HttpLimits::header_read_timeout`] to send a
//!   request's headers, counted from when it connects or its previous response ends; past
//!   that it is closed. Half-open connections that never send anything are closed too.
//! * **Connection limit.** At most [`HttpLimits::max_connections`] connections are served at
//!   once; while the limit is reached the server stops accepting and further clients wait in
//!   the kernel's listen backlog until one closes. The default stays well under the open-file
//!   limit, so that the process keeps descriptors for its database and files.
//! * **Graceful shutdown.** When `shutdown` completes the server stops accepting, lets every
//!   connection finish its request in progress, and waits at most [`SHUTDOWN_GRACE`] for them.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// How long a stopping server waits for its connections to finish.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Most connections served at once by default, whatever the open-file limit.
const DEFAULT_MAX_CONNECTIONS: usize = 1_024;

/// The limits of [`serve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a connection may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// The most connections served at once (at least one).
    pub max_connections: usize,
}

impl HttpLimits {
    /// The limits with `max_connections` if given, else [`default_max_connections`].
    pub fn new(header_read_timeout: Duration, max_connections: Option<usize>) -> Self {
        Self {
            header_read_timeout,
            max_connections: max_connections
                .unwrap_or_else(default_max_connections)
                .max(1),
        }
    }
}

impl Default for HttpLimits {
    /// 10 s to send headers, [`default_max_connections`].
    fn default() -> Self {
        Self::new(Duration::from_secs(10), None)
    }
}

/// Half the process's soft open-file limit (each connection is one descriptor; the rest is
/// left to the database pool, files and the engine), at most 1,024.
pub fn default_max_connections() -> usize {
    open_file_limit().map_or(DEFAULT_MAX_CONNECTIONS, |limit| {
        (limit / 2).clamp(1, DEFAULT_MAX_CONNECTIONS)
    })
}

#[cfg(unix)]
fn open_file_limit() -> Option<usize> {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    limit.current.and_then(|n| usize::try_from(n).ok())
}

#[cfg(not(unix))]
fn open_file_limit() -> Option<usize> {
    None
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes, then shuts down
/// gracefully (see the module documentation).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let (closing, closed) = watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed
            },
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tokio::select! {
                        () = accept_failed(error) => continue,
                        () = &mut shutdown => break,
                    }
                }
            },
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let mut closed = closed.clone();
        let timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(timeout);
            let service = TowerToHyperService::new(router);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "http: connection ended");
                    }
                    return;
                }
                _ = closed.wait_for(|closed| *closed) => {}
            }
            connection.as_mut().graceful_shutdown();
            if let Err(error) = connection.await {
                tracing::debug!(%error, "http: connection ended");
            }
        });
    }
    drop(listener);
    closing.send_replace(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(SHUTDOWN_GRACE, permits.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            "http: connections still open {} s after shutdown; leaving them",
            SHUTDOWN_GRACE.as_secs()
        );
    }
}

/// After a failed `accept`: per-connection errors (the client went away) are skipped; others
/// (out of descriptors, …) are logged and retried after a pause, as they are usually
/// transient and retrying at once would spin.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::ConnectionRefused
    ) {
        return;
    }
    tracing::warn!(%error, "http: cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
