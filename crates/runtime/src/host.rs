//! `strata host-agent`: a Hyper-V host as a process on the interfaces of one network
//! namespace: its vSwitch (with VFP) between an uplink and one interface per VM, its
//! management vNIC on that switch, its provider address (PA) where VXLAN arrives, and
//! the SLB host agent, whose VFP rules and probes come from the network controller.
//!
//! ```toml
//! netns = "strata-HyperVHost"
//! name = "HyperVHost"                # its servers resourceId
//! controller = "192.168.100.10:8081"
//! token = "…"                        # `strata ctl node-token HyperVHost`
//! switch = "CCI_External"
//! uplink = "eth0"                    # the vSwitch's uplink, on the management network
//! [management]                       # the host's own vNIC, a port of its switch
//! name = "vEthernet 1001"
//! address = "192.168.100.2/24"
//! [provider]
//! interface = "eth1"
//! address = "192.168.233.21/24"
//! [[vm]]
//! name = "PortalVM"                  # its networkInterfaces resourceId
//! interface = "vm-portal"            # the link to the VM
//! mac = "00:15:5d:64:08:00"          # the VM NIC's MAC
//! vlan = 10                          # optional: an access port of this VLAN
//! address = "192.168.100.74/24"      # optional: the VM NIC's, for ARP to go to it alone
//! [[route]]
//! prefix = "0.0.0.0/0"
//! via = "192.168.100.1"
//! ```

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use strata_fabric::linux::{LinuxLink, netns};
use strata_node::{ControlConfig, LinkKind, NicConfig, NodeConfig, VSwitchConfig, VmPortConfig};

use crate::router::{RouteDef, check_routes, split_routes};

/// The configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFile {
    #[serde(default)]
    pub netns: Option<String>,
    pub name: String,
    pub controller: SocketAddrV4,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    pub switch: String,
    pub uplink: String,
    pub management: ManagementDef,
    pub provider: ProviderDef,
    #[serde(default)]
    pub vm: Vec<VmDef>,
    #[serde(default)]
    pub route: Vec<RouteDef>,
    /// A file rewritten every 200 ms with its BGP neighbors' state (see `strata
    /// router`'s file).
    #[serde(default)]
    pub status: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementDef {
    pub name: String,
    pub address: ipnet::Ipv4Net,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderDef {
    pub interface: String,
    pub address: ipnet::Ipv4Net,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmDef {
    pub name: String,
    pub interface: String,
    pub mac: String,
    #[serde(default)]
    pub vlan: Option<u16>,
    /// The VM NIC's address, if known: ARP for it is steered to the VM's port alone.
    #[serde(default)]
    pub address: Option<ipnet::Ipv4Net>,
}

/// `aa:bb:cc:dd:ee:ff`.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|h| u8::from_str_radix(h, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    parts.try_into().ok()
}

impl HostFile {
    fn token(&self) -> Result<String, String> {
        crate::node_token(self.token.as_deref(), self.token_file.as_deref())
    }
}

/// Reads and checks a configuration file.
pub fn load(path: &Path) -> Result<HostFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: HostFile = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let at = |e: String| format!("{}: {e}", path.display());
    file.token().map_err(at)?;
    for vm in &file.vm {
        if parse_mac(&vm.mac).is_none() {
            return Err(at(format!(
                "vm {}: mac {:?}: expected six hex bytes like 00:15:5d:64:08:00",
                vm.name, vm.mac
            )));
        }
        if vm.vlan.is_some_and(|v| !(1..=4094).contains(&v)) {
            return Err(at(format!("vm {}: VLAN is 1 to 4094", vm.name)));
        }
    }
    let mut interfaces: Vec<&str> = vec![&file.uplink, &file.provider.interface];
    interfaces.extend(file.vm.iter().map(|v| v.interface.as_str()));
    for (i, a) in interfaces.iter().enumerate() {
        if interfaces[i + 1..].contains(a) {
            return Err(at(format!("interface {a:?} is given twice")));
        }
    }
    check_routes(path, &file.route)?;
    Ok(file)
}

/// Enters the file's namespace (on the calling thread), opens its interfaces, and
/// builds the driver: the vSwitch with its VM ports (no VFP rules yet), and the agent
/// that gets them from the controller.
pub fn driver(file: &HostFile) -> Result<crate::Driver, String> {
    if let Some(ns) = &file.netns {
        netns::enter(ns).map_err(|e| e.to_string())?;
    }
    let open = |name: &str| crate::open_link(name).map_err(|e| format!("{name}: {e}"));
    let provider = open(&file.provider.interface)?;
    let uplink = open(&file.uplink)?;
    let mac = |l: &LinuxLink| {
        l.mac()
            .map(strata_wire::EthernetAddress)
            .map_err(|e| format!("{}: {e}", l.name()))
    };
    let nics = vec![
        // The management vNIC sits behind the switch; it goes out with the uplink's MAC.
        NicConfig {
            name: file.management.name.clone(),
            mac: mac(&uplink)?,
            addr: file.management.address,
            mtu: 1500,
            behind_switch: true,
        },
        NicConfig {
            name: file.provider.interface.clone(),
            mac: mac(&provider)?,
            addr: file.provider.address,
            mtu: 1500,
            behind_switch: false,
        },
    ];
    let mut vm_links = Vec::new();
    let mut vms = Vec::new();
    for vm in &file.vm {
        vm_links.push(open(&vm.interface)?);
        vms.push(VmPortConfig {
            name: vm.name.clone(),
            mac: strata_wire::EthernetAddress(parse_mac(&vm.mac).ok_or("bad mac")?),
            vlan: vm.vlan,
            addresses: vm.address.map(|a| a.addr()).into_iter().collect(),
            layers: Vec::new(),
        });
    }
    let (routes, discards) = split_routes(&file.route);
    let config = NodeConfig {
        routes,
        discards,
        vswitch: Some(VSwitchConfig {
            name: file.switch.clone(),
            vms,
            provider_addrs: vec![file.provider.address.addr()],
        }),
        control: Some(ControlConfig::Agent {
            controller: file.controller,
            token: file.token()?,
            timers: strata_southbound::Timers::default(),
        }),
        seed: u64::from(std::process::id()),
        ..NodeConfig::new(file.name.clone(), nics)
    };
    // The node's links, in its order: its own NICs (the PA), the uplink, the VM ports.
    let mut links = vec![provider, uplink];
    links.extend(vm_links);
    let driver = crate::Driver::new(config, links).map_err(|e| e.to_string())?;
    let kinds = driver.node().links();
    let expected = 2 + file.vm.len();
    if kinds.len() != expected
        || kinds[0] != LinkKind::Nic(1)
        || kinds[1] != LinkKind::Uplink
        || !matches!(kinds.get(2), None | Some(LinkKind::VmPort(_)))
    {
        return Err(format!("the host's links came out as {kinds:?}"));
    }
    Ok(driver)
}
