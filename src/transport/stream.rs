//! The blocking driver of a framed byte stream (TCP, or a Unix stream
//! socket): the socket below, the [`Inbound`] and [`Outbound`] engines
//! above, and the calling thread waiting with timeouts in between.

use std::io::{self, IoSlice, Read};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use socket2::Socket;

use super::sockopt;
use super::timer::{earliest, SockTimer, MIN_WAIT};
use super::{Delivery, Receiver, Sender, Stopper};
use crate::addr::Addr;
use crate::config::{check_timeout, Config};
use crate::engine::inbound::{Inbound, InboundError, State};
use crate::engine::outbound::{Frame, Outbound};
use crate::error::{Error, Result};

/// Messages up to this size are copied into the queue and written from one
/// contiguous buffer (the kernel handles one slice faster, which shows in
/// round trips); larger ones are written straight from the caller's slice.
const SMALL: usize = 2048;

/// The socket and what both halves must know of it.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) socket: Socket,
    pub(crate) local: Addr,
    pub(crate) peer: Addr,
    /// `O_NONBLOCK` is on (set by a spinning receive, see `set_spin`).
    nonblocking: AtomicBool,
    /// [`FAILED`] (a fatal error on either half: from then on both answer
    /// `Closed`) and [`STOPPED`] (from another thread), in one word so that
    /// checking is one load.
    down: AtomicU8,
}

const FAILED: u8 = 1;
const STOPPED: u8 = 2;

impl Link {
    fn set_nonblocking(&self, on: bool) -> Result<()> {
        if self.nonblocking.load(Ordering::Relaxed) != on {
            sockopt::set_nonblocking(&self.socket, on)
                .map_err(|e| Error::from_io(e, &self.peer))?;
            self.nonblocking.store(on, Ordering::Relaxed);
        }
        Ok(())
    }

    /// `Closed` once the conversation has failed or been stopped.
    #[inline]
    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::Relaxed) != 0 {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn is_stopped(&self) -> bool {
        self.down.load(Ordering::Relaxed) & STOPPED != 0
    }

    fn is_down(&self) -> bool {
        self.check().is_err()
    }

    /// Records a fatal error: the socket is shut in both directions and both
    /// halves answer `Closed` from now on. A stop reported as an error is
    /// `Closed` too.
    fn fail(&self, err: Error) -> Error {
        self.down.fetch_or(FAILED, Ordering::Relaxed);
        let _ = self.socket.shutdown(Shutdown::Both);
        if self.is_stopped() {
            Error::Closed
        } else {
            err
        }
    }

    fn stop(&self) {
        self.down.fetch_or(STOPPED, Ordering::Relaxed);
        sockopt::wake_up(&self.socket);
    }
}

/// Wraps a connected stream socket, applying `config`: the two halves.
pub(crate) fn halves(
    socket: Socket,
    local: Addr,
    peer: Addr,
    config: &Config,
) -> Result<(StreamSender, StreamReceiver)> {
    let codec = config.framing.codec(config.max_message_len);
    halves_with(socket, local, peer, config, codec.clone(), codec)
}

/// [`halves`] with the codecs of each direction given (a protocol above the
/// stream, such as WebSocket, brings its own).
pub(crate) fn halves_with(
    socket: Socket,
    local: Addr,
    peer: Addr,
    config: &Config,
    send: crate::codec::Codec,
    recv: crate::codec::Codec,
) -> Result<(StreamSender, StreamReceiver)> {
    config.validate()?;
    sockopt::stream(&socket, config).map_err(|e| Error::from_io(e, &peer))?;
    let link = Arc::new(Link {
        socket,
        local,
        peer,
        nonblocking: AtomicBool::new(false),
        down: AtomicU8::new(0),
    });
    Ok((
        StreamSender {
            link: Arc::clone(&link),
            out: Outbound::new(send, config.send_buffer),
            timeout: config.write_timeout,
            timer: SockTimer::new(config.write_timeout),
            linger: config.linger,
            state: SendState::Open,
        },
        StreamReceiver {
            link,
            inbound: Inbound::new(recv, config.message_deadline),
            timeout: config.read_timeout,
            timer: SockTimer::new(config.read_timeout),
            spin: config.spin,
        },
    ))
}

// ---------------------------------------------------------------------------
// Sending

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SendState {
    Open,
    /// Our end was sent (or the conversation was aborted).
    Finished,
}

/// The sending half of a framed stream (TCP, Unix): a bounded queue of
/// framed bytes written with as few system calls as it takes.
///
/// What "taken" means here: a message is taken once any byte of it has been
/// handed to the socket, or once it is queued by `feed`. A `send` whose
/// message had no byte written when its write timeout expired takes the
/// message back and returns [`Error::Timeout`]; otherwise the rest is queued
/// and goes out first next time.
///
/// Dropping it with messages still queued writes them first, waiting at
/// most the linger time (as `BufWriter` does); if they cannot be written in
/// time the connection is reset, so the peer sees an error rather than a
/// clean end after missing messages. Dropping it ends the sending direction.
#[derive(Debug)]
pub struct StreamSender {
    link: Arc<Link>,
    out: Outbound,
    timeout: Option<Duration>,
    timer: SockTimer,
    linger: Duration,
    state: SendState,
}

impl StreamSender {
    #[inline]
    fn check(&self) -> Result<()> {
        self.link.check()?;
        if self.state == SendState::Finished {
            return Err(Error::Closed);
        }
        Ok(())
    }

    #[inline]
    fn frame(&self, msg: &[u8]) -> Result<Frame> {
        self.out.frame(msg).map_err(|e| self.frame_error(e))
    }

    #[cold]
    fn frame_error(&self, e: crate::codec::FrameError) -> Error {
        Error::from_frame(e, &self.link.peer)
    }

    /// `feed` when the queue may be too full for the message: writes first
    /// (a timeout there: not taken), or sends a message larger than the
    /// whole batching buffer at once.
    fn feed_past_the_bound(&mut self, msg: &[u8]) -> Result<()> {
        let frame = self.frame(msg)?;
        if self.out.is_full_for(frame.len) {
            let until = self.until();
            self.write_queue(until)?;
        }
        if frame.len > self.out.limit() {
            let until = self.until();
            return self.write_direct(&frame, msg, until);
        }
        self.out.push(msg).map_err(|e| self.frame_error(e))?;
        Ok(())
    }

    /// When the operation starting now must be over: the write timeout.
    #[inline]
    fn until(&self) -> Option<Instant> {
        self.timeout.map(|t| Instant::now() + t)
    }

    /// Sets `SO_SNDTIMEO` to what is left until `until`; `Err(Timeout)` if
    /// nothing is.
    fn arm(&mut self, until: Option<Instant>) -> Result<()> {
        let left = match until {
            None => None,
            Some(until) => match until.checked_duration_since(Instant::now()) {
                Some(left) if left >= MIN_WAIT => Some(left),
                _ => return Err(Error::Timeout),
            },
        };
        let socket = &self.link.socket;
        self.timer
            .fit(left, true, |t| sockopt::set_write_timeout(socket, t))
            .map_err(|e| Error::from_io(e, &self.link.peer))
    }

    /// What one failed write means: `Ok(())` to retry, `Err(Timeout)` when
    /// time is up (nothing lost), any other error is fatal.
    fn write_error(&mut self, e: io::Error) -> Result<()> {
        match e.kind() {
            io::ErrorKind::Interrupted => Ok(()),
            // A spinning receive left the socket non-blocking: block again.
            io::ErrorKind::WouldBlock if self.link.nonblocking.load(Ordering::Relaxed) => {
                self.link.set_nonblocking(false)
            }
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Err(Error::Timeout),
            _ => {
                self.out.discard();
                Err(self.link.fail(Error::from_io(e, &self.link.peer)))
            }
        }
    }

    /// Writes the queue out, by `until`. `Err(Timeout)` leaves the rest
    /// queued.
    fn write_queue(&mut self, until: Option<Instant>) -> Result<()> {
        while !self.out.is_empty() {
            self.arm(until)?;
            match sockopt::send(&self.link.socket, self.out.pending()) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "the socket took no bytes");
                    return Err(self.link.fail(Error::from_io(e, &self.link.peer)));
                }
                Ok(n) => self.out.advance(n),
                Err(e) => self.write_error(e)?,
            }
        }
        Ok(())
    }

    /// Writes a frame straight from `msg`, by `until`. `Err(Timeout)` only
    /// if no byte of it was written; otherwise the rest is queued and the
    /// message counts as taken.
    fn write_direct(&mut self, frame: &Frame, msg: &[u8], until: Option<Instant>) -> Result<()> {
        let mut written = 0;
        while written < frame.len {
            let parts: [&[u8]; 3] = [&frame.prefix, msg, frame.suffix];
            let mut skip = written;
            let mut slices = [IoSlice::new(&[]); 3];
            for (slot, part) in slices.iter_mut().zip(parts) {
                let take = skip.min(part.len());
                skip -= take;
                *slot = IoSlice::new(&part[take..]);
            }
            let outcome = match self.arm(until) {
                Ok(()) => match sockopt::send_vectored(&self.link.socket, &slices) {
                    Ok(0) => {
                        let e =
                            io::Error::new(io::ErrorKind::WriteZero, "the socket took no bytes");
                        Err(self.link.fail(Error::from_io(e, &self.link.peer)))
                    }
                    Ok(n) => {
                        written += n;
                        Ok(())
                    }
                    Err(e) => self.write_error(e),
                },
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => {}
                Err(Error::Timeout) if written > 0 => {
                    self.out.push_rest(frame, msg, written);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Queues `msg` behind what is queued and writes everything, by
    /// `until`. Takes it back if none of it was written in time.
    fn write_with_queue(
        &mut self,
        frame: &Frame,
        msg: &[u8],
        until: Option<Instant>,
    ) -> Result<()> {
        if self.out.is_full_for(frame.len) {
            // Make room first; on a timeout the message was not taken.
            self.write_queue(until)?;
        }
        let mark = self.out.push(msg).map_err(|e| self.frame_error(e))?;
        match self.write_queue(until) {
            Err(Error::Timeout) if self.out.untake(mark) => Err(Error::Timeout),
            Err(Error::Timeout) => Ok(()), // taken: the rest goes out first next time
            other => other,
        }
    }

    /// Writes what is queued, by `until`; if it cannot, resets the
    /// connection and says how much was never sent.
    fn write_out_or_reset(&mut self, until: Instant) -> Result<()> {
        match self.write_queue(Some(until)) {
            Ok(()) => Ok(()),
            Err(Error::Timeout) => {
                let bytes = self.out.discard() as u64;
                self.reset();
                Err(Error::Unsent {
                    addr: self.link.peer.clone(),
                    bytes,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// The connection is reset when it is closed (`SO_LINGER` 0), and both
    /// halves answer `Closed`.
    fn reset(&mut self) {
        let _ = sockopt::linger_zero(&self.link.socket);
        self.link.down.fetch_or(FAILED, Ordering::Relaxed);
        self.state = SendState::Finished;
    }

    /// The socket, for options this crate does not cover. Reading or writing
    /// it directly breaks the framing.
    pub fn socket_ref(&self) -> &Socket {
        &self.link.socket
    }

    /// Feeds bytes a protocol above encodes itself, straight into the queue
    /// (`len`: how many `encode` appends, at most).
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) fn feed_encoded(
        &mut self,
        len: usize,
        encode: impl FnOnce(&mut bytes::BytesMut),
    ) -> Result<()> {
        self.check()?;
        if self.out.has_room_for(len) {
            self.out.push_encoded(encode);
            return Ok(());
        }
        let mut frame = bytes::BytesMut::with_capacity(len);
        encode(&mut frame);
        self.feed(&frame)
    }
}

impl Sender for StreamSender {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.check()?;
        let frame = self.frame(msg)?;
        let until = self.until();
        if msg.len() <= SMALL {
            return self.write_with_queue(&frame, msg, until);
        }
        // A large message goes straight from the caller's slice, after what
        // is queued (a timeout there: this message was not taken).
        self.write_queue(until)?;
        self.write_direct(&frame, msg, until)
    }

    #[inline]
    fn feed(&mut self, msg: &[u8]) -> Result<()> {
        self.check()?;
        if self.out.has_room_for(msg.len()) {
            // The common case: it fits in the batching buffer.
            return match self.out.push(msg) {
                Ok(_) => Ok(()),
                Err(e) => Err(self.frame_error(e)),
            };
        }
        self.feed_past_the_bound(msg)
    }

    fn flush(&mut self) -> Result<()> {
        self.check()?;
        let until = self.until();
        self.write_queue(until)
    }

    fn queued(&self) -> usize {
        self.out.len()
    }

    fn finish(&mut self, until: Instant) -> Result<()> {
        if self.state == SendState::Finished || self.link.is_down() {
            // A failure (or a stop) was reported when it happened.
            self.state = SendState::Finished;
            return Ok(());
        }
        self.write_out_or_reset(until)?;
        self.state = SendState::Finished;
        let _ = self.link.socket.shutdown(Shutdown::Write);
        Ok(())
    }

    /// The connection is reset when the socket closes (once both halves are
    /// dropped): no shutdown first, which would send a clean end.
    fn abort(&mut self) {
        self.out.discard();
        self.reset();
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.link.peer.clone())
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self.link.local.clone())
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
    }

    fn max_message_len(&self) -> usize {
        self.out.max_message_len()
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(stopper(&self.link))
    }

    #[cfg(unix)]
    fn socket(&self) -> Option<socket2::SockRef<'_>> {
        Some(socket2::SockRef::from(&self.link.socket))
    }
}

impl Drop for StreamSender {
    fn drop(&mut self) {
        if self.state == SendState::Finished || self.link.is_down() {
            return;
        }
        if !self.out.is_empty() {
            let until = Instant::now() + self.linger;
            if self.write_out_or_reset(until).is_err() {
                return;
            }
        }
        let _ = self.link.socket.shutdown(Shutdown::Write);
    }
}

/// A stream conversation taken apart, for a driver that owns its socket
/// (the switchboard): the socket, its addresses, the engines with what they
/// hold, and the linger time.
pub(crate) struct StreamParts {
    pub(crate) socket: Socket,
    pub(crate) local: Addr,
    pub(crate) peer: Addr,
    pub(crate) inbound: Inbound,
    pub(crate) outbound: Outbound,
    pub(crate) linger: Duration,
}

/// Takes a conversation's halves apart. `None` if the socket is shared
/// with anything else (it never is for halves made together).
pub(crate) fn into_parts(mut tx: StreamSender, mut rx: StreamReceiver) -> Option<StreamParts> {
    if !Arc::ptr_eq(&tx.link, &rx.link) || tx.link.is_down() {
        return None;
    }
    let limit = tx.out.limit();
    let outbound = std::mem::replace(
        &mut tx.out,
        Outbound::new(crate::codec::Framing::Raw.codec(1), limit),
    );
    let inbound = std::mem::replace(
        &mut rx.inbound,
        Inbound::new(crate::codec::Framing::Raw.codec(1), Duration::from_secs(1)),
    );
    // Dropped without a word: no flush, no shutdown.
    tx.state = SendState::Finished;
    let linger = tx.linger;
    let link = Arc::clone(&tx.link);
    drop(tx);
    drop(rx);
    let link = Arc::try_unwrap(link).ok()?;
    Some(StreamParts {
        socket: link.socket,
        local: link.local,
        peer: link.peer,
        inbound,
        outbound,
        linger,
    })
}

fn stopper(link: &Arc<Link>) -> Stopper {
    let link = Arc::clone(link);
    Stopper::from_fn(move || link.stop())
}

// ---------------------------------------------------------------------------
// Receiving

/// The receiving half of a framed stream (TCP, Unix): a read buffer cut into
/// messages by the framing.
///
/// * A read timeout in the middle of a message returns [`Error::Timeout`] and
///   the next receive continues the same message: the stream never loses
///   sync.
/// * Once a message has started arriving it must be whole within the
///   per-message deadline, counted from when its first bytes arrived; a
///   message that arrived whole is delivered however late it is received.
/// * [`recv_ref`](Receiver::recv_ref) lends a message straight out of the
///   read buffer.
#[derive(Debug)]
pub struct StreamReceiver {
    link: Arc<Link>,
    inbound: Inbound,
    timeout: Option<Duration>,
    timer: SockTimer,
    /// Latency mode: how long to poll before blocking.
    spin: Option<Duration>,
}

/// What one `read` brought.
enum Got {
    Bytes,
    End,
    Nothing,
}

impl StreamReceiver {
    /// Latency mode: before blocking in a receive, poll the socket without
    /// blocking for up to `spin` (`None`, the default: block at once).
    ///
    /// A message that arrives within the spin is picked up without the
    /// thread being put to sleep and woken again, which on a loaded machine
    /// is most of a loopback round trip. The cost is CPU: the receiving
    /// thread keeps one core at 100% for up to `spin` on every receive that
    /// has to wait. Meant for request/response on one thread: splitting the
    /// conversation turns it off (the spin makes the socket non-blocking,
    /// which a send on another thread must not see).
    pub fn set_spin(&mut self, spin: Option<Duration>) {
        self.spin = spin.filter(|s| !s.is_zero());
    }

    /// The capacity of the read buffer, in bytes: what an idle conversation
    /// holds on to between messages.
    pub fn buffer_capacity(&self) -> usize {
        self.inbound.capacity()
    }

    /// Reads with another codec from now on; what is buffered stays.
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) fn set_codec(&mut self, codec: crate::codec::Codec) {
        self.inbound.set_codec(codec);
    }

    /// The socket, for options this crate does not cover. Reading or writing
    /// it directly breaks the framing.
    pub fn socket_ref(&self) -> &Socket {
        &self.link.socket
    }

    fn error(&self, e: InboundError) -> Error {
        let peer = &self.link.peer;
        let err = match e {
            InboundError::Frame(f) => Error::from_frame(f, peer),
            InboundError::UnexpectedEof => Error::UnexpectedEof { addr: peer.clone() },
            InboundError::Deadline(deadline) => Error::DeadlineExceeded {
                addr: peer.clone(),
                deadline,
            },
        };
        self.link.fail(err)
    }

    /// `Ok(true)`: a message is whole in the buffer. `Ok(false)`: the clean
    /// end. Reads until one of them, the read timeout, or the deadline.
    fn wait_for_message(&mut self) -> Result<bool> {
        let start = Instant::now();
        if let Some(spin) = self.spin {
            match self.spin_read(spin)? {
                Got::Bytes => return Ok(true),
                Got::End => return self.end(),
                Got::Nothing => {}
            }
        }
        self.link.set_nonblocking(false)?;
        let mut tried = false;
        loop {
            let now = Instant::now();
            let user_left = self.timeout.map(|t| t.saturating_sub(now - start));
            let deadline_left = self
                .inbound
                .deadline()
                .map(|at| at.saturating_duration_since(now));
            if tried {
                // Only after a read that found nothing more: a message that
                // is whole in the kernel's buffer is never refused.
                if let Err(e) = self.inbound.check_deadline(now) {
                    return Err(self.error(e));
                }
                if user_left.is_some_and(|l| l < MIN_WAIT) {
                    return Err(Error::Timeout);
                }
            }
            let (wait, exact) = earliest(user_left, deadline_left);
            let socket = &self.link.socket;
            self.timer
                .fit(wait, exact, |t| sockopt::set_read_timeout(socket, t))
                .map_err(|e| Error::from_io(e, &self.link.peer))?;
            match self.read_once()? {
                Got::Bytes => return Ok(true),
                Got::End => return self.end(),
                Got::Nothing => tried = true,
            }
        }
    }

    fn end(&mut self) -> Result<bool> {
        match self.inbound.end() {
            Ok(()) => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Polls without blocking for up to `spin`.
    fn spin_read(&mut self, spin: Duration) -> Result<Got> {
        self.link.set_nonblocking(true)?;
        let until = Instant::now() + spin;
        loop {
            match self.read_once()? {
                Got::Nothing if Instant::now() < until => std::hint::spin_loop(),
                got => return Ok(got),
            }
        }
    }

    /// One `read`.
    fn read_once(&mut self) -> Result<Got> {
        loop {
            let space = self.inbound.space();
            match (&self.link.socket).read(space) {
                // A stop shuts the socket down, which reads as an end.
                Ok(0) if self.link.is_stopped() => return Err(Error::Closed),
                Ok(0) => return Ok(Got::End),
                Ok(n) => {
                    self.inbound.filled(n, Instant::now());
                    return Ok(Got::Bytes);
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => return Ok(Got::Nothing),
                    _ => return Err(self.link.fail(Error::from_io(e, &self.link.peer))),
                },
            }
        }
    }

    /// Whether another message may come: `Ok(false)` after the clean end.
    #[inline]
    fn check(&self) -> Result<bool> {
        match self.inbound.state() {
            State::Open => self.link.check().map(|()| true),
            State::Ended => Ok(false),
            State::Failed => Err(Error::Closed),
        }
    }
}

impl Receiver for StreamReceiver {
    #[inline]
    fn recv(&mut self) -> Result<Option<Bytes>> {
        loop {
            if !self.check()? {
                return Ok(None);
            }
            match self.inbound.next() {
                Ok(Some(msg)) => return Ok(Some(msg)),
                Ok(None) => {}
                Err(e) => return Err(self.error(e)),
            }
            if !self.wait_for_message()? {
                return Ok(None);
            }
        }
    }

    #[inline]
    fn recv_ref<'a>(&'a mut self, _hold: &'a mut Option<Bytes>) -> Result<Option<&'a [u8]>> {
        loop {
            if !self.check()? {
                return Ok(None);
            }
            match self.inbound.lend_next() {
                Ok(true) => return Ok(Some(self.inbound.lent())),
                Ok(false) => {}
                Err(e) => return Err(self.error(e)),
            }
            if !self.wait_for_message()? {
                return Ok(None);
            }
        }
    }

    fn drain(&mut self, until: Instant) -> Result<Delivery> {
        match self.inbound.state() {
            State::Ended => return Ok(Delivery::Confirmed),
            State::Failed => return Ok(Delivery::Unknown),
            State::Open if self.link.is_down() => return Ok(Delivery::Unknown),
            State::Open => {}
        }
        let _ = self.link.set_nonblocking(false);
        self.timer.invalidate();
        let mut scratch = [0u8; 4096];
        loop {
            // At least one short read, to see an end that has already come.
            let left = until
                .saturating_duration_since(Instant::now())
                .max(MIN_WAIT);
            if sockopt::set_read_timeout(&self.link.socket, Some(left)).is_err() {
                return Ok(Delivery::Unknown);
            }
            match (&self.link.socket).read(&mut scratch) {
                Ok(0) if self.link.is_stopped() => return Ok(Delivery::Unknown),
                Ok(0) => {
                    let _ = self.inbound.end();
                    return Ok(Delivery::Confirmed);
                }
                Ok(_) if Instant::now() >= until => return Ok(Delivery::Unknown),
                Ok(_) => {}
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        return Ok(Delivery::Unknown)
                    }
                    _ if self.link.is_stopped() => return Ok(Delivery::Unknown),
                    _ => return Err(self.link.fail(Error::from_io(e, &self.link.peer))),
                },
            }
        }
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.link.peer.clone())
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self.link.local.clone())
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = check_timeout("read_timeout", timeout)?;
        Ok(())
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn set_message_deadline(&mut self, deadline: Duration) -> Result<()> {
        self.inbound
            .set_deadline(crate::config::check_deadline(deadline)?);
        Ok(())
    }

    fn max_message_len(&self) -> usize {
        self.inbound.max_message_len()
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(stopper(&self.link))
    }

    fn on_split(&mut self) {
        self.spin = None;
        let _ = self.link.set_nonblocking(false);
    }
}
