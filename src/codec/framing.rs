//! The framings a stream transport can speak, behind one [`Codec`].

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use bytes::{BufMut, Bytes, BytesMut};

use super::{take, FrameError, LengthDelimited, Parse, Width};

/// The bytes that go before a message: a length field, a varint, or
/// nothing. At most 10 bytes, kept inline.
#[derive(Clone, Copy, Debug)]
pub struct Prefix {
    bytes: [u8; 10],
    start: u8,
    end: u8,
}

impl Prefix {
    /// The empty prefix.
    pub(crate) const EMPTY: Prefix = Prefix {
        bytes: [0; 10],
        start: 0,
        end: 0,
    };

    /// `bytes[start..end]`, without copying a slice of variable length (a
    /// `memcpy` call on the hot path of every send).
    #[inline]
    pub(crate) fn from_parts(bytes: [u8; 10], start: usize, end: usize) -> Prefix {
        debug_assert!(start <= end && end <= 10);
        Prefix {
            bytes,
            start: start as u8,
            end: end as u8,
        }
    }
}

impl Deref for Prefix {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        &self.bytes[usize::from(self.start)..usize::from(self.end)]
    }
}

impl PartialEq for Prefix {
    fn eq(&self, other: &Prefix) -> bool {
        **self == **other
    }
}

impl Eq for Prefix {}

/// How messages are delimited on a byte stream.
///
/// | framing | on the wire | for |
/// |---|---|---|
/// | `Length { width: Width::U32, big_endian: true }` (the default, `length`) | `len: u32 BE`, payload | tokio-util's `LengthDelimitedCodec`, Netty, `struct.pack('>I')` |
/// | `Length { width, big_endian }` (`length16le`, `length8be`, …) | a 1, 2, 4 or 8-byte length, either byte order, payload | systems with another header, e.g. 2-byte little-endian |
/// | `Varint` | the length as unsigned LEB128, payload | message-io, protobuf-style streams |
/// | `Lines` | the message, then `\n` (`\r\n` accepted on receive) | `nc`, telnet, line-based text protocols |
/// | `Raw` | the bytes as they are: **no boundaries** | legacy peers such as the tutorial's own programs |
///
/// With `Raw`, a receive returns whatever bytes have arrived (up to the
/// largest message): two sends may arrive as one receive, one as two. It
/// exists to talk to programs that do not frame at all; anything else
/// should use a real framing. An empty message cannot be sent over `Raw`
/// (it would put nothing on the wire, and the peer would wait for it
/// forever): such a send is refused.
///
/// The wire, one diagram per framing, for the messages `hi` and `` (empty):
///
/// ```text
/// length      00 00 00 02 'h' 'i' | 00 00 00 00
/// length16le  02 00 'h' 'i'       | 00 00
/// length8be   02 'h' 'i'          | 00
/// varint      02 'h' 'i'          | 00            (300 bytes: ac 02 ...)
/// lines       'h' 'i' 0a          | 0a            (\r\n accepted on receive)
/// raw         'h' 'i'             | (refused)
/// ```
///
/// ```
/// use converse::codec::{Framing, Width};
///
/// assert_eq!("lines".parse::<Framing>()?, Framing::Lines);
/// assert_eq!(
///     "length16le".parse::<Framing>()?,
///     Framing::Length { width: Width::U16, big_endian: false }
/// );
/// assert_eq!(Framing::default().to_string(), "length");
/// assert!("length24be".parse::<Framing>().is_err()); // no such width
/// # Ok::<(), converse::codec::ParseFramingError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Framing {
    /// A length field of `width` (1, 2, 4 or 8 bytes), then the payload.
    Length {
        /// The width of the length field.
        width: Width,
        /// Big-endian (network order) or little-endian.
        big_endian: bool,
    },
    /// The payload length as an unsigned LEB128 varint, then the payload.
    Varint,
    /// Each message is a line ended by `\n`; `\r\n` is accepted on receive.
    /// A message containing `\n`, or ending with `\r`, cannot be sent (it
    /// would not arrive as sent).
    Lines,
    /// No framing at all: message boundaries are not kept.
    Raw,
}

impl Default for Framing {
    fn default() -> Self {
        Framing::Length {
            width: Width::U32,
            big_endian: true,
        }
    }
}

impl Framing {
    /// A codec for this framing with the largest message `max` (for a
    /// length prefix, at most what its width can express; for `Raw`, at
    /// least 1).
    pub fn codec(self, max: usize) -> Codec {
        let kind = match self {
            Framing::Length { width, big_endian } => {
                let codec = LengthDelimited::new()
                    .with_width(width)
                    .with_max_message_len(max);
                Kind::Length(if big_endian {
                    codec
                } else {
                    codec.little_endian()
                })
            }
            Framing::Varint => Kind::Varint,
            Framing::Lines => Kind::Lines { scanned: 0 },
            Framing::Raw => Kind::Raw,
        };
        let max = match &kind {
            Kind::Length(c) => c.max_message_len(),
            // A raw receive takes at least one byte, or it would never
            // make progress.
            Kind::Raw => max.max(1),
            _ => max,
        };
        Codec { kind, max }
    }
}

impl fmt::Display for Framing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Framing::Length {
                width: Width::U32,
                big_endian: true,
            } => f.write_str("length"),
            Framing::Length { width, big_endian } => {
                write!(
                    f,
                    "length{}{}",
                    width.bytes() * 8,
                    if *big_endian { "be" } else { "le" }
                )
            }
            Framing::Varint => f.write_str("varint"),
            Framing::Lines => f.write_str("lines"),
            Framing::Raw => f.write_str("raw"),
        }
    }
}

/// A name that is not a framing (see [`Framing`]'s `FromStr`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown framing {name:?}: expected length, lines, raw, varint, or length8|16|32|64 \
     followed by be or le (length16le, length8be, ...)"
)]
pub struct ParseFramingError {
    /// The name that was given.
    pub name: String,
}

impl FromStr for Framing {
    type Err = ParseFramingError;

    /// `length` (4 bytes, big-endian), `length16le`-style names for every
    /// width (8, 16, 32, 64 bits) and order (`be`, `le`), `varint`, `lines`,
    /// `raw`.
    fn from_str(s: &str) -> Result<Framing, ParseFramingError> {
        let bad = || ParseFramingError { name: s.to_owned() };
        Ok(match s {
            "length" => Framing::default(),
            "varint" => Framing::Varint,
            "lines" => Framing::Lines,
            "raw" => Framing::Raw,
            other => {
                let rest = other.strip_prefix("length").ok_or_else(bad)?;
                let (bits, big_endian) = match (rest.strip_suffix("be"), rest.strip_suffix("le")) {
                    (Some(bits), _) => (bits, true),
                    (_, Some(bits)) => (bits, false),
                    _ => return Err(bad()),
                };
                let width = match bits {
                    "8" => Width::U8,
                    "16" => Width::U16,
                    "32" => Width::U32,
                    "64" => Width::U64,
                    _ => return Err(bad()),
                };
                Framing::Length { width, big_endian }
            }
        })
    }
}

#[derive(Clone, Debug)]
enum Kind {
    Length(LengthDelimited),
    Varint,
    /// How far the buffer has been searched for `\n` already, so that a long
    /// line arriving in small pieces is scanned once, not once per piece.
    Lines {
        scanned: usize,
    },
    Raw,
}

/// A [`Framing`] with its largest message: pure decoding and encoding.
///
/// ```
/// use bytes::BytesMut;
/// use converse::codec::Framing;
///
/// let mut lines = Framing::Lines.codec(1024);
/// let mut buf = BytesMut::from(&b"hello\r\nwor"[..]);
/// assert_eq!(lines.decode(&mut buf)?.as_deref(), Some(&b"hello"[..]));
/// assert_eq!(lines.decode(&mut buf)?, None); // "wor" waits for its \n
/// # Ok::<(), converse::codec::FrameError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Codec {
    kind: Kind,
    max: usize,
}

impl Codec {
    /// The largest message.
    pub fn max_message_len(&self) -> usize {
        self.max
    }

    /// The length-prefixed framing, if this is one (for the fast path
    /// where messages are cut).
    #[inline(always)]
    pub(crate) fn length(&self) -> Option<&LengthDelimited> {
        match &self.kind {
            Kind::Length(c) => Some(c),
            _ => None,
        }
    }

    /// Looks at the front of `buf` (see [`Parse`]).
    #[inline]
    pub fn parse(&mut self, buf: &[u8]) -> Result<Parse, FrameError> {
        let max = self.max;
        match &mut self.kind {
            Kind::Length(c) => c.parse(buf),
            Kind::Varint => parse_varint(buf, max),
            Kind::Lines { scanned } => {
                let from = (*scanned).min(buf.len());
                match buf[from..].iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        *scanned = 0;
                        let newline = from + i;
                        let end = if newline > 0 && buf[newline - 1] == b'\r' {
                            newline - 1
                        } else {
                            newline
                        };
                        if end > max {
                            return Err(FrameError::TooLarge {
                                len: end as u64,
                                max: max as u64,
                            });
                        }
                        Ok(Parse::Frame {
                            start: 0,
                            end,
                            consumed: newline + 1,
                        })
                    }
                    None => {
                        *scanned = buf.len();
                        // A line over the limit (a `\r` may still come).
                        if buf.len() > max + 1 {
                            return Err(FrameError::TooLarge {
                                len: buf.len() as u64,
                                max: max as u64,
                            });
                        }
                        Ok(Parse::Incomplete { needed: 1 })
                    }
                }
            }
            Kind::Raw => Ok(match buf.len().min(max) {
                0 => Parse::Incomplete { needed: 1 },
                n => Parse::Frame {
                    start: 0,
                    end: n,
                    consumed: n,
                },
            }),
        }
    }

    /// Cuts the next message out of `buf` without copying it; `Ok(None)`:
    /// more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let parse = self.parse(buf)?;
        Ok(take(buf, parse))
    }

    /// What goes before `msg` on the wire, or why `msg` cannot be sent.
    #[inline]
    pub fn prefix(&self, msg: &[u8]) -> Result<Prefix, FrameError> {
        match &self.kind {
            // The length codec checks the limit (the same one) itself.
            Kind::Length(c) => c.header(msg.len()),
            _ if msg.len() > self.max => Err(FrameError::TooLarge {
                len: msg.len() as u64,
                max: self.max as u64,
            }),
            Kind::Varint => {
                let mut out = [0u8; 10];
                let mut n = msg.len() as u64;
                let mut i = 0;
                loop {
                    let byte = (n & 0x7f) as u8;
                    n >>= 7;
                    if n == 0 {
                        out[i] = byte;
                        return Ok(Prefix::from_parts(out, 0, i + 1));
                    }
                    out[i] = byte | 0x80;
                    i += 1;
                }
            }
            Kind::Lines { .. } => {
                if msg.contains(&b'\n') {
                    Err(FrameError::Invalid("a line cannot contain \\n"))
                } else if msg.last() == Some(&b'\r') {
                    // It would arrive without its `\r`, taken for `\r\n`.
                    Err(FrameError::Invalid("a line cannot end with \\r"))
                } else {
                    Ok(Prefix::EMPTY)
                }
            }
            Kind::Raw if msg.is_empty() => Err(FrameError::Invalid(
                "an empty message cannot be sent without framing (raw): nothing would arrive",
            )),
            Kind::Raw => Ok(Prefix::EMPTY),
        }
    }

    /// What goes after each message on the wire.
    #[inline]
    pub fn suffix(&self) -> &'static [u8] {
        match self.kind {
            Kind::Lines { .. } => b"\n",
            _ => b"",
        }
    }

    /// Appends one framed message to `dst`. On error `dst` is unchanged.
    pub fn encode(&self, msg: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_into(msg, dst).map(drop)
    }

    /// Appends one framed message to `dst` and says how many bytes that
    /// took; on error `dst` is unchanged.
    #[inline]
    pub(crate) fn encode_into(&self, msg: &[u8], dst: &mut BytesMut) -> Result<usize, FrameError> {
        if let Kind::Length(c) = &self.kind {
            return c.encode_into(msg, dst);
        }
        let prefix = self.prefix(msg)?;
        let suffix = self.suffix();
        let len = prefix.len() + msg.len() + suffix.len();
        dst.reserve(len);
        dst.put_slice(&prefix);
        dst.put_slice(msg);
        dst.put_slice(suffix);
        Ok(len)
    }

    /// The framing this codec speaks.
    pub fn framing(&self) -> Framing {
        match &self.kind {
            Kind::Length(c) => Framing::Length {
                width: c.width(),
                big_endian: c.is_big_endian(),
            },
            Kind::Varint => Framing::Varint,
            Kind::Lines { .. } => Framing::Lines,
            Kind::Raw => Framing::Raw,
        }
    }

    /// `true` when this framing keeps message boundaries (every framing but
    /// `Raw`).
    pub fn keeps_boundaries(&self) -> bool {
        !matches!(self.kind, Kind::Raw)
    }
}

/// An unsigned LEB128 length (at most 10 bytes), then the payload.
fn parse_varint(buf: &[u8], max: usize) -> Result<Parse, FrameError> {
    let mut value: u64 = 0;
    for (i, &byte) in buf.iter().enumerate().take(10) {
        let bits = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return Err(FrameError::Invalid("varint length overflows 64 bits"));
        }
        value |= bits << (7 * i);
        if byte & 0x80 == 0 {
            let header = i + 1;
            let len = usize::try_from(value)
                .ok()
                .filter(|&len| len <= max)
                .ok_or(FrameError::TooLarge {
                    len: value,
                    max: max as u64,
                })?;
            let consumed = header + len;
            return Ok(match consumed.checked_sub(buf.len()) {
                Some(needed) if needed > 0 => Parse::Incomplete { needed },
                _ => Parse::Frame {
                    start: header,
                    end: consumed,
                    consumed,
                },
            });
        }
        // Already over the limit, whatever bytes follow: say so now.
        if value > max as u64 {
            return Err(FrameError::TooLarge {
                len: value,
                max: max as u64,
            });
        }
    }
    if buf.len() >= 10 {
        return Err(FrameError::Invalid("varint length longer than 10 bytes"));
    }
    Ok(Parse::Incomplete { needed: 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(codec: &mut Codec, wire: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut buf = BytesMut::from(wire);
        let mut out = Vec::new();
        while let Some(m) = codec.decode(&mut buf)? {
            out.push(m.to_vec());
        }
        Ok(out)
    }

    #[test]
    fn varint_lengths() {
        let mut c = Framing::Varint.codec(1 << 20);
        assert_eq!(&c.prefix(&[0; 0]).unwrap()[..], &[0]);
        assert_eq!(&c.prefix(&[0; 127]).unwrap()[..], &[0x7f]);
        assert_eq!(&c.prefix(&[0; 128]).unwrap()[..], &[0x80, 0x01]);
        assert_eq!(&c.prefix(&[0; 300]).unwrap()[..], &[0xac, 0x02]);
        assert_eq!(
            all(&mut c, &[2, b'h', b'i', 0, 1, b'x']).unwrap(),
            vec![b"hi".to_vec(), vec![], b"x".to_vec()]
        );
        assert_eq!(c.parse(&[0xac]).unwrap(), Parse::Incomplete { needed: 1 });
        assert_eq!(
            c.parse(&[0xac, 0x02, 1]).unwrap(),
            Parse::Incomplete { needed: 299 }
        );
        // Over the limit as soon as the varint says so, even unfinished.
        assert_eq!(
            c.parse(&[0x80, 0x80, 0x80, 0x01]),
            Err(FrameError::TooLarge {
                len: 1 << 21,
                max: 1 << 20
            })
        );
        let mut big = Framing::Varint.codec(usize::MAX);
        assert!(matches!(
            big.parse(&[0xff; 10]),
            Err(FrameError::Invalid(_))
        ));
        assert!(matches!(
            big.parse(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            Err(FrameError::Invalid(_))
        ));
    }

    #[test]
    fn lines() {
        let mut c = Framing::Lines.codec(5);
        assert_eq!(
            all(&mut c, b"one\ntwo\r\n\nfive5\n").unwrap(),
            vec![b"one".to_vec(), b"two".to_vec(), vec![], b"five5".to_vec()]
        );
        assert_eq!(c.suffix(), b"\n");
        assert!(matches!(c.prefix(b"a\nb"), Err(FrameError::Invalid(_))));
        assert!(matches!(c.prefix(b"a\r"), Err(FrameError::Invalid(_))));
        assert_eq!(&c.prefix(b"a\rb").unwrap()[..], b"");
        assert_eq!(
            c.prefix(b"sixsix"),
            Err(FrameError::TooLarge { len: 6, max: 5 })
        );
        // A line over the limit is refused without waiting for its end.
        let mut c = Framing::Lines.codec(5);
        assert_eq!(
            c.parse(b"12345\r").unwrap(),
            Parse::Incomplete { needed: 1 }
        );
        assert!(matches!(
            c.parse(b"1234567"),
            Err(FrameError::TooLarge { .. })
        ));
        let mut c = Framing::Lines.codec(5);
        assert!(matches!(
            c.parse(b"123456\n"),
            Err(FrameError::TooLarge { len: 6, .. })
        ));
    }

    #[test]
    fn lines_scan_each_byte_once() {
        let mut c = Framing::Lines.codec(1 << 20);
        let mut buf = Vec::new();
        for i in 0..1000 {
            buf.push(b'a');
            assert_eq!(c.parse(&buf).unwrap(), Parse::Incomplete { needed: 1 });
            if let Kind::Lines { scanned } = c.kind {
                assert_eq!(scanned, i + 1);
            }
        }
        buf.push(b'\n');
        assert_eq!(
            c.parse(&buf).unwrap(),
            Parse::Frame {
                start: 0,
                end: 1000,
                consumed: 1001
            }
        );
    }

    #[test]
    fn raw_returns_what_arrived() {
        let mut c = Framing::Raw.codec(4);
        assert_eq!(c.parse(b"").unwrap(), Parse::Incomplete { needed: 1 });
        assert_eq!(
            all(&mut c, b"onetwothree").unwrap(),
            vec![b"onet".to_vec(), b"woth".to_vec(), b"ree".to_vec()]
        );
        assert_eq!(&c.prefix(b"any").unwrap()[..], b"");
        assert!(matches!(c.prefix(b""), Err(FrameError::Invalid(_))));
        assert_eq!(c.suffix(), b"");
        // Even with a limit of 0, a raw receive makes progress.
        let mut c = Framing::Raw.codec(0);
        assert_eq!(c.max_message_len(), 1);
        assert_eq!(
            all(&mut c, b"ab").unwrap(),
            vec![b"a".to_vec(), b"b".to_vec()]
        );
    }

    #[test]
    fn names() {
        for f in [
            "length",
            "varint",
            "lines",
            "raw",
            "length16le",
            "length8be",
            "length64le",
        ] {
            assert_eq!(f.parse::<Framing>().unwrap().to_string(), f);
        }
        assert_eq!("length32be".parse::<Framing>().unwrap(), Framing::default());
        assert!("length12le".parse::<Framing>().is_err());
        assert!("json".parse::<Framing>().is_err());
    }
}
