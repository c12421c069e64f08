//! Spark's aggregate names (`min_by`, `max_by`, …) through plain DataFusion SQL.

use std::sync::Arc;

use arrow::array::{Float64Array, Int32Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use sluice_engine::register_spark_aggregates;

use crate::common::render;

/// Rows of `t(g, v, k, s, ts)` where `k` (int), `s` (string) and `ts` (timestamp) order alike:
/// group `a` has a tie on the key (Spark keeps the later row), `b` only null keys, `c` a null
/// value at its largest key.
fn context() -> SessionContext {
    let schema = Arc::new(Schema::new(vec![
        Field::new("g", DataType::Utf8, false),
        Field::new("v", DataType::Utf8, true),
        Field::new("k", DataType::Int32, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]));
    let keys = [Some(1), Some(1), None, None, Some(5), Some(3)];
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(vec!["a", "a", "a", "b", "c", "c"])),
            Arc::new(StringArray::from(vec![
                Some("first"),
                Some("second"),
                Some("third"),
                Some("x"),
                None,
                Some("y"),
            ])),
            Arc::new(Int32Array::from(keys.to_vec())),
            Arc::new(StringArray::from(
                keys.map(|k| k.map(|k| format!("k{k}"))).to_vec(),
            )),
            Arc::new(TimestampMillisecondArray::from(
                keys.map(|k| k.map(|k| i64::from(k) * 1000)).to_vec(),
            )),
        ],
    )
    .expect("batch");
    let ctx = SessionContext::new();
    register_spark_aggregates(&ctx).expect("registered");
    let table = MemTable::try_new(schema, vec![vec![batch]]).expect("table");
    ctx.register_table("t", Arc::new(table)).expect("table");
    ctx
}

async fn run(ctx: &SessionContext, sql: &str) -> String {
    let batches = ctx
        .sql(sql)
        .await
        .expect("planned")
        .collect()
        .await
        .expect("ran");
    render(&batches)
}

#[tokio::test]
async fn min_by_and_max_by_follow_spark_on_ties_and_null_keys() {
    let ctx = context();
    // Checked against pyspark 4.0.1 (`min_by(v, k)`, `max_by(v, k)` on the same rows).
    let expected = "\
+---+--------+--------+
| g | mn     | mx     |
+---+--------+--------+
| a | second | second |
| b |        |        |
| c | y      |        |
+---+--------+--------+";
    for key in ["k", "ts"] {
        let sql = format!(
            "SELECT g, min_by(v, {key}) AS mn, max_by(v, {key}) AS mx FROM t GROUP BY g ORDER BY g"
        );
        assert_eq!(run(&ctx, &sql).await, expected, "keyed by {key}");
    }
    let overall = "\
+--------+----+
| mn     | mx |
+--------+----+
| second |    |
+--------+----+";
    assert_eq!(
        run(&ctx, "SELECT min_by(v, k) AS mn, max_by(v, k) AS mx FROM t").await,
        overall
    );
}

#[tokio::test]
async fn keys_of_other_types_are_ordered_by_first_and_last_value() {
    let ctx = context();
    let sql = "SELECT g, min_by(k, s) AS mn, max_by(k, s) AS mx FROM t GROUP BY g ORDER BY g";
    assert_eq!(
        run(&ctx, sql).await,
        "\
+---+----+----+
| g | mn | mx |
+---+----+----+
| a | 1  | 1  |
| b |    |    |
| c | 3  | 5  |
+---+----+----+"
    );
    let plan = run(&ctx, &format!("EXPLAIN {sql}")).await;
    assert!(plan.contains("first_value"), "{plan}");
    // A primitive key keeps the native accumulator.
    let plan = run(&ctx, "EXPLAIN SELECT g, min_by(v, ts) FROM t GROUP BY g").await;
    assert!(
        plan.contains("min_by") && !plan.contains("first_value"),
        "{plan}"
    );
}

#[tokio::test]
async fn float_keys_compare_as_in_spark() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("v", DataType::Utf8, false),
        Field::new("k", DataType::Float64, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(vec![
                "zero",
                "negative zero",
                "nan",
                "inf",
            ])),
            Arc::new(Float64Array::from(vec![
                0.0,
                -0.0,
                -f64::NAN,
                f64::INFINITY,
            ])),
        ],
    )
    .expect("batch");
    let ctx = SessionContext::new();
    register_spark_aggregates(&ctx).expect("registered");
    let table = MemTable::try_new(schema, vec![vec![batch]]).expect("table");
    ctx.register_table("t", Arc::new(table)).expect("table");
    // -0.0 ties with 0.0 (the later row wins); any NaN is the largest value.
    assert_eq!(
        run(&ctx, "SELECT min_by(v, k) AS mn, max_by(v, k) AS mx FROM t").await,
        "\
+---------------+-----+
| mn            | mx  |
+---------------+-----+
| negative zero | nan |
+---------------+-----+"
    );
}

#[tokio::test]
async fn many_input_batches_keep_the_right_winners() {
    // 50 batches of 100 rows over 7 groups: the accumulator compacts the columns it keeps.
    let schema = Arc::new(Schema::new(vec![
        Field::new("g", DataType::Int32, false),
        Field::new("v", DataType::Utf8, false),
        Field::new("k", DataType::Int32, false),
    ]));
    let batches: Vec<RecordBatch> = (0..50)
        .map(|b| {
            let rows = 0..100;
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int32Array::from_iter_values(rows.clone().map(|r| r % 7))),
                    Arc::new(StringArray::from_iter_values(
                        rows.clone().map(|r| format!("b{b}r{r}")),
                    )),
                    // Keys rise with the batch and, within it, fall and rise again.
                    Arc::new(Int32Array::from_iter_values(
                        rows.map(|r| b * 1000 + (r - 50i32).abs()),
                    )),
                ],
            )
            .expect("batch")
        })
        .collect();
    let ctx = SessionContext::new();
    register_spark_aggregates(&ctx).expect("registered");
    let table = MemTable::try_new(schema, vec![batches]).expect("table");
    ctx.register_table("t", Arc::new(table)).expect("table");
    let grouped = run(
        &ctx,
        "SELECT g, min_by(v, k) AS mn, max_by(v, k) AS mx FROM t GROUP BY g ORDER BY g",
    )
    .await;
    // Group g's smallest key is in batch 0, its largest in batch 49, at the rows of residue
    // g nearest to / farthest from 50; of two rows at the same distance, the later wins.
    let cells: Vec<Vec<String>> = grouped
        .lines()
        .filter(|line| line.starts_with("| ") && !line.starts_with("| g "))
        .map(|line| line.split('|').map(|c| c.trim().to_string()).collect())
        .collect();
    for g in 0..7 {
        let rows = || (0..100).filter(move |r| r % 7 == g);
        let nearest = rows()
            .min_by_key(|r| ((r - 50i32).abs(), -r))
            .expect("a row");
        let farthest = rows()
            .max_by_key(|r| ((r - 50i32).abs(), *r))
            .expect("a row");
        assert_eq!(
            cells[g as usize][1..4],
            [
                g.to_string(),
                format!("b0r{nearest}"),
                format!("b49r{farthest}")
            ],
            "{grouped}"
        );
    }
    let overall = run(&ctx, "SELECT min_by(v, k) AS mn, max_by(v, k) AS mx FROM t").await;
    assert!(overall.contains("| b0r50 | b49r0 |"), "{overall}");
}
