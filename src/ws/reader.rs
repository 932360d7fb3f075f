//! WebSocket messages from whole frames, pure: unmasking, joining
//! fragments (their total bounded by the message limit, the whole message
//! by the per-message deadline, counted from its first fragment), checking
//! that text is UTF-8, and handing out pings and the peer's close. Time is
//! an argument: nothing here reads a clock.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::frames::{apply_mask, parse_header, FrameFault, OpCode};

/// What a frame brought.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WsEvent {
    /// A whole message: text (a text frame) or binary.
    Message { data: Bytes, text: bool },
    /// A ping, to answer with a pong carrying the same bytes.
    Ping(Bytes),
    /// A pong (nothing to do).
    Pong,
    /// The peer's close, with its status code if it gave one.
    Close { code: Option<u16> },
}

/// The largest message [`WsReader::frame_lent`] lends from its scratch
/// buffer (so that the buffer stays small).
pub(crate) const LEND_MAX: usize = 64 * 1024;

/// What [`WsReader::frame_lent`] found.
#[derive(Debug)]
pub(crate) enum Lent {
    /// A whole message, in the scratch buffer.
    Message { text: bool },
    /// Anything else, as [`WsReader::frame_ref`] says it.
    Other(Option<WsEvent>),
}

/// A message of fragments under way.
#[derive(Debug)]
struct Partial {
    text: bool,
    data: BytesMut,
    started: Instant,
}

/// Puts messages together from whole frames (see the module docs).
#[derive(Debug)]
pub(crate) struct WsReader {
    max: usize,
    deadline: Duration,
    /// A fragmented message under way (boxed: rare, and an idle reader
    /// stays small).
    partial: Option<Box<Partial>>,
}

/// Why [`WsReader`] stopped: the connection cannot go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadFault {
    Frame(FrameFault),
    /// A text message that is not UTF-8 (RFC 6455 section 8.1).
    NotUtf8,
    /// A fragmented message was not whole within the deadline.
    Deadline(Duration),
}

impl WsReader {
    /// A reader whose messages are at most `max` bytes, each whole within
    /// `deadline` of its first fragment.
    pub(crate) fn new(max: usize, deadline: Duration) -> WsReader {
        WsReader {
            max,
            deadline,
            partial: None,
        }
    }

    pub(crate) fn set_deadline(&mut self, deadline: Duration) {
        self.deadline = deadline;
    }

    /// Gives the message of fragments under way `by` more time (its
    /// reading was paused that long).
    pub(crate) fn postpone(&mut self, by: Duration) {
        if let Some(p) = &mut self.partial {
            p.started = p.started.checked_add(by).unwrap_or(p.started);
        }
    }

    /// The largest message.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// When the message of fragments under way must be whole.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.partial
            .as_ref()
            .map(|p| p.started.checked_add(self.deadline).unwrap_or(p.started))
    }

    /// Fails once the message under way has missed its deadline.
    pub(crate) fn check_deadline(&mut self, now: Instant) -> Result<(), ReadFault> {
        match self.deadline() {
            Some(at) if now >= at => Err(ReadFault::Deadline(self.deadline)),
            _ => Ok(()),
        }
    }

    /// `true` while a message of fragments is under way.
    pub(crate) fn in_message(&self) -> bool {
        self.partial.is_some()
    }

    /// Takes one whole frame (header included, as it was cut); `now` is
    /// asked only for the first fragment of a message (whose deadline
    /// counts from it). Unmasked payloads are sliced out of `frame` without
    /// copying.
    pub(crate) fn frame(
        &mut self,
        frame: Bytes,
        now: impl FnOnce() -> Instant,
    ) -> Result<Option<WsEvent>, ReadFault> {
        self.take(&frame, Some(&frame), now)
    }

    /// [`frame`](Self::frame) from a lent slice: payloads are copied out
    /// (unmasked on the way, for frames from a client).
    pub(crate) fn frame_ref(
        &mut self,
        frame: &[u8],
        now: impl FnOnce() -> Instant,
    ) -> Result<Option<WsEvent>, ReadFault> {
        self.take(frame, None, now)
    }

    /// [`frame_ref`](Self::frame_ref), lending what it can: a message in
    /// one frame of at most [`LEND_MAX`] bytes is unmasked into `scratch`
    /// ([`Lent::Message`]) instead of a buffer of its own.
    pub(crate) fn frame_lent(
        &mut self,
        frame: &[u8],
        now: impl FnOnce() -> Instant,
        scratch: &mut Vec<u8>,
    ) -> Result<Lent, ReadFault> {
        let masked = frame.len() >= 2 && frame[1] & 0x80 != 0;
        if let Ok(Some(header)) = parse_header(frame, masked) {
            let body = &frame[header.len..];
            if header.fin
                && self.partial.is_none()
                && matches!(header.opcode, OpCode::Text | OpCode::Binary)
                && body.len() <= LEND_MAX
            {
                // Kept for the next message, but not four times too large.
                if scratch.capacity() > 4 * body.len().max(4096) {
                    *scratch = Vec::with_capacity(body.len());
                }
                scratch.clear();
                scratch.extend_from_slice(body);
                if let Some(key) = header.mask {
                    apply_mask(scratch, key, 0);
                }
                let text = header.opcode == OpCode::Text;
                if text && std::str::from_utf8(scratch).is_err() {
                    return Err(ReadFault::NotUtf8);
                }
                return Ok(Lent::Message { text });
            }
        }
        self.take(frame, None, now).map(Lent::Other)
    }

    fn take(
        &mut self,
        frame: &[u8],
        shared: Option<&Bytes>,
        now: impl FnOnce() -> Instant,
    ) -> Result<Option<WsEvent>, ReadFault> {
        // The frame was cut with its header checked; it is never shorter.
        let masked = frame.len() >= 2 && frame[1] & 0x80 != 0;
        let header = match parse_header(frame, masked) {
            Ok(Some(h)) => h,
            Ok(None) => {
                return Err(ReadFault::Frame(FrameFault::Invalid(
                    "a cut WebSocket frame",
                )))
            }
            Err(e) => return Err(ReadFault::Frame(e)),
        };
        let body = &frame[header.len..];
        let payload = |body: &[u8]| -> Bytes {
            match (header.mask, shared) {
                (None, Some(all)) => all.slice(header.len..),
                (None, None) => Bytes::copy_from_slice(body),
                (Some(key), _) => {
                    let mut owned = BytesMut::from(body);
                    apply_mask(&mut owned, key, 0);
                    owned.freeze()
                }
            }
        };
        match header.opcode {
            OpCode::Ping => Ok(Some(WsEvent::Ping(payload(body)))),
            OpCode::Pong => Ok(Some(WsEvent::Pong)),
            OpCode::Close => {
                let body = payload(body);
                let code = match body.len() {
                    0 => None,
                    1 => {
                        return Err(ReadFault::Frame(FrameFault::Invalid(
                            "a WebSocket close frame with a one-byte status",
                        )))
                    }
                    _ => Some(u16::from_be_bytes([body[0], body[1]])),
                };
                Ok(Some(WsEvent::Close { code }))
            }
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return Err(ReadFault::Frame(FrameFault::Invalid(
                        "a new WebSocket message inside a fragmented one",
                    )));
                }
                let text = header.opcode == OpCode::Text;
                if header.fin {
                    return message(payload(body), text).map(Some);
                }
                let mut data = BytesMut::with_capacity(body.len());
                data.extend_from_slice(body);
                if let Some(key) = header.mask {
                    apply_mask(&mut data, key, 0);
                }
                self.partial = Some(Box::new(Partial {
                    text,
                    data,
                    started: now(),
                }));
                Ok(None)
            }
            OpCode::Continuation => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(ReadFault::Frame(FrameFault::Invalid(
                        "a WebSocket continuation frame with no message to continue",
                    )));
                };
                let total = partial.data.len() as u64 + body.len() as u64;
                if total > self.max as u64 {
                    self.partial = None;
                    return Err(ReadFault::Frame(FrameFault::TooLarge {
                        len: total,
                        max: self.max as u64,
                    }));
                }
                let at = partial.data.len();
                partial.data.extend_from_slice(body);
                if let Some(key) = header.mask {
                    apply_mask(&mut partial.data[at..], key, 0);
                }
                if !header.fin {
                    return Ok(None);
                }
                let partial = self.partial.take().expect("a message under way");
                message(partial.data.freeze(), partial.text).map(Some)
            }
        }
    }
}

/// A whole message; a text one must be UTF-8.
fn message(data: Bytes, text: bool) -> Result<WsEvent, ReadFault> {
    if text && std::str::from_utf8(&data).is_err() {
        return Err(ReadFault::NotUtf8);
    }
    Ok(WsEvent::Message { data, text })
}

#[cfg(test)]
mod tests {
    use super::super::frames::encode;
    use super::*;

    fn frame(opcode: OpCode, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Bytes {
        let mut b = BytesMut::new();
        encode(opcode, payload, mask, &mut b);
        if !fin {
            b[0] &= 0x7f;
        }
        b.freeze()
    }

    #[test]
    fn small_messages_are_lent_and_the_rest_is_as_frame_ref_says() {
        let mut r = WsReader::new(200_000, Duration::from_secs(1));
        let mut scratch = Vec::new();
        let f = frame(OpCode::Text, true, b"hello", Some([1, 2, 3, 4]));
        assert!(matches!(
            r.frame_lent(&f, Instant::now, &mut scratch),
            Ok(Lent::Message { text: true })
        ));
        assert_eq!(scratch, b"hello");
        // Large, fragmented and control frames are not lent.
        let big = vec![7u8; LEND_MAX + 1];
        let f = frame(OpCode::Binary, true, &big, None);
        match r.frame_lent(&f, Instant::now, &mut scratch) {
            Ok(Lent::Other(Some(WsEvent::Message { data, text: false }))) => assert_eq!(data, big),
            other => panic!("{other:?}"),
        }
        let f = frame(OpCode::Binary, false, b"ab", None);
        assert!(matches!(
            r.frame_lent(&f, Instant::now, &mut scratch),
            Ok(Lent::Other(None))
        ));
        let f = frame(OpCode::Continuation, true, b"cd", None);
        match r.frame_lent(&f, Instant::now, &mut scratch) {
            Ok(Lent::Other(Some(WsEvent::Message { data, .. }))) => assert_eq!(&data[..], b"abcd"),
            other => panic!("{other:?}"),
        }
        let f = frame(OpCode::Ping, true, b"p", None);
        assert!(matches!(
            r.frame_lent(&f, Instant::now, &mut scratch),
            Ok(Lent::Other(Some(WsEvent::Ping(_))))
        ));
        // A new message inside a fragmented one is still refused.
        let f = frame(OpCode::Binary, false, b"ab", None);
        r.frame_lent(&f, Instant::now, &mut scratch).unwrap();
        let f = frame(OpCode::Text, true, b"x", None);
        assert!(r.frame_lent(&f, Instant::now, &mut scratch).is_err());
    }

    #[test]
    fn text_that_is_not_utf8_is_refused_whole_or_in_fragments() {
        let t0 = Instant::now();
        let mut scratch = Vec::new();
        let bad = [b'a', 0xff, b'b'];
        let mut r = WsReader::new(100, Duration::from_secs(5));
        let f = frame(OpCode::Text, true, &bad, Some([1, 2, 3, 4]));
        assert_eq!(
            r.frame_lent(&f, || t0, &mut scratch).unwrap_err(),
            ReadFault::NotUtf8
        );
        assert_eq!(r.frame(f, || t0), Err(ReadFault::NotUtf8));
        // The same bytes as binary are a message.
        let f = frame(OpCode::Binary, true, &bad, None);
        assert!(matches!(
            r.frame(f, || t0),
            Ok(Some(WsEvent::Message { .. }))
        ));
        // A character split between two fragments is fine; a bad one is not.
        let euro = "€".as_bytes();
        let mut r = WsReader::new(100, Duration::from_secs(5));
        r.frame(frame(OpCode::Text, false, &euro[..1], None), || t0)
            .unwrap();
        assert_eq!(
            r.frame(frame(OpCode::Continuation, true, &euro[1..], None), || t0),
            Ok(Some(WsEvent::Message {
                data: Bytes::from_static("€".as_bytes()),
                text: true
            }))
        );
        r.frame(frame(OpCode::Text, false, &euro[..1], None), || t0)
            .unwrap();
        assert_eq!(
            r.frame(frame(OpCode::Continuation, true, b"x", None), || t0),
            Err(ReadFault::NotUtf8)
        );
    }

    #[test]
    fn fragments_join_with_control_frames_between_and_are_bounded() {
        let key = Some([5, 6, 7, 8]);
        let t0 = Instant::now();
        let mut r = WsReader::new(10, Duration::from_secs(5));
        assert_eq!(
            r.frame(frame(OpCode::Text, false, b"hel", key), || t0),
            Ok(None)
        );
        assert!(r.in_message());
        assert_eq!(
            r.frame(frame(OpCode::Ping, true, b"?", key), || t0),
            Ok(Some(WsEvent::Ping(Bytes::from_static(b"?"))))
        );
        assert_eq!(
            r.frame(frame(OpCode::Continuation, false, b"lo ", key), || t0),
            Ok(None)
        );
        assert_eq!(
            r.frame(frame(OpCode::Continuation, true, b"you", key), || t0),
            Ok(Some(WsEvent::Message {
                data: Bytes::from_static(b"hello you"),
                text: true
            }))
        );
        // Over the limit in total, though each fragment is small.
        assert_eq!(
            r.frame(frame(OpCode::Binary, false, b"123456", None), || t0),
            Ok(None)
        );
        assert_eq!(
            r.frame(frame(OpCode::Continuation, true, b"7890A", None), || t0),
            Err(ReadFault::Frame(FrameFault::TooLarge { len: 11, max: 10 }))
        );
        // A continuation of nothing; a new message inside one.
        let mut r = WsReader::new(10, Duration::from_secs(5));
        assert!(r
            .frame(frame(OpCode::Continuation, true, b"x", None), || t0)
            .is_err());
        r.frame(frame(OpCode::Binary, false, b"x", None), || t0)
            .unwrap();
        assert!(r
            .frame(frame(OpCode::Binary, true, b"y", None), || t0)
            .is_err());
    }

    #[test]
    fn fragments_that_never_end_miss_the_deadline_by_the_fake_clock() {
        let t0 = Instant::now();
        let mut r = WsReader::new(1 << 20, Duration::from_secs(30));
        assert_eq!(r.deadline(), None);
        r.frame(frame(OpCode::Binary, false, b"a", None), || t0)
            .unwrap();
        assert_eq!(r.deadline(), Some(t0 + Duration::from_secs(30)));
        // Fragments keep coming, but the deadline counts from the first.
        for s in 1..30 {
            let now = t0 + Duration::from_secs(s);
            r.frame(frame(OpCode::Continuation, false, b"b", None), || now)
                .unwrap();
            assert_eq!(r.check_deadline(now), Ok(()));
        }
        assert_eq!(
            r.check_deadline(t0 + Duration::from_secs(30)),
            Err(ReadFault::Deadline(Duration::from_secs(30)))
        );
    }

    #[test]
    fn close_frames_carry_an_optional_code() {
        let t0 = Instant::now();
        let mut r = WsReader::new(10, Duration::from_secs(1));
        assert_eq!(
            r.frame(frame(OpCode::Close, true, b"", None), || t0),
            Ok(Some(WsEvent::Close { code: None }))
        );
        assert_eq!(
            r.frame(
                frame(OpCode::Close, true, &1001u16.to_be_bytes(), None),
                || t0
            ),
            Ok(Some(WsEvent::Close { code: Some(1001) }))
        );
        assert!(r
            .frame(frame(OpCode::Close, true, b"x", None), || t0)
            .is_err());
    }
}
