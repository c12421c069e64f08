//! Spark's reading of a JSON record, decided before arrow-json sees it.
//!
//! arrow-json is more lenient than Spark 4.0's JSON source (Jackson with Spark's options), and
//! differently lenient: it casts `1.5` into a BIGINT column, parses `"0.12"` into a DOUBLE
//! column, takes leading zeros and raw control characters, and refuses the `NaN` and
//! `Infinity` tokens Spark accepts. [`inspect`] reads a record with Spark's rules (checked
//! against `pyspark==4.0.1`) and says what to decode instead:
//!
//! - a record Jackson refuses (leading zeros, a raw control character in a string, broken
//!   syntax) or that is not an object (a string, a number), or an array holding anything but
//!   objects: malformed, a row of nulls;
//! - a value that does not convert into its column (a fraction or an exponent or an
//!   out-of-range number in an integer column, a string in a DOUBLE column unless it is one of
//!   Spark's `NaN`/`Infinity` spellings, anything but `true`/`false` in a BOOLEAN column): the
//!   record is malformed but keeps its other fields (Spark's partial results), so the value
//!   is rewritten to `null`;
//! - the `NaN`, `Infinity`, `+Infinity`, `-Infinity`, `+INF`, `-INF` tokens (Spark's
//!   `allowNonNumericNumbers`) are rewritten to strings arrow-json parses into the same doubles;
//! - strings in single quotes (Spark's `allowSingleQuotes`), keys and values, are rewritten
//!   with double quotes;
//! - a field given twice takes its last value that converts (a later one that does not makes
//!   the record malformed but leaves the earlier value, as Spark's field-by-field reading);
//! - any value read into a string column that is not a string (an object, an array, a number)
//!   becomes its raw JSON text, as Spark keeps it;
//! - a top-level array of objects is one record per object; text after the first value is
//!   ignored, as Spark ignores it (two objects on a line: the first).
//!
//! Nested columns (`STRUCT`, `ARRAY`, `MAP`) are read with the same rules at every level, as
//! Spark's partial results do: a struct's field that does not convert is null and the struct
//! kept; an array element or a map value that does not convert (or a value of the wrong shape
//! where a struct, an array or a map is expected) makes the whole array or map null. Fields a
//! struct does not declare are left out. Each nested column's value is rewritten in full, walked
//! recursively to the depth of the schema (never deeper: undeclared values are skipped
//! without recursion).
//!
//! Columns of other types (timestamps, dates, decimals) are left to arrow-json.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Schema};

/// How a column takes JSON values, in Spark's rules.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// Integer numbers within the range.
    Integer { min: i128, max: i128 },
    /// Numbers, the non-numeric tokens, and Spark's strings for NaN and the infinities.
    Float,
    /// `true` and `false`.
    Boolean,
    /// Anything: strings as they are, other values as their raw text.
    String,
    /// Left to arrow-json.
    Other,
    /// An object whose declared fields take values of these kinds.
    Struct(Arc<HashMap<String, Kind>>),
    /// An array of elements of this kind.
    List(Arc<Kind>),
    /// An object (string keys) of values of this kind.
    Map(Arc<Kind>),
}

impl Kind {
    fn is_nested(&self) -> bool {
        matches!(self, Kind::Struct(_) | Kind::List(_) | Kind::Map(_))
    }
}

fn kind(data_type: &DataType) -> Kind {
    let integer = |min: i128, max: i128| Kind::Integer { min, max };
    match data_type {
        DataType::Int8 => integer(i8::MIN.into(), i8::MAX.into()),
        DataType::Int16 => integer(i16::MIN.into(), i16::MAX.into()),
        DataType::Int32 => integer(i32::MIN.into(), i32::MAX.into()),
        DataType::Int64 => integer(i64::MIN.into(), i64::MAX.into()),
        DataType::Float32 | DataType::Float64 => Kind::Float,
        DataType::Boolean => Kind::Boolean,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Kind::String,
        DataType::Struct(fields) => Kind::Struct(Arc::new(
            fields
                .iter()
                .map(|f| (f.name().clone(), kind(f.data_type())))
                .collect(),
        )),
        DataType::List(item) | DataType::LargeList(item) => {
            Kind::List(Arc::new(kind(item.data_type())))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(fields) if fields.len() == 2 => {
                Kind::Map(Arc::new(kind(fields[1].data_type())))
            }
            _ => Kind::Other,
        },
        _ => Kind::Other,
    }
}

/// A nested value rewritten for arrow-json.
#[derive(Debug)]
struct Converted {
    /// Its JSON text (`null` when it could not be read at all).
    text: Vec<u8>,
    /// Why something in it did not convert (the first thing).
    failed: Option<String>,
    /// Whether the value itself is lost (not a struct with some null fields): an array or a
    /// map holding it is then lost too.
    lost: bool,
}

impl Converted {
    fn ok(text: Vec<u8>) -> Self {
        Self {
            text,
            failed: None,
            lost: false,
        }
    }

    fn lost(reason: String) -> Self {
        Self {
            text: b"null".to_vec(),
            failed: Some(reason),
            lost: true,
        }
    }
}

/// The columns of a schema, by name, as [`inspect`] reads them.
#[derive(Debug, Clone)]
pub(super) struct Columns {
    kinds: HashMap<String, Kind>,
    /// Whether a string holding a number converts into a numeric column (Sluice's option;
    /// Spark: malformed).
    allow_numeric_strings: bool,
}

impl Columns {
    pub(super) fn new(schema: &Schema, allow_numeric_strings: bool) -> Self {
        Self {
            kinds: schema
                .fields()
                .iter()
                .map(|f| (f.name().clone(), kind(f.data_type())))
                .collect(),
            allow_numeric_strings,
        }
    }
}

/// What to decode for a record.
#[derive(Debug, PartialEq)]
pub(super) enum Inspection {
    /// The record as it is.
    Clean,
    /// These records instead (one per object of a top-level array), with the reason when a
    /// value did not convert (the record is then malformed, with its other fields kept).
    Rewritten {
        records: Vec<Vec<u8>>,
        failed: Option<String>,
    },
    /// Not a record Spark reads: malformed, a row of nulls.
    Malformed(String),
}

/// Reads `record` with Spark's rules; see the module documentation.
pub(super) fn inspect(record: &[u8], columns: &Columns) -> Inspection {
    let mut cursor = Cursor {
        bytes: record,
        at: 0,
        quoted: Vec::new(),
    };
    cursor.skip_whitespace();
    let result = match cursor.peek() {
        Some(b'{') => cursor.object(columns).map(|object| {
            let trailing = cursor.rest_is_not_blank();
            (vec![object], trailing)
        }),
        Some(b'[') => cursor.array_of_objects(columns).map(|objects| {
            let trailing = cursor.rest_is_not_blank();
            (objects, trailing)
        }),
        Some(_) => match cursor.value() {
            Ok(_) => Err("a JSON value that is not an object".to_string()),
            Err(e) => Err(e),
        },
        None => Err("an empty record".to_string()),
    };
    let (objects, trailing) = match result {
        Ok(found) => found,
        Err(reason) => return Inspection::Malformed(reason),
    };
    let rewrites = objects.iter().any(|o| !o.edits.is_empty());
    // An array, even of one object, is always rewritten: arrow-json reads objects only.
    let object = objects.len() == 1 && objects[0].start == first_value_start(record);
    if object && !rewrites && !trailing {
        return Inspection::Clean;
    }
    let mut failed = None;
    let records = objects
        .into_iter()
        .map(|object| {
            if failed.is_none() {
                failed = object.failed.clone();
            }
            object.rewrite(record)
        })
        .collect();
    Inspection::Rewritten { records, failed }
}

/// Where the record's first value starts (after leading whitespace).
fn first_value_start(record: &[u8]) -> usize {
    record
        .iter()
        .position(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
        .unwrap_or(record.len())
}

/// A value replaced in the record: the byte range and what stands there instead.
#[derive(Debug)]
struct Edit {
    start: usize,
    end: usize,
    with: Vec<u8>,
}

/// One object of the record: where it is, and what to change in it.
#[derive(Debug)]
struct Object {
    start: usize,
    end: usize,
    edits: Vec<Edit>,
    /// Why a value did not convert (the first one).
    failed: Option<String>,
}

impl Object {
    fn rewrite(&self, record: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.end - self.start + 16);
        let mut at = self.start;
        for edit in &self.edits {
            out.extend_from_slice(&record[at..edit.start]);
            out.extend_from_slice(&edit.with);
            at = edit.end;
        }
        out.extend_from_slice(&record[at..self.end]);
        out
    }
}

/// A JSON value as Jackson tokenizes it.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    /// A string: its unescaped content.
    String(String),
    /// A number: whether it has a fraction or an exponent.
    Number {
        integral: bool,
    },
    /// `NaN`, `Infinity`, `+Infinity` or `-Infinity`, as the double it stands for.
    NonNumeric(f64),
    Bool,
    Null,
    /// An object or an array.
    Nested,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Single-quoted strings met, rewritten with double quotes, in record order.
    quoted: Vec<Edit>,
}

type Parsed<T> = Result<T, String>;

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    fn rest_is_not_blank(&mut self) -> bool {
        self.skip_whitespace();
        self.at < self.bytes.len()
    }

    fn expect(&mut self, byte: u8) -> Parsed<()> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.unexpected(&format!("'{}'", byte as char)))
        }
    }

    fn unexpected(&self, wanted: &str) -> String {
        match self.peek() {
            Some(byte) => format!(
                "unexpected character {:?} at byte {}, expected {wanted}",
                byte as char, self.at
            ),
            None => format!("unexpected end of the record, expected {wanted}"),
        }
    }

    /// A top-level array: one object per element, any other element makes it malformed.
    fn array_of_objects(&mut self, columns: &Columns) -> Parsed<Vec<Object>> {
        self.expect(b'[')?;
        let mut objects = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(objects);
        }
        loop {
            self.skip_whitespace();
            if self.peek() != Some(b'{') {
                return Err("a top-level array holding a value that is not an object".into());
            }
            let object = self.object(columns)?;
            if let Some(reason) = &object.failed {
                // Spark's partial results are per record: an element that does not convert
                // spoils the whole array.
                return Err(reason.clone());
            }
            objects.push(object);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(objects);
                }
                _ => return Err(self.unexpected("',' or ']'")),
            }
        }
    }

    /// A top-level object, checking each field of a column against the column's kind.
    fn object(&mut self, columns: &Columns) -> Parsed<Object> {
        let start = self.at;
        let first_quoted = self.quoted.len();
        let mut object = Object {
            start,
            end: start,
            edits: Vec::new(),
            failed: None,
        };
        // Per column given more than once: the text of its last value that converted.
        let mut converted: HashMap<String, Vec<u8>> = HashMap::new();
        self.members(|cursor, key| {
            let value_start = cursor.at;
            let quoted_in_value = cursor.quoted.len();
            let (edit, failure) = match columns.kinds.get(&key) {
                Some(kind) if kind.is_nested() => {
                    let converted = cursor.convert(kind, columns)?;
                    let unchanged = converted.text == cursor.bytes[value_start..cursor.at];
                    ((!unchanged).then_some(converted.text), converted.failed)
                }
                kind => {
                    let value = cursor.value()?;
                    let raw = &cursor.bytes[value_start..cursor.at];
                    match kind {
                        Some(kind) => check(kind, &value, raw, columns),
                        // A field of no column: only its syntax matters; arrow-json must not
                        // meet a token it refuses there either.
                        None if contains_non_numeric(&value, raw) => (Some(b"null".to_vec()), None),
                        None => (None, None),
                    }
                }
            };
            let value_end = cursor.at;
            let raw = &cursor.bytes[value_start..value_end];
            let edit = match (&failure, converted.get(&key)) {
                // Spark reads fields one by one: the earlier value stays.
                (Some(_), Some(earlier)) => Some(earlier.clone()),
                _ => edit,
            };
            if failure.is_none() && columns.kinds.contains_key(&key) {
                let text = match &edit {
                    Some(with) => with.clone(),
                    None if cursor.quoted.len() == quoted_in_value => raw.to_vec(),
                    None => b"null".to_vec(),
                };
                converted.insert(key.clone(), text);
            }
            if let Some(with) = edit {
                // The whole value is replaced: what was noted inside it goes.
                cursor.quoted.truncate(quoted_in_value);
                object.edits.push(Edit {
                    start: value_start,
                    end: value_end,
                    with,
                });
            }
            if let (Some(reason), None) = (failure, &object.failed) {
                object.failed = Some(format!("field '{key}': {reason}"));
            }
            Ok(())
        })?;
        object.end = self.at;
        object.edits.extend(self.quoted.drain(first_quoted..));
        object.edits.sort_by_key(|edit| edit.start);
        Ok(object)
    }

    /// A value of nested kind `kind`, rewritten in full (see the module documentation).
    fn convert(&mut self, kind: &Kind, columns: &Columns) -> Parsed<Converted> {
        let start = self.at;
        let quoted = self.quoted.len();
        let converted = match (kind, self.peek()) {
            (Kind::Struct(fields), Some(b'{')) => self.convert_struct(fields, columns)?,
            (Kind::List(item), Some(b'[')) => self.convert_list(item, columns)?,
            (Kind::Map(values), Some(b'{')) => self.convert_map(values, columns)?,
            _ => {
                let value = self.value()?;
                let raw = &self.bytes[start..self.at];
                let shown = || String::from_utf8_lossy(&raw[..raw.len().min(64)]).into_owned();
                match (kind, &value) {
                    (_, Value::Null) => Converted::ok(b"null".to_vec()),
                    (Kind::Struct(_), _) => Converted::lost(format!("{} is not a struct", shown())),
                    (Kind::List(_), _) => Converted::lost(format!("{} is not an array", shown())),
                    (Kind::Map(_), _) => Converted::lost(format!("{} is not a map", shown())),
                    (Kind::Other, Value::Nested | Value::NonNumeric(_)) => {
                        Converted::lost(format!("{} does not convert", shown()))
                    }
                    _ => match check(kind, &value, raw, columns) {
                        (_, Some(reason)) => Converted::lost(reason),
                        (Some(text), None) => Converted::ok(text),
                        (None, None) => Converted::ok(match &value {
                            // Written anew with double quotes (it may have had single ones).
                            Value::String(text) => json_string(text),
                            _ => raw.to_vec(),
                        }),
                    },
                }
            }
        };
        // The text is rebuilt: single-quoted strings inside need no edit of their own.
        self.quoted.truncate(quoted);
        Ok(converted)
    }

    /// The members of an object: each key (unescaped) and what `member` makes of its value.
    fn members(&mut self, mut member: impl FnMut(&mut Self, String) -> Parsed<()>) -> Parsed<()> {
        self.expect(b'{')?;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            self.skip_whitespace();
            let Value::String(key) = self.string()? else {
                unreachable!("string() returns strings")
            };
            self.skip_whitespace();
            self.expect(b':')?;
            self.skip_whitespace();
            member(self, key)?;
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.unexpected("',' or '}'")),
            }
        }
    }

    /// A struct: its declared fields converted (a field that does not convert is null, the
    /// struct kept), undeclared ones left out; a field given twice keeps its last value that
    /// converts.
    fn convert_struct(
        &mut self,
        fields: &HashMap<String, Kind>,
        columns: &Columns,
    ) -> Parsed<Converted> {
        let mut values: Vec<(String, Vec<u8>)> = Vec::new();
        let mut failed = None;
        self.members(|cursor, key| {
            let Some(kind) = fields.get(&key) else {
                cursor.value()?;
                return Ok(());
            };
            let converted = cursor.convert(kind, columns)?;
            if let Some(reason) = converted.failed {
                failed.get_or_insert_with(|| format!("field '{key}': {reason}"));
            }
            match values.iter_mut().find(|(k, _)| *k == key) {
                Some(_) if converted.lost => {}
                Some((_, text)) => *text = converted.text,
                None => values.push((key, converted.text)),
            }
            Ok(())
        })?;
        Ok(Converted {
            text: object_text(&values),
            failed,
            lost: false,
        })
    }

    /// An array: every element converted, or null as a whole when one is lost.
    fn convert_list(&mut self, item: &Kind, columns: &Columns) -> Parsed<Converted> {
        self.expect(b'[')?;
        let mut text = b"[".to_vec();
        let (mut failed, mut lost) = (None, None);
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Ok(Converted::ok(b"[]".to_vec()));
        }
        loop {
            self.skip_whitespace();
            let converted = self.convert(item, columns)?;
            match (converted.lost, converted.failed) {
                (true, Some(reason)) => {
                    lost.get_or_insert(reason);
                }
                (_, reason) => {
                    if text.len() > 1 {
                        text.push(b',');
                    }
                    text.extend_from_slice(&converted.text);
                    if let Some(reason) = reason {
                        failed.get_or_insert(reason);
                    }
                }
            }
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    break;
                }
                _ => return Err(self.unexpected("',' or ']'")),
            }
        }
        text.push(b']');
        Ok(match lost {
            Some(reason) => Converted::lost(format!("an element: {reason}")),
            None => Converted {
                text,
                failed,
                lost: false,
            },
        })
    }

    /// A map: every value converted (a repeated key kept, as Spark keeps it), or null as a
    /// whole when one is lost.
    fn convert_map(&mut self, values: &Kind, columns: &Columns) -> Parsed<Converted> {
        let mut entries: Vec<(String, Vec<u8>)> = Vec::new();
        let (mut failed, mut lost) = (None, None);
        self.members(|cursor, key| {
            let converted = cursor.convert(values, columns)?;
            match (converted.lost, converted.failed) {
                (true, Some(reason)) => {
                    lost.get_or_insert_with(|| format!("key '{key}': {reason}"));
                }
                (_, reason) => {
                    if let Some(reason) = reason {
                        failed.get_or_insert_with(|| format!("key '{key}': {reason}"));
                    }
                    // Every entry is kept, a repeated key too, as Spark keeps them.
                    entries.push((key, converted.text));
                }
            }
            Ok(())
        })?;
        if let Some(reason) = lost {
            return Ok(Converted::lost(reason));
        }
        Ok(Converted {
            text: object_text(&entries),
            failed,
            lost: false,
        })
    }

    /// Any value, validated with Jackson's rules; nested values are walked without recursion.
    fn value(&mut self) -> Parsed<Value> {
        match self.peek() {
            Some(b'{' | b'[') => {
                self.nested()?;
                Ok(Value::Nested)
            }
            _ => self.scalar(),
        }
    }

    fn scalar(&mut self) -> Parsed<Value> {
        match self.peek() {
            Some(b'"' | b'\'') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.word(b"true", Value::Bool),
            Some(b'f') => self.word(b"false", Value::Bool),
            Some(b'n') => self.word(b"null", Value::Null),
            Some(b'N') => self.word(b"NaN", Value::NonNumeric(f64::NAN)),
            Some(b'I') => self.word(b"Infinity", Value::NonNumeric(f64::INFINITY)),
            Some(b'+') => {
                let word: &[u8] = if self.bytes[self.at..].starts_with(b"+INF")
                    && !self.bytes[self.at..].starts_with(b"+Infinity")
                {
                    b"+INF"
                } else {
                    b"+Infinity"
                };
                self.word(word, Value::NonNumeric(f64::INFINITY))
            }
            _ => Err(self.unexpected("a JSON value")),
        }
    }

    fn word(&mut self, word: &[u8], value: Value) -> Parsed<Value> {
        if self.bytes[self.at..].starts_with(word) {
            self.at += word.len();
            // A word runs to the next delimiter: `trueish` is not `true`.
            if matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_') {
                return Err(self.unexpected("a delimiter after a literal"));
            }
            Ok(value)
        } else {
            Err(self.unexpected("a JSON value"))
        }
    }

    /// A number in JSON's grammar (no leading zeros, as Jackson), or `-Infinity`.
    fn number(&mut self) -> Parsed<Value> {
        if self.bytes[self.at..].starts_with(b"-Infinity") {
            return self.word(b"-Infinity", Value::NonNumeric(f64::NEG_INFINITY));
        }
        if self.bytes[self.at..].starts_with(b"-INF") {
            return self.word(b"-INF", Value::NonNumeric(f64::NEG_INFINITY));
        }
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.at += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err("a number with a leading zero".into());
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.unexpected("a digit")),
        }
        let mut integral = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            integral = false;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.unexpected("a digit after the decimal point"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            integral = false;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.unexpected("a digit in the exponent"));
            }
            self.digits();
        }
        if matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'.') {
            return Err(self.unexpected("a delimiter after a number"));
        }
        Ok(Value::Number { integral })
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
    }

    /// A string in double or single quotes, unescaped; raw control characters and bad escapes
    /// are refused, as Jackson. A single-quoted one is noted for rewriting with double quotes.
    fn string(&mut self) -> Parsed<Value> {
        let start = self.at;
        let quote = match self.peek() {
            Some(quote @ (b'"' | b'\'')) => quote,
            _ => return Err(self.unexpected("a string")),
        };
        self.at += 1;
        let mut text = Vec::new();
        loop {
            let Some(byte) = self.peek() else {
                return Err("an unterminated string".into());
            };
            self.at += 1;
            match byte {
                _ if byte == quote => break,
                b'\\' => {
                    let escaped = self.peek().ok_or("an unterminated escape")?;
                    self.at += 1;
                    match escaped {
                        b'"' | b'\\' | b'/' => text.push(escaped),
                        b'\'' if quote == b'\'' => text.push(escaped),
                        b'b' => text.push(8),
                        b'f' => text.push(12),
                        b'n' => text.push(b'\n'),
                        b'r' => text.push(b'\r'),
                        b't' => text.push(b'\t'),
                        b'u' => {
                            let unit = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&unit)
                                && self.bytes[self.at..].starts_with(b"\\u")
                            {
                                self.at += 2;
                                let low = self.hex4()?;
                                char::decode_utf16([unit, low]).next().and_then(Result::ok)
                            } else {
                                char::from_u32(u32::from(unit))
                            };
                            let c = c.unwrap_or(char::REPLACEMENT_CHARACTER);
                            text.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                        }
                        _ => return Err(format!("an invalid escape '\\{}'", escaped as char)),
                    }
                }
                0..0x20 => return Err("a raw control character in a string".into()),
                _ => text.push(byte),
            }
        }
        let text = String::from_utf8(text).map_err(|_| "invalid UTF-8 in a string")?;
        if quote == b'\'' {
            self.quoted.push(Edit {
                start,
                end: self.at,
                with: json_string(&text),
            });
        }
        Ok(Value::String(text))
    }

    fn hex4(&mut self) -> Parsed<u16> {
        let digits = self
            .bytes
            .get(self.at..self.at + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u16::from_str_radix(d, 16).ok())
            .ok_or("an invalid \\u escape")?;
        self.at += 4;
        Ok(digits)
    }

    /// An object or an array, walked with an explicit stack (the depth limit was checked
    /// before, but no recursion is needed).
    fn nested(&mut self) -> Parsed<()> {
        let mut stack: Vec<u8> = Vec::new();
        loop {
            self.skip_whitespace();
            match self.peek() {
                Some(b'{') => {
                    self.at += 1;
                    stack.push(b'}');
                    self.skip_whitespace();
                    if self.peek() == Some(b'}') {
                        self.at += 1;
                        stack.pop();
                    } else {
                        self.string()?;
                        self.skip_whitespace();
                        self.expect(b':')?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.at += 1;
                    stack.push(b']');
                    self.skip_whitespace();
                    if self.peek() == Some(b']') {
                        self.at += 1;
                        stack.pop();
                    } else {
                        continue;
                    }
                }
                _ => {
                    self.scalar()?;
                }
            }
            // After a value: close what ends here, or go on to the next element.
            loop {
                let Some(&close) = stack.last() else {
                    return Ok(());
                };
                self.skip_whitespace();
                match self.peek() {
                    Some(b',') => {
                        self.at += 1;
                        if close == b'}' {
                            self.skip_whitespace();
                            self.string()?;
                            self.skip_whitespace();
                            self.expect(b':')?;
                        }
                        break;
                    }
                    Some(byte) if byte == close => {
                        self.at += 1;
                        stack.pop();
                    }
                    _ => {
                        return Err(self.unexpected(&format!("',' or '{}'", close as char)));
                    }
                }
            }
        }
    }
}

/// Whether a value holds a token arrow-json refuses (`NaN`, the infinities).
fn contains_non_numeric(value: &Value, raw: &[u8]) -> bool {
    match value {
        Value::NonNumeric(_) => true,
        Value::Nested => nested_has_non_numeric(raw),
        _ => false,
    }
}

/// Whether `NaN` or `Infinity` stands outside a string in nested JSON text.
fn nested_has_non_numeric(raw: &[u8]) -> bool {
    let (mut in_string, mut escaped) = (false, false);
    for (i, &byte) in raw.iter().enumerate() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if byte == b'"' {
            in_string = true;
        } else if raw[i..].starts_with(b"NaN") || raw[i..].starts_with(b"Infinity") {
            return true;
        }
    }
    false
}

/// The JSON text of an object of `members` (key, value text), in order.
fn object_text(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut text = b"{".to_vec();
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            text.push(b',');
        }
        text.extend_from_slice(&json_string(key));
        text.push(b':');
        text.extend_from_slice(value);
    }
    text.push(b'}');
    text
}

/// The JSON text of a string holding `text`.
fn json_string(text: &str) -> Vec<u8> {
    serde_json::to_vec(text).unwrap_or_else(|_| b"null".to_vec())
}

/// What a value becomes in its column: the replacement text if it must be rewritten, and the
/// reason if it does not convert (the replacement is then `null`).
fn check(
    kind: &Kind,
    value: &Value,
    raw: &[u8],
    columns: &Columns,
) -> (Option<Vec<u8>>, Option<String>) {
    let fail = |what: &str| {
        let shown = String::from_utf8_lossy(&raw[..raw.len().min(64)]).into_owned();
        (
            Some(b"null".to_vec()),
            Some(format!("{shown} is not {what}")),
        )
    };
    let non_numeric = |v: f64| {
        let text = if v.is_nan() {
            "NaN"
        } else if v > 0.0 {
            "inf"
        } else {
            "-inf"
        };
        Some(json_string(text))
    };
    match (kind, value) {
        (_, Value::Null) | (Kind::Other, _) => (None, None),
        // Nested kinds are converted by `Cursor::convert`, never checked as a scalar.
        (Kind::Struct(_) | Kind::List(_) | Kind::Map(_), _) => (None, None),
        (Kind::Integer { min, max }, Value::Number { integral: true }) => {
            let fits = std::str::from_utf8(raw)
                .ok()
                .and_then(|t| t.parse::<i128>().ok())
                .is_some_and(|v| (*min..=*max).contains(&v));
            if fits {
                (None, None)
            } else {
                fail("an integer of the column's range")
            }
        }
        (Kind::Integer { .. }, Value::String(text)) if columns.allow_numeric_strings => {
            match text.trim().parse::<i128>() {
                Ok(_) => (None, None),
                Err(_) => fail("an integer"),
            }
        }
        (Kind::Integer { .. }, _) => fail("an integer"),
        (Kind::Float, Value::Number { .. }) => (None, None),
        (Kind::Float, Value::NonNumeric(v)) => (non_numeric(*v), None),
        (Kind::Float, Value::String(text)) => match text.as_str() {
            "NaN" => (non_numeric(f64::NAN), None),
            "+INF" | "+Infinity" | "Infinity" => (non_numeric(f64::INFINITY), None),
            "-INF" | "-Infinity" => (non_numeric(f64::NEG_INFINITY), None),
            _ if columns.allow_numeric_strings && text.trim().parse::<f64>().is_ok() => {
                (None, None)
            }
            _ => fail("a number"),
        },
        (Kind::Float, _) => fail("a number"),
        (Kind::Boolean, Value::Bool) => (None, None),
        (Kind::Boolean, _) => fail("a boolean"),
        (Kind::String, Value::String(_)) => (None, None),
        // Numbers and literals keep their text in arrow-json too; the rest is rewritten to
        // the raw text, as Spark keeps it.
        (Kind::String, Value::Number { .. } | Value::Bool) => (None, None),
        (Kind::String, Value::NonNumeric(_) | Value::Nested) => {
            (Some(json_string(&String::from_utf8_lossy(raw))), None)
        }
    }
}
