//! TCP: a framed stream ([`Tcp`]) and its listener ([`TcpListener`]).

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use socket2::Socket;

use super::listener::Listening;
use super::recipe::Recipe;
use super::stream::{self, StreamReceiver, StreamSender};
use super::{sockopt, Stopper, Transport};
use crate::addr::{self, Addr};
use crate::config::Config;
use crate::error::Result;
use crate::url::Scheme;

/// A TCP conversation's transport: messages framed on a byte stream
/// ([`Config::framing`], by default a 4-byte big-endian length prefix).
///
/// * `TCP_NODELAY` is on by default: a message leaves at once.
/// * Small messages go out in one system call (header and payload copied
///   into one buffer); large ones as header plus payload in one vectored
///   system call (the payload is not copied).
/// * Received messages are [`Bytes`](bytes::Bytes) cut out of an internal
///   read buffer without copying, or lent straight out of it
///   ([`Conversation::recv_ref`](crate::Conversation::recv_ref)); one `read`
///   can yield many messages.
/// * A read timeout in the middle of a message returns [`Error::Timeout`](crate::Error::Timeout) and
///   the next receive continues the same message: the stream never loses
///   sync. A send that times out took nothing of its message.
/// * Once a message has started arriving it must be whole within the
///   per-message deadline ([`Config::message_deadline`], default 30 s),
///   counted from when its first bytes arrived.
/// * [`close`](crate::Conversation::close) is graceful and bounded: write
///   what is queued, shut down the write side, then read and discard until
///   the peer's end or the linger time ([`Config::linger`], default 5 s).
///   Closing a socket that still has unread data makes the kernel send a
///   reset that can destroy data the peer has not read yet; draining first
///   is what makes this close lose nothing.
///
/// Usually reached through [`Conversation`](crate::Conversation); see
/// [`TcpListener`] for the server side.
#[derive(Debug)]
pub struct Tcp {
    tx: StreamSender,
    rx: StreamReceiver,
}

impl Transport for Tcp {
    type Sender = StreamSender;
    type Receiver = StreamReceiver;

    fn into_halves(self) -> (StreamSender, StreamReceiver) {
        (self.tx, self.rx)
    }
}

impl Tcp {
    /// Connects to `addr` with the default [`Config`].
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Tcp> {
        Tcp::connect_with(addr, &Config::default())
    }

    /// Connects to `addr` with `config`, trying each resolved address in turn.
    pub fn connect_with(addr: impl ToSocketAddrs, config: &Config) -> Result<Tcp> {
        let addrs = addr::socket_addrs(addr, "TCP address")?;
        let recipe = Recipe::server_of(Scheme::Tcp, config)?;
        let (tx, rx) = stream::connect(&addrs, &recipe, config)?;
        Ok(Tcp { tx, rx })
    }

    /// Wraps a connected stream, applying `config`'s socket options.
    pub fn from_stream(stream: TcpStream, config: &Config) -> Result<Tcp> {
        let recipe = Recipe::server_of(Scheme::Tcp, config)?;
        let (tx, rx) = stream::open(sockopt::from_tcp(stream), &recipe, config)?;
        Ok(Tcp { tx, rx })
    }

    /// The socket, for options this crate does not cover. Reading or writing
    /// it directly breaks the framing.
    pub fn socket(&self) -> &Socket {
        self.tx
            .socket_ref()
            .expect("a stream built on a socket keeps it")
    }
}

/// A TCP server socket: every accepted connection is a [`Tcp`] transport,
/// which [`Conversation::new`](crate::Conversation::new) wraps.
///
/// Built with socket2: `SO_REUSEADDR` on Unix (as std does), the backlog from
/// [`Config::backlog`] (default 5, the tutorial's `listen(5)`), IPv4 or IPv6.
/// `accept` can be bounded ([`Config::accept_timeout`],
/// [`set_accept_timeout`](Self::set_accept_timeout)) and stopped from
/// another thread ([`stopper`](Self::stopper)); connections that were reset
/// before they could be accepted are skipped.
///
/// ```no_run
/// use converse::{Conversation, TcpListener};
///
/// let listener = TcpListener::bind("127.0.0.1:8090")?;
/// loop {
///     let mut conversation = Conversation::new(listener.accept()?);
///     while let Some(message) = conversation.recv()? {
///         conversation.send(&message)?; // echo
///     }
/// }
/// # Ok::<(), converse::Error>(())
/// ```
#[derive(Debug)]
pub struct TcpListener {
    inner: Listening,
}

impl TcpListener {
    /// Binds `addr` with the default [`Config`]. Port 0 picks a free port.
    pub fn bind(addr: impl ToSocketAddrs) -> Result<TcpListener> {
        TcpListener::bind_with(addr, &Config::default())
    }

    /// Binds `addr` with `config`, trying each resolved address in turn.
    pub fn bind_with(addr: impl ToSocketAddrs, config: &Config) -> Result<TcpListener> {
        let addrs = addr::socket_addrs(addr, "TCP address")?;
        let recipe = Recipe::server_of(Scheme::Tcp, config)?;
        Ok(TcpListener {
            inner: Listening::bind(&addrs, recipe, config)?,
        })
    }

    /// Accepts the next connection.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`](crate::Error::Timeout) when the accept timeout
    /// passes; [`Error::Closed`](crate::Error::Closed) once stopped; an
    /// error for which [`Error::is_transient`](crate::Error::is_transient)
    /// is true when the process is out of file descriptors for a moment
    /// (pause, then accept again).
    pub fn accept(&self) -> Result<Tcp> {
        let (tx, rx) = self.inner.accept()?;
        Ok(Tcp { tx, rx })
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> Result<Addr> {
        Ok(self.inner.local_addr())
    }

    /// Bounds every later `accept` (`None`: wait as long as it takes).
    pub fn set_accept_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.inner.inner.set_accept_timeout(timeout)
    }

    /// The accept timeout.
    pub fn accept_timeout(&self) -> Option<Duration> {
        self.inner.inner.accept_timeout()
    }

    /// A handle that stops a blocked `accept` from another thread (it and
    /// every later one return [`Error::Closed`](crate::Error::Closed)).
    pub fn stopper(&self) -> Stopper {
        self.inner.inner.stopper()
    }

    /// The configuration accepted conversations get.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The listening socket.
    pub fn socket(&self) -> &Socket {
        self.inner.inner.socket()
    }

    pub(crate) fn into_listening(self) -> Listening {
        self.inner
    }
}
