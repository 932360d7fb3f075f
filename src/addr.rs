//! Addresses of conversations. They print as the URL that selects the
//! same transport again; `url.rs` parses them.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

/// An address that could not be parsed or resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {input:?}: {reason}")]
pub struct AddrError {
    /// The text that was given.
    pub input: String,
    /// What was wrong with it.
    pub reason: String,
}

impl AddrError {
    pub(crate) fn new(input: impl Into<String>, reason: impl Into<String>) -> AddrError {
        AddrError {
            input: input.into(),
            reason: reason.into(),
        }
    }
}

type Result<T, E = AddrError> = std::result::Result<T, E>;

/// The address of one end of a conversation, with its transport.
///
/// It prints as the URL that selects the same transport again:
/// `tcp://127.0.0.1:8090`, `udp://[::1]:8090`, `unix:///tmp/sock`,
/// `unixgram:///tmp/sock`, `memory://3`.
///
/// ```
/// use converse::Addr;
///
/// let addr: Addr = "tcp://[::1]:8090".parse()?;
/// assert_eq!(addr.to_string(), "tcp://[::1]:8090");
/// assert_eq!(addr.socket_addr(), Some("[::1]:8090".parse()?));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Addr {
    /// A TCP endpoint.
    Tcp(SocketAddr),
    /// A UDP endpoint.
    Udp(SocketAddr),
    /// A TLS endpoint (over TCP).
    Tls(SocketAddr),
    /// A WebSocket endpoint.
    Ws(SocketAddr),
    /// A WebSocket endpoint over TLS.
    Wss(SocketAddr),
    /// A NATS server.
    Nats(SocketAddr),
    /// A QUIC endpoint (the conversation is one stream of a connection
    /// to it).
    Quic(SocketAddr),
    /// A Unix stream socket's path (`None` for an unnamed socket, or one in
    /// Linux's abstract namespace).
    Unix(Option<PathBuf>),
    /// A Unix datagram socket's path (`None` as for [`Addr::Unix`]).
    UnixDatagram(Option<PathBuf>),
    /// One end of an in-memory pair, numbered.
    Memory(u64),
    /// Not known (for example a user transport that has no address).
    Unknown,
}

impl Addr {
    /// The IP address and port, for TCP and UDP.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match self {
            Addr::Tcp(a)
            | Addr::Udp(a)
            | Addr::Tls(a)
            | Addr::Ws(a)
            | Addr::Wss(a)
            | Addr::Nats(a)
            | Addr::Quic(a) => Some(*a),
            _ => None,
        }
    }

    /// The scheme of this address: `tcp`, `udp`, `tls`, `ws`, `wss`,
    /// `unix`, `unixgram`, `memory` or `unknown`.
    pub fn scheme(&self) -> &'static str {
        match self {
            Addr::Tcp(_) => "tcp",
            Addr::Udp(_) => "udp",
            Addr::Tls(_) => "tls",
            Addr::Ws(_) => "ws",
            Addr::Wss(_) => "wss",
            Addr::Nats(_) => "nats",
            Addr::Quic(_) => "quic",
            Addr::Unix(_) => "unix",
            Addr::UnixDatagram(_) => "unixgram",
            Addr::Memory(_) => "memory",
            Addr::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(a) => write!(f, "tcp://{a}"),
            Addr::Udp(a) => write!(f, "udp://{a}"),
            Addr::Tls(a) => write!(f, "tls://{a}"),
            Addr::Ws(a) => write!(f, "ws://{a}"),
            Addr::Wss(a) => write!(f, "wss://{a}"),
            Addr::Nats(a) => write!(f, "nats://{a}"),
            Addr::Quic(a) => write!(f, "quic://{a}"),
            Addr::Unix(Some(p)) => write!(f, "unix://{}", p.display()),
            Addr::Unix(None) => f.write_str("unix://(unnamed)"),
            Addr::UnixDatagram(Some(p)) => write!(f, "unixgram://{}", p.display()),
            Addr::UnixDatagram(None) => f.write_str("unixgram://(unnamed)"),
            Addr::Memory(n) => write!(f, "memory://{n}"),
            Addr::Unknown => f.write_str("unknown://"),
        }
    }
}

/// Resolves `addr` for a transport's constructor (`what`: "TCP address"),
/// never to an empty list.
pub(crate) fn socket_addrs(addr: impl ToSocketAddrs, what: &str) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| AddrError::new(what, e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(no_address(what));
    }
    Ok(addrs)
}

/// The error for an address that resolved to nothing to try.
pub(crate) fn no_address(what: &str) -> AddrError {
    AddrError::new(what, "resolved to no address")
}
