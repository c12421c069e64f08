//! Test databases (SQLite in a tempdir, PostgreSQL in a schema of its own) laid out as the
//! relational sink lays them out, the fixture rows, and a dashboard server per test.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use sluice_dashboard::{Dashboard, DashboardConfig, SQLITE_TIMESTAMP_FORMAT};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Connection};
use tokio::sync::oneshot;

/// The newest snapshot of the fixture: 2024-05-01 12:00:00 UTC.
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap()
}

/// One ticker snapshot: symbol, seconds before [`t0`], close, high, low, volume.
pub type Tick = (&'static str, i64, f64, f64, f64, f64);

/// The fixture: BTCUSDT across every period, ETHUSDT and six more symbols in the last hour.
pub const TICKS: &[Tick] = &[
    ("BTCUSDT", 40 * 86_400, 50.0, 55.0, 45.0, 1.0),
    ("BTCUSDT", 10 * 86_400, 80.0, 85.0, 75.0, 2.0),
    ("BTCUSDT", 3 * 86_400, 90.0, 95.0, 85.0, 3.0),
    ("BTCUSDT", 7_200, 100.0, 110.0, 90.0, 10.0),
    ("BTCUSDT", 1_800, 104.0, 112.0, 96.0, 20.0),
    ("BTCUSDT", 0, 110.0, 120.0, 100.0, 30.0),
    ("ETHUSDT", 7_200, 10.0, 11.0, 9.0, 100.0),
    ("ETHUSDT", 1_800, 9.0, 10.0, 8.0, 200.0),
    ("ETHUSDT", 60, 9.5, 10.5, 8.5, 300.0),
    ("ETHUSDT", 30, 9.7, 10.5, 8.5, 50.0),
    ("AAAUSDT", 1_800, 100.0, 130.0, 90.0, 1_000.0),
    ("AAAUSDT", 60, 120.0, 130.0, 90.0, 1_000.0),
    ("BBBUSDT", 1_800, 100.0, 130.0, 80.0, 500.0),
    ("BBBUSDT", 60, 85.0, 130.0, 80.0, 500.0),
    ("CCCUSDT", 1_800, 100.0, 101.0, 99.0, 300.0),
    ("CCCUSDT", 60, 103.0, 101.0, 99.0, 300.0),
    ("DDDUSDT", 1_800, 100.0, 101.0, 99.0, 50.0),
    ("DDDUSDT", 60, 101.0, 101.0, 99.0, 50.0),
    ("EEEUSDT", 1_800, 100.0, 102.0, 98.0, 40.0),
    ("EEEUSDT", 60, 92.0, 102.0, 98.0, 40.0),
    ("FFFUSDT", 1_800, 100.0, 101.0, 99.0, 10.0),
    ("FFFUSDT", 60, 100.0, 101.0, 99.0, 10.0),
];

/// Which database a fixture lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A database with the sink's tables.
pub struct Fixture {
    pub backend: Backend,
    /// The URL the dashboard connects with.
    pub url: String,
    pool: Pool,
    schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Fixture {
    /// An empty SQLite database file in a fresh tempdir, opened as the sink opens it.
    pub async fn sqlite() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sluice.db");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        Fixture {
            backend: Backend::Sqlite,
            url: format!("sqlite://{}", path.display()),
            pool: Pool::Sqlite(pool),
            schema: None,
            _dir: Some(dir),
        }
    }

    /// A fresh schema in the test PostgreSQL's database (`DATABASE_URL` or a throwaway
    /// cluster; the dashboard's URL sets `search_path` to it).
    pub async fn postgres() -> Fixture {
        let base = sluice_testkit::postgres::url().expect("PostgreSQL");
        let schema = format!(
            "dash_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            Utc::now().timestamp_subsec_micros()
        );
        let mut admin = sqlx::PgConnection::connect(&base).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut admin)
            .await
            .unwrap();
        admin.close().await.unwrap();
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .unwrap();
        Fixture {
            backend: Backend::Postgres,
            url,
            pool: Pool::Postgres(pool),
            schema: Some(schema),
            _dir: None,
        }
    }

    /// Runs SQL statements (DDL, test checks).
    pub async fn exec(&self, sql: &str) {
        match &self.pool {
            Pool::Sqlite(p) => {
                sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .execute(p)
                    .await
                    .unwrap();
            }
            Pool::Postgres(p) => {
                sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                    .execute(p)
                    .await
                    .unwrap();
            }
        }
    }

    /// `SELECT count(*)` of a table.
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        match &self.pool {
            Pool::Sqlite(p) => sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(p)
                .await
                .unwrap(),
            Pool::Postgres(p) => sqlx::query_scalar(AssertSqlSafe(sql))
                .fetch_one(p)
                .await
                .unwrap(),
        }
    }

    fn ts_type(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "TEXT",
            Backend::Postgres => "timestamptz",
        }
    }

    fn real(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "REAL",
            Backend::Postgres => "double precision",
        }
    }

    /// The ticker table, its index and `sluice_commits`, as the sink creates them.
    pub async fn create_ticker_table(&self, table: &str) {
        let (ts, real) = (self.ts_type(), self.real());
        let commits = match self.backend {
            Backend::Sqlite => {
                "CREATE TABLE IF NOT EXISTS sluice_commits (query_id TEXT NOT NULL, sink TEXT NOT NULL, \
                 batch_id INTEGER NOT NULL, committed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')), \
                 PRIMARY KEY (query_id, sink))"
            }
            Backend::Postgres => {
                "CREATE TABLE IF NOT EXISTS sluice_commits (query_id text NOT NULL, sink text NOT NULL, \
                 batch_id bigint NOT NULL, committed_at timestamptz NOT NULL DEFAULT now(), \
                 PRIMARY KEY (query_id, sink))"
            }
        };
        self.exec(&format!(
            "CREATE TABLE {table} (symbol text, close_price {real}, open_price {real}, \
             high_price {real}, low_price {real}, volume {real}, quote_volume {real}, \
             timestamp_ts {ts}, spread {real}, mid_price {real});
             CREATE INDEX {table}_symbol_timestamp_ts ON {table} (symbol, timestamp_ts);
             {commits};"
        ))
        .await;
    }

    /// The candles table, as the sink creates it.
    pub async fn create_candles_table(&self, table: &str) {
        let (ts, real) = (self.ts_type(), self.real());
        self.exec(&format!(
            "CREATE TABLE {table} (symbol text NOT NULL, window_start {ts} NOT NULL, \
             window_end {ts} NOT NULL, open {real}, high {real}, low {real}, close {real}, \
             volume {real}, quote_volume {real}, ticks bigint, \
             PRIMARY KEY (symbol, window_start, window_end))"
        ))
        .await;
    }

    /// A timestamp literal in the table's representation.
    pub fn ts_literal(&self, t: DateTime<Utc>) -> String {
        match self.backend {
            Backend::Sqlite => format!("'{}'", t.format(SQLITE_TIMESTAMP_FORMAT)),
            Backend::Postgres => format!("'{}'::timestamptz", t.to_rfc3339()),
        }
    }

    /// Inserts snapshots relative to `end` (`open_price` = first close, quote volume =
    /// volume × close, spread and mid price derived as the sink derives them).
    pub async fn insert_ticks_at(&self, table: &str, end: DateTime<Utc>, ticks: &[Tick]) {
        let values: Vec<String> = ticks
            .iter()
            .map(|&(symbol, ago, close, high, low, volume)| {
                let t = end - chrono::TimeDelta::seconds(ago);
                format!(
                    "('{symbol}', {close:?}, {close:?}, {high:?}, {low:?}, {volume:?}, {:?}, {}, {:?}, {:?})",
                    volume * close,
                    self.ts_literal(t),
                    high - low,
                    (high + low) / 2.0
                )
            })
            .collect();
        for chunk in values.chunks(500) {
            self.exec(&format!(
                "INSERT INTO {table} (symbol, close_price, open_price, high_price, low_price, \
                 volume, quote_volume, timestamp_ts, spread, mid_price) VALUES {}",
                chunk.join(", ")
            ))
            .await;
        }
    }

    /// Inserts [`TICKS`] relative to [`t0`].
    pub async fn insert_fixture(&self, table: &str) {
        self.insert_ticks_at(table, t0(), TICKS).await;
    }

    /// Records a committed batch as the sink does: updates `sluice_commits` and, on
    /// PostgreSQL, notifies `sluice_batches`, in one transaction.
    pub async fn commit(&self, table: &str, batch_id: i64, rows: usize) {
        match &self.pool {
            Pool::Sqlite(p) => {
                let now = Utc::now().format(SQLITE_TIMESTAMP_FORMAT).to_string();
                let mut tx = p.begin().await.unwrap();
                sqlx::query(
                    "INSERT INTO sluice_commits (query_id, sink, batch_id, committed_at) \
                     VALUES ('q', 's', $1, $2) ON CONFLICT (query_id, sink) \
                     DO UPDATE SET batch_id = excluded.batch_id, committed_at = excluded.committed_at",
                )
                .bind(batch_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .unwrap();
                tx.commit().await.unwrap();
            }
            Pool::Postgres(p) => {
                let mut tx = p.begin().await.unwrap();
                sqlx::query(
                    "INSERT INTO sluice_commits (query_id, sink, batch_id) VALUES ('q', 's', $1) \
                     ON CONFLICT (query_id, sink) DO UPDATE SET batch_id = excluded.batch_id, \
                     committed_at = now()",
                )
                .bind(batch_id)
                .execute(&mut *tx)
                .await
                .unwrap();
                let payload = serde_json::json!({
                    "table": table, "sink": "s", "query_id": "q", "batch_id": batch_id, "rows": rows
                });
                sqlx::query("SELECT pg_notify('sluice_batches', $1)")
                    .bind(payload.to_string())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            }
        }
    }

    /// Drops the PostgreSQL schema (best effort).
    pub async fn cleanup(self) {
        if let (Pool::Postgres(pool), Some(schema)) = (&self.pool, &self.schema) {
            let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(pool)
                .await;
            pool.close().await;
        }
    }
}

/// A dashboard served on an ephemeral loopback port; stopped on drop.
pub struct Server {
    pub addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// The fixture in `table`, committed as batch 0, and a dashboard whose cached data only an
    /// observed commit can refresh: long TTLs and, on PostgreSQL, a slow poll, so that the
    /// notification is what brings updates.
    pub async fn after_first_commit(fixture: &Fixture, table: &str) -> Server {
        fixture.create_ticker_table(table).await;
        fixture.insert_fixture(table).await;
        fixture.commit(table, 0, 22).await;
        let refresh = match fixture.backend {
            Backend::Sqlite => Duration::from_millis(200),
            Backend::Postgres => Duration::from_secs(30),
        };
        Server::start(&fixture.url, |c| {
            c.refresh = refresh;
            c.data_ttl = Duration::from_secs(600);
            c.symbols_ttl = Duration::from_secs(600);
        })
        .await
    }

    pub async fn start(url: &str, tweak: impl FnOnce(&mut DashboardConfig)) -> Server {
        let mut config = DashboardConfig {
            database_url: url.to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            refresh: Duration::from_millis(300),
            ..DashboardConfig::default()
        };
        tweak(&mut config);
        let dashboard = Dashboard::bind(config).await.unwrap();
        let addr = dashboard.local_addr().to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            dashboard
                .serve(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Server {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server and waits for it (it must shut down although event streams are open).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the server shuts down")
                .unwrap();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Runs `check` on SQLite and on PostgreSQL as two tests.
#[macro_export]
macro_rules! both {
    ($check:path, $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let fixture = $crate::fixtures::Fixture::sqlite().await;
            $check(&fixture).await;
            fixture.cleanup().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[cfg_attr(
            sluice_no_postgres,
            ignore = "needs PostgreSQL: DATABASE_URL, or its server programs (initdb, pg_ctl) installed"
        )]
        async fn $postgres() {
            let fixture = $crate::fixtures::Fixture::postgres().await;
            $check(&fixture).await;
            fixture.cleanup().await;
        }
    };
}
