//! A node of the network: a VM, a router VM or a host.
//!
//! ```text
//!  NIC 0 ─┐                     ┌─ smoltcp stack (Medium::Ip) ─ apps: HTTP, DNS, ping
//!  NIC 1 ─┼─ router (ARP, FIB) ─┤
//!  ...   ─┘   └─ hooks: NAT     └─ forwarding (when a router)
//! ```
//!
//! Frames from the fabric enter by [`Node::receive`]; the router answers ARP, forwards
//! what is not for the node (if it forwards), and hands the node's own packets to a
//! smoltcp interface, where the apps' sockets live. What the stack sends goes back through
//! the router, so a node has one routing table and one ARP cache. Roles are hooks on the
//! router: NAT today; the Mux and the vSwitch join in later issues.
//!
//! Sans-IO: the owner passes `now` (time since the lab started) to every call, takes
//! frames from [`Node::poll_transmit`] and wakes the node at [`Node::poll_at`].

pub mod apps;
mod device;

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use smoltcp::iface::{Config as IfaceConfig, Interface as Iface, PollResult, SocketSet};
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpCidr};
use strata_nat::Nat;
use strata_router::{Hooks, IfIndex, Interface, Router, Verdict};
use strata_wire::EthernetAddress;

use apps::dns::{Lookup, LookupReport};
use apps::http::{self, GetReport, Page};
use apps::ping::{Ping, PingReport};
use device::QueueDevice;

pub use strata_nat as nat;
pub use strata_router as router;

/// A NIC of a node.
#[derive(Debug, Clone)]
pub struct NicConfig {
    pub name: String,
    pub mac: EthernetAddress,
    /// The NIC's address and prefix length.
    pub addr: Ipv4Net,
    pub mtu: usize,
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

/// Everything that makes a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub nics: Vec<NicConfig>,
    /// Static routes: prefix via gateway (a default route is `0.0.0.0/0`).
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
    pub forwarding: bool,
    pub nat: Option<NatRole>,
    pub dns_server: Option<Ipv4Addr>,
    pub services: Vec<ServiceConfig>,
    /// Seeds the stack's initial sequence numbers and ports; the same seed gives the same
    /// run.
    pub seed: u64,
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
}

/// What a finished task found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskReport {
    Ping(PingReport),
    Http(GetReport),
    Resolve(LookupReport),
}

#[derive(Debug)]
enum Task {
    Ping(Ping),
    Http(http::Get),
    Resolve(Lookup),
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

/// The NAT seen from the router: the node's hook adapter.
struct NatHooks<'a> {
    nat: Option<&'a mut (IfIndex, Nat)>,
}

impl Hooks for NatHooks<'_> {
    fn pre_routing(&mut self, now: Duration, in_if: IfIndex, packet: &mut [u8]) -> Verdict {
        match &mut self.nat {
            Some((external, nat)) if *external == in_if => verdict(nat.inbound(now, packet)),
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
                verdict(nat.outbound(now, packet))
            }
            _ => Verdict::Accept,
        }
    }
}

fn verdict(action: strata_nat::Action) -> Verdict {
    match action {
        strata_nat::Action::Dropped(_) => Verdict::Drop,
        _ => Verdict::Accept,
    }
}

/// An emulated node.
pub struct Node {
    name: String,
    router: Router,
    nat: Option<(IfIndex, Nat)>,
    iface: Iface,
    device: QueueDevice,
    sockets: SocketSet<'static>,
    services: Vec<Service>,
    tasks: Vec<Task>,
    dns_server: Option<Ipv4Addr>,
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
    pub fn new(config: NodeConfig, now: Duration) -> Result<Node, NodeError> {
        let first = config.nics.first().ok_or_else(|| NodeError::NoNic {
            node: config.name.clone(),
        })?;
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
        let nat = match config.nat {
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
        let _ = iface.routes_mut().add_default_ipv4_route(first.addr.addr());

        let mut sockets = SocketSet::new(vec![]);
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
        Ok(Node {
            name: config.name,
            router,
            nat,
            iface,
            device,
            sockets,
            services,
            tasks: Vec::new(),
            dns_server: config.dns_server,
            next_port: EPHEMERAL_START + (config.seed % 1000) as u16,
            next_ident: 1 + (config.seed % 1000) as u16,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    pub fn router_mut(&mut self) -> &mut Router {
        &mut self.router
    }

    pub fn nat(&self) -> Option<&Nat> {
        self.nat.as_ref().map(|(_, n)| n)
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

    /// A frame arrived on NIC `nic`.
    pub fn receive(&mut self, now: Duration, nic: usize, frame: Vec<u8>) {
        let mut hooks = NatHooks {
            nat: self.nat.as_mut(),
        };
        if let Some(delivered) = self.router.receive(now, IfIndex(nic), frame, &mut hooks) {
            self.device.rx.push_back(delivered.packet);
        }
    }

    /// Runs everything due at `now`: timers, the stack, the apps.
    pub fn poll(&mut self, now: Duration) {
        let at = instant(now);
        {
            let mut hooks = NatHooks {
                nat: self.nat.as_mut(),
            };
            self.router.poll(now, &mut hooks);
        }
        if let Some((_, nat)) = self.nat.as_mut() {
            nat.poll(now);
        }
        // Each round lets the stack take in what arrived and send what the apps wrote;
        // stop when a round moves nothing. The bound only guards against a bug looping.
        for _ in 0..64 {
            let changed = self.iface.poll(at, &mut self.device, &mut self.sockets)
                == PollResult::SocketStateChanged;
            let mut progressed = false;
            for service in &mut self.services {
                progressed |= match service {
                    Service::Http(s) => s.poll(&mut self.sockets),
                    Service::Dns(s) => s.poll(&mut self.sockets),
                };
            }
            for task in &mut self.tasks {
                progressed |= match task {
                    Task::Ping(p) => p.poll(now, &mut self.sockets),
                    Task::Http(g) => g.poll(now, self.iface.context(), &mut self.sockets),
                    Task::Resolve(l) => l.poll(now, &mut self.sockets),
                };
            }
            let sent = !self.device.tx.is_empty();
            let mut hooks = NatHooks {
                nat: self.nat.as_mut(),
            };
            while let Some(packet) = self.device.tx.pop_front() {
                self.router.send(now, &packet, &mut hooks);
            }
            if !changed && !progressed && !sent && self.device.rx.is_empty() {
                break;
            }
        }
    }

    /// The next frame to put on the wire, and the NIC it leaves by.
    pub fn poll_transmit(&mut self) -> Option<(usize, Vec<u8>)> {
        self.router.poll_transmit().map(|(i, f)| (i.0, f))
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
        });
        [
            stack,
            self.router.poll_at(),
            self.nat.as_ref().and_then(|(_, n)| n.poll_at()),
        ]
        .into_iter()
        .flatten()
        .chain(tasks)
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
                    self.dns_server,
                ))
            }
            TaskSpec::Resolve { name, timeout } => Task::Resolve(Lookup::start(
                now,
                self.iface.context(),
                &mut self.sockets,
                &name,
                self.dns_server,
                timeout,
            )),
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
        }
    }
}
