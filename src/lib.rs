//! # Sluice
//!
//! Stream processing on Apache Arrow and Apache DataFusion with the semantics of Spark
//! Structured Streaming. This crate re-exports the engine ([`engine`]), the connectors
//! ([`connectors`]) and pipeline files ([`pipeline`]), and carries the examples and the
//! benchmarks; the `sluice` command is the `sluice-cli` package.
//!
//! Start with [`engine::StreamingQueryBuilder`] (`examples/embed.rs`) or a SQL pipeline file
//! run by [`pipeline::Pipeline`] (`examples/kafka_to_postgres.rs`).

pub use sluice_connectors as connectors;
pub use sluice_engine as engine;
pub use sluice_pipeline as pipeline;
