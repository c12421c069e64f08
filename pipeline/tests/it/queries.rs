//! The files in `queries/` load and plan as production runs them (defaults: Kafka in,
//! PostgreSQL out) and as the demo runs them (Binance in, SQLite out).

use sluice_pipeline::{Pipeline, Variables};

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
