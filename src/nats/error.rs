//! Why a NATS conversation failed.

/// Why a NATS conversation failed (the reason of
/// [`Error::Nats`](crate::Error::Nats)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NatsError {
    /// The server sent `-ERR` with this reason (for example
    /// `Authorization Violation`); the server closes the connection.
    Server(String),
    /// The server broke the protocol (a malformed operation).
    Protocol(String),
    /// The peer is not a NATS server (no `INFO` first).
    NotNats,
    /// The server answered none of our pings.
    Stale,
    /// The connection to the server ended or broke. What was published to
    /// the subject meanwhile is lost for this conversation (core NATS
    /// delivers at most once); a blocking conversation connects again with
    /// [`Conversation::reconnect`](crate::Conversation::reconnect), a
    /// switchboard does so by itself.
    Disconnected,
    /// The connection (`INFO`, `CONNECT`, the first `PONG`) did not finish
    /// within the handshake timeout.
    HandshakeTimeout,
    /// The server requires TLS, and this build has no TLS.
    TlsUnavailable,
}

impl std::fmt::Display for NatsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsError::Server(reason) => write!(f, "the NATS server said: {reason}"),
            NatsError::Protocol(why) => write!(f, "{why}"),
            NatsError::NotNats => f.write_str("not a NATS server (no INFO)"),
            NatsError::Stale => f.write_str("the NATS server answered no ping"),
            NatsError::Disconnected => f.write_str("the connection to the NATS server is lost"),
            NatsError::HandshakeTimeout => {
                f.write_str("the NATS server did not complete the connection in time")
            }
            NatsError::TlsUnavailable => {
                f.write_str("the NATS server requires TLS, and this build has no `tls` feature")
            }
        }
    }
}

impl std::error::Error for NatsError {}
