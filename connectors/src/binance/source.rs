//! The Binance WebSocket stream as an engine source (`connector = 'binance'`), so that a
//! pipeline runs without Kafka.
//!
//! Every source of the process reading the same URL shares one connection
//! (`super::shared`): several queries over the stream read it once and see the same frames.
//!
//! **At-most-once across restarts.** A live WebSocket cannot be replayed: messages are
//! numbered as they arrive and kept in memory until their batch is committed, so a batch
//! re-run in the same process reads the same rows, but after a restart what was received and
//! not committed is gone, and what arrives while the process is down is never seen. For
//! exactly-once, produce to Kafka (`sluice produce binance`) and read Kafka, or replay a
//! capture file.

use std::collections::VecDeque;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sluice_engine::json::MalformedStats;
use sluice_engine::{
    JsonDecoder, JsonOptions, Offset, ReadLimit, Result, SluiceError, Source, SourceBatch,
};

use super::client::ClientOptions;
use super::frame::{Mode, decode_frame};
use super::shared::Subscription;

/// The source's offset: how many messages were received before this point.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
struct Received {
    received: u64,
}

/// A Binance (or Binance-compatible, e.g. the replay server) WebSocket stream as a source of
/// normalized ticker rows.
pub struct BinanceSource {
    name: String,
    options: ClientOptions,
    schema: SchemaRef,
    json: JsonOptions,
    subscription: Subscription,
    /// Normalized messages not yet committed; the first has number `first`.
    buffer: VecDeque<String>,
    first: u64,
    /// Whether the numbering was aligned with the checkpoint.
    aligned: bool,
    /// Frames and events that could not be used, since the last batch.
    malformed: MalformedStats,
    cap: Option<u64>,
    mode: Mode,
}

impl BinanceSource {
    /// A source named `name` reading the stream at `options.url`, decoding normalized
    /// messages into `schema` (e.g. `ticker::event_time_schema()`).
    pub fn new(
        name: impl Into<String>,
        options: ClientOptions,
        schema: SchemaRef,
        json: JsonOptions,
    ) -> Self {
        let subscription = Subscription::new(&options);
        Self {
            name: name.into(),
            options,
            schema,
            json,
            subscription,
            buffer: VecDeque::new(),
            first: 0,
            aligned: false,
            malformed: MalformedStats::default(),
            cap: None,
            mode: Mode::Normalized,
        }
    }

    /// Decodes Binance's event objects as they are (`{"e":"trade","s":"BTCUSDT","p":…}`)
    /// instead of the seed's normalized ticker messages, so any Binance-style event stream
    /// (trades, book tickers, …) can be read with columns named after its fields
    /// (`connector = 'websocket'`). Events still need a symbol (`s`).
    pub fn raw_events(mut self) -> Self {
        self.mode = Mode::Raw;
        self
    }

    fn end(&self) -> u64 {
        self.first + self.buffer.len() as u64
    }

    /// Moves what the client received into the buffer; an error once the connection gave up
    /// for good (the frames received before still count).
    fn drain(&mut self) -> Result<()> {
        let drained = self.subscription.drain();
        if drained.missed > 0 {
            tracing::warn!(
                source = %self.name, missed = drained.missed,
                "fell behind the shared stream: frames lost"
            );
        }
        for frame in drained.frames {
            match decode_frame(&frame.text, self.mode) {
                Ok(decoded) => {
                    for reason in decoded.rejected {
                        self.reject(&reason, &frame.text);
                    }
                    self.buffer
                        .extend(decoded.messages.into_iter().map(|m| m.value));
                }
                Err(reason) => self.reject(&reason, &frame.text),
            }
        }
        match drained.failure {
            Some(failure) => Err(SluiceError::source(&self.name, failure)),
            None => Ok(()),
        }
    }

    fn reject(&mut self, reason: &str, frame: &str) {
        tracing::warn!(source = %self.name, "malformed Binance frame: {reason}");
        let mut one = MalformedStats {
            count: 1,
            first_error: Some(reason.to_string()),
            first_record: Some(frame.chars().take(200).collect()),
        };
        std::mem::swap(&mut one, &mut self.malformed);
        self.malformed.merge(one);
    }

    fn parse(&self, offset: &Offset) -> Result<u64> {
        offset
            .parse::<Received>()
            .map(|r| r.received)
            .map_err(|e| SluiceError::source(&self.name, format!("invalid offset {offset}: {e}")))
    }
}

#[async_trait]
impl Source for BinanceSource {
    fn description(&self) -> String {
        format!("BinanceWebSocket[{}]", self.options.url)
    }

    fn schema(&self) -> SchemaRef {
        JsonDecoder::new(self.schema.clone(), self.json.clone())
            .map(|d| d.output_schema())
            .unwrap_or_else(|_| self.schema.clone())
    }

    async fn initial_offset(&mut self) -> Result<Offset> {
        self.drain()?;
        Ok(Offset::from_typed(&Received { received: 0 })
            .map_err(|e| SluiceError::source(&self.name, e.to_string()))?)
    }

    fn default_read_limit(&self) -> ReadLimit {
        ReadLimit::AllAvailable
    }

    async fn latest_offset(&mut self, start: &Offset, limit: ReadLimit) -> Result<Offset> {
        let start = self.parse(start)?;
        if !self.aligned {
            // A restarted query continues the checkpoint's numbering.
            self.first = self.first.max(start);
            self.aligned = true;
        }
        self.drain()?;
        let mut end = self.end().max(start);
        if let ReadLimit::MaxRows(n) = limit {
            end = end.min(start + n);
        }
        if let Some(cap) = self.cap {
            end = end.min(cap.max(start));
        }
        Offset::from_typed(&Received { received: end })
            .map_err(|e| SluiceError::source(&self.name, e.to_string()))
    }

    async fn get_batch(&mut self, start: &Offset, end: &Offset) -> Result<SourceBatch> {
        let (start, end) = (self.parse(start)?, self.parse(end)?);
        let mut decoder = JsonDecoder::new(self.schema.clone(), self.json.clone())?;
        decoder.set_context(format!("Binance source '{}'", self.name));
        // Messages before `first` were received by an earlier process: lost (at-most-once).
        let from = start.max(self.first);
        for number in from..end.min(self.end()) {
            decoder.push(self.buffer[(number - self.first) as usize].as_bytes())?;
        }
        let decoded = decoder.finish()?;
        let mut malformed = std::mem::take(&mut self.malformed);
        malformed.merge(decoded.malformed);
        Ok(SourceBatch {
            batches: decoded.batches,
            malformed,
        })
    }

    async fn commit(&mut self, end: &Offset) -> Result<()> {
        let end = self.parse(end)?;
        while self.first < end && !self.buffer.is_empty() {
            self.buffer.pop_front();
            self.first += 1;
        }
        Ok(())
    }

    async fn prepare_for_available_now(&mut self) -> Result<()> {
        self.drain()?;
        self.cap = Some(self.end());
        Ok(())
    }

    fn backlog(&self, start: &Offset) -> Option<u64> {
        Some(self.cap?.saturating_sub(self.parse(start).ok()?))
    }
}
