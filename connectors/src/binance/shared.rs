//! One WebSocket connection per stream URL, shared by every source of the process that reads it.
//!
//! A pipeline file with several `INSERT`s, or several files run by one `sluice run` or `sluice
//! demo`, runs several queries over the same live stream. Each opening its own connection
//! would read the stream several times, and — since a live stream cannot be replayed — the
//! queries would see slightly different data whenever one connection drops and another does
//! not. Instead, the first [`Subscription`] to a URL opens the connection and every
//! subscription receives every frame that arrives after it subscribed, in the same order: one
//! read of the source for all the queries. The connection closes when the last subscription is
//! dropped.
//!
//! Frames are kept until every subscriber has taken them, up to [`MAX_BUFFERED_FRAMES`]; a
//! subscriber that falls further behind (a query stalled on its sink) loses the oldest frames,
//! counted in [`Drained::missed`], rather than holding the others' memory without bound — the
//! same at-most-once contract the source has across restarts.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

use super::client::{ClientOptions, ReceivedFrame, WebSocketClient};

/// Frames kept for the slowest subscriber (about an hour of Binance's one frame a second).
pub(crate) const MAX_BUFFERED_FRAMES: usize = 3600;

/// What a subscriber takes: the frames since its last call, and how many it missed.
#[derive(Debug, Default)]
pub(crate) struct Drained {
    /// New frames, in arrival order.
    pub frames: Vec<Arc<ReceivedFrame>>,
    /// Frames dropped before this subscriber took them (it fell too far behind).
    pub missed: u64,
    /// Why the connection gave up for good, if it did ([`WebSocketClient::failure`]).
    pub failure: Option<String>,
}

/// The process's connections, by URL.
fn registry() -> &'static Mutex<BTreeMap<String, Weak<SharedStream>>> {
    static STREAMS: OnceLock<Mutex<BTreeMap<String, Weak<SharedStream>>>> = OnceLock::new();
    STREAMS.get_or_init(Mutex::default)
}

/// A connection shared by subscribers.
struct SharedStream {
    options: ClientOptions,
    hub: Mutex<Hub>,
}

#[derive(Default)]
struct Hub {
    /// Started by the first drain (it needs the runtime), then kept.
    client: Option<WebSocketClient>,
    frames: VecDeque<Arc<ReceivedFrame>>,
    /// Number of the first frame in `frames` (frames are numbered from 0 as they arrive).
    first: u64,
    /// Each subscriber's next frame number.
    cursors: BTreeMap<u64, u64>,
    next_id: u64,
}

impl Hub {
    fn end(&self) -> u64 {
        self.first + self.frames.len() as u64
    }

    /// Drops the frames every subscriber has taken, and the oldest beyond the bound.
    fn trim(&mut self) {
        let slowest = self.cursors.values().copied().min().unwrap_or(self.end());
        while self.first < slowest || self.frames.len() > MAX_BUFFERED_FRAMES {
            if self.frames.pop_front().is_none() {
                break;
            }
            self.first += 1;
        }
    }
}

/// One reader's place in a shared connection; see the [module docs](self).
pub(crate) struct Subscription {
    stream: Arc<SharedStream>,
    id: u64,
}

impl Subscription {
    /// Subscribes to the stream at `options.url`, sharing the process's connection to it if
    /// there is one (its options then stay those of the first subscriber). Frames that arrive
    /// from now on are this subscriber's; nothing connects until the first [`drain`].
    ///
    /// [`drain`]: Subscription::drain
    pub(crate) fn new(options: &ClientOptions) -> Self {
        let mut streams = registry().lock().unwrap_or_else(PoisonError::into_inner);
        streams.retain(|_, stream| stream.strong_count() > 0);
        let stream = match streams.get(&options.url).and_then(Weak::upgrade) {
            Some(stream) => stream,
            None => {
                let stream = Arc::new(SharedStream {
                    options: options.clone(),
                    hub: Mutex::default(),
                });
                streams.insert(options.url.clone(), Arc::downgrade(&stream));
                stream
            }
        };
        let id = {
            let mut hub = stream.hub.lock().unwrap_or_else(PoisonError::into_inner);
            let id = hub.next_id;
            hub.next_id += 1;
            let end = hub.end();
            hub.cursors.insert(id, end);
            id
        };
        Self { stream, id }
    }

    /// The frames received since the last call (connecting on the first call).
    pub(crate) fn drain(&mut self) -> Drained {
        let mut hub = self
            .stream
            .hub
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let options = &self.stream.options;
        let client = hub
            .client
            .get_or_insert_with(|| WebSocketClient::spawn(options.clone()));
        let mut received = Vec::new();
        while let Some(frame) = client.try_next() {
            received.push(Arc::new(frame));
        }
        let failure = client.failure();
        hub.frames.extend(received);
        let (first, end) = (hub.first, hub.end());
        let cursor = hub.cursors.get(&self.id).copied().unwrap_or(end);
        let missed = first.saturating_sub(cursor);
        let from = cursor.max(first);
        let frames = hub
            .frames
            .iter()
            .skip((from - first) as usize)
            .cloned()
            .collect();
        hub.cursors.insert(self.id, end);
        hub.trim();
        Drained {
            frames,
            missed,
            failure,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut hub = self
            .stream
            .hub
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        hub.cursors.remove(&self.id);
        hub.trim();
    }
}
