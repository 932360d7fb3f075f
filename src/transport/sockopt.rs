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

/// `MSG_DONTWAIT`: one `send(2)` or `recv(2)` that does not wait,
/// whatever the socket's mode.
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
    if let Some(bytes) = config.socket_send_buffer {
        socket.set_send_buffer_size(bytes)?;
    }
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

/// A socket as a connection's [`Sink`](crate::connection::link::Sink):
/// it takes what it can (`now`: without waiting, even on a blocking
/// socket), several buffers in one system call.
pub(crate) struct SocketSink<'a> {
    pub(crate) socket: &'a Socket,
    pub(crate) now: bool,
    /// Bytes the socket took, counted.
    pub(crate) sent: u64,
}

impl crate::connection::link::Sink for SocketSink<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let flags = if self.now {
            SEND_FLAGS | DONTWAIT
        } else {
            SEND_FLAGS
        };
        let n = self.socket.send_with_flags(bytes, flags)?;
        self.sent += n as u64;
        Ok(n)
    }

    fn put_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let flags = if self.now {
            SEND_FLAGS | DONTWAIT
        } else {
            SEND_FLAGS
        };
        let n = self.socket.send_vectored_with_flags(bufs, flags)?;
        self.sent += n as u64;
        Ok(n)
    }
}

/// Sends as much of `buf` as the socket takes, without `SIGPIPE`.
#[inline]
pub(crate) fn send(socket: &Socket, buf: &[u8]) -> io::Result<usize> {
    socket.send_with_flags(buf, SEND_FLAGS)
}

/// `true` when bytes the application never read wait in the socket's
/// receive buffer (`MSG_PEEK`, without waiting).
pub(crate) fn has_unread(socket: &Socket) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    matches!(socket.recv_with_flags(&mut byte, libc::MSG_PEEK | DONTWAIT), Ok(n) if n > 0)
}

/// The error waiting on the socket (`SO_ERROR`), taken: a reset that came
/// after the peer's end shows here when reading says only "end". (Linux
/// records a reset that comes after the peer's end as `EPIPE`: it is the
/// reset all the same.)
pub(crate) fn take_error(socket: &Socket) -> Option<io::Error> {
    let err = socket.take_error().ok().flatten()?;
    Some(match err.kind() {
        io::ErrorKind::BrokenPipe => io::Error::from(io::ErrorKind::ConnectionReset),
        _ => err,
    })
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

// ---------------------------------------------------------------------------
// Socket timeouts, set lazily: `SO_RCVTIMEO` and `SO_SNDTIMEO` are per-call
// limits, while converse's timeouts bound whole operations, so the blocking
// drivers set the socket's value to what is left before each call, skipping
// the system call while the value in force is close enough.

/// One socket timeout (receive or send) and what it is set to.
#[derive(Debug)]
pub(crate) struct SockTimer {
    /// What the socket holds now; `Some(ZERO)` means unknown.
    current: Option<Duration>,
}

/// The shortest timeout a socket is given: 1 ms (a zero `SO_RCVTIMEO` means
/// "never" to the system).
pub(crate) const MIN_WAIT: Duration = Duration::from_millis(1);

/// The shortest timeout in force that a loose wait for ever keeps: it
/// wakes the reader at most once a second, to wait again.
const LOOSE_FOREVER: Duration = Duration::from_secs(1);

impl SockTimer {
    /// A timer for a socket whose timeout is `current`.
    pub(crate) fn new(current: Option<Duration>) -> Self {
        SockTimer { current }
    }

    /// Forget what the socket holds (something else set it).
    pub(crate) fn invalidate(&mut self) {
        self.current = Some(Duration::ZERO);
    }

    /// Makes the socket's timeout fit a wait of `want` (`None`: block). With
    /// `exact`, the socket never waits longer than `want` (a user's timeout
    /// must not be overrun); otherwise up to an eighth longer is good enough
    /// (a looser limit, such as a deadline, checked again after the wait).
    /// A shorter value in force is good enough if it is at least seven
    /// eighths of `want`: the wait may end early, and the caller loops.
    /// For the same reason a loose "forever" keeps a timeout of a second or
    /// more already in force: a reader that waits for a message's deadline
    /// and then for the next message does not set the socket twice a
    /// message.
    pub(crate) fn fit(
        &mut self,
        want: Option<Duration>,
        exact: bool,
        set: impl FnOnce(Option<Duration>) -> io::Result<()>,
    ) -> io::Result<()> {
        let want = want.map(|w| w.max(MIN_WAIT));
        let good_enough = match (self.current, want) {
            (None, None) => true,
            (Some(cur), None) => !exact && cur >= LOOSE_FOREVER,
            (None, Some(_)) => false,
            (Some(cur), Some(w)) => {
                !cur.is_zero() && cur >= w - w / 8 && cur <= if exact { w } else { w + w / 8 }
            }
        };
        if !good_enough {
            set(want)?;
            self.current = want;
        }
        Ok(())
    }
}

/// The smaller of two optional waits (`None` is "forever"), and whether the
/// first one (the exact bound) is the one that counts.
pub(crate) fn earliest(
    exact: Option<Duration>,
    loose: Option<Duration>,
) -> (Option<Duration>, bool) {
    match (exact, loose) {
        (Some(e), Some(l)) if e <= l => (Some(e), true),
        (Some(e), None) => (Some(e), true),
        (_, Some(l)) => (Some(l), false),
        (None, None) => (None, false),
    }
}

#[cfg(test)]
mod timer_tests {
    use super::*;

    #[test]
    fn sets_only_when_needed_and_never_overruns_an_exact_wait() {
        let mut t = SockTimer::new(None);
        let calls = std::cell::RefCell::new(Vec::new());
        let set = |w: Option<Duration>| {
            calls.borrow_mut().push(w);
            Ok(())
        };
        t.fit(None, false, set).unwrap();
        assert!(calls.borrow().is_empty(), "already blocking");
        t.fit(Some(Duration::from_secs(8)), true, set).unwrap();
        // 9 s wanted: the 8 s in force is close enough (the wait may end
        // early and be made again), no system call.
        t.fit(Some(Duration::from_secs(9)), true, set).unwrap();
        // 7.5 s left: 8 s would overrun it.
        t.fit(Some(Duration::from_millis(7500)), true, set).unwrap();
        // Less than 7 s left: 8 s would overrun it.
        t.fit(Some(Duration::from_secs(6)), true, set).unwrap();
        // A loose limit of 5.5 s takes the 6 s in force.
        t.fit(Some(Duration::from_millis(5500)), false, set)
            .unwrap();
        t.fit(Some(Duration::ZERO), true, set).unwrap();
        assert_eq!(
            calls.into_inner(),
            vec![
                Some(Duration::from_secs(8)),
                Some(Duration::from_millis(7500)),
                Some(Duration::from_secs(6)),
                Some(MIN_WAIT)
            ]
        );
    }

    #[test]
    fn a_loose_wait_for_ever_keeps_a_long_timeout_and_an_exact_one_does_not() {
        let mut t = SockTimer::new(Some(Duration::from_secs(30)));
        let mut calls = Vec::new();
        t.fit(None, false, |w| {
            calls.push(w);
            Ok(())
        })
        .unwrap();
        assert!(calls.is_empty(), "30 s in force is kept for a loose wait");
        t.fit(None, true, |w| {
            calls.push(w);
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, vec![None], "an exact wait for ever blocks");
        let mut t = SockTimer::new(Some(Duration::from_millis(20)));
        t.fit(None, false, |w| {
            calls.push(w);
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, vec![None, None], "a short timeout is not kept");
    }

    #[test]
    fn an_unknown_value_is_always_set() {
        let mut t = SockTimer::new(Some(Duration::from_secs(1)));
        t.invalidate();
        let mut n = 0;
        t.fit(Some(Duration::from_secs(1)), true, |_| {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn the_earliest_wait_says_which_bound_counts() {
        let s = Duration::from_secs;
        assert_eq!(earliest(Some(s(1)), Some(s(2))), (Some(s(1)), true));
        assert_eq!(earliest(Some(s(3)), Some(s(2))), (Some(s(2)), false));
        assert_eq!(earliest(None, Some(s(2))), (Some(s(2)), false));
        assert_eq!(earliest(None, None), (None, false));
    }
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
