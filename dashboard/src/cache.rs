//! A server-side cache with a time to live, shared by every browser (like Streamlit's
//! `st.cache_data`): computed JSON values by key. A commit observed by the live watcher
//! invalidates the data entries; entries computed before an invalidation are not stored.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Most entries kept; past that, expired entries are dropped, then everything.
const MAX_ENTRIES: usize = 1_024;

/// What an entry holds: data (invalidated by commits) or the symbol list (TTL only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Query results: short TTL, dropped on every observed commit.
    Data,
    /// The symbol list: long TTL, kept across commits.
    Symbols,
}

#[derive(Debug)]
struct Entry {
    stored: Instant,
    ttl: Duration,
    kind: Kind,
    value: Arc<Value>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    generation: u64,
}

/// The shared cache.
#[derive(Debug, Default)]
pub struct Cache {
    inner: Mutex<Inner>,
}

impl Cache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached value of `key` if fresh, else the result of `compute` (stored for `ttl`
    /// unless `ttl` is zero or a commit was observed meanwhile).
    pub async fn get_or_compute<F, Fut, E>(
        &self,
        key: &str,
        kind: Kind,
        ttl: Duration,
        compute: F,
    ) -> Result<Arc<Value>, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Value, E>>,
    {
        let generation = {
            let inner = self.lock();
            if let Some(entry) = inner.entries.get(key)
                && entry.stored.elapsed() < entry.ttl
            {
                return Ok(entry.value.clone());
            }
            inner.generation
        };
        let value = Arc::new(compute().await?);
        if !ttl.is_zero() {
            let mut inner = self.lock();
            if inner.generation == generation || kind == Kind::Symbols {
                if inner.entries.len() >= MAX_ENTRIES {
                    inner.entries.retain(|_, e| e.stored.elapsed() < e.ttl);
                    if inner.entries.len() >= MAX_ENTRIES {
                        inner.entries.clear();
                    }
                }
                inner.entries.insert(
                    key.to_owned(),
                    Entry {
                        stored: Instant::now(),
                        ttl,
                        kind,
                        value: value.clone(),
                    },
                );
            }
        }
        Ok(value)
    }

    /// Drops every [`Kind::Data`] entry (a new batch was committed).
    pub fn invalidate_data(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.retain(|_, e| e.kind != Kind::Data);
    }

    /// Drops one entry.
    pub fn remove(&self, key: &str) {
        self.lock().entries.remove(key);
    }

    /// Drops every entry.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.generation += 1;
        inner.entries.clear();
    }

    /// Number of entries held (fresh or not).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ttl_and_invalidation() {
        let cache = Cache::new();
        let ttl = Duration::from_secs(60);
        let v = cache
            .get_or_compute("a", Kind::Data, ttl, || async {
                Ok::<_, ()>(Value::from(1))
            })
            .await
            .unwrap();
        assert_eq!(*v, Value::from(1));
        let v = cache
            .get_or_compute("a", Kind::Data, ttl, || async {
                Ok::<_, ()>(Value::from(2))
            })
            .await
            .unwrap();
        assert_eq!(*v, Value::from(1), "cached");
        cache
            .get_or_compute("s", Kind::Symbols, ttl, || async {
                Ok::<_, ()>(Value::from(3))
            })
            .await
            .unwrap();
        cache.invalidate_data();
        assert_eq!(cache.len(), 1, "symbols survive a commit");
        let v = cache
            .get_or_compute("a", Kind::Data, Duration::ZERO, || async {
                Ok::<_, ()>(Value::from(4))
            })
            .await
            .unwrap();
        assert_eq!(*v, Value::from(4));
        assert_eq!(cache.len(), 1, "a zero TTL stores nothing");
    }
}
