//! The seed's production job, embedded: Kafka topic `projet-bdcc` → `queries/projet_bdcc.sql`
//! → table `projet_bdcc` in PostgreSQL (or SQLite), exactly once per batch.
//!
//! ```text
//! eval "$(scripts/dev-services.sh)"              # KAFKA_BOOTSTRAP and DATABASE_URL
//! cargo run -p sluice-cli -- replay examples/data/binance-miniticker-10min.jsonl.gz --max &
//! cargo run -p sluice-cli -- produce binance --url 'ws://127.0.0.1:9443/ws/!miniTicker@arr' &
//! cargo run --example kafka_to_postgres          # Ctrl-C to stop; run again to continue
//! ```
//!
//! Without `DATABASE_URL` the rows go to `sqlite://data/sluice.db`. The checkpoint is
//! `data/checkpoints/projet_bdcc`: a restart continues where the last committed batch ended.

use anyhow::Context;
use sluice::connectors::kafka::{KafkaSource, StartingOffsets, Subscription, bootstrap_from_env};
use sluice::connectors::relational::{DEFAULT_DATABASE_URL, RelationalSink};
use sluice::connectors::ticker;
use sluice::engine::{JsonOptions, StreamingQueryBuilder, Trigger};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let database = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
    let source = KafkaSource::new(
        "ticks",
        bootstrap_from_env(),
        Subscription::Topics(vec!["projet-bdcc".into()]),
    )?
    .starting_offsets(StartingOffsets::Earliest)
    .max_offsets_per_trigger(200_000)
    .json(ticker::schema(), JsonOptions::default());
    let sink = RelationalSink::new(&database, "projet_bdcc")?.index(["symbol", "timestamp_ts"]);

    let query = StreamingQueryBuilder::new()
        .source("ticks", source)
        .sql(include_str!("../queries/projet_bdcc.sql"))
        .foreach_batch()
        .sink(sink)
        .trigger(Trigger::ProcessingTime(std::time::Duration::from_secs(1)))
        .checkpoint_location("data/checkpoints/projet_bdcc")
        .query_name("projet_bdcc")
        .start()
        .await
        .context("starting the query")?;
    tokio::signal::ctrl_c().await?;
    query.stop().await?;
    if let Some(progress) = query.last_progress() {
        println!("last progress:\n{}", progress.pretty_json());
    }
    Ok(())
}
