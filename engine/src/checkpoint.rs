//! The checkpoint: a write-ahead offset log, a commit log and the query's identity, stored in
//! any object store, laid out as Spark's (`docs/semantics.md` §1.5).
//!
//! ```text
//! <checkpoint>/metadata          {"id":"<query uuid>"}, stable across restarts
//! <checkpoint>/sources/<name>    where a brand-new query started reading that source
//! <checkpoint>/offsets/<N>       v2, JSON, checksum: batch N's offsets, watermark and
//!                                timestamp, written before the batch runs
//! <checkpoint>/commits/<N>       v2, JSON, checksum: written once the sink has the batch, with
//!                                the checksum of each operator's state as of batch N
//! <checkpoint>/state/<operator>/<partition>/<N>.arrow
//!                                a stateful operator's state partition as of batch N
//! <checkpoint>/attempts/<N>      how many runs batch N has had without committing (only while
//!                                a logged batch is run again after a restart)
//! ```
//!
//! Every file is written with one atomic `put`, and offset and commit entries are created,
//! never overwritten: finding one already there means another query runs on this checkpoint.
//! The recovery decision and the retention rule are plain functions ([`plan_recovery`],
//! [`ids_to_purge`]), tested without any store.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::{Result, SluiceError};
use crate::location::Location;
use crate::offset::Offset;

/// Version line heading offset and commit entries: `v2` entries end with a checksum line.
const VERSION: &str = "v2";

/// The version of entries written before checksums, still read.
const VERSION_WITHOUT_CHECKSUM: &str = "v1";

/// The CRC-32 of `bytes`, as entries and commits write it (8 hex digits).
pub fn checksum(bytes: &[u8]) -> String {
    format!("{:08x}", crc32fast::hash(bytes))
}

/// An offset or commit entry: it names its batch, which must be the one of its file.
pub trait Entry {
    /// The batch the entry is about.
    fn batch_id(&self) -> u64;
}

impl Entry for OffsetEntry {
    fn batch_id(&self) -> u64 {
        self.batch_id
    }
}

impl Entry for CommitEntry {
    fn batch_id(&self) -> u64 {
        self.batch_id
    }
}

/// Offset and commit entries kept by default (Spark's `minBatchesToRetain`).
pub const DEFAULT_RETAINED_BATCHES: u64 = 100;

/// The query's identity, written once when the checkpoint is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryMetadata {
    /// The query id (a UUID), the same across restarts.
    pub id: String,
}

/// Where one source's data for a batch starts and ends: the batch reads `(start, end]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRange {
    /// End offset of the previous batch.
    pub start: Offset,
    /// End offset of this batch.
    pub end: Offset,
}

/// `offsets/<N>`: everything needed to re-run batch N exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OffsetEntry {
    /// The batch id N.
    pub batch_id: u64,
    /// The event-time watermark in force during the batch (ms since the epoch).
    pub batch_watermark_ms: i64,
    /// The batch's processing time: what `now()` returns inside it (ms since the epoch).
    pub batch_timestamp_ms: i64,
    /// Each source's range, by the name it is registered under.
    pub sources: BTreeMap<String, SourceRange>,
}

/// `commits/<N>`: batch N reached the sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitEntry {
    /// The batch id N.
    pub batch_id: u64,
    /// The watermark the next batch runs with.
    pub next_batch_watermark_ms: i64,
    /// Each stateful operator's state files as of this batch, by unit (`<operator>/<partition>`,
    /// the file `state/<operator>/<partition>/N.arrow`; `<operator>` alone for state written
    /// before partitions, `state/<operator>/N.arrow`), with its checksum: a restart refuses a
    /// state file that is not the one committed (damaged, or an older version copied over it),
    /// and restores exactly the partitions listed. Absent in entries written before checksums.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub state_checksums: BTreeMap<String, String>,
}

/// What a starting query does, given the newest offset and commit entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// No batch was ever planned: start from the sources' initial offsets.
    New,
    /// The newest batch is committed: continue after it.
    Resume {
        /// The newest (committed) batch.
        last: OffsetEntry,
        /// Its commit.
        commit: CommitEntry,
    },
    /// The newest batch was planned but not committed: run it again with the same offsets,
    /// watermark and timestamp.
    Rerun(OffsetEntry),
}

/// The unit of state of partition `partition` of operator `operator`: its directory under
/// `state/`, and its key in [`CommitEntry::state_checksums`].
pub fn state_unit(operator: &str, partition: usize) -> String {
    format!("{operator}/{partition}")
}

/// The units of operator `operator`'s state that commit `checksums` lists: its partitions
/// (`<operator>/<n>`, in partition order) or, for state written before partitions, the
/// operator itself. When the commit lists none (it predates checksums, or the operator),
/// the operator alone, the only layout such a commit can have.
pub fn stored_units(operator: &str, checksums: &BTreeMap<String, String>) -> Vec<String> {
    let mut partitions: Vec<(usize, &String)> = checksums
        .keys()
        .filter_map(|unit| {
            let partition = unit
                .strip_prefix(operator)?
                .strip_prefix('/')?
                .parse()
                .ok()?;
            Some((partition, unit))
        })
        .collect();
    partitions.sort();
    if partitions.is_empty() {
        return vec![operator.to_string()];
    }
    partitions
        .into_iter()
        .map(|(_, unit)| unit.clone())
        .collect()
}

/// Decides how to recover (Spark's `MicroBatchExecution.populateStartOffsets`).
pub fn plan_recovery(
    offsets: Option<OffsetEntry>,
    commit: Option<CommitEntry>,
) -> Result<Recovery> {
    let inconsistent =
        |message: String| Err(SluiceError::checkpoint("offsets/ and commits/", message));
    match (offsets, commit) {
        (None, None) => Ok(Recovery::New),
        (None, Some(commit)) => inconsistent(format!(
            "commit {} exists without any offset entry",
            commit.batch_id
        )),
        (Some(last), Some(commit)) if commit.batch_id == last.batch_id => {
            Ok(Recovery::Resume { last, commit })
        }
        (Some(entry), commit) => {
            let expected_previous = entry.batch_id.checked_sub(1);
            match commit.map(|c| c.batch_id) {
                previous if previous == expected_previous => Ok(Recovery::Rerun(entry)),
                Some(c) if c > entry.batch_id => inconsistent(format!(
                    "commit {c} is newer than the newest offsets entry {}",
                    entry.batch_id
                )),
                previous => inconsistent(format!(
                    "offsets entry {} follows commit {:?}: batches in between were lost",
                    entry.batch_id, previous
                )),
            }
        }
    }
}

/// The batch ids to delete so that only the newest `retain` remain (and never the newest).
pub fn ids_to_purge(ids: &[u64], latest: u64, retain: u64) -> Vec<u64> {
    let keep_from = latest.saturating_sub(retain.max(1) - 1);
    ids.iter().copied().filter(|&id| id < keep_from).collect()
}

/// Serializes an entry: the version line, one line of JSON, and the JSON line's checksum.
pub fn encode_entry<T: Serialize>(entry: &T) -> Result<String> {
    let json = serde_json::to_string(entry)
        .map_err(|e| SluiceError::checkpoint("entry", format!("cannot serialize: {e}")))?;
    Ok(format!(
        "{VERSION}\n{json}\n{}\n",
        checksum(json.as_bytes())
    ))
}

/// Parses an entry written by [`encode_entry`] (or a `v1` entry, which has no checksum);
/// `location` names it in errors. A checksum that does not match is an error: the entry was
/// changed or damaged, and trusting it could run batches again or skip them.
pub fn decode_entry<T: DeserializeOwned>(text: &str, location: &str) -> Result<T> {
    let mut lines = text.split('\n');
    let (version, json) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    match version {
        VERSION => {
            let stored = lines.next().unwrap_or("");
            let actual = checksum(json.as_bytes());
            if stored != actual {
                return Err(SluiceError::checkpoint(
                    location,
                    format!(
                        "checksum mismatch (stored '{stored}', content {actual}): the entry was \
                         changed or damaged; restore the checkpoint from a backup, or start \
                         over with a new checkpoint location"
                    ),
                ));
            }
        }
        VERSION_WITHOUT_CHECKSUM => {}
        _ => {
            return Err(SluiceError::checkpoint(
                location,
                format!(
                    "unsupported format version '{version}' (this Sluice reads \
                     {VERSION_WITHOUT_CHECKSUM} and {VERSION})"
                ),
            ));
        }
    }
    serde_json::from_str(json)
        .map_err(|e| SluiceError::checkpoint(location, format!("corrupt entry: {e}")))
}

/// Decodes entry `text` of file `<dir>/<id>` and checks it is about batch `id`.
fn decode_named_entry<T: DeserializeOwned + Entry>(
    text: &str,
    id: u64,
    location: &str,
) -> Result<T> {
    let entry: T = decode_entry(text, location)?;
    if entry.batch_id() != id {
        return Err(SluiceError::checkpoint(
            location,
            format!(
                "holds batch {} but is the entry of batch {id}: the file was renamed, copied or \
                 edited; restore the checkpoint from a backup, or start over with a new \
                 checkpoint location",
                entry.batch_id()
            ),
        ));
    }
    Ok(entry)
}

/// A checkpoint location and its retention policy.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    location: Location,
    retain: u64,
}

impl Checkpoint {
    /// Opens (without touching it yet) the checkpoint at `location`, a directory or URL.
    pub fn open(location: &str) -> Result<Self> {
        Ok(Self {
            location: Location::parse(location)?,
            retain: DEFAULT_RETAINED_BATCHES,
        })
    }

    /// Keeps the newest `batches` offset and commit entries (at least 2: a re-run batch
    /// needs its predecessor's watermark and state).
    pub fn with_retained_batches(mut self, batches: u64) -> Self {
        self.retain = batches.max(2);
        self
    }

    /// The checkpoint as the user named it.
    pub fn display(&self) -> &str {
        &self.location.display
    }

    /// Writes the state of stateful operator `operator` after batch `version` (an Arrow IPC
    /// file); a re-run batch overwrites it with the same content.
    pub async fn write_state(&self, operator: &str, version: u64, bytes: Vec<u8>) -> Result<()> {
        let path = self
            .location
            .child(&format!("state/{operator}/{version}.arrow"));
        self.location
            .store
            .put(&path, PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// Records that the state of operator `operator` did not change in batch `version`:
    /// version `version - 1` is copied over (a hard link on a local disk, a server-side copy
    /// on object stores) instead of writing the same bytes again.
    pub async fn carry_state(&self, operator: &str, version: u64) -> Result<()> {
        let Some(previous) = version.checked_sub(1) else {
            return Err(SluiceError::checkpoint(
                self.display(),
                "batch 0 has no previous state to carry over",
            ));
        };
        let path = |version: u64| {
            self.location
                .child(&format!("state/{operator}/{version}.arrow"))
        };
        self.location
            .store
            .copy(&path(previous), &path(version))
            .await?;
        Ok(())
    }

    /// Reads the state of operator `operator` as of batch `version`, with its location for
    /// error messages.
    pub async fn read_state(
        &self,
        operator: &str,
        version: u64,
    ) -> Result<(Option<Vec<u8>>, String)> {
        let name = format!("state/{operator}/{version}.arrow");
        let location = self.name(&name);
        match self.location.store.get(&self.location.child(&name)).await {
            Ok(result) => Ok((Some(result.bytes().await?.to_vec()), location)),
            Err(object_store::Error::NotFound { .. }) => Ok((None, location)),
            Err(e) => Err(e.into()),
        }
    }

    /// Offset entry `batch_id`, if still retained.
    pub async fn offsets(&self, batch_id: u64) -> Result<Option<OffsetEntry>> {
        self.entry("offsets", batch_id).await
    }

    /// Commit entry `batch_id`, if still retained.
    pub async fn commit(&self, batch_id: u64) -> Result<Option<CommitEntry>> {
        self.entry("commits", batch_id).await
    }

    async fn entry<T: DeserializeOwned + Entry>(&self, dir: &str, id: u64) -> Result<Option<T>> {
        let name = format!("{dir}/{id}");
        match self.read(&name).await? {
            Some(text) => decode_named_entry(&text, id, &self.name(&name)).map(Some),
            None => Ok(None),
        }
    }

    /// Reads `metadata`, creating it with a fresh query id the first time.
    pub async fn metadata(&self) -> Result<QueryMetadata> {
        if let Some(metadata) = self.read_json::<QueryMetadata>("metadata").await? {
            return Ok(metadata);
        }
        let metadata = QueryMetadata {
            id: uuid::Uuid::new_v4().to_string(),
        };
        match self
            .create(
                "metadata",
                serde_json::to_string(&metadata).unwrap_or_default(),
            )
            .await
        {
            Ok(()) => Ok(metadata),
            // Another process created it first: use theirs.
            Err(SluiceError::ObjectStore(object_store::Error::AlreadyExists { .. })) => self
                .read_json("metadata")
                .await?
                .ok_or_else(|| SluiceError::checkpoint(self.display(), "metadata vanished")),
            Err(e) => Err(e),
        }
    }

    /// Where a brand-new query started reading source `name`, if recorded.
    pub async fn source_start(&self, name: &str) -> Result<Option<Offset>> {
        self.read_json(&format!("sources/{name}")).await
    }

    /// Records where a brand-new query starts reading source `name`.
    pub async fn write_source_start(&self, name: &str, offset: &Offset) -> Result<()> {
        let json = serde_json::to_string(offset).unwrap_or_default();
        match self.create(&format!("sources/{name}"), json).await {
            Err(SluiceError::ObjectStore(object_store::Error::AlreadyExists { .. })) => {
                Err(self.concurrent(&format!("sources/{name}")))
            }
            other => other,
        }
    }

    /// The newest offset entry.
    pub async fn latest_offsets(&self) -> Result<Option<OffsetEntry>> {
        self.latest_entry("offsets").await
    }

    /// The newest commit entry.
    pub async fn latest_commit(&self) -> Result<Option<CommitEntry>> {
        self.latest_entry("commits").await
    }

    /// Writes `offsets/<N>` ahead of running batch N.
    pub async fn write_offsets(&self, entry: &OffsetEntry) -> Result<()> {
        self.create_entry("offsets", entry.batch_id, entry).await
    }

    /// Writes `commits/<N>` once batch N is in the sink.
    pub async fn write_commit(&self, entry: &CommitEntry) -> Result<()> {
        self.create_entry("commits", entry.batch_id, entry).await
    }

    /// Deletes the one offset entry, commit entry and state version of each of `operators`
    /// that batch `latest` pushes out of the retention window, without listing anything: the
    /// per-batch path once [`Self::purge`] has swept older leftovers at start.
    pub async fn purge_expired(&self, latest: u64, operators: &[String]) -> Result<()> {
        let Some(expired) = latest.checked_sub(self.retain) else {
            return Ok(());
        };
        let names = ["commits", "offsets"]
            .iter()
            .map(|dir| format!("{dir}/{expired}"))
            .chain(
                operators
                    .iter()
                    .map(|op| format!("state/{op}/{expired}.arrow")),
            );
        // Independent deletes, issued together: one round trip instead of one per file.
        futures::future::try_join_all(names.map(|name| async move {
            match self
                .location
                .store
                .delete(&self.location.child(&name))
                .await
            {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(SluiceError::from(e)),
            }
        }))
        .await?;
        Ok(())
    }

    /// Records one more run of batch `batch_id` that an earlier run logged but did not commit,
    /// and returns how many there have been, this one included (`attempts/<N>`).
    pub async fn record_rerun(&self, batch_id: u64) -> Result<u64> {
        let name = format!("attempts/{batch_id}");
        let before = match self.read(&name).await? {
            Some(text) => text.trim().parse::<u64>().unwrap_or(1),
            None => 1,
        };
        let attempts = before + 1;
        self.location
            .store
            .put(
                &self.location.child(&name),
                PutPayload::from(attempts.to_string()),
            )
            .await?;
        Ok(attempts)
    }

    /// Forgets the attempts at batch `batch_id`, once it is committed.
    pub async fn clear_reruns(&self, batch_id: u64) -> Result<()> {
        let path = self.location.child(&format!("attempts/{batch_id}"));
        match self.location.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes offset and commit entries and state versions older than the retention allows.
    pub async fn purge(&self, latest: u64) -> Result<()> {
        for (dir, suffix) in [
            ("commits", ""),
            ("offsets", ""),
            ("state", ".arrow"),
            ("attempts", ""),
        ] {
            let versions = self.versions(dir, suffix).await?;
            let ids: Vec<u64> = versions.iter().map(|(id, _)| *id).collect();
            let expired = ids_to_purge(&ids, latest, self.retain);
            for (id, path) in versions {
                if expired.contains(&id) {
                    self.location.store.delete(&path).await?;
                }
            }
        }
        Ok(())
    }

    async fn create_entry<T: Serialize>(&self, dir: &str, batch_id: u64, entry: &T) -> Result<()> {
        let name = format!("{dir}/{batch_id}");
        match self.create(&name, encode_entry(entry)?).await {
            Err(SluiceError::ObjectStore(object_store::Error::AlreadyExists { .. })) => {
                Err(self.concurrent(&name))
            }
            other => other,
        }
    }

    fn concurrent(&self, name: &str) -> SluiceError {
        SluiceError::checkpoint(
            format!("{}/{name}", self.display()),
            "already exists: another query is running with this checkpoint",
        )
    }

    async fn create(&self, name: &str, text: String) -> Result<()> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.location
            .store
            .put_opts(&self.location.child(name), PutPayload::from(text), options)
            .await?;
        Ok(())
    }

    async fn read(&self, name: &str) -> Result<Option<String>> {
        match self.location.store.get(&self.location.child(name)).await {
            Ok(result) => {
                let bytes = result.bytes().await?;
                String::from_utf8(bytes.to_vec())
                    .map(Some)
                    .map_err(|_| SluiceError::checkpoint(self.name(name), "not UTF-8"))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn read_json<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        let Some(text) = self.read(name).await? else {
            return Ok(None);
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| SluiceError::checkpoint(self.name(name), format!("corrupt: {e}")))
    }

    async fn entry_ids(&self, dir: &str) -> Result<Vec<u64>> {
        let mut ids: Vec<u64> = self
            .versions(dir, "")
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Every file under `dir` (recursively) named `<number><suffix>`, with its number.
    async fn versions(&self, dir: &str, suffix: &str) -> Result<Vec<(u64, Path)>> {
        let prefix = self.location.child(dir);
        let objects: Vec<_> = self
            .location
            .store
            .list(Some(&prefix))
            .try_collect()
            .await?;
        Ok(objects
            .into_iter()
            .filter_map(|meta| {
                let id = meta
                    .location
                    .filename()?
                    .strip_suffix(suffix)?
                    .parse()
                    .ok()?;
                Some((id, meta.location))
            })
            .collect())
    }

    async fn latest_entry<T: DeserializeOwned + Entry>(&self, dir: &str) -> Result<Option<T>> {
        let Some(id) = self.entry_ids(dir).await?.pop() else {
            return Ok(None);
        };
        let name = format!("{dir}/{id}");
        let text = self
            .read(&name)
            .await?
            .ok_or_else(|| SluiceError::checkpoint(self.name(&name), "vanished while reading"))?;
        decode_named_entry(&text, id, &self.name(&name)).map(Some)
    }

    fn name(&self, name: &str) -> String {
        format!("{}/{name}", self.display())
    }
}
