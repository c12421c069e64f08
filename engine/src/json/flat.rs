//! The fast path of [`JsonDecoder`](crate::JsonDecoder): flat JSON objects of scalar values,
//! decoded straight into Arrow builders.
//!
//! Most streaming records are flat objects (a ticker, a trade): one level of fields holding
//! strings without escapes, numbers, booleans and nulls. arrow-json's general decoder first
//! writes every record to a tape and converts the tape column by column; for flat records that
//! is twice the work needed. [`FlatDecoder`] recognizes exactly that shape in one pass and
//! converts values as arrow-json does (the same number parser, the same coercions into string
//! columns), so the rows it decodes are the rows arrow-json would give.
//!
//! It accepts a record only when sure of that. Anything else — an escape, a nested value, a
//! duplicate field, a value of a kind its column does not take as-is, a number that does not
//! parse, invalid UTF-8, a broken record — is refused, and the caller decodes it and the rest
//! of its chunk with arrow-json, which also owns every malformed-record decision.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, RecordBatchOptions,
    StringBuilder, make_array,
};
use arrow::datatypes::{DataType, SchemaRef};

use crate::error::Result;

/// A column's builder, which also says how JSON values convert into it.
enum Column {
    /// Strings as they are; numbers and booleans as their JSON text (arrow-json's
    /// `coerce_primitive`).
    Utf8(StringBuilder),
    /// Numbers, and strings holding a number (arrow-json's coercion), parsed by `lexical-core`.
    Float64(Float64Builder),
    /// Integer numbers: `Int64` columns, and timestamps, whose numbers are in the column's unit.
    Int64(Int64Builder),
    /// `true` and `false`.
    Boolean(BooleanBuilder),
}

/// One field's converted value in the record being decoded, appended once the whole record
/// is known to be accepted.
#[derive(Clone, Copy)]
enum Cell {
    Null,
    /// The text at these byte offsets of the record.
    Text(usize, usize),
    Float(f64),
    Int(i64),
    Bool(bool),
}

/// A raw JSON scalar, by its byte offsets in the record.
enum Token {
    Null,
    String(usize, usize),
    Number(Number),
    Literal {
        start: usize,
        end: usize,
        value: bool,
    },
}

/// A number token: its text, and its digits when they are few enough to compute its value
/// exactly without a general parser.
#[derive(Clone, Copy)]
struct Number {
    start: usize,
    end: usize,
    negative: bool,
    /// The decimal digits, without the point, when there are at most 19 of them.
    digits: Option<u64>,
    /// How many of them follow the decimal point.
    fraction: usize,
    exponent: bool,
}

/// Powers of ten exactly representable as `f64`.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

impl Number {
    /// The value as `f64`, correctly rounded, so equal to `lexical-core`'s (arrow-json's).
    fn to_f64(self, record: &[u8]) -> Option<f64> {
        // Clinger's fast path: an integer below 2^53 divided by an exact power of ten is a
        // single correctly rounded operation.
        if let Some(digits) = self.digits.filter(|&d| d <= 1 << 53 && !self.exponent)
            && let Some(power) = EXACT_POWERS_OF_TEN.get(self.fraction)
        {
            let value = digits as f64 / power;
            return Some(if self.negative { -value } else { value });
        }
        lexical_core::parse::<f64>(&record[self.start..self.end]).ok()
    }

    /// The value as `i64` when the number is an integer (arrow-json's first attempt).
    fn to_i64(self, record: &[u8]) -> Option<i64> {
        if let Some(digits) = self.digits.filter(|_| self.fraction == 0 && !self.exponent)
            && let Ok(value) = i64::try_from(digits)
        {
            return Some(if self.negative { -value } else { value });
        }
        lexical_core::parse::<i64>(&record[self.start..self.end]).ok()
    }
}

/// Decodes flat JSON objects into the columns of a schema; see the module documentation.
pub(super) struct FlatDecoder {
    schema: SchemaRef,
    names: Vec<Box<[u8]>>,
    columns: Vec<Column>,
    /// The current record's value for each column.
    cells: Vec<Cell>,
    /// Whether the current record named each column already (duplicates are refused).
    seen: Vec<bool>,
    rows: usize,
    /// Whether strings holding numbers convert into numeric columns.
    numeric_strings: bool,
}

impl FlatDecoder {
    /// A decoder for `schema`, or `None` when a column has a type the fast path does not
    /// convert (those schemas always take arrow-json's path).
    pub(super) fn new(schema: &SchemaRef, capacity: usize, numeric_strings: bool) -> Option<Self> {
        let columns = schema
            .fields()
            .iter()
            .map(|field| new_column(field.data_type(), capacity))
            .collect::<Option<Vec<_>>>()?;
        // Two columns of one name: arrow-json sends both fields to the first.
        let names: std::collections::HashSet<_> =
            schema.fields().iter().map(|f| f.name()).collect();
        if names.len() != schema.fields().len() {
            return None;
        }
        // A name that needs an escape in JSON is never matched as written (see `key`).
        if schema.fields().iter().any(|f| {
            f.name()
                .bytes()
                .any(|b| b == b'"' || b == b'\\' || b < 0x20)
        }) {
            return None;
        }
        let width = columns.len();
        Some(Self {
            schema: Arc::clone(schema),
            names: schema
                .fields()
                .iter()
                .map(|f| f.name().as_bytes().into())
                .collect(),
            columns,
            cells: vec![Cell::Null; width],
            seen: vec![false; width],
            rows: 0,
            numeric_strings,
        })
    }

    /// Decodes `record` into a new row and returns `true`, or returns `false` and leaves the
    /// rows as they were when the record is not one the fast path is sure of.
    pub(super) fn push(&mut self, record: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(record) else {
            return false;
        };
        if self.parse(record).is_none() {
            return false;
        }
        for (column, cell) in self.columns.iter_mut().zip(&self.cells) {
            match (column, *cell) {
                (Column::Utf8(b), Cell::Text(start, end)) => b.append_option(text.get(start..end)),
                (Column::Float64(b), Cell::Float(v)) => b.append_value(v),
                (Column::Int64(b), Cell::Int(v)) => b.append_value(v),
                (Column::Boolean(b), Cell::Bool(v)) => b.append_value(v),
                (Column::Utf8(b), _) => b.append_null(),
                (Column::Float64(b), _) => b.append_null(),
                (Column::Int64(b), _) => b.append_null(),
                (Column::Boolean(b), _) => b.append_null(),
            }
        }
        self.rows += 1;
        true
    }

    /// The rows decoded so far, in the schema given to [`Self::new`].
    pub(super) fn finish(&mut self) -> Result<RecordBatch> {
        let mut arrays = Vec::with_capacity(self.columns.len());
        for (column, field) in self.columns.iter_mut().zip(self.schema.fields()) {
            let array: ArrayRef = match column {
                Column::Utf8(b) => Arc::new(b.finish()),
                Column::Float64(b) => Arc::new(b.finish()),
                Column::Boolean(b) => Arc::new(b.finish()),
                Column::Int64(b) => {
                    let data = b.finish().into_data();
                    if field.data_type() == &DataType::Int64 {
                        make_array(data)
                    } else {
                        make_array(
                            data.into_builder()
                                .data_type(field.data_type().clone())
                                .build()?,
                        )
                    }
                }
            };
            arrays.push(array);
        }
        let rows = std::mem::take(&mut self.rows);
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?)
    }

    /// Parses `record` into `self.cells`; `None` refuses it.
    fn parse(&mut self, record: &[u8]) -> Option<()> {
        self.cells.fill(Cell::Null);
        self.seen.fill(false);
        let mut cursor = Cursor {
            bytes: record,
            at: 0,
        };
        cursor.skip_whitespace();
        cursor.expect(b'{')?;
        cursor.skip_whitespace();
        if cursor.peek() == Some(b'}') {
            cursor.at += 1;
        } else {
            // Fields usually come in schema order: look for the next one first.
            let mut hint = 0;
            loop {
                let column = self.key(&mut cursor, hint)?;
                cursor.skip_whitespace();
                cursor.expect(b':')?;
                cursor.skip_whitespace();
                let token = cursor.scalar()?;
                if let Some(index) = column {
                    if std::mem::replace(&mut self.seen[index], true) {
                        return None;
                    }
                    self.cells[index] =
                        convert(&self.columns[index], token, record, self.numeric_strings)?;
                    hint = index + 1;
                }
                cursor.skip_whitespace();
                match cursor.next()? {
                    b',' => cursor.skip_whitespace(),
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        cursor.skip_whitespace();
        (cursor.at == record.len()).then_some(())
    }

    /// Reads a field name: `Some(None)` for a field of no column. Names match exactly, as in
    /// arrow-json; column `hint` is tried first, in place.
    fn key(&self, cursor: &mut Cursor<'_>, hint: usize) -> Option<Option<usize>> {
        cursor.expect(b'"')?;
        if let Some(name) = self.names.get(hint) {
            let rest = &cursor.bytes[cursor.at..];
            if rest.get(name.len()) == Some(&b'"') && rest.starts_with(name) {
                cursor.at += name.len() + 1;
                return Some(Some(hint));
            }
        }
        let (start, end) = cursor.string_content()?;
        let key = &cursor.bytes[start..end];
        Some(self.names.iter().position(|name| **name == *key))
    }
}

fn new_column(data_type: &DataType, capacity: usize) -> Option<Column> {
    Some(match data_type {
        DataType::Utf8 => Column::Utf8(StringBuilder::with_capacity(capacity, capacity * 16)),
        DataType::Float64 => Column::Float64(Float64Builder::with_capacity(capacity)),
        DataType::Int64 | DataType::Timestamp(_, _) => {
            Column::Int64(Int64Builder::with_capacity(capacity))
        }
        DataType::Boolean => Column::Boolean(BooleanBuilder::with_capacity(capacity)),
        _ => return None,
    })
}

/// Converts a scalar as arrow-json (with `coerce_primitive`) would, or refuses it where
/// arrow-json would do something else than this simple conversion (even if only an error) or
/// where Spark's rules decide ([`super::spark`]): a string in a numeric column unless
/// `numeric_strings`.
fn convert(column: &Column, token: Token, record: &[u8], numeric_strings: bool) -> Option<Cell> {
    Some(match (column, token) {
        (_, Token::Null) => Cell::Null,
        (Column::Utf8(_), Token::String(start, end))
        | (Column::Utf8(_), Token::Number(Number { start, end, .. }))
        | (Column::Utf8(_), Token::Literal { start, end, .. }) => Cell::Text(start, end),
        // arrow-json parses both with `lexical_core::parse::<f64>` (strings first try exactly
        // that, then retry trimmed, which is refused here).
        (Column::Float64(_), Token::Number(number)) => Cell::Float(number.to_f64(record)?),
        (Column::Float64(_), Token::String(start, end)) if numeric_strings => {
            Cell::Float(lexical_core::parse::<f64>(&record[start..end]).ok()?)
        }
        // arrow-json tries `lexical_core::parse::<i64>` first, then a float it casts: refused.
        (Column::Int64(_), Token::Number(number)) => Cell::Int(number.to_i64(record)?),
        (Column::Boolean(_), Token::Literal { value, .. }) => Cell::Bool(value),
        _ => return None,
    })
}

/// A position in a record.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.at += 1;
        }
    }

    /// A string without escapes or control characters: the offsets of its content.
    fn string(&mut self) -> Option<(usize, usize)> {
        self.expect(b'"')?;
        self.string_content()
    }

    /// The rest of a string whose opening quote was read.
    fn string_content(&mut self) -> Option<(usize, usize)> {
        let start = self.at;
        let length = self.bytes[start..]
            .iter()
            .position(|&b| b == b'"' || b == b'\\' || b < 0x20)?;
        let end = start + length;
        if self.bytes[end] != b'"' {
            return None;
        }
        self.at = end + 1;
        Some((start, end))
    }

    /// A scalar value; objects, arrays and anything not valid JSON are refused.
    fn scalar(&mut self) -> Option<Token> {
        match self.peek()? {
            b'"' => self.string().map(|(start, end)| Token::String(start, end)),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true", Some(true)),
            b'f' => self.literal(b"false", Some(false)),
            b'n' => self.literal(b"null", None),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8], value: Option<bool>) -> Option<Token> {
        let start = self.at;
        let end = start + word.len();
        if self.bytes.get(start..end)? != word {
            return None;
        }
        self.at = end;
        Some(match value {
            Some(value) => Token::Literal { start, end, value },
            None => Token::Null,
        })
    }

    /// A number in JSON's grammar, which must end where arrow-json's tokenizer ends it (so
    /// both see the same text): not followed by another of its number characters.
    fn number(&mut self) -> Option<Token> {
        let start = self.at;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let mut digits = 0;
        let count = match self.peek() {
            Some(b'0') => {
                self.at += 1;
                1
            }
            Some(b'1'..=b'9') => self.digits(&mut digits),
            _ => return None,
        };
        let mut fraction = 0;
        if self.peek() == Some(b'.') {
            self.at += 1;
            fraction = self.digits(&mut digits);
            if fraction == 0 {
                return None;
            }
        }
        let exponent = matches!(self.peek(), Some(b'e' | b'E'));
        if exponent {
            self.at += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.at += 1;
            }
            if self.digits(&mut 0) == 0 {
                return None;
            }
        }
        if matches!(
            self.peek(),
            Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
        ) {
            return None;
        }
        Some(Token::Number(Number {
            start,
            end: self.at,
            negative,
            // 19 decimal digits always fit a u64.
            digits: (count + fraction <= 19).then_some(digits),
            fraction,
            exponent,
        }))
    }

    /// Reads decimal digits, accumulating them into `value`; returns how many. The value
    /// wraps past 19 digits, which the caller then ignores.
    fn digits(&mut self, value: &mut u64) -> usize {
        let start = self.at;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            *value = value.wrapping_mul(10).wrapping_add(u64::from(digit - b'0'));
            self.at += 1;
        }
        self.at - start
    }
}
