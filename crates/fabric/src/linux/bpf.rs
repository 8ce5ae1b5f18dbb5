//! Just enough of `bpf(2)` for XDP: maps, programs of hand-written instructions,
//! attachment by a BPF link (gone when its descriptor closes), and the kernel's own
//! running of a program over a frame (`BPF_PROG_TEST_RUN`), which with live frames
//! sends what the program redirects: a packet generator in the kernel.
//!
//! Layouts are prefixes of `union bpf_attr` (`<linux/bpf.h>`); the kernel takes a
//! shorter attribute as zero beyond its end, and refuses one with bytes that are not
//! zero past the command's fields, so no layout here has implicit padding (a test
//! checks their sizes).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;
pub const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
/// `BPF_F_TEST_XDP_LIVE_FRAMES`: what the program redirects is sent.
const LIVE_FRAMES: u32 = 1 << 1;
/// `src_reg` of a 64-bit immediate load that names a map by its descriptor.
pub const PSEUDO_MAP_FD: u8 = 1;
// `<linux/if_link.h>`
pub const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
// XDP actions.
pub const XDP_PASS: i32 = 2;
// Helpers.
pub const FUNC_GET_PRANDOM_U32: i32 = 7;
pub const FUNC_REDIRECT: i32 = 23;
pub const FUNC_REDIRECT_MAP: i32 = 51;

/// One instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Insn {
    code: u8,
    /// `dst_reg` in the low nibble, `src_reg` in the high.
    regs: u8,
    off: i16,
    imm: i32,
}

/// An instruction: opcode, destination and source registers, offset, immediate.
pub const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// `bpf(2)` with the command's attributes; returns what it returned (a descriptor, or 0).
fn bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialized `repr(C)` prefix of `union bpf_attr` for
    // `cmd`, and its size goes with it; the kernel writes back only within it.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr),
            std::mem::size_of::<A>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Owns a descriptor a system call just returned.
pub(super) fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: a descriptor the kernel just returned to us, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

#[repr(C)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

#[repr(C)]
struct MapUpdate {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

#[repr(C)]
struct TestRun {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    /// The struct's padding, made explicit: the kernel refuses (EINVAL) an attribute
    /// whose bytes past the command's last field are not zero.
    _pad: u32,
}

/// A map of `u32` keys and values with `entries` entries.
pub fn map_u32(map_type: u32, entries: u32) -> io::Result<OwnedFd> {
    bpf(
        BPF_MAP_CREATE,
        &mut MapCreate {
            map_type,
            key_size: 4,
            value_size: 4,
            max_entries: entries,
            map_flags: 0,
        },
    )
    .map(owned)
}

/// Sets `key` to `value` in a map of `u32` keys and values.
pub fn update_u32(map: &OwnedFd, key: u32, value: u32) -> io::Result<()> {
    bpf(
        BPF_MAP_UPDATE_ELEM,
        &mut MapUpdate {
            map_fd: map.as_raw_fd() as u32,
            _pad: 0,
            key: std::ptr::from_ref(&key) as u64,
            value: std::ptr::from_ref(&value) as u64,
            flags: 0,
        },
    )
    .map(drop)
}

/// Loads an XDP program; on the verifier's refusal, the error carries its log.
pub fn load_xdp(insns: &[Insn], name: &str) -> io::Result<OwnedFd> {
    let license = c"Dual MIT/GPL";
    let mut prog_name = [0u8; 16];
    for (d, s) in prog_name.iter_mut().take(15).zip(name.bytes()) {
        *d = s;
    }
    let mut log = vec![0u8; 16 * 1024];
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_XDP,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name,
        prog_ifindex: 0,
        expected_attach_type: BPF_XDP,
    };
    bpf(BPF_PROG_LOAD, &mut attr).map(owned).map_err(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let log = String::from_utf8_lossy(&log[..end]);
        io::Error::new(e.kind(), format!("loading XDP program {name}: {e}\n{log}"))
    })
}

/// Attaches an XDP program to an interface by a BPF link, in the mode `flags` says;
/// it stays as long as the returned descriptor is open.
pub fn attach_xdp(program: &OwnedFd, ifindex: i32, flags: u32) -> io::Result<OwnedFd> {
    bpf(
        BPF_LINK_CREATE,
        &mut LinkCreate {
            prog_fd: program.as_raw_fd() as u32,
            target_ifindex: ifindex as u32,
            attach_type: BPF_XDP,
            flags,
        },
    )
    .map(owned)
}

/// Runs an XDP program `repeat` times over copies of `frame`, as if it had arrived on
/// the calling thread's namespace's loopback; what it redirects is sent (live frames).
pub fn run_live(program: &OwnedFd, frame: &[u8], repeat: u32) -> io::Result<()> {
    bpf(
        BPF_PROG_TEST_RUN,
        &mut TestRun {
            prog_fd: program.as_raw_fd() as u32,
            retval: 0,
            data_size_in: frame.len() as u32,
            data_size_out: 0,
            data_in: frame.as_ptr() as u64,
            data_out: 0,
            repeat,
            duration: 0,
            ctx_size_in: 0,
            ctx_size_out: 0,
            ctx_in: 0,
            ctx_out: 0,
            flags: LIVE_FRAMES,
            cpu: 0,
            batch_size: 0,
            _pad: 0,
        },
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte of each attribute is a field the code sets: a struct with implicit
    /// padding would hand the kernel uninitialized bytes, which it refuses at random.
    #[test]
    fn the_attributes_have_no_padding() {
        assert_eq!(std::mem::size_of::<MapCreate>(), 5 * 4);
        assert_eq!(std::mem::size_of::<MapUpdate>(), 2 * 4 + 3 * 8);
        assert_eq!(std::mem::size_of::<ProgLoad>(), 8 * 4 + 3 * 8 + 16);
        assert_eq!(std::mem::size_of::<LinkCreate>(), 4 * 4);
        assert_eq!(std::mem::size_of::<TestRun>(), 12 * 4 + 4 * 8);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }
}
