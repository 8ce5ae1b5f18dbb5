//! Segmentation offload done in software: a TCP/IPv4 super-frame cut into the frames a
//! wire would carry.
//!
//! A kernel that believes its device segments (TSO/GSO, which a veth advertises) hands
//! the device one frame of up to 64 KiB and the segment size. A packet socket with
//! `PACKET_VNET_HDR` receives that frame as it is, and the `virtio_net_hdr` says how to
//! cut it. Cut as a device would (as Linux's `tcp_gso_segment` does): every segment
//! carries the headers, the IPv4 identification counts up, the sequence number moves on
//! by the bytes before it, FIN and PSH stay on the last segment and CWR on the first, and
//! every checksum is whole.

use strata_wire::checksum;

/// Why a super-frame could not be cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoError {
    /// Not Ethernet (with at most one VLAN tag) carrying IPv4 carrying TCP.
    NotTcp4,
    /// Headers too short, or a fragment.
    Malformed,
    /// A segment size of 0.
    NoSize,
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_VLAN: u16 = 0x8100;
const TCP: u8 = 6;
const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const CWR: u8 = 0x80;

/// Cuts `frame` into segments of at most `mss` bytes of TCP payload each, appended to
/// `out` one after another; `segment(start, len)` is told where each lies in `out`.
/// Returns how many there are.
pub fn segment_tcp4(
    frame: &[u8],
    mss: usize,
    out: &mut Vec<u8>,
    mut segment: impl FnMut(usize, usize),
) -> Result<usize, GsoError> {
    if mss == 0 {
        return Err(GsoError::NoSize);
    }
    let ethertype = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let l3 = match ethertype(12) {
        Some(ETHERTYPE_IPV4) => 14,
        Some(ETHERTYPE_VLAN) if ethertype(16) == Some(ETHERTYPE_IPV4) => 18,
        Some(_) => return Err(GsoError::NotTcp4),
        None => return Err(GsoError::Malformed),
    };
    let ip = &frame[l3..];
    if ip.len() < 20 {
        return Err(GsoError::Malformed);
    }
    if ip[0] >> 4 != 4 || ip[9] != TCP {
        return Err(GsoError::NotTcp4);
    }
    let ip_len = usize::from(ip[0] & 0x0f) * 4;
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if ip_len < 20 || fragment || ip.len() < ip_len + 20 {
        return Err(GsoError::Malformed);
    }
    let l4 = l3 + ip_len;
    let tcp_len = usize::from(frame[l4 + 12] >> 4) * 4;
    let headers = l4 + tcp_len;
    if tcp_len < 20 || frame.len() < headers {
        return Err(GsoError::Malformed);
    }
    // The IPv4 total length of a super-frame may say anything (0 beyond 64 KiB): the
    // frame's own length says where the payload ends.
    let payload = &frame[headers..];
    let ident = u16::from_be_bytes([ip[4], ip[5]]);
    let seq = u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]]);
    let flags = frame[l4 + 13];
    let count = payload.len().div_ceil(mss).max(1);
    for i in 0..count {
        let chunk = payload
            .get(i * mss..payload.len().min((i + 1) * mss))
            .unwrap_or(&[]);
        let start = out.len();
        out.extend_from_slice(&frame[..headers]);
        out.extend_from_slice(chunk);
        let seg = &mut out[start..];

        let ip = &mut seg[l3..l4];
        let total = (ip_len + tcp_len + chunk.len()) as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[4..6].copy_from_slice(&ident.wrapping_add(i as u16).to_be_bytes());
        ip[10..12].fill(0);
        let c = checksum::checksum(ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut pseudo = [0u8; 12];
        pseudo[..8].copy_from_slice(&ip[12..20]);
        pseudo[9] = TCP;
        pseudo[10..12].copy_from_slice(&((tcp_len + chunk.len()) as u16).to_be_bytes());

        let tcp = &mut seg[l4..];
        let offset = (i * mss) as u32;
        tcp[4..8].copy_from_slice(&seq.wrapping_add(offset).to_be_bytes());
        let mut f = flags;
        if i + 1 < count {
            f &= !(FIN | PSH);
        }
        if i > 0 {
            f &= !CWR;
        }
        tcp[13] = f;
        tcp[16..18].fill(0);
        let c = !checksum::fold(checksum::sum_raw(&pseudo) + checksum::sum_raw(tcp));
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        segment(start, seg.len());
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ethernet frame with a TCP/IPv4 packet of `payload` bytes (0, 1, 2, ...), the
    /// checksums left as a kernel leaves them for the device (partial), and `flags`.
    fn super_frame(payload: usize, flags: u8, vlan: bool) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let total = (20 + 32 + payload).min(usize::from(u16::MAX)) as u16;
        let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, TCP, 0, 0];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&ip);
        // TCP with 12 bytes of options (NOP NOP timestamps), as Linux sends.
        let mut tcp = vec![0u8; 32];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&0xffff_ff00u32.to_be_bytes());
        tcp[8..12].copy_from_slice(&7u32.to_be_bytes());
        tcp[12] = 8 << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&502u16.to_be_bytes());
        tcp[20..24].copy_from_slice(&[1, 1, 8, 10]);
        tcp[16..18].copy_from_slice(&[0xab, 0xcd]);
        f.extend_from_slice(&tcp);
        f.extend((0..payload).map(|i| i as u8));
        f
    }

    fn cut(frame: &[u8], mss: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut spans = Vec::new();
        let n = segment_tcp4(frame, mss, &mut out, |s, l| spans.push((s, l))).unwrap();
        assert_eq!(n, spans.len());
        spans.iter().map(|&(s, l)| out[s..s + l].to_vec()).collect()
    }

    /// Checks a segment as a receiver would; returns (ident, seq, flags, payload).
    fn check(seg: &[u8], l3: usize) -> (u16, u32, u8, Vec<u8>) {
        let ip = &seg[l3..l3 + 20];
        assert_eq!(checksum::sum(ip), 0xffff, "IPv4 header checksum");
        assert_eq!(
            usize::from(u16::from_be_bytes([ip[2], ip[3]])),
            seg.len() - l3,
            "total length"
        );
        let tcp = &seg[l3 + 20..];
        let mut all = ip[12..20].to_vec();
        all.extend_from_slice(&[0, TCP]);
        all.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        all.extend_from_slice(tcp);
        assert_eq!(checksum::checksum(&all), 0, "TCP checksum");
        (
            u16::from_be_bytes([ip[4], ip[5]]),
            u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
            tcp[13],
            tcp[32..].to_vec(),
        )
    }

    #[test]
    fn a_super_frame_is_cut_as_a_device_would() {
        // PSH|ACK|FIN|CWR on 3,000 bytes at 1,448 a segment: 1,448 + 1,448 + 104.
        let frame = super_frame(3000, 0x80 | 0x10 | PSH | FIN, false);
        let segs = cut(&frame, 1448);
        assert_eq!(segs.len(), 3);
        let mut payload = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            assert_eq!(seg[..14], frame[..14], "the Ethernet header is copied");
            let (ident, seq, flags, data) = check(seg, 14);
            assert_eq!(ident, 0x1234 + i as u16);
            // The sequence number wraps past 2^32.
            assert_eq!(seq, 0xffff_ff00u32.wrapping_add(1448 * i as u32));
            let want = match i {
                0 => 0x80 | 0x10,
                1 => 0x10,
                _ => 0x10 | PSH | FIN,
            };
            assert_eq!(flags, want, "segment {i}");
            assert_eq!(
                seg[14 + 20 + 20..14 + 20 + 32],
                frame[54..66],
                "options kept"
            );
            payload.extend(data);
        }
        assert_eq!(payload, frame[14 + 52..], "the payload, whole and in order");
        assert_eq!(segs[2].len(), 14 + 52 + 104);
    }

    #[test]
    fn a_tagged_frame_and_an_exact_multiple_and_a_bare_ack() {
        let frame = super_frame(2896, 0x10, true);
        let segs = cut(&frame, 1448);
        assert_eq!(segs.len(), 2);
        for seg in &segs {
            assert_eq!(seg[12..16], [0x81, 0x00, 0x00, 0x07]);
            assert_eq!(check(seg, 18).3.len(), 1448);
        }
        // A payload of 0 is one segment (the headers alone).
        let segs = cut(&super_frame(0, 0x10 | FIN, false), 1448);
        assert_eq!(segs.len(), 1);
        assert_eq!(check(&segs[0], 14).2, 0x10 | FIN);
        // The largest IPv4 super-frame, in segments of 1.
        let frame = super_frame(usize::from(u16::MAX) - 52, 0x10, false);
        assert_eq!(cut(&frame, 1).len(), usize::from(u16::MAX) - 52);
    }

    #[test]
    fn ip_options_and_a_bare_header_are_cut_too() {
        // IHL 6: four bytes of options (a NOP and an end of list), kept in each segment.
        let plain = super_frame(2000, 0x10, false);
        let mut f = plain[..34].to_vec();
        f[14] = 0x46;
        f.extend_from_slice(&[1, 0, 0, 0]);
        f.extend_from_slice(&plain[34..]);
        let mut out = Vec::new();
        let mut spans = Vec::new();
        let n = segment_tcp4(&f, 1000, &mut out, |s, l| spans.push((s, l))).unwrap();
        assert_eq!(n, 2);
        let mut payload = Vec::new();
        for &(s, l) in &spans {
            let seg = &out[s..s + l];
            let ip = &seg[14..38];
            assert_eq!(checksum::sum(ip), 0xffff);
            assert_eq!(&ip[20..24], &[1, 0, 0, 0]);
            assert_eq!(usize::from(u16::from_be_bytes([ip[2], ip[3]])), l - 14);
            let tcp = &seg[38..];
            let mut all = ip[12..20].to_vec();
            all.extend_from_slice(&[0, TCP]);
            all.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
            all.extend_from_slice(tcp);
            assert_eq!(checksum::checksum(&all), 0);
            payload.extend_from_slice(&tcp[32..]);
        }
        assert_eq!(payload, plain[66..]);
        // A TCP header of 20 bytes and nothing after it: one segment, the frame itself
        // with its checksums whole.
        let mut bare = plain[..14 + 40].to_vec();
        bare[14 + 20 + 12] = 5 << 4;
        bare[14 + 2..14 + 4].copy_from_slice(&40u16.to_be_bytes());
        let segs = cut(&bare, 1448);
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].len(), 54);
        assert_eq!(checksum::sum(&segs[0][14..34]), 0xffff);
    }

    #[test]
    fn what_is_not_tcp_over_ipv4_is_refused() {
        let good = super_frame(100, 0x10, false);
        let mut out = Vec::new();
        let none = |_, _| panic!("no segment");
        assert_eq!(
            segment_tcp4(&good, 0, &mut out, none),
            Err(GsoError::NoSize)
        );
        let mut udp = good.clone();
        udp[14 + 9] = 17;
        assert_eq!(
            segment_tcp4(&udp, 100, &mut out, none),
            Err(GsoError::NotTcp4)
        );
        let mut v6 = good.clone();
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(
            segment_tcp4(&v6, 100, &mut out, none),
            Err(GsoError::NotTcp4)
        );
        let mut frag = good.clone();
        frag[14 + 6] = 0x20;
        assert_eq!(
            segment_tcp4(&frag, 100, &mut out, none),
            Err(GsoError::Malformed)
        );
        let mut short_tcp = good.clone();
        short_tcp[14 + 20 + 12] = 4 << 4;
        assert_eq!(
            segment_tcp4(&short_tcp, 100, &mut out, none),
            Err(GsoError::Malformed)
        );
        assert_eq!(
            segment_tcp4(&good[..14 + 20 + 10], 100, &mut out, none),
            Err(GsoError::Malformed)
        );
        assert_eq!(
            segment_tcp4(&good[..13], 100, &mut out, none),
            Err(GsoError::Malformed)
        );
        // An IHL below 5.
        let mut short_ip = good.clone();
        short_ip[14] = 0x44;
        assert_eq!(
            segment_tcp4(&short_ip, 100, &mut out, none),
            Err(GsoError::Malformed)
        );
        // A tag over something other than IPv4, though what follows looks like it.
        let tagged = super_frame(100, 0x10, true);
        let mut arp = tagged.clone();
        arp[16..18].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(
            segment_tcp4(&arp, 100, &mut out, none),
            Err(GsoError::NotTcp4)
        );
        // A tagged IPv4 frame too short for an IPv4 header is malformed, not foreign.
        assert_eq!(
            segment_tcp4(&tagged[..24], 100, &mut out, none),
            Err(GsoError::Malformed)
        );
        assert!(out.is_empty(), "nothing written for a refused frame");
    }

    proptest::proptest! {
        #[test]
        fn no_input_panics(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
            edits in proptest::collection::vec((0usize..120, proptest::num::u8::ANY), 0..4),
            cut_at in 0usize..200,
            mss in 0usize..64,
        ) {
            let mut out = Vec::new();
            let _ = segment_tcp4(&bytes, mss, &mut out, |_, _| {});
            // A good frame, edited and cut short anywhere.
            let mut f = super_frame(100, 0x10, false);
            for (at, value) in edits {
                if let Some(b) = f.get_mut(at) {
                    *b = value;
                }
            }
            f.truncate(cut_at);
            let _ = segment_tcp4(&f, mss, &mut out, |s, l| assert!(l >= 54, "a segment at {s} of {l} bytes"));
        }

        #[test]
        fn the_segments_carry_the_payload_whole(payload in 0usize..5000, mss in 1usize..2000) {
            let frame = super_frame(payload, 0x18, false);
            let segs = cut(&frame, mss);
            proptest::prop_assert_eq!(segs.len(), payload.div_ceil(mss).max(1));
            let mut all = Vec::new();
            for seg in &segs {
                let data = check(seg, 14).3;
                proptest::prop_assert!(data.len() <= mss);
                all.extend(data);
            }
            proptest::prop_assert_eq!(&all[..], &frame[66..]);
        }
    }
}
