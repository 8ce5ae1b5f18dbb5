//! The forwarding information base: longest-prefix match over IPv4 routes.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use prefix_trie::PrefixMap;

use crate::IfIndex;

/// Most equal-cost next hops a route holds.
pub const MAX_ECMP: usize = 8;

/// Where a route sends packets: one next hop, or several of equal cost (ECMP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The interface packets leave by (of the first next hop).
    pub iface: IfIndex,
    /// The next hop, or `None` when the destination is on the link itself (a connected
    /// route).
    pub gateway: Option<Ipv4Addr>,
    /// Where the route came from; a later source may replace an earlier one's route.
    pub origin: Origin,
    /// Whether packets are forwarded, or discarded (silently, or with an ICMP error).
    pub kind: RouteKind,
    /// Further equal-cost next hops, out of line: most routes have one next hop, and a
    /// small route keeps the trie compact in cache.
    alternates: Option<Box<[(IfIndex, Ipv4Addr)]>>,
}

impl Route {
    pub fn new(iface: IfIndex, gateway: Option<Ipv4Addr>, origin: Origin) -> Route {
        Route {
            iface,
            gateway,
            origin,
            kind: RouteKind::Forward,
            alternates: None,
        }
    }

    /// A route that discards what it matches: a blackhole (silently) or a reject (with
    /// an ICMP host unreachable), as Linux's `blackhole` and `unreachable` route types.
    pub fn discard(kind: RouteKind, origin: Origin) -> Route {
        Route {
            iface: IfIndex(0),
            gateway: None,
            origin,
            kind,
            alternates: None,
        }
    }

    /// A route over several gateways (at most [`MAX_ECMP`]; the rest are ignored).
    pub fn multipath(hops: &[(IfIndex, Ipv4Addr)], origin: Origin) -> Option<Route> {
        let (&(iface, gateway), rest) = hops.split_first()?;
        let mut route = Route::new(iface, Some(gateway), origin);
        let rest = &rest[..rest.len().min(MAX_ECMP - 1)];
        if !rest.is_empty() {
            route.alternates = Some(rest.into());
        }
        Some(route)
    }

    /// Every next hop: (interface, gateway).
    pub fn next_hops(&self) -> impl Iterator<Item = (IfIndex, Option<Ipv4Addr>)> + '_ {
        std::iter::once((self.iface, self.gateway)).chain(
            self.alternates
                .iter()
                .flat_map(|a| a.iter())
                .map(|(i, g)| (*i, Some(*g))),
        )
    }

    /// The next hop for a flow with hash `hash` (the same flow always gets the same one).
    #[inline]
    pub fn pick(&self, hash: u32) -> (IfIndex, Option<Ipv4Addr>) {
        match &self.alternates {
            None => (self.iface, self.gateway),
            Some(more) => match hash as usize % (1 + more.len()) {
                0 => (self.iface, self.gateway),
                k => (more[k - 1].0, Some(more[k - 1].1)),
            },
        }
    }

    pub fn is_multipath(&self) -> bool {
        self.alternates.is_some()
    }
}

/// What a route does with the packets it matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RouteKind {
    #[default]
    Forward,
    /// Drop them without a word.
    Blackhole,
    /// Drop them and answer ICMP host unreachable.
    Reject,
}

/// Who installed a route. Ordered by preference: a connected route beats a static one,
/// which beats one learned over BGP (as administrative distances order them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// The subnet of an interface address.
    Connected,
    /// Configured.
    Static,
    /// Learned from a BGP peer.
    Bgp,
}

/// IPv4 FIB.
#[derive(Debug, Default)]
pub struct Fib {
    routes: PrefixMap<Ipv4Net, Route>,
}

impl Fib {
    pub fn new() -> Fib {
        Fib::default()
    }

    /// Installs (or replaces) the route to `prefix`. The prefix is normalised (host bits
    /// cleared) first.
    pub fn insert(&mut self, prefix: Ipv4Net, route: Route) -> Option<Route> {
        self.routes.insert(prefix.trunc(), route)
    }

    /// The route to exactly `prefix`.
    pub fn get(&self, prefix: Ipv4Net) -> Option<&Route> {
        self.routes.get(&prefix.trunc())
    }

    pub fn remove(&mut self, prefix: Ipv4Net) -> Option<Route> {
        self.routes.remove(&prefix.trunc())
    }

    /// Longest-prefix match.
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<(Ipv4Net, &Route)> {
        // A /32 prefix is always valid; `Ipv4Net::from` cannot fail.
        self.routes.get_lpm(&Ipv4Net::from(dst))
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = (Ipv4Net, &Route)> {
        self.routes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(i: usize) -> Route {
        Route::new(IfIndex(i), None, Origin::Static)
    }

    #[test]
    fn longest_prefix_wins() {
        let mut fib = Fib::new();
        fib.insert("0.0.0.0/0".parse().unwrap(), r(0));
        fib.insert("192.168.0.0/16".parse().unwrap(), r(1));
        fib.insert("192.168.133.74/32".parse().unwrap(), r(2));
        fib.insert("192.168.100.9/24".parse().unwrap(), r(3));
        let at = |a: &str| fib.lookup(a.parse().unwrap()).map(|(_, r)| r.iface.0);
        assert_eq!(at("192.168.133.74"), Some(2));
        assert_eq!(at("192.168.133.75"), Some(1));
        assert_eq!(at("192.168.100.200"), Some(3));
        assert_eq!(at("8.8.8.8"), Some(0));
        assert_eq!(
            fib.lookup("192.168.100.0".parse().unwrap())
                .map(|(p, _)| p.to_string()),
            Some("192.168.100.0/24".to_string())
        );
    }
}
