//! Test support shared by the integration tests of the Sluice crates.
//!
//! - [`postgres::url`]: PostgreSQL at `DATABASE_URL`, or a throwaway cluster the test process
//!   starts itself when PostgreSQL's server is installed;
//! - `kafka::kafka` (feature `kafka`): the broker at `KAFKA_BOOTSTRAP`, or librdkafka's
//!   in-process mock cluster;
//! - [`build::declare_test_cfgs`]: for build scripts, the `cfg`s that mark the tests this
//!   machine cannot run as ignored, with the reason. Under `CI=true` nothing is ignored and a
//!   missing service fails its tests, so CI never passes by skipping.
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
use std::path::PathBuf;

pub mod build;
#[cfg(feature = "engine")]
mod crashing_sink;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod postgres;
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

/// The first of `names` found in a directory of `PATH`.
pub fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
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
