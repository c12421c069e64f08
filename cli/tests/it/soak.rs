//! A soak test of `sluice dashboard`: two hundred requests with distinct parameters over a
//! table of 40,000 tickers (the answers of several MB each that once grew the server by
//! hundreds of MB) leave the process's resident memory bounded by its cache budget.

use crate::process::{ROOT, drop_file, http_get, sluice, start_dashboard, ticker_file};

/// The JSON body of `GET path`, which must answer 200.
fn get(addr: &str, path: &str) -> serde_json::Value {
    let (status, body) = http_get(addr, path);
    assert_eq!(status, 200, "{path}: {}", &body[..body.len().min(300)]);
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The resident set of process `pid`, in bytes (Linux).
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

#[cfg(target_os = "linux")]
#[test]
fn distinct_requests_keep_the_dashboard_within_its_cache_budget() {
    const BUDGET_MIB: u64 = 16;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    // 5 symbols × 8,000 seconds: 8,000 rows per symbol, more than a details request shows.
    for file in 0..8 {
        drop_file(
            &input,
            &format!("{file:02}.jsonl"),
            &ticker_file(file, 5, 1_000),
        );
    }
    let database = format!("sqlite://{}/out.db", dir.path().display());
    let loaded = sluice()
        .current_dir(ROOT)
        .args(["run", "queries/projet_bdcc.sql", "--available-now"])
        .env("TICKS_CONNECTOR", "file")
        .env("TICKS_PATH", &input)
        .env("SINK_CONNECTOR", "sqlite")
        .env("DATABASE_URL", &database)
        .env("CHECKPOINT_DIR", dir.path().join("checkpoints"))
        .output()
        .unwrap();
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );

    let (dashboard, addr) = start_dashboard(&database, &["--cache-mib", &BUDGET_MIB.to_string()]);
    let pid = dashboard.0.id();

    // Details of each symbol at distinct limits: answers from about 0.2 to 3 MB in memory,
    // the larger ones over the budget's eighth (served, never cached).
    let request = |round: u64| {
        let symbol = format!("S{:03}USDT", round % 5);
        let limit = 500 + (round * 97) % 8_000;
        let body = get(
            &addr,
            &format!("/api/details?symbol={symbol}&period=all&limit={limit}"),
        );
        let rows = body["history"].as_array().map_or(0, Vec::len);
        assert_eq!(rows as u64, limit.min(8_000), "{symbol} limit {limit}");
    };
    for round in 0..40 {
        request(round);
    }
    let warm = rss(pid);
    for round in 40..200 {
        request(round);
    }
    let after = rss(pid);
    let status = get(&addr, "/api/status");
    let cache = &status["cache"];
    eprintln!(
        "soak: RSS {} MiB after warm-up, {} MiB after 160 more requests; cache {cache}",
        warm >> 20,
        after >> 20
    );
    assert!(
        cache["bytes"].as_u64().unwrap() <= BUDGET_MIB << 20,
        "{cache}"
    );
    assert!(cache["oversized"].as_u64().unwrap() > 0, "{cache}");
    // Without the byte budget the 160 later answers (about 1.5 MB each on average) would stay
    // in memory: over 200 MB. With it, the process grows by less than 4 budgets.
    assert!(
        after < warm + ((4 * BUDGET_MIB) << 20),
        "RSS {} MiB after warm-up, {} MiB after 160 more requests; cache {cache}",
        warm >> 20,
        after >> 20
    );
    let status = dashboard.terminate();
    assert!(status.success(), "{status:?}");
}
