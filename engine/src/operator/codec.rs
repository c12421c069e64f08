//! How stateful operators persist their state: one Arrow IPC file per operator and batch,
//! written to the checkpoint before the batch's commit (see `crate::checkpoint`).
//!
//! Arrow IPC keeps every Arrow type, and duplicate column names (DataFusion's `first_value`
//! and `last_value` states have them), which Parquet would not.

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;

use crate::error::{Result, SluiceError};

/// Encodes an operator's state rows (of `schema`) as an Arrow IPC file.
pub(crate) fn encode(schema: &SchemaRef, state: Option<&RecordBatch>) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut writer = FileWriter::try_new(&mut bytes, schema)?;
    if let Some(state) = state {
        writer.write(state)?;
    }
    writer.finish()?;
    drop(writer);
    Ok(bytes)
}

/// Decodes state written by [`encode`], checking it has the operator's `schema`; `location`
/// and `changed` (what a different schema means) name the problem in errors.
pub(crate) fn decode(
    bytes: &[u8],
    schema: &SchemaRef,
    location: &str,
    changed: &str,
) -> Result<RecordBatch> {
    let reader = FileReader::try_new(std::io::Cursor::new(bytes), None)
        .map_err(|e| SluiceError::checkpoint(location, format!("unreadable state: {e}")))?;
    if reader.schema().fields() != schema.fields() {
        return Err(SluiceError::checkpoint(
            location,
            format!("{changed}; use a new checkpoint location"),
        ));
    }
    let batches = reader.collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(concat_batches(schema, &batches)?)
}
