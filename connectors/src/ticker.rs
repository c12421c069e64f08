//! The seed pipeline's normalized ticker message, one per symbol per Binance mini-ticker
//! frame: `{"symbol","close_price","open_price","high_price","low_price","volume",
//! "quote_volume","timestamp"}` with `timestamp` the event time in ms since the epoch.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The message's Arrow schema, `timestamp` as milliseconds since the epoch (`Int64`), as the
/// seed's Spark job read it.
pub fn schema() -> SchemaRef {
    with_timestamp(DataType::Int64)
}

/// The same schema with `timestamp` decoded as a timestamp (ms), so that it can carry a
/// watermark and feed event-time windows.
pub fn event_time_schema() -> SchemaRef {
    with_timestamp(DataType::Timestamp(TimeUnit::Millisecond, None))
}

fn with_timestamp(timestamp: DataType) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, true),
        Field::new("close_price", DataType::Float64, true),
        Field::new("open_price", DataType::Float64, true),
        Field::new("high_price", DataType::Float64, true),
        Field::new("low_price", DataType::Float64, true),
        Field::new("volume", DataType::Float64, true),
        Field::new("quote_volume", DataType::Float64, true),
        Field::new("timestamp", timestamp, true),
    ]))
}
