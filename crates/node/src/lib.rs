//! A node of the network: a VM, a router VM or a host.
//!
//! ```text
//!            ┌──────────────────── dataplane ─────────────────────┐
//!  link ─ NIC 0 ─┐                                                │   host stack
//!  link ─ NIC 1 ─┼─ router (parses once; ARP, FIB) ── local ──────┼─► smoltcp ─ apps
//!                │   └─ hooks: Mux, VXLAN intake, NAT   ◄─ send ──┼── (HTTP, DNS, BGP,
//!  link ─ uplink ─ vSwitch ─ host vNIC (a NIC behind the switch)  │    probes, agent)
//!  link ─ VM port ─┘   (VFP on every VM port)                     │
//!            └────────────────────────────────────────────────────┘
//! ```
//!
//! Two halves. The [`Dataplane`] takes frames from the fabric ([`Node::receive`], or a
//! batch at a time with [`Node::receive_batch`]): the router answers ARP, forwards what
//! is not for the node (if it forwards) with the roles as hooks on it (NAT, the Mux, and
//! on a Hyper-V host the intake of VXLAN for its provider address into its vSwitch),
//! and sets aside the node's own packets. The host stack, a smoltcp interface with the
//! apps' sockets, takes those; what it sends goes back through the router, so a node
//! has one routing table and one ARP cache. The apps reach into the dataplane only to
//! configure it: the BGP speaker installs routes, the southbound agent programs the Mux
//! and the VFP. A host's vSwitch has its own links: the uplink, and one link per VM
//! port.
//!
//! Sans-IO: the owner passes `now` (time since the lab started) to every call, takes
//! frames from [`Node::poll_transmit`] and wakes the node at [`Node::poll_at`].

pub mod apps;
mod control;
mod dataplane;
mod device;
mod roles;
mod snat;

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use smoltcp::iface::{Config as IfaceConfig, Interface as Iface, PollResult, SocketSet};
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpCidr};
use strata_nat::Nat;
use strata_router::Router;
use strata_slb::mux::{Mux, MuxConfig, VipConfig};
use strata_vswitch::switch::VSwitch;
use strata_vswitch::vfp::Layer;
use strata_wire::EthernetAddress;

pub use dataplane::Dataplane;

use apps::bgp::{BgpConfig, NeighborStatus, Speaker};
use apps::dns::{Lookup, LookupReport};
use apps::http::{self, GetReport, Page};
use apps::ping::{Ping, PingReport};
use apps::probe::{ProbeConfig, Prober};
use device::QueueDevice;

pub use strata_bgp as bgp_codec;
pub use strata_bgp::session as bgp;
pub use strata_nat as nat;
pub use strata_router as router;
pub use strata_slb as slb;
pub use strata_vswitch as vswitch;

/// A NIC of a node.
#[derive(Debug, Clone)]
pub struct NicConfig {
    pub name: String,
    pub mac: EthernetAddress,
    /// The NIC's address and prefix length.
    pub addr: Ipv4Net,
    pub mtu: usize,
    /// A host vNIC: a port of the node's own vSwitch rather than a link of its own.
    pub behind_switch: bool,
}

/// A Hyper-V host's virtual switch.
#[derive(Debug, Clone)]
pub struct VSwitchConfig {
    pub name: String,
    /// The VMs' ports.
    pub vms: Vec<VmPortConfig>,
    /// Provider addresses VXLAN arrives at (they are addresses of the node's NICs).
    pub provider_addrs: Vec<Ipv4Addr>,
}

/// A VM's port on a host's vSwitch.
#[derive(Debug, Clone)]
pub struct VmPortConfig {
    pub name: String,
    /// The VM NIC's MAC.
    pub mac: EthernetAddress,
    /// An access port of this VLAN (the uplink carries its frames tagged), or untagged.
    pub vlan: Option<u16>,
    /// The VM NIC's IPv4 addresses, as the VM was given them (none: not known): ARP for
    /// them is steered to the port, other ARP kept from it (see
    /// [`strata_vswitch::VSwitch::set_addresses`]).
    pub addresses: Vec<std::net::Ipv4Addr>,
    /// The VFP layers on the port.
    pub layers: Vec<Layer>,
}

/// The Mux role.
#[derive(Debug, Clone)]
pub struct MuxRole {
    pub config: MuxConfig,
    pub vips: Vec<VipConfig>,
}

/// What a link of a node is, for whoever wires it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkKind {
    /// A NIC of the router (index into the node's NICs).
    Nic(usize),
    /// The uplink of the node's vSwitch.
    Uplink,
    /// A VM port of the node's vSwitch (the VM's name).
    VmPort(String),
}

/// A server a node runs.
#[derive(Debug, Clone)]
pub enum ServiceConfig {
    Http {
        port: u16,
        pages: Vec<Page>,
        backlog: usize,
    },
    Dns {
        port: u16,
        records: Vec<(String, Ipv4Addr)>,
    },
}

/// The NAT role: which NIC faces outside, and the NAT's configuration.
#[derive(Debug, Clone)]
pub struct NatRole {
    pub external_nic: usize,
    pub config: strata_nat::Config,
}

/// The node's part in the southbound protocol.
#[derive(Debug, Clone)]
pub enum ControlConfig {
    /// An agent (a Mux, a Hyper-V host): connects to the controller at `controller`
    /// with its credential and applies what it is sent.
    Agent {
        controller: std::net::SocketAddrV4,
        token: String,
        timers: strata_southbound::Timers,
    },
    /// The controller's listener (NCVM): node tokens derive from `secret`.
    Server {
        port: u16,
        secret: String,
        timers: strata_southbound::Timers,
        /// How many agents can be connected at once.
        backlog: usize,
    },
}

/// Everything that makes a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub nics: Vec<NicConfig>,
    /// Static routes: prefix via gateway (a default route is `0.0.0.0/0`).
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
    /// Static routes that discard: blackhole or reject.
    pub discards: Vec<(Ipv4Net, router::RouteKind)>,
    pub forwarding: bool,
    pub nat: Option<NatRole>,
    pub dns_server: Option<Ipv4Addr>,
    pub services: Vec<ServiceConfig>,
    pub vswitch: Option<VSwitchConfig>,
    pub mux: Option<MuxRole>,
    /// Health probes the node sends (the SLB host agent's, on a Hyper-V host).
    pub probes: Vec<ProbeConfig>,
    /// A BGP speaker.
    pub bgp: Option<BgpConfig>,
    /// The southbound agent or the controller's listener.
    pub control: Option<ControlConfig>,
    /// Seeds the stack's initial sequence numbers and ports; the same seed gives the same
    /// run.
    pub seed: u64,
}

impl NodeConfig {
    /// A node of `nics` and nothing else: no route, no role, no service, not
    /// forwarding, seed 0. Fill in the rest with `..NodeConfig::new(name, nics)`.
    pub fn new(name: impl Into<String>, nics: Vec<NicConfig>) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            nics,
            routes: Vec::new(),
            discards: Vec::new(),
            forwarding: false,
            nat: None,
            dns_server: None,
            services: Vec::new(),
            vswitch: None,
            mux: None,
            probes: Vec::new(),
            bgp: None,
            control: None,
            seed: 0,
        }
    }
}

/// Why a node could not be built.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node {node}: {source}")]
    Route {
        node: String,
        source: strata_router::ConfigError,
    },
    #[error("node {node}: has no NIC")]
    NoNic { node: String },
    #[error("node {node}: NAT external NIC {nic} does not exist")]
    NatNic { node: String, nic: usize },
    #[error("node {node}: port {port}: VLAN {vlan} is not 1 to 4094")]
    Vlan {
        node: String,
        port: String,
        vlan: u16,
    },
}

/// A client task a scenario can start on a node.
#[derive(Debug, Clone)]
pub enum TaskSpec {
    Ping {
        target: Ipv4Addr,
        count: u16,
        interval: Duration,
        timeout: Duration,
    },
    HttpGet {
        url: String,
        timeout: Duration,
    },
    Resolve {
        name: String,
        timeout: Duration,
    },
    /// One UDP datagram, and an answer awaited.
    Udp {
        target: std::net::SocketAddrV4,
        timeout: Duration,
    },
}

/// What a finished task found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskReport {
    Ping(PingReport),
    Http(GetReport),
    Resolve(LookupReport),
    Udp(apps::udp::UdpReport),
}

#[derive(Debug)]
enum Task {
    Ping(Ping),
    Http(http::Get),
    Resolve(Lookup),
    Udp(apps::udp::Datagram),
}

#[derive(Debug)]
enum Service {
    Http(http::Server),
    Dns(apps::dns::Server),
}

/// A handle on a started task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskId(usize);

/// Counters of the node's servers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    pub http_served: u64,
    pub http_bad_requests: u64,
    pub dns_answered: u64,
    pub dns_nxdomain: u64,
    pub dns_malformed: u64,
}

/// An emulated node.
pub struct Node {
    name: String,
    /// Links, router, roles and vSwitch.
    dataplane: Dataplane,
    probers: Vec<Prober>,
    bgp: Option<Speaker>,
    health_events: Vec<(Ipv4Addr, bool)>,
    agent: Option<apps::control::Client>,
    control_server: Option<apps::control::Server>,
    /// The agent owes the controller a report (a probe's verdict changed, a
    /// configuration was applied).
    report_due: bool,
    /// A host's outbound NAT bookkeeping: ranges held, demand, idle ranges.
    snat: snat::SnatAgent,
    /// The DIPs this host's VFP has been programmed for.
    programmed: Vec<Ipv4Addr>,
    /// What the speaker announces, and the Mux's generation it was worked out at.
    wanted: Option<(u64, std::collections::BTreeSet<Ipv4Net>)>,
    /// Sockets of finished clients, removed once closed.
    reaper: Vec<smoltcp::iface::SocketHandle>,
    iface: Iface,
    device: QueueDevice,
    sockets: SocketSet<'static>,
    services: Vec<Service>,
    tasks: Vec<Task>,
    dns_server: Option<Ipv4Addr>,
    /// The one DNS socket of the node's resolver.
    resolver: Option<smoltcp::iface::SocketHandle>,
    next_port: u16,
    next_ident: u16,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

fn instant(now: Duration) -> Instant {
    Instant::from_micros(now.as_micros() as i64)
}

/// First ephemeral port (IANA dynamic range).
const EPHEMERAL_START: u16 = 49152;

impl Node {
    pub fn new(mut config: NodeConfig, now: Duration) -> Result<Node, NodeError> {
        let first = config
            .nics
            .first()
            .ok_or_else(|| NodeError::NoNic {
                node: config.name.clone(),
            })?
            .addr;
        let dataplane = dataplane::Dataplane::new(&mut config)?;

        let mut device = QueueDevice {
            mtu: config.nics.iter().map(|n| n.mtu).min().unwrap_or(1500),
            ..QueueDevice::default()
        };
        let mut iface_config = IfaceConfig::new(HardwareAddress::Ip);
        iface_config.random_seed = config.seed;
        let mut iface = Iface::new(iface_config, &mut device, instant(now));
        iface.update_ip_addrs(|addrs| {
            for nic in &config.nics {
                // The address count is bounded by smoltcp's build configuration (8).
                let _ = addrs.push(IpCidr::new(nic.addr.addr().into(), nic.addr.prefix_len()));
            }
        });
        // The router decides where packets go; smoltcp only needs to believe that every
        // destination is reachable. With Medium::Ip the gateway named here is never used.
        let _ = iface.routes_mut().add_default_ipv4_route(first.addr());

        let mut sockets = SocketSet::new(vec![]);
        let resolver = config
            .dns_server
            .map(|s| apps::dns::resolver(&mut sockets, s));
        let services = config
            .services
            .into_iter()
            .map(|s| match s {
                ServiceConfig::Http {
                    port,
                    pages,
                    backlog,
                } => Service::Http(http::Server::new(&mut sockets, port, pages, backlog)),
                ServiceConfig::Dns { port, records } => {
                    Service::Dns(apps::dns::Server::new(&mut sockets, port, records))
                }
            })
            .collect();

        let (agent, control_server) = match config.control {
            Some(ControlConfig::Agent {
                controller,
                token,
                timers,
            }) => (
                Some(apps::control::Client::new(
                    &config.name,
                    &token,
                    controller,
                    timers,
                    now,
                )),
                None,
            ),
            Some(ControlConfig::Server {
                port,
                secret,
                timers,
                backlog,
            }) => (
                None,
                Some(apps::control::Server::new(
                    &mut sockets,
                    port,
                    secret,
                    timers,
                    backlog,
                )),
            ),
            None => (None, None),
        };
        Ok(Node {
            name: config.name,
            dataplane,
            probers: config
                .probes
                .into_iter()
                .map(|p| Prober::new(p, now))
                .collect(),
            bgp: config.bgp.map(|b| Speaker::new(b, &mut sockets)),
            health_events: Vec::new(),
            agent,
            control_server,
            report_due: false,
            snat: snat::SnatAgent::default(),
            programmed: Vec::new(),
            wanted: None,
            reaper: Vec::new(),
            iface,
            device,
            sockets,
            services,
            tasks: Vec::new(),
            resolver,
            dns_server: config.dns_server,
            next_port: EPHEMERAL_START + (config.seed % 1000) as u16,
            next_ident: 1 + (config.seed % 1000) as u16,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn router(&self) -> &Router {
        &self.dataplane.router
    }

    pub fn router_mut(&mut self) -> &mut Router {
        &mut self.dataplane.router
    }

    /// The node's links, in the order [`Node::receive`] and [`Node::poll_transmit`]
    /// number them.
    pub fn links(&self) -> &[LinkKind] {
        self.dataplane.links()
    }

    pub fn mux(&self) -> Option<&Mux> {
        self.dataplane.mux.as_ref()
    }

    pub fn mux_mut(&mut self) -> Option<&mut Mux> {
        self.dataplane.mux.as_mut()
    }

    pub fn vswitch(&self) -> Option<&VSwitch> {
        self.dataplane.switch.as_ref().map(|s| &s.vswitch)
    }

    /// The node's dataplane: links, router, roles, vSwitch.
    pub fn dataplane(&self) -> &Dataplane {
        &self.dataplane
    }

    /// The BGP speaker's neighbors and routes, if the node speaks BGP.
    pub fn bgp_status(&self) -> Option<Vec<NeighborStatus>> {
        self.bgp.as_ref().map(|b| b.status())
    }

    /// Restarts the node's BGP speaker abruptly (connections reset, no NOTIFICATION), as a
    /// crash and restart would.
    pub fn restart_bgp(&mut self, now: Duration) {
        if let Some(b) = self.bgp.as_mut() {
            b.restart(now, &mut self.sockets);
        }
    }

    /// Stops the node's BGP sessions with a Cease NOTIFICATION (a clean shutdown).
    pub fn stop_bgp(&mut self, now: Duration) {
        if let Some(b) = self.bgp.as_mut() {
            b.stop(now);
        }
    }

    /// DIP health changes the node's probes found since the last call, on a node without
    /// a southbound agent (one with an agent reports them to the controller).
    pub fn take_health_events(&mut self) -> Vec<(Ipv4Addr, bool)> {
        std::mem::take(&mut self.health_events)
    }

    /// Each probed DIP: address, healthy, probes sent, probes failed.
    pub fn probes(&self) -> Vec<(Ipv4Addr, bool, u64, u64)> {
        self.probers
            .iter()
            .map(|p| (p.dip(), p.is_up(), p.sent, p.failed))
            .collect()
    }

    /// Stops or starts the node's HTTP servers; false if it has none.
    pub fn set_http_enabled(&mut self, enabled: bool) -> bool {
        let mut any = false;
        for s in &mut self.services {
            if let Service::Http(h) = s {
                h.set_enabled(enabled, &mut self.sockets);
                any = true;
            }
        }
        any
    }

    pub fn nat(&self) -> Option<&Nat> {
        self.dataplane.nat.as_ref().map(|(_, n)| n)
    }

    pub fn service_counters(&self) -> ServiceCounters {
        let mut c = ServiceCounters::default();
        for s in &self.services {
            match s {
                Service::Http(h) => {
                    c.http_served += h.served;
                    c.http_bad_requests += h.bad_requests;
                }
                Service::Dns(d) => {
                    c.dns_answered += d.answered;
                    c.dns_nxdomain += d.nxdomain;
                    c.dns_malformed += d.malformed;
                }
            }
        }
        c
    }

    /// A frame arrived on link `link` (see [`Node::links`]).
    pub fn receive(&mut self, now: Duration, link: usize, frame: Vec<u8>) {
        self.dataplane.receive(now, link, frame);
        self.take_local();
    }

    /// Frames that arrived on link `link`, in order.
    pub fn receive_batch(
        &mut self,
        now: Duration,
        link: usize,
        frames: impl IntoIterator<Item = Vec<u8>>,
    ) {
        for frame in frames {
            self.dataplane.receive(now, link, frame);
        }
        self.take_local();
    }

    /// Hands the stack what the dataplane delivered to the node.
    fn take_local(&mut self) {
        while let Some(packet) = self.dataplane.take_local() {
            self.device.rx.push_back(packet);
        }
    }

    /// Runs everything due at `now`: timers, the stack, the apps.
    pub fn poll(&mut self, now: Duration) {
        let at = instant(now);
        self.dataplane.poll(now);
        self.take_local();
        // Each round lets the stack take in what arrived and send what the apps wrote;
        // stop when a round moves nothing. The bound only guards against a bug looping.
        for _ in 0..64 {
            let changed = self.iface.poll(at, &mut self.device, &mut self.sockets)
                == PollResult::SocketStateChanged;
            let mut progressed = false;
            for service in &mut self.services {
                progressed |= match service {
                    Service::Http(s) => s.poll(now, &mut self.sockets),
                    Service::Dns(s) => s.poll(&mut self.sockets),
                };
            }
            for task in &mut self.tasks {
                progressed |= match task {
                    Task::Ping(p) => p.poll(now, &mut self.sockets),
                    Task::Http(g) => g.poll(now, self.iface.context(), &mut self.sockets),
                    Task::Resolve(l) => l.poll(now, &mut self.sockets),
                    Task::Udp(d) => d.poll(now, &mut self.sockets),
                };
            }
            for task in &mut self.tasks {
                if let Task::Http(g) = task {
                    self.reaper.extend(g.take_socket());
                }
            }
            let mut next_port = self.next_port;
            let mut port = || {
                let p = next_port;
                next_port = if next_port == u16::MAX {
                    EPHEMERAL_START
                } else {
                    next_port + 1
                };
                p
            };
            if let Some(bgp) = self.bgp.as_mut() {
                // What to announce: worked out again only when the VIPs changed.
                let generation = self.dataplane.mux.as_ref().map_or(0, Mux::generation);
                let fresh = self.wanted.as_ref().is_none_or(|(g, _)| *g != generation);
                if fresh {
                    let mut wanted: std::collections::BTreeSet<Ipv4Net> =
                        bgp.networks().iter().copied().collect();
                    if bgp.wants_vips()
                        && let Some(mux) = &self.dataplane.mux
                    {
                        wanted.extend(mux.live_vips().map(Ipv4Net::from));
                    }
                    self.wanted = Some((generation, wanted));
                }
                let wanted = self.wanted.as_ref().map(|(_, w)| w);
                progressed |= bgp.poll(
                    now,
                    self.iface.context(),
                    &mut self.sockets,
                    &mut self.dataplane.router,
                    wanted.filter(|_| fresh),
                    &mut port,
                );
            }
            for prober in &mut self.probers {
                let (change, reap) =
                    prober.poll(now, self.iface.context(), &mut self.sockets, &mut port);
                if let Some(up) = change {
                    // An agent reports to the controller; without one, the node's owner
                    // takes the verdicts.
                    if self.agent.is_none() {
                        self.health_events.push((prober.dip(), up));
                    }
                    self.report_due = true;
                    progressed = true;
                }
                self.reaper.extend(reap);
            }
            if let Some(agent) = self.agent.as_mut() {
                progressed |= agent.poll(
                    now,
                    self.iface.context(),
                    &mut self.sockets,
                    &mut port,
                    &mut self.reaper,
                );
                self.report_due |= agent.take_welcomed();
            }
            if let Some(server) = self.control_server.as_mut() {
                progressed |= server.poll(now, &mut self.sockets);
            }
            if let Some(sw) = self.dataplane.switch.as_mut()
                && self.snat.poll(now, &mut sw.vswitch)
            {
                self.report_due = true;
                progressed = true;
            }
            self.next_port = next_port;
            progressed |= self.apply_pending(now);
            let sockets = &mut self.sockets;
            self.reaper.retain(|h| {
                let open = sockets
                    .get_mut::<smoltcp::socket::tcp::Socket>(*h)
                    .is_open();
                if !open {
                    sockets.remove(*h);
                }
                open
            });
            let sent = !self.device.tx.is_empty();
            while let Some(packet) = self.device.tx.pop_front() {
                self.dataplane.send(now, &packet);
            }
            self.dataplane.flush(now);
            self.take_local();
            if !changed && !progressed && !sent && self.device.rx.is_empty() {
                break;
            }
        }
    }

    /// Applies what the agent received, tells the controller, and sends the report it
    /// owes; true if anything happened.
    fn apply_pending(&mut self, now: Duration) -> bool {
        let Some(agent) = self.agent.as_mut() else {
            return false;
        };
        let pending: Vec<_> = agent.to_apply.drain(..).collect();
        let mut progressed = false;
        for (revision, config, patch) in pending {
            let roles = control::Roles {
                mux: self.dataplane.mux.as_mut(),
                bgp: self.bgp.as_mut().map(|speaker| control::Bgp {
                    speaker,
                    sockets: &mut self.sockets,
                    router: &self.dataplane.router,
                }),
                vswitch: self.dataplane.switch.as_mut().map(|s| &mut s.vswitch),
                probers: &mut self.probers,
                now,
            };
            let result = control::apply(&config, patch.as_ref(), roles);
            if let Ok(Some(dips)) = &result {
                self.programmed.clone_from(dips);
                self.snat.schedule(now);
            }
            if let Some(agent) = self.agent.as_mut() {
                agent.applied(revision, result.map(|_| ()));
            }
            self.report_due = true;
            progressed = true;
        }
        if self.report_due {
            self.report_due = false;
            let status = self.status_report();
            if let Some(agent) = self.agent.as_mut() {
                agent.report(status);
            }
            progressed = true;
        }
        progressed
    }

    /// What the agent reports: a host's provider addresses and its DIPs' health, a
    /// Mux's BGP sessions.
    fn status_report(&mut self) -> serde_json::Value {
        let mut status = serde_json::Map::new();
        if let Some(sw) = &self.dataplane.switch {
            status.insert(
                "providerAddresses".into(),
                serde_json::json!(sw.provider_addrs),
            );
            // Every DIP programmed, with its probe's verdict (healthy without a probe).
            let dips: Vec<serde_json::Value> = self
                .programmed
                .iter()
                .map(|dip| {
                    let healthy = self
                        .probers
                        .iter()
                        .filter(|p| p.dip() == *dip)
                        .all(Prober::is_up);
                    serde_json::json!({"dip": dip, "healthy": healthy})
                })
                .collect();
            status.insert("dips".into(), dips.into());
            self.snat.report(&sw.vswitch, &mut status);
        }
        if let Some(bgp) = &self.bgp {
            let peers: Vec<serde_json::Value> = bgp
                .status()
                .iter()
                .map(|n| serde_json::json!({"peer": n.address, "state": format!("{:?}", n.state)}))
                .collect();
            status.insert("bgp".into(), peers.into());
        }
        status.into()
    }

    /// The node's southbound agent, if it has one.
    pub fn agent(&self) -> Option<&apps::control::Client> {
        self.agent.as_ref()
    }

    /// The controller's southbound listener, if the node runs one.
    pub fn control_server(&self) -> Option<&apps::control::Server> {
        self.control_server.as_ref()
    }

    /// Hands the controller's listener the configurations to serve (by node); each
    /// connected agent is sent what changed for it.
    pub fn publish_configs(&mut self, configs: &strata_southbound::Configs) {
        if let Some(server) = self.control_server.as_mut() {
            server.publish(configs);
        }
    }

    /// What the agents connected to this node's listener said since the last call.
    pub fn take_control_events(&mut self) -> Vec<strata_southbound::peer::Event> {
        self.control_server
            .as_mut()
            .map(|s| s.take_events())
            .unwrap_or_default()
    }

    /// The next frame to put on the wire, and the link it leaves by.
    pub fn poll_transmit(&mut self) -> Option<(usize, Vec<u8>)> {
        self.dataplane.poll_transmit()
    }

    /// When the node next needs [`Node::poll`], if no frame arrives before.
    pub fn poll_at(&mut self, now: Duration) -> Option<Duration> {
        let stack = self
            .iface
            .poll_at(instant(now), &self.sockets)
            .map(|i| Duration::from_micros(i.total_micros().max(0) as u64));
        let tasks = self.tasks.iter().filter_map(|t| match t {
            Task::Ping(p) => p.poll_at(),
            Task::Http(g) => g.poll_at(),
            Task::Resolve(l) => l.poll_at(),
            Task::Udp(d) => d.poll_at(),
        });
        let probes = self
            .probers
            .iter()
            .filter_map(|p| p.poll_at())
            .chain(self.bgp.as_ref().and_then(|b| b.poll_at()))
            .chain(self.agent.as_ref().and_then(|a| a.poll_at()))
            .chain(self.snat.poll_at())
            .chain(self.control_server.as_ref().and_then(|s| s.poll_at()));
        let servers = self.services.iter().filter_map(|s| match s {
            Service::Http(h) => h.poll_at(),
            Service::Dns(_) => None,
        });
        [stack, self.dataplane.poll_at()]
            .into_iter()
            .flatten()
            .chain(tasks)
            .chain(probes)
            .chain(servers)
            .min()
    }

    fn ephemeral_port(&mut self) -> u16 {
        let port = self.next_port;
        self.next_port = if self.next_port == u16::MAX {
            EPHEMERAL_START
        } else {
            self.next_port + 1
        };
        port
    }

    /// Starts a client task; read its result with [`Node::task_report`].
    pub fn start_task(&mut self, now: Duration, spec: TaskSpec) -> TaskId {
        let task = match spec {
            TaskSpec::Ping {
                target,
                count,
                interval,
                timeout,
            } => {
                let ident = self.next_ident;
                self.next_ident = self.next_ident.wrapping_add(1);
                Task::Ping(Ping::start(
                    now,
                    &mut self.sockets,
                    target,
                    ident,
                    count,
                    interval,
                    timeout,
                ))
            }
            TaskSpec::HttpGet { url, timeout } => {
                let port = self.ephemeral_port();
                Task::Http(http::Get::start(
                    now,
                    self.iface.context(),
                    &mut self.sockets,
                    &url,
                    timeout,
                    port,
                    self.resolver,
                ))
            }
            TaskSpec::Resolve { name, timeout } => Task::Resolve(Lookup::start(
                now,
                self.iface.context(),
                &mut self.sockets,
                &name,
                self.resolver.zip(self.dns_server),
                timeout,
            )),
            TaskSpec::Udp { target, timeout } => {
                let port = self.ephemeral_port();
                Task::Udp(apps::udp::Datagram::start(
                    now,
                    &mut self.sockets,
                    target,
                    port,
                    timeout,
                ))
            }
        };
        self.tasks.push(task);
        TaskId(self.tasks.len() - 1)
    }

    /// The task's report once it has finished.
    pub fn task_report(&self, id: TaskId) -> Option<TaskReport> {
        match self.tasks.get(id.0)? {
            Task::Ping(p) => p.report().cloned().map(TaskReport::Ping),
            Task::Http(g) => g.report().cloned().map(TaskReport::Http),
            Task::Resolve(l) => l.report().cloned().map(TaskReport::Resolve),
            Task::Udp(d) => d.report().cloned().map(TaskReport::Udp),
        }
    }
}
