//! # Sluice connectors
//!
//! Connectors to external systems, each implementing the engine's
//! [`Source`](sluice_engine::Source) and/or [`Sink`](sluice_engine::Sink) traits: Kafka,
//! PostgreSQL/SQLite and the Binance WebSocket stream each land here in a module of their own.
//! The engine's built-in connectors (memory, files, console) live in `sluice-engine`.
//!
//! No connector has landed yet; this crate fixes the seam they plug into.
pub use sluice_engine::{Sink, Source};
