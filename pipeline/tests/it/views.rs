//! `CREATE VIEW name AS <query>`: named queries that `INSERT`s (and later views) read, expanded
//! into each query that reads them; their mistakes are errors at the view.

use std::sync::Arc;

use arrow::array::{Array, Float64Array, RecordBatch, StringArray};
use sluice_engine::Source;
use sluice_pipeline::{Pipeline, Variables};

use crate::starts;

const SOURCE: &str = "SET checkpoint = 'none';\n\
    CREATE TABLE t (symbol VARCHAR, price DOUBLE) WITH (connector = 'memory');\n";

fn batch(schema: arrow::datatypes::SchemaRef, rows: &[(&str, f64)]) -> RecordBatch {
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.1))),
        ],
    )
    .unwrap()
}

/// The (text, number) rows of `batches`, sorted.
fn rows(batches: &[RecordBatch]) -> Vec<(String, f64)> {
    let mut rows: Vec<(String, f64)> = batches
        .iter()
        .flat_map(|b| {
            let names = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            let values = b.column(1).as_any().downcast_ref::<Float64Array>().unwrap();
            (0..b.num_rows())
                .map(|i| (names.value(i).to_string(), values.value(i)))
                .collect::<Vec<_>>()
        })
        .collect();
    rows.sort_by(|a, b| a.partial_cmp(b).unwrap());
    rows
}

/// A view reading a view reading the source, and an aggregation in a view: it is the
/// query's streaming aggregation, its totals kept across batches.
#[tokio::test]
async fn views_chain_and_an_aggregation_in_a_view_keeps_its_state() {
    let text = format!(
        "{SOURCE}CREATE VIEW doubled AS SELECT symbol, price * 2 AS value FROM t WHERE price > 0;\n\
         CREATE VIEW big AS SELECT symbol, value FROM doubled WHERE value > 10;\n\
         CREATE VIEW totals AS SELECT symbol, sum(price) AS total FROM t GROUP BY symbol;\n\
         CREATE TABLE out WITH (connector = 'memory');\n\
         CREATE TABLE sums WITH (connector = 'memory', output_mode = 'complete');\n\
         INSERT INTO out SELECT symbol, value FROM big;\n\
         INSERT INTO sums SELECT symbol, total FROM totals;"
    );
    let pipeline = Pipeline::parse("job.sql", &text, &Variables::none()).unwrap();
    let input = pipeline.memory_source("t").unwrap();
    let out = pipeline.memory_sink("out").unwrap();
    let sums = pipeline.memory_sink("sums").unwrap();
    let queries = pipeline.start().await.unwrap();
    let schema = input.schema();
    input
        .add_batch(batch(
            schema.clone(),
            &[("a", 3.0), ("b", 8.0), ("a", -1.0)],
        ))
        .unwrap();
    for query in &queries {
        query.process_all_available().await.unwrap();
    }
    input
        .add_batch(batch(schema, &[("a", 6.0), ("b", 1.0)]))
        .unwrap();
    for query in &queries {
        query.process_all_available().await.unwrap();
    }
    assert_eq!(
        rows(&out.all_rows()),
        [("a".into(), 12.0), ("b".into(), 16.0)]
    );
    // Complete mode: the last batch's output is every group's total over both batches.
    let batches = sums.batches();
    let (_, last) = batches.last_key_value().unwrap();
    assert_eq!(rows(last), [("a".into(), 8.0), ("b".into(), 9.0)]);
    for query in &queries {
        query.stop().await.unwrap();
    }
}

/// The error of loading `text` (after the source).
fn error(text: &str) -> String {
    let text = format!("{SOURCE}{text}");
    match Pipeline::parse("job.sql", &text, &Variables::none()) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn declaration_mistakes_are_errors_at_the_view() {
    const OUT: &str = "CREATE TABLE out WITH (connector = 'memory');\n";
    starts(
        &error(&format!(
            "CREATE VIEW v AS SELECT * FROM t;\nCREATE VIEW v AS SELECT * FROM t;\n{OUT}INSERT INTO out SELECT * FROM v;"
        )),
        "job.sql:4:13: view v is already declared at 3:13",
    );
    starts(
        &error(&format!(
            "CREATE VIEW t AS SELECT 1;\n{OUT}INSERT INTO out SELECT * FROM t;"
        )),
        "job.sql:3:13: view t has the name of table t, declared at 2:14",
    );
    starts(
        &error(&format!(
            "CREATE VIEW v AS SELECT * FROM out;\n{OUT}INSERT INTO out SELECT * FROM t;"
        )),
        "job.sql:3:18: the query reads out, which is a sink of this file",
    );
    starts(
        &error(&format!(
            "CREATE VIEW v AS SELECT * FROM t;\n{OUT}INSERT INTO out SELECT * FROM t;"
        )),
        "job.sql:3:13: view v is declared but no query reads it",
    );
    starts(
        &error(&format!(
            "CREATE VIEW v AS;\n{OUT}INSERT INTO out SELECT * FROM t;"
        )),
        "job.sql:3:17: CREATE VIEW v AS needs a query",
    );
}

/// A view that does not plan is reported at its `CREATE VIEW`, naming the view and the
/// query that reads it.
#[tokio::test]
async fn a_view_that_does_not_plan_is_an_error_at_the_view() {
    let text = format!(
        "{SOURCE}CREATE VIEW v AS SELECT symbol, nope FROM t;\n\
         CREATE TABLE out WITH (connector = 'memory');\n\
         INSERT INTO out SELECT * FROM v;"
    );
    let pipeline = Pipeline::parse("job.sql", &text, &Variables::none()).unwrap();
    let error = pipeline.explain().await.unwrap_err().to_string();
    starts(&error, "job.sql:3:13: query 'out': view 'v': ");
    assert!(error.contains("nope"), "{error}");
}
