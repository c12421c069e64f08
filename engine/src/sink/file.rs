//! File sink: one file per micro-batch, JSON lines or Parquet, through `object_store`.
//!
//! JSON lines are written as Spark's JSON sink writes them: null fields left out, and the
//! non-finite doubles as the strings `"NaN"`, `"Infinity"` and `"-Infinity"` (where
//! arrow-json alone would write `null`), which Spark's reader, and Sluice's, read back as the
//! same doubles. Parquet stores them as they are.

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, FieldRef, Float32Type, Float64Type, SchemaRef};
use arrow_json::WriterBuilder;
use arrow_json::writer::{Encoder, EncoderFactory, EncoderOptions, LineDelimited, NullableEncoder};
use async_trait::async_trait;
use lexical_core::FormattedSize;
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::compute_leaves;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use super::{Sink, SinkContext};
use crate::error::{Result, SluiceError};
use crate::fan_out::fan_out;
use crate::location::Location;
use crate::slot::split_contiguous;

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
    /// How many threads encode a batch (the query's parallelism).
    threads: usize,
}

impl FileSink {
    /// A sink writing `format` files under `location` (a local directory or a URL).
    pub fn new(location: &str, format: FileFormat) -> Result<Self> {
        Ok(Self {
            location: Location::parse(location)?,
            format,
            schema: None,
            threads: 1,
        })
    }

    /// The name of the file holding batch `batch_id`.
    pub fn file_name(&self, batch_id: u64) -> String {
        format!("part-{batch_id:010}.{}", self.format.extension())
    }

    /// The file of `batches`: their rows cut into one run of consecutive rows per thread,
    /// each run encoded on its own thread (a Parquet row group, or JSON lines), then put
    /// together in order.
    fn encode(&self, batches: &[RecordBatch]) -> Result<Vec<u8>> {
        let schema = self.schema.clone().unwrap_or_else(|| batches[0].schema());
        let runs: Vec<Vec<RecordBatch>> = split_contiguous(batches.to_vec(), self.threads)
            .into_iter()
            .filter(|run| run.iter().any(|b| b.num_rows() > 0))
            .collect();
        match self.format {
            FileFormat::JsonLines => {
                let encoded = fan_out(runs, "JSON encoding", |run| -> Result<Vec<u8>> {
                    let mut buffer = Vec::new();
                    let mut writer = WriterBuilder::new()
                        .with_encoder_factory(Arc::new(SparkFloats))
                        .build::<_, LineDelimited>(&mut buffer);
                    for batch in &run {
                        writer.write(batch)?;
                    }
                    writer.finish()?;
                    Ok(buffer)
                })?;
                Ok(encoded.into_iter().collect::<Result<Vec<_>>>()?.concat())
            }
            FileFormat::Parquet => {
                let mut buffer = Vec::new();
                let writer =
                    ArrowWriter::try_new(&mut buffer, schema.clone(), Some(properties(&schema)))?;
                let (mut file, factory) = writer.into_serialized_writer()?;
                let writers = (0..runs.len())
                    .map(|group| factory.create_column_writers(group))
                    .collect::<parquet::errors::Result<Vec<_>>>()?;
                let jobs: Vec<_> = runs.into_iter().zip(writers).collect();
                let groups = fan_out(
                    jobs,
                    "Parquet encoding",
                    |(run, mut writers)| -> Result<Vec<_>> {
                        for batch in &run {
                            let mut columns = writers.iter_mut();
                            for (field, array) in schema.fields().iter().zip(batch.columns()) {
                                for leaf in compute_leaves(field, array)? {
                                    columns
                                        .next()
                                        .ok_or_else(|| {
                                            SluiceError::Config(
                                                "parquet: fewer writers than columns".into(),
                                            )
                                        })?
                                        .write(&leaf)?;
                                }
                            }
                        }
                        writers
                            .into_iter()
                            .map(|w| Ok(w.close()?))
                            .collect::<Result<Vec<_>>>()
                    },
                )?;
                for chunks in groups {
                    let chunks = chunks?;
                    let mut group = file.next_row_group()?;
                    for chunk in chunks {
                        chunk.append_to_row_group(&mut group)?;
                    }
                    group.close()?;
                }
                file.close()?;
                Ok(buffer)
            }
        }
    }
}

/// The Parquet writer's settings: dictionary encoding for text and binary columns only, where
/// values repeat (a symbol); numbers and times are mostly distinct, so a dictionary would be
/// built for nothing and dropped when it outgrows its page.
fn properties(schema: &arrow::datatypes::Schema) -> WriterProperties {
    schema
        .fields()
        .iter()
        .filter(|f| {
            matches!(
                f.data_type(),
                DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Binary
                    | DataType::LargeBinary
                    | DataType::BinaryView
            )
        })
        .fold(
            WriterProperties::builder().set_dictionary_enabled(false),
            |builder, f| {
                builder.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), true)
            },
        )
        .build()
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
        self.threads = context.parallelism.max(1);
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

/// Encodes floating-point columns as Spark does: non-finite values as strings.
#[derive(Debug)]
struct SparkFloats;

impl EncoderFactory for SparkFloats {
    fn make_default_encoder<'a>(
        &self,
        _field: &'a FieldRef,
        array: &'a dyn Array,
        _options: &'a EncoderOptions,
    ) -> std::result::Result<Option<NullableEncoder<'a>>, arrow::error::ArrowError> {
        let values: Vec<f64> = match array.data_type() {
            DataType::Float64 => array.as_primitive::<Float64Type>().values().to_vec(),
            DataType::Float32 => array
                .as_primitive::<Float32Type>()
                .values()
                .iter()
                .map(|v| f64::from(*v))
                .collect(),
            _ => return Ok(None),
        };
        let single = array.data_type() == &DataType::Float32;
        Ok(Some(NullableEncoder::new(
            Box::new(FloatEncoder { values, single }),
            array.nulls().cloned(),
        )))
    }
}

struct FloatEncoder {
    values: Vec<f64>,
    /// Whether the column is `Float32` (written with its own shortest digits).
    single: bool,
}

impl Encoder for FloatEncoder {
    fn encode(&mut self, idx: usize, out: &mut Vec<u8>) {
        let value = self.values[idx];
        if value.is_nan() {
            out.extend_from_slice(b"\"NaN\"");
        } else if value == f64::INFINITY {
            out.extend_from_slice(b"\"Infinity\"");
        } else if value == f64::NEG_INFINITY {
            out.extend_from_slice(b"\"-Infinity\"");
        } else if self.single {
            let mut buffer = [0u8; f32::FORMATTED_SIZE];
            out.extend_from_slice(lexical_core::write(value as f32, &mut buffer));
        } else {
            let mut buffer = [0u8; f64::FORMATTED_SIZE];
            out.extend_from_slice(lexical_core::write(value, &mut buffer));
        }
    }
}
