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
        ..JsonOptions::default()
    }
}

fn decode_lines(options: JsonOptions) -> sluice_engine::Result<(String, u64)> {
    let mut decoder = JsonDecoder::new(schema(), options)?;
    decoder.push_lines(INPUT.as_bytes())?;
    let decoded = decoder.finish()?;
    Ok((render(&decoded.batches), decoded.malformed.count))
}

/// Spark's PERMISSIVE output with `_corrupt_record` (pyspark 4.0.1): a numeric string in a
/// DOUBLE column (row E) is malformed, its other fields kept.
const PERMISSIVE: &str = r#"+--------+-------+----+-------------------------------------+
| symbol | price | ts | _corrupt_record                     |
+--------+-------+----+-------------------------------------+
| A      | 1.5   | 1  |                                     |
|        |       |    | {"symbol":"B","price":2.5           |
|        |       |    | garbage                             |
| C      |       | 3  |                                     |
| D      |       | 4  | {"symbol":"D","price":"abc","ts":4} |
| E      |       | 5  | {"symbol":"E","price":"5.5","ts":5} |
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
        assert_eq!(malformed, 7, "batch_size {batch_size}");
    }
}

#[test]
fn permissive_without_corrupt_column_keeps_rows() {
    let (table, malformed) = decode_lines(options(ParseMode::Permissive, false, 8192)).unwrap();
    assert_eq!(table.lines().count(), 4 + 10, "ten rows:\n{table}");
    assert!(table.contains("| F      | 6.0   |    |"), "{table}");
    assert_eq!(malformed, 7);
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
         | G      | 7.5   | 7  |                 |\n\
         +--------+-------+----+-----------------+"
    );
    assert_eq!(malformed, 7);
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
    assert_eq!(decoded.malformed.count, 7);
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

/// Two values in one message: Spark reads the first and ignores the rest (pyspark 4.0.1).
#[test]
fn two_values_in_one_message_give_the_first() {
    let mut decoder =
        JsonDecoder::new(schema(), options(ParseMode::DropMalformed, false, 8192)).unwrap();
    decoder
        .push(br#"{"symbol":"A","price":1}{"symbol":"B","price":2}"#)
        .unwrap();
    decoder.push(br#"{"symbol":"C","price":3}"#).unwrap();
    let decoded = decoder.finish().unwrap();
    assert_eq!(
        render(&decoded.batches),
        "+--------+-------+----+\n\
         | symbol | price | ts |\n\
         +--------+-------+----+\n\
         | A      | 1.0   |    |\n\
         | C      | 3.0   |    |\n\
         +--------+-------+----+"
    );
    assert_eq!(decoded.malformed.count, 0);
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
        (ParseMode::DropMalformed, 4, vec![1, 4, 11]),
        (ParseMode::DropMalformed, 100, vec![1, 4, 11]),
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

/// The flat-record path: what it decodes must be exactly what the general path (Spark's rules,
/// then arrow-json) decodes.
mod flat_path {
    use std::sync::Arc;

    use arrow::array::RecordBatch;
    use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
    use arrow_json::ReaderBuilder;
    use sluice_engine::{JsonDecoder, JsonOptions};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8, true),
            Field::new("f", DataType::Float64, true),
            Field::new("i", DataType::Int64, true),
            Field::new("t", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("b", DataType::Boolean, true),
        ]))
    }

    /// The general path's decoding of one record (`None` when malformed): the same decoder
    /// with one more column, of a type the flat path does not take, which sends every record
    /// to the general path; that column is then left out.
    fn general(schema: &SchemaRef, record: &[u8]) -> Option<RecordBatch> {
        let mut fields = schema.fields().to_vec();
        fields.push(Arc::new(Field::new(
            "zz_general",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            true,
        )));
        let (decoded, flat) = sluice(&Arc::new(Schema::new(fields)), record);
        assert!(!flat);
        let decoded = decoded?;
        let columns = (0..schema.fields().len()).collect::<Vec<_>>();
        let projected = decoded.project(&columns).ok()?;
        RecordBatch::try_new(Arc::clone(schema), projected.columns().to_vec()).ok()
    }

    /// Decodes `record` alone: its row (or `None` if malformed) and whether the flat path
    /// took it.
    fn sluice(schema: &SchemaRef, record: &[u8]) -> (Option<RecordBatch>, bool) {
        let mut decoder = JsonDecoder::new(
            Arc::clone(schema),
            JsonOptions {
                mode: sluice_engine::ParseMode::DropMalformed,
                ..JsonOptions::default()
            },
        )
        .expect("decoder");
        decoder.push(record).expect("DROPMALFORMED never fails");
        let flat = decoder.flat_path_records() == 1;
        let decoded = decoder.finish().expect("DROPMALFORMED never fails");
        assert!(decoded.batches.len() <= 1);
        (decoded.batches.into_iter().next(), flat)
    }

    const BASE: &str = r#"{"s":"BTCUSDT","f":65000.25,"i":-12,"t":1764320400000,"b":true,"x":"y"}"#;

    /// Records around `BASE`: every byte deleted, and each of a set of snippets inserted at
    /// every position, plus hand-written cases.
    fn variants() -> Vec<Vec<u8>> {
        let base = BASE.as_bytes();
        let mut records = Vec::new();
        for i in 0..base.len() {
            let mut deleted = base.to_vec();
            deleted.remove(i);
            records.push(deleted);
            for snippet in [
                " ",
                "\t",
                "0",
                "-",
                ".",
                "e",
                "+",
                "1",
                "\"",
                "\\",
                ",",
                ":",
                "{",
                "}",
                "[",
                "]",
                "x",
                "é",
                "\u{1}",
                "null",
                "true",
                ",\"s\":\"a\"",
                "\"5\"",
                "1e400",
                "\u{a0}",
            ] {
                let mut inserted = base.to_vec();
                inserted.splice(i..i, snippet.bytes());
                records.push(inserted);
            }
        }
        for text in [
            "{}",
            " { } ",
            r#"{"s":1.50,"f":"2.5","i":7,"t":0,"b":false}"#,
            r#"{"s":true,"f":null,"i":null,"t":null,"b":null}"#,
            r#" {"f" : 1 , "s" : null } "#,
            r#"{"s":"a\"b"}"#,
            r#"{"s":"a\u0062"}"#,
            r#"{"f":"abc"}"#,
            r#"{"f":" 2.5"}"#,
            r#"{"f":1E+2,"i":9223372036854775807}"#,
            r#"{"i":9223372036854775808}"#,
            r#"{"i":1.5}"#,
            r#"{"i":"7"}"#,
            r#"{"b":"true"}"#,
            r#"{"t":"2025-01-01T00:00:00"}"#,
            r#"{"s":"a","s":"b"}"#,
            r#"{"x":1,"x":2}"#,
            r#"{"x":{"y":1}}"#,
            r#"{"x":[1]}"#,
            r#"{"s":"a",,"f":1}"#,
            r#"{"s":"a",}"#,
            r#"{"s":"a"} {"s":"b"}"#,
            "[1]",
            "5",
            "{\"s\":\"caf\u{e9}\"}",
            "{\"s\":\"a\tb\"}",
            "{\"s\":-0,\"f\":-0.0e-0}",
        ] {
            records.push(text.as_bytes().to_vec());
        }
        let mut invalid = br#"{"s":"ab"}"#.to_vec();
        invalid[6] = 0xff;
        records.push(invalid);
        records
    }

    #[test]
    fn every_record_decodes_as_the_general_path_decodes_it() {
        let schema = schema();
        let mut flat = 0;
        for record in variants() {
            let text = String::from_utf8_lossy(&record);
            let (decoded, took_flat) = sluice(&schema, &record);
            flat += usize::from(took_flat);
            assert_eq!(decoded, general(&schema, &record), "{text}");
        }
        // The test would prove little if the flat path refused everything.
        assert!(flat > 100, "only {flat} records took the flat path");
    }

    #[test]
    fn flat_records_take_the_flat_path_and_others_do_not() {
        let schema = schema();
        for accepted in [
            BASE,
            "{}",
            r#"{"s":1.50,"f":2.5,"i":7,"t":0,"b":false}"#,
            r#" {"f" : 1 , "s" : null } "#,
        ] {
            assert!(sluice(&schema, accepted.as_bytes()).1, "{accepted}");
        }
        for refused in [
            r#"{"s":"a\"b"}"#,
            r#"{"x":{"y":1}}"#,
            r#"{"s":"a","s":"b"}"#,
            r#"{"i":1.5}"#,
            r#"{"f":"2.5"}"#,
            r#"{"b":"true"}"#,
            r#"{"s":"a""#,
            r#"{"s":"a"} x"#,
        ] {
            assert!(!sluice(&schema, refused.as_bytes()).1, "{refused}");
        }
        let nested = Arc::new(Schema::new(vec![Field::new(
            "l",
            DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
            true,
        )]));
        let (decoded, flat) = sluice(&nested, br#"{"l":[1,2]}"#);
        assert!(!flat, "a list column takes arrow-json's path");
        assert!(decoded.is_some());
        // Two columns of one name: arrow-json fills the first with the last value.
        let twice = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("a", DataType::Int64, true),
        ]));
        let (decoded, flat) = sluice(&twice, br#"{"a":1,"a":2}"#);
        assert!(
            !flat,
            "a schema naming a column twice takes arrow-json's path"
        );
        assert_eq!(decoded, general(&twice, br#"{"a":1,"a":2}"#));
    }

    #[test]
    fn numbers_convert_bit_for_bit_as_arrow_json_converts_them() {
        let mut texts: Vec<String> = [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1e5",
            "0.1",
            "0.30000000000000004",
            "9007199254740992",
            "9007199254740993",
            "9007199254740993.5",
            "0.00000000000000000000001",
            "1234567890123456789",
            "12345678901234567890",
            "123456789012345678901234",
            "1.7976931348623157e308",
            "5e-324",
            "9223372036854775807",
            "-9223372036854775808",
            "9223372036854775808",
        ]
        .map(String::from)
        .to_vec();
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let integer = next() % 10u64.pow((next() % 19) as u32 + 1);
            let fraction = (next() % 24) as usize;
            let decimals: String = (0..fraction)
                .map(|_| char::from(b'0' + (next() % 10) as u8))
                .collect();
            let sign = if next() % 2 == 0 { "-" } else { "" };
            texts.push(match fraction {
                0 => format!("{sign}{integer}"),
                _ => format!("{sign}{integer}.{decimals}"),
            });
        }
        let schema = schema();
        // One record per chunk, so that a record arrow-json decodes sends no other there.
        let options = JsonOptions {
            batch_size: 1,
            ..JsonOptions::default()
        };
        let mut decoder = JsonDecoder::new(Arc::clone(&schema), options).unwrap();
        // Out-of-range integers are malformed: PERMISSIVE keeps the fields that convert, as
        // arrow-json ignoring type conflicts does.
        let mut reference = ReaderBuilder::new(Arc::clone(&schema))
            .with_coerce_primitive(true)
            .with_ignore_type_conflicts(true)
            .with_batch_size(texts.len() + 1)
            .build_decoder()
            .unwrap();
        for text in &texts {
            // Integers also go to `i` (a fraction there would send the record to arrow-json).
            let record = match text.contains(['.', 'e']) {
                true => format!(r#"{{"f":{text},"s":{text}}}"#),
                false => format!(r#"{{"f":{text},"i":{text},"s":{text}}}"#),
            };
            decoder.push(record.as_bytes()).unwrap();
            assert_eq!(reference.decode(record.as_bytes()).unwrap(), record.len());
        }
        let decoded = decoder.finish().unwrap();
        let expected = reference.flush().unwrap().unwrap();
        let actual = arrow::compute::concat_batches(&schema, &decoded.batches).unwrap();
        for column in 0..3 {
            assert_eq!(
                actual.column(column).to_data(),
                expected.column(column).to_data(),
                "column {column}"
            );
        }
        // All but the integers out of Int64's range.
        assert!(
            decoder.flat_path_records() > 19_000,
            "{}",
            decoder.flat_path_records()
        );
    }
}

/// A value nested `depth` levels deep in column `ts` of an otherwise good record.
fn nested(depth: usize) -> String {
    format!(
        r#"{{"symbol":"N","price":1.0,"ts":{}1{}}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

#[test]
fn a_record_nested_past_max_depth_is_malformed_before_any_parser_sees_it() {
    // 100,000 levels: enough to overflow any recursive parser's stack; brackets inside a
    // string do not count.
    let hostile = nested(100_000);
    let good = r#"{"symbol":"A","price":1.5,"ts":1}"#;
    let in_string = format!(r#"{{"symbol":"{}","price":2.5,"ts":2}}"#, "[".repeat(5_000));
    for (mode, rows) in [(ParseMode::Permissive, 3), (ParseMode::DropMalformed, 2)] {
        for batch_size in [1, 8192] {
            let mut decoder = JsonDecoder::new(schema(), options(mode, true, batch_size)).unwrap();
            for record in [good, hostile.as_str(), in_string.as_str()] {
                decoder.push(record.as_bytes()).unwrap();
            }
            let decoded = decoder.finish().unwrap();
            let total: usize = decoded.batches.iter().map(|b| b.num_rows()).sum();
            assert_eq!(total, rows, "{mode:?}, batch size {batch_size}");
            assert_eq!(decoded.malformed.count, 1);
            assert_eq!(
                decoded.malformed.first_error.as_deref(),
                Some("nested deeper than max_depth (1000 levels)")
            );
        }
    }
    let mut decoder =
        JsonDecoder::new(schema(), options(ParseMode::FailFast, false, 8192)).unwrap();
    decoder.push(good.as_bytes()).unwrap();
    decoder.push(hostile.as_bytes()).unwrap();
    match decoder.finish() {
        Err(SluiceError::MalformedRecord {
            position, reason, ..
        }) => {
            assert_eq!(position, 2);
            assert_eq!(reason, "nested deeper than max_depth (1000 levels)");
        }
        other => panic!("expected a malformed-record error, got {other:?}"),
    }
}

#[test]
fn nesting_up_to_max_depth_parses_and_the_limits_are_options() {
    // 1000 levels with the object is allowed (a type conflict for a BIGINT column, so a
    // partial row in PERMISSIVE); 1001 is refused before parsing: a row of nulls. Checked with
    // pyspark 4.0.1 on the same lines: `N, 1.0, null` then `null, null, null`, both with their
    // text in `_corrupt_record`.
    let mut decoder =
        JsonDecoder::new(schema(), options(ParseMode::Permissive, true, 8192)).unwrap();
    decoder.push(nested(999).as_bytes()).unwrap();
    decoder.push(nested(1000).as_bytes()).unwrap();
    let decoded = decoder.finish().unwrap();
    assert_eq!(decoded.malformed.count, 2);
    let batch =
        arrow::compute::concat_batches(&decoded.batches[0].schema(), &decoded.batches).unwrap();
    let symbol = batch.column(0);
    let price = batch.column(1);
    assert_eq!(
        (
            symbol.is_valid(0),
            price.is_valid(0),
            batch.column(2).is_valid(0)
        ),
        (true, true, false),
        "partial row"
    );
    assert_eq!(
        (
            symbol.is_valid(1),
            price.is_valid(1),
            batch.column(2).is_valid(1)
        ),
        (false, false, false),
        "row of nulls"
    );
    assert!(batch.column(3).is_valid(0) && batch.column(3).is_valid(1));
    assert_ne!(
        decoded.malformed.first_error.as_deref(),
        Some("nested deeper than max_depth (1000 levels)"),
        "999 levels inside the record (1000 with the object) reach the parser"
    );

    let limited = JsonOptions {
        max_depth: 2,
        max_record_bytes: 40,
        ..JsonOptions::default()
    };
    let mut decoder = JsonDecoder::new(schema(), limited).unwrap();
    decoder
        .push(br#"{"symbol":"A","price":1.5,"ts":1}"#)
        .unwrap();
    decoder.push(br#"{"symbol":"B","price":[[2.5]]}"#).unwrap();
    decoder
        .push(br#"{"symbol":"CCCCCCCCCCCCCCCCCCCC","price":3.5}"#)
        .unwrap();
    let decoded = decoder.finish().unwrap();
    assert_eq!(decoded.malformed.count, 2);
    assert_eq!(
        decoded.malformed.first_error.as_deref(),
        Some("nested deeper than max_depth (2 levels)")
    );
    let zero = JsonOptions {
        max_depth: 0,
        ..JsonOptions::default()
    };
    assert!(JsonDecoder::new(schema(), zero).is_err());
}

/// `decode_lines` in parts on several threads gives what one decoder gives: rows, malformed
/// counts and sample, record positions, and FAILFAST's first malformed line.
#[test]
fn decoding_in_parts_equals_one_decoder() {
    // Spark's line endings, blank lines and malformed records, over enough bytes for parts.
    let unit = INPUT
        .replace("garbage\n", "garbage\r\n")
        .replace("7\n{", "7\r{");
    let input = unit.repeat(20_000);
    for (mode, corrupt) in [
        (ParseMode::Permissive, true),
        (ParseMode::Permissive, false),
        (ParseMode::DropMalformed, false),
        (ParseMode::FailFast, false),
    ] {
        let mut one = JsonDecoder::new(schema(), options(mode, corrupt, 1000)).unwrap();
        one.set_context("file.jsonl");
        let expected = one.push_lines(input.as_bytes()).and_then(|()| one.finish());
        let mut parts = JsonDecoder::new(schema(), options(mode, corrupt, 1000)).unwrap();
        parts.set_context("file.jsonl");
        for threads in [2, 3, 4] {
            let actual = parts.decode_lines(input.as_bytes(), threads);
            match (&expected, actual) {
                (Ok(expected), Ok(actual)) => {
                    assert_eq!(
                        render(&actual.batches),
                        render(&expected.batches),
                        "{mode:?}"
                    );
                    assert_eq!(actual.malformed, expected.malformed, "{mode:?}");
                    assert_eq!(
                        actual.record_positions, expected.record_positions,
                        "{mode:?}"
                    );
                }
                (Err(expected), Err(actual)) => {
                    assert_eq!(actual.to_string(), expected.to_string(), "{mode:?}");
                }
                (expected, actual) => panic!("{mode:?}: {expected:?} / {actual:?}"),
            }
        }
    }
    // A FAILFAST failure in a later part names its line in the whole input.
    let input = "{\"symbol\":\"A\",\"price\":1.5,\"ts\":1}\n".repeat(40_000) + "garbage\n";
    let mut parts = JsonDecoder::new(schema(), options(ParseMode::FailFast, false, 1000)).unwrap();
    let error = parts
        .decode_lines(input.as_bytes(), 4)
        .unwrap_err()
        .to_string();
    assert!(error.contains("40001"), "{error}");
    // The decoder is usable again.
    let good = parts
        .decode_lines(&input.as_bytes()[..input.len() - 8], 4)
        .unwrap();
    assert_eq!(
        good.batches.iter().map(|b| b.num_rows()).sum::<usize>(),
        40_000
    );
}
