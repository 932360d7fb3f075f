//! Addresses of conversations, and the `scheme://` syntax that picks a
//! transport at run time.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

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
            | Addr::Nats(a) => Some(*a),
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
            Addr::Unix(Some(p)) => write!(f, "unix://{}", p.display()),
            Addr::Unix(None) => f.write_str("unix://(unnamed)"),
            Addr::UnixDatagram(Some(p)) => write!(f, "unixgram://{}", p.display()),
            Addr::UnixDatagram(None) => f.write_str("unixgram://(unnamed)"),
            Addr::Memory(n) => write!(f, "memory://{n}"),
            Addr::Unknown => f.write_str("unknown://"),
        }
    }
}

/// The schemes of the transports this crate knows, in the order the
/// error messages list them.
pub(crate) const SCHEMES: &[&str] = &["tcp", "udp", "unix", "unixgram", "tls", "ws", "wss", "nats"];

/// Splits `scheme://rest` into the lowercase scheme and the rest. A missing
/// scheme is an error: the transport must be chosen explicitly. Whether the
/// scheme is known is for the caller to say.
pub(crate) fn split_url(input: &str) -> Result<(String, &str)> {
    let (scheme, rest) = input.split_once("://").ok_or_else(|| {
        AddrError::new(
            input,
            "expected scheme://address, e.g. tcp://127.0.0.1:8090",
        )
    })?;
    if rest.is_empty() {
        return Err(AddrError::new(input, "missing address after the scheme"));
    }
    Ok((scheme.to_ascii_lowercase(), rest))
}

/// The error for a scheme no transport answers to.
pub(crate) fn unknown_scheme(input: &str, known: &[&str]) -> AddrError {
    AddrError::new(
        input,
        format!("unknown scheme (expected {})", known.join(", ")),
    )
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

/// Resolves `HOST:PORT` (an IP literal, `[v6]:port`, or a host name) to its
/// socket addresses, in the order the resolver gives them.
pub(crate) fn resolve(input: &str, hostport: &str) -> Result<Vec<SocketAddr>> {
    let bad = |reason: String| AddrError::new(input, reason);
    if let Ok(addr) = hostport.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    if !hostport.contains(':') {
        return Err(bad("expected HOST:PORT".to_owned()));
    }
    let addrs: Vec<SocketAddr> = hostport
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(bad("the host name resolved to no address".to_owned()));
    }
    Ok(addrs)
}

impl FromStr for Addr {
    type Err = AddrError;

    /// Parses `tcp://IP:PORT`, `udp://IP:PORT`, `unix:///path` or
    /// `unixgram:///path`. Host names are not resolved here (use
    /// [`connect`](crate::connect), which does).
    fn from_str(input: &str) -> Result<Addr> {
        let (scheme, rest) = split_url(input)?;
        let sock = || {
            rest.parse::<SocketAddr>().map_err(|_| {
                AddrError::new(input, "expected IP:PORT (IPv6 in brackets: [::1]:8090)")
            })
        };
        Ok(match scheme.as_str() {
            "tcp" => Addr::Tcp(sock()?),
            "udp" => Addr::Udp(sock()?),
            "tls" => Addr::Tls(sock()?),
            // A path after the address names a resource, not an endpoint.
            "ws" | "wss" | "nats" => {
                let hostport = rest.split('/').next().unwrap_or(rest);
                let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
                let a = hostport.parse::<SocketAddr>().map_err(|_| {
                    AddrError::new(input, "expected IP:PORT (IPv6 in brackets: [::1]:8090)")
                })?;
                match scheme.as_str() {
                    "ws" => Addr::Ws(a),
                    "wss" => Addr::Wss(a),
                    _ => Addr::Nats(a),
                }
            }
            "unix" => Addr::Unix(Some(PathBuf::from(rest))),
            "unixgram" => Addr::UnixDatagram(Some(PathBuf::from(rest))),
            _ => return Err(unknown_scheme(input, SCHEMES)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_every_scheme() {
        for s in [
            "tcp://127.0.0.1:8090",
            "tcp://[::1]:8090",
            "udp://127.0.0.1:1",
            "udp://[::1]:65535",
            "unix:///tmp/x.sock",
            "unixgram:///tmp/x.sock",
        ] {
            let a: Addr = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
        }
    }

    #[test]
    fn rejects_bad_addresses_with_the_input_named() {
        for s in [
            "127.0.0.1:8090",
            "ftp://127.0.0.1:1",
            "tcp://",
            "tcp://127.0.0.1",
            "tcp://::1:80",
            "tcp://127.0.0.1:99999",
        ] {
            let err = s.parse::<Addr>().unwrap_err();
            assert_eq!(err.input, s, "{err:?}");
            assert!(err.to_string().contains(s), "{err}");
        }
    }

    #[test]
    fn resolve_accepts_literals_and_localhost() {
        assert_eq!(
            resolve("x", "127.0.0.1:5").unwrap(),
            vec!["127.0.0.1:5".parse().unwrap()]
        );
        let local = resolve("x", "localhost:5").unwrap();
        assert!(local.iter().all(|a| a.ip().is_loopback() && a.port() == 5));
        assert!(resolve("x", "localhost").is_err());
    }
}
