//! Connector options are checked against the connector registry: required options, each
//! connector's own rules, scoped options, and the defaults a table gets.

use sluice_pipeline::{Pipeline, Variables};

use crate::starts;

const SOURCE: &str =
    "CREATE TABLE ticks (symbol VARCHAR, price DOUBLE) WITH (connector = 'memory');\n";

/// The error of loading a sink declared with `options`, written by a query on `ticks`.
fn sink_error(options: &str) -> String {
    let text = format!(
        "{SOURCE}CREATE TABLE out WITH ({options});\nINSERT INTO out SELECT symbol FROM ticks;"
    );
    match Pipeline::parse("job.sql", &text, &Variables::none()) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// The error of loading a source declared with `options`.
fn source_error(options: &str) -> String {
    let text = format!(
        "CREATE TABLE t (x BIGINT) WITH ({options});\nCREATE TABLE out WITH (connector = 'memory');\nINSERT INTO out SELECT x FROM t;"
    );
    match Pipeline::parse("job.sql", &text, &Variables::none()) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_required_option_is_named_at_the_table() {
    starts(
        &sink_error("connector = 'file'"),
        "job.sql:2:14: table out: connector 'file' needs option 'path'",
    );
    starts(
        &sink_error("connector = 'postgres'"),
        "job.sql:2:14: table out: connector 'postgres' needs option 'url'",
    );
}

#[test]
fn each_connector_checks_its_own_rules() {
    starts(
        &source_error("connector = 'kafka', topic = 'a', topic_pattern = 'b.*'"),
        "job.sql:1:14: a Kafka source takes exactly one of 'topic', 'topic_pattern' or 'assign'",
    );
    starts(
        &source_error("connector = 'kafka', assign = '[0]'"),
        "job.sql:1:63: option 'assign': expected a JSON object",
    );
    starts(
        &sink_error("connector = 'postgres', url = 'sqlite://x.db'"),
        "job.sql:2:54: connector 'postgres' needs a postgres:// URL, got 'sqlite://x.db'",
    );
    starts(
        &sink_error("connector = 'sqlite', notify = 'x'"),
        "job.sql:2:55: option 'notify' needs PostgreSQL",
    );
    starts(
        &sink_error("connector = 'kafka', topic = 't', format = 'avro'"),
        "job.sql:2:67: format 'avro': the Kafka sink writes 'json'",
    );
    starts(
        &source_error("connector = 'file', path = 'in', format = 'csv'"),
        "job.sql:1:75: format 'csv': sources read 'json'",
    );
    starts(
        &source_error("connector = 'file', path = 'in', mode = 'lenient'"),
        "job.sql:1:73: option 'mode': unknown JSON parse mode 'LENIENT'",
    );
}

#[test]
fn options_of_the_wrong_connector_or_role_are_refused() {
    starts(
        &source_error("connector = 'memory', format = 'json'"),
        "job.sql:1:55: unknown option 'format' for source connector 'memory' (its options: connector, max_rows_per_trigger)",
    );
    starts(
        &source_error("connector = 'memory', 'console.num_rows' = '5'"),
        "job.sql:1:55: unknown option 'num_rows' for source connector 'console' (its options: )",
    );
    starts(
        &sink_error(
            "connector = 'kafka', topic = 't', 'properties.acks' = '1', fetch_timeout = '1 second'",
        ),
        "job.sql:2:83: unknown option 'fetch_timeout' for sink connector 'kafka' (its options: connector, topic, bootstrap, key, format, properties., output_mode)",
    );
}

#[test]
fn an_option_given_twice_through_its_scope_does_not_apply_twice() {
    starts(
        &sink_error("connector = 'console', num_rows = '5', 'console.num_rows' = '6'"),
        "job.sql:2:63: option 'num_rows' does not apply here",
    );
}

#[test]
fn defaults_make_a_valid_table() {
    let text = format!(
        "{SOURCE}CREATE TABLE out WITH (connector = 'sqlite', 'postgres.notify' = 'false');\nINSERT INTO out SELECT symbol FROM ticks;"
    );
    Pipeline::parse("job.sql", &text, &Variables::none()).unwrap();
    let text = format!(
        "{SOURCE}CREATE TABLE out WITH (connector = 'console', 'kafka.topic' = 't');\nINSERT INTO out SELECT symbol FROM ticks;"
    );
    Pipeline::parse("job.sql", &text, &Variables::none()).unwrap();
}

#[test]
fn a_scoped_connector_option_needs_a_connector_of_that_name_in_the_role() {
    // `postgres` is a sink only: `postgres.connector` on a source scopes nothing.
    let error = source_error("connector = 'memory', 'postgres.connector' = 'x'");
    starts(&error, "job.sql:1:");
    assert!(
        error.contains("unknown option 'connector'") && error.contains("'postgres'"),
        "{error}"
    );
}

/// `include_headers` gives a Kafka source `_headers`, which `kafka_header` reads in SQL (and
/// in computed columns): planned without connecting.
#[tokio::test]
async fn kafka_headers_are_readable_in_sql() {
    let text = "CREATE TABLE k (symbol VARCHAR, trace AS CAST(kafka_header(_headers, 'trace') AS VARCHAR))\n\
          WITH (connector = 'kafka', topic = 't', include_headers = 'true');\n\
        CREATE TABLE out WITH (connector = 'memory');\n\
        INSERT INTO out SELECT symbol, trace, kafka_header(_headers, 'origin') AS origin, _offset FROM k;";
    let pipeline = Pipeline::parse("job.sql", text, &Variables::none()).unwrap();
    let plan = pipeline.explain().await.unwrap();
    assert!(plan.contains("kafka_header"), "{plan}");
}

/// `SET parallelism` is the query's number of partitions, shown by `explain`; without it, the
/// machine's cores.
#[tokio::test]
async fn parallelism_is_set_per_query() {
    let text = "CREATE TABLE t (symbol VARCHAR, price DOUBLE) WITH (connector = 'memory');\n\
        CREATE TABLE a WITH (connector = 'memory', output_mode = 'complete');\n\
        CREATE TABLE b WITH (connector = 'memory', output_mode = 'complete');\n\
        INSERT INTO a SELECT symbol, count(*) AS n FROM t GROUP BY symbol;\n\
        SET parallelism = '3';\n\
        INSERT INTO b SELECT symbol, count(*) AS n FROM t GROUP BY symbol;";
    let pipeline = Pipeline::parse("job.sql", text, &Variables::none()).unwrap();
    let plan = pipeline.explain().await.unwrap();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let settings: Vec<&str> = plan
        .lines()
        .filter(|line| line.starts_with("parallelism: "))
        .collect();
    assert_eq!(
        settings,
        [
            format!("parallelism: {cores}"),
            "parallelism: 3".to_string()
        ],
        "{plan}"
    );
}
