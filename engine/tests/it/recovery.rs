//! Exactly-once across crashes: a query stopped after each step of the loop (after
//! `offsets/N`, after the sink wrote batch N, after `commits/N`) and restarted produces, batch
//! for batch, the files of an uninterrupted run.

use std::collections::BTreeMap;
use std::path::Path;

use sluice_engine::{
    FileFormat, FileSink, FileSource, JsonOptions, MicroBatchExecution, Sink, StreamingQueryBuilder,
};
use sluice_testkit::{Crash, CrashingSink};

use crate::common::{ticker, ticker_schema, write_lines};

struct Dirs {
    _root: tempfile::TempDir,
    input: String,
    output: String,
    checkpoint: String,
}

fn dirs() -> Dirs {
    let root = tempfile::tempdir().unwrap();
    let path = |name: &str| root.path().join(name).to_str().unwrap().to_string();
    let dirs = Dirs {
        input: path("in"),
        output: path("out"),
        checkpoint: path("checkpoint"),
        _root: root,
    };
    std::fs::create_dir_all(&dirs.input).unwrap();
    for i in 0..5 {
        add_file(&dirs, i);
    }
    dirs
}

fn add_file(dirs: &Dirs, i: i64) {
    let lines: Vec<String> = (0..3)
        .map(|k| ticker(&format!("S{k}"), (i * 10 + k) as f64, i))
        .collect();
    write_lines(Path::new(&dirs.input), &format!("f{i:02}.jsonl"), &lines);
}

async fn execution(dirs: &Dirs, sink: impl Sink) -> sluice_engine::Result<MicroBatchExecution> {
    let source = FileSource::new(
        "ticks",
        &dirs.input,
        ticker_schema(),
        JsonOptions::default(),
    )?
    .with_max_files_per_trigger(2);
    StreamingQueryBuilder::new()
        .source("ticks", source)
        .sql("SELECT symbol, close_price, timestamp FROM ticks")
        .sink(sink)
        .checkpoint_location(&dirs.checkpoint)
        .build()
        .await
}

async fn drain(execution: &mut MicroBatchExecution) {
    while execution.run_trigger().await.unwrap() {}
}

/// The sink's files: name → content.
/// Each output file's lines, sorted: the order of rows within a batch is unspecified.
fn output(dirs: &Dirs) -> BTreeMap<String, String> {
    std::fs::read_dir(&dirs.output)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let text = std::fs::read_to_string(e.path()).unwrap();
            let mut lines: Vec<&str> = text.lines().collect();
            lines.sort_unstable();
            (e.file_name().into_string().unwrap(), lines.join("\n"))
        })
        .collect()
}

fn file_sink(dirs: &Dirs) -> FileSink {
    FileSink::new(&dirs.output, FileFormat::JsonLines).unwrap()
}

/// Batches [f0 f1] [f2 f3] [f4], then f5 arrives: [f5].
async fn uninterrupted() -> BTreeMap<String, String> {
    let dirs = dirs();
    let mut execution = execution(&dirs, file_sink(&dirs)).await.unwrap();
    drain(&mut execution).await;
    add_file(&dirs, 5);
    drain(&mut execution).await;
    output(&dirs)
}

async fn crash_and_restart(crash: Crash) -> (BTreeMap<String, String>, Dirs) {
    let dirs = dirs();
    let sink = CrashingSink::new(file_sink(&dirs), 2, crash);
    let mut doomed = execution(&dirs, sink).await.unwrap();
    assert!(doomed.run_trigger().await.unwrap());
    assert!(doomed.run_trigger().await.unwrap());
    let error = doomed.run_trigger().await.unwrap_err();
    assert!(error.to_string().contains("simulated crash"));
    drop(doomed);
    assert!(Path::new(&dirs.checkpoint).join("offsets/2").exists());
    assert!(!Path::new(&dirs.checkpoint).join("commits/2").exists());

    // More data arrives while the query is down; the re-run batch must not take it.
    add_file(&dirs, 5);
    let mut restarted = execution(&dirs, file_sink(&dirs)).await.unwrap();
    assert_eq!(restarted.next_batch_id(), 2);
    drain(&mut restarted).await;
    (output(&dirs), dirs)
}

#[tokio::test]
async fn a_batch_that_keeps_failing_counts_its_runs_until_it_commits() {
    let dirs = dirs();
    let attempts = Path::new(&dirs.checkpoint).join("attempts/1");
    let mut first = execution(
        &dirs,
        CrashingSink::new(file_sink(&dirs), 1, Crash::BeforeSink),
    )
    .await
    .unwrap();
    assert!(first.run_trigger().await.unwrap());
    assert!(first.run_trigger().await.is_err());
    drop(first);
    assert!(!attempts.exists(), "a first run is not a re-run");
    // Each restart that runs the logged batch again counts one more run of it.
    for runs in 2..=3 {
        let mut again = execution(
            &dirs,
            CrashingSink::new(file_sink(&dirs), 1, Crash::BeforeSink),
        )
        .await
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(&attempts).unwrap(),
            runs.to_string()
        );
        assert!(again.run_trigger().await.is_err());
    }
    // Once it commits, its runs are forgotten.
    let mut fixed = execution(&dirs, file_sink(&dirs)).await.unwrap();
    assert!(fixed.run_trigger().await.unwrap());
    assert!(!attempts.exists());
    drain(&mut fixed).await;
}

#[tokio::test]
async fn crash_after_offsets_before_sink() {
    let expected = uninterrupted().await;
    assert_eq!(expected.len(), 4);
    let (actual, _dirs) = crash_and_restart(Crash::BeforeSink).await;
    assert_eq!(actual, expected);
}

#[tokio::test]
async fn crash_after_sink_before_commit() {
    let expected = uninterrupted().await;
    let (actual, _dirs) = crash_and_restart(Crash::AfterSink).await;
    assert_eq!(actual, expected);
}

#[tokio::test]
async fn stop_after_commit_resumes_with_the_next_batch() {
    let expected = uninterrupted().await;
    let dirs = dirs();
    let mut first = execution(&dirs, file_sink(&dirs)).await.unwrap();
    let query_id = first.id().to_string();
    for _ in 0..3 {
        assert!(first.run_trigger().await.unwrap());
    }
    drop(first);
    add_file(&dirs, 5);
    let mut second = execution(&dirs, file_sink(&dirs)).await.unwrap();
    assert_eq!(second.id(), query_id, "the query id survives restarts");
    assert_eq!(second.next_batch_id(), 3);
    drain(&mut second).await;
    assert_eq!(output(&dirs), expected);
}

#[tokio::test]
async fn a_checkpoint_of_other_sources_is_refused() {
    let dirs = dirs();
    let mut first = execution(&dirs, file_sink(&dirs)).await.unwrap();
    assert!(first.run_trigger().await.unwrap());
    drop(first);
    let error = StreamingQueryBuilder::new()
        .source(
            "other",
            FileSource::new(
                "other",
                &dirs.input,
                ticker_schema(),
                JsonOptions::default(),
            )
            .unwrap(),
        )
        .sql("SELECT * FROM other")
        .sink(file_sink(&dirs))
        .checkpoint_location(&dirs.checkpoint)
        .build()
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("was written for sources [\"ticks\"]"),
        "{error}"
    );
}

/// A windowed aggregation with a watermark, in update mode: its state and watermark must
/// survive a crash at any step of any batch (no-data batches included).
/// It runs with `parallelism` partitions, so as many state files per batch.
async fn stateful_execution(
    dirs: &Dirs,
    sink: impl Sink,
    parallelism: usize,
) -> sluice_engine::Result<MicroBatchExecution> {
    stateful_builder(dirs, sink, parallelism)?.build().await
}

fn stateful_builder(
    dirs: &Dirs,
    sink: impl Sink,
    parallelism: usize,
) -> sluice_engine::Result<StreamingQueryBuilder> {
    let mut schema = ticker_schema().as_ref().clone();
    let mut fields: Vec<_> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    if let Some(ts) = fields.iter_mut().find(|f| f.name() == "timestamp") {
        *ts = ts
            .clone()
            .with_data_type(arrow::datatypes::DataType::Timestamp(
                arrow::datatypes::TimeUnit::Millisecond,
                None,
            ));
    }
    schema = arrow::datatypes::Schema::new(fields);
    let source = FileSource::new(
        "ticks",
        &dirs.input,
        std::sync::Arc::new(schema),
        JsonOptions::default(),
    )?
    .with_max_files_per_trigger(1);
    Ok(StreamingQueryBuilder::new()
        .source("ticks", source)
        .sql(
            "SELECT window(\"timestamp\", '1 minute') AS w, symbol, count(*) AS n, max(close_price) AS high \
             FROM ticks GROUP BY w, symbol",
        )
        .output_mode(sluice_engine::OutputMode::Update)
        .watermark("ticks", "timestamp", std::time::Duration::from_secs(30))
        .sink(sink)
        .parallelism(parallelism)
        .checkpoint_location(&dirs.checkpoint))
}

/// Files whose events are 40 s apart, so that windows close as the watermark moves.
fn stateful_dirs() -> Dirs {
    let dirs = dirs();
    for i in 0..5 {
        let lines: Vec<String> = (0..3)
            .map(|k| ticker(&format!("S{k}"), (i * 10 + k) as f64, i * 40_000 + k))
            .collect();
        write_lines(Path::new(&dirs.input), &format!("f{i:02}.jsonl"), &lines);
    }
    dirs
}

/// Runs the stateful query with parallelism `before`, crashing as `crash` says, and restarts
/// it with parallelism `after`; returns the output and the number of batches.
async fn stateful_run(
    crash: Option<(u64, Crash)>,
    (before, after): (usize, usize),
) -> (BTreeMap<String, String>, u64) {
    let dirs = stateful_dirs();
    let (batch, kind) = crash.unwrap_or((u64::MAX, Crash::BeforeSink));
    let sink = CrashingSink::new(file_sink(&dirs), batch, kind);
    let mut execution = stateful_execution(&dirs, sink, before).await.unwrap();
    let crashed = loop {
        match execution.run_trigger().await {
            Ok(true) => continue,
            Ok(false) => break false,
            Err(e) if e.to_string().contains("simulated crash") => break true,
            Err(e) => panic!("{e}"),
        }
    };
    let mut batches = execution.next_batch_id();
    drop(execution);
    if crashed {
        let mut restarted = stateful_execution(&dirs, file_sink(&dirs), after)
            .await
            .unwrap();
        drain(&mut restarted).await;
        batches = restarted.next_batch_id();
    }
    (output(&dirs), batches)
}

#[tokio::test]
async fn stateful_query_survives_a_crash_at_every_step_of_every_batch() {
    let (expected, batches) = stateful_run(None, (1, 1)).await;
    assert!(batches >= 6, "data and no-data batches: {batches}");
    assert!(expected.len() >= 5, "{expected:?}");
    // The same query in 2 partitions, restarted in 2; in 1, restarted in 3 (its state
    // re-partitioned); in 3, restarted in 1.
    for parallelism in [(2, 2), (1, 3), (3, 1)] {
        for batch in 0..batches {
            for crash in [Crash::BeforeSink, Crash::AfterSink] {
                let (actual, total) = stateful_run(Some((batch, crash)), parallelism).await;
                let case = format!("crash {crash:?} in batch {batch}, parallelism {parallelism:?}");
                assert_eq!(total, batches, "{case}");
                assert_eq!(actual, expected, "{case}");
            }
        }
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_state_the_batch_left_unchanged_is_carried_over_not_rewritten() {
    use std::os::unix::fs::MetadataExt;

    let dirs = stateful_dirs();
    // After the last file (t = 170 s, in the window of t = 160 s) the watermark moves from
    // 130 s to 140 s: the no-data batch that follows closes no window.
    write_lines(
        Path::new(&dirs.input),
        "f05.jsonl",
        &[ticker("S0", 1.0, 170_000)],
    );
    let mut execution = stateful_execution(&dirs, file_sink(&dirs), 1)
        .await
        .unwrap();
    let mut unchanged = Vec::new();
    while execution.run_trigger().await.unwrap() {
        let progress = execution.recent_progress().pop().unwrap();
        let state = &progress.state_operators[0];
        if state.num_rows_updated == 0 && state.num_rows_removed == 0 {
            unchanged.push(progress.batch_id);
        }
    }
    let inode = |version: u64| {
        let path = Path::new(&dirs.checkpoint).join(format!("state/0/0/{version}.arrow"));
        std::fs::metadata(path).unwrap().ino()
    };
    // A no-data batch that closes no window: its state is its predecessor's file, linked.
    let carried: Vec<u64> = (1..execution.next_batch_id())
        .filter(|&version| inode(version) == inode(version - 1))
        .collect();
    assert!(!carried.is_empty(), "no version carried over");
    assert_eq!(
        carried,
        unchanged.into_iter().filter(|&b| b > 0).collect::<Vec<_>>()
    );
}

#[cfg(unix)]
#[tokio::test]
async fn every_stateful_operator_is_checkpointed_by_the_loop_and_carried_over_when_unchanged() {
    use std::os::unix::fs::MetadataExt;

    let dirs = stateful_dirs();
    // The same tickers again: every key is a duplicate, and keys without event time are kept
    // forever, so that batch leaves the deduplication's state as it was.
    let again = std::fs::read_to_string(Path::new(&dirs.input).join("f04.jsonl")).unwrap();
    std::fs::write(Path::new(&dirs.input).join("f05.jsonl"), again).unwrap();
    let mut execution = stateful_builder(&dirs, file_sink(&dirs), 1)
        .unwrap()
        .drop_duplicates("ticks", ["symbol", "close_price"])
        .build()
        .await
        .unwrap();
    let mut unchanged = Vec::new();
    while execution.run_trigger().await.unwrap() {
        let progress = execution.recent_progress().pop().unwrap();
        let names: Vec<&str> = progress
            .state_operators
            .iter()
            .map(|s| s.operator_name.as_str())
            .collect();
        assert_eq!(
            names,
            ["dedupe", "stateStoreSave"],
            "the operators, in order"
        );
        let dedup = &progress.state_operators[0];
        if dedup.num_rows_updated == 0 && dedup.num_rows_removed == 0 {
            unchanged.push(progress.batch_id);
        }
    }
    let batches = execution.next_batch_id();
    let inode = |operator: &str, version: u64| {
        let path = Path::new(&dirs.checkpoint).join(format!("state/{operator}/0/{version}.arrow"));
        std::fs::metadata(path).unwrap().ino()
    };
    for version in 0..batches {
        inode("0", version);
    }
    let carried: Vec<u64> = (1..batches)
        .filter(|&version| inode("dedup-ticks", version) == inode("dedup-ticks", version - 1))
        .collect();
    assert!(
        carried.contains(&5),
        "the all-duplicates batch: {carried:?}"
    );
    assert_eq!(
        carried,
        unchanged.into_iter().filter(|&b| b > 0).collect::<Vec<_>>()
    );

    // A restart restores both operators: the duplicates stay dropped.
    drop(execution);
    let mut restarted = stateful_builder(&dirs, file_sink(&dirs), 1)
        .unwrap()
        .drop_duplicates("ticks", ["symbol", "close_price"])
        .build()
        .await
        .unwrap();
    assert_eq!(restarted.next_batch_id(), batches);
    std::fs::write(
        Path::new(&dirs.input).join("f06.jsonl"),
        std::fs::read_to_string(Path::new(&dirs.input).join("f04.jsonl")).unwrap(),
    )
    .unwrap();
    assert!(restarted.run_trigger().await.unwrap());
    let progress = restarted.recent_progress().pop().unwrap();
    assert_eq!(
        progress.state_operators[0].num_rows_updated, 0,
        "{progress:?}"
    );
}

#[tokio::test]
async fn a_state_file_that_is_not_the_committed_one_is_refused_at_restart() {
    let dirs = stateful_dirs();
    let mut execution = stateful_execution(&dirs, file_sink(&dirs), 1)
        .await
        .unwrap();
    drain(&mut execution).await;
    let last = execution.next_batch_id() - 1;
    drop(execution);
    let state =
        |version: u64| Path::new(&dirs.checkpoint).join(format!("state/0/0/{version}.arrow"));
    // An older version copied over the committed one (a hard link: replace, not write through).
    let committed = std::fs::read(state(last)).unwrap();
    let older = (0..last)
        .rev()
        .map(|v| std::fs::read(state(v)).unwrap())
        .find(|bytes| *bytes != committed)
        .expect("an older, different state version");
    std::fs::remove_file(state(last)).unwrap();
    std::fs::write(state(last), &older).unwrap();
    let error = stateful_execution(&dirs, file_sink(&dirs), 1)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        error.contains(&format!("state/0/0/{last}.arrow"))
            && error.contains("is not the state committed"),
        "{error}"
    );
    // The committed bytes back: the query resumes.
    std::fs::remove_file(state(last)).unwrap();
    std::fs::write(state(last), &committed).unwrap();
    let resumed = stateful_execution(&dirs, file_sink(&dirs), 1)
        .await
        .unwrap();
    assert_eq!(resumed.next_batch_id(), last + 1);
}
