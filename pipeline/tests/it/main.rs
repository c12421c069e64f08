//! Pipeline-file tests: variable substitution, parsing and validation errors with their
//! positions, `INCLUDE`, the `queries/` files, pipelines run end to end on real connectors,
//! and the README's connector tables against the connector registry.

mod connectors;
mod errors;
mod fuzz;
mod include;
mod queries;
mod readme;
mod run;
mod types;
mod vars;
mod views;

/// Asserts that `error` begins with `prefix` (a position and the start of a message).
fn starts(error: &str, prefix: &str) {
    assert!(
        error.starts_with(prefix),
        "expected '{prefix}…', got: {error}"
    );
}
