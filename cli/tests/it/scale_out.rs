//! Scale-out over Kafka partitions: `sluice run queries/candles_1m.sql` processes with
//! `DISTRIBUTION=kafka_partitions` are workers of one query, sharing a 6-partition topic keyed
//! by symbol through the query's consumer group, with their tasks' checkpoints on S3 (the
//! S3-compatible server `.ci/run` starts; the local-directory form outside CI when it is not
//! there). The candles in PostgreSQL must be exactly the topic's whatever the number of
//! workers, when a worker joins mid-run, and when one is killed and another takes its tasks.

use std::process::Stdio;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use sluice_testkit::kafka::kafka;
use sluice_testkit::{Tick, candles, in_ci, postgres};

use crate::end_to_end::assert_candles;
use crate::process::{Process, ROOT, sluice, stderr_lines};

/// The topic's partitions: the query's tasks.
const PARTITIONS: i32 = 6;

/// Where the workers keep the tasks' checkpoints: under `SLUICE_TEST_S3` (set by
/// `scripts/dev-services.sh`), else, outside CI, a local directory.
fn checkpoint_root() -> (String, Option<tempfile::TempDir>) {
    match std::env::var("SLUICE_TEST_S3") {
        Ok(bucket) if !bucket.is_empty() => (
            format!("{bucket}/scale-out-{}", uuid::Uuid::new_v4().simple()),
            None,
        ),
        _ if in_ci() => {
            panic!("CI=true but SLUICE_TEST_S3 is not set: run scripts/dev-services.sh")
        }
        _ => {
            let dir = tempfile::tempdir().unwrap();
            (dir.path().display().to_string(), Some(dir))
        }
    }
}

/// A topic of `symbols` × `seconds` tickers, keyed by symbol as our producer keys them.
async fn keyed_topic(symbols: usize, seconds: i64) -> (String, Vec<Tick>) {
    let topic = kafka().new_topic(PARTITIONS).await;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka().bootstrap())
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let start = 1_700_000_040_000_i64;
    let mut ticks = Vec::new();
    for second in 0..seconds {
        for s in 0..symbols {
            let symbol = format!("S{s:03}USDT");
            let close = 100.0 + s as f64 + ((second * 7) % 13) as f64 / 4.0;
            let volume = 1000.0 + second as f64;
            let ts = start + second * 1000 + s as i64;
            let value = format!(
                r#"{{"symbol":"{symbol}","close_price":{close},"open_price":100.0,"high_price":{},"low_price":{},"volume":{volume},"quote_volume":5.0,"timestamp":{ts}}}"#,
                close + 1.0,
                close - 1.0
            );
            let mut record = BaseRecord::to(&topic).key(&symbol).payload(&value);
            while let Err((e, back)) = producer.send(record) {
                assert!(
                    matches!(
                        e,
                        KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)
                    ),
                    "{e}"
                );
                producer.poll(Duration::from_millis(10));
                record = back;
            }
            ticks.push((symbol, close, volume, ts));
        }
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("every ticker written");
    (topic, ticks)
}

/// One run of the query: its own PostgreSQL schema and checkpoint location, so each run
/// starts from nothing (and is its own consumer group, named in its checkpoint).
struct Run {
    topic: String,
    pool: sqlx::PgPool,
    schema: String,
    database: String,
    checkpoint: String,
    _local: Option<tempfile::TempDir>,
}

impl Run {
    async fn new(topic: &str) -> Self {
        let database = postgres::url().expect("PostgreSQL");
        let pool = sqlx::PgPool::connect(&database).await.expect("PostgreSQL");
        let schema = format!("scale_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .unwrap();
        let separator = if database.contains('?') { '&' } else { '?' };
        let (checkpoint, local) = checkpoint_root();
        Self {
            topic: topic.to_string(),
            pool,
            database: format!("{database}{separator}options=-c%20search_path%3D{schema}"),
            schema,
            checkpoint,
            _local: local,
        }
    }

    /// A worker, its stderr (with the worker's log) as lines; `per_trigger` offsets per task
    /// and batch.
    fn worker(&self, per_trigger: u32) -> (Process, Receiver<String>) {
        let mut child = sluice()
            .current_dir(ROOT)
            .args(["run", "queries/candles_1m.sql", "--http-listen", "off"])
            .env("KAFKA_BOOTSTRAP", kafka().bootstrap())
            .env("TICKS_TOPIC", &self.topic)
            .env("TICKS_MAX_PER_TRIGGER", per_trigger.to_string())
            .env("SINK_CONNECTOR", "postgres")
            .env("DATABASE_URL", &self.database)
            .env("CHECKPOINT_DIR", &self.checkpoint)
            .env("DISTRIBUTION", "kafka_partitions")
            .env("RUST_LOG", "sluice_pipeline=info,warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sluice run");
        let lines = stderr_lines(&mut child);
        (Process(child), lines)
    }

    /// The tickers counted in the candles so far.
    async fn ticks_written(&self) -> i64 {
        sqlx::query_scalar::<_, Option<i64>>(sqlx::AssertSqlSafe(format!(
            "SELECT sum(ticks)::bigint FROM {}.candles_1m",
            self.schema
        )))
        .fetch_one(&self.pool)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
    }

    /// Waits until the candles count `n` tickers (the run has caught up).
    async fn wait_for_ticks(&self, n: usize, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let written = self.ticks_written().await;
            if written as usize >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the workers did not catch up: {written} of {n} tickers in the candles"
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The rows of `sluice_commits`, one per task (`candles_1m/task-<p>`, under the task's
    /// checkpoint id), with its last committed batch.
    async fn commits(&self) -> Vec<(String, i64)> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT sink, batch_id FROM {}.sluice_commits ORDER BY sink",
            self.schema
        )))
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    async fn drop_schema(&self) {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA {} CASCADE",
            self.schema
        )))
        .execute(&self.pool)
        .await
        .unwrap();
    }
}

/// Waits until a worker logs that it was assigned a non-empty set of tasks; returns the line.
fn wait_for_tasks(lines: &Receiver<String>, within: Duration) -> String {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if line.contains("tasks assigned") && !line.contains("tasks=[]") => {
                return line;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no tasks assigned to the worker within {within:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_two_or_three_workers_write_the_same_candles() {
    let (topic, ticks) = keyed_topic(48, 150).await;
    let expected = candles(&ticks);
    for workers in 1..=3 {
        let run = Run::new(&topic).await;
        let started: Vec<(Process, Receiver<String>)> =
            (0..workers).map(|_| run.worker(100_000)).collect();
        // Every worker is given tasks of its own.
        for (_, lines) in &started {
            wait_for_tasks(lines, Duration::from_secs(30));
        }
        run.wait_for_ticks(ticks.len(), Duration::from_secs(90))
            .await;
        for (worker, _) in started {
            assert!(
                worker.terminate().success(),
                "{workers} workers: SIGTERM stops cleanly"
            );
        }
        assert_candles(&run.pool, &run.schema, &expected).await;
        let commits = run.commits().await;
        let tasks: Vec<String> = commits.iter().map(|(sink, _)| sink.clone()).collect();
        let expected_tasks: Vec<String> = (0..PARTITIONS)
            .map(|p| format!("candles_1m/task-{p}"))
            .collect();
        assert_eq!(
            tasks, expected_tasks,
            "{workers} workers: one commit row per task"
        );
        assert!(commits.iter().all(|(_, batch)| *batch >= 0), "{commits:?}");
        run.drop_schema().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_joining_and_a_killed_worker_lose_and_duplicate_nothing() {
    // 2,400 tickers per task at 100 per batch and one batch a second: ~25 s of work.
    let (topic, ticks) = keyed_topic(60, 240).await;
    let expected = candles(&ticks);
    let run = Run::new(&topic).await;

    let (first, first_lines) = run.worker(100);
    wait_for_tasks(&first_lines, Duration::from_secs(30));
    let deadline = Instant::now() + Duration::from_secs(30);
    while run.ticks_written().await == 0 {
        assert!(Instant::now() < deadline, "the first worker wrote nothing");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A second worker joins mid-run and takes its share of the tasks.
    let (second, second_lines) = run.worker(100);
    let share = wait_for_tasks(&second_lines, Duration::from_secs(30));
    assert!(
        !share.contains("running=[0, 1, 2, 3, 4, 5]"),
        "the second worker shares the tasks: {share}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The first is killed mid-batch; the second takes its tasks over from their checkpoints
    // once the group notices (session timeout).
    let before_kill = run.ticks_written().await;
    drop(first); // SIGKILL
    assert!(
        before_kill > 0 && (before_kill as usize) < ticks.len(),
        "killed mid-run: {before_kill} of {} tickers written",
        ticks.len()
    );
    let all = wait_for_tasks(&second_lines, Duration::from_secs(60));
    assert!(
        all.contains("running=[0, 1, 2, 3, 4, 5]"),
        "the second worker runs every task: {all}"
    );
    run.wait_for_ticks(ticks.len(), Duration::from_secs(120))
        .await;
    assert!(second.terminate().success(), "SIGTERM stops cleanly");

    assert_candles(&run.pool, &run.schema, &expected).await;
    run.drop_schema().await;
}
