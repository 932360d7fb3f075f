//! The one error type of the crate.

use std::io;
use std::str::Utf8Error;
use std::time::Duration;

use bytes::Bytes;

use crate::addr::Addr;
use crate::codec::FrameError;

/// A specialised `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a conversation.
///
/// The variants are chosen so that a caller can act on them:
///
/// * the clean end of a conversation is **not** an error: receiving returns
///   `Ok(None)`; [`Error::Closed`] is only returned when a conversation that
///   has already ended (or was closed locally) is used again;
/// * [`Error::UnexpectedEof`] is a peer that vanished in the middle of a
///   message, which is different from a clean end;
/// * size errors name the size and the limit;
/// * [`Error::Timeout`] is the one timeout error on every platform (Unix
///   reports `WouldBlock`, Windows `TimedOut`); after a timeout the
///   conversation stays usable and nothing is lost.
///
/// The enum is `#[non_exhaustive]`: match it with a `_` arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The conversation was closed locally, or has already ended, and was used again.
    #[error("the conversation is closed")]
    Closed,

    /// The peer closed the stream in the middle of a message (inside a header
    /// or a payload). The conversation is over.
    #[error("{addr}: the peer closed the stream in the middle of a message")]
    UnexpectedEof {
        /// The peer.
        addr: Addr,
    },

    /// A message is larger than the limit. On send nothing was written; on
    /// receive nothing was allocated for it, and a stream conversation is over
    /// (it cannot find the next message boundary).
    #[error("message of {len} bytes is larger than the limit of {max} bytes")]
    MessageTooLarge {
        /// The length of the message, as sent or as declared by the peer.
        len: u64,
        /// The limit in force.
        max: u64,
    },

    /// A datagram arrived that was larger than the receive limit. It was
    /// dropped whole (never delivered cut short); the conversation stays usable.
    #[error("{addr}: a datagram larger than the {max}-byte receive limit was dropped")]
    Truncated {
        /// The sender of the datagram.
        addr: Addr,
        /// The receive limit in force.
        max: usize,
    },

    /// The peer broke the framing rules (for example a malformed length
    /// prefix). A stream conversation is over.
    #[error("{addr}: invalid frame: {reason}")]
    InvalidFrame {
        /// The peer.
        addr: Addr,
        /// What was wrong.
        reason: &'static str,
    },

    /// A read or write timeout expired. Nothing was lost: a message that was
    /// half received is completed by the next receive, a message that was half
    /// sent is completed by the next send or flush.
    #[error("operation timed out")]
    Timeout,

    /// A message started arriving but was not complete within the
    /// per-message deadline (a peer trickling bytes). The conversation is over.
    #[error("{addr}: message not complete within the {deadline:?} per-message deadline")]
    DeadlineExceeded {
        /// The peer.
        addr: Addr,
        /// The deadline in force.
        deadline: Duration,
    },

    /// A message received as text was not valid UTF-8. The message itself is
    /// kept, so nothing is lost; the conversation stays usable.
    #[error("message is not valid UTF-8")]
    InvalidText {
        /// The message as received.
        message: Bytes,
        /// Where the decoding failed.
        #[source]
        source: Utf8Error,
    },

    /// A message received as a typed value (feature `serde`) did not decode
    /// as that type. The message itself is kept, so nothing is lost; the
    /// conversation stays usable.
    #[error("message is not a valid value of the expected type: {reason}")]
    InvalidValue {
        /// The message as received.
        message: Bytes,
        /// Why it did not decode.
        reason: String,
    },

    /// A value could not be encoded (feature `serde`): its `Serialize`
    /// implementation failed. Nothing was sent.
    #[error("the value could not be encoded: {reason}")]
    Encode {
        /// Why it could not be encoded.
        reason: String,
    },

    /// The peer reset the connection.
    #[error("{addr}: connection reset by peer")]
    ConnectionReset {
        /// The peer.
        addr: Addr,
    },

    /// Writing to a peer that has closed its side. The process is never
    /// killed by `SIGPIPE`.
    #[error("{addr}: broken pipe (the peer has closed the connection)")]
    BrokenPipe {
        /// The peer.
        addr: Addr,
    },

    /// A connected datagram socket learned (through ICMP) that nothing listens
    /// at the peer's address. The conversation stays usable.
    #[error("{addr}: peer unreachable (nothing is listening there)")]
    PeerUnreachable {
        /// The peer.
        addr: Addr,
    },

    /// The connection was refused.
    #[error("{addr}: connection refused")]
    ConnectionRefused {
        /// The address that refused.
        addr: Addr,
    },

    /// An address could not be parsed or resolved.
    #[error("invalid address {input:?}: {reason}")]
    InvalidAddress {
        /// The text that was given.
        input: String,
        /// What was wrong with it.
        reason: String,
    },

    /// The transport does not support this operation.
    #[error("operation not supported by this transport: {0}")]
    Unsupported(&'static str),

    /// Any other I/O error, with the address it concerns.
    #[error("{addr}: I/O error")]
    Io {
        /// The address the operation concerned.
        addr: Addr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Maps an I/O error on a socket to the variant that names it.
    pub(crate) fn from_io(err: io::Error, addr: &Addr) -> Error {
        use io::ErrorKind::*;
        match err.kind() {
            WouldBlock | TimedOut => Error::Timeout,
            ConnectionReset | ConnectionAborted => Error::ConnectionReset { addr: addr.clone() },
            BrokenPipe => Error::BrokenPipe { addr: addr.clone() },
            ConnectionRefused => Error::ConnectionRefused { addr: addr.clone() },
            UnexpectedEof => Error::UnexpectedEof { addr: addr.clone() },
            _ => Error::Io {
                addr: addr.clone(),
                source: err,
            },
        }
    }

    /// Builds the error for a framing violation found by a codec.
    pub(crate) fn from_frame(err: FrameError, addr: &Addr) -> Error {
        match err {
            FrameError::TooLarge { len, max } => Error::MessageTooLarge { len, max },
            FrameError::Invalid(reason) => Error::InvalidFrame {
                addr: addr.clone(),
                reason,
            },
        }
    }

    /// `true` for [`Error::Timeout`]: the operation may simply be retried.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout)
    }
}

impl From<FrameError> for Error {
    fn from(err: FrameError) -> Error {
        Error::from_frame(err, &Addr::Unknown)
    }
}
