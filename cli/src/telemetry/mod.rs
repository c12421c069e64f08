//! The HTTP endpoint of `sluice run` and `sluice demo`, for Prometheus, probes and operators:
//!
//! | path | answer |
//! | --- | --- |
//! | `GET /metrics` | every query's series in Prometheus' text format ([`metrics`]) |
//! | `GET /healthz` | `200 ok` while the process serves (liveness) |
//! | `GET /readyz` | `200` when every query runs and reported progress recently, else `503` with the reasons (readiness) |
//! | `GET /queries` | JSON: each query's name, ids, trigger, status, exception and last progress |
//!
//! It listens on loopback by default ([`DEFAULT_LISTEN`]); `--http-listen` or
//! `SET http_listen` choose another address (`0.0.0.0:9464` in a container) or `off`.

mod endpoint;
pub mod metrics;
mod state;

use std::net::SocketAddr;

use sluice_pipeline::HttpListen;

pub use endpoint::serve;
pub use state::Telemetry;

/// Where the endpoint listens unless told otherwise (the port of OpenTelemetry's Prometheus
/// exporter).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

/// The `--http-listen` option of `sluice run` and `sluice demo`.
#[derive(clap::Args)]
pub struct HttpArgs {
    /// Where to serve /metrics, /healthz, /readyz and /queries: an address, or `off`.
    /// Default: the files' `SET http_listen`, else 127.0.0.1:9464 (skipped with a warning if
    /// that port is taken).
    #[arg(long, env = "SLUICE_HTTP_LISTEN", value_name = "ADDR|off")]
    http_listen: Option<HttpListen>,
}

impl HttpArgs {
    /// Where to listen, and whether failing to is an error: the option, else the files' one
    /// setting (two files asking for different addresses is an error), else
    /// [`DEFAULT_LISTEN`], best effort. `None`: no endpoint.
    pub fn resolve(
        &self,
        settings: impl IntoIterator<Item = Option<HttpListen>>,
    ) -> anyhow::Result<Option<(SocketAddr, bool)>> {
        let chosen = match self.http_listen {
            Some(listen) => Some(listen),
            None => {
                let mut set: Vec<HttpListen> = Vec::new();
                for listen in settings.into_iter().flatten() {
                    if !set.contains(&listen) {
                        set.push(listen);
                    }
                }
                if set.len() > 1 {
                    anyhow::bail!(
                        "the pipeline files set different http_listen addresses ({set:?}): the endpoint is one per process"
                    );
                }
                set.pop()
            }
        };
        Ok(match chosen {
            Some(HttpListen::Off) => None,
            Some(HttpListen::At(addr)) => Some((addr, true)),
            None => Some((DEFAULT_LISTEN.parse()?, false)),
        })
    }
}
