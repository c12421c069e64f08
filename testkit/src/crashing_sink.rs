//! A sink that dies at one point of one batch, as a killed process would, to test that a
//! restarted query recovers exactly once.

use arrow::array::RecordBatch;
use async_trait::async_trait;
use sluice_engine::{Sink, SinkContext, SluiceError};

/// Where the simulated crash happens within the crashing batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crash {
    /// After `offsets/N` is written, before the sink has the batch.
    BeforeSink,
    /// After the sink wrote the batch, before `commits/N`.
    AfterSink,
}

/// Wraps a sink: every batch goes to it, except that batch `batch` fails with a
/// [`SluiceError::Sink`] ("simulated crash") at the [`Crash`] point.
pub struct CrashingSink<S> {
    inner: S,
    batch: u64,
    crash: Crash,
}

impl<S: Sink> CrashingSink<S> {
    /// `inner`, crashing at `crash` in batch `batch` (`u64::MAX`: never).
    pub fn new(inner: S, batch: u64, crash: Crash) -> Self {
        Self {
            inner,
            batch,
            crash,
        }
    }
}

#[async_trait]
impl<S: Sink> Sink for CrashingSink<S> {
    fn description(&self) -> String {
        self.inner.description()
    }

    fn metrics(&self) -> std::collections::BTreeMap<String, String> {
        self.inner.metrics()
    }

    async fn open(&mut self, context: &SinkContext) -> sluice_engine::Result<()> {
        self.inner.open(context).await
    }

    async fn add_batch(
        &mut self,
        batch_id: u64,
        batches: &[RecordBatch],
    ) -> sluice_engine::Result<()> {
        if batch_id == self.batch {
            if self.crash == Crash::AfterSink {
                self.inner.add_batch(batch_id, batches).await?;
            }
            return Err(SluiceError::Sink {
                sink: "crashing".into(),
                batch_id,
                message: "simulated crash".into(),
            });
        }
        self.inner.add_batch(batch_id, batches).await
    }
}
