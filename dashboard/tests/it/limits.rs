//! The server's own limits: slow or idle clients are closed after the header-read timeout,
//! connections beyond the limit wait until one closes, and the configuration is validated.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixtures::Server;
use crate::http::request;

/// Reads until the server closes the connection (or `wait` passes) and says how long after
/// `started` that was.
async fn closed_within(
    stream: &mut TcpStream,
    started: Instant,
    wait: Duration,
) -> Option<Duration> {
    let mut buffer = [0u8; 1024];
    loop {
        match tokio::time::timeout(
            wait.saturating_sub(started.elapsed()),
            stream.read(&mut buffer),
        )
        .await
        {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn slow_and_idle_clients_are_closed_after_the_header_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("none.db").display());
    let server = Server::start(&url, |c| {
        c.header_read_timeout = Duration::from_millis(400);
    })
    .await;
    // A connection that never sends anything, and one that sends half a request line.
    let connected = Instant::now();
    let mut idle = TcpStream::connect(&server.addr).await.unwrap();
    let mut slow = TcpStream::connect(&server.addr).await.unwrap();
    slow.write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    for (what, stream) in [("idle", &mut idle), ("slow", &mut slow)] {
        let closed = closed_within(stream, connected, Duration::from_secs(5)).await;
        assert!(
            closed.is_some_and(|t| t >= Duration::from_millis(300)),
            "{what}: {closed:?}"
        );
    }
    // A kept-alive connection is closed once it stays idle past the timeout after a response.
    let mut kept = TcpStream::connect(&server.addr).await.unwrap();
    kept.write_all(b"GET /api/status HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let answered = Instant::now();
    let closed = closed_within(&mut kept, answered, Duration::from_secs(5)).await;
    assert!(
        closed.is_some_and(|t| t >= Duration::from_millis(300)),
        "kept alive: {closed:?}"
    );
    // Requests sent in time are served as always.
    assert_eq!(request(&server.addr, "GET", "/", None).await.status, 200);
    server.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("none.db").display());
    let server = Server::start(&url, |c| {
        c.max_connections = Some(2);
        c.header_read_timeout = Duration::from_secs(60);
    })
    .await;
    let holders = [
        TcpStream::connect(&server.addr).await.unwrap(),
        TcpStream::connect(&server.addr).await.unwrap(),
    ];
    // Give the server time to take both in.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = server.addr.clone();
    let waiting = tokio::spawn(async move {
        let started = Instant::now();
        let response = request(&addr, "GET", "/api/status", None).await;
        (response.status, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!waiting.is_finished(), "served beyond the limit");
    drop(holders);
    let (status, took) = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("served once a slot is free")
        .unwrap();
    assert_eq!(status, 200);
    assert!(took >= Duration::from_millis(700), "{took:?}");
    server.stop().await;
}

#[tokio::test]
async fn limits_are_validated() {
    for tweak in [
        (|c: &mut sluice_dashboard::DashboardConfig| c.max_connections = Some(0))
            as fn(&mut sluice_dashboard::DashboardConfig),
        |c| c.header_read_timeout = Duration::ZERO,
    ] {
        let mut config = sluice_dashboard::DashboardConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        };
        tweak(&mut config);
        assert!(matches!(
            sluice_dashboard::Dashboard::bind(config).await,
            Err(sluice_dashboard::DashboardError::Config(_))
        ));
    }
    let default = sluice_dashboard::http::HttpLimits::default();
    assert!(
        (1..=1_024).contains(&default.max_connections),
        "{default:?}"
    );
}
