//! Errors of pipeline files: every one names the file, line and column it is about (and, in
//! an included file, the `INCLUDE`s that brought it in).

use std::fmt;

/// A 1-based line and column in a pipeline file (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl Position {
    /// The same column, `lines` lines further down: a file's position in the line numbering
    /// of the whole pipeline, where included files follow the file given (see the `include`
    /// module).
    pub fn down(self, lines: usize) -> Self {
        Self {
            line: self.line + lines,
            column: self.column,
        }
    }

    /// The same column, `lines` lines further up (the inverse of [`Position::down`]).
    pub fn up(self, lines: usize) -> Self {
        Self {
            line: self.line.saturating_sub(lines),
            column: self.column,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// A position in a named file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Site {
    /// The file as given (an included file: its path joined to the including file's
    /// directory).
    pub file: String,
    /// Where in that file (before variable substitution).
    pub position: Position,
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.position)
    }
}

/// ` (included from a.sql:3:1, included from job.sql:1:1)`, or nothing for the file given.
fn trail(sites: &[Site]) -> String {
    if sites.is_empty() {
        return String::new();
    }
    let sites: Vec<String> = sites.iter().map(|s| format!("included from {s}")).collect();
    format!(" ({})", sites.join(", "))
}

/// Result alias of the pipeline crate.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// Why a pipeline file could not be loaded, planned or started.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The file is wrong at a position: syntax, an unknown or ill-typed option, an unset
    /// variable, an unsupported output mode, a query that does not plan.
    #[error("{file}:{position}: {message}{}", trail(.included_from))]
    At {
        /// The file as given (or `<sql>` for text), or the included file the error is in.
        file: String,
        /// Where in that file (before variable substitution).
        position: Position,
        /// What is wrong and, when it helps, what is expected.
        message: String,
        /// The `INCLUDE`s that brought `file` in, innermost first; empty for the file given.
        included_from: Vec<Site>,
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
    #[error("{file}:{position}: query '{query}': {error}{}", trail(.included_from))]
    Query {
        /// The file as given, or the included file the query's `INSERT` is in.
        file: String,
        /// Where the query's `INSERT` is in that file.
        position: Position,
        /// The `INCLUDE`s that brought `file` in, innermost first; empty for the file given.
        included_from: Vec<Site>,
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

/// An error at `position` in the numbering of the whole pipeline, without the file name yet
/// (added by the `include` module's `SourceMap::error`, which knows which file it is in).
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
