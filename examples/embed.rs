//! Embeds the engine: a directory of JSON-lines ticker files → the seed's SQL → the console.
//!
//! ```text
//! cargo run --example embed                     # checkpoint in memory: reads everything again
//! cargo run --example embed -- data/embed-ckpt  # checkpoint on disk: a re-run only reads new files
//! ```
//!
//! Reads `examples/data/tickers/` one file per micro-batch (available-now trigger: everything
//! present at start, then stop), runs the query of `queries/projet_bdcc.sql` (derives
//! `timestamp_ts`, `spread` and `mid_price`, drops duplicates per batch), prints each batch
//! like Spark's console sink and the last progress report as JSON. The source and sink are
//! built here in Rust; only the SQL comes from the pipeline file.

use anyhow::Context;
use sluice::engine::{ConsoleSink, FileSource, JsonOptions, StreamingQueryBuilder, Trigger};
use sluice::pipeline::{Pipeline, Variables};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let schema = sluice::connectors::ticker::schema();
    let input = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/tickers");
    let source = FileSource::new("ticks", input, schema, JsonOptions::default())?
        .with_max_files_per_trigger(1);

    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/queries/projet_bdcc.sql");
    let seed = Pipeline::load(file, &Variables::none())?;
    let sql = seed.query_sql("projet_bdcc").context("the file's query")?;

    let mut builder = StreamingQueryBuilder::new()
        .source("ticks", source)
        .sql(sql)
        .foreach_batch()
        .sink(ConsoleSink::stdout().with_num_rows(5))
        .trigger(Trigger::AvailableNow)
        .query_name("projet_bdcc");
    if let Some(checkpoint) = std::env::args().nth(1) {
        builder = builder.checkpoint_location(checkpoint);
    }
    let query = builder.start().await.context("starting the query")?;
    query.await_termination().await?;
    match query.last_progress() {
        Some(progress) => println!("last progress:\n{}", progress.pretty_json()),
        None => println!("no new data since the last run"),
    }
    Ok(())
}
