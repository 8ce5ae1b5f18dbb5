//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! NAT and TTL decrement change a few 16-bit words of a packet; recomputing the whole
//! checksum would touch every payload byte. RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`,
//! updates it from the old and new words alone, and (unlike eqn. 2 of RFC 1141) never
//! produces 0x0000 from a non-zero sum.

/// One's-complement sum of `data` as big-endian 16-bit words, folded to 16 bits but not
/// complemented. An odd trailing byte is padded with zero.
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    fold(sum_raw(data))
}

/// The checksum field's value for `data` (the complement of [`sum`]).
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// Unfolded 32-bit accumulation, for callers that combine several ranges.
#[inline]
pub fn sum_raw(data: &[u8]) -> u32 {
    let mut acc: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for word in &mut chunks {
        acc += u32::from(u16::from_be_bytes([word[0], word[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u32::from(*last) << 8;
    }
    acc
}

/// Fold a 32-bit one's-complement accumulator to 16 bits.
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word changes from `old` to `new`.
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!check) + u32::from(!old) + u32::from(new);
    !fold(acc)
}

/// The new checksum after a 32-bit field (an IPv4 address) changes.
pub fn update32(check: u16, old: [u8; 4], new: [u8; 4]) -> u16 {
    let hi = update16(
        check,
        u16::from_be_bytes([old[0], old[1]]),
        u16::from_be_bytes([new[0], new[1]]),
    );
    update16(
        hi,
        u16::from_be_bytes([old[2], old[3]]),
        u16::from_be_bytes([new[2], new[3]]),
    )
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
    fn an_odd_trailing_byte_is_padded_with_zero() {
        // 0102 + 0300 (the last byte, padded).
        assert_eq!(sum(&[0x01, 0x02, 0x03]), 0x0402);
        assert_eq!(sum_raw(&[0xff, 0xff, 0xff]), 0x1_feff, "unfolded");
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
