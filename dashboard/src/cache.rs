//! A server-side cache shared by every browser, like Streamlit's `st.cache_data` but
//! **stale-while-revalidate**: computed JSON values by key, each with the recipe that computes
//! it, so that it can be recomputed in the background.
//!
//! * A *fresh* entry (computed since the latest observed commit, younger than its TTL) is
//!   served as is.
//! * A *stale* entry (its TTL passed, or one commit was observed since its computation
//!   started) is served immediately while **one** background computation (a *flight*)
//!   replaces it; concurrent requests share that flight, they never start another.
//! * An entry two or more commits behind, or a key never computed, is not served: the request
//!   waits for the key's flight (the first request computes inline, as before).
//! * After a commit, [`Cache::refresh_data`] recomputes every data entry used recently and
//!   drops the others ([`Cache::invalidate_data`]).
//!
//! Computations nested in a flight (the latest snapshot time inside a *Top* computation, …)
//! never accept a stale value: they wait for a value computed for the current generation, so
//! that a refresh never builds on outdated pieces.
//!
//! **Memory.** The entries are bounded in bytes, not only in number: each stored value's
//! in-memory size is estimated ([`value_bytes`]) and, past the cache's byte budget, the least
//! recently used entries are dropped. An answer larger than an eighth of the budget is never
//! stored: the requests that waited for it get it, the next one computes it again (counted in
//! [`CacheStats::oversized`]). So a client cycling through distinct parameters cannot make the
//! cache hold more than its budget (give or take the values being recomputed at that moment,
//! which are replaced, not added, when their computation ends).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;

/// Most entries kept; past that, entries not used recently are dropped, then all idle ones.
const MAX_ENTRIES: usize = 1_024;

/// The default byte budget of a cache: 256 MiB.
pub const DEFAULT_MAX_BYTES: usize = 256 << 20;

/// An answer larger than the budget divided by this is not stored.
const OVERSIZED_FRACTION: usize = 8;

/// How long after its last use a data entry is kept warm (recomputed after each commit).
pub const KEEP_WARM: Duration = Duration::from_secs(120);

/// What an entry holds: data (outdated by commits) or the symbol list (TTL only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Query results: short TTL, stale after every observed commit.
    Data,
    /// The symbol list: long TTL, kept across commits.
    Symbols,
}

type Compute = Arc<dyn Fn() -> BoxFuture<'static, Result<Value, ApiError>> + Send + Sync>;
/// A computation's outcome, when it started and the commit generation it started at.
type Outcome = Result<(Arc<Value>, Instant, u64), ApiError>;
type Flight = Shared<BoxFuture<'static, Outcome>>;

tokio::task_local! {
    /// Set while a flight or a refresh runs: nested lookups must be current.
    static REFRESHING: ();
}

/// Runs `work` as a refresh: the cache lookups it makes never accept a stale value.
pub(crate) async fn refreshing<F: Future>(work: F) -> F::Output {
    REFRESHING.scope((), work).await
}

fn in_refresh() -> bool {
    REFRESHING.try_with(|_| ()).is_ok()
}

static NEXT_FLIGHT: AtomicU64 = AtomicU64::new(0);

struct Stored {
    value: Arc<Value>,
    /// When the computation started (the data it read is at least that recent).
    at: Instant,
    /// The commit generation when the computation started.
    generation: u64,
    /// The value's estimated size ([`value_bytes`]).
    bytes: usize,
}

struct Entry {
    kind: Kind,
    ttl: Duration,
    compute: Compute,
    used: Instant,
    stored: Option<Stored>,
    flight: Option<(u64, Flight)>,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("kind", &self.kind)
            .field("ttl", &self.ttl)
            .field("stored", &self.stored.as_ref().map(|s| s.generation))
            .field("flight", &self.flight.is_some())
            .finish_non_exhaustive()
    }
}

/// Counters of the cache's work since the server started (in `GET /api/status`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Entries held.
    pub entries: usize,
    /// Estimated bytes of the values held ([`value_bytes`]); at most the cache's budget.
    pub bytes: usize,
    /// Answers too large to be stored (more than an eighth of the budget): served to the
    /// requests that waited for them, then dropped.
    pub oversized: u64,
    /// Computations started (first computations and refreshes).
    pub computations: u64,
    /// Requests answered with a stale value while it was being recomputed.
    pub stale_served: u64,
    /// Requests that waited for a computation (a key never computed, or too outdated).
    pub waited: u64,
}

#[derive(Debug)]
struct Inner {
    entries: HashMap<String, Entry>,
    generation: u64,
    stats: CacheStats,
    max_bytes: usize,
}

impl Inner {
    /// Keeps the entries for which `keep` holds, keeping the byte count right.
    fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        let mut freed = 0;
        self.entries.retain(|_, e| {
            let kept = keep(e);
            if !kept {
                freed += e.stored.as_ref().map_or(0, |s| s.bytes);
            }
            kept
        });
        self.stats.bytes -= freed;
    }

    fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            self.stats.bytes -= entry.stored.map_or(0, |s| s.bytes);
        }
    }

    fn make_room(&mut self) {
        if self.entries.len() < MAX_ENTRIES {
            return;
        }
        self.retain(|e| e.flight.is_some() || e.used.elapsed() < KEEP_WARM);
        if self.entries.len() >= MAX_ENTRIES {
            self.retain(|e| e.flight.is_some());
        }
    }

    /// Drops the least recently used stored entries (never `keep`, never one in flight) until
    /// the values held fit the budget.
    fn fit_budget(&mut self, keep: &str) {
        if self.stats.bytes <= self.max_bytes {
            return;
        }
        let mut candidates: Vec<(Instant, String)> = self
            .entries
            .iter()
            .filter(|(key, e)| key.as_str() != keep && e.flight.is_none() && e.stored.is_some())
            .map(|(key, e)| (e.used, key.clone()))
            .collect();
        candidates.sort_unstable();
        for (_, key) in candidates {
            if self.stats.bytes <= self.max_bytes {
                break;
            }
            self.remove(&key);
        }
    }
}

/// An estimate of the memory `value` holds (its tree of nodes, strings and object keys), the
/// measure of the cache's byte budget. Walks the value without recursion.
pub fn value_bytes(value: &Value) -> usize {
    /// Per object member beyond its key and value: the map's own bookkeeping.
    const MEMBER_OVERHEAD: usize = 32;
    let mut total = 0;
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        total += std::mem::size_of::<Value>();
        match value {
            Value::String(s) => total += s.capacity(),
            Value::Array(items) => {
                total += (items.capacity() - items.len()) * std::mem::size_of::<Value>();
                pending.extend(items);
            }
            Value::Object(members) => {
                for (key, member) in members {
                    total += std::mem::size_of::<String>() + key.capacity() + MEMBER_OVERHEAD;
                    pending.push(member);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    total
}

/// The shared cache: a cheap handle (clones share the entries).
#[derive(Debug, Clone)]
pub struct Cache {
    inner: Arc<Mutex<Inner>>,
}

impl Default for Cache {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BYTES)
    }
}

impl Cache {
    /// An empty cache holding at most `max_bytes` of values ([`value_bytes`]); answers larger
    /// than an eighth of that are served but not stored.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                entries: HashMap::new(),
                generation: 0,
                stats: CacheStats::default(),
                max_bytes,
            })),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The value of `key`: fresh, else stale while one background computation replaces it,
    /// else the result of `compute` (waiting for the key's computation in flight, if any).
    /// A zero `ttl` caches nothing: `compute` runs for every call.
    ///
    /// `compute` is kept with the entry to recompute it after commits; it must compute the
    /// same thing for the same key.
    pub async fn get_or_compute<F, Fut>(
        &self,
        key: &str,
        kind: Kind,
        ttl: Duration,
        compute: F,
    ) -> Result<Arc<Value>, ApiError>
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ApiError>> + Send + 'static,
    {
        if ttl.is_zero() {
            return compute().await.map(Arc::new);
        }
        let compute: Compute = Arc::new(move || compute().boxed());
        self.fetch(key, kind, ttl, &compute, in_refresh()).await
    }

    async fn fetch(
        &self,
        key: &str,
        kind: Kind,
        ttl: Duration,
        compute: &Compute,
        strict: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let began = Instant::now();
        let mut counted = false;
        let mut seen = None;
        loop {
            let flight = {
                let mut guard = self.lock();
                let inner = &mut *guard;
                let generation = inner.generation;
                seen.get_or_insert(generation);
                if !inner.entries.contains_key(key) {
                    inner.make_room();
                }
                let entry = inner
                    .entries
                    .entry(key.to_owned())
                    .or_insert_with(|| Entry {
                        kind,
                        ttl,
                        compute: compute.clone(),
                        used: began,
                        stored: None,
                        flight: None,
                    });
                // Only requests count as use: refreshes must not keep an entry warm.
                if !strict {
                    entry.used = Instant::now();
                }
                if let Some(stored) = &entry.stored {
                    let current = kind == Kind::Symbols || stored.generation == generation;
                    let value = stored.value.clone();
                    if (current && stored.at.elapsed() < ttl) || stored.at >= began {
                        return Ok(value);
                    }
                    let servable = kind == Kind::Symbols || stored.generation + 1 >= generation;
                    if servable && !strict {
                        if entry.flight.is_none() {
                            // The flight runs in a task of its own: no need to poll it.
                            drop(self.start(key, entry, generation, &mut inner.stats));
                        }
                        inner.stats.stale_served += 1;
                        return Ok(value);
                    }
                }
                if !strict && !counted {
                    counted = true;
                    inner.stats.waited += 1;
                }
                match &entry.flight {
                    Some((_, flight)) => flight.clone(),
                    None => self.start(key, entry, generation, &mut inner.stats),
                }
            };
            // A flight that started after this lookup began, or at the generation this lookup
            // saw and within the TTL, is as current as this lookup must be; an older one may
            // not be: loop to check what it stored (another flight may be needed).
            let (value, at, generation) = flight.await?;
            if at >= began || (seen.is_some_and(|seen| generation >= seen) && at.elapsed() < ttl) {
                return Ok(value);
            }
        }
    }

    /// Starts the one computation of `entry`, in a task of its own (it completes even if
    /// every request waiting for it goes away).
    fn start(
        &self,
        key: &str,
        entry: &mut Entry,
        generation: u64,
        stats: &mut CacheStats,
    ) -> Flight {
        stats.computations += 1;
        let id = NEXT_FLIGHT.fetch_add(1, Ordering::Relaxed);
        let compute = entry.compute.clone();
        let cache = self.clone();
        let key = key.to_owned();
        let started = Instant::now();
        let task = tokio::spawn(refreshing(async move {
            let result = compute().await.map(Arc::new);
            cache.finish(&key, id, generation, started, &result);
            result.map(|value| (value, started, generation))
        }));
        let flight = async move { task.await.unwrap_or(Err(ApiError::Internal)) }
            .boxed()
            .shared();
        entry.flight = Some((id, flight.clone()));
        flight
    }

    /// Stores a flight's result within the byte budget; an error drops the entry (its stale
    /// value is not served again: the next request computes and reports), and so does an
    /// oversized value (the next request computes it again).
    fn finish(
        &self,
        key: &str,
        id: u64,
        generation: u64,
        at: Instant,
        result: &Result<Arc<Value>, ApiError>,
    ) {
        // Measured before taking the lock: a large value takes a while to walk.
        let bytes = result.as_ref().map_or(0, |value| value_bytes(value));
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(entry) = inner.entries.get_mut(key) else {
            return;
        };
        if entry.flight.as_ref().is_none_or(|(i, _)| *i != id) {
            return;
        }
        match result {
            Ok(value) if bytes <= inner.max_bytes / OVERSIZED_FRACTION => {
                entry.flight = None;
                let previous = entry.stored.replace(Stored {
                    value: value.clone(),
                    at,
                    generation,
                    bytes,
                });
                inner.stats.bytes = inner.stats.bytes - previous.map_or(0, |s| s.bytes) + bytes;
                inner.fit_budget(key);
            }
            Ok(_) => {
                tracing::debug!(key, bytes, "dashboard: answer too large to cache");
                inner.stats.oversized += 1;
                inner.remove(key);
            }
            Err(_) => inner.remove(key),
        }
    }

    /// A new batch was committed: every [`Kind::Data`] entry becomes stale; those not used
    /// for [`KEEP_WARM`] are dropped.
    pub fn invalidate_data(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner
            .retain(|e| e.kind != Kind::Data || e.flight.is_some() || e.used.elapsed() < KEEP_WARM);
    }

    /// Recomputes every [`Kind::Data`] entry not computed for the latest commit (one flight
    /// per key, shared with requests) and completes when they all are. Errors are left to
    /// the requests (the failed entries are dropped).
    pub async fn refresh_data(&self) {
        let work: Vec<(String, Duration, Compute)> = {
            let inner = self.lock();
            inner
                .entries
                .iter()
                .filter(|(_, e)| e.kind == Kind::Data)
                .map(|(key, e)| (key.clone(), e.ttl, e.compute.clone()))
                .collect()
        };
        let refreshes = work.iter().map(|(key, ttl, compute)| async move {
            if let Err(error) = self.fetch(key, Kind::Data, *ttl, compute, true).await {
                tracing::debug!(%error, key, "dashboard: refresh failed");
            }
        });
        refreshing(futures::future::join_all(refreshes)).await;
    }

    /// Drops one entry.
    pub fn remove(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Drops every entry.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.clear();
        inner.stats.bytes = 0;
    }

    /// Number of entries held (fresh or not).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The cache's counters.
    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            entries: inner.entries.len(),
            ..inner.stats
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constant(v: i64) -> impl Fn() -> BoxFuture<'static, Result<Value, ApiError>> {
        move || async move { Ok(Value::from(v)) }.boxed()
    }

    #[tokio::test]
    async fn ttl_and_invalidation() {
        let cache = Cache::default();
        let ttl = Duration::from_secs(60);
        let v = cache
            .get_or_compute("a", Kind::Data, ttl, constant(1))
            .await
            .unwrap();
        assert_eq!(*v, Value::from(1));
        let v = cache
            .get_or_compute("a", Kind::Data, ttl, constant(2))
            .await
            .unwrap();
        assert_eq!(*v, Value::from(1), "cached");
        cache
            .get_or_compute("s", Kind::Symbols, ttl, constant(3))
            .await
            .unwrap();
        cache.invalidate_data();
        assert_eq!(cache.len(), 2, "used recently: kept warm");
        cache.refresh_data().await;
        let v = cache
            .get_or_compute("a", Kind::Data, ttl, constant(5))
            .await
            .unwrap();
        assert_eq!(*v, Value::from(1), "recomputed by its own recipe, fresh");
        cache.clear();
        let v = cache
            .get_or_compute("a", Kind::Data, Duration::ZERO, constant(4))
            .await
            .unwrap();
        assert_eq!(*v, Value::from(4));
        assert_eq!(cache.len(), 0, "a zero TTL stores nothing");
        let stats = cache.stats();
        assert_eq!((stats.computations, stats.waited), (3, 2), "{stats:?}");
    }

    #[tokio::test]
    async fn errors_are_not_kept() {
        let cache = Cache::default();
        let ttl = Duration::from_secs(60);
        let failed = cache
            .get_or_compute("e", Kind::Data, ttl, || async {
                Err::<Value, _>(ApiError::Unavailable)
            })
            .await;
        assert!(matches!(failed, Err(ApiError::Unavailable)));
        assert!(cache.is_empty(), "a failed computation leaves nothing");
        let v = cache
            .get_or_compute("e", Kind::Data, ttl, constant(7))
            .await
            .unwrap();
        assert_eq!(*v, Value::from(7));
    }

    /// A value of about `n` KiB (one string).
    fn kib(n: usize) -> impl Fn() -> BoxFuture<'static, Result<Value, ApiError>> + Clone {
        move || async move { Ok(Value::String("x".repeat(n << 10))) }.boxed()
    }

    #[tokio::test]
    async fn bounded_in_bytes() {
        let cache = Cache::new(64 << 10);
        let ttl = Duration::from_secs(60);
        for i in 0..20 {
            cache
                .get_or_compute(&format!("k{i}"), Kind::Data, ttl, kib(6))
                .await
                .unwrap();
            let stats = cache.stats();
            assert!(stats.bytes <= 64 << 10, "{stats:?}");
        }
        let stats = cache.stats();
        assert!(stats.entries < 11 && stats.entries >= 8, "{stats:?}");
        assert_eq!(stats.oversized, 0);
        // The least recently used went first: the latest key is still served from the cache.
        let v = cache
            .get_or_compute("k19", Kind::Data, ttl, constant(0))
            .await
            .unwrap();
        assert!(v.is_string(), "k19 kept");
        let v = cache
            .get_or_compute("k0", Kind::Data, ttl, constant(0))
            .await
            .unwrap();
        assert_eq!(*v, Value::from(0), "k0 evicted, computed again");
        cache.clear();
        assert_eq!(cache.stats().bytes, 0);
    }

    #[tokio::test]
    async fn oversized_answers_are_served_not_stored() {
        let cache = Cache::new(64 << 10);
        let ttl = Duration::from_secs(60);
        let compute = kib(9);
        let (a, b) = tokio::join!(
            cache.get_or_compute("big", Kind::Data, ttl, compute.clone()),
            cache.get_or_compute("big", Kind::Data, ttl, compute.clone()),
        );
        assert_eq!(a.unwrap().as_str().map(str::len), Some(9 << 10));
        assert_eq!(b.unwrap().as_str().map(str::len), Some(9 << 10));
        let stats = cache.stats();
        assert_eq!(
            (
                stats.entries,
                stats.bytes,
                stats.oversized,
                stats.computations
            ),
            (0, 0, 1, 1),
            "one computation shared by both requests, nothing kept: {stats:?}"
        );
        cache
            .get_or_compute("big", Kind::Data, ttl, compute)
            .await
            .unwrap();
        assert_eq!(cache.stats().computations, 2, "computed again");
    }

    #[test]
    fn value_bytes_counts_the_tree() {
        let small = value_bytes(&Value::from(1));
        assert_eq!(small, std::mem::size_of::<Value>());
        let rows: Value = (0..1_000)
            .map(|i| serde_json::json!({"symbol": "BTCUSDT", "close": i}))
            .collect();
        let bytes = value_bytes(&rows);
        // 1,000 objects of two members: well above their JSON text, as in memory.
        assert!(
            bytes > 1_000 * 2 * (std::mem::size_of::<Value>() * 2),
            "{bytes}"
        );
        let text = serde_json::to_vec(&rows).unwrap().len();
        assert!(bytes > text, "{bytes} vs {text}");
    }
}
