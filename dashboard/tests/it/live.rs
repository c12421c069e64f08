//! Live updates: a committed batch invalidates the cache and is pushed over SSE.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::both;
use crate::fixtures::{Backend, Fixture, Server, t0};
use crate::http::get_json;

const T: &str = "projet_bdcc";

/// Reads SSE events (`event:` name and `data:` JSON) from an open stream.
pub struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    pub async fn open(addr: &str) -> Events {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        Events {
            reader: BufReader::new(stream),
        }
    }

    /// The next named event (skipping keep-alive comments and chunk framing).
    pub async fn next(&mut self, wait: Duration) -> (String, serde_json::Value) {
        let work = async {
            let mut name = String::new();
            loop {
                let mut line = String::new();
                let n = self.reader.read_line(&mut line).await.unwrap();
                assert!(n > 0, "event stream closed");
                let line = line.trim_end();
                if let Some(event) = line.strip_prefix("event: ") {
                    name = event.to_owned();
                } else if let Some(data) = line.strip_prefix("data: ")
                    && !name.is_empty()
                {
                    return (name, serde_json::from_str(data).unwrap());
                }
            }
        };
        tokio::time::timeout(wait, work)
            .await
            .expect("an event in time")
    }

    /// The first event whose `seq` is above `seq`.
    pub async fn after(&mut self, seq: u64, wait: Duration) -> (String, serde_json::Value) {
        loop {
            let (name, event) = self.next(wait).await;
            if event["seq"].as_u64().unwrap() > seq {
                return (name, event);
            }
        }
    }
}

async fn batch_pushed(fixture: &Fixture) {
    let server = Server::after_first_commit(fixture, T).await;
    let a = server.addr.clone();
    let mut events = Events::open(&a).await;
    let (name, hello) = events.next(Duration::from_secs(10)).await;
    assert_eq!(name, "hello");
    let seq = hello["seq"].as_u64().unwrap();
    let (_, body) = get_json(&a, "/api/overview?symbols=BTCUSDT&period=1h").await;
    assert_eq!(body["stats"][0]["last_close"], 110.0);

    // A new batch: one BTCUSDT snapshot a second after the newest.
    let later = t0() + chrono::TimeDelta::seconds(1);
    fixture
        .insert_ticks_at(T, later, &[("BTCUSDT", 0, 123.5, 125.0, 100.0, 1.0)])
        .await;
    let (_, body) = get_json(&a, "/api/overview?symbols=BTCUSDT&period=1h").await;
    assert_eq!(
        body["stats"][0]["last_close"], 110.0,
        "cached until a commit"
    );
    fixture.commit(T, 1, 1).await;

    let (mut name, mut batch) = events.after(seq, Duration::from_secs(10)).await;
    // The channel is database-wide: skip the notifications of tests in other schemas.
    while fixture.backend == Backend::Postgres
        && batch["batch"]["table"] == T
        && batch["batch"]["batch_id"] != 1
    {
        let seq = batch["seq"].as_u64().unwrap();
        (name, batch) = events.after(seq, Duration::from_secs(10)).await;
    }
    assert_eq!(name, "batch");
    assert!(batch["last_commit_ms"].is_i64(), "{batch}");
    if fixture.backend == Backend::Postgres {
        assert_eq!(batch["batch"]["batch_id"], 1, "{batch}");
        assert_eq!(batch["batch"]["table"], T);
    }
    let (_, body) = get_json(&a, "/api/overview?symbols=BTCUSDT&period=1h").await;
    assert_eq!(body["stats"][0]["last_close"], 123.5, "{body}");
    assert_eq!(body["end_ms"], later.timestamp_millis());
    let (_, status) = get_json(&a, "/api/status").await;
    assert!(status["seq"].as_u64().unwrap() > seq);
    // The server stops although an event stream is open.
    server.stop().await;
}
both!(batch_pushed, batch_pushed_sqlite, batch_pushed_postgres);
