//! Running a batch's CPU-bound parts at once: one scoped thread per part but the first, which
//! runs on the calling thread. Used where a batch is cut in parts for `parallelism` (JSON
//! decoding of a file, the file sink's encoding) outside DataFusion's own tasks.

use crate::error::{Result, SluiceError};

/// `work` applied to each of `jobs` at once, the results in the jobs' order. A job that
/// panicked on a thread of its own is an error (`what` names the work in it); one that panics
/// on the calling thread panics there, as it would without threads.
pub(crate) fn fan_out<J: Send, T: Send>(
    jobs: Vec<J>,
    what: &str,
    work: impl Fn(J) -> T + Sync,
) -> Result<Vec<T>> {
    let mut jobs = jobs.into_iter();
    let Some(first) = jobs.next() else {
        return Ok(Vec::new());
    };
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = jobs.map(|job| scope.spawn(move || work(job))).collect();
        let first = work(first);
        // Every thread is joined before an error is returned.
        let others: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        let mut results = vec![first];
        for other in others {
            results
                .push(other.map_err(|_| SluiceError::Config(format!("a {what} thread panicked")))?);
        }
        Ok(results)
    })
}
