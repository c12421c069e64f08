//! Watching started queries and workers: printing their progress until they all end, one
//! fails, or the process is asked to stop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use sluice_engine::StreamingQuery;
use sluice_pipeline::{Pipeline, Worker};

use crate::process::shutdown_signal;
use crate::progress::{Format, Printer, label};
use crate::telemetry::{self, HttpArgs, Telemetry};

/// What `sluice run` started: the queries that run in this process alone, and the workers of
/// the distributed queries (whose tasks come and go as their consumer groups rebalance).
pub struct Running {
    queries: Vec<StreamingQuery>,
    workers: Vec<Worker>,
    telemetry: Telemetry,
}

impl Running {
    /// The queries and the workers' current tasks, which the endpoint reports on.
    pub fn queries(&self) -> Arc<[StreamingQuery]> {
        self.queries
            .iter()
            .cloned()
            .chain(self.workers.iter().flat_map(Worker::tasks))
            .collect()
    }

    /// The names of the queries and distributed queries, for the start-up message.
    pub fn names(&self) -> Vec<String> {
        self.queries
            .iter()
            .map(label)
            .chain(
                self.workers
                    .iter()
                    .map(|w| format!("{} (worker)", w.name())),
            )
            .collect()
    }

    /// Stops every query and worker, reporting (not returning) the errors: used when giving up.
    async fn stop_all(&mut self) {
        for query in &self.queries {
            if let Err(e) = query.stop().await {
                eprintln!("stopping {}: {e}", label(query));
            }
        }
        for worker in &mut self.workers {
            if let Err(e) = worker.stop().await {
                eprintln!("stopping the worker of {}: {e}", worker.name());
            }
        }
    }
}

/// Serves the metrics and health endpoint where `http` and the files say, then starts every
/// query of `pipelines` and a worker of every distributed query, each told to the endpoint's
/// metrics; if one cannot start, stops those already started and returns its error.
pub async fn start_all(pipelines: Vec<Pipeline>, http: &HttpArgs) -> anyhow::Result<Running> {
    let telemetry = Telemetry::default();
    if let Some((addr, required)) = http.resolve(pipelines.iter().map(Pipeline::http_listen))? {
        telemetry::serve(&telemetry, addr, required).await?;
    }
    let mut running = Running {
        queries: Vec::new(),
        workers: Vec::new(),
        telemetry,
    };
    for mut pipeline in pipelines {
        pipeline.add_listener(running.telemetry.metrics());
        let started = match pipeline.start().await {
            Ok(queries) => {
                running.queries.extend(queries);
                pipeline.start_workers().await
            }
            Err(e) => Err(e),
        };
        match started {
            Ok(workers) => running.workers.extend(workers),
            Err(e) => {
                running.stop_all().await;
                return Err(e.into());
            }
        }
    }
    running.telemetry.watch(running.queries());
    Ok(running)
}

/// Prints progress until every query and worker has ended or Ctrl-C; stops the others when
/// one fails.
pub async fn supervise(running: &mut Running, format: Format, bar: bool) -> anyhow::Result<()> {
    let mut printer = Printer::new(format, bar);
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                eprintln!("\nstopping…");
                let last = running.queries();
                running.stop_all().await;
                printer.print(&last);
                eprintln!("stopped; run again to continue from the checkpoints");
                return Ok(());
            }
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        let queries = running.queries();
        if !running.workers.is_empty() {
            running.telemetry.watch(queries.clone());
        }
        printer.print(&queries);
        for query in running.queries.iter().filter(|q| !q.is_active()) {
            if let Err(e) = query.await_termination().await {
                let name = label(query);
                running.stop_all().await;
                bail!("query {name} failed: {e}");
            }
        }
        for index in 0..running.workers.len() {
            if running.workers[index].is_finished()
                && let Err(e) = running.workers[index].stop().await
            {
                running.stop_all().await;
                bail!("{e}");
            }
        }
        if running.queries.iter().all(|q| !q.is_active())
            && running.workers.iter().all(Worker::is_finished)
        {
            printer.print(&queries);
            eprintln!("\nall queries finished");
            return Ok(());
        }
    }
}
