//! The Mux's flow table: which DIP each flow went to, so a flow keeps its DIP when the
//! pool changes.
//!
//! As in Ananta (SIGCOMM 2013, section 3.3.3), flows seen once and flows seen more live in
//! separate tables with separate quotas: a SYN flood fills only the first and cannot push
//! out established flows. A flow moves to the second table on its second packet.
//!
//! Each table is set-associative and fixed in size: the flow hash picks a bucket of
//! [`WAYS`] slots; a new flow takes a free or expired slot, else the least recently used
//! one in its bucket (an explicit eviction, counted). Nothing allocates after
//! construction.

use std::time::Duration;

use strata_wire::flow::FlowKey;

/// Slots per bucket.
pub const WAYS: usize = 4;

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: FlowKey,
    value: u32,
    /// Milliseconds since the Mux started, wrapping; 0 never marks a live slot (see
    /// [`stamp`]).
    last_seen: u32,
}

const EMPTY_KEY: FlowKey = FlowKey {
    proto: 0,
    src: std::net::Ipv4Addr::UNSPECIFIED,
    dst: std::net::Ipv4Addr::UNSPECIFIED,
    src_port: 0,
    dst_port: 0,
};

const FREE: Slot = Slot {
    key: EMPTY_KEY,
    value: 0,
    last_seen: 0,
};

fn stamp(now: Duration) -> u32 {
    // 0 means free; a live slot never holds it.
    let ms = now.as_secs().wrapping_mul(1000) + u64::from(now.subsec_millis());
    (ms as u32).max(1)
}

#[derive(Debug)]
struct Cache {
    buckets: Box<[[Slot; WAYS]]>,
    mask: usize,
}

impl Cache {
    fn new(capacity: usize) -> Cache {
        let buckets = (capacity / WAYS).max(1).next_power_of_two();
        Cache {
            buckets: vec![[FREE; WAYS]; buckets].into_boxed_slice(),
            mask: buckets - 1,
        }
    }

    fn capacity(&self) -> usize {
        self.buckets.len() * WAYS
    }

    fn live(slot: &Slot, now: u32, idle_ms: u32) -> bool {
        slot.last_seen != 0 && now.wrapping_sub(slot.last_seen) < idle_ms
    }

    /// Finds `key`; on a hit refreshes it and returns its value.
    #[inline]
    fn get(&mut self, key: &FlowKey, hash: u32, now: u32, idle_ms: u32) -> Option<u32> {
        let bucket = &mut self.buckets[hash as usize & self.mask];
        for slot in bucket.iter_mut() {
            if slot.key == *key && Self::live(slot, now, idle_ms) {
                slot.last_seen = now;
                return Some(slot.value);
            }
        }
        None
    }

    fn remove(&mut self, key: &FlowKey, hash: u32) {
        let bucket = &mut self.buckets[hash as usize & self.mask];
        for slot in bucket.iter_mut() {
            if slot.key == *key {
                *slot = FREE;
            }
        }
    }

    /// Inserts or overwrites `key`; returns whether a live flow was evicted for it.
    fn put(&mut self, key: FlowKey, hash: u32, value: u32, now: u32, idle_ms: u32) -> bool {
        let bucket = &mut self.buckets[hash as usize & self.mask];
        let mut victim = 0;
        let mut oldest = u32::MIN;
        for (i, slot) in bucket.iter_mut().enumerate() {
            if slot.key == key || !Self::live(slot, now, idle_ms) {
                *slot = Slot {
                    key,
                    value,
                    last_seen: now,
                };
                return false;
            }
            let age = now.wrapping_sub(slot.last_seen);
            if age >= oldest {
                oldest = age;
                victim = i;
            }
        }
        bucket[victim] = Slot {
            key,
            value,
            last_seen: now,
        };
        true
    }

    fn count_live(&self, now: u32, idle_ms: u32) -> usize {
        self.buckets
            .iter()
            .flatten()
            .filter(|s| Self::live(s, now, idle_ms))
            .count()
    }
}

/// Flow table counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub hits: u64,
    pub misses: u64,
    pub promoted: u64,
    /// Live flows pushed out of the seen-once table by new ones.
    pub evicted_new: u64,
    /// Live flows pushed out of the established table.
    pub evicted_established: u64,
}

/// Two bounded tables: flows seen once, and flows seen more.
#[derive(Debug)]
pub struct FlowTable {
    new: Cache,
    established: Cache,
    idle_ms: u32,
    counters: Counters,
}

impl FlowTable {
    /// Quotas are rounded up to a power of two times [`WAYS`].
    pub fn new(new_quota: usize, established_quota: usize, idle_timeout: Duration) -> FlowTable {
        FlowTable {
            new: Cache::new(new_quota),
            established: Cache::new(established_quota),
            idle_ms: idle_timeout.as_millis().clamp(1, u128::from(u32::MAX / 2)) as u32,
            counters: Counters::default(),
        }
    }

    pub fn capacity(&self) -> (usize, usize) {
        (self.new.capacity(), self.established.capacity())
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Live flows in each table.
    pub fn len(&self, now: Duration) -> (usize, usize) {
        let t = stamp(now);
        (
            self.new.count_live(t, self.idle_ms),
            self.established.count_live(t, self.idle_ms),
        )
    }

    /// The value stored for `key`. A flow found in the seen-once table moves to the
    /// established one.
    #[inline]
    pub fn get(&mut self, now: Duration, key: &FlowKey, hash: u32) -> Option<u32> {
        let t = stamp(now);
        if let Some(v) = self.established.get(key, hash, t, self.idle_ms) {
            self.counters.hits += 1;
            return Some(v);
        }
        if let Some(v) = self.new.get(key, hash, t, self.idle_ms) {
            self.counters.hits += 1;
            self.counters.promoted += 1;
            self.new.remove(key, hash);
            if self.established.put(*key, hash, v, t, self.idle_ms) {
                self.counters.evicted_established += 1;
            }
            return Some(v);
        }
        self.counters.misses += 1;
        None
    }

    /// Records a flow's first packet.
    pub fn insert(&mut self, now: Duration, key: FlowKey, hash: u32, value: u32) {
        if self.new.put(key, hash, value, stamp(now), self.idle_ms) {
            self.counters.evicted_new += 1;
        }
    }

    /// Replaces the value of a flow wherever it is (its DIP went away).
    pub fn update(&mut self, now: Duration, key: FlowKey, hash: u32, value: u32) {
        let t = stamp(now);
        if self.established.get(&key, hash, t, self.idle_ms).is_some() {
            self.established.put(key, hash, value, t, self.idle_ms);
        } else {
            self.insert(now, key, hash, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(port: u16) -> FlowKey {
        FlowKey {
            proto: 6,
            src: Ipv4Addr::new(192, 168, 200, 10),
            dst: Ipv4Addr::new(192, 168, 133, 74),
            src_port: port,
            dst_port: 80,
        }
    }

    const T: Duration = Duration::from_secs(1);

    #[test]
    fn second_packet_promotes_and_flood_cannot_evict_established() {
        let mut t = FlowTable::new(4, 4, Duration::from_secs(60));
        t.insert(T, key(1), 7, 100);
        assert_eq!(t.get(T, &key(1), 7), Some(100));
        assert_eq!(t.counters().promoted, 1);
        // A flood of new flows into the same bucket fills and churns the seen-once table.
        for p in 1000..1100 {
            t.insert(T, key(p), 7, 1);
        }
        assert!(t.counters().evicted_new > 0);
        assert_eq!(
            t.get(T, &key(1), 7),
            Some(100),
            "the established flow survived the flood"
        );
        assert_eq!(t.counters().evicted_established, 0);
    }

    #[test]
    fn idle_flows_expire() {
        let mut t = FlowTable::new(16, 16, Duration::from_secs(10));
        t.insert(T, key(1), 1, 5);
        assert_eq!(t.len(T), (1, 0));
        assert_eq!(t.get(T + Duration::from_secs(11), &key(1), 1), None);
        assert_eq!(t.len(T + Duration::from_secs(11)), (0, 0));
    }

    #[test]
    fn full_bucket_evicts_least_recently_used() {
        let mut t = FlowTable::new(4, 4, Duration::from_secs(600));
        for p in 0..4 {
            t.insert(
                T + Duration::from_millis(u64::from(p)),
                key(p),
                3,
                u32::from(p),
            );
        }
        t.insert(T + Duration::from_millis(10), key(9), 3, 9);
        assert_eq!(t.counters().evicted_new, 1);
        assert_eq!(
            t.get(T + Duration::from_millis(11), &key(0), 3),
            None,
            "the oldest went"
        );
        assert_eq!(t.get(T + Duration::from_millis(11), &key(9), 3), Some(9));
    }

    #[test]
    fn quotas_round_to_whole_buckets_of_a_power_of_two() {
        assert_eq!(
            FlowTable::new(16, 64, Duration::from_secs(1)).capacity(),
            (16, 64)
        );
        assert_eq!(
            FlowTable::new(100, 3, Duration::from_secs(1)).capacity(),
            (128, 4)
        );
    }

    #[test]
    fn a_flow_idle_for_exactly_the_timeout_is_gone() {
        let mut t = FlowTable::new(16, 16, Duration::from_secs(10));
        t.insert(T, key(1), 1, 5);
        t.insert(T, key(2), 1, 6);
        let almost = T + Duration::from_millis(9_999);
        assert_eq!(t.get(almost, &key(1), 1), Some(5));
        assert_eq!(
            t.get(almost + Duration::from_millis(10_000), &key(1), 1),
            None
        );
        assert_eq!(t.get(T + Duration::from_secs(10), &key(2), 1), None);
    }

    #[test]
    fn a_promoted_flow_leaves_the_seen_once_table_and_its_neighbours_stay() {
        let mut t = FlowTable::new(4, 4, Duration::from_secs(60));
        t.insert(T, key(1), 3, 10);
        t.insert(T, key(2), 3, 20);
        assert_eq!(t.get(T, &key(1), 3), Some(10));
        assert_eq!(t.len(T), (1, 1), "moved, not copied");
        assert_eq!(t.get(T, &key(1), 3), Some(10));
        assert_eq!(
            t.get(T, &key(2), 3),
            Some(20),
            "its bucket's neighbour stays"
        );
        assert_eq!(t.len(T), (0, 2));
    }

    #[test]
    fn counters_count_each_lookup() {
        let mut t = FlowTable::new(4, 4, Duration::from_secs(60));
        assert_eq!(t.get(T, &key(1), 3), None);
        assert_eq!(t.get(T, &key(1), 3), None);
        t.insert(T, key(1), 3, 10);
        t.get(T, &key(1), 3);
        t.get(T, &key(1), 3);
        t.get(T, &key(1), 3);
        assert_eq!(
            *t.counters(),
            Counters {
                hits: 3,
                misses: 2,
                promoted: 1,
                evicted_new: 0,
                evicted_established: 0,
            }
        );
    }

    #[test]
    fn a_full_established_bucket_evicts_its_least_recently_used_wherever_it_sits() {
        let mut t = FlowTable::new(4, 4, Duration::from_secs(600));
        let at = |ms: u64| T + Duration::from_millis(ms);
        for p in 0..4u16 {
            t.insert(at(u64::from(p)), key(p), 3, u32::from(p));
            t.get(at(u64::from(p)), &key(p), 3);
        }
        // Flow 0 is used again: flow 1, in the second slot, is now the least recent.
        t.get(at(10), &key(0), 3);
        t.insert(at(20), key(9), 3, 9);
        t.get(at(20), &key(9), 3);
        t.insert(at(21), key(8), 3, 8);
        t.get(at(21), &key(8), 3);
        assert_eq!(t.counters().evicted_established, 2);
        assert_eq!(t.get(at(30), &key(0), 3), Some(0), "recently used: kept");
        assert_eq!(t.get(at(30), &key(3), 3), Some(3), "kept");
        assert_eq!(t.get(at(30), &key(9), 3), Some(9));
        assert_eq!(t.get(at(30), &key(8), 3), Some(8));
        assert_eq!(t.len(at(30)), (0, 4), "flows 1 and 2 went");
    }
}
