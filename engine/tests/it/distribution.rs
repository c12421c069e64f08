//! Which queries can run as one task per Kafka partition (`check_partitioned_by`): those
//! whose stateful operators keep each group within one partition of the sources.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use sluice_engine::{MemorySink, MemorySource, OutputMode, PartitionedBy, StreamingQueryBuilder};

fn tickers(name: &str) -> MemorySource {
    MemorySource::new(
        name,
        Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, true),
            Field::new("price", DataType::Float64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ])),
    )
}

fn by_symbol(sources: &[&str]) -> PartitionedBy {
    sources
        .iter()
        .map(|s| (s.to_string(), "symbol".to_string()))
        .collect()
}

/// The check's verdict on `sql` over source `t` (and `u` for joins), partitioned by symbol;
/// joins and chains run in append mode, the rest in update.
async fn check(sql: &str, dedup: Option<&[&str]>) -> Result<(), String> {
    let mode = if sql.contains("JOIN") || sql.contains("window_time") {
        OutputMode::Append
    } else {
        OutputMode::Update
    };
    let mut builder = StreamingQueryBuilder::new()
        .source("t", tickers("t"))
        .source("u", tickers("u"))
        .watermark("t", "ts", std::time::Duration::from_secs(10))
        .watermark("u", "ts", std::time::Duration::from_secs(10))
        .sql(sql)
        .output_mode(mode)
        .sink(MemorySink::new());
    if let Some(columns) = dedup {
        builder = builder.drop_duplicates("t", columns.iter().map(|c| c.to_string()));
    }
    builder
        .check_partitioned_by(&by_symbol(&["t", "u"]))
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn groups_keyed_by_the_partitioning_column_pass() {
    for sql in [
        "SELECT symbol, price FROM t WHERE price > 0",
        "SELECT window(ts, '1 minute') AS w, symbol, max(price) FROM t \
         GROUP BY window(ts, '1 minute'), symbol",
        // Renamed in a subquery, then grouped.
        "SELECT s, count(*) FROM (SELECT symbol AS s, price FROM t WHERE price > 0) GROUP BY s",
        "SELECT DISTINCT ON (symbol, ts) symbol, ts, price FROM t",
        // A chain: the second aggregation's key is the first's, which is the column.
        "SELECT window(window_time(w), '5 minutes'), symbol, count(*) FROM \
         (SELECT window(ts, '1 minute') AS w, symbol, max(price) AS p FROM t \
         GROUP BY window(ts, '1 minute'), symbol) GROUP BY window(window_time(w), '5 minutes'), symbol",
        "SELECT t.symbol, t.price, u.price FROM t JOIN u ON t.symbol = u.symbol \
         AND u.ts BETWEEN t.ts AND t.ts + INTERVAL '1 minute'",
    ] {
        assert_eq!(check(sql, None).await, Ok(()), "{sql}");
    }
    assert_eq!(
        check("SELECT * FROM t", Some(&["symbol", "ts"])).await,
        Ok(())
    );
}

#[tokio::test]
async fn groups_spread_over_partitions_are_refused_with_the_two_step_fix() {
    for (sql, what) in [
        (
            "SELECT window(ts, '1 minute') AS w, max(price) FROM t GROUP BY window(ts, '1 minute')",
            "the aggregation groups by",
        ),
        ("SELECT count(*) FROM t", "the aggregation groups by ()"),
        // A key computed from the column is refused too: the check is conservative.
        (
            "SELECT upper(symbol), count(*) FROM t GROUP BY upper(symbol)",
            "upper(t.symbol)",
        ),
        ("SELECT DISTINCT ON (ts) ts, price FROM t", "groups by"),
        (
            "SELECT symbol, price FROM t LIMIT 5",
            "a LIMIT would keep that many rows per task",
        ),
        (
            "SELECT t.symbol, u.symbol FROM t JOIN u ON t.price = u.price \
             AND u.ts BETWEEN t.ts AND t.ts + INTERVAL '1 minute'",
            "the join of t and u has no equality between their partitioning columns",
        ),
    ] {
        let error = check(sql, None).await.expect_err(sql);
        assert!(error.contains(what), "{sql}: {error}");
        assert!(
            error.contains("Re-key the stream in two steps")
                && error.contains("partitioned_by = 'col'"),
            "{error}"
        );
    }
    let error = check("SELECT * FROM t", Some(&["ts"])).await.unwrap_err();
    assert!(
        error.contains("deduplication of t on (ts) must include its partitioning column symbol"),
        "{error}"
    );
}
