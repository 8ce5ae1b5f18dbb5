//! The ARP neighbour cache (RFC 826), with a bounded queue of packets waiting for
//! resolution.
//!
//! Bounds: the cache holds at most `limit` entries (a request for a new neighbour when
//! full is refused and counted, so a scan cannot grow it), and each unresolved neighbour
//! holds at most `pending_limit` frames (the oldest is dropped first, as Linux's
//! `unres_qlen` does).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

use strata_wire::EthernetAddress;

use crate::IfIndex;

/// How long a resolved entry is trusted without fresh ARP traffic from the neighbour.
pub(crate) const REACHABLE_TIME: Duration = Duration::from_secs(60);
/// Interval between ARP requests for an unresolved neighbour.
pub(crate) const RETRANS_TIME: Duration = Duration::from_secs(1);
/// Requests sent before giving up on a neighbour.
pub(crate) const MAX_PROBES: u8 = 3;
/// How long a neighbour that did not answer is remembered as failed, so packets to it are
/// refused at once instead of each restarting resolution.
pub(crate) const FAILED_HOLD: Duration = Duration::from_secs(3);

#[derive(Debug)]
enum Entry {
    Reachable {
        mac: EthernetAddress,
        expires: Duration,
    },
    Incomplete {
        pending: VecDeque<Vec<u8>>,
        probes: u8,
        next_probe: Duration,
    },
    Failed {
        until: Duration,
    },
}

/// What became of a frame handed to [`NeighborCache::enqueue`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Enqueued {
    /// First frame for this neighbour: send an ARP request now.
    Resolve,
    /// Waiting behind an earlier request.
    Waiting,
    /// The queue was full; the oldest frame was dropped to make room.
    DroppedOldest,
    /// The cache is full or the neighbour is known to be unreachable; the frame comes back.
    Refused(Vec<u8>),
}

/// Timer work for the router.
#[derive(Debug, Default)]
pub(crate) struct Expired {
    /// Neighbours to send another ARP request to.
    pub(crate) probe: Vec<(IfIndex, Ipv4Addr)>,
    /// Frames whose neighbour never answered.
    pub(crate) unreachable: Vec<(IfIndex, Vec<u8>)>,
}

#[derive(Debug)]
pub(crate) struct NeighborCache {
    entries: HashMap<(IfIndex, Ipv4Addr), Entry>,
    /// The keys of the incomplete entries: the timers walk these, not the whole cache
    /// (a router's holds every host of its networks).
    incomplete: BTreeSet<(IfIndex, Ipv4Addr)>,
    limit: usize,
    pending_limit: usize,
}

impl NeighborCache {
    pub(crate) fn new(limit: usize, pending_limit: usize) -> NeighborCache {
        NeighborCache {
            entries: HashMap::new(),
            incomplete: BTreeSet::new(),
            limit,
            pending_limit: pending_limit.max(1),
        }
    }

    pub(crate) fn lookup(
        &self,
        now: Duration,
        iface: IfIndex,
        ip: Ipv4Addr,
    ) -> Option<EthernetAddress> {
        match self.entries.get(&(iface, ip)) {
            Some(Entry::Reachable { mac, expires }) if *expires > now => Some(*mac),
            _ => None,
        }
    }

    /// Records `ip` at `mac`. With `create` false only an existing entry is updated
    /// (RFC 826: a host updates what it has and adds only what was asked of it). Returns
    /// the frames that were waiting for this neighbour.
    pub(crate) fn learn(
        &mut self,
        now: Duration,
        iface: IfIndex,
        ip: Ipv4Addr,
        mac: EthernetAddress,
        create: bool,
    ) -> VecDeque<Vec<u8>> {
        let key = (iface, ip);
        if !create && !self.entries.contains_key(&key) {
            return VecDeque::new();
        }
        if !self.entries.contains_key(&key) && !self.make_room(now) {
            return VecDeque::new();
        }
        let fresh = Entry::Reachable {
            mac,
            expires: now + REACHABLE_TIME,
        };
        self.incomplete.remove(&key);
        match self.entries.insert(key, fresh) {
            Some(Entry::Incomplete { pending, .. }) => pending,
            _ => VecDeque::new(),
        }
    }

    /// Queues a frame until `ip` resolves.
    pub(crate) fn enqueue(
        &mut self,
        now: Duration,
        iface: IfIndex,
        ip: Ipv4Addr,
        frame: Vec<u8>,
    ) -> Enqueued {
        let key = (iface, ip);
        match self.entries.get_mut(&key) {
            Some(Entry::Incomplete { pending, .. }) => {
                let mut result = Enqueued::Waiting;
                if pending.len() >= self.pending_limit {
                    pending.pop_front();
                    result = Enqueued::DroppedOldest;
                }
                pending.push_back(frame);
                result
            }
            Some(Entry::Failed { until }) if *until > now => Enqueued::Refused(frame),
            _ => {
                if !self.entries.contains_key(&key) && !self.make_room(now) {
                    return Enqueued::Refused(frame);
                }
                self.entries.insert(
                    key,
                    Entry::Incomplete {
                        pending: VecDeque::from([frame]),
                        probes: 1,
                        next_probe: now + RETRANS_TIME,
                    },
                );
                self.incomplete.insert(key);
                Enqueued::Resolve
            }
        }
    }

    /// Drops stale entries if the cache is full; whether there is room for one more.
    fn make_room(&mut self, now: Duration) -> bool {
        if self.entries.len() < self.limit {
            return true;
        }
        self.entries.retain(|_, e| match e {
            Entry::Reachable { expires, .. } => *expires > now,
            Entry::Failed { until } => *until > now,
            Entry::Incomplete { .. } => true,
        });
        self.entries.len() < self.limit
    }

    /// Advances timers: re-probes unresolved neighbours, fails those out of probes.
    pub(crate) fn poll(&mut self, now: Duration) -> Expired {
        let mut out = Expired::default();
        let mut failed = Vec::new();
        // In key order: the lab's traces must be deterministic.
        for key in &self.incomplete {
            let Some(entry) = self.entries.get_mut(key) else {
                continue;
            };
            let Entry::Incomplete {
                pending,
                probes,
                next_probe,
            } = entry
            else {
                continue;
            };
            if *next_probe > now {
                continue;
            }
            if *probes >= MAX_PROBES {
                out.unreachable
                    .extend(pending.drain(..).map(|frame| (key.0, frame)));
                *entry = Entry::Failed {
                    until: now + FAILED_HOLD,
                };
                failed.push(*key);
            } else {
                *probes += 1;
                *next_probe = now + RETRANS_TIME;
                out.probe.push(*key);
            }
        }
        for key in &failed {
            self.incomplete.remove(key);
        }
        out
    }

    pub(crate) fn poll_at(&self) -> Option<Duration> {
        self.incomplete
            .iter()
            .filter_map(|key| match self.entries.get(key) {
                Some(Entry::Incomplete { next_probe, .. }) => Some(*next_probe),
                _ => None,
            })
            .min()
    }

    /// Resolved entries, for `show arp`.
    pub(crate) fn resolved(&self, now: Duration) -> Vec<(IfIndex, Ipv4Addr, EthernetAddress)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .filter_map(|((i, ip), e)| match e {
                Entry::Reachable { mac, expires } if *expires > now => Some((*i, *ip, *mac)),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const MAC: EthernetAddress = EthernetAddress([2, 0, 0, 0, 0, 1]);

    #[test]
    fn pending_queue_is_bounded_and_released_on_reply() {
        let mut c = NeighborCache::new(8, 2);
        let t = Duration::ZERO;
        assert_eq!(c.enqueue(t, IfIndex(0), IP, vec![1]), Enqueued::Resolve);
        assert_eq!(c.enqueue(t, IfIndex(0), IP, vec![2]), Enqueued::Waiting);
        assert_eq!(
            c.enqueue(t, IfIndex(0), IP, vec![3]),
            Enqueued::DroppedOldest
        );
        let released = c.learn(t, IfIndex(0), IP, MAC, false);
        assert_eq!(released, VecDeque::from([vec![2], vec![3]]));
        assert_eq!(c.lookup(t, IfIndex(0), IP), Some(MAC));
        assert_eq!(c.lookup(t + REACHABLE_TIME, IfIndex(0), IP), None);
    }

    #[test]
    fn unanswered_neighbour_fails_after_probes() {
        let mut c = NeighborCache::new(8, 4);
        let mut t = Duration::ZERO;
        c.enqueue(t, IfIndex(1), IP, vec![9]);
        let mut probes = 1;
        loop {
            t = c.poll_at().unwrap();
            let e = c.poll(t);
            probes += e.probe.len();
            if !e.unreachable.is_empty() {
                assert_eq!(e.unreachable, vec![(IfIndex(1), vec![9])]);
                break;
            }
        }
        assert_eq!(probes, usize::from(MAX_PROBES));
        assert!(matches!(
            c.enqueue(t, IfIndex(1), IP, vec![1]),
            Enqueued::Refused(_)
        ));
        assert_eq!(
            c.enqueue(t + FAILED_HOLD, IfIndex(1), IP, vec![1]),
            Enqueued::Resolve
        );
    }

    #[test]
    fn full_cache_refuses_new_neighbours() {
        let mut c = NeighborCache::new(1, 4);
        let t = Duration::ZERO;
        c.enqueue(t, IfIndex(0), IP, vec![]);
        let other = Ipv4Addr::new(10, 0, 0, 2);
        assert!(matches!(
            c.enqueue(t, IfIndex(0), other, vec![]),
            Enqueued::Refused(_)
        ));
        assert!(c.learn(t, IfIndex(0), other, MAC, true).is_empty());
        assert_eq!(c.lookup(t, IfIndex(0), other), None);
    }

    #[test]
    fn resolved_entries_are_listed_until_they_expire() {
        let mut c = NeighborCache::new(8, 4);
        let t = Duration::from_secs(5);
        c.learn(t, IfIndex(0), IP, MAC, true);
        let just_before = t + REACHABLE_TIME - Duration::from_millis(1);
        assert_eq!(c.resolved(just_before), [(IfIndex(0), IP, MAC)]);
        assert!(c.resolved(t + REACHABLE_TIME).is_empty());
        assert!(
            c.resolved(t + REACHABLE_TIME + Duration::from_secs(1))
                .is_empty()
        );
    }

    #[test]
    fn a_probe_waits_its_retransmission_time() {
        let mut c = NeighborCache::new(8, 4);
        let t = Duration::from_secs(5);
        assert_eq!(c.enqueue(t, IfIndex(0), IP, vec![1]), Enqueued::Resolve);
        assert!(c.poll(t).probe.is_empty(), "the first request just went");
        assert!(
            c.poll(t + RETRANS_TIME - Duration::from_millis(1))
                .probe
                .is_empty()
        );
        assert_eq!(c.poll(t + RETRANS_TIME).probe, [(IfIndex(0), IP)]);
    }

    #[test]
    fn a_full_cache_makes_room_from_entries_expired_or_failed_and_no_sooner() {
        let other = Ipv4Addr::new(10, 0, 0, 2);
        let t = Duration::from_secs(5);
        // Reachable until t + REACHABLE_TIME: not a moment before.
        let mut c = NeighborCache::new(1, 4);
        c.learn(t, IfIndex(0), IP, MAC, true);
        let before = t + REACHABLE_TIME - Duration::from_millis(1);
        assert!(matches!(
            c.enqueue(before, IfIndex(0), other, vec![]),
            Enqueued::Refused(_)
        ));
        assert_eq!(
            c.enqueue(t + REACHABLE_TIME, IfIndex(0), other, vec![]),
            Enqueued::Resolve
        );
        // A failed neighbour holds its place for FAILED_HOLD.
        let mut c = NeighborCache::new(1, 4);
        c.enqueue(t, IfIndex(0), IP, vec![]);
        let mut at = t;
        while let Some(next) = c.poll_at() {
            at = next;
            c.poll(at);
        }
        assert!(matches!(
            c.enqueue(
                at + FAILED_HOLD - Duration::from_millis(1),
                IfIndex(0),
                other,
                vec![]
            ),
            Enqueued::Refused(_)
        ));
        assert_eq!(
            c.enqueue(at + FAILED_HOLD, IfIndex(0), other, vec![]),
            Enqueued::Resolve
        );
    }
}
