//! The whole pipeline as production runs it: the replay server (Binance's format) →
//! `sluice produce binance` → the broker → `sluice run queries/projet_bdcc.sql
//! queries/candles_1m.sql` → PostgreSQL, with the pipeline killed (SIGKILL) in the middle and
//! restarted. The tables must equal what the messages in the topic compute, plainly, in
//! memory: every ticker once in `projet_bdcc`, every candle exact in `candles_1m`.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sluice_connectors::binance::capture::read_capture;
use sluice_connectors::binance::replay::{Pacing, ReplayOptions, ReplayServer};
use sluice_testkit::kafka::kafka;
use sluice_testkit::{Tick, candles, postgres};
use sqlx::Row;

use crate::process::{Process, ROOT, http_get, sluice};

/// Every message of `topic` (one partition), as tickers.
fn read_topic(bootstrap: &str, topic: &str) -> Vec<Tick> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("e2e-check-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut ticks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (ticks.len() as i64) < high {
        assert!(Instant::now() < deadline, "could not read the topic back");
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message.expect("message");
        let value: serde_json::Value =
            serde_json::from_slice(message.payload().expect("value")).expect("JSON value");
        ticks.push((
            value["symbol"].as_str().expect("symbol").to_string(),
            value["close_price"].as_f64().expect("close_price"),
            value["volume"].as_f64().expect("volume"),
            value["timestamp"].as_i64().expect("timestamp"),
        ));
    }
    ticks
}

fn topic_size(bootstrap: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("consumer");
    consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .map(|(_, high)| high)
        .unwrap_or(0)
}

/// Equal but for the last bits: the test reads the topic's JSON with serde_json, whose
/// default float parsing may differ from a correctly rounded parse by one unit in the last
/// place.
fn same(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 4.0 * f64::EPSILON * a.abs().max(b.abs())
}

#[cfg_attr(
    sluice_no_postgres,
    ignore = "needs PostgreSQL: DATABASE_URL, or its server programs (initdb, pg_ctl) installed"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_to_postgres_through_kafka_survives_a_killed_pipeline() {
    let database = postgres::url().expect("PostgreSQL");
    let bootstrap = kafka().bootstrap();
    let id = uuid::Uuid::new_v4().simple().to_string();
    let topic = format!("e2e-{id}");
    let schema = format!("e2e_{id}");
    // One partition: the tickers stay in event-time order, so no candle input is late.
    kafka().create_topic(&topic, 1).await;
    let pool = sqlx::PgPool::connect(&database).await.expect("PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await
        .expect("schema");
    let separator = if database.contains('?') { '&' } else { '?' };
    let pipeline_database = format!("{database}{separator}options=-c%20search_path%3D{schema}");

    // 100 s of the bundled sample, replayed 5× faster than real time.
    let mut frames = read_capture(format!(
        "{ROOT}/examples/data/binance-miniticker-10min.jsonl.gz"
    ))
    .unwrap();
    frames.truncate(100);
    let replay = ReplayServer::start(
        frames,
        "127.0.0.1:0".parse().unwrap(),
        ReplayOptions {
            pacing: Pacing::Live { speed: 5.0 },
            ..ReplayOptions::default()
        },
    )
    .await
    .unwrap();
    let replay_started = Instant::now();
    let producer = Process(
        sluice()
            .args([
                "produce",
                "binance",
                "--url",
                &replay.url("!miniTicker@arr"),
            ])
            .args(["--topic", &topic, "--bootstrap", bootstrap])
            .stdout(Stdio::null())
            .spawn()
            .expect("producer"),
    );
    let checkpoints = tempfile::tempdir().unwrap();
    // The metrics endpoint, on a port free now.
    let http = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let run = || {
        Process(
            sluice()
                .current_dir(ROOT)
                .args(["run", "queries/projet_bdcc.sql", "queries/candles_1m.sql"])
                .args(["--http-listen", &http])
                .env("KAFKA_BOOTSTRAP", bootstrap)
                .env("TICKS_TOPIC", &topic)
                .env("TICKS_MAX_PER_TRIGGER", "500")
                .env("SINK_CONNECTOR", "postgres")
                .env("DATABASE_URL", &pipeline_database)
                .env("CHECKPOINT_DIR", checkpoints.path())
                .stdout(Stdio::null())
                .spawn()
                .expect("sluice run"),
        )
    };

    // The pipeline runs while the data streams in; it is killed mid-way and restarted.
    let first = run();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let rows_before_kill: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}.projet_bdcc"
    )))
    .fetch_one(&pool)
    .await
    .expect("some batches committed before the kill");
    drop(first); // SIGKILL
    let second = run();

    // The replay lasts 20 s; then the topic stops growing and the producer is stopped.
    let mut size = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = topic_size(bootstrap, &topic);
        if now > 0 && now == size && replay_started.elapsed() > Duration::from_secs(22) {
            break;
        }
        size = now;
    }
    assert!(
        producer.terminate().success(),
        "the producer stops cleanly on SIGTERM"
    );
    let ticks = read_topic(bootstrap, &topic);
    assert!(ticks.len() > 5_000, "{} tickers", ticks.len());
    assert!(
        rows_before_kill > 0 && (rows_before_kill as usize) < ticks.len(),
        "killed in the middle: {rows_before_kill} of {} rows written",
        ticks.len()
    );

    // Wait until the restarted pipeline has caught up.
    let expected_candles = candles(&ticks);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {schema}.projet_bdcc"
        )))
        .fetch_one(&pool)
        .await
        .unwrap();
        let ticks_in_candles: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT sum(ticks)::bigint FROM {schema}.candles_1m"
        )))
        .fetch_one(&pool)
        .await
        .unwrap_or(None);
        if rows as usize >= ticks.len() && ticks_in_candles.unwrap_or(0) as usize >= ticks.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the pipeline did not catch up: {rows} rows, {ticks_in_candles:?} ticks in candles, {} expected",
            ticks.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Caught up: the consumer lag of the topic's partition is 0 in /metrics.
    let (status, metrics) = http_get(&http, "/metrics");
    assert_eq!(status, 200);
    let partition = format!("topic=\"{topic}\",partition=\"0\"}} 0");
    assert!(
        metrics.lines().any(|line| line
            .starts_with("sluice_kafka_offsets_behind_latest{query=\"candles_1m\",")
            && line.ends_with(&partition)),
        "no zero lag for {topic}/0 in:\n{metrics}"
    );
    assert!(
        second.terminate().success(),
        "sluice run stops cleanly on SIGTERM"
    );

    // projet_bdcc: every ticker exactly once (no duplicate from the replayed batch).
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT symbol, close_price, volume, timestamp_ts, spread, mid_price, high_price, low_price
         FROM {schema}.projet_bdcc"
    )))
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut actual: Vec<Tick> = Vec::new();
    for row in &rows {
        let ts: chrono::DateTime<chrono::Utc> = row.get(3);
        let (spread, mid, high, low): (f64, f64, f64, f64) =
            (row.get(4), row.get(5), row.get(6), row.get(7));
        assert_eq!(spread, high - low);
        assert_eq!(mid, (high + low) / 2.0);
        actual.push((row.get(0), row.get(1), row.get(2), ts.timestamp_millis()));
    }
    let order = |t: &Tick| (t.0.clone(), t.3);
    // timestamp_ts is the event time truncated to the second, as the seed's
    // from_unixtime(timestamp / 1000); the sample has one ticker per symbol and second.
    let mut expected: Vec<Tick> = ticks
        .iter()
        .map(|(symbol, close, volume, ms)| (symbol.clone(), *close, *volume, ms - ms % 1000))
        .collect();
    expected.sort_by_key(order);
    actual.sort_by_key(order);
    assert_eq!(actual.len(), expected.len(), "every ticker exactly once");
    for (row, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert!(
            a.0 == e.0 && a.3 == e.3 && same(a.1, e.1) && same(a.2, e.2),
            "row {row}: {a:?} in projet_bdcc, {e:?} in the topic"
        );
    }

    // candles_1m: exactly the candles of the topic's tickers.
    assert_candles(&pool, &schema, &expected_candles).await;

    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&pool)
        .await
        .unwrap();
}

/// Asserts that table `candles_1m` of `schema` holds exactly `expected` (prices to the last
/// digit JSON keeps).
pub async fn assert_candles(
    pool: &sqlx::PgPool,
    schema: &str,
    expected: &BTreeMap<(String, i64), sluice_testkit::Candle>,
) {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT symbol, window_start, open, high, low, close, volume, ticks FROM {schema}.candles_1m"
    )))
    .fetch_all(pool)
    .await
    .unwrap();
    let mut actual = BTreeMap::new();
    for row in &rows {
        let start: chrono::DateTime<chrono::Utc> = row.get(1);
        actual.insert(
            (row.get::<String, _>(0), start.timestamp_millis()),
            (
                row.get(2),
                row.get(3),
                row.get(4),
                row.get(5),
                row.get(6),
                row.get(7),
            ),
        );
    }
    assert_eq!(actual.len(), expected.len(), "one row per candle");
    for ((key, a), (expected_key, e)) in actual.iter().zip(expected) {
        assert_eq!(key, expected_key);
        let values = |c: &sluice_testkit::Candle| [c.0, c.1, c.2, c.3, c.4];
        assert!(
            a.5 == e.5 && values(a).iter().zip(values(e)).all(|(x, y)| same(*x, y)),
            "candle {key:?}: {a:?} in candles_1m, {e:?} computed"
        );
    }
}
