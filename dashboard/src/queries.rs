//! The dashboard's SQL over the ticker and candle tables and the mapping of its rows: table
//! existence, symbols, the newest snapshot, per-symbol aggregates, candles and history. The
//! indicators derived from these rows are in [`crate::indicators`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::cache::Kind;
use crate::db::{Arg, Val};
use crate::error::ApiError;
use crate::indicators::{self, Candle, Stats};
use crate::params::Period;
use crate::state::AppState;

/// The columns of a history row, in the order [`AppState::history`] reads them.
pub(crate) const HISTORY_COLUMNS: [&str; 9] = [
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

/// The period bounds of a request: `None` when the table is missing or empty.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// First instant included.
    pub(crate) start: DateTime<Utc>,
    /// The newest snapshot in the table.
    pub(crate) end: DateTime<Utc>,
    /// The period.
    pub(crate) period: Period,
}

impl Window {
    /// The `period` ending at `end` (the newest snapshot).
    fn ending(end: DateTime<Utc>, period: Period) -> Self {
        Self {
            start: period.start(end),
            end,
            period,
        }
    }
}

impl AppState {
    /// Whether the ticker table exists (cached).
    pub(crate) async fn ticker_exists(self: &Arc<Self>) -> Result<bool, ApiError> {
        self.exists("ticker", self.ticker_name.clone()).await
    }

    /// Whether the candles table exists (cached).
    pub(crate) async fn candles_exists(self: &Arc<Self>) -> Result<bool, ApiError> {
        self.exists("candles", self.candles_name.clone()).await
    }

    async fn exists(self: &Arc<Self>, what: &str, name: String) -> Result<bool, ApiError> {
        let value = self
            .cached(&format!("exists|{what}"), Kind::Data, move |state| {
                let name = name.clone();
                async move { Ok(Value::Bool(state.db.table_exists(&name).await?)) }
            })
            .await?;
        Ok(value.as_bool().unwrap_or(false))
    }

    /// The distinct symbols (a loose index scan on `(symbol, timestamp_ts)`), sorted.
    pub(crate) async fn symbol_list(self: &Arc<Self>) -> Result<Vec<String>, ApiError> {
        if !self.ticker_exists().await? {
            return Ok(Vec::new());
        }
        let mut value = self
            .cached("symbols", Kind::Symbols, |state| async move {
                state.compute_symbols().await
            })
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

    /// The time of the newest snapshot in the ticker table (cached), `None` if it is empty or
    /// missing. It is the max over symbols of the per-symbol max, so that it is an index probe
    /// per symbol rather than a scan.
    pub(crate) async fn latest(self: &Arc<Self>) -> Result<Option<DateTime<Utc>>, ApiError> {
        if !self.ticker_exists().await? {
            return Ok(None);
        }
        let value = self
            .cached("latest", Kind::Data, |state| async move {
                state.compute_latest().await
            })
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

    /// The window of `period` ending at the newest snapshot, `None` while there is none.
    pub(crate) async fn window(
        self: &Arc<Self>,
        period: Period,
    ) -> Result<Option<Window>, ApiError> {
        Ok(self.latest().await?.map(|end| Window::ending(end, period)))
    }

    /// Per-symbol indicators over the window, for `symbols` or (when `None`) every symbol.
    pub(crate) async fn stats(
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
                let (max_high, min_low) = (f(5), f(6));
                Some(Stats {
                    symbol,
                    rows: r.get(1).and_then(Val::i64).unwrap_or(0),
                    first_close: first,
                    last_close: last,
                    change: indicators::change(first, last),
                    pct_change: indicators::pct_change(first, last),
                    mean_price: f(4),
                    max_high,
                    min_low,
                    spread: indicators::spread(max_high, min_low),
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
    pub(crate) async fn all_stats(
        self: &Arc<Self>,
        period: Period,
    ) -> Result<(Option<Window>, Vec<Stats>), ApiError> {
        let key = format!("all_stats|{period}");
        let value = self
            .cached(&key, Kind::Data, move |state| async move {
                let Some(window) = state.window(period).await? else {
                    return Ok(json!({ "end_ms": null, "stats": [] }));
                };
                let stats = state.stats(window, None).await?;
                Ok(json!({ "end_ms": window.end.timestamp_millis(), "stats": stats }))
            })
            .await?;
        let window = value["end_ms"]
            .as_i64()
            .and_then(DateTime::from_timestamp_millis)
            .map(|end| Window::ending(end, period));
        let stats =
            serde_json::from_value(value["stats"].clone()).map_err(|_| ApiError::Internal)?;
        Ok((window, stats))
    }

    /// Up to `limit` one-minute candles of `symbol`, oldest first: from the candles table when
    /// it exists, else aggregated from the ticker table (open = first close of the minute,
    /// close = last close, high/low = max/min close, volume = sum of `volume`). Returns the
    /// candles and the table they come from.
    pub(crate) async fn candles(
        self: &Arc<Self>,
        symbol: &str,
        window: Window,
        limit: u32,
    ) -> Result<(Vec<Candle>, String), ApiError> {
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
            candle[0] = indicators::minute_start(candle[0]);
        }
        Ok((candles, self.ticker_name.clone()))
    }

    /// The newest `limit` snapshots of one symbol in the window, newest first, as
    /// [`HISTORY_COLUMNS`] (the time in ms since the Unix epoch).
    pub(crate) async fn history(
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
}

/// `$first, $first+1, …`: `count` numbered parameters.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows `[t, open, high, low, close, volume]` with no null, as candles.
fn to_candles(rows: &[Vec<Val>]) -> Vec<Candle> {
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
    fn sql_fragments() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
        assert_eq!(placeholders(1, 0), "");
        let rows = vec![
            vec![
                Val::Int(60_000),
                Val::Real(1.0),
                Val::Real(2.0),
                Val::Real(0.5),
                Val::Int(1),
                Val::Real(9.0),
            ],
            vec![
                Val::Int(0),
                Val::Null,
                Val::Real(2.0),
                Val::Real(0.5),
                Val::Real(1.5),
                Val::Real(9.0),
            ],
        ];
        assert_eq!(
            to_candles(&rows),
            [[60_000.0, 1.0, 2.0, 0.5, 1.0, 9.0]],
            "nulls dropped"
        );
    }
}
