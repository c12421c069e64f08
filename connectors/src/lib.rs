//! # Sluice connectors
//!
//! Connectors to external systems, each implementing the engine's
//! [`Source`](sluice_engine::Source) and/or [`Sink`](sluice_engine::Sink) traits: Kafka,
//! PostgreSQL/SQLite and the Binance WebSocket stream each land here in a module of their own.
//! The engine's built-in connectors (memory, files, console) live in `sluice-engine`.
//!
//! - [`binance`]: Binance's WebSocket streams (client, replay server, sample generator, source).
//! - [`kafka`]: the Kafka source (Spark's options and offsets in the checkpoint) and sink.
//! - [`relational`]: the PostgreSQL / SQLite sink, exactly-once per batch.
//!
//! [`ticker`] holds the shape of the seed pipeline's normalized ticker message, shared by the
//! Binance producer, the queries and the examples.

pub mod binance;
pub mod kafka;
pub mod relational;
pub mod ticker;

pub use sluice_engine::{Sink, Source};
