//! From the PUT of a new VIP to that VIP announced over BGP and answering, in the running
//! POC lab on the wall clock (issue 11: p50 <= 10 ms, p99 <= 50 ms over 1,000 VIPs added
//! one after another; Ananta reported a 75 ms median).
//!
//! The lab runs on a thread of its own, its controller's API served on loopback as
//! `strata lab up` serves it. For each VIP the bench PUTs, over HTTP, a loadBalancer with
//! a Dynamic frontend and a networkInterfaces resource that puts PortalVM3's NIC in its
//! pool (one resource per VIP, so each PUT stays the same size), and starts the clock
//! before the first PUT. The lab thread stops it when BGPVM has learned the VIP's /32 from
//! both Muxes and an HTTP GET from ClientVM to the VIP has been answered by PortalVM3.
//! The VIP pool is widened to a /18 (and NATVM's route with it) so 1,000 VIPs fit.
//!
//! cargo bench -p strata-lab --bench put_to_announce  (BENCH_VIPS=N for fewer)

use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use strata_lab::{Clock, Lab};
use strata_node::{TaskReport, TaskSpec};

const SECRET: &str = "bench-secret";

struct Watch {
    /// The loadBalancer whose VIP is awaited.
    id: String,
    vip: Option<String>,
    started: Instant,
    get: Option<strata_node::TaskId>,
}

/// Watches handed to the lab thread.
type Inbox = Arc<Mutex<Vec<Watch>>>;

/// The VIP the controller allocated to a load balancer, once it has.
fn vip_of(lab: &Lab, id: &str) -> Option<String> {
    let doc = lab.get("loadBalancers", id).ok()?;
    // Only once its backend is there too: the second PUT of the pair.
    lab.get("networkInterfaces", id).ok()?;
    Some(
        doc["properties"]["frontendIPConfigurations"][0]["properties"]["privateIPAddress"]
            .as_str()?
            .to_string(),
    )
}

/// BGPVM has installed the VIP's /32 with both Muxes as next hops (learned over BGP).
fn announced(lab: &Lab, vip: &str) -> bool {
    let Ok(prefix) = format!("{vip}/32").parse::<ipnet::Ipv4Net>() else {
        return false;
    };
    lab.node("BGPVM")
        .and_then(|n| n.router().fib().get(prefix))
        .is_some_and(|r| r.next_hops().count() == 2)
}

/// Runs the lab; answers each watch with the time from its start to the VIP answering.
fn run_lab(mut lab: Lab, inbox: Inbox, done: mpsc::Sender<Duration>) {
    let mut pending: Vec<Watch> = Vec::new();
    loop {
        pending.extend(inbox.lock().expect("inbox").drain(..));
        if Arc::strong_count(&inbox) == 1 && pending.is_empty() {
            return;
        }
        for w in pending.iter_mut().filter(|w| w.vip.is_none()) {
            w.vip = vip_of(&lab, &w.id);
        }
        lab.run_until(Duration::from_millis(20), |lab| {
            !inbox.lock().expect("inbox").is_empty()
                || pending.iter().any(|w| {
                    w.get.is_none()
                        && w.vip
                            .as_ref()
                            .map_or(vip_of(lab, &w.id).is_some(), |v| announced(lab, v))
                })
                || pending.iter().any(|w| {
                    w.get.is_some_and(|id| {
                        lab.node("ClientVM")
                            .and_then(|n| n.task_report(id))
                            .is_some()
                    })
                })
        });
        let now = lab.now();
        let mut finished = Vec::new();
        for (i, w) in pending.iter_mut().enumerate() {
            let Some(vip) = w.vip.clone() else { continue };
            match w.get {
                None if announced(&lab, &vip) => {
                    if std::env::var("BENCH_DEBUG").is_ok() {
                        eprintln!("{} announced after {:?}", w.id, w.started.elapsed());
                    }
                    let url = format!("http://{vip}/");
                    let client = lab.node_mut("ClientVM").expect("ClientVM");
                    w.get = Some(client.start_task(
                        now,
                        TaskSpec::HttpGet {
                            url,
                            timeout: Duration::from_secs(2),
                        },
                    ));
                }
                Some(id) => match lab.node("ClientVM").and_then(|n| n.task_report(id)) {
                    Some(TaskReport::Http(r))
                        if r.status == Some(200) && r.body.contains("PortalVM3") =>
                    {
                        finished.push(i);
                    }
                    // Not answered yet by the new VIP's DIP: ask again.
                    Some(_) => w.get = None,
                    None => {}
                },
                None => {}
            }
        }
        for i in finished.into_iter().rev() {
            let w = pending.remove(i);
            let _ = done.send(w.started.elapsed());
        }
    }
}

fn put(agent: &ureq::Agent, base: &str, path: &str, body: &Value) {
    let mut r = agent
        .put(format!("{base}/networking/v1/{path}"))
        .header("Authorization", format!("Bearer {SECRET}"))
        .send(body.to_string())
        .expect("PUT");
    let status = r.status().as_u16();
    assert!(
        status == 200 || status == 201,
        "{path}: {status} {}",
        r.body_mut().read_to_string().unwrap_or_default()
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` runs this with no argument
    // and expects it to be quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let count: usize = std::env::var("BENCH_VIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let mut topology = strata_lab::file::parse(
        strata_lab::AZURE_STACK_POC_NAME,
        strata_lab::AZURE_STACK_POC,
    )
    .expect("the POC lab");
    let wide: ipnet::Ipv4Net = "192.168.128.0/18".parse().expect("prefix");
    if let Some(slb) = topology.slb.as_mut() {
        slb.vip_prefix = wide;
    }
    let natvm = topology.node("NATVM").expect("NATVM");
    for r in &mut topology.nodes[natvm].routes {
        if r.prefix.to_string() == "192.168.133.0/24" {
            r.prefix = wide;
        }
    }
    let mac: String = strata_lab::mac_of(topology.node("PortalVM3").expect("PortalVM3"), 0)
        .0
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let mut lab = Lab::with_secret(topology, Clock::Wall, SECRET.into()).expect("lab");
    let (up, all) = lab.boot(strata_lab::BOOT_LIMIT);
    assert_eq!(up, all, "the lab is up");
    let api = lab.nc().expect("a controller").api.clone();
    let waker = lab.waker();
    let (bound_tx, bound_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("listen");
            let _ = bound_tx.send(listener.local_addr().expect("address"));
            let mut changes = api.subscribe();
            tokio::spawn(async move {
                while changes.changed().await.is_ok() {
                    waker.wake();
                }
            });
            let _ = strata_controller::server::serve(listener, api).await;
        });
    });
    let base = format!("http://{}", bound_rx.recv().expect("the API thread"));

    let inbox: Inbox = Arc::new(Mutex::new(Vec::new()));
    let (done_tx, done_rx) = mpsc::channel();
    let lab_inbox = inbox.clone();
    let lab_thread = std::thread::spawn(move || run_lab(lab, lab_inbox, done_tx));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut times = Vec::with_capacity(count);
    for i in 0..count {
        let id = format!("bench-{i}");
        let started = Instant::now();
        inbox.lock().expect("inbox").push(Watch {
            id: id.clone(),
            vip: None,
            started,
            get: None,
        });
        put(
            &agent,
            &base,
            &format!("loadBalancers/{id}"),
            &json!({"properties": {
                "frontendIPConfigurations": [{"resourceId": "fe", "properties": {"privateIPAllocationMethod": "Dynamic"}}],
                "backendAddressPools": [{"resourceId": "web"}],
                "loadBalancingRules": [{"resourceId": "http", "properties": {
                    "protocol": "Tcp", "frontendPort": 80, "backendPort": 80,
                    "frontendIPConfigurations": [{"resourceRef": format!("/loadBalancers/{id}/frontendIPConfigurations/fe")}],
                    "backendAddressPool": {"resourceRef": format!("/loadBalancers/{id}/backendAddressPools/web")}}}]
            }}),
        );
        put(
            &agent,
            &base,
            &format!("networkInterfaces/{id}"),
            &json!({"properties": {
                "privateMacAddress": mac,
                "server": {"resourceRef": "/servers/HyperVHost2"},
                "ipConfigurations": [{"resourceId": "ipconfig1", "properties": {
                    "privateIPAddress": "192.168.100.76",
                    "loadBalancerBackendAddressPools": [{"resourceRef": format!("/loadBalancers/{id}/backendAddressPools/web")}]}}]
            }}),
        );
        match done_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(t) => times.push(t),
            Err(_) => panic!("{id}'s VIP not answering after 10 s"),
        }
    }
    drop(inbox);
    let _ = lab_thread.join();
    let in_order = times.clone();
    times.sort();
    println!(
        "put_to_announce: {count} VIPs: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&times, 0.50).as_secs_f64() * 1e3,
        percentile(&times, 0.90).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().map_or(0.0, |t| t.as_secs_f64() * 1e3),
    );
    let tenth = count / 10;
    if tenth > 0 {
        // How it moves as VIPs accumulate.
        for (k, chunk) in in_order.chunks(tenth).enumerate().take(10) {
            let mut c = chunk.to_vec();
            c.sort();
            println!(
                "  VIPs {}..{}: p50 {:.2} ms",
                k * tenth,
                (k + 1) * tenth,
                percentile(&c, 0.5).as_secs_f64() * 1e3
            );
        }
    }
}
