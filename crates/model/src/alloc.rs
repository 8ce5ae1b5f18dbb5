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
    pools.iter().find_map(|p| {
        (number(p.start)..=number(p.end))
            .map(|n| address(p.start, n))
            .find(|a| !used(*a))
    })
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
