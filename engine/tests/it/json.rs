//! JSON decoding in Spark's three modes, on the malformed inputs checked against
//! `pyspark==4.0.1` (`spark.read.schema(...).option("mode", ...).json(file)`).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use sluice_engine::{JsonDecoder, JsonOptions, ParseMode, SluiceError};

use crate::common::render;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("price", DataType::Float64, false),
        Field::new("ts", DataType::Int64, true),
    ]))
}

/// The lines given to Spark: a good record, a truncated object, garbage, a missing field, a
/// string where a number belongs, a blank line, a numeric string, a bad long, an array, a bare
/// number, a good record.
const INPUT: &str = r#"{"symbol":"A","price":1.5,"ts":1}
{"symbol":"B","price":2.5
garbage
{"symbol":"C","ts":3}
{"symbol":"D","price":"abc","ts":4}

{"symbol":"E","price":"5.5","ts":5}
{"symbol":"F","price":6,"ts":"x"}
[1,2]
7
{"symbol":"G","price":7.5,"ts":7}
"#;

fn options(mode: ParseMode, corrupt: bool, batch_size: usize) -> JsonOptions {
    JsonOptions {
        mode,
        corrupt_record_column: corrupt.then(|| "_corrupt_record".to_string()),
        batch_size,
    }
}

fn decode_lines(options: JsonOptions) -> sluice_engine::Result<(String, u64)> {
    let mut decoder = JsonDecoder::new(schema(), options)?;
    decoder.push_lines(INPUT.as_bytes())?;
    let decoded = decoder.finish()?;
    Ok((render(&decoded.batches), decoded.malformed.count))
}

/// Spark's PERMISSIVE output with `_corrupt_record`, except row E: Spark nulls a numeric
/// string, Sluice converts it (documented deviation).
const PERMISSIVE: &str = r#"+--------+-------+----+-------------------------------------+
| symbol | price | ts | _corrupt_record                     |
+--------+-------+----+-------------------------------------+
| A      | 1.5   | 1  |                                     |
|        |       |    | {"symbol":"B","price":2.5           |
|        |       |    | garbage                             |
| C      |       | 3  |                                     |
| D      |       | 4  | {"symbol":"D","price":"abc","ts":4} |
| E      | 5.5   | 5  |                                     |
| F      | 6.0   |    | {"symbol":"F","price":6,"ts":"x"}   |
|        |       |    | [1,2]                               |
|        |       |    | 7                                   |
| G      | 7.5   | 7  |                                     |
+--------+-------+----+-------------------------------------+"#;

#[test]
fn permissive_matches_spark_with_partial_results_and_corrupt_column() {
    for batch_size in [8192, 3, 1] {
        let (table, malformed) =
            decode_lines(options(ParseMode::Permissive, true, batch_size)).unwrap();
        assert_eq!(table, PERMISSIVE, "batch_size {batch_size}");
        assert_eq!(malformed, 6, "batch_size {batch_size}");
    }
}

#[test]
fn permissive_without_corrupt_column_keeps_rows() {
    let (table, malformed) = decode_lines(options(ParseMode::Permissive, false, 8192)).unwrap();
    assert_eq!(table.lines().count(), 4 + 10, "ten rows:\n{table}");
    assert!(table.contains("| F      | 6.0   |    |"), "{table}");
    assert_eq!(malformed, 6);
}

#[test]
fn dropmalformed_keeps_only_clean_records() {
    let (table, malformed) = decode_lines(options(ParseMode::DropMalformed, true, 4)).unwrap();
    assert_eq!(
        table,
        "+--------+-------+----+-----------------+\n\
         | symbol | price | ts | _corrupt_record |\n\
         +--------+-------+----+-----------------+\n\
         | A      | 1.5   | 1  |                 |\n\
         | C      |       | 3  |                 |\n\
         | E      | 5.5   | 5  |                 |\n\
         | G      | 7.5   | 7  |                 |\n\
         +--------+-------+----+-----------------+"
    );
    assert_eq!(malformed, 6);
}

#[test]
fn failfast_names_the_first_malformed_line() {
    let error = decode_lines(options(ParseMode::FailFast, false, 8192)).unwrap_err();
    match error {
        SluiceError::MalformedRecord {
            position, sample, ..
        } => {
            assert_eq!(position, 2, "line of the truncated object");
            assert_eq!(sample, r#"{"symbol":"B","price":2.5"#);
        }
        other => panic!("expected MalformedRecord, got {other}"),
    }
}

#[test]
fn message_at_a_time_equals_lines() {
    let mut decoder =
        JsonDecoder::new(schema(), options(ParseMode::Permissive, true, 8192)).unwrap();
    for message in INPUT.lines() {
        decoder.push(message.as_bytes()).unwrap();
    }
    let decoded = decoder.finish().unwrap();
    assert_eq!(render(&decoded.batches), PERMISSIVE);
    // One batch per chunk, though its first record took the flat path and the rest arrow-json.
    assert_eq!(decoded.batches.len(), 1);
    assert_eq!(decoded.malformed.count, 6);
    assert_eq!(
        decoded.malformed.first_record.as_deref(),
        Some(r#"{"symbol":"B","price":2.5"#)
    );
}

#[test]
fn clean_input_stays_on_the_fast_path_in_batches() {
    let mut decoder =
        JsonDecoder::new(schema(), options(ParseMode::FailFast, false, 1000)).unwrap();
    for i in 0..2500 {
        decoder
            .push(format!(r#"{{"symbol":"S{}","price":{i}.25,"ts":{i}}}"#, i % 7).as_bytes())
            .unwrap();
    }
    let decoded = decoder.finish().unwrap();
    let rows: Vec<usize> = decoded.batches.iter().map(|b| b.num_rows()).collect();
    assert_eq!(rows, vec![1000, 1000, 500]);
    assert_eq!(decoded.malformed.count, 0);
    // The decoder is reusable after finish.
    decoder.push(br#"{"symbol":"Z","price":1,"ts":1}"#).unwrap();
    assert_eq!(decoder.finish().unwrap().batches[0].num_rows(), 1);
}

#[test]
fn two_values_in_one_message_are_malformed() {
    let mut decoder =
        JsonDecoder::new(schema(), options(ParseMode::DropMalformed, false, 8192)).unwrap();
    decoder
        .push(br#"{"symbol":"A","price":1}{"symbol":"B","price":2}"#)
        .unwrap();
    decoder.push(br#"{"symbol":"C","price":3}"#).unwrap();
    let decoded = decoder.finish().unwrap();
    assert_eq!(
        decoded.batches.iter().map(|b| b.num_rows()).sum::<usize>(),
        1
    );
    assert_eq!(decoded.malformed.count, 1);
}

#[test]
fn corrupt_column_declared_in_schema_keeps_its_position_and_must_be_text() {
    let declared = Arc::new(Schema::new(vec![
        Field::new("_corrupt_record", DataType::Utf8, true),
        Field::new("symbol", DataType::Utf8, true),
    ]));
    let decoder = JsonDecoder::new(declared, options(ParseMode::Permissive, true, 10)).unwrap();
    let names: Vec<_> = decoder
        .output_schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, ["_corrupt_record", "symbol"]);

    let wrong = Arc::new(Schema::new(vec![Field::new(
        "_corrupt_record",
        DataType::Int64,
        true,
    )]));
    let error = JsonDecoder::new(wrong, options(ParseMode::Permissive, true, 10))
        .err()
        .unwrap();
    assert!(
        error.to_string().contains("must be of type Utf8"),
        "{error}"
    );
}

#[test]
fn parse_modes_parse_case_insensitively() {
    assert_eq!(
        "dropMalformed".parse::<ParseMode>().unwrap(),
        ParseMode::DropMalformed
    );
    assert!(
        "lenient"
            .parse::<ParseMode>()
            .unwrap_err()
            .to_string()
            .contains("PERMISSIVE")
    );
}

#[test]
fn record_positions_align_rows_with_their_records() {
    // Lines: A=1, B=2, garbage=3, C=4, D=5, blank=6, E=7, F=8, [1,2]=9, 7=10, G=11.
    for (mode, batch_size, expected) in [
        (ParseMode::DropMalformed, 4, vec![1, 4, 7, 11]),
        (ParseMode::DropMalformed, 100, vec![1, 4, 7, 11]),
        (
            ParseMode::Permissive,
            3,
            vec![1, 2, 3, 4, 5, 7, 8, 9, 10, 11],
        ),
    ] {
        let mut decoder = JsonDecoder::new(schema(), options(mode, true, batch_size)).unwrap();
        decoder.push_lines(INPUT.as_bytes()).unwrap();
        let decoded = decoder.finish().unwrap();
        assert_eq!(decoded.record_positions, expected, "{mode:?} {batch_size}");
        let rows: usize = decoded.batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, expected.len());
    }
    // Clean input on the fast path.
    let mut decoder = JsonDecoder::new(schema(), options(ParseMode::Permissive, false, 2)).unwrap();
    for _ in 0..3 {
        decoder.push(br#"{"symbol":"A","price":1}"#).unwrap();
    }
    decoder.push(b"  ").unwrap();
    decoder.push(br#"{"symbol":"B","price":2}"#).unwrap();
    assert_eq!(decoder.finish().unwrap().record_positions, vec![1, 2, 3, 5]);
}
