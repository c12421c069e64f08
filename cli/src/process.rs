//! What the commands share about the process they run in: stopping on Ctrl-C or SIGTERM,
//! reading durations from the command line, and the process's resident memory.

use std::sync::OnceLock;

use tokio::sync::watch;

/// Set once the process is asked to stop.
static SHUTDOWN: OnceLock<watch::Receiver<bool>> = OnceLock::new();

/// Takes over Ctrl-C and SIGTERM for the whole process: called first thing in `main`, so that
/// a stop asked for while the queries are still starting (a quick `docker stop`, a
/// supervisor's restart) is remembered and honoured at the first batch boundary, instead of
/// killing the process outright with the signal's default action.
pub fn listen_for_shutdown() -> &'static watch::Receiver<bool> {
    SHUTDOWN.get_or_init(|| {
        let (stop, stopped) = watch::channel(false);
        // The handlers are registered here, synchronously, not when the task first runs.
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = interrupt.recv() => {}
                            _ = terminate.recv() => {}
                        }
                        stop.send_replace(true);
                    });
                }
                _ => {
                    tokio::spawn(async move {
                        let _ = tokio::signal::ctrl_c().await;
                        stop.send_replace(true);
                    });
                }
            }
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.send_replace(true);
        });
        stopped
    })
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM), at once if it already was.
pub async fn shutdown_signal() {
    let mut stopped = listen_for_shutdown().clone();
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// Parses `500ms`, `10s`, `5m`, `2h` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a duration (e.g. 500ms, 10s, 5m, 2h)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown duration unit '{other}' (ms, s, m, h)")),
    };
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// The process's resident memory in bytes (Linux), for the stats lines.
pub fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
