//! The SLB manager: what the host agents report (their provider addresses, their DIPs'
//! health) becomes part of every Mux's configuration. Sans-IO: it takes reports and says
//! whether the compiled configurations must change.
//!
//! A host agent's report (southbound `Report`) reads:
//!
//! ```json
//! {"providerAddresses": ["192.168.233.21"],
//!  "dips": [{"dip": "192.168.100.74", "healthy": true}]}
//! ```
//!
//! `dips` lists every DIP the host has programmed (with its probe's verdict, healthy if
//! it has no probe): the Muxes are given a DIP only once its host can take its traffic.
//!
//! An agent that goes away leaves what it reported in place: the data path keeps the
//! last known state until the host says otherwise.
//!
//! **Outbound NAT.** The manager hands out each VIP's ports in ranges of
//! [`SNAT_RANGE`], each to one DIP of an outboundNatRule of the VIP. Every such DIP gets
//! one range ahead of demand, so its first connections never wait for the controller
//! (and a port serves many destinations, so eight go a long way). When a host's VFP has
//! no free port for a new connection, the host reports the demand and gets another
//! range; the connection's first packet is dropped meanwhile (counted), and TCP's
//! retransmission finds the port. A host reports the ranges beyond the first that stayed
//! unused past its idle timeout, and they come back to the pool. A host's report also
//! lists the ranges it holds, so a controller that restarted takes up what it handed
//! out before (the allocations live in memory). Ports of the VIP's load-balancing and
//! inbound NAT rules are never handed out.
//!
//! ```json
//! {"snat": [{"vip": "192.168.133.80", "dip": "192.168.100.81", "start": 1024}],
//!  "snatDemand": [{"vip": "192.168.133.80", "dip": "192.168.100.81"}],
//!  "snatIdle": [{"vip": "192.168.133.80", "start": 1032}]}
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::Deserialize;
use serde_json::Value;
use strata_model::compile::{Observed, SNAT_RANGE, Vip};
use strata_model::doc::canonical;

/// The ports SNAT ranges are cut from by default: all but the well-known ones.
pub const SNAT_PORTS: std::ops::RangeInclusive<u16> = 1024..=65535;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HostReport {
    #[serde(default)]
    provider_addresses: Option<Vec<IpAddr>>,
    #[serde(default)]
    dips: Option<Vec<DipHealth>>,
    #[serde(default)]
    snat: Vec<SnatHeld>,
    #[serde(default)]
    snat_demand: Vec<SnatDemand>,
    #[serde(default)]
    snat_idle: Vec<SnatIdle>,
}

#[derive(Debug, Deserialize)]
struct SnatHeld {
    vip: IpAddr,
    dip: IpAddr,
    start: u16,
}

#[derive(Debug, Deserialize)]
struct SnatDemand {
    vip: IpAddr,
    dip: IpAddr,
}

#[derive(Debug, Deserialize)]
struct SnatIdle {
    vip: IpAddr,
    start: u16,
}

/// What the manager did with a VIP's ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnatEvent {
    /// A range went to a DIP, ahead of demand or on it.
    Granted {
        vip: IpAddr,
        dip: IpAddr,
        start: u16,
    },
    /// A range came back, idle or because its DIP left the outbound rules.
    Returned {
        vip: IpAddr,
        dip: IpAddr,
        start: u16,
    },
    /// A DIP wanted ports and the VIP had none left.
    Exhausted { vip: IpAddr, dip: IpAddr },
}

impl std::fmt::Display for SnatEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = |s: &u16| s.saturating_add(SNAT_RANGE - 1);
        match self {
            SnatEvent::Granted { vip, dip, start } => {
                write!(f, "SNAT ports {vip}:{start}-{} to DIP {dip}", end(start))
            }
            SnatEvent::Returned { vip, dip, start } => {
                write!(
                    f,
                    "SNAT ports {vip}:{start}-{} back from DIP {dip}",
                    end(start)
                )
            }
            SnatEvent::Exhausted { vip, dip } => {
                write!(
                    f,
                    "SNAT ports of VIP {vip} exhausted: DIP {dip} gets no more"
                )
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct DipHealth {
    dip: IpAddr,
    healthy: bool,
}

/// The SLB manager's view of the hosts.
#[derive(Debug, Default)]
pub struct SlbManager {
    observed: Observed,
    /// The DIPs of each VIP's outbound entries, and the VIP's frontend ports, as last
    /// given to [`SlbManager::allocate`].
    outbound: BTreeMap<IpAddr, BTreeSet<IpAddr>>,
    frontend: BTreeMap<IpAddr, BTreeSet<u16>>,
    events: Vec<SnatEvent>,
    /// The ports ranges are cut from ([`SNAT_PORTS`] unless made smaller).
    ports: Option<std::ops::RangeInclusive<u16>>,
    /// DIPs told their VIP had no ports left, until they get a range: a host asks again
    /// every second while its connections wait, and is told once.
    exhausted: BTreeSet<(IpAddr, IpAddr)>,
}

/// A DIP whose health a report changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    pub host: String,
    pub dip: IpAddr,
    pub healthy: bool,
}

impl SlbManager {
    pub fn new() -> SlbManager {
        SlbManager::default()
    }

    pub fn observed(&self) -> &Observed {
        &self.observed
    }

    /// Cuts SNAT ranges from `ports` only (each VIP has them all): a small pool runs out
    /// sooner, for a lab that shows it. Ranges still start at multiples of 8.
    pub fn set_snat_ports(&mut self, ports: std::ops::RangeInclusive<u16>) {
        self.ports = Some(ports);
    }

    fn ports(&self) -> std::ops::RangeInclusive<u16> {
        self.ports.clone().unwrap_or(SNAT_PORTS)
    }

    /// What the manager did with the VIPs' ports since the last call.
    pub fn take_events(&mut self) -> Vec<SnatEvent> {
        std::mem::take(&mut self.events)
    }

    /// Takes the compiled entries: every DIP of an outbound entry gets a range of its
    /// VIP's ports if it has none, and the ranges of DIPs no outbound entry has any more,
    /// or that a frontend port now falls in, come back. Returns whether the ranges
    /// changed.
    pub fn allocate(&mut self, vips: &[Vip]) -> bool {
        let mut outbound: BTreeMap<IpAddr, BTreeSet<IpAddr>> = BTreeMap::new();
        let mut frontend: BTreeMap<IpAddr, BTreeSet<u16>> = BTreeMap::new();
        for v in vips {
            if v.outbound {
                outbound
                    .entry(v.vip)
                    .or_default()
                    .extend(v.backends.iter().map(|b| b.dip));
            } else {
                frontend.entry(v.vip).or_default().insert(v.port);
            }
        }
        self.outbound = outbound;
        self.frontend = frontend;
        let mut changed = false;
        let snat = std::mem::take(&mut self.observed.snat);
        for (vip, ranges) in snat {
            for (start, dip) in ranges {
                if self.may_hold(vip, dip, start) {
                    self.observed
                        .snat
                        .entry(vip)
                        .or_default()
                        .insert(start, dip);
                } else {
                    self.events.push(SnatEvent::Returned { vip, dip, start });
                    changed = true;
                }
            }
        }
        let pairs: Vec<(IpAddr, IpAddr)> = self
            .outbound
            .iter()
            .flat_map(|(vip, dips)| dips.iter().map(|dip| (*vip, *dip)))
            .collect();
        for (vip, dip) in pairs {
            let held = self
                .observed
                .snat
                .get(&vip)
                .is_some_and(|r| r.values().any(|d| *d == dip));
            if !held {
                changed |= self.grant(vip, dip);
            }
        }
        changed
    }

    /// Whether `dip` may hold the range of `vip` from `start`: it is an outbound DIP of
    /// the VIP, and no frontend port of the VIP is in the range.
    fn may_hold(&self, vip: IpAddr, dip: IpAddr, start: u16) -> bool {
        let ports = self.ports();
        self.outbound.get(&vip).is_some_and(|d| d.contains(&dip))
            && start.is_multiple_of(SNAT_RANGE)
            && ports.contains(&start)
            && ports.contains(&start.saturating_add(SNAT_RANGE - 1))
            && !self.frontend.get(&vip).is_some_and(|ports| {
                ports
                    .range(start..=start.saturating_add(SNAT_RANGE - 1))
                    .next()
                    .is_some()
            })
    }

    /// Gives `dip` the first free range of `vip`'s ports. Whether one was free.
    fn grant(&mut self, vip: IpAddr, dip: IpAddr) -> bool {
        let taken = self.observed.snat.get(&vip);
        let ports = self.ports();
        let free = (ports.start().div_ceil(SNAT_RANGE)..=ports.end() / SNAT_RANGE)
            .map(|i| i * SNAT_RANGE)
            .find(|start| {
                !taken.is_some_and(|r| r.contains_key(start)) && self.may_hold(vip, dip, *start)
            });
        match free {
            Some(start) => {
                self.observed
                    .snat
                    .entry(vip)
                    .or_default()
                    .insert(start, dip);
                self.exhausted.remove(&(vip, dip));
                self.events.push(SnatEvent::Granted { vip, dip, start });
                true
            }
            None => {
                if self.exhausted.insert((vip, dip)) {
                    tracing::warn!(%vip, %dip, "SNAT ports of the VIP exhausted");
                    self.events.push(SnatEvent::Exhausted { vip, dip });
                }
                false
            }
        }
    }

    /// Takes a host's word on SNAT: ranges it holds (taken up if free, after a restart),
    /// DIPs that want more ports, and idle ranges (given back unless the DIP's last).
    fn report_snat(&mut self, server: &str, report: &HostReport) -> bool {
        let mut changed = false;
        let on_host = |m: &SlbManager, dip: &IpAddr| {
            m.observed
                .programmed
                .get(server)
                .is_some_and(|d| d.contains(dip))
        };
        for h in &report.snat {
            let holder = self.observed.snat.get(&h.vip).and_then(|r| r.get(&h.start));
            if holder.is_none() && on_host(self, &h.dip) && self.may_hold(h.vip, h.dip, h.start) {
                self.observed
                    .snat
                    .entry(h.vip)
                    .or_default()
                    .insert(h.start, h.dip);
                changed = true;
            }
        }
        for d in &report.snat_demand {
            if on_host(self, &d.dip)
                && self
                    .outbound
                    .get(&d.vip)
                    .is_some_and(|s| s.contains(&d.dip))
            {
                changed |= self.grant(d.vip, d.dip);
            }
        }
        for i in &report.snat_idle {
            let Some(ranges) = self.observed.snat.get_mut(&i.vip) else {
                continue;
            };
            let Some(&dip) = ranges.get(&i.start) else {
                continue;
            };
            let others = ranges.values().filter(|d| **d == dip).count();
            if others > 1 && on_host(self, &dip) {
                if let Some(r) = self.observed.snat.get_mut(&i.vip) {
                    r.remove(&i.start);
                }
                self.events.push(SnatEvent::Returned {
                    vip: i.vip,
                    dip,
                    start: i.start,
                });
                changed = true;
            }
        }
        changed
    }

    /// Takes a report from node `node` (a server's id). Returns the DIPs whose health it
    /// changed, and whether anything the Muxes carry changed; a report that is not a
    /// host's (a Mux's BGP state) changes nothing here.
    pub fn report(&mut self, node: &str, status: &Value) -> (Vec<HealthChange>, bool) {
        let Ok(report) = HostReport::deserialize(status) else {
            return (Vec::new(), false);
        };
        let mut changed = false;
        if let Some(pas) = report.provider_addresses.clone() {
            let server = canonical(&format!("/servers/{node}"));
            if self.observed.provider_addresses.get(&server) != Some(&pas) {
                if pas.is_empty() {
                    self.observed.provider_addresses.remove(&server);
                } else {
                    self.observed.provider_addresses.insert(server, pas);
                }
                changed = true;
            }
        }
        let server = canonical(&format!("/servers/{node}"));
        let mut health = Vec::new();
        let Some(dips) = &report.dips else {
            changed |= self.report_snat(&server, &report);
            return (health, changed);
        };
        let programmed: std::collections::BTreeSet<IpAddr> = dips.iter().map(|d| d.dip).collect();
        if self.observed.programmed.get(&server) != Some(&programmed) {
            self.observed.programmed.insert(server.clone(), programmed);
            changed = true;
        }
        changed |= self.report_snat(&server, &report);
        for d in dips {
            let was_healthy = !self.observed.down.contains(&d.dip);
            if was_healthy == d.healthy {
                continue;
            }
            if d.healthy {
                self.observed.down.remove(&d.dip);
            } else {
                self.observed.down.insert(d.dip);
            }
            health.push(HealthChange {
                host: node.to_string(),
                dip: d.dip,
                healthy: d.healthy,
            });
        }
        changed |= !health.is_empty();
        (health, changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_hosts_report_sets_its_provider_address_and_its_dips_health() {
        let mut m = SlbManager::new();
        let (health, changed) = m.report(
            "HyperVHost",
            &json!({"providerAddresses": ["192.168.233.21"], "dips": [{"dip": "192.168.100.74", "healthy": true}]}),
        );
        assert!(changed);
        assert!(health.is_empty(), "healthy is the default: nothing changed");
        assert_eq!(
            m.observed().provider_addresses["/servers/hypervhost"],
            vec!["192.168.233.21".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            m.observed().programmed["/servers/hypervhost"],
            ["192.168.100.74".parse::<IpAddr>().unwrap()].into()
        );
        // The same again: nothing changes.
        let (_, changed) = m.report(
            "HyperVHost",
            &json!({"providerAddresses": ["192.168.233.21"], "dips": [{"dip": "192.168.100.74", "healthy": true}]}),
        );
        assert!(!changed);
        // A second DIP programmed: the Muxes are to get it.
        let (health, changed) = m.report(
            "HyperVHost",
            &json!({"dips": [{"dip": "192.168.100.74", "healthy": true}, {"dip": "192.168.100.75", "healthy": true}]}),
        );
        assert!(changed);
        assert!(health.is_empty());
        assert_eq!(m.observed().programmed["/servers/hypervhost"].len(), 2);
        let (health, changed) = m.report(
            "HyperVHost",
            &json!({"dips": [{"dip": "192.168.100.74", "healthy": false}]}),
        );
        assert!(changed);
        assert_eq!(
            health,
            [HealthChange {
                host: "HyperVHost".into(),
                dip: "192.168.100.74".parse().unwrap(),
                healthy: false
            }]
        );
        assert!(
            m.observed()
                .down
                .contains(&"192.168.100.74".parse().unwrap())
        );
        let (health, _) = m.report(
            "HyperVHost",
            &json!({"dips": [{"dip": "192.168.100.74", "healthy": true}]}),
        );
        assert_eq!(health.len(), 1);
        assert!(m.observed().down.is_empty());
        // No addresses: the host is forgotten.
        let (_, changed) = m.report("HyperVHost", &json!({"providerAddresses": []}));
        assert!(changed);
        assert!(m.observed().provider_addresses.is_empty());
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A VIP entry: inbound on `port`, or outbound (port 0) from `dips`.
    fn entry(vip: &str, port: u16, dips: &[&str]) -> Vip {
        Vip {
            vip: ip(vip),
            protocol: strata_model::compile::Protocol::Tcp,
            port,
            rule: "/loadBalancers/t/outboundNatRules/o".into(),
            distribution: Default::default(),
            probe: None,
            vni: 4096,
            backends: dips
                .iter()
                .map(|d| strata_model::compile::Backend {
                    ip_configuration: format!("/networkInterfaces/{d}/ipConfigurations/ip"),
                    dip: ip(d),
                    port,
                    server: Some("/servers/HostA".into()),
                    mac: None,
                    provider_address: None,
                    healthy: true,
                })
                .collect(),
            outbound: port == 0,
            exempt: Vec::new(),
        }
    }

    /// Ranges of `vip`: (start, DIP).
    fn ranges(m: &SlbManager, vip: &str) -> Vec<(u16, IpAddr)> {
        m.observed()
            .snat
            .get(&ip(vip))
            .into_iter()
            .flatten()
            .map(|(s, d)| (*s, *d))
            .collect()
    }

    /// HostA programmed these DIPs.
    fn programmed(m: &mut SlbManager, dips: &[&str]) {
        let dips: Vec<Value> = dips
            .iter()
            .map(|d| json!({"dip": d, "healthy": true}))
            .collect();
        m.report(
            "HostA",
            &json!({"providerAddresses": ["10.0.0.1"], "dips": dips}),
        );
    }

    const VIP: &str = "192.168.133.80";
    const A: &str = "192.168.100.81";
    const B: &str = "192.168.100.82";

    #[test]
    fn every_outbound_dip_gets_a_range_ahead_of_demand_off_the_frontend_ports() {
        let mut m = SlbManager::new();
        // Port 1030 is a load-balancing rule's: the range around it is never handed out.
        let vips = [entry(VIP, 1030, &[A]), entry(VIP, 0, &[A, B])];
        assert!(m.allocate(&vips));
        assert_eq!(ranges(&m, VIP), [(1032, ip(A)), (1040, ip(B))]);
        assert_eq!(
            m.take_events(),
            [
                SnatEvent::Granted {
                    vip: ip(VIP),
                    dip: ip(A),
                    start: 1032
                },
                SnatEvent::Granted {
                    vip: ip(VIP),
                    dip: ip(B),
                    start: 1040
                },
            ]
        );
        assert!(!m.allocate(&vips), "the same again changes nothing");
        // B leaves the outbound rule: its range comes back, and goes to the next DIP.
        assert!(m.allocate(&[entry(VIP, 1030, &[A]), entry(VIP, 0, &[A])]));
        assert_eq!(ranges(&m, VIP), [(1032, ip(A))]);
        assert_eq!(
            m.take_events(),
            [SnatEvent::Returned {
                vip: ip(VIP),
                dip: ip(B),
                start: 1040
            }]
        );
        // A new frontend port in A's range takes it back; A gets another.
        assert!(m.allocate(&[entry(VIP, 1033, &[A]), entry(VIP, 0, &[A])]));
        assert_eq!(ranges(&m, VIP), [(1024, ip(A))]);
    }

    #[test]
    fn demand_gets_a_range_until_the_pool_runs_out_and_idle_ranges_come_back() {
        let mut m = SlbManager::new();
        m.set_snat_ports(1024..=1047);
        let vips = [entry(VIP, 0, &[A, B])];
        m.allocate(&vips);
        programmed(&mut m, &[A, B]);
        m.take_events();
        let demand = |dip: &str| json!({"snatDemand": [{"vip": VIP, "dip": dip}]});
        // Another host's word for A, or a DIP of this host that is no outbound DIP of the
        // VIP: nothing.
        assert!(!m.report("HostB", &demand(A)).1);
        programmed(&mut m, &[A, B, "192.168.100.99"]);
        assert!(!m.report("HostA", &demand("192.168.100.99")).1);
        assert_eq!(ranges(&m, VIP), [(1024, ip(A)), (1032, ip(B))]);
        assert!(m.report("HostA", &demand(A)).1);
        assert_eq!(
            ranges(&m, VIP),
            [(1024, ip(A)), (1032, ip(B)), (1040, ip(A))]
        );
        // Three ranges in 24 ports: none left.
        assert!(!m.report("HostA", &demand(B)).1);
        assert_eq!(
            m.take_events(),
            [
                SnatEvent::Granted {
                    vip: ip(VIP),
                    dip: ip(A),
                    start: 1040
                },
                SnatEvent::Exhausted {
                    vip: ip(VIP),
                    dip: ip(B)
                },
            ]
        );
        // Asked again while nothing came back: no second event.
        assert!(!m.report("HostA", &demand(B)).1);
        assert!(m.take_events().is_empty(), "told once");
        // A's second range idles and comes back; its first stays, however idle.
        let idle = |start: u16| json!({"snatIdle": [{"vip": VIP, "start": start}]});
        assert!(m.report("HostA", &idle(1040)).1);
        assert!(!m.report("HostA", &idle(1024)).1);
        assert_eq!(ranges(&m, VIP), [(1024, ip(A)), (1032, ip(B))]);
        // And goes to B, who asks now.
        assert!(m.report("HostA", &demand(B)).1);
        assert_eq!(
            ranges(&m, VIP),
            [(1024, ip(A)), (1032, ip(B)), (1040, ip(B))]
        );
        // Having had a range, B is told again when the pool is out once more.
        m.take_events();
        assert!(!m.report("HostA", &demand(B)).1);
        assert_eq!(
            m.take_events(),
            [SnatEvent::Exhausted {
                vip: ip(VIP),
                dip: ip(B)
            }]
        );
    }

    #[test]
    fn a_range_is_off_limits_only_for_a_frontend_port_inside_it() {
        let mut m = SlbManager::new();
        // 1040 is the first port of the range after 1032-1039: that one stays free.
        m.allocate(&[
            entry(VIP, 1024, &[A]),
            entry(VIP, 1040, &[A]),
            entry(VIP, 0, &[A, B]),
        ]);
        assert_eq!(ranges(&m, VIP), [(1032, ip(A)), (1048, ip(B))]);
    }

    #[test]
    fn events_say_what_happened_to_which_ports() {
        let (vip, dip) = (ip(VIP), ip(A));
        assert_eq!(
            SnatEvent::Granted {
                vip,
                dip,
                start: 1024
            }
            .to_string(),
            "SNAT ports 192.168.133.80:1024-1031 to DIP 192.168.100.81"
        );
        assert_eq!(
            SnatEvent::Returned {
                vip,
                dip,
                start: 1032
            }
            .to_string(),
            "SNAT ports 192.168.133.80:1032-1039 back from DIP 192.168.100.81"
        );
        assert_eq!(
            SnatEvent::Exhausted { vip, dip }.to_string(),
            "SNAT ports of VIP 192.168.133.80 exhausted: DIP 192.168.100.81 gets no more"
        );
    }

    #[test]
    fn a_restarted_manager_takes_up_the_ranges_the_hosts_hold() {
        let mut m = SlbManager::new();
        m.allocate(&[entry(VIP, 0, &[A, B])]);
        programmed(&mut m, &[A, B]);
        // What a host held before the restart: B's 1024 and 1072, A's 1032.
        let held = json!({"snat": [
            {"vip": VIP, "dip": B, "start": 1072},
            {"vip": VIP, "dip": A, "start": 1024},
        ]});
        assert!(m.report("HostA", &held).1);
        assert_eq!(
            ranges(&m, VIP),
            [(1024, ip(A)), (1032, ip(B)), (1072, ip(B))],
            "1024 was A's already (granted at the first compile): not taken from it"
        );
        assert!(
            !m.report("HostA", &held).1,
            "the same again changes nothing"
        );
    }

    #[test]
    fn a_report_that_is_not_a_hosts_changes_nothing() {
        let mut m = SlbManager::new();
        assert_eq!(
            m.report("MuxVM", &json!({"bgp": "Established"})),
            (Vec::new(), false)
        );
        assert_eq!(m.report("MuxVM", &json!(7)), (Vec::new(), false));
        assert_eq!(m.observed(), &Observed::default());
    }
}
