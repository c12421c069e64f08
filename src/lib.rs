//! # Sluice
//!
//! Stream processing on Apache Arrow and Apache DataFusion with the semantics of Spark
//! Structured Streaming. This crate re-exports the engine ([`engine`]) and the connectors
//! ([`connectors`]) and carries the `sluice` command-line tool, the examples and the benchmarks.
//!
//! Start with [`engine::StreamingQueryBuilder`]; `examples/embed.rs` runs a whole query.

pub use sluice_connectors as connectors;
pub use sluice_engine as engine;
