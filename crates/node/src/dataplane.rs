//! The dataplane of a node: its links → the router, which parses each frame once →
//! the roles' hooks (the Mux, the host agent's VXLAN intake, NAT) → the vSwitch and its
//! VFP ports → the links again. What is for the node itself waits for the host stack
//! ([`Dataplane::take_local`]); what the host stack sends comes in by
//! [`Dataplane::send`]. No socket, no app, no clock: frames in, frames out.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::Duration;

use strata_nat::Nat;
use strata_router::{IfIndex, Interface, Router};
use strata_slb::mux::Mux;
use strata_vswitch::switch::{SwitchPort, VSwitch};

use crate::roles::{RoleHooks, Taken};
use crate::{LinkKind, NodeConfig, NodeError};

/// A host's vSwitch and how its ports map to the node's links and NICs.
pub(crate) struct HostSwitch {
    pub(crate) vswitch: VSwitch,
    /// Per router interface: its switch port, if the NIC is behind the switch.
    internal: Vec<Option<SwitchPort>>,
    /// Per switch port: the node link it leaves by (None for internal ports).
    port_link: Vec<Option<usize>>,
    pub(crate) provider_addrs: Vec<Ipv4Addr>,
}

/// A node's dataplane (see the module's text).
pub struct Dataplane {
    pub(crate) router: Router,
    pub(crate) nat: Option<(IfIndex, Nat)>,
    pub(crate) mux: Option<Mux>,
    pub(crate) switch: Option<HostSwitch>,
    links: Vec<LinkKind>,
    /// Per router interface: the link its frames leave by (None when behind the switch).
    nic_link: Vec<Option<usize>>,
    /// Frames the hooks took, to pass on once the router is done with the packet.
    taken: VecDeque<Taken>,
    /// Frames for the links.
    out: VecDeque<(usize, Vec<u8>)>,
    /// IPv4 packets for the node's own stack.
    local: VecDeque<Vec<u8>>,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("links", &self.links)
            .finish_non_exhaustive()
    }
}

impl Dataplane {
    /// The router, its roles and the vSwitch of `config`, which gives up its NAT, Mux
    /// and vSwitch sections to it.
    pub(crate) fn new(config: &mut NodeConfig) -> Result<Dataplane, NodeError> {
        let mut router = Router::new(strata_router::Config {
            forwarding: config.forwarding,
            ..strata_router::Config::default()
        });
        for nic in &config.nics {
            router.add_interface(Interface {
                mac: nic.mac,
                addr: nic.addr,
                mtu: nic.mtu,
            });
        }
        for (prefix, gateway) in &config.routes {
            router
                .add_route(*prefix, *gateway)
                .map_err(|source| NodeError::Route {
                    node: config.name.clone(),
                    source,
                })?;
        }
        for (prefix, kind) in &config.discards {
            router.add_discard(*prefix, *kind);
        }
        let nat = match config.nat.take() {
            Some(role) if role.external_nic < config.nics.len() => {
                Some((IfIndex(role.external_nic), Nat::new(role.config)))
            }
            Some(role) => {
                return Err(NodeError::NatNic {
                    node: config.name.clone(),
                    nic: role.external_nic,
                });
            }
            None => None,
        };

        // Links: every NIC not behind the switch, then the switch's uplink and VM ports.
        let mut links = Vec::new();
        let mut nic_link = Vec::new();
        for (i, nic) in config.nics.iter().enumerate() {
            if nic.behind_switch && config.vswitch.is_some() {
                nic_link.push(None);
            } else {
                nic_link.push(Some(links.len()));
                links.push(LinkKind::Nic(i));
            }
        }
        let switch = config
            .vswitch
            .take()
            .map(|sw| -> Result<HostSwitch, NodeError> {
                let mut vswitch = VSwitch::new(sw.name);
                let mut port_link = Vec::new();
                vswitch.add_uplink("uplink");
                port_link.push(Some(links.len()));
                links.push(LinkKind::Uplink);
                let mut internal = vec![None; config.nics.len()];
                for (i, nic) in config
                    .nics
                    .iter()
                    .enumerate()
                    .filter(|(_, n)| n.behind_switch)
                {
                    internal[i] = Some(vswitch.add_internal(nic.name.clone(), nic.mac));
                    port_link.push(None);
                }
                for vm in sw.vms {
                    let port = vswitch.add_vm(
                        vm.name.clone(),
                        vm.mac,
                        strata_vswitch::vfp::DEFAULT_FLOW_LIMIT,
                    );
                    vswitch.set_addresses(port, vm.addresses);
                    if !vswitch.set_vlan(port, vm.vlan) {
                        return Err(NodeError::Vlan {
                            node: config.name.clone(),
                            port: vm.name,
                            vlan: vm.vlan.unwrap_or(0),
                        });
                    }
                    if let Some(vfp) = vswitch.vfp_mut(port) {
                        for layer in vm.layers {
                            vfp.set_layer(layer);
                        }
                    }
                    port_link.push(Some(links.len()));
                    links.push(LinkKind::VmPort(vm.name));
                }
                Ok(HostSwitch {
                    vswitch,
                    internal,
                    port_link,
                    provider_addrs: sw.provider_addrs,
                })
            });
        let switch = switch.transpose()?;
        let mux = config.mux.take().map(|role| {
            let mut mux = Mux::new(role.config);
            for vip in role.vips {
                mux.set_vip(vip);
            }
            mux
        });
        Ok(Dataplane {
            router,
            nat,
            mux,
            switch,
            links,
            nic_link,
            taken: VecDeque::new(),
            out: VecDeque::new(),
            local: VecDeque::new(),
        })
    }

    /// The node's links, in the order [`Dataplane::receive`] and
    /// [`Dataplane::poll_transmit`] number them.
    pub fn links(&self) -> &[LinkKind] {
        &self.links
    }

    /// A frame arrived on link `link` (see [`Dataplane::links`]).
    pub fn receive(&mut self, now: Duration, link: usize, frame: Vec<u8>) {
        match self.links.get(link) {
            Some(LinkKind::Nic(nic)) => self.router_receive(now, IfIndex(*nic), frame),
            Some(LinkKind::Uplink | LinkKind::VmPort(_)) => {
                if let Some(sw) = self.switch.as_mut()
                    && let Some(port) = sw.port_link.iter().position(|l| *l == Some(link))
                {
                    sw.vswitch.receive(now, SwitchPort(port), frame);
                }
            }
            None => {}
        }
        self.pump(now);
    }

    fn router_receive(&mut self, now: Duration, iface: IfIndex, frame: Vec<u8>) {
        let mut hooks = RoleHooks {
            nat: self.nat.as_mut(),
            mux: self.mux.as_mut(),
            provider_addrs: self.switch.as_ref().map(|s| s.provider_addrs.as_slice()),
            taken: &mut self.taken,
        };
        if let Some(delivered) = self.router.receive(now, iface, frame, &mut hooks) {
            self.local.push_back(delivered.packet);
        }
    }

    /// Sends an IPv4 packet of the node's own stack; [`Dataplane::flush`] moves on what
    /// follows.
    pub(crate) fn send(&mut self, now: Duration, packet: &[u8]) {
        let mut hooks = RoleHooks {
            nat: self.nat.as_mut(),
            mux: self.mux.as_mut(),
            provider_addrs: self.switch.as_ref().map(|s| s.provider_addrs.as_slice()),
            taken: &mut self.taken,
        };
        self.router.send(now, packet, &mut hooks);
    }

    fn router_send_frame(&mut self, now: Duration, frame: Vec<u8>) {
        let mut hooks = RoleHooks {
            nat: self.nat.as_mut(),
            mux: self.mux.as_mut(),
            provider_addrs: self.switch.as_ref().map(|s| s.provider_addrs.as_slice()),
            taken: &mut self.taken,
        };
        self.router.send_frame(now, frame, &mut hooks);
    }

    /// Moves frames between the router, the roles, the vSwitch and the links until none
    /// is left in between.
    fn pump(&mut self, now: Duration) {
        loop {
            let mut moved = false;
            while let Some(taken) = self.taken.pop_front() {
                moved = true;
                match taken {
                    Taken::Send(frame) => self.router_send_frame(now, frame),
                    Taken::Decap(mut frame) => {
                        if let Some(sw) = self.switch.as_mut() {
                            // VFP reads whole frames: the outer Ethernet header stays,
                            // its addresses cleared as no wire's.
                            frame[..12].fill(0);
                            sw.vswitch.receive_encapsulated(now, frame);
                        }
                    }
                }
            }
            while let Some((iface, frame)) = self.router.poll_transmit() {
                moved = true;
                let internal = self
                    .switch
                    .as_ref()
                    .and_then(|s| s.internal.get(iface.0).copied().flatten());
                match (internal, self.nic_link.get(iface.0).copied().flatten()) {
                    (Some(port), _) => {
                        if let Some(sw) = self.switch.as_mut() {
                            sw.vswitch.receive(now, port, frame);
                        }
                    }
                    (None, Some(link)) => self.out.push_back((link, frame)),
                    (None, None) => {}
                }
            }
            while let Some((port, frame)) =
                self.switch.as_mut().and_then(|s| s.vswitch.poll_transmit())
            {
                moved = true;
                let Some(sw) = self.switch.as_ref() else {
                    break;
                };
                match sw.port_link.get(port.0).copied().flatten() {
                    Some(link) => self.out.push_back((link, frame)),
                    None => {
                        if let Some(iface) = sw.internal.iter().position(|p| *p == Some(port)) {
                            self.router_receive(now, IfIndex(iface), frame);
                        }
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }
    /// Moves on what [`Dataplane::send`] left between the router, the roles, the vSwitch
    /// and the links.
    pub(crate) fn flush(&mut self, now: Duration) {
        self.pump(now);
    }

    /// Runs the dataplane's timers (ARP, NAT expiry) and moves what they release.
    pub(crate) fn poll(&mut self, now: Duration) {
        {
            let mut hooks = RoleHooks {
                nat: self.nat.as_mut(),
                mux: self.mux.as_mut(),
                provider_addrs: self.switch.as_ref().map(|s| s.provider_addrs.as_slice()),
                taken: &mut self.taken,
            };
            self.router.poll(now, &mut hooks);
        }
        if let Some((_, nat)) = self.nat.as_mut() {
            nat.poll(now);
        }
        self.pump(now);
    }

    /// The next frame to put on the wire, and the link it leaves by.
    pub fn poll_transmit(&mut self) -> Option<(usize, Vec<u8>)> {
        self.out.pop_front()
    }

    /// The next packet for the node's own stack.
    pub(crate) fn take_local(&mut self) -> Option<Vec<u8>> {
        self.local.pop_front()
    }

    /// When the dataplane's timers next need [`Dataplane::poll`].
    pub(crate) fn poll_at(&self) -> Option<Duration> {
        [
            self.router.poll_at(),
            self.nat.as_ref().and_then(|(_, n)| n.poll_at()),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}
