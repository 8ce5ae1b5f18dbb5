//! `strata controller` as a process: killed with SIGKILL in the middle of a stream of
//! writes and started again, it has every write it acknowledged; and `strata ctl` against
//! it, as a user would drive it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Controller {
    child: Child,
    base: String,
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the controller on a free loopback port; returns once it serves.
fn start(dir: &Path) -> Controller {
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["controller", "--data-dir"])
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--southbound", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "controller: http://127.0.0.1:PORT/networking/v1/ (token in ...)"
    let url = line
        .split_whitespace()
        .nth(1)
        .expect("the controller prints its address");
    Controller {
        child,
        base: url.trim_end_matches('/').to_string(),
    }
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("strata-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

fn mux(i: usize) -> Value {
    json!({"properties": {"routerConfiguration": {
        "localASN": 64628,
        "peerRouterConfigurations": [{"routerIPAddress": format!("10.0.{}.{}", i / 250, i % 250 + 1), "peerASN": 64708}]
    }}})
}

#[derive(Debug, Clone)]
enum Acked {
    Put(String),
    Deleted,
}

#[test]
fn a_controller_killed_mid_stream_keeps_every_acknowledged_write() {
    let dir = TempDir::new("controller-crash");
    for round in 0..3u64 {
        let c = start(&dir.0);
        let token = std::fs::read_to_string(dir.0.join("token"))
            .unwrap()
            .trim()
            .to_string();
        let auth = format!("Bearer {token}");
        // What each mux was when last acknowledged, over every round so far.
        let acked = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::<
            usize,
            Acked,
        >::new()));
        let writer = {
            let (base, auth, acked) = (c.base.clone(), auth.clone(), acked.clone());
            std::thread::spawn(move || {
                let agent = agent();
                for n in 0.. {
                    let i = (n * 7 + round as usize * 3) % 40;
                    let url = format!("{base}/loadBalancerMuxes/mux-{i}");
                    let result = if n % 5 == 4 {
                        agent.delete(&url).header("Authorization", &auth).call()
                    } else {
                        agent
                            .put(&url)
                            .header("Authorization", &auth)
                            .send(mux(n).to_string())
                    };
                    // No answer: the controller is gone. This write may or may not
                    // have been committed; it was not acknowledged.
                    let Ok(mut r) = result else { return Some(i) };
                    let status = r.status().as_u16();
                    let body = r.body_mut().read_to_string().unwrap_or_default();
                    let outcome = match status {
                        200 | 201 if n % 5 != 4 => {
                            let doc: Value = serde_json::from_str(&body).unwrap();
                            Acked::Put(doc["etag"].as_str().unwrap().to_string())
                        }
                        200 | 404 => Acked::Deleted,
                        other => panic!("{url}: {other} {body}"),
                    };
                    acked.lock().unwrap().insert(i, outcome);
                }
                None
            })
        };
        std::thread::sleep(Duration::from_millis(150 + 100 * round));
        drop(c); // SIGKILL
        let unanswered = writer.join().unwrap();
        let acked = acked.lock().unwrap().clone();
        assert!(
            acked.len() > 5,
            "round {round}: only {} writes before the kill",
            acked.len()
        );

        let c = start(&dir.0);
        let agent = agent();
        for (i, outcome) in acked.iter().filter(|(i, _)| Some(**i) != unanswered) {
            let mut r = agent
                .get(format!("{}/loadBalancerMuxes/mux-{i}", c.base))
                .header("Authorization", &auth)
                .call()
                .unwrap();
            let status = r.status().as_u16();
            let body = r.body_mut().read_to_string().unwrap();
            match outcome {
                Acked::Put(etag) => {
                    assert_eq!(status, 200, "round {round}: mux-{i} was acknowledged");
                    let doc: Value = serde_json::from_str(&body).unwrap();
                    assert_eq!(
                        doc["etag"].as_str(),
                        Some(etag.as_str()),
                        "round {round}: mux-{i}"
                    );
                }
                Acked::Deleted => assert_eq!(status, 404, "round {round}: mux-{i} was deleted"),
            }
        }
    }
}

fn ctl(c: &Controller, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("ctl")
        .args(args)
        .env(
            "STRATA_CONTROLLER",
            c.base.trim_end_matches("/networking/v1"),
        )
        .env("STRATA_TOKEN_FILE", dir.join("token"))
        .env_remove("STRATA_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn ctl_applies_gets_waits_and_deletes() {
    let dir = TempDir::new("controller-ctl");
    let c = start(&dir.0);
    let file = dir.0.join("portal.yaml");
    std::fs::write(
        &file,
        "resourceRef: /logicalNetworks/public\nproperties:\n  subnets:\n    - resourceId: vip\n      properties:\n        \
         addressPrefix: 192.168.133.0/24\n        ipPools:\n          - resourceId: pool\n            properties: \
         {startIPAddress: 192.168.133.74, endIPAddress: 192.168.133.99}\n---\nresourceRef: /loadBalancerManager/config\n\
         properties:\n  vipIpPools: [{resourceRef: /logicalNetworks/public/subnets/vip/ipPools/pool}]\n---\n\
         resourceRef: /publicIPAddresses/portal\nproperties: {publicIPAllocationMethod: Dynamic}\n",
    )
    .unwrap();
    let (ok, out, err) = ctl(&c, &dir.0, &["apply", "-f", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "logicalNetworks/public created\nloadBalancerManager/config created\npublicIPAddresses/portal created\n"
    );
    // Updating until the controller has compiled it (no node carries it: at once).
    let (ok, out, _) = ctl(&c, &dir.0, &["wait", "publicIPAddresses", "portal"]);
    assert!(ok);
    assert_eq!(out, "publicIPAddresses/portal Succeeded\n");
    let (ok, out, _) = ctl(&c, &dir.0, &["get", "publicIPAddresses"]);
    assert!(ok);
    assert_eq!(
        out,
        "ID      STATE      DETAIL\nportal  Succeeded  192.168.133.74\n"
    );
    let (ok, out, _) = ctl(
        &c,
        &dir.0,
        &["get", "publicIPAddresses", "portal", "-o", "json"],
    );
    assert!(ok);
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["properties"]["ipAddress"], "192.168.133.74");
    // Its own metrics, with no token: the API's answers by code, resources by state.
    let metrics = ureq::get(&c.base.replace("/networking/v1", "/metrics"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains("# TYPE strata_api_requests_total counter"),
        "{metrics}"
    );
    assert!(
        metrics.contains("strata_api_requests_total{code=\"200\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "strata_resources{collection=\"publicIPAddresses\",provisioning_state=\"Succeeded\"} 1"
        ),
        "{metrics}"
    );
    common::promtool_accepts(&metrics);
    // Errors go to stderr, with a non-zero exit, and say what is wrong.
    let (ok, _, err) = ctl(&c, &dir.0, &["delete", "logicalNetworks", "public"]);
    assert!(!ok);
    assert!(err.contains("409 Conflict"), "{err}");
    let bad = dir.0.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"resourceRef": "/publicIPAddresses/x", "properties": {"ipAddress": "300.1.1.1"}}"#,
    )
    .unwrap();
    let (ok, _, err) = ctl(&c, &dir.0, &["apply", "-f", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("400 InvalidProperty at /properties/ipAddress"),
        "{err}"
    );
    let (ok, out, _) = ctl(&c, &dir.0, &["delete", "publicIPAddresses", "portal"]);
    assert!(ok);
    assert_eq!(out, "publicIPAddresses/portal deleted\n");
    let (ok, out, _) = ctl(&c, &dir.0, &["get", "publicIPAddresses", "-o", "yaml"]);
    assert!(ok);
    assert_eq!(out, "nextLink: ''\nvalue: []\n");
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["ctl", "get", "loadBalancers"])
        .env(
            "STRATA_CONTROLLER",
            c.base.trim_end_matches("/networking/v1"),
        )
        .env_remove("STRATA_TOKEN")
        .env_remove("STRATA_TOKEN_FILE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no API token"));
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Whether schemathesis (`st`) is installed; a missing one fails the test when
/// STRATA_REQUIRE_SCHEMATHESIS is set (the test command installs it), else skips it.
fn schemathesis_present() -> bool {
    let present = Command::new("st")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !present {
        assert!(
            std::env::var_os("STRATA_REQUIRE_SCHEMATHESIS").is_none(),
            "schemathesis (st) is not installed"
        );
        eprintln!("skipped: schemathesis (st) is not installed");
    }
    present
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_off_the_schema() {
    if !schemathesis_present() {
        return;
    }
    let dir = TempDir::new("controller-schemathesis");
    let c = start(&dir.0);
    let token = std::fs::read_to_string(dir.0.join("token")).unwrap();
    let spec = c.base.replace("/networking/v1", "/openapi.json");
    let out = Command::new("st")
        .args(["run", &spec, "-H"])
        .arg(format!("Authorization: Bearer {}", token.trim()))
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_headers_conformance,response_schema_conformance,negative_data_rejection",
            "--max-examples",
            "10",
            "--seed",
            "1",
            "--no-color",
        ])
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("passed"), "{report}");
}
