//! How the dashboard connects and serves: its configuration and defaults.

use std::net::SocketAddr;
use std::time::Duration;

use crate::cache::DEFAULT_MAX_BYTES;

/// How the dashboard connects and serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardConfig {
    /// `postgres://…` (or `postgresql://…`) or `sqlite://path` (the sink's database); default
    /// `sqlite://data/sluice.db`, the pipelines' default database.
    pub database_url: String,
    /// Where to listen; default `127.0.0.1:8501` (loopback only).
    pub listen: SocketAddr,
    /// How often `sluice_commits` is polled and SSE keep-alives are sent; default 5 s.
    pub refresh: Duration,
    /// How long query results stay cached; default 5 s.
    pub data_ttl: Duration,
    /// How long the symbol list stays cached; default 60 s.
    pub symbols_ttl: Duration,
    /// The ticker table; default `projet_bdcc`.
    pub ticker_table: String,
    /// The one-minute candles table; default `candles_1m`.
    pub candles_table: String,
    /// The most the response cache holds, in estimated bytes; default 256 MiB. Answers larger
    /// than an eighth of it are served but not cached.
    pub cache_max_bytes: usize,
    /// How long a connection may take to send a request's headers (from when it connects or
    /// its previous response ends) before it is closed; default 10 s.
    pub header_read_timeout: Duration,
    /// The most connections served at once (each open page holds one for its live updates);
    /// further ones wait in the listen backlog. `None` (the default): half the process's
    /// open-file limit, at most 1,024.
    pub max_connections: Option<usize>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            database_url: "sqlite://data/sluice.db".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8501)),
            refresh: Duration::from_secs(5),
            data_ttl: Duration::from_secs(5),
            symbols_ttl: Duration::from_secs(60),
            ticker_table: "projet_bdcc".into(),
            candles_table: "candles_1m".into(),
            cache_max_bytes: DEFAULT_MAX_BYTES,
            header_read_timeout: Duration::from_secs(10),
            max_connections: None,
        }
    }
}
