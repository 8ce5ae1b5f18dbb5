//! VIP pools: the address ranges the load balancer manager hands VIPs out of.

use std::net::IpAddr;

use serde_json::Value;

use crate::doc::Invalid;

/// An ipPool of a logical network's subnet, named in the manager's `vipIpPools`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub reference: String,
    pub start: IpAddr,
    pub end: IpAddr,
}

fn number(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn address(like: IpAddr, n: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(u32::try_from(n).unwrap_or(u32::MAX).into()),
        IpAddr::V6(_) => IpAddr::V6(n.into()),
    }
}

impl Pool {
    /// The pool an ipPool object describes.
    pub fn of(reference: &str, pool: &Value) -> Option<Pool> {
        let props = pool.get("properties")?;
        let get = |k: &str| props.get(k)?.as_str()?.parse::<IpAddr>().ok();
        Some(Pool {
            reference: reference.to_string(),
            start: get("startIPAddress")?,
            end: get("endIPAddress")?,
        })
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        a.is_ipv4() == self.start.is_ipv4()
            && (number(self.start)..=number(self.end)).contains(&number(a))
    }

    /// Addresses in the pool.
    pub fn size(&self) -> u128 {
        number(self.end).saturating_sub(number(self.start)) + 1
    }
}

/// The first address of the pools, in order, for which `used` is false.
pub fn next_free(pools: &[Pool], used: &dyn Fn(IpAddr) -> bool) -> Option<IpAddr> {
    next_free_after(pools, used, None)
}

/// The first free address after `after` (in pool order, wrapping around to the first
/// pool's start), or from the start without it. Allocating after the last address
/// given out keeps a run of allocations from rescanning every address in use.
pub fn next_free_after(
    pools: &[Pool],
    used: &dyn Fn(IpAddr) -> bool,
    after: Option<IpAddr>,
) -> Option<IpAddr> {
    let resume = after.and_then(|a| {
        let i = pools.iter().position(|p| p.contains(a))?;
        Some((i, number(a) + 1))
    });
    let scan = |p: &Pool, from: u128| {
        (from.max(number(p.start))..=number(p.end))
            .map(|n| address(p.start, n))
            .find(|a| !used(*a))
    };
    match resume {
        None => pools.iter().find_map(|p| scan(p, number(p.start))),
        Some((i, from)) => scan(&pools[i], from)
            .or_else(|| pools[i + 1..].iter().find_map(|p| scan(p, number(p.start))))
            .or_else(|| pools[..=i].iter().find_map(|p| scan(p, number(p.start)))),
    }
}

/// Checks the ipPools of a logical network: each range in order and of one family. (A
/// pool need not lie inside its subnet's prefix: the Network Controller's own documents
/// have a VIP pool outside the transit subnet it hangs under.)
pub fn check_ip_pools(doc: &Value) -> Result<(), Invalid> {
    let subnets = doc
        .pointer("/properties/subnets")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, subnet) in subnets.iter().enumerate() {
        let pools = subnet
            .pointer("/properties/ipPools")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for (j, pool) in pools.iter().enumerate() {
            let at = format!("/properties/subnets/{i}/properties/ipPools/{j}/properties");
            let Some(p) = Pool::of("", pool) else {
                continue;
            };
            if p.start.is_ipv4() != p.end.is_ipv4() {
                return Err(Invalid::new(
                    format!("{at}/endIPAddress"),
                    format!(
                        "expected an address of the start's family ({}), found {}",
                        p.start, p.end
                    ),
                ));
            }
            if number(p.end) < number(p.start) {
                return Err(Invalid::new(
                    format!("{at}/endIPAddress"),
                    format!(
                        "expected an address at or after the start {}, found {}",
                        p.start, p.end
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(start: &str, end: &str) -> Pool {
        Pool {
            reference: String::new(),
            start: start.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            end: end.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
        }
    }

    #[test]
    fn allocation_resumes_after_the_last_and_wraps_around() {
        let pools = [pool("10.0.0.1", "10.0.0.3"), pool("10.0.1.1", "10.0.1.2")];
        let a = |s: &str| s.parse::<IpAddr>().ok();
        let none = |_: IpAddr| false;
        assert_eq!(next_free(&pools, &none), a("10.0.0.1"));
        assert_eq!(next_free_after(&pools, &none, a("10.0.0.1")), a("10.0.0.2"));
        assert_eq!(
            next_free_after(&pools, &none, a("10.0.0.3")),
            a("10.0.1.1"),
            "on to the next pool"
        );
        assert_eq!(
            next_free_after(&pools, &none, a("10.0.1.2")),
            a("10.0.0.1"),
            "wrapped"
        );
        let used = |x: IpAddr| x != "10.0.0.2".parse::<IpAddr>().unwrap_or(x);
        assert_eq!(
            next_free_after(&pools, &used, a("10.0.1.1")),
            a("10.0.0.2"),
            "the one left"
        );
        let all = |_: IpAddr| true;
        assert_eq!(next_free_after(&pools, &all, a("10.0.0.1")), None);
        assert_eq!(
            next_free_after(&pools, &none, a("192.0.2.1")),
            a("10.0.0.1"),
            "not in a pool: from the start"
        );
        assert_eq!(pools[0].size(), 3);
        assert!(pools[1].contains("10.0.1.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));
        assert!(!pools[1].contains("::1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))));
    }
}
