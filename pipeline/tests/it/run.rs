//! Pipelines run end to end: the seed job and the candles from JSON files into SQLite, with a
//! restart between two runs, against what the same input computes in memory.

use std::path::Path;

use sluice_engine::{Source as _, Trigger};
use sluice_pipeline::{Pipeline, Variables};
use sqlx::Row;

fn query_file(name: &str) -> String {
    format!("{}/../queries/{name}.sql", env!("CARGO_MANIFEST_DIR"))
}

fn ticker(symbol: &str, close: f64, volume: f64, timestamp: i64) -> String {
    format!(
        r#"{{"symbol":"{symbol}","close_price":{close},"open_price":100.0,"high_price":{high},"low_price":90.0,"volume":{volume},"quote_volume":{quote},"timestamp":{timestamp}}}"#,
        high = close + 10.0,
        quote = volume * close,
    )
}

fn write(dir: &Path, name: &str, lines: &[String]) {
    std::fs::write(dir.join(name), lines.join("\n") + "\n").unwrap();
}

/// Variables that run a `queries/` file from files into SQLite under `dir`.
fn variables(dir: &Path) -> Variables {
    Variables::none()
        .set("TICKS_CONNECTOR", "file")
        .set("TICKS_PATH", dir.join("in").display().to_string())
        .set("SINK_CONNECTOR", "sqlite")
        .set(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("out.db").display()),
        )
        .set(
            "CHECKPOINT_DIR",
            dir.join("checkpoints").display().to_string(),
        )
}

/// Runs `name` over what is in the input directory now, then stops (a restart each time).
async fn run_available_now(name: &str, dir: &Path) {
    let mut pipeline = Pipeline::load(query_file(name), &variables(dir)).unwrap();
    pipeline.override_trigger(Trigger::AvailableNow);
    for query in pipeline.start().await.unwrap() {
        query.await_termination().await.unwrap();
    }
}

async fn database(dir: &Path) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("out.db").display()))
        .await
        .unwrap()
}

const T0: i64 = 1_764_331_200_000; // 2025-11-28 12:00:00 UTC

/// One row of `projet_bdcc`: symbol, close, timestamp_ts, spread, mid price.
type TableRow = (
    Option<String>,
    Option<f64>,
    Option<String>,
    Option<f64>,
    Option<f64>,
);

async fn projet_bdcc_rows(dir: &Path) -> Vec<TableRow> {
    let pool = database(dir).await;
    let rows = sqlx::query(
        "SELECT symbol, close_price, timestamp_ts, spread, mid_price FROM projet_bdcc ORDER BY rowid",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

/// The row `ticker(symbol, close, …)` gives at `ts`.
fn derived(symbol: &str, close: f64, ts: &str) -> TableRow {
    let high = close + 10.0;
    (
        Some(symbol.into()),
        Some(close),
        Some(ts.into()),
        Some(high - 90.0),
        Some((high + 90.0) / 2.0),
    )
}

/// The seed's job, checked against pyspark 4.0.1 (`from_unixtime(timestamp/1000)` cast to a
/// timestamp, `dropDuplicates(["timestamp_ts", "symbol"])` per batch, no null filter).
#[tokio::test]
async fn projet_bdcc_is_the_seed_job_per_second_with_its_nulls() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    write(
        &dir.path().join("in"),
        "0.jsonl",
        &[
            ticker("BTCUSDT", 65000.0, 10.0, T0 + 143),
            ticker("ETHUSDT", 3000.0, 20.0, T0),
            // The same symbol in the same second: dropped, the first occurrence wins.
            ticker("BTCUSDT", 99999.0, 10.0, T0 + 999),
            ticker("BTCUSDT", 65010.0, 10.0, T0 + 1000),
            // Not JSON: a row of nulls, as the seed's PERMISSIVE parse gave (and counted).
            "not json".into(),
            // Null keys are equal: deduplicated with the row above.
            r#"{"close_price":1.5}"#.into(),
        ],
    );
    run_available_now("projet_bdcc", dir.path()).await;
    // The next run (a restart) reads only the new file; the same key again is kept: the
    // seed deduplicated within each micro-batch only.
    write(
        &dir.path().join("in"),
        "1.jsonl",
        &[ticker("BTCUSDT", 65000.0, 10.0, T0)],
    );
    run_available_now("projet_bdcc", dir.path()).await;
    let second = "2025-11-28 12:00:00.000000";
    assert_eq!(
        projet_bdcc_rows(dir.path()).await,
        [
            derived("BTCUSDT", 65000.0, second),
            derived("ETHUSDT", 3000.0, second),
            derived("BTCUSDT", 65010.0, "2025-11-28 12:00:01.000000"),
            (None, None, None, None, None),
            derived("BTCUSDT", 65000.0, second),
        ]
    );
}

/// `TIMESTAMP_PRECISION=millisecond` keys the dedup per millisecond, `DROP_NULL_KEYS=true`
/// leaves out the rows without a symbol or timestamp.
#[tokio::test]
async fn projet_bdcc_variables_give_milliseconds_and_drop_null_keys() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    write(
        &dir.path().join("in"),
        "0.jsonl",
        &[
            ticker("BTCUSDT", 65000.0, 10.0, T0 + 143),
            ticker("BTCUSDT", 65001.0, 10.0, T0 + 999),
            ticker("BTCUSDT", 99999.0, 10.0, T0 + 999),
            "not json".into(),
        ],
    );
    let variables = variables(dir.path())
        .set("TIMESTAMP_PRECISION", "millisecond")
        .set("DROP_NULL_KEYS", "true");
    let mut pipeline = Pipeline::load(query_file("projet_bdcc"), &variables).unwrap();
    pipeline.override_trigger(Trigger::AvailableNow);
    for query in pipeline.start().await.unwrap() {
        query.await_termination().await.unwrap();
    }
    assert_eq!(
        projet_bdcc_rows(dir.path()).await,
        [
            derived("BTCUSDT", 65000.0, "2025-11-28 12:00:00.143000"),
            derived("BTCUSDT", 65001.0, "2025-11-28 12:00:00.999000"),
        ]
    );
    // Anything but a boolean is refused where the value stands.
    let error = Pipeline::load(
        query_file("projet_bdcc"),
        &variables.set("DROP_NULL_KEYS", "1 OR 1"),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(error.contains("DROP_NULL_KEYS"), "{error}");
}

#[tokio::test]
async fn candles_1m_upserts_the_candles_memory_computes_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    // 3 symbols × 150 s, one ticker a second; prices wander deterministically.
    let mut ticks = Vec::new();
    for second in 0..150i64 {
        for (i, symbol) in ["BTCUSDT", "ETHUSDT", "SOLUSDT"].iter().enumerate() {
            let close = 100.0 * (i as f64 + 1.0) + ((second * 7 + i as i64 * 3) % 11) as f64;
            let volume = 1000.0 + second as f64;
            ticks.push((symbol.to_string(), close, volume, T0 + second * 1000 + 250));
        }
    }
    let lines: Vec<String> = ticks
        .iter()
        .map(|(s, c, v, t)| ticker(s, *c, *v, *t))
        .collect();
    // First run: 100 s; restart; second run: the rest.
    write(&input, "0.jsonl", &lines[..300]);
    run_available_now("candles_1m", dir.path()).await;
    write(&input, "1.jsonl", &lines[300..]);
    run_available_now("candles_1m", dir.path()).await;

    let pool = database(dir.path()).await;
    let rows = sqlx::query(
        "SELECT symbol, window_start, window_end, open, high, low, close, volume, ticks FROM candles_1m",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut actual = std::collections::BTreeMap::new();
    for row in &rows {
        let start: String = row.get(1);
        let start = chrono::NaiveDateTime::parse_from_str(&start, "%Y-%m-%d %H:%M:%S%.f")
            .unwrap()
            .and_utc()
            .timestamp_millis();
        let end: String = row.get(2);
        assert!(end.ends_with(":00.000000"), "{end}");
        actual.insert(
            (row.get(0), start),
            (
                row.get(3),
                row.get(4),
                row.get(5),
                row.get(6),
                row.get(7),
                row.get(8),
            ),
        );
    }
    assert_eq!(actual, sluice_testkit::candles(&ticks));
    assert_eq!(actual.len(), 9, "3 symbols × 3 minutes");
}

#[tokio::test]
async fn a_processing_time_trigger_keeps_running_batches() {
    let text = "SET trigger = '100 milliseconds';\nSET checkpoint = 'none';\n\
        CREATE TABLE t (x BIGINT) WITH (connector = 'memory');\n\
        CREATE TABLE out WITH (connector = 'memory');\n\
        INSERT INTO out SELECT x * 2 AS y FROM t;";
    let pipeline = Pipeline::parse("job.sql", text, &Variables::none()).unwrap();
    let input = pipeline.memory_source("t").unwrap();
    let output = pipeline.memory_sink("out").unwrap();
    let queries = pipeline.start().await.unwrap();
    let schema = input.schema();
    for i in 0..3i64 {
        input
            .add_batch(
                arrow::array::RecordBatch::try_new(
                    schema.clone(),
                    vec![std::sync::Arc::new(arrow::array::Int64Array::from(vec![i]))],
                )
                .unwrap(),
            )
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while output.batches().len() <= i as usize {
            assert!(std::time::Instant::now() < deadline, "batch {i} never ran");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    queries[0].stop().await.unwrap();
    let rows: usize = output.all_rows().iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 3);
}

/// `DEDUPLICATE ON (…)` in a source's column list is Spark's `dropDuplicates` on that source:
/// across batches, late rows dropped and counted with the watermark's event-time column among
/// the keys; `WITHIN WATERMARK` needs a watermark; unknown columns are refused.
#[tokio::test]
async fn deduplicate_on_drops_repeated_keys_across_batches() {
    use arrow::array::StringArray;

    let text = "SET checkpoint = 'none';\n\
        CREATE TABLE t (symbol VARCHAR, ts TIMESTAMP(3),\n\
          WATERMARK FOR ts AS ts - INTERVAL '10' SECOND,\n\
          DEDUPLICATE ON (symbol, ts)) WITH (connector = 'memory');\n\
        CREATE TABLE out WITH (connector = 'memory');\n\
        INSERT INTO out SELECT symbol, ts FROM t;";
    let pipeline = Pipeline::parse("job.sql", text, &Variables::none()).unwrap();
    let input = pipeline.memory_source("t").unwrap();
    let output = pipeline.memory_sink("out").unwrap();
    let queries = pipeline.start().await.unwrap();
    let batch = |rows: &[(&str, i64)]| keyed_times(input.schema(), rows);
    input
        .add_batch(batch(&[("a", 1_000), ("b", 1_000), ("a", 1_000)]))
        .unwrap();
    queries[0].process_all_available().await.unwrap();
    // The same key in a later batch, a new one that moves the watermark to 10 s.
    input
        .add_batch(batch(&[("a", 1_000), ("c", 20_000)]))
        .unwrap();
    queries[0].process_all_available().await.unwrap();
    // Later than the watermark: dropped and counted.
    input
        .add_batch(batch(&[("d", 5_000), ("e", 21_000)]))
        .unwrap();
    queries[0].process_all_available().await.unwrap();
    let kept: Vec<String> = output
        .all_rows()
        .iter()
        .flat_map(|b| {
            let symbols = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            symbols
                .iter()
                .flatten()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(kept, ["a", "b", "c", "e"]);
    let late: u64 = queries[0]
        .recent_progress()
        .iter()
        .flat_map(|p| &p.state_operators)
        .map(|o| o.num_rows_dropped_by_watermark)
        .sum();
    assert_eq!(late, 1);
    queries[0].stop().await.unwrap();

    for (clause, error) in [
        (
            "DEDUPLICATE ON (symbol, nope)",
            "DEDUPLICATE ON an unknown column nope",
        ),
        (
            "DEDUPLICATE ON (symbol) WITHIN WATERMARK",
            "needs the table's WATERMARK FOR",
        ),
    ] {
        let text = format!(
            "CREATE TABLE t (symbol VARCHAR, ts TIMESTAMP(3), {clause}) WITH (connector = 'memory');\n\
             CREATE TABLE out WITH (connector = 'memory');\n\
             INSERT INTO out SELECT symbol FROM t;"
        );
        let message = Pipeline::parse("job.sql", &text, &Variables::none())
            .err()
            .unwrap()
            .to_string();
        assert!(
            message.contains(error) && message.contains("job.sql:1:"),
            "{message}"
        );
    }
}

/// Two streams joined in a pipeline file: each pair once, in the batch its later row arrives.
#[tokio::test]
async fn two_streams_join_in_a_pipeline_file() {
    use arrow::array::{StringArray, TimestampMillisecondArray};

    let text = "SET checkpoint = 'none';\n\
        CREATE TABLE impressions (ad VARCHAR, its TIMESTAMP(3),\n\
          WATERMARK FOR its AS its - INTERVAL '10' SECOND) WITH (connector = 'memory');\n\
        CREATE TABLE clicks (ad VARCHAR, ct TIMESTAMP(3),\n\
          WATERMARK FOR ct AS ct - INTERVAL '20' SECOND) WITH (connector = 'memory');\n\
        CREATE TABLE out WITH (connector = 'memory');\n\
        INSERT INTO out SELECT i.ad, c.ct FROM impressions i JOIN clicks c\n\
          ON i.ad = c.ad AND c.ct BETWEEN i.its AND i.its + INTERVAL '1' MINUTE;";
    let pipeline = Pipeline::parse("job.sql", text, &Variables::none()).unwrap();
    let impressions = pipeline.memory_source("impressions").unwrap();
    let clicks = pipeline.memory_source("clicks").unwrap();
    let output = pipeline.memory_sink("out").unwrap();
    let queries = pipeline.start().await.unwrap();
    let batch = keyed_times;
    impressions
        .add_batch(batch(impressions.schema(), &[("a", 1_000), ("b", 2_000)]))
        .unwrap();
    queries[0].process_all_available().await.unwrap();
    clicks
        .add_batch(batch(clicks.schema(), &[("a", 30_000), ("b", 90_000)]))
        .unwrap();
    queries[0].process_all_available().await.unwrap();
    let pairs: Vec<(String, i64)> = output
        .all_rows()
        .iter()
        .flat_map(|b| {
            let ads = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            let times = b
                .column(1)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap();
            (0..b.num_rows())
                .map(|i| (ads.value(i).to_string(), times.value(i)))
                .collect::<Vec<_>>()
        })
        .collect();
    // b's click is 88 s after its impression: out of the minute.
    assert_eq!(pairs, [("a".to_string(), 30_000)]);
    queries[0].stop().await.unwrap();
}

/// A batch of `schema` (a text column, then a millisecond timestamp) holding `rows`.
fn keyed_times(
    schema: arrow::datatypes::SchemaRef,
    rows: &[(&str, i64)],
) -> arrow::array::RecordBatch {
    use arrow::array::{RecordBatch, StringArray, TimestampMillisecondArray};
    use std::sync::Arc;
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.1),
            )),
        ],
    )
    .unwrap()
}
