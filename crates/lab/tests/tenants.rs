//! The POC lab's tenants in virtual time: each tenant's VIP serves its own VMs only, and
//! the tenants' VMs reach the Internet through outbound NAT (SNAT) with ports the
//! controller's SLB manager hands out in ranges of 8: many connections share few ports,
//! a small pool runs out cleanly, a Mux lost mid-transfer loses nothing, and idle ranges
//! go back to the pool and out again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use strata_controller::slb::SnatEvent;
use strata_lab::file::parse;
use strata_lab::{BOOT_LIMIT, Clock, Lab};
use strata_node::TaskSpec;
use strata_node::apps::http::GetReport;

const VIP_A: &str = "192.168.133.80";
const VIP_B: &str = "192.168.133.90";

fn lab_of(text: &str) -> Lab {
    let topology = parse(strata_lab::AZURE_STACK_POC_NAME, text).unwrap();
    let mut lab = Lab::new(topology, Clock::Virtual).unwrap();
    let (up, all) = lab.boot(BOOT_LIMIT);
    assert_eq!(up, all, "BGP sessions up");
    assert!(
        lab.run_until(Duration::from_secs(20), Lab::converged),
        "the agents converge"
    );
    lab
}

fn booted() -> Lab {
    lab_of(strata_lab::AZURE_STACK_POC)
}

/// The POC with the SNAT pool cut down to `ports` (`"1024-1039"`).
fn with_snat_ports(ports: &str) -> Lab {
    let text = strata_lab::AZURE_STACK_POC.replace(
        "vipPrefix = \"192.168.133.0/24\"\n",
        &format!("vipPrefix = \"192.168.133.0/24\"\nsnatPorts = \"{ports}\"\n"),
    );
    assert_ne!(text, strata_lab::AZURE_STACK_POC);
    lab_of(&text)
}

fn start(lab: &mut Lab, from: &str, url: &str, timeout: Duration) -> strata_node::TaskId {
    let now = lab.now();
    lab.node_mut(from).unwrap().start_task(
        now,
        TaskSpec::HttpGet {
            url: url.into(),
            timeout,
        },
    )
}

fn report(lab: &Lab, from: &str, id: strata_node::TaskId) -> Option<GetReport> {
    match lab.node(from).unwrap().task_report(id)? {
        strata_node::TaskReport::Http(r) => Some(r),
        other => panic!("{other:?}"),
    }
}

/// Starts the GETs, runs until all have finished (at most `limit`), and returns them.
fn fetch_all(lab: &mut Lab, gets: &[(&str, String)], limit: Duration) -> Vec<GetReport> {
    let ids: Vec<_> = gets
        .iter()
        .map(|(from, url)| (*from, start(lab, from, url, limit)))
        .collect();
    let done = |lab: &Lab| ids.iter().all(|(f, id)| report(lab, f, *id).is_some());
    assert!(
        lab.run_until(limit + Duration::from_secs(1), done),
        "the GETs finish"
    );
    ids.iter()
        .map(|(f, id)| report(lab, f, *id).unwrap())
        .collect()
}

/// The SNAT ports of `vip` that the connections on `host`'s VM ports hold, by port, with
/// the destinations each serves.
fn snat_ports(lab: &Lab, host: &str, vip: &str) -> BTreeMap<u16, BTreeSet<(IpAddr, u16)>> {
    let vswitch = lab.node(host).unwrap().vswitch().unwrap();
    let vip: IpAddr = vip.parse().unwrap();
    let mut out: BTreeMap<u16, BTreeSet<(IpAddr, u16)>> = BTreeMap::new();
    for (port, ..) in vswitch.vm_ports() {
        let Some(vfp) = vswitch.vfp(port) else {
            continue;
        };
        for (layer, flows) in vfp.layer_flows() {
            if layer != "SLB_SNAT" {
                continue;
            }
            for (key, flow) in flows {
                // The reply side: from the destination to VIP:port.
                if !flow.initiator && key.flow.dst() == vip {
                    out.entry(key.flow.dst_port())
                        .or_default()
                        .insert((key.flow.src(), key.flow.src_port()));
                }
            }
        }
    }
    out
}

fn granted(lab: &Lab) -> Vec<(IpAddr, IpAddr, u16)> {
    lab.snat_log()
        .iter()
        .filter_map(|(_, e)| match e {
            SnatEvent::Granted { vip, dip, start } => Some((*vip, *dip, *start)),
            _ => None,
        })
        .collect()
}

#[test]
fn each_tenants_vip_serves_its_own_vms_only() {
    let mut lab = booted();
    for (vip, own, other) in [
        (VIP_A, "Tenant A", "Tenant B"),
        (VIP_B, "Tenant B", "Tenant A"),
    ] {
        let gets: Vec<(&str, String)> = (0..20)
            .map(|_| ("ClientVM", format!("http://{vip}/")))
            .collect();
        let mut served = BTreeSet::new();
        for r in fetch_all(&mut lab, &gets, Duration::from_secs(5)) {
            assert_eq!(r.status, Some(200), "{r:?}");
            assert!(
                r.body.contains(own) && !r.body.contains(other),
                "{vip}: {}",
                r.body
            );
            assert!(!r.body.contains("Azure Stack portal"), "{vip}: {}", r.body);
            served.insert(r.body.split("served by ").nth(1).unwrap()[..12].to_string());
        }
        assert_eq!(
            served.len(),
            2,
            "both of the tenant's VMs, on both hosts: {served:?}"
        );
    }
}

#[test]
fn a_thousand_outbound_connections_share_few_ports() {
    let mut lab = booted();
    let destinations = [
        "http://203.0.113.100/",
        "http://203.0.113.100:8080/",
        "http://203.0.113.100:8081/",
    ];
    let mut ports: BTreeMap<(&str, u16), BTreeSet<(IpAddr, u16)>> = BTreeMap::new();
    let mut connections = 0;
    // Waves of 50, from TenantA-Web1 (on HyperVHost) and TenantA-Web2 (HyperVHost2)
    // to the three servers in turn.
    for wave in 0..20 {
        let gets: Vec<(&str, String)> = (0..50)
            .map(|i| {
                let from = if i % 2 == 0 {
                    "TenantA-Web1"
                } else {
                    "TenantA-Web2"
                };
                (from, destinations[(wave * 50 + i) % 3].to_string())
            })
            .collect();
        for r in fetch_all(&mut lab, &gets, Duration::from_secs(10)) {
            assert_eq!(r.status, Some(200), "{r:?}");
            connections += 1;
        }
        for host in ["HyperVHost", "HyperVHost2"] {
            for (port, dests) in snat_ports(&lab, host, VIP_A) {
                ports.entry((host, port)).or_default().extend(dests);
            }
        }
    }
    assert_eq!(connections, 1000);
    let used = ports.len();
    let most = ports.values().map(BTreeSet::len).max().unwrap();
    let reused = ports
        .values()
        .filter(|d| d.iter().map(|(_, p)| *p).collect::<BTreeSet<_>>().len() > 1);
    eprintln!(
        "1000 outbound connections from 2 DIPs to 3 destinations: {used} SNAT ports of VIP {VIP_A} ({} ranges granted); a port served up to {most} connections",
        granted(&lab)
            .iter()
            .filter(|g| g.0.to_string() == VIP_A)
            .count()
    );
    assert!(used > 0 && used * 2 < connections, "ports used: {used}");
    assert!(reused.count() > 0, "a port serves several destinations");
    // The tenant's own ranges only, each held by one of its DIPs.
    for (vip, dip, start) in granted(&lab) {
        assert!(start >= 1024 && start % 8 == 0);
        if vip.to_string() == VIP_A {
            assert!(["192.168.100.81", "192.168.100.82"].contains(&dip.to_string().as_str()));
        }
    }
}

#[test]
fn a_small_pool_runs_out_cleanly_and_the_other_tenant_is_untouched() {
    // Two ranges a VIP: one for each of the tenant's DIPs, ahead of demand; none left.
    let mut lab = with_snat_ports("1024-1039");
    let slow = "http://203.0.113.100/slow";
    // Eight slow downloads hold the eight ports of TenantA-Web1's range to one server.
    let held: Vec<_> = (0..8)
        .map(|_| start(&mut lab, "TenantA-Web1", slow, Duration::from_secs(10)))
        .collect();
    lab.run_for(Duration::from_millis(500));
    assert_eq!(snat_ports(&lab, "HyperVHost", VIP_A).len(), 8);
    // A ninth to the same server: no port, and none to be had.
    let ninth = start(&mut lab, "TenantA-Web1", slow, Duration::from_secs(2));
    lab.run_for(Duration::from_secs(3));
    let r = report(&lab, "TenantA-Web1", ninth).expect("the ninth gave up");
    assert_eq!(r.status, None, "{r:?}");
    let port = lab.node("HyperVHost").unwrap().vswitch().unwrap();
    let dropped: u64 = port
        .vm_ports()
        .iter()
        .filter_map(|(p, ..)| port.vfp(*p))
        .map(|v| v.counters().snat_exhausted)
        .sum();
    assert!(dropped >= 1, "its SYNs were dropped and counted");
    let exhausted: Vec<_> = lab
        .snat_log()
        .iter()
        .filter(|(_, e)| matches!(e, SnatEvent::Exhausted { .. }))
        .map(|(_, e)| e.to_string())
        .collect();
    assert!(
        exhausted
            .iter()
            .any(|e| e.contains(VIP_A) && e.contains("192.168.100.81")),
        "an event names the VIP and the DIP: {exhausted:?}"
    );
    // Another destination still has every port; tenant B has its own.
    let other = fetch_all(
        &mut lab,
        &[
            ("TenantA-Web1", "http://203.0.113.100:8080/".to_string()),
            ("TenantB-Web1", slow.to_string()),
        ],
        Duration::from_secs(5),
    );
    assert!(other.iter().all(|r| r.status == Some(200)), "{other:?}");
    // The eight established downloads finish.
    assert!(lab.run_until(Duration::from_secs(5), |lab| {
        held.iter()
            .all(|id| report(lab, "TenantA-Web1", *id).is_some())
    }));
    for id in held {
        assert_eq!(report(&lab, "TenantA-Web1", id).unwrap().status, Some(200));
    }
}

#[test]
fn losing_a_mux_loses_no_outbound_connection() {
    let mut lab = booted();
    let ids: Vec<_> = (0..6)
        .map(|i| {
            let from = if i % 2 == 0 {
                "TenantA-Web1"
            } else {
                "TenantB-Web2"
            };
            (
                from,
                start(
                    &mut lab,
                    from,
                    "http://203.0.113.100/slow",
                    Duration::from_secs(10),
                ),
            )
        })
        .collect();
    lab.run_for(Duration::from_millis(500));
    // MuxVM goes dark mid-transfer: BFD takes it out of BGPVM's ECMP set, and the
    // answers, which come after it left, reach the VIPs through MuxVM2's ranges.
    let mux = lab
        .topology()
        .nodes
        .iter()
        .position(|n| n.name == "MuxVM")
        .unwrap();
    lab.set_cut(mux, true);
    assert!(lab.run_until(Duration::from_secs(8), |lab| {
        ids.iter().all(|(f, id)| report(lab, f, *id).is_some())
    }));
    for (from, id) in ids {
        let r = report(&lab, from, id).unwrap();
        assert_eq!(r.status, Some(200), "{from}: {r:?}");
    }
}

#[test]
fn idle_ranges_go_back_and_are_handed_out_again() {
    let mut lab = booted();
    // Twenty connections at once to one server: the first range (8 ports) is not
    // enough, so TenantA-Web1 asks for more.
    let gets: Vec<(&str, String)> = (0..20)
        .map(|_| ("TenantA-Web1", "http://203.0.113.100/".to_string()))
        .collect();
    let done = fetch_all(&mut lab, &gets, Duration::from_secs(10));
    assert!(done.iter().all(|r| r.status == Some(200)), "{done:?}");
    let dip: IpAddr = "192.168.100.81".parse().unwrap();
    let vip: IpAddr = VIP_A.parse().unwrap();
    let extra: Vec<u16> = granted(&lab)
        .iter()
        .filter(|g| g.0 == vip && g.1 == dip)
        .skip(1)
        .map(|g| g.2)
        .collect();
    assert!(
        !extra.is_empty(),
        "more ranges on demand: {:?}",
        lab.snat_log()
    );
    // Unused for the idle timeout (after the connections' state has gone), the extra
    // ranges come back; the first stays.
    lab.run_for(Duration::from_secs(120));
    let returned: Vec<u16> = lab
        .snat_log()
        .iter()
        .filter_map(|(_, e)| match e {
            SnatEvent::Returned {
                vip: v,
                dip: d,
                start,
            } if *v == vip && *d == dip => Some(*start),
            _ => None,
        })
        .collect();
    assert_eq!(
        returned.iter().copied().collect::<BTreeSet<_>>(),
        extra.iter().copied().collect::<BTreeSet<_>>(),
        "{:?}",
        lab.snat_log()
    );
    // Another DIP of the VIP wants more: it gets a range that came back.
    let gets: Vec<(&str, String)> = (0..20)
        .map(|_| ("TenantA-Web2", "http://203.0.113.100/".to_string()))
        .collect();
    let done = fetch_all(&mut lab, &gets, Duration::from_secs(10));
    assert!(done.iter().all(|r| r.status == Some(200)), "{done:?}");
    let again: Vec<u16> = granted(&lab)
        .iter()
        .filter(|g| g.0 == vip && g.1.to_string() == "192.168.100.82")
        .map(|g| g.2)
        .collect();
    assert!(
        again.iter().any(|s| returned.contains(s)),
        "handed out again: {again:?} after {returned:?}"
    );
}
