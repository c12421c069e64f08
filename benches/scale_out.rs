//! Scale-out benchmark (criterion; throughput in elements = tickers).
//!
//! Group `scale_out`: 1,000,000 tickers (400 symbols) in a 4-partition topic keyed by symbol,
//! on the broker at `KAFKA_BOOTSTRAP`, read by `queries/candles_1m.sql` distributed over the
//! partitions (`DISTRIBUTION=kafka_partitions`, available-now) into PostgreSQL at
//! `DATABASE_URL` (skipped without both):
//!
//! - `one_worker`: one worker process runs the 4 tasks;
//! - `two_workers`: two worker processes share them through the query's consumer group.
//!
//! `two_workers / one_worker` is the figure. Each worker is pinned to a core of its own
//! (`taskset`), standing in for a machine of its own: unpinned, one worker's tasks already
//! share every core of this machine, and a second process has none left to add. Each sample
//! is a fresh run (a new schema and checkpoint over the same topic), timed from the moment
//! the first worker is assigned tasks until every worker has exited: the
//! consumer group's formation is left out (the broker holds a new group's first rebalance for
//! Kafka's `group.initial.rebalance.delay.ms`, 3 s, and 3 s more for each member joining
//! meanwhile: a one-off per deployment, the broker's and not the engine's), while the
//! rebalances of the run (a worker leaving when its tasks are done) are in. After each run
//! the candles are checked to count every ticker once. The workers are this benchmark's own executable run
//! again as a worker (`SLUICE_BENCH_WORKER`), which runs the pipeline file with the library's
//! `Pipeline::start_workers`, as `sluice run` does.
//!
//! Run: `eval "$(scripts/dev-services.sh)" && cargo bench --bench scale_out`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sluice::engine::Trigger;
use sluice::pipeline::{Pipeline, Variables, Worker};

const MESSAGES: usize = 1_000_000;
const SYMBOLS: usize = 400;
const PARTITIONS: i32 = 4;
/// Set in a worker's environment: the executable runs the pipeline instead of benchmarking.
const WORKER_ENV: &str = "SLUICE_BENCH_WORKER";
const QUERY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/queries/candles_1m.sql");

fn main() {
    if std::env::var_os(WORKER_ENV).is_some() {
        if let Err(e) = worker() {
            eprintln!("worker: {e}");
            std::process::exit(1);
        }
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    scale_out(&mut criterion);
    criterion.final_summary();
}

/// A worker: the distributed query, available-now, until its tasks are done (its log on
/// stderr as `RUST_LOG` asks).
fn worker() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let mut pipeline = Pipeline::load(QUERY, &Variables::from_env())?;
        pipeline.override_trigger(Trigger::AvailableNow);
        let mut workers = pipeline.start_workers().await?;
        while !workers.iter().all(Worker::is_finished) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for worker in &mut workers {
            worker.stop().await?;
        }
        Ok(())
    })
}

/// A new topic of `MESSAGES` tickers keyed by symbol, one per symbol and second.
fn fill(bootstrap: &str) -> String {
    let topic = format!("bench-scale-out-{}", uuid::Uuid::new_v4().simple());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for result in runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(
                &topic,
                PARTITIONS,
                TopicReplication::Fixed(1),
            )],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create topic")
    {
        result.expect("topic created");
    }
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "2000000")
        .create()
        .expect("producer");
    for i in 0..MESSAGES {
        let symbol = format!("SYM{}USDT", i % SYMBOLS);
        let close = 1.0 + (i % 9_973) as f64 / 100.0;
        let timestamp = 1_764_320_400_000_i64 + (i / SYMBOLS) as i64 * 1_000;
        let value = format!(
            r#"{{"symbol":"{symbol}","close_price":{close},"open_price":{close},"high_price":{close},"low_price":{close},"volume":{i},"quote_volume":1.5,"timestamp":{timestamp}}}"#
        );
        let mut record = BaseRecord::to(&topic).key(&symbol).payload(&value);
        while let Err((_, back)) = producer.send(record) {
            producer.poll(Duration::from_millis(10));
            record = back;
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    topic
}

/// One run with `workers` worker processes into a fresh schema: the time until all exited.
fn run(workers: usize, topic: &str, database: &str, runtime: &tokio::runtime::Runtime) -> Duration {
    let schema = format!("bench_{}", uuid::Uuid::new_v4().simple());
    let pool = runtime
        .block_on(sqlx::PgPool::connect(database))
        .expect("PostgreSQL");
    let sql =
        |text: String| runtime.block_on(sqlx::query(sqlx::AssertSqlSafe(text)).execute(&pool));
    sql(format!("CREATE SCHEMA {schema}")).expect("schema");
    let checkpoint = tempfile::tempdir().expect("checkpoint directory");
    let separator = if database.contains('?') { '&' } else { '?' };
    let url = format!("{database}{separator}options=-c%20search_path%3D{schema}");
    let children: Vec<_> = (0..workers)
        .map(|core| {
            Command::new("taskset")
                .arg("-c")
                .arg(core.to_string())
                .arg(std::env::current_exe().expect("this executable"))
                .env(WORKER_ENV, "1")
                .env("TICKS_TOPIC", topic)
                .env("TICKS_MAX_PER_TRIGGER", "50000")
                .env("SINK_CONNECTOR", "postgres")
                .env("DATABASE_URL", &url)
                .env("CHECKPOINT_DIR", checkpoint.path())
                .env("DISTRIBUTION", "kafka_partitions")
                .env("RUST_LOG", "sluice_pipeline=info,warn")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("worker")
        })
        .collect();
    // When each worker is first assigned tasks (its log says so).
    let (assigned, first_tasks) = std::sync::mpsc::channel();
    let children: Vec<_> = children
        .into_iter()
        .map(|mut child| {
            let stderr = child.stderr.take().expect("stderr piped");
            let assigned = assigned.clone();
            let reader = std::thread::spawn(move || {
                let mut told = false;
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if !told && line.contains("tasks assigned") && !line.contains("tasks=[]") {
                        told = assigned.send(Instant::now()).is_ok();
                    } else if line.contains("ERROR") || line.contains("WARN") {
                        eprintln!("worker: {line}");
                    }
                }
            });
            (child, reader)
        })
        .collect();
    for (mut child, reader) in children {
        assert!(child.wait().expect("worker").success(), "a worker failed");
        reader.join().expect("stderr reader");
    }
    let end = Instant::now();
    drop(assigned);
    let formed = first_tasks.iter().min().expect("tasks were assigned");
    let elapsed = end - formed;
    let ticks: Option<i64> = runtime
        .block_on(
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT sum(ticks)::bigint FROM {schema}.candles_1m"
            )))
            .fetch_one(&pool),
        )
        .expect("candles");
    assert_eq!(ticks, Some(MESSAGES as i64), "every ticker counted once");
    sql(format!("DROP SCHEMA {schema} CASCADE")).expect("drop schema");
    elapsed
}

fn scale_out(c: &mut Criterion) {
    let (Ok(bootstrap), Ok(database)) = (
        std::env::var("KAFKA_BOOTSTRAP"),
        std::env::var("DATABASE_URL"),
    ) else {
        eprintln!("scale_out: KAFKA_BOOTSTRAP and DATABASE_URL are needed; skipped");
        return;
    };
    let topic = fill(&bootstrap);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut group = c.benchmark_group("scale_out");
    group
        .throughput(Throughput::Elements(MESSAGES as u64))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(60));
    for (name, workers) in [("one_worker", 1), ("two_workers", 2)] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| {
                (0..iterations)
                    .map(|_| run(workers, &topic, &database, &runtime))
                    .sum()
            });
        });
    }
    group.finish();
}
