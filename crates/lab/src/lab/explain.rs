//! What each node did to a packet it passed on, read from the frame it received, the
//! frame it sent, and its state: the route it took, the NAT it applied, the VIP entry
//! and DIP a Mux chose, the VXLAN it put on or took off, the VFP rules that matched.

use std::net::Ipv4Addr;

use strata_node::LinkKind;
use strata_node::router::{Origin, RouteKind};
use strata_node::slb::hash::Distribution;
use strata_node::slb::mux::VipKey;
use strata_node::vswitch::vfp::Direction;
use strata_wire::EthernetAddress;
use strata_wire::ethernet::{ETHERTYPE_IPV4, Header};
use strata_wire::flow::{Ipv4Layout, proto};

use super::Lab;
use crate::trace::{IpInfo, Seen};

/// A frame's outer VXLAN, if it carries one.
#[derive(Debug, Clone, Copy)]
struct Vxlan {
    vni: u32,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    inner_dst: EthernetAddress,
}

fn vxlan_of(frame: &[u8]) -> Option<Vxlan> {
    let (header, off) = Header::parse(frame).ok()?;
    if header.ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    let packet = frame.get(off..)?;
    let l = Ipv4Layout::parse(packet).ok()?;
    let udp = packet.get(l.header_len..l.total_len)?;
    if l.proto != proto::UDP
        || udp.len() < 8
        || u16::from_be_bytes([udp[2], udp[3]]) != strata_wire::vxlan::UDP_PORT
    {
        return None;
    }
    let (vni, inner) = strata_wire::vxlan::parse(&udp[8..]).ok()?;
    Some(Vxlan {
        vni: vni.get(),
        src: l.src,
        dst: l.dst,
        inner_dst: EthernetAddress::from_bytes(inner.get(..6)?),
    })
}

/// `addr:port` for TCP and UDP, `addr` otherwise.
fn endpoint(addr: Ipv4Addr, port: u16, p: u8) -> String {
    if p == proto::TCP || p == proto::UDP {
        format!("{addr}:{port}")
    } else {
        addr.to_string()
    }
}

/// The configuration's own word for a distribution.
pub fn distribution_name(d: Distribution) -> &'static str {
    match d {
        Distribution::FiveTuple => "Default",
        Distribution::ThreeTuple => "SourceIPProtocol",
        Distribution::TwoTuple => "SourceIP",
    }
}

fn origin_name(o: Origin) -> &'static str {
    match o {
        Origin::Connected => "connected",
        Origin::Static => "static",
        Origin::Bgp => "BGP",
    }
}

impl Lab {
    /// The interface of node `n` on segment `s`: its NIC's name and address, its
    /// vSwitch's uplink, or a VM port.
    pub(super) fn interface(&self, n: usize, s: usize) -> String {
        let spec = &self.topology.nodes[n];
        let Some(l) = self.link_ports[n].iter().position(|(seg, _)| *seg == s) else {
            return String::new();
        };
        match &self.nodes[n].links()[l] {
            LinkKind::Nic(i) => {
                let nic = &spec.nics[*i];
                format!("{} {}", nic.name, nic.addr.addr())
            }
            LinkKind::Uplink => format!(
                "uplink of vSwitch {}",
                spec.vswitch.as_ref().map_or("", |v| v.name.as_str())
            ),
            LinkKind::VmPort(vm) => format!("port {vm}"),
        }
    }

    /// The node and NIC address a MAC belongs to.
    fn owner_of_mac(&self, mac: EthernetAddress) -> Option<(usize, Ipv4Addr)> {
        self.topology
            .nodes
            .iter()
            .enumerate()
            .find_map(|(n, spec)| {
                (0..spec.nics.len())
                    .find(|&k| crate::mac_of(n, k) == mac)
                    .map(|k| (n, spec.nics[k].addr.addr()))
            })
    }

    fn owner_of_addr(&self, a: Ipv4Addr) -> Option<usize> {
        self.topology
            .nodes
            .iter()
            .position(|spec| spec.nics.iter().any(|c| c.addr.addr() == a))
    }

    /// Whether segment `s` is a VM's port on a vSwitch (not one of the lab's networks).
    fn is_port_segment(&self, s: usize) -> bool {
        s >= self.topology.networks.len()
    }

    /// What the sender of `chain[k]` did to send it, one line per decision.
    pub(super) fn explain(&self, frames: &[Seen], chain: &[usize], k: usize) -> Vec<String> {
        let cur = &frames[chain[k]];
        let prev = k.checked_sub(1).map(|j| &frames[chain[j]]);
        let n = cur.from;
        let mut did = Vec::new();
        let Some(ci) = cur.ip else {
            return did;
        };
        let cv = vxlan_of(&cur.bytes);
        let Some(prev) = prev else {
            did.push("sends it from its own TCP/IP stack".to_string());
            self.route_line(n, cv.map_or(ci.dst, |v| v.dst), &cur.to, &mut did);
            return did;
        };
        let pv = vxlan_of(&prev.bytes);
        let pi = prev.ip.unwrap_or(ci);
        let spec = &self.topology.nodes[n];
        let node = &self.nodes[n];
        if spec.vswitch.is_some()
            && (self.is_port_segment(prev.network) || self.is_port_segment(cur.network))
        {
            let to_vm = self.is_port_segment(cur.network);
            let vm_segment = if to_vm { cur.network } else { prev.network };
            let vm = self.segments[vm_segment]
                .name()
                .split_once('.')
                .map_or("", |(_, vm)| vm);
            if to_vm && let Some(v) = pv {
                did.push(format!(
                    "takes VXLAN VNI {} from {} at its provider address {}",
                    v.vni, v.src, v.dst
                ));
            }
            self.vfp_lines(n, vm, to_vm, &prev.bytes, &mut did);
            did.push(if to_vm {
                format!("vSwitch {} delivers it to port {vm}", vswitch_name(spec))
            } else {
                format!(
                    "vSwitch {} switches it out of its uplink",
                    vswitch_name(spec)
                )
            });
        } else if let (Some(mux), Some(v), None) = (node.mux(), cv, pv) {
            let key = VipKey {
                vip: ci.dst,
                proto: ci.proto,
                port: ci.dst_port,
            };
            let dip = self.owner_of_mac(v.inner_dst);
            let dip_name = dip.map_or(v.inner_dst.to_string(), |(d, a)| {
                format!("{a} ({})", self.topology.nodes[d].name)
            });
            match mux.vip(&key) {
                Some(config) => {
                    let rule = self
                        .topology
                        .slb
                        .iter()
                        .flat_map(|s| &s.vips)
                        .find(|s| s.key == key)
                        .map(|s| format!(" by rule {}", s.name))
                        .unwrap_or_default();
                    did.push(format!(
                        "load-balances VIP {}{rule} (Maglev over {} DIPs, distribution {}) to DIP {dip_name}",
                        endpoint(key.vip, key.port, key.proto),
                        config.dips.len(),
                        distribution_name(config.distribution)
                    ));
                }
                None => {
                    let range = strata_node::slb::mux::SnatKey::of(key.vip, key.port);
                    let snat = mux.snat().into_iter().any(|(k, _)| k == range);
                    did.push(if snat {
                        format!(
                            "sends it to DIP {dip_name}, which holds the SNAT ports {}:{}-{} (a stateless range entry)",
                            range.vip,
                            range.start,
                            range.start + strata_node::slb::mux::SNAT_RANGE - 1
                        )
                    } else {
                        format!("sends it to DIP {dip_name}")
                    });
                }
            }
            let host = self
                .owner_of_addr(v.dst)
                .map(|h| format!(" ({}'s PA)", self.topology.nodes[h].name))
                .unwrap_or_default();
            did.push(format!(
                "encapsulates it in VXLAN VNI {}: {} → {}{host}",
                v.vni, v.src, v.dst
            ));
            self.route_line(n, v.dst, &cur.to, &mut did);
        } else {
            if let (Some(v), None) = (pv, cv) {
                did.push(format!("decapsulates VXLAN VNI {}", v.vni));
            }
            self.route_line(n, cv.map_or(ci.dst, |v| v.dst), &cur.to, &mut did);
        }
        self.rewrite_lines(n, &pi, &ci, &mut did);
        did
    }

    /// The route a node took to `dst`, and which of several equal next hops.
    fn route_line(&self, n: usize, dst: Ipv4Addr, to: &[usize], did: &mut Vec<String>) {
        let router = self.nodes[n].router();
        let Some((prefix, route)) = router.fib().lookup(dst) else {
            did.push(format!("has no route to {dst}"));
            return;
        };
        let out = router
            .interfaces()
            .get(route.iface.0)
            .map(|i| format!(", out {}", i.addr.addr()))
            .unwrap_or_default();
        let hops: Vec<String> = route
            .next_hops()
            .filter_map(|(_, g)| g.map(|g| g.to_string()))
            .collect();
        match route.kind {
            RouteKind::Forward => {}
            RouteKind::Blackhole => {
                did.push(format!(
                    "discards it: {dst} matches blackhole route {prefix}"
                ));
                return;
            }
            RouteKind::Reject => {
                did.push(format!(
                    "rejects it: {dst} matches reject route {prefix} (ICMP host unreachable)"
                ));
                return;
            }
        }
        let via = match hops.len() {
            0 => "on the link".to_string(),
            1 => format!("via {}", hops[0]),
            k => {
                // The next hop the flow's hash picked: the receiver's address among them.
                let chosen = route.next_hops().filter_map(|(_, g)| g).find(|g| {
                    to.iter().any(|&r| {
                        self.topology.nodes[r]
                            .nics
                            .iter()
                            .any(|c| c.addr.addr() == *g)
                    })
                });
                match chosen {
                    Some(g) => format!(
                        "via {g}, picked by the flow's hash from {k} equal-cost next hops ({})",
                        hops.join(", ")
                    ),
                    None => format!("via one of {} (ECMP)", hops.join(", ")),
                }
            }
        };
        did.push(format!(
            "routes {dst} by {prefix} ({}) {via}{out}",
            origin_name(route.origin)
        ));
    }

    /// The VFP rules a VM's port applied, and the flow the table holds.
    fn vfp_lines(&self, n: usize, vm: &str, inbound: bool, frame: &[u8], did: &mut Vec<String>) {
        let Some(vswitch) = self.nodes[n].vswitch() else {
            return;
        };
        let Some((port, _, _)) = vswitch
            .vm_ports()
            .into_iter()
            .find(|(_, name, _)| *name == vm)
        else {
            return;
        };
        let Some(vfp) = vswitch.vfp(port) else { return };
        let direction = if inbound {
            Direction::In
        } else {
            Direction::Out
        };
        let Some(e) = vfp.explain(direction, frame) else {
            return;
        };
        if e.matched.is_empty() {
            did.push(format!("VFP port {vm}: {}, no rule applies", e.flow));
        }
        for m in &e.matched {
            did.push(format!("VFP port {vm}: {m}"));
        }
        match &e.cached {
            Some(c) => did.push(format!(
                "VFP port {vm}: unified flow table has {}: {c}",
                e.flow
            )),
            None => did.push(format!("VFP port {vm}: {}: {}", e.flow, e.result)),
        }
    }

    /// How the packet's addresses and ports changed, and who changed them.
    fn rewrite_lines(&self, n: usize, before: &IpInfo, after: &IpInfo, did: &mut Vec<String>) {
        let spec = &self.topology.nodes[n];
        let who = if spec.nat.is_some() {
            "NAT"
        } else if spec.vswitch.is_some() {
            "VFP"
        } else {
            "it"
        };
        let p = after.proto;
        if (before.src, before.src_port) != (after.src, after.src_port) {
            did.push(format!(
                "{who} rewrites the source {} → {}",
                endpoint(before.src, before.src_port, p),
                endpoint(after.src, after.src_port, p)
            ));
        }
        if (before.dst, before.dst_port) != (after.dst, after.dst_port) {
            did.push(format!(
                "{who} rewrites the destination {} → {}",
                endpoint(before.dst, before.dst_port, p),
                endpoint(after.dst, after.dst_port, p)
            ));
        }
    }
}

fn vswitch_name(spec: &crate::topology::NodeSpec) -> &str {
    spec.vswitch.as_ref().map_or("", |v| v.name.as_str())
}
