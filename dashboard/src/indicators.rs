//! The market indicators, as pure functions over values already read from the database:
//! variation and % change, spread, the *Top* lists and the gainers' price index, the
//! anomalies, moving averages and quantiles (see the crate documentation for definitions).
//!
//! The per-snapshot aggregates (means, sums, extremes and the mean relative volatility
//! `(high_price − low_price) / close_price`) are computed in SQL, so that no row leaves the
//! database; everything derived from them is here, testable without a database.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// How many symbols each *Top* list holds.
pub(crate) const TOP_N: usize = 5;
/// |% change| above which a symbol can be an anomaly.
pub(crate) const ANOMALY_PCT: f64 = 5.0;
/// The volatility quantile above which a symbol can be an anomaly.
pub(crate) const ANOMALY_QUANTILE: f64 = 0.75;

/// A one-minute candle: `[t (ms since the Unix epoch), open, high, low, close, volume]`.
pub(crate) type Candle = [f64; 6];
/// The index of the close in a [`Candle`].
const CLOSE: usize = 4;

/// The indicators of one symbol over a period (see the crate documentation for definitions).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Stats {
    /// The symbol.
    pub(crate) symbol: String,
    /// Snapshots in the period.
    pub(crate) rows: i64,
    /// Close price of the first snapshot in the period (the period's "open").
    pub(crate) first_close: Option<f64>,
    /// Close price of the last snapshot in the period (the period's "close").
    pub(crate) last_close: Option<f64>,
    /// `last_close − first_close`.
    pub(crate) change: Option<f64>,
    /// `(last_close − first_close) / first_close × 100`.
    pub(crate) pct_change: Option<f64>,
    /// Mean close price.
    pub(crate) mean_price: Option<f64>,
    /// Largest `high_price`.
    pub(crate) max_high: Option<f64>,
    /// Smallest `low_price`.
    pub(crate) min_low: Option<f64>,
    /// `max_high − min_low`.
    pub(crate) spread: Option<f64>,
    /// Mean of `(high_price − low_price) / close_price` over the snapshots.
    pub(crate) volatility: Option<f64>,
    /// Sum of `volume`.
    pub(crate) volume: Option<f64>,
    /// Sum of `quote_volume`.
    pub(crate) quote_volume: Option<f64>,
    /// Time of the first snapshot (ms since the Unix epoch).
    pub(crate) first_ms: Option<i64>,
    /// Time of the last snapshot (ms since the Unix epoch).
    pub(crate) last_ms: Option<i64>,
}

/// The variation over a period: `last − first`.
pub(crate) fn change(first: Option<f64>, last: Option<f64>) -> Option<f64> {
    first.zip(last).map(|(first, last)| last - first)
}

/// The variation in %: `(last − first) / first × 100`, `None` when `first` is zero.
pub(crate) fn pct_change(first: Option<f64>, last: Option<f64>) -> Option<f64> {
    first
        .zip(change(first, last))
        .filter(|(first, _)| *first != 0.0)
        .map(|(first, change)| change / first * 100.0)
}

/// The range of the period: `max_high − min_low`.
pub(crate) fn spread(max_high: Option<f64>, min_low: Option<f64>) -> Option<f64> {
    max_high.zip(min_low).map(|(high, low)| high - low)
}

/// The *Top* lists of a period.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Top {
    /// The [`TOP_N`] largest volumes.
    pub(crate) by_volume: Vec<Stats>,
    /// The [`TOP_N`] largest % changes, largest first.
    pub(crate) gainers: Vec<Stats>,
    /// The [`TOP_N`] smallest % changes, smallest first.
    pub(crate) losers: Vec<Stats>,
}

/// Ranks every symbol's indicators into the *Top* lists (ties by symbol; a symbol without a %
/// change is neither a gainer nor a loser).
pub(crate) fn top(stats: Vec<Stats>) -> Top {
    let mut by_volume = stats.clone();
    by_volume.sort_by(|a, b| desc(a.volume, b.volume).then(a.symbol.cmp(&b.symbol)));
    by_volume.truncate(TOP_N);
    let mut ranked: Vec<Stats> = stats
        .into_iter()
        .filter(|s| s.pct_change.is_some())
        .collect();
    ranked.sort_by(|a, b| desc(a.pct_change, b.pct_change).then(a.symbol.cmp(&b.symbol)));
    let gainers = ranked.iter().take(TOP_N).cloned().collect();
    let losers = ranked.iter().rev().take(TOP_N).cloned().collect();
    Top {
        by_volume,
        gainers,
        losers,
    }
}

/// The price index of a series of candles: `[t, close / first close × 100]` (empty when the
/// first close is zero or there is no candle).
pub(crate) fn price_index(candles: &[Candle]) -> Vec<[f64; 2]> {
    match candles.first().map(|c| c[CLOSE]).filter(|b| *b != 0.0) {
        Some(base) => candles
            .iter()
            .map(|c| [c[0], c[CLOSE] / base * 100.0])
            .collect(),
        None => Vec::new(),
    }
}

/// The closes of a series of candles (for the moving averages).
pub(crate) fn closes(candles: &[Candle]) -> Vec<f64> {
    candles.iter().map(|c| c[CLOSE]).collect()
}

/// The anomalies of a period and the volatility threshold they exceed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Anomalies {
    /// The [`ANOMALY_QUANTILE`] quantile of every symbol's volatility (`None` without any).
    pub(crate) volatility_threshold: Option<f64>,
    /// The symbols with |% change| above [`ANOMALY_PCT`] and volatility above the threshold,
    /// by |% change| descending (ties by symbol), at most `limit` of them.
    pub(crate) anomalies: Vec<Stats>,
}

/// Finds the anomalies among every symbol's indicators (see [`Anomalies`]).
pub(crate) fn anomalies(stats: Vec<Stats>, limit: usize) -> Anomalies {
    let volatilities: Vec<f64> = stats.iter().filter_map(|s| s.volatility).collect();
    let threshold = quantile(&volatilities, ANOMALY_QUANTILE);
    let mut anomalies: Vec<Stats> = stats
        .into_iter()
        .filter(|s| {
            s.pct_change.is_some_and(|p| p.abs() > ANOMALY_PCT)
                && s.volatility.zip(threshold).is_some_and(|(v, q)| v > q)
        })
        .collect();
    anomalies.sort_by(|a, b| {
        desc(a.pct_change.map(f64::abs), b.pct_change.map(f64::abs)).then(a.symbol.cmp(&b.symbol))
    });
    anomalies.truncate(limit);
    Anomalies {
        volatility_threshold: threshold,
        anomalies,
    }
}

/// The start of the minute an instant (ms since the Unix epoch) falls in.
pub(crate) fn minute_start(ms: f64) -> f64 {
    (ms / 60_000.0).floor() * 60_000.0
}

/// Descending order with `None` last.
fn desc(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => b.total_cmp(&a),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// Simple moving average over `n` values (`None` until `n` values are seen, or where one of
/// them is not finite).
pub(crate) fn moving_average(values: &[f64], n: usize) -> Vec<Option<f64>> {
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
pub(crate) fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let position = (sorted.len() - 1) as f64 * q;
    let (lo, hi) = (position.floor() as usize, position.ceil() as usize);
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * (position - lo as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Indicators of `symbol` with only the fields the rankings read.
    fn stats(symbol: &str, pct_change: Option<f64>, volatility: f64, volume: f64) -> Stats {
        Stats {
            symbol: symbol.into(),
            rows: 1,
            first_close: None,
            last_close: None,
            change: None,
            pct_change,
            mean_price: None,
            max_high: None,
            min_low: None,
            spread: None,
            volatility: Some(volatility),
            volume: Some(volume),
            quote_volume: None,
            first_ms: None,
            last_ms: None,
        }
    }

    fn symbols(list: &[Stats]) -> Vec<&str> {
        list.iter().map(|s| s.symbol.as_str()).collect()
    }

    #[test]
    fn variation_and_spread() {
        assert_eq!(change(Some(100.0), Some(110.0)), Some(10.0));
        assert_eq!(pct_change(Some(100.0), Some(110.0)), Some(10.0));
        assert_eq!(pct_change(Some(200.0), Some(150.0)), Some(-25.0));
        assert_eq!(change(Some(0.0), Some(5.0)), Some(5.0));
        assert_eq!(
            pct_change(Some(0.0), Some(5.0)),
            None,
            "no % change from zero"
        );
        assert_eq!(pct_change(None, Some(5.0)), None);
        assert_eq!(change(Some(5.0), None), None);
        assert_eq!(spread(Some(12.0), Some(9.5)), Some(2.5));
        assert_eq!(spread(None, Some(9.5)), None);
    }

    #[test]
    fn moving_averages_and_quantiles() {
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.75), Some(3.25));
        assert_eq!(
            quantile(&[4.0, f64::NAN, 1.0], 0.5),
            Some(2.5),
            "NaN ignored"
        );
        assert_eq!(quantile(&[], 0.75), None);
        assert_eq!(
            moving_average(&[1.0, 2.0, 3.0, 4.0], 3),
            [None, None, Some(2.0), Some(3.0)]
        );
        assert_eq!(
            moving_average(&[1.0, f64::NAN, 3.0, 4.0, 5.0], 2),
            [None, None, None, Some(3.5), Some(4.5)]
        );
    }

    #[test]
    fn top_lists() {
        let all: Vec<Stats> = (0..8)
            .map(|i| {
                stats(
                    &format!("S{i}"),
                    Some(f64::from(i) - 3.0),
                    0.0,
                    f64::from(i % 4),
                )
            })
            .chain([stats("NONE", None, 0.0, 100.0)])
            .collect();
        let top = top(all);
        assert_eq!(symbols(&top.by_volume), ["NONE", "S3", "S7", "S2", "S6"]);
        assert_eq!(symbols(&top.gainers), ["S7", "S6", "S5", "S4", "S3"]);
        assert_eq!(symbols(&top.losers), ["S0", "S1", "S2", "S3", "S4"]);
    }

    #[test]
    fn anomaly_selection() {
        let mut all: Vec<Stats> = (0..7)
            .map(|i| stats(&format!("L{i}"), Some(0.0), 0.0, 0.0))
            .collect();
        all.extend([
            stats("CALM", Some(9.0), 0.01, 0.0),
            stats("NONE", None, 0.02, 0.0),
            stats("EDGE", Some(7.0), 0.03, 0.0),
            stats("UP", Some(6.0), 0.4, 0.0),
            stats("DOWN", Some(-8.0), 0.5, 0.0),
            stats("FIVE", Some(5.0), 0.9, 0.0),
        ]);
        // 13 volatilities: the 75th percentile is the 10th smallest.
        let found = anomalies(all.clone(), 10);
        assert_eq!(found.volatility_threshold, Some(0.03));
        assert_eq!(
            symbols(&found.anomalies),
            ["DOWN", "UP"],
            "strictly above both"
        );
        assert_eq!(symbols(&anomalies(all, 1).anomalies), ["DOWN"]);
        let none = anomalies(Vec::new(), 10);
        assert_eq!(
            (none.volatility_threshold, none.anomalies),
            (None, Vec::new())
        );
    }

    #[test]
    fn price_index_and_minutes() {
        let candle = |t: f64, close: f64| [t, 0.0, 0.0, 0.0, close, 0.0];
        let candles = [candle(0.0, 40.0), candle(60_000.0, 50.0)];
        assert_eq!(price_index(&candles), [[0.0, 100.0], [60_000.0, 125.0]]);
        assert_eq!(closes(&candles), [40.0, 50.0]);
        assert!(price_index(&[candle(0.0, 0.0), candle(1.0, 1.0)]).is_empty());
        assert!(price_index(&[]).is_empty());
        assert_eq!(minute_start(125_999.0), 120_000.0);
        assert_eq!(minute_start(120_000.0), 120_000.0);
    }
}
