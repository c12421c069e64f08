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
//! Each connector declares itself to pipeline files next to its code (a
//! [`ConnectorSpec`](sluice_engine::connector::ConnectorSpec): name, role, options, how it is
//! built); [`builtin`] declares the engine's built-in connectors the same way, and
//! [`CONNECTORS`] lists them all: the registry of pipeline files.
//!
//! [`ticker`] holds the shape of the seed pipeline's normalized ticker message, shared by the
//! Binance producer, the queries and the examples.

pub mod binance;
pub mod builtin;
pub mod kafka;
pub mod relational;
pub mod ticker;

pub use sluice_engine::{Sink, Source};

use sluice_engine::connector::ConnectorSpec;

/// Every connector pipeline files can name — this crate's, then the engine's built-ins
/// ([`builtin`]) — in the order messages list them.
pub static CONNECTORS: [&ConnectorSpec; 11] = [
    &kafka::KAFKA_SOURCE,
    &binance::BINANCE_SOURCE,
    &binance::WEBSOCKET_SOURCE,
    &relational::POSTGRES_SINK,
    &relational::SQLITE_SINK,
    &kafka::KAFKA_SINK,
    &builtin::FILE_SOURCE,
    &builtin::MEMORY_SOURCE,
    &builtin::FILE_SINK,
    &builtin::CONSOLE_SINK,
    &builtin::MEMORY_SINK,
];

/// Connector internals exposed for the workspace's own integration tests: the relational
/// sink's pure table mapping (Arrow types to SQL, DDL, checks of an existing table), tested
/// without a database.
///
/// Not a stable API: anything here may change in any release.
#[doc(hidden)]
pub mod internals {
    pub use crate::relational::pool::pool_options;
    pub use crate::relational::table::{Dialect, ExistingColumn, SqlType, TableLayout, TableName};
}
