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
//! inbound; frames leaving the VM go through them outbound. Other frames (ARP) pass. An
//! ARP request for the address of one of the VM ports' NICs goes to that port alone
//! ([`VSwitch::set_addresses`]), and a request for any other address (but an
//! announcement of the sender's own) skips the VM ports whose addresses it knows: a host
//! probing its own VMs floods nobody else's, and a host asking for its controller does
//! not reach every VM of every host (on a datacenter's management network, thousands).
//!
//! Networks are VLANs, as Hyper-V's access mode has them: a VM or host port is on one
//! VLAN (or on none, the untagged network), its frames are untagged, and MAC learning,
//! forwarding and flooding stay within the VLAN. The uplink is a trunk: a frame of VLAN
//! `v` crosses it with an 802.1Q tag of VID `v`, a frame of the untagged network without
//! one. A tagged frame from an access port, or one on the uplink for a VLAN no port has,
//! is dropped and counted. VXLAN frames
//! addressed to one of the host's provider addresses reach the switch through
//! [`VSwitch::receive_encapsulated`]; they are demultiplexed by VNI (a VM port takes
//! the VXLAN of its virtual network, [`VSwitch::set_vni`], and no other) and then go to
//! the port whose MAC is the inner destination, where VFP decapsulates them.
//!
//! The switch knows its own ports' MACs; every other unicast goes to the uplink, which
//! is the only port anything is learned on. The MAC table records what is behind the
//! uplink, per network, for those who look ([`VSwitch::mac_table`]): at most
//! [`MAC_LIMIT`] entries (a full table learns nothing new until entries age out, and
//! counts what it could not learn), each forgotten [`MAC_AGE`] after it was last seen.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

use strata_wire::ethernet::{ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, Header};
use strata_wire::vxlan::Vni;
use strata_wire::{ETHERNET_HEADER_LEN, EthernetAddress};

use crate::vfp::{self, Direction, Metadata, Verdict};

/// Entries the MAC table holds at most (see [`VSwitch::set_mac_limits`]).
pub const MAC_LIMIT: usize = 4096;
/// How long a learned MAC is kept after its last frame (the Linux bridge's default).
pub const MAC_AGE: Duration = Duration::from_secs(300);

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
        /// The virtual network whose VXLAN the port takes (none until programmed).
        vni: Option<Vni>,
        /// The IPv4 addresses of the VM's NIC (see [`VSwitch::set_addresses`]).
        addresses: Vec<Ipv4Addr>,
    },
}

#[derive(Debug)]
struct PortState {
    name: String,
    kind: Kind,
    /// The access VLAN (`None`: the untagged network). The uplink carries every VLAN.
    vlan: Option<u16>,
}

/// A VLAN, or the untagged network (`None`).
type Network = Option<u16>;

/// Switch counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub forwarded: u64,
    pub flooded: u64,
    pub vfp_dropped: u64,
    pub decapsulated: u64,
    /// Encapsulated frames of a known VNI for a MAC no VM port of that VNI has.
    pub no_such_vm: u64,
    /// Encapsulated frames of a VNI no VM port takes.
    pub unknown_vni: u64,
    pub malformed: u64,
    /// Tagged frames from an access port, and frames for a VLAN no port is on.
    pub vlan_dropped: u64,
    /// Source MACs not learned because the MAC table was full.
    pub mac_table_full: u64,
    /// Learned MACs forgotten after [`MAC_AGE`] without a frame.
    pub mac_aged: u64,
    /// ARP requests sent to the one VM port with the address asked for, not flooded.
    pub arp_steered: u64,
}

/// What the switch learned on the uplink: bounded, aged.
#[derive(Debug)]
struct MacTable {
    /// Per network and MAC: the port, and when its last frame came.
    entries: HashMap<(Network, EthernetAddress), (SwitchPort, Duration)>,
    limit: usize,
    age: Duration,
    /// When a full table was last swept for aged entries (at most once a second).
    swept: Option<Duration>,
}

impl MacTable {
    fn new(limit: usize, age: Duration) -> MacTable {
        MacTable {
            entries: HashMap::new(),
            limit,
            age,
            swept: None,
        }
    }

    fn fresh(&self, seen: Duration, now: Duration) -> bool {
        now.saturating_sub(seen) < self.age
    }

    /// Learns (or refreshes) `key` on `port`; false if the table is full.
    fn learn(
        &mut self,
        now: Duration,
        key: (Network, EthernetAddress),
        port: SwitchPort,
        counters: &mut Counters,
    ) -> bool {
        if let Some(entry) = self.entries.get_mut(&key) {
            *entry = (port, now);
            return true;
        }
        if self.entries.len() >= self.limit
            && self
                .swept
                .is_none_or(|t| now.saturating_sub(t) >= Duration::from_secs(1))
        {
            self.swept = Some(now);
            let (age, before) = (self.age, self.entries.len());
            self.entries
                .retain(|_, (_, seen)| now.saturating_sub(*seen) < age);
            counters.mac_aged += (before - self.entries.len()) as u64;
        }
        if self.entries.len() >= self.limit {
            counters.mac_table_full += 1;
            return false;
        }
        self.entries.insert(key, (port, now));
        true
    }
}

/// A Hyper-V-style virtual switch.
#[derive(Debug)]
pub struct VSwitch {
    name: String,
    ports: Vec<PortState>,
    /// MACs seen on the uplink, per network.
    learned: MacTable,
    out: VecDeque<(SwitchPort, Vec<u8>)>,
    counters: Counters,
}

impl VSwitch {
    pub fn new(name: impl Into<String>) -> VSwitch {
        VSwitch {
            name: name.into(),
            ports: Vec::new(),
            learned: MacTable::new(MAC_LIMIT, MAC_AGE),
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
        self.ports.push(PortState {
            name,
            kind,
            vlan: None,
        });
        SwitchPort(self.ports.len() - 1)
    }

    /// Sets the MAC table's size and how long it keeps a MAC (defaults [`MAC_LIMIT`],
    /// [`MAC_AGE`]); what it holds is forgotten.
    pub fn set_mac_limits(&mut self, limit: usize, age: Duration) {
        self.learned = MacTable::new(limit, age);
    }

    /// The MAC table at `now`: network (VLAN, or `None`), MAC, port, seconds since its
    /// last frame; ordered by network and MAC.
    pub fn mac_table(&self, now: Duration) -> Vec<(Option<u16>, EthernetAddress, SwitchPort, u64)> {
        let mut v: Vec<_> = self
            .learned
            .entries
            .iter()
            .filter(|(_, (_, seen))| self.learned.fresh(*seen, now))
            .map(|((network, mac), (port, seen))| {
                (*network, *mac, *port, now.saturating_sub(*seen).as_secs())
            })
            .collect();
        v.sort_by_key(|(network, mac, _, _)| (*network, mac.0));
        v
    }

    /// Puts a VM or host port on a VLAN (1..=4094), or on the untagged network (`None`).
    /// Returns false for the uplink, an unknown port, or a VID out of range.
    pub fn set_vlan(&mut self, port: SwitchPort, vlan: Option<u16>) -> bool {
        if vlan.is_some_and(|v| !(1..=4094).contains(&v)) {
            return false;
        }
        match self.ports.get_mut(port.0) {
            Some(p) if !matches!(p.kind, Kind::Uplink) => {
                p.vlan = vlan;
                true
            }
            _ => false,
        }
    }

    /// The VLAN a port is on.
    pub fn vlan(&self, port: SwitchPort) -> Option<u16> {
        self.ports.get(port.0).and_then(|p| p.vlan)
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
        self.add(
            name,
            Kind::Vm {
                mac,
                vfp,
                vni: None,
                addresses: Vec::new(),
            },
        )
    }

    /// Puts a VM port on a virtual network: VXLAN of `vni` for its MAC reaches it, and
    /// no other (`None`: none). False for a port that is not a VM's.
    pub fn set_vni(&mut self, port: SwitchPort, vni: Option<Vni>) -> bool {
        match self.ports.get_mut(port.0).map(|p| &mut p.kind) {
            Some(Kind::Vm { vni: v, .. }) => {
                *v = vni;
                true
            }
            _ => false,
        }
    }

    /// The IPv4 addresses of a VM port's NIC, as the VM was given them: an ARP request
    /// for one of them goes to that port alone, not to every port and the uplink (so a
    /// host probing its VMs floods nobody else's), and an ARP request for an address
    /// the NIC does not have skips the port. False for a port that is not a VM's.
    pub fn set_addresses(&mut self, port: SwitchPort, addrs: Vec<Ipv4Addr>) -> bool {
        match self.ports.get_mut(port.0).map(|p| &mut p.kind) {
            Some(Kind::Vm { addresses, .. }) => {
                *addresses = addrs;
                true
            }
            _ => false,
        }
    }

    /// Whether `port` is a VM's whose addresses the switch knows.
    fn has_addresses(&self, port: SwitchPort) -> bool {
        matches!(&self.ports[port.0].kind, Kind::Vm { addresses, .. } if !addresses.is_empty())
    }

    /// The VM port on `network` whose NIC has `addr`.
    fn port_of_address(&self, network: Network, addr: Ipv4Addr) -> Option<SwitchPort> {
        self.ports
            .iter()
            .position(|p| {
                p.vlan == network
                    && matches!(&p.kind, Kind::Vm { addresses, .. } if addresses.contains(&addr))
            })
            .map(SwitchPort)
    }

    /// The virtual network of a VM port.
    pub fn vni(&self, port: SwitchPort) -> Option<Vni> {
        match self.ports.get(port.0).map(|p| &p.kind) {
            Some(Kind::Vm { vni, .. }) => *vni,
            _ => None,
        }
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

    /// The switch's own port with `mac` on `network` (a VM or a host vNIC); anything
    /// else is behind the uplink.
    fn port_of_mac(&self, network: Network, mac: EthernetAddress) -> Option<SwitchPort> {
        self.ports
            .iter()
            .position(|p| match &p.kind {
                Kind::Internal { mac: m } | Kind::Vm { mac: m, .. } => {
                    *m == mac && p.vlan == network
                }
                Kind::Uplink => false,
            })
            .map(SwitchPort)
    }

    /// Whether `port` carries `network`: the uplink carries all of them.
    fn carries(&self, port: SwitchPort, network: Network) -> bool {
        self.ports
            .get(port.0)
            .is_some_and(|p| matches!(p.kind, Kind::Uplink) || p.vlan == network)
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
        let Some(from_state) = self.ports.get(from.0) else {
            return;
        };
        let from_uplink = matches!(from_state.kind, Kind::Uplink);
        // The network the frame is on (VID 0 is a priority tag: the untagged network);
        // inside the switch frames travel untagged.
        let network = if from_uplink {
            header.vlan.map(|t| t.vid).filter(|v| *v != 0)
        } else {
            from_state.vlan
        };
        let foreign = network.is_some() && !self.ports.iter().any(|p| p.vlan == network);
        if foreign || (!from_uplink && header.vlan.is_some()) {
            self.counters.vlan_dropped += 1;
            return;
        }
        if header.vlan.is_some() {
            untag(&mut frame);
        }
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
        if from_uplink && header.src.is_unicast() {
            self.learned
                .learn(now, (network, header.src), from, &mut self.counters);
        }
        // The Ethernet header may have been rewritten by VFP; read the destination again.
        let dst = EthernetAddress::from_bytes(&frame[0..6]);
        if dst.is_unicast() {
            match self.port_of_mac(network, dst).or_else(|| self.uplink()) {
                Some(to) if to != from => {
                    self.counters.forwarded += 1;
                    self.deliver(now, to, network, frame);
                }
                _ => {}
            }
            return;
        }
        let arp = arp_request(&frame);
        if let Some(to) = arp
            .and_then(|(_, target)| self.port_of_address(network, target))
            .filter(|to| *to != from)
        {
            self.counters.arp_steered += 1;
            self.deliver(now, to, network, frame);
        } else {
            self.counters.flooded += 1;
            // An ARP request for an address no VM port here has is no business of a VM
            // port whose addresses the switch knows (a gratuitous one, which announces
            // the sender's own address, is everyone's).
            let asks_others = arp.is_some_and(|(sender, target)| sender != target);
            let targets: Vec<SwitchPort> = (0..self.ports.len())
                .map(SwitchPort)
                .filter(|p| *p != from && self.carries(*p, network))
                .filter(|p| !(asks_others && self.has_addresses(*p)))
                .collect();
            for to in targets {
                self.deliver(now, to, network, frame.clone());
            }
        }
    }

    /// Sends a frame of `network` out of `to`: through VFP inbound if it is a VM port,
    /// tagged if it is the uplink and the network a VLAN.
    fn deliver(&mut self, now: Duration, to: SwitchPort, network: Network, mut frame: Vec<u8>) {
        match self.ports.get_mut(to.0).map(|p| &mut p.kind) {
            Some(Kind::Vm { vfp, .. }) => {
                if is_ip(&frame)
                    && let Verdict::Drop(_) = vfp.process(now, Direction::In, &mut frame)
                {
                    self.counters.vfp_dropped += 1;
                    return;
                }
            }
            Some(Kind::Uplink) => {
                if let Some(vid) = network {
                    tag(&mut frame, vid);
                }
            }
            _ => {}
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
        let Some(encap) = m.encap else {
            self.counters.malformed += 1;
            return;
        };
        // Demultiplexed by VNI, then by the inner destination MAC.
        let on_vni =
            |p: &PortState| matches!(&p.kind, Kind::Vm { vni, .. } if *vni == Some(encap.vni));
        let port = self.ports.iter().position(|p| {
            on_vni(p) && matches!(&p.kind, Kind::Vm { mac, .. } if *mac == m.eth_dst)
        });
        match port {
            Some(p) => {
                self.counters.decapsulated += 1;
                let network = self.ports[p].vlan;
                self.deliver(now, SwitchPort(p), network, frame);
            }
            None if self.ports.iter().any(on_vni) => self.counters.no_such_vm += 1,
            None => self.counters.unknown_vni += 1,
        }
    }

    /// The next frame to send and the port it leaves by.
    pub fn poll_transmit(&mut self) -> Option<(SwitchPort, Vec<u8>)> {
        self.out.pop_front()
    }
}

/// The sender's address and the address asked for, if an untagged Ethernet frame is an
/// ARP request for IPv4.
fn arp_request(frame: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let arp = frame.get(ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + 28)?;
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    // Hardware Ethernet, protocol IPv4, lengths 6 and 4, operation request.
    let ip = |at: usize| Ipv4Addr::new(arp[at], arp[at + 1], arp[at + 2], arp[at + 3]);
    (ethertype == ETHERTYPE_ARP && arp[..8] == [0, 1, 8, 0, 6, 4, 0, 1]).then(|| (ip(14), ip(24)))
}

/// Removes a frame's 802.1Q tag (the frame parsed as tagged).
fn untag(frame: &mut Vec<u8>) {
    frame.drain(12..16);
}

/// Inserts an 802.1Q tag of `vid` (priority 0) after the MAC addresses.
fn tag(frame: &mut Vec<u8>, vid: u16) {
    let [tpid_hi, tpid_lo] = strata_wire::ethernet::TPID_8021Q.to_be_bytes();
    let [vid_hi, vid_lo] = (vid & 0x0fff).to_be_bytes();
    frame.splice(12..12, [tpid_hi, tpid_lo, vid_hi, vid_lo]);
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

    /// An ARP request from `src` (sender `sender`) for `target`, as etherparse writes it.
    fn arp_request(src: EthernetAddress, sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
        let arp = etherparse::ArpPacket::new(
            etherparse::ArpHardwareId::ETHERNET,
            etherparse::EtherType::IPV4,
            etherparse::ArpOperation::REQUEST,
            src.as_bytes(),
            &sender,
            &[0; 6],
            &target,
        )
        .unwrap();
        let mut f = frame(EthernetAddress::BROADCAST, src, ETHERTYPE_ARP);
        f.truncate(ETHERNET_HEADER_LEN);
        f.extend_from_slice(&arp.to_bytes());
        f
    }

    #[test]
    fn an_arp_request_for_a_vms_address_goes_to_that_vm_alone() {
        let mut s = VSwitch::new("CCI_External");
        let up = s.add_uplink("uplink");
        let host = s.add_internal("vEthernet 1001", HOST);
        let vm = s.add_vm("PortalVM", VM, 1024);
        let other = s.add_vm("Other", EthernetAddress([0x00, 0x15, 0x5d, 0, 0, 8]), 1024);
        let tenant = s.add_vm("Tenant", EthernetAddress([0x00, 0x15, 0x5d, 0, 0, 9]), 1024);
        assert!(s.set_addresses(vm, vec![[192, 168, 100, 74].into()]));
        assert!(s.set_vlan(tenant, Some(10)));
        assert!(s.set_addresses(tenant, vec![[192, 168, 100, 75].into()]));
        assert!(
            !s.set_addresses(host, vec![[192, 168, 100, 2].into()]),
            "not a VM"
        );
        let t = Duration::ZERO;
        // The host probing its VM: the request reaches the VM, not the uplink.
        s.receive(
            t,
            host,
            arp_request(HOST, [192, 168, 100, 2], [192, 168, 100, 74]),
        );
        assert_eq!(drain(&mut s), vec![vm]);
        // The router asking from outside: the same.
        s.receive(
            t,
            up,
            arp_request(ROUTER, [192, 168, 100, 1], [192, 168, 100, 74]),
        );
        assert_eq!(drain(&mut s), vec![vm]);
        assert_eq!(s.counters().arp_steered, 2);
        // An address no port has, and one a port of another VLAN has: flooded, but not
        // to the VM whose address is known (and is another).
        let ask = |s: &mut VSwitch, from, mac, sender: [u8; 4], target: [u8; 4]| {
            s.receive(t, from, arp_request(mac, sender, target));
            drain(s)
        };
        let router = [192, 168, 100, 1];
        assert_eq!(
            ask(&mut s, up, ROUTER, router, [192, 168, 100, 9]),
            [host, other]
        );
        let from_host = ask(&mut s, host, HOST, [192, 168, 100, 2], [192, 168, 100, 75]);
        assert_eq!(from_host, [up, other]);
        // Announcements (gratuitous ARP) reach everyone: the VM's own, the router's.
        let own = [192, 168, 100, 74];
        assert_eq!(ask(&mut s, vm, VM, own, own), [up, host, other]);
        assert_eq!(ask(&mut s, up, ROUTER, router, router), [host, vm, other]);
        assert_eq!((s.counters().arp_steered, s.counters().flooded), (2, 4));
        // An ARP reply is not a request, whatever it names; nor is anything else.
        let mut reply = arp_request(ROUTER, router, own);
        reply[21] = 2;
        s.receive(t, up, reply);
        assert_eq!(drain(&mut s), vec![host, vm, other]);
        s.receive(t, up, frame(EthernetAddress::BROADCAST, ROUTER, 0x88cc));
        assert_eq!(drain(&mut s), vec![host, vm, other]);
        // Addresses taken away: flooded to the VM again.
        s.set_addresses(vm, Vec::new());
        assert_eq!(ask(&mut s, up, ROUTER, router, own), [host, vm, other]);
        assert_eq!(
            ask(&mut s, up, ROUTER, router, [192, 168, 100, 9]),
            [host, vm, other]
        );
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
    fn the_switch_counts_what_it_forwards_floods_and_decapsulates() {
        let mut s = VSwitch::new("CCI_External");
        assert_eq!(s.name(), "CCI_External");
        let up = s.add_uplink("uplink");
        let host = s.add_internal("vEthernet 1001", HOST);
        let vm = s.add_vm("PortalVM", VM, 1024);
        let t = Duration::ZERO;
        s.receive(t, up, frame(EthernetAddress::BROADCAST, ROUTER, 0x0806));
        s.receive(t, up, frame(EthernetAddress::BROADCAST, ROUTER, 0x0806));
        s.receive(t, host, frame(VM, HOST, 0x0806));
        s.receive(t, host, frame(VM, HOST, 0x0806));
        s.receive(t, host, frame(VM, HOST, 0x0806));
        drain(&mut s);
        // A VXLAN frame for a MAC no VM port has, and one for the VM (inner Ethernet to
        // the VM's MAC, inner IPv4 and UDP).
        let vxlan = |inner_dst: EthernetAddress| {
            let mut f = frame(HOST, ROUTER, 0x0800);
            f.truncate(14);
            let inner_len = 14 + 28;
            let total = (20 + 8 + 8 + inner_len) as u16;
            let mut ip = vec![
                0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
            ];
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            let c = strata_wire::checksum::checksum(&ip);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f.extend_from_slice(&ip);
            f.extend_from_slice(&[0xc0, 0x00, 0x12, 0xb5]);
            f.extend_from_slice(&(total - 20).to_be_bytes());
            f.extend_from_slice(&[0, 0, 0x08, 0, 0, 0, 0, 0x10, 0, 0]);
            f.extend_from_slice(inner_dst.as_bytes());
            f.extend_from_slice(ROUTER.as_bytes());
            f.extend_from_slice(&[0x08, 0x00]);
            let mut inner = vec![
                0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 1, 0, 1, 10, 1, 0, 2,
            ];
            let c = strata_wire::checksum::checksum(&inner);
            inner[10..12].copy_from_slice(&c.to_be_bytes());
            inner.extend_from_slice(&[0x13, 0x88, 0x00, 0x35, 0, 8, 0, 0]);
            f.extend_from_slice(&inner);
            f
        };
        // VNI 4096 before any port is on it: refused as an unknown VNI.
        s.receive_encapsulated(t, vxlan(VM));
        assert_eq!(s.counters().unknown_vni, 1);
        let vni = |v| Vni::new(v).unwrap();
        assert!(s.set_vni(vm, Some(vni(4096))));
        assert!(!s.set_vni(host, Some(vni(4096))), "only a VM's port");
        assert_eq!((s.vni(vm), s.vni(host)), (Some(vni(4096)), None));
        // Another VM on another virtual network: VNI 4096 for its MAC does not reach it.
        let other_mac = EthernetAddress([2, 8, 8, 8, 8, 8]);
        let other = s.add_vm("TenantVM", other_mac, 1024);
        assert!(s.set_vni(other, Some(vni(5000))));
        s.receive_encapsulated(t, vxlan(other_mac));
        s.receive_encapsulated(t, vxlan(EthernetAddress([2, 9, 9, 9, 9, 9])));
        s.receive_encapsulated(t, vxlan(VM));
        s.receive_encapsulated(t, vxlan(VM));
        assert_eq!(drain(&mut s), vec![vm, vm]);
        let c = s.counters();
        assert_eq!(
            (c.flooded, c.forwarded, c.no_such_vm, c.decapsulated),
            (2, 3, 2, 2)
        );
        assert_eq!(c.unknown_vni, 1);
        // Off its network, the port takes no VXLAN at all.
        assert!(s.set_vni(vm, None));
        s.receive_encapsulated(t, vxlan(VM));
        assert_eq!(s.counters().unknown_vni, 2);
        assert!(drain(&mut s).is_empty());
        // VLAN accessors: a VM port on VLAN 10, the uplink refuses one.
        assert!(s.set_vlan(vm, Some(10)));
        assert_eq!(s.vlan(vm), Some(10));
        assert_eq!(s.vlan(host), None);
        assert!(!s.set_vlan(up, Some(10)));
        assert!(!s.set_vlan(vm, Some(4095)));
        assert!(s.set_vlan(vm, None));
        assert_eq!(s.vlan(vm), None);
    }

    #[test]
    fn a_vm_cannot_claim_another_mac_by_sending_from_it() {
        // Only the uplink's side is learned: a VM sending from a spoofed MAC does not
        // draw that MAC's traffic to itself.
        let mut s = VSwitch::new("s");
        let up = s.add_uplink("uplink");
        let host = s.add_internal("host", HOST);
        let vm = s.add_vm("vm", VM, 1024);
        let t = Duration::ZERO;
        s.receive(t, vm, frame(ROUTER, ROUTER, 0x0806));
        drain(&mut s);
        s.receive(t, host, frame(ROUTER, HOST, 0x0806));
        assert_eq!(drain(&mut s), vec![up]);
        // Nor is a multicast source learned from the uplink.
        let group = EthernetAddress([0x01, 0, 0x5e, 0, 0, 1]);
        s.receive(t, up, frame(VM, group, 0x0806));
        drain(&mut s);
        assert!(!s.learned.entries.contains_key(&(None, group)));
    }

    #[test]
    fn the_mac_table_is_bounded_and_forgets_what_it_has_not_seen() {
        let mut s = VSwitch::new("s");
        let up = s.add_uplink("uplink");
        s.add_vm("vm", VM, 1024);
        s.set_mac_limits(2, Duration::from_secs(300));
        let mac = |i: u8| EthernetAddress([2, 0, 0, 0, 1, i]);
        let secs = Duration::from_secs;
        let learned = |s: &VSwitch, now| -> Vec<(EthernetAddress, u64)> {
            s.mac_table(now).iter().map(|e| (e.1, e.3)).collect()
        };
        // Three MACs behind the uplink, room for two: the third is counted, not learned.
        for i in 0..3 {
            s.receive(secs(1), up, frame(VM, mac(i), 0x0806));
        }
        assert_eq!(drain(&mut s).len(), 3, "each reaches the VM all the same");
        assert_eq!(learned(&s, secs(1)), vec![(mac(0), 0), (mac(1), 0)]);
        assert_eq!(s.counters().mac_table_full, 1);
        // An entry gone quiet is no longer listed; a table with room is not swept.
        let mut roomy = VSwitch::new("s");
        let up2 = roomy.add_uplink("uplink");
        roomy.set_mac_limits(4, Duration::from_secs(300));
        roomy.receive(secs(1), up2, frame(VM, mac(0), 0x0806));
        roomy.receive(secs(400), up2, frame(VM, mac(1), 0x0806));
        assert_eq!(learned(&roomy, secs(400)), vec![(mac(1), 0)]);
        assert_eq!(roomy.counters().mac_aged, 0);
        // mac(0) is seen again at 200 s; at 301 s mac(1) has gone quiet for 300 s.
        s.receive(secs(200), up, frame(VM, mac(0), 0x0806));
        assert_eq!(learned(&s, secs(300)), vec![(mac(0), 100), (mac(1), 299)]);
        assert_eq!(learned(&s, secs(301)), vec![(mac(0), 101)]);
        // A new MAC finds the table full: the aged entry is swept out to make room.
        s.receive(secs(301), up, frame(VM, mac(2), 0x0806));
        assert_eq!(learned(&s, secs(301)), vec![(mac(0), 101), (mac(2), 0)]);
        assert_eq!((s.counters().mac_aged, s.counters().mac_table_full), (1, 1));
        // Full again with nothing aged: refused, and the next sweep waits a second.
        s.receive(secs(301), up, frame(VM, mac(3), 0x0806));
        assert_eq!(s.counters().mac_table_full, 2);
        // At 501 s mac(0) has aged, but the sweep of 301 s is recent only within a
        // second: by 501 s it runs again and mac(3) gets mac(0)'s place.
        s.receive(secs(501), up, frame(VM, mac(3), 0x0806));
        assert_eq!(learned(&s, secs(501)), vec![(mac(2), 200), (mac(3), 0)]);
        assert_eq!(s.counters().mac_aged, 2);
        // A MAC is learned per network: the same one on VLAN 10 is another entry.
        let mut s = VSwitch::new("s");
        let up = s.add_uplink("uplink");
        let vm = s.add_vm("vm", VM, 1024);
        assert!(s.set_vlan(vm, Some(10)));
        s.receive(secs(1), up, tagged(frame(VM, mac(0), 0x0806), 10));
        s.receive(secs(1), up, frame(VM, mac(0), 0x0806));
        let table = s.mac_table(secs(1));
        assert_eq!(
            table.iter().map(|e| (e.0, e.1, e.2)).collect::<Vec<_>>(),
            vec![(None, mac(0), up), (Some(10), mac(0), up)]
        );
    }

    #[test]
    fn malformed_frames_are_counted() {
        let mut s = VSwitch::new("s");
        let up = s.add_uplink("uplink");
        s.receive(Duration::ZERO, up, vec![1, 2, 3]);
        s.receive_encapsulated(Duration::ZERO, frame(VM, HOST, 0x0800));
        assert_eq!(s.counters().malformed, 2);
        // An IPv4 frame that parses but is no VXLAN: not for the encapsulated path.
        let mut plain = frame(VM, HOST, 0x0800);
        plain.truncate(14);
        let mut ip = vec![
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = strata_wire::checksum::checksum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip.extend_from_slice(&[0x13, 0x88, 0x00, 0x35, 0, 8, 0, 0]);
        plain.extend_from_slice(&ip);
        s.receive_encapsulated(Duration::ZERO, plain);
        assert_eq!(s.counters().malformed, 3);
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

    /// A frame as it would arrive on the trunk: tagged with `vid`.
    fn tagged(mut f: Vec<u8>, vid: u16) -> Vec<u8> {
        tag(&mut f, vid);
        f
    }

    /// The VLAN ID etherparse reads in a frame, if tagged.
    fn vid(frame: &[u8]) -> Option<u16> {
        let sliced = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
        sliced.vlan().map(|v| match v {
            etherparse::VlanSlice::SingleVlan(s) => s.vlan_identifier().value(),
            etherparse::VlanSlice::DoubleVlan(d) => d.outer.vlan_identifier().value(),
        })
    }

    #[test]
    fn vlans_keep_forwarding_and_flooding_apart() {
        const A: EthernetAddress = EthernetAddress([0x00, 0x15, 0x5d, 0, 0, 0x0a]);
        const B: EthernetAddress = EthernetAddress([0x00, 0x15, 0x5d, 0, 0, 0x0b]);
        let mut s = VSwitch::new("s");
        let up = s.add_uplink("uplink");
        let host = s.add_internal("host", HOST);
        let a = s.add_vm("a", A, 1024);
        let b = s.add_vm("b", B, 1024);
        assert!(s.set_vlan(a, Some(10)) && s.set_vlan(b, Some(20)));
        assert!(!s.set_vlan(up, Some(10)) && !s.set_vlan(a, Some(4095)));
        let t = Duration::ZERO;
        let out = |s: &mut VSwitch| -> Vec<(SwitchPort, Vec<u8>)> {
            std::iter::from_fn(|| s.poll_transmit()).collect()
        };

        // A broadcast from VLAN 10 reaches the trunk tagged 10, and nobody else.
        s.receive(t, a, frame(EthernetAddress::BROADCAST, A, 0x0806));
        let sent = out(&mut s);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, up);
        assert_eq!(vid(&sent[0].1), Some(10));
        assert_eq!(u16::from_be_bytes([sent[0].1[16], sent[0].1[17]]), 0x0806);

        // A broadcast tagged 20 on the trunk reaches b only, untagged.
        s.receive(
            t,
            up,
            tagged(frame(EthernetAddress::BROADCAST, ROUTER, 0x0806), 20),
        );
        let sent = out(&mut s);
        assert_eq!(sent.iter().map(|(p, _)| *p).collect::<Vec<_>>(), vec![b]);
        assert_eq!(vid(&sent[0].1), None);
        assert_eq!(sent[0].1, frame(EthernetAddress::BROADCAST, ROUTER, 0x0806));

        // An untagged broadcast stays on the untagged network: the host.
        s.receive(t, up, frame(EthernetAddress::BROADCAST, ROUTER, 0x0806));
        assert_eq!(drain(&mut s), vec![host]);

        // b's MAC is not on VLAN 10: a frame for it there goes nowhere.
        s.receive(t, up, tagged(frame(B, ROUTER, 0x0806), 10));
        assert!(drain(&mut s).is_empty());

        // The router was learned on VLAN 20 only: a's unicast to it takes the trunk
        // tagged 10 (flooded to the uplink as unknown), b's is learned and tagged 20.
        s.receive(t, a, frame(ROUTER, A, 0x0806));
        let sent = out(&mut s);
        assert_eq!((sent[0].0, vid(&sent[0].1)), (up, Some(10)));
        s.receive(t, b, frame(ROUTER, B, 0x0806));
        let sent = out(&mut s);
        assert_eq!((sent[0].0, vid(&sent[0].1)), (up, Some(20)));

        // Tagged frames from an access port, and VLANs nobody is on, are dropped.
        s.receive(t, a, tagged(frame(ROUTER, A, 0x0806), 20));
        s.receive(t, up, tagged(frame(A, ROUTER, 0x0806), 30));
        assert!(drain(&mut s).is_empty());
        assert_eq!(s.counters().vlan_dropped, 2);
    }
}
