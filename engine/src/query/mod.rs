//! Streaming queries, laid out as a micro-batch lives:
//!
//! - [`builder`]: declaring a query (sources, SQL, sink, trigger, checkpoint, watermarks,
//!   deduplication), planning and explaining it, building and starting it;
//! - [`recovery`]: where a starting query resumes from its checkpoint, and the restore of its
//!   stateful operators;
//! - [`execution`]: the micro-batch loop, one trigger at a time, in Spark's phases (latest
//!   offsets and offset log, read the batch, add the batch, commit);
//! - [`report`]: what a trigger measures and the progress report built from it;
//! - [`handle`]: the handle of a running query (status, progress, stop).

mod builder;
mod execution;
mod handle;
mod recovery;
mod report;

pub use builder::{MAX_PARALLELISM, StreamingQueryBuilder};
pub use execution::MicroBatchExecution;
pub use handle::{QueryStatus, StreamingQuery};
