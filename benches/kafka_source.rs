//! Kafka source benchmark (criterion; throughput in elements = messages).
//!
//! Group `kafka_source_throughput`, on librdkafka's in-process mock cluster (or on the broker
//! at `KAFKA_BOOTSTRAP` when set), 1,000,000 normalized ticker messages (~2,000 symbols) in a
//! topic of 48 partitions:
//!
//! - `sluice`: the [`KafkaSource`] reading all of them as one micro-batch range and decoding
//!   the JSON values into typed Arrow columns (`Source::get_batch`).
//! - `raw_consumer`: the same messages read by a plain rdkafka `BaseConsumer` (assign, poll)
//!   that touches each payload, the baseline: `sluice / raw_consumer` is the figure.
//!
//! Run: `cargo bench --bench kafka_source`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset as KafkaOffset, TopicPartitionList};
use sluice::connectors::kafka::{KafkaSource, StartingOffsets, Subscription};
use sluice::connectors::ticker;
use sluice::engine::{JsonOptions, ReadLimit, Source};

const MESSAGES: usize = 1_000_000;
const SYMBOLS: usize = 2_000;
/// librdkafka's mock cluster keeps at most 5 MB per partition: 48 partitions hold the
/// 1,000,000 messages (~200 bytes each).
const PARTITIONS: i32 = 48;
const TOPIC: &str = "bench-tickers";

/// Fills the topic with `MESSAGES` ticker messages keyed by symbol.
fn fill(bootstrap: &str) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "2000000")
        .create()
        .expect("producer");
    for i in 0..MESSAGES {
        let symbol = format!("SYM{}USDT", i % SYMBOLS);
        let close = 0.5 + (i % 100_000) as f64 / 100.0;
        let value = format!(
            r#"{{"symbol":"{symbol}","close_price":{close:.2},"open_price":{:.2},"high_price":{:.2},"low_price":{:.2},"volume":{},"quote_volume":{:.4},"timestamp":{}}}"#,
            close * 0.99,
            close * 1.01,
            close * 0.98,
            i % 1_000_000,
            (i % 1_000_000) as f64 * close,
            1_764_320_400_000_i64 + (i / SYMBOLS) as i64 * 1000,
        );
        let partition = (i % SYMBOLS) as i32 % PARTITIONS;
        let mut record = BaseRecord::to(TOPIC)
            .key(&symbol)
            .payload(&value)
            .partition(partition);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flushed");
}

fn kafka_source_throughput(c: &mut Criterion) {
    // RUST_LOG=sluice_connectors=debug shows where each read's time goes.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    // The mock cluster lives as long as the benchmark.
    let mock;
    let bootstrap = match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(address) if !address.is_empty() => {
            eprintln!("kafka_source_throughput: using the broker at {address}");
            address
        }
        _ => {
            mock = MockCluster::new(1).expect("mock cluster");
            mock.create_topic(TOPIC, PARTITIONS, 1).expect("topic");
            mock.bootstrap_servers()
        }
    };
    fill(&bootstrap);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");

    let mut group = c.benchmark_group("kafka_source_throughput");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(MESSAGES as u64));

    let mut source = KafkaSource::new(
        "ticks",
        &bootstrap,
        Subscription::Topics(vec![TOPIC.to_string()]),
    )
    .expect("source")
    .starting_offsets(StartingOffsets::Earliest)
    .json(ticker::schema(), JsonOptions::default());
    let (start, end) = runtime.block_on(async {
        let start = source.initial_offset().await.expect("initial offset");
        let end = source
            .latest_offset(&start, ReadLimit::AllAvailable)
            .await
            .expect("latest offset");
        (start, end)
    });
    group.bench_function("sluice", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let begin = Instant::now();
                for _ in 0..iterations {
                    let batch = source.get_batch(&start, &end).await.expect("batch");
                    let rows: usize = batch.batches.iter().map(|b| b.num_rows()).sum();
                    assert_eq!(rows, MESSAGES);
                }
                begin.elapsed()
            })
        })
    });

    let consumer: Arc<BaseConsumer> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "bench-raw")
            .set("enable.auto.commit", "false")
            .set("fetch.max.bytes", "104857600")
            .set("max.partition.fetch.bytes", "16777216")
            .set("queued.max.messages.kbytes", "262144")
            .set("fetch.wait.max.ms", "50")
            .create()
            .expect("consumer"),
    );
    group.bench_function("raw_consumer", |b| {
        b.iter(|| {
            let mut assignment = TopicPartitionList::new();
            for partition in 0..PARTITIONS {
                assignment
                    .add_partition_offset(TOPIC, partition, KafkaOffset::Beginning)
                    .expect("partition");
            }
            consumer.assign(&assignment).expect("assign");
            let (mut read, mut bytes) = (0, 0usize);
            while read < MESSAGES {
                if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
                    bytes += message.payload().map_or(0, |p| p.len() + usize::from(p[0]));
                    read += 1;
                }
            }
            consumer.unassign().expect("unassign");
            std::hint::black_box(bytes)
        })
    });
    group.finish();
}

criterion_group!(benches, kafka_source_throughput);
criterion_main!(benches);
