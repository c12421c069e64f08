//! The Binance → Kafka producer (`sluice produce binance`): each ticker of each frame becomes
//! one message keyed by its symbol, so a symbol's messages share a partition.
//!
//! Delivery: an idempotent producer (`enable.idempotence`, `acks=all`), every message's
//! delivery report counted. Memory is bounded end to end: at most
//! [`ProducerOptions::max_in_flight`] messages await their report; past that, or when
//! librdkafka's queue is full (Kafka slow or down), the producer stops taking frames, the
//! client's bounded buffer fills, and the client stops reading the socket.
//!
//! Shutdown ([`ProducerHandle::stop`], Ctrl-C/SIGTERM in the CLI): the client stops reading,
//! the frames it already received are produced, and every delivery is awaited (up to
//! [`ProducerOptions::flush_timeout`]).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::{Future, StreamExt};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::client::{ClientMetrics, ClientOptions, ReceivedFrame, WebSocketClient};
use super::frame::{Mode, decode_frame};
use crate::kafka::broker::idempotent_producer;

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    /// The WebSocket stream.
    pub client: ClientOptions,
    /// The Kafka brokers.
    pub bootstrap: String,
    /// The topic (the seed's: `projet-bdcc`).
    pub topic: String,
    /// Normalized messages (default) or Binance's objects unchanged.
    pub mode: Mode,
    /// Extra librdkafka properties (SSL, SASL, compression…), overriding the defaults.
    pub properties: BTreeMap<String, String>,
    /// Messages awaiting their delivery report at most.
    pub max_in_flight: usize,
    /// How long shutdown waits for outstanding deliveries.
    pub flush_timeout: Duration,
}

impl ProducerOptions {
    /// Defaults: normalized messages, 100,000 in flight, 30 s flush on shutdown.
    pub fn new(
        client: ClientOptions,
        bootstrap: impl Into<String>,
        topic: impl Into<String>,
    ) -> Self {
        Self {
            client,
            bootstrap: bootstrap.into(),
            topic: topic.into(),
            mode: Mode::Normalized,
            properties: BTreeMap::new(),
            max_in_flight: 100_000,
            flush_timeout: Duration::from_secs(30),
        }
    }
}

/// Counters of the producer (the client's are in [`ProducerHandle::client_metrics`]).
#[derive(Debug, Default)]
pub struct ProducerMetrics {
    /// Tickers taken from frames.
    pub messages_in: AtomicU64,
    /// Messages acknowledged by Kafka.
    pub messages_out: AtomicU64,
    /// Messages whose delivery failed (after librdkafka's own retries).
    pub delivery_failures: AtomicU64,
    /// Frames that were not JSON of a known shape.
    pub malformed_frames: AtomicU64,
    /// Events that could not be normalized.
    pub rejected_events: AtomicU64,
    /// The last delivery's latency (queued → acknowledged), in µs.
    pub delivery_lag_micros: AtomicU64,
}

/// A running producer.
pub struct ProducerHandle {
    stop: watch::Sender<bool>,
    metrics: Arc<ProducerMetrics>,
    client: Arc<ClientMetrics>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl ProducerHandle {
    /// The producer's counters.
    pub fn metrics(&self) -> Arc<ProducerMetrics> {
        Arc::clone(&self.metrics)
    }

    /// The WebSocket client's counters (frames, reconnects, pongs).
    pub fn client_metrics(&self) -> Arc<ClientMetrics> {
        Arc::clone(&self.client)
    }

    /// Asks for a graceful stop.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Waits for the producer to end (after [`ProducerHandle::stop`], or on a fatal error).
    pub async fn join(self) -> Result<(), String> {
        self.task.await.map_err(|e| e.to_string())?
    }
}

type Delivery = Pin<Box<dyn Future<Output = (Instant, bool, String)> + Send>>;

/// Starts producing; fails at once when the Kafka producer cannot be created.
pub fn start(options: ProducerOptions) -> Result<ProducerHandle, String> {
    let producer = idempotent_producer(
        &options.bootstrap,
        &[
            ("linger.ms", "20"),
            ("compression.type", "lz4"),
            ("queue.buffering.max.messages", "200000"),
            ("message.timeout.ms", "300000"),
        ],
        &options.properties,
    )
    .map_err(|e| {
        format!(
            "cannot create a Kafka producer for {}: {e}",
            options.bootstrap
        )
    })?;
    let client = WebSocketClient::spawn(options.client.clone());
    let client_metrics = client.metrics();
    let metrics = Arc::new(ProducerMetrics::default());
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(
        options,
        producer,
        client,
        Arc::clone(&metrics),
        stopped,
    ));
    Ok(ProducerHandle {
        stop,
        metrics,
        client: client_metrics,
        task,
    })
}

async fn run(
    options: ProducerOptions,
    producer: FutureProducer,
    mut client: WebSocketClient,
    metrics: Arc<ProducerMetrics>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut pending: FuturesUnordered<Delivery> = FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            Some(done) = pending.next(), if !pending.is_empty() => record(&metrics, done),
            _ = stop.changed() => break,
            frame = client.next(), if pending.len() < options.max_in_flight => match frame {
                Some(frame) => {
                    produce(&options, &producer, &metrics, &mut pending, frame).await;
                }
                None => break,
            },
        }
    }
    // Graceful stop: produce what was received, then wait for every report.
    client.shutdown();
    while let Some(frame) = client.try_next() {
        produce(&options, &producer, &metrics, &mut pending, frame).await;
    }
    // The server refused the connection for good: deliver what came before, then say why.
    let refused = client.failure();
    let deadline = tokio::time::Instant::now() + options.flush_timeout;
    while !pending.is_empty() {
        match tokio::time::timeout_at(deadline, pending.next()).await {
            Ok(Some(done)) => record(&metrics, done),
            Ok(None) => break,
            Err(_) => {
                return Err(format!(
                    "{} messages were still unacknowledged after {:?}",
                    pending.len(),
                    options.flush_timeout
                ));
            }
        }
    }
    refused.map_or(Ok(()), Err)
}

fn record(metrics: &ProducerMetrics, (queued, delivered, error): (Instant, bool, String)) {
    if delivered {
        metrics.messages_out.fetch_add(1, Ordering::Relaxed);
        metrics
            .delivery_lag_micros
            .store(queued.elapsed().as_micros() as u64, Ordering::Relaxed);
    } else {
        metrics.delivery_failures.fetch_add(1, Ordering::Relaxed);
        warn!("delivery failed: {error}");
    }
}

/// Normalizes one frame and queues its messages, waiting for deliveries while librdkafka's
/// queue is full.
async fn produce(
    options: &ProducerOptions,
    producer: &FutureProducer,
    metrics: &ProducerMetrics,
    pending: &mut FuturesUnordered<Delivery>,
    frame: ReceivedFrame,
) {
    let decoded = match decode_frame(&frame.text, options.mode) {
        Ok(decoded) => decoded,
        Err(reason) => {
            metrics.malformed_frames.fetch_add(1, Ordering::Relaxed);
            warn!(
                "malformed frame ({reason}): {}",
                frame.text.chars().take(200).collect::<String>()
            );
            return;
        }
    };
    if !decoded.rejected.is_empty() {
        metrics
            .rejected_events
            .fetch_add(decoded.rejected.len() as u64, Ordering::Relaxed);
        debug!("rejected events: {:?}", decoded.rejected);
    }
    for message in decoded.messages {
        metrics.messages_in.fetch_add(1, Ordering::Relaxed);
        let mut outgoing = FutureRecord::to(&options.topic)
            .key(&message.key)
            .payload(&message.value);
        loop {
            match producer.send_result(outgoing) {
                Ok(delivery) => {
                    let queued = Instant::now();
                    pending.push(Box::pin(async move {
                        match delivery.await {
                            Ok(Ok(_)) => (queued, true, String::new()),
                            Ok(Err((e, _))) => (queued, false, e.to_string()),
                            Err(_) => (queued, false, "producer dropped".into()),
                        }
                    }));
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // Back-pressure: Kafka is slow or down; wait for a delivery.
                    outgoing = back;
                    match tokio::time::timeout(Duration::from_millis(100), pending.next()).await {
                        Ok(Some(done)) => record(metrics, done),
                        _ => tokio::task::yield_now().await,
                    }
                }
                Err((e, _)) => {
                    metrics.delivery_failures.fetch_add(1, Ordering::Relaxed);
                    warn!("cannot queue a message: {e}");
                    break;
                }
            }
        }
    }
}
