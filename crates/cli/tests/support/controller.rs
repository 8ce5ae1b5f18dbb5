//! A `strata controller` in a network namespace at 10.0.0.10 (API :8080, southbound
//! :8081), and `strata ctl` against it: what the role-process tests share.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `strata ctl ARGS` from namespace `ns`, with the token the controller wrote in `data`.
pub fn ctl(ns: &str, data: &Path, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_strata"), "ctl"])
        .args(args)
        .env("STRATA_CONTROLLER", "http://10.0.0.10:8080")
        .env("STRATA_TOKEN_FILE", data.join("token"))
        .env_remove("STRATA_TOKEN")
        .output()
        .unwrap()
}

/// Starts the controller in `ns` (which has 10.0.0.10) with its store in `data`, and
/// returns once it answers; the caller owns the process.
pub fn start(ns: &str, data: &Path) -> Child {
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            env!("CARGO_BIN_EXE_strata"),
            "controller",
        ])
        .arg("--data-dir")
        .arg(data)
        .args([
            "--listen",
            "10.0.0.10:8080",
            "--southbound",
            "10.0.0.10:8081",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(data.join("token").exists() && ctl(ns, data, &["get", "servers"]).status.success()) {
        assert!(Instant::now() < deadline, "the controller did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    child
}
