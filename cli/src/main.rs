//! `sluice`: the command-line interface.
//!
//! ```text
//! sluice run FILE.sql… [--var NAME=VALUE] [--available-now] [--json] [--http-listen ADDR|off]
//! sluice explain FILE.sql…                                            show their streaming plans
//! sluice demo [--live] [--data-dir data]      replay → queries/ → SQLite → dashboard on :8501
//! sluice dashboard [--database-url URL] [--listen 127.0.0.1:8501]     serve the dashboard
//! sluice produce binance [--url URL] [--topic projet-bdcc] [--raw]   Binance → Kafka
//! sluice capture binance --out FILE [--url URL] [--duration 10m]     record raw frames
//! sluice replay FILE [--listen 127.0.0.1:9443] [--speed N | --max] [--loop] [--shift-to-now]
//! sluice generate-sample --out FILE [--symbols 200] [--seconds 600] [--seed N]
//! sluice probe [URL]                    exit 0 if http://127.0.0.1:9464/readyz answers 200
//! ```
//!
//! Exit codes: 0 success (including a graceful Ctrl-C / SIGTERM stop and the end of an
//! available-now run), 1 runtime failure (a query failed, a connector is unreachable),
//! 2 invalid arguments or an invalid pipeline file (the message names the line and column).

mod binance;
mod dashboard;
mod demo;
mod probe;
mod process;
mod progress;
mod run;
mod supervise;
mod telemetry;

use clap::{Parser, Subcommand};

/// Sluice: stream processing on Apache Arrow and DataFusion with Spark Structured Streaming
/// semantics.
#[derive(Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How logs are written to stderr: `text` (coloured on a terminal only) or `json` (one
    /// object per line, for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// The formats of `--log-format`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines; ANSI colours only when stderr is a terminal.
    Text,
    /// One JSON object per event.
    Json,
}

/// Logs to stderr in `format`, filtered by `RUST_LOG`.
fn init_logs(format: LogFormat) {
    // The commands print each batch's progress themselves; the engine's own per-batch log
    // line would repeat it (RUST_LOG=info shows it again); PostgreSQL's notices ("relation
    // … already exists, skipping", every batch) are noise.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,sluice_engine::query=warn,sqlx::postgres::notice=warn".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs.json().init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run pipeline files until Ctrl-C (or, with --available-now, until the data is processed).
    Run(run::Run),
    /// Show the streaming plan of pipeline files without running them.
    Explain(run::Explain),
    /// The whole pipeline offline: bundled sample replay → queries/ → SQLite → dashboard.
    Demo(demo::Demo),
    /// Serve the market dashboard over the pipelines' database.
    Dashboard(dashboard::DashboardArgs),
    /// Produce a live stream to Kafka.
    #[command(subcommand)]
    Produce(binance::Produce),
    /// Record a live stream's raw frames to a capture file.
    #[command(subcommand)]
    Capture(binance::Capture),
    /// Serve a capture file as a local Binance-compatible WebSocket endpoint.
    Replay(binance::Replay),
    /// Generate the seeded synthetic Binance sample (the bundled one is made this way).
    GenerateSample(binance::GenerateSample),
    /// Exit 0 if an endpoint of a running sluice answers 200 (container health checks).
    Probe(probe::Probe),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    process::listen_for_shutdown();
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let result = match cli.command {
        Command::Run(command) => run::run(command).await,
        Command::Explain(command) => run::explain(command).await,
        Command::Demo(command) => demo::demo(command).await,
        Command::Dashboard(command) => dashboard::dashboard(command).await,
        Command::Produce(command) => binance::produce(command).await,
        Command::Capture(command) => binance::capture(command).await,
        Command::Replay(command) => binance::replay(command).await,
        Command::GenerateSample(command) => binance::generate_sample(command),
        Command::Probe(command) => probe::probe(command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            // A file that does not load is a usage error, like a bad argument.
            let invalid_file = e.chain().any(|cause| {
                cause
                    .downcast_ref::<sluice_pipeline::PipelineError>()
                    .is_some_and(sluice_pipeline::PipelineError::is_invalid_file)
            });
            std::process::ExitCode::from(if invalid_file { 2 } else { 1 })
        }
    }
}
