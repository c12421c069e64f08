//! The endpoint of `sluice run`: `/metrics` (values that move batch by batch), `/healthz`,
//! `/readyz`, `/queries`; and the log formats.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::process::{
    Process, ROOT, drop_file, http_get as get, sluice, start_dashboard, stderr_lines, ticker_file,
    wait_for_line,
};

/// The value of the series `name{labels}` in a scrape (labels as printed, in order).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `check` every 100 ms for up to `wait`.
fn eventually<T>(wait: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + wait;
    loop {
        if let Some(found) = check() {
            return Some(found);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn metrics_health_and_queries_follow_the_batches() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    drop_file(&input, "0.jsonl", &ticker_file(0, 10, 10));
    let mut child = sluice()
        .current_dir(ROOT)
        .args(["run", "queries/projet_bdcc.sql", "queries/candles_1m.sql"])
        .args(["--http-listen", "127.0.0.1:0"])
        .env("TICKS_CONNECTOR", "file")
        .env("TICKS_PATH", &input)
        .env("SINK_CONNECTOR", "sqlite")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/out.db", dir.path().display()),
        )
        .env("CHECKPOINT_DIR", dir.path().join("checkpoints"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = stderr_lines(&mut child);
    let run = Process(child);
    let banner = wait_for_line(
        &lines,
        "metrics and health on http://",
        Duration::from_secs(30),
    )
    .unwrap_or_else(|seen| panic!("no endpoint:\n{seen}"));
    let addr = banner
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();

    assert_eq!(get(&addr, "/healthz"), (200, "ok\n".into()));
    let ready = eventually(Duration::from_secs(30), || {
        let (status, body) = get(&addr, "/readyz");
        (status == 200).then_some(body)
    });
    assert_eq!(ready.as_deref(), Some("ready\n"));

    // 101 tickers in the first file (one a duplicate): every series per query.
    let input_rows = |metrics: &str, query: &str| {
        let series = format!(
            "sluice_input_rows_total{{query=\"{query}\",source=\"FileSource[{}]\"}}",
            input.display()
        );
        sample(metrics, &series)
    };
    let scrape = || get(&addr, "/metrics").1;
    let first = eventually(Duration::from_secs(30), || {
        let metrics = scrape();
        (input_rows(&metrics, "candles_1m") == Some(101.0)).then_some(metrics)
    })
    .unwrap_or_else(|| panic!("{}", scrape()));
    assert_eq!(input_rows(&first, "projet_bdcc"), Some(101.0), "{first}");
    assert_eq!(
        sample(&first, "sluice_output_rows_total{query=\"projet_bdcc\"}"),
        Some(100.0),
        "the duplicate is dropped"
    );
    assert_eq!(
        sample(&first, "sluice_query_active{query=\"candles_1m\"}"),
        Some(1.0)
    );
    assert!(
        first.contains("sluice_batch_duration_seconds_bucket{le=\"+Inf\",query=\"projet_bdcc\"}")
    );
    assert!(
        first.contains(
            "sluice_state_rows{query=\"candles_1m\",operator=\"stateStoreSave\",index=\"0\"}"
        ),
        "{first}"
    );
    assert!(sample(&first, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(first.ends_with("# EOF\n"));

    // The next file moves the counters.
    drop_file(&input, "1.jsonl", &ticker_file(1, 10, 10));
    let second = eventually(Duration::from_secs(30), || {
        let metrics = scrape();
        (input_rows(&metrics, "candles_1m") == Some(202.0)).then_some(metrics)
    })
    .unwrap_or_else(|| panic!("{}", scrape()));
    let batches = |m: &str| sample(m, "sluice_batches_total{query=\"projet_bdcc\"}").unwrap();
    assert!(batches(&second) > batches(&first), "{second}");
    // The second batch ran with the watermark the first one's event times set (2026-01-01).
    let watermark = sample(&second, "sluice_watermark_seconds{query=\"candles_1m\"}").unwrap();
    assert!(watermark > 1.767e9, "{second}");

    let (status, body) = get(&addr, "/queries");
    assert_eq!(status, 200);
    let queries: serde_json::Value = serde_json::from_str(&body).unwrap();
    let names: Vec<&str> = queries
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["projet_bdcc", "candles_1m"]);
    for query in queries.as_array().unwrap() {
        assert_eq!(query["ready"], true, "{query}");
        assert_eq!(query["status"]["isActive"], true, "{query}");
        assert!(query["lastProgress"]["batchId"].is_u64(), "{query}");
    }
    assert!(run.terminate().success());
}

#[test]
fn logs_are_json_on_request_and_never_coloured_off_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    drop_file(&input, "0.jsonl", &ticker_file(0, 3, 2));
    let run = |format: &str| {
        let output = sluice()
            .current_dir(ROOT)
            .args(["run", "queries/projet_bdcc.sql", "--available-now"])
            .args(["--http-listen", "off", "--log-format", format])
            .env("RUST_LOG", "info")
            .env("TICKS_CONNECTOR", "file")
            .env("TICKS_PATH", &input)
            .env("SINK_CONNECTOR", "sqlite")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}/{format}.db", dir.path().display()),
            )
            .env("CHECKPOINT_DIR", dir.path().join(format))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stderr).unwrap()
    };
    let text = run("text");
    assert!(text.contains("micro-batch progress"), "{text}");
    assert!(!text.contains('\u{1b}'), "colour codes in a pipe: {text}");
    let json = run("json");
    let events: Vec<serde_json::Value> = json
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let progress = events
        .iter()
        .find(|e| e["fields"]["message"] == "micro-batch progress")
        .unwrap_or_else(|| panic!("{json}"));
    assert_eq!(progress["level"], "INFO");
    assert_eq!(progress["fields"]["query"], "projet_bdcc");
}

#[test]
fn probe_exits_0_only_on_200() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("none.db").display());
    let (dashboard, addr) = start_dashboard(&url, &[]);
    let base = format!("http://{addr}");
    let probe = |url: &str| sluice().args(["probe", url]).output().unwrap();
    let ok = probe(&format!("{base}/api/status"));
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("\"state\""));
    let missing = probe(&format!("{base}/nope"));
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("404"));
    drop(dashboard);
    let refused = probe(&format!("{base}/api/status"));
    assert_eq!(refused.status.code(), Some(1));
}
