//! `sluice demo`: the whole pipeline offline — the bundled sample replayed (or the live
//! Binance stream) → the files of `queries/`, compiled in → SQLite → the dashboard.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sluice_connectors::binance::capture::{read_capture, read_capture_from};
use sluice_connectors::binance::replay::{Pacing, ReplayOptions, ReplayServer};
use sluice_dashboard::{Dashboard, DashboardConfig};
use sluice_pipeline::{Pipeline, Variables};

use crate::progress::Format;
use crate::supervise::{start_all, supervise};
use crate::telemetry::HttpArgs;

/// The bundled synthetic sample (see `examples/data/README.md`), compiled into the binary so
/// that the demo runs from any directory and in the container image.
const SAMPLE: &[u8] = include_bytes!("../../examples/data/binance-miniticker-10min.jsonl.gz");

/// How the bundled sample is named in messages.
const SAMPLE_NAME: &str = "the bundled sample (examples/data/binance-miniticker-10min.jsonl.gz)";

/// The queries the demo runs: the very files production runs, compiled in, named by their
/// path from the repository's root.
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

/// The files that [`DEMO_QUERIES`] include, compiled in alike, named by the path their
/// `INCLUDE`s resolve to.
const DEMO_INCLUDES: [(&str, &str); 1] = [(
    "queries/include/ticks.sql",
    include_str!("../../queries/include/ticks.sql"),
)];

/// Reads a file the demo's queries include from [`DEMO_INCLUDES`], not from disk: the demo
/// runs from any directory.
fn read_bundled(path: &Path) -> std::io::Result<String> {
    DEMO_INCLUDES
        .iter()
        .find(|(name, _)| Path::new(name) == path)
        .map(|(_, text)| text.to_string())
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} is not bundled with the demo", path.display()),
            )
        })
}

/// Options of `sluice demo`.
#[derive(Args)]
pub struct Demo {
    /// Read the real Binance stream instead of replaying the bundled sample.
    #[arg(long)]
    live: bool,
    /// Where the SQLite database and the checkpoints go.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// A capture file to replay instead of the bundled sample.
    #[arg(long)]
    sample: Option<PathBuf>,
    /// Replay speed (1 = real time).
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// The dashboard's address (`0.0.0.0:8501` in a container, as the image sets).
    #[arg(
        long,
        env = "SLUICE_DASHBOARD_LISTEN",
        default_value = "127.0.0.1:8501"
    )]
    listen: SocketAddr,
    /// Print one progress line per batch of every query instead of a summary every 10 s.
    #[arg(long)]
    verbose: bool,
    #[command(flatten)]
    http: HttpArgs,
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
        let frames = match &args.sample {
            Some(path) => read_capture(path)
                .with_context(|| format!("reading the sample {}", path.display()))?,
            None => read_capture_from(SAMPLE, SAMPLE_NAME).context("reading the bundled sample")?,
        };
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
    let pipelines = DEMO_QUERIES
        .iter()
        .map(|(file, text)| Pipeline::parse_with(file, text, &variables, &read_bundled))
        .collect::<Result<Vec<_>, _>>()?;
    let mut running = start_all(pipelines, &args.http).await?;
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
            args.sample
                .as_ref()
                .map_or(SAMPLE_NAME.to_string(), |p| p.display().to_string()),
            args.speed
        )
    };
    let names = running.names();
    eprintln!(
        "sluice demo\n  source      {source}\n  queries     {} (files in queries/)\n  database    {database_url}\n  checkpoints {data}/checkpoints/<query>\n  dashboard   http://{address}\nCtrl-C to stop; run again to continue from the checkpoints.",
        names.join(", ")
    );
    let format = if args.verbose {
        Format::Lines
    } else {
        Format::Summary(Duration::from_secs(10))
    };
    let result = supervise(&mut running, format, false).await;
    let _ = stop_dashboard.send(());
    server.await.context("dashboard task")??;
    result
}
