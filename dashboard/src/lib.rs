//! The Sluice live market dashboard: an [axum] server over the tables the pipeline's relational
//! sink writes (PostgreSQL or SQLite, chosen by URL), with a single-page UI whose scripts,
//! styles and charts are all served by the binary (it works offline).
//!
//! ```no_run
//! # async fn run() -> Result<(), sluice_dashboard::DashboardError> {
//! use sluice_dashboard::{Dashboard, DashboardConfig};
//! let config = DashboardConfig {
//!     database_url: "sqlite://data/sluice.db".into(),
//!     ..DashboardConfig::default()
//! };
//! let dashboard = Dashboard::bind(config).await?;
//! println!("dashboard on http://{}", dashboard.local_addr());
//! dashboard.serve(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! # Tables read
//!
//! * the ticker table (default `projet_bdcc`): `symbol`, `close_price`, `open_price`,
//!   `high_price`, `low_price`, `volume`, `quote_volume`, `timestamp_ts`, `spread`,
//!   `mid_price`: one Binance 24 h mini-ticker snapshot per symbol per second. The queries use
//!   the sink's index on `(symbol, timestamp_ts)`, and need no other index.
//! * the candles table (default `candles_1m`, optional): `symbol`, `window_start`, `open`,
//!   `high`, `low`, `close`, `volume`: used for the *Charts* tab when it exists.
//! * `sluice_commits`: polled for the time of the latest commit (optional).
//!
//! Table names come only from [`DashboardConfig`] and must be identifiers (`name` or
//! `schema.name`); every value from a request is validated and bound as a parameter.
//!
//! # Periods and indicators
//!
//! A period (`1h`, `24h`, `7d`, `30d`, `all`) ends at the **newest snapshot in the ticker
//! table** (≈ now while the pipeline runs; it keeps a replay of older data visible) and starts
//! that long before it (`all`: no lower bound). For each symbol, over the snapshots in the
//! period (computed in SQL, not limited by `limit`):
//!
//! | field | definition |
//! | --- | --- |
//! | `first_close` | `close_price` of the first snapshot in the period: the period's *open* |
//! | `last_close` | `close_price` of the last snapshot: the period's *close*, the "last close" |
//! | `change` | `last_close − first_close` |
//! | `pct_change` | `(last_close − first_close) / first_close × 100` |
//! | `mean_price` | mean of `close_price` |
//! | `max_high`, `min_low` | max of `high_price`, min of `low_price` (24 h rolling values) |
//! | `spread` | `max_high − min_low` |
//! | `volatility` | mean of the relative volatility `(high_price − low_price) / close_price` |
//! | `volume`, `quote_volume` | sums of `volume` and `quote_volume` over the snapshots |
//!
//! *Top*: the 5 largest `volume`, the 5 largest and the 5 smallest `pct_change`; the gainers'
//! price index is each one-minute close divided by the first close shown, × 100.
//! *Anomalies*: symbols with `|pct_change| > 5` and `volatility` above the 75th percentile
//! (linear interpolation, as pandas' `quantile`) of all symbols' `volatility` in the period.
//! Candles are one-minute: from the candles table when it exists, else aggregated from the
//! ticker table (open/close = first/last `close_price` of the minute, high/low = max/min
//! `close_price`, volume = sum of `volume`, as the `candles_1m` query computes them). MA7 and
//! MA25 are simple moving averages of the last 7 and 25 closes (`null` before that many).
//!
//! # HTTP endpoints
//!
//! Every `/api` endpoint answers JSON (`application/json`) except the CSV download and the
//! event stream; errors are `{"error": "<message>"}` with status 400 (bad parameter), 404,
//! 503 (database unreachable) or 500 (details only in the server log). Parameters:
//! `symbols=A,B` (or repeated; 1–32 chars from `A-Z a-z 0-9 _ - .`, at most 50; default
//! BTCUSDT and ETHUSDT when present, else the first two symbols), `period=1h|24h|7d|30d|all`
//! (default `24h`), `limit=1..10000` (default 1000; rows or candles per symbol). Times are ms
//! since the Unix epoch; data responses carry `period`, `start_ms` (`null` for `all`) and
//! `end_ms`, all `null`/empty while the tables do not exist.
//!
//! | endpoint | answer |
//! | --- | --- |
//! | `GET /` | the page (with `/assets/app.js`, `/assets/charts.js`, `/assets/style.css`, and the vendored charting library `/assets/vendor/lightweight-charts.js`) |
//! | `GET /api/status` | `state` (`live`, `waiting for data`, `waiting for the database`), `backend`, `connected`, `tables.{ticker,candles}`, `latest_ms`, `last_commit_ms`, `observed_ms`, `seq`, `refresh_ms`, `server_ms`, `cache` ([`CacheStats`]) |
//! | `GET /api/symbols` | `symbols` (sorted distinct symbols), `default` |
//! | `GET /api/overview?symbols&period` | `symbols`, `stats`: one object per symbol with rows (fields above) |
//! | `GET /api/candles?symbols&period&limit` | `source` (table name), `series`: `{symbol, candles: [[t, open, high, low, close, volume]…], ma7, ma25}` oldest first, the newest `limit` minutes |
//! | `GET /api/top?period&limit` | `by_volume`, `gainers`, `losers` (stats objects), `gainers_index`: `{symbol, points: [[t, index]…]}` |
//! | `GET /api/anomalies?period&limit` | `threshold_pct`, `volatility_quantile`, `volatility_threshold`, `anomalies` (stats, by \|pct_change\| descending) |
//! | `GET /api/details?symbol&period&limit` | `symbol`, `summary` (stats or `null`), `columns`, `history` (newest first: `[t, open_price, high_price, low_price, close_price, volume, quote_volume, spread, mid_price]`), `ma7`, `ma25` (of the close, oldest first) |
//! | `GET /api/history.csv?symbol&period&limit` | the same history as CSV (`text/csv`, attachment) |
//! | `GET /api/events` | Server-Sent Events: `hello`, then `batch` whenever a commit is observed, with `{seq, last_commit_ms, observed_ms, batch, connected}`; keep-alive comments every `refresh` |
//!
//! # Cache and live updates
//!
//! Responses are cached on the server, shared by all browsers, like Streamlit's
//! `st.cache_data` but **stale-while-revalidate**, and kept current by the commits rather than
//! by the clock alone:
//!
//! * a result computed since the latest observed commit and younger than
//!   [`DashboardConfig::data_ttl`] (the symbol list: [`DashboardConfig::symbols_ttl`]) is
//!   served as is;
//! * a *stale* one (its TTL passed, or one commit observed since its computation started) is
//!   served at once while **one** background computation replaces it: concurrent requests
//!   share it and never start another;
//! * a key never computed, or two commits behind, is computed while the request waits (a
//!   user's very first request of a period, or a key unused for [`KEEP_WARM`]).
//!
//! A background watcher polls `sluice_commits` every [`DashboardConfig::refresh`] and, on
//! PostgreSQL, also `LISTEN`s on `sluice_batches`. When it observes a commit it recomputes, in
//! the background, every result used in the last [`KEEP_WARM`] (any endpoint, period and
//! parameters) plus *Top* and *Anomalies* over the default period (computed at startup too),
//! and only then pushes the commit to the pages over `/api/events` (after at most 10 s),
//! which reload their current tab from the already-current cache. A refresh reads nothing
//! stale itself (its nested lookups, such as the newest snapshot time, wait for current
//! values), and a failed one drops the entry, so that the next request reports the error.
//!
//! **Staleness bound.** A response is never more than one refresh behind: it reflects every
//! commit observed before the start of the previous computation of its key, and whenever it
//! is outdated that key's one refresh is already running. So a commit is visible in every
//! response at most one heavy computation *D* after it is observed (2 *D* if it lands while a
//! refresh runs), pages are only told once it is, and, with no commit, the TTL bounds the age
//! of what a request triggers. Without commits the tables do not change, so a stale entry
//! differs only if something other than the sink writes them. [`DashboardConfig::data_ttl`]
//! zero disables the cache (every request queries the database).
//!
//! **Memory.** The cache holds at most [`DashboardConfig::cache_max_bytes`] (256 MiB by
//! default) of estimated value size ([`value_bytes`]); the least recently used entries go
//! first, and an answer larger than an eighth of it is served to the requests that waited for
//! it but not stored.
//!
//! `GET /api/status` reports the cache's counters (`cache`: `entries`, `bytes`, `oversized`,
//! `computations`, `stale_served`, `waited`).
//!
//! # Connections
//!
//! The server ([`http::serve`]) disconnects a client that takes longer than
//! [`DashboardConfig::header_read_timeout`] (10 s) to send a request's headers, and serves at
//! most [`DashboardConfig::max_connections`] at once (half the open-file limit, at most
//! 1,024, by default; each open page holds one for its live updates): idle or half-open
//! connections cannot make it unreachable.
//!
//! # Latency
//!
//! ```text
//! CARGO_TARGET_DIR=$HOME/.cache/sluice/target-dash-release DATABASE_URL=postgres://… \
//!   cargo run --release -p sluice-dashboard --example api_latency
//! ```
//!
//! 1,000,000 rows, 400 symbols (PostgreSQL too when `DATABASE_URL` is set), on the 2-core
//! dev machine; ms per request over loopback HTTP. *cold*: no cache (20 requests each, every
//! one queries the database); *warm*: default TTLs, no commit (200 each); *steady*: what users
//! see while the pipeline runs: default configuration while a batch of 400 snapshots is
//! committed every second (21 batches in 20 s; the endpoints requested in turn, ≈ 130 requests
//! each; SQLite observes commits by its 5 s poll, PostgreSQL by `NOTIFY`).
//!
//! | backend | endpoint | cold p50 ms | cold p95 ms | warm p50 ms | warm p95 ms | steady p50 ms | steady p95 ms |
//! | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |
//! | sqlite | status | 1.51 | 2.45 | 0.11 | 0.15 | 0.47 | 0.54 |
//! | sqlite | symbols | 2.50 | 4.28 | 0.14 | 0.32 | 0.57 | 0.68 |
//! | sqlite | overview | 7.95 | 10.76 | 0.11 | 0.16 | 0.51 | 0.61 |
//! | sqlite | candles | 9.91 | 11.05 | 0.13 | 0.18 | 0.52 | 0.61 |
//! | sqlite | top | 755.09 | 820.24 | 0.16 | 0.23 | 0.57 | 0.68 |
//! | sqlite | anomalies | 832.13 | 930.07 | 0.11 | 0.33 | 0.47 | 0.56 |
//! | sqlite | details | 15.52 | 22.58 | 0.63 | 0.73 | 0.99 | 1.16 |
//! | postgres | status | 7.90 | 8.37 | 0.11 | 0.15 | 0.47 | 0.69 |
//! | postgres | symbols | 4.86 | 5.35 | 0.14 | 0.23 | 0.58 | 0.74 |
//! | postgres | overview | 14.08 | 17.00 | 0.11 | 0.16 | 0.51 | 0.66 |
//! | postgres | candles | 20.86 | 24.68 | 0.19 | 0.25 | 0.51 | 0.67 |
//! | postgres | top | 206.88 | 233.58 | 0.22 | 6.16 | 0.55 | 0.79 |
//! | postgres | anomalies | 173.45 | 187.57 | 0.10 | 0.14 | 0.46 | 0.57 |
//! | postgres | details | 14.63 | 19.85 | 0.63 | 0.69 | 0.99 | 1.18 |
//!
//! Only a user's very first request of a period pays the cold *Top*/*Anomalies* cost (≈ 0.8 s
//! on SQLite, ≈ 0.2 s on PostgreSQL: they aggregate every row of the period for every
//! symbol), and not even that for the default period, computed at startup; afterwards they are
//! recomputed in the background after each commit.

mod api;
mod cache;
mod config;
mod db;
mod endpoints;
mod error;
pub mod http;
mod indicators;
mod live;
mod params;
mod queries;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use api::router;
pub use cache::{Cache, CacheStats, DEFAULT_MAX_BYTES, KEEP_WARM, Kind as CacheKind, value_bytes};
pub use config::DashboardConfig;
pub use db::SQLITE_TIMESTAMP_FORMAT;
pub use error::{ApiError, DashboardError};
use state::AppState;

/// A dashboard bound to its address, ready to [`serve`](Dashboard::serve).
#[derive(Debug)]
pub struct Dashboard {
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    addr: SocketAddr,
}

impl Dashboard {
    /// Validates the configuration, creates the (lazy) connection pool and binds the listener.
    ///
    /// The database need not be reachable yet, nor the SQLite file exist: the page shows
    /// "waiting" and connections are retried on every request and poll.
    pub async fn bind(config: DashboardConfig) -> Result<Dashboard, DashboardError> {
        let state = AppState::new(config)?;
        let listener = tokio::net::TcpListener::bind(state.config.listen).await?;
        let addr = listener.local_addr()?;
        Ok(Dashboard {
            listener,
            state,
            addr,
        })
    }

    /// The address bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then closes the event streams and the pool.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DashboardError> {
        let state = self.state;
        let watcher = tokio::spawn(live::watch_commits(state.clone()));
        let stop = state.shutdown.clone();
        let signal = async move {
            shutdown.await;
            stop.send_replace(true);
        };
        tracing::info!(addr = %self.addr, backend = state.db.backend(), "dashboard: serving");
        let limits = http::HttpLimits::new(
            state.config.header_read_timeout,
            state.config.max_connections,
        );
        http::serve(self.listener, router(state.clone()), limits, signal).await;
        state.shutdown.send_replace(true);
        let _ = watcher.await;
        state.db.close().await;
        Ok(())
    }
}
