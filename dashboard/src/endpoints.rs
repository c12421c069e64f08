//! The bodies of the data endpoints (see the crate documentation for each one's fields): the
//! symbols a request is about, the queries of [`crate::queries`] and the indicators of
//! [`crate::indicators`], assembled as JSON (or CSV), and cached per endpoint and parameters.
//! Both the HTTP routes and the live watcher (which warms them) go through here.

use std::sync::Arc;

use chrono::DateTime;
use serde_json::{Value, json};

use crate::cache::Kind;
use crate::error::ApiError;
use crate::indicators::{self, ANOMALY_PCT, ANOMALY_QUANTILE, moving_average};
use crate::params::{Params, Period, default_symbols};
use crate::queries::{HISTORY_COLUMNS, Window};
use crate::state::AppState;

/// The cached data endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `GET /api/overview`.
    Overview,
    /// `GET /api/candles`.
    Candles,
    /// `GET /api/top`.
    Top,
    /// `GET /api/anomalies`.
    Anomalies,
    /// `GET /api/details`.
    Details,
}

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Self::Overview => "overview",
            Self::Candles => "candles",
            Self::Top => "top",
            Self::Anomalies => "anomalies",
            Self::Details => "details",
        }
    }

    async fn compute(self, state: &Arc<AppState>, params: &Params) -> Result<Value, ApiError> {
        match self {
            Self::Overview => state.overview_json(params).await,
            Self::Candles => state.candles_json(params).await,
            Self::Top => state.top_json(params).await,
            Self::Anomalies => state.anomalies_json(params).await,
            Self::Details => state.details_json(params).await,
        }
    }
}

/// The (cached) body of a data endpoint.
pub(crate) async fn cached_json(
    state: &Arc<AppState>,
    endpoint: Endpoint,
    mut params: Params,
) -> Result<Arc<Value>, ApiError> {
    if matches!(endpoint, Endpoint::Top | Endpoint::Anomalies) {
        // They are about every symbol: one entry whatever the page's selection.
        params.symbols.clear();
    }
    let key = format!("{}|{}", endpoint.name(), params.key());
    state
        .cached(&key, Kind::Data, move |state| {
            let params = params.clone();
            async move { endpoint.compute(&state, &params).await }
        })
        .await
}

/// The fields every data response carries: `period`, `start_ms` (`null` for `all`) and
/// `end_ms` (both `null` without a window).
fn window_json(window: Option<Window>, period: Period) -> Value {
    json!({
        "period": period.as_str(),
        "start_ms": window.map(|w| if w.period == Period::All { None } else { Some(w.start.timestamp_millis()) }),
        "end_ms": window.map(|w| w.end.timestamp_millis()),
    })
}

/// The fields of `extra` added to the object `base`.
fn merge(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(base), Value::Object(extra)) = (&mut base, extra) {
        base.extend(extra);
    }
    base
}

impl AppState {
    /// The symbols a request is about: the ones it names, else the defaults.
    async fn requested_symbols(self: &Arc<Self>, params: &Params) -> Result<Vec<String>, ApiError> {
        if !params.symbols.is_empty() {
            return Ok(params.symbols.clone());
        }
        Ok(default_symbols(&self.symbol_list().await?))
    }

    /// The one symbol a details request is about.
    async fn detail_symbol(self: &Arc<Self>, params: &Params) -> Result<Option<String>, ApiError> {
        Ok(match params.symbols.first() {
            Some(symbol) => Some(symbol.clone()),
            None => self.requested_symbols(params).await?.into_iter().next(),
        })
    }

    /// `GET /api/symbols`.
    pub(crate) async fn symbols_json(self: &Arc<Self>) -> Result<Value, ApiError> {
        let symbols = self.symbol_list().await?;
        let defaults = default_symbols(&symbols);
        Ok(json!({ "symbols": symbols, "default": defaults }))
    }

    /// `GET /api/overview`.
    async fn overview_json(self: &Arc<Self>, params: &Params) -> Result<Value, ApiError> {
        let window = self.window(params.period).await?;
        let symbols = self.requested_symbols(params).await?;
        let stats = match window {
            Some(window) => self.stats(window, Some(&symbols)).await?,
            None => Vec::new(),
        };
        Ok(merge(
            window_json(window, params.period),
            json!({ "symbols": symbols, "stats": stats }),
        ))
    }

    /// `GET /api/candles`.
    async fn candles_json(self: &Arc<Self>, params: &Params) -> Result<Value, ApiError> {
        let window = self.window(params.period).await?;
        let symbols = self.requested_symbols(params).await?;
        let mut series = Vec::new();
        let mut source = Value::Null;
        if let Some(window) = window {
            for symbol in &symbols {
                let (candles, from) = self.candles(symbol, window, params.limit).await?;
                source = Value::String(from);
                let closes = indicators::closes(&candles);
                series.push(json!({
                    "symbol": symbol,
                    "candles": candles,
                    "ma7": moving_average(&closes, 7),
                    "ma25": moving_average(&closes, 25),
                }));
            }
        }
        Ok(merge(
            window_json(window, params.period),
            json!({ "source": source, "series": series }),
        ))
    }

    /// `GET /api/top`.
    async fn top_json(self: &Arc<Self>, params: &Params) -> Result<Value, ApiError> {
        let (window, stats) = self.all_stats(params.period).await?;
        let Some(window) = window else {
            return Ok(merge(
                window_json(None, params.period),
                json!({ "by_volume": [], "gainers": [], "losers": [], "gainers_index": [] }),
            ));
        };
        let top = indicators::top(stats);
        let mut index = Vec::new();
        for gainer in &top.gainers {
            let (candles, _) = self.candles(&gainer.symbol, window, params.limit).await?;
            let points = indicators::price_index(&candles);
            index.push(json!({ "symbol": gainer.symbol, "points": points }));
        }
        Ok(merge(
            window_json(Some(window), params.period),
            json!({ "by_volume": top.by_volume, "gainers": top.gainers, "losers": top.losers, "gainers_index": index }),
        ))
    }

    /// `GET /api/anomalies`.
    async fn anomalies_json(self: &Arc<Self>, params: &Params) -> Result<Value, ApiError> {
        let (window, stats) = self.all_stats(params.period).await?;
        let found = indicators::anomalies(stats, params.limit as usize);
        Ok(merge(
            window_json(window, params.period),
            json!({
                "threshold_pct": ANOMALY_PCT,
                "volatility_quantile": ANOMALY_QUANTILE,
                "volatility_threshold": found.volatility_threshold,
                "anomalies": found.anomalies,
            }),
        ))
    }

    /// `GET /api/details`.
    async fn details_json(self: &Arc<Self>, params: &Params) -> Result<Value, ApiError> {
        let window = self.window(params.period).await?;
        let symbol = self.detail_symbol(params).await?;
        let (summary, history) = match (window, &symbol) {
            (Some(window), Some(symbol)) => {
                let stats = self
                    .stats(window, Some(std::slice::from_ref(symbol)))
                    .await?;
                (
                    stats.into_iter().next(),
                    self.history(symbol, window, params.limit).await?,
                )
            }
            _ => (None, Vec::new()),
        };
        let closes: Vec<f64> = history
            .iter()
            .rev()
            .map(|r| r.get(4).and_then(Value::as_f64).unwrap_or(f64::NAN))
            .collect();
        Ok(merge(
            window_json(window, params.period),
            json!({
                "symbol": symbol,
                "summary": summary,
                "columns": HISTORY_COLUMNS,
                "history": history,
                "ma7": moving_average(&closes, 7),
                "ma25": moving_average(&closes, 25),
            }),
        ))
    }

    /// `GET /api/history.csv`: the details history as CSV (newest first), with the symbol it
    /// is about (for the file name).
    pub(crate) async fn history_csv(
        self: &Arc<Self>,
        params: &Params,
    ) -> Result<(String, String), ApiError> {
        let window = self.window(params.period).await?;
        let symbol = self.detail_symbol(params).await?;
        let mut csv = String::from("timestamp,");
        csv.push_str(&HISTORY_COLUMNS[1..].join(","));
        csv.push('\n');
        if let (Some(window), Some(symbol)) = (window, &symbol) {
            for row in self.history(symbol, window, params.limit).await? {
                let mut cells = Vec::with_capacity(row.len());
                for (i, v) in row.iter().enumerate() {
                    cells.push(match (i, v) {
                        (0, v) => v
                            .as_i64()
                            .and_then(DateTime::from_timestamp_millis)
                            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
                            .unwrap_or_default(),
                        (_, Value::Null) => String::new(),
                        (_, v) => v.to_string(),
                    });
                }
                csv.push_str(&cells.join(","));
                csv.push('\n');
            }
        }
        Ok((symbol.unwrap_or_else(|| "history".into()), csv))
    }
}
