//! A pipeline file that does not load: a message naming the file, line and column, and exit
//! code 2 (usage error), before anything connects.

use std::process::Command;

use crate::process::{ROOT, sluice};

#[test]
fn an_invalid_file_exits_with_2_and_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.sql");
    std::fs::write(
        &file,
        "CREATE TABLE t (x BIGINT) WITH (connector = 'memory');\n\
         CREATE TABLE out WITH (connector = 'console', output_mode = 'upsert');\n\
         INSERT INTO out SELECT x FROM t;\n",
    )
    .unwrap();
    for command in ["run", "explain"] {
        let output = sluice().arg(command).arg(&file).output().unwrap();
        assert_eq!(output.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "{}:2:61: option 'output_mode': unknown output mode 'upsert'",
                file.display()
            )),
            "{stderr}"
        );
    }
    let output = sluice().args(["run", "/nonexistent.sql"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read /nonexistent.sql"));
}

#[test]
fn explain_prints_the_streaming_plan_of_the_query_files() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let output = sluice()
        .current_dir(root)
        .args(["explain", "queries/candles_1m.sql"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let plan = String::from_utf8_lossy(&output.stdout);
    assert!(
        plan.contains("== query candles_1m (queries/candles_1m.sql:"),
        "{plan}"
    );
    assert!(plan.contains("update"), "{plan}");
}

/// `sluice run queries/projet_bdcc.sql` reading files from `dir/in` into SQLite in `dir`.
fn run_seed_job(dir: &std::path::Path) -> Command {
    let mut command = sluice();
    command
        .current_dir(ROOT)
        .args(["run", "queries/projet_bdcc.sql"])
        .env("TICKS_CONNECTOR", "file")
        .env("TICKS_PATH", dir.join("in"))
        .env("SINK_CONNECTOR", "sqlite")
        .env("DATABASE_URL", format!("sqlite://{}/out.db", dir.display()))
        .env("CHECKPOINT_DIR", dir.join("checkpoints"));
    command
}

#[test]
fn an_available_now_run_exits_0_with_one_line_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    std::fs::write(
        dir.path().join("in/0.jsonl"),
        "{\"symbol\":\"BTCUSDT\",\"close_price\":1.5,\"timestamp\":1764331200000}\n",
    )
    .unwrap();
    let output = run_seed_job(dir.path())
        .arg("--available-now")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with("[projet_bdcc] batch 0 · 1 rows in · 1 out · "),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
}

/// SIGTERM in the first instant of `sluice run` (a quick `docker stop`): a graceful stop with
/// exit code 0, not the signal's default action killing the process.
#[cfg(unix)]
#[test]
fn a_sigterm_while_starting_is_a_graceful_stop() {
    use std::os::unix::process::ExitStatusExt;

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    for delay_ms in [20, 150] {
        let child = run_seed_job(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            output.status.signal(),
            None,
            "killed by the signal after {delay_ms} ms: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            output.status.success(),
            "after {delay_ms} ms: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
