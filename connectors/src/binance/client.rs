//! A WebSocket client for Binance's streams that keeps a connection alive for as long as it
//! runs: it answers pings, treats a silent connection as dead, reconnects with exponential
//! backoff and jitter, and replaces its connection ahead of Binance's 24-hour limit.
//!
//! Frames go to the consumer through a bounded channel: when the consumer is slow (Kafka slow
//! or down), the client stops reading, TCP pushes back on the server, and memory stays
//! bounded. Binance drops a client that stops reading for long; the client then reconnects,
//! and what was sent meanwhile is lost (counted as reconnects, never as unbounded memory).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tracing::{debug, error, info, warn};

/// Binance's all-market mini-ticker stream, the seed's input.
pub const MINI_TICKER_URL: &str = "wss://stream.binance.com:9443/ws/!miniTicker@arr";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The stream URL, e.g. `wss://stream.binance.com:9443/ws/!miniTicker@arr`.
    pub url: String,
    /// No frame at all (data, ping) for this long means the connection is dead.
    pub idle_timeout: Duration,
    /// A connection older than this is replaced (Binance closes them at 24 h).
    pub max_connection_age: Duration,
    /// The first reconnect delay; doubled after each failed attempt, up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest reconnect delay.
    pub max_backoff: Duration,
    /// Frames buffered for the consumer before the client stops reading.
    pub buffer: usize,
}

impl ClientOptions {
    /// Defaults for `url`: 10 s idle timeout, replacement after 23 h 50 min, backoff from
    /// 500 ms to 30 s, 256 frames buffered.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            idle_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(23 * 3600 + 50 * 60),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            buffer: 256,
        }
    }
}

/// A frame as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFrame {
    /// Arrival time, ms since the Unix epoch.
    pub arrival_ms: i64,
    /// The text, unchanged.
    pub text: String,
}

/// Counters of the client's life.
#[derive(Debug, Default)]
pub struct ClientMetrics {
    /// Data frames received.
    pub frames: AtomicU64,
    /// Connections made after the first (drops, silences, planned replacements).
    pub reconnects: AtomicU64,
    /// Connection attempts that failed.
    pub failed_connects: AtomicU64,
    /// Pings answered.
    pub pongs: AtomicU64,
    /// Frames skipped as duplicates while two connections overlapped.
    pub duplicates: AtomicU64,
    /// Why the client gave up, when the server refused it for good (see
    /// [`WebSocketClient::failure`]).
    failure: std::sync::Mutex<Option<String>>,
}

/// A running client; frames arrive through [`WebSocketClient::next`].
pub struct WebSocketClient {
    frames: mpsc::Receiver<ReceivedFrame>,
    metrics: Arc<ClientMetrics>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl WebSocketClient {
    /// Starts connecting in the background.
    pub fn spawn(options: ClientOptions) -> Self {
        let (sender, frames) = mpsc::channel(options.buffer.max(1));
        let metrics = Arc::new(ClientMetrics::default());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(options, sender, Arc::clone(&metrics), stopped));
        Self {
            frames,
            metrics,
            stop,
            task,
        }
    }

    /// The next frame; `None` once the client is shut down and drained.
    pub async fn next(&mut self) -> Option<ReceivedFrame> {
        self.frames.recv().await
    }

    /// The next frame if one is buffered.
    pub fn try_next(&mut self) -> Option<ReceivedFrame> {
        self.frames.try_recv().ok()
    }

    /// Why the client stopped on its own, if it did: the server refused it in a way no retry
    /// changes (HTTP 451, Binance's answer to a restricted location, or 403). Its frames then
    /// end ([`next`](Self::next) returns `None` once drained).
    pub fn failure(&self) -> Option<String> {
        self.metrics
            .failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The client's counters.
    pub fn metrics(&self) -> Arc<ClientMetrics> {
        Arc::clone(&self.metrics)
    }

    /// Stops reading; frames already buffered can still be taken.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }
}

impl Drop for WebSocketClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The delay before reconnect attempt `attempt` (0-based): exponential, capped, with ±25%
/// jitter so that many clients do not retry in step.
pub fn backoff(options: &ClientOptions, attempt: u32, jitter: f64) -> Duration {
    let base = options
        .initial_backoff
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(options.max_backoff);
    base.mul_f64(0.75 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A jitter value in [0, 1) from the clock (good enough to spread retries).
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

/// Why a connection attempt failed.
enum ConnectError {
    /// Worth retrying: the network, a timeout, a server error.
    Retry(String),
    /// The server refused this client for good: retrying changes nothing.
    Refused(String),
}

async fn connect(options: &ClientOptions) -> Result<Socket, ConnectError> {
    let connecting = tokio_tungstenite::connect_async(options.url.as_str());
    match tokio::time::timeout(options.idle_timeout.max(Duration::from_secs(5)), connecting).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            Err(refusal(response.status().as_u16())
                .map(ConnectError::Refused)
                .unwrap_or_else(|| {
                    ConnectError::Retry(format!("HTTP error: {}", response.status()))
                }))
        }
        Ok(Err(e)) => Err(ConnectError::Retry(e.to_string())),
        Err(_) => Err(ConnectError::Retry("connection timed out".into())),
    }
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Retry(reason) | Self::Refused(reason) => f.write_str(reason),
        }
    }
}

/// What an HTTP status answering the WebSocket handshake means when no retry can change it.
fn refusal(status: u16) -> Option<String> {
    match status {
        451 => Some(
            "HTTP 451 Unavailable For Legal Reasons: the server refuses connections from this \
             location (Binance restricts some countries and cloud regions); use a stream this \
             machine may reach, e.g. another URL or a replay (`sluice replay`)"
                .into(),
        ),
        403 => Some(
            "HTTP 403 Forbidden: the server refuses this client; check the URL and where it \
             is allowed from"
                .into(),
        ),
        _ => None,
    }
}

/// Why a connection ended.
enum End {
    /// Shut down by the user.
    Stopped,
    /// Closed, dropped or silent: reconnect.
    Lost(String),
    /// Old enough to be replaced: here is its successor, already connected.
    Replaced(Box<Socket>),
}

async fn run(
    options: ClientOptions,
    frames: mpsc::Sender<ReceivedFrame>,
    metrics: Arc<ClientMetrics>,
    mut stop: watch::Receiver<bool>,
) {
    let mut attempt = 0u32;
    let mut next: Option<Socket> = None;
    let mut recent: VecDeque<u64> = VecDeque::new();
    let mut first = true;
    loop {
        if *stop.borrow() {
            return;
        }
        let socket = match next.take() {
            Some(socket) => socket,
            None => match connect(&options).await {
                Ok(socket) => socket,
                Err(ConnectError::Refused(reason)) => {
                    error!(url = %options.url, "connection refused for good: {reason}");
                    *metrics
                        .failure
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) =
                        Some(format!("{}: {reason}", options.url));
                    return;
                }
                Err(ConnectError::Retry(e)) => {
                    metrics.failed_connects.fetch_add(1, Ordering::Relaxed);
                    let delay = backoff(&options, attempt, jitter());
                    warn!(url = %options.url, "connection failed ({e}); retrying in {delay:?}");
                    attempt += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.changed() => return,
                    }
                    continue;
                }
            },
        };
        attempt = 0;
        if !first {
            metrics.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        info!(url = %options.url, "connected");
        match read(socket, &options, &frames, &metrics, &mut stop, &mut recent).await {
            End::Stopped => return,
            End::Lost(reason) => {
                warn!(url = %options.url, "connection lost: {reason}; reconnecting")
            }
            End::Replaced(successor) => {
                info!(url = %options.url, "replaced the connection ahead of the 24-hour limit");
                next = Some(*successor);
            }
        }
    }
}

/// A cheap fingerprint of a frame, to skip a frame seen on both sides of a replacement.
fn fingerprint(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// Reads one connection until it ends.
async fn read(
    mut socket: Socket,
    options: &ClientOptions,
    frames: &mpsc::Sender<ReceivedFrame>,
    metrics: &ClientMetrics,
    stop: &mut watch::Receiver<bool>,
    recent: &mut VecDeque<u64>,
) -> End {
    let opened = Instant::now();
    let mut successor: Option<Socket> = None;
    loop {
        let replace_due = successor.is_none() && opened.elapsed() >= options.max_connection_age;
        if replace_due {
            // Open the successor first; switch once it delivers, so nothing is missed.
            match connect(options).await {
                Ok(socket) => successor = Some(socket),
                Err(e) => debug!("replacement connection failed ({e}); keeping the current one"),
            }
        }
        let received = tokio::select! {
            received = tokio::time::timeout(options.idle_timeout, socket.next()) => received,
            _ = stop.changed() => return End::Stopped,
        };
        let message = match received {
            Err(_) => return End::Lost(format!("no frame for {:?}", options.idle_timeout)),
            Ok(None) => return End::Lost("closed".into()),
            Ok(Some(Err(e))) => return End::Lost(e.to_string()),
            Ok(Some(Ok(message))) => message,
        };
        match message {
            Message::Text(text) => {
                let text = text.to_string();
                let print = fingerprint(&text);
                if recent.contains(&print) {
                    metrics.duplicates.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                recent.push_back(print);
                if recent.len() > 16 {
                    recent.pop_front();
                }
                metrics.frames.fetch_add(1, Ordering::Relaxed);
                let frame = ReceivedFrame {
                    arrival_ms: chrono::Utc::now().timestamp_millis(),
                    text,
                };
                // Back-pressure: wait for room rather than buffer without bound.
                tokio::select! {
                    sent = frames.send(frame) => if sent.is_err() { return End::Stopped },
                    _ = stop.changed() => return End::Stopped,
                }
                if let Some(next) = successor.take() {
                    let _ = socket.close(None).await;
                    return End::Replaced(Box::new(next));
                }
            }
            Message::Ping(payload) => {
                // The pong must carry the ping's payload.
                if let Err(e) = socket.send(Message::Pong(payload)).await {
                    return End::Lost(format!("cannot answer a ping: {e}"));
                }
                metrics.pongs.fetch_add(1, Ordering::Relaxed);
            }
            Message::Close(_) => return End::Lost("closed by the server".into()),
            _ => {}
        }
    }
}
