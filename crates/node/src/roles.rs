//! The roles a node's router carries as hooks: NAT (NATVM), the Mux (MuxVM), and the
//! host agent's VXLAN intake (a Hyper-V host).

use std::net::Ipv4Addr;
use std::time::Duration;

use strata_nat::Nat;
use strata_router::{Hooks, IfIndex, Verdict};
use strata_slb::mux::{ENCAP_LEN, Mux};
use strata_wire::flow::{Ipv4Layout, proto};

/// Packets a hook took, for the node to pass on after the router is done.
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
    pub(crate) taken: &'a mut Vec<Taken>,
}

impl Hooks for RoleHooks<'_> {
    fn pre_routing(&mut self, now: Duration, in_if: IfIndex, packet: &mut [u8]) -> Verdict {
        let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
        if let Some(mux) = self.mux.as_deref_mut()
            && mux.has_vip(dst)
        {
            let mut out = vec![0u8; packet.len() + ENCAP_LEN];
            return match mux.encapsulate(now, packet, &mut out) {
                Ok(e) => {
                    out.truncate(e.len);
                    self.taken.push(Taken::Send(out));
                    Verdict::Consumed
                }
                // The Mux counts why.
                Err(_) => Verdict::Drop,
            };
        }
        if let Some(pas) = self.provider_addrs
            && pas.contains(&dst)
            && is_vxlan(packet)
        {
            self.taken.push(Taken::Decap(packet.to_vec()));
            return Verdict::Consumed;
        }
        match &mut self.nat {
            Some((external, nat)) if *external == in_if => nat_verdict(nat.inbound(now, packet)),
            _ => Verdict::Accept,
        }
    }

    fn post_routing(
        &mut self,
        now: Duration,
        in_if: Option<IfIndex>,
        out_if: IfIndex,
        packet: &mut [u8],
    ) -> Verdict {
        match &mut self.nat {
            Some((external, nat)) if *external == out_if && in_if != Some(*external) => {
                nat_verdict(nat.outbound(now, packet))
            }
            _ => Verdict::Accept,
        }
    }
}

fn is_vxlan(packet: &[u8]) -> bool {
    Ipv4Layout::parse(packet).is_ok_and(|l| {
        l.proto == proto::UDP
            && !l.is_fragment()
            && l.flow_key(packet)
                .is_ok_and(|k| k.dst_port == strata_wire::vxlan::UDP_PORT)
    })
}

fn nat_verdict(action: strata_nat::Action) -> Verdict {
    match action {
        strata_nat::Action::Dropped(_) => Verdict::Drop,
        _ => Verdict::Accept,
    }
}
