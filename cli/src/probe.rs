//! `sluice probe`: asks an endpoint of a running `sluice` whether it is well, for container
//! health checks (the image has no `curl`): exit code 0 when it answers `200`, 1 otherwise.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

/// Options of `sluice probe`.
#[derive(Args)]
pub struct Probe {
    /// The URL to get (plain HTTP).
    #[arg(default_value = "http://127.0.0.1:9464/readyz")]
    url: url::Url,
    /// How long to wait to connect, and for each read of the answer.
    #[arg(long, default_value = "5s", value_parser = crate::process::parse_duration)]
    timeout: Duration,
}

/// Gets the URL; prints the body; fails unless the status is 200.
pub fn probe(args: Probe) -> anyhow::Result<()> {
    let url = &args.url;
    if url.scheme() != "http" {
        bail!("only http:// URLs can be probed, not {url}");
    }
    let host = url.host_str().context("the URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = url
        .socket_addrs(|| Some(80))
        .with_context(|| format!("resolving {host}"))?
        .into_iter()
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, args.timeout)
        .with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(args.timeout))?;
    stream.set_write_timeout(Some(args.timeout))?;
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_string(),
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream
        .take(1 << 20)
        .read_to_end(&mut answer)
        .with_context(|| format!("reading the answer of {url}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default();
    print!("{body}");
    if status.split_whitespace().nth(1) != Some("200") {
        bail!("{url}: {status}");
    }
    Ok(())
}
