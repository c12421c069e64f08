//! Output modes and Spark's rules for which queries support which mode
//! (`docs/semantics.md` §4, Spark's `UnsupportedOperationChecker`), checked when
//! a query starts, never at run time.

use std::fmt;
use std::str::FromStr;

use crate::error::{Result, SluiceError};

/// What a streaming query writes to its sink each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputMode {
    /// Only new rows; with an aggregation, each window's row once, when the watermark passes
    /// its end.
    #[default]
    Append,
    /// The rows of every group updated by the batch, with their current values.
    Update,
    /// The whole result table, every batch.
    Complete,
}

impl FromStr for OutputMode {
    type Err = SluiceError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "append" => Ok(Self::Append),
            "update" => Ok(Self::Update),
            "complete" => Ok(Self::Complete),
            other => Err(SluiceError::Config(format!(
                "unknown output mode '{other}': expected append, update or complete"
            ))),
        }
    }
}

impl fmt::Display for OutputMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Append => "append",
            Self::Update => "update",
            Self::Complete => "complete",
        })
    }
}

/// The features of a planned query that decide which output modes it supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueryShape {
    /// The query aggregates across batches.
    pub aggregation: bool,
    /// The aggregation groups by an event-time window.
    pub window_key: bool,
    /// The aggregation groups by a session window.
    pub session_window: bool,
    /// A source declares a watermark.
    pub watermark: bool,
    /// The query sorts its output.
    pub sort: bool,
    /// The query joins two streams.
    pub stream_join: bool,
}

/// Checks `mode` against Spark's rules for a query of `shape`; the error names the rule.
pub fn check_output_mode(shape: QueryShape, mode: OutputMode) -> Result<()> {
    let unsupported = |rule: &str| Err(SluiceError::Config(format!("{rule} (output mode {mode})")));
    if shape.sort && !(shape.aggregation && mode == OutputMode::Complete) {
        return unsupported(
            "Sorting is not supported on streaming DataFrames/Datasets, unless it is on aggregated \
             DataFrame/Dataset in Complete output mode",
        );
    }
    if shape.stream_join && mode != OutputMode::Append {
        return unsupported(
            "Join between two streaming DataFrames/Datasets is supported in Append output mode only",
        );
    }
    if shape.session_window && mode == OutputMode::Update {
        return unsupported("Session windows support the append and complete output modes only");
    }
    match (shape.aggregation, mode) {
        (true, OutputMode::Append) if !(shape.watermark && shape.window_key) => unsupported(
            "Append output mode not supported when there are streaming aggregations on streaming \
             DataFrames/DataSets without watermark: declare a watermark on the source and group by \
             a window of its event-time column",
        ),
        (false, OutputMode::Complete) => unsupported(
            "Complete output mode not supported when there are no streaming aggregations on \
             streaming DataFrames/Datasets",
        ),
        _ => Ok(()),
    }
}
