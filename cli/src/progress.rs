//! Progress printing: one line (or JSON object) per batch, a summary every interval, and a
//! progress bar of the queries' backlogs.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use sluice_engine::{StreamingQuery, StreamingQueryProgress};

/// How progress is shown.
#[derive(Clone, Copy)]
pub enum Format {
    /// One line per batch.
    Lines,
    /// One JSON object per batch.
    Json,
    /// One line per interval with rows written per query.
    Summary(Duration),
}

/// The name progress shows for `query`: its name, else its id.
pub fn label(query: &StreamingQuery) -> String {
    query.name().unwrap_or(query.id()).to_string()
}

/// Prints each batch's progress once.
pub struct Printer {
    format: Format,
    /// Per query, the key (time and batch) of the last progress printed.
    printed: BTreeMap<String, String>,
    /// Per query, the rows written so far (for the summary).
    rows: BTreeMap<String, u64>,
    last_summary: Instant,
    /// Whether to draw a progress bar of the queries' backlogs on stderr.
    bar: bool,
}

impl Printer {
    /// A printer in `format`, with a progress bar on stderr if `bar`.
    pub fn new(format: Format, bar: bool) -> Self {
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
                progress_bar(done, 30)
            );
        }
    }

    /// Prints what is new in the queries' recent progress (and the summary when it is due).
    pub fn print(&mut self, queries: &[StreamingQuery]) {
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

/// `[=========>          ]  45%`
pub fn progress_bar(fraction: f64, width: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0) * width as f64) as usize).min(width);
    let head = if filled < width { ">" } else { "" };
    format!(
        "[{}{head}{}] {:>3.0}%",
        "=".repeat(filled),
        " ".repeat(width - filled - head.len()),
        fraction.clamp(0.0, 1.0) * 100.0
    )
}
