//! URLs: the one table of schemes, and what a URL names. Both drivers
//! (`connect`/`listen` and the switchboard) read a URL here, so a scheme
//! means the same everywhere.
//!
//! ```text
//! scheme://[user[:password]@]host[:port][/path][?query]     tcp udp tls ws wss nats
//! scheme:///path                                            unix unixgram
//! ```
//!
//! | scheme | default port | listens | feature |
//! |---|---|---|---|
//! | `tcp` | — | yes | |
//! | `udp` | — | yes | |
//! | `unix` | — | yes | (Unix systems) |
//! | `unixgram` | — | no (bind a socket and adopt it) | (Unix systems) |
//! | `tls` | — | yes | `tls` |
//! | `ws` | 80 | yes | `ws` |
//! | `wss` | 443 | yes | `ws` and `tls` |
//! | `nats` | 4222 | no (a NATS server is the listener) | `nats` |
//!
//! The grammar is the subset of RFC 3986 that these schemes use, parsed
//! here rather than by the `url` crate: `url` treats `ws`/`wss` as special
//! schemes (it drops a port equal to the default, so an address no longer
//! prints as given), and its IDNA support brings the ICU crates into every
//! build for host names that the system's resolver takes as they are.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use crate::addr::{Addr, AddrError};

/// A transport's scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Scheme {
    Tcp,
    Udp,
    Unix,
    Unixgram,
    Tls,
    Ws,
    Wss,
    Nats,
    Quic,
}

impl Scheme {
    /// Every scheme, in the order messages list them.
    pub(crate) const ALL: [Scheme; 9] = [
        Scheme::Tcp,
        Scheme::Udp,
        Scheme::Unix,
        Scheme::Unixgram,
        Scheme::Tls,
        Scheme::Ws,
        Scheme::Wss,
        Scheme::Nats,
        Scheme::Quic,
    ];

    /// The scheme's name, as URLs write it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scheme::Tcp => "tcp",
            Scheme::Udp => "udp",
            Scheme::Unix => "unix",
            Scheme::Unixgram => "unixgram",
            Scheme::Tls => "tls",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
            Scheme::Nats => "nats",
            Scheme::Quic => "quic",
        }
    }

    /// The scheme named `name` (any case).
    pub(crate) fn from_name(name: &str) -> Option<Scheme> {
        Scheme::ALL
            .into_iter()
            .find(|s| s.name().eq_ignore_ascii_case(name))
    }

    /// The port a URL without one means, where the scheme has one.
    pub(crate) fn default_port(self) -> Option<u16> {
        match self {
            Scheme::Ws => Some(80),
            Scheme::Wss => Some(443),
            Scheme::Nats => Some(4222),
            _ => None,
        }
    }

    /// A path names the endpoint (Unix sockets), not a host and a port.
    pub(crate) fn is_path(self) -> bool {
        matches!(self, Scheme::Unix | Scheme::Unixgram)
    }

    /// Why this build cannot use the scheme, if it cannot.
    pub(crate) fn unavailable(self) -> Option<&'static str> {
        match self {
            Scheme::Tls if !cfg!(feature = "tls") => Some("tls:// without the `tls` feature"),
            Scheme::Ws if !cfg!(feature = "ws") => Some("ws:// without the `ws` feature"),
            Scheme::Wss if !cfg!(all(feature = "ws", feature = "tls")) => {
                Some("wss:// without the `ws` and `tls` features")
            }
            Scheme::Nats if !cfg!(feature = "nats") => Some("nats:// without the `nats` feature"),
            Scheme::Quic if !cfg!(feature = "quic") => Some("quic:// without the `quic` feature"),
            Scheme::Unix | Scheme::Unixgram if !cfg!(unix) => {
                Some("Unix domain sockets on this system")
            }
            _ => None,
        }
    }

    /// Why nothing can listen on this scheme, if nothing can.
    pub(crate) fn cannot_listen(self) -> Option<&'static str> {
        match self {
            Scheme::Nats => Some(
                "listening on nats:// (a NATS conversation connects to a NATS server: use connect)",
            ),
            Scheme::Unixgram => Some(
                "listening on unixgram:// (bind a std UnixDatagram, connect it to its peer, \
                 and wrap it with UnixDatagram::from_socket)",
            ),
            _ => None,
        }
    }

    /// The address of an endpoint of this scheme.
    pub(crate) fn addr(self, at: SocketAddr) -> Addr {
        match self {
            Scheme::Tcp => Addr::Tcp(at),
            Scheme::Udp => Addr::Udp(at),
            Scheme::Tls => Addr::Tls(at),
            Scheme::Ws => Addr::Ws(at),
            Scheme::Wss => Addr::Wss(at),
            Scheme::Nats => Addr::Nats(at),
            Scheme::Quic => Addr::Quic(at),
            Scheme::Unix | Scheme::Unixgram => Addr::Unknown,
        }
    }
}

/// What a URL names, parsed but not resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Url {
    /// The URL as it was given (errors name it).
    pub(crate) input: String,
    pub(crate) scheme: Scheme,
    /// What comes after `scheme://`: a host and a port, or a path.
    pub(crate) place: Place,
}

/// Where a URL points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// A host (a name, or an IP address without brackets) and a port, and
    /// what followed them.
    Net {
        host: String,
        port: u16,
        /// `user[:password]` before the host, `%`-escapes decoded.
        userinfo: Option<(String, Option<String>)>,
        /// The path, from its `/` (`/` when there was none).
        path: String,
        /// What followed a `?`.
        query: Option<String>,
    },
    /// A Unix socket's path.
    Path(PathBuf),
}

impl Url {
    /// Parses `input`; every error names it.
    pub(crate) fn parse(input: &str) -> Result<Url, AddrError> {
        let bad = |why: &str| AddrError::new(input, why);
        let (name, rest) = input
            .split_once("://")
            .ok_or_else(|| bad("expected scheme://address, e.g. tcp://127.0.0.1:8090"))?;
        let scheme = Scheme::from_name(name).ok_or_else(|| unknown_scheme(input))?;
        if rest.is_empty() {
            return Err(bad("missing address after the scheme"));
        }
        if scheme.is_path() {
            return Ok(Url {
                input: input.to_owned(),
                scheme,
                place: Place::Path(PathBuf::from(rest)),
            });
        }
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q.to_owned())),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let userinfo = userinfo
            .map(|u| {
                let decode = |part: &str| {
                    percent_decode(part).ok_or_else(|| bad("credentials with a bad %-escape"))
                };
                match u.split_once(':') {
                    Some((user, pass)) => Ok((decode(user)?, Some(decode(pass)?))),
                    None => Ok((decode(u)?, None)),
                }
            })
            .transpose()?;
        let (host, port) = split_host_port(hostport).map_err(&bad)?;
        let port = match (port, scheme.default_port()) {
            (Some(p), _) => p
                .parse::<u16>()
                .map_err(|_| bad("the port is not a number from 0 to 65535"))?,
            (None, Some(p)) => p,
            (None, None) => return Err(bad("expected HOST:PORT (IPv6 in brackets: [::1]:8090)")),
        };
        if host.is_empty() {
            return Err(bad("expected HOST:PORT (IPv6 in brackets: [::1]:8090)"));
        }
        Ok(Url {
            input: input.to_owned(),
            scheme,
            place: Place::Net {
                host: host.to_owned(),
                port,
                userinfo,
                path: path.to_owned(),
                query,
            },
        })
    }

    /// The host and port, for schemes that have them.
    pub(crate) fn host_port(&self) -> Option<(&str, u16)> {
        match &self.place {
            Place::Net { host, port, .. } => Some((host, *port)),
            Place::Path(_) => None,
        }
    }

    /// `HOST:PORT` as a `Host` header says it (IPv6 in brackets).
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) fn authority(&self) -> String {
        match &self.place {
            Place::Net { host, port, .. } if host.contains(':') => format!("[{host}]:{port}"),
            Place::Net { host, port, .. } => format!("{host}:{port}"),
            Place::Path(p) => p.display().to_string(),
        }
    }

    /// The path (for WebSocket), `/` by default.
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) fn path(&self) -> &str {
        match &self.place {
            Place::Net { path, .. } => path,
            Place::Path(_) => "/",
        }
    }

    /// The socket addresses of the host and port, in the resolver's order
    /// (an IP address is not looked up). A host name is looked up here,
    /// which waits for the system's resolver.
    pub(crate) fn resolve(&self) -> Result<Vec<SocketAddr>, AddrError> {
        let Some((host, port)) = self.host_port() else {
            return Err(AddrError::new(&self.input, "a path, not a host and a port"));
        };
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let addrs: Vec<SocketAddr> = (host, port)
            .to_socket_addrs()
            .map_err(|e| AddrError::new(&self.input, e.to_string()))?
            .collect();
        if addrs.is_empty() {
            return Err(AddrError::new(
                &self.input,
                "the host name resolved to no address",
            ));
        }
        Ok(addrs)
    }

    /// The NATS subscription this URL asks for:
    /// `nats://[USER:PASS@|TOKEN@]HOST[:PORT]/SUBJECT[?queue=NAME]`.
    #[cfg(feature = "nats")]
    pub(crate) fn subscription(&self) -> Result<crate::nats::session::Subscription, AddrError> {
        use crate::nats::ops::{valid_subject, Credentials};
        let bad = |why: &str| AddrError::new(&self.input, why);
        let Place::Net {
            userinfo,
            path,
            query,
            ..
        } = &self.place
        else {
            return Err(bad("expected nats://HOST:PORT/SUBJECT"));
        };
        let subject = path.strip_prefix('/').unwrap_or(path);
        if subject.is_empty() {
            return Err(bad(
                "expected a subject after the address: nats://HOST:PORT/SUBJECT",
            ));
        }
        if !valid_subject(subject, true) {
            return Err(bad(
                "expected a NATS subject after the address: dot-separated tokens, no spaces",
            ));
        }
        let mut creds = Credentials::default();
        match userinfo {
            None => {}
            Some((user, Some(pass))) => creds.user = Some((user.clone(), pass.clone())),
            Some((token, None)) => creds.token = Some(token.clone()),
        }
        let mut queue = None;
        for pair in query.iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("queue", name)) if valid_subject(name, false) && !name.contains('.') => {
                    queue = Some(name.to_owned())
                }
                _ => return Err(bad("the only query parameter is queue=NAME")),
            }
        }
        Ok(crate::nats::session::Subscription {
            subject: std::sync::Arc::from(subject),
            queue,
            creds,
        })
    }
}

impl std::str::FromStr for Addr {
    type Err = AddrError;

    /// Parses an address URL of any scheme: an IP address and a port
    /// (`tcp://[::1]:8090`; a scheme's default port where it has one), or
    /// a path (`unix:///tmp/chat.sock`). Host names are not looked up
    /// here ([`connect`](crate::connect) does).
    ///
    /// ```
    /// use converse::Addr;
    ///
    /// let addr: Addr = "tcp://[::1]:8090".parse()?;
    /// assert_eq!(addr.to_string(), "tcp://[::1]:8090");
    /// assert_eq!(addr.socket_addr(), Some("[::1]:8090".parse()?));
    /// assert_eq!("ws://127.0.0.1".parse::<Addr>()?.to_string(), "ws://127.0.0.1:80");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn from_str(input: &str) -> Result<Addr, AddrError> {
        let url = Url::parse(input)?;
        match (&url.place, url.scheme) {
            (Place::Path(path), Scheme::Unix) => Ok(Addr::Unix(Some(path.clone()))),
            (Place::Path(path), _) => Ok(Addr::UnixDatagram(Some(path.clone()))),
            (Place::Net { host, port, .. }, scheme) => {
                let ip = host.parse::<std::net::IpAddr>().map_err(|_| {
                    AddrError::new(input, "expected IP:PORT (IPv6 in brackets: [::1]:8090)")
                })?;
                Ok(scheme.addr(SocketAddr::new(ip, *port)))
            }
        }
    }
}

/// The error for a scheme no transport answers to.
pub(crate) fn unknown_scheme(input: &str) -> AddrError {
    let names: Vec<&str> = Scheme::ALL.iter().map(|s| s.name()).collect();
    AddrError::new(
        input,
        format!("unknown scheme (expected {})", names.join(", ")),
    )
}

/// `host:port`, `[v6]:port`, `host` or `[v6]` split into the host (no
/// brackets) and the port, if there is one.
fn split_host_port(hostport: &str) -> Result<(&str, Option<&str>), &'static str> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address without its closing bracket")?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err("expected [IPv6]:PORT"),
            },
        };
    }
    match hostport.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => {
            Err("an IPv6 address must be in brackets: [::1]:8090")
        }
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((hostport, None)),
    }
}

/// `%XX` escapes decoded (so that a password may hold `@`, `:` or `/`);
/// `None` for a bad escape or bytes that are not UTF-8. `percent-encoding`
/// decodes; it passes a `%` that starts no escape through as it is, which
/// would hide a mistyped password, so every `%` is checked first to start
/// two hexadecimal digits.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let well_formed = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|decoded| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(url: &str) -> (String, u16, String) {
        match Url::parse(url).unwrap().place {
            Place::Net {
                host, port, path, ..
            } => (host, port, path),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_scheme_is_one_row_of_the_table() {
        for scheme in Scheme::ALL {
            assert_eq!(Scheme::from_name(scheme.name()), Some(scheme));
            assert_eq!(
                Scheme::from_name(&scheme.name().to_uppercase()),
                Some(scheme)
            );
        }
        assert_eq!(Scheme::from_name("ftp"), None);
        let err = Url::parse("ftp://127.0.0.1:1").unwrap_err();
        assert!(
            err.to_string()
                .contains("tcp, udp, unix, unixgram, tls, ws, wss, nats"),
            "{err}"
        );
    }

    #[test]
    fn default_ports_paths_and_trailing_slashes() {
        assert_eq!(net("ws://127.0.0.1"), ("127.0.0.1".into(), 80, "/".into()));
        assert_eq!(
            net("wss://example.invalid/socket"),
            ("example.invalid".into(), 443, "/socket".into())
        );
        assert_eq!(net("nats://127.0.0.1/chat").1, 4222);
        assert_eq!(
            net("tcp://localhost:1/"),
            ("localhost".into(), 1, "/".into())
        );
        assert_eq!(net("tcp://[::1]:8090"), ("::1".into(), 8090, "/".into()));
        assert_eq!(net("WS://[::1]/x?y").0, "::1");
        for bad in [
            "tcp://127.0.0.1",
            "tcp://::1:80",
            "tcp://127.0.0.1:99999",
            "tcp://:80",
            "tcp://[::1",
            "tcp://",
            "127.0.0.1:8090",
        ] {
            let err = Url::parse(bad).unwrap_err();
            assert_eq!(err.input, bad);
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn resolving_keeps_literals_and_asks_the_resolver_for_names() {
        let url = Url::parse("tcp://127.0.0.1:5").unwrap();
        assert_eq!(url.resolve().unwrap(), vec!["127.0.0.1:5".parse().unwrap()]);
        let url = Url::parse("tcp://localhost:5").unwrap();
        assert!(url
            .resolve()
            .unwrap()
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 5));
        assert_eq!(Url::parse("tcp://[::1]:7").unwrap().authority(), "[::1]:7");
    }

    #[test]
    fn addresses_parse_and_print_as_the_same_url() {
        for s in [
            "tcp://127.0.0.1:8090",
            "tcp://[::1]:8090",
            "udp://127.0.0.1:1",
            "udp://[::1]:65535",
            "tls://127.0.0.1:8443",
            "ws://127.0.0.1:80",
            "wss://[::1]:443",
            "nats://127.0.0.1:4222",
            "unix:///tmp/x.sock",
            "unixgram:///tmp/x.sock",
        ] {
            let a: Addr = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
            assert_eq!(a.scheme(), s.split("://").next().unwrap());
        }
        let err = "tcp://localhost:80".parse::<Addr>().unwrap_err();
        assert!(err.to_string().contains("IP:PORT"), "{err}");
    }

    #[test]
    fn percent_escapes_are_two_hex_digits() {
        assert_eq!(percent_decode("p%40ss%3a").as_deref(), Some("p@ss:"));
        assert_eq!(percent_decode("%E4%BD%A0").as_deref(), Some("你"));
        for bad in ["%+1", "%4", "%zz", "%", "%c3", "a%2", "%%41"] {
            assert_eq!(percent_decode(bad), None, "{bad}");
        }
    }

    #[cfg(feature = "nats")]
    #[test]
    fn nats_urls_carry_subject_queue_and_escaped_credentials() {
        let url =
            Url::parse("nats://me:p%40ss%3Aw%2Frd@127.0.0.1:4222/chat.room?queue=workers").unwrap();
        let sub = url.subscription().unwrap();
        assert_eq!(&*sub.subject, "chat.room");
        assert_eq!(sub.queue.as_deref(), Some("workers"));
        assert_eq!(sub.creds.user, Some(("me".into(), "p@ss:w/rd".into())));
        let sub = Url::parse("nats://s3cr%65t@[::1]:4222/a.*")
            .unwrap()
            .subscription()
            .unwrap();
        assert_eq!(sub.creds.token.as_deref(), Some("s3cret"));
        assert!(!sub.publishable());
        let err = Url::parse("nats://127.0.0.1/")
            .unwrap()
            .subscription()
            .unwrap_err();
        assert_eq!(err.input, "nats://127.0.0.1/", "the whole URL is named");
        for bad in [
            "nats://me:%4@127.0.0.1:4222/a",
            "nats://me:%zz@127.0.0.1:4222/a",
            "nats://@127.0.0.1:4222",
            "nats://127.0.0.1:4222/a?x=y",
        ] {
            assert!(
                Url::parse(bad).and_then(|u| u.subscription()).is_err(),
                "{bad}"
            );
        }
    }
}
