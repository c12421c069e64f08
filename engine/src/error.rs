//! Typed errors of the engine.
//!
//! Every variant names what failed and where (the source, the sink, the checkpoint path, the
//! batch), so a stopped query tells its operator what to look at.

use std::path::PathBuf;

/// Result alias used across the engine.
pub type Result<T, E = SluiceError> = std::result::Result<T, E>;

/// Errors raised by the streaming engine.
#[derive(Debug, thiserror::Error)]
pub enum SluiceError {
    /// A record could not be decoded and the source runs in `FAILFAST` mode.
    #[error("malformed record {position} of {context} (FAILFAST mode): {reason}; record: {sample}")]
    MalformedRecord {
        /// Where the record came from (source and file or partition).
        context: String,
        /// 1-based position of the record (its line number in a file).
        position: usize,
        /// Why it was rejected.
        reason: String,
        /// The start of the offending record, lossily decoded as UTF-8.
        sample: String,
    },

    /// A source failed to list, read or decode its data.
    #[error("source '{source_name}': {message}")]
    Source {
        /// The name the source is registered under.
        source_name: String,
        /// What went wrong.
        message: String,
    },

    /// A sink failed to write a batch.
    #[error("sink '{sink}' failed on batch {batch_id}: {message}")]
    Sink {
        /// The sink's description.
        sink: String,
        /// The batch being written.
        batch_id: u64,
        /// What went wrong.
        message: String,
    },

    /// A sink could not start: its destination is unreachable or does not fit the query.
    #[error("sink '{sink}' could not start: {message}")]
    SinkOpen {
        /// The sink's description.
        sink: String,
        /// What went wrong.
        message: String,
    },

    /// The checkpoint is unreadable or inconsistent.
    #[error("checkpoint {location}: {message}")]
    Checkpoint {
        /// The checkpoint file or directory involved.
        location: String,
        /// What went wrong.
        message: String,
    },

    /// A view of the query (see `StreamingQueryBuilder::view`) could not be planned.
    #[error("view '{view}': {error}")]
    View {
        /// The view's name.
        view: String,
        /// Why it could not be planned.
        error: Box<SluiceError>,
    },

    /// A user-supplied option or argument is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A local file could not be read or written.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Planning or executing the SQL query failed.
    #[error("query error: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),

    /// An Arrow operation failed (schema mismatch, cast, encoding).
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),

    /// Parquet encoding failed.
    #[error("parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),

    /// The object store holding checkpoints or sink files failed.
    #[error("object store error: {0}")]
    ObjectStore(#[from] object_store::Error),

    /// The streaming query terminated with an error; the message is the original error.
    #[error("streaming query '{query}' terminated with error: {message}")]
    QueryTerminated {
        /// The query name or id.
        query: String,
        /// The error that stopped it.
        message: String,
    },
}

impl SluiceError {
    /// Shorthand for a [`SluiceError::Source`] error.
    pub fn source(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Source {
            source_name: source_name.into(),
            message: message.into(),
        }
    }

    /// Shorthand for a [`SluiceError::Checkpoint`] error.
    pub fn checkpoint(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Checkpoint {
            location: location.into(),
            message: message.into(),
        }
    }
}
