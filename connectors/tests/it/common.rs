//! Shared fixtures: the database under test, unique table names, batches of the seed's
//! shapes, a TCP proxy that can cut a connection, and rows read back as text.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use sluice_testkit::kafka::Kafka;
use sqlx::Row;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// PostgreSQL's URL (`DATABASE_URL` or a throwaway cluster). The tests calling it are
/// ignored, with the reason, when the build found neither (`sluice_no_postgres`).
pub fn postgres_url() -> String {
    sluice_testkit::postgres::url().expect("PostgreSQL: DATABASE_URL or its server programs")
}

/// A SQLite database in a fresh temporary directory (kept alive by the returned guard).
pub fn sqlite_url() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/nested/sluice.db", dir.path().display());
    (url, dir)
}

/// Every back end available: SQLite always, PostgreSQL unless the build found none (the
/// PostgreSQL-only tests are then listed as ignored, with the reason).
pub fn databases() -> Vec<(String, Option<tempfile::TempDir>)> {
    let (sqlite, dir) = sqlite_url();
    let mut urls = vec![(sqlite, Some(dir))];
    if cfg!(not(sluice_no_postgres)) {
        urls.push((postgres_url(), None));
    }
    urls
}

/// A table name no other test uses.
pub fn unique_table(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// The `projet_bdcc` table's shape (as the seed query outputs it).
pub use sluice_testkit::projet_bdcc_schema;

/// `projet_bdcc` rows: one per (symbol, close, timestamp in ms).
pub fn projet_bdcc_batch(rows: &[(&str, f64, i64)]) -> RecordBatch {
    let floats = |f: &dyn Fn(f64) -> f64| {
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| f(r.1))))
            as Arc<dyn arrow::array::Array>
    };
    RecordBatch::try_new(
        projet_bdcc_schema(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            floats(&|c| c),
            floats(&|c| c - 1.0),
            floats(&|c| c + 2.0),
            floats(&|c| c - 3.0),
            floats(&|_| 1000.5),
            floats(&|c| c * 1000.5),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.2),
            )),
            floats(&|_| 5.0),
            floats(&|c| c - 0.5),
        ],
    )
    .expect("projet_bdcc batch")
}

/// The rows of `sql` with every value as text (`NULL` as `None`), on either back end.
pub async fn rows(url: &str, sql: &str) -> Vec<Vec<Option<String>>> {
    fn text<R: Row>(row: &R) -> Vec<Option<String>>
    where
        for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        usize: sqlx::ColumnIndex<R>,
    {
        (0..row.len())
            .map(|i| row.try_get::<Option<String>, _>(i).expect("text column"))
            .collect()
    }
    let sql = sqlx::AssertSqlSafe(sql.to_string());
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url)
            .await
            .expect("connect SQLite");
        let result = sqlx::query(sql).fetch_all(&pool).await.expect("query");
        pool.close().await;
        result.iter().map(text).collect()
    } else {
        let pool = sqlx::PgPool::connect(url)
            .await
            .expect("connect PostgreSQL");
        let result = sqlx::query(sql).fetch_all(&pool).await.expect("query");
        pool.close().await;
        result.iter().map(text).collect()
    }
}

/// A TCP proxy in front of a server that can play a server outage: `cut` drops every open
/// connection and closes the port (new connections are refused, as by a stopped server),
/// `restore` opens it again.
pub struct Proxy {
    /// The port clients connect to.
    pub port: u16,
    up: watch::Sender<bool>,
}

impl Proxy {
    /// Starts a proxy to `target` (`host:port`) on a free local port.
    pub async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let (up, mut state) = watch::channel(true);
        tokio::spawn(async move {
            let mut listener = Some(listener);
            loop {
                let Some(open) = &listener else {
                    // Down: wait for `restore`, then listen on the same port again.
                    if state.wait_for(|up| *up).await.is_err() {
                        return;
                    }
                    listener = TcpListener::bind(("127.0.0.1", port)).await.ok();
                    continue;
                };
                tokio::select! {
                    accepted = open.accept() => {
                        let Ok((mut client, _)) = accepted else { return };
                        let target = target.clone();
                        let mut cut = state.clone();
                        tokio::spawn(async move {
                            let Ok(mut server) = TcpStream::connect(&target).await else {
                                return;
                            };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                _ = cut.wait_for(|up| !*up) => {}
                            }
                        });
                    }
                    changed = state.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        if !*state.borrow() {
                            listener = None;
                        }
                    }
                }
            }
        });
        Self { port, up }
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url(&self, url: &str) -> String {
        let mut parsed = url::Url::parse(url).expect("database URL");
        parsed.set_host(Some("127.0.0.1")).expect("host");
        parsed.set_port(Some(self.port)).expect("port");
        parsed.to_string()
    }
}

/// `host:port` of a database URL.
pub fn host_port(url: &str) -> String {
    let parsed = url::Url::parse(url).expect("database URL");
    format!(
        "{}:{}",
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(5432)
    )
}

// ---------------------------------------------------------------- Kafka

/// The broker under test: `KAFKA_BOOTSTRAP`, or librdkafka's in-process mock cluster.
pub fn kafka() -> &'static Kafka {
    sluice_testkit::kafka::kafka()
}

/// An admin client of the broker at `bootstrap` (an external one: the mock has no admin API).
pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

/// A broker of our own, for the test that restarts it: Nisshi with SQLite storage, so that
/// data survives the restart.
pub struct OwnBroker {
    child: Child,
    port: u16,
    /// Holds the SQLite file, which outlives kills and revivals.
    storage: tempfile::TempDir,
}

impl OwnBroker {
    /// Starts a broker on a free port with a fresh storage directory.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let storage = tempfile::tempdir().expect("temp dir");
        Self {
            child: spawn_nisshi(port, storage.path()),
            port,
            storage,
        }
    }

    /// The broker's address, `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker, to create topics on.
    pub fn kafka(&self) -> Kafka {
        Kafka::at(self.address())
    }

    /// Stops the broker (as a crash would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the killed broker again, on the same port and storage.
    pub fn revive(&mut self) {
        self.child = spawn_nisshi(self.port, self.storage.path());
    }

    /// Kills and revives the broker.
    pub fn restart(&mut self) {
        self.kill();
        self.revive();
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts Nisshi on `port` with its SQLite storage in `directory`, and waits for the port.
fn spawn_nisshi(port: u16, directory: &std::path::Path) -> Child {
    let binary = std::env::var("NISSHI_BIN").unwrap_or_else(|_| "nisshi".into());
    let url = format!("tcp://127.0.0.1:{port}");
    // Nisshi reads the path of a `sqlite://` URL relative to its working directory.
    let child = Command::new(binary)
        .current_dir(directory)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "sqlite://broker.db",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nisshi (NISSHI_BIN or nisshi on PATH)");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}
