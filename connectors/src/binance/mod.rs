//! Binance's WebSocket market streams: frame normalization, a resilient client, capture files,
//! a local replay server that behaves like Binance, a seeded sample generator, and an engine
//! source.
//!
//! - [`frame`]: frames → one normalized JSON message per ticker, keyed by symbol (pure).
//! - [`client`]: the long-running WebSocket client (pings, dead-connection detection,
//!   reconnects with backoff and jitter, replacement ahead of the 24-hour limit, bounded
//!   buffering).
//! - [`capture`]: gzip JSON-lines capture files (`{"t": arrival ms, "frame": text}`).
//! - [`replay`]: serves a capture at Binance's paths, live-paced or as fast as possible.
//! - [`generator`]: the seeded synthetic `!miniTicker@arr` sample (Binance is unreachable from
//!   the machines this is built on; the bundled sample is generated, and says so).
//! - [`producer`]: the Binance → Kafka producer daemon (`sluice produce binance`).
//! - `shared`: one connection per stream URL shared by all the sources of a process.
//! - [`BinanceSource`]: the stream as an engine source (at-most-once across restarts),
//!   declared to pipeline files as [`BINANCE_SOURCE`] and [`WEBSOCKET_SOURCE`] (`spec`).

pub mod capture;
pub mod client;
pub mod frame;
pub mod generator;
pub mod producer;
pub mod replay;
mod shared;
mod source;
mod spec;

pub use client::MINI_TICKER_URL;
pub use source::BinanceSource;
pub use spec::{BINANCE_SOURCE, WEBSOCKET_SOURCE};
