//! The state shared by every request: configuration, pool, cache and live status.

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::cache::{Cache, Kind};
use crate::config::DashboardConfig;
use crate::db::Db;
use crate::error::{ApiError, DashboardError};
use crate::params::{is_valid_table_name, quote_table_name};

/// What the live watcher last saw of the sink's commits (sent to browsers over SSE).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub(crate) struct Live {
    /// Increases by one each time a new commit is observed.
    pub(crate) seq: u64,
    /// `max(committed_at)` of `sluice_commits` (ms since the Unix epoch), if any.
    pub(crate) last_commit_ms: Option<i64>,
    /// When the server observed the latest commit (ms since the Unix epoch).
    pub(crate) observed_ms: Option<i64>,
    /// The payload of the latest `sluice_batches` notification (PostgreSQL only).
    pub(crate) batch: Option<Value>,
    /// Whether the last poll reached the database.
    pub(crate) connected: bool,
}

/// The state behind the HTTP routes and the live watcher: build it with [`AppState::new`].
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) config: DashboardConfig,
    pub(crate) db: Db,
    /// Quoted ticker table name, for SQL.
    pub(crate) ticker: String,
    /// Ticker table name as configured.
    pub(crate) ticker_name: String,
    /// Quoted candles table name, for SQL.
    pub(crate) candles: String,
    /// Candles table name as configured.
    pub(crate) candles_name: String,
    pub(crate) cache: Cache,
    pub(crate) live: watch::Sender<Live>,
    pub(crate) shutdown: watch::Sender<bool>,
}

impl AppState {
    /// Validates the configuration and creates a lazy connection pool (nothing is connected
    /// yet: the database or its file may appear later).
    pub(crate) fn new(config: DashboardConfig) -> Result<Arc<Self>, DashboardError> {
        for (what, name) in [
            ("ticker_table", &config.ticker_table),
            ("candles_table", &config.candles_table),
        ] {
            if !is_valid_table_name(name) {
                return Err(DashboardError::Config(format!(
                    "{what} must be an identifier or schema.identifier ([A-Za-z_][A-Za-z0-9_]*)"
                )));
            }
        }
        if config.refresh.is_zero() {
            return Err(DashboardError::Config("refresh must be positive".into()));
        }
        if config.header_read_timeout.is_zero() {
            return Err(DashboardError::Config(
                "header_read_timeout must be positive".into(),
            ));
        }
        if config.max_connections == Some(0) {
            return Err(DashboardError::Config(
                "max_connections must be at least 1".into(),
            ));
        }
        let db = Db::connect_lazy(&config.database_url)?;
        let cache = Cache::new(config.cache_max_bytes);
        Ok(Arc::new(Self {
            ticker: quote_table_name(&config.ticker_table),
            ticker_name: config.ticker_table.clone(),
            candles: quote_table_name(&config.candles_table),
            candles_name: config.candles_table.clone(),
            config,
            db,
            cache,
            live: watch::Sender::new(Live::default()),
            shutdown: watch::Sender::new(false),
        }))
    }

    /// The latest live status.
    pub(crate) fn live(&self) -> Live {
        self.live.borrow().clone()
    }

    /// The cached value of `key`, computed by `compute` over this state: the cache keeps the
    /// recipe to recompute it after commits. The TTL is the configured one for its `kind`.
    pub(crate) async fn cached<F, Fut>(
        self: &Arc<Self>,
        key: &str,
        kind: Kind,
        compute: F,
    ) -> Result<Arc<Value>, ApiError>
    where
        F: Fn(Arc<Self>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, ApiError>> + Send + 'static,
    {
        let ttl = match kind {
            Kind::Data => self.config.data_ttl,
            Kind::Symbols => self.config.symbols_ttl,
        };
        let state = self.clone();
        self.cache
            .get_or_compute(key, kind, ttl, move || compute(state.clone()))
            .await
    }
}
