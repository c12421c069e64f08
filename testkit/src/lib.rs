//! Test support shared by the integration tests of the Sluice crates.
//!
//! - [`service`]: the address of a service a test needs (PostgreSQL, the Kafka broker), read
//!   from its environment variable. Locally a missing service skips the test with a message;
//!   under `CI=true` it fails the test, so CI never passes by skipping.
//! - [`candles`]: the reference computation of 1-minute candles, written plainly, that the
//!   pipeline's `candles_1m` output is compared with.
//!
//! With the `engine` feature (the crates whose tests run queries; not the dashboard's):
//!
//! - `CrashingSink`: a sink wrapper that fails one batch before or after writing it, as a
//!   killed process would, for the recovery tests;
//! - `projet_bdcc_schema`: the columns of the seed job's table, for tests and benchmarks that
//!   write it without running the query.

use std::collections::BTreeMap;

#[cfg(feature = "engine")]
mod crashing_sink;
#[cfg(feature = "engine")]
mod projet_bdcc;

#[cfg(feature = "engine")]
pub use crashing_sink::{Crash, CrashingSink};
#[cfg(feature = "engine")]
pub use projet_bdcc::projet_bdcc_schema;

/// Whether this is a CI run (`CI=true`), where service-backed tests must run, never skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The value of `variable` (e.g. `DATABASE_URL`, `KAFKA_BOOTSTRAP`), or `None` to skip the
/// test. Panics when the variable is unset and `CI=true`.
pub fn service(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if in_ci() => {
            panic!("CI=true but {variable} is not set: the tests that need it must run")
        }
        _ => {
            eprintln!("{variable} is not set: skipping a test that needs it");
            None
        }
    }
}

/// One ticker: symbol, close price, 24 h volume, event time (ms since the epoch).
pub type Tick = (String, f64, f64, i64);

/// A candle: open, high, low, close (close prices), volume at the last ticker, ticker count.
pub type Candle = (f64, f64, f64, f64, f64, i64);

/// 1-minute candles per `(symbol, minute start in ms)` of `ticks` taken in event-time order
/// per symbol (ties keep input order), as `queries/candles_1m.sql` defines them.
pub fn candles(ticks: &[Tick]) -> BTreeMap<(String, i64), Candle> {
    let mut ordered: Vec<&Tick> = ticks.iter().collect();
    ordered.sort_by_key(|(symbol, _, _, ts)| (symbol.clone(), *ts));
    let mut candles = BTreeMap::new();
    for (symbol, close, volume, ts) in ordered {
        let minute = ts - ts.rem_euclid(60_000);
        candles
            .entry((symbol.clone(), minute))
            .and_modify(|c: &mut Candle| {
                c.1 = c.1.max(*close);
                c.2 = c.2.min(*close);
                c.3 = *close;
                c.4 = *volume;
                c.5 += 1;
            })
            .or_insert((*close, *close, *close, *close, *volume, 1));
    }
    candles
}
