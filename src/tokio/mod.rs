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
//! `unixgram://`. Every stream listens, and so does UDP: a `udp://`
//! listener spawns one task that hands each datagram to the conversation
//! of its source (the blocking listener's thread, as a task), with the same
//! limits and counts ([`Listener::udp_stats`]).
//!
//! A [`Conversation`] is also a [`Stream`] of messages and a [`Sink`] of
//! them, and [`split`](Conversation::split)s into a [`RecvHalf`] and a
//! [`SendHalf`] for two tasks.
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
//! written then, so `flush` or `close` first. One dropped after its
//! sending half closed ([`SendHalf::close`]) hands its socket to a task
//! that reads and discards what still arrives (a TLS session ticket late
//! through a slow path) until the peer's end or the linger time, so that
//! the system does not answer it with a reset and the peer loses nothing
//! we sent.
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
mod udp_listener;

use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Wake, Waker};

use std::net::SocketAddr;

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;
use tokio::net::{TcpListener, TcpStream};

use self::datagram::DatagramConv;
use self::stream::{Io, StreamConv};
use self::udp_listener::Peer;
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
    #[cfg(feature = "quic")]
    if parsed.scheme == Scheme::Quic {
        return quic_connect(&parsed, config).await;
    }
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

/// Listens on a URL with the default [`Config`]: `tcp`, `udp`, `tls`, `ws`,
/// `wss` or `unix` (a TLS listener needs the config's TLS server, so
/// [`listen_with`]).
///
/// # Errors
///
/// As [`crate::listen`] ([`Error::Unsupported`] for `unixgram`, as
/// there).
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
    #[cfg(feature = "quic")]
    if parsed.scheme == Scheme::Quic {
        let recipe = Recipe::server(&parsed, config)?;
        let listener =
            crate::transport::quic::QuicListener::bind(&parsed.resolve()?, recipe, config)?;
        let notify = std::sync::Arc::new(tokio::sync::Notify::new());
        let told = std::sync::Arc::clone(&notify);
        listener.watch(Some(std::sync::Arc::new(move || told.notify_one())));
        return Ok(Listener {
            local: listener.local(),
            listener: Accepting::Quic {
                listener: Box::new(listener),
                notify,
            },
            config: config.clone(),
            recipe: None,
        });
    }
    if parsed.scheme == Scheme::Udp {
        let bound = crate::transport::udp_listener::bind_socket(&parsed.resolve()?, config)?;
        let (shared, task) = udp_listener::Shared::bind(bound, config)?;
        return Ok(Listener {
            local: Addr::Udp(shared.local()),
            listener: Accepting::Udp { shared, task },
            config: config.clone(),
            recipe: None,
        });
    }
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
            recipe: Some(recipe),
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
        recipe: Some(recipe),
    })
}

/// A QUIC conversation: the endpoint's thread drives the handshakes and
/// wakes this task when one had news (or a deadline comes). Dropped before
/// it is done, the connect gives its handshakes up.
#[cfg(feature = "quic")]
async fn quic_connect(parsed: &crate::url::Url, config: &Config) -> Result<Conversation> {
    use std::sync::{Arc, Mutex};
    use std::task::{Poll, Waker};
    let recipe = Recipe::client(parsed, config)?;
    let mut dial = crate::transport::quic::Dial::new(parsed, config)?;
    let slot: Arc<Mutex<Option<Waker>>> = Arc::default();
    let told = Arc::clone(&slot);
    dial.watch(Arc::new(move || {
        if let Some(w) = told.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.wake();
        }
    }));
    let mut sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    let won = std::future::poll_fn(|cx| loop {
        // The waker first: news after the look wakes the task.
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        match dial.poll(std::time::Instant::now()) {
            Ok(Some(won)) => return Poll::Ready(Ok(won)),
            Err(e) => return Poll::Ready(Err(e)),
            Ok(None) => {}
        }
        let Some(at) = dial.deadline() else {
            return Poll::Pending;
        };
        let at = tokio::time::Instant::from_std(at);
        match &mut sleep {
            Some(s) => s.as_mut().reset(at),
            None => sleep = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        if let Some(s) = &mut sleep {
            if std::future::Future::poll(s.as_mut(), cx).is_pending() {
                return Poll::Pending;
            }
        }
        // The deadline came: look again.
    })
    .await?;
    let peer = Addr::Quic(won.addr);
    let settings = crate::connection::Settings::new(config, None);
    let conn = recipe.conn(&settings, peer.clone(), std::time::Instant::now())?;
    let io = stream::QuicIo::new(won.carrier()).ok_or(Error::Unsupported("not a QUIC stream"))?;
    Ok(Conversation::stream(StreamConv::from_parts(
        Io::Quic(Box::new(io)),
        conn,
        peer,
        won.local(),
        config,
    )))
}

/// A QUIC stream's conversation (blocking halves, taken apart) on tokio.
#[cfg(feature = "quic")]
fn quic_conversation(
    (tx, rx): (
        crate::transport::StreamSender,
        crate::transport::StreamReceiver,
    ),
    config: &Config,
) -> Result<Conversation> {
    let (carrier, local, peer, conn, _) = crate::transport::stream::into_parts(tx, rx)
        .ok_or(Error::Unsupported("a QUIC stream taken apart"))?;
    let io = stream::QuicIo::new(carrier).ok_or(Error::Unsupported("not a QUIC stream"))?;
    Ok(Conversation::stream(StreamConv::from_parts(
        Io::Quic(Box::new(io)),
        conn,
        peer,
        local,
        config,
    )))
}

fn refuse_unsupported(place: &Place, scheme: Scheme) -> Result<()> {
    match (place, scheme) {
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
    /// A UDP socket and the task that hands each datagram to the
    /// conversation of its source.
    /// A QUIC listener: its endpoint's thread accepts streams and says so.
    #[cfg(feature = "quic")]
    Quic {
        listener: Box<crate::transport::quic::QuicListener>,
        notify: std::sync::Arc<tokio::sync::Notify>,
    },
    Udp {
        shared: std::sync::Arc<udp_listener::Shared>,
        task: tokio::task::JoinHandle<()>,
    },
}

impl Drop for Accepting {
    fn drop(&mut self) {
        if let Accepting::Udp { shared, task } = self {
            task.abort();
            shared.stop();
        }
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
    /// What each stream conversation stacks (none for UDP).
    recipe: Option<Recipe>,
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
                Accepting::Tcp(l) => l.accept().await.map(|(stream, at)| (Io::Tcp(stream), at)),
                #[cfg(unix)]
                Accepting::Unix { listener, .. } => listener
                    .accept()
                    .await
                    .map(|(stream, _)| (Io::Unix(stream), SocketAddr::from(([0, 0, 0, 0], 0)))),
                Accepting::Udp { shared, .. } => {
                    let peer = poll_fn(|cx| shared.poll_accept(cx)).await?;
                    return Ok(Conversation {
                        inner: Inner::Peer(Box::new(peer)),
                    });
                }
                #[cfg(feature = "quic")]
                Accepting::Quic { listener, notify } => loop {
                    // A stream accepted before the wait leaves a permit:
                    // no wake-up is lost.
                    if let Some(halves) = listener.try_accept() {
                        if let Ok(c) = quic_conversation(halves, &self.config) {
                            return Ok(c);
                        }
                        continue;
                    }
                    notify.notified().await;
                },
            };
            let (stream, at) = accepted.map_err(|e| Error::from_io(e, &self.local))?;
            let recipe = self.recipe.as_ref().expect("a stream listener's recipe");
            let peer = match stream {
                Io::Tcp(_) => recipe.addr(at),
                #[cfg(unix)]
                Io::Unix(_) => Addr::Unix(None),
                #[cfg(feature = "quic")]
                Io::Quic(_) => Addr::Unknown,
            };
            // A connection dead before it was taken is skipped.
            if let Ok(conversation) = StreamConv::new(stream, recipe, &self.config, peer) {
                return Ok(Conversation::stream(conversation));
            }
        }
    }

    /// What a UDP listener has received, delivered and dropped so far
    /// (see [`UdpStats`](crate::transport::UdpStats)); `None` for a stream listener.
    pub fn udp_stats(&self) -> Option<crate::transport::UdpStats> {
        match &self.listener {
            Accepting::Udp { shared, .. } => Some(shared.stats()),
            _ => None,
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
///
/// Besides its async methods it is a [`Stream`] of messages (each
/// `Result<Bytes>`, ending at the peer's clean end or after an error) and
/// a [`Sink`] of messages (a `close` of the sink is a graceful close);
/// [`split`](Conversation::split) makes a receiving and a sending half for
/// two tasks.
#[derive(Debug)]
pub struct Conversation {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Stream(Box<StreamConv>),
    Datagram(Box<DatagramConv>),
    /// A conversation of a UDP listener.
    Peer(Box<Peer>),
}

/// How much a [`Sink`] lets queue before `poll_ready` waits for the socket.
const SINK_HIGH: usize = 64 * 1024;

impl Inner {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>>> {
        match self {
            Inner::Stream(c) => c.poll_recv(cx),
            Inner::Datagram(c) => c.poll_recv(cx),
            Inner::Peer(c) => c.poll_recv(cx),
        }
    }

    fn take(&mut self, msg: &[u8], text: bool) -> Result<()> {
        match self {
            Inner::Stream(c) => c.take(msg, text),
            Inner::Datagram(c) => c.take(msg),
            Inner::Peer(c) => c.take(msg),
        }
    }

    fn max_message_len(&self) -> usize {
        match self {
            Inner::Stream(c) => c.max_message_len(),
            Inner::Datagram(c) => c.max_message_len(),
            Inner::Peer(c) => c.max_message_len(),
        }
    }

    fn queued(&self) -> usize {
        match self {
            Inner::Stream(c) => c.queued(),
            Inner::Datagram(c) => c.queued(),
            Inner::Peer(c) => c.queued(),
        }
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match self {
            Inner::Stream(c) => c.poll_flush(cx),
            Inner::Datagram(c) => c.poll_flush(cx),
            Inner::Peer(c) => c.poll_flush(cx),
        }
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<Delivery>> {
        match self {
            Inner::Stream(c) => c.poll_close(cx),
            Inner::Datagram(c) => c.poll_close(cx),
            Inner::Peer(c) => c.poll_close(cx),
        }
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match self {
            Inner::Stream(c) => c.poll_finish(cx),
            Inner::Datagram(c) => c.poll_finish(cx),
            Inner::Peer(c) => c.poll_finish(cx),
        }
    }

    fn poll_established(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match self {
            Inner::Stream(c) => c.poll_established(cx),
            Inner::Datagram(_) | Inner::Peer(_) => Poll::Ready(Ok(())),
        }
    }

    fn abort(&mut self) {
        match self {
            Inner::Stream(c) => c.abort(),
            Inner::Datagram(c) => c.abort(),
            Inner::Peer(c) => c.abort(),
        }
    }

    fn peer_addr(&self) -> &Addr {
        match self {
            Inner::Stream(c) => c.peer_addr(),
            Inner::Datagram(c) => c.peer_addr(),
            Inner::Peer(c) => c.peer_addr(),
        }
    }

    fn local_addr(&self) -> &Addr {
        match self {
            Inner::Stream(c) => c.local_addr(),
            Inner::Datagram(c) => c.local_addr(),
            Inner::Peer(c) => c.local_addr(),
        }
    }

    /// The [`Stream`] form of `poll_recv`: the peer's end and a reported
    /// failure end the stream (a failure is its last item).
    /// (A failure is told once: the poll after it says `Closed`, the
    /// stream's end.)
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes>>> {
        Poll::Ready(match ready!(self.poll_recv(cx)) {
            Ok(Some(message)) => Some(Ok(message)),
            Ok(None) | Err(Error::Closed) => None,
            Err(e) => Some(Err(e)),
        })
    }

    /// The [`Sink`] form of readiness: at most [`SINK_HIGH`] bytes queued.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.queued() < SINK_HIGH {
            return Poll::Ready(Ok(()));
        }
        self.poll_flush(cx)
    }
}

impl Conversation {
    /// A client's stream conversation, its handshakes done.
    async fn established(
        stream: Io,
        recipe: &Recipe,
        config: &Config,
        peer: Addr,
    ) -> Result<Conversation> {
        let mut conversation = Conversation::stream(StreamConv::new(stream, recipe, config, peer)?);
        conversation.handshake().await?;
        Ok(conversation)
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
        poll_fn(|cx| self.inner.poll_established(cx)).await
    }

    /// The peer.
    pub fn peer_addr(&self) -> &Addr {
        self.inner.peer_addr()
    }

    /// Our side's address.
    pub fn local_addr(&self) -> &Addr {
        self.inner.local_addr()
    }

    /// The verified identity of the peer (TLS, WSS, QUIC), once the
    /// handshake is over: see [`crate::Conversation::peer_identity`].
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn peer_identity(&self) -> Option<crate::tls::PeerIdentity> {
        match &self.inner {
            Inner::Stream(c) => c.peer_identity(),
            _ => None,
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
        poll_fn(|cx| self.inner.poll_recv(cx)).await
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
        self.inner.take(msg.as_ref(), false)?;
        self.flush().await
    }

    /// Sends `text` as one message (over WebSocket, a text frame).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        self.inner.take(text.as_bytes(), true)?;
        self.flush().await
    }

    /// Queues one message without waiting (it goes with the next `send`,
    /// `flush`, `recv` or `close`).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn feed(&mut self, msg: impl AsRef<[u8]>) -> Result<()> {
        self.inner.take(msg.as_ref(), false)
    }

    /// Bytes queued and not yet taken by the socket.
    pub fn queued(&self) -> usize {
        self.inner.queued()
    }

    /// The largest message it sends and receives: the configured limit, a
    /// datagram's own bound, or, for NATS, the server's `max_payload` once
    /// connected.
    pub fn max_message_len(&self) -> usize {
        self.inner.max_message_len()
    }

    /// Waits until everything sent has been taken by the socket.
    /// Cancel-safe: dropped, what is queued stays queued.
    ///
    /// # Errors
    ///
    /// The conversation's end, typed, if it fails meanwhile.
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| self.inner.poll_flush(cx)).await
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
    pub async fn close(mut self) -> Result<Delivery> {
        poll_fn(|cx| self.inner.poll_close(cx)).await
    }

    /// Ends at once, discarding what is queued (over a stream, a reset).
    pub fn abort(mut self) {
        self.inner.abort();
    }

    /// Splits into a receiving half and a sending half that two tasks use
    /// at once (they share the connection behind a lock that no await
    /// holds); [`SendHalf::reunite`] puts them back together. Whichever
    /// half is polled drives the connection (reads, writes, timers), and
    /// both are woken by what either waits for; messages read while
    /// sending wait for the receiving half, at most one read's worth (the
    /// rest stays in the kernel until the receiving half takes them).
    pub fn split(self) -> (RecvHalf, SendHalf) {
        let shared = Arc::new(Shared {
            inner: Mutex::new(self.inner),
            wakers: Arc::new(Wakers::default()),
        });
        (
            RecvHalf {
                shared: Arc::clone(&shared),
            },
            SendHalf { shared },
        )
    }
}

impl Stream for Conversation {
    type Item = Result<Bytes>;

    /// Messages until the peer's clean end; an error is the last item
    /// (except over datagrams, where [`Error::Truncated`] and
    /// [`Error::PeerUnreachable`] are followed by what comes next).
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.poll_next(cx)
    }
}

impl<M: AsRef<[u8]>> Sink<M> for Conversation {
    type Error = Error;

    /// Ready while less than 64 KiB waits to be written.
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().inner.poll_ready(cx)
    }

    /// Queues the message whole ([`Error::MessageTooLarge`] takes nothing).
    fn start_send(self: Pin<&mut Self>, item: M) -> Result<()> {
        self.get_mut().inner.take(item.as_ref(), false)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().inner.poll_flush(cx)
    }

    /// A graceful close ([`close`](Conversation::close)); what it says of
    /// delivery is not kept.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.get_mut().inner.poll_close(cx).map_ok(drop)
    }
}

/// The connection of a split conversation, and its halves' wakers.
#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    wakers: Arc<Wakers>,
}

/// The two halves' wakers, woken together: whichever half registers with
/// the socket or the timer, what it waits for wakes both.
#[derive(Debug, Default)]
struct Wakers {
    slots: Mutex<[Option<Waker>; 2]>,
}

impl Wake for Wakers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let taken = std::mem::take(&mut *lock(&self.slots));
        for waker in taken.into_iter().flatten() {
            waker.wake();
        }
    }
}

/// A lock whose holder never panics mid-change (a poisoned lock is used
/// as it is).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const RECEIVER: usize = 0;
const SENDER: usize = 1;

impl Shared {
    /// Runs a poll of the connection for the half in `slot`: its waker is
    /// kept, and the connection is polled with the wakers of both.
    fn poll<R>(
        &self,
        slot: usize,
        cx: &mut Context<'_>,
        f: impl FnOnce(&mut Inner, &mut Context<'_>) -> Poll<R>,
    ) -> Poll<R> {
        {
            let mut slots = lock(&self.wakers.slots);
            match &mut slots[slot] {
                Some(w) if w.will_wake(cx.waker()) => {}
                w => *w = Some(cx.waker().clone()),
            }
        }
        let both = Waker::from(Arc::clone(&self.wakers));
        let mut both_cx = Context::from_waker(&both);
        f(&mut lock(&self.inner), &mut both_cx)
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut lock(&self.inner))
    }
}

/// The receiving half of a split [`Conversation`]; a [`Stream`] of
/// messages.
#[derive(Debug)]
pub struct RecvHalf {
    shared: Arc<Shared>,
}

impl RecvHalf {
    /// See [`Conversation::recv`]; cancel-safe the same way.
    ///
    /// # Errors
    ///
    /// As [`Conversation::recv`].
    pub async fn recv(&mut self) -> Result<Option<Bytes>> {
        poll_fn(|cx| {
            self.shared
                .poll(RECEIVER, cx, |inner, cx| inner.poll_recv(cx))
        })
        .await
    }

    /// See [`Conversation::recv_text`].
    ///
    /// # Errors
    ///
    /// As [`Conversation::recv_text`].
    pub async fn recv_text(&mut self) -> Result<Option<String>> {
        self.recv()
            .await?
            .map(crate::conversation::into_text)
            .transpose()
    }

    /// The peer.
    pub fn peer_addr(&self) -> Addr {
        self.shared.with(|inner| inner.peer_addr().clone())
    }

    /// Our side's address.
    pub fn local_addr(&self) -> Addr {
        self.shared.with(|inner| inner.local_addr().clone())
    }

    /// The second half of a graceful close, once the sending half has
    /// closed (or begins it, if it has not): discards what arrives until
    /// the peer's end, within the linger time, and says what is known of
    /// delivery, as [`Conversation::close`].
    ///
    /// # Errors
    ///
    /// As [`Conversation::close`].
    pub async fn close(self) -> Result<Delivery> {
        poll_fn(|cx| {
            self.shared
                .poll(RECEIVER, cx, |inner, cx| inner.poll_close(cx))
        })
        .await
    }
}

impl Stream for RecvHalf {
    type Item = Result<Bytes>;

    /// As [`Conversation`]'s stream.
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.shared
            .poll(RECEIVER, cx, |inner, cx| inner.poll_next(cx))
    }
}

/// The sending half of a split [`Conversation`]; a [`Sink`] of messages.
#[derive(Debug)]
pub struct SendHalf {
    shared: Arc<Shared>,
}

impl SendHalf {
    /// See [`Conversation::send`]; cancel-safe the same way.
    ///
    /// # Errors
    ///
    /// As [`Conversation::send`].
    pub async fn send(&mut self, msg: impl AsRef<[u8]>) -> Result<()> {
        self.feed(msg)?;
        self.flush().await
    }

    /// See [`Conversation::send_text`].
    ///
    /// # Errors
    ///
    /// As [`Conversation::send`].
    pub async fn send_text(&mut self, text: &str) -> Result<()> {
        self.shared
            .with(|inner| inner.take(text.as_bytes(), true))?;
        self.flush().await
    }

    /// See [`Conversation::feed`].
    ///
    /// # Errors
    ///
    /// As [`Conversation::send`].
    pub fn feed(&mut self, msg: impl AsRef<[u8]>) -> Result<()> {
        self.shared.with(|inner| inner.take(msg.as_ref(), false))
    }

    /// See [`Conversation::flush`].
    ///
    /// # Errors
    ///
    /// As [`Conversation::flush`].
    pub async fn flush(&mut self) -> Result<()> {
        poll_fn(|cx| {
            self.shared
                .poll(SENDER, cx, |inner, cx| inner.poll_flush(cx))
        })
        .await
    }

    /// Ends our side: what is queued is written, then our end (a close
    /// frame, `close_notify`, the end of the stream); the receiving half
    /// goes on until the peer's end (`Ok(None)`).
    ///
    /// # Errors
    ///
    /// The conversation's failure, if it fails before our end is written.
    pub async fn close(self) -> Result<()> {
        poll_fn(|cx| {
            self.shared
                .poll(SENDER, cx, |inner, cx| inner.poll_finish(cx))
        })
        .await
    }

    /// Bytes queued and not yet taken by the socket.
    pub fn queued(&self) -> usize {
        self.shared.with(|inner| inner.queued())
    }

    /// See [`Conversation::max_message_len`].
    pub fn max_message_len(&self) -> usize {
        self.shared.with(|inner| inner.max_message_len())
    }

    /// Ends the conversation at once, discarding what is queued (over a
    /// stream, a reset); the receiving half's next `recv` says
    /// [`Error::Closed`].
    pub fn abort(self) {
        self.shared.with(Inner::abort);
    }

    /// The peer.
    pub fn peer_addr(&self) -> Addr {
        self.shared.with(|inner| inner.peer_addr().clone())
    }

    /// Our side's address.
    pub fn local_addr(&self) -> Addr {
        self.shared.with(|inner| inner.local_addr().clone())
    }

    /// Puts the halves back together.
    ///
    /// # Errors
    ///
    /// [`ReuniteError`], holding both, if they are not of the same
    /// conversation.
    pub fn reunite(self, recv: RecvHalf) -> std::result::Result<Conversation, ReuniteError> {
        if !Arc::ptr_eq(&self.shared, &recv.shared) {
            return Err(ReuniteError(recv, self));
        }
        drop(recv);
        let shared = Arc::into_inner(self.shared).expect("the two halves held the only references");
        let inner = shared
            .inner
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(Conversation { inner })
    }
}

impl<M: AsRef<[u8]>> Sink<M> for SendHalf {
    type Error = Error;

    /// As [`Conversation`]'s sink.
    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.shared
            .poll(SENDER, cx, |inner, cx| inner.poll_ready(cx))
    }

    fn start_send(self: Pin<&mut Self>, item: M) -> Result<()> {
        self.shared.with(|inner| inner.take(item.as_ref(), false))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.shared
            .poll(SENDER, cx, |inner, cx| inner.poll_flush(cx))
    }

    /// Ends our side, as [`SendHalf::close`].
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.shared
            .poll(SENDER, cx, |inner, cx| inner.poll_finish(cx))
    }
}

/// Two halves of different conversations, given back by
/// [`SendHalf::reunite`].
#[derive(Debug)]
pub struct ReuniteError(pub RecvHalf, pub SendHalf);

impl std::fmt::Display for ReuniteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the two halves are of different conversations")
    }
}

impl std::error::Error for ReuniteError {}
