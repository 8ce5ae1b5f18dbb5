//! The lab's state as Prometheus metrics, labelled by node and role:
//! frames and bytes per link, drops by reason, flow-table occupancy, VIP and DIP state,
//! BGP sessions and prefixes, and the controller's API requests by status code.
//!
//! Every scrape reads the lab afresh into a new registry: the counters are the nodes'
//! own, so nothing is counted twice and nothing on the packet path knows about metrics.

use prometheus_client::registry::Registry;
use strata_controller::metrics::{counter, gauge, labels};

use crate::Lab;

/// A node's role, as its label says it.
fn role(lab: &Lab, n: usize) -> &'static str {
    let spec = &lab.topology().nodes[n];
    if spec.controller.is_some() {
        "controller"
    } else if spec.mux.is_some() {
        "mux"
    } else if spec.vswitch.is_some() {
        "host"
    } else if spec.nat.is_some() {
        "nat"
    } else if spec.kind == crate::topology::Kind::Router {
        "router"
    } else {
        "vm"
    }
}

fn gauge_value(v: usize) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The lab's metrics in the Prometheus text format (0.0.4), which `promtool check
/// metrics` reads.
pub fn render(lab: &Lab) -> String {
    strata_controller::metrics::exposition(&registry(lab))
}

/// The lab's metrics, registered.
fn registry(lab: &Lab) -> Registry {
    let mut registry = Registry::with_prefix("strata");
    let m = &mut registry;
    let tx_frames = counter(m, "link_tx_frames", "Frames a node sent on a network");
    let tx_bytes = counter(m, "link_tx_bytes", "Bytes a node sent on a network");
    let rx_frames = counter(m, "link_rx_frames", "Frames a node received from a network");
    let rx_bytes = counter(m, "link_rx_bytes", "Bytes a node received from a network");
    let queue_drops = counter(
        m,
        "link_queue_drops",
        "Frames toward a node dropped because its link's queue was full",
    );
    let router_drops = counter(
        m,
        "router_drops",
        "Packets a node's router dropped, by reason",
    );
    let forwarded = counter(m, "router_forwarded_packets", "Packets a node forwarded");
    let mux_packets = counter(m, "mux_packets", "Packets a Mux handled, by outcome");
    let vip_dips = gauge(
        m,
        "mux_vip_dips",
        "DIPs of a Mux's VIP entry, by state (up: in the pool)",
    );
    let vfp_flows = gauge(m, "vfp_flows", "Flows in a VM port's unified flow table");
    let vfp_packets = counter(m, "vfp_packets", "Packets through a VM port's VFP, by path");
    let vfp_drops = counter(m, "vfp_drops", "Packets a VM port's VFP dropped, by reason");
    let bgp_up = gauge(
        m,
        "bgp_session_established",
        "1 if the BGP session with the neighbor is Established",
    );
    let bgp_received = gauge(
        m,
        "bgp_prefixes_received",
        "Prefixes received from the neighbor",
    );
    let bgp_advertised = gauge(
        m,
        "bgp_prefixes_advertised",
        "Prefixes advertised to the neighbor",
    );
    let agent_ready = gauge(
        m,
        "agent_connected",
        "1 if the node's agent is connected to the network controller",
    );
    let api_requests = counter(
        m,
        "api_requests",
        "Requests to the network controller's API, by status code",
    );

    for (s, segment) in lab.segments().iter().enumerate() {
        for port in 0..segment.ports() {
            let (Some(n), Some(c)) = (
                lab.port_owner(s, port),
                segment.counters(strata_fabric::PortId(port)),
            ) else {
                continue;
            };
            let n = &n;
            let node = lab.nodes()[*n].name();
            let l = labels(&[
                ("network", segment.name()),
                ("node", node),
                ("role", role(lab, *n)),
            ]);
            tx_frames.get_or_create(&l).inc_by(c.tx_frames);
            tx_bytes.get_or_create(&l).inc_by(c.tx_bytes);
            rx_frames.get_or_create(&l).inc_by(c.rx_frames);
            rx_bytes.get_or_create(&l).inc_by(c.rx_bytes);
            queue_drops.get_or_create(&l).inc_by(c.queue_drops);
        }
    }
    for (n, node) in lab.nodes().iter().enumerate() {
        let name = node.name();
        let r = role(lab, n);
        let c = node.router().counters();
        forwarded
            .get_or_create(&labels(&[("node", name), ("role", r)]))
            .inc_by(c.forwarded);
        for (reason, v) in [
            ("malformed", c.malformed),
            ("unsupported", c.unsupported),
            ("not_forwarding", c.not_forwarding),
            ("ttl_exceeded", c.ttl_exceeded),
            ("no_route", c.no_route),
            ("too_big", c.too_big),
            ("neighbor_unreachable", c.neighbor_unreachable),
            ("neighbor_overflow", c.neighbor_overflow),
        ] {
            router_drops
                .get_or_create(&labels(&[("node", name), ("role", r), ("reason", reason)]))
                .inc_by(v);
        }
        if let Some(mux) = node.mux() {
            let c = mux.counters();
            for (outcome, v) in [
                ("encapsulated", c.encapsulated),
                ("malformed", c.malformed),
                ("fragment", c.fragments),
                ("no_vip", c.no_vip),
                ("no_healthy_dip", c.no_healthy_dip),
                ("rehashed", c.rehashed),
            ] {
                mux_packets
                    .get_or_create(&labels(&[
                        ("node", name),
                        ("role", r),
                        ("outcome", outcome),
                    ]))
                    .inc_by(v);
            }
            for (config, healthy) in mux.vips() {
                let k = config.key;
                let vip = format!(
                    "{} {}/{}",
                    k.vip,
                    crate::diagram::protocol_name(k.proto),
                    k.port
                );
                let up = healthy.iter().filter(|h| **h).count();
                for (state, v) in [("up", up), ("down", healthy.len() - up)] {
                    vip_dips
                        .get_or_create(&labels(&[
                            ("node", name),
                            ("role", r),
                            ("vip", &vip),
                            ("state", state),
                        ]))
                        .set(gauge_value(v));
                }
            }
        }
        if let Some(vswitch) = node.vswitch() {
            for (p, port, _) in vswitch.vm_ports() {
                let Some(vfp) = vswitch.vfp(p) else { continue };
                let l = |extra: &[(&str, &str)]| {
                    let mut v = labels(&[("node", name), ("role", r), ("port", port)]);
                    v.extend(labels(extra));
                    v
                };
                vfp_flows
                    .get_or_create(&l(&[]))
                    .set(gauge_value(vfp.flows().len()));
                let c = vfp.counters();
                vfp_packets
                    .get_or_create(&l(&[("path", "fast")]))
                    .inc_by(c.fast_path);
                vfp_packets
                    .get_or_create(&l(&[("path", "slow")]))
                    .inc_by(c.slow_path);
                vfp_drops
                    .get_or_create(&l(&[("reason", "blocked")]))
                    .inc_by(c.dropped_blocked);
                vfp_drops
                    .get_or_create(&l(&[("reason", "unparsed")]))
                    .inc_by(c.dropped_unparsed);
            }
        }
        if let Some(neighbors) = node.bgp_status() {
            for nb in neighbors {
                let addr = nb.address.to_string();
                let l = labels(&[("node", name), ("role", r), ("neighbor", &addr)]);
                bgp_up
                    .get_or_create(&l)
                    .set(i64::from(nb.state == strata_node::bgp::State::Established));
                bgp_received
                    .get_or_create(&l)
                    .set(gauge_value(nb.received.len()));
                bgp_advertised
                    .get_or_create(&l)
                    .set(gauge_value(nb.advertised.len()));
            }
        }
        if let Some(client) = node.agent() {
            agent_ready
                .get_or_create(&labels(&[("node", name), ("role", r)]))
                .set(i64::from(client.agent().is_ready()));
        }
    }
    if let Some(nc) = lab.nc() {
        let node = lab.nodes()[nc.node].name();
        for (code, count) in nc.api.requests() {
            api_requests
                .get_or_create(&labels(&[
                    ("node", node),
                    ("role", "controller"),
                    ("code", &code.to_string()),
                ]))
                .inc_by(count);
        }
    }
    registry
}
