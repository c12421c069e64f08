//! Pipeline-file tests: variable substitution, parsing and validation errors with their
//! positions, `INCLUDE`, the `queries/` files, and pipelines run end to end on real
//! connectors.

mod errors;
mod include;
mod queries;
mod run;
mod vars;
