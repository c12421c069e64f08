//! The seed's production job, embedded: `queries/projet_bdcc.sql` (Kafka topic `projet-bdcc`
//! → table `projet_bdcc`, exactly once per batch) loaded and run as a library, which is what
//! `sluice run queries/projet_bdcc.sql` does.
//!
//! ```text
//! eval "$(scripts/dev-services.sh)"              # KAFKA_BOOTSTRAP and DATABASE_URL
//! cargo run -p sluice-cli -- replay examples/data/binance-miniticker-10min.jsonl.gz --max &
//! cargo run -p sluice-cli -- produce binance --url 'ws://127.0.0.1:9443/ws/!miniTicker@arr' &
//! cargo run --example kafka_to_postgres          # Ctrl-C to stop; run again to continue
//! ```
//!
//! The file's variables come from the environment (`DATABASE_URL`, `SINK_CONNECTOR=sqlite`
//! for SQLite, …); the checkpoint is `data/checkpoints/projet_bdcc`, so a restart continues
//! where the last committed batch ended.

use anyhow::Context;
use sluice::pipeline::{Pipeline, Variables};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/queries/projet_bdcc.sql");
    let pipeline = Pipeline::load(file, &Variables::from_env())?;
    let queries = pipeline.start().await.context("starting the query")?;
    tokio::signal::ctrl_c().await?;
    for query in &queries {
        query.stop().await?;
        if let Some(progress) = query.last_progress() {
            println!("last progress:\n{}", progress.pretty_json());
        }
    }
    Ok(())
}
