//! `INCLUDE 'file.sql'`: included statements load as if written in place, and every error
//! names the file it is in, with that file's own line and column and the `INCLUDE`s that led
//! there.

use std::path::Path;

use sluice_pipeline::{Pipeline, Variables};

/// A memory source whose connector comes from a variable, so that substitution is checked too.
const TICKS: &str = "-- the shared source\n\
                     CREATE TABLE ticks (symbol VARCHAR, price DOUBLE)\n\
                     WITH (connector = '${TICKS_CONNECTOR:-memory}');\n";

/// A sink and the query over `ticks`.
const QUERY: &str = "CREATE TABLE out WITH (connector = 'memory');\n\
                     INSERT INTO out SELECT symbol, price FROM ticks;\n";

/// Writes `files` (name, text) under `dir`, creating directories.
fn write(dir: &Path, files: &[(&str, &str)]) {
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// The error of loading `dir/job.sql`, with the directory's path written `<dir>`.
fn load_error(dir: &Path) -> String {
    match Pipeline::load(dir.join("job.sql"), &Variables::none()) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string().replace(&dir.display().to_string(), "<dir>"),
    }
}

#[test]
fn included_statements_load_as_if_written_in_place() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("include/ticks.sql", TICKS),
            ("job.sql", &format!("INCLUDE 'include/ticks.sql';\n{QUERY}")),
        ],
    );
    let pipeline = Pipeline::load(dir.path().join("job.sql"), &Variables::none()).unwrap();
    assert_eq!(pipeline.query_names(), ["out"]);
    assert!(pipeline.memory_source("ticks").is_some());
    assert_eq!(
        pipeline.query_sql("out"),
        Some("SELECT symbol, price FROM ticks")
    );
}

#[test]
fn variables_are_substituted_in_included_files() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("ticks.sql", TICKS),
            ("job.sql", &format!("INCLUDE 'ticks.sql';\n{QUERY}")),
        ],
    );
    let variables = Variables::none().set("TICKS_CONNECTOR", "kafka");
    let error = match Pipeline::load(dir.path().join("job.sql"), &variables) {
        Ok(_) => panic!("a Kafka source without topic must not load"),
        Err(e) => e.to_string(),
    };
    let dir = dir.path().display();
    assert!(
        error.starts_with(&format!(
            "{dir}/ticks.sql:2:14: a Kafka source takes exactly one of"
        )),
        "{error}"
    );
    assert!(
        error.ends_with(&format!("(included from {dir}/job.sql:1:1)")),
        "{error}"
    );
}

#[test]
fn settings_before_an_include_apply_to_its_inserts() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("query.sql", QUERY),
            (
                "job.sql",
                &format!("{TICKS}SET query_name = 'named';\nINCLUDE 'query.sql';\n"),
            ),
        ],
    );
    let pipeline = Pipeline::load(dir.path().join("job.sql"), &Variables::none()).unwrap();
    assert_eq!(pipeline.query_names(), ["named"]);
}

#[test]
fn an_error_in_an_included_file_names_it_with_its_own_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "sub/ticks.sql",
                "\n\nCREATE TABLE ticks (symbol VARCHAR) WITH (connector = 'memory', colour = 'red');\n",
            ),
            (
                "job.sql",
                &format!("-- a comment\n  INCLUDE 'sub/ticks.sql';\n{QUERY}"),
            ),
        ],
    );
    let error = load_error(dir.path());
    assert!(
        error.starts_with("<dir>/sub/ticks.sql:3:65: unknown option 'colour'"),
        "{error}"
    );
    assert!(
        error.ends_with(" (included from <dir>/job.sql:2:3)"),
        "{error}"
    );
}

#[test]
fn nested_includes_are_relative_to_the_including_file_and_listed_innermost_first() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("a/ticks.sql", "INCLUDE '../b/bad.sql';\n"),
            (
                "b/bad.sql",
                "\nCREATE TABLE ticks (x BIGINT) WITH (connector = 'nope');\n",
            ),
            ("job.sql", &format!("INCLUDE 'a/ticks.sql';\n{QUERY}")),
        ],
    );
    let error = load_error(dir.path());
    assert!(
        error.starts_with("<dir>/b/bad.sql:2:49: 'nope' is not a source connector"),
        "{error}"
    );
    assert!(
        error.ends_with(" (included from <dir>/a/ticks.sql:1:1, included from <dir>/job.sql:1:1)"),
        "{error}"
    );
}

#[test]
fn positions_after_an_include_stay_those_of_the_including_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("ticks.sql", &format!("\n\n\n{TICKS}")),
            (
                "job.sql",
                "INCLUDE 'ticks.sql';\nCREATE TABLE out WITH (connector = 'memory', colour = 'red');\n\
                 INSERT INTO out SELECT symbol FROM ticks;\n",
            ),
        ],
    );
    let error = load_error(dir.path());
    assert!(
        error.starts_with("<dir>/job.sql:2:46: unknown option 'colour'"),
        "{error}"
    );
    assert!(!error.contains("included from"), "{error}");
}

#[test]
fn a_table_declared_in_two_files_names_the_other_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("ticks.sql", TICKS),
            ("job.sql", &format!("INCLUDE 'ticks.sql';\n{TICKS}{QUERY}")),
        ],
    );
    let error = load_error(dir.path());
    assert!(
        error.starts_with(
            "<dir>/job.sql:3:14: table ticks is already declared at <dir>/ticks.sql:2:14"
        ),
        "{error}"
    );
}

#[test]
fn a_missing_file_is_an_error_at_its_include() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[(
            "job.sql",
            &format!("{TICKS}\nINCLUDE 'missing.sql';\n{QUERY}"),
        )],
    );
    let error = load_error(dir.path());
    assert!(
        error.starts_with(
            "<dir>/job.sql:5:1: INCLUDE 'missing.sql': cannot read <dir>/missing.sql: "
        ),
        "{error}"
    );
}

#[test]
fn an_include_cycle_is_an_error_at_the_include_closing_it() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            ("a.sql", "INCLUDE './b.sql';\n"),
            ("b.sql", "\nINCLUDE 'a.sql';\n"),
            ("job.sql", &format!("INCLUDE 'a.sql';\n{TICKS}{QUERY}")),
        ],
    );
    let error = load_error(dir.path());
    assert_eq!(
        error,
        "<dir>/b.sql:2:1: INCLUDE 'a.sql' makes a cycle: <dir>/a.sql → <dir>/b.sql → <dir>/a.sql \
         (included from <dir>/a.sql:1:1, included from <dir>/job.sql:1:1)"
    );
    write(dir.path(), &[("job.sql", "INCLUDE 'job.sql';\n")]);
    let error = load_error(dir.path());
    assert!(
        error.starts_with(
            "<dir>/job.sql:1:1: INCLUDE 'job.sql' makes a cycle: <dir>/job.sql → <dir>/job.sql"
        ),
        "{error}"
    );
}

#[test]
fn an_include_needs_a_quoted_path() {
    for (text, expected) in [
        (
            "INCLUDE ticks.sql;",
            "job.sql:1:9: expected the included file's path as a string ('file.sql'), found 'ticks'",
        ),
        (
            "INCLUDE '';",
            "job.sql:1:9: expected the included file's path as a string ('file.sql'), found ''''",
        ),
        (
            "INCLUDE 'a.sql' 'b.sql';",
            "job.sql:1:17: expected ';' or the end of the file, found ''b.sql''",
        ),
    ] {
        let error = match Pipeline::parse("job.sql", text, &Variables::none()) {
            Ok(_) => panic!("expected an error for {text}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(error, expected);
    }
}

#[test]
fn included_files_can_come_from_elsewhere_than_the_disk() {
    let read = |path: &Path| match path.to_str() {
        Some("bundled/include/ticks.sql") => Ok(TICKS.to_string()),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is not bundled", path.display()),
        )),
    };
    let text = format!("INCLUDE 'include/ticks.sql';\n{QUERY}");
    let pipeline =
        Pipeline::parse_with("bundled/job.sql", &text, &Variables::none(), &read).unwrap();
    assert_eq!(pipeline.query_names(), ["out"]);
}

#[test]
fn nesting_and_the_number_of_files_loaded_are_bounded() {
    // `chain/N.sql` includes `chain/N+1.sql`: 20 deep.
    let chain = |path: &Path| {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let next: u32 = name.parse::<u32>().unwrap_or(0) + 1;
        Ok(format!("INCLUDE '{next}.sql';\n"))
    };
    let error = match Pipeline::parse_with(
        "chain/0.sql",
        "INCLUDE '1.sql';\n",
        &Variables::none(),
        &chain,
    ) {
        Ok(_) => panic!("an endless chain loaded"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("more than 16 deep"), "{error}");

    // `tree/N.sql` includes `tree/N+1.sql` twice, down to `tree/10.sql`: 10 deep, but
    // 2 + 4 + … + 1024 files.
    let tree = |path: &Path| {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let next: u32 = name.parse::<u32>().unwrap_or(0) + 1;
        Ok(match next {
            ..=10 => format!("INCLUDE '{next}.sql';\nINCLUDE '{next}.sql';\n"),
            _ => String::new(),
        })
    };
    let error = match Pipeline::parse_with(
        "tree/0.sql",
        "INCLUDE '1.sql';\nINCLUDE '1.sql';\n",
        &Variables::none(),
        &tree,
    ) {
        Ok(_) => panic!("an exponential tree loaded"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("more than 256 files"), "{error}");
}

#[tokio::test]
async fn a_query_error_in_an_included_file_names_its_insert_there() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[
            (
                "query.sql",
                "CREATE TABLE out WITH (connector = 'memory', output_mode = 'append');\n\
                 INSERT INTO out SELECT symbol, count(*) AS n FROM ticks GROUP BY symbol;\n",
            ),
            ("job.sql", &format!("{TICKS}INCLUDE 'query.sql';\n")),
        ],
    );
    let pipeline = Pipeline::load(dir.path().join("job.sql"), &Variables::none()).unwrap();
    let error = match pipeline.explain().await {
        Ok(plan) => panic!("expected an error, got {plan}"),
        Err(e) => e
            .to_string()
            .replace(&dir.path().display().to_string(), "<dir>"),
    };
    assert!(
        error.starts_with("<dir>/query.sql:2:13: query 'out': "),
        "{error}"
    );
    assert!(
        error.ends_with(" (included from <dir>/job.sql:4:1)"),
        "{error}"
    );
}
