//! The dashboard's data: SQL over the ticker and candle tables, and the indicators derived from
//! it. Every function returns the JSON body of one endpoint (see the crate documentation).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cache::Kind;
use crate::db::{Arg, Val};
use crate::error::ApiError;
use crate::params::{Params, Period};
use crate::state::AppState;

/// Symbols shown when the request names none and they are present.
pub const DEFAULT_SYMBOLS: [&str; 2] = ["BTCUSDT", "ETHUSDT"];
/// How many symbols each *Top* list holds.
pub const TOP_N: usize = 5;
/// |% change| above which a symbol can be an anomaly.
pub const ANOMALY_PCT: f64 = 5.0;
/// The volatility quantile above which a symbol can be an anomaly.
pub const ANOMALY_QUANTILE: f64 = 0.75;

/// The indicators of one symbol over a period (see the crate documentation for definitions).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// The symbol.
    pub symbol: String,
    /// Snapshots in the period.
    pub rows: i64,
    /// Close price of the first snapshot in the period (the period's "open").
    pub first_close: Option<f64>,
    /// Close price of the last snapshot in the period (the period's "close").
    pub last_close: Option<f64>,
    /// `last_close − first_close`.
    pub change: Option<f64>,
    /// `(last_close − first_close) / first_close × 100`.
    pub pct_change: Option<f64>,
    /// Mean close price.
    pub mean_price: Option<f64>,
    /// Largest `high_price`.
    pub max_high: Option<f64>,
    /// Smallest `low_price`.
    pub min_low: Option<f64>,
    /// `max_high − min_low`.
    pub spread: Option<f64>,
    /// Mean of `(high_price − low_price) / close_price` over the snapshots.
    pub volatility: Option<f64>,
    /// Sum of `volume`.
    pub volume: Option<f64>,
    /// Sum of `quote_volume`.
    pub quote_volume: Option<f64>,
    /// Time of the first snapshot (ms since the Unix epoch).
    pub first_ms: Option<i64>,
    /// Time of the last snapshot (ms since the Unix epoch).
    pub last_ms: Option<i64>,
}

/// The period bounds of a request: `None` when the table is missing or empty.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// First instant included.
    pub start: DateTime<Utc>,
    /// The newest snapshot in the table.
    pub end: DateTime<Utc>,
    /// The period.
    pub period: Period,
}

impl Window {
    fn json(window: Option<Self>, period: Period) -> Value {
        json!({
            "period": period.as_str(),
            "start_ms": window.map(|w| if w.period == Period::All { None } else { Some(w.start.timestamp_millis()) }),
            "end_ms": window.map(|w| w.end.timestamp_millis()),
        })
    }
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(base), Value::Object(extra)) = (&mut base, extra) {
        base.extend(extra);
    }
    base
}

fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl AppState {
    /// Whether the ticker table exists (cached).
    pub async fn ticker_exists(self: &Arc<Self>) -> Result<bool, ApiError> {
        self.exists("ticker", self.ticker_name.clone()).await
    }

    /// Whether the candles table exists (cached).
    pub async fn candles_exists(self: &Arc<Self>) -> Result<bool, ApiError> {
        self.exists("candles", self.candles_name.clone()).await
    }

    async fn exists(self: &Arc<Self>, what: &str, name: String) -> Result<bool, ApiError> {
        let state = self.clone();
        let compute = move || {
            let (state, name) = (state.clone(), name.clone());
            async move { Ok(Value::Bool(state.db.table_exists(&name).await?)) }
        };
        let key = format!("exists|{what}");
        let value = self
            .cache
            .get_or_compute(&key, Kind::Data, self.config.data_ttl, compute)
            .await?;
        Ok(value.as_bool().unwrap_or(false))
    }

    /// The distinct symbols (a loose index scan on `(symbol, timestamp_ts)`), sorted.
    pub async fn symbol_list(self: &Arc<Self>) -> Result<Vec<String>, ApiError> {
        if !self.ticker_exists().await? {
            return Ok(Vec::new());
        }
        let state = self.clone();
        let compute = move || {
            let state = state.clone();
            async move { state.compute_symbols().await }
        };
        let mut value = self
            .cache
            .get_or_compute("symbols", Kind::Symbols, self.config.symbols_ttl, compute)
            .await?;
        if value.as_array().is_some_and(Vec::is_empty) {
            // Don't keep an empty list for the long TTL: the first batch is on its way.
            self.cache.remove("symbols");
            value = Arc::new(Value::Array(Vec::new()));
        }
        Ok(value
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn compute_symbols(&self) -> Result<Value, ApiError> {
        let sql = format!(
            "{} SELECT sym FROM s WHERE sym IS NOT NULL",
            distinct_symbols(&self.ticker)
        );
        let rows = self.db.fetch(&sql, &[]).await?;
        let symbols: Vec<Value> = rows
            .into_iter()
            .filter_map(|r| r.into_iter().next())
            .filter_map(|v| match v {
                Val::Text(t) => Some(Value::String(t)),
                _ => None,
            })
            .collect();
        Ok(Value::Array(symbols))
    }

    /// The symbols a request is about: the ones it names, else the defaults.
    async fn requested_symbols(self: &Arc<Self>, params: &Params) -> Result<Vec<String>, ApiError> {
        if !params.symbols.is_empty() {
            return Ok(params.symbols.clone());
        }
        Ok(default_symbols(&self.symbol_list().await?))
    }

    /// The time of the newest snapshot in the ticker table (cached), `None` if it is empty or
    /// missing. It is the max over symbols of the per-symbol max, so that it is an index probe
    /// per symbol rather than a scan.
    pub async fn latest(self: &Arc<Self>) -> Result<Option<DateTime<Utc>>, ApiError> {
        if !self.ticker_exists().await? {
            return Ok(None);
        }
        let state = self.clone();
        let compute = move || {
            let state = state.clone();
            async move { state.compute_latest().await }
        };
        let value = self
            .cache
            .get_or_compute("latest", Kind::Data, self.config.data_ttl, compute)
            .await?;
        Ok(value.as_i64().and_then(DateTime::from_timestamp_millis))
    }

    async fn compute_latest(&self) -> Result<Value, ApiError> {
        let t = &self.ticker;
        let latest = self.db.epoch_ms(&format!(
            "(SELECT max(timestamp_ts) FROM {t} WHERE symbol = s.sym)"
        ));
        let sql = format!(
            "{} SELECT max({latest}) FROM s WHERE sym IS NOT NULL",
            distinct_symbols(t)
        );
        let rows = self.db.fetch(&sql, &[]).await?;
        let ms = rows.first().and_then(|r| r.first()).and_then(Val::i64);
        Ok(ms.map_or(Value::Null, Value::from))
    }

    async fn window(self: &Arc<Self>, period: Period) -> Result<Option<Window>, ApiError> {
        Ok(self.latest().await?.map(|end| Window {
            start: period.start(end),
            end,
            period,
        }))
    }

    /// Per-symbol indicators over the window, for `symbols` or (when `None`) every symbol.
    pub async fn stats(
        &self,
        window: Window,
        symbols: Option<&[String]>,
    ) -> Result<Vec<Stats>, ApiError> {
        let t = &self.ticker;
        let mut args = vec![Arg::Ts(window.start)];
        let filter = match symbols {
            Some([]) => return Ok(Vec::new()),
            Some(symbols) => {
                args.extend(symbols.iter().cloned().map(Arg::Text));
                format!("AND symbol IN ({})", placeholders(2, symbols.len()))
            }
            None => String::new(),
        };
        let first_ms = self.db.epoch_ms("a.t0");
        let last_ms = self.db.epoch_ms("a.t1");
        let sql = format!(
            "WITH a AS (
                SELECT symbol, min(timestamp_ts) AS t0, max(timestamp_ts) AS t1, count(*) AS n,
                       avg(close_price) AS mean_price, max(high_price) AS max_high,
                       min(low_price) AS min_low,
                       avg((high_price - low_price) / NULLIF(close_price, 0)) AS volatility,
                       sum(volume) AS volume, sum(quote_volume) AS quote_volume
                FROM {t} WHERE timestamp_ts >= $1 {filter} GROUP BY symbol)
             SELECT a.symbol, a.n,
                    (SELECT f.close_price FROM {t} f WHERE f.symbol = a.symbol AND f.timestamp_ts = a.t0 LIMIT 1),
                    (SELECT l.close_price FROM {t} l WHERE l.symbol = a.symbol AND l.timestamp_ts = a.t1 LIMIT 1),
                    a.mean_price, a.max_high, a.min_low, a.volatility, a.volume, a.quote_volume,
                    {first_ms}, {last_ms}
             FROM a ORDER BY a.symbol"
        );
        let rows = self.db.fetch(&sql, &args).await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let symbol = r.first()?.text()?.to_owned();
                let f = |i: usize| r.get(i).and_then(Val::f64);
                let (first, last) = (f(2), f(3));
                let change = first.zip(last).map(|(a, b)| b - a);
                let pct_change = first
                    .zip(change)
                    .filter(|(a, _)| *a != 0.0)
                    .map(|(a, c)| c / a * 100.0);
                let (max_high, min_low) = (f(5), f(6));
                Some(Stats {
                    symbol,
                    rows: r.get(1).and_then(Val::i64).unwrap_or(0),
                    first_close: first,
                    last_close: last,
                    change,
                    pct_change,
                    mean_price: f(4),
                    max_high,
                    min_low,
                    spread: max_high.zip(min_low).map(|(h, l)| h - l),
                    volatility: f(7),
                    volume: f(8),
                    quote_volume: f(9),
                    first_ms: r.get(10).and_then(Val::i64),
                    last_ms: r.get(11).and_then(Val::i64),
                })
            })
            .collect())
    }

    /// The period's window and every symbol's indicators over it (cached: shared by *Top* and
    /// *Anomalies*; the window is computed with the stats, so that a refresh uses the
    /// current one).
    async fn all_stats(
        self: &Arc<Self>,
        period: Period,
    ) -> Result<(Option<Window>, Vec<Stats>), ApiError> {
        let state = self.clone();
        let compute = move || {
            let state = state.clone();
            async move {
                let Some(window) = state.window(period).await? else {
                    return Ok(json!({ "end_ms": null, "stats": [] }));
                };
                let stats = state.stats(window, None).await?;
                Ok(json!({ "end_ms": window.end.timestamp_millis(), "stats": stats }))
            }
        };
        let key = format!("all_stats|{period}");
        let value = self
            .cache
            .get_or_compute(&key, Kind::Data, self.config.data_ttl, compute)
            .await?;
        let window = value["end_ms"]
            .as_i64()
            .and_then(DateTime::from_timestamp_millis)
            .map(|end| Window {
                start: period.start(end),
                end,
                period,
            });
        let stats =
            serde_json::from_value(value["stats"].clone()).map_err(|_| ApiError::Internal)?;
        Ok((window, stats))
    }

    /// Up to `limit` one-minute candles `[t, open, high, low, close, volume]` of `symbol`,
    /// oldest first: from the candles table when it exists, else aggregated from the ticker
    /// table (open = first close of the minute, close = last close, high/low = max/min close,
    /// volume = sum of `volume`). Returns the candles and the table they come from.
    pub async fn candles(
        self: &Arc<Self>,
        symbol: &str,
        window: Window,
        limit: u32,
    ) -> Result<(Vec<[f64; 6]>, String), ApiError> {
        let args = [
            Arg::Text(symbol.to_owned()),
            Arg::Ts(window.start),
            Arg::Int(limit.into()),
        ];
        if self.candles_exists().await? {
            let c = &self.candles;
            let start = self.db.epoch_ms("window_start");
            let sql = format!(
                "SELECT {start}, open, high, low, close, volume FROM {c}
                 WHERE symbol = $1 AND window_start >= $2
                 ORDER BY window_start DESC LIMIT $3"
            );
            let rows = self.db.fetch(&sql, &args).await?;
            let mut candles = to_candles(&rows);
            candles.reverse();
            return Ok((candles, self.candles_name.clone()));
        }
        let t = &self.ticker;
        let minute = self.db.minute("timestamp_ts");
        let first_ms = self.db.epoch_ms("m.t0");
        let sql = format!(
            "WITH m AS (
                SELECT {minute} AS k, min(timestamp_ts) AS t0, max(timestamp_ts) AS t1,
                       max(close_price) AS h, min(close_price) AS l, sum(volume) AS v
                FROM {t} WHERE symbol = $1 AND timestamp_ts >= $2
                GROUP BY {minute} ORDER BY {minute} DESC LIMIT $3)
             SELECT {first_ms},
                    (SELECT o.close_price FROM {t} o WHERE o.symbol = $1 AND o.timestamp_ts = m.t0 LIMIT 1),
                    m.h, m.l,
                    (SELECT c.close_price FROM {t} c WHERE c.symbol = $1 AND c.timestamp_ts = m.t1 LIMIT 1),
                    m.v
             FROM m ORDER BY m.k"
        );
        let rows = self.db.fetch(&sql, &args).await?;
        let mut candles = to_candles(&rows);
        for candle in &mut candles {
            candle[0] = (candle[0] / 60_000.0).floor() * 60_000.0;
        }
        Ok((candles, self.ticker_name.clone()))
    }

    /// `GET /api/symbols`.
    pub async fn symbols_json(self: &Arc<Self>) -> Result<Value, ApiError> {
        let symbols = self.symbol_list().await?;
        let defaults = default_symbols(&symbols);
        Ok(json!({ "symbols": symbols, "default": defaults }))
    }

    /// `GET /api/overview`.
    pub async fn overview_json(self: &Arc<Self>, params: &Params) -> Result<Value, ApiError> {
        let window = self.window(params.period).await?;
        let symbols = self.requested_symbols(params).await?;
        let stats = match window {
            Some(window) => self.stats(window, Some(&symbols)).await?,
            None => Vec::new(),
        };
        Ok(merge(
            Window::json(window, params.period),
            json!({ "symbols": symbols, "stats": stats }),
        ))
    }

    /// `GET /api/candles`.
    pub async fn candles_json(self: &Arc<Self>, params: &Params) -> Result<Value, ApiError> {
        let window = self.window(params.period).await?;
        let symbols = self.requested_symbols(params).await?;
        let mut series = Vec::new();
        let mut source = Value::Null;
        if let Some(window) = window {
            for symbol in &symbols {
                let (candles, from) = self.candles(symbol, window, params.limit).await?;
                source = Value::String(from);
                let closes: Vec<f64> = candles.iter().map(|c| c[4]).collect();
                series.push(json!({
                    "symbol": symbol,
                    "candles": candles,
                    "ma7": moving_average(&closes, 7),
                    "ma25": moving_average(&closes, 25),
                }));
            }
        }
        Ok(merge(
            Window::json(window, params.period),
            json!({ "source": source, "series": series }),
        ))
    }

    /// `GET /api/top`.
    pub async fn top_json(self: &Arc<Self>, params: &Params) -> Result<Value, ApiError> {
        let (window, stats) = self.all_stats(params.period).await?;
        let Some(window) = window else {
            return Ok(merge(
                Window::json(None, params.period),
                json!({ "by_volume": [], "gainers": [], "losers": [], "gainers_index": [] }),
            ));
        };
        let mut by_volume = stats.clone();
        by_volume.sort_by(|a, b| desc(a.volume, b.volume).then(a.symbol.cmp(&b.symbol)));
        by_volume.truncate(TOP_N);
        let mut ranked: Vec<Stats> = stats
            .into_iter()
            .filter(|s| s.pct_change.is_some())
            .collect();
        ranked.sort_by(|a, b| desc(a.pct_change, b.pct_change).then(a.symbol.cmp(&b.symbol)));
        let gainers: Vec<Stats> = ranked.iter().take(TOP_N).cloned().collect();
        let losers: Vec<Stats> = ranked.iter().rev().take(TOP_N).cloned().collect();
        let mut index = Vec::new();
        for gainer in &gainers {
            let (candles, _) = self.candles(&gainer.symbol, window, params.limit).await?;
            let base = candles.first().map(|c| c[4]).filter(|b| *b != 0.0);
            let points: Vec<[f64; 2]> = match base {
                Some(base) => candles
                    .iter()
                    .map(|c| [c[0], c[4] / base * 100.0])
                    .collect(),
                None => Vec::new(),
            };
            index.push(json!({ "symbol": gainer.symbol, "points": points }));
        }
        Ok(merge(
            Window::json(Some(window), params.period),
            json!({ "by_volume": by_volume, "gainers": gainers, "losers": losers, "gainers_index": index }),
        ))
    }

    /// `GET /api/anomalies`.
    pub async fn anomalies_json(self: &Arc<Self>, params: &Params) -> Result<Value, ApiError> {
        let (window, stats) = self.all_stats(params.period).await?;
        let volatilities: Vec<f64> = stats.iter().filter_map(|s| s.volatility).collect();
        let p75 = quantile(&volatilities, ANOMALY_QUANTILE);
        let mut anomalies: Vec<Stats> = stats
            .into_iter()
            .filter(|s| {
                s.pct_change.is_some_and(|p| p.abs() > ANOMALY_PCT)
                    && s.volatility.zip(p75).is_some_and(|(v, q)| v > q)
            })
            .collect();
        anomalies.sort_by(|a, b| {
            desc(a.pct_change.map(f64::abs), b.pct_change.map(f64::abs))
                .then(a.symbol.cmp(&b.symbol))
        });
        anomalies.truncate(params.limit as usize);
        Ok(merge(
            Window::json(window, params.period),
            json!({
                "threshold_pct": ANOMALY_PCT,
                "volatility_quantile": ANOMALY_QUANTILE,
                "volatility_threshold": p75,
                "anomalies": anomalies,
            }),
        ))
    }

    /// The newest `limit` snapshots of one symbol in the window, newest first:
    /// `[t, open, high, low, close, volume, quote_volume, spread, mid_price]`.
    pub async fn history(
        &self,
        symbol: &str,
        window: Window,
        limit: u32,
    ) -> Result<Vec<Vec<Value>>, ApiError> {
        let t = &self.ticker;
        let ts = self.db.epoch_ms("timestamp_ts");
        let sql = format!(
            "SELECT {ts}, open_price, high_price, low_price, close_price, volume, quote_volume,
                    spread, mid_price
             FROM {t} WHERE symbol = $1 AND timestamp_ts >= $2
             ORDER BY timestamp_ts DESC LIMIT $3"
        );
        let args = [
            Arg::Text(symbol.to_owned()),
            Arg::Ts(window.start),
            Arg::Int(limit.into()),
        ];
        let rows = self.db.fetch(&sql, &args).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .enumerate()
                    .map(|(i, v)| match (i, v) {
                        (0, v) => v.i64().map_or(Value::Null, Value::from),
                        (_, v) => v.f64().map_or(Value::Null, Value::from),
                    })
                    .collect()
            })
            .collect())
    }

    /// The one symbol a details request is about.
    async fn detail_symbol(self: &Arc<Self>, params: &Params) -> Result<Option<String>, ApiError> {
        Ok(match params.symbols.first() {
            Some(symbol) => Some(symbol.clone()),
            None => self.requested_symbols(params).await?.into_iter().next(),
        })
    }

    /// `GET /api/details`.
    pub async fn details_json(self: &Arc<Self>, params: &Params) -> Result<Value, ApiError> {
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
            Window::json(window, params.period),
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

    /// `GET /api/history.csv`: the details history as CSV (newest first).
    pub async fn history_csv(
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

/// The columns of a history row.
pub const HISTORY_COLUMNS: [&str; 9] = [
    "t",
    "open_price",
    "high_price",
    "low_price",
    "close_price",
    "volume",
    "quote_volume",
    "spread",
    "mid_price",
];

fn to_candles(rows: &[Vec<Val>]) -> Vec<[f64; 6]> {
    rows.iter()
        .filter_map(|r| {
            let mut candle = [0.0; 6];
            for (i, slot) in candle.iter_mut().enumerate() {
                *slot = r.get(i).and_then(Val::f64)?;
            }
            Some(candle)
        })
        .collect()
}

/// Descending order with `None` last.
fn desc(a: Option<f64>, b: Option<f64>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => b.total_cmp(&a),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

/// BTCUSDT and ETHUSDT when present, else the first two symbols.
pub fn default_symbols(symbols: &[String]) -> Vec<String> {
    let present: Vec<String> = DEFAULT_SYMBOLS
        .iter()
        .filter(|d| symbols.iter().any(|s| s == *d))
        .map(|d| (*d).to_owned())
        .collect();
    if present.is_empty() {
        symbols.iter().take(2).cloned().collect()
    } else {
        present
    }
}

/// Simple moving average over `n` values (`None` until `n` values are seen, or where one of
/// them is not finite).
pub fn moving_average(values: &[f64], n: usize) -> Vec<Option<f64>> {
    (0..values.len())
        .map(|i| {
            if i + 1 < n {
                return None;
            }
            let sum: f64 = values[i + 1 - n..=i].iter().sum();
            Some(sum / n as f64).filter(|v| v.is_finite())
        })
        .collect()
}

/// The `q` quantile with linear interpolation between order statistics (pandas' default).
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let position = (sorted.len() - 1) as f64 * q;
    let (lo, hi) = (position.floor() as usize, position.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (position - lo as f64))
}

/// `WITH RECURSIVE s(sym)`: the distinct symbols of `table`, one index probe each (a loose
/// index scan), instead of a scan of every row.
fn distinct_symbols(table: &str) -> String {
    format!(
        "WITH RECURSIVE s(sym) AS (
            SELECT min(symbol) FROM {table}
            UNION ALL
            SELECT (SELECT min(symbol) FROM {table} WHERE symbol > s.sym) FROM s
            WHERE s.sym IS NOT NULL)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indicators() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.75), Some(3.25));
        assert_eq!(quantile(&[], 0.75), None);
        assert_eq!(
            moving_average(&[1.0, 2.0, 3.0, 4.0], 3),
            [None, None, Some(2.0), Some(3.0)]
        );
        let s = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            default_symbols(&s(&["AAA", "ETHUSDT", "ZZZ"])),
            s(&["ETHUSDT"])
        );
        assert_eq!(
            default_symbols(&s(&["AAA", "BBB", "C"])),
            s(&["AAA", "BBB"])
        );
    }
}
