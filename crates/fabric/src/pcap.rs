//! Classic pcap files (the libpcap format, link type Ethernet), which tshark, Wireshark
//! and tcpdump read.

use std::io::{self, Write};
use std::time::Duration;

/// LINKTYPE_ETHERNET.
const LINKTYPE_ETHERNET: u32 = 1;
/// Frames are stored whole.
const SNAPLEN: u32 = 65535;

/// Writes a pcap file with microsecond timestamps. `base` is added to every frame's time,
/// so virtual time 0 can be shown as a real date.
pub fn write<'a, W: Write>(
    mut out: W,
    base: Duration,
    frames: impl IntoIterator<Item = (Duration, &'a [u8])>,
) -> io::Result<()> {
    out.write_all(&0xa1b2_c3d4u32.to_le_bytes())?;
    out.write_all(&2u16.to_le_bytes())?;
    out.write_all(&4u16.to_le_bytes())?;
    out.write_all(&0i32.to_le_bytes())?; // thiszone
    out.write_all(&0u32.to_le_bytes())?; // sigfigs
    out.write_all(&SNAPLEN.to_le_bytes())?;
    out.write_all(&LINKTYPE_ETHERNET.to_le_bytes())?;
    for (time, frame) in frames {
        let t = base + time;
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let caplen = len.min(SNAPLEN);
        out.write_all(&(t.as_secs() as u32).to_le_bytes())?;
        out.write_all(&t.subsec_micros().to_le_bytes())?;
        out.write_all(&caplen.to_le_bytes())?;
        out.write_all(&len.to_le_bytes())?;
        out.write_all(&frame[..caplen as usize])?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_and_record_layout() {
        let mut buf = Vec::new();
        let frame = [0u8; 60];
        super::write(
            &mut buf,
            std::time::Duration::from_secs(10),
            [(std::time::Duration::from_micros(1_500_000), &frame[..])],
        )
        .unwrap();
        assert_eq!(buf.len(), 24 + 16 + 60);
        assert_eq!(&buf[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        assert_eq!(&buf[24..28], &11u32.to_le_bytes());
        assert_eq!(&buf[28..32], &500_000u32.to_le_bytes());
    }
}
