//! AF_XDP: an interface's frames handed to us by an XDP program before the kernel builds
//! anything for them, and ours handed to the interface, through rings of memory shared
//! with the kernel.
//!
//! ```text
//!   interface ─► XDP program: bpf_redirect_map(sockets, rx queue) ─► RX ring ─► recv
//!        ▲                                    fill ring ◄─ chunks given back ◄─┘
//!        └── the kernel sends (copy mode) ◄── TX ring ◄── send
//!                    completion ring ─► chunks free again ─┘
//! ```
//!
//! One region of memory (the UMEM) is cut into chunks of 2 KiB: half of them wait in
//! the fill ring for frames to arrive, half carry frames out. The program is six
//! instructions, written here, loaded with `bpf(2)` and attached by a BPF link, so it
//! goes with the link's descriptor: when the [`XdpLink`] is dropped or its process dies,
//! the interface is as it was.
//!
//! What the backend does not do, and says so: a frame whose checksum the sending kernel
//! left to the device (a veth carries its peer's checksum offload) arrives unfinished,
//! for XDP carries no word of it (turn the peer's offload off, `ethtool -K PEER tx off`,
//! when such frames matter); frames larger than a chunk are neither received nor sent
//! (XDP on a veth turns its peer's segmentation offload off, so none come whole); and
//! only queue 0 is read (a veth made by `ip link add` has one).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::bpf::{self, Insn, insn, owned};
use crate::Batch;
use crate::batch::Span;

/// A chunk of the UMEM: one frame (the kernel leaves its own headroom inside it).
const CHUNK: usize = 2048;
/// In copy mode a `sendto` sends at most this many frames of the TX ring (the kernel's
/// `TX_BATCH_SIZE`), and says EAGAIN if more wait.
const PER_KICK: u32 = 32;
/// Frames each way by default: 2,048 chunks for receiving and as many for sending,
/// 8 MiB. More absorb longer bursts (see [`XdpLink::open_with`]).
pub const FRAMES: u32 = 2048;

/// `return bpf_redirect_map(&sockets, ctx->rx_queue_index, XDP_PASS);`: a frame on a
/// queue without a socket goes to the kernel.
fn program(map: RawFd) -> [Insn; 6] {
    [
        // r2 = *(u32 *)(r1 + offsetof(struct xdp_md, rx_queue_index))
        insn(0x61, 2, 1, 16, 0),
        // r1 = the map (a 64-bit immediate over two instructions)
        insn(0x18, 1, bpf::PSEUDO_MAP_FD, 0, map),
        insn(0, 0, 0, 0, 0),
        // r3 = the action when the queue has no socket
        insn(0xb7, 3, 0, 0, bpf::XDP_PASS),
        // call bpf_redirect_map; its answer is the program's
        insn(0x85, 0, 0, 0, bpf::FUNC_REDIRECT_MAP),
        insn(0x95, 0, 0, 0, 0),
    ]
}

/// A shared mapping, unmapped when dropped.
#[derive(Debug)]
struct Mapping {
    base: NonNull<u8>,
    len: usize,
}

impl Mapping {
    /// Maps `len` bytes of `fd` at `offset` (a ring), or anonymous memory (`fd` None).
    fn new(len: usize, fd: Option<RawFd>, offset: libc::off_t) -> io::Result<Mapping> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd),
            None => (
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
            ),
        };
        // SAFETY: a new mapping of our choosing; the result is checked.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(map.cast()).ok_or_else(io::Error::last_os_error)?;
        Ok(Mapping { base, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the whole mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// One of the four rings: a power-of-two array of `T` with a producer and a consumer
/// index, one of them ours.
#[derive(Debug)]
struct Ring<T> {
    producer: NonNull<AtomicU32>,
    consumer: NonNull<AtomicU32>,
    descs: NonNull<T>,
    mask: u32,
    _map: Mapping,
}

impl<T: Copy> Ring<T> {
    /// Maps ring `offsets` of `fd` at page offset `pgoff`, of `size` entries.
    fn map(fd: RawFd, offsets: &RingOffsets, pgoff: libc::off_t, size: u32) -> io::Result<Ring<T>> {
        let len = offsets.desc as usize + size as usize * std::mem::size_of::<T>();
        let map = Mapping::new(len, Some(fd), pgoff)?;
        let at = |off: u64| {
            // SAFETY: the kernel's offsets lie inside the mapping it sized for them.
            unsafe { NonNull::new_unchecked(map.base.as_ptr().add(off as usize)) }
        };
        Ok(Ring {
            producer: at(offsets.producer).cast(),
            consumer: at(offsets.consumer).cast(),
            descs: at(offsets.desc).cast(),
            mask: size - 1,
            _map: map,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: an aligned u32 inside the live mapping, shared with the kernel, which
        // reads and writes it atomically too.
        unsafe { self.producer.as_ref() }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for the producer.
        unsafe { self.consumer.as_ref() }
    }

    /// Entries the kernel has produced and we have not consumed, and the first's index.
    fn ready(&self) -> (u32, u32) {
        let at = self.consumer().load(Ordering::Relaxed);
        (self.producer().load(Ordering::Acquire).wrapping_sub(at), at)
    }

    /// The index of the next entry we produce (a ring we produce). There is always room
    /// for what we produce: each entry carries a chunk, and a ring has an entry for
    /// every chunk of its kind.
    fn next(&self) -> u32 {
        self.producer().load(Ordering::Relaxed)
    }

    /// Entries we produced that the kernel has not consumed yet.
    fn pending(&self) -> u32 {
        self.next()
            .wrapping_sub(self.consumer().load(Ordering::Acquire))
    }

    fn read(&self, index: u32) -> T {
        // SAFETY: the index is masked into the ring, and the entry is one the kernel
        // produced before the producer index we acquired.
        unsafe { self.descs.as_ptr().add((index & self.mask) as usize).read() }
    }

    fn write(&mut self, index: u32, value: T) {
        // SAFETY: the index is masked into the ring, and the entry is ours to fill until
        // the producer index we release passes it.
        unsafe {
            self.descs
                .as_ptr()
                .add((index & self.mask) as usize)
                .write(value)
        };
    }

    /// Hands `n` entries after `at` to the kernel (a ring we produce).
    fn produce(&self, at: u32, n: u32) {
        self.producer().store(at.wrapping_add(n), Ordering::Release);
    }

    /// Gives back `n` entries after `at` (a ring we consume).
    fn consume(&self, at: u32, n: u32) {
        self.consumer().store(at.wrapping_add(n), Ordering::Release);
    }
}

/// What the kernel counted for a socket (`XDP_STATISTICS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpStatistics {
    /// Frames the socket dropped for want of a chunk to copy them into (we read too
    /// slowly), or too large for one.
    pub rx_dropped: u64,
    /// Frames dropped, apart from those, because the RX ring was full (it has an entry
    /// for every receiving chunk, so chunks run out first).
    pub rx_ring_full: u64,
    /// Times a frame found no chunk waiting in the fill ring.
    pub rx_fill_ring_empty: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
}

/// The XDP program on an interface, with the map of sockets it hands frames to. It
/// stays attached as long as its BPF link's descriptor is open.
#[derive(Debug)]
struct Program {
    // Declared in the order they go: the attachment first.
    _attachment: OwnedFd,
    _program: OwnedFd,
    _map: OwnedFd,
    /// Whether the program runs in the driver (native XDP) rather than on socket
    /// buffers the kernel built first (generic XDP).
    native: bool,
}

impl Program {
    /// Loads the program with `socket` for queue 0 and attaches it to the interface.
    fn attach(interface: &str, ifindex: i32, socket: RawFd) -> io::Result<Program> {
        let map = bpf::map_u32(bpf::BPF_MAP_TYPE_XSKMAP, 1)?;
        bpf::update_u32(&map, 0, socket as u32)?;
        let program = bpf::load_xdp(&program(map.as_raw_fd()), "strata_xsk")?;
        let (attachment, native) = match bpf::attach_xdp(&program, ifindex, bpf::XDP_FLAGS_DRV_MODE)
        {
            Ok(fd) => (fd, true),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!("{interface} has an XDP program already"),
                ));
            }
            Err(_) => (
                bpf::attach_xdp(&program, ifindex, bpf::XDP_FLAGS_SKB_MODE)?,
                false,
            ),
        };
        Ok(Program {
            _attachment: attachment,
            _program: program,
            _map: map,
            native,
        })
    }
}

/// An AF_XDP socket on queue 0 of one interface, and the XDP program that hands it the
/// interface's frames.
#[derive(Debug)]
pub struct XdpLink {
    // Declared in the order they go: the program first (the interface is itself again),
    // then the socket, then the memory it used.
    program: Program,
    socket: OwnedFd,
    fill: Ring<u64>,
    completion: Ring<u64>,
    rx: Ring<libc::xdp_desc>,
    tx: Ring<libc::xdp_desc>,
    umem: Mapping,
    /// Sending chunks not in flight.
    free: Vec<u64>,
    name: String,
    ifindex: i32,
    mac: [u8; 6],
}

// SAFETY: the mappings are owned by this value alone (the socket that shares them with
// the kernel lives beside them), so they may move to another thread with it.
unsafe impl Send for XdpLink {}

/// A new socket of `family` and `kind`, closed on exec.
fn socket(family: libc::c_int, kind: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: plain system call; its result is checked before it is owned.
    let raw = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owned(raw.into()))
}

fn setsockopt<T>(fd: RawFd, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: the option value is a live `T`, its size given.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_XDP,
            name,
            std::ptr::from_ref(value).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Reads a `T` option of the XDP level (a plain-data structure).
fn getsockopt<T: Default>(fd: RawFd, name: libc::c_int) -> io::Result<T> {
    let mut value = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into the live `value`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            name,
            std::ptr::from_mut(&mut value).cast(),
            &raw mut len,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(value)
    }
}

/// `struct xdp_statistics` (`XDP_STATISTICS`).
#[derive(Default)]
#[repr(C)]
struct Statistics {
    rx_dropped: u64,
    rx_invalid_descs: u64,
    tx_invalid_descs: u64,
    rx_ring_full: u64,
    rx_fill_ring_empty_descs: u64,
    tx_ring_empty_descs: u64,
}

/// `struct xdp_mmap_offsets` (`XDP_MMAP_OFFSETS`): where each ring's parts lie in its
/// mapping.
#[derive(Default)]
#[repr(C)]
struct Offsets {
    rx: RingOffsets,
    tx: RingOffsets,
    fr: RingOffsets,
    cr: RingOffsets,
}

#[derive(Default)]
#[repr(C)]
struct RingOffsets {
    producer: u64,
    consumer: u64,
    desc: u64,
    flags: u64,
}

impl XdpLink {
    /// Opens a socket on queue 0 of `interface` (of the calling thread's namespace) and
    /// attaches the program that gives it every frame, in the driver if the interface
    /// can (a veth can), else on the kernel's socket buffers. Fails (`ResourceBusy`) if
    /// another socket or XDP program is on the interface.
    pub fn open(interface: &str) -> io::Result<XdpLink> {
        XdpLink::open_with(interface, FRAMES)
    }

    /// [`XdpLink::open`] with `frames` chunks for receiving and as many for sending, and
    /// rings of as many entries: a power of two from 64 to 65,536 (4 KiB of memory per
    /// frame in all).
    pub fn open_with(interface: &str, frames: u32) -> io::Result<XdpLink> {
        if !frames.is_power_of_two() || !(64..=65_536).contains(&frames) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{frames} frames: expected a power of two from 64 to 65536"),
            ));
        }
        let chunks = frames as usize * 2;
        let ifindex = super::index_of(interface)?;
        let mac = {
            let probe = socket(libc::AF_INET, libc::SOCK_DGRAM)?;
            super::mac_of(probe.as_raw_fd(), interface)?
        };
        let socket = socket(libc::AF_XDP, libc::SOCK_RAW)?;
        let fd = socket.as_raw_fd();
        let umem = Mapping::new(CHUNK * chunks, None, 0)?;
        setsockopt(
            fd,
            libc::XDP_UMEM_REG,
            &libc::xdp_umem_reg {
                addr: umem.base.as_ptr() as u64,
                len: (CHUNK * chunks) as u64,
                chunk_size: CHUNK as u32,
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            },
        )?;
        for ring in [
            libc::XDP_UMEM_FILL_RING,
            libc::XDP_UMEM_COMPLETION_RING,
            libc::XDP_RX_RING,
            libc::XDP_TX_RING,
        ] {
            setsockopt(fd, ring, &frames)?;
        }
        let offsets: Offsets = getsockopt(fd, libc::XDP_MMAP_OFFSETS)?;
        let mut fill = Ring::map(
            fd,
            &offsets.fr,
            libc::XDP_UMEM_PGOFF_FILL_RING as libc::off_t,
            frames,
        )?;
        let completion = Ring::map(
            fd,
            &offsets.cr,
            libc::XDP_UMEM_PGOFF_COMPLETION_RING as libc::off_t,
            frames,
        )?;
        let rx = Ring::map(fd, &offsets.rx, libc::XDP_PGOFF_RX_RING, frames)?;
        let tx = Ring::map(fd, &offsets.tx, libc::XDP_PGOFF_TX_RING, frames)?;
        // Every receiving chunk waits in the fill ring.
        let at = fill.next();
        for c in 0..frames {
            fill.write(at.wrapping_add(c), u64::from(c) * CHUNK as u64);
        }
        fill.produce(at, frames);
        let addr = libc::sockaddr_xdp {
            sxdp_family: libc::AF_XDP as u16,
            sxdp_flags: libc::XDP_COPY,
            sxdp_ifindex: ifindex as u32,
            sxdp_queue_id: 0,
            sxdp_shared_umem_fd: 0,
        };
        // SAFETY: the address and its size describe a live sockaddr_xdp.
        let bound = unsafe {
            libc::bind(
                fd,
                (&raw const addr).cast(),
                std::mem::size_of::<libc::sockaddr_xdp>() as u32,
            )
        };
        if bound < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EBUSY) => io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!("{interface} has an AF_XDP socket already"),
                ),
                _ => e,
            });
        }
        let program = Program::attach(interface, ifindex, fd)?;
        Ok(XdpLink {
            program,
            socket,
            fill,
            completion,
            rx,
            tx,
            umem,
            free: (chunks / 2..chunks).map(|c| (c * CHUNK) as u64).collect(),
            name: interface.to_string(),
            ifindex,
            mac,
        })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The interface's index in its namespace.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Whether the program runs in the interface's driver (native XDP).
    pub fn native(&self) -> bool {
        self.program.native
    }

    /// The interface's MAC address when the link was opened (an AF_XDP socket answers
    /// no interface request, and the link may be used outside the namespace).
    pub fn mac(&self) -> io::Result<[u8; 6]> {
        Ok(self.mac)
    }

    /// What the kernel counted for the socket.
    pub fn statistics(&self) -> io::Result<XdpStatistics> {
        let s: Statistics = getsockopt(self.socket.as_raw_fd(), libc::XDP_STATISTICS)?;
        Ok(XdpStatistics {
            rx_dropped: s.rx_dropped,
            rx_ring_full: s.rx_ring_full,
            rx_fill_ring_empty: s.rx_fill_ring_empty_descs,
            rx_invalid_descs: s.rx_invalid_descs,
            tx_invalid_descs: s.tx_invalid_descs,
        })
    }

    /// The chunks the kernel has finished sending are free again (it gives back the
    /// addresses the TX descriptors had: chunks' own).
    fn reap(&mut self) {
        let (n, at) = self.completion.ready();
        for i in 0..n {
            self.free.push(self.completion.read(at.wrapping_add(i)));
        }
        self.completion.consume(at, n);
    }

    /// Asks the kernel to send what the TX ring holds: [`PER_KICK`] frames a call, so as
    /// many calls as that takes (and one more), unless the device refuses one.
    fn kick(&self) -> io::Result<()> {
        for _ in 0..=self.tx.pending().div_ceil(PER_KICK) {
            if self.tx.pending() == 0 {
                break;
            }
            // SAFETY: a send of nothing: the frames are in the TX ring.
            let r = unsafe {
                libc::sendto(
                    self.socket.as_raw_fd(),
                    std::ptr::null(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null(),
                    0,
                )
            };
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN | libc::EINTR) => continue,
                    // The device dropped a frame (EBUSY: no carrier, its queue full) or
                    // no buffer was to be had: the rest goes with the next send.
                    Some(libc::EBUSY | libc::ENOBUFS) => break,
                    _ => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// The chunk `addr` of the UMEM, `len` bytes of it.
    fn chunk(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let end = (addr as usize).checked_add(len)?;
        if end > self.umem.len {
            return None;
        }
        // SAFETY: inside the UMEM, which lives as long as `self`; the kernel wrote this
        // chunk before producing its descriptor and does not touch it until we give it
        // back.
        Some(unsafe { std::slice::from_raw_parts(self.umem.base.as_ptr().add(addr as usize), len) })
    }

    fn chunk_mut(&mut self, addr: u64, len: usize) -> &mut [u8] {
        debug_assert!(addr as usize + len <= self.umem.len);
        // SAFETY: a sending chunk of the free list, inside the UMEM, which the kernel does
        // not read until we produce its descriptor.
        unsafe { std::slice::from_raw_parts_mut(self.umem.base.as_ptr().add(addr as usize), len) }
    }
}

impl AsRawFd for XdpLink {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

impl crate::Link for XdpLink {
    fn send<F: AsRef<[u8]>>(&mut self, frames: &[F]) -> io::Result<usize> {
        self.reap();
        let at = self.tx.next();
        let mut taken = 0u32;
        for frame in frames {
            let frame = frame.as_ref();
            if frame.len() > CHUNK {
                break;
            }
            let Some(addr) = self.free.pop() else { break };
            self.chunk_mut(addr, frame.len()).copy_from_slice(frame);
            self.tx.write(
                at.wrapping_add(taken),
                libc::xdp_desc {
                    addr,
                    len: frame.len() as u32,
                    options: 0,
                },
            );
            taken += 1;
        }
        self.tx.produce(at, taken);
        self.kick()?;
        Ok(taken as usize)
    }

    fn recv(&mut self, batch: &mut Batch) -> io::Result<usize> {
        batch.clear();
        let (ready, at) = self.rx.ready();
        let n = ready.min(batch.capacity() as u32);
        let fill_at = self.fill.next();
        // Frames are packed one after another (no frame is larger than a chunk, so they
        // fit: a batch holds `capacity` slots), not one per slot: slots are sized for a
        // socket's super-frames, and a frame per slot would touch a page per frame.
        let mut start = 0;
        for i in 0..n {
            let desc = self.rx.read(at.wrapping_add(i));
            match self.chunk(desc.addr, desc.len as usize) {
                Some(frame) if frame.len() <= batch.slot => {
                    batch.data[start..start + frame.len()].copy_from_slice(frame);
                    batch.frames.push(Span {
                        spilled: false,
                        start,
                        len: frame.len(),
                    });
                    start += frame.len();
                }
                _ => batch.truncated += 1,
            }
            // The chunk waits for the next frame (the kernel aligns the address down).
            self.fill.write(fill_at.wrapping_add(i), desc.addr);
        }
        self.rx.consume(at, n);
        self.fill.produce(fill_at, n);
        Ok(batch.len())
    }
}

#[cfg(test)]
mod tests {
    use super::{XdpLink, getsockopt, setsockopt, socket};
    use crate::linux::netns;
    use std::os::fd::AsRawFd;

    /// A failed call says so (the kernel's error), on every path that makes one.
    #[test]
    fn failed_socket_calls_are_errors() {
        assert!(socket(-1, libc::SOCK_RAW).is_err(), "no such family");
        let udp = socket(libc::AF_INET, libc::SOCK_DGRAM).unwrap_or_else(|e| panic!("{e}"));
        // A UDP socket has no XDP options.
        assert!(setsockopt(udp.as_raw_fd(), libc::XDP_RX_RING, &64u32).is_err());
        assert!(getsockopt::<super::Statistics>(udp.as_raw_fd(), libc::XDP_STATISTICS).is_err());
    }

    use strata_testkit::netns::{Scene, allowed, run};

    /// Whether `/proc/self/maps` has a mapping of exactly `len` bytes at `base`.
    fn mapped(base: usize, len: usize) -> bool {
        let range = format!("{base:x}-{:x} ", base + len);
        std::fs::read_to_string("/proc/self/maps")
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with(&range))
    }

    /// The mappings of the socket's file (its rings), as `/proc/self/maps` lists them.
    fn socket_maps(link: &XdpLink) -> usize {
        use std::os::fd::AsFd;
        let socket = format!(
            "socket:[{}]",
            crate::linux::tests::inode(link.socket.as_fd())
        );
        std::fs::read_to_string("/proc/self/maps")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.ends_with(&socket))
            .count()
    }

    /// The link's memory and rings are unmapped when it goes (root: the test makes a
    /// namespace with a veth).
    #[test]
    fn a_link_unmaps_its_memory_when_it_goes() {
        if !allowed() {
            return;
        }
        let (_scene, names) = Scene::new(&["xdp-unmap-a", "xdp-unmap-b"]);
        run(
            "ip",
            &[
                "-n", &names[0], "link", "add", "va", "type", "veth", "peer", "name", "vb",
                "netns", &names[1],
            ],
        );
        run("ip", &["-n", &names[0], "link", "set", "va", "up"]);
        let link = netns::run_in(&names[0], || XdpLink::open_with("va", 64))
            .unwrap_or_else(|e| panic!("{e}"));
        // (Tests run beside each other in one process: a range unmapped may be mapped
        // again at once by another's allocation, so the rings are known by their socket
        // and the memory by its exact range.)
        let umem = (link.umem.base.as_ptr() as usize, link.umem.len);
        assert!(mapped(umem.0, umem.1), "mapped while open");
        assert_eq!(socket_maps(&link), 4, "four rings");
        let name = format!(
            "socket:[{}]",
            crate::linux::tests::inode(std::os::fd::AsFd::as_fd(&link.socket))
        );
        assert_eq!(link.umem.len, 64 * 2 * super::CHUNK);
        // The sending chunks are the second half, apart from those the fill ring holds.
        let mut free = link.free.clone();
        free.sort_unstable();
        let second: Vec<u64> = (64..128).map(|c| (c * super::CHUNK) as u64).collect();
        assert_eq!(free, second);
        drop(link);
        assert!(!mapped(umem.0, umem.1), "the memory is unmapped once gone");
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        assert!(
            !maps.lines().any(|l| l.ends_with(&name)),
            "the rings are unmapped"
        );
    }

    #[test]
    fn a_ring_size_that_is_no_power_of_two_or_out_of_range_is_refused() {
        for frames in [0, 1, 32, 100, 3000, 131_072] {
            let e = XdpLink::open_with("lo", frames).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{frames}");
            assert!(e.to_string().contains("power of two"), "{e}");
        }
        // In range, it goes on to the interface (here, one that does not exist).
        for frames in [64, 2048, 65_536] {
            let e = XdpLink::open_with("strata-none0", frames).unwrap_err();
            assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{frames}: {e}");
        }
    }
}
