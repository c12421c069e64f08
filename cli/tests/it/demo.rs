//! `sluice demo` runs from any directory: the files of `queries/`, and the file they include,
//! are compiled into the binary.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::end_to_end::Process;

#[test]
fn the_demo_starts_its_four_queries_away_from_the_repository_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(dir.path())
        .args(["demo", "--listen", "127.0.0.1:0", "--speed", "10"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let demo = Process(child);
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut banner = String::new();
    while !banner.contains("  queries ") {
        let wait = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(wait) {
            Ok(line) => banner = banner + &line + "\n",
            Err(_) => panic!("the demo did not start its queries:\n{banner}"),
        }
    }
    assert!(
        banner.contains(
            "  queries     projet_bdcc, candles_1m, volatility_5m, market_sessions (files in queries/)"
        ),
        "{banner}"
    );
    let status = demo.terminate();
    assert!(status.success(), "{status:?}");
    assert!(dir.path().join("data/sluice.db").exists());
}
