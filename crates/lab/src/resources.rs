//! The lab's part of the Network Controller's resources: what the lab file says about
//! the SLB, as the documents a user would PUT. The physical topology gives the
//! logicalNetworks (one subnet per network), the servers (each Hyper-V host), the
//! loadBalancerMuxes (each Mux, peering as its `[node.bgp]` says) and the backends'
//! networkInterfaces (MAC, server, ip configuration with its pools and NAT rules); the
//! `[slb]` section gives the loadBalancers.

use serde_json::{Value, json};

use crate::lab::mac_of;
use crate::topology::Topology;

/// The logical network (and its subnet and pool) the VIPs come from.
pub const VIP_NETWORK: &str = "PublicVIP";

/// One resource: collection, resourceId, body.
pub type Resource = (&'static str, String, Value);

/// A MAC as the Network Controller writes it: twelve hex digits, no separators.
fn nc_mac(mac: strata_wire::EthernetAddress) -> String {
    mac.0.iter().map(|b| format!("{b:02X}")).collect()
}

/// The networkInterfaces id of NIC `nic` of node `node`: the VM's name, with the NIC's
/// number after the first.
pub fn nic_id(topology: &Topology, node: usize, nic: usize) -> String {
    let name = &topology.nodes[node].name;
    if nic == 0 {
        name.clone()
    } else {
        format!("{name}-{nic}")
    }
}

/// Every resource of the lab, in an order in which each one's references exist.
pub fn resources(topology: &Topology) -> Result<Vec<Resource>, String> {
    let mut out: Vec<Resource> = Vec::new();
    for network in &topology.networks {
        out.push((
            "logicalNetworks",
            network.name.clone(),
            json!({"properties": {"subnets": [{
                "resourceId": network.name,
                "properties": {"addressPrefix": network.prefix.to_string()},
            }]}}),
        ));
    }
    for node in &topology.nodes {
        if node.vswitch.is_some() {
            let management: Vec<String> = node
                .nics
                .first()
                .map(|n| n.addr.addr().to_string())
                .into_iter()
                .collect();
            out.push((
                "servers",
                node.name.clone(),
                json!({"properties": {"connections": [{"managementAddresses": management}]}}),
            ));
        }
        if node.mux.is_some() {
            let bgp = node.bgp.as_ref().ok_or_else(|| {
                format!(
                    "Mux {}: no [node.bgp]: a Mux announces its VIPs over BGP",
                    node.name
                )
            })?;
            let peers: Vec<Value> = bgp
                .neighbors
                .iter()
                .map(|n| {
                    json!({
                        "routerName": n.address.to_string(),
                        "routerIPAddress": n.address.to_string(),
                        "peerASN": n.asn,
                    })
                })
                .collect();
            out.push((
                "loadBalancerMuxes",
                node.name.clone(),
                json!({"properties": {"routerConfiguration": {
                    "localASN": bgp.asn,
                    "peerRouterConfigurations": peers,
                }}}),
            ));
        }
    }
    let Some(slb) = &topology.slb else {
        return Ok(out);
    };
    // The VIPs' logical network and its pool: every address of the prefix but the
    // first and the last.
    let (first, last) = (
        u32::from(slb.vip_prefix.network()) + 1,
        u32::from(slb.vip_prefix.broadcast()) - 1,
    );
    out.push((
        "logicalNetworks",
        VIP_NETWORK.into(),
        json!({"properties": {"subnets": [{
            "resourceId": VIP_NETWORK,
            "properties": {
                "addressPrefix": slb.vip_prefix.to_string(),
                "isPublic": true,
                "ipPools": [{
                    "resourceId": VIP_NETWORK,
                    "properties": {
                        "startIPAddress": std::net::Ipv4Addr::from(first).to_string(),
                        "endIPAddress": std::net::Ipv4Addr::from(last).to_string(),
                    },
                }],
            },
        }]}}),
    ));
    out.push((
        "loadBalancerManager",
        "config".into(),
        json!({"properties": {"vipIpPools": [{"resourceRef": format!(
            "/logicalNetworks/{VIP_NETWORK}/subnets/{VIP_NETWORK}/ipPools/{VIP_NETWORK}"
        )}]}}),
    ));
    for (id, body) in &slb.load_balancers {
        out.push(("loadBalancers", id.clone(), body.clone()));
    }
    for b in &slb.backends {
        let nic = &topology.nodes[b.node].nics[b.nic];
        let network = &topology.networks[nic.network].name;
        let refs =
            |v: &[String]| -> Vec<Value> { v.iter().map(|r| json!({"resourceRef": r})).collect() };
        let mut properties = json!({
            "privateMacAddress": nc_mac(mac_of(b.node, b.nic)),
            "ipConfigurations": [{
                "resourceId": "ipconfig1",
                "properties": {
                    "privateIPAddress": nic.addr.addr().to_string(),
                    "privateIPAllocationMethod": "Static",
                    "subnet": {"resourceRef": format!("/logicalNetworks/{network}/subnets/{network}")},
                    "loadBalancerBackendAddressPools": refs(&b.pools),
                    "loadBalancerInboundNatRules": refs(&b.nat_rules),
                },
            }],
        });
        if let Some(host) = nic.vswitch_host {
            properties["server"] =
                json!({"resourceRef": format!("/servers/{}", topology.nodes[host].name)});
        }
        out.push((
            "networkInterfaces",
            nic_id(topology, b.node, b.nic),
            json!({ "properties": properties }),
        ));
    }
    Ok(out)
}
