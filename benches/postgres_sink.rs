//! Relational sink benchmarks on PostgreSQL (criterion; throughput in elements = rows).
//!
//! Group `postgres_sink_throughput`, on the server at `DATABASE_URL` (skipped without it):
//!
//! - `append`: 1,000,000 rows of the `projet_bdcc` shape (400 symbols, the index on
//!   `(symbol, timestamp_ts)` that the pipeline creates) written by
//!   [`RelationalSink`] in append mode: one batch, one transaction, binary `COPY`, plus the
//!   commit-table update and the notification.
//! - `psql_copy`: the same rows loaded into the same table from a CSV file by
//!   `psql -c "\copy … FROM … CSV"`, the baseline: `append / psql_copy` is the figure.
//! - `upsert`: 200,000 rows of the `candles_1m` shape (400 symbols × 500 minutes) in update
//!   mode, every row replacing an existing one (staging `COPY` + `INSERT … ON CONFLICT`).
//!
//! The table is emptied before each measured write, outside the timing.
//!
//! Run: `eval "$(scripts/dev-services.sh)" && cargo bench --bench postgres_sink`.

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::array::{StructArray, TimestampMicrosecondArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::connectors::relational::RelationalSink;
use sluice::engine::{OutputMode, Sink, SinkContext};
use sluice_testkit::projet_bdcc_schema;

const APPEND_ROWS: usize = 1_000_000;
const SYMBOLS: usize = 400;
const MINUTES: usize = 500;
const BATCH_ROWS: usize = 8_192;

/// Deterministic prices: a xorshift walk per row.
fn price(i: usize) -> f64 {
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    ((x % 10_000_000) as f64) / 100.0 + 0.01
}

/// The `projet_bdcc` rows as Arrow batches and as CSV text.
fn projet_bdcc() -> (Vec<RecordBatch>, String) {
    let mut batches = Vec::new();
    let mut csv = String::with_capacity(APPEND_ROWS * 120);
    for start in (0..APPEND_ROWS).step_by(BATCH_ROWS) {
        let rows: Vec<usize> = (start..(start + BATCH_ROWS).min(APPEND_ROWS)).collect();
        let symbol = |i: usize| format!("SYM{}USDT", i % SYMBOLS);
        let timestamp = |i: usize| 1_764_320_400_000_i64 + (i / SYMBOLS) as i64 * 1_000;
        let column = |f: fn(f64) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|&i| f(price(i))),
            ))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|&i| symbol(i)),
            )),
            column(|p| p),
            column(|p| p * 0.99),
            column(|p| p * 1.01),
            column(|p| p * 0.98),
            column(|p| p * 3.0),
            column(|p| p * p),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|&i| timestamp(i)),
            )),
            column(|p| p * 1.01 - p * 0.98),
            column(|p| (p * 1.01 + p * 0.98) / 2.0),
        ];
        let batch = RecordBatch::try_new(projet_bdcc_schema(), columns).expect("batch");
        for (row, &i) in rows.iter().enumerate() {
            let values: Vec<String> = (1..7)
                .map(|c| {
                    let array = batch.column(c).as_any().downcast_ref::<Float64Array>();
                    array.expect("float").value(row).to_string()
                })
                .collect();
            let at = chrono::DateTime::from_timestamp_millis(timestamp(i)).expect("timestamp");
            let spread = batch.column(8).as_any().downcast_ref::<Float64Array>();
            let mid = batch.column(9).as_any().downcast_ref::<Float64Array>();
            csv += &format!(
                "{},{},{},{},{}\n",
                symbol(i),
                values.join(","),
                at.format("%Y-%m-%d %H:%M:%S%.3f+00"),
                spread.expect("float").value(row),
                mid.expect("float").value(row)
            );
        }
        batches.push(batch);
    }
    (batches, csv)
}

/// The `candles_1m` rows: one per symbol and minute.
fn candles(round: usize) -> (SchemaRef, Vec<RecordBatch>) {
    let timestamp = DataType::Timestamp(TimeUnit::Microsecond, None);
    let window = Fields::from(vec![
        Field::new("start", timestamp.clone(), true),
        Field::new("end", timestamp, true),
    ]);
    let float = |name: &str| Field::new(name, DataType::Float64, true);
    let schema = Arc::new(Schema::new(vec![
        Field::new("window", DataType::Struct(window.clone()), false),
        Field::new("symbol", DataType::Utf8, true),
        float("open"),
        float("high"),
        float("low"),
        float("close"),
        float("volume"),
        Field::new("trades", DataType::Int64, false),
    ]));
    let total = SYMBOLS * MINUTES;
    let mut batches = Vec::new();
    for start in (0..total).step_by(BATCH_ROWS) {
        let rows: Vec<usize> = (start..(start + BATCH_ROWS).min(total)).collect();
        let minute = |i: usize| 1_764_320_400_000_000_i64 + (i / SYMBOLS) as i64 * 60_000_000;
        let column = |f: fn(f64) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|&i| f(price(i + round))),
            ))
        };
        let window = StructArray::new(
            window.clone(),
            vec![
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    rows.iter().map(|&i| minute(i)),
                )),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    rows.iter().map(|&i| minute(i) + 60_000_000),
                )),
            ],
            None,
        );
        let columns: Vec<ArrayRef> = vec![
            Arc::new(window),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|&i| format!("SYM{}USDT", i % SYMBOLS)),
            )),
            column(|p| p),
            column(|p| p * 1.01),
            column(|p| p * 0.98),
            column(|p| p * 1.001),
            column(|p| p * 3.0),
            Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|&i| (i % 60) as i64 + 1),
            )),
        ];
        batches.push(RecordBatch::try_new(Arc::clone(&schema), columns).expect("batch"));
    }
    (schema, batches)
}

fn psql(url: &str, command: &str) {
    let status = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", command])
        .status()
        .expect("psql runs (Debian package postgresql-client)");
    assert!(status.success(), "psql -c {command}");
}

fn context(schema: SchemaRef, mode: OutputMode) -> SinkContext {
    SinkContext {
        query_id: format!("bench-{}", uuid::Uuid::new_v4()),
        query_name: None,
        schema,
        output_mode: mode,
        key_columns: (mode == OutputMode::Update)
            .then(|| vec!["window".to_string(), "symbol".to_string()]),
        parallelism: 1,
    }
}

fn postgres_sink_throughput(c: &mut Criterion) {
    let Ok(url) = std::env::var("DATABASE_URL") else {
        eprintln!("DATABASE_URL is not set: skipping postgres_sink_throughput");
        return;
    };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (batches, csv) = projet_bdcc();
    let mut csv_file = tempfile::NamedTempFile::new().expect("temp file");
    csv_file.write_all(csv.as_bytes()).expect("write CSV");
    let table = "bench_projet_bdcc";
    psql(&url, &format!("DROP TABLE IF EXISTS {table}"));

    let mut group = c.benchmark_group("postgres_sink_throughput");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(APPEND_ROWS as u64));
    group.bench_function("append", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    let mut sink = RelationalSink::new(&url, table)
                        .expect("sink")
                        .index(["symbol", "timestamp_ts"]);
                    sink.open(&context(projet_bdcc_schema(), OutputMode::Append))
                        .await
                        .expect("open");
                    psql(&url, &format!("TRUNCATE {table}"));
                    let start = Instant::now();
                    sink.add_batch(0, &batches).await.expect("append");
                    total += start.elapsed();
                }
                total
            })
        })
    });
    let copy = format!(
        "\\copy {table} (symbol, close_price, open_price, high_price, low_price, volume, \
         quote_volume, timestamp_ts, spread, mid_price) FROM '{}' WITH (FORMAT csv)",
        csv_file.path().display()
    );
    group.bench_function("psql_copy", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                psql(&url, &format!("TRUNCATE {table}"));
                let start = Instant::now();
                psql(&url, &copy);
                total += start.elapsed();
            }
            total
        })
    });

    let upsert_table = "bench_candles_1m";
    psql(&url, &format!("DROP TABLE IF EXISTS {upsert_table}"));
    group.throughput(Throughput::Elements((SYMBOLS * MINUTES) as u64));
    group.bench_function("upsert", |b| {
        b.iter_custom(|iterations| {
            runtime.block_on(async {
                let (schema, first) = candles(0);
                let context = context(schema, OutputMode::Update);
                let mut sink = RelationalSink::new(&url, upsert_table).expect("sink");
                sink.open(&context).await.expect("open");
                sink.add_batch(0, &first).await.expect("first upsert");
                let mut total = Duration::ZERO;
                for round in 1..=iterations {
                    let (_, batches) = candles(round as usize);
                    let start = Instant::now();
                    sink.add_batch(round, &batches).await.expect("upsert");
                    total += start.elapsed();
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, postgres_sink_throughput);
criterion_main!(benches);
