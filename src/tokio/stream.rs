//! Streams on tokio: the connection of every stream transport, driven by
//! tokio's readiness and timers. Everything that changes happens after an
//! await, in one go, so that a future dropped at its await changes
//! nothing.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::task::Poll;
use std::time::Instant;

use bytes::Bytes;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::addr::Addr;
use crate::config::Config;
use crate::connection::link::{Ours, Sink};
use crate::connection::{Conn, Delivery, End, Settings};
use crate::error::{Error, Result};
use crate::transport::recipe::Recipe;

/// How much one turn reads before it lets the program have what came.
const READ_BUDGET: usize = 256 * 1024;

/// A stream conversation on tokio (TCP, TLS, WebSocket, NATS, Unix): the
/// connection, driven by tokio's readiness and timers.
#[derive(Debug)]
pub(super) struct StreamConv {
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

impl StreamConv {
    pub(super) fn new(
        stream: Io,
        recipe: &Recipe,
        config: &Config,
        peer: Addr,
    ) -> Result<StreamConv> {
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
        Ok(StreamConv {
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
    pub(super) fn peer_addr(&self) -> &Addr {
        &self.peer
    }

    /// Our side's address.
    pub(super) fn local_addr(&self) -> &Addr {
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
    pub(super) async fn recv(&mut self) -> Result<Option<Bytes>> {
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

    pub(super) fn take(&mut self, msg: &[u8], text: bool) -> Result<()> {
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
    pub(super) async fn flush(&mut self) -> Result<()> {
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
    pub(super) async fn close(mut self) -> Result<Delivery> {
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
    pub(super) fn abort(mut self) {
        self.conn.abort();
        let _ = self
            .stream
            .sock()
            .set_linger(Some(std::time::Duration::ZERO));
    }

    /// Drives the handshakes until the connection is established (or has
    /// ended).
    pub(super) async fn established(&mut self) -> Result<()> {
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
pub(super) enum Io {
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
