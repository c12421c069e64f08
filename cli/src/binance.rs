//! `sluice produce binance`, `sluice capture binance`, `sluice replay`,
//! `sluice generate-sample`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use sluice_connectors::binance::MINI_TICKER_URL;
use sluice_connectors::binance::capture::{CaptureWriter, CapturedFrame, read_capture};
use sluice_connectors::binance::client::{ClientOptions, WebSocketClient};
use sluice_connectors::binance::frame::Mode;
use sluice_connectors::binance::generator::{SampleSpec, generate};
use sluice_connectors::binance::producer::{self, ProducerOptions};
use sluice_connectors::binance::replay::{Pacing, ReplayOptions, ReplayServer};

use crate::process::{parse_duration, resident_memory, shutdown_signal};

/// The stream to connect to.
#[derive(Args, Clone)]
pub struct Stream {
    /// The WebSocket URL (a replay server's, e.g. ws://127.0.0.1:9443/ws/!miniTicker@arr).
    #[arg(long, env = "BINANCE_WS_URL", default_value = MINI_TICKER_URL)]
    url: String,
    /// A dead connection: no frame for this long.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    idle_timeout: Duration,
}

impl Stream {
    fn options(&self) -> ClientOptions {
        ClientOptions {
            idle_timeout: self.idle_timeout,
            ..ClientOptions::new(&self.url)
        }
    }
}

/// `sluice produce …`
#[derive(Subcommand)]
pub enum Produce {
    /// Binance's stream → one Kafka message per ticker, keyed by symbol; runs until Ctrl-C.
    Binance(ProduceBinance),
}

/// Options of `sluice produce binance`.
#[derive(Args)]
pub struct ProduceBinance {
    #[command(flatten)]
    stream: Stream,
    /// The Kafka brokers.
    #[arg(long, env = "KAFKA_BOOTSTRAP", default_value = "localhost:9092")]
    bootstrap: String,
    /// The topic.
    #[arg(long, default_value = "projet-bdcc")]
    topic: String,
    /// Forward Binance's objects unchanged instead of the normalized message.
    #[arg(long)]
    raw: bool,
    /// A librdkafka property, `key=value` (repeatable): SSL, SASL, compression…
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// How often to print a stats line.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    stats_interval: Duration,
}

/// Runs the producer until Ctrl-C / SIGTERM, printing stats.
pub async fn produce(command: Produce) -> anyhow::Result<()> {
    let Produce::Binance(args) = command;
    let mut properties = BTreeMap::new();
    for property in &args.properties {
        let (key, value) = property
            .split_once('=')
            .with_context(|| format!("--property '{property}' is not key=value"))?;
        properties.insert(key.to_string(), value.to_string());
    }
    let options = ProducerOptions {
        mode: if args.raw {
            Mode::Raw
        } else {
            Mode::Normalized
        },
        properties,
        ..ProducerOptions::new(args.stream.options(), &args.bootstrap, &args.topic)
    };
    let handle = producer::start(options).map_err(anyhow::Error::msg)?;
    eprintln!(
        "producing {} → Kafka {} topic '{}' (Ctrl-C to stop)",
        args.stream.url, args.bootstrap, args.topic
    );
    let metrics = handle.metrics();
    let client = handle.client_metrics();
    let mut ticker = tokio::time::interval(args.stats_interval);
    ticker.tick().await;
    let (mut last_in, mut last_out, mut last) = (0, 0, Instant::now());
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = ticker.tick() => {
                let (input, output) = (
                    metrics.messages_in.load(Ordering::Relaxed),
                    metrics.messages_out.load(Ordering::Relaxed),
                );
                let seconds = last.elapsed().as_secs_f64().max(1e-9);
                eprintln!(
                    "in {:.0}/s out {:.0}/s total {output} | reconnects {} | malformed frames {} rejected {} | failed {} | delivery lag {:.1} ms | rss {:.1} MB",
                    (input - last_in) as f64 / seconds,
                    (output - last_out) as f64 / seconds,
                    client.reconnects.load(Ordering::Relaxed),
                    metrics.malformed_frames.load(Ordering::Relaxed),
                    metrics.rejected_events.load(Ordering::Relaxed),
                    metrics.delivery_failures.load(Ordering::Relaxed),
                    metrics.delivery_lag_micros.load(Ordering::Relaxed) as f64 / 1000.0,
                    resident_memory().unwrap_or(0) as f64 / 1e6,
                );
                (last_in, last_out, last) = (input, output, Instant::now());
            }
        }
    }
    eprintln!("stopping: producing what was received and waiting for Kafka's acknowledgements");
    handle.stop();
    handle.join().await.map_err(anyhow::Error::msg)?;
    eprintln!(
        "stopped: {} messages delivered",
        metrics.messages_out.load(Ordering::Relaxed)
    );
    Ok(())
}

/// `sluice capture …`
#[derive(Subcommand)]
pub enum Capture {
    /// Record Binance's raw frames with their arrival times (gzip JSON lines).
    Binance(CaptureBinance),
}

/// Options of `sluice capture binance`.
#[derive(Args)]
pub struct CaptureBinance {
    #[command(flatten)]
    stream: Stream,
    /// The capture file to write (`.jsonl.gz`).
    #[arg(long)]
    out: PathBuf,
    /// Stop after this long (default: at Ctrl-C).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
}

/// Records frames until Ctrl-C or the duration.
pub async fn capture(command: Capture) -> anyhow::Result<()> {
    let Capture::Binance(args) = command;
    let mut writer = CaptureWriter::create(&args.out)?;
    let mut client = WebSocketClient::spawn(args.stream.options());
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let stop = shutdown_signal();
    tokio::pin!(stop);
    let mut frames = 0u64;
    eprintln!("capturing {} → {}", args.stream.url, args.out.display());
    loop {
        let until =
            deadline.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = &mut stop => break,
            _ = tokio::time::sleep_until(until), if deadline.is_some() => break,
            frame = client.next() => match frame {
                Some(frame) => {
                    writer.write(&CapturedFrame { arrival_ms: frame.arrival_ms, text: frame.text })?;
                    frames += 1;
                }
                None => break,
            },
        }
    }
    client.shutdown();
    writer.finish()?;
    eprintln!("captured {frames} frames into {}", args.out.display());
    Ok(())
}

/// Options of `sluice replay`.
#[derive(Args)]
pub struct Replay {
    /// The capture file (e.g. the bundled sample).
    file: PathBuf,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:9443")]
    listen: std::net::SocketAddr,
    /// Time compression: 10 replays ten times faster than captured.
    #[arg(long, default_value_t = 1.0, conflicts_with = "max")]
    speed: f64,
    /// Send each client every frame from the start, as fast as it reads.
    #[arg(long)]
    max: bool,
    /// Start over at the end.
    #[arg(long = "loop")]
    looped: bool,
    /// Move event times to the moment each frame is sent (windows and dashboards look live).
    #[arg(long)]
    shift_to_now: bool,
}

/// Serves a capture until Ctrl-C.
pub async fn replay(args: Replay) -> anyhow::Result<()> {
    if args.speed.is_nan() || args.speed <= 0.0 {
        bail!("--speed must be positive");
    }
    let frames = read_capture(&args.file)?;
    let count = frames.len();
    let span_ms = match (frames.first(), frames.last()) {
        (Some(first), Some(last)) => (last.arrival_ms - first.arrival_ms).max(1),
        _ => 1,
    };
    let server = ReplayServer::start(
        frames,
        args.listen,
        ReplayOptions {
            pacing: if args.max {
                Pacing::Max
            } else {
                Pacing::Live { speed: args.speed }
            },
            looped: args.looped,
            shift_to_now: args.shift_to_now,
            ..ReplayOptions::default()
        },
    )
    .await
    .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!(
        "replaying {count} frames of {} at {} (Ctrl-C to stop)",
        args.file.display(),
        server.url("!miniTicker@arr")
    );
    if args.looped {
        shutdown_signal().await;
        return Ok(());
    }
    // A bounded replay: a progress bar on a terminal, a line every 10 s otherwise.
    let started = Instant::now();
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut last_line = Instant::now();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        let stats = server.stats();
        let clients = stats.connections.load(Ordering::Relaxed);
        let sent = stats.frames_sent.load(Ordering::Relaxed);
        let done = if args.max {
            // Each client reads the whole capture at its own pace.
            sent as f64 / (count.max(1) as u64 * clients.max(1)) as f64
        } else {
            started.elapsed().as_secs_f64() * 1000.0 * args.speed / span_ms as f64
        }
        .min(1.0);
        let line = format!(
            "{} · {sent} frames sent · {clients} connections",
            crate::progress::progress_bar(done, 30)
        );
        if terminal {
            eprint!("\r{line}  ");
        } else if last_line.elapsed() >= Duration::from_secs(10) || done >= 1.0 {
            eprintln!("{line}");
            last_line = Instant::now();
        }
        if done >= 1.0 && !terminal {
            // Keep serving (clients stay connected) but stop reporting.
            shutdown.as_mut().await;
            break;
        }
    }
    if terminal {
        eprintln!();
    }
    Ok(())
}

/// Options of `sluice generate-sample`.
#[derive(Args)]
pub struct GenerateSample {
    /// The capture file to write.
    #[arg(long)]
    out: PathBuf,
    /// Symbols.
    #[arg(long, default_value_t = SampleSpec::default().symbols)]
    symbols: usize,
    /// One frame per second, for this many seconds.
    #[arg(long, default_value_t = SampleSpec::default().seconds)]
    seconds: usize,
    /// The random seed.
    #[arg(long, default_value_t = SampleSpec::default().seed)]
    seed: u64,
}

/// Writes a synthetic sample.
pub fn generate_sample(args: GenerateSample) -> anyhow::Result<()> {
    let spec = SampleSpec {
        symbols: args.symbols,
        seconds: args.seconds,
        seed: args.seed,
        ..SampleSpec::default()
    };
    let frames = generate(&spec);
    let mut writer = CaptureWriter::create(&args.out)?;
    for frame in &frames {
        writer.write(frame)?;
    }
    writer.finish()?;
    eprintln!(
        "wrote {} frames ({} symbols, seed {}) to {}",
        frames.len(),
        spec.symbols,
        spec.seed,
        args.out.display()
    );
    Ok(())
}
