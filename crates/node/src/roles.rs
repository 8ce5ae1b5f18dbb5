//! The roles a node's router carries as hooks: NAT (NATVM), the Mux (MuxVM), and the
//! host agent's VXLAN intake (a Hyper-V host).

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

use strata_nat::Nat;
use strata_router::{Hooks, IfIndex, Verdict};
use strata_slb::mux::{ENCAP_LEN, Mux};
use strata_wire::ETHERNET_HEADER_LEN;
use strata_wire::flow::{Ipv4Layout, proto};

/// Frames a hook took, for the node to pass on after the router is done. Each is the
/// frame the packet arrived in, reused: the IPv4 packet sits at [`ETHERNET_HEADER_LEN`].
#[derive(Debug)]
pub(crate) enum Taken {
    /// An IPv4 packet to route (the Mux's encapsulated output).
    Send(Vec<u8>),
    /// A VXLAN packet for this host's provider address: to the vSwitch.
    Decap(Vec<u8>),
}

/// The node's hook adapter: every role, in order Mux, host agent, NAT.
pub(crate) struct RoleHooks<'a> {
    pub(crate) nat: Option<&'a mut (IfIndex, Nat)>,
    pub(crate) mux: Option<&'a mut Mux>,
    /// The host's provider addresses, if it has a vSwitch to decapsulate into.
    pub(crate) provider_addrs: Option<&'a [Ipv4Addr]>,
    pub(crate) taken: &'a mut VecDeque<Taken>,
}

impl Hooks for RoleHooks<'_> {
    fn pre_routing(
        &mut self,
        now: Duration,
        in_if: IfIndex,
        layout: &Ipv4Layout,
        frame: &mut Vec<u8>,
    ) -> Verdict {
        if let Some(mux) = self.mux.as_deref_mut()
            && mux.has_vip(layout.dst)
        {
            // Room for the outer headers between the Ethernet header and the packet; a
            // frame from the driver's pool has the capacity, so nothing is allocated.
            let inner = ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + layout.total_len;
            frame.resize(inner.end + ENCAP_LEN, 0);
            frame.copy_within(inner, ETHERNET_HEADER_LEN + ENCAP_LEN);
            return match mux.encapsulate_in_place(now, layout, &mut frame[ETHERNET_HEADER_LEN..]) {
                Ok(_) => {
                    self.taken.push_back(Taken::Send(std::mem::take(frame)));
                    Verdict::Consumed
                }
                // The Mux counts why.
                Err(_) => Verdict::Drop,
            };
        }
        if let Some(pas) = self.provider_addrs
            && pas.contains(&layout.dst)
            && is_vxlan(layout, &frame[ETHERNET_HEADER_LEN..])
        {
            self.taken.push_back(Taken::Decap(std::mem::take(frame)));
            return Verdict::Consumed;
        }
        match &mut self.nat {
            Some((external, nat)) if *external == in_if => {
                nat_verdict(nat.inbound_parsed(now, layout, &mut frame[ETHERNET_HEADER_LEN..]))
            }
            _ => Verdict::Accept,
        }
    }

    fn post_routing(
        &mut self,
        now: Duration,
        in_if: Option<IfIndex>,
        out_if: IfIndex,
        layout: &Ipv4Layout,
        packet: &mut [u8],
    ) -> Verdict {
        match &mut self.nat {
            Some((external, nat)) if *external == out_if && in_if != Some(*external) => {
                nat_verdict(nat.outbound_parsed(now, layout, packet))
            }
            _ => Verdict::Accept,
        }
    }
}

fn is_vxlan(layout: &Ipv4Layout, packet: &[u8]) -> bool {
    layout.proto == proto::UDP
        && !layout.is_fragment()
        && layout
            .flow_key(packet)
            .is_ok_and(|k| k.dst_port == strata_wire::vxlan::UDP_PORT)
}

fn nat_verdict(action: strata_nat::Action) -> Verdict {
    match action {
        strata_nat::Action::Dropped(_) => Verdict::Drop,
        _ => Verdict::Accept,
    }
}
