//! File source: a directory of JSON-lines files, read in file-name order.
//!
//! Each trigger lists the directory and admits the files whose names sort after the last
//! admitted one (at most `max_files_per_trigger` of them). The end offset of a batch lists its
//! files, so a batch re-run after a crash reads exactly the same files even if more arrived.
//!
//! Writers must make files appear atomically (write under a hidden name, then rename): names
//! starting with `.` or `_` are ignored, as in Spark. Files are read in name order, so name them
//! so that they sort in arrival order (e.g. with a timestamp); a file whose name sorts before
//! one already read is skipped with a warning, never read out of order.

use std::collections::BTreeSet;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use super::{ReadLimit, Source, SourceBatch};
use crate::error::{Result, SluiceError};
use crate::json::{JsonDecoder, JsonOptions};
use crate::location::Location;
use crate::offset::Offset;

/// The file source's offset: the last file admitted and the files of the batch ending here.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileOffset {
    last_file: Option<String>,
    files: Vec<String>,
}

/// A directory of JSON-lines files, decoded with a declared schema.
pub struct FileSource {
    name: String,
    location: Location,
    decoder: JsonDecoder,
    max_files_per_trigger: Option<u64>,
    /// Last file visible when `prepare_for_available_now` ran.
    available_now: Option<Option<String>>,
    /// The files visible then, for [`Source::backlog`].
    available_now_files: Vec<String>,
    /// How many threads decode a file (the query's parallelism).
    threads: usize,
    /// The previous listing (`None` before the first), to notice files that appear late.
    previous: Option<BTreeSet<String>>,
}

impl FileSource {
    /// Reads `location` (a local directory or an object-store URL) with `schema`.
    pub fn new(
        name: impl Into<String>,
        location: &str,
        schema: SchemaRef,
        options: JsonOptions,
    ) -> Result<Self> {
        Ok(Self {
            name: name.into(),
            location: Location::parse(location)?,
            decoder: JsonDecoder::new(schema, options)?,
            max_files_per_trigger: None,
            available_now: None,
            available_now_files: Vec::new(),
            threads: 1,
            previous: None,
        })
    }

    /// Admits at most `files` files per micro-batch (Spark's `maxFilesPerTrigger`).
    pub fn with_max_files_per_trigger(mut self, files: u64) -> Self {
        self.max_files_per_trigger = Some(files);
        self
    }

    fn parse(&self, offset: &Offset) -> Result<FileOffset> {
        offset
            .parse()
            .map_err(|e| SluiceError::source(&self.name, format!("bad offset {offset}: {e}")))
    }
}

#[async_trait]
impl Source for FileSource {
    fn description(&self) -> String {
        format!("FileSource[{}]", self.location.display)
    }

    fn schema(&self) -> SchemaRef {
        self.decoder.output_schema()
    }

    /// Decodes each file in up to `threads` parts at once.
    fn set_parallelism(&mut self, threads: usize) {
        self.threads = threads;
    }

    async fn initial_offset(&mut self) -> Result<Offset> {
        Ok(Offset::from_typed(&FileOffset::default())
            .map_err(|e| SluiceError::source(&self.name, e.to_string()))?)
    }

    fn default_read_limit(&self) -> ReadLimit {
        self.max_files_per_trigger
            .map_or(ReadLimit::AllAvailable, ReadLimit::MaxFiles)
    }

    async fn latest_offset(&mut self, start: &Offset, limit: ReadLimit) -> Result<Offset> {
        let last = self.parse(start)?.last_file;
        let names = list(&self.name, &self.location).await?;
        let is_behind = |name: &String| last.as_ref().is_some_and(|last| name <= last);
        if let Some(previous) = &self.previous {
            for late in names
                .iter()
                .filter(|n| is_behind(n) && !previous.contains(*n))
            {
                tracing::warn!(
                    source = %self.name,
                    file = %late,
                    "skipping a file that sorts before files already read (files are read in name order)"
                );
            }
        }
        let ahead: Vec<String> = names.iter().filter(|n| !is_behind(n)).cloned().collect();
        self.previous = Some(names.into_iter().collect());
        let cap = self.available_now.clone().flatten();
        let max = match limit {
            ReadLimit::MaxFiles(n) | ReadLimit::MaxRows(n) => {
                usize::try_from(n).unwrap_or(usize::MAX)
            }
            ReadLimit::AllAvailable => usize::MAX,
        };
        let files: Vec<String> = ahead
            .into_iter()
            .filter(|name| {
                self.available_now.is_none() || cap.as_ref().is_some_and(|cap| name <= cap)
            })
            .take(max)
            .collect();
        let Some(last_file) = files.last().cloned() else {
            return Ok(start.clone());
        };
        Offset::from_typed(&FileOffset {
            last_file: Some(last_file),
            files,
        })
        .map_err(|e| SluiceError::source(&self.name, e.to_string()))
    }

    async fn get_batch(&mut self, _start: &Offset, end: &Offset) -> Result<SourceBatch> {
        let mut batch = SourceBatch::default();
        for file in self.parse(end)?.files {
            let path = self.location.child(&file);
            let bytes = self
                .location
                .store
                .get(&path)
                .await
                .map_err(|e| SluiceError::source(&self.name, format!("cannot read {file}: {e}")))?
                .bytes()
                .await
                .map_err(|e| SluiceError::source(&self.name, format!("cannot read {file}: {e}")))?;
            self.decoder
                .set_context(format!("{}/{file}", self.location.display));
            let decoded = self.decoder.decode_lines(&bytes, self.threads)?;
            batch.batches.extend(decoded.batches);
            batch.malformed.merge(decoded.malformed);
        }
        Ok(batch)
    }

    async fn prepare_for_available_now(&mut self) -> Result<()> {
        let files = list(&self.name, &self.location).await?;
        self.available_now = Some(files.last().cloned());
        self.available_now_files = files;
        Ok(())
    }

    fn backlog(&self, start: &Offset) -> Option<u64> {
        self.available_now.as_ref()?;
        let after = self.parse(start).ok()?.last_file;
        let remaining = self
            .available_now_files
            .iter()
            .filter(|file| after.as_ref().is_none_or(|last| *file > last))
            .count();
        Some(remaining as u64)
    }
}

/// Visible file names in the directory, sorted. (A free function: the source itself is not
/// `Sync`, so it cannot be borrowed across an await.)
async fn list(name: &str, location: &Location) -> Result<Vec<String>> {
    let listing = location
        .store
        .list_with_delimiter(Some(&location.prefix))
        .await
        .map_err(|e| SluiceError::source(name, format!("cannot list {}: {e}", location.display)))?;
    let mut names: Vec<String> = listing
        .objects
        .into_iter()
        .filter_map(|meta| meta.location.filename().map(str::to_string))
        .filter(|name| !name.starts_with('.') && !name.starts_with('_'))
        .collect();
    names.sort();
    Ok(names)
}
