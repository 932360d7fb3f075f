//! Choosing the transport at run time, by URL: [`connect`], [`listen`], and
//! the boxed [`Listener`]. This is the registry of every transport, above
//! everything it names.

use std::time::Duration;

use crate::addr::{self, AddrError, SCHEMES};
use crate::config::Config;
use crate::conversation::Conversation;
use crate::error::{Error, Result};
use crate::transport::{self, Stopper, Tcp, TcpListener, UdpListener};
use crate::Addr;

/// Connects to a URL with the default [`Config`]. The scheme picks the
/// transport:
///
/// | URL | transport |
/// |---|---|
/// | `tcp://HOST:PORT` (IPv6 as `tcp://[::1]:8090`) | [`Tcp`] |
/// | `tls://HOST:PORT` (feature `tls`) | `Tls`: the server's certificate verified for `HOST` |
/// | `udp://HOST:PORT` | [`Udp`](crate::Udp) |
/// | `unix:///path` (Unix systems) | `Unix`, a framed stream |
/// | `unixgram:///path` (Unix systems) | `UnixDatagram` |
/// | `ws://HOST:PORT[/path]`, `wss://…` (feature `ws`) | `Ws`: WebSocket, one message per WebSocket message |
/// | `nats://[USER:PASS@]HOST:PORT/SUBJECT[?queue=NAME]` (feature `nats`) | `Nats`: publish to and receive from a subject of a NATS server |
///
/// (`unix` and `unixgram` are the names Go's `net` package gives the two
/// kinds of Unix sockets.)
///
/// ```no_run
/// let mut conversation = converse::connect("tcp://127.0.0.1:8090")?;
/// conversation.send_text("hello!")?;
/// # Ok::<(), converse::Error>(())
/// ```
///
/// # Errors
///
/// [`Error::InvalidAddress`] for a URL that is not one (naming it),
/// [`Error::InvalidConfig`] for a configuration that cannot work,
/// [`Error::ConnectionRefused`] and the other I/O errors with the address.
pub fn connect(url: &str) -> Result<Conversation> {
    connect_with(url, &Config::default())
}

/// Connects to a URL with `config`. See [`connect`].
pub fn connect_with(url: &str, config: &Config) -> Result<Conversation> {
    config.validate()?;
    let (scheme, rest) = addr::split_url(url)?;
    match scheme.as_str() {
        "tcp" => {
            let addrs = addr::resolve(url, rest)?;
            let tcp: Tcp = transport::tcp::connect_any(&addrs, config)?;
            Ok(Conversation::new(tcp).boxed())
        }
        "udp" => {
            let addrs = addr::resolve(url, rest)?;
            Ok(Conversation::new(transport::udp::connect_any(&addrs, config)?).boxed())
        }
        #[cfg(feature = "tls")]
        "tls" => {
            let addrs = addr::resolve(url, rest)?;
            let host = transport::tls::host_of(rest)?;
            Ok(Conversation::new(transport::Tls::connect_to(host, &addrs[..], config)?).boxed())
        }
        #[cfg(not(feature = "tls"))]
        "tls" => Err(Error::Unsupported("tls:// without the `tls` feature")),
        #[cfg(feature = "ws")]
        "ws" | "wss" => Ok(Conversation::new(transport::Ws::connect(url, config)?).boxed()),
        #[cfg(not(feature = "ws"))]
        "ws" | "wss" => Err(Error::Unsupported("ws:// without the `ws` feature")),
        #[cfg(feature = "nats")]
        "nats" => Ok(Conversation::new(transport::Nats::connect(url, config)?).boxed()),
        #[cfg(not(feature = "nats"))]
        "nats" => Err(Error::Unsupported("nats:// without the `nats` feature")),
        #[cfg(unix)]
        "unix" => Ok(Conversation::new(transport::Unix::connect_with(rest, config)?).boxed()),
        #[cfg(unix)]
        "unixgram" => {
            Ok(Conversation::new(transport::UnixDatagram::connect_with(rest, config)?).boxed())
        }
        #[cfg(not(unix))]
        "unix" | "unixgram" => Err(Error::Unsupported("Unix domain sockets on this system")),
        _ => Err(addr::unknown_scheme(url, SCHEMES).into()),
    }
}

/// Listens on a URL with the default [`Config`]: `tcp://HOST:PORT`,
/// `udp://HOST:PORT`, `unix:///path`, or `tls://HOST:PORT` (which needs a
/// certificate: [`listen_with`] and [`Config::tls_server`]). Port 0 picks a free port;
/// [`Listener::local_addr`] tells which. (There is no listener for
/// `unixgram://`: see `UnixDatagram`.)
///
/// # Errors
///
/// As [`connect`]; a port in use is an [`Error::Io`] that says
/// `address in use`.
pub fn listen(url: &str) -> Result<Listener> {
    listen_with(url, &Config::default())
}

/// Listens on a URL with `config`. See [`listen`].
pub fn listen_with(url: &str, config: &Config) -> Result<Listener> {
    config.validate()?;
    let (scheme, rest) = addr::split_url(url)?;
    match scheme.as_str() {
        "tcp" => {
            let addrs = addr::resolve(url, rest)?;
            Ok(Listener::new(transport::tcp::bind_any(&addrs, config)?))
        }
        "udp" => {
            let addrs = addr::resolve(url, rest)?;
            Ok(Listener::new(transport::udp_listener_bind(&addrs, config)?))
        }
        #[cfg(feature = "tls")]
        "tls" => {
            let addrs = addr::resolve(url, rest)?;
            Ok(Listener::new(transport::tls::bind_any(&addrs, config)?))
        }
        #[cfg(not(feature = "tls"))]
        "tls" => Err(Error::Unsupported("tls:// without the `tls` feature")),
        #[cfg(feature = "ws")]
        "ws" | "wss" => {
            let (hostport, _path) = transport::ws::split_path(rest);
            let addrs = addr::resolve(url, hostport)?;
            Ok(Listener::new(transport::ws::bind_any(
                &addrs,
                scheme == "wss",
                config,
            )?))
        }
        #[cfg(not(feature = "ws"))]
        "ws" | "wss" => Err(Error::Unsupported("ws:// without the `ws` feature")),
        "nats" => Err(Error::Unsupported(
            "listening on nats:// (a NATS conversation connects to a NATS server: use connect)",
        )),
        #[cfg(unix)]
        "unix" => Ok(Listener::new(transport::UnixListener::bind_with(
            rest, config,
        )?)),
        "unixgram" => Err(Error::Unsupported(
            "listening on unixgram:// (bind a std UnixDatagram, connect it to its peer, \
             and wrap it with UnixDatagram::from_socket)",
        )),
        #[cfg(not(unix))]
        "unix" => Err(Error::Unsupported("Unix domain sockets on this system")),
        _ => Err(unknown(url)),
    }
}

fn unknown(url: &str) -> Error {
    let err: AddrError = addr::unknown_scheme(url, SCHEMES);
    err.into()
}

/// The server side of a transport, as [`Listener`] boxes it: each accepted
/// peer is a conversation (with boxed halves).
///
/// Implemented by every listener of the crate; a listener of your own can
/// implement it too and be used through [`Listener::new`].
pub trait Accept: Send + Sync {
    /// Waits for the next peer (see the listeners' `accept` for the errors).
    fn accept(&self) -> Result<Conversation>;
    /// The bound address.
    fn local_addr(&self) -> Result<Addr>;
    /// Bounds every later `accept`.
    fn set_accept_timeout(&self, timeout: Option<Duration>) -> Result<()>;
    /// A handle that stops `accept` from another thread.
    fn stopper(&self) -> Stopper;
}

impl Accept for TcpListener {
    fn accept(&self) -> Result<Conversation> {
        TcpListener::accept(self).map(|t| Conversation::new(t).boxed())
    }
    fn local_addr(&self) -> Result<Addr> {
        TcpListener::local_addr(self)
    }
    fn set_accept_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        TcpListener::set_accept_timeout(self, timeout)
    }
    fn stopper(&self) -> Stopper {
        TcpListener::stopper(self)
    }
}

#[cfg(unix)]
impl Accept for transport::UnixListener {
    fn accept(&self) -> Result<Conversation> {
        transport::UnixListener::accept(self).map(|t| Conversation::new(t).boxed())
    }
    fn local_addr(&self) -> Result<Addr> {
        transport::UnixListener::local_addr(self)
    }
    fn set_accept_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        transport::UnixListener::set_accept_timeout(self, timeout)
    }
    fn stopper(&self) -> Stopper {
        transport::UnixListener::stopper(self)
    }
}

#[cfg(feature = "tls")]
impl Accept for transport::TlsListener {
    fn accept(&self) -> Result<Conversation> {
        transport::TlsListener::accept(self).map(|t| Conversation::new(t).boxed())
    }
    fn local_addr(&self) -> Result<Addr> {
        transport::TlsListener::local_addr(self)
    }
    fn set_accept_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        transport::TlsListener::set_accept_timeout(self, timeout)
    }
    fn stopper(&self) -> Stopper {
        transport::TlsListener::stopper(self)
    }
}

#[cfg(feature = "ws")]
impl Accept for transport::WsListener {
    fn accept(&self) -> Result<Conversation> {
        transport::WsListener::accept(self).map(|t| Conversation::new(t).boxed())
    }
    fn local_addr(&self) -> Result<Addr> {
        transport::WsListener::local_addr(self)
    }
    fn set_accept_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        transport::WsListener::set_accept_timeout(self, timeout)
    }
    fn stopper(&self) -> Stopper {
        transport::WsListener::stopper(self)
    }
}

impl Accept for UdpListener {
    fn accept(&self) -> Result<Conversation> {
        UdpListener::accept(self).map(|t| Conversation::new(t).boxed())
    }
    fn local_addr(&self) -> Result<Addr> {
        UdpListener::local_addr(self)
    }
    fn set_accept_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        UdpListener::set_accept_timeout(self, timeout)
    }
    fn stopper(&self) -> Stopper {
        UdpListener::stopper(self)
    }
}

/// A listener whose transport was chosen at run time (see [`listen`]).
pub struct Listener {
    inner: Box<dyn Accept>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local", &self.inner.local_addr().ok())
            .finish()
    }
}

impl Listener {
    /// Wraps a listener of any transport.
    pub fn new(inner: impl Accept + 'static) -> Listener {
        Listener {
            inner: Box::new(inner),
        }
    }

    /// Waits for the next peer.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the accept timeout passes, [`Error::Closed`]
    /// once stopped, and errors for which [`Error::is_transient`] says the
    /// listener is still usable after a short pause.
    pub fn accept(&self) -> Result<Conversation> {
        self.inner.accept()
    }

    /// The bound address, as a URL that [`connect`] accepts
    /// (`tcp://127.0.0.1:PORT`, with the real port).
    pub fn local_addr(&self) -> Result<Addr> {
        self.inner.local_addr()
    }

    /// Bounds every later `accept` (`None`: wait as long as it takes).
    pub fn set_accept_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.inner.set_accept_timeout(timeout)
    }

    /// A handle that stops `accept` from another thread.
    pub fn stopper(&self) -> Stopper {
        self.inner.stopper()
    }
}
