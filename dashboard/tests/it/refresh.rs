//! Stale-while-revalidate: a stale entry is served while one background computation replaces
//! it, concurrent requests share that computation, and a commit's data is recomputed before
//! the pages are told about it, so that no request waits for the heavy queries.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;
use sluice_dashboard::{ApiError, Cache, CacheKind};
use sqlx::{AssertSqlSafe, Connection};
use tokio::sync::Mutex;

use crate::both;
use crate::fixtures::{Fixture, Server, t0};
use crate::http::{get_json, symbols_of};
use crate::live::Events;

const T: &str = "projet_bdcc";

/// A computation that counts its runs and waits for `gate` (held by the test to make it slow).
fn counting(
    runs: &Arc<AtomicU64>,
    gate: &Arc<Mutex<()>>,
) -> impl Fn() -> futures::future::BoxFuture<'static, Result<Value, ApiError>> + Send + Sync + 'static
{
    let (runs, gate) = (runs.clone(), gate.clone());
    move || {
        let (runs, gate) = (runs.clone(), gate.clone());
        Box::pin(async move {
            let _open = gate.lock().await;
            Ok(Value::from(runs.fetch_add(1, Ordering::SeqCst) + 1))
        })
    }
}

/// `n` concurrent lookups of `key`, each of which must answer within a second.
async fn concurrently(
    cache: &Cache,
    key: &str,
    ttl: Duration,
    n: usize,
    runs: &Arc<AtomicU64>,
    gate: &Arc<Mutex<()>>,
) -> Vec<Value> {
    let lookups = (0..n).map(|_| {
        let (cache, key, compute) = (cache.clone(), key.to_owned(), counting(runs, gate));
        tokio::spawn(async move {
            let value = cache.get_or_compute(&key, CacheKind::Data, ttl, compute);
            tokio::time::timeout(Duration::from_secs(1), value).await
        })
    });
    let mut values = Vec::new();
    for lookup in futures::future::join_all(lookups).await {
        let value = lookup.unwrap().expect("answered without waiting").unwrap();
        values.push((*value).clone());
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_entry_served_during_one_refresh() {
    let (cache, runs, gate) = (
        Cache::default(),
        Arc::new(AtomicU64::new(0)),
        Arc::new(Mutex::new(())),
    );
    let ttl = Duration::from_millis(100);
    assert_eq!(
        concurrently(&cache, "k", ttl, 1, &runs, &gate).await,
        [Value::from(1)]
    );
    tokio::time::sleep(ttl * 2).await;

    // The refresh is held: 20 concurrent requests get the stale value at once.
    let held = gate.lock().await;
    let values = concurrently(&cache, "k", ttl, 20, &runs, &gate).await;
    assert!(values.iter().all(|v| *v == 1), "{values:?}");
    let stats = cache.stats();
    assert_eq!(
        (stats.computations, stats.stale_served, stats.waited),
        (2, 20, 1),
        "{stats:?}"
    );
    drop(held);

    // The one refresh completes: its value is served, fresh, and nothing else ran.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let value = concurrently(&cache, "k", Duration::from_secs(60), 1, &runs, &gate).await;
        if value == [Value::from(2)] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "refresh not stored");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(runs.load(Ordering::SeqCst), 2, "a single refresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_requests_share_one_computation() {
    let (cache, runs, gate) = (
        Cache::default(),
        Arc::new(AtomicU64::new(0)),
        Arc::new(Mutex::new(())),
    );
    let held = gate.clone().lock_owned().await;
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(held);
    });
    let values = concurrently(&cache, "k", Duration::from_secs(60), 20, &runs, &gate).await;
    assert!(values.iter().all(|v| *v == 1), "{values:?}");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(cache.stats().waited, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_one_commit_behind() {
    let (cache, runs, gate) = (
        Cache::default(),
        Arc::new(AtomicU64::new(0)),
        Arc::new(Mutex::new(())),
    );
    let ttl = Duration::from_secs(60);
    concurrently(&cache, "k", ttl, 1, &runs, &gate).await;
    // One commit behind: served (stale) while its refresh runs (held here).
    cache.invalidate_data();
    let held = gate.lock().await;
    assert_eq!(
        concurrently(&cache, "k", ttl, 1, &runs, &gate).await,
        [Value::from(1)]
    );
    // Another commit: the stored value is two behind and no longer served; a request waits
    // for the refresh in flight (one commit behind, and it starts the next refresh).
    cache.invalidate_data();
    let waiting = tokio::spawn({
        let (cache, compute) = (cache.clone(), counting(&runs, &gate));
        async move {
            cache
                .get_or_compute("k", CacheKind::Data, ttl, compute)
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "a value two commits behind is served"
    );
    drop(held);
    assert_eq!(*waiting.await.unwrap().unwrap(), Value::from(2));
    // `refresh_data` (run by the watcher after a commit) brings the entry up to date before
    // anyone asks.
    cache.refresh_data().await;
    let waited = cache.stats().waited;
    assert_eq!(
        concurrently(&cache, "k", ttl, 1, &runs, &gate).await,
        [Value::from(3)]
    );
    assert_eq!(cache.stats().waited, waited, "fresh: nobody waited");
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

/// A batch with a new symbol up 50 % in the last minute: the top gainer and an anomaly.
async fn rocket(fixture: &Fixture) -> chrono::DateTime<chrono::Utc> {
    let later = t0() + chrono::TimeDelta::seconds(1);
    fixture
        .insert_ticks_at(
            T,
            later,
            &[
                ("ZZZUSDT", 60, 100.0, 200.0, 50.0, 1.0),
                ("ZZZUSDT", 0, 150.0, 200.0, 50.0, 1.0),
            ],
        )
        .await;
    later
}

async fn commit_refreshed_in_background(fixture: &Fixture) {
    // Long TTLs: the new data can only come from the refresh after the commit.
    let server = Server::after_first_commit(fixture, T).await;
    let a = server.addr.clone();
    let mut events = Events::open(&a).await;
    let (_, hello) = events.next(Duration::from_secs(10)).await;
    let seq = hello["seq"].as_u64().unwrap();
    // A period the page asked for recently (not the default one).
    let (_, top) = get_json(&a, "/api/top?period=1h&symbols=ETHUSDT").await;
    assert!(!symbols_of(&top, "gainers").contains(&"ZZZUSDT".to_owned()));
    let (_, anomalies) = get_json(&a, "/api/anomalies?period=1h").await;
    assert!(!symbols_of(&anomalies, "anomalies").contains(&"ZZZUSDT".to_owned()));

    let later = rocket(fixture).await;
    fixture.commit(T, 1, 2).await;
    events.after(seq, Duration::from_secs(15)).await;
    let (_, status) = get_json(&a, "/api/status").await;
    let before = status["cache"].clone();
    // Told about the commit, the page reloads: the new data is there, computed in the
    // background before the event (nobody waits, nothing is recomputed on request).
    let (_, top) = get_json(&a, "/api/top?period=1h").await;
    assert_eq!(top["end_ms"], later.timestamp_millis(), "{top}");
    assert_eq!(symbols_of(&top, "gainers")[0], "ZZZUSDT");
    let (_, anomalies) = get_json(&a, "/api/anomalies?period=1h").await;
    assert_eq!(
        symbols_of(&anomalies, "anomalies")[0],
        "ZZZUSDT",
        "{anomalies}"
    );
    // The default period was computed in the background too (at startup, then refreshed).
    let (_, top) = get_json(&a, "/api/top").await;
    assert_eq!(symbols_of(&top, "gainers")[0], "ZZZUSDT");
    let (_, status) = get_json(&a, "/api/status").await;
    let after = &status["cache"];
    // (`computations` may grow: on PostgreSQL, other tests' notifications on the shared
    // channel trigger background refreshes, but no request waits for them.)
    assert_eq!(after["waited"], before["waited"], "{before} → {after}");
    server.stop().await;
}
both!(
    commit_refreshed_in_background,
    commit_refreshed_in_background_sqlite,
    commit_refreshed_in_background_postgres
);

/// PostgreSQL: while the refresh after a commit is blocked (the ticker table locked), requests
/// get the previous results at once; the new ones appear when it completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    sluice_no_postgres,
    ignore = "needs PostgreSQL: DATABASE_URL, or its server programs (initdb, pg_ctl) installed"
)]
async fn stale_results_served_while_the_refresh_is_blocked() {
    let fixture = Fixture::postgres().await;
    let server = Server::after_first_commit(&fixture, T).await;
    let a = server.addr.clone();
    let mut events = Events::open(&a).await;
    let (_, hello) = events.next(Duration::from_secs(10)).await;
    let seq = hello["seq"].as_u64().unwrap();
    let (_, top) = get_json(&a, "/api/top?period=1h").await;
    let old_end = top["end_ms"].clone();

    let later = rocket(&fixture).await;
    let mut lock = sqlx::PgConnection::connect(&fixture.url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "BEGIN; LOCK TABLE {T} IN ACCESS EXCLUSIVE MODE"
    )))
    .execute(&mut lock)
    .await
    .unwrap();
    fixture.commit(T, 1, 2).await;
    // The notification arrives at once; the refresh then waits for the lock.
    tokio::time::sleep(Duration::from_millis(700)).await;
    for _ in 0..5 {
        let answer =
            tokio::time::timeout(Duration::from_secs(2), get_json(&a, "/api/top?period=1h"));
        let (status, top) = answer.await.expect("answered while the refresh is blocked");
        assert_eq!((status, &top["end_ms"]), (200, &old_end), "{top}");
    }
    sqlx::raw_sql("ROLLBACK").execute(&mut lock).await.unwrap();
    events.after(seq, Duration::from_secs(15)).await;
    let (_, top) = get_json(&a, "/api/top?period=1h").await;
    assert_eq!(top["end_ms"], later.timestamp_millis(), "{top}");
    assert_eq!(symbols_of(&top, "gainers")[0], "ZZZUSDT");
    let (_, status) = get_json(&a, "/api/status").await;
    assert!(
        status["cache"]["stale_served"].as_u64().unwrap() >= 5,
        "{status}"
    );
    server.stop().await;
    fixture.cleanup().await;
}
