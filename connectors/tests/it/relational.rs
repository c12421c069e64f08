//! The relational sink on SQLite and, when `DATABASE_URL` is set, PostgreSQL: each output mode
//! through the engine, exactly-once across crashes, and the checks made at start.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sluice_connectors::relational::RelationalSink;
use sluice_engine::{MemorySource, OutputMode, Sink, SinkContext, StreamingQueryBuilder};
use sluice_testkit::{Crash, CrashingSink};

use crate::common::{databases, projet_bdcc_batch, projet_bdcc_schema, rows, unique_table};

fn context(schema: SchemaRef, mode: OutputMode, key: Option<&[&str]>) -> SinkContext {
    SinkContext {
        query_id: uuid::Uuid::new_v4().to_string(),
        query_name: None,
        schema,
        output_mode: mode,
        key_columns: key.map(|k| k.iter().map(|c| c.to_string()).collect()),
        parallelism: 1,
    }
}

/// A float column in hundredths, as text: the same on both back ends.
fn cents(column: &str) -> String {
    format!("CAST(CAST(ROUND({column} * 100) AS BIGINT) AS TEXT)")
}

async fn count(url: &str, table: &str) -> usize {
    rows(
        url,
        &format!("SELECT CAST(COUNT(*) AS TEXT) FROM \"{table}\""),
    )
    .await[0][0]
        .as_deref()
        .unwrap_or("0")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn append_creates_the_table_and_stores_each_batch_once() {
    for (url, _dir) in databases() {
        let table = unique_table("projet_bdcc");
        let context = context(projet_bdcc_schema(), OutputMode::Append, None);
        let first = projet_bdcc_batch(&[("BTCUSDT", 100.5, 1_000), ("ETHUSDT", 10.25, 1_000)]);
        let second = projet_bdcc_batch(&[("BTCUSDT", 101.0, 2_000)]);

        let mut sink = RelationalSink::new(&url, &table)
            .unwrap()
            .index(["symbol", "timestamp_ts"]);
        sink.open(&context).await.unwrap();
        sink.add_batch(0, std::slice::from_ref(&first))
            .await
            .unwrap();
        sink.add_batch(1, std::slice::from_ref(&second))
            .await
            .unwrap();
        // The engine re-runs a batch whose checkpoint commit was lost: stored once.
        sink.add_batch(1, std::slice::from_ref(&second))
            .await
            .unwrap();
        // So does a restarted process, with a new sink on the same query.
        let mut restarted = RelationalSink::new(&url, &table).unwrap();
        restarted.open(&context).await.unwrap();
        restarted.add_batch(1, &[second]).await.unwrap();
        restarted.add_batch(2, &[]).await.unwrap();

        assert_eq!(
            rows(
                &url,
                &format!(
                    "SELECT symbol, {}, {}, {} FROM \"{table}\" ORDER BY symbol, close_price",
                    cents("close_price"),
                    cents("spread"),
                    cents("mid_price")
                )
            )
            .await,
            [
                ["BTCUSDT", "10050", "500", "10000"],
                ["BTCUSDT", "10100", "500", "10050"],
                ["ETHUSDT", "1025", "500", "975"],
            ]
            .map(|r| r.map(|v| Some(v.to_string())).to_vec()),
            "{url}"
        );
        let committed = rows(
            &url,
            &format!(
                "SELECT CAST(batch_id AS TEXT) FROM sluice_commits WHERE query_id = '{}'",
                context.query_id
            ),
        )
        .await;
        assert_eq!(committed, [[Some("2".to_string())]], "{url}");
    }
}

/// What each back end stores of the non-finite doubles: PostgreSQL keeps them, SQLite stores
/// the infinities and turns NaN into NULL (SQLite has no NaN).
#[tokio::test]
async fn non_finite_doubles_are_stored_as_each_back_end_can() {
    for (url, _dir) in databases() {
        let table = unique_table("non_finite");
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Float64Array::from(vec![
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                1.5,
            ]))],
        )
        .unwrap();
        let mut sink = RelationalSink::new(&url, &table).unwrap();
        sink.open(&context(schema, OutputMode::Append, None))
            .await
            .unwrap();
        sink.add_batch(0, &[batch]).await.unwrap();
        let mut stored: Vec<Option<String>> =
            rows(&url, &format!("SELECT CAST(x AS TEXT) FROM \"{table}\""))
                .await
                .into_iter()
                .map(|mut row| row.remove(0))
                .collect();
        stored.sort();
        let text = |values: &[Option<&str>]| -> Vec<Option<String>> {
            values.iter().map(|v| v.map(String::from)).collect()
        };
        let expected = if url.starts_with("sqlite:") {
            text(&[None, Some("-Inf"), Some("1.5"), Some("Inf")])
        } else {
            text(&[
                Some("-Infinity"),
                Some("1.5"),
                Some("Infinity"),
                Some("NaN"),
            ])
        };
        assert_eq!(stored, expected, "{url}");
    }
}

#[tokio::test]
async fn a_crash_before_or_after_the_database_commit_leaves_exactly_one_copy() {
    for (url, _dir) in databases() {
        let table = unique_table("crash");
        let checkpoint = tempfile::tempdir().unwrap();
        let source = MemorySource::new("ticks", projet_bdcc_schema());
        let run = |sink: Box<dyn FnOnce() -> CrashingSink<RelationalSink>>| {
            let source = source.clone();
            let checkpoint = checkpoint.path().to_str().unwrap().to_string();
            async move {
                let mut execution = StreamingQueryBuilder::new()
                    .source("ticks", source)
                    .sql("SELECT * FROM ticks")
                    .checkpoint_location(checkpoint)
                    .sink(sink())
                    .build()
                    .await
                    .unwrap();
                let mut outcome = Ok(());
                while outcome.is_ok() {
                    match execution.run_trigger().await {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => outcome = Err(e),
                    }
                }
                outcome
            }
        };
        let sink = |batch: u64, crash: Crash| {
            let url = url.clone();
            let table = table.clone();
            Box::new(move || {
                CrashingSink::new(RelationalSink::new(&url, &table).unwrap(), batch, crash)
            }) as Box<dyn FnOnce() -> CrashingSink<RelationalSink>>
        };

        source
            .add_batch(projet_bdcc_batch(&[("A", 1.0, 1_000), ("B", 2.0, 1_000)]))
            .unwrap();
        run(sink(u64::MAX, Crash::BeforeSink)).await.unwrap();
        // Batch 1 crashes before the sink's transaction commits, batch 2 right after it.
        for (batch, crash) in [(1, Crash::BeforeSink), (2, Crash::AfterSink)] {
            source
                .add_batch(projet_bdcc_batch(&[("C", batch as f64, 2_000)]))
                .unwrap();
            let error = run(sink(batch, crash)).await.unwrap_err().to_string();
            assert!(error.contains("simulated crash"), "{error}");
            run(sink(u64::MAX, Crash::BeforeSink)).await.unwrap();
        }
        assert_eq!(count(&url, &table).await, 4, "{url}");
    }
}

fn tick_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]))
}

fn ticks(rows: &[(&str, f64, i64)]) -> RecordBatch {
    RecordBatch::try_new(
        tick_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.2),
            )),
        ],
    )
    .unwrap()
}

/// Runs `sql` over `inputs` (one micro-batch each) into a relational sink on `table`.
async fn run_query(url: &str, table: &str, sql: &str, mode: OutputMode, inputs: Vec<RecordBatch>) {
    let source = MemorySource::new("ticks", tick_schema());
    let mut execution = StreamingQueryBuilder::new()
        .source("ticks", source.clone())
        .sql(sql)
        .watermark("ticks", "ts", Duration::from_secs(10))
        .output_mode(mode)
        .sink(RelationalSink::new(url, table).unwrap())
        .build()
        .await
        .unwrap();
    for input in inputs {
        source.add_batch(input).unwrap();
        while execution.run_trigger().await.unwrap() {}
    }
}

#[tokio::test]
async fn update_mode_upserts_on_the_window_start_and_group_keys() {
    for (url, _dir) in databases() {
        let table = unique_table("candles_1m");
        run_query(
            &url,
            &table,
            "SELECT window(ts, '1 minute') AS w, symbol, max(price) AS high, count(*) AS ticks \
             FROM ticks GROUP BY w, symbol",
            OutputMode::Update,
            vec![
                ticks(&[
                    ("BTC", 10.0, 1_000),
                    ("BTC", 12.0, 2_000),
                    ("ETH", 1.0, 3_000),
                ]),
                // Updates BTC's first minute, opens its second.
                ticks(&[("BTC", 15.0, 30_000), ("BTC", 9.0, 61_000)]),
            ],
        )
        .await;
        let start = if url.starts_with("sqlite") {
            "w_start"
        } else {
            "CAST(EXTRACT(EPOCH FROM w_start) AS BIGINT)"
        };
        assert_eq!(
            rows(
                &url,
                &format!(
                    "SELECT symbol, CAST({start} AS TEXT), {}, CAST(ticks AS TEXT) \
                     FROM \"{table}\" ORDER BY symbol, w_start",
                    cents("high")
                )
            )
            .await,
            if url.starts_with("sqlite") {
                [
                    ["BTC", "1970-01-01 00:00:00.000000", "1500", "3"],
                    ["BTC", "1970-01-01 00:01:00.000000", "900", "1"],
                    ["ETH", "1970-01-01 00:00:00.000000", "100", "1"],
                ]
            } else {
                [
                    ["BTC", "0", "1500", "3"],
                    ["BTC", "60", "900", "1"],
                    ["ETH", "0", "100", "1"],
                ]
            }
            .map(|r| r.map(|v| Some(v.to_string())).to_vec()),
            "{url}"
        );
    }
}

#[tokio::test]
async fn complete_mode_replaces_the_table() {
    for (url, _dir) in databases() {
        let table = unique_table("totals");
        run_query(
            &url,
            &table,
            "SELECT symbol, count(*) AS n FROM ticks GROUP BY symbol",
            OutputMode::Complete,
            vec![
                ticks(&[("BTC", 10.0, 1_000), ("ETH", 1.0, 1_000)]),
                ticks(&[("BTC", 11.0, 2_000), ("SOL", 3.0, 2_000)]),
            ],
        )
        .await;
        assert_eq!(
            rows(
                &url,
                &format!("SELECT symbol, CAST(n AS TEXT) FROM \"{table}\" ORDER BY symbol")
            )
            .await,
            [["BTC", "2"], ["ETH", "1"], ["SOL", "1"]]
                .map(|r| r.map(|v| Some(v.to_string())).to_vec()),
            "{url}"
        );
    }
}

#[tokio::test]
async fn existing_tables_that_do_not_fit_are_refused_at_start() {
    for (url, _dir) in databases() {
        let table = unique_table("bad");
        // Create the table by hand with `spread` as text.
        let mut creator = RelationalSink::new(&url, &table).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("symbol", DataType::Utf8, true),
            Field::new("spread", DataType::Utf8, true),
        ]));
        creator
            .open(&context(schema, OutputMode::Append, None))
            .await
            .unwrap();

        let open = |mode: OutputMode, key: Option<&'static [&'static str]>| {
            let url = url.clone();
            let table = table.clone();
            async move {
                let schema = Arc::new(Schema::new(vec![
                    Field::new("symbol", DataType::Utf8, true),
                    Field::new("spread", DataType::Float64, true),
                ]));
                RelationalSink::new(&url, &table)
                    .unwrap()
                    .open(&context(schema, mode, key))
                    .await
                    .unwrap_err()
                    .to_string()
            }
        };
        let error = open(OutputMode::Append, None).await;
        assert!(
            error.contains(&format!(
                "table {table} does not match the query: column \"spread\" is"
            )),
            "{error}"
        );
        let error = open(OutputMode::Update, None).await;
        assert!(error.contains("update mode upserts on a key"), "{error}");

        let missing = unique_table("missing");
        let error = RelationalSink::new(&url, &missing)
            .unwrap()
            .create_table(false)
            .open(&context(tick_schema(), OutputMode::Append, None))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("the table does not exist"), "{error}");
    }
    let error = RelationalSink::new("mysql://root:secret@localhost/db", "t")
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("unsupported database URL mysql://root:***@localhost/db"),
        "{error}"
    );
}

/// sqlx-core 0.9.0's pool maintenance task can spin a worker at 100 % (upstream #3645): the
/// sinks' pools never start it (no idle timeout, no maximum lifetime, no minimum size).
#[test]
fn sink_pools_run_no_maintenance_task() {
    let postgres = sluice_connectors::internals::pool_options::<sqlx::Postgres>();
    let sqlite = sluice_connectors::internals::pool_options::<sqlx::Sqlite>();
    assert_eq!(postgres.get_idle_timeout(), None);
    assert_eq!(postgres.get_max_lifetime(), None);
    assert_eq!(postgres.get_min_connections(), 0);
    assert_eq!(sqlite.get_idle_timeout(), None);
    assert_eq!(sqlite.get_max_lifetime(), None);
    assert_eq!(sqlite.get_min_connections(), 0);
}

#[tokio::test]
async fn a_table_ahead_of_the_checkpoint_is_refused_not_skipped_to() {
    for (url, _dir) in databases() {
        let table = unique_table("projet_bdcc");
        let context = context(projet_bdcc_schema(), OutputMode::Append, None);
        let batch = projet_bdcc_batch(&[("BTCUSDT", 100.5, 1_000)]);
        let mut sink = RelationalSink::new(&url, &table).unwrap();
        sink.open(&context).await.unwrap();
        for id in 0..=3 {
            sink.add_batch(id, std::slice::from_ref(&batch))
                .await
                .unwrap();
        }
        // The checkpoint restarts at batch 3 (committed by the sink, not yet by the
        // checkpoint) or 4: both fine.
        for first in [3, 4] {
            let mut restarted = RelationalSink::new(&url, &table).unwrap();
            restarted.open(&context).await.unwrap();
            restarted.add_batch(first, &[]).await.unwrap();
        }
        // At batch 2, the table holds a commit the checkpoint never made: refused.
        let mut behind = RelationalSink::new(&url, &table).unwrap();
        behind.open(&context).await.unwrap();
        let error = behind
            .add_batch(2, std::slice::from_ref(&batch))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("batch 4 committed") && error.contains("checkpoint is at batch 2"),
            "{url}: {error}"
        );
        assert_eq!(count(&url, &table).await, 4, "{url}: nothing written");
    }
}
