//! TLS over TCP (`tls://`): the connection's TLS session below a framing,
//! driven by the blocking halves like every stream.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use socket2::Socket;

use super::listener::Listening;
use super::recipe::Recipe;
use super::stream::{self, StreamReceiver, StreamSender};
use super::{sockopt, Stopper, Transport};
use crate::addr::{self, Addr};
use crate::config::Config;
use crate::error::Result;
use crate::tls::PeerIdentity;
use crate::url::{Scheme, Url};

/// A TLS conversation's transport: messages framed as over TCP
/// ([`Config::framing`]), inside a TLS session (rustls, TLS 1.2 and 1.3).
///
/// * A client verifies the server's certificate for the name it connected
///   to (a DNS name or an IP address), against Mozilla's roots or the CA of
///   [`Config::with_tls_client`]; a server presents the certificate of
///   [`Config::with_tls_server`] and, for mutual TLS, verifies the client's.
/// * The handshake is bounded by [`Config::handshake_timeout`] (default
///   10 s), counted from the connection: a client's `connect` completes it;
///   an accepted conversation completes it in its first send or receive (or
///   in [`Conversation::handshake`](crate::Conversation::handshake)), so a
///   slow peer never holds up `accept`. A failed handshake is
///   [`Error::Tls`](crate::Error::Tls) with the reason in one line.
/// * Every promise of [`Tcp`](crate::Tcp) holds: a read timeout in the
///   middle of a record or a message loses nothing; the per-message
///   deadline; a send that times out took nothing of its message (a message
///   is taken once rustls has encrypted any of it); batching with `feed`
///   puts many messages in one record.
/// * [`close`](crate::Conversation::close) sends `close_notify` after
///   everything queued, then reads until the peer's `close_notify` and the
///   end of its bytes, or the linger time: [`Delivery::Confirmed`](crate::Delivery)
///   only when the peer's `close_notify` came, with no reset after it.
/// * The end of the peer: its `close_notify` between two messages is the
///   clean end (`Ok(None)`). A connection that ends without one is not
///   authenticated: between messages it is [`Error::NoCloseNotify`](crate::Error::NoCloseNotify) (every
///   message received was whole, but an attacker could have cut what came
///   after — only ever at a message boundary, since a cut inside one is
///   [`Error::UnexpectedEof`](crate::Error::UnexpectedEof)).
#[derive(Debug)]
pub struct Tls {
    tx: StreamSender,
    rx: StreamReceiver,
}

impl Transport for Tls {
    type Sender = StreamSender;
    type Receiver = StreamReceiver;

    fn into_halves(self) -> (StreamSender, StreamReceiver) {
        (self.tx, self.rx)
    }
}

impl Tls {
    /// Connects to `hostport` (`HOST:PORT`) with `config`, and verifies the
    /// server's certificate for `HOST` (a DNS name or an IP address) with
    /// [`Config::with_tls_client`] (by default Mozilla's roots). Returns
    /// once the handshake is over.
    pub fn connect(hostport: &str, config: &Config) -> Result<Tls> {
        let url = Url::parse(&format!("tls://{hostport}"))?;
        let recipe = Recipe::client(&url, config)?;
        let (tx, rx) = stream::connect(&url.resolve()?, &recipe, config)?;
        Ok(Tls { tx, rx })
    }

    /// Connects to `addr`, verifying the server's certificate for
    /// `server_name` (a DNS name or an IP address).
    pub fn connect_to(server_name: &str, addr: impl ToSocketAddrs, config: &Config) -> Result<Tls> {
        let recipe = Tls::client_recipe(server_name, config)?;
        let addrs = addr::socket_addrs(addr, "TLS address")?;
        let (tx, rx) = stream::connect(&addrs, &recipe, config)?;
        Ok(Tls { tx, rx })
    }

    fn client_recipe(server_name: &str, config: &Config) -> Result<Recipe> {
        let host = if server_name.contains(':') && !server_name.starts_with('[') {
            format!("[{server_name}]")
        } else {
            server_name.to_owned()
        };
        Recipe::client(&Url::parse(&format!("tls://{host}:443"))?, config)
    }

    /// Starts TLS as a client on a connected stream, verifying the server
    /// for `server_name`; returns once the handshake is over.
    pub fn client_from_stream(
        stream: TcpStream,
        server_name: &str,
        config: &Config,
    ) -> Result<Tls> {
        let recipe = Tls::client_recipe(server_name, config)?;
        let (tx, mut rx) = stream::open(sockopt::from_tcp(stream), &recipe, config)?;
        rx.establish(config.handshake_timeout)?;
        Ok(Tls { tx, rx })
    }

    /// Starts TLS as a server on a connected stream, with
    /// [`Config::with_tls_server`]. The handshake happens in the first send
    /// or receive (or [`handshake`](Self::handshake)).
    pub fn server_from_stream(stream: TcpStream, config: &Config) -> Result<Tls> {
        let recipe = Recipe::server_of(Scheme::Tls, config)?;
        let (tx, rx) = stream::open(sockopt::from_tcp(stream), &recipe, config)?;
        Ok(Tls { tx, rx })
    }

    /// Completes the handshake now, if it is not over (bounded by the
    /// handshake timeout).
    pub fn handshake(&mut self) -> Result<()> {
        Sender::handshake(&mut self.tx)
    }

    /// The verified identity of the peer (its certificate chain), once the
    /// handshake is over: the server's for a client; the client's for a
    /// server that asks for client certificates. `None` before the
    /// handshake and for a client that presented none.
    pub fn peer_identity(&self) -> Option<PeerIdentity> {
        self.tx.peer_identity()
    }

    /// The socket, for options this crate does not cover. Reading or writing
    /// it directly breaks the session.
    pub fn socket(&self) -> &Socket {
        self.tx
            .socket_ref()
            .expect("a stream built on a socket keeps it")
    }
}

use super::Sender;

/// A TLS server socket: every accepted connection is a [`Tls`] transport
/// whose handshake runs in its first send or receive, bounded by
/// [`Config::handshake_timeout`] (so `accept` never waits on a slow peer).
///
/// ```no_run
/// use converse::tls::TlsServer;
/// use converse::{Config, Conversation, TlsListener};
///
/// let server = TlsServer::from_pem_files("server.pem", "server.key")?;
/// let listener = TlsListener::bind("127.0.0.1:8443", &Config::new().with_tls_server(server))?;
/// let mut conversation = Conversation::new(listener.accept()?);
/// while let Some(message) = conversation.recv()? {
///     conversation.send(&message)?;
/// }
/// # Ok::<(), converse::Error>(())
/// ```
#[derive(Debug)]
pub struct TlsListener {
    inner: Listening,
}

impl TlsListener {
    /// Binds `addr` with `config`, which must carry a certificate
    /// ([`Config::with_tls_server`]). Port 0 picks a free port.
    pub fn bind(addr: impl ToSocketAddrs, config: &Config) -> Result<TlsListener> {
        let addrs = addr::socket_addrs(addr, "TLS address")?;
        let recipe = Recipe::server_of(Scheme::Tls, config)?;
        Ok(TlsListener {
            inner: Listening::bind(&addrs, recipe, config)?,
        })
    }

    /// Accepts the next connection. The handshake is not done yet: it
    /// happens in the conversation's first send or receive.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::accept`](crate::TcpListener::accept).
    pub fn accept(&self) -> Result<Tls> {
        let (tx, rx) = self.inner.accept()?;
        Ok(Tls { tx, rx })
    }

    /// The bound address, as `tls://IP:PORT`.
    pub fn local_addr(&self) -> Result<Addr> {
        Ok(self.inner.local_addr())
    }

    /// Bounds every later `accept` (`None`: wait as long as it takes).
    pub fn set_accept_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.inner.inner.set_accept_timeout(timeout)
    }

    /// A handle that stops a blocked `accept` from another thread.
    pub fn stopper(&self) -> Stopper {
        self.inner.inner.stopper()
    }

    /// The configuration accepted conversations get.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn into_listening(self) -> Listening {
        self.inner
    }
}
