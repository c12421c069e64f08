//! Pipeline-file tests: variable substitution, parsing and validation errors with their
//! positions, the `queries/` files, and pipelines run end to end on real connectors.

mod errors;
mod queries;
mod run;
mod vars;
