//! Routes learned from neighbors: each neighbor's Adj-RIB-In, and best-path selection
//! over them (RFC 4271 section 9.1) with multipath.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use ipnet::Ipv4Net;

use crate::codec::{Attribute, Update, attr};

/// A path as selection compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub next_hop: Ipv4Addr,
    /// RFC 4271: LOCAL_PREF is absent from eBGP; 100 is the customary default.
    pub local_pref: u32,
    /// The AS numbers of the AS_PATH, in order (sets flattened).
    pub as_path: Vec<u32>,
    /// The AS_PATH length as selection counts it (a set counts as one).
    pub as_path_len: usize,
    pub origin: u8,
    pub med: u32,
}

impl Path {
    /// Smaller is better: higher LOCAL_PREF, shorter AS_PATH, lower ORIGIN, lower MED
    /// (RFC 4271 9.1.2.2, the steps that apply between eBGP neighbors of one AS).
    pub fn rank(&self) -> (std::cmp::Reverse<u32>, usize, u8, u32) {
        (
            std::cmp::Reverse(self.local_pref),
            self.as_path_len,
            self.origin,
            self.med,
        )
    }
}

/// One neighbor's Adj-RIB-In (IPv4 unicast).
///
/// The prefixes of one UPDATE share one [`Path`]: a table sent as UPDATEs of hundreds of
/// prefixes costs a map entry per route, not a copy of its attributes (see
/// `tests/memory.rs` for the figure).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdjRibIn {
    routes: BTreeMap<Ipv4Net, Arc<Path>>,
}

impl AdjRibIn {
    pub fn new() -> AdjRibIn {
        AdjRibIn::default()
    }

    pub fn get(&self, prefix: &Ipv4Net) -> Option<&Path> {
        self.routes.get(prefix).map(|p| &**p)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&Ipv4Net, &Path)> {
        self.routes.iter().map(|(prefix, path)| (prefix, &**path))
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Removes a prefix; whether it was there.
    pub fn remove(&mut self, prefix: &Ipv4Net) -> bool {
        self.routes.remove(prefix).is_some()
    }

    /// Empties the table; returns the prefixes it held.
    pub fn clear(&mut self) -> Vec<Ipv4Net> {
        std::mem::take(&mut self.routes).into_keys().collect()
    }

    /// Applies an UPDATE; returns the prefixes whose entry changed.
    ///
    /// A treat-as-withdraw UPDATE (RFC 7606) withdraws everything it announced. A path
    /// through `local_as` is a loop (RFC 4271 9.1.2): it is not kept, and it replaces (so
    /// withdraws) what the neighbor had sent for the prefix.
    pub fn apply(&mut self, u: &Update, local_as: u32) -> Vec<Ipv4Net> {
        let mut changed = Vec::new();
        let withdrawn: Vec<Ipv4Net> = if u.treat_as_withdraw.is_some() {
            u.withdrawn.iter().chain(&u.nlri).copied().collect()
        } else {
            u.withdrawn.clone()
        };
        for p in withdrawn {
            if self.routes.remove(&p).is_some() {
                changed.push(p);
            }
        }
        if u.treat_as_withdraw.is_some() {
            return changed;
        }
        let Some(Attribute::NextHop(next_hop)) = u.attribute(attr::NEXT_HOP) else {
            return changed;
        };
        let (as_path, as_path_len) = match u.attribute(attr::AS_PATH) {
            Some(Attribute::AsPath(a)) => (
                a.segments
                    .iter()
                    .flat_map(|s| s.asns.iter().copied())
                    .collect(),
                a.len(),
            ),
            _ => (Vec::new(), 0),
        };
        let path = Arc::new(Path {
            next_hop: *next_hop,
            local_pref: match u.attribute(attr::LOCAL_PREF) {
                Some(Attribute::LocalPref(v)) => *v,
                _ => 100,
            },
            as_path,
            as_path_len,
            origin: match u.attribute(attr::ORIGIN) {
                Some(Attribute::Origin(o)) => *o as u8,
                _ => 2,
            },
            med: match u.attribute(attr::MED) {
                Some(Attribute::Med(m)) => *m,
                _ => 0,
            },
        });
        let looped = path.as_path.contains(&local_as);
        for p in &u.nlri {
            if looped {
                if self.routes.remove(p).is_some() {
                    changed.push(*p);
                }
            } else {
                self.routes.insert(*p, Arc::clone(&path));
                changed.push(*p);
            }
        }
        changed
    }
}

/// The next hops of the best paths to a prefix over several Adj-RIBs-In: every path that
/// ties with the best (multipath), sorted, without repeats. Empty when no table has it.
pub fn best_next_hops<'a>(
    tables: impl IntoIterator<Item = &'a AdjRibIn>,
    prefix: &Ipv4Net,
) -> Vec<Ipv4Addr> {
    let paths: Vec<&Path> = tables.into_iter().filter_map(|t| t.get(prefix)).collect();
    let Some(best) = paths.iter().map(|p| p.rank()).min() else {
        return Vec::new();
    };
    let mut hops: Vec<Ipv4Addr> = paths
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
    use crate::codec::{AsPath, AttributeError, Origin};

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
            vec!["10.0.0.0/8".parse::<Ipv4Net>().unwrap()]
        );
        assert!(rib.is_empty());
    }

    #[test]
    fn best_paths_with_multipath() {
        let prefix: Ipv4Net = "192.168.133.74/32".parse().unwrap();
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
            vec![Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]
        );
        assert_eq!(
            best_next_hops([&c], &prefix),
            vec![Ipv4Addr::new(10, 0, 0, 3)]
        );
        assert!(best_next_hops([], &prefix).is_empty());
    }
}
