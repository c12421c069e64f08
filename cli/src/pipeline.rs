//! `sluice run`, `sluice explain`, `sluice dashboard` and `sluice demo`.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use sluice_connectors::binance::capture::read_capture;
use sluice_connectors::binance::replay::{Pacing, ReplayOptions, ReplayServer};
use sluice_dashboard::{Dashboard, DashboardConfig};
use sluice_engine::{StreamingQuery, StreamingQueryProgress, Trigger};
use sluice_pipeline::{Pipeline, Variables};

use crate::{parse_duration, shutdown_signal};

/// `NAME=VALUE` for `--var`.
fn parse_var(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("'{text}' is not NAME=VALUE"))
}

/// Options shared by `run` and `explain`.
#[derive(Args)]
pub struct Files {
    /// Pipeline files (`CREATE TABLE … WITH (…)`, `SET …`, `INSERT INTO …`).
    #[arg(required = true, value_name = "FILE.sql")]
    files: Vec<PathBuf>,
    /// A variable for `${NAME}` (repeatable; wins over the environment).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
}

impl Files {
    fn load(&self) -> anyhow::Result<Vec<Pipeline>> {
        let variables = self
            .vars
            .iter()
            .fold(Variables::from_env(), |v, (k, value)| v.set(k, value));
        let pipelines = self
            .files
            .iter()
            .map(|file| Pipeline::load(file, &variables))
            .collect::<Result<Vec<_>, _>>()?;
        check_unique_names(&pipelines)?;
        Ok(pipelines)
    }
}

/// Two files with a query of the same name would share its checkpoint.
fn check_unique_names(pipelines: &[Pipeline]) -> anyhow::Result<()> {
    let mut seen = BTreeMap::new();
    for pipeline in pipelines {
        for name in pipeline.query_names() {
            if seen.insert(name.to_string(), ()).is_some() {
                bail!(
                    "two queries are named '{name}': they would share a checkpoint (SET query_name = '…')"
                );
            }
        }
    }
    Ok(())
}

/// Options of `sluice run`.
#[derive(Args)]
pub struct Run {
    #[command(flatten)]
    files: Files,
    /// Process what is available now, then stop (Spark's available-now trigger), whatever
    /// the files' `SET trigger` says.
    #[arg(long)]
    available_now: bool,
    /// One progress JSON object per batch on stdout (Spark's field names) instead of lines.
    #[arg(long)]
    json: bool,
}

/// Options of `sluice explain`.
#[derive(Args)]
pub struct Explain {
    #[command(flatten)]
    files: Files,
}

/// Prints each query's plan.
pub async fn explain(args: Explain) -> anyhow::Result<()> {
    for pipeline in args.files.load()? {
        print!("{}", pipeline.explain().await?);
    }
    Ok(())
}

/// Runs the files' queries until they end (available-now), fail, or Ctrl-C.
pub async fn run(args: Run) -> anyhow::Result<()> {
    let mut pipelines = args.files.load()?;
    let mut queries = Vec::new();
    for pipeline in &mut pipelines {
        if args.available_now {
            pipeline.override_trigger(Trigger::AvailableNow);
        }
        match pipeline.start().await {
            Ok(started) => queries.extend(started),
            Err(e) => {
                stop_all(&queries).await;
                return Err(e.into());
            }
        }
    }
    let names: Vec<String> = queries.iter().map(label).collect();
    eprintln!(
        "running {} (Ctrl-C stops after the current batch)",
        names.join(", ")
    );
    let format = if args.json {
        Format::Json
    } else {
        Format::Lines
    };
    // A bounded run on a terminal also gets a progress bar (on stderr).
    let bar = args.available_now && !args.json && std::io::stderr().is_terminal();
    supervise(&queries, format, bar).await
}

/// How progress is shown.
#[derive(Clone, Copy)]
enum Format {
    /// One line per batch.
    Lines,
    /// One JSON object per batch.
    Json,
    /// One line per interval with rows written per query.
    Summary(Duration),
}

fn label(query: &StreamingQuery) -> String {
    query.name().unwrap_or(query.id()).to_string()
}

async fn stop_all(queries: &[StreamingQuery]) {
    for query in queries {
        if let Err(e) = query.stop().await {
            eprintln!("stopping {}: {e}", label(query));
        }
    }
}

/// Prints progress until every query has ended or Ctrl-C; stops the others when one fails.
async fn supervise(queries: &[StreamingQuery], format: Format, bar: bool) -> anyhow::Result<()> {
    let mut printer = Printer::new(format, bar);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                eprintln!("\nstopping…");
                stop_all(queries).await;
                printer.print(queries);
                eprintln!("stopped; run again to continue from the checkpoints");
                return Ok(());
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        printer.print(queries);
        for query in queries.iter().filter(|q| !q.is_active()) {
            if let Err(e) = query.await_termination().await {
                stop_all(queries).await;
                bail!("query {} failed: {e}", label(query));
            }
        }
        if queries.iter().all(|q| !q.is_active()) {
            printer.print(queries);
            eprintln!("\nall queries finished");
            return Ok(());
        }
    }
}

/// Prints each batch's progress once.
struct Printer {
    format: Format,
    printed: BTreeMap<String, String>,
    rows: BTreeMap<String, u64>,
    last_summary: Instant,
    /// Whether to draw a progress bar of the queries' backlogs on stderr.
    bar: bool,
}

impl Printer {
    fn new(format: Format, bar: bool) -> Self {
        Self {
            format,
            printed: BTreeMap::new(),
            rows: BTreeMap::new(),
            last_summary: Instant::now(),
            bar,
        }
    }

    /// `[=====>    ]  45% · 1234 of 2742 to go`, over every query that reports a backlog.
    fn draw_bar(&self, queries: &[StreamingQuery]) {
        let (mut remaining, mut total) = (0, 0);
        for status in queries.iter().map(StreamingQuery::status) {
            if let (Some(backlog), Some(all)) = (status.backlog, status.backlog_total) {
                remaining += if status.is_active { backlog } else { 0 };
                total += all;
            }
        }
        if total > 0 {
            let done = (total - remaining.min(total)) as f64 / total as f64;
            eprint!(
                "\r\x1b[2K{} · {remaining} of {total} to go",
                crate::progress_bar(done, 30)
            );
        }
    }

    fn print(&mut self, queries: &[StreamingQuery]) {
        if self.bar {
            // Lines go above the bar: clear it first.
            eprint!("\r\x1b[2K");
        }
        let mut out = std::io::stdout().lock();
        for query in queries {
            let name = label(query);
            let last = self.printed.get(&name).cloned().unwrap_or_default();
            for progress in query.recent_progress() {
                let key = format!("{}#{:020}", progress.timestamp, progress.batch_id);
                if key <= last || !progress.duration_ms.contains_key("addBatch") {
                    continue;
                }
                self.printed.insert(name.clone(), key);
                *self.rows.entry(name.clone()).or_default() += progress.sink.num_output_rows;
                let line = match self.format {
                    Format::Json => serde_json::to_string(&progress).unwrap_or_default(),
                    Format::Lines => progress_line(&name, &progress),
                    Format::Summary(_) => continue,
                };
                let _ = writeln!(out, "{line}");
            }
        }
        if let Format::Summary(every) = self.format
            && self.last_summary.elapsed() >= every
        {
            self.last_summary = Instant::now();
            let parts: Vec<String> = self
                .rows
                .iter()
                .map(|(name, rows)| format!("{name} {rows}"))
                .collect();
            let _ = writeln!(out, "rows written: {}", parts.join(" · "));
        }
        drop(out);
        if self.bar {
            self.draw_bar(queries);
        }
    }
}

/// `[candles_1m] batch 12 · 200 rows in · 180 out · 4,321 rows/s · 45 ms · watermark … · state 2,000 rows`
pub fn progress_line(name: &str, p: &StreamingQueryProgress) -> String {
    let mut line = format!(
        "[{name}] batch {} · {} rows in · {} out · {:.0} rows/s · {} ms",
        p.batch_id,
        p.num_input_rows,
        p.sink.num_output_rows,
        p.processed_rows_per_second,
        p.duration_ms
            .get("triggerExecution")
            .copied()
            .unwrap_or(p.batch_duration)
    );
    if let Some(watermark) = p.event_time.get("watermark") {
        line.push_str(&format!(" · watermark {watermark}"));
    }
    if !p.state_operators.is_empty() {
        let rows: u64 = p.state_operators.iter().map(|s| s.num_rows_total).sum();
        let dropped: u64 = p
            .state_operators
            .iter()
            .map(|s| s.num_rows_dropped_by_watermark)
            .sum();
        line.push_str(&format!(" · state {rows} rows"));
        if dropped > 0 {
            line.push_str(&format!(" · {dropped} late dropped"));
        }
    }
    let malformed: u64 = p.sources.iter().map(|s| s.malformed_records.count).sum();
    if malformed > 0 {
        line.push_str(&format!(" · {malformed} malformed"));
    }
    line
}

/// Options of `sluice dashboard`.
#[derive(Args)]
pub struct DashboardArgs {
    /// The database the pipelines write (postgres://… or sqlite://…).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://data/sluice.db")]
    database_url: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8501")]
    listen: SocketAddr,
    /// How often SQLite is polled for new batches (and SSE keep-alives are sent).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    refresh: Duration,
}

impl DashboardArgs {
    fn config(&self) -> DashboardConfig {
        DashboardConfig {
            database_url: self.database_url.clone(),
            listen: self.listen,
            refresh: self.refresh,
            ..DashboardConfig::default()
        }
    }
}

/// Serves the dashboard until Ctrl-C.
pub async fn dashboard(args: DashboardArgs) -> anyhow::Result<()> {
    let dashboard = Dashboard::bind(args.config())
        .await
        .context("starting the dashboard")?;
    eprintln!("dashboard on http://{}", dashboard.local_addr());
    dashboard.serve(shutdown_signal()).await?;
    Ok(())
}

/// The bundled synthetic sample (see `examples/data/README.md`).
const SAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/data/binance-miniticker-10min.jsonl.gz"
);

/// The queries the demo runs: the very files production runs, compiled in.
const DEMO_QUERIES: [(&str, &str); 4] = [
    (
        "queries/projet_bdcc.sql",
        include_str!("../../queries/projet_bdcc.sql"),
    ),
    (
        "queries/candles_1m.sql",
        include_str!("../../queries/candles_1m.sql"),
    ),
    (
        "queries/volatility_5m.sql",
        include_str!("../../queries/volatility_5m.sql"),
    ),
    (
        "queries/market_sessions.sql",
        include_str!("../../queries/market_sessions.sql"),
    ),
];

/// Options of `sluice demo`.
#[derive(Args)]
pub struct Demo {
    /// Read the real Binance stream instead of replaying the bundled sample.
    #[arg(long)]
    live: bool,
    /// Where the SQLite database and the checkpoints go.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// The capture file to replay.
    #[arg(long, default_value = SAMPLE)]
    sample: PathBuf,
    /// Replay speed (1 = real time).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// The dashboard's address.
    #[arg(long, default_value = "127.0.0.1:8501")]
    listen: SocketAddr,
    /// Print one progress line per batch of every query instead of a summary every 10 s.
    #[arg(long)]
    verbose: bool,
}

/// Replay (or Binance) → the four queries → SQLite → the dashboard, until Ctrl-C.
pub async fn demo(args: Demo) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let data = args.data_dir.display().to_string();
    let database_url = format!("sqlite://{data}/sluice.db");
    let (stream_url, _replay) = if args.live {
        (
            sluice_connectors::binance::MINI_TICKER_URL.to_string(),
            None,
        )
    } else {
        let frames = read_capture(&args.sample)
            .with_context(|| format!("reading the sample {}", args.sample.display()))?;
        let server = ReplayServer::start(
            frames,
            "127.0.0.1:0".parse()?,
            ReplayOptions {
                pacing: Pacing::Live { speed: args.speed },
                looped: true,
                shift_to_now: true,
                ..ReplayOptions::default()
            },
        )
        .await
        .context("starting the replay server")?;
        (server.url("!miniTicker@arr"), Some(server))
    };
    let variables = Variables::none()
        .set("TICKS_CONNECTOR", "binance")
        .set("BINANCE_WS_URL", &stream_url)
        .set("SINK_CONNECTOR", "sqlite")
        .set("DATABASE_URL", &database_url)
        .set("CHECKPOINT_DIR", format!("{data}/checkpoints"));
    // The dashboard's port first: if it is taken, nothing has started yet.
    let dashboard = Dashboard::bind(DashboardConfig {
        database_url: database_url.clone(),
        listen: args.listen,
        ..DashboardConfig::default()
    })
    .await
    .with_context(|| {
        format!(
            "starting the dashboard on {} (is the port taken? use --listen)",
            args.listen
        )
    })?;
    let mut queries = Vec::new();
    for (file, text) in DEMO_QUERIES {
        let pipeline = Pipeline::parse(file, text, &variables)?;
        match pipeline.start().await {
            Ok(started) => queries.extend(started),
            Err(e) => {
                stop_all(&queries).await;
                return Err(e.into());
            }
        }
    }
    let address = dashboard.local_addr();
    let (stop_dashboard, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(dashboard.serve(async {
        let _ = stopped.await;
    }));

    let source = if args.live {
        format!("live Binance stream {stream_url}")
    } else {
        format!(
            "replay of {} at {}× (looped, times shifted to now) on {stream_url}",
            args.sample.display(),
            args.speed
        )
    };
    let names: Vec<String> = queries.iter().map(label).collect();
    eprintln!(
        "sluice demo\n  source      {source}\n  queries     {} (files in queries/)\n  database    {database_url}\n  checkpoints {data}/checkpoints/<query>\n  dashboard   http://{address}\nCtrl-C to stop; run again to continue from the checkpoints.",
        names.join(", ")
    );
    let format = if args.verbose {
        Format::Lines
    } else {
        Format::Summary(Duration::from_secs(10))
    };
    let result = supervise(&queries, format, false).await;
    let _ = stop_dashboard.send(());
    server.await.context("dashboard task")??;
    result
}
