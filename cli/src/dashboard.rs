//! `sluice dashboard`: the market dashboard over the pipelines' database.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sluice_dashboard::{Dashboard, DashboardConfig};

use crate::process::{parse_duration, shutdown_signal};

/// Options of `sluice dashboard`.
#[derive(Args)]
pub struct DashboardArgs {
    /// The database the pipelines write (postgres://… or sqlite://…).
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://data/sluice.db")]
    database_url: String,
    /// Address to listen on (`0.0.0.0:8501` in a container, as the image sets).
    #[arg(
        long,
        env = "SLUICE_DASHBOARD_LISTEN",
        default_value = "127.0.0.1:8501"
    )]
    listen: SocketAddr,
    /// How often SQLite is polled for new batches (and SSE keep-alives are sent).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    refresh: Duration,
    /// The most the response cache holds, in MiB (estimated); answers larger than an eighth
    /// of it are served but not cached.
    #[arg(long, default_value_t = 256)]
    cache_mib: usize,
    /// How long a client may take to send a request's headers before it is disconnected.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// The most connections served at once (default: half the open-file limit, at most
    /// 1,024); each open page holds one.
    #[arg(long)]
    max_connections: Option<usize>,
}

impl DashboardArgs {
    /// The dashboard's configuration from the options.
    fn config(&self) -> DashboardConfig {
        DashboardConfig {
            database_url: self.database_url.clone(),
            listen: self.listen,
            refresh: self.refresh,
            cache_max_bytes: self.cache_mib.saturating_mul(1 << 20),
            header_read_timeout: self.header_read_timeout,
            max_connections: self.max_connections,
            ..DashboardConfig::default()
        }
    }
}

/// Serves the dashboard until Ctrl-C.
pub async fn dashboard(args: DashboardArgs) -> anyhow::Result<()> {
    let dashboard = Dashboard::bind(args.config())
        .await
        .context("starting the dashboard")?;
    eprintln!("dashboard on http://{}", dashboard.local_addr());
    dashboard.serve(shutdown_signal()).await?;
    Ok(())
}
