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

/// One stored part of an operator's state, as [`StatefulOperator::encode_state`] wrote it.
pub(crate) struct StoredState {
    /// The bytes.
    pub(crate) bytes: Vec<u8>,
    /// Where they were read, for errors.
    pub(crate) location: String,
}

/// A streaming operator whose state lives across micro-batches and in the checkpoint.
///
/// Modelled on DataFusion's `ExecutionPlan` documentation: the contract, then the call order
/// and the invariants the loop relies on.
///
/// # Contract
///
/// - [`state_name`](Self::state_name) names the operator's directory in the checkpoint. It is
///   stable across restarts of the same query and unique among the query's operators.
/// - [`partitions`](Self::partitions) is how many parts the state is kept in (Spark's state
///   store partitions): each is its own file, `state/<name>/<partition>/<batch>.arrow`, written
///   only when the batch changed it.
/// - [`encode_state`](Self::encode_state) returns one partition's state after the last batch
///   as bytes that [`restore_state`](Self::restore_state) of an operator planned from the same
///   query turns back into an equal state. It does not change the operator.
/// - [`restore_state`](Self::restore_state) replaces the in-memory state by the stored parts,
///   however many partitions wrote them (the operator re-partitions the rows), or fails with
///   a checkpoint error naming the part's location when the bytes are unreadable or were
///   written by a different query (different schema or keys).
/// - [`state_changed`](Self::state_changed) tells whether the last batch added, changed or
///   evicted any state row of a partition. When it did not, the loop carries the previous
///   batch's state file over (a hard link or a server-side copy) instead of encoding the same
///   bytes again.
/// - [`progress`](Self::progress) is the operator's row of the last batch's progress report
///   (Spark's `StateOperatorProgress`), summed over its partitions.
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
///    output; then, for each partition, the loop calls `state_changed`, `encode_state` (unless
///    the state is carried over) and writes `state/<name>/<partition>/N.arrow`, and reads
///    `progress` for the batch's report; only then does it write `commits/N`.
/// 3. A batch that fails before `commits/N` leaves the operator in an undefined state: the
///    query stops, and a restart restores the state of batch N−1 and runs N again.
///
/// # Invariants
///
/// - The state written for batch N depends only on the state of batch N−1 and batch N's
///   input and watermarks, so a re-run batch writes the same state (the sink sees the same
///   output, and overwriting a state file is harmless).
/// - The state of batch N is in the checkpoint before `commits/N` is written: a committed
///   batch always has its state.
pub(crate) trait StatefulOperator: Send + Sync {
    /// The operator's directory under `state/` in the checkpoint.
    fn state_name(&self) -> &str;

    /// How many partitions the state is kept in.
    fn partitions(&self) -> usize {
        1
    }

    /// One partition's state after the last batch, encoded for the checkpoint.
    fn encode_state(&self, partition: usize) -> Result<Vec<u8>>;

    /// Replaces the state by the stored parts, written by [`Self::encode_state`] of any
    /// number of partitions.
    fn restore_state(&mut self, parts: Vec<StoredState>) -> Result<()>;

    /// The operator's progress row for the last batch.
    fn progress(&self) -> &StateOperatorProgress;

    /// Whether the last batch changed a partition's state: by default, whether the progress
    /// row counts updated or removed rows. An operator whose progress does not count every
    /// change it makes (a rewrite of a row's value that is reported as no update, say), or
    /// that has several partitions, must override this, or an outdated state file would be
    /// carried over.
    fn state_changed(&self, _partition: usize) -> bool {
        let progress = self.progress();
        progress.num_rows_updated > 0 || progress.num_rows_removed > 0
    }

    /// Whether a watermark that moved without new data may make the operator emit or evict.
    fn waits_on_watermark(&self) -> bool;
}

/// The one part of a single-partition operator's state, or a checkpoint error when the
/// checkpoint holds several (it was not written by this operator).
pub(crate) fn single_part(mut parts: Vec<StoredState>, name: &str) -> Result<StoredState> {
    match parts.len() {
        1 => Ok(parts.remove(0)),
        count => Err(crate::error::SluiceError::checkpoint(
            parts
                .first()
                .map_or_else(|| name.to_string(), |p| p.location.clone()),
            format!(
                "the state of operator '{name}' is stored in {count} partitions, but the \
                 operator keeps one: the checkpoint was written by a different query"
            ),
        )),
    }
}
