//! The same conversations from async Rust, on tokio (feature `tokio`): a
//! third driver of the one sans-IO connection, so the framing, the limits,
//! the per-message deadline, the TLS, WebSocket and NATS handshakes, the
//! close and what each end means are the blocking driver's and the
//! switchboard's, with no protocol code of its own here.
//!
//! It runs on a tokio runtime with both its I/O and time drivers (what
//! `#[tokio::main]` builds; `Builder::enable_all`): the connection's
//! deadlines are tokio timers.
//!
//! Every transport connects: `tcp://`, `tls://`, `ws://`, `wss://`,
//! `nats://`, `unix://`, and the datagram clients `udp://` and
//! `unixgram://`; every stream listens. A UDP listener (the
//! demultiplexer) on tokio is still to come (refused with
//! [`Error::Unsupported`]).
//!
//! **Cancellation is a promise.** A [`recv`](Conversation::recv) future
//! dropped at any await point loses no message: whatever had arrived
//! waits in the conversation for the next `recv`. A
//! [`send`](Conversation::send) future took the whole message at its
//! first poll (a future never polled took nothing): dropped later, the
//! message still goes, whole, before anything sent after it, and sending
//! it again would send it twice. So `tokio::select!` and
//! `tokio::time::timeout` may cut either at any point; a program that
//! must know the message was written awaits [`flush`](Conversation::flush).
//! Timeouts are the runtime's (`tokio::time::timeout`): `Config`'s read
//! and write timeouts are the blocking driver's. A conversation dropped
//! without [`close`](Conversation::close) closes its socket at once (a
//! destructor cannot wait): what a cancelled `send` left queued is not
//! written then, so `flush` or `close` first.
//!
//! An echo server, one client at a time (spawn a task per conversation
//! to serve many):
//!
//! ```no_run
//! # async fn run() -> converse::Result<()> {
//! let listener = converse::tokio::listen("tcp://127.0.0.1:8090").await?;
//! loop {
//!     let mut conversation = listener.accept().await?;
//!     while let Some(message) = conversation.recv().await? {
//!         conversation.send(&message).await?;
//!     }
//!     conversation.close().await?;
//! }
//! # }
//! ```

mod datagram;
mod stream;

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};

use self::datagram::DatagramConv;
use self::stream::{Io, StreamConv};
use crate::addr::Addr;
use crate::config::Config;
use crate::connection::Delivery;
use crate::error::{Error, Result};
use crate::transport::recipe::Recipe;
use crate::url::{Place, Scheme};

/// Connects to a URL with the default [`Config`]: TCP, TLS, WebSocket
/// (`ws`, `wss`), NATS, a Unix stream socket, UDP or a Unix datagram
/// socket, as [`crate::connect`]. Returns once the
/// handshakes (TLS, the WebSocket upgrade, NATS's `CONNECT`) are done.
///
/// # Errors
///
/// As [`crate::connect`].
pub async fn connect(url: &str) -> Result<Conversation> {
    connect_with(url, &Config::default()).await
}

/// Connects to a URL with `config`; see [`connect`].
///
/// # Errors
///
/// As [`connect`].
pub async fn connect_with(url: &str, config: &Config) -> Result<Conversation> {
    let parsed = crate::connect::parse(url, config, false)?;
    // Datagrams: the blocking driver's socket (connecting a datagram
    // socket does not wait), then tokio's.
    let datagram = match (&parsed.place, parsed.scheme) {
        (_, Scheme::Udp) => Some((
            crate::transport::udp::connect_any(&parsed.resolve()?, config)?.into_parts(),
            false,
        )),
        #[cfg(unix)]
        (Place::Path(path), Scheme::Unixgram) => Some((
            crate::transport::UnixDatagram::connect_with(path, config)?.into_parts(),
            true,
        )),
        _ => None,
    };
    if let Some((parts, unix)) = datagram {
        let parts = parts.ok_or(Error::Unsupported("a socket shared with another thread"))?;
        return Ok(Conversation {
            inner: Inner::Datagram(Box::new(DatagramConv::new(parts, unix)?)),
        });
    }
    let recipe = Recipe::client(&parsed, config)?;
    #[cfg(unix)]
    if let Place::Path(path) = &parsed.place {
        let peer = Addr::Unix(Some(path.clone()));
        let stream = within(config, tokio::net::UnixStream::connect(path))
            .await
            .map_err(|e| Error::from_io(e, &peer))?;
        return Conversation::established(Io::Unix(stream), &recipe, config, peer).await;
    }
    let mut last = None;
    for at in parsed.resolve()? {
        let peer = recipe.addr(at);
        match within(config, TcpStream::connect(at)).await {
            Ok(stream) => {
                return Conversation::established(Io::Tcp(stream), &recipe, config, peer).await
            }
            Err(e) => last = Some(Error::from_io(e, &peer)),
        }
    }
    Err(last.unwrap_or_else(|| crate::addr::no_address(url).into()))
}

/// `connecting`, within the config's connect timeout (past it, a
/// `TimedOut` error).
async fn within<T>(
    config: &Config,
    connecting: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    match config.connect_timeout() {
        Some(limit) => tokio::time::timeout(limit, connecting)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())),
        None => connecting.await,
    }
}

/// Listens on a URL with the default [`Config`]: `tcp`, `tls`, `ws`,
/// `wss` or `unix` (a TLS listener needs the config's TLS server, so
/// [`listen_with`]).
///
/// # Errors
///
/// As [`crate::listen`]; [`Error::Unsupported`] for `udp` and
/// `unixgram`.
pub async fn listen(url: &str) -> Result<Listener> {
    listen_with(url, &Config::default()).await
}

/// Listens on a URL, its conversations getting `config`.
///
/// # Errors
///
/// As [`listen`].
pub async fn listen_with(url: &str, config: &Config) -> Result<Listener> {
    let parsed = crate::connect::parse(url, config, true)?;
    refuse_unsupported(&parsed.place, parsed.scheme)?;
    #[cfg(unix)]
    if let Place::Path(path) = &parsed.place {
        let recipe = Recipe::server(&parsed, config)?;
        let bound = crate::transport::UnixListener::bind_with(path, config)?;
        let (socket, local, config, file) = bound
            .into_parts()
            .ok_or(Error::Unsupported("a listener shared with another thread"))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| Error::from_io(e, &local))?;
        let std: std::os::unix::net::UnixListener = socket.into();
        let listener =
            tokio::net::UnixListener::from_std(std).map_err(|e| Error::from_io(e, &local))?;
        let file = file.and_then(|path| crate::transport::unix::socket_file(&path));
        return Ok(Listener {
            listener: Accepting::Unix { listener, file },
            local,
            config,
            recipe,
        });
    }
    let recipe = Recipe::server(&parsed, config)?;
    let listening =
        crate::transport::listener::Listening::bind(&parsed.resolve()?, recipe, config)?;
    let (socket, local, config, recipe) = listening
        .into_parts()
        .ok_or(Error::Unsupported("a listener shared with another thread"))?;
    socket
        .set_nonblocking(true)
        .map_err(|e| Error::from_io(e, &local))?;
    let listener = TcpListener::from_std(socket.into()).map_err(|e| Error::from_io(e, &local))?;
    Ok(Listener {
        listener: Accepting::Tcp(listener),
        local,
        config,
        recipe,
    })
}

fn refuse_unsupported(place: &Place, scheme: Scheme) -> Result<()> {
    match (place, scheme) {
        (_, Scheme::Udp) => Err(Error::Unsupported(
            "a udp:// listener on the tokio driver (to come; a udp:// client is here)",
        )),
        #[cfg(unix)]
        (Place::Path(_), Scheme::Unix) => Ok(()),
        #[cfg(unix)]
        (Place::Path(_), _) => Err(Error::Unsupported(
            "unixgram:// listening on the tokio driver (to come)",
        )),
        _ => Ok(()),
    }
}

/// A listening socket.
#[derive(Debug)]
enum Accepting {
    Tcp(TcpListener),
    #[cfg(unix)]
    Unix {
        listener: tokio::net::UnixListener,
        /// The socket file and its inode, removed on drop.
        file: Option<(std::path::PathBuf, u64)>,
    },
}

impl Drop for Accepting {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let Accepting::Unix {
            file: Some(file), ..
        } = self
        {
            crate::transport::unix::remove_socket_file(file);
        }
    }
}

/// A listener on tokio: [`accept`](Listener::accept) hands out
/// conversations whose handshakes are done.
#[derive(Debug)]
pub struct Listener {
    listener: Accepting,
    local: Addr,
    config: Config,
    recipe: Recipe,
}

impl Listener {
    /// The next conversation, at once: its handshakes (TLS, the WebSocket
    /// upgrade) run with its first `recv`, `send` or
    /// [`handshake`](Conversation::handshake), each within the config's
    /// handshake timeout, on whichever task serves it, so a slow or
    /// silent client holds up nobody else; a failed handshake is that
    /// conversation's typed error.
    ///
    /// Cancel-safe: dropped, it loses no connection (they wait in the
    /// kernel's queue).
    ///
    /// # Errors
    ///
    /// An error of the listening socket (out of file descriptors: see
    /// [`Error::is_transient`]).
    pub async fn accept(&self) -> Result<Conversation> {
        loop {
            let accepted = match &self.listener {
                Accepting::Tcp(l) => l
                    .accept()
                    .await
                    .map(|(stream, at)| (Io::Tcp(stream), self.recipe.addr(at))),
                #[cfg(unix)]
                Accepting::Unix { listener, .. } => listener
                    .accept()
                    .await
                    .map(|(stream, _)| (Io::Unix(stream), Addr::Unix(None))),
            };
            let (stream, peer) = accepted.map_err(|e| Error::from_io(e, &self.local))?;
            // A connection dead before it was taken is skipped.
            if let Ok(conversation) = StreamConv::new(stream, &self.recipe, &self.config, peer) {
                return Ok(Conversation::stream(conversation));
            }
        }
    }

    /// The address it listens on, with the real port.
    pub fn local_addr(&self) -> &Addr {
        &self.local
    }
}

/// A conversation on tokio: whole messages, in order, with the promises of
/// every other driver. See the [module docs](self) for what cancellation
/// means.
#[derive(Debug)]
pub struct Conversation {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Stream(Box<StreamConv>),
    Datagram(Box<DatagramConv>),
}

impl Conversation {
    /// A client's stream conversation, its handshakes done.
    async fn established(
        stream: Io,
        recipe: &Recipe,
        config: &Config,
        peer: Addr,
    ) -> Result<Conversation> {
        let mut conversation = StreamConv::new(stream, recipe, config, peer)?;
        conversation.established().await?;
        Ok(Conversation::stream(conversation))
    }

    fn stream(conversation: StreamConv) -> Conversation {
        Conversation {
            inner: Inner::Stream(Box::new(conversation)),
        }
    }

    /// Completes the handshakes now (TLS, the WebSocket upgrade, NATS's
    /// `CONNECT`), if they are not done; otherwise they run with the
    /// first `recv` or `send`. `connect` returns with them done.
    ///
    /// # Errors
    ///
    /// The handshake's typed error ([`Error::Tls`], [`Error::WebSocket`],
    /// [`Error::Timeout`] past the handshake timeout …).
    pub async fn handshake(&mut self) -> Result<()> {
        match &mut self.inner {
            Inner::Stream(c) => c.established().await,
            Inner::Datagram(_) => Ok(()),
        }
    }

    /// The peer.
    pub fn peer_addr(&self) -> &Addr {
        match &self.inner {
            Inner::Stream(c) => c.peer_addr(),
            Inner::Datagram(c) => c.peer_addr(),
        }
    }

    /// Our side's address.
    pub fn local_addr(&self) -> &Addr {
        match &self.inner {
            Inner::Stream(c) => c.local_addr(),
            Inner::Datagram(c) => c.local_addr(),
        }
    }

    /// The next message; `Ok(None)` at the peer's clean end (between
    /// messages; over UDP, after the idle timeout). Cancel-safe: see the
    /// [module docs](self).
    ///
    /// # Errors
    ///
    /// As [`crate::Conversation::recv`]: the typed end of a conversation
    /// that failed (a message too large, a missed deadline, a reset …);
    /// over datagrams [`Error::Truncated`] and
    /// [`Error::PeerUnreachable`], after which it goes on;
    /// [`Error::Closed`] after an earlier end.
    pub async fn recv(&mut self) -> Result<Option<Bytes>> {
        match &mut self.inner {
            Inner::Stream(c) => c.recv().await,
            Inner::Datagram(c) => c.recv().await,
        }
    }

    /// The next message as text (`Ok(None)` at the peer's end).
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), and [`Error::InvalidText`] for a message
    /// that is not UTF-8: it carries the message, and the conversation
    /// goes on.
    pub async fn recv_text(&mut self) -> Result<Option<String>> {
        self.recv()
            .await?
            .map(crate::conversation::into_text)
            .transpose()
    }

    /// Sends one message, and waits until the socket has taken it. The
    /// message is taken at the first poll, whole (see the [module
    /// docs](self)).
    ///
    /// # Errors
    ///
    /// [`Error::MessageTooLarge`] (nothing taken, the conversation goes
    /// on); the conversation's end, typed, if it has failed;
    /// [`Error::Closed`] after a close.
    pub async fn send(&mut self, msg: impl AsRef<[u8]>) -> Result<()> {
        self.take(msg.as_ref(), false)?;
        self.flush().await
    }

    /// Sends `text` as one message (over WebSocket, a text frame).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        self.take(text.as_bytes(), true)?;
        self.flush().await
    }

    /// Queues one message without waiting (it goes with the next `send`,
    /// `flush`, `recv` or `close`).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn feed(&mut self, msg: impl AsRef<[u8]>) -> Result<()> {
        self.take(msg.as_ref(), false)
    }

    fn take(&mut self, msg: &[u8], text: bool) -> Result<()> {
        match &mut self.inner {
            Inner::Stream(c) => c.take(msg, text),
            Inner::Datagram(c) => c.take(msg),
        }
    }

    /// Waits until everything sent has been taken by the socket.
    /// Cancel-safe: dropped, what is queued stays queued.
    ///
    /// # Errors
    ///
    /// The conversation's end, typed, if it fails meanwhile.
    pub async fn flush(&mut self) -> Result<()> {
        match &mut self.inner {
            Inner::Stream(c) => c.flush().await,
            Inner::Datagram(c) => c.flush().await,
        }
    }

    /// Closes gracefully, as [`crate::Conversation::close`]: writes what is
    /// queued, ends our side, and (over a stream) waits for the peer's end
    /// within the linger time; says what is known of delivery.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionReset`] when the peer reset with our messages
    /// unread, [`Error::Unsent`] when they could not be written in time, or
    /// the conversation's earlier failure.
    pub async fn close(self) -> Result<Delivery> {
        match self.inner {
            Inner::Stream(c) => c.close().await,
            Inner::Datagram(c) => c.close().await,
        }
    }

    /// Ends at once, discarding what is queued (over a stream, a reset).
    pub fn abort(self) {
        match self.inner {
            Inner::Stream(c) => c.abort(),
            Inner::Datagram(c) => c.abort(),
        }
    }
}
