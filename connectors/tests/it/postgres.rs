//! PostgreSQL specifics of the relational sink: notifications, retries through a cut
//! connection, error messages, and the binary encoding of every mapped type.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Int32Array,
    RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use sluice_connectors::relational::{NOTIFY_CHANNEL, RelationalSink, RetryPolicy};
use sluice_engine::{OutputMode, Sink, SinkContext};
use sqlx::postgres::PgListener;

use crate::common::{
    Proxy, host_port, postgres_url, projet_bdcc_batch, projet_bdcc_schema, rows, unique_table,
};

fn append_context() -> SinkContext {
    SinkContext {
        query_id: uuid::Uuid::new_v4().to_string(),
        query_name: None,
        schema: projet_bdcc_schema(),
        output_mode: OutputMode::Append,
        key_columns: None,
        parallelism: 1,
    }
}

async fn count(url: &str, table: &str) -> String {
    rows(url, &format!("SELECT COUNT(*)::text FROM \"{table}\""))
        .await
        .remove(0)
        .remove(0)
        .unwrap_or_default()
}

#[cfg_attr(
    sluice_no_postgres,
    ignore = "needs PostgreSQL: DATABASE_URL, or its server programs (initdb, pg_ctl) installed"
)]
#[tokio::test]
async fn each_committed_batch_is_notified_with_its_table_id_and_rows() {
    let url = postgres_url();
    let table = unique_table("notified");
    let mut listener = PgListener::connect(&url).await.unwrap();
    listener.listen(NOTIFY_CHANNEL).await.unwrap();

    let context = append_context();
    let mut sink = RelationalSink::new(&url, &table).unwrap();
    sink.open(&context).await.unwrap();
    sink.add_batch(0, &[projet_bdcc_batch(&[("A", 1.0, 1), ("B", 2.0, 1)])])
        .await
        .unwrap();
    let notification = loop {
        let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("a notification within 10 s")
            .unwrap();
        let payload: serde_json::Value = serde_json::from_str(notification.payload()).unwrap();
        if payload["table"] == table.as_str() {
            break payload;
        }
    };
    assert_eq!(
        notification,
        serde_json::json!({
            "table": table, "sink": table, "query_id": context.query_id,
            "batch_id": 0, "rows": 2,
        })
    );
}

#[cfg_attr(
    sluice_no_postgres,
    ignore = "needs PostgreSQL: DATABASE_URL, or its server programs (initdb, pg_ctl) installed"
)]
#[tokio::test]
async fn a_cut_connection_is_retried_and_the_batch_lands_once() {
    let url = postgres_url();
    let proxy = Proxy::start(host_port(&url)).await;
    let table = unique_table("retried");
    let mut sink = RelationalSink::new(&proxy.url(&url), &table).unwrap();
    sink.open(&append_context()).await.unwrap();
    sink.add_batch(0, &[projet_bdcc_batch(&[("A", 1.0, 1)])])
        .await
        .unwrap();

    // The server goes away (open connections dropped, new ones refused) for a second.
    proxy.cut();
    let write = tokio::spawn(async move {
        sink.add_batch(1, &[projet_bdcc_batch(&[("B", 2.0, 2)])])
            .await
            .map(|()| sink)
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    if write.is_finished() {
        panic!(
            "the sink must retry while the server is away: {:?}",
            write.await.unwrap().err()
        );
    }
    proxy.restore();
    let mut sink = write.await.unwrap().expect("recovered after the outage");
    sink.add_batch(1, &[projet_bdcc_batch(&[("B", 2.0, 2)])])
        .await
        .unwrap();
    assert_eq!(count(&url, &table).await, "2");
}

#[cfg_attr(
    sluice_no_postgres,
    ignore = "needs PostgreSQL: DATABASE_URL, or its server programs (initdb, pg_ctl) installed"
)]
#[tokio::test]
async fn when_retries_run_out_the_batch_fails_uncommitted_and_can_be_rerun() {
    let url = postgres_url();
    let proxy = Proxy::start(host_port(&url)).await;
    let table = unique_table("exhausted");
    let policy = RetryPolicy {
        max_retries: 2,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(100),
        connect_timeout: Duration::from_millis(500),
    };
    let mut sink = RelationalSink::new(&proxy.url(&url), &table)
        .unwrap()
        .retry(policy);
    sink.open(&append_context()).await.unwrap();
    proxy.cut();
    let batch = projet_bdcc_batch(&[("A", 1.0, 1)]);
    let error = sink
        .add_batch(0, std::slice::from_ref(&batch))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("failed on batch 0")
            && error.contains("writing the batch failed after 3 attempt(s)"),
        "{error}"
    );
    assert_eq!(count(&url, &table).await, "0");
    // The batch's metrics (its progress's `sink.metrics`) count the retries it took.
    assert_eq!(sink.metrics()["numRetries"], "2");
    proxy.restore();
    sink.add_batch(0, &[batch]).await.unwrap();
    assert_eq!(count(&url, &table).await, "1");
    assert_eq!(sink.metrics()["numRetries"], "0", "counted per batch");
}

#[cfg_attr(
    sluice_no_postgres,
    ignore = "needs PostgreSQL: DATABASE_URL, or its server programs (initdb, pg_ctl) installed"
)]
#[tokio::test]
async fn errors_name_the_column_and_batch_and_never_show_the_password() {
    let url = postgres_url();
    let mut wrong = url::Url::parse(&url).unwrap();
    wrong
        .set_password(Some("hunter2-not-the-password"))
        .unwrap();
    let error = RelationalSink::new(wrong.as_str(), "t")
        .unwrap()
        .open(&append_context())
        .await
        .unwrap_err()
        .to_string();
    assert!(!error.contains("hunter2"), "{error}");
    assert!(error.contains(":***@"), "{error}");
    assert!(
        error.contains("28P01"),
        "authentication failure expected: {error}"
    );

    // A NOT NULL column the query leaves null.
    let table = unique_table("strict");
    rows(
        &url,
        &format!(
            "CREATE TABLE \"{table}\" (symbol text, close_price double precision, \
             open_price double precision, high_price double precision, \
             low_price double precision, volume double precision, \
             quote_volume double precision, timestamp_ts timestamptz, \
             spread double precision NOT NULL, mid_price double precision)"
        ),
    )
    .await;
    let mut schema = projet_bdcc_schema().as_ref().clone();
    let batch = projet_bdcc_batch(&[("A", 1.0, 1)]);
    let mut columns = batch.columns().to_vec();
    columns[8] = Arc::new(arrow::array::Float64Array::from(vec![None::<f64>]));
    schema = Schema::new(schema.fields().to_vec());
    let batch = RecordBatch::try_new(Arc::new(schema), columns).unwrap();
    let mut sink = RelationalSink::new(&url, &table).unwrap();
    sink.open(&append_context()).await.unwrap();
    let error = sink.add_batch(7, &[batch]).await.unwrap_err().to_string();
    assert!(
        error.contains("failed on batch 7") && error.contains("column: spread"),
        "{error}"
    );
}

#[cfg_attr(
    sluice_no_postgres,
    ignore = "needs PostgreSQL: DATABASE_URL, or its server programs (initdb, pg_ctl) installed"
)]
#[tokio::test]
async fn every_mapped_type_round_trips_through_binary_copy() {
    let url = postgres_url();
    let table = unique_table("types");
    let schema = Arc::new(Schema::new(vec![
        Field::new("d", DataType::Decimal128(20, 4), true),
        Field::new("u", DataType::UInt64, true),
        Field::new("i", DataType::Int32, true),
        Field::new("f", DataType::Float32, true),
        Field::new("b", DataType::Boolean, true),
        Field::new("day", DataType::Date32, true),
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            true,
        ),
        Field::new("bytes", DataType::Binary, true),
        Field::new("s", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            Decimal128Array::from(vec![Some(-12_345_678), Some(5), Some(0), None])
                .with_precision_and_scale(20, 4)
                .unwrap(),
        ),
        Arc::new(UInt64Array::from(vec![
            Some(u64::MAX),
            Some(0),
            Some(10_000),
            None,
        ])),
        Arc::new(Int32Array::from(vec![
            Some(-7),
            Some(i32::MAX),
            Some(0),
            None,
        ])),
        Arc::new(Float32Array::from(vec![
            Some(1.5),
            Some(-0.25),
            Some(0.0),
            None,
        ])),
        Arc::new(BooleanArray::from(vec![
            Some(true),
            Some(false),
            Some(true),
            None,
        ])),
        Arc::new(Date32Array::from(vec![
            Some(0),
            Some(20_000),
            Some(-1),
            None,
        ])),
        Arc::new(
            TimestampNanosecondArray::from(vec![
                Some(1_700_000_000_123_456_789),
                Some(0),
                Some(-1_000),
                None,
            ])
            .with_timezone("UTC"),
        ),
        Arc::new(BinaryArray::from(vec![
            Some(&b"\x00\xff"[..]),
            Some(&b""[..]),
            Some(&b"ab"[..]),
            None,
        ])),
        Arc::new(StringArray::from(vec![
            Some("é\"'"),
            Some(""),
            Some("x"),
            None,
        ])),
    ];
    let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
    let mut sink = RelationalSink::new(&url, &table).unwrap();
    sink.open(&SinkContext {
        schema,
        ..append_context()
    })
    .await
    .unwrap();
    sink.add_batch(0, &[batch]).await.unwrap();
    let got = rows(
        &url,
        &format!(
            "SELECT d::text, u::text, i::text, f::text, b::text, day::text, \
             to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), \
             encode(bytes, 'hex'), s FROM \"{table}\" ORDER BY i NULLS LAST"
        ),
    )
    .await;
    let expected = [
        [
            "-1234.5678",
            "18446744073709551615",
            "-7",
            "1.5",
            "true",
            "1970-01-01",
            "2023-11-14 22:13:20.123456",
            "00ff",
            "é\"'",
        ],
        [
            "0.0000",
            "10000",
            "0",
            "0",
            "true",
            "1969-12-31",
            "1969-12-31 23:59:59.999999",
            "6162",
            "x",
        ],
        [
            "0.0005",
            "0",
            "2147483647",
            "-0.25",
            "false",
            "2024-10-04",
            "1970-01-01 00:00:00.000000",
            "",
            "",
        ],
    ];
    assert_eq!(got.len(), 4);
    for (row, expected) in got.iter().zip(expected) {
        assert_eq!(
            row,
            &expected.map(|v| Some(v.to_string())).to_vec(),
            "{got:?}"
        );
    }
    assert!(got[3].iter().all(Option::is_none));
}
