//! The table a relational sink derives from a query's schema: type mapping, flattening, key,
//! DDL and the validation of an existing table. Pure: no database.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use sluice_connectors::internals::{Dialect, ExistingColumn, SqlType, TableLayout, TableName};

fn candles_schema() -> Schema {
    let timestamp = DataType::Timestamp(TimeUnit::Microsecond, None);
    let window = Fields::from(vec![
        Field::new("start", timestamp.clone(), true),
        Field::new("end", timestamp, true),
    ]);
    Schema::new(vec![
        Field::new("window", DataType::Struct(window), false),
        Field::new("symbol", DataType::Utf8, true),
        Field::new("open", DataType::Float64, true),
        Field::new("trades", DataType::Int64, false),
        Field::new("price", DataType::Decimal128(18, 8), true),
    ])
}

fn layout(key: &[&str]) -> TableLayout {
    let key: Vec<String> = key.iter().map(|k| k.to_string()).collect();
    TableLayout::from_schema(
        TableName::parse("candles_1m").unwrap(),
        &candles_schema(),
        &key,
    )
    .unwrap()
}

fn existing(name: &str, declared_type: &str) -> ExistingColumn {
    ExistingColumn {
        name: name.into(),
        declared_type: declared_type.into(),
        not_null: false,
        has_default: false,
    }
}

#[test]
fn window_structs_flatten_and_a_window_key_stands_for_its_start() {
    let layout = layout(&["window", "symbol"]);
    let names: Vec<&str> = layout.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "window_start",
            "window_end",
            "symbol",
            "open",
            "trades",
            "price"
        ]
    );
    assert_eq!(layout.key_names(), ["window_start", "symbol"]);
    assert_eq!(
        layout.create_table(Dialect::Postgres),
        "CREATE TABLE IF NOT EXISTS \"candles_1m\" (\"window_start\" timestamptz NOT NULL, \
         \"window_end\" timestamptz, \"symbol\" text NOT NULL, \"open\" double precision, \
         \"trades\" bigint, \"price\" numeric(18,8), PRIMARY KEY (\"window_start\", \"symbol\"))"
    );
    assert_eq!(
        layout.create_table(Dialect::Sqlite),
        "CREATE TABLE IF NOT EXISTS \"candles_1m\" (\"window_start\" TEXT NOT NULL, \
         \"window_end\" TEXT, \"symbol\" TEXT NOT NULL, \"open\" REAL, \"trades\" INTEGER, \
         \"price\" TEXT, PRIMARY KEY (\"window_start\", \"symbol\"))"
    );
    assert_eq!(
        layout.upsert_clause(),
        " ON CONFLICT (\"window_start\", \"symbol\") DO UPDATE SET \
         \"window_end\" = excluded.\"window_end\", \"open\" = excluded.\"open\", \
         \"trades\" = excluded.\"trades\", \"price\" = excluded.\"price\""
    );
    // Flattened names are accepted as keys too.
    assert_eq!(
        layout_with_flat_key().key_names(),
        ["symbol", "window_start"]
    );
}

fn layout_with_flat_key() -> TableLayout {
    TableLayout::from_schema(
        TableName::parse("c").unwrap(),
        &candles_schema(),
        &["symbol".to_string(), "window_start".to_string()],
    )
    .unwrap()
}

#[test]
fn tables_without_a_key_have_no_primary_key_and_indexes_are_named_after_their_columns() {
    let layout = layout(&[]);
    assert!(
        !layout
            .create_table(Dialect::Postgres)
            .contains("PRIMARY KEY")
    );
    assert_eq!(
        layout
            .create_index(&["symbol".into(), "window_start".into()])
            .unwrap(),
        "CREATE INDEX IF NOT EXISTS \"candles_1m_symbol_window_start_idx\" ON \"candles_1m\" \
         (\"symbol\", \"window_start\")"
    );
    let error = layout
        .create_index(&["nope".into()])
        .unwrap_err()
        .to_string();
    assert!(error.contains("index column 'nope'"), "{error}");
}

#[test]
fn unknown_keys_unsupported_types_and_bad_table_names_are_named() {
    let error = TableLayout::from_schema(
        TableName::parse("t").unwrap(),
        &candles_schema(),
        &["sym".to_string()],
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("key column 'sym' is not an output column"),
        "{error}"
    );

    let schema = Schema::new(vec![Field::new(
        "tags",
        DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
        true,
    )]);
    let error = TableLayout::from_schema(TableName::parse("t").unwrap(), &schema, &[])
        .unwrap_err()
        .to_string();
    assert!(error.contains("column 'tags' has type List"), "{error}");

    for bad in ["", "a.b.c", ".t", "s."] {
        assert!(TableName::parse(bad).is_err(), "{bad}");
    }
    let qualified = TableName::parse("market.candles").unwrap();
    assert_eq!(qualified.quoted(), "\"market\".\"candles\"");
    assert_eq!(
        TableName::parse("we\"ird").unwrap().quoted(),
        "\"we\"\"ird\""
    );
}

#[test]
fn type_mapping_follows_the_documented_table() {
    let cases = [
        (DataType::Utf8View, "text", "TEXT"),
        (DataType::Float32, "real", "REAL"),
        (DataType::Int32, "integer", "INTEGER"),
        (DataType::Int16, "smallint", "INTEGER"),
        (DataType::UInt64, "numeric(20,0)", "TEXT"),
        (DataType::Boolean, "boolean", "INTEGER"),
        (
            DataType::Timestamp(TimeUnit::Nanosecond, Some("+02:00".into())),
            "timestamptz",
            "TEXT",
        ),
        (DataType::Date32, "date", "TEXT"),
        (DataType::Binary, "bytea", "BLOB"),
    ];
    for (data_type, postgres, sqlite) in cases {
        let sql_type = SqlType::of(&data_type).unwrap();
        assert_eq!(sql_type.ddl(Dialect::Postgres), postgres, "{data_type}");
        assert_eq!(sql_type.ddl(Dialect::Sqlite), sqlite, "{data_type}");
    }
    // Existing columns are accepted by what the database reports.
    assert!(SqlType::Text.accepts(Dialect::Postgres, "character varying"));
    assert!(SqlType::Timestamp.accepts(Dialect::Postgres, "timestamp without time zone"));
    assert!(!SqlType::Integer.accepts(Dialect::Postgres, "bigint"));
    assert!(SqlType::BigInt.accepts(Dialect::Sqlite, "BIGINT"));
    assert!(SqlType::Double.accepts(Dialect::Sqlite, "double precision"));
    assert!(!SqlType::Double.accepts(Dialect::Sqlite, "VARCHAR(10)"));
}

#[test]
fn existing_tables_are_checked_column_by_column() {
    let layout = layout(&["window", "symbol"]);
    let good = || {
        vec![
            existing("window_start", "timestamp with time zone"),
            existing("window_end", "timestamp with time zone"),
            existing("symbol", "text"),
            existing("open", "double precision"),
            existing("trades", "bigint"),
            existing("price", "numeric"),
        ]
    };
    let key = vec![vec!["symbol".to_string(), "window_start".to_string()]];
    layout
        .validate(Dialect::Postgres, &good(), &key, true)
        .unwrap();

    let mut wrong_type = good();
    wrong_type[3] = existing("open", "integer");
    let error = layout
        .validate(Dialect::Postgres, &wrong_type, &key, true)
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "table candles_1m does not match the query: column \"open\" is integer, but the query \
         writes double precision"
    );

    let missing: Vec<ExistingColumn> = good().into_iter().filter(|c| c.name != "trades").collect();
    let error = layout
        .validate(Dialect::Postgres, &missing, &key, true)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("it has no column \"trades\" (bigint expected)"),
        "{error}"
    );

    let mut extra = good();
    extra.push(ExistingColumn {
        not_null: true,
        ..existing("exchange", "text")
    });
    let error = layout
        .validate(Dialect::Postgres, &extra, &key, true)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("column \"exchange\" is NOT NULL without a default"),
        "{error}"
    );

    let error = layout
        .validate(Dialect::Postgres, &good(), &[vec!["symbol".into()]], true)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("upserts need a primary key or unique index on (symbol, window_start)"),
        "{error}"
    );
    // Appends need no unique key.
    layout
        .validate(Dialect::Postgres, &good(), &[], false)
        .unwrap();
}
