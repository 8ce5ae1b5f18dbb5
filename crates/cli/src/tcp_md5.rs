//! TCP MD5 signatures (RFC 2385) on Linux: the `TCP_MD5SIG` socket option, which no
//! socket crate wraps. The kernel signs every segment to and from the peer's address
//! with the key, and drops the peer's segments that do not carry a valid signature; on a
//! listening socket, the key applies to the connections it accepts from that address.

#![allow(unsafe_code)]

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;

/// The longest key the kernel takes (`TCP_MD5SIG_MAXKEYLEN`).
pub(crate) const MAX_KEY_LEN: usize = 80;

/// `struct tcp_md5sig` from `<linux/tcp.h>`: a `sockaddr_storage` (128 bytes), flags,
/// prefix length, key length, interface index, then the key.
const ADDR: usize = 0;
const KEY_LEN: usize = 130;
const KEY: usize = 136;
const SIZE: usize = KEY + MAX_KEY_LEN;

/// Signs the socket's segments to and from `peer` with `key`.
pub(crate) fn set_key(socket: &impl AsRawFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a TCP MD5 key is 1 to {MAX_KEY_LEN} bytes"),
        ));
    }
    // Built as bytes, so that only the system call itself is unsafe.
    let mut option = [0u8; SIZE];
    // sockaddr_in: family (host order), port (unused), address (network order) at 4;
    // sockaddr_in6: family, port, flow info, address at 8, scope.
    let (family, at, octets) = match peer {
        IpAddr::V4(a) => (libc::AF_INET, 4, a.octets().to_vec()),
        IpAddr::V6(a) => (libc::AF_INET6, 8, a.octets().to_vec()),
    };
    let family = u16::try_from(family).map_err(io::Error::other)?;
    option[ADDR..ADDR + 2].copy_from_slice(&family.to_ne_bytes());
    option[ADDR + at..ADDR + at + octets.len()].copy_from_slice(&octets);
    let key_len = u16::try_from(key.len()).map_err(io::Error::other)?;
    option[KEY_LEN..KEY_LEN + 2].copy_from_slice(&key_len.to_ne_bytes());
    option[KEY..KEY + key.len()].copy_from_slice(key);
    let len = libc::socklen_t::try_from(SIZE).map_err(io::Error::other)?;
    // SAFETY: `option` is a live buffer of `len` bytes laid out as `struct tcp_md5sig`;
    // the kernel copies it in and keeps no pointer to it. A bad descriptor is an error
    // return, not undefined behaviour.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            option.as_ptr().cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_taken_by_the_kernel_and_bad_lengths_refused() {
        let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
        set_key(&socket, [127, 0, 0, 2].into(), b"secret").expect("the key is set");
        for bad in [&b""[..], &[b'k'; MAX_KEY_LEN + 1][..]] {
            let e = set_key(&socket, [127, 0, 0, 1].into(), bad).expect_err("refused");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        }
        let socket = std::net::TcpListener::bind("[::1]:0").expect("an IPv6 listener");
        set_key(&socket, std::net::Ipv6Addr::LOCALHOST.into(), b"secret")
            .expect("an IPv6 key is set");
    }
}
