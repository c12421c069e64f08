//! Every mistake in a pipeline file is an error naming its line and column.

use sluice_pipeline::{Pipeline, Variables};

use crate::starts;

const SOURCE: &str = "CREATE TABLE ticks (symbol VARCHAR, price DOUBLE, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '10' SECOND) WITH (connector = 'memory');\n";

/// The error of loading `text` (after the standard source line).
fn error(text: &str) -> String {
    let text = format!("{SOURCE}{text}");
    match Pipeline::parse("job.sql", &text, &Variables::none()) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// The error of planning `text` (options are fine, the query is not).
async fn plan_error(text: &str) -> String {
    let text = format!("{SOURCE}{text}");
    let pipeline = Pipeline::parse("job.sql", &text, &Variables::none()).unwrap();
    match pipeline.explain().await {
        Ok(plan) => panic!("expected an error, got a plan:\n{plan}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unknown_option_names_the_option_and_lists_the_known_ones() {
    let e = error(
        "CREATE TABLE out WITH (connector = 'console', num_row = '5');\nINSERT INTO out SELECT symbol FROM ticks;",
    );
    starts(
        &e,
        "job.sql:2:47: unknown option 'num_row' for sink connector 'console' (its options: connector, num_rows, truncate, output_mode)",
    );
}

#[test]
fn an_option_of_the_wrong_type() {
    let e = error(
        "CREATE TABLE out WITH (connector = 'console', num_rows = 'many');\nINSERT INTO out SELECT symbol FROM ticks;",
    );
    starts(
        &e,
        "job.sql:2:58: option 'num_rows': expected a non-negative integer, got 'many'",
    );
    let e = error(
        "CREATE TABLE out WITH (connector = 'console', truncate = 'yes');\nINSERT INTO out SELECT symbol FROM ticks;",
    );
    starts(
        &e,
        "job.sql:2:58: option 'truncate': expected true or false, got 'yes'",
    );
}

#[test]
fn an_unknown_output_mode() {
    let e = error(
        "CREATE TABLE out WITH (connector = 'console', output_mode = 'upsert');\nINSERT INTO out SELECT symbol FROM ticks;",
    );
    starts(
        &e,
        "job.sql:2:61: option 'output_mode': unknown output mode 'upsert': expected append, update or complete",
    );
}

#[tokio::test]
async fn an_output_mode_the_query_cannot_have_is_rejected_at_its_insert() {
    let e = plan_error(
        "CREATE TABLE out WITH (connector = 'console', output_mode = 'append');\n\
         INSERT INTO out SELECT symbol, count(*) AS n FROM ticks GROUP BY symbol;",
    )
    .await;
    starts(&e, "job.sql:3:13: query 'out': ");
    assert!(e.contains("append"), "{e}");
}

#[test]
fn unknown_connector_and_missing_connector() {
    let e = error(
        "CREATE TABLE out WITH (connector = 'mongo');\nINSERT INTO out SELECT symbol FROM ticks;",
    );
    starts(
        &e,
        "job.sql:2:36: 'mongo' is not a sink connector (expected one of postgres, sqlite, kafka, file, console, memory)",
    );
    let e = error(
        "CREATE TABLE out WITH (output_mode = 'append');\nINSERT INTO out SELECT symbol FROM ticks;",
    );
    starts(&e, "job.sql:2:14: table out has no connector");
}

#[test]
fn scoped_options_of_other_connectors_are_still_checked() {
    // `kafka.topic` is set aside for a memory source, but a typo in it is an error.
    let text = "CREATE TABLE t (x BIGINT) WITH (connector = 'memory', 'kafka.topic' = 'a', 'kafka.topik' = 'b');\n\
                CREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT x FROM t;";
    let e = Pipeline::parse("job.sql", text, &Variables::none())
        .err()
        .unwrap()
        .to_string();
    starts(
        &e,
        "job.sql:1:76: unknown option 'topik' for source connector 'kafka'",
    );
}

#[test]
fn unset_variables_and_unknown_settings() {
    let e = error(
        "SET checkpoint = '${CKPT}';\nCREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT symbol FROM ticks;",
    );
    starts(&e, "job.sql:2:19: variable CKPT is not set");
    let e = error(
        "SET trigerr = '1 second';\nCREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT symbol FROM ticks;",
    );
    starts(&e, "job.sql:2:5: unknown setting 'trigerr'");
    let e = error(
        "SET trigger = 'soon';\nCREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT symbol FROM ticks;",
    );
    starts(&e, "job.sql:2:15: SET trigger: ");
    for bad in ["0", "many", "-2", "5000"] {
        let e = error(&format!(
            "SET parallelism = '{bad}';\nCREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT symbol FROM ticks;"
        ));
        starts(
            &e,
            "job.sql:2:19: SET parallelism: expected a number of partitions",
        );
    }
}

#[test]
fn syntax_errors() {
    let e = error(
        "CREATE TABLE out (connector = 'memory');\nINSERT INTO out SELECT symbol FROM ticks;",
    );
    starts(&e, "job.sql:2:29: ");
    let e = error("CREATE INDEX i ON ticks (symbol);");
    starts(&e, "job.sql:2:8: expected TABLE or VIEW, found 'INDEX'");
    let e = error("DELETE FROM ticks;");
    starts(
        &e,
        "job.sql:2:1: expected SET, CREATE TABLE, CREATE VIEW or INSERT INTO, found 'DELETE'",
    );
    let e = error(
        "CREATE TABLE out WITH (connector = 'memory', connector = 'console');\nINSERT INTO out SELECT symbol FROM ticks;",
    );
    starts(
        &e,
        "job.sql:2:46: option 'connector' is given twice (first at 2:24)",
    );
}

#[test]
fn table_declarations() {
    let e = error(
        "CREATE TABLE s2 (a VARCHAR, b MONEY) WITH (connector = 'memory');\nCREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT a FROM s2 JOIN ticks ON true;",
    );
    starts(&e, "job.sql:2:31: column b: unknown type 'MONEY'");
    let e = error(
        "CREATE TABLE s2 WITH (connector = 'memory');\nCREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT 1 FROM s2;",
    );
    starts(&e, "job.sql:2:14: source table s2 needs its columns");
    let e = error(
        "CREATE TABLE out (a BIGINT) WITH (connector = 'memory');\nINSERT INTO out SELECT symbol FROM ticks;",
    );
    starts(&e, "job.sql:2:14: sink table out takes no column list");
    let e = error(
        "CREATE TABLE s2 (a BIGINT, WATERMARK FOR b AS b) WITH (connector = 'memory');\nCREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT a FROM s2;",
    );
    starts(&e, "job.sql:2:42: watermark on unknown column b");
    let e = error("CREATE TABLE ticks (a BIGINT) WITH (connector = 'memory');");
    starts(&e, "job.sql:2:14: table ticks is already declared at 1:14");
}

#[test]
fn inserts_and_queries() {
    let e = error("INSERT INTO nowhere SELECT symbol FROM ticks;");
    starts(
        &e,
        "job.sql:2:13: INSERT INTO nowhere: table nowhere is not declared",
    );
    let e = error(
        "CREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out\n  SELEC symbol FROM ticks;",
    );
    starts(&e, "job.sql:4:3: ");
    assert!(
        e.contains("SELEC at Line: 4, Column: 3"),
        "DataFusion's own position is the file's: {e}"
    );
    let e = error("CREATE TABLE out WITH (connector = 'memory');");
    starts(&e, "job.sql:1:1: the file has no INSERT INTO");
    let e = error(
        "CREATE TABLE other (a BIGINT) WITH (connector = 'memory');\nCREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT symbol FROM ticks;",
    );
    starts(
        &e,
        "job.sql:2:14: table other is declared but no query reads or writes it",
    );
}

#[tokio::test]
async fn a_query_that_does_not_plan_names_its_insert() {
    let e = plan_error(
        "CREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out\nSELECT nope FROM ticks;",
    )
    .await;
    starts(&e, "job.sql:3:13: query 'out': ");
    assert!(e.contains("No field named nope"), "{e}");
}

#[test]
fn intervals_are_read_in_their_units() {
    use sluice_pipeline::options::parse_interval;
    use std::time::Duration;
    assert_eq!(parse_interval("1 second"), Ok(Duration::from_secs(1)));
    assert_eq!(
        parse_interval("250 milliseconds"),
        Ok(Duration::from_millis(250))
    );
    assert_eq!(parse_interval("2 minutes"), Ok(Duration::from_secs(120)));
}

#[test]
fn a_query_name_must_name_a_directory_inside_the_checkpoint_location() {
    let insert =
        "CREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT symbol FROM ticks;";
    for name in ["../../x", "a/b", ".hidden", "a\\b"] {
        starts(
            &error(&format!("SET query_name = '{name}';\n{insert}")),
            &format!(
                "job.sql:2:18: SET query_name: query name '{name}' cannot name a checkpoint directory"
            ),
        );
    }
    // A table name used as the query name is checked the same way, at the table.
    starts(
        &error(
            "CREATE TABLE \"../out\" WITH (connector = 'memory');\nINSERT INTO \"../out\" SELECT symbol FROM ticks;",
        ),
        "job.sql:3:13: query name '../out' cannot name a checkpoint directory",
    );
    let ok = format!("{SOURCE}SET query_name = 'candles_1m.v2-eu';\n{insert}");
    let pipeline = Pipeline::parse("job.sql", &ok, &Variables::none()).unwrap();
    assert_eq!(pipeline.query_names(), ["candles_1m.v2-eu"]);
}

#[test]
fn a_byte_order_mark_at_the_start_of_a_file_is_ignored() {
    let text = format!(
        "\u{feff}{SOURCE}CREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT symbol FROM ticks;"
    );
    let pipeline = Pipeline::parse("job.sql", &text, &Variables::none()).unwrap();
    assert_eq!(pipeline.query_names(), ["out"]);
    // Positions on the first line are counted without it.
    let error = match Pipeline::parse("job.sql", "\u{feff}SET nope = 1;", &Variables::none()) {
        Ok(_) => panic!("an unknown setting loaded"),
        Err(e) => e.to_string(),
    };
    starts(&error, "job.sql:1:5: ");
}

/// A Kafka source keyed by symbol, for the distributed queries below (nothing connects).
const KAFKA_SOURCE: &str = "CREATE TABLE k (symbol VARCHAR, price DOUBLE, ts TIMESTAMP(3), WATERMARK FOR ts AS ts - INTERVAL '10' SECOND) WITH (connector = 'kafka', topic = 'ticks', bootstrap = '127.0.0.1:1', partitioned_by = 'symbol');\n";

#[test]
fn a_distributed_query_needs_kafka_topics_a_checkpoint_and_a_sink_tasks_can_share() {
    let e = error("SET distribution = 'everywhere';");
    starts(
        &e,
        "job.sql:2:20: SET distribution: expected 'spark' (one process) or 'kafka_partitions'",
    );
    let e = error(
        "SET distribution = 'kafka_partitions';\nCREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT symbol FROM ticks;",
    );
    starts(
        &e,
        "job.sql:4:13: distribution = 'kafka_partitions' spreads Kafka partitions over workers: source ticks is a 'memory' source",
    );
    let distributed = |rest: &str| {
        let text = format!("{KAFKA_SOURCE}SET distribution = 'kafka_partitions';\n{rest}");
        match Pipeline::parse("job.sql", &text, &Variables::none()) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.to_string(),
        }
    };
    let e = distributed(
        "SET checkpoint = 'none';\nCREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT symbol FROM k;",
    );
    assert!(e.contains("needs a checkpoint every worker reaches"), "{e}");
    let e = distributed(
        "CREATE TABLE out WITH (connector = 'file', path = '/tmp/out');\nINSERT INTO out SELECT symbol FROM k;",
    );
    assert!(
        e.contains("the file sink keeps one batch log per directory"),
        "{e}"
    );
    let e = error(
        "CREATE TABLE k2 (symbol VARCHAR) WITH (connector = 'kafka', topic = 't', partitioned_by = 'sym');\nCREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT symbol FROM k2;",
    );
    assert!(
        e.contains("partitioned_by: sym is not a column of the table"),
        "{e}"
    );
}

#[tokio::test]
async fn a_distributed_query_must_group_by_the_partitioning_column() {
    let checkpoint = tempfile::tempdir().unwrap();
    let settings = format!(
        "SET distribution = 'kafka_partitions';\nSET checkpoint = '{}';\n",
        checkpoint.path().display()
    );
    let explain = |query: &str| {
        let text = format!(
            "{KAFKA_SOURCE}{settings}CREATE TABLE out WITH (connector = 'memory', output_mode = 'update');\n{query}"
        );
        async move {
            Pipeline::parse("job.sql", &text, &Variables::none())
                .unwrap()
                .explain()
                .await
                .map_err(|e| e.to_string())
        }
    };
    let plan = explain(
        "INSERT INTO out SELECT symbol, window(ts, '1 minute'), count(*) FROM k GROUP BY symbol, window(ts, '1 minute');",
    )
    .await
    .unwrap();
    let text = format!(
        "{KAFKA_SOURCE}{settings}CREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT symbol FROM k;"
    );
    let pipeline = Pipeline::parse("job.sql", &text, &Variables::none()).unwrap();
    assert_eq!(
        pipeline.distribution("out"),
        Some(sluice_pipeline::Distribution::KafkaPartitions)
    );
    assert_eq!(pipeline.distribution("nothing"), None);
    assert!(
        plan.contains("distribution: kafka_partitions: one task per partition of ticks")
            && plan.contains("/out/tasks/<partition>"),
        "{plan}"
    );
    let e = explain(
        "INSERT INTO out SELECT window(ts, '1 minute'), count(*) FROM k GROUP BY window(ts, '1 minute');",
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("the aggregation groups by (window(k.ts,Utf8(\"1 minute\")))")
            && e.contains("Re-key the stream in two steps"),
        "{e}"
    );
    // Without partitioned_by, the worker cannot know how the messages are keyed.
    let text = format!(
        "{}{settings}CREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT symbol FROM k;",
        KAFKA_SOURCE.replace(", partitioned_by = 'symbol'", "")
    );
    let e = Pipeline::parse("job.sql", &text, &Variables::none())
        .unwrap()
        .explain()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("declare the key column with the source option partitioned_by"),
        "{e}"
    );
}

/// A checkpoint directory keeps the form it was written in: a one-process query does not
/// start over a distributed run's checkpoints, nor the workers over a one-process one (either
/// would read the topics again and write their output twice).
#[tokio::test]
async fn a_checkpoint_is_refused_by_the_other_distribution() {
    let checkpoint = tempfile::tempdir().unwrap();
    let text = |distribution: &str| {
        format!(
            "{KAFKA_SOURCE}SET distribution = '{distribution}';\nSET checkpoint = '{}';\n\
             CREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT symbol FROM k;",
            checkpoint.path().display()
        )
    };
    let query_dir = checkpoint.path().join("out");
    std::fs::create_dir_all(query_dir.join("offsets")).unwrap();
    std::fs::write(query_dir.join("offsets/0"), "v1\n{}\n").unwrap();
    let pipeline =
        Pipeline::parse("job.sql", &text("kafka_partitions"), &Variables::none()).unwrap();
    let e = pipeline
        .start_workers()
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("holds the checkpoint of a one-process run"),
        "{e}"
    );

    std::fs::remove_dir_all(query_dir.join("offsets")).unwrap();
    std::fs::write(
        query_dir.join("distribution"),
        r#"{"distribution":"kafka_partitions","group":"sluice-out-0"}"#,
    )
    .unwrap();
    let pipeline = Pipeline::parse("job.sql", &text("spark"), &Variables::none()).unwrap();
    let e = pipeline.start().await.err().expect("refused").to_string();
    assert!(
        e.contains("holds the checkpoints of a distributed run"),
        "{e}"
    );
}
