//! Which database errors are transient, and how the sink retries them.

use std::time::Duration;

/// How a transient failure is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first delay; each retry doubles it, up to `max_backoff`.
    pub initial_backoff: Duration,
    /// The longest delay between attempts.
    pub max_backoff: Duration,
    /// How long one attempt waits for a connection (a refused or unreachable server fails
    /// the attempt after this).
    pub connect_timeout: Duration,
}

impl Default for RetryPolicy {
    /// 6 retries from 200 ms, doubling up to 5 s, 5 s to connect: an outage of 11 to 46 s
    /// (refused or unreachable) is ridden out.
    fn default() -> Self {
        Self {
            max_retries: 6,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (0-based).
    pub fn delay(&self, retry: u32) -> Duration {
        self.initial_backoff
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_backoff)
    }
}

/// Whether an error may go away if the same transaction is tried again: the connection was
/// refused, dropped or shut down (SQLSTATE class 08, 57P01–57P03), too many connections
/// (53300), a serialization failure or deadlock (40001, 40P01), SQLite busy or locked.
pub(crate) fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01"
                        // SQLITE_BUSY, SQLITE_LOCKED and their extended codes
                        | "5" | "6" | "261" | "262" | "517"
                )
        }),
        _ => false,
    }
}
