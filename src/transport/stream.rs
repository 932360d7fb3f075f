//! The blocking driver of every stream connection — TCP and Unix streams,
//! TLS, WebSocket, NATS: one wait loop for all of them. The protocol is
//! the connection's ([`crate::connection`]); this only moves bytes between
//! the socket and the connection, waiting with the socket's timeouts.
//!
//! The two halves each own their side of the connection (the receiving
//! half its read buffer, the sending half its batching buffer) and share
//! the rest, the link, behind one lock, held only while bytes go in or out
//! of it, never while a thread waits on the socket. Bytes leave in the
//! order the link queued them: whoever writes next writes them — the
//! sending half, or the receiving half between its reads (pongs, close
//! frames, a TLS record, what a timed-out send left taken) — and a write
//! that must wait for the socket does so outside the lock, holding the
//! write turn.

use std::io::{self, IoSlice, Read};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use socket2::Socket;

use super::sockopt::{self, earliest, SockTimer, MIN_WAIT};
use super::{Receiver, Sender, Stopper};
use crate::addr::Addr;
use crate::config::{check_timeout, Config};
use crate::connection::link::{Link, Ours};
use crate::connection::receive::{Next, Now};
use crate::connection::{Conn, Delivery, End, Rx, Tx};
use crate::error::{Error, Result};

/// Messages of a plain framing over this size are written straight from
/// the caller's slice (the header and the payload in one `writev`) when
/// nothing is queued before them; smaller ones are copied into the queue
/// and leave from one buffer.
const SMALL: usize = 2048;

/// While bytes wait to be written and the receiving half waits for the
/// peer, it tries to write them again this often.
const RETRY_WRITE: Duration = Duration::from_millis(20);

const FAILED: u8 = 1;
const STOPPED: u8 = 2;

/// What both halves share: the socket, the link, and the turns.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) socket: Socket,
    link: Mutex<Link>,
    /// A half waits here for the other's turn to end, or the handshake.
    changed: Condvar,
    /// The sending half writes outside the lock (set and cleared under it).
    writing: AtomicBool,
    /// A half reads (before the connection is established, the sending
    /// half may drive the handshake; set and cleared under the lock).
    reading: AtomicBool,
    /// The connection is established (a copy, for checks without the lock).
    established: AtomicBool,
    /// No more messages may be sent (a copy, likewise).
    send_closed: AtomicBool,
    /// `O_NONBLOCK` is on (a spinning receive).
    nonblocking: AtomicBool,
    /// [`FAILED`] and [`STOPPED`].
    down: AtomicU8,
    /// The socket was released (shut down) once the connection was done.
    released: AtomicBool,
    /// `SO_RCVTIMEO` was set by the sending half (the receiving half's
    /// cache of it is stale).
    rcv_timeout_dirty: AtomicBool,
    /// The receiving half was dropped with input it never took.
    dropped_unread: AtomicBool,
    receiver_gone: AtomicBool,
    /// The connection that replaced this one (a NATS reconnection): the
    /// sending half moves to it at its next call.
    successor: Mutex<Option<Arc<Shared>>>,
    pub(crate) local: Addr,
    pub(crate) peer: Addr,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Link> {
        self.link.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[inline]
    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::Relaxed) != 0 {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// What a call on a connection that is down says (not with the lock
    /// held).
    #[cold]
    fn down_error(&self) -> Error {
        if self.is_stopped() {
            return Error::Closed;
        }
        let mut link = self.lock();
        link_end_error(&mut link)
    }

    fn is_stopped(&self) -> bool {
        self.down.load(Ordering::Relaxed) & STOPPED != 0
    }

    fn stop(&self) {
        self.down.fetch_or(STOPPED, Ordering::Relaxed);
        sockopt::wake_up(&self.socket);
        self.changed.notify_all();
    }

    fn io_error(&self, e: io::Error) -> Error {
        Error::from_io(e, &self.peer)
    }

    /// What every locked operation ends with: the write side shut down when
    /// our end is written, the socket released when the connection is done,
    /// the copies of the link's state kept up to date.
    fn after(&self, link: &mut Link) {
        if link.is_down() && !self.writing.load(Ordering::Relaxed) {
            // A goodbye (a close frame, a TLS alert) goes out if the socket
            // takes it now.
            let mut sink = sockopt::SocketSink {
                socket: &self.socket,
                now: true,
            };
            let _ = link.transmit(&mut sink);
        }
        if link.take_shutdown() {
            let _ = self.socket.shutdown(Shutdown::Write);
        }
        if link.is_down() {
            self.down.fetch_or(FAILED, Ordering::Relaxed);
        }
        if !link.can_send() {
            self.send_closed.store(true, Ordering::Relaxed);
        }
        if link.is_established() && !self.established.load(Ordering::Relaxed) {
            self.established.store(true, Ordering::Release);
            self.changed.notify_all();
        }
        if link.is_done() && !self.released.swap(true, Ordering::Relaxed) {
            if link.wants_reset() {
                // The reset goes when the socket closes.
                let _ = sockopt::linger_zero(&self.socket);
            } else {
                let _ = self.socket.shutdown(Shutdown::Both);
            }
        }
    }

    /// Writes what the link has, as far as the socket takes it without
    /// waiting, unless the sending half holds the write turn (it writes
    /// everything when its turn ends).
    fn flush_now(&self, link: &mut Link) {
        if self.writing.load(Ordering::Relaxed) {
            return;
        }
        let mut sink = sockopt::SocketSink {
            socket: &self.socket,
            now: true,
        };
        if let Err(e) = link.transmit(&mut sink) {
            if e.kind() != io::ErrorKind::Interrupted {
                link.fail(Error::from_io(e, &self.peer));
            }
        }
        self.after(link);
    }

    /// Writes everything the link has, waiting for the socket until
    /// `until` (`None`: as long as it takes), with the write turn held
    /// while waiting.
    fn write_out(&self, until: Option<Instant>, timer: &mut SockTimer) -> Result<()> {
        let mut link = self.lock();
        loop {
            while self.writing.load(Ordering::Relaxed) {
                link = self.wait_changed(link, until)?;
            }
            self.flush_now(&mut link);
            if let Some(e) = link_error(&mut link) {
                return Err(e);
            }
            let Some(wire) = link.take_wire() else {
                self.after(&mut link);
                return Ok(());
            };
            self.writing.store(true, Ordering::Relaxed);
            drop(link);
            let (written, outcome) = self.write_blocking(wire.bytes(), until, timer);
            link = self.lock();
            link.wire_written(wire, written);
            self.writing.store(false, Ordering::Relaxed);
            self.changed.notify_all();
            match outcome {
                Ok(()) => {}
                Err(Error::Timeout) => {
                    self.after(&mut link);
                    return Err(Error::Timeout);
                }
                Err(e) => {
                    link.fail(e);
                    self.after(&mut link);
                    return Err(link_error(&mut link).unwrap_or(Error::Closed));
                }
            }
        }
    }

    /// Waits for the other half's turn (or the handshake) to change,
    /// until `until`.
    fn wait_changed<'a>(
        &'a self,
        link: MutexGuard<'a, Link>,
        until: Option<Instant>,
    ) -> Result<MutexGuard<'a, Link>> {
        self.check()?;
        let left = match until {
            None => Duration::from_millis(100),
            Some(until) => match until.checked_duration_since(Instant::now()) {
                Some(left) if left >= MIN_WAIT => left.min(Duration::from_millis(100)),
                _ => return Err(Error::Timeout),
            },
        };
        let (link, _) = self
            .changed
            .wait_timeout(link, left)
            .unwrap_or_else(|e| e.into_inner());
        Ok(link)
    }

    /// Writes `bytes`, waiting for the socket until `until`: how many were
    /// written, and why it stopped if it did not write them all.
    fn write_blocking(
        &self,
        mut bytes: &[u8],
        until: Option<Instant>,
        timer: &mut SockTimer,
    ) -> (usize, Result<()>) {
        let mut written = 0;
        while !bytes.is_empty() {
            if let Err(e) = self.arm_write(until, timer) {
                return (written, Err(e));
            }
            match sockopt::send(&self.socket, bytes) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "the socket took no bytes");
                    return (written, Err(self.io_error(e)));
                }
                Ok(n) => {
                    written += n;
                    bytes = &bytes[n..];
                }
                Err(e) => match self.write_error(e) {
                    Ok(()) => {}
                    Err(e) => return (written, Err(e)),
                },
            }
        }
        (written, Ok(()))
    }

    /// Sets `SO_SNDTIMEO` to what is left until `until`; `Err(Timeout)` if
    /// nothing is.
    fn arm_write(&self, until: Option<Instant>, timer: &mut SockTimer) -> Result<()> {
        let left = match until {
            None => None,
            Some(until) => match until.checked_duration_since(Instant::now()) {
                Some(left) if left >= MIN_WAIT => Some(left),
                _ => return Err(Error::Timeout),
            },
        };
        let socket = &self.socket;
        timer
            .fit(left, true, |t| sockopt::set_write_timeout(socket, t))
            .map_err(|e| self.io_error(e))
    }

    /// What one failed write means: `Ok(())` to retry, `Err(Timeout)` when
    /// time is up (nothing lost), any other error is fatal.
    fn write_error(&self, e: io::Error) -> Result<()> {
        match e.kind() {
            io::ErrorKind::Interrupted => Ok(()),
            // A spinning receive left the socket non-blocking: block again.
            io::ErrorKind::WouldBlock if self.nonblocking.load(Ordering::Relaxed) => {
                self.set_nonblocking(false)
            }
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Err(Error::Timeout),
            _ if self.is_stopped() => Err(Error::Closed),
            _ => Err(self.io_error(e)),
        }
    }

    fn set_nonblocking(&self, on: bool) -> Result<()> {
        if self.nonblocking.load(Ordering::Relaxed) != on {
            sockopt::set_nonblocking(&self.socket, on).map_err(|e| self.io_error(e))?;
            self.nonblocking.store(on, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The error a failed link says: its own, if nobody was told yet, or
/// `Closed`; `None` while it goes on.
fn link_error(link: &mut Link) -> Option<Error> {
    link.is_down().then(|| link_end_error(link))
}

/// Wraps a connected stream socket and its connection, applying `config`:
/// the two halves.
pub(crate) fn halves(
    socket: Socket,
    local: Addr,
    peer: Addr,
    conn: Conn,
    config: &Config,
) -> Result<(StreamSender, StreamReceiver)> {
    config.validate()?;
    sockopt::stream(&socket, config).map_err(|e| Error::from_io(e, &peer))?;
    // The halves fit the socket's timeouts to each wait themselves.
    sockopt::set_read_timeout(&socket, None).map_err(|e| Error::from_io(e, &peer))?;
    sockopt::set_write_timeout(&socket, None).map_err(|e| Error::from_io(e, &peer))?;
    let Conn { rx, tx, link } = conn;
    let plain = link.tls_free() && link.is_framed();
    let established = link.is_established();
    let shared = Arc::new(Shared {
        socket,
        link: Mutex::new(link),
        changed: Condvar::new(),
        writing: AtomicBool::new(false),
        reading: AtomicBool::new(false),
        established: AtomicBool::new(established),
        send_closed: AtomicBool::new(false),
        nonblocking: AtomicBool::new(false),
        down: AtomicU8::new(0),
        released: AtomicBool::new(false),
        rcv_timeout_dirty: AtomicBool::new(false),
        dropped_unread: AtomicBool::new(false),
        receiver_gone: AtomicBool::new(false),
        successor: Mutex::new(None),
        local,
        peer,
    });
    Ok((
        StreamSender {
            shared: Arc::clone(&shared),
            tx,
            timeout: config.write_timeout,
            timer: SockTimer::new(None),
            linger: config.linger,
            plain,
            hs_buf: Vec::new(),
            disarmed: false,
        },
        StreamReceiver {
            shared,
            rx,
            timeout: config.read_timeout,
            timer: SockTimer::new(None),
            spin: if plain { config.spin } else { None },
            held: std::collections::VecDeque::new(),
            remake: None,
        },
    ))
}

/// The halves of a connection of `recipe` over a connected `socket` (a
/// client's, or an accepted one), its handshakes not done yet.
pub(crate) fn open(
    socket: Socket,
    recipe: &super::recipe::Recipe,
    config: &Config,
) -> Result<(StreamSender, StreamReceiver)> {
    let (local, peer) = addrs_of(&socket, recipe);
    if recipe.scheme != crate::url::Scheme::Unix {
        sockopt::tcp_stream(&socket, config).map_err(|e| Error::from_io(e, &peer))?;
    }
    let settings = crate::connection::Settings::new(config, None);
    let conn = recipe.conn(&settings, peer.clone(), Instant::now())?;
    halves(socket, local, peer, conn, config)
}

/// A connected socket's two addresses, as the recipe's scheme names them.
fn addrs_of(socket: &Socket, recipe: &super::recipe::Recipe) -> (Addr, Addr) {
    let of = |a: io::Result<socket2::SockAddr>| match a {
        Ok(a) if recipe.scheme == crate::url::Scheme::Unix => {
            Addr::Unix(a.as_pathname().map(|p| p.to_path_buf()))
        }
        Ok(a) => a.as_socket().map_or(Addr::Unknown, |a| recipe.addr(a)),
        Err(_) => Addr::Unknown,
    };
    (of(socket.local_addr()), of(socket.peer_addr()))
}

/// A client's connection of `recipe` to the first of `addrs` that takes
/// it, its handshakes done (within the handshake timeout).
pub(crate) fn connect(
    addrs: &[std::net::SocketAddr],
    recipe: &super::recipe::Recipe,
    config: &Config,
) -> Result<(StreamSender, StreamReceiver)> {
    config.validate()?;
    let mut last = None;
    for &at in addrs {
        let socket = match sockopt::tcp_connect(at, config) {
            Ok(socket) => socket,
            Err(e) => {
                last = Some(Error::from_io(e, &recipe.addr(at)));
                continue;
            }
        };
        let (mut tx, mut rx) = open(socket, recipe, config)?;
        if recipe.has_handshake() {
            rx.establish(config.handshake_timeout)?;
            // What the handshake taught (a NATS server's `max_payload`).
            tx.tx.learn(&tx.shared.lock());
        }
        return Ok((tx, rx));
    }
    Err(last.unwrap_or_else(|| crate::addr::no_address("the address").into()))
}

/// Takes a conversation's halves apart, for a driver that owns its socket
/// (the switchboard): the socket, its addresses, the connection whole, and
/// the linger time. `None` if the halves are not of one conversation, or
/// a write is half done.
pub(crate) fn into_parts(
    tx: StreamSender,
    rx: StreamReceiver,
) -> Option<(Socket, Addr, Addr, Conn, Duration)> {
    if !Arc::ptr_eq(&tx.shared, &rx.shared) || tx.shared.writing.load(Ordering::Relaxed) {
        return None;
    }
    let linger = tx.linger;
    let shared = Arc::clone(&tx.shared);
    let (tx_side, rx_side) = (tx.disarm(), rx.disarm());
    let shared = Arc::try_unwrap(shared).ok()?;
    let link = shared.link.into_inner().unwrap_or_else(|e| e.into_inner());
    let _ = sockopt::set_nonblocking(&shared.socket, false);
    Some((
        shared.socket,
        shared.local,
        shared.peer,
        Conn {
            rx: rx_side,
            tx: tx_side,
            link,
        },
        linger,
    ))
}

// ---------------------------------------------------------------------------
// Sending

/// The sending half of a stream conversation (TCP, Unix, TLS, WebSocket,
/// NATS): messages checked and encoded by the connection, queued, and
/// written with as few system calls as it takes.
///
/// What "taken" means here: a message is taken once it is queued for the
/// wire (or fed into the batching buffer). A `send` whose message had no
/// byte written when its write timeout expired takes the message back and
/// returns [`Error::Timeout`]; otherwise the rest stays queued, first in
/// line, and whoever writes next — this half, or the receiving half while
/// it waits for the peer — writes it.
///
/// Dropping it ends the sending direction gracefully (what is queued is
/// written first, waiting at most the linger time; if it cannot be, the
/// connection is reset so the peer sees an error, never a clean end after
/// missing messages). A conversation dropped with input it never read is
/// reset, as a socket closed with unread data is.
#[derive(Debug)]
pub struct StreamSender {
    shared: Arc<Shared>,
    tx: Tx,
    timeout: Option<Duration>,
    timer: SockTimer,
    linger: Duration,
    /// A plain framing with no TLS below: large messages go straight from
    /// the caller's slice.
    plain: bool,
    /// Where this half reads while it drives a handshake.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    hs_buf: Vec<u8>,
    /// Its side was taken away (to a switchboard, or a reconnection):
    /// dropped without a word.
    disarmed: bool,
}

impl StreamSender {
    #[inline]
    fn check(&mut self) -> Result<()> {
        if self.shared.check().is_err() && !self.follow() {
            return Err(self.shared.down_error());
        }
        if self.shared.send_closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Moves to the connection that replaced this one, if one did (a
    /// reconnection by the receiving half): `true` if it moved.
    #[cold]
    fn follow(&mut self) -> bool {
        let next = self
            .shared
            .successor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match next {
            Some(next) => {
                self.shared = next;
                self.timer = SockTimer::new(None);
                self.shared.check().is_ok()
            }
            None => false,
        }
    }

    #[inline]
    fn until(&self) -> Option<Instant> {
        self.timeout.map(|t| Instant::now() + t)
    }

    /// Completes the handshake if it is not over: by `until` (then
    /// [`Error::Timeout`], and the next call goes on), or by the handshake
    /// timeout (then the handshake's error).
    #[inline]
    fn established(&mut self, until: Option<Instant>) -> Result<()> {
        if self.shared.established.load(Ordering::Acquire) {
            return Ok(());
        }
        self.drive_handshake(until)
    }

    /// Without TLS, every handshake is over before the halves are handed
    /// out.
    #[cfg(not(feature = "tls"))]
    fn drive_handshake(&mut self, _until: Option<Instant>) -> Result<()> {
        Ok(())
    }

    /// A TLS server's handshake, driven by this half when the receiving
    /// half is not reading (a server that speaks first); otherwise waits
    /// for the receiving half to finish it.
    #[cfg(feature = "tls")]
    #[cold]
    fn drive_handshake(&mut self, until: Option<Instant>) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let mut link = shared.lock();
        loop {
            shared.after(&mut link);
            if link.is_established() {
                return Ok(());
            }
            if link.is_down() {
                return Err(link_end_error(&mut link));
            }
            if shared.reading.load(Ordering::Relaxed) || shared.writing.load(Ordering::Relaxed) {
                link = shared.wait_changed(link, until)?;
                continue;
            }
            shared.flush_now(&mut link);
            let now = Instant::now();
            let hs_left = link
                .poll_timeout()
                .map(|at| at.saturating_duration_since(now));
            let user_left = until.map(|u| u.saturating_duration_since(now));
            if hs_left.is_some_and(|l| l.is_zero()) {
                link.handle_timeout(now);
                continue;
            }
            if user_left.is_some_and(|l| l < MIN_WAIT) {
                return Err(Error::Timeout);
            }
            let (wait, _) = earliest(user_left, hs_left);
            shared.reading.store(true, Ordering::Relaxed);
            drop(link);
            if self.hs_buf.is_empty() {
                self.hs_buf = vec![0u8; 17 * 1024];
            }
            shared.rcv_timeout_dirty.store(true, Ordering::Relaxed);
            let read = sockopt::set_read_timeout(&shared.socket, wait)
                .and_then(|()| (&shared.socket).read(&mut self.hs_buf));
            link = shared.lock();
            shared.reading.store(false, Ordering::Relaxed);
            shared.changed.notify_all();
            match read {
                Ok(0) if shared.is_stopped() => return Err(Error::Closed),
                Ok(0) => link.fail(Error::Tls {
                    addr: shared.peer.clone(),
                    reason: crate::tls::TlsError::ClosedDuringHandshake,
                }),
                Ok(n) => link.handshake_read(&self.hs_buf[..n], Instant::now()),
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted
                    | io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut => link.handle_timeout(Instant::now()),
                    _ => link.fail(shared.io_error(e)),
                },
            }
        }
    }

    fn send_as(&mut self, msg: &[u8], text: bool) -> Result<()> {
        self.check()?;
        let until = self.until();
        self.established(until)?;
        if self.plain && msg.len() > SMALL {
            return self.send_direct(msg, until);
        }
        let shared = Arc::clone(&self.shared);
        let mut link = shared.lock();
        if !link.can_send() {
            shared.after(&mut link);
            return Err(link_end_error(&mut link));
        }
        self.tx.learn(&link);
        self.tx.check(msg, &shared.peer)?;
        #[cfg(feature = "tls")]
        if msg.len() > SMALL && !self.plain {
            // A large message over TLS: encrypted from the caller's slice,
            // taken as soon as TLS has any of it.
            self.tx.commit(&mut link);
            if self.tx.push_through_tls(&mut link, msg) {
                shared.flush_now(&mut link);
                if link.queued() == 0 || link.is_down() {
                    return link_error(&mut link).map_or(Ok(()), Err);
                }
                drop(link);
                return match shared.write_out(until, &mut self.timer) {
                    // Taken: the rest goes first next time.
                    Err(Error::Timeout) => Ok(()),
                    other => other,
                };
            }
        }
        let mark = self.tx.push(&mut link, msg, text);
        shared.flush_now(&mut link);
        if link.queued() == 0 || link.is_down() {
            return match link_error(&mut link) {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }
        drop(link);
        match shared.write_out(until, &mut self.timer) {
            Err(Error::Timeout) => {
                let mut link = shared.lock();
                if link.out.untake(mark) {
                    Err(Error::Timeout)
                } else {
                    // Some of it went: it is taken, the rest goes first next
                    // time (or with the receiving half's next wait).
                    Ok(())
                }
            }
            other => other,
        }
    }

    /// A large message of a plain framing: written straight from `msg`
    /// (header and payload in one `writev`), after what is queued; what the
    /// socket did not take by `until` is queued, first in line.
    fn send_direct(&mut self, msg: &[u8], until: Option<Instant>) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let mut link = shared.lock();
        if !link.can_send() {
            return Err(link_end_error(&mut link));
        }
        self.tx.learn(&link);
        self.tx.check(msg, &shared.peer)?;
        if self.tx.staged() > 0 || link.queued() > 0 || shared.writing.load(Ordering::Relaxed) {
            // What is queued goes first; a timeout there: not taken.
            self.tx.commit(&mut link);
            drop(link);
            shared.write_out(until, &mut self.timer)?;
            link = shared.lock();
            if link.queued() > 0 {
                return Err(Error::Timeout);
            }
        }
        let frame = link
            .out
            .frame(msg)
            .map_err(|e| Error::from_frame(e, &shared.peer))?;
        shared.writing.store(true, Ordering::Relaxed);
        drop(link);
        let mut written = 0;
        let outcome = loop {
            if written == frame.len {
                break Ok(());
            }
            let parts: [&[u8]; 3] = [&frame.prefix, msg, frame.suffix];
            let mut skip = written;
            let mut slices = [IoSlice::new(&[]); 3];
            for (slot, part) in slices.iter_mut().zip(parts) {
                let take = skip.min(part.len());
                skip -= take;
                *slot = IoSlice::new(&part[take..]);
            }
            if let Err(e) = shared.arm_write(until, &mut self.timer) {
                break Err(e);
            }
            match sockopt::send_vectored(&shared.socket, &slices) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "the socket took no bytes");
                    break Err(shared.io_error(e));
                }
                Ok(n) => written += n,
                Err(e) => {
                    if let Err(e) = shared.write_error(e) {
                        break Err(e);
                    }
                }
            }
        };
        let mut link = shared.lock();
        shared.writing.store(false, Ordering::Relaxed);
        shared.changed.notify_all();
        match outcome {
            Ok(()) => {
                link.out.advanced_outside(frame.len);
                shared.flush_now(&mut link);
                Ok(())
            }
            Err(Error::Timeout) if written == 0 => {
                shared.after(&mut link);
                Err(Error::Timeout)
            }
            Err(Error::Timeout) => {
                // Taken: the rest goes first next time.
                link.out.advanced_outside(written);
                self.tx.push_rest(&mut link, msg, written);
                shared.flush_now(&mut link);
                Ok(())
            }
            Err(e) => {
                link.fail(e);
                shared.after(&mut link);
                Err(link_end_error(&mut link))
            }
        }
    }

    /// Feeds past the batching bound: what was fed goes first (a timeout
    /// there: this message is not taken), then this one.
    fn feed_past_the_bound(&mut self, msg: &[u8], text: bool) -> Result<()> {
        self.tx.check(msg, &self.shared.peer)?;
        if self.tx.staged() > 0 {
            self.flush()?;
        }
        if self.tx.has_room_staged(msg.len()) {
            self.tx.stage(msg, text);
            return Ok(());
        }
        self.send_as(msg, text)
    }

    /// Ends our side: what is queued is written, then our end marker and
    /// the end of our bytes, by `until`; `close` says what is known of
    /// delivery once the receiving half has the peer's end.
    fn end(&mut self, until: Instant) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        {
            let mut link = shared.lock();
            self.tx.commit(&mut link);
            link.close(Instant::now());
            shared.after(&mut link);
        }
        match shared.write_out(Some(until), &mut self.timer) {
            Ok(()) => Ok(()),
            Err(Error::Timeout) => {
                // The linger passed with bytes unwritten: reset, `Unsent`.
                let mut link = shared.lock();
                link.handle_timeout(Instant::now().max(until));
                shared.after(&mut link);
                match link.poll_close() {
                    Some(Err(e)) => Err(e),
                    _ => Ok(()),
                }
            }
            Err(Error::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Dropped without a word (its connection goes on elsewhere).
    fn forget(self) {
        let _ = self.disarm_quietly();
    }

    fn disarm_quietly(mut self) -> Tx {
        self.disarmed = true;
        std::mem::replace(
            &mut self.tx,
            Tx::framed(crate::codec::Framing::Raw.codec(1), 64),
        )
    }

    /// The half's own side, handed to a switchboard.
    fn disarm(mut self) -> Tx {
        self.disarmed = true;
        let tx = std::mem::replace(
            &mut self.tx,
            Tx::framed(crate::codec::Framing::Raw.codec(1), 64),
        );
        // Dropped without a word: no flush, no end.
        self.shared.released.store(true, Ordering::Relaxed);
        self.shared.down.fetch_or(FAILED, Ordering::Relaxed);
        tx
    }

    /// The verified identity of the peer, once the handshake is over.
    #[cfg(feature = "tls")]
    pub fn peer_identity(&self) -> Option<crate::tls::PeerIdentity> {
        self.shared.lock().identity()
    }

    /// The socket, for options this crate does not cover. Reading or writing
    /// it directly breaks the framing.
    pub fn socket_ref(&self) -> &Socket {
        &self.shared.socket
    }
}

/// The error to return once the connection cannot go on: the failure
/// itself if nobody was told yet, `Closed` otherwise.
fn link_end_error(link: &mut Link) -> Error {
    match link.poll_end() {
        Some(End::Failed(e)) => e,
        _ => link.after_end(),
    }
}

impl Sender for StreamSender {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_as(msg, false)
    }

    fn send_text(&mut self, text: &str) -> Result<()> {
        self.send_as(text.as_bytes(), true)
    }

    #[inline]
    fn feed(&mut self, msg: &[u8]) -> Result<()> {
        self.check()?;
        if msg.len() <= self.tx.max_message_len() && self.tx.has_room_staged(msg.len()) {
            // The common case: it fits the batching buffer, no lock.
            self.tx.check(msg, &self.shared.peer)?;
            self.tx.stage(msg, false);
            return Ok(());
        }
        self.feed_past_the_bound(msg, false)
    }

    fn flush(&mut self) -> Result<()> {
        self.check()?;
        let until = self.until();
        self.established(until)?;
        let shared = Arc::clone(&self.shared);
        {
            let mut link = shared.lock();
            if !link.can_send() {
                self.tx.discard();
                return Err(link_end_error(&mut link));
            }
            self.tx.commit(&mut link);
            shared.flush_now(&mut link);
            if let Some(e) = link_error(&mut link) {
                return Err(e);
            }
            if link.queued() == 0 {
                return Ok(());
            }
        }
        // Whatever is left is taken: on a timeout it stays queued, and the
        // next flush, send or the receiving half's next wait writes it.
        shared.write_out(until, &mut self.timer)
    }

    fn queued(&self) -> usize {
        self.tx.staged() + self.shared.lock().queued()
    }

    fn finish(&mut self, until: Instant) -> Result<()> {
        let ours = self.shared.lock().ours();
        if ours != Ours::Open || self.shared.down.load(Ordering::Relaxed) != 0 {
            // Ended before, or failed (its error was said then), or stopped.
            return Ok(());
        }
        if !self.shared.established.load(Ordering::Acquire) && self.tx.staged() > 0 {
            if let Err(e) = self.drive_handshake(Some(until)) {
                return match e {
                    Error::Timeout => {
                        let bytes = self.tx.discard() as u64;
                        self.abort();
                        Err(Error::Unsent {
                            addr: self.shared.peer.clone(),
                            bytes,
                        })
                    }
                    e => Err(e),
                };
            }
        }
        self.end(until)
    }

    /// Ends at once, discarding what is queued: the connection is reset
    /// when the socket closes.
    fn abort(&mut self) {
        self.tx.discard();
        let mut link = self.shared.lock();
        link.abort();
        self.shared.after(&mut link);
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.shared.peer.clone())
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self.shared.local.clone())
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = check_timeout("write_timeout", timeout)?;
        Ok(())
    }

    fn write_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn linger(&self) -> Duration {
        self.linger
    }

    fn set_linger(&mut self, linger: Duration) {
        self.linger = linger;
        self.shared.lock().limits.linger = linger;
    }

    fn max_message_len(&self) -> usize {
        self.tx.max_message_len()
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(stopper(&self.shared))
    }

    #[cfg(unix)]
    fn socket(&self) -> Option<socket2::SockRef<'_>> {
        Some(socket2::SockRef::from(&self.shared.socket))
    }

    fn handshake(&mut self) -> Result<()> {
        self.established(None)
    }

    #[cfg(feature = "tls")]
    fn peer_identity(&self) -> Option<crate::tls::PeerIdentity> {
        StreamSender::peer_identity(self)
    }
}

impl Drop for StreamSender {
    fn drop(&mut self) {
        if self.disarmed {
            return;
        }
        if self.shared.released.load(Ordering::Relaxed)
            || self.shared.down.load(Ordering::Relaxed) != 0
        {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let unread = shared.receiver_gone.load(Ordering::Relaxed)
            && shared.dropped_unread.load(Ordering::Relaxed);
        {
            let mut link = shared.lock();
            if link.ours() != Ours::Open {
                return;
            }
            self.tx.commit(&mut link);
            if unread && link.queued() == 0 {
                // Dropped with input never read: a reset, as the system
                // does for a socket closed with unread data, and no clean
                // end first (the peer must not take it for delivered).
                link.abort();
                shared.after(&mut link);
                return;
            }
            link.finish(Instant::now());
            shared.after(&mut link);
        }
        let until = Instant::now() + self.linger;
        if shared.write_out(Some(until), &mut self.timer).is_err() {
            let mut link = shared.lock();
            link.handle_timeout(until.max(Instant::now()));
            if link.ours() != Ours::Ended {
                link.abort();
            }
            shared.after(&mut link);
            return;
        }
        if unread {
            let mut link = shared.lock();
            link.abort();
            shared.after(&mut link);
        }
    }
}

fn stopper(shared: &Arc<Shared>) -> Stopper {
    let shared = Arc::clone(shared);
    Stopper::from_fn(move || shared.stop())
}

// ---------------------------------------------------------------------------
// Receiving

/// The receiving half of a stream conversation: the connection's read
/// buffer, cut into messages by its protocol.
///
/// * A read timeout in the middle of a message returns [`Error::Timeout`]
///   and the next receive continues the same message: the stream never
///   loses sync.
/// * Once a message has started arriving it must be whole within the
///   per-message deadline, counted from when its first bytes arrived; a
///   message that arrived whole is delivered however late it is received.
/// * [`recv_ref`](Receiver::recv_ref) lends a message straight out of the
///   read buffer.
/// * While it waits for the peer it writes what the connection has to say
///   (pongs, close frames, TLS records) and what a timed-out send left.
pub struct StreamReceiver {
    shared: Arc<Shared>,
    rx: Rx,
    timeout: Option<Duration>,
    timer: SockTimer,
    /// Latency mode: how long to poll before blocking.
    spin: Option<Duration>,
    /// Messages that came with the handshake, before it was over: handed
    /// out first.
    held: std::collections::VecDeque<Bytes>,
    /// How to make this connection again (NATS).
    remake: Option<Remake>,
}

/// Makes a connection again, from scratch: the socket and the connection
/// established, with their addresses.
pub(crate) type Remake = Box<dyn Fn() -> Result<(StreamSender, StreamReceiver)> + Send>;

impl std::fmt::Debug for StreamReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReceiver")
            .field("peer", &self.shared.peer)
            .field("buffered", &self.rx.buffered())
            .finish()
    }
}

/// What a receive found.
enum Got {
    Owned(Bytes),
    Lent,
    End,
}

impl StreamReceiver {
    /// Latency mode: before blocking in a receive, poll the socket without
    /// blocking for up to `spin` (`None`, the default: block at once).
    ///
    /// A message that arrives within the spin is picked up without the
    /// thread being put to sleep and woken again, which on a loaded machine
    /// is most of a loopback round trip. The cost is CPU: the receiving
    /// thread keeps one core at 100% for up to `spin` on every receive that
    /// has to wait. Meant for request/response on one thread over a plain
    /// framing: splitting the conversation turns it off (the spin makes
    /// the socket non-blocking, which a send on another thread must not
    /// see).
    pub fn set_spin(&mut self, spin: Option<Duration>) {
        self.spin = spin.filter(|s| !s.is_zero());
    }

    /// The capacity of the read buffers, in bytes: what an idle
    /// conversation holds on to between messages.
    pub fn buffer_capacity(&self) -> usize {
        self.rx.capacity()
    }

    /// `true` when the last message received came in a WebSocket text
    /// frame.
    pub fn last_was_text(&self) -> bool {
        self.rx.last_was_text()
    }

    /// The socket, for options this crate does not cover. Reading or writing
    /// it directly breaks the framing.
    pub fn socket_ref(&self) -> &Socket {
        &self.shared.socket
    }

    /// The next message, or the end; waits for bytes as needed.
    #[inline]
    fn next(&mut self, lend: bool) -> Result<Got> {
        if !self.held.is_empty() {
            return Ok(Got::Owned(self.held.pop_front().expect("a held message")));
        }
        let mut start = None;
        let mut tried = false;
        loop {
            match self.rx.next(&mut &self.shared.link, Now, lend) {
                Next::Message(m) => return Ok(Got::Owned(m)),
                Next::Lent => return Ok(Got::Lent),
                Next::End => return Ok(Got::End),
                Next::More => {}
            }
            self.wait(&mut start, &mut tried, self.timeout)?;
        }
    }

    /// Waits for more bytes (bounded by `timeout` from `start`, and by the
    /// connection's own deadlines), writing what waits to be written.
    fn wait(
        &mut self,
        start: &mut Option<Instant>,
        tried: &mut bool,
        timeout: Option<Duration>,
    ) -> Result<()> {
        self.shared.check_stopped()?;
        let now = Instant::now();
        let start = *start.get_or_insert(now);
        let shared = Arc::clone(&self.shared);
        let (deadline, pending) = {
            let mut link = shared.lock();
            self.rx.take_early(&mut link, now);
            if *tried {
                // Only after a read that found nothing more: a message
                // whole in the kernel's buffer is never refused.
                self.rx.handle_timeout(&mut &mut *link, now);
                link.handle_timeout(now);
            }
            shared.flush_now(&mut link);
            if link.is_down() || link.is_eof() || link.was_answered() {
                // Nothing more to read.
                return Ok(());
            }
            // Before the connection is established, the sending half may
            // be reading (a handshake it drives): wait for it.
            if !link.is_established() {
                while shared.reading.load(Ordering::Relaxed) {
                    link = shared.wait_changed(link, timeout.map(|t| start + t))?;
                }
                shared.reading.store(true, Ordering::Relaxed);
            }
            let deadline = earliest_instant(self.rx.poll_timeout(), link.poll_timeout());
            (
                deadline,
                link.queued() > 0 && !shared.writing.load(Ordering::Relaxed),
            )
        };
        let result = self.read_once(start, now, tried, timeout, deadline, pending);
        if shared.reading.load(Ordering::Relaxed) {
            let _guard = shared.lock();
            shared.reading.store(false, Ordering::Relaxed);
            shared.changed.notify_all();
        }
        result
    }

    /// One read, with the socket's timeout fitted to the wait.
    fn read_once(
        &mut self,
        start: Instant,
        now: Instant,
        tried: &mut bool,
        timeout: Option<Duration>,
        deadline: Option<Instant>,
        pending: bool,
    ) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let user_left = timeout.map(|t| t.saturating_sub(now - start));
        if *tried && user_left.is_some_and(|l| l < MIN_WAIT) {
            return Err(Error::Timeout);
        }
        if let Some(spin) = self.spin {
            if self.spin_read(spin, tried)? {
                return Ok(());
            }
        }
        shared.set_nonblocking(false)?;
        let deadline_left = deadline.map(|at| at.saturating_duration_since(now).max(MIN_WAIT));
        let retry = pending.then_some(RETRY_WRITE);
        let (wait, exact) = earliest(user_left, earliest_duration(deadline_left, retry));
        if shared.rcv_timeout_dirty.swap(false, Ordering::Relaxed) {
            self.timer.invalidate();
        }
        let socket = &shared.socket;
        self.timer
            .fit(wait, exact, |t| sockopt::set_read_timeout(socket, t))
            .map_err(|e| shared.io_error(e))?;
        self.read_into(tried)
    }

    /// One `read` into the connection's buffer.
    fn read_into(&mut self, tried: &mut bool) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        loop {
            let space = self.rx.space();
            match (&shared.socket).read(space) {
                // A stop shuts the socket down, which reads as an end.
                Ok(0) if shared.is_stopped() => return Err(Error::Closed),
                Ok(0) => {
                    self.on_end();
                    return Ok(());
                }
                Ok(n) => {
                    *tried = false;
                    self.rx.on_read(&mut &shared.link, n, Instant::now());
                    return Ok(());
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        *tried = true;
                        return Ok(());
                    }
                    _ if shared.is_stopped() => return Err(Error::Closed),
                    _ => {
                        let err = shared.io_error(e);
                        self.rx.on_error(&mut &shared.link, err);
                        return Ok(());
                    }
                },
            }
        }
    }

    /// The end of the peer's bytes, or a reset that came after it.
    fn on_end(&mut self) {
        let shared = Arc::clone(&self.shared);
        // Once our side has ended, a reset that came with the peer's end
        // says it did not take what we sent: `close` must not confirm it.
        let ended = shared.lock().ours() != Ours::Open;
        match sockopt::take_error(&shared.socket).filter(|_| ended) {
            Some(e) => self.rx.on_error(&mut &shared.link, shared.io_error(e)),
            None => self.rx.on_eof(&mut &shared.link, Instant::now()),
        }
    }

    /// Polls without blocking for up to `spin`: `true` if a read brought
    /// something (bytes or the end).
    fn spin_read(&mut self, spin: Duration, tried: &mut bool) -> Result<bool> {
        self.shared.set_nonblocking(true)?;
        let until = Instant::now() + spin;
        loop {
            *tried = false;
            self.read_into(tried)?;
            if !*tried {
                return Ok(true);
            }
            if Instant::now() >= until {
                return Ok(false);
            }
            std::hint::spin_loop();
        }
    }

    /// The end `next` found: the peer's clean end (every later receive
    /// says it again), or the failure (said once; `Closed` afterwards).
    fn end(&mut self) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let mut link = shared.lock();
        let outcome = match link.poll_end() {
            Some(End::Failed(e)) => Err(e),
            Some(End::Peer) | Some(End::Closed(_)) if link.has_peer_ended() => Ok(()),
            Some(_) => Err(Error::Closed),
            None if link.has_peer_ended() && !link.is_down() => Ok(()),
            None => Err(link.after_end()),
        };
        if outcome.is_ok() {
            link.ack_peer_end(Instant::now());
        }
        shared.flush_now(&mut link);
        if let Some(answered) = link.take_answered() {
            // A plain HTTP request (a blocking WebSocket accept's business).
            return match answered {
                crate::connection::link::Answered::Refused(e) => Err(e),
                crate::connection::link::Answered::Page => Err(Error::Closed),
            };
        }
        outcome
    }

    /// Completes the handshakes (a client's connect, a WebSocket server's
    /// upgrade) within `within`: `Ok(true)` when established, `Ok(false)`
    /// when the peer was answered as plain HTTP (a page served).
    pub(crate) fn establish(&mut self, within: Duration) -> Result<bool> {
        let start = Instant::now();
        let mut begun = Some(start);
        let mut tried = false;
        for _ in 0.. {
            {
                let mut link = self.shared.lock();
                self.shared.flush_now(&mut link);
                if link.is_established() {
                    let _ = link.poll_established();
                    return Ok(true);
                }
                if link.was_answered() {
                    // Its answer goes out; the connection is done.
                    let until = start + within;
                    drop(link);
                    let _ = self
                        .shared
                        .write_out(Some(until), &mut SockTimer::new(None));
                    let mut link = self.shared.lock();
                    return match link.take_answered() {
                        Some(crate::connection::link::Answered::Refused(e)) => Err(e),
                        _ => Ok(false),
                    };
                }
                if link.is_down() {
                    return Err(link_end_error(&mut link));
                }
                if Instant::now() >= start + within {
                    link.handle_timeout(Instant::now());
                    continue;
                }
            }
            // What the handshake brought is processed; messages that came
            // with it are held for the first receives.
            let mut more = false;
            loop {
                match self.rx.next(&mut &self.shared.link, Now, false) {
                    Next::Message(m) => self.held.push_back(m),
                    Next::Lent => self.held.push_back(Bytes::copy_from_slice(self.rx.lent())),
                    Next::More => {
                        more = true;
                        break;
                    }
                    Next::End => break,
                }
            }
            let settled = {
                let link = self.shared.lock();
                link.is_established() || link.was_answered() || link.is_down()
            };
            if more && !settled {
                match self.wait(&mut begun, &mut tried, Some(within)) {
                    Err(Error::Timeout) => {
                        self.shared.lock().handle_timeout(Instant::now());
                    }
                    other => other?,
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// Dropped without a word.
    fn forget(mut self) {
        self.held.clear();
        self.rx = Rx::framed(
            crate::connection::inbound::Cutter::Framing(crate::codec::Framing::Raw.codec(1)),
            Duration::from_secs(1),
        );
    }

    /// How to make the connection again, for [`Receiver::reconnect`].
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn set_remake(&mut self, remake: Remake) {
        self.remake = Some(remake);
    }

    /// The half's own side, handed to a switchboard.
    fn disarm(mut self) -> Rx {
        let rx = std::mem::replace(
            &mut self.rx,
            Rx::framed(
                crate::connection::inbound::Cutter::Framing(crate::codec::Framing::Raw.codec(1)),
                Duration::from_secs(1),
            ),
        );
        self.shared.released.store(true, Ordering::Relaxed);
        rx
    }
}

impl Shared {
    fn check_stopped(&self) -> Result<()> {
        if self.is_stopped() {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }
}

fn earliest_instant(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn earliest_duration(a: Option<Duration>, b: Option<Duration>) -> Option<Duration> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl Receiver for StreamReceiver {
    #[inline]
    fn recv(&mut self) -> Result<Option<Bytes>> {
        match self.next(false)? {
            Got::Owned(m) => Ok(Some(m)),
            Got::Lent => Ok(Some(Bytes::copy_from_slice(self.rx.lent()))),
            Got::End => self.end().map(|()| None),
        }
    }

    #[inline]
    fn recv_ref<'a>(&'a mut self, hold: &'a mut Option<Bytes>) -> Result<Option<&'a [u8]>> {
        match self.next(true)? {
            Got::Lent => Ok(Some(self.rx.lent())),
            Got::Owned(m) => {
                *hold = Some(m);
                Ok(hold.as_deref())
            }
            Got::End => self.end().map(|()| None),
        }
    }

    /// Reads and discards until the peer's end: what the connection knows
    /// of delivery then (a reset after the peer's end is
    /// [`Error::ConnectionReset`]), or [`Delivery::Unknown`] at `until`.
    fn drain(&mut self, until: Instant) -> Result<Delivery> {
        let shared = Arc::clone(&self.shared);
        shared.lock().await_close(Instant::now(), until);
        let mut begun = None;
        let mut tried = false;
        loop {
            {
                let mut link = shared.lock();
                if Instant::now() >= until {
                    link.handle_timeout(Instant::now());
                }
                if let Some(outcome) = link.poll_close() {
                    shared.after(&mut link);
                    return outcome;
                }
            }
            // What arrives is discarded.
            while let Next::Message(_) | Next::Lent = self.rx.next(&mut &shared.link, Now, true) {}
            {
                let mut link = shared.lock();
                if let Some(outcome) = link.poll_close() {
                    shared.after(&mut link);
                    return outcome;
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            match self.wait(&mut begun, &mut tried, Some(left.max(MIN_WAIT))) {
                Ok(()) => {}
                Err(Error::Timeout) => {
                    let mut link = shared.lock();
                    link.handle_timeout(Instant::now());
                    tried = false;
                    begun = None;
                }
                Err(Error::Closed) => return Ok(Delivery::Unknown),
                Err(e) => return Err(e),
            }
        }
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.shared.peer.clone())
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self.shared.local.clone())
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = check_timeout("read_timeout", timeout)?;
        Ok(())
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn set_message_deadline(&mut self, deadline: Duration) -> Result<()> {
        self.rx
            .set_deadline(crate::config::check_deadline(deadline)?);
        Ok(())
    }

    fn max_message_len(&self) -> usize {
        self.rx.max_message_len()
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(stopper(&self.shared))
    }

    fn on_split(&mut self) {
        self.spin = None;
        let _ = self.shared.set_nonblocking(false);
    }

    /// Connects again (NATS: a new connection to the server, subscribed
    /// anew); the sending half moves to it at its next call.
    fn reconnect(&mut self) -> Result<()> {
        let Some(remake) = &self.remake else {
            return Err(Error::Unsupported("reconnecting this transport"));
        };
        let (tx, mut rx) = remake()?;
        let next = Arc::clone(&rx.shared);
        let old = std::mem::replace(&mut self.shared, Arc::clone(&next));
        std::mem::swap(&mut self.rx, &mut rx.rx);
        self.held = std::mem::take(&mut rx.held);
        self.timer = SockTimer::new(None);
        // The fresh halves are not used: this one and the old sending half
        // carry on over the new connection.
        tx.forget();
        rx.shared = Arc::clone(&old);
        rx.forget();
        *old.successor.lock().unwrap_or_else(|e| e.into_inner()) = Some(next);
        old.down.fetch_or(FAILED, Ordering::Relaxed);
        sockopt::wake_up(&old.socket);
        Ok(())
    }
}

impl StreamReceiver {
    /// `true` when a message came that was never received: held, buffered,
    /// or waiting in the socket (read now, without waiting, to tell a
    /// message from the peer's end marker).
    fn left_unread(&mut self) -> bool {
        if !self.held.is_empty() {
            return true;
        }
        let shared = Arc::clone(&self.shared);
        if shared.released.load(Ordering::Relaxed) || !sockopt::has_unread(&shared.socket) {
            return self.rx.buffered() > 0;
        }
        if shared.set_nonblocking(true).is_err() {
            return true;
        }
        for _ in 0..64 {
            match self.rx.next(&mut &shared.link, Now, true) {
                Next::Message(_) | Next::Lent => return true,
                Next::End => return false,
                Next::More => {}
            }
            match (&shared.socket).read(self.rx.space()) {
                Ok(0) => return self.rx.buffered() > 0,
                Ok(n) => self.rx.on_read(&mut &shared.link, n, Instant::now()),
                Err(_) => return self.rx.buffered() > 0,
            }
        }
        true
    }
}

impl Drop for StreamReceiver {
    /// Says whether a message was left unread: a sending half dropped after
    /// it then resets the connection instead of ending it cleanly (the peer
    /// must not take what it sent for delivered).
    fn drop(&mut self) {
        let unread = self.left_unread();
        self.shared.dropped_unread.store(unread, Ordering::Relaxed);
        self.shared.receiver_gone.store(true, Ordering::Relaxed);
    }
}
