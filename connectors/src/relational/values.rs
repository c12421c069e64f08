//! Typed access to the values of one table column in an Arrow batch, shared by the PostgreSQL
//! binary `COPY` encoder and the SQLite statement binder.
//!
//! A [`ColumnValues`] is built once per column and batch (the downcast happens there), then
//! [`ColumnValues::get`] reads row after row without allocating.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};

use super::table::SqlColumn;

/// One value of a row, in the form both back ends write.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    /// SQL `NULL`.
    Null,
    /// Text.
    Text(&'a str),
    /// A float (`double precision`, or `real` when narrowed by the encoder).
    Float(f64),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// An instant, in microseconds since the Unix epoch.
    TimestampMicros(i64),
    /// A date, in days since the Unix epoch.
    Date(i32),
    /// An exact decimal: `digits × 10^-scale`.
    Decimal(i128, i8),
    /// Bytes.
    Bytes(&'a [u8]),
}

/// The values of one table column of a batch, downcast once.
pub(crate) struct ColumnValues<'a> {
    array: &'a dyn Array,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Utf8,
    LargeUtf8,
    Utf8View,
    Float64,
    Float32,
    Int64,
    Int32,
    Int16,
    Int8,
    UInt64,
    UInt32,
    UInt16,
    UInt8,
    Boolean,
    Timestamp(TimeUnit),
    Date32,
    Decimal(i8),
    Binary,
    LargeBinary,
    BinaryView,
}

impl<'a> ColumnValues<'a> {
    /// The values of `column` in `batch` (a struct field, for a flattened column).
    ///
    /// The layout was derived from the batch's schema, so the types match; a column whose
    /// type has no mapping was refused when the sink opened.
    pub(crate) fn new(batch: &'a RecordBatch, column: &SqlColumn) -> Self {
        let array: &'a ArrayRef = batch.column(column.column);
        let array: &'a dyn Array = match column.field {
            Some(field) => array.as_struct().column(field).as_ref(),
            None => array.as_ref(),
        };
        let kind = match array.data_type() {
            DataType::Utf8 => Kind::Utf8,
            DataType::LargeUtf8 => Kind::LargeUtf8,
            DataType::Utf8View => Kind::Utf8View,
            DataType::Float64 => Kind::Float64,
            DataType::Float32 => Kind::Float32,
            DataType::Int64 => Kind::Int64,
            DataType::Int32 => Kind::Int32,
            DataType::Int16 => Kind::Int16,
            DataType::Int8 => Kind::Int8,
            DataType::UInt64 => Kind::UInt64,
            DataType::UInt32 => Kind::UInt32,
            DataType::UInt16 => Kind::UInt16,
            DataType::UInt8 => Kind::UInt8,
            DataType::Boolean => Kind::Boolean,
            DataType::Timestamp(unit, _) => Kind::Timestamp(*unit),
            DataType::Date32 => Kind::Date32,
            DataType::Decimal128(_, scale) => Kind::Decimal(*scale),
            DataType::Binary => Kind::Binary,
            DataType::LargeBinary => Kind::LargeBinary,
            DataType::BinaryView => Kind::BinaryView,
            other => unreachable!("SqlType::of refuses {other} before any batch is written"),
        };
        Self { array, kind }
    }

    /// The value at `row`.
    pub(crate) fn get(&self, row: usize) -> Value<'a> {
        let array = self.array;
        if array.is_null(row) {
            return Value::Null;
        }
        match self.kind {
            Kind::Utf8 => Value::Text(array.as_string::<i32>().value(row)),
            Kind::LargeUtf8 => Value::Text(array.as_string::<i64>().value(row)),
            Kind::Utf8View => Value::Text(array.as_string_view().value(row)),
            Kind::Float64 => Value::Float(array.as_primitive::<Float64Type>().value(row)),
            Kind::Float32 => Value::Float(array.as_primitive::<Float32Type>().value(row).into()),
            Kind::Int64 => Value::Int(array.as_primitive::<Int64Type>().value(row)),
            Kind::Int32 => Value::Int(array.as_primitive::<Int32Type>().value(row).into()),
            Kind::Int16 => Value::Int(array.as_primitive::<Int16Type>().value(row).into()),
            Kind::Int8 => Value::Int(array.as_primitive::<Int8Type>().value(row).into()),
            Kind::UInt64 => Value::Decimal(array.as_primitive::<UInt64Type>().value(row).into(), 0),
            Kind::UInt32 => Value::Int(array.as_primitive::<UInt32Type>().value(row).into()),
            Kind::UInt16 => Value::Int(array.as_primitive::<UInt16Type>().value(row).into()),
            Kind::UInt8 => Value::Int(array.as_primitive::<UInt8Type>().value(row).into()),
            Kind::Boolean => Value::Bool(array.as_boolean().value(row)),
            Kind::Timestamp(unit) => Value::TimestampMicros(match unit {
                TimeUnit::Second => array
                    .as_primitive::<TimestampSecondType>()
                    .value(row)
                    .saturating_mul(1_000_000),
                TimeUnit::Millisecond => array
                    .as_primitive::<TimestampMillisecondType>()
                    .value(row)
                    .saturating_mul(1_000),
                TimeUnit::Microsecond => {
                    array.as_primitive::<TimestampMicrosecondType>().value(row)
                }
                TimeUnit::Nanosecond => array
                    .as_primitive::<TimestampNanosecondType>()
                    .value(row)
                    .div_euclid(1_000),
            }),
            Kind::Date32 => Value::Date(array.as_primitive::<Date32Type>().value(row)),
            Kind::Decimal(scale) => {
                Value::Decimal(array.as_primitive::<Decimal128Type>().value(row), scale)
            }
            Kind::Binary => Value::Bytes(array.as_binary::<i32>().value(row)),
            Kind::LargeBinary => Value::Bytes(array.as_binary::<i64>().value(row)),
            Kind::BinaryView => Value::Bytes(array.as_binary_view().value(row)),
        }
    }
}

/// A decimal `digits × 10^-scale` as text (`-12.3400`), the form SQLite stores.
pub(crate) fn decimal_text(digits: i128, scale: i8) -> String {
    if scale <= 0 {
        let zeros = "0".repeat(usize::from(scale.unsigned_abs()));
        return if digits == 0 {
            "0".into()
        } else {
            format!("{digits}{zeros}")
        };
    }
    let scale = usize::from(scale.unsigned_abs());
    let magnitude = format!("{:0>width$}", digits.unsigned_abs(), width = scale + 1);
    let (whole, fraction) = magnitude.split_at(magnitude.len() - scale);
    let sign = if digits < 0 { "-" } else { "" };
    format!("{sign}{whole}.{fraction}")
}
