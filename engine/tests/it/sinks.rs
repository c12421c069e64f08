//! Sink contracts: idempotent `add_batch` per batch id, file formats, console rendering.

use std::sync::{Arc, Mutex};

use arrow::array::{Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use sluice_engine::{ConsoleSink, FileFormat, FileSink, MemorySink, OutputMode, Sink, SinkContext};

fn batch(symbols: &[&str]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
    ]));
    let prices: Vec<Option<f64>> = (0..symbols.len())
        .map(|i| (i != 1).then_some(i as f64 + 0.5))
        .collect();
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(symbols.to_vec())),
            Arc::new(Float64Array::from(prices)),
        ],
    )
    .unwrap()
}

fn context(batch: &RecordBatch) -> SinkContext {
    SinkContext {
        query_id: "q".into(),
        query_name: None,
        schema: batch.schema(),
        output_mode: OutputMode::Append,
        key_columns: None,
        parallelism: 1,
    }
}

#[tokio::test]
async fn memory_sink_keeps_the_first_copy_of_a_batch_id() {
    let sink = MemorySink::new();
    let mut writer = sink.clone();
    writer.add_batch(0, &[batch(&["A"])]).await.unwrap();
    writer.add_batch(1, &[batch(&["B"])]).await.unwrap();
    writer.add_batch(1, &[batch(&["B"])]).await.unwrap();
    let batches = sink.batches();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[&1].len(), 1);
}

#[tokio::test]
async fn file_sink_writes_one_file_per_batch_and_rewrites_replays() {
    let dir = tempfile::tempdir().unwrap();
    // With 3 threads, each row is encoded on its own (a Parquet row group each): the file
    // reads the same.
    for (format, parallelism) in [FileFormat::JsonLines, FileFormat::Parquet]
        .into_iter()
        .flat_map(|format| [(format, 1), (format, 3)])
    {
        let out = dir.path().join(format!("{format:?}-{parallelism}"));
        let mut sink = FileSink::new(out.to_str().unwrap(), format).unwrap();
        let rows = batch(&["A", "B", "C"]);
        let context = SinkContext {
            parallelism,
            ..context(&rows)
        };
        sink.open(&context).await.unwrap();
        sink.add_batch(3, std::slice::from_ref(&rows))
            .await
            .unwrap();
        sink.add_batch(3, std::slice::from_ref(&rows))
            .await
            .unwrap(); // replay
        sink.add_batch(4, &[rows.slice(0, 0)]).await.unwrap(); // no rows, no file
        let files: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(files, [sink.file_name(3)], "{format:?}");
        if format == FileFormat::JsonLines {
            assert_eq!(
                std::fs::read_to_string(out.join(sink.file_name(3))).unwrap(),
                "{\"symbol\":\"A\",\"price\":0.5}\n{\"symbol\":\"B\"}\n{\"symbol\":\"C\",\"price\":2.5}\n"
            );
        } else {
            let file = std::fs::File::open(out.join(sink.file_name(3))).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap();
            assert_eq!(reader.metadata().num_row_groups(), parallelism);
            let read: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
            let read = arrow::compute::concat_batches(&rows.schema(), &read).unwrap();
            assert_eq!(read, rows);
        }
    }
}

/// NaN and the infinities as Spark's JSON sink writes them (pyspark 4.0.1 wrote
/// `{"a":"NaN","b":"Infinity","c":"-Infinity","e":1.5}` for this row), and read back as the
/// same doubles.
#[tokio::test]
async fn file_sink_writes_non_finite_doubles_as_spark_and_reads_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let fields: Vec<Field> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|name| Field::new(*name, DataType::Float64, true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let values = [
        Some(f64::NAN),
        Some(f64::INFINITY),
        Some(f64::NEG_INFINITY),
        None,
        Some(1.5),
    ];
    let row = RecordBatch::try_new(
        schema.clone(),
        values
            .iter()
            .map(|v| Arc::new(Float64Array::from(vec![*v])) as _)
            .collect(),
    )
    .unwrap();
    let mut sink = FileSink::new(dir.path().to_str().unwrap(), FileFormat::JsonLines).unwrap();
    sink.open(&context(&row)).await.unwrap();
    sink.add_batch(0, std::slice::from_ref(&row)).await.unwrap();
    let text = std::fs::read_to_string(dir.path().join(sink.file_name(0))).unwrap();
    assert_eq!(
        text,
        "{\"a\":\"NaN\",\"b\":\"Infinity\",\"c\":\"-Infinity\",\"e\":1.5}\n"
    );

    let mut decoder = sluice_engine::JsonDecoder::new(schema, Default::default()).unwrap();
    decoder.push_lines(text.as_bytes()).unwrap();
    let decoded = decoder.finish().unwrap();
    assert_eq!(decoded.malformed.count, 0);
    let back = decoded.batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap();
    assert!(back.value(0).is_nan());
    let column = |i: usize| {
        decoded.batches[0]
            .column(i)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .iter()
            .next()
            .unwrap()
    };
    assert_eq!(
        [column(1), column(2), column(3), column(4)],
        [
            Some(f64::INFINITY),
            Some(f64::NEG_INFINITY),
            None,
            Some(1.5)
        ]
    );
}

#[tokio::test]
async fn console_sink_prints_like_spark() {
    let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut sink = ConsoleSink::to_writer(buffer.clone()).with_num_rows(2);
    let rows = batch(&["BTCUSDT", "A_VERY_LONG_SYMBOL_NAME_INDEED", "C"]);
    sink.open(&context(&rows)).await.unwrap();
    sink.add_batch(0, std::slice::from_ref(&rows))
        .await
        .unwrap();
    sink.add_batch(1, &[]).await.unwrap();
    let text = String::from_utf8(buffer.lock().unwrap().clone()).unwrap();
    assert_eq!(
        text,
        "-------------------------------------------\n\
         Batch: 0\n\
         -------------------------------------------\n\
         +--------------------+-----+\n\
         |              symbol|price|\n\
         +--------------------+-----+\n\
         |             BTCUSDT|  0.5|\n\
         |A_VERY_LONG_SYMBO...| NULL|\n\
         +--------------------+-----+\n\
         only showing top 2 rows\n\
         \n\
         -------------------------------------------\n\
         Batch: 1\n\
         -------------------------------------------\n\
         +------+-----+\n\
         |symbol|price|\n\
         +------+-----+\n\
         +------+-----+\n\
         \n"
    );
}
