//! The one error type of the crate.

use std::io;
use std::str::Utf8Error;
use std::time::Duration;

use bytes::Bytes;

use crate::addr::{Addr, AddrError};
use crate::codec::{FrameError, ParseFramingError};
use crate::config::ConfigError;

/// A specialised `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a conversation.
///
/// The variants are chosen so that a caller can act on them, and each says
/// what happens next:
///
/// | variant | after it |
/// |---|---|
/// | *(not an error)* `Ok(None)` from a receive | the peer's clean end, between messages |
/// | [`UnexpectedEof`](Error::UnexpectedEof), [`DeadlineExceeded`](Error::DeadlineExceeded), [`InvalidFrame`](Error::InvalidFrame), [`ConnectionReset`](Error::ConnectionReset), [`BrokenPipe`](Error::BrokenPipe) | the conversation is over: both halves answer [`Closed`](Error::Closed) from then on |
/// | [`MessageTooLarge`](Error::MessageTooLarge) | on send: nothing written, still usable; on receive over a stream: over |
/// | [`Timeout`](Error::Timeout) | still usable, nothing lost, nothing taken |
/// | [`InvalidText`](Error::InvalidText), [`Truncated`](Error::Truncated), [`PeerUnreachable`](Error::PeerUnreachable) | still usable |
/// | [`Closed`](Error::Closed) | the conversation was closed, stopped, or has failed before: a mistake of the caller, not news from the peer |
///
/// The enum is `#[non_exhaustive]`: match it with a `_` arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The conversation (or this half, or the listener) was closed or
    /// stopped locally, or has already failed, and was used again. Never the
    /// peer's doing: the peer's clean end is `Ok(None)`.
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

    /// The bytes broke the framing rules (from the peer: a malformed length
    /// prefix, after which a stream conversation is over), or a message
    /// cannot be framed (on send: a line containing `\n`, an empty message
    /// over `raw`; nothing was written and the conversation goes on).
    #[error("{addr}: invalid frame: {reason}")]
    InvalidFrame {
        /// The peer.
        addr: Addr,
        /// What was wrong.
        reason: &'static str,
    },

    /// A read, write or accept timeout expired. Nothing was lost and nothing
    /// was taken: a message half received is completed by the next receive;
    /// a message whose send timed out was not sent at all (send it again);
    /// messages fed earlier wait for the next flush.
    #[error("operation timed out")]
    Timeout,

    /// A message started arriving but was not complete within the
    /// per-message deadline, counted from when its first bytes arrived (a
    /// peer trickling bytes). The conversation is over.
    #[error("{addr}: message not complete within the {deadline:?} per-message deadline")]
    DeadlineExceeded {
        /// The peer.
        addr: Addr,
        /// The deadline in force.
        deadline: Duration,
    },

    /// A graceful close gave up before everything queued was written: the
    /// peer did not read within the linger time (plus the write timeout).
    /// The connection was reset, so the peer sees an error, never a clean
    /// end after missing messages.
    #[error("{addr}: closed with {bytes} bytes never sent (the peer did not read them in time); the connection was reset")]
    Unsent {
        /// The peer.
        addr: Addr,
        /// How many bytes were still queued.
        bytes: u64,
    },

    /// A conversation on a [`Switchboard`](crate::Switchboard) did not read
    /// what was sent to it: its outbox passed the backlog limit
    /// ([`Config::max_backlog`](crate::Config::max_backlog)). It was ended
    /// (and reset) so that nobody else waits for it.
    #[error("{addr}: slow consumer: {queued} bytes waiting, over the {limit}-byte backlog limit")]
    SlowConsumer {
        /// The peer.
        addr: Addr,
        /// What was waiting for it, with the message that did not fit.
        queued: u64,
        /// The limit in force.
        limit: u64,
    },

    /// A switchboard's memory budget
    /// ([`Config::memory_budget`](crate::Config::memory_budget)) was
    /// reached, and this conversation held the most of it (a message under
    /// way, or its outbox): it was ended (and reset) so that the others
    /// could go on.
    #[error("{addr}: ended holding {held} bytes when the switchboard's {budget}-byte memory budget was reached")]
    OverBudget {
        /// The peer.
        addr: Addr,
        /// What it held: received of a message not yet whole, and queued
        /// for it.
        held: u64,
        /// The switchboard's budget.
        budget: u64,
    },

    /// A TLS conversation failed (feature `tls`): the handshake was refused
    /// or broken, and the reason says why in one line (unknown issuer, name
    /// mismatch, expired, no client certificate, not TLS …). The
    /// conversation is over; a listener goes on.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[error("{addr}: TLS: {reason}")]
    Tls {
        /// The peer.
        addr: Addr,
        /// Why.
        reason: crate::tls::TlsError,
        /// rustls's own error (a `rustls::Error`: downcast to read it),
        /// where the reason came from one; `None` for reasons of
        /// converse's (a handshake timeout, a connection closed during the
        /// handshake). It is the error's
        /// [`source`](std::error::Error::source).
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// A WebSocket handshake failed (feature `ws`): not a WebSocket
    /// request, an upgrade refused, a bad handshake (the connection cut in
    /// the middle of it among them), or one that did not finish in time.
    /// The conversation is over; a listener goes on.
    #[cfg(feature = "ws")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    #[error("{addr}: {reason}")]
    WebSocket {
        /// The peer.
        addr: Addr,
        /// Why.
        reason: crate::ws::WsError,
    },

    /// A NATS conversation failed (feature `nats`): the server refused
    /// (`-ERR`), broke the protocol, stopped answering pings, or the
    /// connection to it was lost ([`NatsError::Disconnected`](crate::nats::NatsError::Disconnected):
    /// [`Conversation::reconnect`](crate::Conversation::reconnect) connects
    /// again).
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    #[error("{addr}: {reason}")]
    Nats {
        /// The server.
        addr: Addr,
        /// Why.
        reason: crate::nats::NatsError,
    },

    /// A TLS peer ended the connection without `close_notify`, between two
    /// messages (and between two records). Every message received was whole
    /// and authentic, but the end itself is not authenticated: someone
    /// could have cut the connection, and whether the peer meant to send
    /// more is not known. Such a cut can only fall at a message boundary:
    /// one inside a message, or inside a record, is
    /// [`UnexpectedEof`](Error::UnexpectedEof). Many peers end this way
    /// (a browser, Python's `ssl` without `unwrap`); treat it as the end if
    /// the protocol above says the conversation was complete.
    #[error("{addr}: the peer ended without TLS close_notify (between messages: nothing received was cut, but the end is not authenticated)")]
    NoCloseNotify {
        /// The peer.
        addr: Addr,
    },

    /// A certificate, key or CA that cannot be used (unreadable, not PEM,
    /// not a certificate), refused when given (feature `tls`).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    #[error(transparent)]
    InvalidCertificate(#[from] crate::tls::CertificateError),

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

    /// The peer reset the connection. Messages it had not read were lost.
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
    #[error(transparent)]
    InvalidAddress(#[from] AddrError),

    /// A framing name was not one (see [`Framing`](crate::codec::Framing)).
    #[error(transparent)]
    InvalidFraming(#[from] ParseFramingError),

    /// A setting that cannot work (a zero timeout, a zero deadline), refused
    /// when it was given.
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),

    /// The transport does not support this operation.
    #[error("operation not supported by this transport: {0}")]
    Unsupported(&'static str),

    /// Any other I/O error, with the address it concerns. It prints the
    /// kind of error (`address in use`, `permission denied`, …); the
    /// system's own message is its [`source`](std::error::Error::source).
    #[error("{addr}: {}", kind_text(source))]
    Io {
        /// The address the operation concerned.
        addr: Addr,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// What an I/O error is, in a few words: its kind, or for the kinds std
/// leaves unnamed, the system's own message.
fn kind_text(err: &io::Error) -> String {
    let kind = err.kind().to_string();
    // `Other` and std's unnamed kinds ("uncategorized error") say nothing.
    if err.kind() == io::ErrorKind::Other || kind.contains("uncategorized") {
        err.to_string()
    } else {
        kind
    }
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

    /// A TLS or WebSocket handshake's failure (what the switchboard counts
    /// and tracing reports as one).
    pub(crate) fn is_handshake(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Error::Tls { .. } => true,
            #[cfg(feature = "ws")]
            Error::WebSocket { .. } => true,
            _ => false,
        }
    }

    /// `true` for an error that a server's `accept` loop should survive
    /// (and accept again): the process or the system ran out of file
    /// descriptors or buffers for a moment (`EMFILE`, `ENFILE`, `ENOBUFS`,
    /// `ENOMEM`: pause a little first), or one client failed or gave up
    /// during its handshake (`ECONNABORTED`, a reset, a TLS or WebSocket
    /// handshake that failed, one cut short or too slow).
    ///
    /// ```no_run
    /// let listener = converse::listen("ws://127.0.0.1:8092")?;
    /// loop {
    ///     match listener.accept() {
    ///         Ok(conversation) => { /* serve it */ }
    ///         Err(e) if e.is_transient() => eprintln!("{e}"),
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// # Ok::<(), converse::Error>(())
    /// ```
    pub fn is_transient(&self) -> bool {
        match self {
            Error::ConnectionReset { .. } | Error::Timeout => true,
            #[cfg(feature = "tls")]
            Error::Tls { .. } => true,
            #[cfg(feature = "ws")]
            Error::WebSocket { .. } => true,
            Error::Io { source, .. } => {
                matches!(
                    source.kind(),
                    io::ErrorKind::OutOfMemory | io::ErrorKind::ConnectionAborted
                ) || matches!(
                    source.raw_os_error(),
                    Some(code) if TRANSIENT_ACCEPT.contains(&code)
                )
            }
            _ => false,
        }
    }
}

/// `EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`, `ECONNABORTED`.
#[cfg(unix)]
const TRANSIENT_ACCEPT: &[i32] = &[
    libc::EMFILE,
    libc::ENFILE,
    libc::ENOBUFS,
    libc::ENOMEM,
    libc::ECONNABORTED,
];
#[cfg(not(unix))]
const TRANSIENT_ACCEPT: &[i32] = &[];

impl From<FrameError> for Error {
    fn from(err: FrameError) -> Error {
        Error::from_frame(err, &Addr::Unknown)
    }
}

impl From<Error> for io::Error {
    /// The error as an `io::Error` of the kind that fits it (a timeout is
    /// `TimedOut`, a reset `ConnectionReset` …), for code built on `io`;
    /// the error itself is its inner error.
    fn from(err: Error) -> io::Error {
        use io::ErrorKind as K;
        let kind = match &err {
            Error::Io { source, .. } => source.kind(),
            Error::Timeout => K::TimedOut,
            Error::Closed => K::NotConnected,
            Error::UnexpectedEof { .. } => K::UnexpectedEof,
            Error::ConnectionReset { .. } | Error::Unsent { .. } => K::ConnectionReset,
            Error::BrokenPipe { .. } => K::BrokenPipe,
            Error::ConnectionRefused { .. } => K::ConnectionRefused,
            Error::InvalidAddress(_) | Error::InvalidFraming(_) | Error::InvalidConfig(_) => {
                K::InvalidInput
            }
            Error::Unsupported(_) => K::Unsupported,
            Error::MessageTooLarge { .. }
            | Error::InvalidFrame { .. }
            | Error::InvalidText { .. }
            | Error::Truncated { .. } => K::InvalidData,
            _ => K::Other,
        };
        io::Error::new(kind, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_an_io_error_each_keeps_its_kind_and_itself() {
        use io::ErrorKind as K;
        let addr = Addr::Unknown;
        for (err, kind) in [
            (Error::Timeout, K::TimedOut),
            (Error::Closed, K::NotConnected),
            (
                Error::UnexpectedEof { addr: addr.clone() },
                K::UnexpectedEof,
            ),
            (Error::MessageTooLarge { len: 9, max: 8 }, K::InvalidData),
        ] {
            let shown = err.to_string();
            let io = io::Error::from(err);
            assert_eq!(io.kind(), kind, "{shown}");
            assert_eq!(io.to_string(), shown);
            assert!(io.get_ref().is_some_and(|e| e.is::<Error>()));
        }
    }
}
