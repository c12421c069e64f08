//! Watching started queries: printing their progress until they all end, one fails, or the
//! process is asked to stop.

use std::time::Duration;

use anyhow::bail;
use sluice_engine::StreamingQuery;

use crate::process::shutdown_signal;
use crate::progress::{Format, Printer, label};

/// Stops every query, reporting (not returning) the errors: used when giving up.
pub async fn stop_all(queries: &[StreamingQuery]) {
    for query in queries {
        if let Err(e) = query.stop().await {
            eprintln!("stopping {}: {e}", label(query));
        }
    }
}

/// Prints progress until every query has ended or Ctrl-C; stops the others when one fails.
pub async fn supervise(
    queries: &[StreamingQuery],
    format: Format,
    bar: bool,
) -> anyhow::Result<()> {
    let mut printer = Printer::new(format, bar);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                eprintln!("\nstopping…");
                stop_all(queries).await;
                printer.print(queries);
                eprintln!("stopped; run again to continue from the checkpoints");
                return Ok(());
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        printer.print(queries);
        for query in queries.iter().filter(|q| !q.is_active()) {
            if let Err(e) = query.await_termination().await {
                stop_all(queries).await;
                bail!("query {} failed: {e}", label(query));
            }
        }
        if queries.iter().all(|q| !q.is_active()) {
            printer.print(queries);
            eprintln!("\nall queries finished");
            return Ok(());
        }
    }
}
