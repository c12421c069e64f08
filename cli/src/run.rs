//! `sluice run` and `sluice explain`: pipeline files given on the command line, loaded with
//! the `--var`s and the environment.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use sluice_engine::Trigger;
use sluice_pipeline::{Pipeline, Variables};

use crate::progress::Format;
use crate::supervise::{start_all, supervise};
use crate::telemetry::HttpArgs;

/// `NAME=VALUE` for `--var`.
fn parse_var(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("'{text}' is not NAME=VALUE"))
}

/// Options shared by `run` and `explain`.
#[derive(Args)]
pub struct Files {
    /// Pipeline files (`CREATE TABLE … WITH (…)`, `SET …`, `INSERT INTO …`).
    #[arg(required = true, value_name = "FILE.sql")]
    files: Vec<PathBuf>,
    /// A variable for `${NAME}` (repeatable; wins over the environment).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
}

impl Files {
    /// Loads and validates every file (and the files they include).
    fn load(&self) -> anyhow::Result<Vec<Pipeline>> {
        let variables = self
            .vars
            .iter()
            .fold(Variables::from_env(), |v, (k, value)| v.set(k, value));
        let pipelines = self
            .files
            .iter()
            .map(|file| Pipeline::load(file, &variables))
            .collect::<Result<Vec<_>, _>>()?;
        check_unique_names(&pipelines)?;
        Ok(pipelines)
    }
}

/// Two files with a query of the same name would share its checkpoint.
fn check_unique_names(pipelines: &[Pipeline]) -> anyhow::Result<()> {
    let mut seen = BTreeMap::new();
    for pipeline in pipelines {
        for name in pipeline.query_names() {
            if seen.insert(name.to_string(), ()).is_some() {
                bail!(
                    "two queries are named '{name}': they would share a checkpoint (SET query_name = '…')"
                );
            }
        }
    }
    Ok(())
}

/// Options of `sluice run`.
#[derive(Args)]
pub struct Run {
    #[command(flatten)]
    files: Files,
    /// Process what is available now, then stop (Spark's available-now trigger), whatever
    /// the files' `SET trigger` says.
    #[arg(long)]
    available_now: bool,
    /// One progress JSON object per batch on stdout (Spark's field names) instead of lines.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    http: HttpArgs,
}

/// Options of `sluice explain`.
#[derive(Args)]
pub struct Explain {
    #[command(flatten)]
    files: Files,
}

/// Prints each query's plan.
pub async fn explain(args: Explain) -> anyhow::Result<()> {
    for pipeline in args.files.load()? {
        print!("{}", pipeline.explain().await?);
    }
    Ok(())
}

/// Runs the files' queries until they end (available-now), fail, or Ctrl-C.
pub async fn run(args: Run) -> anyhow::Result<()> {
    let mut pipelines = args.files.load()?;
    if args.available_now {
        for pipeline in &mut pipelines {
            pipeline.override_trigger(Trigger::AvailableNow);
        }
    }
    let mut running = start_all(pipelines, &args.http).await?;
    let names = running.names();
    eprintln!(
        "running {} (Ctrl-C stops after the current batch)",
        names.join(", ")
    );
    let format = if args.json {
        Format::Json
    } else {
        Format::Lines
    };
    // A bounded run on a terminal also gets a progress bar (on stderr).
    let bar = args.available_now && !args.json && std::io::stderr().is_terminal();
    supervise(&mut running, format, bar).await
}
