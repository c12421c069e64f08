//! Console sink: prints each micro-batch as a table, like Spark's `console` format.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use async_trait::async_trait;

use super::{Sink, SinkContext};
use crate::error::{Result, SluiceError};

/// Prints `Batch: N` and the first rows of each batch as a table.
///
/// As in Spark's console sink (`show(numRows = 20, truncate = true)`), at most `num_rows` rows
/// are printed, cells longer than 20 characters are cut to 17 plus `...`, cells are
/// right-aligned, nulls print as `NULL` and timestamps as `2025-11-28 09:00:10`. Output is for people, so a replayed batch is simply
/// printed again.
pub struct ConsoleSink {
    out: Arc<Mutex<dyn Write + Send>>,
    num_rows: usize,
    truncate: bool,
    /// The query's output schema, so that an empty batch still shows its columns.
    schema: Option<SchemaRef>,
}

impl ConsoleSink {
    /// Prints to standard output.
    pub fn stdout() -> Self {
        Self::to_writer(Arc::new(Mutex::new(std::io::stdout())))
    }

    /// Prints to any writer (a shared buffer in tests).
    pub fn to_writer(out: Arc<Mutex<dyn Write + Send>>) -> Self {
        Self {
            out,
            num_rows: 20,
            truncate: true,
            schema: None,
        }
    }

    /// Prints at most `num_rows` rows per batch (default 20).
    pub fn with_num_rows(mut self, num_rows: usize) -> Self {
        self.num_rows = num_rows;
        self
    }

    /// Whether long cells are cut to 20 characters (default true).
    pub fn with_truncate(mut self, truncate: bool) -> Self {
        self.truncate = truncate;
        self
    }

    /// Renders a batch's table the way Spark's `Dataset.show` does.
    pub fn render(&self, batch_id: u64, batches: &[RecordBatch]) -> Result<String> {
        let rule = "-".repeat(43);
        let mut text = format!("{rule}\nBatch: {batch_id}\n{rule}\n");
        let Some(schema) = batches
            .first()
            .map(RecordBatch::schema)
            .or(self.schema.clone())
        else {
            return Ok(text + "++\n||\n++\n\n");
        };
        // Spark shows timestamps as `2025-11-28 09:00:10`, fractions only when not zero.
        let options = FormatOptions::default()
            .with_null("NULL")
            .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
            .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f"));
        let mut rows: Vec<Vec<String>> = Vec::new();
        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        'outer: for batch in batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()?;
            for row in 0..batch.num_rows() {
                if rows.len() == self.num_rows {
                    break 'outer;
                }
                rows.push(
                    formatters
                        .iter()
                        .map(|f| self.cell(f.value(row).to_string()))
                        .collect(),
                );
            }
        }
        let header: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| self.cell(f.name().clone()))
            .collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|c| {
                rows.iter()
                    .map(|r| r[c].chars().count())
                    .chain([header[c].chars().count(), 3])
                    .max()
                    .unwrap_or(3)
            })
            .collect();
        let line = format!(
            "+{}+\n",
            widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("+")
        );
        let format_row = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .map(|(cell, w)| {
                    if self.truncate {
                        format!("{cell:>w$}")
                    } else {
                        format!("{cell:<w$}")
                    }
                })
                .collect();
            format!("|{}|\n", padded.join("|"))
        };
        text.push_str(&line);
        text.push_str(&format_row(&header));
        text.push_str(&line);
        for row in &rows {
            text.push_str(&format_row(row));
        }
        text.push_str(&line);
        if total > rows.len() {
            let noun = if rows.len() == 1 { "row" } else { "rows" };
            text.push_str(&format!("only showing top {} {noun}\n", rows.len()));
        }
        text.push('\n');
        Ok(text)
    }

    fn cell(&self, value: String) -> String {
        if self.truncate && value.chars().count() > 20 {
            value.chars().take(17).chain("...".chars()).collect()
        } else {
            value
        }
    }
}

#[async_trait]
impl Sink for ConsoleSink {
    fn description(&self) -> String {
        "ConsoleSink".into()
    }

    async fn open(&mut self, context: &SinkContext) -> Result<()> {
        self.schema = Some(context.schema.clone());
        Ok(())
    }

    async fn add_batch(&mut self, batch_id: u64, batches: &[RecordBatch]) -> Result<()> {
        let text = self.render(batch_id, batches)?;
        let mut out = self.out.lock().unwrap_or_else(PoisonError::into_inner);
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| SluiceError::Sink {
                sink: "ConsoleSink".into(),
                batch_id,
                message: e.to_string(),
            })
    }
}
