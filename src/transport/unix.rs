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
use std::os::unix::net::{
    SocketAddr as StdAddr, UnixDatagram as StdDatagram, UnixListener as StdListener,
    UnixStream as StdStream,
};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use super::stream::Stream;
use super::udp::Datagrams;
use crate::addr::Addr;
use crate::config::Config;
use crate::conversation::Conversation;
use crate::error::{Error, Result};

/// The largest message of a [`UnixDatagram`] (or the lower
/// [`Config::max_message_len`]): 64 KiB, which fits the default socket
/// buffers of Linux. (macOS limits Unix datagrams to 2 KiB unless its
/// `net.local.dgram.maxdgram` is raised.)
pub const MAX_UNIX_DATAGRAM: usize = 64 * 1024;

/// A socket's address as an [`Addr`] of `kind` (`Addr::Unix` or
/// `Addr::UnixDatagram`).
fn addr_of(addr: io::Result<StdAddr>, kind: fn(Option<PathBuf>) -> Addr) -> Addr {
    match addr {
        Ok(a) => kind(a.as_pathname().map(Path::to_path_buf)),
        Err(_) => Addr::Unknown,
    }
}

fn sock_addr(path: &Path) -> Result<SockAddr> {
    SockAddr::unix(path).map_err(|e| Error::InvalidAddress {
        input: path.display().to_string(),
        reason: e.to_string(),
    })
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
    inner: Stream,
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
        let path = path.as_ref();
        let peer = unix_path(path);
        let address = sock_addr(path)?;
        let connect = || -> io::Result<Socket> {
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            // A Unix connect to a full backlog blocks; SO_SNDTIMEO bounds it.
            super::sockopt::set_write_timeout(&socket, config.connect_timeout)?;
            socket.connect(&address)?;
            Ok(socket)
        };
        let socket = connect().map_err(|e| Error::from_io(e, &peer))?;
        Unix::from_stream(socket.into(), config)
    }

    /// Wraps a connected stream, applying `config`'s options.
    pub fn from_stream(stream: StdStream, config: &Config) -> Result<Unix> {
        let local = addr_of(stream.local_addr(), Addr::Unix);
        let peer = addr_of(stream.peer_addr(), Addr::Unix);
        let inner = Stream::new(Socket::from(stream), local, peer, config)?;
        Ok(Unix { inner })
    }

    /// Two connected conversations' transports (`socketpair(2)`), for a
    /// parent and child process or two threads.
    pub fn pair_with(config: &Config) -> Result<(Unix, Unix)> {
        let (a, b) = StdStream::pair().map_err(|e| Error::from_io(e, &Addr::Unix(None)))?;
        Ok((Unix::from_stream(a, config)?, Unix::from_stream(b, config)?))
    }

    /// The underlying socket, for options this crate does not cover.
    /// Reading or writing it directly breaks the framing.
    pub fn socket(&self) -> &Socket {
        self.inner.socket()
    }

    /// The capacity of the read buffer, in bytes.
    pub fn read_buffer_capacity(&self) -> usize {
        self.inner.read_buffer_capacity()
    }
}

super::delegate_transport!(Unix);

/// A Unix stream server socket: every accepted connection is a
/// [`Conversation`].
///
/// Binding fails if `path` exists (a socket file left by a crashed server
/// included: remove it first). The listener removes its socket file when
/// dropped, unless another file has taken its place.
///
/// ```no_run
/// use converse::UnixListener;
///
/// let listener = UnixListener::bind("/tmp/echo.sock")?;
/// let mut conversation = listener.accept()?;
/// while let Some(message) = conversation.recv()? {
///     conversation.send(&message)?;
/// }
/// # Ok::<(), converse::Error>(())
/// ```
#[derive(Debug)]
pub struct UnixListener {
    inner: StdListener,
    local: Addr,
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
        let path = path.as_ref();
        let local = unix_path(path);
        let address = sock_addr(path)?;
        let bind = || -> io::Result<StdListener> {
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            socket.bind(&address)?;
            socket.listen(config.backlog)?;
            Ok(socket.into())
        };
        let inner = bind().map_err(|e| Error::from_io(e, &local))?;
        let file = std::fs::metadata(path)
            .ok()
            .map(|m| (path.to_path_buf(), m.ino()));
        Ok(UnixListener {
            inner,
            local,
            config: config.clone(),
            file,
        })
    }

    /// Accepts the next connection.
    pub fn accept(&self) -> Result<Conversation<Unix>> {
        self.accept_transport().map(Conversation::new)
    }

    /// Accepts the next connection, as a bare transport.
    pub fn accept_transport(&self) -> Result<Unix> {
        loop {
            match self.inner.accept() {
                Ok((stream, _)) => return Unix::from_stream(stream, &self.config),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => return Err(Error::from_io(e, &self.local)),
            }
        }
    }

    /// The bound address, as a URL that [`connect`](crate::connect) accepts.
    pub fn local_addr(&self) -> Result<Addr> {
        Ok(self.local.clone())
    }

    /// The underlying std listener.
    pub fn listener(&self) -> &StdListener {
        &self.inner
    }
}

impl Drop for UnixListener {
    fn drop(&mut self) {
        if let Some((path, ino)) = &self.file {
            if std::fs::metadata(path).is_ok_and(|m| m.ino() == *ino) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Datagrams.

/// A Unix datagram socket connected to one peer: one message is one
/// datagram, as over [`Udp`](super::Udp).
///
/// * Reliable and ordered (it never leaves the machine): when the peer's
///   receive queue is full a send waits, up to the write timeout.
/// * The largest message is [`MAX_UNIX_DATAGRAM`] or the lower
///   [`Config::max_message_len`]; a larger send fails with
///   [`Error::MessageTooLarge`] before any system call, and a larger datagram
///   received is [`Error::Truncated`], never cut short silently.
/// * Closing is local, as for UDP: the peer is not told. A send to a peer
///   that is gone is [`Error::PeerUnreachable`].
///
/// To be answered, a client needs an address of its own:
/// [`connect`](UnixDatagram::connect) binds one in Linux's abstract
/// namespace (no file is created); elsewhere, bind a socket yourself and use
/// [`from_socket`](UnixDatagram::from_socket).
#[derive(Debug)]
pub struct UnixDatagram {
    inner: Datagrams,
}

impl UnixDatagram {
    /// Connects to the datagram socket at `path` with the default [`Config`].
    pub fn connect(path: impl AsRef<Path>) -> Result<UnixDatagram> {
        UnixDatagram::connect_with(path, &Config::default())
    }

    /// Connects to the datagram socket at `path` with `config`, from an
    /// address of its own (see the type's docs).
    pub fn connect_with(path: impl AsRef<Path>, config: &Config) -> Result<UnixDatagram> {
        let path = path.as_ref();
        let peer = Addr::UnixDatagram(Some(path.to_path_buf()));
        let socket = client_socket().map_err(|e| Error::from_io(e, &peer))?;
        socket.connect(path).map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused => Error::ConnectionRefused { addr: peer.clone() },
            _ => Error::from_io(e, &peer),
        })?;
        UnixDatagram::from_socket(socket, config)
    }

    /// Wraps a Unix datagram socket that is already connected to its peer.
    pub fn from_socket(socket: StdDatagram, config: &Config) -> Result<UnixDatagram> {
        let local = addr_of(socket.local_addr(), Addr::UnixDatagram);
        let peer = addr_of(socket.peer_addr(), Addr::UnixDatagram);
        let max = config.max_message_len.min(MAX_UNIX_DATAGRAM);
        socket
            .set_write_timeout(super::sockopt::nonzero(config.write_timeout))
            .map_err(|e| Error::from_io(e, &peer))?;
        Ok(UnixDatagram {
            inner: Datagrams::new(Socket::from(socket), local, peer, max, config),
        })
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

    /// The underlying socket, for options this crate does not cover.
    pub fn socket(&self) -> &Socket {
        self.inner.socket()
    }
}

super::delegate_transport!(UnixDatagram);

/// A datagram socket with an address of its own, so that replies reach it.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn client_socket() -> io::Result<StdDatagram> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    use std::sync::atomic::{AtomicU64, Ordering};

    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut last = None;
    for _ in 0..16 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("converse-{}-{n}", std::process::id());
        match StdDatagram::bind_addr(&StdAddr::from_abstract_name(name.as_bytes())?) {
            Ok(socket) => return Ok(socket),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("tried at least once"))
}

/// Without an abstract namespace, an unbound socket (it can send, and
/// receive only on a socket pair).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn client_socket() -> io::Result<StdDatagram> {
    StdDatagram::unbound()
}
