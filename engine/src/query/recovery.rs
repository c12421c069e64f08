//! Where a starting query resumes, from its checkpoint (Spark's
//! `MicroBatchExecution.populateStartOffsets`, `docs/semantics.md` §1).
//!
//! [`recover`] turns the decision of [`plan_recovery`](crate::checkpoint::plan_recovery) (new,
//! resume after the last commit, or re-run the uncommitted batch) into start offsets, the next
//! batch id, the watermarks and the batch to re-run; [`restore_state`] loads every stateful
//! operator's state as of a committed batch. Both run once, before the first trigger, and only
//! read the checkpoint (a new query also records where each source starts).

use std::collections::BTreeMap;

use crate::checkpoint::{Checkpoint, OffsetEntry, Recovery, checksum, stored_units};
use crate::error::{Result, SluiceError};
use crate::offset::Offset;
use crate::operator::{StatefulOperator, StoredState};
use crate::source::Source;
use crate::watermark::WatermarkTracker;

/// Where the loop starts.
pub(super) struct Start {
    /// Each source's committed end offset: where the next batch starts reading.
    pub(super) committed: BTreeMap<String, Offset>,
    /// The id of the next new batch.
    pub(super) next_batch_id: u64,
    /// A logged but uncommitted batch to run again before anything else.
    pub(super) pending: Option<OffsetEntry>,
    /// The committed batch whose state the operators must restore, if any.
    pub(super) state_version: Option<u64>,
    /// The checksums of that batch's state files, as its commit recorded them (none in
    /// checkpoints written before checksums).
    pub(super) state_checksums: BTreeMap<String, String>,
}

/// Computes where the query starts after `recovery`, checking the checkpoint was written for
/// these sources, telling the sources what is committed and setting the `tracker`'s
/// watermarks. `label` names the query in logs.
pub(super) async fn recover(
    recovery: Recovery,
    checkpoint: &Checkpoint,
    sources: &mut [(String, Box<dyn Source>)],
    tracker: &mut WatermarkTracker,
    label: &str,
) -> Result<Start> {
    let mut committed = BTreeMap::new();
    match recovery {
        Recovery::New => {
            for (name, source) in sources.iter_mut() {
                let start = match checkpoint.source_start(name).await? {
                    Some(offset) => offset,
                    None => {
                        let offset = source.initial_offset().await?;
                        checkpoint.write_source_start(name, &offset).await?;
                        offset
                    }
                };
                committed.insert(name.clone(), start);
            }
            Ok(Start {
                committed,
                next_batch_id: 0,
                pending: None,
                state_version: None,
                state_checksums: BTreeMap::new(),
            })
        }
        Recovery::Resume { last, commit } => {
            check_sources(&last, sources, checkpoint.display())?;
            for (name, source) in sources.iter_mut() {
                let end = last.sources[name.as_str()].end.clone();
                source.commit(&end).await?;
                committed.insert(name.clone(), end);
            }
            tracker.restore(commit.next_batch_watermark_ms, last.batch_watermark_ms);
            tracing::info!(query = %label, batch = last.batch_id, "resuming after the last committed batch");
            Ok(Start {
                committed,
                next_batch_id: last.batch_id + 1,
                pending: None,
                state_version: Some(last.batch_id),
                state_checksums: commit.state_checksums,
            })
        }
        Recovery::Rerun(entry) => {
            check_sources(&entry, sources, checkpoint.display())?;
            for (name, range) in &entry.sources {
                committed.insert(name.clone(), range.start.clone());
            }
            let previous = entry.batch_id.checked_sub(1);
            let (previous_watermark, state_checksums) = match previous {
                Some(previous) => {
                    let missing = |what: &str| {
                        SluiceError::checkpoint(
                            checkpoint.display(),
                            format!("{what}/{previous} is missing"),
                        )
                    };
                    let logged = checkpoint
                        .offsets(previous)
                        .await?
                        .ok_or_else(|| missing("offsets"))?;
                    let commit = checkpoint
                        .commit(previous)
                        .await?
                        .ok_or_else(|| missing("commits"))?;
                    (logged.batch_watermark_ms, commit.state_checksums)
                }
                None => (0, BTreeMap::new()),
            };
            tracker.restore(entry.batch_watermark_ms, previous_watermark);
            let attempts = checkpoint.record_rerun(entry.batch_id).await?;
            let input: Vec<String> = entry
                .sources
                .iter()
                .map(|(name, range)| format!("{name} from {} to {}", range.start, range.end))
                .collect();
            if attempts > 2 {
                // The last line of defence against a poison pill the limits did not catch:
                // say where the input is, rather than fail at the same place unnoticed.
                tracing::error!(
                    query = %label, batch = entry.batch_id, attempts,
                    input = %input.join("; "),
                    "this batch did not commit in its earlier runs: if it fails again, something \
                     in this input may be stopping the process"
                );
            } else {
                tracing::info!(query = %label, batch = entry.batch_id, input = %input.join("; "), "re-running the uncommitted batch with its logged offsets");
            }
            Ok(Start {
                committed,
                next_batch_id: entry.batch_id,
                pending: Some(entry),
                state_version: previous,
                state_checksums,
            })
        }
    }
}

/// Checks that `entry` (from the checkpoint at `checkpoint`) was written for `sources`.
fn check_sources(
    entry: &OffsetEntry,
    sources: &[(String, Box<dyn Source>)],
    checkpoint: &str,
) -> Result<()> {
    let logged: Vec<&String> = entry.sources.keys().collect();
    let mut ours: Vec<&String> = sources.iter().map(|(n, _)| n).collect();
    ours.sort();
    if logged != ours {
        return Err(SluiceError::checkpoint(
            checkpoint,
            format!(
                "was written for sources {logged:?} but the query reads {ours:?}; \
                 use a new checkpoint location to change a query's sources"
            ),
        ));
    }
    Ok(())
}

/// Loads each of `operators`' state as of committed batch `version`: every unit the commit
/// lists for it (its partitions, however many wrote them, or the whole state of a checkpoint
/// written before partitions), checking each file is the one the commit recorded (`expected`,
/// by unit; a commit written before checksums is not checked).
pub(super) async fn restore_state(
    checkpoint: &Checkpoint,
    operators: Vec<&mut dyn StatefulOperator>,
    version: u64,
    expected: &BTreeMap<String, String>,
) -> Result<()> {
    for operator in operators {
        let mut parts = Vec::new();
        for unit in stored_units(operator.state_name(), expected) {
            let (bytes, location) = match checkpoint.read_state(&unit, version).await? {
                (Some(bytes), location) => (bytes, location),
                (None, location) => {
                    return Err(SluiceError::checkpoint(
                        location,
                        "missing: the checkpoint has no state for its last committed batch",
                    ));
                }
            };
            let actual = checksum(&bytes);
            if let Some(committed) = expected.get(&unit)
                && *committed != actual
            {
                return Err(SluiceError::checkpoint(
                    location,
                    format!(
                        "is not the state committed with batch {version} (checksum {actual}, \
                         committed {committed}): the file was damaged or replaced by another \
                         version; restore the checkpoint from a backup, or start over with a new \
                         checkpoint location"
                    ),
                ));
            }
            parts.push(StoredState { bytes, location });
        }
        operator.restore_state(parts)?;
    }
    Ok(())
}
