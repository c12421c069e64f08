//! Tests of the `sluice` binary: the whole pipeline end to end on a real broker and a real
//! PostgreSQL, the offline demo, pipeline-file errors and exit codes, and the docker-compose
//! file.

mod compose;
mod demo;
pub(crate) mod end_to_end;
mod errors;
mod process;
mod scale_out;
mod soak;
mod telemetry;
mod torture;
