//! The role files `lab up --netns` writes for its Strata nodes, so that each runs as the
//! role process a user would deploy: `strata router` (a router, with NAT and BGP as the
//! lab file says), `strata mux` and `strata host-agent` (both configured by the
//! controller over the southbound protocol). A node that is none of these (ADVM, a VM
//! with Strata's DNS server) runs as `strata lab node`.

use std::fmt::Write as _;
use std::net::SocketAddrV4;
use std::path::Path;

use strata_lab::topology::{Kind, Topology};
use strata_node::router::RouteKind;

/// A role process's command and file.
pub(crate) struct RoleFile {
    /// `router`, `mux` or `host-agent`.
    pub command: &'static str,
    pub toml: String,
}

fn routes(c: &mut String, node: &strata_lab::topology::NodeSpec) {
    for r in &node.routes {
        let how = match (r.kind, r.via) {
            (RouteKind::Reject, _) => "type = \"reject\"".to_string(),
            (RouteKind::Blackhole, _) => "type = \"blackhole\"".to_string(),
            (RouteKind::Forward, Some(via)) => format!("via = \"{via}\""),
            // A connected route: the interface's address gives it.
            (RouteKind::Forward, None) => continue,
        };
        let _ = write!(c, "[[route]]\nprefix = \"{}\"\n{how}\n", r.prefix);
    }
}

fn interfaces(c: &mut String, node: &strata_lab::topology::NodeSpec) {
    for (i, nic) in node.nics.iter().enumerate() {
        let _ = write!(
            c,
            "[[interface]]\nname = \"eth{i}\"\naddress = \"{}\"\n",
            nic.addr
        );
    }
}

/// Node `n`'s role file, or `None` when it is no role's (it runs as `lab node`).
pub(crate) fn role_file(
    t: &Topology,
    n: usize,
    controller: SocketAddrV4,
    secret: &str,
    status: &Path,
) -> Option<RoleFile> {
    let node = &t.nodes[n];
    let plain_nics = node
        .nics
        .iter()
        .all(|c| c.vlan.is_none() && c.vswitch_host.is_none());
    let mut c = String::new();
    let _ = writeln!(
        c,
        "# {}, written by strata lab up --netns\nnetns = \"strata-{}\"\nname = \"{}\"\nstatus = \"{}\"",
        node.name,
        node.name,
        node.name,
        status.display()
    );
    let token = strata_southbound::node_token(secret, &node.name);
    if let Some(mux) = &node.mux {
        let bgp = node.bgp.as_ref()?;
        if !plain_nics || node.vswitch.is_some() || node.nat.is_some() {
            return None;
        }
        let _ = write!(
            c,
            "controller = \"{controller}\"\ntoken = \"{token}\"\nprovider = \"eth{}\"\nasn = {}\n",
            mux.provider_nic, bgp.asn
        );
        // The lab file's timers for its peers become the Mux's for the peers the
        // controller names.
        if let Some(nb) = bgp.neighbors.first() {
            let _ = writeln!(c, "hold_time = {}", nb.hold_time);
            if let Some(bfd) = nb.bfd {
                let _ = write!(
                    c,
                    "bfd_interval_ms = {}\nbfd_multiplier = {}\n",
                    bfd.desired_min_tx.as_millis(),
                    bfd.detect_mult
                );
            }
        }
        interfaces(&mut c, node);
        routes(&mut c, node);
        return Some(RoleFile {
            command: "mux",
            toml: c,
        });
    }
    if let Some(switch) = &node.vswitch {
        let provider = switch.provider_nic?;
        let management = node
            .nics
            .iter()
            .position(|x| x.network == switch.uplink_network)?;
        if node.nics.len() != 2 || node.bgp.is_some() || node.nat.is_some() {
            return None;
        }
        let m = &node.nics[management];
        let _ = write!(
            c,
            "controller = \"{controller}\"\ntoken = \"{token}\"\nswitch = \"{}\"\nuplink = \"uplink\"\n\
             [management]\nname = \"{}\"\naddress = \"{}\"\n\
             [provider]\ninterface = \"eth{provider}\"\naddress = \"{}\"\n",
            switch.name, m.name, m.addr, node.nics[provider].addr
        );
        let vms = t.nodes.iter().enumerate().filter_map(|(v, vm)| {
            Some((
                v,
                vm,
                vm.nics.iter().position(|x| x.vswitch_host == Some(n))?,
            ))
        });
        for (k, (v, vm, nic)) in vms.enumerate() {
            let _ = write!(
                c,
                "[[vm]]\nname = \"{}\"\ninterface = \"vm{k}\"\nmac = \"{}\"\n",
                vm.name,
                super::mac(v, nic)
            );
            if let Some(vlan) = vm.nics[nic].vlan {
                let _ = writeln!(c, "vlan = {vlan}");
            }
            let _ = writeln!(c, "address = \"{}\"", vm.nics[nic].addr);
        }
        routes(&mut c, node);
        return Some(RoleFile {
            command: "host-agent",
            toml: c,
        });
    }
    let router = node.kind == Kind::Router || node.nat.is_some();
    if !router || !node.services.is_empty() || !plain_nics || node.controller.is_some() {
        return None;
    }
    interfaces(&mut c, node);
    routes(&mut c, node);
    if let Some(nat) = &node.nat {
        let _ = writeln!(
            c,
            "[nat]\nexternal = \"eth{}\"\nmax_conns = {}",
            nat.external_nic, nat.max_conns
        );
        let t = &nat.timeouts;
        let _ = writeln!(
            c,
            "[nat.timeouts]\ntcp_established = {}\ntcp_transitory = {}\ntcp_closed = {}\nudp = {}\nicmp = {}",
            t.tcp_established.as_secs().max(1),
            t.tcp_transitory.as_secs().max(1),
            t.tcp_closed.as_secs().max(1),
            t.udp.as_secs().max(1),
            t.icmp.as_secs().max(1),
        );
        for f in &nat.forwards {
            let _ = write!(
                c,
                "[[nat.forward]]\nprotocol = \"{}\"\nport = {}\nto = \"{}\"\n",
                if f.proto == 17 { "udp" } else { "tcp" },
                f.external_port,
                f.internal
            );
        }
    }
    if let Some(bgp) = &node.bgp {
        let _ = write!(
            c,
            "[bgp]\nasn = {}\nrouter_id = \"{}\"\n",
            bgp.asn, bgp.router_id
        );
        if !bgp.networks.is_empty() {
            let list: Vec<String> = bgp.networks.iter().map(|p| format!("\"{p}\"")).collect();
            let _ = writeln!(c, "networks = [{}]", list.join(", "));
        }
        for nb in &bgp.neighbors {
            let _ = write!(
                c,
                "[[bgp.neighbor]]\naddress = \"{}\"\nasn = {}\npassive = {}\nhold_time = {}\nconnect_retry_s = {}\n",
                nb.address,
                nb.asn,
                nb.passive,
                nb.hold_time,
                nb.connect_retry.as_secs()
            );
            if let Some(bfd) = nb.bfd {
                let _ = write!(
                    c,
                    "bfd_interval_ms = {}\nbfd_multiplier = {}\n",
                    bfd.desired_min_tx.as_millis(),
                    bfd.detect_mult
                );
            }
        }
    }
    Some(RoleFile {
        command: "router",
        toml: c,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each POC node's role file, as the role process reads it.
    #[test]
    fn the_poc_nodes_get_role_files_their_processes_read() {
        let mut t = strata_lab::file::parse(
            strata_lab::AZURE_STACK_POC_NAME,
            strata_lab::AZURE_STACK_POC,
        )
        .unwrap();
        // NATVM's table and timeouts off their defaults, to see them carried.
        for nat in t.nodes.iter_mut().filter_map(|n| n.nat.as_mut()) {
            nat.max_conns = 777;
            nat.timeouts.udp = std::time::Duration::from_secs(33);
            nat.timeouts.tcp_established = std::time::Duration::from_secs(999);
        }
        let dir = std::env::temp_dir().join(format!("strata-role-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let controller: SocketAddrV4 = "192.168.100.10:8081".parse().unwrap();
        let mut roles = Vec::new();
        for (n, node) in t.nodes.iter().enumerate() {
            let status = dir.join(format!("{}.bgp", node.name));
            let Some(file) = role_file(&t, n, controller, "secret", &status) else {
                continue;
            };
            let path = dir.join(format!("{}.toml", node.name));
            std::fs::write(&path, &file.toml).unwrap();
            roles.push((node.name.as_str(), file.command));
            let token = strata_southbound::node_token("secret", &node.name);
            match file.command {
                "router" => {
                    let f = strata_runtime::router::load(&path).unwrap();
                    assert_eq!(f.netns.as_deref(), Some(&*format!("strata-{}", node.name)));
                    assert_eq!(f.status.as_deref(), Some(&*status));
                    if node.name == "BGPVM" {
                        let bgp = f.bgp.unwrap().config("192.168.100.1".parse().unwrap());
                        assert_eq!(bgp, node.bgp.clone().unwrap(), "{}", file.toml);
                        assert!(
                            f.route
                                .iter()
                                .any(|r| r.prefix.to_string() == "192.168.133.0/24"
                                    && r.kind.as_deref() == Some("reject")),
                            "{}",
                            file.toml
                        );
                    } else {
                        let nat = f.nat.unwrap();
                        assert_eq!(nat.external, "eth1");
                        assert_eq!(nat.forward[0].to.to_string(), "192.168.100.74:80");
                        let spec = node.nat.as_ref().unwrap();
                        let config = nat.config(std::net::Ipv4Addr::UNSPECIFIED);
                        assert_eq!(config.max_conns, spec.max_conns);
                        assert_eq!(config.timeouts, spec.timeouts);
                        assert_eq!(config.forwards, spec.forwards);
                    }
                }
                "mux" => {
                    let f = strata_runtime::mux::load(&path).unwrap();
                    assert_eq!(f.token.as_deref(), Some(token.as_str()));
                    assert_eq!(f.controller, controller);
                    assert_eq!(f.provider, "eth1");
                    assert_eq!((f.asn, f.bfd_interval_ms), (64501, Some(100)));
                    assert_eq!(f.route[0].via.unwrap().to_string(), "192.168.100.1");
                }
                "host-agent" => {
                    let f = strata_runtime::host::load(&path).unwrap();
                    assert_eq!(f.token.as_deref(), Some(token.as_str()));
                    assert!(f.switch.starts_with("CCI_External"), "{}", f.switch);
                    assert_eq!(f.uplink, "uplink");
                    assert_eq!(f.provider.interface, "eth1");
                    let vms: Vec<&str> = f.vm.iter().map(|v| v.name.as_str()).collect();
                    let vm = t.node(vms[0]).unwrap();
                    assert_eq!(f.vm[0].mac, super::super::mac(vm, 0));
                    assert_eq!(f.vm[0].interface, "vm0");
                    if node.name == "HyperVHost" {
                        assert_eq!(
                            vms,
                            ["PortalVM", "PortalVM2", "TenantA-Web1", "TenantB-Web1"]
                        );
                    }
                }
                other => panic!("{other}"),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            roles,
            [
                ("NATVM", "router"),
                ("BGPVM", "router"),
                ("MuxVM", "mux"),
                ("MuxVM2", "mux"),
                ("HyperVHost", "host-agent"),
                ("HyperVHost2", "host-agent"),
            ]
        );
    }
}
