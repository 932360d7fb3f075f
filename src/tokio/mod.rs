//! The same conversations from async Rust, on tokio (feature `tokio`): a
//! third driver of the one sans-IO connection, so the framing, the limits,
//! the per-message deadline, the TLS, WebSocket and NATS handshakes, the
//! close and what each end means are the blocking driver's and the
//! switchboard's, with no protocol code of its own here.
//!
//! This release drives every stream: `tcp://`, `tls://`, `ws://`, `wss://`,
//! `nats://` and `unix://`. Datagrams on tokio (`udp://`, `unixgram://`)
//! are still to come (refused with [`Error::Unsupported`]).
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

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream};

use crate::addr::Addr;
use crate::config::Config;
use crate::connection::link::{Ours, Sink};
use crate::connection::{Conn, Delivery, End, Settings};
use crate::error::{Error, Result};
use crate::transport::recipe::Recipe;
use crate::url::{Place, Scheme};

/// How much one turn reads before it lets the program have what came.
const READ_BUDGET: usize = 256 * 1024;

/// Connects to a URL with the default [`Config`]: TCP, TLS, WebSocket
/// (`ws`, `wss`), NATS or a Unix stream socket, as [`crate::connect`]. Returns once the
/// handshakes (TLS, the WebSocket upgrade, NATS's `CONNECT`) are done.
///
/// # Errors
///
/// As [`crate::connect`]; [`Error::Unsupported`] for the schemes this
/// driver does not have yet (`udp`, `unixgram`).
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
    refuse_unsupported(&parsed.place, parsed.scheme)?;
    let recipe = Recipe::client(&parsed, config)?;
    #[cfg(unix)]
    if let Place::Path(path) = &parsed.place {
        let peer = Addr::Unix(Some(path.clone()));
        let connecting = tokio::net::UnixStream::connect(path);
        let stream = match config.connect_timeout() {
            Some(limit) => tokio::time::timeout(limit, connecting)
                .await
                .map_err(|_| Error::Timeout)?,
            None => connecting.await,
        }
        .map_err(|e| Error::from_io(e, &peer))?;
        let mut conversation = Conversation::new(Io::Unix(stream), &recipe, config, peer)?;
        conversation.established().await?;
        return Ok(conversation);
    }
    let addrs = parsed.resolve()?;
    let mut last = None;
    for at in addrs {
        let peer = recipe.addr(at);
        let connecting = TcpStream::connect(at);
        let stream = match config.connect_timeout() {
            Some(limit) => match tokio::time::timeout(limit, connecting).await {
                Ok(stream) => stream,
                Err(_) => {
                    last = Some(Error::Timeout);
                    continue;
                }
            },
            None => connecting.await,
        };
        match stream {
            Ok(stream) => {
                let mut conversation = Conversation::new(Io::Tcp(stream), &recipe, config, peer)?;
                conversation.established().await?;
                return Ok(conversation);
            }
            Err(e) => last = Some(Error::from_io(e, &peer)),
        }
    }
    Err(last.unwrap_or_else(|| crate::addr::no_address(url).into()))
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
        let file = file.and_then(|path| {
            use std::os::unix::fs::MetadataExt;
            let ino = std::fs::metadata(&path).ok()?.ino();
            Some((path, ino))
        });
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
        (_, Scheme::Udp) => Err(Error::Unsupported("udp:// on the tokio driver (to come)")),
        #[cfg(unix)]
        (Place::Path(_), Scheme::Unix) => Ok(()),
        #[cfg(unix)]
        (Place::Path(_), _) => Err(Error::Unsupported(
            "unixgram:// on the tokio driver (to come)",
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
            file: Some((path, ino)),
            ..
        } = self
        {
            use std::os::unix::fs::MetadataExt;
            if std::fs::metadata(&*path).is_ok_and(|m| m.ino() == *ino) {
                let _ = std::fs::remove_file(&*path);
            }
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
    /// The next conversation, its handshakes done (each within the
    /// config's handshake timeout). A connection whose handshake fails
    /// is skipped, not returned: the listener goes on.
    ///
    /// Cancel-safe: dropped, it loses no connection (they wait in the
    /// kernel's queue), though one whose handshake was under way is
    /// closed.
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
            let Ok(mut conversation) = Conversation::new(stream, &self.recipe, &self.config, peer)
            else {
                continue;
            };
            if conversation.established().await.is_ok() {
                return Ok(conversation);
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
    stream: Io,
    conn: Conn,
    /// Messages that arrived and were not taken yet.
    inbox: VecDeque<Bytes>,
    scratch: Box<[u8]>,
    peer: Addr,
    local: Addr,
    /// How it ended, once known: see [`Ended`].
    ended: Option<Ended>,
}

/// What became of a conversation's end once it was seen.
#[derive(Debug)]
enum Ended {
    /// The peer's clean end: every `recv` says `Ok(None)`; we may still
    /// send.
    Peer,
    /// A failure not yet told to the program.
    Failed(Error),
    /// Told, or closed here: `Error::Closed` from now on.
    Over,
}

impl Conversation {
    fn new(stream: Io, recipe: &Recipe, config: &Config, peer: Addr) -> Result<Conversation> {
        let local = match &stream {
            Io::Tcp(tcp) => {
                crate::transport::sockopt::tcp_stream(&stream.sock(), config)
                    .map_err(|e| Error::from_io(e, &peer))?;
                tcp.local_addr()
                    .map(|a: SocketAddr| recipe.addr(a))
                    .unwrap_or(Addr::Unknown)
            }
            #[cfg(unix)]
            Io::Unix(_) => Addr::Unix(None),
        };
        let settings = Settings::new(config, None);
        let conn = recipe.conn(&settings, peer.clone(), Instant::now())?;
        Ok(Conversation {
            stream,
            conn,
            inbox: VecDeque::new(),
            scratch: vec![0u8; 64 * 1024].into_boxed_slice(),
            peer,
            local,
            ended: None,
        })
    }

    /// The peer.
    pub fn peer_addr(&self) -> &Addr {
        &self.peer
    }

    /// Our side's address.
    pub fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// The next message; `Ok(None)` at the peer's clean end (between
    /// messages). Cancel-safe: see the [module docs](self).
    ///
    /// # Errors
    ///
    /// As [`crate::Conversation::recv`]: the typed end of a conversation
    /// that failed (a message too large, a missed deadline, a reset …),
    /// [`Error::Closed`] after a close or an earlier end.
    pub async fn recv(&mut self) -> Result<Option<Bytes>> {
        loop {
            if let Some(message) = self.inbox.pop_front() {
                return Ok(Some(message));
            }
            self.poll_end();
            match &self.ended {
                Some(Ended::Peer) => return Ok(None),
                Some(_) => return Err(self.take_failure()),
                None => {}
            }
            self.turn().await;
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
        match self.recv().await? {
            Some(message) => match std::str::from_utf8(&message) {
                Ok(text) => Ok(Some(text.to_owned())),
                Err(source) => Err(Error::InvalidText { message, source }),
            },
            None => Ok(None),
        }
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
        self.poll_end();
        if matches!(self.ended, Some(Ended::Failed(_) | Ended::Over)) {
            return Err(self.take_failure());
        }
        // No outbox bound here: the message is queued whole, now, and the
        // future awaits only its writing.
        self.conn.send(msg, text).map(drop)
    }

    /// Waits until everything sent has been taken by the socket.
    /// Cancel-safe: dropped, what is queued stays queued.
    ///
    /// # Errors
    ///
    /// The conversation's end, typed, if it fails meanwhile.
    pub async fn flush(&mut self) -> Result<()> {
        loop {
            self.write_now();
            if self.conn.queued() == 0 {
                return Ok(());
            }
            self.poll_end();
            if matches!(self.ended, Some(Ended::Failed(_) | Ended::Over))
                || self.conn.link.is_down()
            {
                return Err(self.take_failure());
            }
            self.turn().await;
        }
    }

    /// Closes gracefully, as [`crate::Conversation::close`]: writes what is
    /// queued, ends our side, and waits for the peer's end within the
    /// linger time; says what is known of delivery.
    ///
    /// # Errors
    ///
    /// [`Error::ConnectionReset`] when the peer reset with our messages
    /// unread, [`Error::Unsent`] when they could not be written in time, or
    /// the conversation's earlier failure.
    pub async fn close(mut self) -> Result<Delivery> {
        self.conn.close(Instant::now());
        loop {
            if let Some(outcome) = self.conn.link.poll_close() {
                return outcome;
            }
            // What arrives now is discarded.
            self.inbox.clear();
            self.turn().await;
        }
    }

    /// Ends at once, discarding what is queued (a reset).
    pub fn abort(mut self) {
        self.conn.abort();
        let _ = self
            .stream
            .sock()
            .set_linger(Some(std::time::Duration::ZERO));
    }

    /// Drives the handshakes until the connection is established (or has
    /// ended).
    async fn established(&mut self) -> Result<()> {
        loop {
            self.write_now();
            if self.conn.link.is_established() {
                if self.conn.link.poll_established() {
                    self.conn.tx.learn(&self.conn.link);
                }
                return Ok(());
            }
            self.poll_end();
            if self.ended.is_some() {
                return Err(self.take_failure());
            }
            self.turn().await;
        }
    }

    /// Notes the connection's end, if it has come (it is reported once).
    fn poll_end(&mut self) {
        if self.ended.is_none() {
            self.ended = self.conn.link.poll_end().map(|end| match end {
                End::Peer => Ended::Peer,
                End::Failed(e) => Ended::Failed(e),
                End::Closed(_) | End::Aborted | End::Idle => Ended::Over,
            });
        }
    }

    /// The failure to tell, once; [`Error::Closed`] after that (or for an
    /// end that was no failure).
    fn take_failure(&mut self) -> Error {
        match self.ended.replace(Ended::Over) {
            Some(Ended::Failed(e)) => e,
            Some(Ended::Peer) => {
                self.ended = Some(Ended::Peer);
                Error::Closed
            }
            _ => Error::Closed,
        }
    }

    /// One turn: waits for the socket (readable, and writable when there
    /// is output) or the connection's next deadline, then does what is
    /// ready, without waiting. Everything that changes happens after the
    /// wait, in one go: dropped at its await, a turn changes nothing.
    async fn turn(&mut self) {
        // What is ready to go goes first (a close's end of stream too):
        // the wait below may be for the peer's answer to it.
        self.write_now();
        let deadline = self.conn.poll_timeout();
        let interest = if self.conn.link.wants_write() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let woke = {
            let mut ready = std::pin::pin!(self.stream.ready(interest));
            let mut sleep = std::pin::pin!(async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            });
            std::future::poll_fn(|cx| {
                if let Poll::Ready(ready) = ready.as_mut().poll(cx) {
                    return Poll::Ready(Some(ready));
                }
                sleep.as_mut().poll(cx).map(|()| None)
            })
            .await
        };
        match woke {
            Some(Ok(ready)) => {
                if ready.is_writable() {
                    self.write_now();
                }
                if ready.is_readable() || ready.is_read_closed() {
                    self.read_now();
                }
            }
            Some(Err(e)) => self.conn.on_error(Error::from_io(e, &self.peer)),
            // The deadline: handled below.
            None => {}
        }
        self.conn.handle_timeout(Instant::now());
        if self.conn.link.poll_established() {
            self.conn.tx.learn(&self.conn.link);
        }
        self.write_now();
    }

    /// Reads what the socket has, without waiting.
    fn read_now(&mut self) {
        let now = Instant::now();
        let mut taken = 0;
        while taken < READ_BUDGET && !self.conn.link.is_down() && !self.conn.link.is_eof() {
            match self.stream.try_read(&mut self.scratch) {
                Ok(0) => {
                    // Once our side has ended, a reset that came with the
                    // peer's end fails a close.
                    let ended = self.conn.link.ours() != Ours::Open;
                    let socket = self.stream.sock();
                    match socket.take_error().ok().flatten().filter(|_| ended) {
                        Some(e) => self.conn.on_error(Error::from_io(e, &self.peer)),
                        None => self.conn.on_eof(now),
                    }
                    return;
                }
                Ok(n) => {
                    taken += n;
                    let inbox = &mut self.inbox;
                    self.conn
                        .on_bytes(&self.scratch[..n], now, &mut |m| inbox.push_back(m));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.conn.on_error(Error::from_io(e, &self.peer));
                    return;
                }
            }
        }
    }

    /// Writes what the connection has for the socket, without waiting.
    fn write_now(&mut self) {
        let mut sink = StreamSink {
            stream: &self.stream,
        };
        match self.conn.link.transmit(&mut sink) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.conn.on_error(Error::from_io(e, &self.peer)),
        }
        if self.conn.link.take_shutdown() {
            let _ = self.stream.sock().shutdown(std::net::Shutdown::Write);
        }
    }
}

/// The socket under a conversation.
#[derive(Debug)]
enum Io {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl Io {
    async fn ready(&self, interest: Interest) -> io::Result<tokio::io::Ready> {
        match self {
            Io::Tcp(s) => s.ready(interest).await,
            #[cfg(unix)]
            Io::Unix(s) => s.ready(interest).await,
        }
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Io::Tcp(s) => s.try_read(buf),
            #[cfg(unix)]
            Io::Unix(s) => s.try_read(buf),
        }
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Io::Tcp(s) => s.try_write(buf),
            #[cfg(unix)]
            Io::Unix(s) => s.try_write(buf),
        }
    }

    fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Io::Tcp(s) => s.try_write_vectored(bufs),
            #[cfg(unix)]
            Io::Unix(s) => s.try_write_vectored(bufs),
        }
    }

    /// The socket, for what tokio does not say (its error, shutdown,
    /// linger).
    fn sock(&self) -> socket2::SockRef<'_> {
        match self {
            Io::Tcp(s) => socket2::SockRef::from(s),
            #[cfg(unix)]
            Io::Unix(s) => socket2::SockRef::from(s),
        }
    }
}

/// A tokio stream as a connection's sink: it takes what it can now.
struct StreamSink<'a> {
    stream: &'a Io,
}

impl Sink for StreamSink<'_> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.stream.try_write(bytes)
    }

    fn put_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.stream.try_write_vectored(bufs)
    }
}
