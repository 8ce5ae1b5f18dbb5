//! The real backends: Linux AF_PACKET sockets ([`PacketLink`]) and AF_XDP sockets
//! ([`XdpLink`], in `xdp`) on interfaces of network namespaces, either held as a
//! [`LinuxLink`].
//!
//! A [`PacketLink`] is a raw socket bound to one interface. It sends and receives
//! Ethernet frames in batches, one system call per batch (`sendmmsg`, `recvmmsg`), into
//! and out of a [`Batch`] allocated once. The socket belongs to the namespace of the
//! thread that opened it; [`netns::run_in`] opens one in a namespace of its choosing,
//! and the socket may then be used from any thread.
//!
//! The unsafe code is the system calls themselves (the `libc` declarations); every
//! buffer they are given is a live Rust slice whose length goes with it. The AF_XDP
//! rings and frame memory are mappings shared with the kernel, read and written through
//! pointers; `xdp` says at each use why it is sound.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub mod bpf;
mod ring;
mod xdp;

pub use xdp::{FRAMES as XDP_FRAMES, XdpLink, XdpStatistics};

use crate::batch::Span;
use crate::{Batch, Link, gso};

/// `ETH_P_ALL` in network byte order: every protocol.
const ALL: u16 = (libc::ETH_P_ALL as u16).to_be();

/// `PACKET_VNET_HDR` (`<linux/if_packet.h>`): every frame comes and goes behind a
/// `virtio_net_hdr`, which says whether its checksum is still to be computed.
const PACKET_VNET_HDR: libc::c_int = 15;
/// The size of `struct virtio_net_hdr`.
const VNET_HDR_LEN: usize = 10;
/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
const NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_*`: a whole frame, a TCP/IPv4 super-frame, and the ECN bit a
/// super-frame's type may carry.
const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_ECN: u8 = 0x80;

/// Completes a frame whose L4 checksum a kernel left for the device to compute (a veth
/// carries its sender's offload): the field holds the pseudo-header's sum, and the
/// checksum covers everything from `start` on. Returns false if the offsets lie outside
/// the frame.
fn finish_checksum(frame: &mut [u8], start: usize, offset: usize) -> bool {
    let field = start + offset;
    if field + 2 > frame.len() || start >= frame.len() {
        return false;
    }
    let c = strata_wire::checksum::checksum(&frame[start..]);
    frame[field..field + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// An AF_PACKET socket bound to one interface: frames in and out, in batches.
#[derive(Debug)]
pub struct PacketLink {
    fd: OwnedFd,
    ifindex: i32,
    name: String,
    /// The receive ring, when the link reads by one (see [`PacketLink::open_ring`]).
    ring: Option<ring::RxRing>,
}

impl PacketLink {
    /// Opens a raw socket on `interface` of the calling thread's network namespace.
    /// It does not see the frames it sends itself.
    pub fn open(interface: &str) -> io::Result<PacketLink> {
        let ifindex = index_of(interface)?;
        // SAFETY: plain system call; the descriptor is owned at once.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(ALL),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor just opened and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ALL;
        addr.sll_ifindex = ifindex;
        // SAFETY: the address and its size describe a live sockaddr_ll.
        let bound = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if bound < 0 {
            return Err(io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        // SAFETY: the option value is a live c_int, its size given.
        let set = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_IGNORE_OUTGOING,
                (&raw const one).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        if set < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        let set = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_VNET_HDR,
                (&raw const one).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        if set < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketLink {
            fd,
            ifindex,
            name: interface.to_string(),
            ring: None,
        })
    }

    /// [`PacketLink::open`], receiving through a ring of memory shared with the kernel
    /// (`PACKET_RX_RING`, version 3; 2 MiB per link) rather than by `recvmmsg`: no socket
    /// buffer is queued and copied per frame. Frames wait up to a millisecond for their
    /// block to be handed over.
    pub fn open_ring(interface: &str) -> io::Result<PacketLink> {
        let mut link = PacketLink::open(interface)?;
        link.ring = Some(ring::RxRing::new(link.fd.as_fd())?);
        Ok(link)
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface's index in its namespace.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> io::Result<[u8; 6]> {
        mac_of(self.fd.as_raw_fd(), &self.name)
    }
}

/// The index of `interface` in the calling thread's namespace.
fn index_of(interface: &str) -> io::Result<i32> {
    let c_name = CString::new(interface)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the name"))?;
    // SAFETY: a NUL-terminated string that lives across the call.
    let ifindex = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {interface:?} in this network namespace"),
        ));
    }
    Ok(ifindex as i32)
}

/// The MAC address of `interface` (`SIOCGIFHWADDR` on any socket of its namespace).
fn mac_of(socket: RawFd, interface: &str) -> io::Result<[u8; 6]> {
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(interface.bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: the request names the interface (NUL-terminated: the name is shorter
    // than IFNAMSIZ, as the kernel found it) and is live across the call.
    if unsafe { libc::ioctl(socket, libc::SIOCGIFHWADDR, &raw mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFHWADDR filled the union's hardware address.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data.iter()) {
        *m = *d as u8;
    }
    Ok(mac)
}

/// A link on a Linux interface, by either backend: what the role processes' driver
/// holds.
#[derive(Debug)]
pub enum LinuxLink {
    Packet(PacketLink),
    /// Boxed: its rings and counters make it several times a packet socket's size.
    Xdp(Box<XdpLink>),
}

impl LinuxLink {
    /// The interface's name.
    pub fn name(&self) -> &str {
        match self {
            LinuxLink::Packet(l) => l.name(),
            LinuxLink::Xdp(l) => l.name(),
        }
    }

    /// The interface's index in its namespace.
    pub fn ifindex(&self) -> i32 {
        match self {
            LinuxLink::Packet(l) => l.ifindex(),
            LinuxLink::Xdp(l) => l.ifindex(),
        }
    }

    /// The interface's MAC address.
    pub fn mac(&self) -> io::Result<[u8; 6]> {
        match self {
            LinuxLink::Packet(l) => l.mac(),
            LinuxLink::Xdp(l) => l.mac(),
        }
    }
}

impl From<PacketLink> for LinuxLink {
    fn from(l: PacketLink) -> LinuxLink {
        LinuxLink::Packet(l)
    }
}

impl From<XdpLink> for LinuxLink {
    fn from(l: XdpLink) -> LinuxLink {
        LinuxLink::Xdp(Box::new(l))
    }
}

impl AsRawFd for LinuxLink {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            LinuxLink::Packet(l) => l.as_raw_fd(),
            LinuxLink::Xdp(l) => l.as_raw_fd(),
        }
    }
}

impl Link for LinuxLink {
    fn send<F: AsRef<[u8]>>(&mut self, frames: &[F]) -> io::Result<usize> {
        match self {
            LinuxLink::Packet(l) => l.send(frames),
            LinuxLink::Xdp(l) => l.send(frames),
        }
    }

    fn recv(&mut self, batch: &mut Batch) -> io::Result<usize> {
        match self {
            LinuxLink::Packet(l) => l.recv(batch),
            LinuxLink::Xdp(l) => l.recv(batch),
        }
    }
}

impl AsFd for PacketLink {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for PacketLink {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// At most this many frames go to the kernel in one call (the stack arrays' size).
const MAX_BATCH: usize = 64;

impl Link for PacketLink {
    fn send<F: AsRef<[u8]>>(&mut self, frames: &[F]) -> io::Result<usize> {
        let mut sent = 0;
        for chunk in frames.chunks(MAX_BATCH) {
            // Our frames are whole: an all-zero virtio_net_hdr says so.
            let header = [0u8; VNET_HDR_LEN];
            // SAFETY (both): iovec and mmsghdr are plain data; zeroed is a valid value.
            let mut iovs: [[libc::iovec; 2]; MAX_BATCH] = unsafe { std::mem::zeroed() };
            let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
            for (i, frame) in chunk.iter().enumerate() {
                let frame = frame.as_ref();
                iovs[i][0].iov_base = header.as_ptr().cast_mut().cast();
                iovs[i][0].iov_len = VNET_HDR_LEN;
                iovs[i][1].iov_base = frame.as_ptr().cast_mut().cast();
                iovs[i][1].iov_len = frame.len();
                msgs[i].msg_hdr.msg_iov = iovs[i].as_mut_ptr();
                msgs[i].msg_hdr.msg_iovlen = 2;
            }
            // SAFETY: every message points at two iovecs over the live header and frame,
            // which the kernel only reads; the count is the chunk's length.
            let n = unsafe {
                libc::sendmmsg(
                    self.fd.as_raw_fd(),
                    msgs.as_mut_ptr(),
                    chunk.len() as u32,
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                // A full socket buffer, or a device whose queue is full (a veth whose
                // peer's XDP ring is full says ENOBUFS): the rest waits.
                if e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
                {
                    break;
                }
                return if sent > 0 { Ok(sent) } else { Err(e) };
            }
            sent += n as usize;
            if (n as usize) < chunk.len() {
                break;
            }
        }
        Ok(sent)
    }

    fn recv(&mut self, batch: &mut Batch) -> io::Result<usize> {
        batch.clear();
        let want = batch.capacity().min(MAX_BATCH);
        if want == 0 {
            return Ok(0);
        }
        // What each slot received: the bytes (virtio_net_hdr and frame), or None for a
        // frame cut short.
        let mut got: [Option<usize>; MAX_BATCH] = [None; MAX_BATCH];
        let slot = batch.slot;
        let n = match self.ring.as_mut() {
            Some(ring) => ring.take(&mut batch.data, slot, want, |i, taken| {
                got[i] = match taken {
                    ring::Taken::Whole(len) => Some(len),
                    ring::Taken::Truncated => None,
                }
            }),
            None => recv_messages(self.fd.as_fd(), batch, want, &mut got)?,
        };
        // Keep the whole frames, their checksums completed, and cut TCP super-frames
        // into segments; a frame cut short by its slot, or a super-frame of another
        // kind, is dropped and counted.
        for (i, got) in got.iter().take(n).enumerate() {
            let Some(len) = got.filter(|&len| len >= VNET_HDR_LEN) else {
                batch.truncated += 1;
                continue;
            };
            let at = i * slot;
            let header = &batch.data[at..at + VNET_HDR_LEN];
            let (flags, gso_type) = (header[0], header[1] & !GSO_ECN);
            let gso_size = usize::from(u16::from_le_bytes([header[4], header[5]]));
            let start = usize::from(u16::from_le_bytes([header[6], header[7]]));
            let offset = usize::from(u16::from_le_bytes([header[8], header[9]]));
            let frame = at + VNET_HDR_LEN..at + len;
            match gso_type {
                GSO_NONE => {}
                GSO_TCPV4 => {
                    let Batch {
                        data,
                        spill,
                        frames,
                        ..
                    } = batch;
                    let cut = gso::segment_tcp4(&data[frame], gso_size, spill, |start, len| {
                        frames.push(Span {
                            spilled: true,
                            start,
                            len,
                        });
                    });
                    match cut {
                        Ok(_) => batch.segmented += 1,
                        Err(_) => batch.offloaded += 1,
                    }
                    continue;
                }
                _ => {
                    batch.offloaded += 1;
                    continue;
                }
            }
            if flags & NEEDS_CSUM != 0
                && !finish_checksum(&mut batch.data[frame.clone()], start, offset)
            {
                batch.truncated += 1;
                continue;
            }
            batch.frames.push(Span {
                spilled: false,
                start: frame.start,
                len: frame.len(),
            });
        }
        Ok(batch.len())
    }
}

/// Receives up to `want` messages into the batch's slots by `recvmmsg`, telling `got`
/// what each slot holds; returns how many.
fn recv_messages(
    fd: BorrowedFd<'_>,
    batch: &mut Batch,
    want: usize,
    got: &mut [Option<usize>; MAX_BATCH],
) -> io::Result<usize> {
    // SAFETY (both): plain data; zeroed is a valid value.
    let mut iovs: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let slot = batch.slot;
    for (i, chunk) in batch.data.chunks_mut(slot).take(want).enumerate() {
        iovs[i].iov_base = chunk.as_mut_ptr().cast();
        iovs[i].iov_len = slot;
        msgs[i].msg_hdr.msg_iov = &raw mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: every header points at one iovec over a distinct slot of the batch's
    // buffer, of the slot's length; nothing else touches the buffer meanwhile.
    let n = unsafe {
        libc::recvmmsg(
            fd.as_raw_fd(),
            msgs.as_mut_ptr(),
            want as u32,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::WouldBlock {
            Ok(0)
        } else {
            Err(e)
        };
    }
    for (g, msg) in got.iter_mut().zip(msgs.iter().take(n as usize)) {
        *g = (msg.msg_hdr.msg_flags & libc::MSG_TRUNC == 0).then_some(msg.msg_len as usize);
    }
    Ok(n as usize)
}

/// Network namespaces (`ip netns`), entered per thread.
pub mod netns {
    use std::io;
    use std::os::fd::AsRawFd;
    use std::path::PathBuf;

    /// Where `ip netns` keeps a namespace named `name`.
    pub fn path(name: &str) -> PathBuf {
        PathBuf::from("/run/netns").join(name)
    }

    /// Moves the calling thread into the namespace `name` (its sockets opened from then
    /// on are that namespace's).
    pub fn enter(name: &str) -> io::Result<()> {
        let file = std::fs::File::open(path(name))
            .map_err(|e| io::Error::new(e.kind(), format!("network namespace {name:?}: {e}")))?;
        // SAFETY: a namespace file descriptor, open for the call.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Runs `f` on a thread of its own inside the namespace `name` and returns what it
    /// returns: a socket opened there stays in that namespace wherever it is used.
    pub fn run_in<T: Send + 'static>(
        name: &str,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let name = name.to_string();
        std::thread::Builder::new()
            .name(format!("netns {name}"))
            .spawn(move || {
                enter(&name)?;
                f()
            })?
            .join()
            .map_err(|_| io::Error::other("the namespace's thread panicked"))?
    }
}

#[cfg(test)]
mod tests {
    use super::{PacketLink, finish_checksum};
    use std::os::fd::AsFd;

    /// An Ethernet frame with a UDP datagram whose checksum field holds only the
    /// pseudo-header's sum, as a kernel leaves it for the device.
    fn partial() -> (Vec<u8>, usize) {
        let mut f = vec![0u8; 14];
        f[12] = 0x08;
        let payload = b"strata";
        let udp_len = 8 + payload.len();
        let mut ip = vec![
            0x45,
            0,
            0,
            (20 + udp_len) as u8,
            0,
            0,
            0x40,
            0,
            64,
            17,
            0,
            0,
        ];
        ip.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend_from_slice(&ip);
        let pseudo = [10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, udp_len as u8];
        let start = f.len();
        let mut udp = vec![0x30, 0x39, 0, 53, 0, udp_len as u8, 0, 0];
        udp.extend_from_slice(payload);
        // The sum of the pseudo-header, folded but not complemented.
        let sum = !strata_wire::checksum::checksum(&pseudo);
        udp[6..8].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&udp);
        (f, start)
    }

    #[test]
    fn a_partial_checksum_is_completed_over_the_rest_of_the_frame() {
        let (mut f, start) = partial();
        assert!(finish_checksum(&mut f, start, 6));
        // Verify as a receiver would: pseudo-header and datagram sum to all ones.
        let udp = &f[start..];
        let mut all = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, udp.len() as u8];
        all.extend_from_slice(udp);
        assert_eq!(strata_wire::checksum::checksum(&all), 0);
    }

    #[test]
    fn offsets_outside_the_frame_are_refused_untouched() {
        let (f, start) = partial();
        let len = f.len();
        for (s, o) in [
            (start, len - start - 1),
            (len, 0),
            (len + 5, 0),
            (start, 100),
        ] {
            let mut g = f.clone();
            assert!(!finish_checksum(&mut g, s, o), "start {s} offset {o}");
            assert_eq!(g, f);
        }
        // The last two bytes of the frame may be the field.
        let mut g = f.clone();
        assert!(finish_checksum(&mut g, start, len - start - 2));
    }

    /// The ring's mapping, as `/proc/self/maps` lists it: the lines whose range starts at
    /// `base`.
    fn mapped_at(base: usize) -> usize {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        maps.lines()
            .filter(|l| l.starts_with(&format!("{base:x}-")))
            .count()
    }

    /// An interface that is not there has no MAC: the kernel's error, not a made-up one.
    #[test]
    fn the_mac_of_a_missing_interface_is_an_error() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let fd = std::os::fd::AsRawFd::as_raw_fd(&socket);
        assert!(super::mac_of(fd, "strata-none0").is_err());
        // The loopback has one (all zeros).
        assert_eq!(super::mac_of(fd, "lo").ok(), Some([0; 6]));
    }

    /// The inode of a descriptor's file (a socket's, as `/proc/self/maps` names it).
    pub(crate) fn inode(fd: std::os::fd::BorrowedFd<'_>) -> u64 {
        std::fs::metadata(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ))
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap_or(0)
    }

    /// A link's ring is unmapped, whole, when the link goes; a second ring on the same
    /// socket is refused. On the loopback interface, reading only (root: without it the
    /// socket cannot be opened, and the test has nothing to check).
    #[test]
    fn a_ring_goes_with_its_link_and_a_socket_takes_one_ring() {
        let Ok(link) = PacketLink::open_ring("lo") else {
            return;
        };
        let ring = link.ring.as_ref().map(|r| r.base()).unwrap_or(0);
        assert_eq!(mapped_at(ring), 1, "the ring is mapped");
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let line = maps
            .lines()
            .find(|l| l.starts_with(&format!("{ring:x}-")))
            .unwrap_or("");
        let (start, end) = line
            .split_whitespace()
            .next()
            .and_then(|r| r.split_once('-'))
            .map(|(a, b)| {
                (
                    usize::from_str_radix(a, 16).unwrap_or(0),
                    usize::from_str_radix(b, 16).unwrap_or(0),
                )
            })
            .unwrap_or((0, 0));
        assert_eq!(end - start, super::ring::MAPPED, "the whole ring, no more");
        assert!(
            super::ring::RxRing::new(link.fd.as_fd()).is_err(),
            "a second ring on one socket"
        );
        // The ring is a mapping of the socket: none of the socket's is left. (Tests run
        // beside each other in one process, so the range itself may be mapped again by
        // another's allocation at once.)
        let socket = format!("socket:[{}]", inode(link.fd.as_fd()));
        assert!(line.contains(&socket), "the ring maps the socket: {line}");
        drop(link);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let left = maps.lines().any(|l| l.ends_with(&socket));
        assert!(!left, "part of the ring is still mapped");
    }
}
