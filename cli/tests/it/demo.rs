//! `sluice demo` runs from any directory: the files of `queries/`, and the file they include,
//! are compiled into the binary.

use std::process::Stdio;
use std::time::Duration;

use crate::process::{Process, sluice, stderr_lines, wait_for_line};

#[test]
fn the_demo_starts_its_four_queries_away_from_the_repository_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = sluice()
        .current_dir(dir.path())
        .args(["demo", "--listen", "127.0.0.1:0", "--speed", "10"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let demo = Process(child);
    let queries = wait_for_line(&lines, "  queries ", Duration::from_secs(60))
        .unwrap_or_else(|seen| panic!("the demo did not start its queries:\n{seen}"));
    assert_eq!(
        queries,
        "  queries     projet_bdcc, candles_1m, volatility_5m, market_sessions (files in queries/)"
    );
    let status = demo.terminate();
    assert!(status.success(), "{status:?}");
    assert!(dir.path().join("data/sluice.db").exists());
}
