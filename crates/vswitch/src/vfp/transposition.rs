//! Header transpositions: what a flow's packets have done to them, header by header.

use std::net::{IpAddr, Ipv4Addr};

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
        self.apply_with(frame, m, None);
    }

    /// [`Self::apply`], with the address rewrite compiled for the frame's flow (see
    /// [`Ipv4Rewrite`]) if there is one.
    #[inline(always)]
    pub(crate) fn apply_with(
        &self,
        frame: &mut Vec<u8>,
        m: &Metadata,
        compiled: Option<&Ipv4Rewrite>,
    ) {
        // Where the inner frame starts. An encapsulation popped goes last: the headers
        // are rewritten where parsing just read them, then moved once.
        let inner = m.encap.map_or(0, |e| e.len);
        if let Some(mac) = self.eth_dst {
            frame[inner..inner + 6].copy_from_slice(mac.as_bytes());
        }
        if let Some(mac) = self.eth_src {
            frame[inner + 6..inner + 12].copy_from_slice(mac.as_bytes());
        }
        let ip = &mut frame[inner + m.l3_offset..];
        match compiled {
            Some(c) => c.apply(ip, m.ip.l4()),
            None if self.rewrites_flow() => self.rewrite(ip, m),
            None => {}
        }
        if let Some(mss) = self.mss
            && m.flow.proto() == proto::TCP
            && m.tcp_flags & 0x02 != 0
        {
            let (l4, end) = m.ip.l4();
            clamp_mss(&mut ip[l4..end], mss);
        }
        match self.encap {
            EncapOp::Pop if inner > 0 => _ = frame.drain(..inner),
            EncapOp::Push(spec) => push_vxlan(frame, &spec, m),
            _ => {}
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

/// A transposition's address and port rewrite, compiled for one IPv4 TCP or UDP flow.
///
/// Every packet of a flow carries the same addresses and ports, so what the rewrite adds
/// to each checksum (RFC 1624: the new words less the old) is the same for all of them:
/// it is summed once, when the flow is cached, and each packet takes one addition per
/// checksum. The result is the checksum [`HeaderTransposition::apply`] writes (the same
/// one's-complement value; in theory one may write 0xffff where the other writes 0x0000,
/// both of which a receiver accepts in an IPv4 header and neither of which a UDP
/// checksum of zero becomes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ipv4Rewrite {
    /// The flow's addresses and ports after the rewrite.
    src: [u8; 4],
    dst: [u8; 4],
    src_port: u16,
    dst_port: u16,
    /// Summed changes: to the IPv4 header (the addresses), to the transport checksum
    /// (the addresses through the pseudo-header, and the ports).
    ip_delta: u16,
    l4_delta: u16,
    /// Where the transport checksum sits (TCP 16, UDP 6).
    check_at: usize,
    udp: bool,
}

impl Ipv4Rewrite {
    /// The rewrite of `ht` compiled for `m`'s flow: `None` if `ht` rewrites nothing or
    /// the flow is not IPv4 TCP or UDP.
    pub(crate) fn compile(ht: &HeaderTransposition, m: &Metadata) -> Option<Ipv4Rewrite> {
        let (Flow::V4(old), Flow::V4(new)) = (m.flow, ht.flow_after(m)) else {
            return None;
        };
        let check_at = match old.proto {
            proto::TCP => 16,
            proto::UDP => 6,
            _ => return None,
        };
        if !ht.rewrites_flow() {
            return None;
        }
        // The words of an endpoint that changes, old complemented and new (as eqn. 3 adds
        // them), into the header's and the transport checksum's sums.
        let mut ip = 0u32;
        let mut l4 = 0u32;
        let words = |a: Ipv4Addr| {
            let [a, b, c, d] = a.octets();
            [u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])]
        };
        let ends = [
            (
                ht.ip_src.is_some() || ht.src_port.is_some(),
                (old.src, old.src_port),
                (new.src, new.src_port),
            ),
            (
                ht.ip_dst.is_some() || ht.dst_port.is_some(),
                (old.dst, old.dst_port),
                (new.dst, new.dst_port),
            ),
        ];
        for (_, (old_addr, old_port), (new_addr, new_port)) in ends.into_iter().filter(|e| e.0) {
            for (o, n) in words(old_addr).into_iter().zip(words(new_addr)) {
                ip += u32::from(!o) + u32::from(n);
            }
            l4 += u32::from(!old_port) + u32::from(new_port);
        }
        Some(Ipv4Rewrite {
            src: new.src.octets(),
            dst: new.dst.octets(),
            src_port: new.src_port,
            dst_port: new.dst_port,
            ip_delta: checksum::fold(ip),
            l4_delta: checksum::fold(l4 + ip),
            check_at,
            udp: old.proto == proto::UDP,
        })
    }

    /// Rewrites an IPv4 packet of the flow this was compiled for, whose transport header
    /// parsing found at `l4` and which ends at `end`. A transport header too short to
    /// hold its checksum keeps its ports (as [`strata_wire::rewrite::rewrite`] does).
    #[inline(always)]
    fn apply(&self, ip: &mut [u8], (l4, end): (usize, usize)) {
        let add = |check: u16, delta: u16| !checksum::fold(u32::from(!check) + u32::from(delta));
        ip[12..16].copy_from_slice(&self.src);
        ip[16..20].copy_from_slice(&self.dst);
        let check = u16::from_be_bytes([ip[10], ip[11]]);
        ip[10..12].copy_from_slice(&add(check, self.ip_delta).to_be_bytes());
        let Some(l4) = ip.get_mut(l4..end) else {
            return;
        };
        if l4.len() < self.check_at + 2 {
            return;
        }
        l4[..2].copy_from_slice(&self.src_port.to_be_bytes());
        l4[2..4].copy_from_slice(&self.dst_port.to_be_bytes());
        let field = &mut l4[self.check_at..self.check_at + 2];
        let check = u16::from_be_bytes([field[0], field[1]]);
        if self.udp && check == 0 {
            // RFC 768: zero means the sender computed no checksum; leave it so.
            return;
        }
        let new = match add(check, self.l4_delta) {
            0 if self.udp => 0xffff,
            c => c,
        };
        field.copy_from_slice(&new.to_be_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;
    use proptest::prelude::*;

    const MAC: [u8; 6] = [0x00, 0x15, 0x5d, 0, 0, 1];

    /// An Ethernet frame of IPv4 TCP or UDP from etherparse's builder: an independent
    /// writer of every checksum.
    fn frame(udp: bool, src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC, MAC).ipv4(src.octets(), dst.octets(), 64);
        let mut out = Vec::new();
        if udp {
            b.udp(sport, dport).write(&mut out, b"payload").unwrap();
        } else {
            b.tcp(sport, dport, 7, 1000)
                .write(&mut out, b"payload")
                .unwrap();
        }
        out
    }

    fn nat(src: Option<(Ipv4Addr, u16)>, dst: Option<(Ipv4Addr, u16)>) -> HeaderTransposition {
        nat_to(
            src.map(|(a, p)| (a, Some(p))),
            dst.map(|(a, p)| (a, Some(p))),
        )
    }

    /// A NAT of either end to an address and maybe a port.
    type End = Option<(Ipv4Addr, Option<u16>)>;

    fn nat_to(src: End, dst: End) -> HeaderTransposition {
        HeaderTransposition {
            ip_src: src.map(|(a, _)| a.into()),
            src_port: src.and_then(|(_, p)| p),
            ip_dst: dst.map(|(a, _)| a.into()),
            dst_port: dst.and_then(|(_, p)| p),
            ..HeaderTransposition::default()
        }
    }

    /// The frame after `ht`, compiled for its flow and not.
    fn both(ht: &HeaderTransposition, f: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let m = Metadata::parse(f).unwrap();
        let compiled = Ipv4Rewrite::compile(ht, &m).expect("an IPv4 TCP or UDP rewrite");
        let (mut a, mut b) = (f.to_vec(), f.to_vec());
        ht.apply_with(&mut a, &m, Some(&compiled));
        ht.apply(&mut b, &m);
        (a, b)
    }

    proptest! {
        #[test]
        fn a_compiled_rewrite_writes_the_packet_of_the_new_flow(
            udp in any::<bool>(),
            (src, dst, sport, dport) in any::<([u8; 4], [u8; 4], u16, u16)>(),
            new_src in proptest::option::of(any::<([u8; 4], Option<u16>)>()),
            new_dst in proptest::option::of(any::<([u8; 4], Option<u16>)>()),
        ) {
            prop_assume!(new_src.is_some() || new_dst.is_some());
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let new_src = new_src.map(|(a, p)| (Ipv4Addr::from(a), p));
            let new_dst = new_dst.map(|(a, p)| (Ipv4Addr::from(a), p));
            let ht = nat_to(new_src, new_dst);
            let (compiled, general) = both(&ht, &frame(udp, src, dst, sport, dport));
            let (s, sp) = new_src.map_or((src, sport), |(a, p)| (a, p.unwrap_or(sport)));
            let (d, dp) = new_dst.map_or((dst, dport), |(a, p)| (a, p.unwrap_or(dport)));
            let expected = frame(udp, s, d, sp, dp);
            // A sum of 0xffff may be written as 0x0000 by one side: both mean the same.
            let ip_check = |f: &[u8]| u16::from_be_bytes([f[24], f[25]]) % 0xffff;
            prop_assert_eq!(ip_check(&compiled), ip_check(&expected));
            prop_assert_eq!(&compiled[26..], &expected[26..]);
            prop_assert_eq!(&compiled[..24], &expected[..24]);
            prop_assert_eq!(ip_check(&general), ip_check(&expected));
            prop_assert_eq!(&general[26..], &expected[26..]);
        }
    }

    #[test]
    fn a_udp_checksum_of_zero_stays_zero() {
        let mut f = frame(true, [10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 5000, 53);
        f[40..42].copy_from_slice(&[0, 0]);
        let ht = nat(None, Some(([10, 0, 0, 9].into(), 5353)));
        let (compiled, general) = both(&ht, &f);
        assert_eq!(compiled, general);
        assert_eq!(&compiled[40..42], &[0, 0]);
        assert_eq!(&compiled[36..38], &5353u16.to_be_bytes());
    }

    /// `f` with its IPv4 total length cut to `len` (the rest is link padding).
    fn cut(mut f: Vec<u8>, len: u16) -> Vec<u8> {
        f[16..18].copy_from_slice(&len.to_be_bytes());
        f[24..26].copy_from_slice(&[0, 0]);
        let c = strata_wire::checksum::checksum(&f[14..34]);
        f[24..26].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn a_transport_header_cut_short_of_its_checksum_keeps_its_ports() {
        let ht = nat(None, Some(([10, 0, 0, 9].into(), 8080)));
        let tcp = frame(false, [10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 5000, 80);
        // 8 and 17 bytes of the TCP header: the ports, but not all of the checksum.
        for l4 in [8, 17] {
            let (compiled, general) = both(&ht, &cut(tcp.clone(), 20 + l4));
            assert_eq!(compiled, general);
            assert_eq!(&compiled[30..34], &[10, 0, 0, 9]);
            assert_eq!(&compiled[36..38], &80u16.to_be_bytes());
        }
        // 18 bytes hold the checksum: rewritten.
        let (compiled, general) = both(&ht, &cut(tcp, 38));
        assert_eq!(compiled, general);
        assert_eq!(&compiled[36..38], &8080u16.to_be_bytes());
        // A UDP datagram of no payload: the header alone, rewritten.
        let udp = frame(true, [10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 5000, 53);
        let (compiled, general) = both(&ht, &cut(udp, 28));
        assert_eq!(compiled, general);
        assert_eq!(&compiled[36..38], &8080u16.to_be_bytes());
    }

    /// A NAT of the destination port whose new transport checksum sums to zero: TCP
    /// writes 0x0000, UDP 0xffff (zero would mean no checksum).
    #[test]
    fn a_checksum_that_comes_out_zero_is_written_as_the_protocol_wants() {
        for (udp, want) in [(false, 0x0000), (true, 0xffff)] {
            let f = frame(udp, [10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 5000, 53);
            let m = Metadata::parse(&f).unwrap();
            let ht = (1..=u16::MAX)
                .map(|p| nat(None, Some(([10, 0, 0, 9].into(), p))))
                .find(|ht| {
                    let mut g = f.clone();
                    ht.apply(&mut g, &m);
                    let at = if udp { 40 } else { 50 };
                    u16::from_be_bytes([g[at], g[at + 1]]) == want
                })
                .expect("a port that makes the sum zero");
            let (compiled, general) = both(&ht, &f);
            assert_eq!(compiled, general, "udp {udp}");
        }
    }

    #[test]
    fn only_ipv4_tcp_and_udp_rewrites_compile() {
        let f = frame(false, [10, 0, 0, 1].into(), [10, 0, 0, 2].into(), 5000, 80);
        let m = Metadata::parse(&f).unwrap();
        assert_eq!(
            Ipv4Rewrite::compile(&HeaderTransposition::default(), &m),
            None
        );
        let mut icmp = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .icmpv4_echo_request(7, 1)
            .write(&mut icmp, b"ping")
            .unwrap();
        let m = Metadata::parse(&icmp).unwrap();
        let ht = nat(None, Some(([10, 0, 0, 9].into(), 7)));
        assert_eq!(Ipv4Rewrite::compile(&ht, &m), None);
    }
}
