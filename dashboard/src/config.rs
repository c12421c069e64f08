//! How the dashboard connects and serves: its configuration and defaults.

use std::net::SocketAddr;
use std::time::Duration;

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
        }
    }
}
