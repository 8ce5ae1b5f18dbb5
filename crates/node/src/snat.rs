//! The host agent's side of outbound NAT: it tells the SLB manager which ranges of VIP
//! ports its DIPs hold, asks for another range when a DIP's SNAT layer runs out of
//! ports, and gives back ranges that stayed unused (all but each DIP's first, which the
//! manager hands out ahead of demand and keeps there).
//!
//! Once a second (while any port has a SNAT layer) it sweeps the ports' idle
//! connections, takes their shortfalls and notes which ranges are in use.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};
use strata_slb::host::SNAT_LAYER;
use strata_vswitch::switch::VSwitch;
use strata_vswitch::vfp::{Action, SNAT_RANGE};

/// How long a range stays unused before it goes back to the manager.
pub(crate) const SNAT_IDLE: Duration = Duration::from_secs(60);

/// How often the ports are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A range of a VIP's ports a DIP holds: (VIP, DIP, first port).
type Range = (IpAddr, IpAddr, u16);

#[derive(Debug, Default)]
pub(crate) struct SnatAgent {
    /// When each range held was last seen in use (or first seen held).
    last_used: BTreeMap<Range, Duration>,
    /// DIPs that ran out of ports of a VIP, to report.
    demand: BTreeSet<(IpAddr, IpAddr)>,
    /// Idle ranges, reported once (until used again or no longer held).
    idle: BTreeSet<Range>,
    idle_reported: BTreeSet<Range>,
    next_check: Option<Duration>,
}

/// Every range the ports' SNAT layers hold, each DIP's ranges in the order given.
fn held(vswitch: &VSwitch) -> Vec<(Range, bool)> {
    let mut out = Vec::new();
    for (port, ..) in vswitch.vm_ports() {
        let Some(layer) = vswitch.vfp(port).and_then(|v| v.layer(SNAT_LAYER)) else {
            continue;
        };
        let mut seen = BTreeSet::new();
        for rule in layer.groups.iter().flat_map(|g| &g.rules) {
            let (Action::Snat(spec), Some(src)) = (&rule.action, rule.conditions.src.first())
            else {
                continue;
            };
            for (i, start) in spec.ranges.iter().enumerate() {
                let range = (spec.vip, src.addr(), *start);
                if seen.insert(range) {
                    out.push((range, i == 0));
                }
            }
        }
    }
    out
}

impl SnatAgent {
    /// When the agent next wants a look at the ports (`None`: no port has SNAT).
    pub(crate) fn poll_at(&self) -> Option<Duration> {
        self.next_check
    }

    /// The ports' layers changed: look at them at `now`.
    pub(crate) fn schedule(&mut self, now: Duration) {
        self.next_check = Some(now);
    }

    /// Looks at the ports if it is time. Returns whether there is news to report.
    pub(crate) fn poll(&mut self, now: Duration, vswitch: &mut VSwitch) -> bool {
        if self.next_check.is_none_or(|at| now < at) {
            return false;
        }
        let ranges = held(vswitch);
        let vips: BTreeSet<IpAddr> = ranges.iter().map(|((vip, ..), _)| *vip).collect();
        self.next_check = (!ranges.is_empty()).then_some(now + CHECK_EVERY);
        let mut news = false;
        let ports: Vec<_> = vswitch.vm_ports().into_iter().map(|(p, ..)| p).collect();
        let mut in_use: BTreeSet<(IpAddr, u16)> = BTreeSet::new();
        for port in ports {
            let Some(vfp) = vswitch.vfp_mut(port) else {
                continue;
            };
            if vfp.layer(SNAT_LAYER).is_none() {
                continue;
            }
            vfp.expire(now);
            if let Some(short) = vfp.take_snat_shortfall() {
                tracing::warn!(vip = %short.vip, dip = %short.src, "SNAT: no free port for a new connection; asking for another range");
                news |= self.demand.insert((short.vip, short.src));
            }
            for vip in &vips {
                for p in vfp.snat_ports_in_use(SNAT_LAYER, *vip) {
                    in_use.insert((*vip, p - p % SNAT_RANGE));
                }
            }
        }
        let held_now: BTreeSet<Range> = ranges.iter().map(|(r, _)| *r).collect();
        self.last_used.retain(|r, _| held_now.contains(r));
        self.idle_reported.retain(|r| held_now.contains(r));
        for (range, first) in ranges {
            let last = self.last_used.entry(range).or_insert(now);
            if in_use.contains(&(range.0, range.2)) {
                *last = now;
                self.idle_reported.remove(&range);
            } else if !first
                && now.saturating_sub(*last) >= SNAT_IDLE
                && self.idle_reported.insert(range)
            {
                self.idle.insert(range);
                news = true;
            }
        }
        news
    }

    /// The report's SNAT part: the ranges held, the demand and the idle ranges since the
    /// last report (taken).
    pub(crate) fn report(
        &mut self,
        vswitch: &VSwitch,
        status: &mut serde_json::Map<String, Value>,
    ) {
        let held: Vec<Value> = held(vswitch)
            .into_iter()
            .map(|((vip, dip, start), _)| json!({"vip": vip, "dip": dip, "start": start}))
            .collect();
        if held.is_empty() && self.demand.is_empty() && self.idle.is_empty() {
            return;
        }
        status.insert("snat".into(), held.into());
        let demand: Vec<Value> = std::mem::take(&mut self.demand)
            .into_iter()
            .map(|(vip, dip)| json!({"vip": vip, "dip": dip}))
            .collect();
        status.insert("snatDemand".into(), demand.into());
        let idle: Vec<Value> = std::mem::take(&mut self.idle)
            .into_iter()
            .map(|(vip, _, start)| json!({"vip": vip, "start": start}))
            .collect();
        status.insert("snatIdle".into(), idle.into());
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use strata_slb::host::{OutboundNat, snat_layer};
    use strata_vswitch::vfp::{DEFAULT_FLOW_LIMIT, Direction, Verdict};
    use strata_wire::EthernetAddress;

    use super::*;

    const DIP: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 81);
    const VIP: Ipv4Addr = Ipv4Addr::new(192, 168, 133, 80);
    const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 100);

    fn t(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// A host switch with the DIP's port, its SNAT layer holding `ranges`.
    fn switch(ranges: Vec<u16>) -> (VSwitch, strata_vswitch::switch::SwitchPort) {
        let mut vswitch = VSwitch::new("s");
        let port = vswitch.add_vm(
            "vm",
            EthernetAddress([2, 0, 0, 0, 0, 81]),
            DEFAULT_FLOW_LIMIT,
        );
        let layer = snat_layer(
            DIP,
            &[OutboundNat {
                name: "out".into(),
                vip: VIP,
                protocols: vec![6],
                ranges,
                exempt: Vec::new(),
            }],
        )
        .unwrap();
        vswitch.vfp_mut(port).unwrap().set_layer(layer);
        (vswitch, port)
    }

    /// The DIP opens a TCP connection from `sport` to the server (a SYN, then an ACK:
    /// established, it lives 240 s idle); its SNAT port.
    fn open(
        vswitch: &mut VSwitch,
        port: strata_vswitch::switch::SwitchPort,
        sport: u16,
    ) -> Option<u16> {
        let segment = |syn: bool| {
            let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 81], [2, 0, 0, 0, 0, 1])
                .ipv4(DIP.octets(), SERVER.octets(), 64)
                .tcp(sport, 80, 1, 64000);
            let b = if syn { b.syn() } else { b.ack(1) };
            let mut f = Vec::new();
            b.write(&mut f, &[]).unwrap();
            f
        };
        let vfp = vswitch.vfp_mut(port).unwrap();
        let mut f = segment(true);
        if vfp.process(t(1), Direction::Out, &mut f) != Verdict::Forward {
            return None;
        }
        let mut ack = segment(false);
        assert_eq!(
            vfp.process(t(1), Direction::Out, &mut ack),
            Verdict::Forward
        );
        Some(u16::from_be_bytes([f[34], f[35]]))
    }

    fn report(agent: &mut SnatAgent, vswitch: &VSwitch) -> Value {
        let mut status = serde_json::Map::new();
        agent.report(vswitch, &mut status);
        Value::Object(status)
    }

    #[test]
    fn it_looks_once_a_second_while_a_port_has_snat() {
        let (mut vswitch, _) = switch(vec![1024]);
        let mut agent = SnatAgent::default();
        assert_eq!(agent.poll_at(), None);
        assert!(!agent.poll(t(1), &mut vswitch), "not scheduled: nothing");
        agent.schedule(t(1));
        assert_eq!(agent.poll_at(), Some(t(1)));
        agent.poll(t(1), &mut vswitch);
        assert_eq!(agent.poll_at(), Some(t(2)));
        // Before it is due, nothing moves.
        agent.poll(Duration::from_millis(1500), &mut vswitch);
        assert_eq!(agent.poll_at(), Some(t(2)));
        // Without a SNAT layer, it stops looking.
        let mut plain = VSwitch::new("p");
        agent.schedule(t(3));
        agent.poll(t(3), &mut plain);
        assert_eq!(agent.poll_at(), None);
    }

    #[test]
    fn a_shortfall_is_demanded_and_a_range_in_use_is_never_idle() {
        let (mut vswitch, port) = switch(vec![1024, 1032]);
        // Ten connections to one server: the first range, then two of the second.
        for i in 0..10 {
            assert_eq!(open(&mut vswitch, port, 40000 + i), Some(1024 + i));
        }
        let mut agent = SnatAgent::default();
        agent.schedule(t(1));
        assert!(!agent.poll(t(1), &mut vswitch), "nothing to say yet");
        let held = report(&mut agent, &vswitch);
        assert_eq!(
            held["snat"],
            json!([
                {"vip": VIP, "dip": DIP, "start": 1024},
                {"vip": VIP, "dip": DIP, "start": 1032},
            ])
        );
        assert_eq!(held["snatDemand"], json!([]));
        // All but the connection on 1033 reset: the second range is held by a port
        // other than its first.
        for sport in 40000..40009 {
            let rst = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 81], [2, 0, 0, 0, 0, 1])
                .ipv4(DIP.octets(), SERVER.octets(), 64)
                .tcp(sport, 80, 2, 64000)
                .rst();
            let mut f = Vec::new();
            rst.write(&mut f, &[]).unwrap();
            let vfp = vswitch.vfp_mut(port).unwrap();
            assert_eq!(vfp.process(t(1), Direction::Out, &mut f), Verdict::Forward);
        }
        // Long after, the connection (established: 240 s idle) still holds the second
        // range: nothing is idle (the first range never is). (Half-open, it would have
        // gone after 30 s.)
        for s in 2..=100 {
            assert!(!agent.poll(t(s), &mut vswitch), "at {s} s");
        }
        assert_eq!(
            vswitch
                .vfp(port)
                .unwrap()
                .snat_ports_in_use(SNAT_LAYER, VIP.into()),
            [1033],
            "the others went with their resets"
        );
        // A range of a DIP with no connection there idles out after 60 s.
        let (mut idle_switch, _) = switch(vec![1024, 1040]);
        let mut agent = SnatAgent::default();
        agent.schedule(t(1));
        agent.poll(t(1), &mut idle_switch);
        assert!(!agent.poll(t(60), &mut idle_switch));
        assert!(agent.poll(t(61), &mut idle_switch), "idle for 60 s");
        let idle = report(&mut agent, &idle_switch);
        assert_eq!(idle["snatIdle"], json!([{"vip": VIP, "start": 1040}]));
        assert_eq!(idle["snatDemand"], json!([]));
        assert!(!agent.poll(t(62), &mut idle_switch), "reported once");
        // Out of ports: the demand names VIP and DIP, once.
        let (mut full, port) = switch(vec![1024]);
        for i in 0..8 {
            open(&mut full, port, 40000 + i).unwrap();
        }
        assert_eq!(open(&mut full, port, 40100), None);
        let mut agent = SnatAgent::default();
        agent.schedule(t(1));
        assert!(agent.poll(t(1), &mut full));
        let demand = report(&mut agent, &full);
        assert_eq!(demand["snatDemand"], json!([{"vip": VIP, "dip": DIP}]));
        assert_eq!(report(&mut agent, &full)["snatDemand"], json!([]), "taken");
    }
}
