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
