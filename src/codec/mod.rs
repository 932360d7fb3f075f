//! Pure framing: turning a byte stream into messages and back.
//!
//! Nothing in this module touches a socket or an `io::Error`: a codec is a
//! function of the bytes it is given. Transports feed it what they read and
//! write what it produces, which is why the codecs can be tested byte by byte
//! and property-tested with arbitrary split points.
//!
//! A decoder looks at the front of a buffer and answers with a [`Parse`]:
//! either "a whole message lies here" or "at least `needed` more bytes are
//! required". It never asks for the declared length to be reserved up front:
//! the caller grows its buffer with the bytes that actually arrive.
//!
//! The errors of this module are its own: [`FrameError`] for bytes that
//! break the framing, [`ParseFramingError`] for a framing name that is not
//! one. The crate's [`Error`](crate::Error) converts from both.
//!
//! The WebSocket and NATS codecs are in their protocols' modules
//! (`converse::ws`, `converse::nats`).

mod framing;
mod length;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;

pub use framing::{Codec, Framing, ParseFramingError, Prefix};
pub use length::{LengthDelimited, Width};

use bytes::{Buf, Bytes, BytesMut};

/// What a decoder found at the front of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse {
    /// No whole message yet: at least `needed` more bytes are required
    /// (the exact number when the decoder knows it).
    Incomplete {
        /// The number of bytes still missing, at least 1.
        needed: usize,
    },
    /// A whole message: its payload is `buf[start..end]`, and the frame
    /// (header, payload, trailer) occupies `buf[..consumed]`.
    Frame {
        /// Where the payload starts.
        start: usize,
        /// Where the payload ends.
        end: usize,
        /// The length of the whole frame.
        consumed: usize,
    },
}

/// A framing violation found by a codec. A stream cannot be resynchronised
/// after one of these.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A message (to send, or declared by a received header) is larger than
    /// the limit.
    #[error("message of {len} bytes is larger than the limit of {max} bytes")]
    TooLarge {
        /// The length of the message.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The bytes do not form a valid frame.
    #[error("invalid frame: {0}")]
    Invalid(&'static str),
}

/// Cuts the frame `buf[..consumed]` out of `buf` without copying, and
/// returns its payload `start..end`.
#[inline]
pub(crate) fn cut(buf: &mut BytesMut, start: usize, end: usize, consumed: usize) -> Bytes {
    debug_assert!(start <= end && end <= consumed && consumed <= buf.len());
    let mut frame = buf.split_to(consumed);
    frame.truncate(end);
    frame.advance(start);
    frame.freeze()
}

/// The message a [`Parse`] found at the front of `buf`, cut out of it;
/// `None` when it found none yet.
#[inline]
pub(crate) fn take(buf: &mut BytesMut, parse: Parse) -> Option<Bytes> {
    match parse {
        Parse::Incomplete { .. } => None,
        Parse::Frame {
            start,
            end,
            consumed,
        } => Some(cut(buf, start, end, consumed)),
    }
}
