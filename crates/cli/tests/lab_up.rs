//! `strata lab up`: the POC lab on the wall clock with its controller's API on loopback;
//! `strata ctl` changes the running lab, and the change reaches its Muxes and hosts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

struct Running {
    child: Child,
    dir: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts the lab; returns it and the controller's base address once it says it is up.
fn up() -> (Running, String) {
    let dir = std::env::temp_dir().join(format!("strata-lab-up-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["lab", "up", "--listen", "127.0.0.1:0", "--seconds", "120"])
        .arg("--data-dir")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running { child, dir };
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let base = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("lab up ended early: {seen:?}"))
            .unwrap();
        if let Some(rest) = line.strip_prefix("controller: ") {
            break rest.split("/networking/v1/").next().unwrap().to_string();
        }
        seen.push(line);
    };
    // Keep reading what it prints, so its output never finds the pipe closed.
    std::thread::spawn(move || lines.for_each(drop));
    assert!(
        seen.iter()
            .any(|l| l.starts_with("boot: 4/4 BGP sessions established, agents converged")),
        "{seen:?}"
    );
    (running, base)
}

fn ctl(base: &str, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("ctl")
        .args(args)
        .env("STRATA_CONTROLLER", base)
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
fn ctl_changes_the_running_lab() {
    let (lab, base) = up();
    let (ok, out, err) = ctl(&base, &lab.dir, &["get", "loadBalancerMuxes"]);
    assert!(ok, "{err}");
    assert!(out.contains("MuxVM   Succeeded"), "{out}");
    // A new VIP, dynamic, with PortalVM3 (on the second host) behind it.
    let mac: String = strata_lab::mac_of(
        strata_lab::file::parse(
            strata_lab::AZURE_STACK_POC_NAME,
            strata_lab::AZURE_STACK_POC,
        )
        .unwrap()
        .node("PortalVM3")
        .unwrap(),
        0,
    )
    .0
    .iter()
    .map(|b| format!("{b:02X}"))
    .collect();
    let file = lab.dir.join("tenant.yaml");
    std::fs::write(
        &file,
        format!(
            "resourceRef: /loadBalancers/tenant\nproperties:\n  frontendIPConfigurations:\n    - resourceId: fe\n      \
             properties: {{privateIPAllocationMethod: Dynamic}}\n  backendAddressPools:\n    - resourceId: web\n  \
             loadBalancingRules:\n    - resourceId: http\n      properties:\n        protocol: Tcp\n        frontendPort: 80\n        \
             backendPort: 80\n        frontendIPConfigurations: [{{resourceRef: /loadBalancers/tenant/frontendIPConfigurations/fe}}]\n        \
             backendAddressPool: {{resourceRef: /loadBalancers/tenant/backendAddressPools/web}}\n---\n\
             resourceRef: /networkInterfaces/PortalVM3\nproperties:\n  privateMacAddress: {mac}\n  server: {{resourceRef: /servers/HyperVHost2}}\n  \
             ipConfigurations:\n    - resourceId: ipconfig1\n      properties:\n        privateIPAddress: 192.168.100.76\n        \
             loadBalancerBackendAddressPools: [{{resourceRef: /loadBalancers/tenant/backendAddressPools/web}}]\n"
        ),
    )
    .unwrap();
    let (ok, out, err) = ctl(&base, &lab.dir, &["apply", "-f", file.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "loadBalancers/tenant created\nnetworkInterfaces/PortalVM3 created\n"
    );
    // Succeeded only once both Muxes and the second host have applied it.
    let (ok, out, err) = ctl(
        &base,
        &lab.dir,
        &["wait", "networkInterfaces", "PortalVM3", "--timeout", "30"],
    );
    assert!(ok, "{err}");
    assert_eq!(out, "networkInterfaces/PortalVM3 Succeeded\n");
    let (ok, out, _) = ctl(
        &base,
        &lab.dir,
        &["get", "loadBalancers", "tenant", "-o", "json"],
    );
    assert!(ok);
    let doc: Value = serde_json::from_str(&out).unwrap();
    let vip = doc["properties"]["frontendIPConfigurations"][0]["properties"]["privateIPAddress"]
        .as_str()
        .unwrap();
    assert!(
        vip.starts_with("192.168.133.") && vip != "192.168.133.74",
        "{vip}"
    );
    assert_eq!(doc["properties"]["provisioningState"], "Succeeded");
}

#[test]
fn the_dashboard_serves_its_page_state_metrics_and_traces() {
    let (lab, base) = up();
    let page = ureq::get(&format!("{base}/"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(page.contains("<title>Strata lab</title>"), "{page}");
    let state = |path: &str| -> Value {
        ureq::get(&format!("{base}{path}"))
            .call()
            .unwrap()
            .into_body()
            .read_json()
            .unwrap()
    };
    let first = state("/dashboard/state");
    assert_eq!(first["lab"], "azure-stack-poc");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let second = state("/dashboard/state");
    assert!(
        second["time_s"].as_f64() > first["time_s"].as_f64(),
        "the state is live: {} then {}",
        first["time_s"],
        second["time_s"]
    );
    let svg = ureq::get(&format!("{base}/dashboard/diagram.svg"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("data-node=\"NCVM\""));

    // A trace from the page: the hops, and the diagram with numbered arrows.
    let traced: Value = ureq::post(&format!("{base}/dashboard/trace"))
        .send_json(serde_json::json!({"from": "ClientVM", "to": "http://portal.azurestack.local/"}))
        .unwrap()
        .into_body()
        .read_json()
        .unwrap();
    assert_eq!(traced["trace"]["passed"], true, "{:#}", traced["trace"]);
    assert!(
        traced["text"]
            .as_str()
            .unwrap()
            .contains("load-balances VIP")
    );
    assert!(traced["svg"].as_str().unwrap().contains("class=\"hop\""));
    let refused = ureq::post(&format!("{base}/dashboard/trace"))
        .config()
        .http_status_as_error(false)
        .build()
        .send_json(serde_json::json!({"from": "ClientVM", "to": "x", "proto": "sctp"}))
        .unwrap();
    assert_eq!(refused.status(), 400);

    // An API request shows in the metrics, by its status code.
    let (ok, _, err) = ctl(&base, &lab.dir, &["get", "servers"]);
    assert!(ok, "{err}");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let metrics = ureq::get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert!(
        metrics.contains(r#"strata_api_requests_total{node="NCVM",role="controller",code="200"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("strata_bgp_session_established{"),
        "{metrics}"
    );
}

/// The dashboard in headless Chromium, driven by playwright-core
/// (`tests/browser/dashboard.mjs`): the topology and counters are there and move, a trace
/// started from the page is drawn, no JavaScript error; the screenshot is kept in the
/// target directory.
#[test]
fn the_dashboard_works_in_a_browser() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/browser");
    let ready = root.join("node_modules/playwright-core").exists()
        && Path::new("/usr/bin/chromium").exists()
        && Command::new("node").arg("--version").output().is_ok();
    if !ready {
        assert!(
            std::env::var_os("STRATA_REQUIRE_BROWSER").is_none(),
            "the browser test needs node, /usr/bin/chromium and `npm ci` in tests/browser (STRATA_REQUIRE_BROWSER)"
        );
        eprintln!("skipped: no chromium, node or playwright-core");
        return;
    }
    let (_lab, base) = up();
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let out = Command::new("node")
        .arg(root.join("dashboard.mjs"))
        .arg(format!("{base}/"))
        .arg(&screenshot)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the dashboard in Chromium: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
}
