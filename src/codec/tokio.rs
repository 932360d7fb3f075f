//! converse's framings as tokio-util codecs (feature `tokio`): a tokio
//! program reaches a converse peer with `Framed` and the same framing, and
//! keeps converse's limit rule.
//!
//! [`LengthDelimited`] and [`Codec`] implement
//! [`tokio_util::codec::Decoder`] (items: [`Bytes`], one message each) and
//! [`Encoder`] for anything that is `AsRef<[u8]>`. Their errors are
//! `io::Error`s, as `LengthDelimitedCodec`'s are, so either drops in for the
//! other; a framing violation is [`io::ErrorKind::InvalidData`] with the
//! [`FrameError`] as its inner error.
//!
//! Unlike `LengthDelimitedCodec`, which reserves the length a header
//! declares before its bytes arrive (a 4-byte header can make it reserve 8
//! MiB), a converse codec never reserves more than 64 KiB ahead of what
//! arrived: a message's memory follows its bytes, and a header over the
//! limit is refused from the header alone.
//!
//! ```
//! use bytes::BytesMut;
//! use converse::codec::LengthDelimited;
//! use tokio_util::codec::{Decoder, Encoder};
//!
//! let mut codec = LengthDelimited::new();
//! let mut wire = BytesMut::new();
//! Encoder::encode(&mut codec, "hello", &mut wire)?;
//! assert_eq!(&wire[..], b"\0\0\0\x05hello");
//! let message = Decoder::decode(&mut codec, &mut wire)?;
//! assert_eq!(message.as_deref(), Some(&b"hello"[..]));
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{take, Codec, FrameError, LengthDelimited, Parse};

/// How far ahead of the bytes that arrived a decoder reserves room for a
/// message under way (the blocking and switchboard drivers' rule too).
const AHEAD: usize = 64 * 1024;

fn invalid(e: FrameError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Cuts the next message as `parse` found it, or reserves room for what
/// is missing, within [`AHEAD`].
fn cut(src: &mut BytesMut, parse: Parse) -> Option<Bytes> {
    if let Parse::Incomplete { needed } = parse {
        src.reserve(needed.min(AHEAD));
    }
    take(src, parse)
}

impl Decoder for LengthDelimited {
    type Item = Bytes;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Bytes>> {
        let parse = self.parse(src).map_err(invalid)?;
        Ok(cut(src, parse))
    }
}

impl<M: AsRef<[u8]>> Encoder<M> for LengthDelimited {
    type Error = io::Error;

    fn encode(&mut self, item: M, dst: &mut BytesMut) -> io::Result<()> {
        LengthDelimited::encode(self, item.as_ref(), dst).map_err(invalid)
    }
}

impl Decoder for Codec {
    type Item = Bytes;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<Bytes>> {
        let parse = self.parse(src).map_err(invalid)?;
        Ok(cut(src, parse))
    }
}

impl<M: AsRef<[u8]>> Encoder<M> for Codec {
    type Error = io::Error;

    fn encode(&mut self, item: M, dst: &mut BytesMut) -> io::Result<()> {
        Codec::encode(self, item.as_ref(), dst).map_err(invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Framing, Width};

    #[test]
    fn messages_cut_across_every_split_point() {
        let mut codec = LengthDelimited::new();
        let mut wire = BytesMut::new();
        for m in ["one", "", "three"] {
            Encoder::encode(&mut codec, m, &mut wire).unwrap();
        }
        let wire = wire.freeze();
        for split in 0..=wire.len() {
            let mut codec = LengthDelimited::new();
            let mut src = BytesMut::from(&wire[..split]);
            let mut got = Vec::new();
            while let Some(m) = Decoder::decode(&mut codec, &mut src).unwrap() {
                got.push(m);
            }
            src.extend_from_slice(&wire[split..]);
            while let Some(m) = Decoder::decode(&mut codec, &mut src).unwrap() {
                got.push(m);
            }
            assert_eq!(got, [&b"one"[..], b"", b"three"], "split at {split}");
            assert!(src.is_empty());
        }
    }

    #[test]
    fn a_large_declared_length_reserves_only_what_may_come_soon() {
        let mut codec = LengthDelimited::new();
        let mut src = BytesMut::from(&(8u32 << 20).to_be_bytes()[..]);
        assert_eq!(Decoder::decode(&mut codec, &mut src).unwrap(), None);
        assert!(src.capacity() <= AHEAD + 64, "{}", src.capacity());
        // Over the limit: refused from the header alone.
        let mut codec = LengthDelimited::new().with_max_message_len(1024);
        let mut src = BytesMut::from(&1025u32.to_be_bytes()[..]);
        let e = Decoder::decode(&mut codec, &mut src).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let frame = e.get_ref().and_then(|e| e.downcast_ref::<FrameError>());
        assert_eq!(
            frame,
            Some(&FrameError::TooLarge {
                len: 1025,
                max: 1024
            })
        );
        let e = Encoder::encode(&mut codec, vec![0u8; 1025], &mut src).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn every_framing_is_a_codec() {
        for framing in [
            Framing::Length {
                width: Width::U16,
                big_endian: false,
            },
            Framing::Varint,
            Framing::Lines,
        ] {
            let mut codec = framing.codec(1024);
            let mut wire = BytesMut::new();
            for m in ["alpha", "beta"] {
                Encoder::encode(&mut codec, m, &mut wire).unwrap();
            }
            let mut got = Vec::new();
            while let Some(m) = Decoder::decode(&mut codec, &mut wire).unwrap() {
                got.push(m);
            }
            assert_eq!(got, [&b"alpha"[..], b"beta"], "{framing}");
        }
    }
}
