//! The hashes Muxes must agree on, across processes and versions.
//!
//! Flow hashing is the Toeplitz hash of receive-side scaling, with Microsoft's published
//! RSS key, over the fields the load-balancing rule's distribution names. It is
//! specified (Microsoft's "Verifying the RSS Hash Calculation", the same table in Intel's
//! 82599 datasheet), and the tests check it against that table's vectors. It is computed
//! with one precomputed table per input byte, so a 12-byte 4-tuple costs 12 lookups.
//!
//! Backend identities (for Maglev's permutations) are hashed with SipHash-2-4 under fixed
//! keys; the tests check the reference vector of the SipHash paper.

use std::hash::Hasher;
use std::net::Ipv4Addr;

use siphasher::sip::SipHasher24;

pub use strata_wire::toeplitz::{MAX_INPUT, RSS_KEY, toeplitz};

/// Which fields of a flow pick its backend (the loadBalancingRule's `loadDistribution`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Distribution {
    /// Source and destination address and port, within the rule's protocol (`Default`).
    #[default]
    FiveTuple,
    /// Source and destination address and protocol (`SourceIPProtocol`).
    ThreeTuple,
    /// Source and destination address (`SourceIP`).
    TwoTuple,
}

/// The flow hash of a packet from `src:sport` to `dst:dport` with protocol `proto`.
#[inline]
pub fn flow_hash(
    distribution: Distribution,
    proto: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
) -> u32 {
    let mut input = [0u8; MAX_INPUT];
    input[0..4].copy_from_slice(&src.octets());
    input[4..8].copy_from_slice(&dst.octets());
    let len = match distribution {
        Distribution::FiveTuple => {
            input[8..10].copy_from_slice(&sport.to_be_bytes());
            input[10..12].copy_from_slice(&dport.to_be_bytes());
            12
        }
        Distribution::ThreeTuple => {
            input[8] = proto;
            9
        }
        Distribution::TwoTuple => 8,
    };
    toeplitz(&input[..len])
}

/// SipHash-2-4 of `data` under the key `(k0, k1)`.
pub fn siphash(k0: u64, k1: u64, data: &[u8]) -> u64 {
    let mut h = SipHasher24::new_with_keys(k0, k1);
    h.write(data);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Microsoft's RSS verification suite, IPv4: (src, sport, dst, dport, 2-tuple, 4-tuple).
    type Vector = ([u8; 4], u16, [u8; 4], u16, u32, u32);
    const VECTORS: [Vector; 5] = [
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
            [24, 19, 198, 95],
            12898,
            [12, 22, 207, 184],
            38024,
            0xd2d0a5de,
            0x5c2b394a,
        ),
        (
            [38, 27, 205, 30],
            48228,
            [209, 142, 163, 6],
            2217,
            0x82989176,
            0xafc7327f,
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

    #[test]
    fn microsoft_rss_verification_vectors() {
        for (src, sport, dst, dport, two, four) in VECTORS {
            let (s, d) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            assert_eq!(
                flow_hash(Distribution::TwoTuple, 6, s, d, sport, dport),
                two,
                "{s} > {d}"
            );
            assert_eq!(
                flow_hash(Distribution::FiveTuple, 6, s, d, sport, dport),
                four,
                "{s}:{sport} > {d}:{dport}"
            );
        }
    }

    #[test]
    fn three_tuple_depends_on_protocol_not_ports() {
        let (s, d) = (
            Ipv4Addr::new(192, 168, 200, 10),
            Ipv4Addr::new(192, 168, 133, 74),
        );
        let a = flow_hash(Distribution::ThreeTuple, 6, s, d, 1000, 80);
        assert_eq!(a, flow_hash(Distribution::ThreeTuple, 6, s, d, 2000, 443));
        assert_ne!(a, flow_hash(Distribution::ThreeTuple, 17, s, d, 1000, 80));
    }

    #[test]
    fn siphash_reference_vector() {
        // SipHash paper, appendix A: key 00..0f, message 00..0e.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0..15).collect();
        assert_eq!(siphash(k0, k1, &msg), 0xa129ca6149be45e5);
    }
}
