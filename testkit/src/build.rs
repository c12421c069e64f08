//! For the build scripts of the crates whose integration tests need services: which of those
//! tests this machine cannot run, as `cfg`s the tests turn into `#[ignore = "reason"]`, so
//! that `cargo test` lists them as ignored, with the reason, instead of passing them.
//!
//! - `sluice_no_postgres`: `DATABASE_URL` is unset and PostgreSQL's server is not installed;
//! - `sluice_no_broker`: `KAFKA_BOOTSTRAP` is unset (the tests that need more than the
//!   in-process mock cluster: deleting topics, restarting the broker);
//! - `sluice_no_nisshi`: neither `NISSHI_BIN` nor `nisshi` on `PATH` (the tests that start and
//!   kill a broker of their own);
//! - `sluice_no_chromium`: `chromium` or `chromedriver` is not installed.
//!
//! Under `CI=true` none is set: there, a missing service fails its tests.

use crate::{find_program, in_ci, postgres};

/// Prints the `cargo::` lines declaring and setting the cfgs above.
pub fn declare_test_cfgs() {
    for variable in [
        "CI",
        "DATABASE_URL",
        "KAFKA_BOOTSTRAP",
        "NISSHI_BIN",
        "PATH",
    ] {
        println!("cargo::rerun-if-env-changed={variable}");
    }
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty());
    let missing = [
        (
            "sluice_no_postgres",
            !set("DATABASE_URL") && postgres::server_bin_dir().is_none(),
        ),
        ("sluice_no_broker", !set("KAFKA_BOOTSTRAP")),
        (
            "sluice_no_nisshi",
            !set("NISSHI_BIN") && find_program(&["nisshi"]).is_none(),
        ),
        (
            "sluice_no_chromium",
            find_program(&["chromium", "chromium-browser", "google-chrome"]).is_none()
                || find_program(&["chromedriver"]).is_none(),
        ),
    ];
    for (cfg, missing) in missing {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if missing && !in_ci() {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
