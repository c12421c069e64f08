//! The Prometheus series of `sluice run`, fed by the queries' progress reports (a
//! [`QueryListener`], so that every batch counts, however seldom `/metrics` is scraped).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use sluice_engine::{QueryIdentity, QueryListener, StreamingQueryProgress};

/// Labels of a per-query series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    /// The query name (else its id).
    pub query: String,
}

/// Labels of a per-source series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// The query.
    pub query: String,
    /// The source's description, as in the progress report.
    pub source: String,
}

/// Labels of a per-state-operator series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperatorLabels {
    /// The query.
    pub query: String,
    /// The operator's name in the progress report (`stateStoreSave`, `dedupe`, …).
    pub operator: String,
    /// Its position among the query's stateful operators.
    pub index: String,
}

/// Labels of a per-partition series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    /// The query.
    pub query: String,
    /// The source's description.
    pub source: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The batch-duration buckets, seconds: 5 ms to about 82 s, doubling.
fn duration_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Every series, registered in one [`Registry`].
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    batches: Family<QueryLabels, Counter>,
    input_rows: Family<SourceLabels, Counter>,
    malformed: Family<SourceLabels, Counter>,
    output_rows: Family<QueryLabels, Counter>,
    late_rows: Family<QueryLabels, Counter>,
    sink_retries: Family<QueryLabels, Counter>,
    batch_duration: Family<QueryLabels, Histogram, fn() -> Histogram>,
    watermark: Family<QueryLabels, FloatGauge>,
    last_progress: Family<QueryLabels, FloatGauge>,
    state_rows: Family<OperatorLabels, Gauge>,
    state_bytes: Family<OperatorLabels, Gauge>,
    offsets_behind: Family<PartitionLabels, Gauge>,
    active: Family<QueryLabels, Gauge>,
    resident_memory: Gauge,
    /// When each query last reported progress (for readiness).
    reported: Mutex<BTreeMap<String, Instant>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every series, empty.
    pub fn new() -> Self {
        let mut metrics = Self {
            registry: Registry::default(),
            batches: Family::default(),
            input_rows: Family::default(),
            malformed: Family::default(),
            output_rows: Family::default(),
            late_rows: Family::default(),
            sink_retries: Family::default(),
            batch_duration: Family::new_with_constructor(duration_buckets),
            watermark: Family::default(),
            last_progress: Family::default(),
            state_rows: Family::default(),
            state_bytes: Family::default(),
            offsets_behind: Family::default(),
            active: Family::default(),
            resident_memory: Gauge::default(),
            reported: Mutex::new(BTreeMap::new()),
        };
        let mut registry = Registry::default();
        let sluice = registry.sub_registry_with_prefix("sluice");
        let m = &metrics;
        sluice.register(
            "batches",
            "Micro-batches run (triggers without data are not counted)",
            m.batches.clone(),
        );
        sluice.register("input_rows", "Rows read, per source", m.input_rows.clone());
        sluice.register(
            "malformed_records",
            "Records that could not be decoded, per source (nulled, dropped or failed per the parse mode)",
            m.malformed.clone(),
        );
        sluice.register(
            "output_rows",
            "Rows handed to the sink",
            m.output_rows.clone(),
        );
        sluice.register(
            "late_rows",
            "Input rows dropped as later than the watermark (numRowsDroppedByWatermark)",
            m.late_rows.clone(),
        );
        sluice.register(
            "sink_retries",
            "Transient sink failures retried",
            m.sink_retries.clone(),
        );
        sluice.register_with_unit(
            "batch_duration",
            "Wall time of each micro-batch (triggerExecution)",
            Unit::Seconds,
            m.batch_duration.clone(),
        );
        sluice.register_with_unit(
            "watermark",
            "The event-time watermark, in seconds since the Unix epoch",
            Unit::Seconds,
            m.watermark.clone(),
        );
        sluice.register_with_unit(
            "last_progress",
            "When the query last reported progress, in seconds since the Unix epoch",
            Unit::Seconds,
            m.last_progress.clone(),
        );
        sluice.register(
            "state_rows",
            "Rows held in a stateful operator's state",
            m.state_rows.clone(),
        );
        sluice.register_with_unit(
            "state",
            "Memory held by a stateful operator's state",
            Unit::Bytes,
            m.state_bytes.clone(),
        );
        sluice.register(
            "kafka_offsets_behind_latest",
            "Messages of a Kafka partition after the end of the query's latest batch (consumer lag)",
            m.offsets_behind.clone(),
        );
        sluice.register(
            "query_active",
            "1 while the query's loop runs, 0 once it stopped or failed",
            m.active.clone(),
        );
        registry
            .sub_registry_with_prefix("process")
            .register_with_unit(
                "resident_memory",
                "Resident set size of the process",
                Unit::Bytes,
                m.resident_memory.clone(),
            );
        metrics.registry = registry;
        metrics
    }

    /// The series in Prometheus' text format (OpenMetrics), the process's resident memory
    /// measured now.
    pub fn encode(&self) -> String {
        if let Some(rss) = resident_memory() {
            self.resident_memory
                .set(i64::try_from(rss).unwrap_or(i64::MAX));
        }
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// When the query labelled `query` last reported progress.
    pub fn last_reported(&self, query: &str) -> Option<Instant> {
        self.reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(query)
            .copied()
    }

    /// Adds one progress report to the series.
    pub fn record(&self, progress: &StreamingQueryProgress) {
        let query = label(progress.name.as_deref(), &progress.id);
        self.reported
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(query.clone(), Instant::now());
        let labels = QueryLabels {
            query: query.clone(),
        };
        if let Ok(at) = chrono::DateTime::parse_from_rfc3339(&progress.timestamp) {
            self.last_progress
                .get_or_create(&labels)
                .set(at.timestamp_millis() as f64 / 1000.0);
        }
        if let Some(watermark) = progress
            .event_time
            .get("watermark")
            .and_then(|w| chrono::DateTime::parse_from_rfc3339(w).ok())
        {
            self.watermark
                .get_or_create(&labels)
                .set(watermark.timestamp_millis() as f64 / 1000.0);
        }
        for (index, operator) in progress.state_operators.iter().enumerate() {
            let labels = OperatorLabels {
                query: query.clone(),
                operator: operator.operator_name.clone(),
                index: index.to_string(),
            };
            let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.state_rows
                .get_or_create(&labels)
                .set(gauge(operator.num_rows_total));
            self.state_bytes
                .get_or_create(&labels)
                .set(gauge(operator.memory_used_bytes));
        }
        for source in &progress.sources {
            for (key, value) in &source.metrics {
                let Some((topic, partition)) = key
                    .strip_prefix("offsetsBehindLatest:")
                    .and_then(|tp| tp.rsplit_once(':'))
                else {
                    continue;
                };
                let Ok(behind) = value.parse::<i64>() else {
                    continue;
                };
                self.offsets_behind
                    .get_or_create(&PartitionLabels {
                        query: query.clone(),
                        source: source.description.clone(),
                        topic: topic.to_string(),
                        partition: partition.to_string(),
                    })
                    .set(behind);
            }
        }
        // The rest is about a batch; a trigger without data reports none.
        if !progress.duration_ms.contains_key("addBatch") {
            return;
        }
        self.batches.get_or_create(&labels).inc();
        self.batch_duration
            .get_or_create(&labels)
            .observe(progress.batch_duration as f64 / 1000.0);
        for source in &progress.sources {
            let labels = SourceLabels {
                query: query.clone(),
                source: source.description.clone(),
            };
            self.input_rows
                .get_or_create(&labels)
                .inc_by(source.num_input_rows);
            self.malformed
                .get_or_create(&labels)
                .inc_by(source.malformed_records.count);
        }
        self.output_rows
            .get_or_create(&labels)
            .inc_by(progress.sink.num_output_rows);
        let late: u64 = progress
            .state_operators
            .iter()
            .map(|o| o.num_rows_dropped_by_watermark)
            .sum();
        self.late_rows.get_or_create(&labels).inc_by(late);
        let retries = progress
            .sink
            .metrics
            .get("numRetries")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        self.sink_retries.get_or_create(&labels).inc_by(retries);
    }
}

/// How progress and series name a query: its name, else its id.
pub fn label(name: Option<&str>, id: &str) -> String {
    name.unwrap_or(id).to_string()
}

impl QueryListener for Metrics {
    fn on_query_started(&self, query: &QueryIdentity) {
        let labels = QueryLabels {
            query: label(query.name.as_deref(), &query.id),
        };
        self.active.get_or_create(&labels).set(1);
        // Every per-query series shows from the start, at zero.
        self.batches.get_or_create(&labels).inc_by(0);
        self.output_rows.get_or_create(&labels).inc_by(0);
        self.late_rows.get_or_create(&labels).inc_by(0);
        self.sink_retries.get_or_create(&labels).inc_by(0);
    }

    fn on_query_progress(&self, progress: &StreamingQueryProgress) {
        self.record(progress);
    }

    fn on_query_terminated(&self, query: &QueryIdentity, _error: Option<&str>) {
        let labels = QueryLabels {
            query: label(query.name.as_deref(), &query.id),
        };
        self.active.get_or_create(&labels).set(0);
    }
}

/// The resident set size of this process, in bytes (Linux: `VmRSS` of `/proc/self/status`;
/// `None` elsewhere).
fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}
