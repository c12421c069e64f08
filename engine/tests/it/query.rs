//! The micro-batch loop through the public API: triggers, progress, errors, plan-once.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use sluice_engine::{
    FileSource, JsonOptions, MemorySink, MemorySource, ParseMode, QueryIdentity, QueryListener,
    StreamingQueryBuilder, StreamingQueryProgress, Trigger,
};

use crate::common::{render, ticker, ticker_schema, write_lines};

fn numbers(values: &[i64]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_query_processes_all_available_and_stops() {
    let source = MemorySource::new("n", numbers(&[]).schema());
    let sink = MemorySink::new();
    let query = StreamingQueryBuilder::new()
        .source("numbers", source.clone())
        .sql("SELECT n * 10 AS m FROM numbers WHERE n % 2 = 1")
        .sink(sink.clone())
        .query_name("odd")
        .start()
        .await
        .unwrap();
    source.add_batch(numbers(&[1, 2, 3])).unwrap();
    query.process_all_available().await.unwrap();
    source.add_batch(numbers(&[5])).unwrap();
    query.process_all_available().await.unwrap();
    assert!(query.is_active());
    assert!(query.status().is_active);
    query.stop().await.unwrap();
    assert!(!query.is_active());
    let status = query.status();
    assert_eq!(
        (
            status.is_active,
            status.is_trigger_active,
            status.message.as_str()
        ),
        (false, false, "Stopped")
    );

    assert_eq!(
        render(&sink.all_rows()),
        "+----+\n| m  |\n+----+\n| 10 |\n| 30 |\n| 50 |\n+----+"
    );
    let progress = query.recent_progress();
    let with_data: Vec<_> = progress.iter().filter(|p| p.num_input_rows > 0).collect();
    assert_eq!(with_data.len(), 2);
    assert_eq!(with_data[0].batch_id, 0);
    assert_eq!(with_data[0].num_input_rows, 3);
    assert_eq!(with_data[0].sink.num_output_rows, 2);
    assert_eq!(with_data[0].name.as_deref(), Some("odd"));
    assert_eq!(
        with_data[1].sources[0].start_offset,
        with_data[0].sources[0].end_offset
    );
    for phase in [
        "latestOffset",
        "walCommit",
        "getBatch",
        "addBatch",
        "commitOffsets",
        "triggerExecution",
    ] {
        assert!(with_data[0].duration_ms.contains_key(phase), "{phase}");
    }
    assert_eq!(query.last_progress().unwrap().id, query.id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn available_now_drains_in_rate_limited_batches_then_stops() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..5 {
        write_lines(
            dir.path(),
            &format!("{i:03}.jsonl"),
            &[ticker("A", i as f64, i)],
        );
    }
    let source = FileSource::new(
        "t",
        dir.path().to_str().unwrap(),
        ticker_schema(),
        JsonOptions::default(),
    )
    .unwrap()
    .with_max_files_per_trigger(2);
    let sink = MemorySink::new();
    let query = StreamingQueryBuilder::new()
        .source("ticks", source)
        .sql("SELECT close_price FROM ticks")
        .sink(sink.clone())
        .trigger(Trigger::AvailableNow)
        .start()
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), query.await_termination())
        .await
        .unwrap()
        .unwrap();
    let sizes: Vec<usize> = sink
        .batches()
        .values()
        .map(|b| b.iter().map(|b| b.num_rows()).sum())
        .collect();
    assert_eq!(sizes, [2, 2, 1]);
    let status = query.status();
    assert_eq!(status.backlog, Some(0), "the whole run was processed");
    assert_eq!(status.backlog_total, Some(5), "five files");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_time_trigger_spaces_batches() {
    let source = MemorySource::new("n", numbers(&[]).schema()).with_max_rows_per_trigger(1);
    source.add_batch(numbers(&[1, 2, 3])).unwrap();
    let query = StreamingQueryBuilder::new()
        .source("numbers", source)
        .sql("SELECT n FROM numbers")
        .sink(MemorySink::new())
        .trigger(Trigger::ProcessingTime(Duration::from_millis(200)))
        .start()
        .await
        .unwrap();
    let started = std::time::Instant::now();
    query.process_all_available().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "three batches need two intervals"
    );
    query.stop().await.unwrap();
}

/// What a listener was told, in order.
#[derive(Default)]
struct Recorder(std::sync::Mutex<Vec<String>>);

impl QueryListener for Recorder {
    fn on_query_started(&self, query: &QueryIdentity) {
        let name = query.name.clone().unwrap_or_default();
        self.0.lock().unwrap().push(format!("started {name}"));
    }

    fn on_query_progress(&self, progress: &StreamingQueryProgress) {
        self.0.lock().unwrap().push(format!(
            "batch {} rows {}",
            progress.batch_id, progress.num_input_rows
        ));
    }

    fn on_query_terminated(&self, query: &QueryIdentity, error: Option<&str>) {
        let name = query.name.clone().unwrap_or_default();
        let error = error.map(|e| e.contains("{broken"));
        self.0
            .lock()
            .unwrap()
            .push(format!("terminated {name} {error:?}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_are_told_of_start_every_batch_and_the_end() {
    let dir = tempfile::tempdir().unwrap();
    write_lines(
        dir.path(),
        "a.jsonl",
        &[ticker("A", 1.0, 1), ticker("B", 2.0, 2)],
    );
    let recorder = Arc::new(Recorder::default());
    let query = StreamingQueryBuilder::new()
        .source(
            "ticks",
            FileSource::new(
                "t",
                dir.path().to_str().unwrap(),
                ticker_schema(),
                JsonOptions::default(),
            )
            .unwrap(),
        )
        .sql("SELECT * FROM ticks")
        .sink(MemorySink::new())
        .trigger(Trigger::AvailableNow)
        .query_name("told")
        .listener(recorder.clone())
        .start()
        .await
        .unwrap();
    query.await_termination().await.unwrap();
    // The query's own handle agrees with what the listener saw.
    assert_eq!(query.recent_progress().len(), 1);
    assert_eq!(
        *recorder.0.lock().unwrap(),
        ["started told", "batch 0 rows 2", "terminated told None"]
    );

    // A failure is told with its error.
    write_lines(dir.path(), "b.jsonl", &["{broken".into()]);
    let failing = Arc::new(Recorder::default());
    let options = JsonOptions {
        mode: ParseMode::FailFast,
        ..Default::default()
    };
    let query = StreamingQueryBuilder::new()
        .source(
            "ticks",
            FileSource::new("t", dir.path().to_str().unwrap(), ticker_schema(), options).unwrap(),
        )
        .sql("SELECT * FROM ticks")
        .sink(MemorySink::new())
        .query_name("fails")
        .listener(failing.clone())
        .start()
        .await
        .unwrap();
    assert!(query.await_termination().await.is_err());
    assert!(query.exception().is_some());
    let told = failing.0.lock().unwrap();
    assert_eq!(told.first().map(String::as_str), Some("started fails"));
    assert_eq!(
        told.last().map(String::as_str),
        Some("terminated fails Some(true)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failfast_stops_the_query_with_the_record_named() {
    let dir = tempfile::tempdir().unwrap();
    write_lines(
        dir.path(),
        "a.jsonl",
        &[ticker("A", 1.0, 1), "{broken".into()],
    );
    let options = JsonOptions {
        mode: ParseMode::FailFast,
        ..Default::default()
    };
    let query = StreamingQueryBuilder::new()
        .source(
            "ticks",
            FileSource::new("t", dir.path().to_str().unwrap(), ticker_schema(), options).unwrap(),
        )
        .sql("SELECT * FROM ticks")
        .sink(MemorySink::new())
        .start()
        .await
        .unwrap();
    let error = query.await_termination().await.unwrap_err().to_string();
    assert!(
        error.contains("malformed record 2")
            && error.contains("a.jsonl")
            && error.contains("{broken"),
        "{error}"
    );
    assert!(!query.is_active());
    assert!(query.process_all_available().await.is_err());
}

#[tokio::test]
async fn permissive_counts_malformed_records_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    write_lines(
        dir.path(),
        "a.jsonl",
        &[
            ticker("A", 1.0, 1),
            "garbage".into(),
            r#"{"symbol":"B","close_price":"x"}"#.into(),
        ],
    );
    let sink = MemorySink::new();
    let mut execution = StreamingQueryBuilder::new()
        .source(
            "ticks",
            FileSource::new(
                "t",
                dir.path().to_str().unwrap(),
                ticker_schema(),
                JsonOptions::default(),
            )
            .unwrap(),
        )
        .sql("SELECT symbol FROM ticks")
        .sink(sink.clone())
        .build()
        .await
        .unwrap();
    assert!(execution.run_trigger().await.unwrap());
    let progress = execution.recent_progress().pop().unwrap();
    assert_eq!(progress.num_input_rows, 3);
    let malformed = &progress.sources[0].malformed_records;
    assert_eq!(malformed.count, 2);
    assert_eq!(malformed.first_record.as_deref(), Some("garbage"));
    let json = serde_json::to_value(&progress).unwrap();
    assert_eq!(json["sources"][0]["malformedRecords"]["count"], 2);
}

#[tokio::test]
async fn invalid_queries_fail_at_start_with_clear_errors() {
    let source = || MemorySource::new("n", numbers(&[]).schema());
    let cases = [
        ("SELECT missing FROM numbers", "missing"),
        ("SELECT * FROM nowhere", "nowhere"),
        ("CREATE TABLE x (a INT)", "DDL not supported"),
        ("INSERT INTO numbers VALUES (1)", "DML not supported"),
    ];
    for (sql, expected) in cases {
        let error = StreamingQueryBuilder::new()
            .source("numbers", source())
            .sql(sql)
            .sink(MemorySink::new())
            .build()
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains(expected), "{sql}: {error}");
    }
    let error = StreamingQueryBuilder::new()
        .sql("SELECT 1")
        .sink(MemorySink::new())
        .build()
        .await
        .err()
        .unwrap();
    assert!(error.to_string().contains("no source"));
    let error = StreamingQueryBuilder::new()
        .source("numbers", source())
        .source("numbers", source())
        .sql("SELECT 1")
        .sink(MemorySink::new())
        .build()
        .await
        .err()
        .unwrap();
    assert!(error.to_string().contains("registered twice"), "{error}");
}

#[tokio::test]
async fn now_is_the_logged_batch_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let source = MemorySource::new("n", numbers(&[]).schema());
    source.add_batch(numbers(&[1])).unwrap();
    let sink = MemorySink::new();
    let mut execution = StreamingQueryBuilder::new()
        .source("numbers", source.clone())
        .sql("SELECT n, CAST(now() AS BIGINT) / 1000000 AS ms, current_timestamp = now() AS same FROM numbers")
        .sink(sink.clone())
        .checkpoint_location(dir.path().to_str().unwrap())
        .build()
        .await
        .unwrap();
    assert!(execution.run_trigger().await.unwrap());
    let offsets = std::fs::read_to_string(dir.path().join("offsets/0")).unwrap();
    let logged: serde_json::Value = serde_json::from_str(offsets.lines().nth(1).unwrap()).unwrap();
    let table = render(&sink.all_rows());
    assert!(
        table.contains(&format!("| 1 | {} | true |", logged["batchTimestampMs"])),
        "{table}\n{offsets}"
    );
}

#[tokio::test]
async fn stream_static_joins_inner_and_left_outer() {
    use arrow::array::StringArray;
    let dir = tempfile::tempdir().unwrap();
    write_lines(
        dir.path(),
        "0.jsonl",
        &[ticker("BTCUSDT", 10.0, 1), ticker("DOGEUSDT", 1.0, 2)],
    );
    for (join, expected) in [
        (
            "JOIN",
            "+---------+---------+-------------+\n| symbol  | name    | close_price |\n+---------+---------+-------------+\n| BTCUSDT | Bitcoin | 10.0        |\n+---------+---------+-------------+",
        ),
        (
            "LEFT JOIN",
            "+----------+---------+-------------+\n| symbol   | name    | close_price |\n+----------+---------+-------------+\n| BTCUSDT  | Bitcoin | 10.0        |\n| DOGEUSDT |         | 1.0         |\n+----------+---------+-------------+",
        ),
    ] {
        let source = FileSource::new(
            "t",
            dir.path().to_str().unwrap(),
            ticker_schema(),
            JsonOptions::default(),
        )
        .unwrap();
        let sink = MemorySink::new();
        let builder = StreamingQueryBuilder::new()
            .source("ticks", source)
            .sql(format!(
                "SELECT t.symbol, s.name, t.close_price FROM ticks t {join} symbols s ON t.symbol = s.symbol"
            ))
            .sink(sink.clone());
        let names = RecordBatch::try_from_iter(vec![
            (
                "symbol",
                Arc::new(StringArray::from(vec!["BTCUSDT", "ETHUSDT"])) as _,
            ),
            (
                "name",
                Arc::new(StringArray::from(vec!["Bitcoin", "Ether"])) as _,
            ),
        ])
        .unwrap();
        builder.session().register_batch("symbols", names).unwrap();
        let mut execution = builder.build().await.unwrap();
        assert!(execution.run_trigger().await.unwrap());
        assert_eq!(render(&sink.all_rows()), expected, "{join}");
    }
}

#[tokio::test]
async fn explain_shows_sources_watermark_state_mode_and_sink() {
    use arrow::datatypes::TimeUnit;
    let schema = Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]));
    let builder = StreamingQueryBuilder::new()
        .source("ticks", MemorySource::new("ticks", schema))
        .sql("SELECT window(ts, '1 minute') AS w, symbol, count(*) AS n FROM ticks GROUP BY w, symbol")
        .watermark("ticks", "ts", Duration::from_secs(10))
        .drop_duplicates("ticks", ["symbol", "ts"])
        .output_mode(sluice_engine::OutputMode::Append)
        .sink(MemorySink::new())
        .query_name("candles");
    let text = builder.explain().await.unwrap();
    for expected in [
        "name: candles",
        "ticks: MemorySource[ticks], watermark ts - 10000 ms, dropDuplicates(symbol, ts)",
        "stateful operator: stateStoreSave: aggregation by [window(ticks.ts,Utf8(\"1 minute\")), symbol], window key: window(",
        "output mode: append",
        "sink: MemorySink",
        "== Physical plan ==",
    ] {
        assert!(text.contains(expected), "missing '{expected}' in:\n{text}");
    }
}

#[tokio::test]
async fn joins_that_cannot_stream_are_refused_at_start() {
    use arrow::array::StringArray;
    let source = || MemorySource::new("n", ticker_schema());
    for (sql, expected) in [
        (
            "SELECT * FROM symbols s LEFT JOIN ticks t ON t.symbol = s.symbol",
            "on the side it does not keep",
        ),
        (
            "SELECT * FROM ticks t FULL JOIN symbols s ON t.symbol = s.symbol",
            "on the side it does not keep",
        ),
        (
            "SELECT * FROM ticks a LEFT JOIN other b ON a.symbol = b.symbol",
            "Stream-stream left outer join between two streaming DataFrame/Datasets is not supported without watermarks on both sides",
        ),
        (
            "SELECT * FROM ticks a LEFT SEMI JOIN other b ON a.symbol = b.symbol",
            "Stream-stream left semi join between two streaming DataFrame/Datasets is not supported without watermarks on both sides",
        ),
        (
            "SELECT * FROM ticks a LEFT ANTI JOIN other b ON a.symbol = b.symbol",
            "LeftAnti joins between two streams are not supported yet",
        ),
        (
            "SELECT * FROM ticks a JOIN ticks b ON a.symbol = b.symbol",
            "self-join of 'ticks' is not supported yet",
        ),
        (
            "SELECT a.symbol, count(*) AS n FROM ticks a JOIN other b ON a.symbol = b.symbol GROUP BY a.symbol",
            "an aggregation after a stream-stream join needs a join condition bounding both sides",
        ),
        (
            "SELECT a.symbol FROM ticks a JOIN other b ON a.symbol = b.symbol UPDATE",
            "supported in Append output mode only",
        ),
    ] {
        // The last case asks for update mode (the keyword is not SQL: it is taken off).
        let (sql, mode) = match sql.strip_suffix(" UPDATE") {
            Some(sql) => (sql, sluice_engine::OutputMode::Update),
            None => (sql, sluice_engine::OutputMode::Append),
        };
        let builder = StreamingQueryBuilder::new()
            .source("ticks", source())
            .source("other", source())
            .sql(sql)
            .output_mode(mode)
            .sink(MemorySink::new());
        let names = RecordBatch::try_from_iter(vec![(
            "symbol",
            Arc::new(StringArray::from(vec!["BTCUSDT"])) as _,
        )])
        .unwrap();
        builder.session().register_batch("symbols", names).unwrap();
        let error = builder
            .build()
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains(expected), "{sql}: {error}");
    }
}

/// A sink that keeps the context the engine opened it with.
struct ContextProbe(Arc<std::sync::Mutex<Option<sluice_engine::SinkContext>>>);

#[async_trait::async_trait]
impl sluice_engine::Sink for ContextProbe {
    fn description(&self) -> String {
        "ContextProbe".into()
    }

    async fn open(&mut self, context: &sluice_engine::SinkContext) -> sluice_engine::Result<()> {
        *self.0.lock().unwrap() = Some(context.clone());
        Ok(())
    }

    async fn add_batch(&mut self, _: u64, _: &[RecordBatch]) -> sluice_engine::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn sinks_learn_the_output_mode_and_the_group_key_columns() {
    use arrow::datatypes::TimeUnit;
    use sluice_engine::OutputMode;
    let schema = Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]));
    for (sql, mode, expected) in [
        (
            "SELECT window(ts, '1 minute') AS w, symbol AS s, max(price) AS high \
             FROM ticks GROUP BY w, symbol",
            OutputMode::Update,
            Some(vec!["w".to_string(), "s".to_string()]),
        ),
        (
            "SELECT max(price) AS high, symbol FROM ticks GROUP BY symbol HAVING max(price) > 1 \
             ORDER BY symbol",
            OutputMode::Complete,
            Some(vec!["symbol".to_string()]),
        ),
        (
            "SELECT lower(symbol) AS s, max(price) AS high FROM ticks GROUP BY symbol",
            OutputMode::Update,
            None,
        ),
        ("SELECT symbol, price FROM ticks", OutputMode::Append, None),
    ] {
        let seen = Arc::new(std::sync::Mutex::new(None));
        StreamingQueryBuilder::new()
            .source("ticks", MemorySource::new("ticks", Arc::clone(&schema)))
            .sql(sql)
            .output_mode(mode)
            .sink(ContextProbe(Arc::clone(&seen)))
            .build()
            .await
            .unwrap();
        let context = seen.lock().unwrap().clone().expect("the sink was opened");
        assert_eq!(context.output_mode, mode, "{sql}");
        assert_eq!(context.key_columns, expected, "{sql}");
    }
}

#[tokio::test]
async fn a_chain_of_thousands_of_operators_is_an_error_not_a_stack_overflow() {
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)]));
    let plan = |terms: usize| {
        let sql = format!("SELECT {} AS s FROM t", vec!["x"; terms].join(" + "));
        let source = MemorySource::new("t", schema.clone());
        async move {
            StreamingQueryBuilder::new()
                .source("t", source)
                .sql(sql)
                .sink(MemorySink::new())
                .explain()
                .await
        }
    };
    let error = plan(100_000).await.unwrap_err().to_string();
    assert!(error.contains("more than 128 operators"), "{error}");
    assert!(plan(2_000).await.is_err());
    assert!(plan(130).await.is_err());
    // 128 operators (129 terms) plan, on a test thread's 2 MiB stack; so do many short
    // expressions.
    plan(129).await.unwrap();
    let many = (0..1_000)
        .map(|i| format!("x + {i} AS c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    StreamingQueryBuilder::new()
        .source("t", MemorySource::new("t", schema.clone()))
        .sql(format!("SELECT {many} FROM t"))
        .sink(MemorySink::new())
        .explain()
        .await
        .unwrap();
}

/// A per-batch `DISTINCT ON` is run by hashing (the seed job's dedup), not as DataFusion's
/// ordered first-value aggregation: same rows, in input order, the first of each key kept, null
/// keys equal to each other; a query with `ORDER BY` keeps DataFusion's plan.
#[tokio::test]
async fn per_batch_distinct_on_keeps_the_first_row_of_each_key() {
    use arrow::array::StringArray;

    let schema = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, true),
        Field::new("s", DataType::Utf8, true),
    ]));
    let rows = |n: Vec<Option<i64>>, s: Vec<Option<&str>>| {
        RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(n)),
                Arc::new(StringArray::from(s)),
            ],
        )
        .unwrap()
    };
    // Two input batches in one micro-batch: the first occurrence is across both.
    let first = rows(
        vec![Some(1), Some(4), Some(2), None, Some(7), None, Some(10)],
        vec![
            Some("a"),
            Some("a"),
            Some("b"),
            Some("c"),
            Some("a"),
            Some("c"),
            None,
        ],
    );
    let second = rows(
        vec![Some(5), Some(13), Some(3), Some(6)],
        vec![Some("b"), None, Some("b"), Some("a")],
    );
    let sql = "SELECT DISTINCT ON (n % 3, s) n * 10 AS m, s FROM numbers WHERE n IS NULL OR n <> 6";
    let source = MemorySource::new("n", schema.clone());
    let sink = MemorySink::new();
    let builder = StreamingQueryBuilder::new()
        .source("numbers", source.clone())
        .sql(sql)
        .foreach_batch()
        .sink(sink.clone());
    assert!(builder.explain().await.unwrap().contains("FirstPerKey"));
    let mut execution = builder.build().await.unwrap();
    source.add_batch(first.clone()).unwrap();
    source.add_batch(second.clone()).unwrap();
    assert!(execution.run_trigger().await.unwrap());
    // Keys (n % 3, s): (1,a) 1 → 10, (1,a) 4 dropped, (2,b) 2 → 20, (null,c) → null, (1,a) 7
    // dropped, (null,c) dropped, (1,null) 10 → 100, (2,b) 5 dropped, (1,null) 13 dropped,
    // (0,b) 3 → 30, 6 filtered out.
    assert_eq!(
        render(&sink.all_rows()),
        "+-----+---+\n| m   | s |\n+-----+---+\n| 10  | a |\n| 20  | b |\n|     | c |\n| 100 |   |\n| 30  | b |\n+-----+---+"
    );
    // DataFusion's own DISTINCT ON over the same rows agrees (compared sorted).
    let ctx = sluice_engine::streaming_session();
    let table =
        datafusion::datasource::MemTable::try_new(schema.clone(), vec![vec![first, second]])
            .unwrap();
    ctx.register_table("numbers", Arc::new(table)).unwrap();
    let reference = ctx
        .sql(&format!("SELECT * FROM ({sql}) ORDER BY m NULLS FIRST"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let ours = sink.all_rows();
    let ours = arrow::compute::concat_batches(&ours[0].schema(), &ours).unwrap();
    let indices = arrow::compute::sort_to_indices(ours.column(0), None, None).unwrap();
    let ours = arrow::compute::take_record_batch(&ours, &indices).unwrap();
    assert_eq!(render(&reference), render(&[ours]));

    // With ORDER BY, DataFusion's plan stays.
    let ordered = StreamingQueryBuilder::new()
        .source("numbers", MemorySource::new("n", schema.clone()))
        .sql("SELECT DISTINCT ON (s) n, s FROM numbers ORDER BY s, n DESC")
        .foreach_batch()
        .sink(MemorySink::new());
    assert!(!ordered.explain().await.unwrap().contains("FirstPerKey"));
}

/// A union of two streams then an aggregation (allowed in Spark) is one streaming aggregation,
/// though DataFusion plans it in two phases over the union's partitions.
#[tokio::test]
async fn union_all_then_group_by_is_one_streaming_aggregation() {
    let left = MemorySource::new("l", numbers(&[]).schema());
    let right = MemorySource::new("r", numbers(&[]).schema());
    let sink = MemorySink::new();
    let mut execution = StreamingQueryBuilder::new()
        .source("a", left.clone())
        .source("b", right.clone())
        .sql(
            "SELECT n % 2 AS parity, count(*) AS c, sum(n) AS total \
             FROM (SELECT n FROM a UNION ALL SELECT n FROM b) GROUP BY n % 2",
        )
        .output_mode(sluice_engine::OutputMode::Complete)
        .sink(sink.clone())
        .build()
        .await
        .unwrap();
    left.add_batch(numbers(&[1, 2, 3])).unwrap();
    right.add_batch(numbers(&[4, 5])).unwrap();
    assert!(execution.run_trigger().await.unwrap());
    left.add_batch(numbers(&[7])).unwrap();
    assert!(execution.run_trigger().await.unwrap());
    let last = sink.batches().into_values().last().unwrap();
    let mut rows: Vec<String> = render(&last)
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("parity"))
        .map(String::from)
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        ["| 0      | 2 | 6     |", "| 1      | 4 | 16    |"],
        "state across batches and both sources"
    );
}

/// A view is expanded into the query that reads it, over the same source tables: an
/// explained builder builds again; a view may not take a source's name; a view's error
/// names it; a view with an aggregation under a query with another is two aggregations.
#[tokio::test]
async fn views_are_expanded_into_the_query() {
    let source = || {
        let source = MemorySource::new("n", numbers(&[]).schema());
        source.add_batch(numbers(&[1, 2, 3, 4])).unwrap();
        source
    };
    let sink = MemorySink::new();
    let builder = StreamingQueryBuilder::new()
        .source("numbers", source())
        .view("evens", "SELECT n FROM numbers WHERE n % 2 = 0")
        .view("doubled", "SELECT n * 2 AS d FROM evens")
        .sql("SELECT d FROM doubled")
        .sink(sink.clone());
    let plan = builder.explain().await.unwrap();
    assert!(plan.contains("numbers"), "{plan}");
    let mut execution = builder.build().await.unwrap();
    while execution.run_trigger().await.unwrap() {}
    let got: Vec<i64> = sink
        .all_rows()
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect();
    assert_eq!(got, [4, 8]);

    for (name, sql, expected) in [
        ("numbers", "SELECT 1", "'numbers' is already a source"),
        ("v", "SELECT nope FROM numbers", "view 'v': "),
    ] {
        let error = StreamingQueryBuilder::new()
            .source("numbers", source())
            .view(name, sql)
            .sql("SELECT * FROM numbers")
            .sink(MemorySink::new())
            .build()
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains(expected), "{error}");
    }
    let error = StreamingQueryBuilder::new()
        .source("numbers", source())
        .view("counts", "SELECT n, count(*) AS c FROM numbers GROUP BY n")
        .sql("SELECT c, count(*) FROM counts GROUP BY c")
        .output_mode(sluice_engine::OutputMode::Complete)
        .sink(MemorySink::new())
        .build()
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("aggregation"), "{error}");
}

/// An aggregation without GROUP BY has one group, whatever the parallelism: one row per
/// batch in complete mode, and the count of every row so far.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_aggregation_gives_one_row_with_any_parallelism() {
    for parallelism in [1, 4] {
        let source = MemorySource::new("s", numbers(&[]).schema());
        let sink = MemorySink::new();
        let mut execution = StreamingQueryBuilder::new()
            .source("s", source.clone())
            .sql("SELECT count(*) AS rows, sum(n) AS total FROM s")
            .output_mode(sluice_engine::OutputMode::Complete)
            .sink(sink.clone())
            .parallelism(parallelism)
            .build()
            .await
            .unwrap();
        for values in [&[1, 2, 3, 4, 5][..], &[10, 20]] {
            source.add_batch(numbers(values)).unwrap();
            assert!(execution.run_trigger().await.unwrap());
        }
        let batches = sink.batches();
        assert_eq!(
            render(&batches[&1]),
            "+------+-------+\n| rows | total |\n+------+-------+\n| 7    | 45    |\n+------+-------+",
            "parallelism {parallelism}"
        );
    }
}
