//! The decision process: which of the paths to a prefix is best (RFC 4271 section
//! 9.1.2.2), and which tie with it for multipath.
//!
//! The steps, each removing paths from consideration:
//!
//! | step | keeps |
//! |---|---|
//! | (a) | the highest degree of preference: LOCAL_PREF from internal neighbors, our own policy value for routes from external ones (9.1.1: a neighbor in another AS has no say) |
//! | (b) | the shortest AS_PATH (an AS_SET counts as one) |
//! | (c) | the lowest ORIGIN (IGP, EGP, INCOMPLETE) |
//! | (d) | the lowest MULTI_EXIT_DISC, compared only between paths from the same neighboring AS (or between all with `always_compare_med`); a missing MED is the lowest |
//! | (e) | paths from external neighbors, if any |
//! | (f) | the lowest interior cost to the next hop: this speaker runs no IGP, every next hop costs the same |
//! | (g) | the path from the neighbor with the lowest BGP Identifier |
//! | (h) | the path from the lowest neighbor address |
//!
//! The paths left after (f) are equal for multipath (the FIB spreads flows over their
//! next hops); (g) and (h) only pick the one that is announced onward.

use std::cmp::Reverse;
use std::net::{IpAddr, Ipv4Addr};

use crate::rib::{DEFAULT_LOCAL_PREF, Path};

/// A path to the prefix and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub path: &'a Path,
    /// Learned from a neighbor in another AS.
    pub external: bool,
    /// The BGP Identifier of the neighbor it came from.
    pub peer_id: Ipv4Addr,
    pub peer_address: IpAddr,
}

/// What the decision process depends on besides the paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Our AS: the neighboring AS of a path originated inside it (step (d)).
    pub local_as: u32,
    /// The degree of preference of routes from external neighbors (step (a)).
    pub external_preference: u32,
    /// Compare MED between paths from different neighboring ASes too.
    pub always_compare_med: bool,
}

impl Rules {
    pub fn new(local_as: u32) -> Rules {
        Rules {
            local_as,
            external_preference: DEFAULT_LOCAL_PREF,
            always_compare_med: false,
        }
    }
}

/// The outcome for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Index of the best path in the candidates.
    pub best: usize,
    /// The others that tie with it through step (f), in the candidates' order.
    pub equal: Vec<usize>,
}

/// Runs the decision process over `candidates`; `None` when there are none.
pub fn select(candidates: &[Candidate<'_>], rules: &Rules) -> Option<Selection> {
    match candidates.len() {
        0 => return None,
        // The common case, without allocating.
        1 => {
            return Some(Selection {
                best: 0,
                equal: Vec::new(),
            });
        }
        _ => {}
    }
    let mut alive: Vec<usize> = (0..candidates.len()).collect();
    let c = |i: usize| &candidates[i];
    // (a)
    keep_least(&mut alive, |i| Reverse(preference(c(i), rules)));
    // (b)
    keep_least(&mut alive, |i| c(i).path.as_path.len());
    // (c)
    keep_least(&mut alive, |i| c(i).path.origin);
    // (d): not a sort: MED orders only paths of one neighboring AS, so each path is
    // compared with every other.
    let neighbor_as = |i: usize| {
        if rules.always_compare_med {
            None
        } else {
            Some(c(i).path.as_path.neighbor_as().unwrap_or(rules.local_as))
        }
    };
    let med = |i: usize| c(i).path.med.unwrap_or(0);
    let beaten: Vec<usize> = alive
        .iter()
        .copied()
        .filter(|&m| {
            alive
                .iter()
                .any(|&n| neighbor_as(n) == neighbor_as(m) && med(n) < med(m))
        })
        .collect();
    alive.retain(|i| !beaten.contains(i));
    // (e)
    if alive.iter().any(|&i| c(i).external) {
        alive.retain(|&i| c(i).external);
    }
    // (f): equal interior cost for every next hop. (g), (h):
    let best = alive
        .iter()
        .copied()
        .min_by_key(|&i| (u32::from(c(i).peer_id), c(i).peer_address))?;
    alive.retain(|&i| i != best);
    Some(Selection { best, equal: alive })
}

/// The degree of preference (RFC 4271 9.1.1).
fn preference(c: &Candidate<'_>, rules: &Rules) -> u32 {
    if c.external {
        rules.external_preference
    } else {
        c.path.local_pref
    }
}

/// Keeps the indices whose key is least.
fn keep_least<K: Ord>(alive: &mut Vec<usize>, key: impl Fn(usize) -> K) {
    if let Some(least) = alive.iter().map(|&i| key(i)).min() {
        alive.retain(|&i| key(i) == least);
    }
}

#[cfg(test)]
mod tests;
