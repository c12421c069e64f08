//! Stateful operators: the parts of a streaming query that remember rows across micro-batches,
//! and the one contract by which the micro-batch loop persists and restores them.
//!
//! - [`aggregate`]: a streaming aggregation (`GROUP BY`, windows, sessions), Spark's
//!   `StateStoreSave`;
//! - [`dedup`]: a source's deduplication (Spark's `dropDuplicates` and
//!   `dropDuplicatesWithinWatermark`);
//! - [`join`]: a join of two streams, Spark's `StreamingSymmetricHashJoinExec`;
//! - [`codec`]: how an operator's state rows are written to the checkpoint (Arrow IPC);
//! - [`first_per_key`]: not stateful, but an operator all the same: `DISTINCT ON` in a
//!   per-batch query, by hashing.
//!
//! Each operator processes rows through its own entry point (the aggregation inside the
//! planned SQL, a deduplication on its source's rows before it), but the loop treats them all
//! alike through [`StatefulOperator`]: after every batch it asks each whether the batch changed
//! its state, writes or carries the state over, and collects its progress row; on restart it
//! hands each the state of the last committed batch. A new stateful operator implements the
//! trait and is listed by the plan's operators; the loop does not change.

pub(crate) mod aggregate;
pub(crate) mod codec;
pub(crate) mod dedup;
pub(crate) mod first_per_key;
pub(crate) mod join;

use crate::error::Result;
use crate::progress::StateOperatorProgress;

/// A streaming operator whose state lives across micro-batches and in the checkpoint.
///
/// Modelled on DataFusion's `ExecutionPlan` documentation: the contract, then the call order
/// and the invariants the loop relies on.
///
/// # Contract
///
/// - [`state_name`](Self::state_name) names the operator's directory in the checkpoint,
///   `state/<name>/<batch>.arrow`. It is stable across restarts of the same query and unique
///   among the query's operators.
/// - [`encode_state`](Self::encode_state) returns the operator's whole state after the last
///   batch as bytes that [`restore_state`](Self::restore_state) of an operator planned from
///   the same query turns back into an equal state. It does not change the operator.
/// - [`restore_state`](Self::restore_state) replaces the in-memory state by the decoded one,
///   or fails with a checkpoint error naming `location` when the bytes are unreadable or were
///   written by a different query (different schema or keys).
/// - [`state_changed`](Self::state_changed) tells whether the last batch added, changed or
///   evicted any state row. When it did not, the loop carries the previous batch's state file
///   over (a hard link or a server-side copy) instead of encoding the same bytes again.
/// - [`progress`](Self::progress) is the operator's row of the last batch's progress report
///   (Spark's `StateOperatorProgress`).
/// - [`waits_on_watermark`](Self::waits_on_watermark) tells whether the watermark moving on its
///   own (without new data) may make the operator emit or evict, so that the loop runs Spark's
///   no-data batch for it.
///
/// # Call order
///
/// 1. At start, after recovery: `restore_state` with the state of the last committed batch,
///    if the query has committed one; a new query starts empty.
/// 2. Each batch N: the operator processes its rows through its own entry point with the
///    batch's `BatchWatermarks` (from the watermark rules); the sink receives the
///    output; then the loop calls `state_changed`, `encode_state` (unless the state is carried
///    over), writes `state/<name>/N.arrow` and reads `progress` for the batch's report; only
///    then does it write `commits/N`.
/// 3. A batch that fails before `commits/N` leaves the operator in an undefined state: the
///    query stops, and a restart restores the state of batch N−1 and runs N again.
///
/// # Invariants
///
/// - The state written for batch N depends only on the state of batch N−1 and batch N's
///   input and watermarks, so a re-run batch writes the same state (the sink sees the same
///   output, and overwriting `state/<name>/N.arrow` is harmless).
/// - The state of batch N is in the checkpoint before `commits/N` is written: a committed
///   batch always has its state.
pub(crate) trait StatefulOperator: Send + Sync {
    /// The operator's directory under `state/` in the checkpoint.
    fn state_name(&self) -> &str;

    /// The whole state after the last batch, encoded for the checkpoint.
    fn encode_state(&self) -> Result<Vec<u8>>;

    /// Replaces the state by one written by [`Self::encode_state`]; `location` names the file
    /// in errors.
    fn restore_state(&mut self, bytes: &[u8], location: &str) -> Result<()>;

    /// The operator's progress row for the last batch.
    fn progress(&self) -> &StateOperatorProgress;

    /// Whether the last batch changed the state: by default, whether its progress row counts
    /// updated or removed rows. An operator whose progress does not count every change it
    /// makes (a rewrite of a row's value that is reported as no update, say) must override
    /// this, or an outdated state file would be carried over.
    fn state_changed(&self) -> bool {
        let progress = self.progress();
        progress.num_rows_updated > 0 || progress.num_rows_removed > 0
    }

    /// Whether a watermark that moved without new data may make the operator emit or evict.
    fn waits_on_watermark(&self) -> bool;
}
