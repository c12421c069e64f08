//! Engine benchmarks (criterion; throughput in elements, so criterion prints elements/s).
//!
//! - `json_decode/sluice`: the engine's JSON decode path ([`JsonDecoder`]), fed 1,000,000
//!   normalized ticker messages (~2,000 symbols) one message at a time, as a Kafka consumer
//!   delivers them; `json_decode/arrow_json_raw`: a bare arrow-json `Decoder` on the same bytes.
//!   The ratio of the two is the cost of Sluice's malformed-record handling.
//! - `batch_overhead/one_row_batch`: one 1-row micro-batch through the planned seed query
//!   (`queries/projet_bdcc.sql`), with offsets and commits written to a local checkpoint
//!   directory; elements/s is micro-batches per second.
//!
//! - `window_aggregate/candles_1m`: the same 1,000,000 messages as JSON lines, decoded in
//!   micro-batches of 10,000 on one core and aggregated into 1-minute candles per symbol (open and close by `min_by` /
//!   `max_by`, high, low, volume sum, count) in update mode with a watermark, the checkpoint
//!   (offsets, state as Arrow IPC, commit) written every batch to an in-memory object store;
//!   prints the state's memory at the end. `window_aggregate/candles_1m_local_checkpoint`:
//!   the same with the checkpoint in a local temporary directory, which adds the file
//!   system's cost of creating three files per micro-batch.
//!
//! - `parallel_scaling/{p1,p2}`: the candles query over the same messages in micro-batches of
//!   100,000, decoded and aggregated with parallelism 1 and 2 on a two-thread runtime
//!   (checkpoint in memory): p2 / p1 is how the engine scales on two cores.
//!
//! - `seed_job/sluice`: the seed's job as `sluice run queries/projet_bdcc.sql` runs it, on
//!   the same 1,000,000 messages written as ten JSON-lines files of 100,000: one file per
//!   micro-batch (available-now), decoded, `timestamp_ts`, spread and mid price derived,
//!   deduplicated per batch on `(timestamp_ts, symbol)`, written as Parquet files, with the
//!   checkpoint in a local directory; prints the job's peak RSS (the process's, from after
//!   the input files are written).
//!
//! Run: `cargo bench --bench engine`.

use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_json::ReaderBuilder;
use async_trait::async_trait;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::connectors::ticker;
use sluice::engine::{
    FileFormat, FileSink, FileSource, JsonDecoder, JsonOptions, MemorySource, OutputMode, Sink,
    StreamingQueryBuilder, Trigger,
};

const MESSAGES: usize = 1_000_000;
const SYMBOLS: usize = 2_000;

/// `MESSAGES` ticker messages back to back, and the end offset of each.
fn messages() -> (Vec<u8>, Vec<usize>) {
    let mut bytes = Vec::with_capacity(MESSAGES * 200);
    let mut ends = Vec::with_capacity(MESSAGES);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..MESSAGES {
        // xorshift: deterministic, varied digits.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let close = 0.5 + (state % 10_000_000) as f64 / 100.0;
        let line = format!(
            // Prices with Binance's precision (at most 8 decimals), as the producer normalizes them.
            r#"{{"symbol":"SYM{}USDT","close_price":{close:.2},"open_price":{:.2},"high_price":{:.2},"low_price":{:.2},"volume":{},"quote_volume":{:.4},"timestamp":{}}}"#,
            i % SYMBOLS,
            close * 0.99,
            close * 1.01,
            close * 0.98,
            (state >> 20) % 1_000_000,
            ((state >> 20) % 1_000_000) as f64 * close,
            1_764_320_400_000_i64 + (i / SYMBOLS) as i64 * 1000,
        );
        bytes.extend_from_slice(line.as_bytes());
        ends.push(bytes.len());
    }
    (bytes, ends)
}

fn each_message<'a>(bytes: &'a [u8], ends: &'a [usize]) -> impl Iterator<Item = &'a [u8]> {
    ends.iter().scan(0, move |start, &end| {
        let message = &bytes[*start..end];
        *start = end;
        Some(message)
    })
}

fn json_decode(c: &mut Criterion) {
    let (bytes, ends) = messages();
    let schema = ticker::schema();
    let batch_size = JsonOptions::default().batch_size;
    let mut group = c.benchmark_group("json_decode");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));

    group.bench_function("sluice", |b| {
        let mut decoder =
            JsonDecoder::new(schema.clone(), JsonOptions::default()).expect("decoder");
        b.iter(|| {
            for message in each_message(&bytes, &ends) {
                decoder.push(message).expect("clean input");
            }
            let decoded = decoder.finish().expect("clean input");
            assert_eq!(
                decoded
                    .batches
                    .iter()
                    .map(RecordBatch::num_rows)
                    .sum::<usize>(),
                MESSAGES
            );
        })
    });

    group.bench_function("arrow_json_raw", |b| {
        let mut decoder = ReaderBuilder::new(schema.clone())
            .with_batch_size(batch_size)
            .build_decoder()
            .expect("decoder");
        b.iter(|| {
            let mut rows = 0;
            for message in each_message(&bytes, &ends) {
                decoder.decode(message).expect("clean input");
                if decoder.len() == batch_size {
                    rows += decoder
                        .flush()
                        .expect("clean input")
                        .map_or(0, |b| b.num_rows());
                }
            }
            rows += decoder
                .flush()
                .expect("clean input")
                .map_or(0, |b| b.num_rows());
            assert_eq!(rows, MESSAGES);
        })
    });
    group.finish();
}

/// A sink that drops its input, so that only the engine is measured.
struct Discard;

#[async_trait]
impl Sink for Discard {
    fn description(&self) -> String {
        "Discard".into()
    }

    async fn add_batch(
        &mut self,
        _batch_id: u64,
        _batches: &[RecordBatch],
    ) -> sluice::engine::Result<()> {
        Ok(())
    }
}

/// The query of `queries/projet_bdcc.sql`.
fn seed_query() -> String {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/queries/projet_bdcc.sql");
    let pipeline = sluice::pipeline::Pipeline::load(file, &sluice::pipeline::Variables::none())
        .expect("the seed's pipeline file");
    pipeline
        .query_sql("projet_bdcc")
        .expect("its query")
        .to_string()
}

fn batch_overhead(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let checkpoint = tempfile::tempdir().expect("temp dir");
    let source = MemorySource::new("ticks", ticker::schema());
    let mut execution = runtime
        .block_on(
            StreamingQueryBuilder::new()
                .source("ticks", source.clone())
                .sql(seed_query())
                .foreach_batch()
                .sink(Discard)
                .checkpoint_location(checkpoint.path().to_str().expect("utf-8 path"))
                .build(),
        )
        .expect("planned query");
    let mut decoder = JsonDecoder::new(ticker::schema(), JsonOptions::default()).expect("decoder");
    decoder
        .push(br#"{"symbol":"BTCUSDT","close_price":65000.5,"open_price":64000,"high_price":66000,"low_price":63000,"volume":12.5,"quote_volume":812000,"timestamp":1764320400000}"#)
        .expect("clean input");
    let row = decoder.finish().expect("clean input").batches.remove(0);

    let mut group = c.benchmark_group("batch_overhead");
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_row_batch", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iterations {
                    source.add_batch(row.clone()).expect("same schema");
                    assert!(execution.run_trigger().await.expect("batch runs"));
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

const CANDLES: &str = "SELECT window(\"timestamp\", '1 minute') AS w, symbol, \
    min_by(close_price, \"timestamp\") AS open, max(high_price) AS high, min(low_price) AS low, \
    max_by(close_price, \"timestamp\") AS close, sum(volume) AS volume, count(*) AS trades \
    FROM ticks GROUP BY w, symbol";

/// The messages as JSON-lines text, `per_batch` messages per micro-batch, made one chunk at
/// a time.
fn line_chunks<'a>(
    bytes: &'a [u8],
    ends: &'a [usize],
    per_batch: usize,
) -> impl Iterator<Item = Vec<u8>> + 'a {
    let mut messages = each_message(bytes, ends).peekable();
    std::iter::from_fn(move || {
        messages.peek()?;
        let mut lines = Vec::new();
        for message in messages.by_ref().take(per_batch) {
            lines.extend_from_slice(message);
            lines.push(b'\n');
        }
        Some(lines)
    })
}

/// Runs the candles query `iterations` times over `chunks` (one micro-batch each) with
/// `parallelism` partitions (decoding included), each run from a fresh checkpoint made by
/// `checkpoint` (a location, and whatever must live as long as the run); returns the time
/// spent decoding and running micro-batches.
fn candles(
    runtime: &tokio::runtime::Runtime,
    chunks: &[Vec<u8>],
    parallelism: usize,
    iterations: u64,
    checkpoint: impl Fn() -> (Option<tempfile::TempDir>, String),
) -> Duration {
    let schema = ticker::event_time_schema();
    let mut total = Duration::ZERO;
    for _ in 0..iterations {
        let (_dir, location) = checkpoint();
        let source = MemorySource::new("ticks", schema.clone());
        let mut execution = runtime
            .block_on(
                StreamingQueryBuilder::new()
                    .source("ticks", source.clone())
                    .sql(CANDLES)
                    .output_mode(OutputMode::Update)
                    .watermark("ticks", "timestamp", Duration::from_secs(10))
                    .sink(Discard)
                    .parallelism(parallelism)
                    .checkpoint_location(&location)
                    .build(),
            )
            .expect("planned query");
        let mut decoder =
            JsonDecoder::new(schema.clone(), JsonOptions::default()).expect("decoder");
        let start = Instant::now();
        runtime.block_on(async {
            for chunk in chunks {
                let decoded = decoder
                    .decode_lines(chunk, parallelism)
                    .expect("clean input");
                for batch in decoded.batches {
                    source.add_batch(batch).expect("same schema");
                }
                while execution.run_trigger().await.expect("batch runs") {}
            }
        });
        total += start.elapsed();
        let progress = execution.recent_progress().pop();
        if let Some(state) = progress.as_ref().and_then(|p| p.state_operators.first()) {
            eprintln!(
                "window_aggregate: {} groups in state, {} bytes",
                state.num_rows_total, state.memory_used_bytes
            );
        }
    }
    total
}

fn window_aggregate(c: &mut Criterion) {
    let (bytes, ends) = messages();
    let chunks: Vec<Vec<u8>> = line_chunks(&bytes, &ends, 10_000).collect();
    // One core: every task of the query runs on this thread.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let mut group = c.benchmark_group("window_aggregate");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    // The engine: the full checkpoint protocol every batch (offsets, state as Arrow IPC,
    // commit) into an in-memory object store, so that no disk is measured.
    group.bench_function("candles_1m", |b| {
        b.iter_custom(|iterations| {
            candles(&runtime, &chunks, 1, iterations, || {
                (None, "memory:///".to_string())
            })
        })
    });
    // The same with the checkpoint in a local temporary directory: adds the file system's
    // cost of three new files per micro-batch.
    group.bench_function("candles_1m_local_checkpoint", |b| {
        b.iter_custom(|iterations| {
            candles(&runtime, &chunks, 1, iterations, || {
                let dir = tempfile::tempdir().expect("temp dir");
                let location = dir.path().to_str().expect("utf-8 path").to_string();
                (Some(dir), location)
            })
        })
    });
    group.finish();
}

fn parallel_scaling(c: &mut Criterion) {
    let (bytes, ends) = messages();
    let chunks: Vec<Vec<u8>> = line_chunks(&bytes, &ends, 100_000).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("parallel_scaling");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for parallelism in [1, 2] {
        group.bench_function(format!("p{parallelism}"), |b| {
            b.iter_custom(|iterations| {
                candles(&runtime, &chunks, parallelism, iterations, || {
                    (None, "memory:///".to_string())
                })
            })
        });
    }
    group.finish();
}

/// Files of `queries/projet_bdcc.sql`'s input: the messages, 100,000 per file.
fn seed_job_input(dir: &std::path::Path) {
    let (bytes, ends) = messages();
    for (file, lines) in line_chunks(&bytes, &ends, 100_000).enumerate() {
        std::fs::write(dir.join(format!("{file:02}.jsonl")), lines).expect("input file");
    }
}

/// Resets this process's peak resident set (Linux's `VmHWM`) to its current one, so that the
/// peak measured next is the job's, not the input generation's.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak resident set of this process (Linux's `VmHWM`), in MB.
fn peak_rss_mb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024)
}

fn seed_job(c: &mut Criterion) {
    let input = tempfile::tempdir().expect("temp dir");
    seed_job_input(input.path());
    reset_peak_rss();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sql = seed_query();
    let mut group = c.benchmark_group("seed_job");
    group.throughput(Throughput::Elements(MESSAGES as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    // The last run's time per phase of its micro-batches (Spark's `durationMs`), summed.
    let last_phases = std::cell::RefCell::new(std::collections::BTreeMap::new());
    group.bench_function("sluice", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let work = tempfile::tempdir().expect("temp dir");
                let source = FileSource::new(
                    "ticks",
                    input.path().to_str().expect("utf-8 path"),
                    ticker::schema(),
                    JsonOptions::default(),
                )
                .expect("file source")
                .with_max_files_per_trigger(1);
                let sink = FileSink::new(
                    work.path().join("out").to_str().expect("utf-8 path"),
                    FileFormat::Parquet,
                )
                .expect("file sink");
                let start = Instant::now();
                runtime.block_on(async {
                    let query = StreamingQueryBuilder::new()
                        .source("ticks", source)
                        .sql(sql.clone())
                        .foreach_batch()
                        .sink(sink)
                        .trigger(Trigger::AvailableNow)
                        .checkpoint_location(
                            work.path().join("checkpoint").to_str().expect("utf-8 path"),
                        )
                        .start()
                        .await
                        .expect("started");
                    query.await_termination().await.expect("ran");
                    let rows: u64 = query
                        .recent_progress()
                        .iter()
                        .map(|p| p.sink.num_output_rows)
                        .sum();
                    assert_eq!(rows, MESSAGES as u64, "every ticker is distinct");
                    let mut phases = std::collections::BTreeMap::<String, u64>::new();
                    for progress in query.recent_progress() {
                        for (phase, ms) in progress.duration_ms {
                            *phases.entry(phase).or_default() += ms;
                        }
                    }
                    *last_phases.borrow_mut() = phases;
                });
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
    if let Some(peak) = peak_rss_mb() {
        eprintln!(
            "seed_job: peak RSS of the job {peak} MB (measured from after writing its input)"
        );
    }
    eprintln!(
        "seed_job: the last run's time per phase, in ms: {:?}",
        last_phases.borrow()
    );
}

criterion_group!(
    benches,
    json_decode,
    batch_overhead,
    window_aggregate,
    parallel_scaling,
    seed_job
);
criterion_main!(benches);
