//! Shared fixtures: the seed's ticker schema, ticker JSON lines and row rendering.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::util::pretty::pretty_format_batches;

/// The seed producer's normalized ticker message.
pub fn ticker_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, true),
        Field::new("close_price", DataType::Float64, true),
        Field::new("open_price", DataType::Float64, true),
        Field::new("high_price", DataType::Float64, true),
        Field::new("low_price", DataType::Float64, true),
        Field::new("volume", DataType::Float64, true),
        Field::new("quote_volume", DataType::Float64, true),
        Field::new("timestamp", DataType::Int64, true),
    ]))
}

/// One normalized ticker message.
pub fn ticker(symbol: &str, close: f64, timestamp: i64) -> String {
    format!(
        r#"{{"symbol":"{symbol}","close_price":{close},"open_price":{open},"high_price":{high},"low_price":{low},"volume":1000.5,"quote_volume":{quote},"timestamp":{timestamp}}}"#,
        open = close - 1.0,
        high = close + 2.0,
        low = close - 3.0,
        quote = close * 1000.5,
    )
}

/// Renders batches as an ASCII table (one string to compare).
pub fn render(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches)
        .map(|t| t.to_string())
        .unwrap_or_else(|e| e.to_string())
}

/// Writes `lines` as a JSON-lines file `name` in `dir`.
pub fn write_lines(dir: &std::path::Path, name: &str, lines: &[String]) {
    std::fs::write(dir.join(name), lines.join("\n") + "\n").expect("write test input");
}
