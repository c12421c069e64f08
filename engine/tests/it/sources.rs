//! Source contracts: read limits, replay of `(start, end]`, available-now caps, late files.

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use sluice_engine::{FileSource, JsonOptions, MemorySource, Offset, ReadLimit, Source};

use crate::common::{render, ticker, ticker_schema, write_lines};

fn numbers(values: &[i64]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
    RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(values.to_vec()))]).unwrap()
}

fn values(batches: &[RecordBatch]) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect()
}

#[tokio::test]
async fn memory_source_honours_max_rows_and_replays() {
    let source = MemorySource::new("n", numbers(&[]).schema()).with_max_rows_per_trigger(3);
    let mut reader = source.clone();
    source.add_batch(numbers(&[1, 2])).unwrap();
    source.add_batch(numbers(&[3, 4, 5, 6])).unwrap();

    let start = reader.initial_offset().await.unwrap();
    let limit = reader.default_read_limit();
    assert_eq!(limit, ReadLimit::MaxRows(3));
    let first = reader.latest_offset(&start, limit).await.unwrap();
    assert_eq!(
        values(&reader.get_batch(&start, &first).await.unwrap().batches),
        [1, 2, 3]
    );
    let second = reader.latest_offset(&first, limit).await.unwrap();
    assert_eq!(
        values(&reader.get_batch(&first, &second).await.unwrap().batches),
        [4, 5, 6]
    );
    assert_eq!(
        reader.latest_offset(&second, limit).await.unwrap(),
        second,
        "nothing new"
    );
    // Replaying the same offsets returns the same rows.
    assert_eq!(
        values(&reader.get_batch(&first, &second).await.unwrap().batches),
        [4, 5, 6]
    );
}

#[tokio::test]
async fn memory_source_rejects_other_schemas_and_offsets_beyond_data() {
    let source = MemorySource::new("n", numbers(&[]).schema());
    let other = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("m", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(vec![1]))],
    )
    .unwrap();
    assert!(
        source
            .add_batch(other)
            .unwrap_err()
            .to_string()
            .contains("differs from the source schema")
    );
    let mut reader = source.clone();
    let error = reader
        .get_batch(
            &Offset::new(serde_json::json!({"rows": 0})),
            &Offset::new(serde_json::json!({"rows": 5})),
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("beyond"), "{error}");
}

#[tokio::test]
async fn memory_source_available_now_ignores_later_rows() {
    let source = MemorySource::new("n", numbers(&[]).schema());
    let mut reader = source.clone();
    source.add_batch(numbers(&[1])).unwrap();
    reader.prepare_for_available_now().await.unwrap();
    source.add_batch(numbers(&[2])).unwrap();
    let start = reader.initial_offset().await.unwrap();
    let end = reader
        .latest_offset(&start, ReadLimit::AllAvailable)
        .await
        .unwrap();
    assert_eq!(
        values(&reader.get_batch(&start, &end).await.unwrap().batches),
        [1]
    );
}

#[tokio::test]
async fn file_source_reads_in_name_order_with_max_files_and_replays_exactly() {
    let dir = tempfile::tempdir().unwrap();
    write_lines(dir.path(), "b.jsonl", &[ticker("B", 2.0, 2)]);
    write_lines(dir.path(), "a.jsonl", &[ticker("A", 1.0, 1)]);
    write_lines(dir.path(), ".c.jsonl.tmp", &[ticker("HIDDEN", 9.0, 9)]);
    write_lines(dir.path(), "_SUCCESS", &[]);
    let mut source = FileSource::new(
        "t",
        dir.path().to_str().unwrap(),
        ticker_schema(),
        JsonOptions::default(),
    )
    .unwrap()
    .with_max_files_per_trigger(1);
    let limit = source.default_read_limit();
    assert_eq!(limit, ReadLimit::MaxFiles(1));

    let start = source.initial_offset().await.unwrap();
    let first = source.latest_offset(&start, limit).await.unwrap();
    let batch = source.get_batch(&start, &first).await.unwrap();
    assert!(render(&batch.batches).contains("| A "), "a.jsonl first");

    // A file arriving after the batch was planned is not part of its replay.
    write_lines(dir.path(), "a2.jsonl", &[ticker("A2", 1.5, 1)]);
    let second = source.latest_offset(&first, limit).await.unwrap();
    let replay = source.get_batch(&start, &first).await.unwrap();
    assert_eq!(render(&replay.batches), render(&batch.batches));
    assert!(render(&source.get_batch(&first, &second).await.unwrap().batches).contains("| A2 "));

    let third = source.latest_offset(&second, limit).await.unwrap();
    assert!(render(&source.get_batch(&second, &third).await.unwrap().batches).contains("| B "));
    assert_eq!(
        source.latest_offset(&third, limit).await.unwrap(),
        third,
        "hidden files are ignored"
    );

    // A file sorting before those read is skipped (with a warning), never read out of order.
    write_lines(dir.path(), "0-late.jsonl", &[ticker("LATE", 1.0, 1)]);
    assert_eq!(source.latest_offset(&third, limit).await.unwrap(), third);
}

#[tokio::test]
async fn file_source_counts_malformed_lines() {
    let dir = tempfile::tempdir().unwrap();
    write_lines(
        dir.path(),
        "a.jsonl",
        &[
            ticker("A", 1.0, 1),
            "{oops".into(),
            String::new(),
            ticker("B", 1.0, 1),
        ],
    );
    let options = JsonOptions {
        mode: sluice_engine::ParseMode::DropMalformed,
        ..Default::default()
    };
    let mut source =
        FileSource::new("t", dir.path().to_str().unwrap(), ticker_schema(), options).unwrap();
    let start = source.initial_offset().await.unwrap();
    let end = source
        .latest_offset(&start, ReadLimit::AllAvailable)
        .await
        .unwrap();
    let batch = source.get_batch(&start, &end).await.unwrap();
    assert_eq!(batch.batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
    assert_eq!(batch.malformed.count, 1);
    assert_eq!(batch.malformed.first_record.as_deref(), Some("{oops"));
}

#[tokio::test]
async fn sources_report_the_backlog_of_an_available_now_run() {
    let memory = MemorySource::new("n", numbers(&[]).schema());
    memory.add_batch(numbers(&[1, 2, 3, 4, 5])).unwrap();
    let mut reader = memory.clone();
    let start = reader.initial_offset().await.unwrap();
    assert_eq!(
        reader.backlog(&start),
        None,
        "only after prepare_for_available_now"
    );
    reader.prepare_for_available_now().await.unwrap();
    memory.add_batch(numbers(&[6])).unwrap();
    assert_eq!(
        reader.backlog(&start),
        Some(5),
        "rows added later are not part of the run"
    );
    let end = reader
        .latest_offset(&start, ReadLimit::MaxRows(2))
        .await
        .unwrap();
    assert_eq!(reader.backlog(&end), Some(3));

    let dir = tempfile::tempdir().unwrap();
    for name in ["a.jsonl", "b.jsonl", "c.jsonl"] {
        write_lines(dir.path(), name, &[ticker("A", 1.0, 1)]);
    }
    let mut files = FileSource::new(
        "t",
        dir.path().to_str().unwrap(),
        ticker_schema(),
        JsonOptions::default(),
    )
    .unwrap();
    let start = files.initial_offset().await.unwrap();
    files.prepare_for_available_now().await.unwrap();
    assert_eq!(files.backlog(&start), Some(3));
    let end = files
        .latest_offset(&start, ReadLimit::MaxFiles(1))
        .await
        .unwrap();
    assert_eq!(files.backlog(&end), Some(2));
}
