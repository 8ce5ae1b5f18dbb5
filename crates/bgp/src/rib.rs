//! Routes learned from neighbors: each neighbor's Adj-RIB-In, and best-path selection
//! over them (RFC 4271 section 9.1) with multipath.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::codec::{AsPath, Attribute, FLAGS_OPTIONAL_TRANSITIVE, Origin, Update, afi, attr};

/// A path: what selection compares and what is passed on when the route is announced
/// again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub next_hop: IpAddr,
    /// LOCAL_PREF as an internal neighbor sent it (100 when absent); selection ignores it
    /// for routes from external neighbors (RFC 4271 9.1.1), and the codec discards it
    /// from them (RFC 7606 section 7.5).
    pub local_pref: u32,
    pub as_path: AsPath,
    pub origin: Origin,
    /// MULTI_EXIT_DISC; absent compares as 0, the lowest (RFC 4271 9.1.2.2 (d)).
    pub med: Option<u32>,
    /// RFC 1997 communities, passed on; the well-known ones limit where (see
    /// [`crate::codec::community`]).
    pub communities: Vec<u32>,
    /// The other attributes passed on to the next speaker: ATOMIC_AGGREGATE, AGGREGATOR,
    /// extended and large communities as they came, and optional transitive attributes
    /// this speaker does not know, with the Partial bit set (RFC 4271 section 5).
    pub transitive: Vec<Attribute>,
}

/// The LOCAL_PREF of a path that has none (customary; RFC 4271 leaves it to policy).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

impl Path {
    /// A path this speaker originates, with `next_hop`.
    pub fn local(next_hop: IpAddr) -> Path {
        Path {
            next_hop,
            local_pref: DEFAULT_LOCAL_PREF,
            as_path: AsPath::default(),
            origin: Origin::Igp,
            med: None,
            communities: Vec::new(),
            transitive: Vec::new(),
        }
    }

    /// The path of an UPDATE's attributes, with `next_hop` (which comes from NEXT_HOP
    /// or from MP_REACH_NLRI, depending on the family).
    pub fn from_update(u: &Update, next_hop: IpAddr) -> Path {
        let mut path = Path {
            origin: Origin::Incomplete,
            ..Path::local(next_hop)
        };
        for a in &u.attributes {
            match a {
                Attribute::Origin(o) => path.origin = *o,
                Attribute::AsPath(p) => path.as_path = p.clone(),
                Attribute::Med(m) => path.med = Some(*m),
                Attribute::LocalPref(l) => path.local_pref = *l,
                Attribute::Communities(c) => path.communities = c.clone(),
                Attribute::AtomicAggregate
                | Attribute::Aggregator { .. }
                | Attribute::ExtendedCommunities(_)
                | Attribute::Ipv6ExtendedCommunities(_)
                | Attribute::LargeCommunities(_) => path.transitive.push(a.clone()),
                Attribute::Unknown { flags, .. }
                    if flags & FLAGS_OPTIONAL_TRANSITIVE == FLAGS_OPTIONAL_TRANSITIVE =>
                {
                    path.transitive.push(a.clone());
                }
                _ => {}
            }
        }
        path
    }

    /// Whether `asn` is on the AS_PATH (a loop, if `asn` is ours: RFC 4271 9.1.2).
    pub fn traverses(&self, asn: u32) -> bool {
        self.as_path.contains(asn)
    }

    /// Whether the path carries community `c`.
    pub fn has_community(&self, c: u32) -> bool {
        self.communities.contains(&c)
    }
}

/// What importing an UPDATE from a neighbor checks it against.
#[derive(Debug, Clone, Copy)]
pub struct Import<'a> {
    pub local_as: u32,
    /// Our addresses: a route whose next hop is one of them is ignored (RFC 4271 6.3).
    pub own_addresses: &'a [IpAddr],
    /// Our address on this session, ours too.
    pub session_address: Option<IpAddr>,
}

impl Import<'_> {
    fn is_ours(&self, address: IpAddr) -> bool {
        self.session_address == Some(address) || self.own_addresses.contains(&address)
    }
}

/// One neighbor's Adj-RIB-In, IPv4 and IPv6 unicast.
///
/// The prefixes of one UPDATE share one [`Path`]: a table sent as UPDATEs of hundreds of
/// prefixes costs a map entry per route, not a copy of its attributes (see
/// `tests/memory.rs` for the figure). The two families have their own maps, so an IPv4
/// route's key is 5 bytes, not the 18 of an [`IpNet`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdjRibIn {
    v4: BTreeMap<Ipv4Net, Arc<Path>>,
    v6: BTreeMap<Ipv6Net, Arc<Path>>,
}

impl AdjRibIn {
    pub fn new() -> AdjRibIn {
        AdjRibIn::default()
    }

    pub fn get(&self, prefix: &IpNet) -> Option<&Arc<Path>> {
        match prefix {
            IpNet::V4(p) => self.v4.get(p),
            IpNet::V6(p) => self.v6.get(p),
        }
    }

    /// Every route, IPv4 first, each family in prefix order.
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &Arc<Path>)> {
        let v4 = self.v4.iter().map(|(p, path)| (IpNet::V4(*p), path));
        let v6 = self.v6.iter().map(|(p, path)| (IpNet::V6(*p), path));
        v4.chain(v6)
    }

    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// Removes a prefix; whether it was there.
    pub fn remove(&mut self, prefix: &IpNet) -> bool {
        match prefix {
            IpNet::V4(p) => self.v4.remove(p).is_some(),
            IpNet::V6(p) => self.v6.remove(p).is_some(),
        }
    }

    pub(crate) fn insert(&mut self, prefix: IpNet, path: Arc<Path>) {
        self.replace(prefix, path);
    }

    /// Sets a prefix's path; returns the one it had.
    pub(crate) fn replace(&mut self, prefix: IpNet, path: Arc<Path>) -> Option<Arc<Path>> {
        match prefix {
            IpNet::V4(p) => self.v4.insert(p, path),
            IpNet::V6(p) => self.v6.insert(p, path),
        }
    }

    /// Empties the table; returns the prefixes it held.
    pub fn clear(&mut self) -> Vec<IpNet> {
        let v4 = std::mem::take(&mut self.v4).into_keys().map(IpNet::V4);
        let v6 = std::mem::take(&mut self.v6).into_keys().map(IpNet::V6);
        v4.chain(v6).collect()
    }

    /// Applies an UPDATE; returns the prefixes whose entry changed.
    ///
    /// IPv4 comes in the UPDATE's own fields with NEXT_HOP, IPv6 (and IPv4, from some
    /// speakers) in MP_REACH_NLRI and MP_UNREACH_NLRI (RFC 4760). A treat-as-withdraw
    /// UPDATE (RFC 7606) withdraws everything it announced. A path through `local_as` is
    /// a loop (RFC 4271 9.1.2): it is not kept, and it replaces (so withdraws) what the
    /// neighbor had sent for the prefix. So is a path whose next hop is one of our own
    /// addresses (RFC 4271 6.3: semantically incorrect, the route is ignored).
    pub fn apply(&mut self, u: &Update, import: &Import<'_>) -> Vec<IpNet> {
        let mut changed = Vec::new();
        let withdraw = |rib: &mut AdjRibIn, changed: &mut Vec<IpNet>, p: IpNet| {
            if rib.remove(&p) {
                changed.push(p);
            }
        };
        for p in &u.withdrawn {
            withdraw(self, &mut changed, IpNet::V4(*p));
        }
        for a in &u.attributes {
            if let Attribute::MpUnreach(m) = a {
                for p in &m.withdrawn {
                    withdraw(self, &mut changed, *p);
                }
            }
        }
        let mp_reach = u.attributes.iter().find_map(|a| match a {
            Attribute::MpReach(m) if m.safi == crate::codec::SAFI_UNICAST => Some(m),
            _ => None,
        });
        let announced = || {
            let v4 = u.nlri.iter().map(|p| IpNet::V4(*p));
            let mp = mp_reach.into_iter().flat_map(|m| m.nlri.iter().copied());
            v4.chain(mp)
        };
        if u.treat_as_withdraw.is_some() {
            for p in announced() {
                withdraw(self, &mut changed, p);
            }
            return changed;
        }
        let mut paths = Vec::with_capacity(2);
        if let Some(Attribute::NextHop(hop)) = u.attribute(attr::NEXT_HOP)
            && !u.nlri.is_empty()
        {
            paths.push((
                Arc::new(Path::from_update(u, IpAddr::V4(*hop))),
                u.nlri.iter().map(|p| IpNet::V4(*p)).collect::<Vec<_>>(),
            ));
        }
        if let Some(m) = mp_reach
            && let Some(hop) = mp_next_hop(m.afi, &m.next_hops)
        {
            paths.push((Arc::new(Path::from_update(u, hop)), m.nlri.clone()));
        }
        for (path, prefixes) in paths {
            let looped = path.traverses(import.local_as) || import.is_ours(path.next_hop);
            for p in prefixes {
                if looped {
                    withdraw(self, &mut changed, p);
                } else {
                    self.insert(p, Arc::clone(&path));
                    changed.push(p);
                }
            }
        }
        changed
    }
}

/// The next hop of an MP_REACH_NLRI: for IPv6 the global address (a link-local one
/// may follow it, RFC 2545 section 3).
fn mp_next_hop(family: u16, hops: &[IpAddr]) -> Option<IpAddr> {
    match family {
        afi::IPV4 | afi::IPV6 => hops.first().copied(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{AttributeError, MpReach, MpUnreach, SAFI_UNICAST};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const US: Import<'static> = Import {
        local_as: 64500,
        own_addresses: &[],
        session_address: None,
    };

    fn update(path: Vec<u32>, prefix: &str, next_hop: [u8; 4]) -> Update {
        Update {
            attributes: vec![
                Attribute::Origin(Origin::Igp),
                Attribute::AsPath(AsPath::sequence(path)),
                Attribute::NextHop(Ipv4Addr::from(next_hop)),
            ],
            nlri: vec![prefix.parse().unwrap()],
            ..Update::default()
        }
    }

    #[test]
    fn paths_through_our_own_as_are_loops() {
        let mut rib = AdjRibIn::new();
        assert_eq!(
            rib.apply(
                &update(vec![64501], "192.168.133.74/32", [10, 0, 0, 1]),
                &US
            )
            .len(),
            1
        );
        rib.apply(
            &update(vec![64501, 64500], "192.168.133.74/32", [10, 0, 0, 1]),
            &US,
        );
        assert!(rib.is_empty());
    }

    #[test]
    fn treat_as_withdraw_removes_what_the_update_announced() {
        let mut rib = AdjRibIn::new();
        rib.apply(&update(vec![64501], "10.0.0.0/8", [10, 0, 0, 1]), &US);
        let mut bad = update(vec![64501], "10.0.0.0/8", [10, 0, 0, 1]);
        bad.treat_as_withdraw = Some(AttributeError {
            code: 1,
            reason: "test",
        });
        assert_eq!(
            rib.apply(&bad, &US),
            vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]
        );
        assert!(rib.is_empty());
    }

    #[test]
    fn ipv6_routes_come_and_go_in_mp_attributes() {
        let prefix: IpNet = "2001:db8:133::74/128".parse().unwrap();
        let hop: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let link_local: Ipv6Addr = "fe80::1".parse().unwrap();
        let announce = Update {
            attributes: vec![
                Attribute::Origin(Origin::Igp),
                Attribute::AsPath(AsPath::sequence(vec![64501])),
                Attribute::MpReach(MpReach {
                    afi: afi::IPV6,
                    safi: SAFI_UNICAST,
                    next_hops: vec![hop.into(), link_local.into()],
                    nlri: vec![prefix],
                }),
            ],
            ..Update::default()
        };
        let mut rib = AdjRibIn::new();
        assert_eq!(rib.apply(&announce, &US), vec![prefix]);
        assert_eq!(rib.get(&prefix).map(|p| p.next_hop), Some(hop.into()));
        let withdraw = Update {
            attributes: vec![Attribute::MpUnreach(MpUnreach {
                afi: afi::IPV6,
                safi: SAFI_UNICAST,
                withdrawn: vec![prefix],
            })],
            ..Update::default()
        };
        assert_eq!(rib.apply(&withdraw, &US), vec![prefix]);
        assert!(rib.is_empty());
    }

    #[test]
    fn a_path_takes_the_updates_origin_and_incomplete_without_one() {
        let nh = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let mut u = update(vec![64501], "10.0.0.0/8", [10, 0, 0, 1]);
        u.attributes[0] = Attribute::Origin(Origin::Egp);
        assert_eq!(Path::from_update(&u, nh).origin, Origin::Egp);
        u.attributes.remove(0);
        assert_eq!(Path::from_update(&u, nh).origin, Origin::Incomplete);
    }

    #[test]
    fn removing_says_whether_it_was_there() {
        let mut rib = AdjRibIn::new();
        rib.apply(&update(vec![64501], "10.0.0.0/8", [10, 0, 0, 1]), &US);
        assert!(!rib.remove(&"10.1.0.0/16".parse().unwrap()));
        assert!(rib.remove(&"10.0.0.0/8".parse().unwrap()));
        assert!(!rib.remove(&"10.0.0.0/8".parse().unwrap()));
        assert!(!rib.remove(&"2001:db8::/32".parse().unwrap()));
    }

    #[test]
    fn both_families_count() {
        let mut rib = AdjRibIn::new();
        assert!(rib.is_empty());
        rib.apply(&update(vec![64501], "10.0.0.0/8", [10, 0, 0, 1]), &US);
        rib.apply(&update(vec![64501], "10.1.0.0/16", [10, 0, 0, 1]), &US);
        assert!(!rib.is_empty());
        let v6 = Update {
            attributes: vec![
                Attribute::Origin(Origin::Igp),
                Attribute::AsPath(AsPath::sequence(vec![64501])),
                Attribute::MpReach(MpReach {
                    afi: afi::IPV6,
                    safi: SAFI_UNICAST,
                    next_hops: vec![IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))],
                    nlri: vec!["2001:db8:1::/48".parse().unwrap()],
                }),
            ],
            ..Update::default()
        };
        rib.apply(&v6, &US);
        assert_eq!(rib.len(), 3);
        rib.apply(
            &update(vec![64501, 64500], "10.0.0.0/8", [10, 0, 0, 1]),
            &US,
        );
        rib.apply(
            &update(vec![64501, 64500], "10.1.0.0/16", [10, 0, 0, 1]),
            &US,
        );
        assert_eq!(rib.len(), 1);
        assert!(!rib.is_empty(), "the IPv6 route is still there");
    }
}

#[cfg(test)]
mod safi_tests {
    use super::*;
    use crate::codec::MpReach;

    #[test]
    fn routes_of_another_safi_are_not_taken_for_unicast() {
        let announce = |safi| Update {
            attributes: vec![
                Attribute::Origin(Origin::Igp),
                Attribute::AsPath(AsPath::sequence(vec![64501])),
                Attribute::MpReach(MpReach {
                    afi: afi::IPV6,
                    safi,
                    next_hops: vec!["2001:db8::1".parse().unwrap()],
                    nlri: vec!["2001:db8:1::/48".parse().unwrap()],
                }),
            ],
            ..Update::default()
        };
        let import = Import {
            local_as: 64500,
            own_addresses: &[],
            session_address: None,
        };
        let mut rib = AdjRibIn::new();
        assert!(rib.apply(&announce(2), &import).is_empty(), "multicast");
        assert!(rib.is_empty());
        assert_eq!(rib.apply(&announce(1), &import).len(), 1);
    }
}

#[cfg(test)]
mod next_hop_tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn a_route_whose_next_hop_is_ours_is_ignored() {
        let ours = [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))];
        let import = Import {
            local_as: 64500,
            own_addresses: &ours,
            session_address: None,
        };
        let update = |hop: [u8; 4]| Update {
            attributes: vec![
                Attribute::Origin(Origin::Igp),
                Attribute::AsPath(AsPath::sequence(vec![64501])),
                Attribute::NextHop(Ipv4Addr::from(hop)),
            ],
            nlri: vec!["10.9.0.0/16".parse().unwrap()],
            ..Update::default()
        };
        let mut rib = AdjRibIn::new();
        assert_eq!(rib.apply(&update([10, 0, 0, 1]), &import).len(), 1);
        // The same prefix again with our own address as next hop replaces (so
        // withdraws) what the neighbor had sent.
        assert_eq!(rib.apply(&update([10, 0, 0, 2]), &import).len(), 1);
        assert!(rib.is_empty());
        assert!(rib.apply(&update([10, 0, 0, 2]), &import).is_empty());
    }
}
