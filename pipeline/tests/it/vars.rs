//! `${VAR}` substitution and the map back to original positions.

use sluice_pipeline::Position;
use sluice_pipeline::vars::substitute;

fn lookup(name: &str) -> Option<String> {
    match name {
        "TOPIC" => Some("ticks-prod".into()),
        "EMPTY" => Some(String::new()),
        "NESTED" => Some("${TOPIC}".into()),
        _ => None,
    }
}

#[test]
fn replaces_values_and_defaults_like_a_shell() {
    let text = "a '${TOPIC}' b '${MISSING:-dflt}' c '${EMPTY:-used}' d '${EMPTY}' e $${TOPIC}";
    let out = substitute(text, &lookup).unwrap();
    assert_eq!(out.text, "a 'ticks-prod' b 'dflt' c 'used' d '' e ${TOPIC}");
    // A value's text is not substituted again.
    assert_eq!(
        substitute("'${NESTED}'", &lookup).unwrap().text,
        "'${TOPIC}'"
    );
    // Defaults may hold variables.
    assert_eq!(
        substitute("'${MISSING:-x-${TOPIC}}'", &lookup)
            .unwrap()
            .text,
        "'x-ticks-prod'"
    );
}

#[test]
fn comments_are_left_alone() {
    let text = "-- uses ${UNSET}\n/* and ${UNSET} */ x = '${TOPIC}'";
    let out = substitute(text, &lookup).unwrap();
    assert_eq!(
        out.text,
        "-- uses ${UNSET}\n/* and ${UNSET} */ x = 'ticks-prod'"
    );
}

#[test]
fn an_unset_variable_without_default_is_an_error_at_its_position() {
    let error = substitute("x\n  url = '${DATABASE_URL}'", &lookup).unwrap_err();
    assert_eq!(
        error.position,
        Position {
            line: 2,
            column: 10
        }
    );
    assert!(
        error.message.contains("variable DATABASE_URL is not set"),
        "{}",
        error.message
    );
    let error = substitute("'${BAD NAME}'", &lookup).unwrap_err();
    assert!(
        error.message.contains("expected ${NAME}"),
        "{}",
        error.message
    );
    let error = substitute("'${TOPIC'", &lookup).unwrap_err();
    assert!(error.message.contains("closing '}'"), "{}", error.message);
}

#[test]
fn positions_map_back_through_substitutions() {
    // "a = '${TOPIC}', b" → "a = 'ticks-prod', b": `b` moves from column 17 to 19.
    let out = substitute("a = '${TOPIC}', b", &lookup).unwrap();
    assert_eq!(out.text, "a = 'ticks-prod', b");
    let original = |column| out.original(Position { line: 1, column }).column;
    assert_eq!(original(1), 1);
    assert_eq!(original(19), 17);
    // Inside the value: the `${` it replaced.
    assert_eq!(original(8), 6);
    // Other lines are untouched.
    let out = substitute("'${TOPIC}'\nnext", &lookup).unwrap();
    assert_eq!(
        out.original(Position { line: 2, column: 3 }),
        Position { line: 2, column: 3 }
    );
}

#[test]
fn a_value_is_data_and_can_never_end_its_literal_or_add_tokens() {
    let lookup = |name: &str| match name {
        "PASSWORD" => Some("pa'ss".to_string()),
        "INJECT" => Some("x', notify = 'evil".to_string()),
        "IDENT" => Some("we\"ird".to_string()),
        "COUNT" => Some("20".to_string()),
        "STATEMENT" => Some("1; INSERT INTO x SELECT 1".to_string()),
        _ => None,
    };
    // Inside quotes, the quote character is doubled: the literal holds the value, nothing more.
    assert_eq!(
        substitute("url = 'postgres://u:${PASSWORD}@h/db'", &lookup)
            .unwrap()
            .text,
        "url = 'postgres://u:pa''ss@h/db'"
    );
    assert_eq!(
        substitute("topic = '${INJECT}'", &lookup).unwrap().text,
        "topic = 'x'', notify = ''evil'"
    );
    assert_eq!(
        substitute("\"${IDENT}\"", &lookup).unwrap().text,
        "\"we\"\"ird\""
    );
    // A default's own text is the file's; the values inside it are escaped all the same.
    assert_eq!(
        substitute("'${UNSET:-it''s ${PASSWORD}}'", &lookup)
            .unwrap()
            .text,
        "'it''s pa''ss'"
    );
    // Outside quotes, one word or number only.
    assert_eq!(
        substitute("num_rows = ${COUNT}", &lookup).unwrap().text,
        "num_rows = 20"
    );
    for name in ["STATEMENT", "INJECT", "PASSWORD"] {
        let error = substitute(&format!("x = ${{{name}}}"), &lookup).unwrap_err();
        assert_eq!(error.position, Position { line: 1, column: 5 });
        assert!(
            error.message.contains("outside quotes"),
            "{}",
            error.message
        );
    }
}

#[test]
fn deeply_nested_defaults_are_an_error_not_a_stack_overflow() {
    let deep = format!("'{}x{}'", "${UNSET:-".repeat(10_000), "}".repeat(10_000));
    let error = substitute(&deep, &lookup).unwrap_err();
    assert!(
        error.message.contains("nest more than 32 deep"),
        "{}",
        error.message
    );
    let fine = format!("'{}x{}'", "${UNSET:-".repeat(32), "}".repeat(32));
    assert_eq!(substitute(&fine, &lookup).unwrap().text, "'x'");
}
