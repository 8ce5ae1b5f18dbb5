//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! NAT and TTL decrement change a few 16-bit words of a packet; recomputing the whole
//! checksum would touch every payload byte. RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`,
//! updates it from the old and new words alone, and (unlike eqn. 2 of RFC 1141) never
//! produces 0x0000 from a non-zero sum.

/// One's-complement sum of `data` as big-endian 16-bit words, folded to 16 bits but not
/// complemented. An odd trailing byte is padded with zero.
#[inline(always)]
pub fn sum(data: &[u8]) -> u16 {
    fold(sum_raw(data))
}

/// The checksum field's value for `data` (the complement of [`sum`]).
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// The sum of `data`'s 16-bit words, partly folded (at most 17 bits), for callers that
/// add several ranges before folding.
///
/// Adds 32-bit big-endian words into 64 bits: since 2^16 = 1 modulo 0xffff, folding
/// their sum gives the one's-complement sum of the 16-bit words, with half the additions.
#[inline(always)]
pub fn sum_raw(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut rest = words.remainder().chunks_exact(2);
    for w in &mut rest {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = rest.remainder() {
        acc += u64::from(*last) << 8;
    }
    // Into 17 bits: 64 -> 33 -> 18 -> 17.
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u32
}

/// Fold a 32-bit one's-complement accumulator to 16 bits. Two steps do for any value:
/// the first leaves at most 0x1fffe, the second at most 0xffff.
#[inline]
pub fn fold(acc: u32) -> u16 {
    let acc = (acc & 0xffff) + (acc >> 16);
    ((acc & 0xffff) + (acc >> 16)) as u16
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word changes from `old` to `new`.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!check) + u32::from(!old) + u32::from(new);
    !fold(acc)
}

/// The new checksum after a 32-bit field (an IPv4 address) changes: eqn. 3 for both
/// words at once. One's-complement addition is associative; folding in one step or two
/// could differ only where one gives 0x0000 and the other 0xffff, and a fold gives zero
/// only for a sum of zeros.
#[inline]
pub fn update32(check: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let word = |b: [u8; 4], at: usize| u32::from(u16::from_be_bytes([b[at], b[at + 1]]));
    let acc = u32::from(!check)
        + (word(old, 0) ^ 0xffff)
        + (word(old, 2) ^ 0xffff)
        + word(new, 0)
        + word(new, 2);
    !fold(acc)
}

/// The new checksum after a 128-bit field (an IPv6 address) changes.
pub fn update128(check: u16, old: [u8; 16], new: [u8; 16]) -> u16 {
    old.chunks_exact(2)
        .zip(new.chunks_exact(2))
        .fold(check, |c, (o, n)| {
            update16(
                c,
                u16::from_be_bytes([o[0], o[1]]),
                u16::from_be_bytes([n[0], n[1]]),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        assert_eq!(
            sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn a_fold_carries_twice_at_most() {
        assert_eq!(fold(0x0000_ffff), 0xffff);
        assert_eq!(fold(0x0001_0000), 0x0001);
        // ffff + ffff = 1fffe, then fffe + 1.
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(fold(0x0002_fffe), 0x0001);
    }

    #[test]
    fn an_odd_trailing_byte_is_padded_with_zero() {
        // 0102 + 0300 (the last byte, padded).
        assert_eq!(sum(&[0x01, 0x02, 0x03]), 0x0402);
        // ffff + ff00 = 1feff, folded: ff00.
        assert_eq!(fold(sum_raw(&[0xff, 0xff, 0xff])), 0xff00);
    }

    #[test]
    fn rfc1624_example() {
        // RFC 1624 section 4: HC = 0xdd2f, m = 0x5555 becomes m' = 0x3285; HC' = 0x0000.
        assert_eq!(update16(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn known_ipv4_header() {
        // An IPv4 header from a capture (checksum field 0xb861 zeroed for the computation).
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&header), 0xb861);
    }

    /// RFC 1071 word by word, as the text describes it.
    fn sum_of_words(data: &[u8]) -> u16 {
        let mut acc: u64 = 0;
        for (i, b) in data.iter().enumerate() {
            acc += u64::from(*b) << if i % 2 == 0 { 8 } else { 0 };
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    proptest! {
        #[test]
        fn the_sum_is_the_sum_of_the_16_bit_words(data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            prop_assert_eq!(sum(&data), sum_of_words(&data));
            prop_assert!(sum_raw(&data) < 1 << 17);
        }

        #[test]
        fn a_sum_of_all_ones_words_folds_to_all_ones(words in 1usize..2000) {
            let data = vec![0xff; words * 2];
            prop_assert_eq!(sum(&data), 0xffff);
        }
    }

    proptest! {
        #[test]
        fn incremental_matches_full(mut data in proptest::collection::vec(any::<u8>(), 4..64),
                                    at in 0usize..30, new in any::<u16>()) {
            let at = (at % (data.len() / 2)) * 2;
            let before = checksum(&data);
            let old = u16::from_be_bytes([data[at], data[at + 1]]);
            data[at..at + 2].copy_from_slice(&new.to_be_bytes());
            let full = checksum(&data);
            let inc = update16(before, old, new);
            // 0x0000 and 0xffff are the same number in one's complement.
            prop_assert!(inc == full || (inc ^ full) == 0xffff && (inc == 0 || full == 0),
                "inc {inc:#06x} full {full:#06x}");
        }
    }

    proptest! {
        #[test]
        fn a_changed_address_updates_like_a_full_sum(mut data in proptest::collection::vec(any::<u8>(), 20..40),
                                                      at in 0usize..4, new in any::<[u8; 4]>()) {
            let at = at * 4;
            let before = checksum(&data);
            let mut old = [0u8; 4];
            old.copy_from_slice(&data[at..at + 4]);
            data[at..at + 4].copy_from_slice(&new);
            let full = checksum(&data);
            let inc = update32(before, old, new);
            prop_assert!(inc == full || (inc ^ full) == 0xffff && (inc == 0 || full == 0),
                "inc {inc:#06x} full {full:#06x}");
        }
    }
}
