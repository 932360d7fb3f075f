//! WebSocket frames and messages (RFC 6455), as a pure engine: frames in,
//! messages and control frames out; messages in, frames out; `now` in,
//! "the deadline of a fragmented message passed" out.
//!
//! The frame codec (in `codec`) cuts whole frames out of the byte stream,
//! checking each header before anything is allocated: reserved bits (no
//! extension is ever agreed), known opcodes, control frames short and
//! unfragmented, the masking rule of each direction, and the declared
//! length against the limit. [`WsReader`] then puts messages together:
//! unmasking, joining fragments (their total bounded by the same limit, and
//! the whole message by the per-message deadline, counted from its first
//! fragment), and handing out pings and the peer's close.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

/// The longest frame header: 2 bytes, 8 of length, 4 of mask.
pub(crate) const MAX_HEADER: usize = 14;

/// The most a control frame may carry.
pub(crate) const MAX_CONTROL: usize = 125;

/// Which end of the connection this is: a client masks what it sends and
/// receives unmasked frames; a server the other way round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    Client,
    Server,
}

/// A frame's opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0 => OpCode::Continuation,
            1 => OpCode::Text,
            2 => OpCode::Binary,
            8 => OpCode::Close,
            9 => OpCode::Ping,
            10 => OpCode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0,
            OpCode::Text => 1,
            OpCode::Binary => 2,
            OpCode::Close => 8,
            OpCode::Ping => 9,
            OpCode::Pong => 10,
        }
    }

    fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) fin: bool,
    pub(crate) opcode: OpCode,
    pub(crate) mask: Option<[u8; 4]>,
    /// The header's own length.
    pub(crate) len: usize,
    /// The payload's length, as declared.
    pub(crate) payload: u64,
}

/// A frame that breaks the protocol: the connection cannot go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameFault {
    /// What rule it broke.
    Invalid(&'static str),
    /// A payload (or a message of fragments) over the limit.
    TooLarge { len: u64, max: u64 },
}

/// Reads the header at the front of `buf`: `Ok(None)` if more bytes are
/// needed (at most [`MAX_HEADER`] in all). Checks every rule that a header
/// alone can break; `masked` is what this direction requires.
pub(crate) fn parse_header(buf: &[u8], masked: bool) -> Result<Option<Header>, FrameFault> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(FrameFault::Invalid(
            "reserved bits set in a WebSocket frame (no extension was agreed)",
        ));
    }
    let fin = b0 & 0x80 != 0;
    let opcode =
        OpCode::from_bits(b0 & 0x0f).ok_or(FrameFault::Invalid("unknown WebSocket opcode"))?;
    let is_masked = b1 & 0x80 != 0;
    if is_masked != masked {
        return Err(FrameFault::Invalid(if masked {
            "an unmasked frame from a WebSocket client (clients must mask)"
        } else {
            "a masked frame from a WebSocket server (servers must not mask)"
        }));
    }
    let (payload, mut at) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut be = [0u8; 8];
            be.copy_from_slice(&buf[2..10]);
            let n = u64::from_be_bytes(be);
            if n >> 63 != 0 {
                return Err(FrameFault::Invalid(
                    "a WebSocket frame length with its top bit set",
                ));
            }
            (n, 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode.is_control() {
        if !fin {
            return Err(FrameFault::Invalid("a fragmented WebSocket control frame"));
        }
        if payload > MAX_CONTROL as u64 {
            return Err(FrameFault::Invalid(
                "a WebSocket control frame longer than 125 bytes",
            ));
        }
    }
    let mask = if is_masked {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let key = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(key)
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        len: at,
        payload,
    }))
}

/// XORs `data` with the mask `key`, starting `offset` bytes into the
/// masked stream.
pub(crate) fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    let mut k = [0u8; 4];
    for (i, b) in k.iter_mut().enumerate() {
        *b = key[(offset + i) % 4];
    }
    let word = u32::from_ne_bytes(k);
    let wide = u64::from(word) | (u64::from(word) << 32);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut v = [0u8; 8];
        v.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(v) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= k[i % 4];
    }
}

/// Appends one frame to `dst`: `payload` under `opcode`, final, masked with
/// `mask` (clients) or not (servers).
pub(crate) fn encode(opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>, dst: &mut BytesMut) {
    let len = payload.len();
    dst.reserve(MAX_HEADER + len);
    dst.put_u8(0x80 | opcode.bits());
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        dst.put_u8(mask_bit | len as u8);
    } else if len <= u16::MAX as usize {
        dst.put_u8(mask_bit | 126);
        dst.put_u16(len as u16);
    } else {
        dst.put_u8(mask_bit | 127);
        dst.put_u64(len as u64);
    }
    match mask {
        None => dst.put_slice(payload),
        Some(key) => {
            dst.put_slice(&key);
            let start = dst.len();
            dst.put_slice(payload);
            apply_mask(&mut dst[start..], key, 0);
        }
    }
}

/// The length of the frame that carries `len` bytes.
#[cfg(test)]
pub(crate) fn frame_len(len: usize, masked: bool) -> usize {
    let header = if len < 126 {
        2
    } else if len <= u16::MAX as usize {
        4
    } else {
        10
    };
    header + if masked { 4 } else { 0 } + len
}

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
    partial: Option<Partial>,
}

/// Why [`WsReader`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadFault {
    Frame(FrameFault),
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

    /// When the message of fragments under way must be whole.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.partial.as_ref().map(|p| p.started + self.deadline)
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

    /// Takes one whole frame (header included, as the codec cut it); `now`
    /// is asked only for the first fragment of a message (whose deadline
    /// counts from it).
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
                return Ok(Lent::Message {
                    text: header.opcode == OpCode::Text,
                });
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
        // The codec checked the header; a frame is never parsed from less.
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
                    return Ok(Some(WsEvent::Message {
                        data: payload(body),
                        text,
                    }));
                }
                let mut data = BytesMut::with_capacity(body.len());
                data.extend_from_slice(body);
                if let Some(key) = header.mask {
                    apply_mask(&mut data, key, 0);
                }
                self.partial = Some(Partial {
                    text,
                    data,
                    started: now(),
                });
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
                Ok(Some(WsEvent::Message {
                    data: partial.data.freeze(),
                    text: partial.text,
                }))
            }
        }
    }
}

/// The status code of a normal close.
pub(crate) const CLOSE_NORMAL: u16 = 1000;
/// The status code for a protocol error.
pub(crate) const CLOSE_PROTOCOL: u16 = 1002;
/// The status code for a message too big to process.
pub(crate) const CLOSE_TOO_BIG: u16 = 1009;

/// Masking keys for a client: a xorshift stream seeded from the system's
/// randomness, so that keys are not predictable from outside.
#[derive(Debug)]
pub(crate) struct MaskKeys(u64);

impl MaskKeys {
    pub(crate) fn new(seed: u128) -> MaskKeys {
        MaskKeys((seed as u64 ^ (seed >> 64) as u64) | 1)
    }

    pub(crate) fn next_key(&mut self) -> [u8; 4] {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 as u32).to_ne_bytes()
    }
}

#[cfg(test)]
mod tests {
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
    fn headers_of_every_length_form_round_trip_masked_or_not() {
        for len in [0usize, 1, 125, 126, 127, 65_535, 65_536, 100_000] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let f = frame(OpCode::Binary, true, &payload, mask);
                assert_eq!(f.len(), frame_len(len, mask.is_some()));
                let h = parse_header(&f, mask.is_some()).unwrap().unwrap();
                assert_eq!(
                    (h.fin, h.opcode, h.mask, h.payload),
                    (true, OpCode::Binary, mask, len as u64)
                );
                // Every cut of the header asks for more.
                for cut in 0..h.len {
                    assert_eq!(
                        parse_header(&f[..cut], mask.is_some()),
                        Ok(None),
                        "{len} {cut}"
                    );
                }
                let mut r = WsReader::new(200_000, Duration::from_secs(1));
                match r.frame(f, Instant::now).unwrap() {
                    Some(WsEvent::Message { data, text: false }) => {
                        assert_eq!(&data[..], &payload[..])
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
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
    fn masking_is_its_own_inverse_at_any_offset() {
        let data: Vec<u8> = (0..37u8).collect();
        for offset in 0..4 {
            let mut d = data.clone();
            apply_mask(&mut d, [9, 8, 7, 6], offset);
            assert_ne!(d, data);
            apply_mask(&mut d, [9, 8, 7, 6], offset);
            assert_eq!(d, data);
        }
        // Byte by byte, as the RFC defines it.
        let mut d = data.clone();
        apply_mask(&mut d, [9, 8, 7, 6], 1);
        for (i, b) in d.iter().enumerate() {
            assert_eq!(*b, data[i] ^ [9, 8, 7, 6][(i + 1) % 4]);
        }
    }

    #[test]
    fn every_header_rule_is_checked() {
        let bad: &[(&[u8], bool, &str)] = &[
            (&[0xc2, 0x80, 0, 0, 0, 0], true, "reserved"),
            (&[0x83, 0x80, 0, 0, 0, 0], true, "opcode"),
            (&[0x82, 0x00], true, "unmasked"),
            (&[0x82, 0x80, 0, 0, 0, 0], false, "masked"),
            (&[0x09, 0x80, 0, 0, 0, 0], true, "fragmented"),
            (&[0x89, 0xfe, 0, 126, 0, 0, 0, 0], true, "longer than 125"),
            (&[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0], false, "top bit"),
        ];
        for (bytes, masked, why) in bad {
            match parse_header(bytes, *masked) {
                Err(FrameFault::Invalid(text)) => assert!(text.contains(why), "{text} / {why}"),
                other => panic!("{why}: {other:?}"),
            }
        }
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

    #[test]
    fn mask_keys_do_not_repeat_soon() {
        let mut k = MaskKeys::new(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        let keys: std::collections::HashSet<[u8; 4]> = (0..10_000).map(|_| k.next_key()).collect();
        assert!(keys.len() > 9_990);
    }
}
