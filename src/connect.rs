//! Choosing the transport at run time, by URL: [`connect`], [`listen`], and
//! the boxed [`Listener`]. The URL is read by the one scheme table
//! (`url.rs`); each scheme's transport is built here.

use std::time::Duration;

use crate::addr::Addr;
use crate::config::Config;
use crate::conversation::Conversation;
use crate::error::{Error, Result};
use crate::transport::{self, Stopper, TcpListener, UdpListener};
use crate::url::{Place, Scheme, Url};

/// Connects to a URL with the default [`Config`]. The scheme picks the
/// transport:
///
/// | URL | transport |
/// |---|---|
/// | `tcp://HOST:PORT` (IPv6 as `tcp://[::1]:8090`) | [`Tcp`](crate::Tcp) |
/// | `tls://HOST:PORT` (feature `tls`) | `Tls`: the server's certificate verified for `HOST` |
/// | `udp://HOST:PORT` | [`Udp`](crate::Udp) |
/// | `unix:///path` (Unix systems) | `Unix`, a framed stream |
/// | `unixgram:///path` (Unix systems) | `UnixDatagram` |
/// | `ws://HOST[:PORT][/path]`, `wss://…` (feature `ws`; ports 80 and 443 by default) | `Ws`: WebSocket, one message per WebSocket message |
/// | `nats://[USER:PASS@]HOST[:PORT]/SUBJECT[?queue=NAME]` (feature `nats`; port 4222 by default) | `Nats`: publish to and receive from a subject of a NATS server |
///
/// (`unix` and `unixgram` are the names Go's `net` package gives the two
/// kinds of Unix sockets.) A [`Switchboard`](crate::Switchboard) connects
/// to the same URLs.
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
/// [`Error::ConnectionRefused`] and the other I/O errors with the address;
/// for TLS, WebSocket and NATS, the handshake's errors.
pub fn connect(url: &str) -> Result<Conversation> {
    connect_with(url, &Config::default())
}

/// Connects to a URL with `config`. See [`connect`].
pub fn connect_with(url: &str, config: &Config) -> Result<Conversation> {
    let parsed = parse(url, config, false)?;
    Ok(match (&parsed.place, parsed.scheme) {
        (_, Scheme::Udp) => {
            Conversation::new(transport::udp::connect_any(&parsed.resolve()?, config)?).boxed()
        }
        #[cfg(unix)]
        (Place::Path(path), Scheme::Unix) => {
            Conversation::new(transport::Unix::connect_with(path, config)?).boxed()
        }
        #[cfg(unix)]
        (Place::Path(path), _) => {
            Conversation::new(transport::UnixDatagram::connect_with(path, config)?).boxed()
        }
        #[cfg(feature = "nats")]
        (_, Scheme::Nats) => Conversation::new(transport::Nats::connect(url, config)?).boxed(),
        #[cfg(feature = "quic")]
        (_, Scheme::Quic) => {
            let recipe = transport::recipe::Recipe::client(&parsed, config)?;
            Conversation::new(transport::quic::connect(&parsed, &recipe, config)?).boxed()
        }
        _ => {
            let recipe = transport::recipe::Recipe::client(&parsed, config)?;
            let (tx, rx) = transport::stream::connect(&parsed.resolve()?, &recipe, config)?;
            Conversation::new((tx, rx)).boxed()
        }
    })
}

/// Listens on a URL with the default [`Config`]: `tcp://HOST:PORT`,
/// `udp://HOST:PORT`, `unix:///path`, `ws://HOST:PORT`, or `tls://` and
/// `wss://` (which need a certificate: [`listen_with`] and
/// [`Config::with_tls_server`]). Port 0 picks a free port;
/// [`Listener::local_addr`] tells which. (Nothing listens on `nats://`, a
/// NATS server's business, nor on `unixgram://`: see `UnixDatagram`.)
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
    let parsed = parse(url, config, true)?;
    Ok(match (&parsed.place, parsed.scheme) {
        (_, Scheme::Udp) => Listener::new(transport::udp_listener::bind_any(
            &parsed.resolve()?,
            config,
        )?),
        #[cfg(unix)]
        (Place::Path(path), _) => Listener::new(transport::UnixListener::bind_with(path, config)?),
        #[cfg(feature = "quic")]
        (_, Scheme::Quic) => {
            let recipe = transport::recipe::Recipe::server(&parsed, config)?;
            Listener::new(transport::quic::QuicListener::bind(
                &parsed.resolve()?,
                recipe,
                config,
            )?)
        }
        _ => {
            let recipe = transport::recipe::Recipe::server(&parsed, config)?;
            let listening =
                transport::listener::Listening::bind(&parsed.resolve()?, recipe, config)?;
            Listener::new(listening)
        }
    })
}

/// `url` parsed for either driver: `config` checked, and the scheme one
/// this build speaks (and, to `listen`, one that listens).
pub(crate) fn parse(url: &str, config: &Config, listen: bool) -> Result<Url> {
    config.validate()?;
    let parsed = Url::parse(url)?;
    if let Some(why) = parsed.scheme.unavailable() {
        return Err(Error::Unsupported(why));
    }
    if let Some(why) = parsed.scheme.cannot_listen().filter(|_| listen) {
        return Err(Error::Unsupported(why));
    }
    Ok(parsed)
}

impl Accept for transport::listener::Listening {
    fn accept(&self) -> Result<Conversation> {
        transport::listener::Listening::accept(self).map(|t| Conversation::new(t).boxed())
    }
    fn local_addr(&self) -> Result<Addr> {
        Ok(transport::listener::Listening::local_addr(self))
    }
    fn set_accept_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.inner.set_accept_timeout(timeout)
    }
    fn stopper(&self) -> Stopper {
        self.inner.stopper()
    }
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
