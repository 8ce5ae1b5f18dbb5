//! The applications a node runs on its own stack: servers (HTTP, DNS) that run for the
//! node's life, and client tasks (ping, HTTP GET) that a scenario starts and reads back.

pub mod bgp;
pub mod control;
pub mod dns;
pub mod http;
pub mod ping;
pub mod probe;
pub mod udp;

use smoltcp::iface::SocketSet;
use smoltcp::socket::tcp;

pub(crate) fn tcp_socket(
    sockets: &mut SocketSet<'static>,
    buffer: usize,
) -> smoltcp::iface::SocketHandle {
    let rx = tcp::SocketBuffer::new(vec![0; buffer]);
    let tx = tcp::SocketBuffer::new(vec![0; buffer]);
    sockets.add(tcp::Socket::new(rx, tx))
}

/// A TCP socket for a protocol of small messages (BGP, the southbound protocol): Nagle's
/// algorithm off, as BGP daemons set TCP_NODELAY, so a message never waits for the ACK
/// of the previous one (which the peer may delay).
pub(crate) fn message_socket(
    sockets: &mut SocketSet<'static>,
    buffer: usize,
) -> smoltcp::iface::SocketHandle {
    let rx = tcp::SocketBuffer::new(vec![0; buffer]);
    let tx = tcp::SocketBuffer::new(vec![0; buffer]);
    let mut socket = tcp::Socket::new(rx, tx);
    socket.set_nagle_enabled(false);
    sockets.add(socket)
}
