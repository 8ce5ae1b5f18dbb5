//! A `PACKET_RX_RING` of version 3: the kernel writes received frames into blocks of
//! memory shared with us, and we hand each block back once read. Unlike `recvmmsg`, no
//! socket buffer is queued and copied per frame, and no system call is made while
//! blocks are full.
//!
//! Layouts (`<linux/if_packet.h>`): a block starts with `struct tpacket_block_desc`
//! (`block_status` at 8, `num_pkts` at 12, `offset_to_first_pkt` at 16); each frame
//! with `struct tpacket3_hdr` (`tp_next_offset` at 0, `tp_snaplen` at 12, `tp_len` at
//! 16, `tp_mac` at 24), its `virtio_net_hdr` just before the frame at `tp_mac`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use super::VNET_HDR_LEN;

/// A block: larger than the largest frame (a 64 KiB super-frame and its headers).
const BLOCK_SIZE: usize = 1 << 17;
const BLOCKS: usize = 16;
/// The size of the mapping.
pub(super) const MAPPED: usize = BLOCK_SIZE * BLOCKS;
/// `tp_frame_size`: unused by version 3 beyond the kernel's checks.
const FRAME_SIZE: usize = 2048;
/// How long a block that is not full waits before the kernel hands it over, in ms.
const RETIRE_MS: u32 = 1;

/// Where a frame of the ring went: copied into a slot whole, or dropped as cut short.
pub(super) enum Taken {
    Whole(usize),
    Truncated,
}

/// The mapped ring and how far we have read it.
#[derive(Debug)]
pub(super) struct RxRing {
    base: NonNull<u8>,
    /// The block being read.
    block: usize,
    /// Frames of it taken, and the offset of the next.
    taken: u32,
    next: usize,
}

// SAFETY: the mapping is owned by this value alone (the socket that shares it with the
// kernel lives beside it in the link), so it may move to another thread with it.
unsafe impl Send for RxRing {}

impl RxRing {
    /// Sets up the ring on a packet socket (which has `PACKET_VNET_HDR` set already).
    pub(super) fn new(fd: BorrowedFd<'_>) -> io::Result<RxRing> {
        let version: libc::c_int = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
        setsockopt(fd, libc::PACKET_VERSION, &version)?;
        let req = libc::tpacket_req3 {
            tp_block_size: BLOCK_SIZE as u32,
            tp_block_nr: BLOCKS as u32,
            tp_frame_size: FRAME_SIZE as u32,
            tp_frame_nr: (BLOCK_SIZE / FRAME_SIZE * BLOCKS) as u32,
            tp_retire_blk_tov: RETIRE_MS,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(fd, libc::PACKET_RX_RING, &req)?;
        // SAFETY: a fresh shared mapping of the ring the kernel just allocated for this
        // socket, of exactly its size; the result is checked.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MAPPED,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(map.cast()).ok_or_else(io::Error::last_os_error)?;
        Ok(RxRing {
            base,
            block: 0,
            taken: 0,
            next: 0,
        })
    }

    /// Where the ring is mapped.
    #[cfg(test)]
    pub(super) fn base(&self) -> usize {
        self.base.as_ptr() as usize
    }

    /// The status word of block `b`, shared with the kernel.
    fn status(&self, b: usize) -> &AtomicU32 {
        // SAFETY: the word lies inside the mapping (block `b` < BLOCKS, offset 8), is
        // 4-aligned (blocks are page-aligned), and is only accessed atomically here;
        // the kernel writes it with a barrier before and after.
        unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(b * BLOCK_SIZE + 8).cast()) }
    }

    /// Reads a u32 of the current block at `offset`, if inside it.
    fn word(&self, offset: usize) -> Option<u32> {
        let bytes: [u8; 4] = self
            .block_bytes()
            .get(offset..)?
            .get(..4)?
            .try_into()
            .ok()?;
        Some(u32::from_ne_bytes(bytes))
    }

    /// The current block, while the kernel has handed it to us.
    fn block_bytes(&self) -> &[u8] {
        // SAFETY: the block lies inside the mapping; it is only read while its status
        // says it is ours (checked by the caller, with acquire ordering), during which
        // the kernel does not write it.
        unsafe {
            std::slice::from_raw_parts(self.base.as_ptr().add(self.block * BLOCK_SIZE), BLOCK_SIZE)
        }
    }

    /// Takes up to `room` frames, each with its virtio_net_hdr, into consecutive slots
    /// of `slots` (`slot` bytes each), telling `taken` of each; returns how many.
    pub(super) fn take(
        &mut self,
        slots: &mut [u8],
        slot: usize,
        room: usize,
        mut taken: impl FnMut(usize, Taken),
    ) -> usize {
        let mut n = 0;
        while n < room {
            if self.status(self.block).load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
                break;
            }
            let count = self.word(12).unwrap_or(0);
            if self.taken == 0 {
                self.next = self.word(16).unwrap_or(0) as usize;
            }
            while self.taken < count && n < room {
                let at = self.next;
                let (Some(next), Some(snap), Some(len), Some(mac)) = (
                    self.word(at),
                    self.word(at + 12),
                    self.word(at + 16),
                    self.word(at + 24),
                ) else {
                    // A frame header outside the block: the rest of it is lost.
                    self.taken = count;
                    break;
                };
                let mac = (mac & 0xffff) as usize;
                let (snap, len) = (snap as usize, len as usize);
                let from = (at + mac).checked_sub(VNET_HDR_LEN);
                let frame = from.and_then(|f| self.block_bytes().get(f..at + mac + snap));
                match frame {
                    Some(bytes) if snap == len && bytes.len() <= slot => {
                        slots[n * slot..n * slot + bytes.len()].copy_from_slice(bytes);
                        taken(n, Taken::Whole(bytes.len()));
                    }
                    _ => taken(n, Taken::Truncated),
                }
                n += 1;
                self.taken += 1;
                self.next = at + next as usize;
                if next == 0 {
                    self.taken = count;
                }
            }
            if self.taken >= count {
                self.status(self.block)
                    .store(libc::TP_STATUS_KERNEL, Ordering::Release);
                self.block = (self.block + 1) % BLOCKS;
                self.taken = 0;
            }
        }
        n
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of its size, unmapped once.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), MAPPED);
        }
    }
}

fn setsockopt<T>(fd: BorrowedFd<'_>, option: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: the option value is a live T, its size given.
    let set = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            option,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as u32,
        )
    };
    if set < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
