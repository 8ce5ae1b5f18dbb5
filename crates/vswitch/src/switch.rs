//! The virtual switch: ports, MAC learning and forwarding, VFP on VM ports.
//!
//! ```text
//!        uplink (the host's physical NIC, on one network)
//!           │
//!   ┌───────┴──────────────── vSwitch ───────────────────┐
//!   │  MAC table        internal ports: host vNICs       │
//!   │                   VM ports: each with a VFP Port   │
//!   └──────┬──────────────┬──────────────┬───────────────┘
//!       host vNIC      VM port 0      VM port 1
//! ```
//!
//! IPv4 and IPv6 frames entering a VM port from the switch go through its VFP layers
//! inbound; frames leaving the VM go through them outbound. Other frames (ARP) pass. VXLAN frames
//! addressed to one of the host's provider addresses reach the switch through
//! [`VSwitch::receive_encapsulated`], and go to the VM port whose MAC is the inner
//! destination, where VFP decapsulates them.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use strata_wire::EthernetAddress;
use strata_wire::ethernet::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, Header};

use crate::vfp::{self, Direction, Metadata, Verdict};

/// A port of the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SwitchPort(pub usize);

#[derive(Debug)]
enum Kind {
    Uplink,
    Internal {
        mac: EthernetAddress,
    },
    Vm {
        mac: EthernetAddress,
        vfp: Box<vfp::Port>,
    },
}

#[derive(Debug)]
struct PortState {
    name: String,
    kind: Kind,
}

/// Switch counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub forwarded: u64,
    pub flooded: u64,
    pub vfp_dropped: u64,
    pub decapsulated: u64,
    /// Encapsulated frames for a MAC no VM port has.
    pub no_such_vm: u64,
    pub malformed: u64,
}

/// A Hyper-V-style virtual switch.
#[derive(Debug)]
pub struct VSwitch {
    name: String,
    ports: Vec<PortState>,
    learned: HashMap<EthernetAddress, SwitchPort>,
    out: VecDeque<(SwitchPort, Vec<u8>)>,
    counters: Counters,
}

impl VSwitch {
    pub fn new(name: impl Into<String>) -> VSwitch {
        VSwitch {
            name: name.into(),
            ports: Vec::new(),
            learned: HashMap::new(),
            out: VecDeque::new(),
            counters: Counters::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    fn add(&mut self, name: String, kind: Kind) -> SwitchPort {
        self.ports.push(PortState { name, kind });
        SwitchPort(self.ports.len() - 1)
    }

    /// The uplink: where frames for unknown MACs go.
    pub fn add_uplink(&mut self, name: impl Into<String>) -> SwitchPort {
        self.add(name.into(), Kind::Uplink)
    }

    /// A host vNIC (the host's own stack) with a known MAC.
    pub fn add_internal(&mut self, name: impl Into<String>, mac: EthernetAddress) -> SwitchPort {
        self.add(name.into(), Kind::Internal { mac })
    }

    /// A VM's port, with its VFP state.
    pub fn add_vm(
        &mut self,
        name: impl Into<String>,
        mac: EthernetAddress,
        flow_limit: usize,
    ) -> SwitchPort {
        let name = name.into();
        let vfp = Box::new(vfp::Port::new(name.clone(), flow_limit));
        self.add(name, Kind::Vm { mac, vfp })
    }

    /// The VFP state of a VM port.
    pub fn vfp(&self, port: SwitchPort) -> Option<&vfp::Port> {
        match &self.ports.get(port.0)?.kind {
            Kind::Vm { vfp, .. } => Some(vfp),
            _ => None,
        }
    }

    pub fn vfp_mut(&mut self, port: SwitchPort) -> Option<&mut vfp::Port> {
        match &mut self.ports.get_mut(port.0)?.kind {
            Kind::Vm { vfp, .. } => Some(vfp),
            _ => None,
        }
    }

    /// VM ports: (port, name, MAC).
    pub fn vm_ports(&self) -> Vec<(SwitchPort, &str, EthernetAddress)> {
        self.ports
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match &p.kind {
                Kind::Vm { mac, .. } => Some((SwitchPort(i), p.name.as_str(), *mac)),
                _ => None,
            })
            .collect()
    }

    fn port_of_mac(&self, mac: EthernetAddress) -> Option<SwitchPort> {
        self.ports
            .iter()
            .position(|p| match &p.kind {
                Kind::Internal { mac: m } | Kind::Vm { mac: m, .. } => *m == mac,
                Kind::Uplink => false,
            })
            .map(SwitchPort)
            .or_else(|| self.learned.get(&mac).copied())
    }

    fn uplink(&self) -> Option<SwitchPort> {
        self.ports
            .iter()
            .position(|p| matches!(p.kind, Kind::Uplink))
            .map(SwitchPort)
    }

    /// A frame entering the switch from `from`.
    pub fn receive(&mut self, now: Duration, from: SwitchPort, mut frame: Vec<u8>) {
        let Ok((header, _)) = Header::parse(&frame) else {
            self.counters.malformed += 1;
            return;
        };
        let Some(from_state) = self.ports.get_mut(from.0) else {
            return;
        };
        if let Kind::Vm { vfp, .. } = &mut from_state.kind
            && matches!(header.ethertype, ETHERTYPE_IPV4 | ETHERTYPE_IPV6)
            && let Verdict::Drop(_) = vfp.process(now, Direction::Out, &mut frame)
        {
            self.counters.vfp_dropped += 1;
            return;
        }
        if matches!(from_state.kind, Kind::Uplink) && header.src.is_unicast() {
            self.learned.insert(header.src, from);
        }
        // The Ethernet header may have been rewritten by VFP; read the destination again.
        let dst = EthernetAddress::from_bytes(&frame[0..6]);
        if dst.is_unicast() {
            match self.port_of_mac(dst).or_else(|| self.uplink()) {
                Some(to) if to != from => {
                    self.counters.forwarded += 1;
                    self.deliver(now, to, frame);
                }
                _ => {}
            }
        } else {
            self.counters.flooded += 1;
            let targets: Vec<SwitchPort> = (0..self.ports.len())
                .map(SwitchPort)
                .filter(|p| *p != from)
                .collect();
            for to in targets {
                self.deliver(now, to, frame.clone());
            }
        }
    }

    /// Sends a frame out of `to`, through VFP inbound if it is a VM port.
    fn deliver(&mut self, now: Duration, to: SwitchPort, mut frame: Vec<u8>) {
        if let Some(PortState {
            kind: Kind::Vm { vfp, .. },
            ..
        }) = self.ports.get_mut(to.0)
            && is_ip(&frame)
            && let Verdict::Drop(_) = vfp.process(now, Direction::In, &mut frame)
        {
            self.counters.vfp_dropped += 1;
            return;
        }
        self.out.push_back((to, frame));
    }

    /// A VXLAN frame that arrived for one of the host's provider addresses (outer Ethernet
    /// included): it goes to the VM port whose MAC is the inner destination, where VFP
    /// takes the encapsulation off.
    pub fn receive_encapsulated(&mut self, now: Duration, frame: Vec<u8>) {
        let Ok(m) = Metadata::parse(&frame) else {
            self.counters.malformed += 1;
            return;
        };
        if m.encap.is_none() {
            self.counters.malformed += 1;
            return;
        }
        let port = self
            .ports
            .iter()
            .position(|p| matches!(&p.kind, Kind::Vm { mac, .. } if *mac == m.eth_dst));
        match port {
            Some(p) => {
                self.counters.decapsulated += 1;
                self.deliver(now, SwitchPort(p), frame);
            }
            None => self.counters.no_such_vm += 1,
        }
    }

    /// The next frame to send and the port it leaves by.
    pub fn poll_transmit(&mut self) -> Option<(SwitchPort, Vec<u8>)> {
        self.out.pop_front()
    }
}

/// Whether a frame is IPv4 or IPv6 (what VFP sees; ARP and the rest pass by).
fn is_ip(frame: &[u8]) -> bool {
    frame.len() >= 14
        && matches!(
            u16::from_be_bytes([frame[12], frame[13]]),
            ETHERTYPE_IPV4 | ETHERTYPE_IPV6
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    const VM: EthernetAddress = EthernetAddress([0x00, 0x15, 0x5d, 0, 0, 7]);
    const HOST: EthernetAddress = EthernetAddress([0x00, 0x15, 0x5d, 0, 0, 2]);
    const ROUTER: EthernetAddress = EthernetAddress([0x00, 0x15, 0x5d, 0, 0, 1]);

    fn frame(dst: EthernetAddress, src: EthernetAddress, ethertype: u16) -> Vec<u8> {
        let mut f = dst.as_bytes().to_vec();
        f.extend_from_slice(src.as_bytes());
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.resize(60, 0);
        f
    }

    fn drain(s: &mut VSwitch) -> Vec<SwitchPort> {
        std::iter::from_fn(|| s.poll_transmit())
            .map(|(p, _)| p)
            .collect()
    }

    #[test]
    fn forwards_by_mac_floods_broadcast_and_sends_unknown_to_the_uplink() {
        let mut s = VSwitch::new("CCI_External");
        let up = s.add_uplink("uplink");
        let host = s.add_internal("vEthernet 1001", HOST);
        let vm = s.add_vm("PortalVM", VM, 1024);
        let t = Duration::ZERO;
        // ARP broadcast from outside reaches the host vNIC and the VM.
        s.receive(t, up, frame(EthernetAddress::BROADCAST, ROUTER, 0x0806));
        assert_eq!(drain(&mut s), vec![host, vm]);
        // The VM's unicast ARP reply to the router goes out the uplink (learned).
        s.receive(t, vm, frame(ROUTER, VM, 0x0806));
        assert_eq!(drain(&mut s), vec![up]);
        // The host talks to its VM directly.
        s.receive(t, host, frame(VM, HOST, 0x0806));
        assert_eq!(drain(&mut s), vec![vm]);
        // Unknown unicast goes to the uplink.
        s.receive(
            t,
            vm,
            frame(EthernetAddress([2, 9, 9, 9, 9, 9]), VM, 0x0806),
        );
        assert_eq!(drain(&mut s), vec![up]);
        assert_eq!(s.vm_ports().len(), 1);
        assert!(s.vfp(vm).is_some() && s.vfp(host).is_none());
    }

    #[test]
    fn malformed_frames_are_counted() {
        let mut s = VSwitch::new("s");
        let up = s.add_uplink("uplink");
        s.receive(Duration::ZERO, up, vec![1, 2, 3]);
        s.receive_encapsulated(Duration::ZERO, frame(VM, HOST, 0x0800));
        assert_eq!(s.counters().malformed, 2);
    }

    #[test]
    fn ipv6_frames_cross_a_vm_port_through_vfp() {
        use crate::vfp::{Action, Conditions, Family, Group, Layer, Rule};
        let mut s = VSwitch::new("s");
        let up = s.add_uplink("uplink");
        let vm = s.add_vm("vm", VM, 1024);
        let block_v6 = Layer {
            name: "ACL".into(),
            priority: 1,
            groups: [Direction::In, Direction::Out]
                .into_iter()
                .map(|direction| Group {
                    name: format!("v6-{direction}"),
                    direction,
                    family: Family::Ipv6,
                    priority: 1,
                    rules: vec![Rule {
                        name: "block".into(),
                        priority: 1,
                        conditions: Conditions::any(),
                        action: Action::Block,
                    }],
                })
                .collect(),
        };
        s.vfp_mut(vm).unwrap().set_layer(block_v6);
        // An IPv6 UDP datagram (header and 8 bytes of UDP, checksum not checked here).
        let mut v6 = frame(VM, ROUTER, ETHERTYPE_IPV6);
        v6.truncate(14);
        v6.extend_from_slice(&[0x60, 0, 0, 0, 0, 8, 17, 64]);
        v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        v6.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        v6.extend_from_slice(&[0x13, 0x88, 0x00, 0x35, 0, 8, 0, 0]);
        s.receive(Duration::ZERO, up, v6.clone());
        assert!(drain(&mut s).is_empty());
        let mut out = v6;
        out[0..6].copy_from_slice(ROUTER.as_bytes());
        out[6..12].copy_from_slice(VM.as_bytes());
        s.receive(Duration::ZERO, vm, out);
        assert!(drain(&mut s).is_empty());
        assert_eq!(s.counters().vfp_dropped, 2);
        // ARP still passes.
        s.receive(Duration::ZERO, up, frame(VM, ROUTER, 0x0806));
        assert_eq!(drain(&mut s), vec![vm]);
    }
}
