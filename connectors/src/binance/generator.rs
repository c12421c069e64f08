//! A seeded generator of synthetic `!miniTicker@arr` frames, for the bundled sample and for
//! tests. Binance is unreachable from the machines this is built on, so the sample is
//! generated, not recorded; it reproduces the stream's format exactly:
//!
//! - one JSON array per second, of `24hrMiniTicker` objects with Binance's field names
//!   (`e`, `E`, `s`, `c`, `o`, `h`, `l`, `v`, `q`) and numbers as strings with 8 decimals;
//! - only the symbols whose ticker changed during that second (each symbol changes with
//!   probability [`SampleSpec::change_probability`], 60% by default);
//! - prices follow a geometric random walk per symbol (per-second volatility drawn per
//!   symbol), trades add volume when the price moves;
//! - `o`, `h`, `l`, `v`, `q` are 24-hour rolling statistics: the generator simulates the 24
//!   hours before the sample too, so the open is the price 24 h earlier and high, low and
//!   volumes cover exactly the trailing 24 h.
//!
//! The same seed gives the same frames, byte for byte.

use std::collections::VecDeque;
use std::fmt::Write;

use super::capture::CapturedFrame;

/// Seconds in Binance's rolling window.
const DAY: usize = 86_400;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleSpec {
    /// The random seed.
    pub seed: u64,
    /// How many symbols.
    pub symbols: usize,
    /// How many one-second frames.
    pub seconds: usize,
    /// The event time of the first frame, ms since the epoch.
    pub start_ms: i64,
    /// The probability that a symbol's ticker changes in a given second.
    pub change_probability: f64,
}

impl Default for SampleSpec {
    /// The bundled sample: 200 symbols, 10 minutes from 2026-11-28 12:00:00 UTC, seed
    /// 20261128, 60% of symbols changing per second.
    fn default() -> Self {
        Self {
            seed: 20_261_128,
            symbols: 200,
            seconds: 600,
            start_ms: 1_764_331_200_000,
            change_probability: 0.6,
        }
    }
}

/// SplitMix64: small, fast, and the same everywhere.
struct Random(u64);

impl Random {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(f64::MIN_POSITIVE);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Base assets, with a starting price for the well-known ones.
const BASES: [(&str, f64); 40] = [
    ("BTC", 65_000.0),
    ("ETH", 3_400.0),
    ("BNB", 600.0),
    ("SOL", 150.0),
    ("XRP", 0.6),
    ("ADA", 0.45),
    ("DOGE", 0.15),
    ("TRX", 0.12),
    ("DOT", 7.0),
    ("MATIC", 0.7),
    ("LTC", 80.0),
    ("AVAX", 35.0),
    ("LINK", 15.0),
    ("ATOM", 9.0),
    ("XLM", 0.11),
    ("ETC", 27.0),
    ("FIL", 6.0),
    ("APT", 9.0),
    ("NEAR", 5.0),
    ("ARB", 1.1),
    ("OP", 2.3),
    ("INJ", 25.0),
    ("SUI", 1.0),
    ("SEI", 0.5),
    ("TIA", 10.0),
    ("PEPE", 0.000_012),
    ("SHIB", 0.000_025),
    ("UNI", 8.0),
    ("AAVE", 95.0),
    ("MKR", 2_500.0),
    ("RUNE", 5.0),
    ("ALGO", 0.18),
    ("VET", 0.03),
    ("ICP", 12.0),
    ("HBAR", 0.08),
    ("EGLD", 40.0),
    ("SAND", 0.45),
    ("MANA", 0.42),
    ("AXS", 7.5),
    ("GALA", 0.03),
];

/// Quote assets and the price of one unit in USDT.
const QUOTES: [(&str, f64); 5] = [
    ("USDT", 1.0),
    ("FDUSD", 1.0),
    ("BTC", 65_000.0),
    ("ETH", 3_400.0),
    ("EUR", 1.08),
];

/// The statistics of one symbol at one output second.
struct Ticker {
    close: f64,
    open: f64,
    high: f64,
    low: f64,
    volume: f64,
    quote_volume: f64,
}

/// Generates the frames of `spec`, each with an arrival time a few ms after its event time.
pub fn generate(spec: &SampleSpec) -> Vec<CapturedFrame> {
    let mut random = Random(spec.seed);
    let total = DAY + spec.seconds;
    // tickers[symbol][second] for the output seconds in which the symbol changed.
    let mut names = Vec::with_capacity(spec.symbols);
    let mut series: Vec<Vec<Option<Ticker>>> = Vec::with_capacity(spec.symbols);
    // Real-looking pairs first, then numbered USDT pairs with log-uniform prices.
    let pairs = QUOTES
        .iter()
        .flat_map(|quote| BASES.iter().map(move |base| (base, quote)))
        .filter(|(base, quote)| base.0 != quote.0)
        .map(|(base, quote)| (format!("{}{}", base.0, quote.0), Some(base.1 / quote.1)))
        .chain((1..).map(|n| (format!("ALT{n:04}USDT"), None)));
    for (name, price) in pairs.take(spec.symbols) {
        let price = match price {
            Some(price) => price * (0.9 + 0.2 * random.uniform()),
            None => 10f64.powf(-4.0 + 7.0 * random.uniform()),
        };
        names.push(name);
        series.push(simulate(&mut random, price, total, spec));
    }
    (0..spec.seconds)
        .map(|second| {
            let event_ms = spec.start_ms + second as i64 * 1000;
            let mut text = String::from("[");
            for (symbol, tickers) in names.iter().zip(&series) {
                let Some(t) = &tickers[second] else { continue };
                if text.len() > 1 {
                    text.push(',');
                }
                let jitter = (random.next_u64() % 5) as i64;
                let _ = write!(
                    text,
                    r#"{{"e":"24hrMiniTicker","E":{},"s":"{symbol}","c":"{:.8}","o":"{:.8}","h":"{:.8}","l":"{:.8}","v":"{:.8}","q":"{:.8}"}}"#,
                    event_ms + jitter,
                    t.close,
                    t.open,
                    t.high,
                    t.low,
                    t.volume,
                    t.quote_volume
                );
            }
            text.push(']');
            CapturedFrame {
                arrival_ms: event_ms + 20 + (random.next_u64() % 30) as i64,
                text,
            }
        })
        .collect()
}

/// One symbol's per-second walk over the day before the sample and the sample itself; the
/// rolling 24-hour statistics for each output second in which it changed.
fn simulate(
    random: &mut Random,
    start: f64,
    total: usize,
    spec: &SampleSpec,
) -> Vec<Option<Ticker>> {
    let sigma = 0.0001 + 0.0006 * random.uniform();
    let base_volume = 10f64.powf(1.0 + 3.0 * random.uniform()) / start.max(1e-6).sqrt();
    let mut price = start;
    let mut prices = Vec::with_capacity(total);
    let mut volumes = Vec::with_capacity(total);
    let mut changed = Vec::with_capacity(total);
    for _ in 0..total {
        let moved = random.uniform() < spec.change_probability;
        let mut volume = 0.0;
        if moved {
            price *= (sigma * random.normal()).exp();
            volume = base_volume * (0.5 * random.normal()).exp();
        }
        prices.push(price);
        volumes.push(volume);
        changed.push(moved);
    }
    // Sliding max / min over the trailing DAY seconds with monotonic deques, and running sums.
    let (mut highs, mut lows): (VecDeque<usize>, VecDeque<usize>) =
        (VecDeque::new(), VecDeque::new());
    let (mut volume, mut quote_volume) = (0.0, 0.0);
    let mut out = Vec::with_capacity(spec.seconds);
    for i in 0..total {
        while highs.back().is_some_and(|&j| prices[j] <= prices[i]) {
            highs.pop_back();
        }
        highs.push_back(i);
        while lows.back().is_some_and(|&j| prices[j] >= prices[i]) {
            lows.pop_back();
        }
        lows.push_back(i);
        volume += volumes[i];
        quote_volume += volumes[i] * prices[i];
        if i >= DAY {
            let gone = i - DAY;
            volume -= volumes[gone];
            quote_volume -= volumes[gone] * prices[gone];
            while highs.front().is_some_and(|&j| j <= gone) {
                highs.pop_front();
            }
            while lows.front().is_some_and(|&j| j <= gone) {
                lows.pop_front();
            }
            out.push(changed[i].then(|| Ticker {
                close: prices[i],
                open: prices[gone],
                high: prices[highs[0]],
                low: prices[lows[0]],
                volume: volume.max(0.0),
                quote_volume: quote_volume.max(0.0),
            }));
        }
    }
    out
}
