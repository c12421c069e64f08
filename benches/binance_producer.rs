//! Binance producer benchmark (criterion; throughput in elements = tickers).
//!
//! Group `binance_producer`, function `replay_to_kafka`: the local replay server serves a
//! synthetic capture (1,000 symbols, 200 one-second frames, ~120,000 tickers) as fast as the
//! client reads (`Pacing::Max`); the producer normalizes every ticker and produces it, keyed
//! by symbol, to the broker at `KAFKA_BOOTSTRAP`, or to librdkafka's in-process mock cluster
//! when unset; an iteration ends when Kafka has acknowledged every message.
//!
//! Resident memory under that load, with the real binary:
//!
//! ```sh
//! sluice replay examples/data/binance-miniticker-10min.jsonl.gz --max --loop &
//! sluice produce binance --url 'ws://127.0.0.1:9443/ws/!miniTicker@arr' --stats-interval 1s
//! ```
//!
//! (each stats line ends with `rss … MB`).
//!
//! Run: `cargo bench --bench binance_producer`.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rdkafka::mocking::MockCluster;
use sluice::connectors::binance::client::ClientOptions;
use sluice::connectors::binance::frame::{Mode, decode_frame};
use sluice::connectors::binance::generator::{SampleSpec, generate};
use sluice::connectors::binance::producer::{self, ProducerOptions};
use sluice::connectors::binance::replay::{Pacing, ReplayOptions, ReplayServer};

const TOPIC: &str = "bench-projet-bdcc";

fn binance_producer(c: &mut Criterion) {
    let frames = generate(&SampleSpec {
        symbols: 1_000,
        seconds: 200,
        ..SampleSpec::default()
    });
    let tickers: u64 = frames
        .iter()
        .map(|f| decode_frame(&f.text, Mode::Normalized).map_or(0, |d| d.messages.len() as u64))
        .sum();
    let mock;
    let bootstrap = match std::env::var("KAFKA_BOOTSTRAP") {
        Ok(address) if !address.is_empty() => address,
        _ => {
            mock = MockCluster::new(1).expect("mock cluster");
            mock.create_topic(TOPIC, 6, 1).expect("topic");
            mock.bootstrap_servers()
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = runtime
        .block_on(ReplayServer::start(
            frames,
            "127.0.0.1:0".parse().expect("address"),
            ReplayOptions {
                pacing: Pacing::Max,
                ..ReplayOptions::default()
            },
        ))
        .expect("replay server");

    let mut group = c.benchmark_group("binance_producer");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.throughput(Throughput::Elements(tickers));
    group.bench_function("replay_to_kafka", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let start = Instant::now();
                    let handle = producer::start(ProducerOptions::new(
                        ClientOptions::new(server.url("!miniTicker@arr")),
                        &bootstrap,
                        TOPIC,
                    ))
                    .expect("producer");
                    let metrics = handle.metrics();
                    while metrics.messages_out.load(Ordering::Relaxed) < tickers {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    total += start.elapsed();
                    handle.stop();
                    handle.join().await.expect("clean stop");
                }
                total
            })
        })
    });
    group.finish();
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(peak) = status.lines().find(|l| l.starts_with("VmHWM:"))
    {
        eprintln!("binance_producer: bench process peak RSS {peak} (capture and server included)");
    }
}

criterion_group!(benches, binance_producer);
criterion_main!(benches);
