//! Source column types: Spark's nested types `ARRAY<…>`, `MAP<VARCHAR, …>` and
//! `STRUCT<name: type, …>` in a column list, read from JSON and queried in SQL.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type, Int32Type};
use sluice_engine::{Source as _, Trigger};
use sluice_pipeline::{Pipeline, Variables};

use crate::starts;

#[tokio::test]
async fn nested_columns_are_read_and_queried() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(
        dir.path().join("in/0.json"),
        concat!(
            r#"{"id":1,"quote":{"bid":1.5,"ask":2.5,"Venue":"X"},"levels":[[1,2],[3]],"tags":{"k":1.25}}"#,
            "\n",
            r#"{"id":2,"quote":{"bid":"bad","ask":3.0},"levels":[[4]],"tags":{"k":"oops"}}"#,
            "\n",
        ),
    )
    .unwrap();
    let text = format!(
        "SET checkpoint = 'none';\n\
         CREATE TABLE t (\n\
           id BIGINT,\n\
           quote STRUCT<bid: DOUBLE, ask DOUBLE, \"Venue\": VARCHAR>,\n\
           levels ARRAY<ARRAY<INT>>,\n\
           tags MAP<VARCHAR, DOUBLE>\n\
         ) WITH (connector = 'file', path = '{}');\n\
         CREATE TABLE out WITH (connector = 'memory');\n\
         INSERT INTO out SELECT id, quote['bid'] AS bid, quote['ask'] AS ask, quote['Venue'] AS venue,\n\
           levels[1][2] AS second, cardinality(levels) AS n, tags['k'] AS k FROM t;",
        dir.path().join("in").display()
    );
    let mut pipeline = Pipeline::parse("job.sql", &text, &Variables::none()).unwrap();
    let source = pipeline.memory_source("t");
    assert!(source.is_none(), "a file source");
    let out = pipeline.memory_sink("out").unwrap();
    pipeline.override_trigger(Trigger::AvailableNow);
    for query in pipeline.start().await.unwrap() {
        query.await_termination().await.unwrap();
    }
    let batches = out.all_rows();
    let batch = &arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    assert_eq!(batch.num_rows(), 2);
    let f64s = |c: usize| batch.column(c).as_primitive::<Float64Type>().clone();
    let (bid, ask) = (f64s(1), f64s(2));
    assert_eq!((bid.value(0), ask.value(0)), (1.5, 2.5));
    // Spark's partial results: the struct's unreadable field is null, the struct kept.
    assert!(bid.is_null(1));
    assert_eq!(ask.value(1), 3.0);
    assert_eq!(
        arrow::compute::cast(batch.column(3), &DataType::Utf8)
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "X"
    );
    let second = batch.column(4).as_primitive::<Int32Type>();
    assert_eq!(second.value(0), 2);
    assert!(second.is_null(1));
    let k = arrow::compute::cast(batch.column(6), &DataType::Float64).unwrap();
    let k = k.as_primitive::<Float64Type>();
    assert_eq!(k.value(0), 1.25);
    // A map value that does not convert loses the whole map, as in Spark.
    assert!(k.is_null(1));
}

/// The error of loading a source whose columns are `columns`.
fn error(columns: &str) -> String {
    let text = format!(
        "CREATE TABLE t ({columns}) WITH (connector = 'memory');\n\
         CREATE TABLE out WITH (connector = 'memory');\n\
         INSERT INTO out SELECT * FROM t;"
    );
    match Pipeline::parse("job.sql", &text, &Variables::none()) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn nested_types_parse_with_their_fields_and_refuse_mistakes() {
    let text = "CREATE TABLE t (a ARRAY<ARRAY<BIGINT>>, m MAP<VARCHAR, STRUCT<x: INT, \"Y\" DOUBLE>>,\n\
                s STRUCT<inner: STRUCT<ts: TIMESTAMP(3)>>) WITH (connector = 'memory');\n\
                CREATE TABLE out WITH (connector = 'memory');\n\
                INSERT INTO out SELECT * FROM t;";
    let pipeline = Pipeline::parse("job.sql", text, &Variables::none()).unwrap();
    let schema = pipeline.memory_source("t").unwrap().schema();
    assert_eq!(schema.field(0).data_type().to_string(), "List(List(Int64))");
    let DataType::Map(entries, _) = schema.field(1).data_type() else {
        panic!("a map: {schema:?}")
    };
    let DataType::Struct(kv) = entries.data_type() else {
        panic!("map entries")
    };
    let DataType::Struct(value) = kv[1].data_type() else {
        panic!("struct values")
    };
    let names: Vec<&str> = value.iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["x", "Y"]);
    assert!(
        schema
            .field(2)
            .data_type()
            .to_string()
            .contains("Timestamp(ms"),
        "{schema:?}"
    );

    starts(
        &error("m MAP<INT, DOUBLE>"),
        "job.sql:1:19: column m: MAP keys must be VARCHAR",
    );
    starts(
        &error("s STRUCT<a INT, a DOUBLE>"),
        "job.sql:1:33: column s: field a appears twice in the STRUCT",
    );
    starts(
        &error("l ARRAY<INT"),
        "job.sql:1:28: column l: expected '>'",
    );
    let deep = format!("l {}INT{}", "ARRAY<".repeat(40), ">".repeat(40));
    let e = error(&deep);
    assert!(
        e.contains("column l: types are nested 32 levels deep at most"),
        "{e}"
    );
    starts(
        &error("l ARRAY<WHATEVER>"),
        "job.sql:1:25: column l: unknown type 'WHATEVER'",
    );
}
