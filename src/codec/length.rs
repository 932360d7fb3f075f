//! The default framing: a 4-byte big-endian length, then the payload.

use bytes::{BufMut, Bytes, BytesMut};

use super::{take, FrameError, Parse, Prefix};

/// Length-prefixed framing, the crate's TCP wire format (by default).
///
/// ```text
/// +----------------------+---------------------+
/// | len: u32, big-endian |  payload: len bytes |
/// +----------------------+---------------------+
/// ```
///
/// `len` counts the payload only; `len = 0` is a valid empty message. This is
/// byte for byte the default of tokio-util's `LengthDelimitedCodec`, Netty's
/// `LengthFieldPrepender(4)` and Python's `struct.pack('>I', len(p)) + p`.
///
/// Other widths ([`Width`]: 1, 2, 4 or 8 bytes) and little-endian lengths are
/// available ([`with_width`](Self::with_width),
/// [`little_endian`](Self::little_endian)); a message too long for the width
/// is refused on send, never sent with a truncated length.
///
/// A header that declares more than [`max_message_len`](Self::max_message_len)
/// (default [`DEFAULT_MAX_MESSAGE_LEN`](Self::DEFAULT_MAX_MESSAGE_LEN), 8 MiB) is an error before anything is
/// allocated for it; the stream cannot be resynchronised after it.
///
/// ```
/// use bytes::BytesMut;
/// use converse::codec::LengthDelimited;
///
/// let codec = LengthDelimited::new();
/// let mut wire = BytesMut::new();
/// codec.encode(b"hello", &mut wire)?;
/// codec.encode(b"", &mut wire)?;
/// assert_eq!(&wire[..], b"\0\0\0\x05hello\0\0\0\0");
///
/// // Bytes may arrive split anywhere: `None` means "need more".
/// let mut buf = BytesMut::from(&wire[..3]);
/// assert_eq!(codec.decode(&mut buf)?, None);
/// buf.extend_from_slice(&wire[3..]);
/// assert_eq!(codec.decode(&mut buf)?.as_deref(), Some(&b"hello"[..]));
/// assert_eq!(codec.decode(&mut buf)?.as_deref(), Some(&b""[..]));
/// assert_eq!(codec.decode(&mut buf)?, None);
/// # Ok::<(), converse::codec::FrameError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LengthDelimited {
    max: usize,
    width: Width,
    big_endian: bool,
}

/// The width of a length field. Only these four exist, so a framing with a
/// 3-byte length cannot be written down, let alone fail later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Width {
    /// One byte: messages up to 255 bytes.
    U8,
    /// Two bytes: messages up to 65,535 bytes.
    U16,
    /// Four bytes (the default): messages up to 4 GiB − 1.
    #[default]
    U32,
    /// Eight bytes.
    U64,
}

impl Width {
    /// The number of bytes of the field.
    pub const fn bytes(self) -> usize {
        match self {
            Width::U8 => 1,
            Width::U16 => 2,
            Width::U32 => 4,
            Width::U64 => 8,
        }
    }

    /// The width of `bytes` bytes, if it is one of the four.
    pub const fn from_bytes(bytes: usize) -> Option<Width> {
        match bytes {
            1 => Some(Width::U8),
            2 => Some(Width::U16),
            4 => Some(Width::U32),
            8 => Some(Width::U64),
            _ => None,
        }
    }

    /// The largest length the field can say.
    pub const fn max_len(self) -> u64 {
        match self {
            Width::U64 => u64::MAX,
            w => (1u64 << (8 * w.bytes())) - 1,
        }
    }
}

impl Default for LengthDelimited {
    fn default() -> Self {
        Self::new()
    }
}

impl LengthDelimited {
    /// The default largest message: 8 MiB.
    pub const DEFAULT_MAX_MESSAGE_LEN: usize = 8 * 1024 * 1024;

    /// The default codec: 4-byte big-endian lengths, at most 8 MiB.
    pub const fn new() -> Self {
        LengthDelimited {
            max: Self::DEFAULT_MAX_MESSAGE_LEN,
            width: Width::U32,
            big_endian: true,
        }
    }

    /// Sets the width of the length field. The largest message is lowered
    /// to what the width can say.
    #[must_use]
    pub fn with_width(mut self, width: Width) -> Self {
        self.width = width;
        self.with_max_message_len(self.max)
    }

    /// Lengths in little-endian byte order.
    #[must_use]
    pub fn little_endian(mut self) -> Self {
        self.big_endian = false;
        self
    }

    /// Lengths in big-endian (network) byte order, the default.
    #[must_use]
    pub fn big_endian(mut self) -> Self {
        self.big_endian = true;
        self
    }

    /// Sets the largest message, clamped to what the length field can say
    /// (`u32::MAX` for the default 4 bytes).
    #[must_use]
    pub fn with_max_message_len(mut self, max: usize) -> Self {
        let field_max = self.width.max_len();
        self.max = max.min(usize::try_from(field_max).unwrap_or(usize::MAX));
        self
    }

    /// The largest message this codec sends or accepts.
    pub const fn max_message_len(&self) -> usize {
        self.max
    }

    /// The length of the header: the width of the length field.
    pub const fn header_len(&self) -> usize {
        self.width.bytes()
    }

    /// The width of the length field.
    pub const fn width(&self) -> Width {
        self.width
    }

    /// `true` when lengths are big-endian.
    pub const fn is_big_endian(&self) -> bool {
        self.big_endian
    }

    /// Looks at the front of `buf`. The declared length is checked against
    /// the limit as soon as the header is complete, before any payload byte is
    /// awaited.
    #[inline(always)]
    pub fn parse(&self, buf: &[u8]) -> Result<Parse, FrameError> {
        let width = self.header_len();
        if buf.len() < width {
            return Ok(Parse::Incomplete {
                needed: width - buf.len(),
            });
        }
        let declared = if width == 4 && self.big_endian {
            // The common case, spelled out.
            u64::from(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]))
        } else {
            let mut field = [0u8; 8];
            if self.big_endian {
                field[8 - width..].copy_from_slice(&buf[..width]);
                u64::from_be_bytes(field)
            } else {
                field[..width].copy_from_slice(&buf[..width]);
                u64::from_le_bytes(field)
            }
        };
        // `max` is at most what the field says and fits a usize; only an
        // 8-byte field at the largest max can overflow `width + len`.
        if declared > self.max as u64 || declared as usize > usize::MAX - width {
            return Err(FrameError::TooLarge {
                len: declared,
                max: self.max as u64,
            });
        }
        let consumed = width + declared as usize;
        Ok(if buf.len() < consumed {
            Parse::Incomplete {
                needed: consumed - buf.len(),
            }
        } else {
            Parse::Frame {
                start: width,
                end: consumed,
                consumed,
            }
        })
    }

    /// How many bytes the whole frame at the front of `buf` takes (its
    /// payload starts after [`header_len`](Self::header_len)), when one is
    /// there and within the limit; `None` for everything else, which
    /// [`parse`](Self::parse) tells apart. Small enough to stay in
    /// registers where messages are cut one after another.
    #[inline(always)]
    pub(crate) fn whole_frame(&self, buf: &[u8]) -> Option<usize> {
        let width = self.header_len();
        if buf.len() < width {
            return None;
        }
        let declared = if width == 4 && self.big_endian {
            u64::from(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]))
        } else {
            return match self.parse(buf) {
                Ok(Parse::Frame { consumed, .. }) => Some(consumed),
                _ => None,
            };
        };
        if declared > self.max as u64 {
            return None;
        }
        let consumed = width + declared as usize;
        (buf.len() >= consumed).then_some(consumed)
    }

    /// Cuts the next message out of `buf` without copying it.
    ///
    /// `Ok(None)`: more bytes are needed (nothing is reserved for them);
    /// `Ok(Some(message))`: one message, removed from `buf`;
    /// `Err`: the stream is corrupt.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let parse = self.parse(buf)?;
        Ok(take(buf, parse))
    }

    /// The header for a message of `len` bytes, or an error if it is larger
    /// than the limit (or than the length field can say).
    #[inline]
    pub fn header(&self, len: usize) -> Result<Prefix, FrameError> {
        if len > self.max {
            return Err(FrameError::TooLarge {
                len: len as u64,
                max: self.max as u64,
            });
        }
        let width = self.header_len();
        let mut bytes = [0u8; 10];
        Ok(if self.big_endian {
            bytes[..8].copy_from_slice(&(len as u64).to_be_bytes());
            Prefix::from_parts(bytes, 8 - width, 8)
        } else {
            bytes[..8].copy_from_slice(&(len as u64).to_le_bytes());
            Prefix::from_parts(bytes, 0, width)
        })
    }

    /// Appends one framed message to `dst` (header, then payload). On error
    /// `dst` is unchanged.
    pub fn encode(&self, msg: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_into(msg, dst).map(drop)
    }

    /// Appends one framed message to `dst` and says how many bytes that
    /// took; on error `dst` is unchanged. The header is written in place.
    #[inline]
    pub(crate) fn encode_into(&self, msg: &[u8], dst: &mut BytesMut) -> Result<usize, FrameError> {
        let len = msg.len();
        if len > self.max {
            return Err(FrameError::TooLarge {
                len: len as u64,
                max: self.max as u64,
            });
        }
        let width = self.header_len();
        dst.reserve(width + len);
        match (width, self.big_endian) {
            // The common case, spelled out.
            (4, true) => dst.put_u32(len as u32),
            (_, true) => dst.put_slice(&(len as u64).to_be_bytes()[8 - width..]),
            (_, false) => dst.put_slice(&(len as u64).to_le_bytes()[..width]),
        }
        dst.put_slice(msg);
        Ok(width + len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The fast path agrees with `parse`: a whole frame within the
        /// limit where `parse` finds one, nothing where it does not.
        #[test]
        fn whole_frame_agrees_with_parse(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24),
            width in proptest::sample::select(
                (1..=8).filter(|&w| Width::from_bytes(w).is_some()).collect::<Vec<usize>>()
            ),
            little in proptest::prelude::any::<bool>(),
            max in 0usize..300,
        ) {
            let mut c = LengthDelimited::new().with_width(Width::from_bytes(width).unwrap());
            if little {
                c = c.little_endian();
            }
            let c = c.with_max_message_len(max);
            let expected = match c.parse(&bytes) {
                Ok(Parse::Frame { start, consumed, .. }) => {
                    proptest::prop_assert_eq!(start, c.header_len());
                    Some(consumed)
                }
                _ => None,
            };
            proptest::prop_assert_eq!(c.whole_frame(&bytes), expected);
        }
    }

    fn decode_all(c: &LengthDelimited, buf: &mut BytesMut) -> Result<Vec<Bytes>, FrameError> {
        let mut out = Vec::new();
        while let Some(msg) = c.decode(buf)? {
            out.push(msg);
        }
        Ok(out)
    }

    fn frame(msg: &[u8]) -> Vec<u8> {
        let mut v = (msg.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(msg);
        v
    }

    #[test]
    fn header_is_big_endian_payload_length() {
        let c = LengthDelimited::new();
        assert_eq!(&c.header(0).unwrap()[..], &[0, 0, 0, 0]);
        assert_eq!(
            &c.header(0x0102_0304 & 0x7f_ffff).unwrap()[..],
            &[0, 0x02, 0x03, 0x04]
        );
        let mut out = BytesMut::new();
        c.encode(b"hi", &mut out).unwrap();
        assert_eq!(&out[..], &[0, 0, 0, 2, b'h', b'i']);
    }

    #[test]
    fn every_split_point_of_a_frame_decodes_once() {
        let c = LengthDelimited::new();
        let wire = frame(b"hello world");
        for split in 0..=wire.len() {
            let mut buf = BytesMut::from(&wire[..split]);
            if split < wire.len() {
                assert_eq!(c.decode(&mut buf).unwrap(), None, "split {split}");
                buf.extend_from_slice(&wire[split..]);
            }
            assert_eq!(c.decode(&mut buf).unwrap().unwrap(), &b"hello world"[..]);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn byte_by_byte_reports_exactly_what_is_missing() {
        let c = LengthDelimited::new();
        let wire = frame(b"abc");
        for have in 0..wire.len() {
            // Before the header is whole, only the rest of the header is known.
            let expected = if have < 4 {
                4 - have
            } else {
                wire.len() - have
            };
            assert_eq!(
                c.parse(&wire[..have]).unwrap(),
                Parse::Incomplete { needed: expected }
            );
        }
        assert_eq!(
            c.parse(&wire).unwrap(),
            Parse::Frame {
                start: 4,
                end: 7,
                consumed: 7
            }
        );
    }

    #[test]
    fn many_messages_in_one_buffer() {
        let c = LengthDelimited::new();
        let mut wire = Vec::new();
        for i in 0..100u32 {
            wire.extend(frame(&i.to_be_bytes()[..(i % 5) as usize]));
        }
        wire.extend_from_slice(&[0, 0]); // a partial header stays behind
        let mut buf = BytesMut::from(&wire[..]);
        let msgs = decode_all(&c, &mut buf).unwrap();
        assert_eq!(msgs.len(), 100);
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(&m[..], &(i as u32).to_be_bytes()[..i % 5]);
        }
        assert_eq!(&buf[..], &[0, 0]);
    }

    #[test]
    fn decoded_messages_share_the_read_buffer() {
        let c = LengthDelimited::new();
        let mut buf = BytesMut::from(&frame(b"zero-copy")[..]);
        let base = buf.as_ptr() as usize;
        let msg = c.decode(&mut buf).unwrap().unwrap();
        assert_eq!(msg.as_ptr() as usize, base + 4, "the payload was copied");
    }

    #[test]
    fn limit_is_inclusive_and_checked_at_the_header() {
        let c = LengthDelimited::new().with_max_message_len(10);
        assert_eq!(
            c.parse(&frame(&[7; 10])).unwrap(),
            Parse::Frame {
                start: 4,
                end: 14,
                consumed: 14
            }
        );
        // max + 1: rejected from the header alone, before any payload.
        assert_eq!(
            c.parse(&11u32.to_be_bytes()),
            Err(FrameError::TooLarge { len: 11, max: 10 })
        );
        assert_eq!(&c.header(10).unwrap()[..], &10u32.to_be_bytes());
        assert_eq!(c.header(11), Err(FrameError::TooLarge { len: 11, max: 10 }));
    }

    #[test]
    fn huge_header_fails_without_allocating() {
        let c = LengthDelimited::new();
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        let cap = buf.capacity();
        assert_eq!(
            c.decode(&mut buf),
            Err(FrameError::TooLarge {
                len: u64::from(u32::MAX),
                max: LengthDelimited::DEFAULT_MAX_MESSAGE_LEN as u64
            })
        );
        assert_eq!(buf.capacity(), cap, "the decoder reserved memory");
        // Even with the limit at u32::MAX, the declared length is never reserved.
        let c = LengthDelimited::new().with_max_message_len(usize::MAX);
        assert_eq!(c.max_message_len(), u32::MAX as usize);
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff][..]);
        assert_eq!(c.decode(&mut buf), Ok(None));
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn other_widths_and_byte_orders() {
        let le2 = LengthDelimited::new()
            .with_width(Width::U16)
            .little_endian();
        assert_eq!(le2.max_message_len(), 65_535);
        assert_eq!(&le2.header(0x0102).unwrap()[..], &[0x02, 0x01]);
        assert_eq!(
            le2.parse(&[0x03, 0x00, b'a', b'b', b'c']).unwrap(),
            Parse::Frame {
                start: 2,
                end: 5,
                consumed: 5
            }
        );
        // Too long for the width: refused, never truncated.
        assert_eq!(
            le2.header(65_536),
            Err(FrameError::TooLarge {
                len: 65_536,
                max: 65_535
            })
        );
        let be1 = LengthDelimited::new().with_width(Width::U8);
        assert_eq!(be1.max_message_len(), 255);
        assert_eq!(&be1.header(7).unwrap()[..], &[7]);
        let be8 = LengthDelimited::new().with_width(Width::U64);
        assert_eq!(
            be8.max_message_len(),
            LengthDelimited::DEFAULT_MAX_MESSAGE_LEN
        );
        assert_eq!(&be8.header(0x0102).unwrap()[..], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(
            be8.parse(&[0xff; 8]),
            Err(FrameError::TooLarge {
                len: u64::MAX,
                max: LengthDelimited::DEFAULT_MAX_MESSAGE_LEN as u64
            })
        );
        let le8 = LengthDelimited::new()
            .with_width(Width::U64)
            .little_endian();
        assert_eq!(
            le8.parse(&[1, 0, 0, 0, 0, 0, 0, 0, 9]).unwrap(),
            Parse::Frame {
                start: 8,
                end: 9,
                consumed: 9
            }
        );
    }

    #[test]
    fn oversize_send_writes_nothing() {
        let c = LengthDelimited::new().with_max_message_len(3);
        let mut out = BytesMut::from(&b"keep"[..]);
        assert!(c.encode(b"four", &mut out).is_err());
        assert_eq!(&out[..], b"keep");
    }
}
