//! The seed's stateless Spark job (`queries/projet_bdcc.sql`) gives the expected rows.

use sluice_engine::{FileSource, JsonOptions, MemorySink, StreamingQueryBuilder};

use crate::common::{render, ticker, ticker_schema, write_lines};

const SQL: &str = include_str!("../../../queries/projet_bdcc.sql");

#[tokio::test]
async fn projet_bdcc_derives_columns_and_drops_duplicates_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    write_lines(
        dir.path(),
        "0.jsonl",
        &[
            ticker("BTCUSDT", 65000.0, 1_700_000_000_000),
            ticker("ETHUSDT", 3000.0, 1_700_000_000_000),
            // Same symbol and timestamp again: dropped, the first occurrence wins.
            ticker("BTCUSDT", 99999.0, 1_700_000_000_000),
            ticker("BTCUSDT", 65010.0, 1_700_000_001_000),
            "not json".into(),
        ],
    );
    // Next batch: the same key again is kept (dedup is per micro-batch, like the seed's).
    write_lines(
        dir.path(),
        "1.jsonl",
        &[ticker("BTCUSDT", 65000.0, 1_700_000_000_000)],
    );
    let source = FileSource::new(
        "ticks",
        dir.path().to_str().unwrap(),
        ticker_schema(),
        JsonOptions::default(),
    )
    .unwrap()
    .with_max_files_per_trigger(1);
    let sink = MemorySink::new();
    let mut execution = StreamingQueryBuilder::new()
        .source("ticks", source)
        .sql(SQL)
        .foreach_batch()
        .sink(sink.clone())
        .build()
        .await
        .unwrap();
    while execution.run_trigger().await.unwrap() {}

    let batches = sink.batches();
    assert_eq!(
        render(&batches[&0]),
        "+---------+-------------+------------+------------+-----------+--------+--------------+---------------------+--------+-----------+\n\
         | symbol  | close_price | open_price | high_price | low_price | volume | quote_volume | timestamp_ts        | spread | mid_price |\n\
         +---------+-------------+------------+------------+-----------+--------+--------------+---------------------+--------+-----------+\n\
         | BTCUSDT | 65000.0     | 64999.0    | 65002.0    | 64997.0   | 1000.5 | 65032500.0   | 2023-11-14T22:13:20 | 5.0    | 64999.5   |\n\
         | ETHUSDT | 3000.0      | 2999.0     | 3002.0     | 2997.0    | 1000.5 | 3001500.0    | 2023-11-14T22:13:20 | 5.0    | 2999.5    |\n\
         | BTCUSDT | 65010.0     | 65009.0    | 65012.0    | 65007.0   | 1000.5 | 65042505.0   | 2023-11-14T22:13:21 | 5.0    | 65009.5   |\n\
         +---------+-------------+------------+------------+-----------+--------+--------------+---------------------+--------+-----------+"
    );
    assert_eq!(batches[&1][0].num_rows(), 1);
    let progress = execution.recent_progress();
    assert_eq!(progress[0].sources[0].malformed_records.count, 1);
}
