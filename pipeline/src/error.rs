//! Errors of pipeline files: every one names the file, line and column it is about.

use std::fmt;

/// A 1-based line and column in a pipeline file (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Result alias of the pipeline crate.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Why a pipeline file could not be loaded, planned or started.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The file is wrong at a position: syntax, an unknown or ill-typed option, an unset
    /// variable, an unsupported output mode, a query that does not plan.
    #[error("{file}:{position}: {message}")]
    At {
        /// The file as given (or `<sql>` for text).
        file: String,
        /// Where in the original file (before variable substitution).
        position: Position,
        /// What is wrong and, when it helps, what is expected.
        message: String,
    },

    /// The file could not be read.
    #[error("cannot read {file}: {error}")]
    Read {
        /// The path.
        file: String,
        /// The I/O error (in the message, not chained, so it is printed once).
        error: std::io::Error,
    },

    /// A query could not be planned or started (the engine's checks, a connector, a database,
    /// a broker); the position is its `INSERT`'s.
    #[error("{file}:{position}: query '{query}': {error}")]
    Query {
        /// The file as given.
        file: String,
        /// Where the query's `INSERT` is.
        position: Position,
        /// The query's name.
        query: String,
        /// The engine's error (in the message, not chained, so it is printed once; boxed: it
        /// is large).
        error: Box<sluice_engine::SluiceError>,
    },
}

impl PipelineError {
    /// Whether the file itself is wrong (as opposed to a service being unreachable): its
    /// text, or a query the engine rejects when planning it (output mode, unknown column).
    pub fn is_invalid_file(&self) -> bool {
        use sluice_engine::SluiceError;
        match self {
            Self::At { .. } | Self::Read { .. } => true,
            Self::Query { error, .. } => {
                matches!(**error, SluiceError::Config(_) | SluiceError::DataFusion(_))
            }
        }
    }
}

/// An error at `position` without the file name yet (added by [`located`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Where.
    pub position: Position,
    /// What.
    pub message: String,
}

impl Located {
    /// An error at `position`.
    pub fn new(position: Position, message: impl Into<String>) -> Self {
        Self {
            position,
            message: message.into(),
        }
    }
}

/// Turns a [`Located`] error into a [`PipelineError::At`] of `file`.
pub fn located(file: &str) -> impl Fn(Located) -> PipelineError + '_ {
    move |error| PipelineError::At {
        file: file.to_string(),
        position: error.position,
        message: error.message,
    }
}
