//! Streams on tokio: the connection of every stream transport, driven by
//! tokio's readiness and timers, in poll functions that do what is ready
//! and register for the rest: whatever a poll did stays done (messages
//! read wait in the inbox), so a future dropped between polls has lost
//! nothing.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::addr::Addr;
use crate::config::Config;
use crate::connection::link::{Ours, Sink};
use crate::connection::{Conn, Delivery, End, Settings};
use crate::error::{Error, Result};
use crate::transport::recipe::Recipe;

/// How much one turn reads before it lets the program have what came.
const READ_BUDGET: usize = 256 * 1024;

thread_local! {
    /// One read buffer per thread for every conversation polled on it: a
    /// conversation itself holds only what its connection keeps (an idle
    /// one, no buffer at all).
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; 64 * 1024].into_boxed_slice());
}

/// A stream conversation on tokio (TCP, TLS, WebSocket, NATS, Unix): the
/// connection, driven by tokio's readiness and timers.
#[derive(Debug)]
pub(super) struct StreamConv {
    stream: Io,
    conn: Conn,
    /// Messages that arrived and were not taken yet.
    inbox: VecDeque<Bytes>,
    peer: Addr,
    local: Addr,
    /// How it ended, once known: see [`Ended`].
    ended: Option<Ended>,
    /// The timer of the connection's next deadline, made at the first.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    closing: Closing,
    /// How long a conversation dropped after our end waits for the peer's.
    linger: std::time::Duration,
}

/// Where a graceful close is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    No,
    /// Begun: waiting for its outcome.
    Waiting,
    /// Its outcome was said.
    Told,
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

impl StreamConv {
    pub(super) fn new(
        stream: Io,
        recipe: &Recipe,
        config: &Config,
        peer: Addr,
    ) -> Result<StreamConv> {
        let local = match &stream {
            Io::Tcp(tcp) => {
                crate::transport::sockopt::tcp_stream(&socket2::SockRef::from(tcp), config)
                    .map_err(|e| Error::from_io(e, &peer))?;
                tcp.local_addr()
                    .map(|a: SocketAddr| recipe.addr(a))
                    .unwrap_or(Addr::Unknown)
            }
            #[cfg(unix)]
            Io::Unix(_) => Addr::Unix(None),
            #[cfg(feature = "quic")]
            Io::Quic(_) => Addr::Unknown,
        };
        let settings = Settings::new(config, None);
        let conn = recipe.conn(&settings, peer.clone(), Instant::now())?;
        Ok(StreamConv::from_parts(stream, conn, peer, local, config))
    }

    /// A conversation of a connection made elsewhere (a QUIC stream's,
    /// taken from blocking halves).
    pub(super) fn from_parts(
        stream: Io,
        conn: Conn,
        peer: Addr,
        local: Addr,
        config: &Config,
    ) -> StreamConv {
        StreamConv {
            stream,
            conn,
            inbox: VecDeque::new(),
            peer,
            local,
            ended: None,
            sleep: None,
            closing: Closing::No,
            linger: config.linger(),
        }
    }

    /// The peer.
    pub(super) fn peer_addr(&self) -> &Addr {
        &self.peer
    }

    /// Our side's address.
    pub(super) fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// The peer's verified identity: TLS's (the connection's), or QUIC's
    /// (its stream's).
    #[cfg(feature = "tls")]
    pub(super) fn peer_identity(&self) -> Option<crate::tls::PeerIdentity> {
        #[cfg(feature = "quic")]
        if let Io::Quic(q) = &self.stream {
            return q.stream.peer_identity();
        }
        self.conn.link.identity()
    }

    /// The next message; `Ok(None)` at the peer's clean end (between
    /// messages). Cancel-safe: what arrived waits in the inbox.
    pub(super) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>>> {
        loop {
            if let Some(message) = self.inbox.pop_front() {
                return Poll::Ready(Ok(Some(message)));
            }
            self.poll_end();
            match &self.ended {
                Some(Ended::Peer) => return Poll::Ready(Ok(None)),
                Some(_) => return Poll::Ready(Err(self.take_failure())),
                None => {}
            }
            ready!(self.poll_turn(cx));
        }
    }

    pub(super) fn take(&mut self, msg: &[u8], text: bool) -> Result<()> {
        self.poll_end();
        if matches!(self.ended, Some(Ended::Failed(_) | Ended::Over)) {
            return Err(self.take_failure());
        }
        // No outbox bound here: the message is queued whole, now, and the
        // future awaits only its writing.
        self.conn.send(msg, text).map(drop)
    }

    /// Bytes queued and not yet taken by the socket.
    pub(super) fn queued(&self) -> usize {
        self.conn.queued()
    }

    /// The largest message it sends (for NATS, the server's `max_payload`
    /// once connected).
    pub(super) fn max_message_len(&self) -> usize {
        self.conn.tx.max_message_len()
    }

    /// Ready once everything sent has been taken by the socket.
    /// Cancel-safe: what is queued stays queued.
    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        loop {
            self.write_now();
            if self.conn.queued() == 0 {
                return Poll::Ready(Ok(()));
            }
            self.poll_end();
            if matches!(self.ended, Some(Ended::Failed(_) | Ended::Over))
                || self.conn.link.is_down()
            {
                return Poll::Ready(Err(self.take_failure()));
            }
            ready!(self.poll_turn(cx));
        }
    }

    /// A graceful close, as [`crate::Conversation::close`]: writes what is
    /// queued, ends our side, and waits for the peer's end within the
    /// linger time; says what is known of delivery. Said once; after that,
    /// [`Error::Closed`].
    pub(super) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<Delivery>> {
        match self.closing {
            Closing::No => {
                self.closing = Closing::Waiting;
                self.conn.close(Instant::now());
            }
            Closing::Waiting => {}
            Closing::Told => return Poll::Ready(Err(Error::Closed)),
        }
        loop {
            if let Some(outcome) = self.conn.link.poll_close() {
                self.closing = Closing::Told;
                return Poll::Ready(outcome);
            }
            // What arrives now is discarded.
            self.inbox.clear();
            ready!(self.poll_turn(cx));
        }
    }

    /// Ends our side only (a split conversation's sending half closed):
    /// what is queued goes out, then our end; ready once it is written (or
    /// the conversation is down). The peer may go on sending.
    pub(super) fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if self.conn.link.ours() == Ours::Open && !self.conn.link.is_down() {
            self.conn.close(Instant::now());
        }
        loop {
            self.write_now();
            if self.conn.link.ours() == Ours::Ended && !self.conn.link.wants_write() {
                return Poll::Ready(Ok(()));
            }
            if self.conn.link.is_down() {
                self.poll_end();
                return Poll::Ready(match self.ended {
                    Some(Ended::Failed(_)) => Err(self.take_failure()),
                    _ => Ok(()),
                });
            }
            ready!(self.poll_turn(cx));
        }
    }

    /// Ends at once, discarding what is queued (a reset).
    pub(super) fn abort(&mut self) {
        self.conn.abort();
        self.stream.reset_on_close();
    }

    /// Ready once the handshakes are done (or the connection has ended).
    pub(super) fn poll_established(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        loop {
            self.write_now();
            if self.conn.link.is_established() {
                if self.conn.link.poll_established() {
                    self.conn.tx.learn(&self.conn.link);
                }
                return Poll::Ready(Ok(()));
            }
            self.poll_end();
            if self.ended.is_some() {
                return Poll::Ready(Err(self.take_failure()));
            }
            ready!(self.poll_turn(cx));
        }
    }

    /// Notes the connection's end, if it has come (it is reported once).
    fn poll_end(&mut self) {
        if self.ended.is_none() {
            let link = &mut self.conn.link;
            self.ended = link.poll_end().map(|end| match end {
                // A sending half's close, then the peer's end: the
                // receiving half's clean end.
                End::Peer => Ended::Peer,
                End::Closed(_) if link.has_peer_ended() => Ended::Peer,
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

    /// One turn: does what the socket (readable; writable when there is
    /// output) and the connection's next deadline allow now, without
    /// waiting. Pending when nothing was ready, with `cx`'s waker
    /// registered for each of them. Messages read go to the inbox, so a
    /// caller dropped after a turn has lost nothing.
    fn poll_turn(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // What is ready to go goes first (a close's end of stream too):
        // the wait below may be for the peer's answer to it.
        self.write_now();
        let mut woke = false;
        let mut waiting = false;
        // Read while messages are wanted, and always while a handshake or
        // a close needs the peer: a caller that only sends, with messages
        // not taken, leaves the rest in the kernel (the peer is slowed
        // down), never in a growing inbox.
        let link = &self.conn.link;
        let read = !link.is_down()
            && !link.is_eof()
            && (self.inbox.is_empty() || !link.is_established() || link.ours() != Ours::Open);
        if read {
            waiting = true;
            woke |= self.poll_read_now(cx).is_ready();
        }
        if self.conn.link.wants_write() {
            waiting = true;
            match self.stream.poll_write_ready(cx) {
                Poll::Ready(Ok(())) => {
                    self.write_now();
                    woke = true;
                }
                Poll::Ready(Err(e)) => {
                    self.conn.on_error(Error::from_io(e, &self.peer));
                    woke = true;
                }
                Poll::Pending => {}
            }
        }
        if let Some(at) = self.conn.poll_timeout() {
            waiting = true;
            let at = tokio::time::Instant::from_std(at);
            match &mut self.sleep {
                Some(sleep) if sleep.deadline() == at => {}
                Some(sleep) => sleep.as_mut().reset(at),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
            }
            if let Some(sleep) = &mut self.sleep {
                woke |= sleep.as_mut().poll(cx).is_ready();
            }
        }
        if !woke && waiting {
            return Poll::Pending;
        }
        self.conn.handle_timeout(Instant::now());
        if self.conn.link.poll_established() {
            self.conn.tx.learn(&self.conn.link);
        }
        self.write_now();
        Poll::Ready(())
    }

    /// Reads what the socket has, without waiting: ready when something
    /// was read (or the socket failed), pending with the waker registered
    /// once the socket is drained. A short read counts as drained (tokio
    /// forgets the readiness then), so a turn makes no read that finds
    /// nothing.
    fn poll_read_now(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        SCRATCH.with_borrow_mut(|scratch| self.poll_read_into(cx, scratch))
    }

    fn poll_read_into(&mut self, cx: &mut Context<'_>, scratch: &mut [u8]) -> Poll<()> {
        let mut now = None;
        let mut taken = 0;
        let mut read = false;
        while taken < READ_BUDGET && !self.conn.link.is_down() && !self.conn.link.is_eof() {
            let mut buf = tokio::io::ReadBuf::new(scratch);
            match self.stream.poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => {
                    // Once our side has ended, a reset that came with the
                    // peer's end fails a close.
                    let ended = self.conn.link.ours() != Ours::Open;
                    match self.stream.take_error().filter(|_| ended) {
                        Some(e) => self.conn.on_error(Error::from_io(e, &self.peer)),
                        None => self.conn.on_eof(*now.get_or_insert_with(Instant::now)),
                    }
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(())) => {
                    let n = buf.filled().len();
                    taken += n;
                    read = true;
                    let now = *now.get_or_insert_with(Instant::now);
                    let inbox = &mut self.inbox;
                    self.conn
                        .on_bytes(&scratch[..n], now, &mut |m| inbox.push_back(m));
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    self.conn.on_error(Error::from_io(e, &self.peer));
                    return Poll::Ready(());
                }
                Poll::Pending => break,
            }
        }
        if read {
            Poll::Ready(())
        } else {
            Poll::Pending
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
            self.stream.shutdown_write();
        }
    }
}

impl Drop for StreamConv {
    /// Reads what has arrived, without waiting, before the socket closes:
    /// protocol bytes left unread (a TLS session ticket, a ping) would
    /// make the system reset the connection, and the peer lose what we
    /// sent. Messages left unread still do (the peer must not take what
    /// it sent for delivered). Once our end is on the wire, what arrives
    /// later (a ticket late through a slow path) is read and discarded by
    /// a task until the peer's end or the linger time, so that the socket
    /// closes cleanly then.
    fn drop(&mut self) {
        if self.conn.link.is_down() || !self.inbox.is_empty() {
            return;
        }
        // After a close begun, what it queued goes now, as far as the
        // socket takes it, and a shutdown that is due.
        if self.conn.link.ours() != Ours::Open {
            self.write_now();
        }
        // (Not while the thread's buffer is in use, nor once it is gone.)
        let drained = SCRATCH.try_with(|cell| {
            let Ok(mut scratch) = cell.try_borrow_mut() else {
                return false;
            };
            let now = Instant::now();
            let mut unread = false;
            for _ in 0..64 {
                if self.conn.link.is_eof() || unread {
                    return false;
                }
                match self.stream.try_read(&mut scratch) {
                    // Everything that has arrived is read.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                    Ok(0) | Err(_) => return false,
                    Ok(n) => self
                        .conn
                        .on_bytes(&scratch[..n], now, &mut |_| unread = true),
                }
            }
            false
        });
        if drained != Ok(true) || self.conn.link.ours() != Ours::Ended || self.conn.link.is_eof() {
            return;
        }
        // Dropped outside its runtime (no handle to find): no task.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(stream) = ({
            let _entered = runtime.enter();
            self.stream.dup()
        }) else {
            return;
        };
        let linger = self.linger;
        runtime.spawn(async move {
            let mut buf = [0u8; 4096];
            let draining = async {
                loop {
                    if stream.readable().await.is_err() {
                        return;
                    }
                    match stream.try_read(&mut buf) {
                        Ok(0) => return,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(_) => return,
                        Ok(_) => {}
                    }
                }
            };
            let _ = tokio::time::timeout(linger, draining).await;
        });
    }
}

/// The socket under a conversation.
#[derive(Debug)]
pub(super) enum Io {
    Tcp(TcpStream),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
    /// One QUIC stream: its endpoint's thread moves the datagrams and
    /// wakes the tasks waiting on the stream.
    #[cfg(feature = "quic")]
    Quic(Box<QuicIo>),
}

/// A QUIC stream on tokio: non-blocking reads and writes, and wakers its
/// endpoint's thread wakes when the stream may be ready.
#[cfg(feature = "quic")]
pub(super) struct QuicIo {
    stream: Box<crate::transport::quic::QuicStream>,
    wake: std::sync::Arc<QuicWakers>,
}

#[cfg(feature = "quic")]
impl std::fmt::Debug for QuicIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuicIo")
    }
}

#[cfg(feature = "quic")]
#[derive(Default)]
struct QuicWakers {
    read: std::sync::Mutex<Option<std::task::Waker>>,
    write: std::sync::Mutex<Option<std::task::Waker>>,
    /// The last write took nothing (flow control): not writable until
    /// the stream says it may be.
    blocked: std::sync::atomic::AtomicBool,
}

#[cfg(feature = "quic")]
impl QuicIo {
    /// A QUIC stream (taken from blocking halves) for tokio.
    pub(super) fn new(carrier: crate::transport::carrier::Carrier) -> Option<QuicIo> {
        let crate::transport::carrier::Carrier::Quic(stream) = carrier else {
            return None;
        };
        stream.set_nonblocking(true);
        let wake = std::sync::Arc::new(QuicWakers::default());
        let watcher = std::sync::Arc::clone(&wake);
        stream.watch(Some(std::sync::Arc::new(move || {
            watcher
                .blocked
                .store(false, std::sync::atomic::Ordering::Relaxed);
            for slot in [&watcher.read, &watcher.write] {
                if let Some(w) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    w.wake();
                }
            }
        })));
        Some(QuicIo { stream, wake })
    }

    fn register(slot: &std::sync::Mutex<Option<std::task::Waker>>, cx: &Context<'_>) {
        let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
    }

    fn write(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let written = self.stream.write(bufs, true);
        if matches!(&written, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.wake
                .blocked
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        written
    }
}

impl Io {
    fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        use tokio::io::AsyncRead;
        match self {
            Io::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(unix)]
            Io::Unix(s) => Pin::new(s).poll_read(cx, buf),
            #[cfg(feature = "quic")]
            Io::Quic(q) => {
                // Registered first: readiness that comes after the read
                // below wakes this task.
                QuicIo::register(&q.wake.read, cx);
                match q.stream.read(buf.initialize_unfilled()) {
                    Ok(n) => {
                        buf.advance(n);
                        Poll::Ready(Ok(()))
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
                    Err(e) => Poll::Ready(Err(e)),
                }
            }
        }
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Io::Tcp(s) => s.poll_write_ready(cx),
            #[cfg(unix)]
            Io::Unix(s) => s.poll_write_ready(cx),
            #[cfg(feature = "quic")]
            Io::Quic(q) => {
                QuicIo::register(&q.wake.write, cx);
                if q.wake.blocked.load(std::sync::atomic::Ordering::Relaxed) {
                    Poll::Pending
                } else {
                    Poll::Ready(Ok(()))
                }
            }
        }
    }

    fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Io::Tcp(s) => s.try_read(buf),
            #[cfg(unix)]
            Io::Unix(s) => s.try_read(buf),
            #[cfg(feature = "quic")]
            Io::Quic(q) => q.stream.read(buf),
        }
    }

    fn try_write(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Io::Tcp(s) => s.try_write(buf),
            #[cfg(unix)]
            Io::Unix(s) => s.try_write(buf),
            #[cfg(feature = "quic")]
            Io::Quic(q) => q.write(&[io::IoSlice::new(buf)]),
        }
    }

    // (Written through `Sink::put_vectored`, which only QUIC's carrier calls.)
    #[cfg_attr(not(feature = "quic"), allow(dead_code))]
    fn try_write_vectored(&self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Io::Tcp(s) => s.try_write_vectored(bufs),
            #[cfg(unix)]
            Io::Unix(s) => s.try_write_vectored(bufs),
            #[cfg(feature = "quic")]
            Io::Quic(q) => q.write(bufs),
        }
    }

    /// The same socket through a second descriptor, on this runtime:
    /// it stays open when this one closes.
    fn dup(&self) -> Option<Io> {
        // A QUIC stream is released to its endpoint, which keeps what is
        // unacknowledged: nothing to drain here.
        let socket = self.sock()?.try_clone().ok()?;
        socket.set_nonblocking(true).ok()?;
        match self {
            Io::Tcp(_) => TcpStream::from_std(socket.into()).ok().map(Io::Tcp),
            #[cfg(unix)]
            Io::Unix(_) => tokio::net::UnixStream::from_std(socket.into())
                .ok()
                .map(Io::Unix),
            #[cfg(feature = "quic")]
            Io::Quic(_) => None,
        }
    }

    async fn readable(&self) -> io::Result<()> {
        match self {
            Io::Tcp(s) => s.readable().await,
            #[cfg(unix)]
            Io::Unix(s) => s.readable().await,
            #[cfg(feature = "quic")]
            Io::Quic(_) => Err(io::ErrorKind::Unsupported.into()),
        }
    }

    /// The socket, for what tokio does not say (its error, shutdown,
    /// linger); `None` for a QUIC stream.
    fn sock(&self) -> Option<socket2::SockRef<'_>> {
        match self {
            Io::Tcp(s) => Some(socket2::SockRef::from(s)),
            #[cfg(unix)]
            Io::Unix(s) => Some(socket2::SockRef::from(s)),
            #[cfg(feature = "quic")]
            Io::Quic(_) => None,
        }
    }

    /// A reset that came after the peer's end, taken.
    fn take_error(&self) -> Option<io::Error> {
        match self {
            #[cfg(feature = "quic")]
            Io::Quic(q) => q.stream.take_error(),
            _ => self.sock()?.take_error().ok().flatten(),
        }
    }

    /// Ends our side after what was written.
    fn shutdown_write(&self) {
        match self {
            #[cfg(feature = "quic")]
            Io::Quic(q) => q.stream.shutdown(std::net::Shutdown::Write),
            _ => {
                if let Some(s) = self.sock() {
                    let _ = s.shutdown(std::net::Shutdown::Write);
                }
            }
        }
    }

    /// Closing resets (an abort).
    fn reset_on_close(&self) {
        match self {
            #[cfg(feature = "quic")]
            Io::Quic(q) => q.stream.reset(),
            _ => {
                if let Some(s) = self.sock() {
                    let _ = s.set_linger(Some(std::time::Duration::ZERO));
                }
            }
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
