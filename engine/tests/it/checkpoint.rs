//! The checkpoint's persisted format (pinned), its recovery decision and its retention rule.

use std::collections::BTreeMap;

use serde_json::json;
use sluice_engine::Offset;
use sluice_engine::internals::{
    Checkpoint, CommitEntry, OffsetEntry, Recovery, SourceRange, decode_entry, encode_entry,
    ids_to_purge, plan_recovery,
};

fn entry(batch_id: u64) -> OffsetEntry {
    OffsetEntry {
        batch_id,
        batch_watermark_ms: 1_700_000_000_000,
        batch_timestamp_ms: 1_700_000_012_345,
        sources: BTreeMap::from([(
            "ticks".to_string(),
            SourceRange {
                start: Offset::new(json!({"rows": 10})),
                end: Offset::new(json!({"rows": 20})),
            },
        )]),
    }
}

fn commit(batch_id: u64) -> CommitEntry {
    CommitEntry {
        batch_id,
        next_batch_watermark_ms: 1_700_000_005_000,
        state_checksums: BTreeMap::new(),
    }
}

#[test]
fn offset_entry_format_is_pinned() {
    let text = encode_entry(&entry(7)).unwrap();
    assert_eq!(
        text,
        "v2\n{\"batchId\":7,\"batchWatermarkMs\":1700000000000,\"batchTimestampMs\":1700000012345,\
         \"sources\":{\"ticks\":{\"start\":{\"rows\":10},\"end\":{\"rows\":20}}}}\nbd33c805\n"
    );
    assert_eq!(
        decode_entry::<OffsetEntry>(&text, "offsets/7").unwrap(),
        entry(7)
    );
}

#[test]
fn commit_entry_format_is_pinned() {
    let text = encode_entry(&commit(7)).unwrap();
    assert_eq!(
        text,
        "v2\n{\"batchId\":7,\"nextBatchWatermarkMs\":1700000005000}\n558df514\n"
    );
    assert_eq!(
        decode_entry::<CommitEntry>(&text, "commits/7").unwrap(),
        commit(7)
    );
}

#[test]
fn entries_without_checksum_still_read_and_a_changed_entry_is_refused() {
    // Entries of checkpoints written before checksums (v1) are read as they are.
    let old = "v1\n{\"batchId\":7,\"nextBatchWatermarkMs\":1700000005000}\n";
    assert_eq!(
        decode_entry::<CommitEntry>(old, "commits/7").unwrap(),
        commit(7)
    );
    // One changed digit is caught.
    let text = encode_entry(&entry(7))
        .unwrap()
        .replace("\"rows\":20", "\"rows\":29");
    let error = decode_entry::<OffsetEntry>(&text, "ckpt/offsets/7")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("ckpt/offsets/7") && error.contains("checksum mismatch"),
        "{error}"
    );
    // Commits record their state's checksums, and keep them through a round trip.
    let mut with_state = commit(7);
    with_state
        .state_checksums
        .insert("0".into(), "0123abcd".into());
    let text = encode_entry(&with_state).unwrap();
    assert!(
        text.contains("\"stateChecksums\":{\"0\":\"0123abcd\"}"),
        "{text}"
    );
    assert_eq!(
        decode_entry::<CommitEntry>(&text, "commits/7").unwrap(),
        with_state
    );
}

#[test]
fn unknown_version_and_garbage_are_clear_errors() {
    let error = decode_entry::<CommitEntry>("v9\n{}", "ckpt/commits/3")
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("ckpt/commits/3") && error.contains("v9"),
        "{error}"
    );
    let error = decode_entry::<CommitEntry>("v1\n{not json", "ckpt/commits/3")
        .unwrap_err()
        .to_string();
    assert!(error.contains("corrupt entry"), "{error}");
}

#[test]
fn recovery_decisions() {
    assert_eq!(plan_recovery(None, None).unwrap(), Recovery::New);
    assert_eq!(
        plan_recovery(Some(entry(4)), Some(commit(4))).unwrap(),
        Recovery::Resume {
            last: entry(4),
            commit: commit(4)
        }
    );
    assert_eq!(
        plan_recovery(Some(entry(5)), Some(commit(4))).unwrap(),
        Recovery::Rerun(entry(5))
    );
    assert_eq!(
        plan_recovery(Some(entry(0)), None).unwrap(),
        Recovery::Rerun(entry(0))
    );
    for (offsets, commits) in [
        (None, Some(commit(0))),
        (Some(entry(6)), Some(commit(4))),
        (Some(entry(3)), Some(commit(4))),
        (Some(entry(3)), None),
    ] {
        let error = plan_recovery(offsets.clone(), commits.clone())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("checkpoint"),
            "{offsets:?} {commits:?}: {error}"
        );
    }
}

#[test]
fn retention_keeps_the_newest_entries() {
    let ids: Vec<u64> = (0..10).collect();
    assert_eq!(ids_to_purge(&ids, 9, 3), vec![0, 1, 2, 3, 4, 5, 6]);
    assert_eq!(ids_to_purge(&ids, 9, 100), Vec::<u64>::new());
    assert_eq!(
        ids_to_purge(&ids, 9, 0),
        (0..9).collect::<Vec<_>>(),
        "the newest is always kept"
    );
}

#[tokio::test]
async fn checkpoint_files_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = Checkpoint::open(dir.path().to_str().unwrap())
        .unwrap()
        .with_retained_batches(2);
    let id = checkpoint.metadata().await.unwrap().id;
    assert_eq!(
        checkpoint.metadata().await.unwrap().id,
        id,
        "the id is stable"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("metadata")).unwrap(),
        format!("{{\"id\":\"{id}\"}}")
    );
    for batch in 0..4 {
        checkpoint.write_offsets(&entry(batch)).await.unwrap();
        checkpoint.write_commit(&commit(batch)).await.unwrap();
        checkpoint.purge(batch).await.unwrap();
    }
    let offsets = file_names(&dir.path().join("offsets"));
    assert_eq!(offsets, ["2", "3"]);
    // Later batches drop exactly the entry leaving the window, without listing.
    for batch in 4..6 {
        checkpoint.write_offsets(&entry(batch)).await.unwrap();
        checkpoint.write_commit(&commit(batch)).await.unwrap();
        checkpoint.purge_expired(batch, &[]).await.unwrap();
    }
    let commits = file_names(&dir.path().join("commits"));
    assert_eq!(commits, ["4", "5"]);
    assert_eq!(checkpoint.latest_offsets().await.unwrap(), Some(entry(5)));
    assert_eq!(checkpoint.latest_commit().await.unwrap(), Some(commit(5)));

    // An entry whose content is another batch's is refused, naming the file.
    std::fs::copy(dir.path().join("offsets/4"), dir.path().join("offsets/5")).unwrap();
    let error = checkpoint.latest_offsets().await.unwrap_err().to_string();
    assert!(
        error.contains("offsets/5") && error.contains("holds batch 4"),
        "{error}"
    );
    std::fs::remove_file(dir.path().join("offsets/5")).unwrap();
    checkpoint.write_offsets(&entry(5)).await.unwrap();

    // An entry is never overwritten: a second writer is detected.
    let error = checkpoint
        .write_offsets(&entry(5))
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("another query is running"), "{error}");
}

#[test]
fn locations_resolve_to_their_stores() {
    use sluice_engine::internals::Location;
    let memory = Location::parse("memory:///ckpt").unwrap();
    assert_eq!(memory.prefix.as_ref(), "ckpt");
    let s3 = Location::parse("s3://bucket/checkpoints/q1").unwrap();
    assert_eq!(s3.prefix.as_ref(), "checkpoints/q1");
    assert!(s3.store.to_string().contains("bucket"), "{}", s3.store);
    let error = Location::parse("gopher://x/y").unwrap_err().to_string();
    assert!(error.contains("unsupported location"), "{error}");
}

/// The sorted names of the files in `dir`.
fn file_names(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}
