//! The files in `queries/` load and plan as production runs them (defaults: Kafka in,
//! PostgreSQL out) and as the demo runs them (Binance in, SQLite out); the seed job writes the
//! `projet_bdcc` table that the tests and benchmarks write without it.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use sluice_engine::{MemorySink, MemorySource, StreamingQueryBuilder, Trigger};
use sluice_pipeline::{Pipeline, Variables};
use sluice_testkit::projet_bdcc_schema;

const QUERIES: [&str; 4] = [
    "projet_bdcc",
    "candles_1m",
    "volatility_5m",
    "market_sessions",
];

fn path(name: &str) -> String {
    format!("{}/../queries/{name}.sql", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn every_query_file_plans_with_its_defaults() {
    for name in QUERIES {
        let pipeline = Pipeline::load(path(name), &Variables::none()).unwrap();
        assert_eq!(pipeline.query_names(), [name]);
        let plan = pipeline.explain().await.unwrap();
        assert!(plan.contains(&format!("== query {name}")), "{plan}");
        assert!(plan.contains("connector 'postgres'"), "{plan}");
        assert!(
            plan.contains(&format!("checkpoint: data/checkpoints/{name}")),
            "{plan}"
        );
    }
}

#[tokio::test]
async fn the_demo_switches_connectors_with_variables_only() {
    let variables = Variables::none()
        .set("TICKS_CONNECTOR", "binance")
        .set("BINANCE_WS_URL", "ws://127.0.0.1:1/ws/!miniTicker@arr")
        .set("SINK_CONNECTOR", "sqlite")
        .set("DATABASE_URL", "sqlite://target/unused-demo-check.db")
        .set("CHECKPOINT_DIR", "target/unused-checkpoints");
    for name in QUERIES {
        let pipeline = Pipeline::load(path(name), &variables).unwrap();
        let plan = pipeline.explain().await.unwrap();
        assert!(plan.contains("connector 'sqlite'"), "{plan}");
        assert!(plan.contains("target/unused-checkpoints/"), "{plan}");
    }
}

#[tokio::test]
async fn the_plans_show_the_stateful_operators_and_output_modes() {
    let plan = Pipeline::load(path("candles_1m"), &Variables::none())
        .unwrap()
        .explain()
        .await
        .unwrap();
    assert!(plan.contains("update"), "{plan}");
    assert!(plan.to_lowercase().contains("watermark"), "{plan}");
    let plan = Pipeline::load(path("market_sessions"), &Variables::none())
        .unwrap()
        .explain()
        .await
        .unwrap();
    assert!(plan.contains("append"), "{plan}");
    assert!(plan.contains("session"), "{plan}");
}

#[tokio::test]
async fn the_watermark_delay_is_ten_seconds() {
    let plan = Pipeline::load(path("candles_1m"), &Variables::none())
        .unwrap()
        .explain()
        .await
        .unwrap();
    assert!(
        plan.contains("10s") || plan.contains("10000 ms") || plan.contains("10 s"),
        "{plan}"
    );
}

#[tokio::test]
async fn projet_bdcc_writes_the_table_the_tests_and_benchmarks_describe() {
    let pipeline = Pipeline::load(path("projet_bdcc"), &Variables::none()).unwrap();
    let schema = sluice_connectors::ticker::schema();
    let float = || Arc::new(Float64Array::from(vec![1.5])) as ArrayRef;
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["BTCUSDT"])),
            float(),
            float(),
            float(),
            float(),
            float(),
            float(),
            Arc::new(Int64Array::from(vec![1_764_331_200_000])),
        ],
    )
    .unwrap();
    let source = MemorySource::new("ticks", schema);
    source.add_batch(batch).unwrap();
    let sink = MemorySink::new();
    let query = StreamingQueryBuilder::new()
        .source("ticks", source)
        .sql(pipeline.query_sql("projet_bdcc").unwrap())
        .foreach_batch()
        .sink(sink.clone())
        .trigger(Trigger::AvailableNow)
        .start()
        .await
        .unwrap();
    query.await_termination().await.unwrap();
    let rows = sink.all_rows();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].schema(), projet_bdcc_schema());
}
