//! JSON → Arrow decoding with Spark's malformed-record modes.
//!
//! Records (one Kafka message, one line of a file) are fed one at a time and decoded in chunks
//! of `batch_size` records, on one of three paths:
//! - flat records (one object of scalar fields, no escapes: what streaming producers write) go
//!   straight into Arrow builders ([`flat`]), converted exactly as arrow-json would;
//! - from the first record the flat path is not sure of to the end of its chunk, records go to
//!   arrow-json's streaming [`Decoder`](arrow_json::reader::Decoder), whose tape decoder
//!   tokenizes each record as it arrives and converts them column by column (only these
//!   records are copied, for the slow path below);
//! - when a chunk holds a malformed record, the chunk is re-decoded on a slow path that
//!   isolates the offending records (structural errors are caught per record as they are fed,
//!   conversion errors by bisection), so the cost of bad input is proportional to the number
//!   of bad records, not to the size of the stream.
//!
//! Behaviour follows Spark 4.0's JSON data source (checked against `pyspark==4.0.1`; the
//! rules arrow-json does not share are applied first, by [`spark`]):
//! - blank records (empty or whitespace-only lines) are skipped and not counted; lines end at
//!   `\n`, `\r\n` or a lone `\r`; a UTF-8 byte order mark before a record is skipped;
//! - values convert as Spark converts them: an integer column takes integer numbers of its
//!   range only (`1.5`, `1e3`, `1704067224143.0` or an out-of-range number do not convert), a
//!   DOUBLE column takes numbers, the `NaN`/`Infinity`/`-Infinity` tokens and Spark's strings
//!   for them (`"NaN"`, `"Infinity"`, `"+INF"`, …) but no other string (unless
//!   [`JsonOptions::allow_numeric_strings`]), a BOOLEAN column `true`/`false` only, and a
//!   string column anything, keeping the raw JSON text of what is not a string (a nested
//!   object, `12.50`);
//! - leading zeros (`007`) and raw control characters in strings make a record malformed, as
//!   Jackson's defaults do; a top-level array of objects is one row per object; after the
//!   first value of a record, the rest is ignored (two objects on a line: the first);
//! - a missing field is `null`, never malformed; unknown fields are ignored; every top-level
//!   column is nullable (Spark makes file-source schemas nullable);
//! - `PERMISSIVE` (default): a structurally broken record (truncated object, garbage, a JSON
//!   value that is not an object) becomes a row of nulls; a record whose values do not convert
//!   keeps the fields that do (Spark's partial results) with nulls for the others; either way
//!   the raw text goes to the corrupt-record column when one is configured;
//! - `DROPMALFORMED`: such records are dropped;
//! - `FAILFAST`: the first such record is an error naming it.
//!
//! Every malformed record is counted in [`MalformedStats`], whatever the mode.
//!
//! Limits: a record longer than [`JsonOptions::max_record_bytes`] (16 MiB by default) or nested
//! deeper than [`JsonOptions::max_depth`] (1000 levels, the nesting limit of the JSON parser
//! Spark 4.0 uses) is malformed before any parser sees it, so that one hostile record (a value
//! nested 10,000 levels deep) cannot exhaust the stack: it is a counted malformed record in
//! `PERMISSIVE` and `DROPMALFORMED`, and a clear error in `FAILFAST`.
//!
//! Left to arrow-json: timestamp columns (a number is in the column's unit, where Spark reads
//! seconds; a string is parsed as RFC 3339) and nested column types.

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, new_null_array};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_json::ReaderBuilder;
use arrow_json::reader::Decoder;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SluiceError};
use crate::fan_out::fan_out;

mod flat;
mod spark;

use flat::FlatDecoder;
use spark::{Columns, Inspection};

/// Longest prefix of a malformed record kept in errors and statistics.
const SAMPLE_BYTES: usize = 256;

/// How malformed records are handled, named as in Spark's `mode` option.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ParseMode {
    /// Keep the record as nulls (plus what converts) and its text in the corrupt-record column.
    #[default]
    Permissive,
    /// Drop the record.
    DropMalformed,
    /// Stop with an error naming the record.
    FailFast,
}

impl FromStr for ParseMode {
    type Err = SluiceError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "PERMISSIVE" => Ok(Self::Permissive),
            "DROPMALFORMED" => Ok(Self::DropMalformed),
            "FAILFAST" => Ok(Self::FailFast),
            other => Err(SluiceError::Config(format!(
                "unknown JSON parse mode '{other}': expected PERMISSIVE, DROPMALFORMED or FAILFAST"
            ))),
        }
    }
}

/// Options of the JSON decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonOptions {
    /// What to do with malformed records.
    pub mode: ParseMode,
    /// Name of a `Utf8` column that receives the raw text of malformed records in `PERMISSIVE`
    /// mode (Spark's `columnNameOfCorruptRecord`, e.g. `_corrupt_record`). When the declared
    /// schema has a field of that name it stays at its position, otherwise it is appended.
    pub corrupt_record_column: Option<String>,
    /// Records per output batch; also bounds the work redone on the slow path.
    pub batch_size: usize,
    /// Deepest nesting of arrays and objects a record may have (default 1000, as Spark's
    /// parser); a deeper record is malformed.
    pub max_depth: usize,
    /// Longest record in bytes (default 16 MiB); a longer record is malformed.
    pub max_record_bytes: usize,
    /// Whether a string holding a number converts into a numeric column (`"0.5"` into a
    /// DOUBLE, `"5"` into a BIGINT). Off by default, as in Spark, where such a record is
    /// malformed; on for producers that quote their numbers.
    pub allow_numeric_strings: bool,
}

/// [`JsonOptions::max_depth`] by default: the nesting limit of Jackson, Spark 4.0's parser.
pub const DEFAULT_MAX_DEPTH: usize = 1000;

/// [`JsonOptions::max_record_bytes`] by default.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 16 << 20;

impl Default for JsonOptions {
    fn default() -> Self {
        Self {
            mode: ParseMode::Permissive,
            corrupt_record_column: None,
            batch_size: 8192,
            max_depth: DEFAULT_MAX_DEPTH,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            allow_numeric_strings: false,
        }
    }
}

/// Counts of malformed records, with the first one kept for inspection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MalformedStats {
    /// How many records were malformed (nulled, dropped, or the one that failed).
    pub count: u64,
    /// Why the first malformed record was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// The start of the first malformed record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_record: Option<String>,
}

impl MalformedStats {
    /// Adds another set of counts to this one, keeping the earliest sample.
    pub fn merge(&mut self, other: MalformedStats) {
        self.count += other.count;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
            self.first_record = other.first_record;
        }
    }

    fn record(&mut self, reason: &str, sample: &str) {
        self.count += 1;
        if self.first_error.is_none() {
            self.first_error = Some(reason.to_string());
            self.first_record = Some(sample.to_string());
        }
    }
}

/// What [`JsonDecoder::finish`] returns: the decoded rows and the malformed-record counts.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Decoded rows in input order, in [`JsonDecoder::output_schema`].
    pub batches: Vec<RecordBatch>,
    /// Malformed records seen since the previous `finish`.
    pub malformed: MalformedStats,
    /// For each decoded row, in order, the 1-based position of the record it came from among
    /// those pushed since the previous `finish` (blank records count): lets a caller align
    /// per-record metadata, such as Kafka offsets, with rows when some records yield none.
    pub record_positions: Vec<usize>,
}

/// Decodes JSON records into Arrow batches of a declared schema.
///
/// ```
/// use std::sync::Arc;
/// use arrow::datatypes::{DataType, Field, Schema};
/// use sluice_engine::json::{JsonDecoder, JsonOptions};
///
/// let schema = Arc::new(Schema::new(vec![
///     Field::new("symbol", DataType::Utf8, true),
///     Field::new("close_price", DataType::Float64, true),
/// ]));
/// let mut decoder = JsonDecoder::new(schema, JsonOptions::default()).unwrap();
/// decoder.push(br#"{"symbol":"BTCUSDT","close_price":65000.5}"#).unwrap();
/// decoder.push(br#"{"symbol":"ETHUSDT","close_price":"#).unwrap(); // truncated
/// let decoded = decoder.finish().unwrap();
/// let rows: usize = decoded.batches.iter().map(|b| b.num_rows()).sum();
/// assert_eq!(rows, 2); // PERMISSIVE: the bad record is a null row
/// assert_eq!(decoded.malformed.count, 1);
/// ```
pub struct JsonDecoder {
    /// The declared schema, to build the decoders of [`Self::decode_lines`]'s other parts.
    declared: SchemaRef,
    /// Decoders of the other parts of [`Self::decode_lines`], built on first use.
    workers: Vec<JsonDecoder>,
    /// The schema handed to arrow-json: declared fields, nullable, without the corrupt column.
    decode_schema: SchemaRef,
    output_schema: SchemaRef,
    /// Position of the corrupt-record column in the output schema.
    corrupt_index: Option<usize>,
    options: JsonOptions,
    context: String,
    /// The flat-record path, unless the schema has a column type it does not decode.
    flat: Option<FlatDecoder>,
    /// Whether every record of the current chunk so far went to `flat`.
    flat_chunk: bool,
    /// Number of records in the current chunk.
    chunk_len: usize,
    /// The rows the flat path decoded before the chunk went to arrow-json.
    flat_head: Option<RecordBatch>,
    /// Records the flat path decoded since the decoder was built.
    flat_records: u64,
    fast: Decoder,
    /// Whether the fast decoder saw a structural anomaly in the current chunk.
    dirty: bool,
    /// The current chunk's records, back to back, and the end offset of each.
    bytes: Vec<u8>,
    ends: Vec<usize>,
    /// Records of the current chunk known to be malformed before arrow-json decodes them.
    faults: Vec<Fault>,
    /// The columns as Spark's rules read them.
    columns: Columns,
    /// Number of records pushed since the last `finish`, blank ones included (so a line number
    /// for files).
    position: usize,
    /// 1-based position of each retained record since the last `finish`; blank records
    /// leave gaps, so for a file this is the line number.
    positions: Vec<usize>,
    /// The record position of each row in `done`.
    row_positions: Vec<usize>,
    done: Vec<RecordBatch>,
    malformed: MalformedStats,
}

impl JsonDecoder {
    /// Builds a decoder for `schema` (the declared columns).
    pub fn new(schema: SchemaRef, options: JsonOptions) -> Result<Self> {
        if options.batch_size == 0 {
            return Err(SluiceError::Config(
                "JSON batch_size must be at least 1".into(),
            ));
        }
        if options.max_depth == 0 || options.max_record_bytes == 0 {
            return Err(SluiceError::Config(
                "JSON max_depth and max_record_bytes must be at least 1".into(),
            ));
        }
        let mut decode_fields = Vec::with_capacity(schema.fields().len());
        let mut output_fields = Vec::with_capacity(schema.fields().len() + 1);
        let mut corrupt_index = None;
        for field in schema.fields() {
            if Some(field.name()) == options.corrupt_record_column.as_ref() {
                if field.data_type() != &DataType::Utf8 {
                    return Err(SluiceError::Config(format!(
                        "corrupt record column '{}' must be of type Utf8, not {}",
                        field.name(),
                        field.data_type()
                    )));
                }
                corrupt_index = Some(output_fields.len());
                output_fields.push(Arc::new(Field::new(field.name(), DataType::Utf8, true)));
                continue;
            }
            let nullable = Arc::new(field.as_ref().clone().with_nullable(true));
            decode_fields.push(nullable.clone());
            output_fields.push(nullable);
        }
        if let (Some(name), None) = (&options.corrupt_record_column, corrupt_index) {
            corrupt_index = Some(output_fields.len());
            output_fields.push(Arc::new(Field::new(name, DataType::Utf8, true)));
        }
        let decode_schema = Arc::new(Schema::new(decode_fields));
        let fast = build_decoder(&decode_schema, options.batch_size + 1, false)?;
        let flat = FlatDecoder::new(
            &decode_schema,
            options.batch_size,
            options.allow_numeric_strings,
        );
        let columns = Columns::new(&decode_schema, options.allow_numeric_strings);
        Ok(Self {
            declared: schema,
            workers: Vec::new(),
            flat_chunk: flat.is_some(),
            flat,
            chunk_len: 0,
            flat_head: None,
            flat_records: 0,
            decode_schema,
            output_schema: Arc::new(Schema::new(output_fields)),
            corrupt_index,
            options,
            context: String::new(),
            fast,
            dirty: false,
            bytes: Vec::new(),
            ends: Vec::new(),
            faults: Vec::new(),
            columns,
            position: 0,
            positions: Vec::new(),
            row_positions: Vec::new(),
            done: Vec::new(),
            malformed: MalformedStats::default(),
        })
    }

    /// The schema of the decoded batches (all columns nullable, plus the corrupt-record column).
    pub fn output_schema(&self) -> SchemaRef {
        self.output_schema.clone()
    }

    /// How many records took the flat-record path since the decoder was built; the others
    /// went through arrow-json, at roughly 2.5 times the cost. A stream that never takes it
    /// has nested values, escaped strings or column types the flat path does not decode.
    pub fn flat_path_records(&self) -> u64 {
        self.flat_records + self.workers.iter().map(|w| w.flat_records).sum::<u64>()
    }

    /// Names where the next records come from (a source, file or partition), for error messages.
    pub fn set_context(&mut self, context: impl Into<String>) {
        self.context = context.into();
    }

    /// Feeds one record: a whole JSON document such as a Kafka message value. A UTF-8 byte
    /// order mark before it is skipped, as Spark's parser skips it.
    pub fn push(&mut self, record: &[u8]) -> Result<()> {
        self.position += 1;
        let record = record.strip_prefix(b"\xef\xbb\xbf").unwrap_or(record);
        if record.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        self.chunk_len += 1;
        let too_long = (record.len() > self.options.max_record_bytes).then(|| {
            format!(
                "record of {} bytes, longer than max_record_bytes ({})",
                record.len(),
                self.options.max_record_bytes
            )
        });
        if self.flat_chunk {
            // The flat path takes objects of scalars only: nothing nested, whatever the input.
            if too_long.is_none() && self.flat.as_mut().is_some_and(|flat| flat.push(record)) {
                self.flat_records += 1;
                self.positions.push(self.position);
            } else {
                // The rest of the chunk takes arrow-json's path.
                self.flat_chunk = false;
                self.flat_head = self.finish_flat()?;
            }
        }
        if !self.flat_chunk {
            let refused = too_long.or_else(|| {
                nested_deeper_than(record, self.options.max_depth).then(|| {
                    format!(
                        "nested deeper than max_depth ({} levels)",
                        self.options.max_depth
                    )
                })
            });
            match refused {
                // Never handed to a parser: the slow path reports it.
                Some(reason) => self.push_fault(record, reason, None),
                None => match spark::inspect(record, &self.columns) {
                    Inspection::Clean => self.push_record(record),
                    Inspection::Malformed(reason) => self.push_fault(record, reason, None),
                    Inspection::Rewritten { records, failed } => match failed {
                        // Decoded as rewritten (the failed values null), reported with the
                        // record as it came.
                        Some(reason) => {
                            for rewritten in &records {
                                self.push_fault(rewritten, reason.clone(), Some(record));
                            }
                        }
                        None => {
                            for rewritten in &records {
                                self.push_record(rewritten);
                            }
                        }
                    },
                },
            }
        }
        if self.chunk_len >= self.options.batch_size {
            self.finish_chunk()?;
        }
        Ok(())
    }

    /// A record of the current chunk for arrow-json.
    fn push_record(&mut self, record: &[u8]) {
        self.bytes.extend_from_slice(record);
        self.ends.push(self.bytes.len());
        self.positions.push(self.position);
        if !self.dirty {
            self.dirty = !feed(&mut self.fast, record);
        }
    }

    /// A record of the current chunk known to be malformed: `convertible_from` is the record
    /// as it came when `record` is its rewriting with the values that did not convert nulled
    /// (Spark's partial results), `None` when nothing of it is kept.
    fn push_fault(&mut self, record: &[u8], reason: String, convertible_from: Option<&[u8]>) {
        self.bytes.extend_from_slice(record);
        self.ends.push(self.bytes.len());
        self.positions.push(self.position);
        self.faults.push(Fault {
            index: self.ends.len() - 1,
            reason,
            original: convertible_from.map(<[u8]>::to_vec),
        });
        self.dirty = true;
    }

    /// Feeds line-delimited records (a JSON-lines file, or part of one ending on a line
    /// break). Lines end at `\n`, `\r\n` or a lone `\r`, as in Spark.
    pub fn push_lines(&mut self, data: &[u8]) -> Result<()> {
        lines(data).try_for_each(|line| self.push(line))
    }

    /// Decodes line-delimited `data` as [`Self::push_lines`] then [`Self::finish`] would, in
    /// up to `threads` parts at once, each on its own thread: the rows, malformed counts,
    /// first malformed sample and record positions are the same as one decoder's. Records
    /// pushed before and not yet finished are decoded first.
    ///
    /// After an error (FAILFAST), the decoder is empty again, ready for the next data.
    pub fn decode_lines(&mut self, data: &[u8], threads: usize) -> Result<Decoded> {
        let result = self.decode_lines_in_parts(data, threads);
        if result.is_err() {
            let mut fresh = JsonDecoder::new(self.declared.clone(), self.options.clone())?;
            fresh.context = std::mem::take(&mut self.context);
            fresh.flat_records = self.flat_records;
            *self = fresh;
        }
        result
    }

    fn decode_lines_in_parts(&mut self, data: &[u8], threads: usize) -> Result<Decoded> {
        /// Below this, a part is not worth a thread.
        const MIN_PART_BYTES: usize = 256 << 10;
        let parts = threads.min(data.len() / MIN_PART_BYTES).max(1);
        if parts == 1 || self.position > 0 {
            self.push_lines(data)?;
            return self.finish();
        }
        let parts = split_lines(data, parts);
        while self.workers.len() < parts.len() - 1 {
            self.workers.push(JsonDecoder::new(
                self.declared.clone(),
                self.options.clone(),
            )?);
        }
        for worker in &mut self.workers {
            worker.context.clone_from(&self.context);
        }
        // Each part numbers its records from 1 and counts them; the numbers are shifted by
        // the previous parts' counts once all are decoded.
        let decode = |decoder: &mut JsonDecoder, part: &[u8]| {
            let pushed = decoder.push_lines(part);
            let count = decoder.position;
            (count, pushed.and_then(|()| decoder.finish()))
        };
        let mut workers = std::mem::take(&mut self.workers);
        let jobs: Vec<(&mut JsonDecoder, &[u8])> = std::iter::once(self as &mut JsonDecoder)
            .chain(workers.iter_mut())
            .zip(parts.iter().map(|part| &data[part.clone()]))
            .collect();
        let mut results = fan_out(jobs, "JSON decoding", |(decoder, part)| {
            decode(decoder, part)
        })?;
        // A decoder whose part failed may hold half a chunk: build new ones next time.
        if !results.iter().any(|(_, result)| result.is_err()) {
            self.workers = workers;
        }
        let mut decoded = Decoded::default();
        let mut before = 0;
        for (count, part) in results.drain(..) {
            let mut part = part.map_err(|e| match e {
                SluiceError::MalformedRecord {
                    context,
                    position,
                    reason,
                    sample,
                } => SluiceError::MalformedRecord {
                    context,
                    position: position + before,
                    reason,
                    sample,
                },
                other => other,
            })?;
            part.record_positions.iter_mut().for_each(|p| *p += before);
            decoded.batches.append(&mut part.batches);
            decoded.malformed.merge(part.malformed);
            decoded.record_positions.append(&mut part.record_positions);
            before += count;
        }
        Ok(decoded)
    }

    /// Decodes everything fed so far and returns it with the malformed-record counts.
    pub fn finish(&mut self) -> Result<Decoded> {
        self.finish_chunk()?;
        self.position = 0;
        Ok(Decoded {
            batches: std::mem::take(&mut self.done),
            malformed: std::mem::take(&mut self.malformed),
            record_positions: std::mem::take(&mut self.row_positions),
        })
    }

    /// The rows of the flat path, if any (`positions` holds exactly theirs).
    fn finish_flat(&mut self) -> Result<Option<RecordBatch>> {
        let Some(flat) = &mut self.flat else {
            return Ok(None);
        };
        let batch = flat.finish()?;
        if batch.num_rows() == 0 {
            return Ok(None);
        }
        self.row_positions.append(&mut self.positions);
        self.with_corrupt_column(batch, None).map(Some)
    }

    fn finish_chunk(&mut self) -> Result<()> {
        self.chunk_len = 0;
        if std::mem::replace(&mut self.flat_chunk, self.flat.is_some()) {
            let rows = self.finish_flat()?;
            self.done.extend(rows);
            return Ok(());
        }
        let head = self.flat_head.take();
        if self.ends.is_empty() {
            // Nothing after the flat rows (an empty top-level array gives no record).
            self.done.extend(head);
            return Ok(());
        }
        let flushed = if self.dirty {
            None
        } else {
            self.fast.flush().ok().flatten()
        };
        let result = match flushed {
            Some(batch) if batch.num_rows() == self.ends.len() => {
                self.row_positions.extend_from_slice(&self.positions);
                self.with_corrupt_column(batch, None)
            }
            _ => {
                // The fast decoder is poisoned (or its output unusable): isolate the bad records.
                self.fast = build_decoder(&self.decode_schema, self.options.batch_size + 1, false)?;
                let mut pieces = Vec::new();
                self.decode_range(0, self.ends.len(), &mut pieces)?;
                concat_batches(&self.output_schema, &pieces).map_err(SluiceError::from)
            }
        };
        self.dirty = false;
        self.bytes.clear();
        self.ends.clear();
        self.faults.clear();
        self.positions.clear();
        // One batch per chunk, whichever paths its records took.
        let batch = match head {
            Some(head) => concat_batches(&self.output_schema, [&head, &result?])?,
            None => result?,
        };
        if batch.num_rows() > 0 {
            self.done.push(batch);
        }
        Ok(())
    }

    /// The known fault of record `i`, if any (faults are kept in record order).
    fn fault(&self, i: usize) -> Option<&Fault> {
        self.faults
            .binary_search_by_key(&i, |f| f.index)
            .ok()
            .map(|at| &self.faults[at])
    }

    fn record(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Slow path: decodes records `lo..hi` of the chunk, isolating malformed ones.
    fn decode_range(
        &mut self,
        mut lo: usize,
        hi: usize,
        pieces: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        let mut decoder = build_decoder(&self.decode_schema, hi - lo + 1, false)?;
        let mut i = lo;
        while i < hi {
            let record = self.record(i);
            let before = decoder.len();
            let known = self
                .fault(i)
                .map(|f| (f.reason.clone(), f.original.is_some()));
            let fault = match known
                .as_ref()
                .map_or_else(|| decoder.decode(record), |_| Ok(0))
            {
                Ok(_) if known.is_some() => known.as_ref().map(|(reason, _)| reason.clone()),
                Err(e) => Some(e.to_string()),
                Ok(n) if n != record.len() => Some("more than one JSON value in the record".into()),
                Ok(_) if decoder.has_partial_record() => Some("truncated JSON record".into()),
                Ok(_) if decoder.len() != before + 1 => {
                    Some("more than one JSON value in the record".into())
                }
                Ok(_) => None,
            };
            if let Some(reason) = fault {
                // Records lo..i are each well-formed so far; redo them on a fresh decoder.
                if lo < i {
                    self.decode_range(lo, i, pieces)?;
                }
                let convertible = known.as_ref().is_some_and(|(_, convertible)| *convertible);
                self.malformed_record(i, &reason, convertible, pieces)?;
                lo = i + 1;
                decoder = build_decoder(&self.decode_schema, hi - lo + 1, false)?;
            }
            i += 1;
        }
        if lo == hi {
            return Ok(());
        }
        match decoder.flush() {
            Ok(Some(batch)) => {
                self.row_positions
                    .extend_from_slice(&self.positions[lo..lo + batch.num_rows()]);
                pieces.push(self.with_corrupt_column(batch, None)?)
            }
            Ok(None) => {}
            Err(e) if hi - lo == 1 => self.malformed_record(lo, &e.to_string(), true, pieces)?,
            Err(_) => {
                let mid = lo + (hi - lo) / 2;
                self.decode_range(lo, mid, pieces)?;
                self.decode_range(mid, hi, pieces)?;
            }
        }
        Ok(())
    }

    /// Applies the parse mode to malformed record `i`; `convertible` records are structurally
    /// valid JSON whose values did not convert, so PERMISSIVE keeps what does convert.
    fn malformed_record(
        &mut self,
        i: usize,
        reason: &str,
        convertible: bool,
        pieces: &mut Vec<RecordBatch>,
    ) -> Result<()> {
        let original = self.fault(i);
        let text = match original.and_then(|f| f.original.as_deref()) {
            Some(original) => String::from_utf8_lossy(original).into_owned(),
            None => String::from_utf8_lossy(self.record(i)).into_owned(),
        };
        let sample = truncate(&text, SAMPLE_BYTES);
        match self.options.mode {
            ParseMode::FailFast => {
                return Err(SluiceError::MalformedRecord {
                    context: self.context.clone(),
                    position: self.positions[i],
                    reason: reason.to_string(),
                    sample,
                });
            }
            ParseMode::DropMalformed => {}
            ParseMode::Permissive => {
                let partial = if convertible {
                    self.lenient_row(i)
                } else {
                    None
                };
                let row = match partial {
                    Some(batch) => batch,
                    None => RecordBatch::try_new(
                        self.decode_schema.clone(),
                        self.decode_schema
                            .fields()
                            .iter()
                            .map(|f| new_null_array(f.data_type(), 1))
                            .collect(),
                    )?,
                };
                self.row_positions.push(self.positions[i]);
                pieces.push(self.with_corrupt_column(row, Some(&text))?);
            }
        }
        self.malformed.record(reason, &sample);
        Ok(())
    }

    /// Decodes one record with type conflicts turned into nulls (Spark's partial results).
    fn lenient_row(&self, i: usize) -> Option<RecordBatch> {
        let mut decoder = build_decoder(&self.decode_schema, 2, true).ok()?;
        decoder.decode(self.record(i)).ok()?;
        decoder.flush().ok().flatten().filter(|b| b.num_rows() == 1)
    }

    /// Adds the corrupt-record column (null, or `text` for a one-row malformed batch).
    fn with_corrupt_column(&self, batch: RecordBatch, text: Option<&str>) -> Result<RecordBatch> {
        let Some(index) = self.corrupt_index else {
            return Ok(batch);
        };
        let corrupt: ArrayRef = match text {
            Some(text) => Arc::new(StringArray::from(vec![Some(text)])),
            None => new_null_array(&DataType::Utf8, batch.num_rows()),
        };
        let mut columns = batch.columns().to_vec();
        columns.insert(index, corrupt);
        Ok(RecordBatch::try_new(self.output_schema.clone(), columns)?)
    }
}

/// A record of the chunk that is malformed before arrow-json sees it.
struct Fault {
    /// Its index in the chunk.
    index: usize,
    reason: String,
    /// The record as it came, when the chunk holds its rewriting with the values that did not
    /// convert nulled (Spark's partial results).
    original: Option<Vec<u8>>,
}

/// Whether `record` nests arrays and objects deeper than `limit` (brackets inside strings do
/// not count). A plain byte scan that stops at the first level past the limit, so that no
/// recursive parser ever sees such a record.
fn nested_deeper_than(record: &[u8], limit: usize) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in record {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Feeds one record to arrow-json; `false` if it was not exactly one well-formed JSON value
/// (the decoder is then unusable for the chunk).
fn feed(decoder: &mut Decoder, record: &[u8]) -> bool {
    let before = decoder.len();
    matches!(decoder.decode(record), Ok(n) if n == record.len())
        && !decoder.has_partial_record()
        && decoder.len() == before + 1
}

fn build_decoder(schema: &SchemaRef, batch_size: usize, lenient: bool) -> Result<Decoder> {
    Ok(ReaderBuilder::new(schema.clone())
        .with_batch_size(batch_size)
        .with_coerce_primitive(true)
        .with_ignore_type_conflicts(lenient)
        .build_decoder()?)
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The records of line-delimited `data`: lines end at `\n`, `\r\n` or a lone `\r`.
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = memchr::memchr2(b'\n', b'\r', rest).unwrap_or(rest.len());
        let line = &rest[..end];
        let skip = match rest.get(end..end + 2) {
            Some(b"\r\n") => 2,
            _ => 1,
        };
        rest = rest.get(end + skip..).unwrap_or_default();
        Some(line)
    })
}

/// `data` cut into at most `parts` ranges of whole lines, in order: each ends just after a
/// `\n` (or at the end), so that no line, and no `\r\n`, is cut.
fn split_lines(data: &[u8], parts: usize) -> Vec<std::ops::Range<usize>> {
    let size = data.len().div_ceil(parts.max(1)).max(1);
    let mut ranges = Vec::with_capacity(parts);
    let mut start = 0;
    while start < data.len() {
        let target = (start + size).min(data.len());
        let end = match memchr::memchr(b'\n', &data[target..]) {
            Some(at) => target + at + 1,
            None => data.len(),
        };
        ranges.push(start..end);
        start = end;
    }
    ranges
}
