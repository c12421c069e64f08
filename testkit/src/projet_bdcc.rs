//! The `projet_bdcc` table: what `queries/projet_bdcc.sql` (the seed's Spark job) writes, one
//! row per ticker with its derived columns.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// The columns of `projet_bdcc`, as the seed's query outputs them: the ticker's `symbol`,
/// prices and volumes, its event time `timestamp_ts`, `spread` and `mid_price` (every column
/// nullable, as DataFusion plans them).
pub fn projet_bdcc_schema() -> SchemaRef {
    let float = |name: &str| Field::new(name, DataType::Float64, true);
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, true),
        float("close_price"),
        float("open_price"),
        float("high_price"),
        float("low_price"),
        float("volume"),
        float("quote_volume"),
        Field::new(
            "timestamp_ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
        float("spread"),
        float("mid_price"),
    ]))
}
