//! The Toeplitz hash of receive-side scaling, under Microsoft's published RSS key.
//!
//! The hash that must agree across processes and versions (DESIGN: Maglev, ECMP, VXLAN
//! source ports): it is specified (Microsoft's "Verifying the RSS Hash Calculation", the
//! same table as Intel's 82599 datasheet), and the SLB's tests check it against that
//! table. Computed with one precomputed table per input byte: a 12-byte 4-tuple costs 12
//! lookups.

use std::sync::OnceLock;

/// Microsoft's default RSS key (40 bytes).
pub const RSS_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// Longest input hashed: source and destination address, ports (12 bytes), plus one.
pub const MAX_INPUT: usize = 13;

/// `TABLES[i][b]`: the Toeplitz contribution of byte value `b` at input position `i`.
fn tables() -> &'static [[u32; 256]; MAX_INPUT] {
    static TABLES: OnceLock<Box<[[u32; 256]; MAX_INPUT]>> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut t = Box::new([[0u32; 256]; MAX_INPUT]);
        for (pos, table) in t.iter_mut().enumerate() {
            for (byte, slot) in table.iter_mut().enumerate() {
                let mut h = 0u32;
                for bit in 0..8 {
                    if byte & (0x80 >> bit) != 0 {
                        h ^= key_window(pos * 8 + bit);
                    }
                }
                *slot = h;
            }
        }
        t
    })
}

/// The 32 key bits starting at bit `offset` (MSB first).
fn key_window(offset: usize) -> u32 {
    let byte = offset / 8;
    let shift = offset % 8;
    let mut w = 0u64;
    for i in 0..5 {
        w = (w << 8) | u64::from(RSS_KEY[byte + i]);
    }
    ((w << shift) >> 8) as u32
}

/// Toeplitz hash of `input` (at most 13 bytes) under [`RSS_KEY`].
#[inline]
pub fn toeplitz(input: &[u8]) -> u32 {
    let t = tables();
    input
        .iter()
        .take(MAX_INPUT)
        .enumerate()
        .fold(0, |h, (i, b)| h ^ t[i][usize::from(*b)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_serial_definition_agrees_with_tables() {
        // The definition: for each set input bit, XOR in the 32-bit key window at that bit.
        let input = [0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9];
        let mut h = 0u32;
        for bit in 0..input.len() * 8 {
            if input[bit / 8] & (0x80 >> (bit % 8)) != 0 {
                h ^= key_window(bit);
            }
        }
        assert_eq!(toeplitz(&input), h);
    }

    /// Microsoft's "Verifying the RSS Hash Calculation", IPv4 with TCP: the input is
    /// source address, destination address, source port, destination port.
    #[test]
    fn microsoft_verification_vectors() {
        type Vector = ([u8; 4], u16, [u8; 4], u16, u32, u32);
        let vectors: [Vector; 3] = [
            (
                [66, 9, 149, 187],
                2794,
                [161, 142, 100, 80],
                1766,
                0x323e8fc2,
                0x51ccc178,
            ),
            (
                [199, 92, 111, 2],
                14230,
                [65, 69, 140, 83],
                4739,
                0xd718262a,
                0xc626b0ea,
            ),
            (
                [153, 39, 163, 191],
                44251,
                [202, 188, 127, 2],
                1303,
                0x5d1809c5,
                0x10e828a2,
            ),
        ];
        for (src, sport, dst, dport, two, four) in vectors {
            let mut input = Vec::new();
            input.extend_from_slice(&src);
            input.extend_from_slice(&dst);
            assert_eq!(toeplitz(&input), two, "{src:?} > {dst:?}");
            input.extend_from_slice(&sport.to_be_bytes());
            input.extend_from_slice(&dport.to_be_bytes());
            assert_eq!(toeplitz(&input), four, "{src:?}:{sport} > {dst:?}:{dport}");
        }
    }

    #[test]
    fn key_windows_are_the_keys_bits_from_the_offset() {
        assert_eq!(key_window(0), 0x6d5a56da);
        assert_eq!(key_window(8), 0x5a56da25);
        assert_eq!(key_window(4), 0xd5a56da2);
        assert_eq!(key_window(13), 0x4adb44ab);
    }
}
