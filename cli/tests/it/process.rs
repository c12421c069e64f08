//! Driving the built `sluice` binary: children killed when a test ends, their stderr as
//! lines, and the ticker files the pipelines read.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The repository's root (where `queries/` is).
pub const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The `sluice` binary under test.
pub fn sluice() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sluice"))
}

/// A child process killed when the test ends, whatever happens.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// SIGTERM, then wait: the graceful stop the CLI promises.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        self.0.wait().expect("wait")
    }
}

/// The lines a child writes to stderr (it must have been spawned with `Stdio::piped()`),
/// read by a thread of their own.
pub fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    received
}

/// Waits up to `wait` for a line containing `needle`; returns it and everything read so far.
pub fn wait_for_line(
    lines: &mpsc::Receiver<String>,
    needle: &str,
    wait: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + wait;
    let mut seen = String::new();
    loop {
        match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains(needle) => return Ok(line),
            Ok(line) => seen = seen + &line + "\n",
            Err(_) => return Err(seen),
        }
    }
}

/// `sluice dashboard` over `database` on a free loopback port, with `options`: the process
/// and the address it serves (`host:port`).
pub fn start_dashboard(database: &str, options: &[&str]) -> (Process, String) {
    let mut child = sluice()
        .args([
            "dashboard",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database,
        ])
        .args(options)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let dashboard = Process(child);
    let banner = wait_for_line(&lines, "dashboard on http://", Duration::from_secs(30))
        .unwrap_or_else(|seen| panic!("the dashboard did not start:\n{seen}"));
    let addr = banner.rsplit("http://").next().unwrap().to_owned();
    // Keep reading its stderr: a closed pipe would fail its later log lines.
    std::thread::spawn(move || lines.into_iter().for_each(drop));
    (dashboard, addr)
}

/// Status and body of `GET path` (a blocking HTTP/1.1 request with `Connection: close`).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    std::io::Read::read_to_string(&mut stream, &mut raw).expect("read");
    let status = raw.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Writes `lines` as the JSON-lines file `name` of directory `dir`, atomically (written
/// beside it, then renamed), as a producer drops files into a watched directory.
pub fn drop_file(dir: &Path, name: &str, lines: &[String]) {
    let staging = dir.with_extension("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let path = staging.join(name);
    let mut file = std::fs::File::create(&path).unwrap();
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
    file.sync_all().unwrap();
    std::fs::rename(&path, dir.join(name)).unwrap();
}

/// Ticker file `file` of a synthetic market: `symbols` symbols, one mini-ticker per symbol
/// and second for `seconds` seconds from `2026-01-01T00:00:00Z + file × seconds`, in event-time
/// order, plus a second copy (other prices) of the file's first ticker at its end: the seed's
/// dedup keeps the first.
pub fn ticker_file(file: u64, symbols: u64, seconds: u64) -> Vec<String> {
    const START_MS: u64 = 1_767_225_600_000;
    let line = |symbol: u64, second: u64, salt: u64| {
        let close = 100.0 + ((second * 131 + symbol * 17 + salt) % 997) as f64 / 10.0;
        serde_json::json!({
            "symbol": format!("S{symbol:03}USDT"),
            "close_price": close,
            "open_price": 100.0,
            "high_price": close + 1.5,
            "low_price": close - 2.0,
            "volume": (second * 7 + symbol) as f64,
            "quote_volume": (second * 7 + symbol) as f64 * close,
            "timestamp": START_MS + second * 1_000,
        })
        .to_string()
    };
    let first = file * seconds;
    let mut lines: Vec<String> = (first..first + seconds)
        .flat_map(|second| (0..symbols).map(move |symbol| (symbol, second)))
        .map(|(symbol, second)| line(symbol, second, 0))
        .collect();
    lines.push(line(0, first, 500));
    lines
}
