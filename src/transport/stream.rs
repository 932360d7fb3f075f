//! A framed byte stream (TCP or a Unix stream socket): the reading and
//! writing machinery both share.

use std::io::{self, IoSlice, Read};
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use socket2::Socket;

use super::sockopt;
use super::timer::{self, RecvTimer, Wait};
use super::{check_timeout, Transport, TransportRecv, TransportSend};
use crate::addr::Addr;
use crate::codec::{cut, Codec, Parse, Prefix, READ_STEP};
use crate::config::Config;
use crate::error::{Error, Result};

/// The read buffer of an idle conversation: 8 KiB.
const INITIAL_READ: usize = 8 * 1024;
/// Below this much free space, the read buffer is regrown before reading.
const MIN_FREE: usize = 512;
/// Messages up to this size are sent from one contiguous buffer (a copy of
/// a few bytes) rather than from two slices: the kernel handles one slice
/// faster, which shows in round trips.
const SMALL: usize = 2048;
/// After a message larger than this, the read buffer is given back and a
/// small one is started, so one large message does not pin memory forever.
const SHRINK_AFTER: usize = 4 * READ_STEP;

/// The socket and what is known of it, shared by the two halves.
#[derive(Debug)]
struct Shared {
    stream: Socket,
    local: Addr,
    peer: Addr,
    /// `O_NONBLOCK` is on (set by a spinning receive, see [`Tcp::set_spin`](super::Tcp::set_spin)).
    nonblocking: AtomicBool,
}

impl Shared {
    fn set_nonblocking(&self, on: bool) -> Result<()> {
        if self.nonblocking.load(Ordering::Relaxed) != on {
            self.stream
                .set_nonblocking(on)
                .map_err(|e| Error::from_io(e, &self.peer))?;
            self.nonblocking.store(on, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// A framed stream: see [`Tcp`](super::Tcp) for what it does.
#[derive(Debug)]
pub(crate) struct Stream {
    reader: Reader,
    writer: Writer,
    linger: Duration,
    closed: bool,
}

impl Stream {
    /// Wraps a connected stream socket, applying `config`'s timeouts.
    pub(crate) fn new(stream: Socket, local: Addr, peer: Addr, config: &Config) -> Result<Stream> {
        sockopt::stream(&stream, config).map_err(|e| Error::from_io(e, &peer))?;
        let shared = Arc::new(Shared {
            stream,
            local,
            peer,
            nonblocking: AtomicBool::new(false),
        });
        let codec = config.framing.codec(config.max_message_len);
        Ok(Stream {
            reader: Reader {
                shared: Arc::clone(&shared),
                codec: codec.clone(),
                buf: BytesMut::new(),
                filled: 0,
                read_size: INITIAL_READ,
                timeout: config.read_timeout,
                timer: RecvTimer::new(config.read_timeout),
                deadline: config.message_deadline,
                spin: config.spin,
                started: None,
                state: ReadState::Open,
            },
            writer: Writer {
                shared,
                codec,
                pending: BytesMut::new(),
                limit: config.send_buffer,
                timeout: config.write_timeout,
                closed: false,
            },
            linger: config.linger,
            closed: false,
        })
    }

    /// The socket.
    pub(crate) fn socket(&self) -> &Socket {
        &self.reader.shared.stream
    }

    /// See [`Tcp::set_spin`](super::Tcp::set_spin).
    pub(crate) fn set_spin(&mut self, spin: Option<Duration>) {
        self.reader.spin = spin.filter(|s| !s.is_zero());
    }

    /// The capacity of the read buffer.
    pub(crate) fn read_buffer_capacity(&self) -> usize {
        self.reader.buf.capacity()
    }
}

impl Transport for Stream {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.check_open()?;
        self.writer.send(msg)
    }

    #[inline]
    fn feed(&mut self, msg: &[u8]) -> Result<()> {
        self.check_open()?;
        self.writer.feed(msg)
    }

    fn flush(&mut self) -> Result<()> {
        self.check_open()?;
        self.writer.flush()
    }

    #[inline]
    fn recv(&mut self) -> Result<Option<Bytes>> {
        self.check_open()?;
        self.reader.recv()
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self.reader.shared.local.clone())
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.reader.shared.peer.clone())
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.reader.set_timeout(timeout)
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.reader.timeout
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.writer.set_timeout(timeout)
    }

    fn write_timeout(&self) -> Option<Duration> {
        self.writer.timeout
    }

    /// Flushes, shuts down the write side, then reads and discards until the
    /// peer's end or the linger time ([`Config::linger`], default 5 s), and
    /// only then closes. Closing a socket that still has unread data makes
    /// the kernel send a reset that can destroy data the peer has not read
    /// yet; draining first is what makes this close lose nothing.
    fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let flushed = self.writer.close();
        if self.reader.state == ReadState::Open {
            self.reader.drain(self.linger);
        }
        let _ = self.reader.shared.stream.shutdown(Shutdown::Both);
        flushed
    }

    /// Sets `SO_LINGER` to 0: dropping the transport then resets the
    /// connection at once, discarding unsent data. Further use fails with
    /// [`Error::Closed`].
    fn abort(&mut self) -> Result<()> {
        self.closed = true;
        let shared = &self.reader.shared;
        sockopt::linger_zero(&shared.stream).map_err(|e| Error::from_io(e, &shared.peer))
    }

    fn max_message_len(&self) -> usize {
        self.reader.codec.max_message_len()
    }

    fn is_stream(&self) -> bool {
        true
    }

    fn split(self: Box<Self>) -> Result<(Box<dyn TransportSend>, Box<dyn TransportRecv>)> {
        self.check_open()?;
        let Stream {
            mut reader, writer, ..
        } = *self;
        reader.spin = None;
        reader.shared.set_nonblocking(false)?;
        Ok((Box::new(writer), Box::new(reader)))
    }
}

impl Stream {
    #[inline]
    fn check_open(&self) -> Result<()> {
        if self.closed {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadState {
    Open,
    /// The peer's clean end was seen.
    Ended,
    /// A fatal error was returned; the socket is shut.
    Failed,
}

/// The receiving half: the read buffer and the codec.
///
/// `buf[..filled]` holds received bytes not yet returned; `buf[filled..]` is
/// initialised scratch space that the next `read` fills, so the buffer is
/// zeroed once per byte of stream rather than once per read.
#[derive(Debug)]
struct Reader {
    shared: Arc<Shared>,
    codec: Codec,
    buf: BytesMut,
    filled: usize,
    /// How much free space a read is offered; grows while reads fill it.
    read_size: usize,
    /// The user's read timeout.
    timeout: Option<Duration>,
    /// `SO_RCVTIMEO`, set lazily to spare system calls.
    timer: RecvTimer,
    deadline: Duration,
    /// Latency mode: how long to poll before blocking.
    spin: Option<Duration>,
    /// When the message now arriving was first seen incomplete.
    started: Option<Instant>,
    state: ReadState,
}

impl Reader {
    /// The fast path: a whole message already in the buffer.
    #[inline]
    fn recv(&mut self) -> Result<Option<Bytes>> {
        if self.state == ReadState::Open {
            if let Ok(Parse::Frame {
                start,
                end,
                consumed,
            }) = self.codec.parse(&self.buf[..self.filled])
            {
                return Ok(Some(self.take(start, end, consumed)));
            }
        }
        self.recv_slow()
    }

    /// Cuts the message the codec found out of the buffer.
    #[inline]
    fn take(&mut self, start: usize, end: usize, consumed: usize) -> Bytes {
        let msg = cut(&mut self.buf, start, end, consumed);
        self.filled -= consumed;
        self.started = None;
        if consumed > SHRINK_AFTER {
            self.restart_buffer(INITIAL_READ);
        }
        msg
    }

    fn recv_slow(&mut self) -> Result<Option<Bytes>> {
        match self.state {
            ReadState::Open => {}
            ReadState::Ended => return Ok(None),
            ReadState::Failed => return Err(Error::Closed),
        }
        loop {
            match self.codec.parse(&self.buf[..self.filled]) {
                Ok(Parse::Frame {
                    start,
                    end,
                    consumed,
                }) => return Ok(Some(self.take(start, end, consumed))),
                Ok(Parse::Incomplete { needed }) => {
                    if !self.fill(needed)? {
                        return Ok(None);
                    }
                }
                Err(e) => {
                    let err = Error::from_frame(e, &self.shared.peer);
                    return Err(self.fail(err));
                }
            }
        }
    }

    /// Reads at least one more byte. `Ok(false)`: the peer's clean end.
    fn fill(&mut self, needed: usize) -> Result<bool> {
        // Grow at most as far ahead as what has arrived (and at most a read
        // step): a header that declares 8 MiB costs what actually comes.
        self.make_room(needed.min(READ_STEP).min(self.filled.max(self.read_size)));
        if self.filled > 0 && self.started.is_none() {
            self.started = Some(Instant::now());
        }
        if let Some(spin) = self.spin {
            if let Some(got) = self.spin_read(spin)? {
                return Ok(got);
            }
        }
        self.shared.set_nonblocking(false)?;
        let wait_start = self.timeout.map(|_| Instant::now());
        let mut woke = false;
        loop {
            let deadline_left = self.started.map(|s| timer::left(self.deadline, s));
            let stream = &self.shared.stream;
            let wait = self
                .timer
                .next_wait(self.timeout, wait_start, woke, deadline_left, |t| {
                    sockopt::set_read_timeout(stream, t)
                })
                .map_err(|e| Error::from_io(e, &self.shared.peer))?;
            match wait {
                Wait::Go => {}
                Wait::UserTimeout => return Err(Error::Timeout),
                Wait::LimitReached => {
                    let err = Error::DeadlineExceeded {
                        addr: self.shared.peer.clone(),
                        deadline: self.deadline,
                    };
                    return Err(self.fail(err));
                }
            }
            match self.read_once()? {
                Some(got) => return Ok(got),
                None => woke = true,
            }
        }
    }

    /// Polls without blocking for up to `spin`. `Ok(None)`: nothing came.
    fn spin_read(&mut self, spin: Duration) -> Result<Option<bool>> {
        self.shared.set_nonblocking(true)?;
        let until = Instant::now() + spin;
        loop {
            if let Some(got) = self.read_once()? {
                return Ok(Some(got));
            }
            if Instant::now() >= until {
                return Ok(None);
            }
            std::hint::spin_loop();
        }
    }

    /// One `read`: `Some(true)` bytes arrived, `Some(false)` the clean end,
    /// `None` nothing yet (a timeout, or nothing to read without blocking).
    fn read_once(&mut self) -> Result<Option<bool>> {
        let space = self.buf.len() - self.filled;
        loop {
            match (&self.shared.stream).read(&mut self.buf[self.filled..]) {
                Ok(0) if self.filled == 0 => {
                    self.state = ReadState::Ended;
                    return Ok(Some(false));
                }
                Ok(0) => {
                    let err = Error::UnexpectedEof {
                        addr: self.shared.peer.clone(),
                    };
                    return Err(self.fail(err));
                }
                Ok(n) => {
                    self.filled += n;
                    if n == space && self.read_size < READ_STEP {
                        self.read_size *= 2;
                    }
                    return Ok(Some(true));
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => return Ok(None),
                    _ => {
                        let err = Error::from_io(e, &self.shared.peer);
                        return Err(self.fail(err));
                    }
                },
            }
        }
    }

    /// Makes sure at least `want` bytes of scratch space follow the received
    /// bytes, without ever reserving a declared length up front.
    fn make_room(&mut self, want: usize) {
        let free = self.buf.len() - self.filled;
        if free >= want.max(MIN_FREE) {
            return;
        }
        let target = want.max(self.read_size);
        self.buf.truncate(self.filled);
        if self.buf.capacity() > SHRINK_AFTER && self.filled + target < self.buf.capacity() / 4 {
            self.restart_buffer(target);
        } else {
            self.buf.reserve(target);
        }
        self.buf.resize(self.filled + target, 0);
    }

    /// Moves the received bytes into a fresh buffer of about `space` free
    /// bytes, giving a large allocation back.
    fn restart_buffer(&mut self, space: usize) {
        let mut fresh = BytesMut::with_capacity(self.filled + space);
        fresh.extend_from_slice(&self.buf[..self.filled]);
        self.buf = fresh;
        self.read_size = INITIAL_READ;
    }

    /// Records a fatal error: the stream cannot be resynchronised, so the
    /// socket is shut and later receives fail.
    fn fail(&mut self, err: Error) -> Error {
        self.state = ReadState::Failed;
        self.buf = BytesMut::new();
        self.filled = 0;
        let _ = self.shared.stream.shutdown(Shutdown::Both);
        err
    }

    /// Reads and discards until the peer's end, an error, or `linger` passes.
    fn drain(&mut self, linger: Duration) {
        let _ = self.shared.set_nonblocking(false);
        let until = Instant::now() + linger;
        let mut scratch = [0u8; 4096];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || sockopt::set_read_timeout(&self.shared.stream, Some(left)).is_err()
            {
                break;
            }
            match (&self.shared.stream).read(&mut scratch) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.timer.invalidate();
        self.state = ReadState::Ended;
        self.filled = 0;
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = check_timeout(timeout, &self.shared.peer)?;
        Ok(())
    }
}

impl TransportRecv for Reader {
    fn recv(&mut self) -> Result<Option<Bytes>> {
        Reader::recv(self)
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.shared.peer.clone())
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.set_timeout(timeout)
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

/// The sending half: the codec and a bounded batching buffer.
///
/// The contract of every sending call: `Ok` means the message was taken (it
/// reaches the peer unless the connection fails); [`Error::Timeout`] means
/// nothing of it was taken, and sending it again is right. A message whose
/// first bytes went out before a timeout is taken: its remainder waits in
/// `pending` and goes out first, so the stream never loses sync.
#[derive(Debug)]
struct Writer {
    shared: Arc<Shared>,
    codec: Codec,
    /// Taken bytes not yet written.
    pending: BytesMut,
    /// The batching limit for `pending`.
    limit: usize,
    timeout: Option<Duration>,
    closed: bool,
}

impl Writer {
    /// The prefix of `msg`, or why it cannot be sent (nothing is written).
    #[inline]
    fn prefix(&self, msg: &[u8]) -> Result<Prefix> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.codec
            .prefix(msg)
            .map_err(|e| Error::from_frame(e, &self.shared.peer))
    }

    #[inline]
    fn append(&mut self, prefix: &[u8], msg: &[u8]) {
        let suffix = self.codec.suffix();
        self.pending
            .reserve(prefix.len() + msg.len() + suffix.len());
        self.pending.extend_from_slice(prefix);
        self.pending.extend_from_slice(msg);
        self.pending.extend_from_slice(suffix);
    }

    fn send(&mut self, msg: &[u8]) -> Result<()> {
        let prefix = self.prefix(msg)?;
        let frame_len = prefix.len() + msg.len() + self.codec.suffix().len();
        if msg.len() <= SMALL || !self.pending.is_empty() {
            if self.pending.len() + frame_len <= self.limit {
                let mark = self.pending.len();
                self.append(&prefix, msg);
                return self.flush_from(mark);
            }
            self.flush()?;
        }
        self.write_frame(&prefix, msg)
    }

    #[inline]
    fn feed(&mut self, msg: &[u8]) -> Result<()> {
        let prefix = self.prefix(msg)?;
        let frame_len = prefix.len() + msg.len() + self.codec.suffix().len();
        if self.pending.len() + frame_len > self.limit {
            self.flush()?;
            if frame_len > self.limit {
                return self.write_frame(&prefix, msg);
            }
        }
        self.append(&prefix, msg);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let all = self.pending.len();
        self.flush_from(all)
    }

    /// Writes `pending` out. Bytes from `mark` on belong to a message taken
    /// by this very call: if a timeout strikes before any of them was written,
    /// they are removed again and the message counts as not taken.
    fn flush_from(&mut self, mark: usize) -> Result<()> {
        let mut written = 0;
        while written < self.pending.len() {
            match sockopt::send(&self.shared.stream, &self.pending[written..]) {
                Ok(0) => {
                    let err = io::Error::new(io::ErrorKind::WriteZero, "the socket took no bytes");
                    return Err(self.write_failed(written, Error::from_io(err, &self.shared.peer)));
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.spun_into_nonblocking(&e) => {
                    if let Err(err) = self.shared.set_nonblocking(false) {
                        return Err(self.write_failed(written, err));
                    }
                }
                Err(e) => {
                    let err = Error::from_io(e, &self.shared.peer);
                    if err.is_timeout() && written <= mark {
                        self.pending.truncate(mark);
                    }
                    return Err(self.write_failed(written, err));
                }
            }
        }
        self.pending.clear();
        Ok(())
    }

    /// `true` when a send would block only because a spinning receive left
    /// the socket non-blocking: the send switches to blocking and retries.
    fn spun_into_nonblocking(&self, err: &io::Error) -> bool {
        err.kind() == io::ErrorKind::WouldBlock && self.shared.nonblocking.load(Ordering::Relaxed)
    }

    fn write_failed(&mut self, written: usize, err: Error) -> Error {
        let _ = self.pending.split_to(written.min(self.pending.len()));
        err
    }

    /// Writes one frame straight from the caller's buffer: prefix, payload
    /// and suffix in one vectored system call, the payload not copied.
    fn write_frame(&mut self, prefix: &[u8], msg: &[u8]) -> Result<()> {
        let parts = [prefix, msg, self.codec.suffix()];
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut written = 0;
        while written < total {
            // The parts not yet (wholly) written.
            let mut skip = written;
            let mut slices = Vec::with_capacity(3);
            for part in parts {
                if skip >= part.len() {
                    skip -= part.len();
                } else {
                    slices.push(IoSlice::new(&part[skip..]));
                    skip = 0;
                }
            }
            match sockopt::send_vectored(&self.shared.stream, &slices) {
                Ok(0) => {
                    let err = io::Error::new(io::ErrorKind::WriteZero, "the socket took no bytes");
                    return Err(Error::from_io(err, &self.shared.peer));
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if self.spun_into_nonblocking(&e) => self.shared.set_nonblocking(false)?,
                Err(e) => {
                    let err = Error::from_io(e, &self.shared.peer);
                    if err.is_timeout() && written > 0 {
                        // Taken: keep the rest, to go out before anything else.
                        for slice in &slices {
                            self.pending.extend_from_slice(slice);
                        }
                        return Ok(());
                    }
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        let timeout = check_timeout(timeout, &self.shared.peer)?;
        sockopt::set_write_timeout(&self.shared.stream, timeout)
            .map_err(|e| Error::from_io(e, &self.shared.peer))?;
        self.timeout = timeout;
        Ok(())
    }

    /// Flushes and shuts down the write side: the peer sees the clean end
    /// after every message sent.
    fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        let flushed = self.flush();
        self.closed = true;
        match self.shared.stream.shutdown(Shutdown::Write) {
            Err(e) if e.kind() != io::ErrorKind::NotConnected && flushed.is_ok() => {
                Err(Error::from_io(e, &self.shared.peer))
            }
            _ => flushed,
        }
    }
}

impl TransportSend for Writer {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        Writer::send(self, msg)
    }

    fn feed(&mut self, msg: &[u8]) -> Result<()> {
        Writer::feed(self, msg)
    }

    fn flush(&mut self) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        Writer::flush(self)
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.shared.peer.clone())
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.set_timeout(timeout)
    }

    fn write_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn close(&mut self) -> Result<()> {
        Writer::close(self)
    }
}
