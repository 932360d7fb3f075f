//! Why a WebSocket handshake failed.

/// Why a WebSocket handshake failed (the reason of
/// [`Error::WebSocket`](crate::Error::WebSocket)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WsError {
    /// The peer spoke HTTP but did not ask for a WebSocket (a plain `GET`,
    /// a browser looking for a page, another method): it was answered
    /// (`426 Upgrade Required`, `404`, `405`, as the listener's table says).
    NotWebSocket,
    /// The server answered the upgrade with this HTTP status instead of
    /// `101 Switching Protocols`.
    Refused(u16),
    /// The upgrade request or response is not valid (what is wrong), or
    /// the connection ended in the middle of it.
    BadHandshake(String),
    /// The upgrade did not finish within the handshake timeout.
    HandshakeTimeout,
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::NotWebSocket => f.write_str("not a WebSocket upgrade request"),
            WsError::Refused(status) => {
                write!(
                    f,
                    "the server refused the WebSocket upgrade (HTTP {status})"
                )
            }
            WsError::BadHandshake(why) => write!(f, "bad WebSocket handshake: {why}"),
            WsError::HandshakeTimeout => {
                f.write_str("the WebSocket handshake did not finish in time")
            }
        }
    }
}

impl std::error::Error for WsError {}
