//! Header transpositions: what a flow's packets have done to them, header by header.

use std::net::IpAddr;

use strata_wire::EthernetAddress;
use strata_wire::checksum;
use strata_wire::flow::proto;
use strata_wire::rewrite::{Endpoint, rewrite, rewrite6};
use strata_wire::vxlan;

use super::packet::{Encap, Flow, IpLayout, Metadata};
use super::rule::{Action, EncapSpec};

/// What happens to the encapsulation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EncapOp {
    #[default]
    Ignore,
    Pop,
    Push(EncapSpec),
}

/// A flow's compiled actions: per header, ignore it, modify fields, pop or push it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderTransposition {
    pub encap: EncapOp,
    pub eth_src: Option<EthernetAddress>,
    pub eth_dst: Option<EthernetAddress>,
    pub ip_src: Option<IpAddr>,
    pub ip_dst: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    /// Clamp the MSS option of TCP SYNs to this.
    pub mss: Option<u16>,
}

/// Bytes a pushed VXLAN encapsulation adds: Ethernet, IPv4, UDP, VXLAN.
pub const PUSH_LEN: usize = vxlan::OVERHEAD_IPV4;

impl HeaderTransposition {
    /// Folds one rule's action into the transposition and into the metadata the next
    /// layers match on. Returns false for `Block`, and for a NAT to an address of the
    /// other family.
    pub(crate) fn compose(&mut self, action: &Action, m: &mut Metadata) -> bool {
        match action {
            Action::Allow => {}
            Action::Block => return false,
            Action::Decap => {
                if m.encap.take().is_some() {
                    self.encap = match self.encap {
                        EncapOp::Push(_) => EncapOp::Ignore,
                        _ => EncapOp::Pop,
                    };
                }
            }
            Action::Encap(spec) => {
                self.encap = EncapOp::Push(*spec);
                m.encap = Some(Encap {
                    src_pa: spec.src_pa,
                    dst_pa: spec.dst_pa,
                    vni: spec.vni,
                    len: PUSH_LEN,
                });
            }
            Action::Nat(nat) => {
                if let Some((addr, port)) = nat.src {
                    let Some(flow) = m.flow.rewritten(false, addr, port) else {
                        return false;
                    };
                    m.flow = flow;
                    self.ip_src = Some(addr);
                    self.src_port = port.or(self.src_port);
                }
                if let Some((addr, port)) = nat.dst {
                    let Some(flow) = m.flow.rewritten(true, addr, port) else {
                        return false;
                    };
                    m.flow = flow;
                    self.ip_dst = Some(addr);
                    self.dst_port = port.or(self.dst_port);
                }
            }
            // The port resolves a SNAT to the `Nat` of the port it chose.
            Action::Snat(_) => return false,
            Action::ClampMss(mss) => self.mss = Some(self.mss.map_or(*mss, |m| m.min(*mss))),
            Action::SetMac { src, dst } => {
                if let Some(s) = src {
                    self.eth_src = Some(*s);
                    m.eth_src = *s;
                }
                if let Some(d) = dst {
                    self.eth_dst = Some(*d);
                    m.eth_dst = *d;
                }
            }
        }
        true
    }

    /// Folds a whole transposition (a layer's recorded action) in, as the actions it was
    /// composed of would be. Only its address rewrite can fail (see [`Self::compose`]).
    pub(crate) fn fold(&mut self, other: &HeaderTransposition, m: &mut Metadata) -> bool {
        // Only a NAT can fail to compose; the rest always do.
        match other.encap {
            EncapOp::Ignore => {}
            EncapOp::Pop => _ = self.compose(&Action::Decap, m),
            EncapOp::Push(spec) => _ = self.compose(&Action::Encap(spec), m),
        }
        if other.eth_src.is_some() || other.eth_dst.is_some() {
            let (src, dst) = (other.eth_src, other.eth_dst);
            _ = self.compose(&Action::SetMac { src, dst }, m);
        }
        if let Some(mss) = other.mss {
            _ = self.compose(&Action::ClampMss(mss), m);
        }
        !other.rewrites_flow()
            || self.compose(
                &Action::Nat(super::rule::NatSpec {
                    src: other.ip_src.map(|a| (a, other.src_port)),
                    dst: other.ip_dst.map(|a| (a, other.dst_port)),
                }),
                m,
            )
    }

    /// Whether the transposition rewrites addresses or ports (so replies need the inverse).
    pub fn rewrites_flow(&self) -> bool {
        // A port is only ever rewritten with its address (a NAT names both).
        self.ip_src.is_some() || self.ip_dst.is_some()
    }

    /// The transposition for the replies of a flow that was `original` before this one
    /// applied: the address rewrite undone, encapsulation left alone (direct return).
    pub fn inverse(&self, original: &Metadata) -> HeaderTransposition {
        let o = &original.flow;
        HeaderTransposition {
            encap: EncapOp::Ignore,
            eth_src: None,
            eth_dst: None,
            ip_src: self.ip_dst.map(|_| o.dst()),
            ip_dst: self.ip_src.map(|_| o.src()),
            src_port: self.dst_port.map(|_| o.dst_port()),
            dst_port: self.src_port.map(|_| o.src_port()),
            mss: self.mss,
        }
    }

    /// The flow a packet of `m`'s flow becomes (before any encapsulation is pushed).
    pub fn flow_after(&self, m: &Metadata) -> Flow {
        let f = m.flow;
        let src = f
            .rewritten(false, self.ip_src.unwrap_or(f.src()), self.src_port)
            .unwrap_or(f);
        src.rewritten(true, self.ip_dst.unwrap_or(f.dst()), self.dst_port)
            .unwrap_or(src)
    }

    /// Applies the transposition to a frame whose metadata is `m`. Pops and modifies in
    /// place; a push grows the buffer at the front (it allocates only when the buffer has
    /// no spare capacity).
    ///
    /// `m` must be what [`Metadata::parse`] read from this very frame: the offsets it
    /// found are used as they are.
    pub fn apply(&self, frame: &mut Vec<u8>, m: &Metadata) {
        // Where the inner frame starts: after an encapsulation that stays on.
        let inner = match (self.encap, m.encap) {
            (EncapOp::Pop, Some(e)) => {
                frame.drain(..e.len);
                0
            }
            (_, Some(e)) => e.len,
            (_, None) => 0,
        };
        if let Some(mac) = self.eth_dst {
            frame[inner..inner + 6].copy_from_slice(mac.as_bytes());
        }
        if let Some(mac) = self.eth_src {
            frame[inner + 6..inner + 12].copy_from_slice(mac.as_bytes());
        }
        let ip = &mut frame[inner + m.l3_offset..];
        if self.rewrites_flow() {
            self.rewrite(ip, m);
        }
        if let Some(mss) = self.mss
            && m.flow.proto() == proto::TCP
            && m.tcp_flags & 0x02 != 0
        {
            let (l4, end) = m.ip.l4();
            clamp_mss(&mut ip[l4..end], mss);
        }
        if let EncapOp::Push(spec) = self.encap {
            push_vxlan(frame, &spec, m);
        }
    }
}

impl HeaderTransposition {
    /// Rewrites the addresses and ports of the IP packet `m` describes.
    fn rewrite(&self, ip: &mut [u8], m: &Metadata) {
        let f = m.flow;
        let ends = [
            (
                Endpoint::Source,
                self.ip_src.is_some() || self.src_port.is_some(),
                self.ip_src.unwrap_or(f.src()),
                self.src_port.unwrap_or(f.src_port()),
            ),
            (
                Endpoint::Destination,
                self.ip_dst.is_some() || self.dst_port.is_some(),
                self.ip_dst.unwrap_or(f.dst()),
                self.dst_port.unwrap_or(f.dst_port()),
            ),
        ];
        for (which, _, addr, port) in ends.into_iter().filter(|e| e.1) {
            match (&m.ip, addr) {
                (IpLayout::V4(layout), IpAddr::V4(addr)) => rewrite(ip, layout, which, addr, port),
                (IpLayout::V6(layout), IpAddr::V6(addr)) => {
                    rewrite6(ip, layout, which, addr, port);
                }
                // Composing refuses a rewrite across families.
                _ => {}
            }
        }
    }
}

/// Lowers the MSS option of a TCP segment to `mss`, updating the TCP checksum (RFC 1624).
/// Malformed options are left alone.
fn clamp_mss(tcp: &mut [u8], mss: u16) {
    // A header shorter than 20 bytes has no options: the loop below does not start.
    let Some(offset) = tcp.get(12) else { return };
    let data_offset = (usize::from(offset >> 4) * 4).min(tcp.len());
    let mut at = 20;
    while at < data_offset {
        match tcp[at] {
            0 => return,
            1 => at += 1,
            kind => {
                let Some(&len) = tcp.get(at + 1) else { return };
                let len = usize::from(len);
                if len < 2 || at + len > data_offset {
                    return;
                }
                if kind == 2 && len == 4 {
                    let old = u16::from_be_bytes([tcp[at + 2], tcp[at + 3]]);
                    if old > mss {
                        tcp[at + 2..at + 4].copy_from_slice(&mss.to_be_bytes());
                        let check = u16::from_be_bytes([tcp[16], tcp[17]]);
                        tcp[16..18]
                            .copy_from_slice(&checksum::update16(check, old, mss).to_be_bytes());
                    }
                    return;
                }
                at += len;
            }
        }
    }
}

fn push_vxlan(frame: &mut Vec<u8>, spec: &EncapSpec, m: &Metadata) {
    let inner_len = frame.len();
    frame.splice(0..0, std::iter::repeat_n(0u8, PUSH_LEN));
    let (eth, headers) = frame[..PUSH_LEN].split_at_mut(strata_wire::ETHERNET_HEADER_LEN);
    eth[0..6].copy_from_slice(spec.outer_dst_mac.as_bytes());
    eth[6..12].copy_from_slice(spec.outer_src_mac.as_bytes());
    eth[12..14].copy_from_slice(&strata_wire::ethernet::ETHERTYPE_IPV4.to_be_bytes());
    let outer = vxlan::Outer {
        src: spec.src_pa,
        dst: spec.dst_pa,
        ident: 0,
        entropy: m.flow.entropy(),
        vni: spec.vni,
    };
    // Only a frame longer than an IPv4 packet can hold fails here, and the link MTU keeps
    // frames far below that.
    let _ = outer.emit(inner_len, headers);
}
