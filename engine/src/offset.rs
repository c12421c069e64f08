//! Source offsets: an opaque, serializable position in a source, as in Spark.
//!
//! Each source defines the JSON shape of its own offsets (per partition for partitioned
//! sources): the engine only stores them in the write-ahead offset log and compares them for
//! equality to decide whether a trigger has new data.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A position in a source, serialized as JSON in `offsets/<batchId>` of the checkpoint.
///
/// Two offsets of the same source are equal iff they designate the same position; a source
/// returns its start offset unchanged from `latest_offset` when it has nothing new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Offset(serde_json::Value);

impl Offset {
    /// Wraps a JSON value as an offset.
    pub fn new(value: serde_json::Value) -> Self {
        Self(value)
    }

    /// The offset as JSON, for the source that owns it to interpret.
    pub fn json(&self) -> &serde_json::Value {
        &self.0
    }

    /// Decodes the offset into the source's own offset type.
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        T::deserialize(&self.0)
    }

    /// Encodes a source's own offset type.
    pub fn from_typed<T: Serialize>(offset: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_value(offset).map(Self)
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
