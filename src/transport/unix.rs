//! Unix domain sockets: a framed stream ([`Unix`], [`UnixListener`],
//! `unix:///path`) and datagrams ([`UnixDatagram`], `unixgram:///path`).
//!
//! The stream speaks every framing TCP speaks and behaves like TCP in every
//! way the crate promises (timeouts, deadlines, graceful close). A Unix
//! datagram socket keeps message boundaries by itself, like UDP, but is
//! reliable and ordered: a full receiver makes the sender wait (the write
//! timeout applies) rather than lose the message.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::{UnixDatagram as StdDatagram, UnixStream as StdStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use socket2::{SockAddr, Socket};

use super::datagram::{self, DatagramReceiver, DatagramSender};
use super::listener::StreamListener;
use super::recipe::Recipe;
use super::stream::{self, StreamReceiver, StreamSender};
use super::{sockopt, Stopper, Transport};
use crate::addr::{Addr, AddrError};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::url::Scheme;

/// A socket's address as an [`Addr`] of `kind` (`Addr::Unix` or
/// `Addr::UnixDatagram`).
fn addr_of(addr: io::Result<SockAddr>, kind: fn(Option<PathBuf>) -> Addr) -> Addr {
    match addr {
        Ok(a) => kind(a.as_pathname().map(Path::to_path_buf)),
        Err(_) => Addr::Unknown,
    }
}

fn sock_addr(path: &Path) -> Result<SockAddr> {
    SockAddr::unix(path)
        .map_err(|e| AddrError::new(path.display().to_string(), e.to_string()).into())
}

fn unix_path(path: &Path) -> Addr {
    Addr::Unix(Some(path.to_path_buf()))
}

// ---------------------------------------------------------------------------
// The stream.

/// A Unix stream socket's transport: framed messages, exactly as over
/// [`Tcp`](super::Tcp) (same framings, timeouts, per-message deadline,
/// graceful close), between processes of one machine.
///
/// ```no_run
/// use converse::{Conversation, Unix};
///
/// let mut conversation = Conversation::new(Unix::connect("/tmp/chat.sock")?);
/// conversation.send_text("hello")?;
/// # Ok::<(), converse::Error>(())
/// ```
#[derive(Debug)]
pub struct Unix {
    tx: StreamSender,
    rx: StreamReceiver,
}

impl Transport for Unix {
    type Sender = StreamSender;
    type Receiver = StreamReceiver;

    fn into_halves(self) -> (StreamSender, StreamReceiver) {
        (self.tx, self.rx)
    }
}

impl Unix {
    /// Connects to the socket at `path` with the default [`Config`].
    pub fn connect(path: impl AsRef<Path>) -> Result<Unix> {
        Unix::connect_with(path, &Config::default())
    }

    /// Connects to the socket at `path` with `config`. When the listener's
    /// backlog is full the connect waits, for at most
    /// [`Config::connect_timeout`].
    pub fn connect_with(path: impl AsRef<Path>, config: &Config) -> Result<Unix> {
        config.validate()?;
        let path = path.as_ref();
        let peer = unix_path(path);
        let address = sock_addr(path)?;
        let socket =
            sockopt::unix_connect(&address, config).map_err(|e| Error::from_io(e, &peer))?;
        Unix::from_socket(socket, config)
    }

    /// Wraps a connected stream, applying `config`'s options.
    pub fn from_stream(stream: StdStream, config: &Config) -> Result<Unix> {
        Unix::from_socket(Socket::from(stream), config)
    }

    pub(crate) fn from_socket(socket: Socket, config: &Config) -> Result<Unix> {
        let recipe = Recipe::server_of(Scheme::Unix, config)?;
        let (tx, rx) = stream::open(socket, &recipe, config)?;
        Ok(Unix { tx, rx })
    }

    /// Two connected transports (`socketpair(2)`), for a parent and child
    /// process or two threads.
    pub fn pair_with(config: &Config) -> Result<(Unix, Unix)> {
        let (a, b) = StdStream::pair().map_err(|e| Error::from_io(e, &Addr::Unix(None)))?;
        Ok((Unix::from_stream(a, config)?, Unix::from_stream(b, config)?))
    }

    /// The socket, for options this crate does not cover. Reading or writing
    /// it directly breaks the framing.
    pub fn socket(&self) -> &Socket {
        self.tx
            .socket_ref()
            .expect("a stream built on a socket keeps it")
    }
}

/// A Unix stream server socket: every accepted connection is a [`Unix`]
/// transport.
///
/// Binding fails if `path` exists (a socket file left by a crashed server
/// included: remove it first). The listener removes its socket file when
/// dropped, unless another file has taken its place. `accept` can be
/// bounded and stopped from another thread, as [`TcpListener`](super::TcpListener)'s.
///
/// ```no_run
/// use converse::{Conversation, UnixListener};
///
/// let listener = UnixListener::bind("/tmp/echo.sock")?;
/// let mut conversation = Conversation::new(listener.accept()?);
/// while let Some(message) = conversation.recv()? {
///     conversation.send(&message)?;
/// }
/// # Ok::<(), converse::Error>(())
/// ```
#[derive(Debug)]
pub struct UnixListener {
    inner: StreamListener,
    config: Config,
    /// The socket file and its inode, removed on drop.
    file: Option<(PathBuf, u64)>,
}

impl UnixListener {
    /// Binds `path` with the default [`Config`].
    pub fn bind(path: impl AsRef<Path>) -> Result<UnixListener> {
        UnixListener::bind_with(path, &Config::default())
    }

    /// Binds `path` with `config` (its backlog: [`Config::backlog`]).
    pub fn bind_with(path: impl AsRef<Path>, config: &Config) -> Result<UnixListener> {
        config.validate()?;
        let path = path.as_ref();
        let local = unix_path(path);
        let address = sock_addr(path)?;
        let socket =
            sockopt::unix_listener(&address, config).map_err(|e| Error::from_io(e, &local))?;
        let file = socket_file(path);
        Ok(UnixListener {
            inner: StreamListener::new(socket, local, config.accept_timeout),
            config: config.clone(),
            file,
        })
    }

    /// Accepts the next connection (see
    /// [`TcpListener::accept`](super::TcpListener::accept) for the errors).
    pub fn accept(&self) -> Result<Unix> {
        let (socket, _) = self.inner.accept()?;
        Unix::from_socket(socket, &self.config)
    }

    /// The bound address, as a URL that [`connect`](crate::connect) accepts.
    pub fn local_addr(&self) -> Result<Addr> {
        Ok(self.inner.local.clone())
    }

    /// Bounds every later `accept` (`None`: wait as long as it takes).
    pub fn set_accept_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.inner.set_accept_timeout(timeout)
    }

    /// The accept timeout.
    pub fn accept_timeout(&self) -> Option<Duration> {
        self.inner.accept_timeout()
    }

    /// A handle that stops a blocked `accept` from another thread.
    pub fn stopper(&self) -> Stopper {
        self.inner.stopper()
    }

    /// The listening socket.
    pub fn socket(&self) -> &Socket {
        self.inner.socket()
    }

    /// The socket, its address, its configuration, and the file to remove
    /// when the new owner is done with it.
    pub(crate) fn into_parts(mut self) -> Option<(Socket, Addr, Config, Option<PathBuf>)> {
        // The new owner removes the file: this one must not.
        let file = self.file.take().map(|(path, _)| path);
        let config = self.config.clone();
        let detached = self.inner.detach();
        drop(self);
        let (socket, local) = detached.into_socket()?;
        Some((socket, local, config, file))
    }
}

impl Drop for UnixListener {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            remove_socket_file(file);
        }
    }
}

/// The socket file of a listener and its inode, when it has one.
pub(crate) fn socket_file(path: &Path) -> Option<(PathBuf, u64)> {
    std::fs::metadata(path)
        .ok()
        .map(|m| (path.to_path_buf(), m.ino()))
}

/// Removes a listener's socket file, unless another socket took its path
/// meanwhile (another inode).
pub(crate) fn remove_socket_file((path, ino): &(PathBuf, u64)) {
    if std::fs::metadata(path).is_ok_and(|m| m.ino() == *ino) {
        let _ = std::fs::remove_file(path);
    }
}

// ---------------------------------------------------------------------------
// Datagrams.

/// A Unix datagram socket connected to one peer: one message is one
/// datagram, as over [`Udp`](super::Udp).
///
/// * Reliable and ordered (it never leaves the machine): when the peer's
///   receive queue is full a send waits, up to the write timeout.
/// * The largest message is [`UnixDatagram::MAX_DATAGRAM`] or the lower
///   [`Config::max_message_len`]; a larger send fails with
///   [`Error::MessageTooLarge`] before any system call, and a larger datagram
///   received is [`Error::Truncated`], never cut short silently.
/// * Closing is local, as for UDP: the peer is not told. A send to a peer
///   that is gone is [`Error::PeerUnreachable`].
///
/// To be answered, a client needs an address of its own:
/// [`connect`](UnixDatagram::connect) binds one in Linux's abstract
/// namespace (no file is created), named with 128 random bits so that no
/// other process can guess it; elsewhere, bind a socket yourself and use
/// [`from_socket`](UnixDatagram::from_socket).
#[derive(Debug)]
pub struct UnixDatagram {
    tx: DatagramSender,
    rx: DatagramReceiver,
}

impl Transport for UnixDatagram {
    type Sender = DatagramSender;
    type Receiver = DatagramReceiver;

    fn into_halves(self) -> (DatagramSender, DatagramReceiver) {
        (self.tx, self.rx)
    }
}

impl UnixDatagram {
    /// The largest message of a Unix datagram conversation (or the lower
    /// [`Config::max_message_len`]): 64 KiB, which fits the default socket
    /// buffers of Linux. (macOS limits Unix datagrams to 2 KiB unless its
    /// `net.local.dgram.maxdgram` is raised.)
    pub const MAX_DATAGRAM: usize = 64 * 1024;

    /// Connects to the datagram socket at `path` with the default [`Config`].
    pub fn connect(path: impl AsRef<Path>) -> Result<UnixDatagram> {
        UnixDatagram::connect_with(path, &Config::default())
    }

    /// Connects to the datagram socket at `path` with `config`, from an
    /// address of its own (see the type's docs).
    pub fn connect_with(path: impl AsRef<Path>, config: &Config) -> Result<UnixDatagram> {
        config.validate()?;
        let path = path.as_ref();
        let peer = Addr::UnixDatagram(Some(path.to_path_buf()));
        let socket = sockopt::unix_datagram_client().map_err(|e| Error::from_io(e, &peer))?;
        socket.connect(path).map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused => Error::ConnectionRefused { addr: peer.clone() },
            _ => Error::from_io(e, &peer),
        })?;
        UnixDatagram::from_socket(socket, config)
    }

    /// Wraps a Unix datagram socket that is already connected to its peer.
    pub fn from_socket(socket: StdDatagram, config: &Config) -> Result<UnixDatagram> {
        let socket = Socket::from(socket);
        let local = addr_of(socket.local_addr(), Addr::UnixDatagram);
        let peer = addr_of(socket.peer_addr(), Addr::UnixDatagram);
        let max = config.max_message_len.min(UnixDatagram::MAX_DATAGRAM);
        let (tx, rx) = datagram::halves(socket, local, peer, max, config)?;
        Ok(UnixDatagram { tx, rx })
    }

    pub(crate) fn into_parts(self) -> Option<datagram::DatagramParts> {
        datagram::into_parts(self.tx, self.rx)
    }

    /// Two connected datagram transports (`socketpair(2)`).
    pub fn pair_with(config: &Config) -> Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) =
            StdDatagram::pair().map_err(|e| Error::from_io(e, &Addr::UnixDatagram(None)))?;
        Ok((
            UnixDatagram::from_socket(a, config)?,
            UnixDatagram::from_socket(b, config)?,
        ))
    }
}
