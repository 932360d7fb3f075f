//! Every socket option the crate sets, in one place (through socket2).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, SockRef, Socket, Type};

use crate::config::Config;

/// `send(2)` flags: never raise `SIGPIPE` on a closed connection, so a
/// program is not killed by its peer; the write returns `EPIPE` instead.
#[cfg(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
    target_os = "illumos",
    target_os = "solaris"
))]
pub(crate) const SEND_FLAGS: i32 = libc::MSG_NOSIGNAL;
/// `send(2)` flags: on these systems `SO_NOSIGPIPE` is set on the socket instead.
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_os = "netbsd",
    target_os = "openbsd",
    target_os = "dragonfly",
    target_os = "illumos",
    target_os = "solaris"
)))]
pub(crate) const SEND_FLAGS: i32 = 0;

/// A TCP listener: `SO_REUSEADDR` on Unix (as std does), `IPV6_V6ONLY` as
/// configured, then `listen(backlog)`.
pub(crate) fn tcp_listener(addr: SocketAddr, config: &Config) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    if let (SocketAddr::V6(_), Some(only_v6)) = (addr, config.only_v6) {
        socket.set_only_v6(only_v6)?;
    }
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(config.backlog)?;
    Ok(socket.into())
}

/// Connects, within the connect timeout if there is one.
pub(crate) fn tcp_connect(addr: SocketAddr, config: &Config) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    match config.connect_timeout {
        Some(timeout) => socket.connect_timeout(&SockAddr::from(addr), timeout)?,
        None => socket.connect(&SockAddr::from(addr))?,
    }
    Ok(socket.into())
}

/// The options of every connected TCP stream, accepted or connected.
pub(crate) fn tcp_stream(stream: &TcpStream, config: &Config) -> io::Result<()> {
    SockRef::from(stream).set_tcp_nodelay(config.nodelay)
}

/// The options of every stream socket (TCP or Unix): timeouts, and no
/// `SIGPIPE` where that is a socket option.
pub(crate) fn stream(socket: &Socket, config: &Config) -> io::Result<()> {
    #[cfg(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "tvos",
        target_os = "watchos"
    ))]
    socket.set_nosigpipe(true)?;
    set_read_timeout(socket, config.read_timeout)?;
    socket.set_write_timeout(nonzero(config.write_timeout))?;
    Ok(())
}

/// `SO_RCVTIMEO`. A zero duration (which the system takes as "never") becomes 1 ms.
pub(crate) fn set_read_timeout(socket: &Socket, timeout: Option<Duration>) -> io::Result<()> {
    socket.set_read_timeout(nonzero(timeout))
}

/// `SO_SNDTIMEO`, likewise.
pub(crate) fn set_write_timeout(socket: &Socket, timeout: Option<Duration>) -> io::Result<()> {
    socket.set_write_timeout(nonzero(timeout))
}

pub(crate) fn nonzero(timeout: Option<Duration>) -> Option<Duration> {
    timeout.map(|t| t.max(Duration::from_millis(1)))
}

/// `SO_LINGER` 0: closing the socket sends a reset at once.
pub(crate) fn linger_zero(socket: &Socket) -> io::Result<()> {
    socket.set_linger(Some(Duration::ZERO))
}

/// Sends as much of `bufs` as the socket takes, in one system call, without
/// `SIGPIPE`.
#[inline]
pub(crate) fn send_vectored(socket: &Socket, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    socket.send_vectored_with_flags(bufs, SEND_FLAGS)
}

/// Sends as much of `buf` as the socket takes, without `SIGPIPE`.
#[inline]
pub(crate) fn send(socket: &Socket, buf: &[u8]) -> io::Result<usize> {
    socket.send_with_flags(buf, SEND_FLAGS)
}

/// A UDP socket bound to `addr` (a client's ephemeral port).
pub(crate) fn udp_socket(addr: SocketAddr, _config: &Config) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket.into())
}

/// The size the listener asks for its receive buffer, to absorb bursts from
/// many peers (the system may grant less: Linux caps it at `rmem_max`).
const UDP_LISTENER_RCVBUF: usize = 4 * 1024 * 1024;

/// A UDP listener's socket: no `SO_REUSEADDR` (for UDP it would let another
/// process share the port), `IPV6_V6ONLY` as configured, a large receive buffer.
pub(crate) fn udp_listener(addr: SocketAddr, config: &Config) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let (SocketAddr::V6(_), Some(only_v6)) = (addr, config.only_v6) {
        socket.set_only_v6(only_v6)?;
    }
    let _ = socket.set_recv_buffer_size(UDP_LISTENER_RCVBUF);
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket.into())
}
