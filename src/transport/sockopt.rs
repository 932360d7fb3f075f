//! Every socket the crate creates, and every option it sets, in one place
//! (through socket2). Each function is named after what it makes or the
//! option it sets; the system's manual pages say the rest: `socket(7)`,
//! `tcp(7)`, `udp(7)`, `unix(7)`, `ipv6(7)`.

use std::io;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

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

/// `MSG_DONTWAIT`: one `send(2)` that does not wait, whatever the socket's
/// mode.
#[cfg(all(unix, feature = "tls"))]
pub(crate) const DONTWAIT: i32 = libc::MSG_DONTWAIT;

// ---------------------------------------------------------------------------
// TCP

/// A TCP listener: `SO_REUSEADDR` on Unix (as std does), `IPV6_V6ONLY` as
/// configured, `listen(backlog)`, and the accept timeout (`SO_RCVTIMEO`,
/// which Linux applies to `accept(2)`).
pub(crate) fn tcp_listener(addr: SocketAddr, config: &Config) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    if let (SocketAddr::V6(_), Some(only_v6)) = (addr, config.only_v6) {
        socket.set_only_v6(only_v6)?;
    }
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(config.backlog)?;
    set_accept_timeout(&socket, config.accept_timeout)?;
    Ok(socket)
}

/// Connects, within the connect timeout if there is one.
pub(crate) fn tcp_connect(addr: SocketAddr, config: &Config) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    match config.connect_timeout {
        Some(timeout) => socket.connect_timeout(&SockAddr::from(addr), timeout)?,
        None => socket.connect(&SockAddr::from(addr))?,
    }
    Ok(socket)
}

/// The options of every connected TCP stream, accepted or connected:
/// `TCP_NODELAY`.
pub(crate) fn tcp_stream(socket: &Socket, config: &Config) -> io::Result<()> {
    socket.set_tcp_nodelay(config.nodelay)
}

/// A std stream as a socket.
pub(crate) fn from_tcp(stream: TcpStream) -> Socket {
    Socket::from(stream)
}

/// `true` when an accepted connection is already dead: reset (or otherwise
/// failed) between the handshake and `accept`. Such a connection is
/// skipped rather than handed out.
pub(crate) fn accepted_dead(socket: &Socket) -> bool {
    matches!(socket.take_error(), Ok(Some(_)) | Err(_))
        || matches!(socket.peer_addr(), Err(e) if e.kind() == io::ErrorKind::NotConnected)
}

// ---------------------------------------------------------------------------
// Every stream socket (TCP and Unix)

/// The options of every stream socket: timeouts, and no `SIGPIPE` where that
/// is a socket option. Blocking mode.
pub(crate) fn stream(socket: &Socket, config: &Config) -> io::Result<()> {
    #[cfg(any(
        target_os = "macos",
        target_os = "ios",
        target_os = "tvos",
        target_os = "watchos"
    ))]
    socket.set_nosigpipe(true)?;
    socket.set_nonblocking(false)?;
    set_read_timeout(socket, config.read_timeout)?;
    set_write_timeout(socket, config.write_timeout)?;
    Ok(())
}

/// `SO_RCVTIMEO` (`None`: block). A zero duration, which the system takes as
/// "never", becomes 1 ms; the crate refuses zero timeouts before here.
pub(crate) fn set_read_timeout(socket: &Socket, timeout: Option<Duration>) -> io::Result<()> {
    socket.set_read_timeout(nonzero(timeout))
}

/// `SO_SNDTIMEO`, likewise.
pub(crate) fn set_write_timeout(socket: &Socket, timeout: Option<Duration>) -> io::Result<()> {
    socket.set_write_timeout(nonzero(timeout))
}

/// The accept timeout of a listening socket: `SO_RCVTIMEO`, which Linux and
/// the BSDs apply to `accept(2)`.
pub(crate) fn set_accept_timeout(socket: &Socket, timeout: Option<Duration>) -> io::Result<()> {
    set_read_timeout(socket, timeout)
}

fn nonzero(timeout: Option<Duration>) -> Option<Duration> {
    timeout.map(|t| t.max(Duration::from_millis(1)))
}

/// `O_NONBLOCK`.
pub(crate) fn set_nonblocking(socket: &Socket, on: bool) -> io::Result<()> {
    socket.set_nonblocking(on)
}

/// `SO_LINGER` 0: closing the socket sends a reset at once, discarding
/// anything unsent.
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

/// Stops a blocked `accept`, `recv` or `send` on `socket` from another
/// thread: `shutdown(2)` of both directions, which wakes every sleeper
/// (on a listening socket, Linux makes the blocked `accept` fail).
pub(crate) fn wake_up(socket: &Socket) {
    let _ = socket.shutdown(std::net::Shutdown::Both);
}

// ---------------------------------------------------------------------------
// UDP

/// A UDP client's socket: an ephemeral port of `peer`'s family, connected to
/// `peer` (the kernel then drops datagrams from anyone else), with the
/// configured timeouts.
pub(crate) fn udp_client(peer: SocketAddr, config: &Config) -> io::Result<Socket> {
    let local: SocketAddr = match peer {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = Socket::new(Domain::for_address(peer), Type::DGRAM, Some(Protocol::UDP))?;
    socket.bind(&SockAddr::from(local))?;
    socket.connect(&SockAddr::from(peer))?;
    datagram(&socket, config)?;
    Ok(socket)
}

/// The size the listener asks for its receive buffer, to absorb bursts from
/// many peers (the system may grant less: Linux caps it at `rmem_max`).
const UDP_LISTENER_RCVBUF: usize = 4 * 1024 * 1024;

/// A UDP listener's socket: no `SO_REUSEADDR` (for UDP it would let another
/// process share the port), `IPV6_V6ONLY` as configured, a large receive
/// buffer, blocking.
pub(crate) fn udp_listener(addr: SocketAddr, config: &Config) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let (SocketAddr::V6(_), Some(only_v6)) = (addr, config.only_v6) {
        socket.set_only_v6(only_v6)?;
    }
    let _ = socket.set_recv_buffer_size(UDP_LISTENER_RCVBUF);
    socket.bind(&SockAddr::from(addr))?;
    Ok(socket.into())
}

/// The options of every connected datagram socket (UDP or Unix): blocking,
/// the configured timeouts.
pub(crate) fn datagram(socket: &Socket, config: &Config) -> io::Result<()> {
    socket.set_nonblocking(false)?;
    set_read_timeout(socket, config.read_timeout)?;
    set_write_timeout(socket, config.write_timeout)
}

// ---------------------------------------------------------------------------
// Unix domain sockets

/// A Unix stream socket connected to `path`. A full backlog makes the
/// connect wait, bounded by the connect timeout (`SO_SNDTIMEO`).
#[cfg(unix)]
pub(crate) fn unix_connect(path: &SockAddr, config: &Config) -> io::Result<Socket> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    set_write_timeout(&socket, config.connect_timeout)?;
    socket.connect(path)?;
    Ok(socket)
}

/// A Unix stream listener bound to `path`, with the configured backlog and
/// accept timeout.
#[cfg(unix)]
pub(crate) fn unix_listener(path: &SockAddr, config: &Config) -> io::Result<Socket> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(path)?;
    socket.listen(config.backlog)?;
    set_accept_timeout(&socket, config.accept_timeout)?;
    Ok(socket)
}

/// A Unix datagram socket bound to an unpredictable name in Linux's
/// abstract namespace (no file; 128 random bits, so no other process can
/// guess it to squat it or to send as its peer would), so that replies
/// reach it.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn unix_datagram_client() -> io::Result<std::os::unix::net::UnixDatagram> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};

    let mut last = None;
    for _ in 0..4 {
        let name = format!("converse-{:032x}", random_u128());
        match UnixDatagram::bind_addr(&UnixAddr::from_abstract_name(name.as_bytes())?) {
            Ok(socket) => return Ok(socket),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

/// Without an abstract namespace, an unbound socket (it can send, and
/// receive only on a socket pair).
#[cfg(all(unix, not(any(target_os = "linux", target_os = "android"))))]
pub(crate) fn unix_datagram_client() -> io::Result<std::os::unix::net::UnixDatagram> {
    std::os::unix::net::UnixDatagram::unbound()
}

/// 128 bits no other process can predict: std's `RandomState` is keyed from
/// the system's random source, and SipHash under a secret key is a PRF.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn random_u128() -> u128 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::SystemTime;

    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = 0u128;
    for half in 0..2u8 {
        let mut h = RandomState::new().build_hasher();
        h.write_u8(half);
        h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        h.write_u32(std::process::id());
        if let Ok(t) = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH) {
            h.write_u128(t.as_nanos());
        }
        out = (out << 64) | u128::from(h.finish());
    }
    out
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;

    #[test]
    fn abstract_names_do_not_repeat_or_follow_a_pattern() {
        let names: Vec<u128> = (0..1000).map(|_| random_u128()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        // Consecutive names differ in about half their bits, not in a counter.
        let flips: u32 = names.windows(2).map(|w| (w[0] ^ w[1]).count_ones()).sum();
        let mean = f64::from(flips) / 999.0;
        assert!((48.0..80.0).contains(&mean), "mean bit flips {mean}");
    }
}
