//! The kill -9 torture test: `sluice run queries/projet_bdcc.sql queries/candles_1m.sql` is
//! killed with SIGKILL at random instants while ticker files keep arriving (some before each
//! start, some while it runs), and restarted each time; a last `--available-now` run drains
//! what is left. The final tables must
//! equal, row for row, those of one uninterrupted run over the same files: no ticker lost or
//! written twice in `projet_bdcc` (append, exactly once per batch), every candle of
//! `candles_1m` (update mode, checkpointed state) exact. Into SQLite and into PostgreSQL.
//!
//! `SLUICE_TORTURE_KILLS` sets how many kills (default 20) and `SLUICE_TORTURE_SEED` replays
//! a run's instants (the seed is printed, and named in every failure).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use sluice_testkit::postgres;
use sqlx::AssertSqlSafe;

use crate::process::{Process, ROOT, drop_file, sluice, ticker_file};

/// Ticker files: 30 of 20 symbols × 5 seconds (101 tickers each, one a duplicate).
const FILES: u64 = 30;
const SYMBOLS: u64 = 20;
const SECONDS_PER_FILE: u64 = 5;

/// The tables compared, with every column (as text, so that both back ends compare alike).
const TABLES: [(&str, &str); 2] = [
    (
        "projet_bdcc",
        "symbol, close_price, open_price, high_price, low_price, volume, quote_volume, \
         timestamp_ts, spread, mid_price",
    ),
    (
        "candles_1m",
        "symbol, window_start, window_end, open, high, low, close, volume, quote_volume, ticks",
    ),
];

/// A small xorshift generator: the kill instants, reproducible from the seed.
struct Instants(u64);

impl Instants {
    fn next_delay(&mut self) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // From before the first batch to a couple of batches in (the trigger is 1 s).
        Duration::from_millis(50 + self.0 % 2_200)
    }
}

/// Where a pipeline writes: a SQLite file, or a PostgreSQL schema of its own.
enum Target {
    Sqlite(PathBuf),
    Postgres { url: String, schema: String },
}

impl Target {
    /// `SINK_CONNECTOR` and `DATABASE_URL` of the pipeline.
    fn sink(&self) -> (&'static str, String) {
        match self {
            Target::Sqlite(path) => ("sqlite", format!("sqlite://{}", path.display())),
            Target::Postgres { url, schema } => {
                let separator = if url.contains('?') { '&' } else { '?' };
                (
                    "postgres",
                    format!("{url}{separator}options=-c%20search_path%3D{schema}"),
                )
            }
        }
    }

    /// Every row of `table`, each as one line of text, sorted.
    async fn rows(&self, table: &str, columns: &str) -> Vec<String> {
        let text: Vec<String> = columns
            .split(", ")
            .map(|c| format!("COALESCE(CAST({c} AS TEXT), 'NULL')"))
            .collect();
        let select = |name: &str| format!("SELECT {} FROM {name}", text.join(" || '|' || "));
        let mut rows: Vec<String> = match self {
            Target::Sqlite(path) => {
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                    .await
                    .expect("SQLite");
                let rows = sqlx::query_scalar(AssertSqlSafe(select(table)))
                    .fetch_all(&pool)
                    .await
                    .expect("rows");
                pool.close().await;
                rows
            }
            Target::Postgres { url, schema } => {
                let pool = sqlx::PgPool::connect(url).await.expect("PostgreSQL");
                let rows = sqlx::query_scalar(AssertSqlSafe(select(&format!("{schema}.{table}"))))
                    .fetch_all(&pool)
                    .await
                    .expect("rows");
                pool.close().await;
                rows
            }
        };
        rows.sort();
        rows
    }
}

/// `sluice run` of the seed job and the candles over the files of `input`, logging to `log`.
fn pipeline(input: &Path, target: &Target, checkpoints: &Path, log: &Path) -> Command {
    let (connector, url) = target.sink();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let mut command = sluice();
    command
        .current_dir(ROOT)
        .args(["run", "queries/projet_bdcc.sql", "queries/candles_1m.sql"])
        .env("TICKS_CONNECTOR", "file")
        .env("TICKS_PATH", input)
        .env("SINK_CONNECTOR", connector)
        .env("DATABASE_URL", url)
        .env("CHECKPOINT_DIR", checkpoints)
        .stdout(Stdio::null())
        .stderr(log);
    command
}

/// The last lines of a log, for failure messages.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// Runs the torture against `tortured`, the reference run against `reference`, and compares.
async fn torture(tortured: Target, reference: Target) {
    // Odd: xorshift would stay at 0 from 0.
    let seed = std::env::var("SLUICE_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1;
    let kills: u32 = std::env::var("SLUICE_TORTURE_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    eprintln!("torture: SLUICE_TORTURE_SEED={seed}, {kills} kills");
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let all = dir.path().join("all");
    std::fs::create_dir(&input).unwrap();
    std::fs::create_dir(&all).unwrap();
    for file in 0..FILES {
        let name = format!("{file:03}.jsonl");
        drop_file(&all, &name, &ticker_file(file, SYMBOLS, SECONDS_PER_FILE));
    }
    // Every file arrives before the last kill, so that the kills fall while there is work.
    let kills = kills.max(1);

    // The tortured pipeline: files keep arriving (some before each start, some while it
    // runs) and it is killed at a random instant, again and again.
    let checkpoints = dir.path().join("checkpoints");
    let log = dir.path().join("tortured.log");
    let mut instants = Instants(seed);
    let arrive = |from: u64, to: u64| {
        for file in from..to {
            let name = format!("{file:03}.jsonl");
            drop_file(&input, &name, &ticker_file(file, SYMBOLS, SECONDS_PER_FILE));
        }
    };
    for killed in 0..kills {
        let [from, middle, to] =
            [0, 1, 2].map(|half| FILES * (2 * u64::from(killed) + half) / (2 * u64::from(kills)));
        arrive(from, middle);
        let mut run = Process(
            pipeline(&input, &tortured, &checkpoints, &log)
                .spawn()
                .unwrap(),
        );
        let delay = instants.next_delay();
        tokio::time::sleep(delay / 2).await;
        arrive(middle, to);
        tokio::time::sleep(delay / 2).await;
        if let Some(status) = run.0.try_wait().unwrap() {
            panic!(
                "seed {seed}: run {killed} stopped by itself ({status}) before its kill:\n{}",
                tail(&log)
            );
        }
        drop(run); // SIGKILL, then wait
    }
    // Not vacuous: the killed runs committed batches (the kills fell between and inside them).
    let before_last = tortured.rows(TABLES[0].0, TABLES[0].1).await.len();
    eprintln!("torture: {before_last} rows in projet_bdcc after {kills} kills");
    assert!(
        before_last > 0,
        "seed {seed}: no batch committed in {kills} runs:\n{}",
        tail(&log)
    );
    let last = pipeline(&input, &tortured, &checkpoints, &log)
        .arg("--available-now")
        .status()
        .unwrap();
    assert!(
        last.success(),
        "seed {seed}: the run after {kills} kills failed ({last}):\n{}",
        tail(&log)
    );

    // The reference: one uninterrupted run over the same files.
    let reference_log = dir.path().join("reference.log");
    let status = pipeline(
        &all,
        &reference,
        &dir.path().join("reference"),
        &reference_log,
    )
    .arg("--available-now")
    .status()
    .unwrap();
    assert!(status.success(), "reference run:\n{}", tail(&reference_log));

    for (table, columns) in TABLES {
        let expected = reference.rows(table, columns).await;
        let actual = tortured.rows(table, columns).await;
        if table == "projet_bdcc" {
            assert_eq!(
                expected.len() as u64,
                FILES * SYMBOLS * SECONDS_PER_FILE,
                "the reference keeps every ticker once"
            );
        }
        if actual != expected {
            let missing: Vec<&String> = expected.iter().filter(|r| !actual.contains(r)).collect();
            let extra: Vec<&String> = actual.iter().filter(|r| !expected.contains(r)).collect();
            panic!(
                "seed {seed}, {kills} kills: {table} has {} rows, the uninterrupted run {}; \
                 missing {:?}…, extra or different {:?}…\n{}",
                actual.len(),
                expected.len(),
                &missing[..missing.len().min(3)],
                &extra[..extra.len().min(3)],
                tail(&log)
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_into_sqlite_the_tables_equal_an_uninterrupted_run() {
    let dir = tempfile::tempdir().unwrap();
    torture(
        Target::Sqlite(dir.path().join("tortured.db")),
        Target::Sqlite(dir.path().join("reference.db")),
    )
    .await;
}

#[cfg_attr(
    sluice_no_postgres,
    ignore = "needs PostgreSQL: DATABASE_URL, or its server programs (initdb, pg_ctl) installed"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_at_random_into_postgres_the_tables_equal_an_uninterrupted_run() {
    let url = postgres::url().expect("PostgreSQL");
    let id = uuid::Uuid::new_v4().simple().to_string();
    let pool = sqlx::PgPool::connect(&url).await.expect("PostgreSQL");
    let schemas = [format!("torture_{id}"), format!("torture_ref_{id}")];
    for schema in &schemas {
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&pool)
            .await
            .unwrap();
    }
    torture(
        Target::Postgres {
            url: url.clone(),
            schema: schemas[0].clone(),
        },
        Target::Postgres {
            url: url.clone(),
            schema: schemas[1].clone(),
        },
    )
    .await;
    for schema in &schemas {
        sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&pool)
            .await
            .unwrap();
    }
}
