//! Routes learned from neighbors: each neighbor's Adj-RIB-In, and best-path selection
//! over them (RFC 4271 section 9.1) with multipath.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::codec::{AsPath, Attribute, FLAG_OPTIONAL, FLAG_TRANSITIVE, Origin, Update, afi, attr};

/// A path: what selection compares and what is passed on when the route is announced
/// again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub next_hop: IpAddr,
    /// RFC 4271: LOCAL_PREF is absent from eBGP; 100 is the customary default.
    pub local_pref: u32,
    pub as_path: AsPath,
    pub origin: Origin,
    /// MULTI_EXIT_DISC; absent compares as 0.
    pub med: Option<u32>,
    /// RFC 1997 communities, passed on.
    pub communities: Vec<u32>,
    /// Optional transitive attributes this speaker does not know, passed on with the
    /// Partial bit set (RFC 4271 section 5).
    pub transitive: Vec<Attribute>,
}

impl Path {
    /// The path of an UPDATE's attributes, with `next_hop` (which comes from NEXT_HOP
    /// or from MP_REACH_NLRI, depending on the family).
    pub fn from_update(u: &Update, next_hop: IpAddr) -> Path {
        let mut path = Path {
            next_hop,
            local_pref: 100,
            as_path: AsPath::default(),
            origin: Origin::Incomplete,
            med: None,
            communities: Vec::new(),
            transitive: Vec::new(),
        };
        for a in &u.attributes {
            match a {
                Attribute::Origin(o) => path.origin = *o,
                Attribute::AsPath(p) => path.as_path = p.clone(),
                Attribute::Med(m) => path.med = Some(*m),
                Attribute::LocalPref(l) => path.local_pref = *l,
                Attribute::Communities(c) => path.communities = c.clone(),
                Attribute::Unknown { flags, .. }
                    if flags & (FLAG_OPTIONAL | FLAG_TRANSITIVE)
                        == FLAG_OPTIONAL | FLAG_TRANSITIVE =>
                {
                    path.transitive.push(a.clone());
                }
                _ => {}
            }
        }
        path
    }

    /// Smaller is better: higher LOCAL_PREF, shorter AS_PATH, lower ORIGIN, lower MED
    /// (RFC 4271 9.1.2.2, the steps that apply between eBGP neighbors of one AS).
    pub fn rank(&self) -> (std::cmp::Reverse<u32>, usize, Origin, u32) {
        (
            std::cmp::Reverse(self.local_pref),
            self.as_path.len(),
            self.origin,
            self.med.unwrap_or(0),
        )
    }

    /// Whether `asn` is on the AS_PATH (a loop, if `asn` is ours: RFC 4271 9.1.2).
    pub fn traverses(&self, asn: u32) -> bool {
        self.as_path.segments.iter().any(|s| s.asns.contains(&asn))
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
    /// neighbor had sent for the prefix.
    pub fn apply(&mut self, u: &Update, local_as: u32) -> Vec<IpNet> {
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
            let looped = path.traverses(local_as);
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

/// The next hops of the best paths to a prefix over several Adj-RIBs-In: every path that
/// ties with the best (multipath), sorted, without repeats. Empty when no table has it.
pub fn best_next_hops<'a>(
    tables: impl IntoIterator<Item = &'a AdjRibIn>,
    prefix: &IpNet,
) -> Vec<IpAddr> {
    let paths: Vec<&Arc<Path>> = tables.into_iter().filter_map(|t| t.get(prefix)).collect();
    let Some(best) = paths.iter().map(|p| p.rank()).min() else {
        return Vec::new();
    };
    let mut hops: Vec<IpAddr> = paths
        .iter()
        .filter(|p| p.rank() == best)
        .map(|p| p.next_hop)
        .collect();
    hops.sort();
    hops.dedup();
    hops
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{AttributeError, MpReach, MpUnreach, SAFI_UNICAST};
    use std::net::{Ipv4Addr, Ipv6Addr};

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
                64500
            )
            .len(),
            1
        );
        rib.apply(
            &update(vec![64501, 64500], "192.168.133.74/32", [10, 0, 0, 1]),
            64500,
        );
        assert!(rib.is_empty());
    }

    #[test]
    fn treat_as_withdraw_removes_what_the_update_announced() {
        let mut rib = AdjRibIn::new();
        rib.apply(&update(vec![64501], "10.0.0.0/8", [10, 0, 0, 1]), 64500);
        let mut bad = update(vec![64501], "10.0.0.0/8", [10, 0, 0, 1]);
        bad.treat_as_withdraw = Some(AttributeError {
            code: 1,
            reason: "test",
        });
        assert_eq!(
            rib.apply(&bad, 64500),
            vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]
        );
        assert!(rib.is_empty());
    }

    #[test]
    fn best_paths_with_multipath() {
        let prefix: IpNet = "192.168.133.74/32".parse().unwrap();
        let mut a = AdjRibIn::new();
        let mut b = AdjRibIn::new();
        let mut c = AdjRibIn::new();
        a.apply(
            &update(vec![64501], "192.168.133.74/32", [10, 0, 0, 2]),
            64500,
        );
        b.apply(
            &update(vec![64501], "192.168.133.74/32", [10, 0, 0, 1]),
            64500,
        );
        c.apply(
            &update(vec![64502, 64501], "192.168.133.74/32", [10, 0, 0, 3]),
            64500,
        );
        assert_eq!(
            best_next_hops([&a, &b, &c], &prefix),
            vec![
                IpAddr::from(Ipv4Addr::new(10, 0, 0, 1)),
                IpAddr::from(Ipv4Addr::new(10, 0, 0, 2))
            ]
        );
        assert_eq!(
            best_next_hops([&c], &prefix),
            vec![IpAddr::from(Ipv4Addr::new(10, 0, 0, 3))]
        );
        assert!(best_next_hops([], &prefix).is_empty());
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
        assert_eq!(rib.apply(&announce, 64500), vec![prefix]);
        assert_eq!(rib.get(&prefix).map(|p| p.next_hop), Some(hop.into()));
        let withdraw = Update {
            attributes: vec![Attribute::MpUnreach(MpUnreach {
                afi: afi::IPV6,
                safi: SAFI_UNICAST,
                withdrawn: vec![prefix],
            })],
            ..Update::default()
        };
        assert_eq!(rib.apply(&withdraw, 64500), vec![prefix]);
        assert!(rib.is_empty());
    }
}
