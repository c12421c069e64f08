//! The page in headless Chromium, driven over WebDriver (chromedriver): no console error,
//! symbol and period selection change the charts, a committed batch shows up without a reload,
//! screenshots of every tab in `target/dashboard-screenshots/`.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`: reported as ignored, with the
//! reason, when the build did not find them, except under `CI=true`, where that is a failure.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::fixtures::{Fixture, Server, Tick, t0};
use crate::http::request;
use sluice_testkit::find_program;

const T: &str = "projet_bdcc";

fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("dashboard-screenshots")
}

/// A WebDriver session on a chromedriver child process (killed on drop).
struct Browser {
    driver: String,
    session: String,
    _child: Driver,
}

/// The chromedriver process, killed (by its handle) on drop.
struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Browser {
    async fn start(chromedriver: &Path, chromium: &Path) -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map(Driver)
            .expect("chromedriver starts");
        let driver = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if tokio::net::TcpStream::connect(&driver).await.is_ok() {
                let status = request(&driver, "GET", "/status", None).await;
                if status.status == 200 && status.json()["value"]["ready"] == true {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:loggingPrefs": { "browser": "ALL" },
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": ["--headless", "--no-sandbox", "--disable-gpu",
                         "--disable-background-networking", "--disable-dev-shm-usage",
                         "--window-size=1400,1000", "--lang=en-US"],
            },
        }}});
        let response = request(&driver, "POST", "/session", Some(&capabilities.to_string())).await;
        let body = response.json();
        assert_eq!(response.status, 200, "new session: {body}");
        let session = body["value"]["sessionId"].as_str().unwrap().to_owned();
        Browser {
            driver,
            session,
            _child: child,
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = body.map(|b| b.to_string());
        let response = request(&self.driver, method, &path, body.as_deref()).await;
        let value = response.json();
        assert_eq!(response.status, 200, "{method} {path}: {value}");
        value["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url }))).await;
    }

    async fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    async fn wait_for(&self, what: &str, condition: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let script = format!("return !!({condition});");
        while self.js(&script).await != Value::Bool(true) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The WebDriver reference of the first element matching `css`.
    async fn element(&self, css: &str) -> String {
        let element = self
            .call(
                "POST",
                "/element",
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        element
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})))
            .await;
    }

    /// Performs WebDriver input actions (a real pointer and wheel, as a user's), then
    /// releases whatever they left pressed.
    async fn actions(&self, actions: Value) {
        self.call("POST", "/actions", Some(json!({ "actions": actions })))
            .await;
        self.call("DELETE", "/actions", None).await;
    }

    async fn errors(&self) -> Vec<String> {
        let mut errors: Vec<String> = self
            .js("return window.__sluiceErrors || ['no error array: the page did not load'];")
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.to_string())
            .collect();
        // chromedriver's browser log (failed loads, console errors), where supported.
        let path = format!("/session/{}/se/log", self.session);
        let log = request(&self.driver, "POST", &path, Some(r#"{"type":"browser"}"#)).await;
        if log.status == 200 {
            for entry in log.json()["value"].as_array().into_iter().flatten() {
                if entry["level"] == "SEVERE" {
                    errors.push(entry["message"].to_string());
                }
            }
        }
        errors
    }

    /// Saves a PNG of the whole page.
    async fn screenshot(&self, name: &str) {
        let full = json!({ "cmd": "Page.captureScreenshot",
                           "params": { "format": "png", "captureBeyondViewport": true } });
        let path = format!("/session/{}/goog/cdp/execute", self.session);
        let response = request(&self.driver, "POST", &path, Some(&full.to_string())).await;
        let data = if response.status == 200 {
            response.json()["value"]["data"].as_str().map(str::to_owned)
        } else {
            None
        };
        let data = match data {
            Some(data) => data,
            None => self
                .call("GET", "/screenshot", None)
                .await
                .as_str()
                .unwrap()
                .to_owned(),
        };
        let png = base64_decode(&data);
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn quit(self) {
        let path = format!("/session/{}", self.session);
        let _ = request(&self.driver, "DELETE", &path, None).await;
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let digits: Vec<u8> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (i, d) in chunk.iter().enumerate() {
            n |= u32::from(*d) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// Two hours of snapshots every 10 s for nine symbols: deterministic random walks.
fn market() -> Vec<Tick> {
    const SYMBOLS: [(&str, f64, f64, f64); 9] = [
        ("BTCUSDT", 64_000.0, 0.03, 0.02),
        ("ETHUSDT", 3_100.0, -0.02, 0.03),
        ("BNBUSDT", 590.0, 0.01, 0.02),
        ("SOLUSDT", 145.0, 0.06, 0.05),
        ("XRPUSDT", 0.52, -0.01, 0.03),
        ("ADAUSDT", 0.45, 0.02, 0.04),
        ("DOGEUSDT", 0.16, -0.07, 0.12),
        ("PEPEUSDT", 0.000_008_5, 0.12, 0.20),
        ("LINKUSDT", 14.0, 0.04, 0.05),
    ];
    let mut seed: u64 = 0x5eed;
    let mut random = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        ((seed >> 33) as f64) / f64::from(1u32 << 31)
    };
    let steps = 720;
    let mut ticks = Vec::new();
    for (symbol, start, drift, range) in SYMBOLS {
        let mut price = start;
        for step in 0..steps {
            let ago = (steps - 1 - step) * 10;
            price *= 1.0 + drift / steps as f64 + (random() - 0.5) * 0.004;
            let high = price * (1.0 + range / 2.0);
            let low = price * (1.0 - range / 2.0);
            let volume = 1_000.0 + random() * 500.0 + step as f64;
            ticks.push((symbol, ago, price, high, low, volume));
        }
    }
    ticks
}

#[test]
#[cfg_attr(
    sluice_no_chromium,
    ignore = "needs chromium and chromedriver (apt-get install chromium chromium-driver)"
)]
fn page_in_headless_chromium() {
    // On a thread of its own with a larger stack: in a debug build, the poll frames of this
    // long walk-through outgrow the test thread's 2 MiB.
    let walk = std::thread::Builder::new()
        .name("browser".into())
        .stack_size(16 << 20)
        .spawn(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(walk_through())
        })
        .expect("start the browser test's thread");
    if let Err(panic) = walk.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Every tab, the charts under the mouse, a live update and a phone-sized window.
async fn walk_through() {
    let missing = "chromium and chromedriver (apt-get install chromium chromium-driver)";
    let chromedriver = find_program(&["chromedriver"]).expect(missing);
    let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"]).expect(missing);
    let fixture = Fixture::sqlite().await;
    fixture.create_ticker_table(T).await;
    fixture.insert_ticks_at(T, t0(), &market()).await;
    fixture.commit(T, 0, 6480).await;
    let server = Server::start(&fixture.url, |c| c.refresh = Duration::from_millis(300)).await;
    let browser = Browser::start(&chromedriver, &chromium).await;
    let page = format!("http://{}/", server.addr);
    browser.goto(&page).await;

    // Overview with the default symbols.
    browser
        .wait_for(
            "the overview",
            "document.querySelectorAll('#tab-overview .metric-card').length === 2",
        )
        .await;
    let cards = browser
        .js("return [...document.querySelectorAll('#tab-overview .metric-card')].map(c => c.dataset.symbol);")
        .await;
    assert_eq!(cards, json!(["BTCUSDT", "ETHUSDT"]));
    browser
        .wait_for(
            "the status",
            "document.getElementById('live-state').textContent.startsWith('live')",
        )
        .await;
    assert_ne!(
        browser
            .js("return document.getElementById('last-update').textContent;")
            .await,
        "–"
    );
    browser.screenshot("overview").await;

    // Charts: two candle charts; adding a symbol adds one, a shorter period draws fewer candles.
    browser.click("#tabs [data-tab=charts]").await;
    browser
        .wait_for(
            "the charts",
            "document.querySelectorAll('#tab-charts .chart-card .chart[data-points]').length === 2",
        )
        .await;
    let titles = "return [...document.querySelectorAll('#tab-charts .chart-card h3')].map(h => h.textContent);";
    assert_eq!(
        browser.js(titles).await,
        json!(["BTCUSDT · 121 candles", "ETHUSDT · 121 candles"])
    );
    browser.screenshot("charts").await;
    zoom_pan_and_crosshair(&browser, &fixture).await;
    browser.click("#add-symbol option[value=SOLUSDT]").await;
    browser
        .wait_for(
            "the SOLUSDT chart",
            "document.querySelector('#tab-charts .chart-card[data-symbol=SOLUSDT] .chart[data-points=\"121\"]')",
        )
        .await;
    browser.click("#periods [data-period='1h']").await;
    browser
        .wait_for(
            "the 1H charts",
            "document.querySelector('#tab-charts .chart-card h3').textContent === 'BTCUSDT · 61 candles'",
        )
        .await;
    assert_eq!(
        browser.js(titles).await,
        json!([
            "BTCUSDT · 61 candles",
            "ETHUSDT · 61 candles",
            "SOLUSDT · 61 candles"
        ])
    );
    assert_eq!(
        browser
            .js("return document.querySelector('#tab-charts .chart-card[data-symbol=BTCUSDT] .chart').dataset.points;")
            .await,
        "61"
    );
    assert_eq!(
        browser
            .js("return document.querySelector('#periods .active').dataset.period;")
            .await,
        "1h"
    );
    browser.screenshot("charts-1h-3-symbols").await;

    browser.click("#periods [data-period='24h']").await;
    browser
        .wait_for(
            "the 24H charts",
            "document.querySelector('#tab-charts .chart-card h3').textContent === 'BTCUSDT · 121 candles'",
        )
        .await;
    for tab in ["top", "anomalies", "details"] {
        browser.click(&format!("#tabs [data-tab={tab}]")).await;
        browser
            .wait_for(
                tab,
                &format!("document.querySelector('#tab-{tab}').dataset.renders !== undefined && !document.querySelector('#tab-{tab}').hidden && document.querySelectorAll('#tab-{tab} svg, #tab-{tab} table').length > 0"),
            )
            .await;
        browser.screenshot(tab).await;
    }
    assert!(
        browser
            .js("return document.querySelectorAll('#tab-details .table-wrap tbody tr').length;")
            .await
            .as_u64()
            .unwrap()
            > 300
    );
    let anomalies = browser
        .js("return document.querySelector('#tab-anomalies').textContent;")
        .await;
    assert!(
        anomalies.as_str().unwrap().contains("PEPEUSDT"),
        "{anomalies}"
    );
    let csv = browser
        .js("return document.getElementById('csv-download').getAttribute('href');")
        .await;
    let csv = request(&server.addr, "GET", csv.as_str().unwrap(), None).await;
    assert_eq!(csv.status, 200);
    assert!(csv.text().lines().count() > 300);

    // A batch committed by the sink appears without a reload.
    browser.click("#tabs [data-tab=overview]").await;
    browser
        .wait_for("the overview again", "!document.querySelector('#tab-overview').hidden && document.querySelectorAll('#tab-overview .metric-card').length === 3")
        .await;
    browser.js("window.__marker = 42; return null;").await;
    let later = t0() + chrono::TimeDelta::seconds(1);
    fixture
        .insert_ticks_at(
            T,
            later,
            &[("BTCUSDT", 0, 77_777.25, 78_000.0, 60_000.0, 5.0)],
        )
        .await;
    fixture.commit(T, 2, 1).await;
    browser
        .wait_for(
            "the new batch",
            "document.querySelector('#tab-overview .metric-card[data-symbol=BTCUSDT] [data-field=last_close]').textContent === '77,777.25'",
        )
        .await;
    assert_eq!(browser.js("return window.__marker;").await, 42, "no reload");
    browser.screenshot("overview-after-batch").await;

    // A phone-sized window.
    browser
        .call(
            "POST",
            "/window/rect",
            Some(json!({ "width": 390, "height": 844 })),
        )
        .await;
    browser
        .js("window.dispatchEvent(new Event('resize')); return null;")
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    browser.screenshot("overview-phone").await;
    // Nothing sticks out on the right (the sidebar's select and inputs, the cards).
    let overflowing = browser
        .js("const w = Math.min(document.documentElement.clientWidth, document.body.clientWidth, window.innerWidth); \
             return [...document.querySelectorAll('#sidebar select, #sidebar input, #periods, main .card')] \
               .filter(e => e.getBoundingClientRect().right > w + 0.5) \
               .map(e => `${e.id || e.className}: ${Math.round(e.getBoundingClientRect().right)} > ${w}`);")
        .await;
    assert_eq!(overflowing, json!([]), "wider than the phone's screen");

    let errors = browser.errors().await;
    assert!(errors.is_empty(), "browser errors: {errors:?}");
    browser.quit().await;
    server.stop().await;
    fixture.cleanup().await;
    eprintln!("screenshots in {}", screenshot_dir().display());
}

/// The BTCUSDT candle chart (121 one-minute candles: logical range 0 to 120 when all show)
/// under a real mouse: the crosshair's
/// legend shows the candle under the pointer, the wheel zooms in, a drag pans, the zoom
/// survives a live refresh (a committed batch redraws the tab), a double-click resets it.
async fn zoom_pan_and_crosshair(browser: &Browser, fixture: &Fixture) {
    const CHART: &str = "#tab-charts .chart-card[data-symbol=BTCUSDT] .chart";
    // A quiet page first: the event stream's hello may redraw the tab once it arrives.
    browser
        .wait_for(
            "a quiet page",
            "__sluice.streaming && __sluice.inflight === 0 && pending === null",
        )
        .await;
    let legend = format!("return document.querySelector('{CHART} .chart-legend').textContent;");
    let span = format!(
        "(d => Number(d.visibleTo) - Number(d.visibleFrom))(document.querySelector('{CHART}').dataset)"
    );
    browser
        .wait_for("the chart's visible range", &format!("{span} >= 119.5"))
        .await;
    let latest = browser.js(&legend).await;
    assert!(latest.as_str().unwrap().contains("O "), "{latest}");

    // Axis labels: ticks are multiples of the format's `minMove`, which its labels tell apart
    // (a narrow range of millions once read "2.08M" three times).
    let labels = browser
        .js("return [[[2080100, 2081900], true], [[64000.5, 64010.5], false], [[0.00012, 0.000121], false]]
            .map(([range, compact]) => { const f = Charts.priceFormat(range, compact);
              return [0, 1, 2, 3, 4].map((i) => f.formatter(range[0] + i * f.minMove)); });")
        .await;
    for ticks in labels.as_array().unwrap() {
        let distinct: std::collections::BTreeSet<&str> = ticks
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(distinct.len(), 5, "{ticks}");
    }

    // Crosshair: the pointer 150 px left of the centre shows an older candle's values.
    // (The element is looked up before each gesture: a live refresh may have redrawn it.)
    let chart = browser.element(CHART).await;
    browser.actions(mouse(&chart, -150, &[])).await;
    browser
        .wait_for(
            "the crosshair's legend",
            &format!("document.querySelector('{CHART} .chart-legend').textContent !== {latest}"),
        )
        .await;
    let hovered = browser.js(&legend).await;
    for part in ["O ", "H ", "L ", "C ", "Vol ", "MA7 ", "MA25 "] {
        assert!(hovered.as_str().unwrap().contains(part), "{hovered}");
    }
    browser.screenshot("charts-crosshair").await;

    // Zoom: the wheel over the chart shows fewer candles (about a tenth fewer per notch).
    let chart = browser.element(CHART).await;
    browser.actions(wheel(&chart, -500, 4)).await;
    browser.wait_for("the zoom", &format!("{span} < 100")).await;
    let zoomed: f64 = browser
        .js(&format!("return {span};"))
        .await
        .as_f64()
        .unwrap();
    browser.screenshot("charts-zoomed").await;

    // Pan: dragging to the right brings older candles into view.
    let from = format!("Number(document.querySelector('{CHART}').dataset.visibleFrom)");
    let before = browser
        .js(&format!("return {from};"))
        .await
        .as_f64()
        .unwrap();
    let chart = browser.element(CHART).await;
    browser
        .actions(mouse(&chart, -100, &[Press, DragBy(200), Release]))
        .await;
    browser
        .wait_for("the pan", &format!("{from} < {} - 5", before))
        .await;
    let panned = browser
        .js(&format!("return {from};"))
        .await
        .as_f64()
        .unwrap();
    browser.screenshot("charts-panned").await;

    // A committed batch redraws the tab; the chart keeps the user's range.
    let renders = "Number(document.querySelector('#tab-charts').dataset.renders)";
    let before_renders = browser
        .js(&format!("return {renders};"))
        .await
        .as_f64()
        .unwrap();
    fixture.commit(T, 1, 0).await;
    browser
        .wait_for("the redraw", &format!("{renders} > {before_renders}"))
        .await;
    browser
        .wait_for(
            "the range restored",
            &format!("document.querySelector('{CHART}').dataset.visibleFrom !== undefined"),
        )
        .await;
    let kept = browser.js(&format!("return [{from}, {span}];")).await;
    assert!(
        (kept[0].as_f64().unwrap() - panned).abs() < 1.0
            && (kept[1].as_f64().unwrap() - zoomed).abs() < 1.0,
        "after the redraw: {kept}, before: from {panned}, span {zoomed}"
    );

    // A double-click shows every candle again.
    let chart = browser.element(CHART).await;
    browser
        .actions(mouse(&chart, 0, &[Press, Release, Press, Release]))
        .await;
    browser
        .wait_for("the reset", &format!("{span} >= 119.5"))
        .await;
}

/// A mouse step after the pointer reached its start.
enum Step {
    Press,
    Release,
    /// Moves the pointer right by this many pixels, in ten steps over 300 ms.
    DragBy(i64),
}
use Step::{DragBy, Press, Release};

/// WebDriver actions of the mouse: to `x` px right of `element`'s centre (20 px above it, in
/// the candles' pane), then `steps`. Built outside the async test: `json!` in an async body
/// makes a debug build's poll frame huge.
fn mouse(element: &str, x: i64, steps: &[Step]) -> Value {
    let mut actions = vec![json!({
        "type": "pointerMove", "origin": { WEBDRIVER_ELEMENT: element }, "x": x, "y": -20, "duration": 0
    })];
    for step in steps {
        match step {
            Press => actions.push(json!({ "type": "pointerDown", "button": 0 })),
            Release => actions.push(json!({ "type": "pointerUp", "button": 0 })),
            // In ten moves, as a hand would: the chart follows each.
            DragBy(dx) => actions.extend((0..10).map(|_| {
                json!({ "type": "pointerMove", "origin": "pointer", "x": dx / 10, "y": 0, "duration": 30 })
            })),
        }
    }
    json!([{ "type": "pointer", "id": "mouse", "parameters": { "pointerType": "mouse" }, "actions": actions }])
}

/// WebDriver actions of the wheel: `notches` scrolls of `delta_y` px over `element`'s centre
/// (negative: up).
fn wheel(element: &str, delta_y: i64, notches: usize) -> Value {
    let scroll = json!({
        "type": "scroll", "origin": { WEBDRIVER_ELEMENT: element },
        "x": 0, "y": 0, "deltaX": 0, "deltaY": delta_y, "duration": 0
    });
    json!([{ "type": "wheel", "id": "wheel", "actions": vec![scroll; notches] }])
}

/// The key of an element reference in WebDriver's JSON.
const WEBDRIVER_ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
