//! The JSON reader against Spark 4.0: every kind of record where arrow-json's leniency and
//! Spark's differ, in each parse mode. The expected rows are what `pyspark==4.0.1` read from
//! the same file (`spark.read.schema(…).option("mode", …).json(…)`, schema `s STRING,
//! n BIGINT, x DOUBLE, b BOOLEAN, _corrupt_record STRING`).

use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use sluice_engine::{JsonDecoder, JsonOptions, ParseMode, SluiceError};

/// The records, one per line as in the file given to Spark (plus the first, after a byte
/// order mark, and two separated by a lone carriage return).
const CASES: &[&str] = &[
    r#"{"s":"float-in-bigint","n":1704067224143.0,"x":1.0}"#,
    r#"{"s":"frac-in-bigint","n":1.5,"x":1.0}"#,
    r#"{"s":"exp-in-bigint","n":1e3,"x":1.0}"#,
    r#"{"s":"big-in-bigint","n":9223372036854775808,"x":1.0}"#,
    r#"{"s":"numstr-in-double","n":1,"x":"0.1288928"}"#,
    r#"{"s":"nan-str","n":1,"x":"NaN"}"#,
    r#"{"s":"inf-strs","n":1,"x":"+INF"}"#,
    r#"{"s":"inf-strs2","n":1,"x":"-Infinity"}"#,
    r#"{"s":"inf-str3","n":1,"x":"Infinity"}"#,
    r#"{"s":"inf-str4","n":1,"x":"INF"}"#,
    r#"{"s":"bare-nan","n":1,"x":NaN}"#,
    r#"{"s":"bare-inf","n":1,"x":-Infinity}"#,
    r#"{"s":"bare-pinf","n":1,"x":+Infinity}"#,
    r#"{"s":"bare-inf-bigint","n":Infinity,"x":1.0}"#,
    r#"{"s":{"nested":[1, 2.50, "a", "\u0041"]},"n":1,"x":1.0}"#,
    r#"{"s":[1,2],"n":1}"#,
    r#"{"s":"lead0","n":007}"#,
    r#"{"s":"lead0-double","x":01.5}"#,
    "{\"s\":\"ctrl\tchar\",\"n\":1}",
    r#"[{"s":"arr1","n":1},{"s":"arr2","n":2}]"#,
    r#"[]"#,
    r#"[{"s":"arr3"},5]"#,
    r#"{"s":"two","n":1} {"s":"objects","n":2}"#,
    r#"{"s":"trailing","n":1} garbage"#,
    r#"{"s":"bool-str","b":"true"}"#,
    r#"{"s":"int-in-bool","b":1}"#,
    r#"{"s":"bool-in-double","x":true}"#,
    r#"{"s":"empty-str-double","x":""}"#,
    r#"{"s":"str-in-bigint","n":"5"}"#,
    r#"{"s":12.50,"n":1}"#,
    r#"{"s":true}"#,
    r#"{"s":"neg-zero","n":-0,"x":-0.0}"#,
    r#"{"s":"dup","n":1,"n":2}"#,
    r#""just a string""#,
    r#"5"#,
    r#"{"s":"exp-double","x":1E3}"#,
    r#"{"s":"num-str-1e3","s2":1, "x":"1e3"}"#,
    r#"{'s':'single','n':1}"#,
    r#"{"s":"inf-tok","x":-INF}"#,
    r#"{"s":"pinf-tok","x":+INF}"#,
    r#"{"s":"INF-tok","x":INF}"#,
    r#"[{"s":"one","n":1}]"#,
    r#"{"s":"dupfail","n":2,"n":1.5}"#,
];

/// The file as Spark read it.
fn file() -> Vec<u8> {
    let mut bytes = b"\xef\xbb\xbf{\"s\":\"bom\",\"n\":1}\n".to_vec();
    for line in CASES {
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
    }
    bytes.extend_from_slice(b"{\"s\":\"cr1\",\"n\":1}\r{\"s\":\"cr2\",\"n\":2}\n");
    bytes.extend_from_slice(b"\xef\xbb\xbf{\"s\":\"bom-mid\",\"n\":1}\n");
    bytes
}

/// pyspark's rows in PERMISSIVE mode, as `(s, n, x, b, _corrupt_record)`.
const PERMISSIVE: &[&str] = &[
    r#"("bom", 1, None, None, None)"#,
    r#"("float-in-bigint", None, 1.0, None, '{"s":"float-in-bigint","n":1704067224143.0,"x":1.0}')"#,
    r#"("frac-in-bigint", None, 1.0, None, '{"s":"frac-in-bigint","n":1.5,"x":1.0}')"#,
    r#"("exp-in-bigint", None, 1.0, None, '{"s":"exp-in-bigint","n":1e3,"x":1.0}')"#,
    r#"("big-in-bigint", None, 1.0, None, '{"s":"big-in-bigint","n":9223372036854775808,"x":1.0}')"#,
    r#"("numstr-in-double", 1, None, None, '{"s":"numstr-in-double","n":1,"x":"0.1288928"}')"#,
    r#"("nan-str", 1, nan, None, None)"#,
    r#"("inf-strs", 1, inf, None, None)"#,
    r#"("inf-strs2", 1, -inf, None, None)"#,
    r#"("inf-str3", 1, inf, None, None)"#,
    r#"("inf-str4", 1, None, None, '{"s":"inf-str4","n":1,"x":"INF"}')"#,
    r#"("bare-nan", 1, nan, None, None)"#,
    r#"("bare-inf", 1, -inf, None, None)"#,
    r#"("bare-pinf", 1, inf, None, None)"#,
    r#"("bare-inf-bigint", None, 1.0, None, '{"s":"bare-inf-bigint","n":Infinity,"x":1.0}')"#,
    r#"("{\"nested\":[1, 2.50, \"a\", \"\\u0041\"]}", 1, 1.0, None, None)"#,
    r#"("[1,2]", 1, None, None, None)"#,
    r#"(None, None, None, None, '{"s":"lead0","n":007}')"#,
    r#"(None, None, None, None, '{"s":"lead0-double","x":01.5}')"#,
    "(None, None, None, None, '{\"s\":\"ctrl\tchar\",\"n\":1}')",
    r#"("arr1", 1, None, None, None)"#,
    r#"("arr2", 2, None, None, None)"#,
    r#"(None, None, None, None, '[{"s":"arr3"},5]')"#,
    r#"("two", 1, None, None, None)"#,
    r#"("trailing", 1, None, None, None)"#,
    r#"("bool-str", None, None, None, '{"s":"bool-str","b":"true"}')"#,
    r#"("int-in-bool", None, None, None, '{"s":"int-in-bool","b":1}')"#,
    r#"("bool-in-double", None, None, None, '{"s":"bool-in-double","x":true}')"#,
    r#"("empty-str-double", None, None, None, '{"s":"empty-str-double","x":""}')"#,
    r#"("str-in-bigint", None, None, None, '{"s":"str-in-bigint","n":"5"}')"#,
    r#"("12.50", 1, None, None, None)"#,
    r#"("true", None, None, None, None)"#,
    r#"("neg-zero", 0, -0.0, None, None)"#,
    r#"("dup", 2, None, None, None)"#,
    r#"(None, None, None, None, '"just a string"')"#,
    r#"(None, None, None, None, '5')"#,
    r#"("exp-double", None, 1000.0, None, None)"#,
    r#"("num-str-1e3", None, None, None, '{"s":"num-str-1e3","s2":1, "x":"1e3"}')"#,
    r#"("single", 1, None, None, None)"#,
    r#"("inf-tok", None, -inf, None, None)"#,
    r#"("pinf-tok", None, inf, None, None)"#,
    r#"(None, None, None, None, '{"s":"INF-tok","x":INF}')"#,
    r#"("one", 1, None, None, None)"#,
    r#"("dupfail", 2, None, None, '{"s":"dupfail","n":2,"n":1.5}')"#,
    r#"("cr1", 1, None, None, None)"#,
    r#"("cr2", 2, None, None, None)"#,
    r#"("bom-mid", 1, None, None, None)"#,
];

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("s", DataType::Utf8, true),
        Field::new("n", DataType::Int64, true),
        Field::new("x", DataType::Float64, true),
        Field::new("b", DataType::Boolean, true),
    ]))
}

/// The rows of `batches` as Python prints pyspark's rows.
fn rows(batches: &[RecordBatch]) -> Vec<String> {
    let mut rows = Vec::new();
    let text = |value: Option<&str>, quote: char| match value {
        None => "None".to_string(),
        Some(v) => format!(
            "{quote}{}{quote}",
            v.replace('\\', "\\\\")
                .replace(quote, &format!("\\{quote}"))
        ),
    };
    for batch in batches {
        let s = batch.column(0).as_string::<i32>();
        let n = batch.column(1).as_primitive::<Int64Type>();
        let x = batch.column(2).as_primitive::<Float64Type>();
        let b = batch.column(3).as_boolean();
        let corrupt = batch.column(4).as_string::<i32>();
        for row in 0..batch.num_rows() {
            let x = match x.is_valid(row).then(|| x.value(row)) {
                None => "None".to_string(),
                Some(v) if v.is_nan() => "nan".into(),
                Some(v) => format!("{v:?}"),
            };
            rows.push(format!(
                "({}, {}, {x}, {}, {})",
                text(s.is_valid(row).then(|| s.value(row)), '"'),
                if n.is_valid(row) {
                    n.value(row).to_string()
                } else {
                    "None".into()
                },
                match b.is_valid(row).then(|| b.value(row)) {
                    None => "None",
                    Some(true) => "True",
                    Some(false) => "False",
                },
                text(corrupt.is_valid(row).then(|| corrupt.value(row)), '\''),
            ));
        }
    }
    rows
}

fn decode(mode: ParseMode, batch_size: usize) -> sluice_engine::Result<(Vec<String>, u64)> {
    let options = JsonOptions {
        mode,
        corrupt_record_column: Some("_corrupt_record".into()),
        batch_size,
        ..JsonOptions::default()
    };
    let mut decoder = JsonDecoder::new(schema(), options)?;
    decoder.push_lines(&file())?;
    let decoded = decoder.finish()?;
    Ok((rows(&decoded.batches), decoded.malformed.count))
}

#[test]
fn permissive_reads_every_case_as_spark() {
    for batch_size in [8192, 5, 1] {
        let (rows, malformed) = decode(ParseMode::Permissive, batch_size).unwrap();
        for (i, (got, want)) in rows.iter().zip(PERMISSIVE).enumerate() {
            assert_eq!(got, want, "row {i}, batch_size {batch_size}");
        }
        assert_eq!(rows.len(), PERMISSIVE.len(), "batch_size {batch_size}");
        let corrupt = PERMISSIVE.iter().filter(|r| !r.ends_with("None)")).count();
        assert_eq!(malformed, corrupt as u64, "batch_size {batch_size}");
    }
}

#[test]
fn dropmalformed_keeps_what_spark_keeps() {
    let (rows, malformed) = decode(ParseMode::DropMalformed, 4).unwrap();
    let kept: Vec<&str> = PERMISSIVE
        .iter()
        .copied()
        .filter(|r| r.ends_with("None)"))
        .collect();
    assert_eq!(rows, kept);
    assert_eq!(malformed as usize, PERMISSIVE.len() - kept.len());
}

#[test]
fn failfast_stops_at_the_first_record_spark_rejects() {
    match decode(ParseMode::FailFast, 8192) {
        Err(SluiceError::MalformedRecord {
            position, reason, ..
        }) => {
            assert_eq!(position, 2, "the float in the BIGINT column, line 2");
            assert!(reason.contains("field 'n'"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

/// An empty array after flat records gives no row, and loses none of theirs.
#[test]
fn an_empty_array_gives_no_row() {
    let mut decoder = JsonDecoder::new(
        schema(),
        JsonOptions {
            batch_size: 2,
            ..JsonOptions::default()
        },
    )
    .unwrap();
    decoder.push(br#"{"s":"a","n":1}"#).unwrap();
    decoder.push(b"[]").unwrap();
    decoder.push(br#"{"s":"b","n":2}"#).unwrap();
    let decoded = decoder.finish().unwrap();
    let rows: usize = decoded.batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!((rows, decoded.record_positions), (2, vec![1, 3]));
    assert_eq!(decoded.malformed.count, 0);
}

#[test]
fn numeric_strings_convert_when_asked() {
    let options = JsonOptions {
        allow_numeric_strings: true,
        ..JsonOptions::default()
    };
    let mut decoder = JsonDecoder::new(schema(), options).unwrap();
    for record in [
        r#"{"s":"a","n":"5","x":"0.1288928"}"#,
        r#"{"s":"b","n":"5.5","x":"x"}"#,
    ] {
        decoder.push(record.as_bytes()).unwrap();
    }
    let decoded = decoder.finish().unwrap();
    let batch = &decoded.batches[0];
    let n = batch.column(1).as_primitive::<Int64Type>();
    let x = batch.column(2).as_primitive::<Float64Type>();
    assert_eq!((n.value(0), x.value(0)), (5, 0.1288928));
    assert!(n.is_null(1) && x.is_null(1), "not numbers: malformed");
    assert_eq!(decoded.malformed.count, 1);
}

/// Nested columns (`STRUCT`, `ARRAY`, `MAP`, nested in each other), as pyspark 4.0.1 read the
/// same lines with schema `id BIGINT, s STRUCT<a: INT, b: STRING>, l ARRAY<INT>,
/// m MAP<STRING, DOUBLE>` (then `ls ARRAY<STRUCT<…>>, ss STRUCT<inner: STRUCT<…>, c: INT>,
/// ms MAP<STRING, STRUCT<…>>`): the rows as Spark's `toJSON` writes them (null fields left
/// out), and whether each is malformed. A struct's field that does not convert is null in a
/// kept struct; an array element or map value that does not convert (or has the wrong shape)
/// makes the whole array or map null.
#[test]
fn nested_columns_read_as_spark() {
    use arrow::datatypes::Fields;

    let ab = || {
        DataType::Struct(Fields::from(vec![
            Field::new("a", DataType::Int32, true),
            Field::new("b", DataType::Utf8, true),
        ]))
    };
    let list = |item: DataType| DataType::List(Arc::new(Field::new("item", item, true)));
    let map = |value: DataType| {
        DataType::Map(
            Arc::new(Field::new(
                "entries",
                DataType::Struct(Fields::from(vec![
                    Field::new("keys", DataType::Utf8, false),
                    Field::new("values", value, true),
                ])),
                false,
            )),
            false,
        )
    };
    let flat = Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("s", ab(), true),
        Field::new("l", list(DataType::Int32), true),
        Field::new("m", map(DataType::Float64), true),
    ]);
    let deep = Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("ls", list(ab()), true),
        Field::new(
            "ss",
            DataType::Struct(Fields::from(vec![
                Field::new("inner", ab(), true),
                Field::new("c", DataType::Int32, true),
            ])),
            true,
        ),
        Field::new("ms", map(ab()), true),
    ]);
    /// A line, Spark's row as `toJSON` wrote it, and whether it is malformed.
    type Case<'a> = (&'a str, &'a str, bool);
    let cases: [(&Schema, &[Case]); 2] = [
        (
            &flat,
            &[
                (
                    r#"{"id":1,"s":{"a":1,"b":"x"},"l":[1,2],"m":{"k1":1.5,"k2":2}}"#,
                    r#"{"id":1,"s":{"a":1,"b":"x"},"l":[1,2],"m":{"k1":1.5,"k2":2.0}}"#,
                    false,
                ),
                (
                    r#"{"id":2,"s":{"a":1.5,"b":"x"},"l":[1,2],"m":{"k1":1}}"#,
                    r#"{"id":2,"s":{"b":"x"},"l":[1,2],"m":{"k1":1.0}}"#,
                    true,
                ),
                (
                    r#"{"id":3,"s":{"a":1,"b":"x"},"l":[1,"x",3],"m":{"k1":1}}"#,
                    r#"{"id":3,"s":{"a":1,"b":"x"},"m":{"k1":1.0}}"#,
                    true,
                ),
                (
                    r#"{"id":4,"s":{"a":1,"b":"x"},"l":[1,2],"m":{"k1":"oops","k2":3}}"#,
                    r#"{"id":4,"s":{"a":1,"b":"x"},"l":[1,2]}"#,
                    true,
                ),
                (
                    r#"{"id":5,"s":"notastruct","l":"notalist","m":[1,2]}"#,
                    r#"{"id":5}"#,
                    true,
                ),
                (
                    r#"{"id":6,"s":null,"l":null,"m":null}"#,
                    r#"{"id":6}"#,
                    false,
                ),
                (
                    r#"{"id":7,"s":{"a":1,"extra":{"z":1}},"l":[],"m":{}}"#,
                    r#"{"id":7,"s":{"a":1},"l":[],"m":{}}"#,
                    false,
                ),
                (
                    r#"{"id":8,"s":{"A":5,"b":{"n":1}},"l":[null,4],"m":{"k":null}}"#,
                    // Spark writes `"m":{"k":null}`; arrow-json's writer leaves out null map
                    // values as it does null fields (the entry is checked below).
                    r#"{"id":8,"s":{"b":"{\"n\":1}"},"l":[null,4],"m":{}}"#,
                    false,
                ),
                (
                    r#"{"id":9,"s":{"a":"7","b":true},"l":[1.0],"m":{"k":"NaN"}}"#,
                    // Spark writes NaN as "NaN"; arrow-json's writer as null (checked below).
                    r#"{"id":9,"s":{"b":"true"},"m":{"k":null}}"#,
                    true,
                ),
                (
                    r#"{"id":10,"m":{"k":1,"k":2}}"#,
                    r#"{"id":10,"m":{"k":1.0,"k":2.0}}"#,
                    false,
                ),
            ],
        ),
        (
            &deep,
            &[
                (
                    r#"{"id":1,"ls":[{"a":1.5,"b":"x"},{"a":2,"b":"y"}],"ss":{"inner":{"a":1.5,"b":"z"},"c":3},"ms":{"k":{"a":1.5,"b":"w"}}}"#,
                    r#"{"id":1,"ls":[{"b":"x"},{"a":2,"b":"y"}],"ss":{"inner":{"b":"z"},"c":3},"ms":{"k":{"b":"w"}}}"#,
                    true,
                ),
                (
                    r#"{"id":2,"ls":[{"a":1,"b":"x"},"str"],"ss":{"inner":"str","c":3},"ms":{"k":"str"}}"#,
                    r#"{"id":2,"ss":{"c":3}}"#,
                    true,
                ),
                (
                    r#"{"id":3,"ls":[[1]],"ss":{"inner":{"a":1},"c":"q"},"ms":{"k":{"a":1}}}"#,
                    r#"{"id":3,"ss":{"inner":{"a":1}},"ms":{"k":{"a":1}}}"#,
                    true,
                ),
                (
                    r#"{"id":4,"ls":[{'a':1,"b":'sq'}],"ss":{"inner":{"a":NaN},"c":1},"ms":{"k":{"a":1,"b":NaN}}}"#,
                    r#"{"id":4,"ls":[{"a":1,"b":"sq"}],"ss":{"inner":{},"c":1},"ms":{"k":{"a":1,"b":"NaN"}}}"#,
                    true,
                ),
            ],
        ),
    ];
    for (schema, lines) in cases {
        let options = JsonOptions {
            corrupt_record_column: Some("_corrupt_record".into()),
            ..JsonOptions::default()
        };
        let mut decoder = JsonDecoder::new(Arc::new(schema.clone()), options).unwrap();
        for (line, _, _) in lines {
            decoder.push(line.as_bytes()).unwrap();
        }
        let decoded = decoder.finish().unwrap();
        let mut json = Vec::new();
        {
            let mut writer = arrow_json::LineDelimitedWriter::new(&mut json);
            for batch in &decoded.batches {
                // Written without the corrupt-record column, checked on its own below.
                writer
                    .write(
                        &batch
                            .project(&(0..schema.fields().len()).collect::<Vec<_>>())
                            .unwrap(),
                    )
                    .unwrap();
            }
            writer.finish().unwrap();
        }
        let got: Vec<String> = String::from_utf8(json)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        let corrupt: Vec<bool> = decoded
            .batches
            .iter()
            .flat_map(|b| {
                let c = b.column(schema.fields().len()).as_string::<i32>().clone();
                (0..c.len()).map(move |i| c.is_valid(i))
            })
            .collect();
        for (i, (_, want, malformed)) in lines.iter().enumerate() {
            assert_eq!(got[i], *want, "row {i}");
            assert_eq!(corrupt[i], *malformed, "row {i} malformed");
        }
        if schema == &flat {
            let map = decoded.batches[0].column(3).as_map();
            assert_eq!(
                map.value_length(7),
                1,
                "row 8 keeps its key with a null value"
            );
            // Spark keeps both entries of a repeated key (a lookup finds the first).
            assert_eq!(map.value_length(9), 2, "row 10 keeps both entries of key k");
            let nan = map.value(8);
            let nan = nan.column(1).as_primitive::<Float64Type>();
            assert!(
                nan.value(0).is_nan(),
                "row 9: the string NaN is a NaN double"
            );
        }
    }
}
