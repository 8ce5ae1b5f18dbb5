//! Agents over real TCP on loopback: a Mux's agent gets its configuration when it
//! connects and again (as a delta) when a PUT changes it; a wrong token is refused.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
mod common;

use strata_controller::southbound::node_token;
use strata_southbound::Timers;
use strata_southbound::agent::{Agent, Output};
use strata_southbound::frame::{Decoder, encode};

/// The API and the southbound server on loopback; (API base URL, agents' address).
fn start() -> (String, std::net::SocketAddr) {
    let served = common::start();
    (served.base, served.agents)
}

fn put(base: &str, path: &str, body: Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent
        .put(format!("{base}{path}"))
        .header("Authorization", "Bearer secret")
        .send(body.to_string())
        .unwrap();
    let status = r.status().as_u16();
    assert!(
        status == 200 || status == 201,
        "{path}: {status} {}",
        r.body_mut().read_to_string().unwrap()
    );
}

/// An agent over a blocking socket, on one clock for its whole life.
struct Driven {
    agent: Agent,
    at: std::net::SocketAddr,
    start: Instant,
    stream: Option<TcpStream>,
    decoder: Decoder,
    /// Set: the agent cannot apply what it is sent, for this reason.
    refuse: Option<String>,
}

impl Driven {
    fn new(node: &str, token: String, at: std::net::SocketAddr) -> Driven {
        let mut agent = Agent::new(node, token, Timers::default());
        agent.start(std::time::Duration::ZERO);
        Driven {
            agent,
            at,
            start: Instant::now(),
            stream: None,
            decoder: Decoder::new(),
            refuse: None,
        }
    }

    /// Runs until `done` says so (or 10 s pass); returns the configurations applied.
    fn until(&mut self, done: impl Fn(&[(u64, Value)], &Agent) -> bool) -> Vec<(u64, Value)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut applied = Vec::new();
        while Instant::now() < deadline {
            let now = self.start.elapsed();
            self.agent.poll(now);
            while let Some(out) = self.agent.poll_output() {
                match out {
                    Output::Connect => match TcpStream::connect(self.at) {
                        Ok(s) => {
                            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                            self.stream = Some(s);
                            self.agent.connected(now);
                        }
                        Err(_) => self.agent.disconnected(now),
                    },
                    Output::Send(m) => {
                        let mut bytes = Vec::new();
                        encode(&m, &mut bytes);
                        if let Some(s) = self.stream.as_mut() {
                            let _ = s.write_all(&bytes);
                        }
                    }
                    Output::Close => self.stream = None,
                    Output::Apply {
                        revision, config, ..
                    } => {
                        applied.push((revision, Value::clone(&config)));
                        let result = self.refuse.clone().map_or(Ok(()), Err);
                        self.agent.applied(revision, result);
                    }
                }
            }
            if done(&applied, &self.agent) {
                break;
            }
            if let Some(s) = self.stream.as_mut() {
                let mut buf = [0u8; 65536];
                match s.read(&mut buf) {
                    Ok(0) => {
                        self.stream = None;
                        self.agent.disconnected(now);
                    }
                    Ok(n) => {
                        self.decoder.push(&buf[..n]);
                        while let Ok(Some(m)) = self.decoder.next_message() {
                            self.agent.received(self.start.elapsed(), m);
                        }
                    }
                    Err(_) => {}
                }
            } else {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        applied
    }
}

fn get(base: &str, path: &str) -> Value {
    let mut r = ureq::get(format!("{base}{path}"))
        .header("Authorization", "Bearer secret")
        .call()
        .unwrap();
    serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap()
}

/// Waits (up to 5 s) for a resource's provisioningState to be `state`.
fn wait_state(base: &str, path: &str, state: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let doc = get(base, path);
        if doc["properties"]["provisioningState"] == state || Instant::now() > deadline {
            return doc;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn mux() -> Value {
    json!({"properties": {"routerConfiguration": {"localASN": 64501, "peerRouterConfigurations": [
        {"routerIPAddress": "192.168.100.1", "peerASN": 64500}
    ]}}})
}

#[test]
fn a_muxs_agent_gets_its_configuration_and_each_change_to_it() {
    let (base, at) = start();
    put(&base, "/loadBalancerMuxes/MuxVM", mux());
    let mut agent = Driven::new("MuxVM", node_token("secret", "MuxVM"), at);
    let applied = agent.until(|a, _| !a.is_empty());
    assert_eq!(applied.len(), 1, "the configuration on connecting");
    assert_eq!(applied[0].1["mux"]["localAsn"], 64501);
    assert_eq!(applied[0].1["mux"]["vips"], json!({}));
    // A VIP appears: the agent hears of it.
    put(
        &base,
        "/logicalNetworks/public",
        json!({"properties": {"subnets": [{"resourceId": "vip", "properties": {
        "addressPrefix": "192.168.133.0/24",
        "ipPools": [{"resourceId": "pool", "properties": {"startIPAddress": "192.168.133.74", "endIPAddress": "192.168.133.99"}}]}}]}}),
    );
    put(
        &base,
        "/loadBalancerManager/config",
        json!({"properties": {"vipIpPools": [{"resourceRef": "/logicalNetworks/public/subnets/vip/ipPools/pool"}]}}),
    );
    put(
        &base,
        "/loadBalancers/portal",
        json!({"properties": {
        "frontendIPConfigurations": [{"resourceId": "fe", "properties": {"privateIPAllocationMethod": "Dynamic"}}],
        "backendAddressPools": [{"resourceId": "web"}],
        "loadBalancingRules": [{"resourceId": "http", "properties": {"protocol": "Tcp", "frontendPort": 80, "backendPort": 80,
            "frontendIPConfigurations": [{"resourceRef": "/loadBalancers/portal/frontendIPConfigurations/fe"}],
            "backendAddressPool": {"resourceRef": "/loadBalancers/portal/backendAddressPools/web"}}}]}}),
    );
    // A backend on a host: the host is told first; the Muxes once the host says it has
    // the DIP (its report, through the SLB manager).
    put(&base, "/servers/HyperVHost", json!({"properties": {}}));
    put(
        &base,
        "/networkInterfaces/PortalVM",
        json!({"properties": {"server": {"resourceRef": "/servers/HyperVHost"}, "privateMacAddress": "00155D640700",
            "ipConfigurations": [{"resourceId": "ip1", "properties": {"privateIPAddress": "192.168.100.74",
            "loadBalancerBackendAddressPools": [{"resourceRef": "/loadBalancers/portal/backendAddressPools/web"}]}}]}}),
    );
    let mut host = Driven::new("HyperVHost", node_token("secret", "HyperVHost"), at);
    let got = host.until(|_, a| {
        a.config().is_some_and(|(_, c)| {
            c["host"]["mappings"]
                .as_object()
                .is_some_and(|m| !m.is_empty())
        })
    });
    assert!(!got.is_empty());
    host.agent
        .report(json!({"providerAddresses": ["192.168.233.21"],
        "dips": [{"dip": "192.168.100.74", "healthy": true}]}));
    host.until(|_, _| true);
    let applied = agent.until(|_, a| {
        a.config()
            .is_some_and(|(_, c)| c["mux"]["vips"].as_object().is_some_and(|v| !v.is_empty()))
    });
    let (_, last) = applied.last().unwrap();
    let vip = &last["mux"]["vips"]["192.168.133.74 tcp 80"];
    assert_eq!(vip["vip"], "192.168.133.74");
    assert_eq!(vip["port"], 80);
    assert_eq!(vip["backends"][0]["providerAddress"], "192.168.233.21");
}

#[test]
fn an_agent_with_the_wrong_token_or_an_unknown_node_is_refused() {
    let (base, at) = start();
    put(&base, "/loadBalancerMuxes/MuxVM", mux());
    let mut wrong = Driven::new("MuxVM", "guess".into(), at);
    let applied = wrong.until(|_, a| a.refused().is_some());
    assert!(applied.is_empty());
    assert!(wrong.agent.refused().is_some());
    let mut unknown = Driven::new("Nobody", node_token("secret", "Nobody"), at);
    unknown.until(|_, a| a.refused().is_some());
    assert!(unknown.agent.refused().is_some());
    // The token of one node is not another's.
    assert_ne!(
        node_token("secret", "MuxVM"),
        node_token("secret", "MuxVM2")
    );
    assert_ne!(node_token("secret", "MuxVM"), node_token("other", "MuxVM"));
}

#[test]
fn provisioning_state_is_updating_until_the_node_applies_then_succeeded_or_failed() {
    let (base, at) = start();
    put(&base, "/loadBalancerMuxes/MuxVM", mux());
    // Compiled, but no agent has it yet.
    std::thread::sleep(Duration::from_millis(100));
    let doc = get(&base, "/loadBalancerMuxes/MuxVM");
    assert_eq!(doc["properties"]["provisioningState"], "Updating");
    let mut agent = Driven::new("MuxVM", node_token("secret", "MuxVM"), at);
    agent.until(|a, _| !a.is_empty());
    let doc = wait_state(&base, "/loadBalancerMuxes/MuxVM", "Succeeded");
    assert_eq!(doc["properties"]["provisioningState"], "Succeeded");
    // An agent that cannot apply the change: Failed, with its reason.
    agent.refuse = Some("the speaker refused AS 64502".into());
    let mut changed = mux();
    changed["properties"]["routerConfiguration"]["localASN"] = json!(64502);
    put(&base, "/loadBalancerMuxes/MuxVM", changed);
    agent.until(|a, _| !a.is_empty());
    let doc = wait_state(&base, "/loadBalancerMuxes/MuxVM", "Failed");
    assert_eq!(doc["properties"]["provisioningState"], "Failed", "{doc}");
    let message = doc["properties"]["configurationState"]["detailedInfo"][0]["message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("MuxVM: the speaker refused AS 64502"),
        "{message}"
    );
}

/// Sends raw bytes; returns whether the server closed the connection (within 5 s).
fn closed_after(at: std::net::SocketAddr, bytes: &[u8]) -> bool {
    let mut s = TcpStream::connect(at).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // A Refused or whatever it says before closing.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn malformed_messages_end_their_connection_and_harm_nothing_else() {
    let (base, at) = start();
    put(&base, "/loadBalancerMuxes/MuxVM", mux());
    // Not JSON.
    let mut garbage = 9u32.to_be_bytes().to_vec();
    garbage.extend_from_slice(b"not json!");
    assert!(closed_after(at, &garbage));
    // JSON, but no message.
    let mut odd = 13u32.to_be_bytes().to_vec();
    odd.extend_from_slice(br#"{"type":"Hi"}"#);
    assert!(closed_after(at, &odd));
    // A frame longer than any message may be.
    assert!(closed_after(at, &u32::MAX.to_be_bytes()));
    // Anything before Hello.
    let mut early = Vec::new();
    encode(&strata_southbound::Message::Keepalive, &mut early);
    assert!(closed_after(at, &early));
    // The server still serves the agents that speak properly.
    let mut agent = Driven::new("MuxVM", node_token("secret", "MuxVM"), at);
    let applied = agent.until(|a, _| !a.is_empty());
    assert_eq!(applied[0].1["mux"]["localAsn"], 64501);
}
