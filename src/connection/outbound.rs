//! The sending side of a framed byte stream: the queue of encoded bytes and
//! the exact meaning of "taken", as a state machine with no socket in it.
//!
//! A message is **taken** once it is in the queue. The queue is written out
//! from its front; a driver reports how much the socket took with
//! [`advance`](Outbound::advance). A message that was queued by an operation
//! that then failed to write *any* of its bytes can be taken back with
//! [`untake`](Outbound::untake): that is how a `send` that times out takes
//! nothing, while one that wrote a single byte of its message keeps the
//! rest queued and finishes it first next time (the stream never loses
//! sync).

use bytes::{Buf, BytesMut};

use crate::codec::{Codec, FrameError, Prefix};

/// A frame checked against the codec: its prefix and total length. Making
/// one writes nothing.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame {
    pub(crate) prefix: Prefix,
    pub(crate) suffix: &'static [u8],
    /// Prefix, payload and suffix.
    pub(crate) len: usize,
}

/// A mark to take a message back: where its frame starts and ends in the
/// stream of every byte ever queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mark {
    start: u64,
    end: u64,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Outbound {
    codec: Codec,
    /// Taken bytes, not yet written; the front goes out first.
    queue: BytesMut,
    /// The batching bound: feeding past it writes first.
    limit: usize,
    /// Bytes ever queued, and ever written: positions in the stream.
    pushed: u64,
    written: u64,
}

impl Outbound {
    pub(crate) fn new(codec: Codec, limit: usize) -> Outbound {
        Outbound {
            codec,
            queue: BytesMut::new(),
            limit,
            pushed: 0,
            written: 0,
        }
    }

    /// `true` when the framing surely takes a message of `len` bytes
    /// (a length prefix within its limit), without building its frame.
    #[inline(always)]
    pub(crate) fn surely_takes(&self, len: usize) -> bool {
        self.codec
            .length()
            .is_some_and(|c| len <= c.max_message_len())
    }

    /// Checks `msg` against the framing and the limit: nothing is queued.
    #[inline]
    pub(crate) fn frame(&self, msg: &[u8]) -> Result<Frame, FrameError> {
        let prefix = self.codec.prefix(msg)?;
        let suffix = self.codec.suffix();
        Ok(Frame {
            prefix,
            suffix,
            len: prefix.len() + msg.len() + suffix.len(),
        })
    }

    /// Queues `msg` framed with the default 4-byte big-endian length, if
    /// that is this queue's framing, the message is within its limit and
    /// the batching bound has room for it (`true`: taken); otherwise
    /// nothing is queued. The common case of a fed message, in a few
    /// instructions.
    #[inline(always)]
    pub(crate) fn push_u32(&mut self, msg: &[u8]) -> bool {
        let len = msg.len();
        let max = match self.codec.length() {
            Some(c) if c.width() == crate::codec::Width::U32 && c.is_big_endian() => {
                c.max_message_len()
            }
            _ => return false,
        };
        if len > max || self.queue.len() + len + 4 > self.limit {
            return false;
        }
        self.queue.reserve(len + 4);
        bytes::BufMut::put_u32(&mut self.queue, len as u32);
        self.queue.extend_from_slice(msg);
        self.pushed += len as u64 + 4;
        true
    }

    /// Queues `msg`, framed: taken. On error nothing is queued.
    #[inline]
    pub(crate) fn push(&mut self, msg: &[u8]) -> Result<Mark, FrameError> {
        let len = self.codec.encode_into(msg, &mut self.queue)?;
        let start = self.pushed;
        self.pushed += len as u64;
        Ok(Mark {
            start,
            end: self.pushed,
        })
    }

    /// Queues bytes a protocol above encoded itself (`encode` appends them
    /// to the queue): taken.
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) fn push_encoded(&mut self, encode: impl FnOnce(&mut BytesMut)) -> Mark {
        let before = self.queue.len();
        encode(&mut self.queue);
        let start = self.pushed;
        self.pushed += (self.queue.len() - before) as u64;
        Mark {
            start,
            end: self.pushed,
        }
    }

    /// `true` when the frame of a message of `len` bytes surely fits under
    /// the batching bound (a frame adds at most 11 bytes).
    #[inline]
    pub(crate) fn has_room_for(&self, len: usize) -> bool {
        self.queue.len() + len + 11 <= self.limit
    }

    /// Queues the part of a frame a direct write did not take, from
    /// `written` bytes into it on.
    pub(crate) fn push_rest(&mut self, frame: &Frame, msg: &[u8], written: usize) {
        let parts: [&[u8]; 3] = [&frame.prefix, msg, frame.suffix];
        let mut skip = written;
        for part in parts {
            let take = skip.min(part.len());
            skip -= take;
            self.queue.extend_from_slice(&part[take..]);
        }
        self.pushed += (frame.len - written) as u64;
    }

    /// `true` when nothing of the message queued at `mark` has been written
    /// yet.
    #[inline]
    pub(crate) fn untouched(&self, mark: Mark) -> bool {
        self.written <= mark.start
    }

    /// Takes back the message queued at `mark`, if none of it was written
    /// and it is the last one queued. Returns whether it was taken back.
    #[inline]
    pub(crate) fn untake(&mut self, mark: Mark) -> bool {
        if self.untouched(mark) && mark.end == self.pushed {
            let len = (mark.end - mark.start) as usize;
            self.queue.truncate(self.queue.len() - len);
            self.pushed = mark.start;
            true
        } else {
            false
        }
    }

    /// The bytes to write next.
    #[inline]
    pub(crate) fn pending(&self) -> &[u8] {
        &self.queue
    }

    /// Bytes taken and not yet written.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The socket took `n` bytes from the front.
    #[inline]
    pub(crate) fn advance(&mut self, n: usize) {
        self.queue.advance(n);
        self.written += n as u64;
        if self.queue.is_empty()
            && self.queue.capacity() > self.limit.max(64 * 1024).saturating_mul(4)
        {
            // A burst is over: give its memory back.
            self.queue = BytesMut::new();
        }
    }

    /// Where the queue stands in the stream of every byte ever queued: the
    /// position of its end.
    #[inline]
    pub(crate) fn pushed(&self) -> u64 {
        self.pushed
    }

    /// Every byte before this position has been written.
    #[inline]
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// `n` bytes of a unit that was never queued were written straight to
    /// the socket (a large message from the caller's slice): the positions
    /// count them, as if queued and written.
    pub(crate) fn advanced_outside(&mut self, n: usize) {
        self.pushed += n as u64;
        self.written += n as u64;
    }

    /// Queues bytes that are whole units already (a control frame, a
    /// protocol's own line): taken.
    #[cfg_attr(not(any(feature = "ws", feature = "nats")), allow(dead_code))]
    pub(crate) fn push_raw(&mut self, bytes: &[u8]) -> Mark {
        self.push_encoded(|dst| dst.extend_from_slice(bytes))
    }

    /// Moves every byte of `other` (whole units encoded elsewhere) to the
    /// end of this queue: taken. `other` is left empty.
    #[cfg_attr(not(any(feature = "ws", feature = "nats")), allow(dead_code))]
    pub(crate) fn append_bytes(&mut self, other: &mut BytesMut) {
        let n = other.len() as u64;
        if self.queue.is_empty() {
            std::mem::swap(&mut self.queue, other);
        } else {
            self.queue.extend_from_slice(other);
            other.clear();
        }
        self.pushed += n;
    }

    /// Moves what this queue holds (whole units, none of them written) to
    /// the end of `dst`; the queue is left empty.
    pub(crate) fn move_into(&mut self, dst: &mut BytesMut) {
        let n = self.queue.len() as u64;
        if dst.is_empty() {
            std::mem::swap(dst, &mut self.queue);
        } else {
            dst.extend_from_slice(&self.queue);
            self.queue.clear();
        }
        self.written += n;
    }

    /// Moves everything `other` holds (whole frames, none of them written)
    /// to the end of this queue; `other` is left empty. Without copying
    /// when this queue is empty.
    pub(crate) fn append(&mut self, other: &mut Outbound) {
        debug_assert!(other.written == other.pushed - other.queue.len() as u64);
        let n = other.queue.len() as u64;
        if n == 0 {
            return;
        }
        if self.queue.is_empty() {
            std::mem::swap(&mut self.queue, &mut other.queue);
        } else {
            self.queue.extend_from_slice(&other.queue);
            other.queue.clear();
        }
        self.pushed += n;
        other.written += n;
    }

    /// Takes the bytes to write out of the queue, for a writer that writes
    /// them while others go on queueing behind them; [`give_back`] returns
    /// what was not written. Positions count them as queued meanwhile.
    ///
    /// [`give_back`]: Self::give_back
    pub(crate) fn take_pending(&mut self) -> BytesMut {
        self.queue.split()
    }

    /// The writer of [`take_pending`](Self::take_pending) wrote `n` bytes
    /// of `taken`; the rest goes back to the front of the queue.
    pub(crate) fn give_back(&mut self, mut taken: BytesMut, n: usize) {
        taken.advance(n);
        self.written += n as u64;
        if !taken.is_empty() {
            // Contiguous with what was queued since (the same buffer), or
            // copied once if not.
            taken.unsplit(std::mem::take(&mut self.queue));
            self.queue = taken;
        }
    }

    /// Gives the queue's memory back when it is empty (an idle conversation
    /// then holds none).
    pub(crate) fn release_if_empty(&mut self) {
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            self.queue = BytesMut::new();
        }
    }

    /// Forgets everything queued (the connection is gone); returns how many
    /// bytes were dropped.
    pub(crate) fn discard(&mut self) -> usize {
        let n = self.queue.len();
        self.queue = BytesMut::new();
        self.written += n as u64;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Framing;

    fn out(limit: usize) -> Outbound {
        Outbound::new(Framing::default().codec(1024), limit)
    }

    fn queue(o: &mut Outbound, msg: &[u8]) -> Mark {
        o.push(msg).unwrap()
    }

    #[test]
    fn a_message_nothing_of_which_was_written_can_be_taken_back() {
        let mut o = out(1024);
        let first = queue(&mut o, b"first");
        o.advance(3); // part of "first" went out
        let second = queue(&mut o, b"second");
        // The socket took the rest of "first" only.
        o.advance(6);
        assert!(o.untouched(second));
        assert!(!o.untake(first), "first was partly written: it stays taken");
        assert!(o.untake(second));
        assert!(o.is_empty());
        // Only the last message queued can be taken back.
        let third = queue(&mut o, b"third");
        queue(&mut o, b"fourth");
        assert!(o.untouched(third));
        assert!(!o.untake(third));
        assert_eq!(o.len(), 9 + 10);
    }

    #[test]
    fn one_byte_written_makes_the_message_taken() {
        let mut o = out(1024);
        let m = queue(&mut o, b"abc");
        o.advance(1);
        assert!(!o.untouched(m));
        assert!(!o.untake(m));
        assert_eq!(o.pending(), &[0, 0, 3, b'a', b'b', b'c']);
    }

    #[test]
    fn over_the_limit_is_refused_before_anything_is_queued() {
        let o = out(1024);
        assert_eq!(
            o.frame(&[0; 1025]).unwrap_err(),
            FrameError::TooLarge {
                len: 1025,
                max: 1024
            }
        );
        assert!(o.is_empty());
    }

    #[test]
    fn the_rest_of_a_direct_write_is_queued_exactly() {
        let mut o = out(1024);
        let msg = b"hello";
        let f = o.frame(msg).unwrap();
        for written in 0..f.len {
            let mut o2 = out(1024);
            o2.push_rest(&f, msg, written);
            let mut whole = f.prefix.to_vec();
            whole.extend_from_slice(msg);
            assert_eq!(o2.pending(), &whole[written..]);
        }
        o.push(msg).unwrap();
        assert_eq!(o.len(), 9);
    }

    #[test]
    fn a_writer_takes_the_front_and_gives_back_the_rest_in_order() {
        let mut o = out(1024);
        queue(&mut o, b"first");
        let taken = o.take_pending();
        assert_eq!(taken.len(), 9);
        // Queued while the writer writes: behind what it took.
        let second = queue(&mut o, b"second");
        o.give_back(taken, 4);
        assert_eq!(o.written(), 4);
        assert_eq!(&o.pending()[..5], b"first");
        assert_eq!(o.len(), 5 + 10);
        assert!(o.untake(second), "the last one, untouched");
        let taken = o.take_pending();
        o.give_back(taken, 5);
        assert!(o.is_empty());
        assert_eq!((o.pushed(), o.written()), (9, 9));
    }

    #[test]
    fn appending_a_staged_queue_moves_whole_frames_without_loss() {
        let mut wire = out(1024);
        let mut staged = out(1024);
        queue(&mut staged, b"a");
        queue(&mut staged, b"bc");
        wire.append(&mut staged);
        assert!(staged.is_empty());
        assert_eq!(wire.len(), 5 + 6);
        queue(&mut staged, b"d");
        wire.advance(2);
        wire.append(&mut staged);
        assert_eq!(
            wire.pending(),
            &[0, 0, 0, 1, b'a', 0, 0, 0, 2, b'b', b'c', 0, 0, 0, 1, b'd'][2..]
        );
        assert_eq!(wire.pushed(), 16);
        assert_eq!(staged.written(), staged.pushed());
    }

    #[test]
    fn the_batching_bound_counts_the_largest_prefix() {
        let mut o = out(32);
        assert!(o.has_room_for(21), "21 bytes and a prefix of up to 11");
        assert!(!o.has_room_for(22));
        queue(&mut o, b"0123456789");
        assert!(o.has_room_for(7));
        assert!(!o.has_room_for(8));
    }
}
