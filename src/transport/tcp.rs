//! TCP: a byte stream, framed (by default with a 4-byte length prefix).

use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use socket2::Socket;

use super::sockopt;
use super::stream::Stream;
use crate::addr::{self, Addr};
use crate::config::Config;
use crate::conversation::Conversation;
use crate::error::{Error, Result};

/// A TCP conversation's transport: framed messages over a stream (by
/// default a 4-byte big-endian length prefix; see [`Config::framing`]).
///
/// * A message is sent with its header in one system call (a vectored write:
///   the payload is not copied).
/// * Received messages are [`Bytes`](bytes::Bytes) cut out of an internal
///   read buffer without copying; one `read` can yield many messages.
/// * A read timeout in the middle of a message returns [`Error::Timeout`] and
///   the next receive continues the same message: the stream never loses sync.
/// * Once a message has started arriving it must be complete within the
///   per-message deadline ([`Config::message_deadline`], default 30 s).
/// * [`close`](super::Transport::close) is graceful: flush, shut down the
///   write side, then read and discard until the peer's end or the linger
///   time ([`Config::linger`], default 5 s), and only then close. Closing a
///   socket that still has unread data makes the kernel send a reset that
///   can destroy data the peer has not read yet; draining first is what
///   makes this close lose nothing. [`abort`](super::Transport::abort)
///   resets at once (`SO_LINGER` 0), discarding unsent data.
///
/// Usually reached through [`Conversation`]; see [`TcpListener`] for the
/// server side.
#[derive(Debug)]
pub struct Tcp {
    inner: Stream,
}

impl Tcp {
    /// Connects to `addr` with the default [`Config`].
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Tcp> {
        Tcp::connect_with(addr, &Config::default())
    }

    /// Connects to `addr` with `config`, trying each resolved address in turn.
    pub fn connect_with(addr: impl ToSocketAddrs, config: &Config) -> Result<Tcp> {
        let addrs = addr::socket_addrs(addr, "TCP address")?;
        connect_any(&addrs, config)
    }

    /// Wraps a connected stream, applying `config`'s socket options.
    pub fn from_stream(stream: TcpStream, config: &Config) -> Result<Tcp> {
        let peer = stream.peer_addr().map(Addr::Tcp).unwrap_or(Addr::Unknown);
        sockopt::tcp_stream(&stream, config).map_err(|e| Error::from_io(e, &peer))?;
        let local = stream.local_addr().map(Addr::Tcp).unwrap_or(Addr::Unknown);
        let inner = Stream::new(Socket::from(stream), local, peer, config)?;
        Ok(Tcp { inner })
    }

    /// The underlying socket, for socket options this crate does not cover.
    /// Reading or writing it directly breaks the framing.
    pub fn socket(&self) -> &Socket {
        self.inner.socket()
    }

    /// Latency mode: before blocking in a receive, poll the socket without
    /// blocking for up to `spin` (`None`, the default: block at once).
    ///
    /// A message that arrives within the spin is picked up without the
    /// thread being put to sleep and woken again, which on a loaded machine
    /// is most of a loopback round trip. The cost is CPU: the receiving
    /// thread keeps one core at 100% for up to `spin` on every receive that
    /// has to wait. Meant for request/response on one thread: splitting the
    /// conversation into halves turns it off (the spin makes the socket
    /// non-blocking, which a send on another thread must not see).
    pub fn set_spin(&mut self, spin: Option<Duration>) {
        self.inner.set_spin(spin);
    }

    /// The capacity of the read buffer, in bytes: what an idle conversation
    /// holds on to between messages.
    pub fn read_buffer_capacity(&self) -> usize {
        self.inner.read_buffer_capacity()
    }
}

super::delegate_transport!(Tcp);

/// Connects to the first address that accepts.
pub(crate) fn connect_any(addrs: &[SocketAddr], config: &Config) -> Result<Tcp> {
    let mut last = None;
    for &addr in addrs {
        match sockopt::tcp_connect(addr, config) {
            Ok(stream) => return Tcp::from_stream(stream, config),
            Err(e) => last = Some(Error::from_io(e, &Addr::Tcp(addr))),
        }
    }
    Err(last.unwrap_or_else(|| addr::no_address("TCP address")))
}

/// A TCP server socket: every accepted connection is a [`Conversation`].
///
/// Built with socket2: `SO_REUSEADDR` on Unix (as std does), the backlog from
/// [`Config::backlog`] (default 5, the tutorial's `listen(5)`), IPv4 or IPv6.
///
/// ```no_run
/// use converse::TcpListener;
///
/// let listener = TcpListener::bind("127.0.0.1:8090")?;
/// loop {
///     let mut conversation = listener.accept()?;
///     while let Some(message) = conversation.recv()? {
///         conversation.send(&message)?; // echo
///     }
/// }
/// # Ok::<(), converse::Error>(())
/// ```
#[derive(Debug)]
pub struct TcpListener {
    inner: std::net::TcpListener,
    local: Addr,
    config: Config,
}

impl TcpListener {
    /// Binds `addr` with the default [`Config`]. Port 0 picks a free port.
    pub fn bind(addr: impl ToSocketAddrs) -> Result<TcpListener> {
        TcpListener::bind_with(addr, &Config::default())
    }

    /// Binds `addr` with `config`, trying each resolved address in turn.
    pub fn bind_with(addr: impl ToSocketAddrs, config: &Config) -> Result<TcpListener> {
        let addrs = addr::socket_addrs(addr, "TCP address")?;
        bind_any(&addrs, config)
    }

    /// Accepts the next connection. Connections that failed before they
    /// could be accepted (reset by their client) are skipped.
    pub fn accept(&self) -> Result<Conversation<Tcp>> {
        self.accept_transport().map(Conversation::new)
    }

    /// Accepts the next connection, as a bare transport.
    pub fn accept_transport(&self) -> Result<Tcp> {
        loop {
            match self.inner.accept() {
                Ok((stream, _)) => match Tcp::from_stream(stream, &self.config) {
                    // The client may already be gone: skip it, as a failed accept.
                    Err(Error::ConnectionReset { .. }) => continue,
                    other => return other,
                },
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => return Err(Error::from_io(e, &self.local)),
            }
        }
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> Result<Addr> {
        Ok(self.local.clone())
    }

    /// The underlying std listener.
    pub fn listener(&self) -> &std::net::TcpListener {
        &self.inner
    }
}

pub(crate) fn bind_any(addrs: &[SocketAddr], config: &Config) -> Result<TcpListener> {
    let mut last = None;
    for &addr in addrs {
        match sockopt::tcp_listener(addr, config) {
            Ok(inner) => {
                let local = inner.local_addr().map(Addr::Tcp).unwrap_or(Addr::Tcp(addr));
                return Ok(TcpListener {
                    inner,
                    local,
                    config: config.clone(),
                });
            }
            Err(e) => last = Some(Error::from_io(e, &Addr::Tcp(addr))),
        }
    }
    Err(last.unwrap_or_else(|| addr::no_address("TCP address")))
}
