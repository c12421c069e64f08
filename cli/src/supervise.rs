//! Watching started queries: printing their progress until they all end, one fails, or the
//! process is asked to stop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use sluice_engine::StreamingQuery;
use sluice_pipeline::Pipeline;

use crate::process::shutdown_signal;
use crate::progress::{Format, Printer, label};
use crate::telemetry::{self, HttpArgs, Telemetry};

/// Serves the metrics and health endpoint where `http` and the files say, then starts every
/// query of `pipelines`, each told to the endpoint's metrics; if one cannot start, stops those
/// already started and returns its error.
pub async fn start_all(
    pipelines: Vec<Pipeline>,
    http: &HttpArgs,
) -> anyhow::Result<Arc<[StreamingQuery]>> {
    let telemetry = Telemetry::default();
    if let Some((addr, required)) = http.resolve(pipelines.iter().map(Pipeline::http_listen))? {
        telemetry::serve(&telemetry, addr, required).await?;
    }
    let mut queries = Vec::new();
    for mut pipeline in pipelines {
        pipeline.add_listener(telemetry.metrics());
        match pipeline.start().await {
            Ok(started) => queries.extend(started),
            Err(e) => {
                stop_all(&queries).await;
                return Err(e.into());
            }
        }
    }
    let queries: Arc<[StreamingQuery]> = queries.into();
    telemetry.watch(queries.clone());
    Ok(queries)
}

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
