//! The receiving side of a framed byte stream: a read buffer, a codec and
//! the per-message deadline, as a state machine with no socket in it.
//!
//! A driver (the blocking receive, or the selector) asks for [`space`],
//! reads into it, reports what it read with [`filled`] (and when), and takes
//! messages out with [`next`] or [`next_ref`]. The deadline of a message
//! counts from when its first bytes *arrived*, which only the driver knows,
//! so time is an argument of `filled` and of [`check_deadline`]; nothing
//! here reads a clock.
//!
//! [`space`]: Inbound::space
//! [`filled`]: Inbound::filled
//! [`next`]: Inbound::next
//! [`next_ref`]: Inbound::next_ref
//! [`check_deadline`]: Inbound::check_deadline

use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use crate::codec::{cut, Codec, FrameError, Parse};

/// What cuts a stream into its units: messages of a framing, or a protocol
/// above the stream's own units (an HTTP head, WebSocket frames, NATS
/// operations), each checked against its limit before anything is kept.
#[derive(Clone, Debug)]
pub(crate) enum Cutter {
    /// Messages of a framing.
    Framing(Codec),
    /// An HTTP head, through its blank line (the WebSocket upgrade);
    /// `scanned`: how much was searched already.
    #[cfg(feature = "ws")]
    HttpHead { scanned: usize },
    /// Whole WebSocket frames whose data payloads are at most `max`;
    /// `masked`: what this direction requires.
    #[cfg(feature = "ws")]
    WsFrames { masked: bool, max: usize },
    /// Whole NATS server operations whose payloads are at most `max`.
    #[cfg(feature = "nats")]
    NatsOps { max: usize },
}

impl Cutter {
    /// The length-prefixed framing, if this cuts one.
    #[inline(always)]
    fn length(&self) -> Option<&crate::codec::LengthDelimited> {
        match self {
            Cutter::Framing(codec) => codec.length(),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    #[inline(always)]
    fn parse(&mut self, buf: &[u8]) -> Result<Parse, FrameError> {
        match self {
            Cutter::Framing(codec) => codec.parse(buf),
            #[cfg(feature = "ws")]
            Cutter::HttpHead { scanned } => crate::ws::upgrade::cut_head(buf, scanned)
                .map_err(|_| FrameError::Invalid("an HTTP head over 16 KiB")),
            #[cfg(feature = "ws")]
            Cutter::WsFrames { masked, max } => crate::ws::frames::cut_frame(buf, *masked, *max)
                .map_err(|fault| match fault {
                    crate::ws::frames::FrameFault::Invalid(why) => FrameError::Invalid(why),
                    crate::ws::frames::FrameFault::TooLarge { len, max } => {
                        FrameError::TooLarge { len, max }
                    }
                }),
            #[cfg(feature = "nats")]
            Cutter::NatsOps { max } => match crate::nats::ops::cut_op(buf, *max) {
                Ok(crate::nats::ops::Cut::Whole(n)) => Ok(Parse::Frame {
                    start: 0,
                    end: n,
                    consumed: n,
                }),
                Ok(crate::nats::ops::Cut::Need(needed)) => Ok(Parse::Incomplete { needed }),
                Err(fault) => Err(crate::nats::fault(fault)),
            },
        }
    }

    /// The largest unit.
    fn max(&self) -> usize {
        match self {
            Cutter::Framing(codec) => codec.max_message_len(),
            #[cfg(feature = "ws")]
            Cutter::HttpHead { .. } => crate::ws::upgrade::MAX_HEAD,
            #[cfg(feature = "ws")]
            Cutter::WsFrames { max, .. } => *max,
            #[cfg(feature = "nats")]
            Cutter::NatsOps { max } => *max,
        }
    }
}

/// The read buffer of an idle conversation: 8 KiB.
pub(crate) const INITIAL_READ: usize = 8 * 1024;
/// How far ahead of the bytes already received the buffer may grow while a
/// large message arrives: 64 KiB.
pub(crate) const READ_STEP: usize = 64 * 1024;
/// Below this much free space, the buffer is regrown before reading.
const MIN_FREE: usize = 512;
/// After a message larger than this, the buffer is given back and a small
/// one is started, so one large message does not pin memory forever.
const SHRINK_AFTER: usize = 4 * READ_STEP;

/// Why the stream cannot go on. Every one of these ends the conversation:
/// a stream cannot be resynchronised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum InboundError {
    /// The bytes broke the framing (or declared a message over the limit).
    Frame(FrameError),
    /// The peer's end came in the middle of a message.
    UnexpectedEof,
    /// A message started arriving but was not whole within the deadline.
    Deadline(Duration),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Open,
    /// The peer's clean end was seen, after the last whole message.
    Ended,
    /// An error was returned; nothing more comes out.
    Failed,
}

/// See the module docs.
///
/// `buf[head..filled]` holds received bytes not yet handed out;
/// `buf[..head]` was lent out and is cut off lazily, when room is made (so a
/// lent message costs no change to the buffer's bookkeeping); `buf[filled..]`
/// is initialised scratch space that the next read fills, so the buffer is
/// zeroed once per byte of stream rather than once per read.
#[derive(Debug)]
pub(crate) struct Inbound {
    codec: Cutter,
    buf: BytesMut,
    head: usize,
    filled: usize,
    /// How much free space a read is offered; grows while reads fill it.
    read_size: usize,
    /// What the codec said was missing, at least 1.
    needed: usize,
    deadline: Duration,
    /// When the first bytes of the message now arriving came in.
    started: Option<Instant>,
    /// When the last read brought bytes.
    last_fill: Option<Instant>,
    /// The frame lent out by `lend_next`, cut off by the next call.
    lent: usize,
    /// Where the lent message lies in the buffer.
    lent_payload: (usize, usize),
    state: State,
}

impl Inbound {
    pub(crate) fn new(codec: Cutter, deadline: Duration) -> Inbound {
        Inbound {
            codec,
            buf: BytesMut::new(),
            head: 0,
            filled: 0,
            read_size: INITIAL_READ,
            needed: 1,
            deadline,
            started: None,
            last_fill: None,
            lent: 0,
            lent_payload: (0, 0),
            state: State::Open,
        }
    }

    pub(crate) fn state(&self) -> State {
        self.state
    }

    pub(crate) fn max_message_len(&self) -> usize {
        self.codec.max()
    }

    /// Cuts with `codec` from now on (a protocol that changes framing
    /// after its handshake); what is buffered stays.
    #[cfg_attr(not(any(feature = "ws", feature = "nats")), allow(dead_code))]
    pub(crate) fn set_codec(&mut self, codec: Cutter) {
        self.return_lent();
        self.codec = codec;
        self.needed = 1;
    }

    pub(crate) fn set_deadline(&mut self, deadline: Duration) {
        self.deadline = deadline;
    }

    /// The capacity of the read buffer: what an idle conversation holds.
    pub(crate) fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Bytes received and not handed out yet.
    pub(crate) fn buffered(&self) -> usize {
        self.filled - self.head - self.lent
    }

    /// Ends the loan of the frame lent by `lend_next`.
    #[inline]
    fn return_lent(&mut self) {
        if self.lent > 0 {
            let lent = std::mem::take(&mut self.lent);
            self.head += lent;
            self.after_message(lent);
        }
    }

    /// Cuts off what was lent out, so the buffer starts with what is left.
    #[inline]
    fn compact(&mut self) {
        if self.head > 0 {
            self.buf.advance(self.head);
            self.filled -= self.head;
            self.head = 0;
        }
    }

    /// Bookkeeping after a frame of `consumed` bytes left the buffer.
    #[inline]
    fn after_message(&mut self, consumed: usize) {
        // What is left arrived with the last read at the latest.
        self.started = if self.filled > self.head {
            self.last_fill
        } else {
            None
        };
        self.needed = 1;
        if consumed > SHRINK_AFTER {
            self.restart_buffer(INITIAL_READ);
        }
    }

    /// The next whole message, cut out of the buffer without copying.
    /// `Ok(None)`: more bytes are needed (or the stream has ended: see
    /// [`state`](Self::state)).
    #[inline]
    pub(crate) fn next(&mut self) -> Result<Option<Bytes>, InboundError> {
        self.return_lent();
        if let Some((start, consumed)) = self.whole_length_frame() {
            self.compact();
            let msg = cut(&mut self.buf, start, consumed, consumed);
            self.filled -= consumed;
            self.after_message(consumed);
            return Ok(Some(msg));
        }
        match self.parse()? {
            Some((start, end, consumed)) => {
                self.compact();
                let msg = cut(&mut self.buf, start, end, consumed);
                self.filled -= consumed;
                self.after_message(consumed);
                Ok(Some(msg))
            }
            None => Ok(None),
        }
    }

    /// Lends the next whole message, if there is one (see
    /// [`lent`](Self::lent)): it stays in the buffer until the next call on
    /// this engine cuts it off. No reference count, no allocation.
    #[inline]
    pub(crate) fn lend_next(&mut self) -> Result<bool, InboundError> {
        if self.lend_whole() {
            return Ok(true);
        }
        match self.parse()? {
            Some((start, end, consumed)) => {
                self.lent = consumed;
                self.lent_payload = (self.head + start, self.head + end);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The common case of [`lend_next`](Self::lend_next) alone, for the
    /// receive loop to try first: a whole frame of a length-prefixed
    /// framing at the front is lent (`true`); anything else is left for
    /// `lend_next` (`false`).
    #[inline(always)]
    pub(crate) fn lend_whole(&mut self) -> bool {
        self.return_lent();
        match self.whole_length_frame() {
            Some((start, consumed)) => {
                self.lent = consumed;
                self.lent_payload = (self.head + start, self.head + consumed);
                true
            }
            None => false,
        }
    }

    /// The message lent by the last [`lend_next`](Self::lend_next) that
    /// returned `true`.
    #[inline]
    pub(crate) fn lent(&self) -> &[u8] {
        let (start, end) = self.lent_payload;
        &self.buf[start..end]
    }

    /// [`lend_next`](Self::lend_next) and [`lent`](Self::lent) in one.
    #[cfg(test)]
    pub(crate) fn next_ref(&mut self) -> Result<Option<&[u8]>, InboundError> {
        Ok(if self.lend_next()? {
            Some(self.lent())
        } else {
            None
        })
    }

    /// The common case, cut without building a [`Parse`]: a whole frame
    /// of a length-prefixed framing at the front, within the limit (where
    /// its payload starts, and its length on the wire). Everything else,
    /// errors included, is [`parse`](Self::parse)'s.
    #[inline(always)]
    fn whole_length_frame(&self) -> Option<(usize, usize)> {
        if self.state != State::Open {
            return None;
        }
        let c = self.codec.length()?;
        let consumed = c.whole_frame(&self.buf[self.head..self.filled])?;
        Some((c.header_len(), consumed))
    }

    #[inline(always)]
    fn parse(&mut self) -> Result<Option<(usize, usize, usize)>, InboundError> {
        if self.state != State::Open {
            return Ok(None);
        }
        match self.codec.parse(&self.buf[self.head..self.filled]) {
            Ok(Parse::Frame {
                start,
                end,
                consumed,
            }) => Ok(Some((start, end, consumed))),
            Ok(Parse::Incomplete { needed }) => {
                self.needed = needed;
                Ok(None)
            }
            Err(e) => Err(self.fail(InboundError::Frame(e))),
        }
    }

    /// Free space to read into: at least 512 bytes, grown at most as far
    /// ahead as what has arrived (and at most 64 KiB), so a header that
    /// declares 8 MiB costs what actually comes, never the declared length.
    pub(crate) fn space(&mut self) -> &mut [u8] {
        self.return_lent();
        let want = self
            .needed
            .min(READ_STEP)
            .min(self.filled.max(self.read_size));
        self.make_room(want);
        &mut self.buf[self.filled..]
    }

    /// Records that a read put `n` bytes (at least 1) at the front of
    /// [`space`](Self::space), at `now`.
    pub(crate) fn filled(&mut self, n: usize, now: Instant) {
        debug_assert!(n > 0 && self.filled + n <= self.buf.len());
        let space = self.buf.len() - self.filled;
        self.filled += n;
        if n == space && self.read_size < READ_STEP {
            self.read_size *= 2;
        }
        self.last_fill = Some(now);
        if self.started.is_none() {
            self.started = Some(now);
        }
    }

    /// Decodes the messages in `bytes`, read at `now` into a buffer that is
    /// not this engine's (a scratch buffer shared by many conversations),
    /// and hands each to `emit`. When nothing is buffered here, whole
    /// messages are copied straight out of `bytes`; only the start of a
    /// message still arriving is kept. So an idle conversation holds no read
    /// buffer at all.
    pub(crate) fn decode_from(
        &mut self,
        bytes: &[u8],
        now: Instant,
        mut emit: impl FnMut(Bytes),
    ) -> Result<(), InboundError> {
        if self.state != State::Open {
            return Ok(());
        }
        let mut at = 0;
        if self.buffered() == 0 {
            self.return_lent();
            while at < bytes.len() {
                match self.codec.parse(&bytes[at..]) {
                    Ok(Parse::Frame {
                        start,
                        end,
                        consumed,
                    }) => {
                        emit(Bytes::copy_from_slice(&bytes[at + start..at + end]));
                        at += consumed;
                    }
                    Ok(Parse::Incomplete { needed }) => {
                        self.needed = needed;
                        break;
                    }
                    Err(e) => return Err(self.fail(InboundError::Frame(e))),
                }
            }
        }
        if at < bytes.len() {
            self.extend(&bytes[at..], now);
            while let Some(msg) = self.next()? {
                emit(msg);
            }
        }
        Ok(())
    }

    /// Gives the read buffer back when nothing is buffered (an idle
    /// conversation then holds none).
    pub(crate) fn release_if_empty(&mut self) {
        if self.buffered() == 0 && self.lent == 0 && self.buf.capacity() > 0 {
            self.buf = BytesMut::new();
            self.head = 0;
            self.filled = 0;
            self.read_size = INITIAL_READ;
        }
    }

    /// Copies `bytes` in, as if read at `now` (for carriers that hand out
    /// bytes rather than read into a buffer).
    pub(crate) fn extend(&mut self, bytes: &[u8], now: Instant) {
        if bytes.is_empty() || self.state != State::Open {
            return;
        }
        self.return_lent();
        // The buffer grows by exactly what came (never by a declared
        // length), and no scratch space is zeroed first.
        self.buf.truncate(self.filled);
        if self.head > 0 && self.filled - self.head <= self.head {
            // What is left of the messages taken is no more than they
            // were: it moves to the front now, while that is cheap (each
            // byte moves at most about once), and the buffer is reused
            // from its start rather than grown.
            self.buf.copy_within(self.head..self.filled, 0);
            self.filled -= self.head;
            self.head = 0;
            self.buf.truncate(self.filled);
        } else if self.head > 0 && self.buf.capacity() - self.filled < bytes.len() {
            self.compact();
        }
        self.buf.extend_from_slice(bytes);
        self.filled += bytes.len();
        self.last_fill = Some(now);
        if self.started.is_none() {
            self.started = Some(now);
        }
    }

    /// The peer's end arrived. Clean between messages; in the middle of one
    /// it is [`InboundError::UnexpectedEof`]. Call it only once every whole
    /// message has been taken out.
    pub(crate) fn end(&mut self) -> Result<(), InboundError> {
        self.return_lent();
        if self.state != State::Open {
            return Ok(());
        }
        if self.filled == self.head {
            self.state = State::Ended;
            self.buf = BytesMut::new();
            Ok(())
        } else {
            Err(self.fail(InboundError::UnexpectedEof))
        }
    }

    /// Gives the message under way `by` more time (its reading was paused
    /// that long).
    pub(crate) fn postpone(&mut self, by: Duration) {
        if let Some(s) = &mut self.started {
            *s = s.checked_add(by).unwrap_or(*s);
        }
    }

    /// When the message now arriving must be whole: its first bytes' arrival
    /// plus the deadline. `None` when no message is under way.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Open if self.buffered() > 0 => self
                .started
                .map(|s| s.checked_add(self.deadline).unwrap_or(s)),
            _ => None,
        }
    }

    /// Fails the stream if a message under way is past its deadline at
    /// `now`. A message already whole in the buffer is never refused, however
    /// late it is taken out; the driver calls this only after reading
    /// everything that had arrived.
    pub(crate) fn check_deadline(&mut self, now: Instant) -> Result<(), InboundError> {
        self.return_lent();
        if self.parse()?.is_some() {
            return Ok(());
        }
        match self.deadline() {
            Some(at) if now >= at => Err(self.fail(InboundError::Deadline(self.deadline))),
            _ => Ok(()),
        }
    }

    /// Records a fatal error: nothing more comes out, the buffer is freed.
    pub(crate) fn fail(&mut self, err: InboundError) -> InboundError {
        self.state = State::Failed;
        self.buf = BytesMut::new();
        self.head = 0;
        self.filled = 0;
        self.lent = 0;
        self.started = None;
        err
    }

    /// Makes sure at least `want` bytes of scratch space follow the received
    /// bytes, without ever reserving a declared length up front.
    fn make_room(&mut self, want: usize) {
        let free = self.buf.len() - self.filled;
        let want = want.max(MIN_FREE);
        if free >= want {
            return;
        }
        let target = want.max(self.read_size);
        // Room at the front, from messages lent and done with: move the
        // rest there. The buffer stays initialised, so nothing is zeroed
        // again and nothing is allocated.
        if self.head > 0 && self.buf.len() >= (self.filled - self.head) + target {
            self.buf.copy_within(self.head..self.filled, 0);
            self.filled -= self.head;
            self.head = 0;
            return;
        }
        self.compact();
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
        self.compact();
        let mut fresh = BytesMut::with_capacity(self.filled + space);
        fresh.extend_from_slice(&self.buf[..self.filled]);
        self.buf = fresh;
        self.read_size = INITIAL_READ;
    }
}

#[cfg(test)]
mod tests {
    //! Every promise of the stream's receive side, with a fake clock: no
    //! socket, no sleep.
    use super::*;
    use crate::codec::Framing;

    const DEADLINE: Duration = Duration::from_secs(30);

    fn engine(framing: Framing, max: usize) -> Inbound {
        Inbound::new(Cutter::Framing(framing.codec(max)), DEADLINE)
    }

    fn frame(msg: &[u8]) -> Vec<u8> {
        let mut v = (msg.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(msg);
        v
    }

    /// Feeds `bytes` as one read at `at`.
    fn feed(e: &mut Inbound, bytes: &[u8], at: Instant) {
        e.extend(bytes, at);
    }

    #[test]
    fn a_message_split_anywhere_comes_out_whole() {
        let t0 = Instant::now();
        let wire = frame(b"hello world");
        for split in 0..wire.len() {
            let mut e = engine(Framing::default(), 1024);
            feed(&mut e, &wire[..split.max(1)], t0);
            if split.max(1) < wire.len() {
                assert_eq!(e.next().unwrap(), None);
                feed(&mut e, &wire[split.max(1)..], t0);
            }
            assert_eq!(e.next().unwrap().unwrap(), &b"hello world"[..]);
            assert_eq!(e.next().unwrap(), None);
        }
    }

    #[test]
    fn a_message_that_arrived_whole_is_delivered_however_late_it_is_taken() {
        let t0 = Instant::now();
        let mut e = engine(Framing::default(), 1024);
        feed(&mut e, &frame(b"in time"), t0);
        // Taken an hour later: it arrived whole, so it is delivered.
        let late = t0 + Duration::from_secs(3600);
        e.check_deadline(late).unwrap();
        assert_eq!(e.next().unwrap().unwrap(), &b"in time"[..]);
        assert_eq!(e.deadline(), None);
    }

    #[test]
    fn the_deadline_counts_from_the_first_byte_of_the_message() {
        let t0 = Instant::now();
        let mut e = engine(Framing::default(), 1024);
        feed(&mut e, &frame(b"abc")[..2], t0);
        assert_eq!(e.deadline(), Some(t0 + DEADLINE));
        // More bytes later do not move it: a trickle cannot hold it open.
        feed(&mut e, &frame(b"abc")[2..4], t0 + Duration::from_secs(20));
        assert_eq!(e.deadline(), Some(t0 + DEADLINE));
        e.check_deadline(t0 + DEADLINE - Duration::from_millis(1))
            .unwrap();
        assert_eq!(
            e.check_deadline(t0 + DEADLINE),
            Err(InboundError::Deadline(DEADLINE))
        );
        assert_eq!(e.state(), State::Failed);
        assert_eq!(e.next().unwrap(), None, "nothing comes out after a failure");
    }

    #[test]
    fn a_postponed_message_gets_the_paused_time_and_no_more() {
        let t0 = Instant::now();
        let mut e = engine(Framing::default(), 1024);
        // Nothing under way: nothing to postpone.
        e.postpone(Duration::from_secs(5));
        assert_eq!(e.deadline(), None);
        feed(&mut e, &frame(b"abc")[..2], t0);
        let paused = Duration::from_secs(7);
        e.postpone(paused);
        assert_eq!(e.deadline(), Some(t0 + paused + DEADLINE));
        e.check_deadline(t0 + DEADLINE).unwrap();
        assert_eq!(
            e.check_deadline(t0 + paused + DEADLINE),
            Err(InboundError::Deadline(DEADLINE))
        );
    }

    #[test]
    fn the_rest_of_a_read_starts_the_next_deadline_at_its_arrival() {
        let t0 = Instant::now();
        let mut e = engine(Framing::default(), 1024);
        let mut wire = frame(b"one");
        wire.extend_from_slice(&frame(b"two")[..3]);
        feed(&mut e, &wire, t0);
        let t1 = t0 + Duration::from_secs(100);
        // "one" is taken late; "two" began arriving at t0.
        assert_eq!(e.next().unwrap().unwrap(), &b"one"[..]);
        assert_eq!(e.deadline(), Some(t0 + DEADLINE));
        // The rest of "two" had arrived by the time the driver looked: whole.
        feed(&mut e, &frame(b"two")[3..], t1);
        e.check_deadline(t1).unwrap();
        assert_eq!(e.next().unwrap().unwrap(), &b"two"[..]);
    }

    #[test]
    fn a_read_timeout_mid_message_loses_nothing() {
        let t0 = Instant::now();
        let mut e = engine(Framing::default(), 1024);
        let wire = frame(b"patience");
        feed(&mut e, &wire[..5], t0);
        // The driver's read timeout: it just returns, the engine keeps all.
        assert_eq!(e.next().unwrap(), None);
        assert_eq!(e.buffered(), 5);
        feed(&mut e, &wire[5..], t0 + Duration::from_secs(1));
        assert_eq!(e.next().unwrap().unwrap(), &b"patience"[..]);
    }

    #[test]
    fn the_end_between_messages_is_clean_and_inside_one_is_unexpected() {
        let t0 = Instant::now();
        let mut e = engine(Framing::default(), 1024);
        feed(&mut e, &frame(b"last"), t0);
        assert_eq!(e.next().unwrap().unwrap(), &b"last"[..]);
        e.end().unwrap();
        assert_eq!(e.state(), State::Ended);

        let mut e = engine(Framing::default(), 1024);
        feed(&mut e, &frame(b"cut")[..5], t0);
        assert_eq!(e.next().unwrap(), None);
        assert_eq!(e.end(), Err(InboundError::UnexpectedEof));
        assert_eq!(e.state(), State::Failed);
    }

    #[test]
    fn a_header_over_the_limit_fails_before_any_payload_and_allocates_nothing() {
        let t0 = Instant::now();
        let mut e = engine(Framing::default(), 1024);
        feed(&mut e, &u32::MAX.to_be_bytes(), t0);
        assert_eq!(
            e.next(),
            Err(InboundError::Frame(FrameError::TooLarge {
                len: u64::from(u32::MAX),
                max: 1024
            }))
        );
        assert_eq!(e.capacity(), 0, "the buffer is freed on failure");
    }

    #[test]
    fn the_buffer_grows_only_with_what_arrives() {
        let t0 = Instant::now();
        let mut e = engine(Framing::default(), 8 << 20);
        // A header declaring 8 MiB, and nothing else.
        feed(&mut e, &(8u32 << 20).to_be_bytes(), t0);
        assert_eq!(e.next().unwrap(), None);
        let space = e.space().len();
        assert!(space <= READ_STEP, "offered {space} bytes for 4 received");
        assert!(e.capacity() <= INITIAL_READ + READ_STEP);
    }

    #[test]
    fn after_a_large_message_the_buffer_shrinks_back() {
        let t0 = Instant::now();
        let mut e = engine(Framing::default(), 8 << 20);
        feed(&mut e, &frame(&vec![7u8; 1 << 20]), t0);
        assert_eq!(e.next().unwrap().unwrap().len(), 1 << 20);
        assert!(e.capacity() <= 2 * INITIAL_READ, "kept {}", e.capacity());
    }

    #[test]
    fn a_lent_message_is_valid_until_the_next_call_and_then_gone() {
        let t0 = Instant::now();
        let mut e = engine(Framing::default(), 1024);
        let mut wire = frame(b"first");
        wire.extend(frame(b"second"));
        feed(&mut e, &wire, t0);
        assert_eq!(e.next_ref().unwrap(), Some(&b"first"[..]));
        assert_eq!(e.buffered(), wire.len() - 9);
        assert_eq!(e.next_ref().unwrap(), Some(&b"second"[..]));
        assert_eq!(e.next_ref().unwrap(), None);
        assert_eq!(e.buffered(), 0);
        e.end().unwrap();
    }

    #[test]
    fn decoding_from_a_shared_buffer_keeps_only_a_partial_message() {
        let t0 = Instant::now();
        let mut e = engine(Framing::default(), 1024);
        let mut wire = frame(b"one");
        wire.extend(frame(b"two"));
        wire.extend_from_slice(&frame(b"three")[..5]);
        let mut got = Vec::new();
        e.decode_from(&wire, t0, |m| got.push(m)).unwrap();
        assert_eq!(got, vec![&b"one"[..], &b"two"[..]]);
        assert_eq!(e.buffered(), 5, "the start of \"three\" is kept");
        assert_eq!(e.deadline(), Some(t0 + DEADLINE));
        e.decode_from(&frame(b"three")[5..], t0, |m| got.push(m))
            .unwrap();
        assert_eq!(got[2], &b"three"[..]);
        e.release_if_empty();
        assert_eq!(e.capacity(), 0, "an idle conversation holds no buffer");
        // Whole messages never touch this engine's buffer.
        e.decode_from(&frame(b"four"), t0, |m| got.push(m)).unwrap();
        assert_eq!(e.capacity(), 0);
        assert_eq!(got.len(), 4);
        // Hostile bytes fail the same way as through the own buffer.
        let bad = u32::MAX.to_be_bytes();
        assert!(matches!(
            e.decode_from(&bad, t0, |_| {}),
            Err(InboundError::Frame(FrameError::TooLarge { .. }))
        ));
    }

    #[test]
    fn lent_and_owned_receives_mix_in_order() {
        let t0 = Instant::now();
        let mut e = engine(Framing::Lines, 1024);
        feed(&mut e, b"a\nbb\nccc\n", t0);
        assert_eq!(e.next_ref().unwrap(), Some(&b"a"[..]));
        assert_eq!(e.next().unwrap().unwrap(), &b"bb"[..]);
        assert_eq!(e.next_ref().unwrap(), Some(&b"ccc"[..]));
        assert_eq!(e.next().unwrap(), None);
    }
}
