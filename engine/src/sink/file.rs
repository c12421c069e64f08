//! File sink: one file per micro-batch, JSON lines or Parquet, through `object_store`.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_json::LineDelimitedWriter;
use async_trait::async_trait;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;

use super::{Sink, SinkContext};
use crate::error::{Result, SluiceError};
use crate::location::Location;

/// The format of the files written by a [`FileSink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Newline-delimited JSON, one object per row (`.jsonl`).
    JsonLines,
    /// Apache Parquet (`.parquet`).
    Parquet,
}

impl FileFormat {
    fn extension(self) -> &'static str {
        match self {
            Self::JsonLines => "jsonl",
            Self::Parquet => "parquet",
        }
    }
}

/// Writes the rows of batch `N` to `part-<N, 10 digits>.<ext>` under a directory.
///
/// The object store's `put` is atomic (a local file is written aside and renamed), and a
/// replayed batch rewrites the same name with the same rows, so readers never see a partial
/// file or a duplicate. A batch without rows writes no file.
pub struct FileSink {
    location: Location,
    format: FileFormat,
    schema: Option<SchemaRef>,
}

impl FileSink {
    /// A sink writing `format` files under `location` (a local directory or a URL).
    pub fn new(location: &str, format: FileFormat) -> Result<Self> {
        Ok(Self {
            location: Location::parse(location)?,
            format,
            schema: None,
        })
    }

    /// The name of the file holding batch `batch_id`.
    pub fn file_name(&self, batch_id: u64) -> String {
        format!("part-{batch_id:010}.{}", self.format.extension())
    }

    fn encode(&self, batches: &[RecordBatch]) -> Result<Vec<u8>> {
        let mut buffer = Vec::new();
        match self.format {
            FileFormat::JsonLines => {
                let mut writer = LineDelimitedWriter::new(&mut buffer);
                for batch in batches {
                    writer.write(batch)?;
                }
                writer.finish()?;
            }
            FileFormat::Parquet => {
                let schema = self.schema.clone().unwrap_or_else(|| batches[0].schema());
                let mut writer = ArrowWriter::try_new(&mut buffer, schema, None)?;
                for batch in batches {
                    writer.write(batch)?;
                }
                writer.close()?;
            }
        }
        Ok(buffer)
    }
}

#[async_trait]
impl Sink for FileSink {
    fn description(&self) -> String {
        format!(
            "FileSink[{}, {}]",
            self.location.display,
            self.format.extension()
        )
    }

    async fn open(&mut self, context: &SinkContext) -> Result<()> {
        self.schema = Some(context.schema.clone());
        Ok(())
    }

    async fn add_batch(&mut self, batch_id: u64, batches: &[RecordBatch]) -> Result<()> {
        if batches.iter().all(|b| b.num_rows() == 0) {
            return Ok(());
        }
        let sink_error = |message: String| SluiceError::Sink {
            sink: self.description(),
            batch_id,
            message,
        };
        let bytes = self
            .encode(batches)
            .map_err(|e| sink_error(e.to_string()))?;
        let path = self.location.child(&self.file_name(batch_id));
        self.location
            .store
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| sink_error(format!("cannot write {path}: {e}")))?;
        Ok(())
    }
}
