//! Property tests of the JSON decoder on hostile input: whatever the bytes, no panic, and
//! every non-blank record is either a row or a counted malformed record (PERMISSIVE keeps a
//! row for each, DROPMALFORMED drops exactly the counted ones, FAILFAST names the first). A
//! record that is a top-level array is one row per object in it (Spark's rule), so it may
//! give any number of rows.
//! Bounded in cases so that they run in CI in a second or two.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use proptest::prelude::*;
use sluice_engine::{JsonDecoder, JsonOptions, ParseMode, SluiceError};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new("n", DataType::Int64, true),
        Field::new("ok", DataType::Boolean, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]))
}

/// Records made of JSON fragments, field names of the schema, deep brackets and raw bytes:
/// mostly almost-JSON, which is where decoders break.
fn record() -> impl Strategy<Value = Vec<u8>> {
    let fragment = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just(",".to_string()),
        Just(":".to_string()),
        Just("\"symbol\"".to_string()),
        Just("\"price\"".to_string()),
        Just("\"n\"".to_string()),
        Just("\"ok\"".to_string()),
        Just("\"ts\"".to_string()),
        Just("\"BTC\\u00e9\\\"\"".to_string()),
        Just("1.5e308".to_string()),
        Just("-92233720368547758089".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just(" ".to_string()),
        Just("[".repeat(3000)),
        "[a-z0-9\"\\\\]{0,6}",
    ];
    prop_oneof![
        prop::collection::vec(fragment, 0..24).prop_map(|parts| parts.concat().into_bytes()),
        prop::collection::vec(any::<u8>(), 0..64),
        Just(br#"{"symbol":"A","price":1.5,"n":2,"ok":true,"ts":1700000000000}"#.to_vec()),
    ]
}

fn options(mode: ParseMode, batch_size: usize) -> JsonOptions {
    JsonOptions {
        mode,
        corrupt_record_column: Some("_corrupt_record".into()),
        batch_size,
        ..JsonOptions::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn every_record_is_a_row_or_a_counted_rejection(
        records in prop::collection::vec(record(), 0..12),
        batch_size in 1usize..6,
    ) {
        // Per pushed record (1-based): whether it is blank, or an array (any number of rows).
        let blank = |r: &Vec<u8>| r.iter().all(u8::is_ascii_whitespace);
        let array = |r: &Vec<u8>| {
            r.strip_prefix(b"\xef\xbb\xbf")
                .unwrap_or(r)
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                == Some(&b'[')
        };
        let non_blank = records.iter().filter(|r| !blank(r)).count();
        let single: Vec<usize> = (1..=records.len())
            .filter(|&p| !blank(&records[p - 1]) && !array(&records[p - 1]))
            .collect();
        // Rows of each single-value record.
        let rows_of = |positions: &[usize], p: usize| positions.iter().filter(|&&q| q == p).count();
        for mode in [ParseMode::Permissive, ParseMode::DropMalformed, ParseMode::FailFast] {
            let mut decoder = JsonDecoder::new(schema(), options(mode, batch_size)).unwrap();
            let pushed = records.iter().try_for_each(|r| decoder.push(r));
            let outcome = pushed.and_then(|()| decoder.finish());
            match (mode, outcome) {
                (ParseMode::FailFast, Err(SluiceError::MalformedRecord { position, .. })) => {
                    prop_assert!(position >= 1 && position <= records.len());
                }
                (ParseMode::FailFast, Ok(decoded)) => {
                    prop_assert_eq!(decoded.malformed.count, 0);
                    prop_assert_eq!(rows(&decoded.batches), decoded.record_positions.len());
                    for &p in &single {
                        prop_assert_eq!(rows_of(&decoded.record_positions, p), 1);
                    }
                }
                (ParseMode::Permissive, Ok(decoded)) => {
                    prop_assert_eq!(rows(&decoded.batches), decoded.record_positions.len());
                    for &p in &single {
                        prop_assert_eq!(rows_of(&decoded.record_positions, p), 1);
                    }
                    prop_assert!(decoded.malformed.count as usize <= non_blank);
                }
                (ParseMode::DropMalformed, Ok(decoded)) => {
                    let kept: usize = single
                        .iter()
                        .map(|&p| rows_of(&decoded.record_positions, p))
                        .sum();
                    prop_assert!(single.iter().all(|&p| rows_of(&decoded.record_positions, p) <= 1));
                    let malformed = decoded.malformed.count as usize;
                    prop_assert!(kept + malformed >= single.len());
                    prop_assert!(kept + malformed <= non_blank);
                }
                (mode, Err(e)) => prop_assert!(false, "{:?}: {}", mode, e),
            }
        }
    }
}

fn rows(batches: &[arrow::array::RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}
