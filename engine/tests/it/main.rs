//! Integration tests of the engine, in one binary (each test binary links DataFusion again).

mod checkpoint;
mod common;
mod distribution;
mod functions;
mod fuzz;
mod golden;
mod json;
mod query;
mod recovery;
mod semantics;
mod sinks;
mod sources;
mod spark_json;
