//! The Mux: VIP map, backend choice, VXLAN encapsulation toward the DIP's host.
//!
//! A VIP entry is keyed by (VIP, protocol, frontend port), as a loadBalancingRule or an
//! inboundNatRule of the Network Controller is. The Mux does not rewrite the packet: it
//! wraps it, unchanged (destination still the VIP), in VXLAN to the provider address of the
//! host of the chosen DIP, whose vSwitch rewrites VIP→DIP. The outer UDP source port comes
//! from the flow hash (RFC 7348 section 5), so the underlay can spread flows.
//!
//! Outbound NAT (SNAT) leaves the VIP's ports in ranges of [`SNAT_RANGE`], each held by
//! one DIP. The replies come to VIP:port; the Mux's stateless entry for the port's range
//! sends them to that DIP's host, so any Mux can, and none needs to remember a flow.
//!
//! ```text
//!  outer IPv4 (Mux PA → host PA) │ UDP (hash → 4789) │ VXLAN (VNI) │ Ethernet (Mux → DIP) │ packet
//! ```

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::Duration;

use strata_wire::EthernetAddress;
use strata_wire::flow::{FlowKey, Ipv4Layout, proto};
use strata_wire::vxlan::{self, Vni};

use crate::flow_table::{self, FlowTable};
use crate::hash::{Distribution, flow_hash};
use crate::maglev::Maglev;

/// Bytes the Mux puts in front of a packet: IPv4 (20), UDP (8), VXLAN (8), Ethernet (14).
pub const ENCAP_LEN: usize = vxlan::IPV4_UDP_LEN + 14;

/// Ports a SNAT range holds; ranges start at a multiple of it.
pub const SNAT_RANGE: u16 = 8;

/// A SNAT range of a VIP: its ports, `start` to `start + 7`, for TCP and UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnatKey {
    pub vip: Ipv4Addr,
    /// A multiple of [`SNAT_RANGE`].
    pub start: u16,
}

impl SnatKey {
    /// The range a port of `vip` is in.
    pub fn of(vip: Ipv4Addr, port: u16) -> SnatKey {
        SnatKey {
            vip,
            start: port - port % SNAT_RANGE,
        }
    }
}

/// Where the replies to a SNAT range go: the DIP that holds it, on its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnatTarget {
    pub dip: Ipv4Addr,
    pub host_pa: Ipv4Addr,
    /// MAC of the DIP's NIC: the inner destination.
    pub mac: EthernetAddress,
    pub vni: Vni,
}

/// What a VIP entry matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VipKey {
    pub vip: Ipv4Addr,
    pub proto: u8,
    pub port: u16,
}

/// A backend: a DIP, the port it serves on, and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dip {
    pub addr: Ipv4Addr,
    pub port: u16,
    /// Provider address of the DIP's host: the outer destination.
    pub host_pa: Ipv4Addr,
    /// MAC of the DIP's NIC: the inner destination.
    pub mac: EthernetAddress,
    pub weight: u32,
}

impl Dip {
    /// The identity Maglev hashes: address and port.
    fn identity(&self) -> [u8; 6] {
        let [a, b, c, d] = self.addr.octets();
        let [p, q] = self.port.to_be_bytes();
        [a, b, c, d, p, q]
    }
}

/// One VIP entry: a loadBalancingRule (many DIPs) or an inboundNatRule (one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipConfig {
    pub key: VipKey,
    pub dips: Vec<Dip>,
    pub distribution: Distribution,
    pub vni: Vni,
}

/// A DIP of a VIP entry at its position.
#[derive(Debug, Clone)]
struct Member {
    dip: Dip,
    healthy: bool,
}

#[derive(Debug)]
struct VipState {
    config: VipConfig,
    /// The DIPs by position, which the flow table remembers: a DIP keeps its position
    /// while the entry is replaced, and a position whose DIP left stays empty, so no
    /// remembered flow is sent to another DIP by it.
    members: Vec<Option<Member>>,
    /// The position of each DIP of `config.dips`, in its order.
    positions: Vec<u16>,
    /// Built over the healthy DIPs in the configuration's order (the same on every Mux);
    /// `active[i]` is the position of Maglev backend `i`.
    table: Maglev,
    active: Vec<u16>,
}

impl VipState {
    /// A new entry: every DIP healthy, at its index.
    fn new(config: VipConfig) -> VipState {
        let members = config
            .dips
            .iter()
            .map(|dip| {
                Some(Member {
                    dip: dip.clone(),
                    healthy: true,
                })
            })
            .collect();
        let positions = (0..config.dips.len()).map(|i| i as u16).collect();
        let mut state = VipState {
            config,
            members,
            positions,
            table: Maglev::empty(),
            active: Vec::new(),
        };
        state.rebuild();
        state
    }

    /// This entry with `config` instead: the DIPs that stay keep their position and
    /// health, those that go leave their position empty, new ones take new positions
    /// and start healthy. `None` when positions ran out (the caller starts afresh).
    fn replaced(&self, config: VipConfig) -> Option<VipState> {
        let mut members: Vec<Option<Member>> = self
            .members
            .iter()
            .map(|m| m.clone().filter(|m| config.dips.contains(&m.dip)))
            .collect();
        let mut positions = Vec::with_capacity(config.dips.len());
        for dip in &config.dips {
            let at = match members
                .iter()
                .position(|m| m.as_ref().is_some_and(|m| &m.dip == dip))
            {
                Some(at) => at,
                None => {
                    members.push(Some(Member {
                        dip: dip.clone(),
                        healthy: true,
                    }));
                    members.len() - 1
                }
            };
            positions.push(u16::try_from(at).ok()?);
        }
        let mut state = VipState {
            config,
            members,
            positions,
            table: Maglev::empty(),
            active: Vec::new(),
        };
        state.rebuild();
        Some(state)
    }

    fn member(&self, position: u16) -> Option<&Member> {
        self.members.get(usize::from(position))?.as_ref()
    }

    fn rebuild(&mut self) {
        self.active = self
            .positions
            .iter()
            .copied()
            .filter(|&p| self.member(p).is_some_and(|m| m.healthy))
            .collect();
        let ids: Vec<([u8; 6], u32)> = self
            .active
            .iter()
            .filter_map(|&p| self.member(p))
            .map(|m| (m.dip.identity(), m.dip.weight))
            .collect();
        self.table = Maglev::build(ids.iter().map(|(id, w)| (&id[..], *w)));
    }
}

/// How a Mux is set up.
#[derive(Debug, Clone)]
pub struct MuxConfig {
    /// The Mux's provider address: the outer source.
    pub pa: Ipv4Addr,
    /// The inner source MAC.
    pub mac: EthernetAddress,
    pub flows_new: usize,
    pub flows_established: usize,
    pub idle_timeout: Duration,
}

impl MuxConfig {
    pub fn new(pa: Ipv4Addr, mac: EthernetAddress) -> MuxConfig {
        MuxConfig {
            pa,
            mac,
            flows_new: 64 * 1024,
            flows_established: 256 * 1024,
            idle_timeout: Duration::from_secs(240),
        }
    }
}

/// Why the Mux did not send a packet on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MuxDrop {
    #[error("not a valid IPv4 packet")]
    Malformed,
    #[error("a later fragment carries no ports to pick a DIP by")]
    Fragment,
    #[error("no VIP entry for the destination, protocol and port")]
    NoVip,
    #[error("no healthy DIP behind the VIP")]
    NoHealthyDip,
    #[error("output buffer too small")]
    BufferTooSmall,
}

/// Mux counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub encapsulated: u64,
    pub malformed: u64,
    pub fragments: u64,
    pub no_vip: u64,
    pub no_healthy_dip: u64,
    /// Flows whose remembered DIP had left the pool and were sent to a new one.
    pub rehashed: u64,
    /// Replies to a SNAT range sent to the DIP that holds it.
    pub snat_returned: u64,
}

/// Where a packet went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encapsulated {
    /// Bytes written to the output buffer (an IPv4 packet).
    pub len: usize,
    pub dip: Ipv4Addr,
    pub host_pa: Ipv4Addr,
}

/// A Mux.
#[derive(Debug)]
pub struct Mux {
    config: MuxConfig,
    vips: Vec<Option<VipState>>,
    index: HashMap<VipKey, usize>,
    /// How many entries and SNAT ranges each VIP address has (whether a packet is the
    /// Mux's, by hash).
    addresses: HashMap<Ipv4Addr, usize>,
    flows: FlowTable,
    counters: Counters,
    ident: u16,
    /// Moves on with every change to the VIP entries or their DIPs' health.
    generation: u64,
    /// The SNAT ranges of the VIPs and the DIPs that hold them.
    snat: HashMap<SnatKey, SnatTarget, foldhash::fast::RandomState>,
    /// The slots of the VIP entries each DIP serves: a change of its health touches
    /// those alone.
    by_dip: HashMap<Ipv4Addr, Vec<usize>>,
}

/// Flow table value: VIP slot in the high half, DIP position in the low half.
fn pack(vip: usize, dip: u16) -> u32 {
    ((vip as u32) << 16) | u32::from(dip)
}

fn unpack(v: u32) -> (usize, u16) {
    ((v >> 16) as usize, v as u16)
}

impl Mux {
    pub fn new(config: MuxConfig) -> Mux {
        Mux {
            flows: FlowTable::new(
                config.flows_new,
                config.flows_established,
                config.idle_timeout,
            ),
            config,
            vips: Vec::new(),
            index: HashMap::new(),
            addresses: HashMap::new(),
            counters: Counters::default(),
            ident: 0,
            generation: 0,
            snat: HashMap::default(),
            by_dip: HashMap::new(),
        }
    }

    pub fn config(&self) -> &MuxConfig {
        &self.config
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn flow_counters(&self) -> &flow_table::Counters {
        self.flows.counters()
    }

    /// Installs or replaces a VIP entry. DIPs start healthy. Established flows to DIPs
    /// that remain keep them.
    pub fn set_vip(&mut self, config: VipConfig) {
        self.generation += 1;
        let key = config.key;
        let old = self.index.get(&key).copied();
        let replaced = old
            .and_then(|slot| self.vips[slot].as_ref())
            .map(|state| state.replaced(config.clone()));
        match (old, replaced) {
            (Some(slot), Some(Some(state))) => {
                self.unindex_dips(slot);
                self.vips[slot] = Some(state);
                self.index_dips(slot);
            }
            _ => {
                // New, or its positions ran out: a fresh entry in another slot, so the
                // flows remembered in the old one are chosen afresh.
                let slot = self.free_slot();
                self.vips[slot] = Some(VipState::new(config));
                self.index_dips(slot);
                self.index.insert(key, slot);
                match old {
                    Some(old) => {
                        self.unindex_dips(old);
                        self.vips[old] = None;
                    }
                    None => *self.addresses.entry(key.vip).or_default() += 1,
                }
            }
        }
    }

    /// Records that the VIP entry in `slot` is served by its DIPs.
    fn index_dips(&mut self, slot: usize) {
        let Some(state) = &self.vips[slot] else {
            return;
        };
        for dip in &state.config.dips {
            let slots = self.by_dip.entry(dip.addr).or_default();
            if !slots.contains(&slot) {
                slots.push(slot);
            }
        }
    }

    /// Forgets that the VIP entry in `slot` is served by its DIPs.
    fn unindex_dips(&mut self, slot: usize) {
        let Some(state) = &self.vips[slot] else {
            return;
        };
        for dip in &state.config.dips {
            if let Some(slots) = self.by_dip.get_mut(&dip.addr) {
                slots.retain(|&s| s != slot);
                if slots.is_empty() {
                    self.by_dip.remove(&dip.addr);
                }
            }
        }
    }

    /// An empty VIP slot (not one just emptied: see [`Mux::set_vip`]).
    fn free_slot(&mut self) -> usize {
        match self.vips.iter().position(Option::is_none) {
            Some(s) => s,
            None => {
                self.vips.push(None);
                self.vips.len() - 1
            }
        }
    }

    pub fn remove_vip(&mut self, key: &VipKey) {
        if let Some(slot) = self.index.remove(key) {
            self.unindex_dips(slot);
            self.vips[slot] = None;
            self.generation += 1;
            self.forget_address(key.vip);
        }
    }

    /// Sends the replies to a SNAT range to the DIP that holds it. A VIP with SNAT
    /// ranges is announced like any other (see [`Mux::live_vips`]).
    pub fn set_snat(&mut self, key: SnatKey, target: SnatTarget) {
        match self.snat.insert(key, target) {
            Some(old) if old == target => return,
            Some(_) => {}
            None => *self.addresses.entry(key.vip).or_default() += 1,
        }
        self.generation += 1;
    }

    pub fn remove_snat(&mut self, key: &SnatKey) {
        if self.snat.remove(key).is_some() {
            self.generation += 1;
            self.forget_address(key.vip);
        }
    }

    /// One entry or range fewer for `vip`.
    fn forget_address(&mut self, vip: Ipv4Addr) {
        if let Some(n) = self.addresses.get_mut(&vip) {
            *n -= 1;
            if *n == 0 {
                self.addresses.remove(&vip);
            }
        }
    }

    /// The SNAT ranges, ordered.
    pub fn snat(&self) -> Vec<(SnatKey, SnatTarget)> {
        let mut v: Vec<_> = self.snat.iter().map(|(k, t)| (*k, *t)).collect();
        v.sort_by_key(|(k, _)| *k);
        v
    }

    /// Moves on with every change to the VIP entries or their DIPs' health: what the
    /// node announces need only be worked out again when it has.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The addresses of the VIP entries that have a healthy DIP, and of the VIPs with
    /// SNAT ranges (what a Mux announces; an address may come more than once).
    pub fn live_vips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.vips
            .iter()
            .flatten()
            .filter(|s| s.members.iter().flatten().any(|m| m.healthy))
            .map(|s| s.config.key.vip)
            .chain(self.snat.keys().map(|k| k.vip))
    }

    /// Marks a DIP of every VIP entry healthy or not (a health probe's verdict). Returns
    /// whether anything changed.
    pub fn set_dip_health(&mut self, dip: Ipv4Addr, healthy: bool) -> bool {
        let mut changed = false;
        let slots = self.by_dip.get(&dip).map_or(&[][..], Vec::as_slice);
        for &slot in slots {
            let Some(state) = self.vips[slot].as_mut() else {
                continue;
            };
            let mut touched = false;
            for m in state.members.iter_mut().flatten() {
                if m.dip.addr == dip && m.healthy != healthy {
                    m.healthy = healthy;
                    touched = true;
                }
            }
            if touched {
                state.rebuild();
                changed = true;
            }
        }
        if changed {
            self.generation += 1;
        }
        changed
    }

    /// A VIP entry's configuration.
    pub fn vip(&self, key: &VipKey) -> Option<&VipConfig> {
        let slot = *self.index.get(key)?;
        self.vips.get(slot)?.as_ref().map(|s| &s.config)
    }

    /// Whether any VIP entry or SNAT range has this address.
    pub fn has_vip(&self, addr: Ipv4Addr) -> bool {
        self.addresses.contains_key(&addr)
    }

    /// The VIP entries, ordered by key, with the health of each DIP (in the entry's
    /// order).
    pub fn vips(&self) -> Vec<(&VipConfig, Vec<bool>)> {
        let mut v: Vec<_> = self
            .vips
            .iter()
            .flatten()
            .map(|s| {
                let health = s
                    .positions
                    .iter()
                    .map(|&p| s.member(p).is_some_and(|m| m.healthy))
                    .collect();
                (&s.config, health)
            })
            .collect();
        v.sort_by_key(|(c, _)| c.key);
        v
    }

    /// Takes an IPv4 packet for a VIP and writes the VXLAN-encapsulated IPv4 packet to
    /// `out` (which needs [`ENCAP_LEN`] more bytes than the packet).
    pub fn encapsulate(
        &mut self,
        now: Duration,
        packet: &[u8],
        out: &mut [u8],
    ) -> Result<Encapsulated, MuxDrop> {
        let layout = Ipv4Layout::parse(packet).map_err(|_| {
            self.counters.malformed += 1;
            MuxDrop::Malformed
        })?;
        let key = self.flow_key(&layout, packet)?;
        let total = encapsulated_len(&layout, out.len())?;
        out[ENCAP_LEN..total].copy_from_slice(&packet[..layout.total_len]);
        self.encapsulate_key(now, &key, &mut out[..total])
    }

    /// [`Mux::encapsulate`] in place, for a packet the caller parsed (`layout`): `buf`
    /// holds [`ENCAP_LEN`] bytes of room and then the packet, and the encapsulated
    /// packet is written over them, with no copy of the packet.
    pub fn encapsulate_in_place(
        &mut self,
        now: Duration,
        layout: &Ipv4Layout,
        buf: &mut [u8],
    ) -> Result<Encapsulated, MuxDrop> {
        let total = encapsulated_len(layout, buf.len())?;
        let key = self.flow_key(layout, &buf[ENCAP_LEN..total])?;
        self.encapsulate_key(now, &key, &mut buf[..total])
    }

    /// Where a reply to a SNAT range goes (TCP and UDP have them): to the DIP that
    /// holds the range, stateless.
    #[inline]
    fn snat_target(&self, key: &FlowKey) -> Option<SnatTarget> {
        if self.snat.is_empty() || !matches!(key.proto, proto::TCP | proto::UDP) {
            return None;
        }
        self.snat.get(&SnatKey::of(key.dst, key.dst_port)).copied()
    }

    #[inline(always)]
    fn flow_key(&mut self, layout: &Ipv4Layout, packet: &[u8]) -> Result<FlowKey, MuxDrop> {
        layout.flow_key(packet).map_err(|e| match e {
            strata_wire::Error::Fragment => {
                self.counters.fragments += 1;
                MuxDrop::Fragment
            }
            _ => {
                self.counters.malformed += 1;
                MuxDrop::Malformed
            }
        })
    }

    /// Chooses the flow's DIP and writes the headers into `buf`, the packet in it after
    /// [`ENCAP_LEN`] bytes.
    fn encapsulate_key(
        &mut self,
        now: Duration,
        key: &FlowKey,
        buf: &mut [u8],
    ) -> Result<Encapsulated, MuxDrop> {
        let hash = flow_hash(
            Distribution::FiveTuple,
            key.proto,
            key.src,
            key.dst,
            key.src_port,
            key.dst_port,
        );
        // SNAT ranges and load-balanced ports of a VIP never overlap (the SLB manager
        // hands out no frontend port), so a reply found here is no VIP entry's.
        if let Some(target) = self.snat_target(key) {
            self.write_outer(buf, hash, target.host_pa, target.vni, target.mac);
            self.counters.snat_returned += 1;
            return Ok(Encapsulated {
                len: buf.len(),
                dip: target.dip,
                host_pa: target.host_pa,
            });
        }
        let (vip_slot, position) = self.choose(now, key, hash)?;
        let Some(state) = self.vips[vip_slot].as_ref() else {
            return Err(MuxDrop::NoVip);
        };
        let Some(Member { dip, .. }) = state.member(position) else {
            return Err(MuxDrop::NoHealthyDip);
        };
        let (addr, host_pa, mac, vni) = (dip.addr, dip.host_pa, dip.mac, state.config.vni);
        self.write_outer(buf, hash, host_pa, vni, mac);
        Ok(Encapsulated {
            len: buf.len(),
            dip: addr,
            host_pa,
        })
    }

    /// Writes the headers, VXLAN to `host_pa` and the inner Ethernet to `mac`, in front
    /// of the packet in `buf`.
    fn write_outer(
        &mut self,
        buf: &mut [u8],
        hash: u32,
        host_pa: Ipv4Addr,
        vni: Vni,
        mac: EthernetAddress,
    ) {
        let inner_len = buf.len() - ENCAP_LEN;
        self.ident = self.ident.wrapping_add(1);
        let outer = vxlan::Outer {
            src: self.config.pa,
            dst: host_pa,
            ident: self.ident,
            entropy: hash,
            vni,
        };
        write_encap(
            &mut buf[..ENCAP_LEN],
            &outer,
            self.config.mac,
            mac,
            inner_len,
        );
        self.counters.encapsulated += 1;
    }

    /// The VIP slot and DIP index for a flow: from the flow table if its DIP is still
    /// healthy, else from Maglev (and remembered).
    #[inline]
    fn choose(&mut self, now: Duration, key: &FlowKey, hash: u32) -> Result<(usize, u16), MuxDrop> {
        if let Some(value) = self.flows.get(now, key, hash) {
            let (slot, dip) = unpack(value);
            if let Some(Some(state)) = self.vips.get(slot) {
                let k = state.config.key;
                if k.vip == key.dst
                    && k.proto == key.proto
                    && k.port == vip_port(key)
                    && state.member(dip).is_some_and(|m| m.healthy)
                {
                    return Ok((slot, dip));
                }
                self.counters.rehashed += 1;
            }
        }
        let vip_key = VipKey {
            vip: key.dst,
            proto: key.proto,
            port: vip_port(key),
        };
        let found = self
            .index
            .get(&vip_key)
            .and_then(|&slot| Some((slot, self.vips.get(slot)?.as_ref()?)));
        let Some((slot, state)) = found else {
            self.counters.no_vip += 1;
            return Err(MuxDrop::NoVip);
        };
        let backend_hash = match state.config.distribution {
            Distribution::FiveTuple => hash,
            d => flow_hash(d, key.proto, key.src, key.dst, key.src_port, key.dst_port),
        };
        let Some(backend) = state.table.lookup(backend_hash) else {
            self.counters.no_healthy_dip += 1;
            return Err(MuxDrop::NoHealthyDip);
        };
        let dip = state.active[backend];
        self.flows.update(now, *key, hash, pack(slot, dip));
        Ok((slot, dip))
    }
}

/// The port of the VIP entry a flow belongs to: ICMP has none, its entries use 0.
fn vip_port(key: &FlowKey) -> u16 {
    if key.proto == proto::ICMP {
        0
    } else {
        key.dst_port
    }
}

/// The length of a packet of `layout` encapsulated, if a buffer of `room` bytes holds it
/// and it fits an IPv4 packet.
fn encapsulated_len(layout: &Ipv4Layout, room: usize) -> Result<usize, MuxDrop> {
    let total = ENCAP_LEN + layout.total_len;
    if room < total || total > usize::from(u16::MAX) {
        return Err(MuxDrop::BufferTooSmall);
    }
    Ok(total)
}

/// Writes the outer IPv4, UDP, VXLAN and inner Ethernet headers for an inner packet of
/// `inner_len` bytes into `h` ([`ENCAP_LEN`] bytes).
fn write_encap(
    h: &mut [u8],
    outer: &vxlan::Outer,
    inner_src: EthernetAddress,
    inner_dst: EthernetAddress,
    inner_len: usize,
) {
    let (headers, eth) = h.split_at_mut(vxlan::IPV4_UDP_LEN);
    // The caller checked that the lengths fit.
    let _ = outer.emit(eth.len() + inner_len, headers);
    eth[0..6].copy_from_slice(inner_dst.as_bytes());
    eth[6..12].copy_from_slice(inner_src.as_bytes());
    eth[12..14].copy_from_slice(&strata_wire::ethernet::ETHERTYPE_IPV4.to_be_bytes());
}

#[cfg(test)]
mod tests;
