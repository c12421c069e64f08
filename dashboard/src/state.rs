//! The state shared by every request: configuration, pool, cache and live status.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::DashboardConfig;
use crate::cache::Cache;
use crate::db::Db;
use crate::error::DashboardError;
use crate::params::{is_valid_table_name, quote_table_name};

/// What the live watcher last saw of the sink's commits (sent to browsers over SSE).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Live {
    /// Increases by one each time a new commit is observed.
    pub seq: u64,
    /// `max(committed_at)` of `sluice_commits` (ms since the Unix epoch), if any.
    pub last_commit_ms: Option<i64>,
    /// When the server observed the latest commit (ms since the Unix epoch).
    pub observed_ms: Option<i64>,
    /// The payload of the latest `sluice_batches` notification (PostgreSQL only).
    pub batch: Option<Value>,
    /// Whether the last poll reached the database.
    pub connected: bool,
}

/// The state behind [`crate::router`]: build it with [`AppState::new`].
#[derive(Debug)]
pub struct AppState {
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
    pub fn new(config: DashboardConfig) -> Result<Arc<Self>, DashboardError> {
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
        let db = Db::connect_lazy(&config.database_url)?;
        Ok(Arc::new(Self {
            ticker: quote_table_name(&config.ticker_table),
            ticker_name: config.ticker_table.clone(),
            candles: quote_table_name(&config.candles_table),
            candles_name: config.candles_table.clone(),
            config,
            db,
            cache: Cache::new(),
            live: watch::Sender::new(Live::default()),
            shutdown: watch::Sender::new(false),
        }))
    }

    /// The configuration.
    pub fn config(&self) -> &DashboardConfig {
        &self.config
    }

    /// The shared cache.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// The latest live status.
    pub fn live(&self) -> Live {
        self.live.borrow().clone()
    }
}
