//! A stateful query: 1-minute OHLC candles per symbol from the bundled ticker sample, in
//! update mode with a 10-second watermark, printed batch by batch with the state's size.
//!
//! ```text
//! cargo run --example candles
//! ```

use std::time::Duration;

use anyhow::Context;
use sluice::connectors::ticker;
use sluice::engine::{
    ConsoleSink, FileSource, JsonOptions, OutputMode, StreamingQueryBuilder, Trigger,
};

const CANDLES: &str = "
    SELECT window(\"timestamp\", '1 minute') AS w, symbol,
           min_by(close_price, \"timestamp\") AS open, max(close_price) AS high,
           min(close_price) AS low, max_by(close_price, \"timestamp\") AS close,
           sum(volume) AS volume, count(*) AS ticks
    FROM ticks GROUP BY w, symbol";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let input = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/tickers");
    let source = FileSource::new(
        "ticks",
        input,
        ticker::event_time_schema(),
        JsonOptions::default(),
    )?
    .with_max_files_per_trigger(1);
    let builder = StreamingQueryBuilder::new()
        .source("ticks", source)
        .watermark("ticks", "timestamp", Duration::from_secs(10))
        .sql(CANDLES)
        .output_mode(OutputMode::Update)
        .sink(ConsoleSink::stdout().with_num_rows(5).with_truncate(false))
        .trigger(Trigger::AvailableNow)
        .query_name("candles_1m");
    println!("{}", builder.explain().await?);
    let query = builder.start().await.context("starting the query")?;
    query.await_termination().await?;
    for progress in query.recent_progress() {
        let state = progress.state_operators.first();
        println!(
            "batch {}: {} rows in, {} out, {} groups in state ({} bytes), watermark {}",
            progress.batch_id,
            progress.num_input_rows,
            progress.sink.num_output_rows,
            state.map_or(0, |s| s.num_rows_total),
            state.map_or(0, |s| s.memory_used_bytes),
            progress
                .event_time
                .get("watermark")
                .map_or("-", String::as_str),
        );
    }
    Ok(())
}
