//! The JSON API on both databases: indicator values, periods, limits, unknown symbols, bad and
//! hostile parameters, missing tables, candles from either table, CSV.

use serde_json::Value;

use crate::both;
use crate::fixtures::{Fixture, Server, t0};
use crate::http::{enc, get_json, request, symbols_of};

const T: &str = "projet_bdcc";

#[track_caller]
fn close(actual: &Value, expected: f64) {
    let a = actual
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {actual}"));
    assert!(
        (a - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "{a} != {expected}"
    );
}

fn stat<'a>(body: &'a Value, list: &str, symbol: &str) -> &'a Value {
    body[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["symbol"] == symbol)
        .unwrap_or_else(|| panic!("{symbol} not in {list}: {body}"))
}

async fn seeded(fixture: &Fixture) -> Server {
    fixture.create_ticker_table(T).await;
    fixture.insert_fixture(T).await;
    Server::start(&fixture.url, |_| {}).await
}

async fn indicators(fixture: &Fixture) {
    let server = seeded(fixture).await;
    let a = server.addr.as_str();

    let (status, body) = get_json(a, "/api/symbols").await;
    assert_eq!(status, 200);
    assert_eq!(
        body["symbols"],
        serde_json::json!([
            "AAAUSDT", "BBBUSDT", "BTCUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT", "ETHUSDT", "FFFUSDT"
        ])
    );
    assert_eq!(body["default"], serde_json::json!(["BTCUSDT", "ETHUSDT"]));

    // Overview, 1H: BTCUSDT's snapshots at T-30 min (close 104) and T (close 110).
    let (status, body) = get_json(a, "/api/overview?symbols=BTCUSDT,ETHUSDT&period=1h").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["end_ms"], t0().timestamp_millis());
    assert_eq!(body["start_ms"], t0().timestamp_millis() - 3_600_000);
    let btc = stat(&body, "stats", "BTCUSDT");
    assert_eq!(btc["rows"], 2);
    close(&btc["first_close"], 104.0);
    close(&btc["last_close"], 110.0);
    close(&btc["change"], 6.0);
    close(&btc["pct_change"], 6.0 / 104.0 * 100.0); // 5.769230769…
    close(&btc["mean_price"], 107.0);
    close(&btc["max_high"], 120.0);
    close(&btc["min_low"], 96.0);
    close(&btc["spread"], 24.0);
    close(&btc["volatility"], (16.0 / 104.0 + 20.0 / 110.0) / 2.0);
    close(&btc["volume"], 50.0);
    close(&btc["quote_volume"], 20.0 * 104.0 + 30.0 * 110.0);
    assert_eq!(btc["last_ms"], t0().timestamp_millis());
    let eth = stat(&body, "stats", "ETHUSDT");
    assert_eq!(eth["rows"], 3);
    close(&eth["pct_change"], (9.7 - 9.0) / 9.0 * 100.0);
    close(&eth["volume"], 550.0);

    // Each period takes in one more BTCUSDT snapshot.
    for (period, rows, first, mean) in [
        ("24h", 3, 100.0, (100.0 + 104.0 + 110.0) / 3.0),
        ("7d", 4, 90.0, (90.0 + 100.0 + 104.0 + 110.0) / 4.0),
        ("30d", 5, 80.0, (80.0 + 90.0 + 100.0 + 104.0 + 110.0) / 5.0),
        (
            "ALL",
            6,
            50.0,
            (50.0 + 80.0 + 90.0 + 100.0 + 104.0 + 110.0) / 6.0,
        ),
    ] {
        let (status, body) =
            get_json(a, &format!("/api/overview?symbols=BTCUSDT&period={period}")).await;
        assert_eq!(status, 200);
        let btc = stat(&body, "stats", "BTCUSDT");
        assert_eq!(btc["rows"], rows, "{period}");
        close(&btc["first_close"], first);
        close(&btc["pct_change"], (110.0 - first) / first * 100.0);
        close(&btc["mean_price"], mean);
    }
    let (_, body) = get_json(a, "/api/overview?symbols=BTCUSDT&period=all").await;
    assert_eq!(body["start_ms"], Value::Null);
    close(&stat(&body, "stats", "BTCUSDT")["min_low"], 45.0);
    // Default symbols when none is named.
    let (_, body) = get_json(a, "/api/overview?period=1h").await;
    assert_eq!(symbols_of(&body, "stats"), ["BTCUSDT", "ETHUSDT"]);

    // Top, 1H.
    let (status, body) = get_json(a, "/api/top?period=1h").await;
    assert_eq!(status, 200);
    assert_eq!(
        symbols_of(&body, "by_volume"),
        ["AAAUSDT", "BBBUSDT", "CCCUSDT", "ETHUSDT", "DDDUSDT"]
    );
    assert_eq!(
        symbols_of(&body, "gainers"),
        ["AAAUSDT", "ETHUSDT", "BTCUSDT", "CCCUSDT", "DDDUSDT"]
    );
    assert_eq!(
        symbols_of(&body, "losers"),
        ["BBBUSDT", "EEEUSDT", "FFFUSDT", "DDDUSDT", "CCCUSDT"]
    );
    close(&stat(&body, "gainers", "AAAUSDT")["pct_change"], 20.0);
    close(&stat(&body, "losers", "BBBUSDT")["pct_change"], -15.0);
    close(&stat(&body, "by_volume", "AAAUSDT")["volume"], 2_000.0);
    // Price index: AAAUSDT's one-minute closes 100 → 120, base 100.
    let index = &body["gainers_index"][0];
    assert_eq!(index["symbol"], "AAAUSDT");
    let points = index["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    close(&points[0][1], 100.0);
    close(&points[1][1], 120.0);

    // Anomalies, 1H: the 75th percentile of the eight volatilities lies between ETHUSDT's
    // and AAAUSDT's; AAAUSDT (+20 %) and BBBUSDT (-15 %) are above it.
    let (status, body) = get_json(a, "/api/anomalies?period=1h").await;
    assert_eq!(status, 200);
    let mut vols: Vec<f64> = vec![
        (16.0 / 104.0 + 20.0 / 110.0) / 2.0,
        (2.0 / 9.0 + 2.0 / 9.5 + 2.0 / 9.7) / 3.0,
        (40.0 / 100.0 + 40.0 / 120.0) / 2.0,
        (50.0 / 100.0 + 50.0 / 85.0) / 2.0,
        (2.0 / 100.0 + 2.0 / 103.0) / 2.0,
        (2.0 / 100.0 + 2.0 / 101.0) / 2.0,
        (4.0 / 100.0 + 4.0 / 92.0) / 2.0,
        (2.0 / 100.0 + 2.0 / 100.0) / 2.0,
    ];
    vols.sort_by(f64::total_cmp);
    close(
        &body["volatility_threshold"],
        vols[5] + (vols[6] - vols[5]) * 0.25,
    );
    assert_eq!(symbols_of(&body, "anomalies"), ["AAAUSDT", "BBBUSDT"]);
    close(&stat(&body, "anomalies", "AAAUSDT")["volatility"], vols[6]);
    // Over 24 h, BTCUSDT moves +10 % but stays below the percentile.
    let (_, body) = get_json(a, "/api/anomalies?period=24h").await;
    assert!(!symbols_of(&body, "anomalies").contains(&"BTCUSDT".to_owned()));

    // Details with a limit: the two newest snapshots, newest first.
    let (status, body) = get_json(a, "/api/details?symbol=BTCUSDT&period=24h&limit=2").await;
    assert_eq!(status, 200);
    let history = body["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0][0], t0().timestamp_millis());
    close(&history[0][4], 110.0);
    close(&history[0][7], 20.0); // spread
    close(&history[0][8], 110.0); // mid price
    close(&history[1][4], 104.0);
    let summary = &body["summary"];
    close(&summary["first_close"], 100.0);
    close(&summary["last_close"], 110.0);
    close(&summary["max_high"], 120.0);
    close(&summary["min_low"], 90.0);
    close(&summary["spread"], 30.0);
    close(&summary["pct_change"], 10.0);
    close(&summary["volume"], 60.0);
    close(
        &summary["volatility"],
        (20.0 / 100.0 + 16.0 / 104.0 + 20.0 / 110.0) / 3.0,
    );
    assert_eq!(summary["rows"], 3, "aggregates ignore the row limit");

    // Candles aggregated from the ticker table: ETHUSDT's 11:59 minute has two snapshots.
    let (status, body) = get_json(a, "/api/candles?symbols=ETHUSDT&period=1h").await;
    assert_eq!(status, 200);
    assert_eq!(body["source"], T);
    let candles = body["series"][0]["candles"].as_array().unwrap();
    assert_eq!(candles.len(), 2);
    let last = &candles[1];
    assert_eq!(last[0], (t0().timestamp_millis() - 60_000) as f64);
    for (i, v) in [9.5, 9.7, 9.5, 9.7, 350.0].into_iter().enumerate() {
        close(&last[i + 1], v);
    }
    // limit bounds the candles per symbol (the newest are kept).
    let (_, body) = get_json(a, "/api/candles?symbols=BTCUSDT&period=all&limit=2").await;
    let candles = body["series"][0]["candles"].as_array().unwrap();
    assert_eq!(candles.len(), 2);
    close(&candles[1][4], 110.0);

    // CSV download.
    let csv = request(a, "GET", "/api/history.csv?symbol=BTCUSDT&period=1h", None).await;
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(
        csv.header("content-disposition")
            .unwrap()
            .contains("BTCUSDT_1h.csv")
    );
    let text = csv.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "timestamp,open_price,high_price,low_price,close_price,volume,quote_volume,spread,mid_price"
    );
    assert_eq!(lines.len(), 3);
    assert!(
        lines[1].starts_with("2024-05-01T12:00:00.000Z,110.0,120.0,100.0,110.0,30.0"),
        "{}",
        lines[1]
    );
    server.stop().await;
}
both!(indicators, indicators_sqlite, indicators_postgres);

async fn candles_table(fixture: &Fixture) {
    fixture.create_ticker_table(T).await;
    fixture.insert_fixture(T).await;
    fixture.create_candles_table("candles_1m").await;
    let mut values = Vec::new();
    for i in 0..8i64 {
        let start = t0() - chrono::TimeDelta::minutes(8 - i);
        let end = start + chrono::TimeDelta::minutes(1);
        let c = (i + 1) as f64;
        values.push(format!(
            "('BTCUSDT', {}, {}, {c:?}, {:?}, {:?}, {c:?}, 5.0, 5.0, 3)",
            fixture.ts_literal(start),
            fixture.ts_literal(end),
            c + 1.0,
            c - 1.0
        ));
    }
    fixture
        .exec(&format!(
            "INSERT INTO candles_1m (symbol, window_start, window_end, open, high, low, close, volume, quote_volume, ticks) VALUES {}",
            values.join(", ")
        ))
        .await;
    let server = Server::start(&fixture.url, |_| {}).await;
    let (status, body) = get_json(&server.addr, "/api/candles?symbols=BTCUSDT&period=1h").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"], "candles_1m");
    let series = &body["series"][0];
    let candles = series["candles"].as_array().unwrap();
    assert_eq!(candles.len(), 8);
    assert_eq!(candles[0][0], (t0().timestamp_millis() - 8 * 60_000) as f64);
    close(&candles[7][2], 9.0);
    assert_eq!(series["ma7"][5], Value::Null);
    close(&series["ma7"][6], 4.0);
    close(&series["ma7"][7], 5.0);
    assert!(
        series["ma25"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_null)
    );
    let (_, body) = get_json(
        &server.addr,
        "/api/candles?symbols=BTCUSDT&period=1h&limit=3",
    )
    .await;
    let candles = body["series"][0]["candles"].as_array().unwrap();
    assert_eq!(candles.len(), 3);
    close(&candles[2][4], 8.0);
    server.stop().await;
}
both!(candles_table, candles_table_sqlite, candles_table_postgres);

async fn hostile_parameters(fixture: &Fixture) {
    let server = seeded(fixture).await;
    let a = server.addr.as_str();
    let injections = [
        "BTCUSDT';DROP TABLE projet_bdcc;--",
        "BTCUSDT\" OR 1=1 --",
        "BTC USDT",
        "'; DELETE FROM sluice_commits; --",
        "BTCUSDT) UNION SELECT 1,2,3 --",
        "ÉTHUSDT",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ];
    for endpoint in [
        "overview",
        "candles",
        "top",
        "anomalies",
        "details",
        "history.csv",
    ] {
        for bad in injections {
            for key in ["symbols", "symbol"] {
                let path = format!("/api/{endpoint}?{key}={}", enc(bad));
                let response = request(a, "GET", &path, None).await;
                assert_eq!(response.status, 400, "{path}");
                let body = response.json();
                assert!(
                    body["error"]
                        .as_str()
                        .unwrap()
                        .starts_with("invalid symbol"),
                    "{body}"
                );
            }
        }
        for period in [
            "2h",
            "1h';DROP TABLE projet_bdcc;--",
            "",
            "1H%00",
            "-1d",
            "24 hours",
        ] {
            let path = format!("/api/{endpoint}?period={}", enc(period));
            let (status, body) = get_json(a, &path).await;
            assert_eq!(status, 400, "{path}: {body}");
        }
        for limit in [
            "0",
            "-5",
            "10001",
            "99999999999999999999",
            "1e3",
            "10;DROP TABLE x",
            "abc",
        ] {
            let path = format!("/api/{endpoint}?limit={}", enc(limit));
            let (status, body) = get_json(a, &path).await;
            assert_eq!(status, 400, "{path}: {body}");
            assert!(body["error"].as_str().unwrap().contains("limit"));
        }
        let too_many: Vec<String> = (0..51).map(|i| format!("S{i}")).collect();
        let (status, _) = get_json(
            a,
            &format!("/api/{endpoint}?symbols={}", too_many.join(",")),
        )
        .await;
        assert_eq!(status, 400);
        // The largest limit is fine.
        let response = request(
            a,
            "GET",
            &format!("/api/{endpoint}?limit=10000&period=all"),
            None,
        )
        .await;
        assert_eq!(response.status, 200, "{endpoint}");
    }
    // A malformed query string is a clean 400 too.
    let (status, _) = get_json(a, "/api/overview?symbols=%ZZ&&=&period").await;
    assert!(status == 200 || status == 400);
    // Unknown symbols: an empty result, not an error.
    let (status, body) = get_json(a, "/api/overview?symbols=NOPEUSDT&period=all").await;
    assert_eq!(status, 200);
    assert_eq!(body["stats"], serde_json::json!([]));
    let (status, body) = get_json(a, "/api/details?symbol=NOPEUSDT").await;
    assert_eq!(status, 200);
    assert_eq!(body["summary"], Value::Null);
    assert_eq!(body["history"], serde_json::json!([]));
    let (status, body) = get_json(a, "/api/candles?symbols=NOPEUSDT").await;
    assert_eq!(status, 200);
    assert_eq!(body["series"][0]["candles"], serde_json::json!([]));
    // Unknown paths: JSON 404.
    let (status, body) = get_json(a, "/api/nope").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not found")));
    // The tables are intact.
    assert_eq!(fixture.count(T).await, crate::fixtures::TICKS.len() as i64);
    assert_eq!(fixture.count("sluice_commits").await, 0);
    server.stop().await;
}
both!(
    hostile_parameters,
    hostile_parameters_sqlite,
    hostile_parameters_postgres
);

async fn missing_tables(fixture: &Fixture) {
    // No table at all yet: every endpoint answers an empty state.
    let server = Server::start(&fixture.url, |_| {}).await;
    let a = server.addr.as_str();
    let (status, body) = get_json(a, "/api/status").await;
    assert_eq!(status, 200);
    assert_eq!(body["state"], "waiting for data");
    assert_eq!(body["connected"], true);
    assert_eq!(body["tables"]["ticker"], false);
    let (_, body) = get_json(a, "/api/symbols").await;
    assert_eq!(body["symbols"], serde_json::json!([]));
    for path in [
        "/api/overview?symbols=BTCUSDT",
        "/api/candles?symbols=BTCUSDT",
        "/api/top",
        "/api/anomalies",
        "/api/details?symbol=BTCUSDT",
    ] {
        let (status, body) = get_json(a, path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(body["end_ms"], Value::Null);
    }
    let csv = request(a, "GET", "/api/history.csv?symbol=BTCUSDT", None).await;
    assert_eq!((csv.status, csv.text().lines().count()), (200, 1));
    // The sink creates its tables and commits a first batch: the page's data appears.
    fixture.create_ticker_table(T).await;
    fixture.insert_fixture(T).await;
    fixture.commit(T, 0, crate::fixtures::TICKS.len()).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (_, body) = get_json(a, "/api/status").await;
        if body["state"] == "live" && body["last_commit_ms"].is_i64() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still {body}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (_, body) = get_json(a, "/api/symbols").await;
    assert_eq!(body["symbols"].as_array().unwrap().len(), 8);
    server.stop().await;
}
both!(
    missing_tables,
    missing_tables_sqlite,
    missing_tables_postgres
);

#[tokio::test]
async fn sqlite_file_not_there_yet() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("later.db").display());
    let server = Server::start(&url, |_| {}).await;
    let (status, body) = get_json(&server.addr, "/api/status").await;
    assert_eq!(status, 200);
    assert_eq!(body["state"], "waiting for the database");
    let (status, body) = get_json(&server.addr, "/api/overview").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("database unavailable"))
    );
    // The page itself is served all the same, with its assets.
    for (path, kind) in [
        ("/", "text/html"),
        ("/assets/errors.js", "text/javascript"),
        ("/assets/app.js", "text/javascript"),
        ("/assets/charts.js", "text/javascript"),
        ("/assets/style.css", "text/css"),
    ] {
        let response = request(&server.addr, "GET", path, None).await;
        assert_eq!(response.status, 200);
        assert!(response.header("content-type").unwrap().starts_with(kind));
    }
    // Every answer, errors included, carries the security headers: no inline or foreign
    // script, never framed, no sniffing.
    for path in ["/", "/api/overview", "/nope"] {
        let response = request(&server.addr, "GET", path, None).await;
        let csp = response
            .header("content-security-policy")
            .unwrap_or_default();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert_eq!(response.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            response.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
    assert!(
        !dir.path().join("later.db").exists(),
        "the dashboard never creates the file"
    );
    server.stop().await;
}

#[tokio::test]
async fn invalid_configuration() {
    for table in ["x; DROP TABLE y", "a.b.c", "1x", "\"q\""] {
        let config = sluice_dashboard::DashboardConfig {
            ticker_table: table.into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        assert!(matches!(
            sluice_dashboard::Dashboard::bind(config).await,
            Err(sluice_dashboard::DashboardError::Config(_))
        ));
    }
    let config = sluice_dashboard::DashboardConfig {
        database_url: "mysql://x".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    assert!(sluice_dashboard::Dashboard::bind(config).await.is_err());
    let default = sluice_dashboard::DashboardConfig::default();
    assert_eq!(default.listen.to_string(), "127.0.0.1:8501");
    assert_eq!(default.database_url, "sqlite://data/sluice.db");
}
