//! The Binance connector: frame normalization (pure), the seeded sample generator, capture
//! files, and the client against the local replay server (reconnects, pings, faults), and the
//! engine source.

use std::sync::atomic::Ordering;
use std::time::Duration;

use arrow::array::AsArray;
use arrow::datatypes::Float64Type;
use sluice_connectors::binance::BinanceSource;
use sluice_connectors::binance::capture::{CaptureWriter, CapturedFrame, read_capture};
use sluice_connectors::binance::client::{ClientOptions, WebSocketClient, backoff};
use sluice_connectors::binance::frame::{Mode, TickerMessage, decode_frame, is_json_number};
use sluice_connectors::binance::generator::{SampleSpec, generate};
use sluice_connectors::binance::producer::{self, ProducerOptions};
use sluice_connectors::binance::replay::{Fault, Pacing, ReplayOptions, ReplayServer};
use sluice_connectors::kafka::{KafkaSource, StartingOffsets, Subscription};
use sluice_connectors::ticker;
use sluice_engine::{JsonOptions, MemorySink, StreamingQueryBuilder};

use crate::common::{OwnBroker, kafka};

const MINI: &str = r#"{"e":"24hrMiniTicker","E":1672515782136,"s":"BNBBTC","c":"0.00250000","o":"0.0010","h":"0.0025","l":"0.0010","v":"10000","q":"18"}"#;
const NORMALIZED: &str = r#"{"symbol":"BNBBTC","close_price":0.00250000,"open_price":0.0010,"high_price":0.0025,"low_price":0.0010,"volume":10000,"quote_volume":18,"timestamp":1672515782136}"#;

fn message(key: &str, value: &str) -> TickerMessage {
    TickerMessage {
        key: key.into(),
        value: value.into(),
    }
}

#[test]
fn frames_of_every_shape_normalize_to_the_seed_message() {
    let array = format!("[{MINI},{}]", MINI.replace("BNBBTC", "ETHBTC"));
    let decoded = decode_frame(&array, Mode::Normalized).unwrap();
    assert_eq!(
        decoded.messages,
        [
            message("BNBBTC", NORMALIZED),
            message("ETHBTC", &NORMALIZED.replace("BNBBTC", "ETHBTC")),
        ]
    );
    assert!(decoded.rejected.is_empty());
    // The normalized value is JSON with numbers, digit for digit.
    let value: serde_json::Value = serde_json::from_str(NORMALIZED).unwrap();
    assert_eq!(value["close_price"], serde_json::json!(0.0025));

    for frame in [
        MINI.to_string(),
        format!(r#"{{"stream":"bnbbtc@miniTicker","data":{MINI}}}"#),
        format!(r#"{{"stream":"!miniTicker@arr","data":[{MINI}]}}"#),
    ] {
        let decoded = decode_frame(&frame, Mode::Normalized).unwrap();
        assert_eq!(decoded.messages, [message("BNBBTC", NORMALIZED)], "{frame}");
    }
    let trade = r#"{"e":"trade","E":1,"s":"BTCUSDT","t":12345,"p":"0.001","q":"100","T":2,"m":true,"M":true}"#;
    assert_eq!(
        decode_frame(trade, Mode::Normalized).unwrap().messages,
        [message(
            "BTCUSDT",
            r#"{"symbol":"BTCUSDT","price":0.001,"quantity":100,"trade_id":12345,"timestamp":2}"#
        )]
    );
    // Raw mode forwards the objects unchanged; replies to requests are not data.
    assert_eq!(
        decode_frame(&array, Mode::Raw).unwrap().messages[0],
        message("BNBBTC", MINI)
    );
    let reply = decode_frame(r#"{"result":null,"id":1}"#, Mode::Normalized).unwrap();
    assert!(reply.messages.is_empty() && reply.rejected.is_empty());
}

#[test]
fn bad_frames_and_bad_events_are_rejected_with_a_reason() {
    for frame in [
        "",
        "garbage",
        "[{\"e\":1}",
        "[1] [2]",
        "{\"x\":1}",
        "[1,,2]",
    ] {
        assert!(decode_frame(frame, Mode::Normalized).is_err(), "{frame:?}");
    }
    let frame = format!(
        r#"[{MINI},{},{},{},42]"#,
        MINI.replace(r#""c":"0.00250000""#, r#""c":"abc""#),
        MINI.replace(r#","s":"BNBBTC""#, ""),
        r#"{"e":"kline","E":1,"s":"X"}"#,
    );
    let decoded = decode_frame(&frame, Mode::Normalized).unwrap();
    assert_eq!(decoded.messages, [message("BNBBTC", NORMALIZED)]);
    assert_eq!(decoded.rejected.len(), 4, "{:?}", decoded.rejected);
    assert!(decoded.rejected[0].contains("'c' is not a number: \"abc\""));
    assert!(decoded.rejected[1].contains("without a symbol"));
    assert!(decoded.rejected[2].contains("event type 'kline' has no normalized form"));

    for good in ["0", "-1.5", "0.00250000", "1e-7", "10000", "2E+3"] {
        assert!(is_json_number(good), "{good}");
    }
    for bad in ["", "01", "1.", ".5", "+1", "1e", "NaN", "1,5", " 1"] {
        assert!(!is_json_number(bad), "{bad}");
    }
}

#[test]
fn the_generator_is_seeded_and_keeps_binances_format_and_rolling_statistics() {
    let spec = SampleSpec {
        symbols: 30,
        seconds: 40,
        ..SampleSpec::default()
    };
    let frames = generate(&spec);
    assert_eq!(frames, generate(&spec), "same seed, same frames");
    assert_eq!(frames.len(), 40);
    let mut seen = 0usize;
    for (second, frame) in frames.iter().enumerate() {
        let events: Vec<serde_json::Value> = serde_json::from_str(&frame.text).unwrap();
        seen += events.len();
        for event in &events {
            assert_eq!(event["e"], "24hrMiniTicker");
            let time = event["E"].as_i64().unwrap();
            assert!((time - spec.start_ms - second as i64 * 1000) < 5);
            let number = |k: &str| event[k].as_str().unwrap().parse::<f64>().unwrap();
            for key in ["c", "o", "h", "l", "v", "q"] {
                let text = event[key].as_str().unwrap();
                assert!(is_json_number(text) && text.split('.').nth(1).unwrap().len() == 8);
            }
            assert!(number("l") <= number("c") && number("c") <= number("h"));
            assert!(number("l") <= number("o") && number("o") <= number("h"));
        }
        assert!(frame.arrival_ms > spec.start_ms + second as i64 * 1000);
    }
    // About 60% of the symbols change each second.
    let share = seen as f64 / (30.0 * 40.0);
    assert!((0.5..0.7).contains(&share), "{share}");
}

#[test]
fn capture_files_round_trip_and_survive_a_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.jsonl.gz");
    let frames = generate(&SampleSpec {
        symbols: 5,
        seconds: 10,
        ..SampleSpec::default()
    });
    let mut writer = CaptureWriter::create(&path).unwrap();
    for frame in &frames {
        writer.write(frame).unwrap();
    }
    writer.finish().unwrap();
    assert_eq!(read_capture(&path).unwrap(), frames);

    // A writer killed mid-file: everything up to the cut that was flushed is readable.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let partial = read_capture(&path).unwrap();
    assert!(!partial.is_empty() && partial.len() <= frames.len());
    assert_eq!(partial[..], frames[..partial.len()]);

    let error = read_capture(dir.path().join("missing.gz"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("missing.gz"), "{error}");
}

#[test]
fn reconnect_delays_grow_exponentially_with_jitter() {
    let options = ClientOptions::new("ws://x");
    assert_eq!(backoff(&options, 0, 0.5), Duration::from_millis(500));
    assert_eq!(backoff(&options, 3, 0.5), Duration::from_secs(4));
    assert_eq!(backoff(&options, 20, 0.5), Duration::from_secs(30));
    assert_eq!(backoff(&options, 0, 0.0), Duration::from_millis(375));
    assert_eq!(backoff(&options, 0, 1.0), Duration::from_millis(625));
}

fn small_capture() -> Vec<CapturedFrame> {
    generate(&SampleSpec {
        symbols: 20,
        seconds: 30,
        ..SampleSpec::default()
    })
}

/// A replay server on a free port sending `frames` as fast as the client reads them.
async fn fast_server(frames: Vec<CapturedFrame>) -> ReplayServer {
    ReplayServer::start(
        frames,
        "127.0.0.1:0".parse().unwrap(),
        ReplayOptions {
            pacing: Pacing::Max,
            ..ReplayOptions::default()
        },
    )
    .await
    .unwrap()
}

fn fast_client(url: String) -> WebSocketClient {
    WebSocketClient::spawn(ClientOptions {
        idle_timeout: Duration::from_millis(700),
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ..ClientOptions::new(url)
    })
}

async fn next_frame(client: &mut WebSocketClient) -> CapturedFrame {
    let frame = tokio::time::timeout(Duration::from_secs(10), client.next())
        .await
        .expect("a frame within 10 s")
        .expect("client running");
    CapturedFrame {
        arrival_ms: frame.arrival_ms,
        text: frame.text,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_answers_pings_and_reconnects_after_close_drop_and_silence() {
    let frames = small_capture();
    let server = ReplayServer::start(
        frames.clone(),
        "127.0.0.1:0".parse().unwrap(),
        ReplayOptions {
            pacing: Pacing::Live { speed: 20.0 },
            looped: true,
            ping_interval: Duration::from_millis(100),
            ..ReplayOptions::default()
        },
    )
    .await
    .unwrap();
    let mut client = fast_client(server.url("!miniTicker@arr"));
    let metrics = client.metrics();
    let first = next_frame(&mut client).await;
    assert!(frames.iter().any(|f| f.text == first.text));
    // The client answers the server's pings (the payload must match).
    let stats = server.stats();
    eventually(10, "a pong", || {
        stats.pongs_received.load(Ordering::Relaxed) > 0
    })
    .await;

    for fault in [Fault::Close, Fault::Drop, Fault::Silence] {
        let before = metrics.reconnects.load(Ordering::Relaxed);
        server.inject(fault);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while metrics.reconnects.load(Ordering::Relaxed) == before {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reconnect after {fault:?}"
            );
            let _ = tokio::time::timeout(Duration::from_millis(100), client.next()).await;
        }
        next_frame(&mut client).await;
    }
    assert!(metrics.pongs.load(Ordering::Relaxed) > 0);
    assert!(server.stats().connections.load(Ordering::Relaxed) >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_server_serves_single_symbol_and_combined_streams() {
    let frames = small_capture();
    let server = ReplayServer::start(
        frames.clone(),
        "127.0.0.1:0".parse().unwrap(),
        ReplayOptions {
            pacing: Pacing::Max,
            shift_to_now: true,
            ..ReplayOptions::default()
        },
    )
    .await
    .unwrap();
    let mut single = fast_client(server.url("btcusdt@miniTicker"));
    let frame = next_frame(&mut single).await;
    let event: serde_json::Value = serde_json::from_str(&frame.text).unwrap();
    assert_eq!(event["s"], "BTCUSDT");
    let now = chrono::Utc::now().timestamp_millis();
    assert!(
        (now - event["E"].as_i64().unwrap()).abs() < 5_000,
        "shifted to now"
    );

    // The all-market stream: the captured bytes, event times moved.
    let mut all = fast_client(server.url("!miniTicker@arr"));
    let frame = next_frame(&mut all).await;
    let events: Vec<serde_json::Value> = serde_json::from_str(&frame.text).unwrap();
    let original = &frames[0].text;
    let delta = events[0]["E"].as_i64().unwrap()
        - serde_json::from_str::<Vec<serde_json::Value>>(original).unwrap()[0]["E"]
            .as_i64()
            .unwrap();
    assert!(delta > 0);
    assert_eq!(
        frame.text.replace(|c: char| c.is_ascii_digit(), ""),
        original.replace(|c: char| c.is_ascii_digit(), "")
    );

    let address = server.local_addr();
    let mut combined = fast_client(format!(
        "ws://{address}/stream?streams=btcusdt@miniTicker/ethusdt@miniTicker"
    ));
    let frame = next_frame(&mut combined).await;
    let wrapped: serde_json::Value = serde_json::from_str(&frame.text).unwrap();
    assert!(wrapped["stream"].as_str().unwrap().ends_with("@miniTicker"));
    let decoded = decode_frame(&frame.text, Mode::Normalized).unwrap();
    assert_eq!(decoded.messages.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_reads_the_stream_through_the_binance_source() {
    let frames = small_capture();
    let expected = expected_messages(&frames).len();
    let mut with_garbage = frames.clone();
    with_garbage.insert(
        3,
        CapturedFrame {
            arrival_ms: frames[2].arrival_ms + 1,
            text: "not json".into(),
        },
    );
    let server = fast_server(with_garbage).await;
    let source = BinanceSource::new(
        "ticks",
        ClientOptions::new(server.url("!miniTicker@arr")),
        ticker::event_time_schema(),
        JsonOptions::default(),
    );
    let sink = MemorySink::new();
    let mut execution = StreamingQueryBuilder::new()
        .source("ticks", source)
        .sql("SELECT symbol, close_price, high_price - low_price AS spread FROM ticks")
        .sink(sink.clone())
        .build()
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        execution.run_trigger().await.unwrap();
        let rows: usize = sink.all_rows().iter().map(|b| b.num_rows()).sum();
        if rows >= expected {
            assert_eq!(rows, expected);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{rows} of {expected} rows"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let malformed: u64 = execution
        .recent_progress()
        .iter()
        .map(|p| p.sources[0].malformed_records.count)
        .sum();
    assert_eq!(malformed, 1);
    let batch = &sink.all_rows()[0];
    let spreads = batch.column(2).as_primitive::<Float64Type>();
    assert!(spreads.iter().all(|s| s.is_some_and(|s| s >= 0.0)));
}

/// Two queries over one stream URL read it through one connection and get the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_over_one_stream_share_its_connection() {
    let frames = small_capture();
    let expected = expected_messages(&frames).len();
    let server = fast_server(frames).await;
    let options = ClientOptions::new(server.url("!miniTicker@arr"));
    let mut queries = Vec::new();
    // Both sources subscribe before either connects: both get every frame.
    for sql in [
        "SELECT symbol, close_price FROM ticks",
        "SELECT symbol, close_price FROM ticks WHERE close_price >= 0",
    ] {
        let source = BinanceSource::new(
            "ticks",
            options.clone(),
            ticker::event_time_schema(),
            JsonOptions::default(),
        );
        let sink = MemorySink::new();
        let execution = StreamingQueryBuilder::new()
            .source("ticks", source)
            .sql(sql)
            .sink(sink.clone())
            .build()
            .await
            .unwrap();
        queries.push((execution, sink));
    }
    let rows = |sink: &MemorySink| -> usize { sink.all_rows().iter().map(|b| b.num_rows()).sum() };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while queries.iter().any(|(_, sink)| rows(sink) < expected) {
        for (execution, _) in &mut queries {
            execution.run_trigger().await.unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every row arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let collect = |sink: &MemorySink| {
        arrow::util::pretty::pretty_format_batches(&sink.all_rows())
            .unwrap()
            .to_string()
    };
    assert_eq!(rows(&queries[0].1), expected);
    assert_eq!(collect(&queries[0].1), collect(&queries[1].1));
    assert_eq!(
        server
            .stats()
            .connections
            .load(std::sync::atomic::Ordering::Relaxed),
        1,
        "one connection for both queries"
    );
}

/// Every normalized message of `frames`, as (key, value), sorted.
fn expected_messages(frames: &[CapturedFrame]) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = frames
        .iter()
        .flat_map(|f| decode_frame(&f.text, Mode::Normalized).unwrap().messages)
        .map(|m| (m.key, m.value))
        .collect();
    all.sort();
    all
}

/// Every (key, value) in `topic`, sorted.
async fn topic_messages(bootstrap: &str, topic: &str) -> Vec<(String, String)> {
    let source = KafkaSource::new("k", bootstrap, Subscription::Topics(vec![topic.into()]))
        .unwrap()
        .starting_offsets(StartingOffsets::Earliest);
    let sink = MemorySink::new();
    let mut reader = StreamingQueryBuilder::new()
        .source("k", source)
        .sql("SELECT arrow_cast(key, 'Utf8'), arrow_cast(value, 'Utf8') FROM k")
        .sink(sink.clone())
        .build()
        .await
        .unwrap();
    while reader.run_trigger().await.unwrap() {}
    let mut all = Vec::new();
    for batch in sink.all_rows() {
        let (keys, values) = (
            batch.column(0).as_string::<i32>(),
            batch.column(1).as_string::<i32>(),
        );
        all.extend(
            (0..batch.num_rows()).map(|r| (keys.value(r).to_string(), values.value(r).to_string())),
        );
    }
    all.sort();
    all
}

/// Waits until `done` holds, for at most `seconds`.
async fn eventually(seconds: u64, what: &str, done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn producer_options(url: String, bootstrap: &str, topic: &str) -> ProducerOptions {
    ProducerOptions::new(
        ClientOptions {
            // The replay server falls silent after the capture: no reconnect (and replay) here.
            idle_timeout: Duration::from_secs(120),
            ..ClientOptions::new(url)
        },
        bootstrap,
        topic,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ticker_reaches_the_broker_once_keyed_by_symbol() {
    let bootstrap = kafka().bootstrap();
    let topic = kafka().new_topic(3).await;
    let mut frames = small_capture();
    frames.insert(
        5,
        CapturedFrame {
            arrival_ms: frames[4].arrival_ms,
            text: "[{\"e\":".into(),
        },
    );
    let expected = expected_messages(&frames[..5])
        .into_iter()
        .chain(expected_messages(&frames[6..]))
        .collect::<Vec<_>>();
    let server = fast_server(frames).await;
    let producer = producer::start(producer_options(
        server.url("!miniTicker@arr"),
        bootstrap,
        &topic,
    ))
    .unwrap();
    let metrics = producer.metrics();
    let total = expected.len() as u64;
    eventually(30, "every delivery", || {
        metrics.messages_out.load(Ordering::Relaxed) == total
    })
    .await;
    producer.stop();
    producer.join().await.unwrap();
    assert_eq!(metrics.malformed_frames.load(Ordering::Relaxed), 1);
    let mut expected = expected;
    expected.sort();
    assert_eq!(topic_messages(bootstrap, &topic).await, expected);
}

#[cfg_attr(
    sluice_no_nisshi,
    ignore = "needs Nisshi (NISSHI_BIN or nisshi on PATH): restarts a broker of its own"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_holds_the_producer_back_then_everything_is_delivered_once() {
    let mut broker = OwnBroker::start();
    let address = broker.address();
    let topic = broker.kafka().new_topic(2).await;
    broker.kill();

    let frames = small_capture();
    let expected = expected_messages(&frames);
    let server = fast_server(frames).await;
    let mut options = producer_options(server.url("!miniTicker@arr"), &address, &topic);
    options.max_in_flight = 50;
    let producer = producer::start(options).unwrap();
    let metrics = producer.metrics();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Kafka is down: nothing delivered, and the producer stopped taking frames at its bound.
    assert_eq!(metrics.messages_out.load(Ordering::Relaxed), 0);
    let taken = metrics.messages_in.load(Ordering::Relaxed);
    assert!(
        taken < expected.len() as u64,
        "{taken} of {} taken while Kafka was down",
        expected.len()
    );

    broker.revive();
    let total = expected.len() as u64;
    eventually(60, "deliveries after the outage", || {
        metrics.messages_out.load(Ordering::Relaxed) == total
    })
    .await;
    producer.stop();
    producer.join().await.unwrap();
    assert_eq!(topic_messages(&address, &topic).await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_is_replaced_before_its_age_limit_without_a_gap() {
    let frames = small_capture();
    let server = ReplayServer::start(
        frames.clone(),
        "127.0.0.1:0".parse().unwrap(),
        ReplayOptions {
            pacing: Pacing::Live { speed: 10.0 },
            ..ReplayOptions::default()
        },
    )
    .await
    .unwrap();
    let mut client = WebSocketClient::spawn(ClientOptions {
        max_connection_age: Duration::from_millis(600),
        ..ClientOptions::new(server.url("!miniTicker@arr"))
    });
    let metrics = client.metrics();
    // Collect 20 consecutive frames (2 s at speed 10): the connection is replaced at least
    // twice meanwhile, and every captured frame in that span arrives exactly once.
    let mut indices = Vec::new();
    for _ in 0..20 {
        let frame = next_frame(&mut client).await;
        let index = frames.iter().position(|f| f.text == frame.text).unwrap();
        indices.push(index);
    }
    assert!(metrics.reconnects.load(Ordering::Relaxed) >= 2);
    let expected: Vec<usize> = (indices[0]..indices[0] + 20).collect();
    assert_eq!(
        indices, expected,
        "no frame lost or repeated across replacements"
    );
}

/// A server that answers every WebSocket handshake with HTTP `status`, counting the attempts.
async fn refusing_server(
    status: &'static str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws/!miniTicker@arr", listener.local_addr().unwrap());
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = std::sync::Arc::clone(&attempts);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::Relaxed);
            let mut request = [0u8; 4096];
            let _ = socket.read(&mut request).await;
            let response =
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    (url, attempts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_location_is_one_clear_fatal_error_not_endless_retries() {
    // Binance answers HTTP 451 to restricted locations: no retry can change that.
    let (url, attempts) = refusing_server("451 Unavailable For Legal Reasons").await;
    let mut client = fast_client(url.clone());
    let end = tokio::time::timeout(Duration::from_secs(10), client.next()).await;
    assert!(matches!(end, Ok(None)), "the client gives up");
    let failure = client.failure().expect("the reason");
    assert!(
        failure.contains("HTTP 451") && failure.contains(&url),
        "{failure}"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(attempts.load(Ordering::Relaxed), 1, "no retry");

    // The source fails its query with that reason.
    let source = BinanceSource::new(
        "ticks",
        ClientOptions::new(url),
        ticker::event_time_schema(),
        JsonOptions::default(),
    );
    // The refusal may come while the query starts (the source connects then) or at a
    // trigger, whichever the connection's timing gives.
    let built = StreamingQueryBuilder::new()
        .source("ticks", source)
        .sql("SELECT symbol FROM ticks")
        .sink(MemorySink::new())
        .build()
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let error = match built {
        Err(e) => e.to_string(),
        Ok(mut execution) => loop {
            match execution.run_trigger().await {
                Err(e) => break e.to_string(),
                Ok(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Ok(_) => panic!("the query kept running against a refusing server"),
            }
        },
    };
    assert!(error.contains("HTTP 451"), "{error}");

    // A server error is retried as before.
    let (url, attempts) = refusing_server("503 Service Unavailable").await;
    let client = fast_client(url);
    eventually(10, "three attempts", || {
        attempts.load(Ordering::Relaxed) >= 3
    })
    .await;
    assert_eq!(client.failure(), None);
}
