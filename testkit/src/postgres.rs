//! PostgreSQL for the tests: `DATABASE_URL` when set, otherwise a throwaway cluster of this
//! test process, started from PostgreSQL's server programs when they are installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::{find_program, in_ci};

/// The directory holding PostgreSQL's `initdb`, `pg_ctl` and `postgres`: on `PATH`, or where
/// Debian, Fedora and Homebrew install them. `None` when the server is not installed.
pub fn server_bin_dir() -> Option<PathBuf> {
    if let Some(initdb) = find_program(&["initdb"]) {
        return initdb.parent().map(Path::to_path_buf);
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    for root in ["/usr/lib/postgresql", "/usr/local/opt", "/opt/homebrew/opt"] {
        if let Ok(entries) = std::fs::read_dir(root) {
            candidates.extend(entries.flatten().map(|e| e.path().join("bin")));
        }
    }
    candidates.push(PathBuf::from("/usr/pgsql/bin"));
    // The newest version first, by the version number in the path (`…/17/bin` after
    // `…/9.6/bin`).
    let version = |dir: &PathBuf| -> Vec<u32> {
        dir.components()
            .rev()
            .nth(1)
            .and_then(|c| c.as_os_str().to_str())
            .map(|name| {
                name.split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    candidates.sort_by_key(version);
    candidates
        .into_iter()
        .rev()
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

/// The URL of a PostgreSQL server for the test: `DATABASE_URL`, or else a throwaway cluster
/// started once per test process (user `postgres`, password `sluice`; removed when the
/// process exits). `None` when neither is
/// available outside CI; under `CI=true` that is a panic.
pub fn url() -> Option<String> {
    if let Ok(url) = std::env::var("DATABASE_URL")
        && !url.is_empty()
    {
        return Some(url);
    }
    static THROWAWAY: OnceLock<Option<String>> = OnceLock::new();
    let url = THROWAWAY
        .get_or_init(|| server_bin_dir().map(|bin| start_throwaway(&bin)))
        .clone();
    if url.is_none() && in_ci() {
        panic!("CI=true but DATABASE_URL is not set and PostgreSQL's server is not installed");
    }
    url
}

/// Starts a cluster in a new temporary directory on a free port, with password
/// authentication, with a watchdog that stops it and removes the directory once this process
/// is gone. As root (initdb refuses to run as root), the cluster runs as the `postgres` user.
fn start_throwaway(bin: &Path) -> String {
    let dir = tempfile::Builder::new()
        .prefix("sluice-test-pg-")
        .tempdir()
        .expect("temp dir for the throwaway PostgreSQL")
        .keep();
    let as_user = run_as_user(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let data = dir.join("data");
    let prefix = match &as_user {
        Some(user) => format!("runuser -u {user} -- "),
        None => String::new(),
    };
    // Single-quoted for sh, a quote inside written as '\''.
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    // Password authentication, as production has it (a test checks a wrong one is refused).
    let password = dir.join("password");
    std::fs::write(&password, "sluice\n").expect("write the throwaway cluster's password file");
    let initdb = format!(
        "{prefix}{} -D {} -U postgres -A scram-sha-256 --pwfile={} -E UTF8 --no-sync >{} 2>&1",
        quote(&bin.join("initdb")),
        quote(&data),
        quote(&password),
        quote(&dir.join("initdb.log")),
    );
    let pg_ctl = |action: &str| {
        format!(
            "{prefix}{} -D {} {action}",
            quote(&bin.join("pg_ctl")),
            quote(&data)
        )
    };
    let start = pg_ctl(&format!(
        "-w -l {} -o \"-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
         -c max_connections=200\" start >/dev/null",
        quote(&dir.join("server.log")),
        quote(&dir),
    ));
    // The watchdog is started first, so that a failed start is cleaned up too. It outlives
    // this process in its own process group (so a Ctrl-C on the tests
    // does not kill it before it cleans up), polling for this process's exit.
    let watchdog = format!(
        "trap '' INT; while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
         {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        stop = pg_ctl("-m immediate stop"),
        dir = quote(&dir),
    );
    #[expect(
        clippy::zombie_processes,
        reason = "the watchdog outlives this process on purpose: it cleans up after its exit"
    )]
    let _watchdog = std::os::unix::process::CommandExt::process_group(
        Command::new("sh").args(["-c", &watchdog]),
        0,
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("start the throwaway PostgreSQL's watchdog");
    run_shell(&format!("{initdb} && {start}"), &dir);
    eprintln!(
        "DATABASE_URL is not set: using a throwaway PostgreSQL cluster in {} on port {port}",
        dir.display()
    );
    format!("postgres://postgres:sluice@127.0.0.1:{port}/postgres")
}

/// As root, the user the cluster runs as (`postgres`, made owner of `dir`); otherwise `None`.
fn run_as_user(dir: &Path) -> Option<String> {
    let uid = |user: Option<&str>| {
        let output = Command::new("id").arg("-u").args(user).output().ok()?;
        String::from_utf8(output.stdout)
            .ok()?
            .trim()
            .parse::<u32>()
            .ok()
    };
    if uid(None) != Some(0) {
        return None;
    }
    let owner = uid(Some("postgres"))
        .expect("running as root, the throwaway PostgreSQL needs a `postgres` user");
    std::os::unix::fs::chown(dir, Some(owner), None)
        .expect("chown the throwaway cluster's directory");
    Some("postgres".into())
}

/// Runs `script` with `sh`, panicking with the logs in `dir` when it fails.
fn run_shell(script: &str, dir: &Path) {
    let status = Command::new("sh")
        .args(["-c", script])
        .status()
        .expect("run sh");
    if !status.success() {
        let log = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        panic!(
            "starting the throwaway PostgreSQL failed ({status}):\n{}\n{}",
            log("initdb.log"),
            log("server.log")
        );
    }
}
