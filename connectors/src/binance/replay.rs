//! A local WebSocket server that serves a capture the way Binance serves its streams: same
//! paths (`/ws/<stream>`, `/stream?streams=<a>/<b>`), same frames, a ping every 20 s and a
//! disconnect when pongs stop, so the producer, the tests and the offline demo run without
//! internet.
//!
//! Pacing: [`Pacing::Live`] plays one timeline for every client, as a live stream does (a
//! client that connects late joins at the current frame; `speed` compresses time);
//! [`Pacing::Max`] sends each client the whole capture from the start as fast as it reads.
//! With `shift_to_now`, event times (`E`, and `T` of trades) are moved so that each frame
//! looks as if it happened when it is sent; every other byte stays as captured. (Frames cut
//! out for single-symbol or combined streams are re-serialized.)
//!
//! Streams: `!miniTicker@arr` and `!ticker@arr` get the captured arrays; `<symbol>@miniTicker`
//! and `<symbol>@ticker` get that symbol's objects, one per frame. Combined streams wrap each
//! payload in `{"stream": …, "data": …}`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tracing::{debug, info};

use super::capture::CapturedFrame;

/// How frames are timed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pacing {
    /// One shared timeline at `speed` times the captured rate.
    Live {
        /// 1.0 replays in real time, 10.0 ten times faster.
        speed: f64,
    },
    /// Every client gets every frame from the first, as fast as it reads.
    Max,
}

/// Replay settings.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Frame timing.
    pub pacing: Pacing,
    /// Start over at the end of the capture (otherwise connections stay open, silent).
    pub looped: bool,
    /// Move event times to the moment each frame is sent.
    pub shift_to_now: bool,
    /// How often the server pings (Binance: 20 s).
    pub ping_interval: Duration,
    /// How long without a pong before the server disconnects (Binance: 60 s).
    pub pong_timeout: Duration,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            pacing: Pacing::Live { speed: 1.0 },
            looped: false,
            shift_to_now: false,
            ping_interval: Duration::from_secs(20),
            pong_timeout: Duration::from_secs(60),
        }
    }
}

/// What the server did, for tests and logs.
#[derive(Debug, Default)]
pub struct ReplayStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Data frames sent, over all connections.
    pub frames_sent: AtomicU64,
    /// Pings sent.
    pub pings_sent: AtomicU64,
    /// Pongs received that answered a ping (same payload).
    pub pongs_received: AtomicU64,
}

/// A fault the server can inject into every open connection, for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A normal close handshake from the server.
    Close,
    /// The TCP connection dropped without a close frame.
    Drop,
    /// The connection stays open but nothing more is sent (no frames, no pings).
    Silence,
}

/// A running replay server; stops when dropped.
pub struct ReplayServer {
    address: SocketAddr,
    stats: Arc<ReplayStats>,
    faults: watch::Sender<Option<(u64, Fault)>>,
    task: JoinHandle<()>,
}

impl ReplayServer {
    /// Starts serving `frames` on `listen` (port 0 picks a free port).
    pub async fn start(
        frames: Vec<CapturedFrame>,
        listen: SocketAddr,
        options: ReplayOptions,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        let stats = Arc::new(ReplayStats::default());
        let (faults, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            frames,
            options,
            started: Instant::now(),
            stats: Arc::clone(&stats),
        });
        let fault_sender = faults.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, peer)) = listener.accept().await {
                let shared = Arc::clone(&shared);
                let faults = fault_sender.subscribe();
                tokio::spawn(async move {
                    if let Err(e) = serve(socket, shared, faults).await {
                        debug!(%peer, "replay connection ended: {e}");
                    }
                });
            }
        });
        info!(%address, "replay server listening");
        Ok(Self {
            address,
            stats,
            faults,
            task,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The URL of a raw stream on this server, e.g. `ws://127.0.0.1:9443/ws/!miniTicker@arr`.
    pub fn url(&self, stream: &str) -> String {
        format!("ws://{}/ws/{stream}", self.address)
    }

    /// Counters of what the server did.
    pub fn stats(&self) -> &ReplayStats {
        &self.stats
    }

    /// Injects `fault` into every connection open now.
    pub fn inject(&self, fault: Fault) {
        self.faults
            .send_modify(|f| *f = Some((f.map_or(1, |(n, _)| n + 1), fault)));
    }
}

impl Drop for ReplayServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Shared {
    frames: Vec<CapturedFrame>,
    options: ReplayOptions,
    started: Instant,
    stats: Arc<ReplayStats>,
}

/// What a client asked for.
struct Route {
    /// `Some(stream names)` for a combined stream.
    combined: bool,
    streams: Vec<String>,
}

fn route(path_and_query: &str) -> Option<Route> {
    if let Some(stream) = path_and_query.strip_prefix("/ws/") {
        return (!stream.is_empty()).then(|| Route {
            combined: false,
            streams: vec![percent_decode(stream)],
        });
    }
    let query = path_and_query.strip_prefix("/stream?")?;
    let streams = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("streams="))?;
    let streams: Vec<String> = streams
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    (!streams.is_empty()).then_some(Route {
        combined: true,
        streams,
    })
}

/// Decodes `%21` and friends (clients may escape `!` and `@`).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn serve(
    socket: TcpStream,
    shared: Arc<Shared>,
    mut faults: watch::Receiver<Option<(u64, Fault)>>,
) -> Result<(), String> {
    let mut requested = None;
    // The error type is tungstenite's, fixed by its handshake callback.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default();
        match route(&path) {
            Some(route) => {
                requested = Some(route);
                Ok(response)
            }
            None => {
                let mut error = ErrorResponse::new(Some(format!("unknown stream path {path}")));
                *error.status_mut() = StatusCode::NOT_FOUND;
                Err(error)
            }
        }
    };
    let mut ws = tokio_tungstenite::accept_hdr_async(socket, callback)
        .await
        .map_err(|e| e.to_string())?;
    let route = requested.ok_or("no route")?;
    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
    faults.mark_unchanged();

    let frames = &shared.frames;
    let options = &shared.options;
    let connected = Instant::now();
    // Where this connection starts in the timeline, and the timeline's length.
    let first = frames.first().map_or(0, |f| f.arrival_ms);
    let span_ms = frames
        .last()
        .map_or(1, |f| (f.arrival_ms - first).max(0) + 1000);
    let mut index = 0usize;
    let mut round = 0u64;
    if let Pacing::Live { speed } = options.pacing {
        let elapsed_ms = (shared.started.elapsed().as_secs_f64() * 1000.0 * speed) as i64;
        round = (elapsed_ms / span_ms) as u64;
        if !options.looped && round > 0 {
            index = frames.len();
        } else {
            let offset = elapsed_ms % span_ms;
            index = frames.partition_point(|f| f.arrival_ms - first < offset);
        }
    }
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + options.ping_interval,
        options.ping_interval,
    );
    let mut ping_sent: Option<(Vec<u8>, Instant)> = None;
    let mut silent = false;
    loop {
        // When the next frame is due (None: the capture is over).
        let due = if silent || index >= frames.len() {
            None
        } else {
            Some(match options.pacing {
                Pacing::Max => tokio::time::Instant::now(),
                Pacing::Live { speed } => {
                    let at_ms =
                        (round as i64 * span_ms + frames[index].arrival_ms - first) as f64 / speed;
                    let from_start = Duration::from_secs_f64(at_ms.max(0.0) / 1000.0);
                    tokio::time::Instant::from_std(shared.started + from_start)
                }
            })
        };
        let far = tokio::time::Instant::now() + Duration::from_secs(3600);
        tokio::select! {
            _ = tokio::time::sleep_until(due.unwrap_or(far)), if due.is_some() => {
                let frame = &frames[index];
                let now_ms = chrono::Utc::now().timestamp_millis();
                let delta = if options.shift_to_now { now_ms - frame.arrival_ms } else { 0 };
                for payload in payloads(&frame.text, &route, delta) {
                    ws.send(Message::text(payload)).await.map_err(|e| e.to_string())?;
                }
                shared.stats.frames_sent.fetch_add(1, Ordering::Relaxed);
                index += 1;
                if index == frames.len() && options.looped {
                    index = 0;
                    round += 1;
                }
            }
            _ = ping.tick(), if !silent => {
                if let Some((_, at)) = &ping_sent
                    && at.elapsed() > options.pong_timeout
                {
                    let _ = ws.close(None).await;
                    return Err("no pong: disconnected, as Binance does".into());
                }
                let payload = connected.elapsed().as_millis().to_string().into_bytes();
                ws.send(Message::Ping(payload.clone().into())).await.map_err(|e| e.to_string())?;
                shared.stats.pings_sent.fetch_add(1, Ordering::Relaxed);
                if ping_sent.is_none() {
                    ping_sent = Some((payload, Instant::now()));
                }
            }
            message = ws.next() => match message {
                Some(Ok(Message::Pong(payload))) => {
                    if ping_sent.as_ref().is_some_and(|(p, _)| p.as_slice() == payload.as_ref()) {
                        shared.stats.pongs_received.fetch_add(1, Ordering::Relaxed);
                        ping_sent = None;
                    }
                }
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
            },
            changed = faults.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                let fault = faults.borrow_and_update().map(|(_, f)| f);
                match fault {
                    Some(Fault::Close) => {
                        let _ = ws.close(None).await;
                        return Ok(());
                    }
                    Some(Fault::Drop) => return Ok(()),
                    Some(Fault::Silence) => silent = true,
                    None => {}
                }
            }
        }
    }
}

/// The messages one captured frame gives a client of `route`, event times moved by `delta`.
fn payloads(frame: &str, route: &Route, delta: i64) -> Vec<String> {
    let all_market = |s: &str| s.starts_with('!');
    let frame = if delta != 0 {
        shift(frame, delta)
    } else {
        frame.to_string()
    };
    if !route.combined && route.streams.iter().all(|s| all_market(s)) {
        return vec![frame];
    }
    let Ok(value) = serde_json::from_str::<Value>(&frame) else {
        // Not JSON: serve it as captured (a client must cope with malformed frames).
        return vec![frame];
    };
    let mut out = Vec::new();
    for stream in &route.streams {
        let payloads: Vec<Value> = if all_market(stream) {
            vec![value.clone()]
        } else {
            let symbol = stream
                .split('@')
                .next()
                .unwrap_or_default()
                .to_ascii_uppercase();
            let events = match &value {
                Value::Array(events) => events.clone(),
                other => vec![other.clone()],
            };
            events
                .into_iter()
                .filter(|e| e.get("s").and_then(Value::as_str) == Some(symbol.as_str()))
                .collect()
        };
        for payload in payloads {
            let message = if route.combined {
                serde_json::json!({ "stream": stream, "data": payload })
            } else {
                payload
            };
            out.push(message.to_string());
        }
    }
    out
}

/// Adds `delta` ms to every event time (`"E":`) and trade time (`"T":`) in the frame's text,
/// leaving every other byte as captured.
fn shift(frame: &str, delta: i64) -> String {
    let mut out = String::with_capacity(frame.len() + 16);
    let mut rest = frame;
    while let Some(at) = rest.find("\":") {
        let (before, after) = rest.split_at(at + 2);
        out.push_str(before);
        rest = after;
        // `before` ends with `"E":` (or `"T":`) when the key is one letter long.
        let key = before.len().checked_sub(3).map(|i| before.as_bytes()[i]);
        let quote = before.len().checked_sub(4).map(|i| before.as_bytes()[i]);
        if quote == Some(b'"') && matches!(key, Some(b'E' | b'T')) {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit() && c != '-')
                .unwrap_or(rest.len());
            if let Ok(ms) = rest[..digits].parse::<i64>() {
                out.push_str(&(ms + delta).to_string());
                rest = &rest[digits..];
            }
        }
    }
    out.push_str(rest);
    out
}
