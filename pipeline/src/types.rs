//! Column types of source tables: SQL type names, as DataFusion reads them, to Arrow types.

use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};

/// The Arrow type of a SQL column type, uppercased, words separated by one space and nothing
/// around punctuation (`TIMESTAMP(3)`, `DOUBLE PRECISION`).
///
/// Unquoted names follow DataFusion: `VARCHAR`/`TEXT`/`STRING` → `Utf8`, `BIGINT` → `Int64`,
/// `DOUBLE` → `Float64`, `TIMESTAMP(p)` → timestamp with `p` = 0, 3, 6 (default) or 9
/// fractional digits, `… WITH TIME ZONE` / `TIMESTAMPTZ` in UTC.
pub fn sql_type(text: &str) -> Result<DataType, String> {
    if text.contains("NOT NULL") || text.ends_with(" NULL") {
        return Err("NULL / NOT NULL constraints are not supported on source columns: every column is nullable (filter with WHERE … IS NOT NULL)".into());
    }
    let (base, args) = match text.split_once('(') {
        Some((base, rest)) => {
            let (args, tail) = rest
                .split_once(')')
                .ok_or_else(|| format!("unbalanced parentheses in type '{text}'"))?;
            (format!("{}{}", base.trim(), tail), Some(args.to_string()))
        }
        None => (text.to_string(), None),
    };
    let number = |s: &str| {
        s.trim()
            .parse::<u8>()
            .map_err(|_| format!("'{s}' in type '{text}' is not a small number"))
    };
    let utc = || Some(Arc::<str>::from("UTC"));
    let timestamp = |zone: Option<Arc<str>>| -> Result<DataType, String> {
        let unit = match args.as_deref().map(number).transpose()? {
            None | Some(6) => TimeUnit::Microsecond,
            Some(0) => TimeUnit::Second,
            Some(3) => TimeUnit::Millisecond,
            Some(9) => TimeUnit::Nanosecond,
            Some(p) => {
                return Err(format!(
                    "TIMESTAMP({p}): the precision must be 0, 3, 6 or 9"
                ));
            }
        };
        Ok(DataType::Timestamp(unit, zone))
    };
    Ok(match base.as_str() {
        "VARCHAR" | "TEXT" | "STRING" | "CHAR" | "CHARACTER VARYING" => DataType::Utf8,
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "TINYINT" => DataType::Int8,
        "SMALLINT" => DataType::Int16,
        "INT" | "INTEGER" => DataType::Int32,
        "BIGINT" => DataType::Int64,
        "FLOAT" | "REAL" => DataType::Float32,
        "DOUBLE" | "DOUBLE PRECISION" => DataType::Float64,
        "DATE" => DataType::Date32,
        "TIMESTAMP" | "TIMESTAMP WITHOUT TIME ZONE" => timestamp(None)?,
        "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => timestamp(utc())?,
        "DECIMAL" | "NUMERIC" => {
            let args = args
                .ok_or_else(|| format!("{base} needs a precision and scale, e.g. {base}(18,8)"))?;
            let (precision, scale) = args
                .split_once(',')
                .ok_or_else(|| format!("{base}({args}): expected {base}(precision,scale)"))?;
            let (precision, scale) = (number(precision)?, number(scale)?);
            if !(1..=38).contains(&precision) || scale > precision {
                return Err(format!(
                    "{base}({precision},{scale}): precision 1–38 and scale ≤ precision"
                ));
            }
            DataType::Decimal128(precision, scale as i8)
        }
        "" => return Err("a type is missing (e.g. VARCHAR, BIGINT, DOUBLE, TIMESTAMP(3))".into()),
        other => {
            return Err(format!(
                "unknown type '{other}' (VARCHAR, BOOLEAN, TINYINT, SMALLINT, INT, BIGINT, FLOAT, DOUBLE, DECIMAL(p,s), DATE, TIMESTAMP(p), TIMESTAMP WITH TIME ZONE, ARRAY<type>, MAP<VARCHAR, type>, STRUCT<name: type, …>)"
            ));
        }
    })
}
