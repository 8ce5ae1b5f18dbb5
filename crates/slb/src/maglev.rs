//! Maglev consistent hashing (Eisenbud et al., NSDI 2016, section 3.4).
//!
//! Each backend's identity gives it a permutation of the lookup table's slots
//! (`offset + j·skip mod M`); backends take turns claiming their next free slot until the
//! table is full. Every backend ends up with ⌊M/N⌋ or ⌈M/N⌉ slots (times its weight), and
//! removing one backend moves little more than that backend's own slots. All Muxes build
//! the same table from the same backends, so any Mux picks the same DIP for a flow.
//!
//! The table size M is prime (65,537 by default) so every skip in 1..M is coprime to it
//! and each permutation visits every slot.

use crate::hash::siphash;

/// The lookup table size of Windows SLB's Muxes and of this one: prime, and more than 100
/// times the backends a VIP will have.
pub const TABLE_SIZE: usize = 65_537;

/// SipHash keys of the two permutation hashes. Changing them moves every flow.
const OFFSET_KEY: (u64, u64) = (0x5374_7261_7461_4f66, 0x6653_6574_4d61_676c); // "StrataOf" "fSetMagl"
const SKIP_KEY: (u64, u64) = (0x5374_7261_7461_536b, 0x6970_4d61_676c_6576); // "StrataSk" "ipMaglev"

/// Marks a slot no backend has claimed (only while building).
const EMPTY: u16 = u16::MAX;

/// Why a table cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaglevError {
    #[error("table size {0} is not prime")]
    NotPrime(usize),
    #[error("{0} backends; at most 65,534 fit")]
    TooManyBackends(usize),
    #[error("table size {0} is over 2^31")]
    TooLarge(usize),
}

/// A Maglev lookup table: slot → index of a backend in the list it was built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maglev {
    table: Box<[u16]>,
}

impl Maglev {
    /// A table in which every lookup finds nothing: one empty slot, not 65,537 of them.
    pub fn empty() -> Maglev {
        Maglev {
            table: Box::new([EMPTY]),
        }
    }

    /// Builds the table of [`TABLE_SIZE`] slots for backends given as (identity, weight).
    /// Backends of weight 0 get no slots. With no backend of positive weight, every lookup
    /// finds nothing.
    pub fn build<'a>(backends: impl IntoIterator<Item = (&'a [u8], u32)>) -> Maglev {
        // TABLE_SIZE is prime and the count is checked by the callers that matter; the
        // fallbacks keep this path free of panics anyway.
        Self::build_with_size(backends, TABLE_SIZE).unwrap_or(Maglev {
            table: vec![EMPTY; TABLE_SIZE].into_boxed_slice(),
        })
    }

    /// Builds a table of `size` slots (which must be prime).
    pub fn build_with_size<'a>(
        backends: impl IntoIterator<Item = (&'a [u8], u32)>,
        size: usize,
    ) -> Result<Maglev, MaglevError> {
        if !is_prime(size) {
            return Err(MaglevError::NotPrime(size));
        }
        let backends: Vec<(&[u8], u32)> = backends.into_iter().collect();
        if backends.len() >= usize::from(EMPTY) {
            return Err(MaglevError::TooManyBackends(backends.len()));
        }
        // Positions and skips are below M, and a position plus a skip below 2M: u32
        // arithmetic (quicker in the walk below) for any M up to 2^31.
        let m32 = u32::try_from(size)
            .ok()
            .filter(|m| *m <= 1 << 31)
            .ok_or(MaglevError::TooLarge(size))?;
        // Weights reduced by their common divisor, so turns stay short (gcd(d, 0) = d:
        // weights of 0 change nothing).
        let divisor = backends.iter().map(|b| b.1).fold(0, gcd).max(1);
        let m = size as u64;
        let mut turns: Vec<Turn> = backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.1 > 0)
            .map(|(i, (id, weight))| Turn {
                index: i as u16,
                weight: weight / divisor,
                position: (siphash(OFFSET_KEY.0, OFFSET_KEY.1, id) % m) as u32,
                skip: (siphash(SKIP_KEY.0, SKIP_KEY.1, id) % (m - 1) + 1) as u32,
            })
            .collect();
        if turns.is_empty() {
            return Ok(Maglev::empty());
        }
        let mut table = vec![EMPTY; size].into_boxed_slice();
        let mut filled = 0usize;
        if turns.iter().all(|t| t.weight == 1) {
            // Two backends' walks at once: the second's search overlaps the first's (the
            // CPU runs both), and the claims keep their order. Only the first's claim can
            // take the slot the second found; then the second walks on from there.
            'pairs: loop {
                for pair in turns.chunks_mut(2) {
                    let (a, rest) = pair.split_at_mut(1);
                    let a = &mut a[0];
                    let Some(b) = rest.first_mut() else {
                        claim(&mut table, a, a.position, m32);
                        filled += 1;
                        if filled == size {
                            break 'pairs;
                        }
                        continue;
                    };
                    let (mut pa, mut pb) = (a.position, b.position);
                    loop {
                        let free_a = table[pa as usize] == EMPTY;
                        let free_b = table[pb as usize] == EMPTY;
                        if free_a && free_b {
                            break;
                        }
                        if !free_a {
                            pa = advance(pa, a.skip, m32);
                        }
                        if !free_b {
                            pb = advance(pb, b.skip, m32);
                        }
                    }
                    for (turn, from) in [(a, pa), (b, pb)] {
                        claim(&mut table, turn, from, m32);
                        filled += 1;
                        if filled == size {
                            break 'pairs;
                        }
                    }
                }
            }
            return Ok(Maglev { table });
        }
        'fill: loop {
            for turn in turns.iter_mut() {
                for _ in 0..turn.weight {
                    claim(&mut table, turn, turn.position, m32);
                    filled += 1;
                    if filled == size {
                        break 'fill;
                    }
                }
            }
        }
        Ok(Maglev { table })
    }

    /// The backend (index into the build list) for a flow hash.
    #[inline]
    pub fn lookup(&self, hash: u32) -> Option<usize> {
        let slot = self.table[hash as usize % self.table.len()];
        (slot != EMPTY).then_some(usize::from(slot))
    }

    /// Slots per backend, indexed like the build list.
    pub fn shares(&self, backends: usize) -> Vec<usize> {
        let mut counts = vec![0; backends];
        for slot in self.table.iter() {
            if let Some(c) = counts.get_mut(usize::from(*slot)) {
                *c += 1;
            }
        }
        counts
    }

    /// The raw slots (backend index, or `u16::MAX` for none).
    pub fn slots(&self) -> &[u16] {
        &self.table
    }
}

/// A backend's place in the turns: its index, weight, and where its permutation is.
struct Turn {
    index: u16,
    weight: u32,
    position: u32,
    skip: u32,
}

/// One step along a permutation of `m` slots.
#[inline]
fn advance(position: u32, skip: u32, m: u32) -> u32 {
    let next = position + skip;
    if next >= m { next - m } else { next }
}

/// Walks `turn`'s permutation from `from` to the next free slot and claims it.
#[inline]
fn claim(table: &mut [u16], turn: &mut Turn, mut from: u32, m: u32) {
    while table[from as usize] != EMPTY {
        from = advance(from, turn.skip, m);
    }
    table[from as usize] = turn.index;
    turn.position = from;
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn is_prime(n: usize) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<[u8; 6]> {
        (0..n)
            .map(|i| {
                let ip = 0x0a00_0000u32 + i as u32 + 1;
                let [a, b, c, d] = ip.to_be_bytes();
                [a, b, c, d, 0, 80]
            })
            .collect()
    }

    fn build(ids: &[[u8; 6]]) -> Maglev {
        Maglev::build(ids.iter().map(|id| (&id[..], 1)))
    }

    #[test]
    fn each_share_within_one_percent_of_fair() {
        for n in [1, 3, 10, 100, 500] {
            let t = build(&ids(n));
            let fair = TABLE_SIZE as f64 / n as f64;
            for (i, share) in t.shares(n).into_iter().enumerate() {
                let off = (share as f64 - fair).abs() / fair;
                assert!(
                    off <= 0.01,
                    "n={n} backend {i}: {share} slots, fair {fair:.1}"
                );
            }
        }
    }

    #[test]
    fn weights_give_proportional_shares() {
        let ids = ids(3);
        let t = Maglev::build([(&ids[0][..], 1), (&ids[1][..], 2), (&ids[2][..], 0)]);
        let shares = t.shares(3);
        assert_eq!(shares[2], 0);
        let ratio = shares[1] as f64 / shares[0] as f64;
        assert!((ratio - 2.0).abs() < 0.01, "{shares:?}");
        // No backend of weight 1 among them: the weights still count.
        let t = Maglev::build([(&ids[0][..], 2), (&ids[1][..], 3)]);
        let shares = t.shares(2);
        let ratio = shares[1] as f64 / shares[0] as f64;
        assert!((ratio - 1.5).abs() < 0.01, "{shares:?}");
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        for n in [10, 100] {
            let all = ids(n);
            let before = build(&all);
            let remaining: Vec<[u8; 6]> = all[1..].to_vec();
            let after = build(&remaining);
            // Index k in `remaining` is index k + 1 in `all`.
            let moved = before
                .slots()
                .iter()
                .zip(after.slots())
                .filter(|(b, a)| **b != **a + 1)
                .count();
            let fraction = moved as f64 / TABLE_SIZE as f64;
            let own = 1.0 / n as f64;
            assert!(
                fraction >= own * 0.95,
                "n={n}: the removed backend's slots must move ({fraction:.4})"
            );
            assert!(
                fraction <= own * 1.6,
                "n={n}: {fraction:.4} of slots moved, want about {own:.4}"
            );
        }
    }

    #[test]
    fn two_builds_agree_and_match_golden_slots() {
        let backends = ids(3);
        let a = build(&backends);
        let b = build(&backends);
        assert_eq!(a, b);
        // Pinned: a change here moves flows between Muxes of different versions.
        assert_eq!(&a.slots()[..16], GOLDEN_FIRST_16);
    }

    /// The first 16 slots for backends 10.0.0.1:80, 10.0.0.2:80, 10.0.0.3:80.
    const GOLDEN_FIRST_16: &[u16] = &[1, 2, 0, 1, 1, 1, 0, 0, 1, 0, 2, 0, 1, 0, 1, 2];

    #[test]
    fn empty_and_bad_sizes() {
        let t = Maglev::build(std::iter::empty());
        assert_eq!(t.lookup(12345), None);
        assert_eq!(
            Maglev::build_with_size(std::iter::empty(), 65536),
            Err(MaglevError::NotPrime(65536))
        );
        let small = Maglev::build_with_size([(&b"a"[..], 1)], 7).unwrap();
        assert!((0..7).all(|h| small.lookup(h) == Some(0)));
    }

    #[test]
    fn weights_are_taken_in_lowest_terms() {
        let ids = ids(3);
        let reduced = Maglev::build([(&ids[0][..], 1), (&ids[1][..], 2), (&ids[2][..], 3)]);
        let scaled = Maglev::build([(&ids[0][..], 4), (&ids[1][..], 8), (&ids[2][..], 12)]);
        assert_eq!(
            reduced, scaled,
            "weights 4:8:12 fill the table as 1:2:3 do, in turns as short"
        );
        let with_zero = Maglev::build([(&ids[0][..], 2), (&ids[1][..], 0), (&ids[2][..], 6)]);
        let without = Maglev::build([(&ids[0][..], 1), (&ids[1][..], 0), (&ids[2][..], 3)]);
        assert_eq!(with_zero, without);
    }

    #[test]
    fn backends_all_of_weight_zero_give_an_empty_table() {
        let ids = ids(2);
        let t = Maglev::build([(&ids[0][..], 0), (&ids[1][..], 0)]);
        assert!(t.slots().iter().all(|s| *s == EMPTY));
        assert_eq!(t.lookup(7), None);
        // One slot, not a table's worth of empty ones.
        assert_eq!(t, Maglev::empty());
        assert_eq!(t.slots().len(), 1);
        assert!((0..1000).all(|h| Maglev::empty().lookup(h).is_none()));
    }

    #[test]
    fn a_hash_picks_the_slot_it_is_congruent_to() {
        let ids = ids(2);
        let t = Maglev::build_with_size(ids.iter().map(|id| (&id[..], 1)), 13).unwrap();
        assert_eq!(t.slots().len(), 13);
        for hash in (0..100).chain([u32::MAX - 1, u32::MAX]) {
            assert_eq!(
                t.lookup(hash),
                Some(usize::from(t.slots()[hash as usize % 13])),
                "hash {hash}"
            );
        }
        assert_eq!(
            build(&ids).slots().len(),
            TABLE_SIZE,
            "the default table size"
        );
    }

    #[test]
    fn a_table_over_two_to_the_31_is_refused_before_anything_is_allocated() {
        let prime = (1usize << 31..).find(|n| is_prime(*n)).unwrap();
        let ids: [&[u8]; 1] = [b"dip"];
        assert_eq!(
            Maglev::build_with_size(ids.iter().map(|id| (*id, 1)), prime),
            Err(MaglevError::TooLarge(prime))
        );
    }

    /// The fill of the paper, one backend after another, written as plainly as it reads.
    fn reference(ids: &[[u8; 6]], size: usize) -> Vec<u16> {
        let m = size as u64;
        let mut next: Vec<(u64, u64)> = ids
            .iter()
            .map(|id| {
                (
                    siphash(OFFSET_KEY.0, OFFSET_KEY.1, id) % m,
                    siphash(SKIP_KEY.0, SKIP_KEY.1, id) % (m - 1) + 1,
                )
            })
            .collect();
        let mut table = vec![EMPTY; size];
        let mut filled = 0;
        loop {
            for (i, (position, skip)) in next.iter_mut().enumerate() {
                while table[*position as usize] != EMPTY {
                    *position = (*position + *skip) % m;
                }
                table[*position as usize] = i as u16;
                filled += 1;
                if filled == size {
                    return table;
                }
            }
        }
    }

    #[test]
    fn walking_two_backends_at_once_builds_the_table_the_paper_does() {
        // Odd and even counts (the last backend of an odd count walks alone), and a table
        // small enough that the walks collide often.
        for n in [1, 2, 3, 7, 10, 101] {
            for size in [TABLE_SIZE, 251] {
                let ids = ids(n);
                let built =
                    Maglev::build_with_size(ids.iter().map(|id| (&id[..], 1)), size).unwrap();
                assert_eq!(
                    built.slots(),
                    &reference(&ids, size)[..],
                    "n={n} size={size}"
                );
            }
        }
    }
}
