//! Property tests of the pipeline-file loader on hostile text: whatever the file, no panic,
//! and a file that does not load is an error naming it (and, for a mistake inside it, the
//! line and column). Bounded in cases so that they run in CI in a second or two.

use proptest::prelude::*;
use sluice_pipeline::{Pipeline, Variables};

/// Pipeline text made of the language's own pieces, shuffled, with variables, quotes,
/// comments and raw characters: mostly almost-valid files, which is where parsers break.
fn text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just(
            "CREATE TABLE t (x BIGINT, ts TIMESTAMP(3)) WITH (connector = 'memory');\n".to_string()
        ),
        Just("CREATE TABLE out WITH (connector = 'memory');\n".to_string()),
        Just("INSERT INTO out SELECT x FROM t;\n".to_string()),
        Just("SET trigger = '1 second';\n".to_string()),
        Just("SET query_name = '${Q:-q}';\n".to_string()),
        Just("INCLUDE 'missing.sql';\n".to_string()),
        Just("WATERMARK FOR ts AS ts - INTERVAL '10' SECOND".to_string()),
        Just("${".to_string()),
        Just("${A:-${B:-".to_string()),
        Just("}".to_string()),
        Just("'".to_string()),
        Just("\"".to_string()),
        Just("--".to_string()),
        Just("/*".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just(",".to_string()),
        Just(";".to_string()),
        Just("\u{feff}".to_string()),
        Just("\n".to_string()),
        "[a-zA-Z0-9_ =.\\-]{0,12}",
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(piece, 0..20).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn any_text_loads_or_is_an_error_naming_the_file(text in text()) {
        if let Err(error) = Pipeline::parse("job.sql", &text, &Variables::none()) {
            let message = error.to_string();
            prop_assert!(message.starts_with("job.sql"), "{}", message);
        }
    }
}
