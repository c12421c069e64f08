//! Latency of the dashboard's main API endpoints on a 1,000,000-row ticker table with 400
//! symbols (2,500 one-second snapshots each, with the sink's `(symbol, timestamp_ts)` index),
//! in SQLite (a temporary file) and, when `DATABASE_URL` is set, in PostgreSQL (a temporary
//! schema). Prints p50/p95 per endpoint:
//!
//! * *cold*: no cache (TTL 0: every request queries the database), for transparency;
//! * *warm*: the default configuration, no commit (cache hits);
//! * *steady*: what users see while the pipeline runs: the default configuration while a
//!   writer commits a batch (one snapshot per symbol, `sluice_commits` updated and, on
//!   PostgreSQL, `sluice_batches` notified, in one transaction, as the sink does) every second;
//!   the endpoints are requested in turn for `STEADY_SECS` (default 20) seconds.
//!
//! ```text
//! CARGO_TARGET_DIR=$HOME/.cache/sluice/target-dash-release \
//!   cargo run --release -p sluice-dashboard --example api_latency
//! ```
//!
//! `ROWS` and `SYMBOLS` (environment) change the table's size.

use std::time::{Duration, Instant};

use sluice_dashboard::{Dashboard, DashboardConfig};
use sqlx::{AssertSqlSafe, Connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ENDPOINTS: [(&str, &str); 7] = [
    ("status", "/api/status"),
    ("symbols", "/api/symbols"),
    (
        "overview",
        "/api/overview?symbols=BTCUSDT,ETHUSDT&period=24h",
    ),
    (
        "candles",
        "/api/candles?symbols=BTCUSDT,ETHUSDT&period=24h&limit=1000",
    ),
    ("top", "/api/top?period=24h"),
    ("anomalies", "/api/anomalies?period=24h"),
    (
        "details",
        "/api/details?symbol=BTCUSDT&period=24h&limit=1000",
    ),
];
const COLD_REQUESTS: usize = 20;
const WARM_REQUESTS: usize = 200;
/// Pause between two steady-state requests.
const STEADY_PAUSE: Duration = Duration::from_millis(20);
/// 2024-05-01 00:00:00 UTC: the first snapshot.
const BASE_EPOCH: i64 = 1_714_521_600;

type Error = Box<dyn std::error::Error + Send + Sync>;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One `GET` over a fresh loopback connection; returns the status.
async fn get(addr: &str, path: &str) -> Result<u16, Error> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    let head = String::from_utf8_lossy(&raw[..raw.len().min(64)]).into_owned();
    Ok(head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

fn percentiles(mut times: Vec<Duration>) -> (Duration, Duration) {
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.95))
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn timed(addr: &str, path: &str) -> Result<Duration, Error> {
    let start = Instant::now();
    let status = get(addr, path).await?;
    if status != 200 {
        return Err(format!("{path}: HTTP {status}").into());
    }
    Ok(start.elapsed())
}

async fn measure(addr: &str, path: &str, requests: usize) -> Result<(Duration, Duration), Error> {
    let mut times = Vec::with_capacity(requests);
    for _ in 0..requests {
        times.push(timed(addr, path).await?);
    }
    Ok(percentiles(times))
}

/// Where the steady-state writer commits its batches.
#[derive(Clone)]
enum Writer {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

/// Commits one batch per second (one snapshot per symbol, one second after the previous
/// one) until `stop`; returns how many.
async fn write_batches(
    writer: Writer,
    rows: usize,
    symbols: usize,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<u64, Error> {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    let mut batch = 0u64;
    let mut sqlite = match &writer {
        Writer::Sqlite(path) => Some(
            sqlx::SqliteConnection::connect_with(
                &sqlx::sqlite::SqliteConnectOptions::new().filename(path),
            )
            .await?,
        ),
        Writer::Postgres(_) => None,
    };
    let mut postgres = match &writer {
        Writer::Postgres(url) => Some(sqlx::PgConnection::connect(url).await?),
        Writer::Sqlite(_) => None,
    };
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.wait_for(|s| *s) => return Ok(batch),
        }
        batch += 1;
        let second = BASE_EPOCH + (rows / symbols) as i64 + batch as i64;
        let price = format!("(100.0 + (i % {symbols}) + ((i * 7919 + {batch}) % 1000) / 100.0)");
        let columns = format!(
            "{price}, 100.0 + (i % {symbols}), {price} * 1.05, {price} * 0.95, 1000.0 + (i % 97), \
             100000.0 + (i % 89)"
        );
        if let Some(conn) = &mut sqlite {
            let symbol = symbol_sql(symbols, &format!("substr('000' || (i % {symbols}), -3)"));
            let sql = format!(
                "BEGIN;
                 WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last})
                 INSERT INTO projet_bdcc SELECT {symbol}, {columns},
                   strftime('%Y-%m-%d %H:%M:%S', {second}, 'unixepoch') || '.000000', {price} * 0.10, {price}
                 FROM n;
                 INSERT INTO sluice_commits VALUES ('q', 's', {batch}, strftime('%Y-%m-%d %H:%M:%f', 'now'))
                   ON CONFLICT (query_id, sink) DO UPDATE SET batch_id = excluded.batch_id,
                   committed_at = excluded.committed_at;
                 COMMIT;",
                last = symbols - 1
            );
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await?;
        }
        if let Some(conn) = &mut postgres {
            let symbol = symbol_sql(symbols, &format!("lpad((i % {symbols})::text, 3, '0')"));
            let sql = format!(
                "BEGIN;
                 INSERT INTO projet_bdcc SELECT {symbol}, {columns}, to_timestamp({second}),
                   {price} * 0.10, {price}
                 FROM generate_series(0, {last}) AS i;
                 INSERT INTO sluice_commits (query_id, sink, batch_id) VALUES ('q', 's', {batch})
                   ON CONFLICT (query_id, sink) DO UPDATE SET batch_id = excluded.batch_id,
                   committed_at = now();
                 SELECT pg_notify('sluice_batches', '{{\"table\": \"projet_bdcc\", \"batch_id\": {batch}}}');
                 COMMIT;",
                last = symbols - 1
            );
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await?;
        }
    }
}

/// p50/p95 per endpoint with the default configuration while batches are committed.
async fn steady(
    url: &str,
    writer: Writer,
    rows: usize,
    symbols: usize,
) -> Result<(Vec<(Duration, Duration)>, u64), Error> {
    let seconds = env_usize("STEADY_SECS", 20) as u64;
    let dashboard = Dashboard::bind(DashboardConfig {
        database_url: url.to_owned(),
        listen: "127.0.0.1:0".parse()?,
        ..DashboardConfig::default()
    })
    .await?;
    let addr = dashboard.local_addr().to_string();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut stopped_server = stopped.clone();
    let server = tokio::spawn(dashboard.serve(async move {
        let _ = stopped_server.wait_for(|s| *s).await;
    }));
    // The first request of each endpoint computes (inline, as a user's very first one).
    for (_, path) in ENDPOINTS {
        get(&addr, path).await?;
    }
    let writer = tokio::spawn(write_batches(writer, rows, symbols, stopped));
    let mut times = vec![Vec::new(); ENDPOINTS.len()];
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        for ((_, path), times) in ENDPOINTS.iter().zip(&mut times) {
            times.push(timed(&addr, path).await?);
            tokio::time::sleep(STEADY_PAUSE).await;
        }
    }
    stop.send_replace(true);
    let batches = writer.await??;
    server.await??;
    Ok((times.into_iter().map(percentiles).collect(), batches))
}

async fn bench(
    backend: &str,
    url: &str,
    writer: Writer,
    rows: usize,
    symbols: usize,
) -> Result<Vec<String>, Error> {
    let mut lines = Vec::new();
    let cold = Dashboard::bind(DashboardConfig {
        database_url: url.to_owned(),
        listen: "127.0.0.1:0".parse()?,
        data_ttl: Duration::ZERO,
        symbols_ttl: Duration::ZERO,
        ..DashboardConfig::default()
    })
    .await?;
    let warm = Dashboard::bind(DashboardConfig {
        database_url: url.to_owned(),
        listen: "127.0.0.1:0".parse()?,
        ..DashboardConfig::default()
    })
    .await?;
    let (cold_addr, warm_addr) = (cold.local_addr().to_string(), warm.local_addr().to_string());
    let (stop_cold, cold_stopped) = tokio::sync::oneshot::channel::<()>();
    let (stop_warm, warm_stopped) = tokio::sync::oneshot::channel::<()>();
    let cold_task = tokio::spawn(cold.serve(async {
        let _ = cold_stopped.await;
    }));
    let warm_task = tokio::spawn(warm.serve(async {
        let _ = warm_stopped.await;
    }));
    // Warm the connection pools and the database's own page cache once.
    for (_, path) in ENDPOINTS {
        get(&cold_addr, path).await?;
    }
    let mut measured = Vec::new();
    for (_, path) in ENDPOINTS {
        let cold = measure(&cold_addr, path, COLD_REQUESTS).await?;
        let warm = measure(&warm_addr, path, WARM_REQUESTS).await?;
        measured.push((cold, warm));
    }
    let _ = stop_cold.send(());
    let _ = stop_warm.send(());
    cold_task.await??;
    warm_task.await??;
    let (steady, batches) = steady(url, writer, rows, symbols).await?;
    println!("{backend}: {batches} batches committed during the steady-state run");
    let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1e3);
    for (((name, _), (cold, warm)), steady) in ENDPOINTS.iter().zip(measured).zip(steady) {
        lines.push(format!(
            "| {backend} | {name} | {} | {} | {} | {} | {} | {} |",
            ms(cold.0),
            ms(cold.1),
            ms(warm.0),
            ms(warm.1),
            ms(steady.0),
            ms(steady.1)
        ));
        println!("{}", lines.last().map_or("", String::as_str));
    }
    Ok(lines)
}

/// The symbol of row `i`: BTCUSDT, ETHUSDT, then `S002USDT`…, `padded` being the dialect's
/// zero-padded `i % symbols`.
fn symbol_sql(symbols: usize, padded: &str) -> String {
    format!(
        "CASE i % {symbols} WHEN 0 THEN 'BTCUSDT' WHEN 1 THEN 'ETHUSDT' \
         ELSE 'S' || {padded} || 'USDT' END"
    )
}

async fn sqlite_table(path: &std::path::Path, rows: usize, symbols: usize) -> Result<(), Error> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    let mut conn = sqlx::SqliteConnection::connect_with(&options).await?;
    let symbol = symbol_sql(symbols, &format!("substr('000' || (i % {symbols}), -3)"));
    let price = format!("(100.0 + (i % {symbols}) + ((i * 7919) % 1000) / 100.0)");
    let sql = format!(
        "CREATE TABLE projet_bdcc (symbol TEXT, close_price REAL, open_price REAL, high_price REAL, \
           low_price REAL, volume REAL, quote_volume REAL, timestamp_ts TEXT, spread REAL, mid_price REAL);
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last})
         INSERT INTO projet_bdcc
         SELECT {symbol}, {price}, 100.0 + (i % {symbols}), {price} * 1.05, {price} * 0.95,
                1000.0 + (i % 97), 100000.0 + (i % 89),
                strftime('%Y-%m-%d %H:%M:%S', {BASE_EPOCH} + i / {symbols}, 'unixepoch') || '.000000',
                {price} * 0.10, {price}
         FROM n;
         CREATE INDEX projet_bdcc_symbol_timestamp_ts ON projet_bdcc (symbol, timestamp_ts);
         CREATE TABLE sluice_commits (query_id TEXT NOT NULL, sink TEXT NOT NULL, batch_id INTEGER NOT NULL,
           committed_at TEXT NOT NULL, PRIMARY KEY (query_id, sink));
         ANALYZE;",
        last = rows - 1
    );
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
    conn.close().await?;
    Ok(())
}

async fn postgres_schema(
    base: &str,
    rows: usize,
    symbols: usize,
) -> Result<(String, String), Error> {
    let schema = format!("dash_latency_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(base).await?;
    let symbol = symbol_sql(symbols, &format!("lpad((i % {symbols})::text, 3, '0')"));
    let price = format!("(100.0 + (i % {symbols}) + ((i * 7919) % 1000) / 100.0)");
    let sql = format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET search_path = {schema};
         CREATE TABLE projet_bdcc (symbol text, close_price double precision, open_price double precision,
           high_price double precision, low_price double precision, volume double precision,
           quote_volume double precision, timestamp_ts timestamptz, spread double precision,
           mid_price double precision);
         CREATE INDEX projet_bdcc_symbol_timestamp_ts ON projet_bdcc (symbol, timestamp_ts);
         INSERT INTO projet_bdcc
         SELECT {symbol}, {price}, 100.0 + (i % {symbols}), {price} * 1.05, {price} * 0.95,
                1000.0 + (i % 97), 100000.0 + (i % 89), to_timestamp({BASE_EPOCH} + i / {symbols}),
                {price} * 0.10, {price}
         FROM generate_series(0, {last}::bigint) AS i;
         CREATE TABLE sluice_commits (query_id text NOT NULL, sink text NOT NULL, batch_id bigint NOT NULL,
           committed_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (query_id, sink));
         ANALYZE projet_bdcc;",
        last = rows - 1
    );
    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
    conn.close().await?;
    let separator = if base.contains('?') { '&' } else { '?' };
    Ok((
        schema.clone(),
        format!("{base}{separator}options=-c%20search_path%3D{schema}"),
    ))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let rows = env_usize("ROWS", 1_000_000);
    let symbols = env_usize("SYMBOLS", 400).max(2);
    let mut table = vec![
        format!(
            "{rows} rows, {symbols} symbols; cold: {COLD_REQUESTS} requests with no cache, warm: {WARM_REQUESTS} with the default TTLs, steady: requests in turn while a batch is committed every second"
        ),
        "| backend | endpoint | cold p50 ms | cold p95 ms | warm p50 ms | warm p95 ms | steady p50 ms | steady p95 ms |".into(),
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |".into(),
    ];

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("latency.db");
    let start = Instant::now();
    sqlite_table(&path, rows, symbols).await?;
    println!(
        "SQLite table generated in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let url = format!("sqlite://{}", path.display());
    table.extend(bench("sqlite", &url, Writer::Sqlite(path.clone()), rows, symbols).await?);

    match std::env::var("DATABASE_URL") {
        Ok(base) => {
            let start = Instant::now();
            let (schema, url) = postgres_schema(&base, rows, symbols).await?;
            println!(
                "PostgreSQL table generated in {:.1} s",
                start.elapsed().as_secs_f64()
            );
            let writer = Writer::Postgres(url.clone());
            let result = bench("postgres", &url, writer, rows, symbols).await;
            let mut conn = sqlx::PgConnection::connect(&base).await?;
            sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&mut conn)
                .await?;
            table.extend(result?);
        }
        Err(_) => println!("DATABASE_URL is not set: PostgreSQL skipped"),
    }
    println!();
    for line in table {
        println!("{line}");
    }
    Ok(())
}
