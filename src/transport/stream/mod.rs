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

use std::io::{self, IoSlice};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use socket2::Socket;

pub(crate) use super::carrier::Carrier;
use super::carrier::CarrierSink;
use super::sockopt::{self, earliest, SockTimer, MIN_WAIT};
use super::{Receiver, Sender, Stopper};
use crate::addr::Addr;
use crate::config::{check_timeout, Config};
use crate::connection::link::{Link, Ours};
use crate::connection::receive::{Next, Now};
use crate::connection::{Conn, Delivery, End, Rx, Tx};
use crate::error::{Error, Result};

mod receiver;
mod sender;

pub use receiver::StreamReceiver;
pub use sender::StreamSender;

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
    pub(crate) carrier: Carrier,
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
        self.carrier.wake_up();
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
            let mut sink = CarrierSink {
                carrier: &self.carrier,
                now: true,
                sent: 0,
            };
            let _ = link.transmit(&mut sink);
        }
        if link.take_shutdown() {
            let _ = self.carrier.shutdown(Shutdown::Write);
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
                let _ = self.carrier.linger_zero();
            } else {
                let _ = self.carrier.shutdown(Shutdown::Both);
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
        let mut sink = CarrierSink {
            carrier: &self.carrier,
            now: true,
            sent: 0,
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
            match self.carrier.send(bytes) {
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
        let carrier = &self.carrier;
        timer
            .fit(left, true, |t| carrier.set_write_timeout(t))
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
            self.carrier
                .set_nonblocking(on)
                .map_err(|e| self.io_error(e))?;
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
    carried(Carrier::Socket(socket), local, peer, conn, config)
}

/// The two halves of a connection over `carrier`.
pub(crate) fn carried(
    carrier: Carrier,
    local: Addr,
    peer: Addr,
    conn: Conn,
    config: &Config,
) -> Result<(StreamSender, StreamReceiver)> {
    // The halves fit the carrier's timeouts to each wait themselves.
    carrier
        .set_read_timeout(None)
        .map_err(|e| Error::from_io(e, &peer))?;
    carrier
        .set_write_timeout(None)
        .map_err(|e| Error::from_io(e, &peer))?;
    let Conn { rx, tx, link } = conn;
    let plain = link.tls_free() && link.is_framed();
    let established = link.is_established();
    let shared = Arc::new(Shared {
        carrier,
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

/// Takes a conversation's halves apart, for a driver that owns its
/// carrier (the switchboard): the carrier (blocking again), its addresses,
/// the connection whole, and the linger time. `None` if the halves are not
/// of one conversation, or a write is half done.
pub(crate) fn into_parts(
    tx: StreamSender,
    rx: StreamReceiver,
) -> Option<(Carrier, Addr, Addr, Conn, Duration)> {
    if !Arc::ptr_eq(&tx.shared, &rx.shared) || tx.shared.writing.load(Ordering::Relaxed) {
        return None;
    }
    let linger = tx.linger;
    let shared = Arc::clone(&tx.shared);
    let (tx_side, rx_side) = (tx.disarm(), rx.disarm());
    let shared = Arc::try_unwrap(shared).ok()?;
    let link = shared.link.into_inner().unwrap_or_else(|e| e.into_inner());
    let carrier = shared.carrier;
    let _ = carrier.set_nonblocking(false);
    Some((
        carrier,
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

fn stopper(shared: &Arc<Shared>) -> Stopper {
    let shared = Arc::clone(shared);
    Stopper::from_fn(move || shared.stop())
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

/// The error to return once the connection cannot go on: the failure
/// itself if nobody was told yet, `Closed` otherwise.
fn link_end_error(link: &mut Link) -> Error {
    match link.poll_end() {
        Some(End::Failed(e)) => e,
        _ => link.after_end(),
    }
}
