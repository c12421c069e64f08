//! When micro-batches run (Spark's triggers).

use std::time::Duration;

/// How long a query waits before looking again when a trigger found no new data (the default
/// trigger only). Spark polls every 10 ms; listing a directory or an object store that often
/// costs more than it gains, so Sluice polls every 100 ms.
pub const IDLE_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// When the next micro-batch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trigger {
    /// The next batch starts as soon as the previous one ends (Spark's default trigger).
    #[default]
    Default,
    /// Batches start on a fixed interval; a batch that takes longer delays the next one,
    /// which then starts at once (Spark's `ProcessingTime`).
    ProcessingTime(Duration),
    /// Process everything available when the query starts, in batches bounded by the
    /// sources' read limits, then stop (Spark's `AvailableNow`).
    AvailableNow,
}

impl Trigger {
    /// How long to wait before the next trigger, given how long the last one took and
    /// whether it found data.
    pub fn delay(self, elapsed: Duration, had_data: bool) -> Duration {
        match self {
            Self::Default if had_data => Duration::ZERO,
            Self::Default => IDLE_POLL_INTERVAL,
            Self::ProcessingTime(interval) => interval.saturating_sub(elapsed),
            Self::AvailableNow => Duration::ZERO,
        }
    }
}
