//! The default framing: a 4-byte big-endian length, then the payload.

use bytes::{BufMut, Bytes, BytesMut};

use super::{cut, FrameError, Parse};

/// The default largest message: 8 MiB.
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 8 * 1024 * 1024;

const HEADER_LEN: usize = 4;

/// Length-prefixed framing, the crate's TCP wire format.
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
/// A header that declares more than [`max_message_len`](Self::max_message_len)
/// (default [`DEFAULT_MAX_MESSAGE_LEN`], 8 MiB) is an error before anything is
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
}

impl Default for LengthDelimited {
    fn default() -> Self {
        Self::new()
    }
}

impl LengthDelimited {
    /// The default codec: 4-byte big-endian lengths, at most 8 MiB.
    pub const fn new() -> Self {
        LengthDelimited {
            max: DEFAULT_MAX_MESSAGE_LEN,
        }
    }

    /// Sets the largest message, clamped to what a 4-byte length can say
    /// (`u32::MAX`).
    pub fn with_max_message_len(mut self, max: usize) -> Self {
        self.max = max.min(u32::MAX as usize);
        self
    }

    /// The largest message this codec sends or accepts.
    pub const fn max_message_len(&self) -> usize {
        self.max
    }

    /// The length of the header: 4 bytes.
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Looks at the front of `buf`. The declared length is checked against
    /// the limit as soon as the header is complete, before any payload byte is
    /// awaited.
    #[inline]
    pub fn parse(&self, buf: &[u8]) -> Result<Parse, FrameError> {
        let Some(header) = buf.get(..HEADER_LEN) else {
            return Ok(Parse::Incomplete {
                needed: HEADER_LEN - buf.len(),
            });
        };
        let declared = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
        let len = usize::try_from(declared)
            .ok()
            .filter(|&len| len <= self.max)
            .ok_or(FrameError::TooLarge {
                len: u64::from(declared),
                max: self.max as u64,
            })?;
        let consumed = HEADER_LEN.checked_add(len).ok_or(FrameError::TooLarge {
            len: u64::from(declared),
            max: self.max as u64,
        })?;
        Ok(match consumed.checked_sub(buf.len()) {
            Some(needed) if needed > 0 => Parse::Incomplete { needed },
            _ => Parse::Frame {
                start: HEADER_LEN,
                end: consumed,
                consumed,
            },
        })
    }

    /// Cuts the next message out of `buf` without copying it.
    ///
    /// `Ok(None)`: more bytes are needed (nothing is reserved for them);
    /// `Ok(Some(message))`: one message, removed from `buf`;
    /// `Err`: the stream is corrupt.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.parse(buf)? {
            Parse::Incomplete { .. } => Ok(None),
            Parse::Frame {
                start,
                end,
                consumed,
            } => Ok(Some(cut(buf, start, end, consumed))),
        }
    }

    /// The header for a message of `len` bytes, or an error if it is larger
    /// than the limit.
    #[inline]
    pub fn header(&self, len: usize) -> Result<[u8; HEADER_LEN], FrameError> {
        match u32::try_from(len) {
            Ok(n) if len <= self.max => Ok(n.to_be_bytes()),
            _ => Err(FrameError::TooLarge {
                len: len as u64,
                max: self.max as u64,
            }),
        }
    }

    /// Appends one framed message to `dst` (header, then payload). On error
    /// `dst` is unchanged.
    pub fn encode(&self, msg: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        let header = self.header(msg.len())?;
        dst.reserve(HEADER_LEN + msg.len());
        dst.put_slice(&header);
        dst.put_slice(msg);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode_all;

    fn frame(msg: &[u8]) -> Vec<u8> {
        let mut v = (msg.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(msg);
        v
    }

    #[test]
    fn header_is_big_endian_payload_length() {
        let c = LengthDelimited::new();
        assert_eq!(c.header(0).unwrap(), [0, 0, 0, 0]);
        assert_eq!(
            c.header(0x0102_0304 & 0x7f_ffff).unwrap(),
            [0, 0x02, 0x03, 0x04]
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
        assert_eq!(c.header(10).unwrap(), 10u32.to_be_bytes());
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
                max: DEFAULT_MAX_MESSAGE_LEN as u64
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
    fn oversize_send_writes_nothing() {
        let c = LengthDelimited::new().with_max_message_len(3);
        let mut out = BytesMut::from(&b"keep"[..]);
        assert!(c.encode(b"four", &mut out).is_err());
        assert_eq!(&out[..], b"keep");
    }
}
