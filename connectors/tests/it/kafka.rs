//! The Kafka source and sink against a real Kafka-protocol broker (`KAFKA_BOOTSTRAP`), and the
//! offset decisions (pure) without one.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{OwnBroker, admin, kafka};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, SchemaRef, TimeUnit};
use rdkafka::ClientConfig;
use rdkafka::admin::AdminOptions;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sluice_connectors::kafka::{
    Bounds, DataLoss, KafkaSink, KafkaSource, StartingOffsets, Subscription, TopicPartition,
    data_loss, from_json, offsets_behind_latest, rate_limit, resolve_starting, to_json,
};
use sluice_engine::{
    JsonOptions, MemorySink, MemorySource, MicroBatchExecution, OutputMode, ParseMode, SluiceError,
    StreamingQueryBuilder,
};

// ---------------------------------------------------------------- offsets (no broker)

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition::new(topic, partition)
}

#[test]
fn offsets_use_sparks_json_form() {
    let offsets = BTreeMap::from([(tp("a", 0), 5), (tp("a", 1), 7), (tp("b", 0), 0)]);
    let json = to_json(&offsets);
    assert_eq!(json.to_string(), r#"{"a":{"0":5,"1":7},"b":{"0":0}}"#);
    assert_eq!(from_json(json.json()).unwrap(), offsets);
    assert!(from_json(&serde_json::json!({"a": {"x": 1}})).is_err());
    assert!(from_json(&serde_json::json!([1])).is_err());
}

#[test]
fn starting_offsets_resolve_like_spark() {
    let bounds = BTreeMap::from([
        (
            tp("t", 0),
            Bounds {
                earliest: 3,
                latest: 10,
            },
        ),
        (
            tp("t", 1),
            Bounds {
                earliest: 0,
                latest: 4,
            },
        ),
        (
            tp("t", 2),
            Bounds {
                earliest: 1,
                latest: 2,
            },
        ),
    ]);
    let latest = resolve_starting(&StartingOffsets::Latest, &bounds);
    assert_eq!(latest.values().copied().collect::<Vec<_>>(), [10, 4, 2]);
    let earliest = resolve_starting(&StartingOffsets::Earliest, &bounds);
    assert_eq!(earliest.values().copied().collect::<Vec<_>>(), [3, 0, 1]);
    let specific: StartingOffsets = r#"{"t":{"0":5,"1":-2}}"#.parse().unwrap();
    let resolved = resolve_starting(&specific, &bounds);
    // Partition 2 is not named: latest, as in Spark.
    assert_eq!(resolved.values().copied().collect::<Vec<_>>(), [5, 0, 2]);
    for bad in ["first", r#"{"t":{"0":-3}}"#, r#"{"t":[1]}"#] {
        let error = bad.parse::<StartingOffsets>().unwrap_err().to_string();
        assert!(error.contains("starting_offsets"), "{bad}: {error}");
    }
}

#[test]
fn max_offsets_per_trigger_is_split_by_backlog() {
    let start = BTreeMap::from([(tp("t", 0), 0), (tp("t", 1), 100), (tp("t", 2), 50)]);
    let latest = BTreeMap::from([(tp("t", 0), 600), (tp("t", 1), 400), (tp("t", 2), 51)]);
    // Backlogs 600, 300, 1 (total 901); 100 offsets: 66.6 → 66, 33.3 → 33, 0.11 → 1 (ceil).
    let end = rate_limit(&start, &latest, 100);
    assert_eq!(end.values().copied().collect::<Vec<_>>(), [66, 133, 51]);
    // A limit above the backlog reads everything.
    assert_eq!(rate_limit(&start, &latest, 10_000), latest);
}

#[test]
fn lag_metrics_are_sparks_plus_one_per_partition() {
    let latest = BTreeMap::from([(tp("a", 0), 100), (tp("a", 1), 50), (tp("b", 0), 7)]);
    // Partition b-0 is not in the batch yet: it counts from 0, as in Spark.
    let end = BTreeMap::from([(tp("a", 0), 40), (tp("a", 1), 50)]);
    let metrics = offsets_behind_latest(&end, &latest);
    let expected = [
        ("avgOffsetsBehindLatest", "22.333333333333332"),
        ("maxOffsetsBehindLatest", "60"),
        ("minOffsetsBehindLatest", "0"),
        ("offsetsBehindLatest:a:0", "60"),
        ("offsetsBehindLatest:a:1", "0"),
        ("offsetsBehindLatest:b:0", "7"),
    ];
    let expected: BTreeMap<String, String> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(metrics, expected);
    // Java's Double.toString forms: a whole number keeps ".0", large ones are scientific.
    let caught_up = offsets_behind_latest(&latest, &latest);
    assert_eq!(caught_up["avgOffsetsBehindLatest"], "0.0");
    let far = offsets_behind_latest(
        &BTreeMap::new(),
        &BTreeMap::from([(tp("a", 0), 12_345_678)]),
    );
    assert_eq!(far["avgOffsetsBehindLatest"], "1.2345678E7");
    assert!(offsets_behind_latest(&end, &BTreeMap::new()).is_empty());
}

#[test]
fn vanished_and_deleted_offsets_are_data_loss() {
    let start = BTreeMap::from([(tp("t", 0), 5), (tp("t", 1), 8), (tp("gone", 0), 1)]);
    let bounds = BTreeMap::from([
        (
            tp("t", 0),
            Bounds {
                earliest: 9,
                latest: 20,
            },
        ),
        (
            tp("t", 1),
            Bounds {
                earliest: 8,
                latest: 20,
            },
        ),
    ]);
    let losses = data_loss(&start, &bounds);
    assert_eq!(
        losses,
        [
            DataLoss::Vanished {
                partition: tp("gone", 0)
            },
            DataLoss::Deleted {
                partition: tp("t", 0),
                wanted: 5,
                earliest: 9
            },
        ]
    );
    assert_eq!(
        losses[1].to_string(),
        "t-0: offsets 5..9 were deleted before they were read (the earliest offset is now 9)"
    );

    // A recreated topic: the partition now ends before where the query is.
    let start = BTreeMap::from([(tp("t", 0), 120)]);
    let bounds = BTreeMap::from([(
        tp("t", 0),
        Bounds {
            earliest: 0,
            latest: 30,
        },
    )]);
    let losses = data_loss(&start, &bounds);
    assert_eq!(
        losses,
        [DataLoss::Reset {
            partition: tp("t", 0),
            wanted: 120,
            latest: 30,
            earliest: 0
        }]
    );
    assert!(
        losses[0]
            .to_string()
            .starts_with("t-0: offset was changed from 120 to 30"),
        "{}",
        losses[0]
    );
}

// ---------------------------------------------------------------- against the broker

fn producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer")
}

/// Sends `(key, value, partition)` messages and waits for every delivery.
async fn produce(bootstrap: &str, topic: &str, messages: &[(String, String, i32)]) {
    let producer = producer(bootstrap);
    let deliveries: Vec<_> = messages
        .iter()
        .map(|(key, value, partition)| {
            producer
                .send_result(
                    FutureRecord::to(topic)
                        .key(key.as_str())
                        .payload(value.as_str())
                        .partition(*partition),
                )
                .map_err(|(e, _)| e)
                .expect("queued")
        })
        .collect();
    for delivery in deliveries {
        delivery.await.expect("delivered").expect("stored");
    }
}

fn ticker_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, true),
        Field::new("close_price", DataType::Float64, true),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Millisecond, None),
            true,
        ),
    ]))
}

/// `n` ticker messages over `symbols` symbols, one partition per symbol modulo `partitions`,
/// a second of event time every `symbols` messages.
fn tickers(n: usize, symbols: usize, partitions: i32) -> Vec<(String, String, i32)> {
    (0..n)
        .map(|i| {
            let symbol = format!("S{}", i % symbols);
            let value = format!(
                r#"{{"symbol":"{symbol}","close_price":{},"timestamp":{}}}"#,
                (i % 7) as f64 + 0.5,
                1_764_320_400_000_i64 + (i / symbols) as i64 * 1000
            );
            (symbol, value, (i % symbols) as i32 % partitions)
        })
        .collect()
}

/// Runs triggers until one finds nothing to do.
async fn drain(execution: &mut MicroBatchExecution) -> sluice_engine::Result<()> {
    while execution.run_trigger().await? {}
    Ok(())
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowed_query_over_three_partitions_gives_exact_aggregates() {
    let bootstrap = kafka().bootstrap();
    const MESSAGES: usize = 100_000;
    const SYMBOLS: usize = 50;
    let topic = kafka().new_topic(3).await;
    let messages = tickers(MESSAGES, SYMBOLS, 3);
    produce(bootstrap, &topic, &messages).await;

    let source = KafkaSource::new("ticks", bootstrap, Subscription::Topics(vec![topic]))
        .unwrap()
        .starting_offsets(StartingOffsets::Earliest)
        .max_offsets_per_trigger(30_000)
        .json(ticker_schema(), JsonOptions::default());
    let sink = MemorySink::new();
    let mut execution = StreamingQueryBuilder::new()
        .source("ticks", source)
        .sql(
            "SELECT window(\"timestamp\", '1 minute') AS w, symbol, count(*) AS n, \
             sum(close_price) AS total FROM ticks GROUP BY w, symbol",
        )
        .output_mode(OutputMode::Complete)
        .sink(sink.clone())
        .build()
        .await
        .unwrap();
    drain(&mut execution).await.unwrap();

    let progress = execution.recent_progress();
    let inputs: Vec<u64> = progress
        .iter()
        .map(|p| p.sources[0].num_input_rows)
        .filter(|n| *n > 0)
        .collect();
    assert!(inputs.iter().all(|n| *n <= 30_000), "{inputs:?}");
    assert_eq!(inputs.iter().sum::<u64>(), MESSAGES as u64);
    assert!(inputs.len() >= 4, "{inputs:?}");
    // The lag (summed over the partitions) shrinks batch by batch: about 70,000 messages
    // behind after the first batch, none after the last.
    let behind: Vec<u64> = progress
        .iter()
        .filter(|p| p.sources[0].num_input_rows > 0)
        .map(|p| {
            let metrics = &p.sources[0].metrics;
            let partitions = metrics
                .keys()
                .filter(|k| k.starts_with("offsetsBehindLatest:"));
            assert_eq!(partitions.count(), 3, "{metrics:?}");
            metrics
                .iter()
                .filter(|(k, _)| k.starts_with("offsetsBehindLatest:"))
                .map(|(_, v)| v.parse::<u64>().unwrap())
                .sum()
        })
        .collect();
    assert!((70_000..70_003).contains(&behind[0]), "{behind:?}");
    assert!(behind.windows(2).all(|w| w[1] < w[0]), "{behind:?}");
    let last = &progress.last().unwrap().sources[0].metrics;
    assert_eq!(last["maxOffsetsBehindLatest"], "0", "{last:?}");

    // Expected: per (minute, symbol), the count and the sum of prices.
    let mut expected: BTreeMap<(i64, String), (i64, f64)> = BTreeMap::new();
    for i in 0..MESSAGES {
        let minute = (1_764_320_400_000_i64 + (i / SYMBOLS) as i64 * 1000) / 60_000;
        let entry = expected
            .entry((minute, format!("S{}", i % SYMBOLS)))
            .or_default();
        entry.0 += 1;
        entry.1 += (i % 7) as f64 + 0.5;
    }
    let last = sink.batches().into_values().last().unwrap();
    let mut got: BTreeMap<(i64, String), (i64, f64)> = BTreeMap::new();
    for batch in &last {
        let w = batch.column(0).as_struct();
        let starts = w
            .column(0)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
        let symbols = batch.column(1).as_string::<i32>();
        let counts = batch.column(2).as_primitive::<Int64Type>();
        let totals = batch
            .column(3)
            .as_primitive::<arrow::datatypes::Float64Type>();
        for row in 0..batch.num_rows() {
            got.insert(
                (
                    starts.value(row) / 60_000_000,
                    symbols.value(row).to_string(),
                ),
                (counts.value(row), totals.value(row)),
            );
        }
    }
    assert_eq!(got, expected);
}

/// A raw query that lists `(partition, offset)` of every message it reads.
fn offsets_query(
    source: KafkaSource,
    sink: &MemorySink,
    checkpoint: &std::path::Path,
) -> StreamingQueryBuilder {
    StreamingQueryBuilder::new()
        .source("k", source)
        .sql("SELECT \"partition\", \"offset\" FROM k")
        .sink(sink.clone())
        .checkpoint_location(checkpoint.to_str().unwrap())
}

fn read_offsets(sink: &MemorySink) -> Vec<(i32, i64)> {
    let mut all = Vec::new();
    for batch in sink.all_rows() {
        let partitions = batch.column(0).as_primitive::<Int32Type>();
        let offsets = batch.column(1).as_primitive::<Int64Type>();
        all.extend((0..batch.num_rows()).map(|r| (partitions.value(r), offsets.value(r))));
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_stream_reads_every_message_once_and_new_partitions_from_their_start() {
    let bootstrap = kafka().bootstrap();
    // A pattern subscription: a topic created while the query is down brings new partitions.
    let prefix = format!("p{}", uuid::Uuid::new_v4().simple());
    let first = format!("{prefix}-a");
    kafka().create_topic(&first, 2).await;
    let messages = tickers(1_000, 10, 2);
    produce(bootstrap, &first, &messages[..600]).await;
    let checkpoint = tempfile::tempdir().unwrap();
    let sink = MemorySink::new();
    let source = || {
        KafkaSource::new(
            "k",
            bootstrap,
            Subscription::Pattern(format!("{prefix}-.*")),
        )
        .unwrap()
        .starting_offsets(StartingOffsets::Earliest)
        .max_offsets_per_trigger(250)
    };
    let query = |source: KafkaSource| {
        StreamingQueryBuilder::new()
            .source("k", source)
            .sql("SELECT topic, \"partition\", \"offset\" FROM k")
            .sink(sink.clone())
            .checkpoint_location(checkpoint.path().to_str().unwrap())
    };

    let mut run = query(source()).build().await.unwrap();
    assert!(run.run_trigger().await.unwrap());
    drop(run); // the process stops mid-stream

    produce(bootstrap, &first, &messages[600..]).await;
    let second = format!("{prefix}-b");
    kafka().create_topic(&second, 1).await;
    let extra: Vec<(String, String, i32)> = (0..5)
        .map(|i| ("x".to_string(), format!(r#"{{"n":{i}}}"#), 0))
        .collect();
    produce(bootstrap, &second, &extra).await;

    let mut run = query(source()).build().await.unwrap();
    drain(&mut run).await.unwrap();
    let mut read: Vec<(String, i32, i64)> = Vec::new();
    for batch in sink.all_rows() {
        let topics = batch.column(0).as_string::<i32>();
        let partitions = batch.column(1).as_primitive::<Int32Type>();
        let offsets = batch.column(2).as_primitive::<Int64Type>();
        read.extend((0..batch.num_rows()).map(|r| {
            (
                topics.value(r).to_string(),
                partitions.value(r),
                offsets.value(r),
            )
        }));
    }
    let unique: BTreeSet<(String, i32, i64)> = read.iter().cloned().collect();
    assert_eq!(unique.len(), read.len(), "no message read twice");
    let mut expected = BTreeSet::new();
    for partition in 0..2 {
        let count = messages.iter().filter(|m| m.2 == partition).count() as i64;
        expected.extend((0..count).map(|o| (first.clone(), partition, o)));
    }
    expected.extend((0..5).map(|o| (second.clone(), 0, o)));
    assert_eq!(unique, expected);
    for progress in run.recent_progress() {
        assert!(progress.sources[0].num_input_rows <= 250);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_values_are_handled_per_parse_mode() {
    let bootstrap = kafka().bootstrap();
    let topic = kafka().new_topic(1).await;
    let values = [
        r#"{"symbol":"A","close_price":1.5,"timestamp":1000}"#,
        r#"{"symbol":"B","close_price":"#,
        "",
        r#"{"symbol":"C","close_price":3.5,"timestamp":3000}"#,
    ];
    let messages: Vec<(String, String, i32)> = values
        .iter()
        .map(|v| ("k".to_string(), v.to_string(), 0))
        .collect();
    produce(bootstrap, &topic, &messages).await;
    let run = |mode: ParseMode| {
        let topic = topic.clone();
        async move {
            let source = KafkaSource::new("k", bootstrap, Subscription::Topics(vec![topic]))
                .unwrap()
                .starting_offsets(StartingOffsets::Earliest)
                .include_metadata(true)
                .json(
                    ticker_schema(),
                    JsonOptions {
                        mode,
                        corrupt_record_column: Some("_corrupt_record".into()),
                        ..JsonOptions::default()
                    },
                );
            let sink = MemorySink::new();
            let mut execution = StreamingQueryBuilder::new()
                .source("k", source)
                .sql("SELECT symbol, _corrupt_record, _offset FROM k")
                .sink(sink.clone())
                .build()
                .await
                .unwrap();
            let result = drain(&mut execution).await;
            let malformed: u64 = execution
                .recent_progress()
                .iter()
                .map(|p| p.sources[0].malformed_records.count)
                .sum();
            (result, sink, malformed)
        }
    };

    let (result, sink, malformed) = run(ParseMode::Permissive).await;
    result.unwrap();
    assert_eq!(malformed, 1);
    let batches = sink.all_rows();
    let offsets: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(2).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    // The empty message yields no row; the truncated one a row with its text.
    assert_eq!(offsets, [0, 1, 3]);
    assert_eq!(
        batches[0].column(1).as_string::<i32>().value(1),
        r#"{"symbol":"B","close_price":"#
    );

    let (result, sink, malformed) = run(ParseMode::DropMalformed).await;
    result.unwrap();
    assert_eq!(malformed, 1);
    let offsets: Vec<i64> = sink
        .all_rows()
        .iter()
        .flat_map(|b| b.column(2).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(offsets, [0, 3]);

    let (result, _, _) = run(ParseMode::FailFast).await;
    let error = result.unwrap_err().to_string();
    assert!(
        error.contains(&format!("{topic}-0 offset 1")) && error.contains("FAILFAST"),
        "{error}"
    );
}

/// A query that read a new 10-message topic to its end, the topic then deleted.
struct ReadThenDeleted {
    topic: String,
    execution: MicroBatchExecution,
    sink: MemorySink,
    events: Arc<std::sync::atomic::AtomicU64>,
    /// Keeps the checkpoint directory while the query runs.
    _checkpoint: tempfile::TempDir,
}

/// Reads a new 10-message topic to its end with `fail_on_data_loss(fail)`, then deletes it.
async fn read_then_delete_topic(bootstrap: &str, fail: bool) -> ReadThenDeleted {
    let topic = kafka().new_topic(1).await;
    produce(bootstrap, &topic, &tickers(10, 2, 1)).await;
    let source = KafkaSource::new("k", bootstrap, Subscription::Topics(vec![topic.clone()]))
        .unwrap()
        .starting_offsets(StartingOffsets::Earliest)
        .fail_on_data_loss(fail)
        .fetch_timeout(Duration::from_secs(5));
    let events = source.data_loss_events();
    let checkpoint = tempfile::tempdir().unwrap();
    let sink = MemorySink::new();
    let mut execution = offsets_query(source, &sink, checkpoint.path())
        .build()
        .await
        .unwrap();
    drain(&mut execution).await.unwrap();
    assert_eq!(read_offsets(&sink).len(), 10);
    for result in admin(bootstrap)
        .delete_topics(&[&topic], &AdminOptions::new())
        .await
        .unwrap()
    {
        result.unwrap();
    }
    ReadThenDeleted {
        topic,
        execution,
        sink,
        events,
        _checkpoint: checkpoint,
    }
}

#[cfg_attr(
    sluice_no_broker,
    ignore = "needs an external broker (KAFKA_BOOTSTRAP): deletes a topic, which the in-process mock cannot"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_topic_stops_the_query_unless_data_loss_is_allowed() {
    let bootstrap = kafka().bootstrap();
    for fail in [true, false] {
        let ReadThenDeleted {
            topic,
            mut execution,
            events,
            _checkpoint,
            ..
        } = read_then_delete_topic(bootstrap, fail).await;
        let outcome = drain(&mut execution).await;
        if fail {
            let error = outcome.unwrap_err().to_string();
            assert!(
                error.contains(&format!("data loss: {topic}-0 no longer exists")),
                "{error}"
            );
        } else {
            outcome.unwrap();
            assert_eq!(events.load(std::sync::atomic::Ordering::Relaxed), 1);
        }
    }
}

#[cfg_attr(
    sluice_no_broker,
    ignore = "needs an external broker (KAFKA_BOOTSTRAP): deletes a topic, which the in-process mock cannot"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_going_backwards_are_data_loss_not_a_silent_skip() {
    let bootstrap = kafka().bootstrap();
    for fail in [true, false] {
        let ReadThenDeleted {
            topic,
            mut execution,
            sink,
            events,
            _checkpoint,
        } = read_then_delete_topic(bootstrap, fail).await;
        // The topic is recreated with fewer messages than the query has read.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let results = admin(bootstrap)
                .create_topics(
                    &[rdkafka::admin::NewTopic::new(
                        &topic,
                        1,
                        rdkafka::admin::TopicReplication::Fixed(1),
                    )],
                    &AdminOptions::new(),
                )
                .await
                .unwrap();
            if results.iter().all(Result::is_ok) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{results:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        produce(bootstrap, &topic, &tickers(3, 1, 1)).await;
        let outcome = drain(&mut execution).await;
        if fail {
            let error = outcome.unwrap_err().to_string();
            assert!(
                error.contains(&format!("{topic}-0: offset was changed from 10 to 3")),
                "{error}"
            );
        } else {
            outcome.unwrap();
            assert_eq!(events.load(std::sync::atomic::Ordering::Relaxed), 1);
            // Read again from the new start: the three new messages, none skipped.
            assert_eq!(read_offsets(&sink).len(), 13);
        }
    }
}

#[tokio::test]
async fn an_unreachable_broker_fails_the_start_with_a_clear_error() {
    let source = KafkaSource::new("k", "127.0.0.1:1", Subscription::Topics(vec!["t".into()]))
        .unwrap()
        .fetch_timeout(Duration::from_secs(2))
        .property("sasl.password", "hunter2");
    assert!(!sluice_engine::Source::description(&source).contains("hunter2"));
    let error = StreamingQueryBuilder::new()
        .source("k", source)
        .sql("SELECT * FROM k")
        .sink(MemorySink::new())
        .build()
        .await;
    let error = match error {
        Ok(mut execution) => execution.run_trigger().await.unwrap_err(),
        Err(e) => e,
    };
    assert!(
        matches!(&error, SluiceError::Source { .. })
            && error
                .to_string()
                .contains("cannot read partition metadata from Kafka at 127.0.0.1:1"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_writes_one_keyed_json_message_per_row() {
    let bootstrap = kafka().bootstrap();
    let topic = kafka().new_topic(2).await;
    let input = MemorySource::new("ticks", ticker_schema());
    let json = tickers(20, 4, 1);
    let mut decoder =
        sluice_engine::JsonDecoder::new(ticker_schema(), JsonOptions::default()).unwrap();
    for (_, value, _) in &json {
        decoder.push(value.as_bytes()).unwrap();
    }
    for batch in decoder.finish().unwrap().batches {
        input.add_batch(batch).unwrap();
    }
    let mut execution = StreamingQueryBuilder::new()
        .source("ticks", input)
        .sql("SELECT symbol, close_price FROM ticks")
        .sink(KafkaSink::new(bootstrap, &topic).key_columns(["symbol"]))
        .build()
        .await
        .unwrap();
    drain(&mut execution).await.unwrap();

    let read = KafkaSource::new("k", bootstrap, Subscription::Topics(vec![topic]))
        .unwrap()
        .starting_offsets(StartingOffsets::Earliest);
    let sink = MemorySink::new();
    let mut reader = StreamingQueryBuilder::new()
        .source("k", read)
        .sql("SELECT arrow_cast(key, 'Utf8') AS key, arrow_cast(value, 'Utf8') AS value FROM k")
        .sink(sink.clone())
        .build()
        .await
        .unwrap();
    drain(&mut reader).await.unwrap();
    let mut got: Vec<(String, String)> = Vec::new();
    for batch in sink.all_rows() {
        let keys = batch.column(0).as_string::<i32>();
        let values = batch.column(1).as_string::<i32>();
        got.extend((0..batch.num_rows()).map(|r| (keys.value(r).into(), values.value(r).into())));
    }
    got.sort();
    let mut expected: Vec<(String, String)> = (0..20)
        .map(|i| {
            let symbol = format!("S{}", i % 4);
            let value = format!(
                r#"{{"symbol":"{symbol}","close_price":{}}}"#,
                (i % 7) as f64 + 0.5
            );
            (symbol, value)
        })
        .collect();
    expected.sort();
    assert_eq!(got, expected);
    assert_eq!(rows(&sink.all_rows()), 20);
}

#[cfg_attr(
    sluice_no_nisshi,
    ignore = "needs Nisshi (NISSHI_BIN or nisshi on PATH): restarts a broker of its own"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_during_the_query_loses_nothing() {
    let mut broker = OwnBroker::start();
    let address = broker.address();
    let topic = broker.kafka().new_topic(2).await;
    let messages = tickers(400, 8, 2);
    produce(&address, &topic, &messages[..200]).await;

    let checkpoint = tempfile::tempdir().unwrap();
    let sink = MemorySink::new();
    let source = KafkaSource::new("k", &address, Subscription::Topics(vec![topic.clone()]))
        .unwrap()
        .starting_offsets(StartingOffsets::Earliest)
        .fetch_timeout(Duration::from_secs(30));
    let mut execution = offsets_query(source, &sink, checkpoint.path())
        .build()
        .await
        .unwrap();
    drain(&mut execution).await.unwrap();
    assert_eq!(read_offsets(&sink).len(), 200);

    broker.restart();
    produce(&address, &topic, &messages[200..]).await;
    drain(&mut execution).await.unwrap();
    let read: BTreeSet<(i32, i64)> = read_offsets(&sink).into_iter().collect();
    assert_eq!(read.len(), 400);
    assert_eq!(read_offsets(&sink).len(), 400);
}

/// `include_headers` adds `_headers`; `kafka_header(_headers, name)` is the last value of
/// that name (Kafka's `lastHeader`), null without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_read_in_sql_with_kafka_header() {
    use rdkafka::message::{Header, OwnedHeaders};

    let bootstrap = kafka().bootstrap();
    let topic = kafka().new_topic(1).await;
    let producer = producer(bootstrap);
    let messages: [(&str, &[(&str, &str)]); 3] = [
        ("A", &[("trace", "t1"), ("origin", "x"), ("trace", "t2")]),
        ("B", &[]),
        ("C", &[("origin", "y")]),
    ];
    for (symbol, headers) in messages {
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let value = format!(r#"{{"symbol":"{symbol}"}}"#);
        producer
            .send(
                FutureRecord::<str, str>::to(&topic)
                    .payload(&value)
                    .partition(0)
                    .headers(owned),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
    }
    let schema = Arc::new(Schema::new(vec![Field::new(
        "symbol",
        DataType::Utf8,
        true,
    )]));
    let source = KafkaSource::new("k", bootstrap, Subscription::Topics(vec![topic]))
        .unwrap()
        .starting_offsets(StartingOffsets::Earliest)
        .include_metadata(true)
        .include_headers(true)
        .json(schema, JsonOptions::default());
    let sink = MemorySink::new();
    let builder = StreamingQueryBuilder::new();
    builder
        .session()
        .register_udf(sluice_connectors::kafka::kafka_header_function());
    let mut execution = builder
        .source("k", source)
        .sql(
            "SELECT symbol, arrow_cast(kafka_header(_headers, 'trace'), 'Utf8') AS trace, \
             arrow_cast(kafka_header(_headers, 'origin'), 'Utf8') AS origin FROM k",
        )
        .sink(sink.clone())
        .build()
        .await
        .unwrap();
    drain(&mut execution).await.unwrap();
    let mut got = Vec::new();
    for batch in sink.all_rows() {
        let text = |c: usize| batch.column(c).as_string::<i32>().clone();
        let (symbols, traces, origins) = (text(0), text(1), text(2));
        for row in 0..batch.num_rows() {
            let value =
                |a: &arrow::array::StringArray| a.is_valid(row).then(|| a.value(row).to_string());
            got.push((
                symbols.value(row).to_string(),
                value(&traces),
                value(&origins),
            ));
        }
    }
    assert_eq!(
        got,
        [
            ("A".into(), Some("t2".into()), Some("x".into())),
            ("B".into(), None, None),
            ("C".into(), None, Some("y".into())),
        ]
    );
}
