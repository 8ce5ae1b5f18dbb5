//! The collections of the northbound API and what each resource holds: its child
//! resources, the fields that are checked, and the read-only fields the controller
//! computes from other resources' references.
//!
//! Field paths are JSON pointers from the resource's root in which `*` stands for every
//! element of an array (`/properties/probes/*/properties/port`).

/// What a field must hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// An integer 0..=65535.
    Port,
    /// An AS number, 1..=4294967295.
    Asn,
    /// An IPv4 or IPv6 address.
    Ip,
    /// An address, or the empty string (not yet allocated).
    IpOrEmpty,
    /// An address prefix such as `10.0.0.0/24`.
    Prefix,
    /// An address prefix, an address, or `*`.
    PrefixOrAny,
    /// `N-M` or `N` with ports, or `*`.
    PortRange,
    /// An integer in the range.
    Int(i64, i64),
    /// One of these strings (compared without regard to case, as the Network Controller
    /// does).
    OneOf(&'static [&'static str]),
    /// A string.
    Str,
    /// `true` or `false`.
    Bool,
    /// A `{"resourceRef": ...}` to an object of one of these shapes (`*` for any id).
    RefTo(&'static [&'static str]),
    /// A list of such references.
    RefsTo(&'static [&'static str]),
}

/// A checked field.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub at: &'static str,
    pub check: Check,
    pub required: bool,
}

/// A child collection: an array of sub-resources at `properties.<name>`, each with its own
/// `resourceId` and `resourceRef` (`<parent ref>/<name>/<id>`).
#[derive(Debug, Clone, Copy)]
pub struct Child {
    pub name: &'static str,
    pub children: &'static [Child],
}

/// A read-only list (or single reference, if `single`) at `properties.<field>` of the
/// objects whose references match `on`: the objects matching `from` that refer to it
/// through their field `via`. The controller computes it; a client's value is ignored.
#[derive(Debug, Clone, Copy)]
pub struct BackRef {
    pub on: &'static str,
    pub field: &'static str,
    pub from: &'static [&'static str],
    pub via: &'static str,
    pub single: bool,
}

/// A collection.
#[derive(Debug)]
pub struct Kind {
    /// The path segment of the collection, as the API spells it.
    pub name: &'static str,
    /// For a collection of one resource (`loadBalancerManager/config`): its id.
    pub singleton: Option<&'static str>,
    pub children: &'static [Child],
    pub fields: &'static [Field],
    pub back_refs: &'static [BackRef],
}

const fn req(at: &'static str, check: Check) -> Field {
    Field {
        at,
        check,
        required: true,
    }
}

const fn opt(at: &'static str, check: Check) -> Field {
    Field {
        at,
        check,
        required: false,
    }
}

const fn leaf(name: &'static str) -> Child {
    Child {
        name,
        children: &[],
    }
}

const PROTOCOL: Check = Check::OneOf(&["Tcp", "Udp", "All"]);
const ALLOCATION: Check = Check::OneOf(&["Static", "Dynamic"]);
const IDLE_MINUTES: Check = Check::Int(4, 30);

const FRONTENDS: &str = "/loadBalancers/*/frontendIPConfigurations/*";
const POOLS: &str = "/loadBalancers/*/backendAddressPools/*";
const LB_RULES: &str = "/loadBalancers/*/loadBalancingRules/*";
const PROBES: &str = "/loadBalancers/*/probes/*";
const INBOUND_NAT: &str = "/loadBalancers/*/inboundNatRules/*";
const OUTBOUND_NAT: &str = "/loadBalancers/*/outboundNatRules/*";
const NIC_IP_CONFIGS: &str = "/networkInterfaces/*/ipConfigurations/*";
const LN_SUBNETS: &str = "/logicalNetworks/*/subnets/*";
const VNET_SUBNETS: &str = "/virtualNetworks/*/subnets/*";
const IP_POOLS: &str = "/logicalNetworks/*/subnets/*/ipPools/*";

/// Every collection the controller serves.
pub static KINDS: &[Kind] = &[
    Kind {
        name: "logicalNetworks",
        singleton: None,
        children: &[Child {
            name: "subnets",
            children: &[leaf("ipPools")],
        }],
        fields: &[
            opt("/properties/networkVirtualizationEnabled", Check::Bool),
            req(
                "/properties/subnets/*/properties/addressPrefix",
                Check::Prefix,
            ),
            opt(
                "/properties/subnets/*/properties/vlanID",
                Check::Int(0, 4094),
            ),
            opt(
                "/properties/subnets/*/properties/defaultGateways/*",
                Check::Ip,
            ),
            opt("/properties/subnets/*/properties/isPublic", Check::Bool),
            req(
                "/properties/subnets/*/properties/ipPools/*/properties/startIPAddress",
                Check::Ip,
            ),
            req(
                "/properties/subnets/*/properties/ipPools/*/properties/endIPAddress",
                Check::Ip,
            ),
        ],
        back_refs: &[BackRef {
            on: LN_SUBNETS,
            field: "ipConfigurations",
            from: &[NIC_IP_CONFIGS, FRONTENDS],
            via: "subnet",
            single: false,
        }],
    },
    Kind {
        name: "loadBalancerManager",
        singleton: Some("config"),
        children: &[],
        fields: &[
            opt("/properties/loadBalancerManagerIPAddress", Check::IpOrEmpty),
            opt("/properties/vipIpPools", Check::RefsTo(&[IP_POOLS])),
            opt("/properties/isOutboundNatEnabled", Check::Bool),
            opt("/properties/outboundNatIPExemptions/*", Check::PrefixOrAny),
        ],
        back_refs: &[],
    },
    Kind {
        name: "loadBalancerMuxes",
        singleton: None,
        children: &[],
        fields: &[
            req("/properties/routerConfiguration/localASN", Check::Asn),
            req(
                "/properties/routerConfiguration/peerRouterConfigurations/*/routerIPAddress",
                Check::Ip,
            ),
            req(
                "/properties/routerConfiguration/peerRouterConfigurations/*/peerASN",
                Check::Asn,
            ),
            opt(
                "/properties/routerConfiguration/peerRouterConfigurations/*/localIPAddress",
                Check::IpOrEmpty,
            ),
            opt(
                "/properties/routerConfiguration/peerRouterConfigurations/*/routerName",
                Check::Str,
            ),
            opt(
                "/properties/virtualServer",
                Check::RefTo(&["/virtualServers/*"]),
            ),
        ],
        back_refs: &[],
    },
    Kind {
        name: "loadBalancers",
        singleton: None,
        children: &[
            leaf("frontendIPConfigurations"),
            leaf("backendAddressPools"),
            leaf("loadBalancingRules"),
            leaf("probes"),
            leaf("inboundNatRules"),
            leaf("outboundNatRules"),
        ],
        fields: &[
            opt(
                "/properties/frontendIPConfigurations/*/properties/privateIPAddress",
                Check::IpOrEmpty,
            ),
            opt(
                "/properties/frontendIPConfigurations/*/properties/privateIPAllocationMethod",
                ALLOCATION,
            ),
            opt(
                "/properties/frontendIPConfigurations/*/properties/subnet",
                Check::RefTo(&[LN_SUBNETS, VNET_SUBNETS]),
            ),
            opt(
                "/properties/frontendIPConfigurations/*/properties/publicIPAddress",
                Check::RefTo(&["/publicIPAddresses/*"]),
            ),
            req(
                "/properties/loadBalancingRules/*/properties/protocol",
                PROTOCOL,
            ),
            req(
                "/properties/loadBalancingRules/*/properties/frontendPort",
                Check::Port,
            ),
            opt(
                "/properties/loadBalancingRules/*/properties/backendPort",
                Check::Port,
            ),
            req(
                "/properties/loadBalancingRules/*/properties/frontendIPConfigurations",
                Check::RefsTo(&[FRONTENDS]),
            ),
            req(
                "/properties/loadBalancingRules/*/properties/backendAddressPool",
                Check::RefTo(&[POOLS]),
            ),
            opt(
                "/properties/loadBalancingRules/*/properties/probe",
                Check::RefTo(&[PROBES]),
            ),
            opt(
                "/properties/loadBalancingRules/*/properties/enableFloatingIP",
                Check::Bool,
            ),
            opt(
                "/properties/loadBalancingRules/*/properties/idleTimeoutInMinutes",
                IDLE_MINUTES,
            ),
            opt(
                "/properties/loadBalancingRules/*/properties/loadDistribution",
                Check::OneOf(&["Default", "SourceIP", "SourceIPProtocol"]),
            ),
            req(
                "/properties/probes/*/properties/protocol",
                Check::OneOf(&["Tcp", "Http"]),
            ),
            req("/properties/probes/*/properties/port", Check::Port),
            opt(
                "/properties/probes/*/properties/intervalInSeconds",
                Check::Int(1, 3600),
            ),
            opt(
                "/properties/probes/*/properties/numberOfProbes",
                Check::Int(1, 100),
            ),
            opt("/properties/probes/*/properties/requestPath", Check::Str),
            req(
                "/properties/inboundNatRules/*/properties/protocol",
                PROTOCOL,
            ),
            req(
                "/properties/inboundNatRules/*/properties/frontendPort",
                Check::Port,
            ),
            req(
                "/properties/inboundNatRules/*/properties/backendPort",
                Check::Port,
            ),
            req(
                "/properties/inboundNatRules/*/properties/frontendIPConfigurations",
                Check::RefsTo(&[FRONTENDS]),
            ),
            opt(
                "/properties/inboundNatRules/*/properties/enableFloatingIP",
                Check::Bool,
            ),
            opt(
                "/properties/inboundNatRules/*/properties/idleTimeoutInMinutes",
                IDLE_MINUTES,
            ),
            req(
                "/properties/outboundNatRules/*/properties/protocol",
                PROTOCOL,
            ),
            req(
                "/properties/outboundNatRules/*/properties/frontendIPConfigurations",
                Check::RefsTo(&[FRONTENDS]),
            ),
            req(
                "/properties/outboundNatRules/*/properties/backendAddressPool",
                Check::RefTo(&[POOLS]),
            ),
        ],
        back_refs: &[
            BackRef {
                on: POOLS,
                field: "backendIPConfigurations",
                from: &[NIC_IP_CONFIGS],
                via: "loadBalancerBackendAddressPools",
                single: false,
            },
            BackRef {
                on: POOLS,
                field: "loadBalancingRules",
                from: &[LB_RULES],
                via: "backendAddressPool",
                single: false,
            },
            BackRef {
                on: POOLS,
                field: "outboundNatRules",
                from: &[OUTBOUND_NAT],
                via: "backendAddressPool",
                single: false,
            },
            BackRef {
                on: FRONTENDS,
                field: "loadBalancingRules",
                from: &[LB_RULES],
                via: "frontendIPConfigurations",
                single: false,
            },
            BackRef {
                on: FRONTENDS,
                field: "inboundNatRules",
                from: &[INBOUND_NAT],
                via: "frontendIPConfigurations",
                single: false,
            },
            BackRef {
                on: FRONTENDS,
                field: "outboundNatRules",
                from: &[OUTBOUND_NAT],
                via: "frontendIPConfigurations",
                single: false,
            },
            BackRef {
                on: PROBES,
                field: "loadBalancingRules",
                from: &[LB_RULES],
                via: "probe",
                single: false,
            },
            BackRef {
                on: INBOUND_NAT,
                field: "backendIPConfiguration",
                from: &[NIC_IP_CONFIGS],
                via: "loadBalancerInboundNatRules",
                single: true,
            },
        ],
    },
    Kind {
        name: "networkInterfaces",
        singleton: None,
        children: &[leaf("ipConfigurations")],
        fields: &[
            opt(
                "/properties/ipConfigurations/*/properties/privateIPAddress",
                Check::IpOrEmpty,
            ),
            opt(
                "/properties/ipConfigurations/*/properties/privateIPAllocationMethod",
                ALLOCATION,
            ),
            opt(
                "/properties/ipConfigurations/*/properties/subnet",
                Check::RefTo(&[LN_SUBNETS, VNET_SUBNETS]),
            ),
            opt(
                "/properties/ipConfigurations/*/properties/loadBalancerBackendAddressPools",
                Check::RefsTo(&[POOLS]),
            ),
            opt(
                "/properties/ipConfigurations/*/properties/loadBalancerInboundNatRules",
                Check::RefsTo(&[INBOUND_NAT]),
            ),
            opt(
                "/properties/ipConfigurations/*/properties/publicIPAddress",
                Check::RefTo(&["/publicIPAddresses/*"]),
            ),
            opt(
                "/properties/ipConfigurations/*/properties/accessControlList",
                Check::RefTo(&["/accessControlLists/*"]),
            ),
            opt("/properties/privateMacAddress", Check::Str),
            opt("/properties/server", Check::RefTo(&["/servers/*"])),
        ],
        back_refs: &[],
    },
    Kind {
        name: "publicIPAddresses",
        singleton: None,
        children: &[],
        fields: &[
            opt("/properties/ipAddress", Check::IpOrEmpty),
            opt("/properties/publicIPAllocationMethod", ALLOCATION),
            opt(
                "/properties/publicIPAddressVersion",
                Check::OneOf(&["IPv4", "IPv6"]),
            ),
            opt("/properties/idleTimeoutInMinutes", IDLE_MINUTES),
        ],
        back_refs: &[BackRef {
            on: "/publicIPAddresses/*",
            field: "ipConfiguration",
            from: &[FRONTENDS, NIC_IP_CONFIGS],
            via: "publicIPAddress",
            single: true,
        }],
    },
    Kind {
        name: "servers",
        singleton: None,
        children: &[leaf("networkInterfaces")],
        fields: &[
            opt(
                "/properties/connections/*/managementAddresses/*",
                Check::Str,
            ),
            opt(
                "/properties/connections/*/credential",
                Check::RefTo(&["/credentials/*"]),
            ),
        ],
        back_refs: &[BackRef {
            on: "/servers/*",
            field: "virtualNetworkInterfaces",
            from: &["/networkInterfaces/*"],
            via: "server",
            single: false,
        }],
    },
    Kind {
        name: "virtualNetworks",
        singleton: None,
        children: &[leaf("subnets")],
        fields: &[
            req("/properties/addressSpace/addressPrefixes/*", Check::Prefix),
            opt(
                "/properties/logicalNetwork",
                Check::RefTo(&["/logicalNetworks/*"]),
            ),
            req(
                "/properties/subnets/*/properties/addressPrefix",
                Check::Prefix,
            ),
            opt(
                "/properties/subnets/*/properties/accessControlList",
                Check::RefTo(&["/accessControlLists/*"]),
            ),
        ],
        back_refs: &[BackRef {
            on: VNET_SUBNETS,
            field: "ipConfigurations",
            from: &[NIC_IP_CONFIGS, FRONTENDS],
            via: "subnet",
            single: false,
        }],
    },
    Kind {
        name: "accessControlLists",
        singleton: None,
        children: &[leaf("aclRules")],
        fields: &[
            req("/properties/aclRules/*/properties/protocol", PROTOCOL),
            req(
                "/properties/aclRules/*/properties/action",
                Check::OneOf(&["Allow", "Deny"]),
            ),
            req(
                "/properties/aclRules/*/properties/priority",
                Check::Int(100, 65500),
            ),
            req(
                "/properties/aclRules/*/properties/type",
                Check::OneOf(&["Inbound", "Outbound"]),
            ),
            opt(
                "/properties/aclRules/*/properties/sourceAddressPrefix",
                Check::PrefixOrAny,
            ),
            opt(
                "/properties/aclRules/*/properties/destinationAddressPrefix",
                Check::PrefixOrAny,
            ),
            opt(
                "/properties/aclRules/*/properties/sourcePortRange",
                Check::PortRange,
            ),
            opt(
                "/properties/aclRules/*/properties/destinationPortRange",
                Check::PortRange,
            ),
        ],
        back_refs: &[
            BackRef {
                on: "/accessControlLists/*",
                field: "ipConfigurations",
                from: &[NIC_IP_CONFIGS],
                via: "accessControlList",
                single: false,
            },
            BackRef {
                on: "/accessControlLists/*",
                field: "subnets",
                from: &[VNET_SUBNETS],
                via: "accessControlList",
                single: false,
            },
        ],
    },
    // The rest of the Network Controller's collections, kept and referenced as they are.
    Kind {
        name: "credentials",
        singleton: None,
        children: &[],
        fields: &[opt(
            "/properties/type",
            Check::OneOf(&["UsernamePassword", "X509Certificate", "SnmpCommunityString"]),
        )],
        back_refs: &[],
    },
    Kind {
        name: "virtualServers",
        singleton: None,
        children: &[],
        fields: &[],
        back_refs: &[],
    },
    Kind {
        name: "macPools",
        singleton: None,
        children: &[],
        fields: &[],
        back_refs: &[],
    },
    Kind {
        name: "routeTables",
        singleton: None,
        children: &[leaf("routes")],
        fields: &[opt(
            "/properties/routes/*/properties/addressPrefix",
            Check::Prefix,
        )],
        back_refs: &[],
    },
    Kind {
        name: "gateways",
        singleton: None,
        children: &[],
        fields: &[],
        back_refs: &[],
    },
    Kind {
        name: "gatewayPools",
        singleton: None,
        children: &[],
        fields: &[],
        back_refs: &[],
    },
    Kind {
        name: "virtualGateways",
        singleton: None,
        children: &[],
        fields: &[],
        back_refs: &[],
    },
    Kind {
        name: "virtualNetworkManager",
        singleton: Some("configuration"),
        children: &[],
        fields: &[],
        back_refs: &[],
    },
    Kind {
        name: "iDNSServer",
        singleton: Some("configuration"),
        children: &[],
        fields: &[],
        back_refs: &[],
    },
];

/// The collection named `name` (compared without regard to case: references in the
/// Network Controller's own documents spell `/Gateways/...`).
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name.eq_ignore_ascii_case(name))
}

/// Whether reference segments match a pattern such as `/loadBalancers/*/probes/*`
/// (names without regard to case; `*` matches any id).
pub fn matches(pattern: &str, reference: &str) -> bool {
    let mut p = pattern.split('/');
    let mut r = reference.split('/');
    loop {
        match (p.next(), r.next()) {
            (None, None) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => {}
            _ => return false,
        }
    }
}
