//! WebSocket (`ws://`, and `wss://` over converse's TLS): the connection's
//! WebSocket protocol above a stream, driven by the blocking halves like
//! every stream.

use std::net::ToSocketAddrs;
use std::time::Duration;

use super::listener::Listening;
use super::recipe::Recipe;
use super::stream::{self, StreamReceiver, StreamSender};
use super::{Stopper, Transport};
use crate::addr::{self, Addr};
use crate::config::Config;
use crate::error::Result;
use crate::url::{Scheme, Url};
use crate::ws::Page;

/// A WebSocket conversation's transport (`ws://`, or `wss://` over TLS):
/// each WebSocket message one message. See [`crate::ws`] for the protocol.
///
/// * Text and binary frames are both received as messages (`recv_text`
///   works on either); `send_text` sends a text frame, so that a browser
///   receives a string, and `send` a binary one.
/// * The limit is the conversation's `max_message_len`, checked on each
///   frame header before anything is allocated, and on the total of a
///   fragmented message, which must be whole within the per-message
///   deadline.
/// * Pings are answered, by whichever half writes next; the close
///   handshake is the graceful close, bounded by the linger time; the
///   peer's close frame is the clean end (`Ok(None)`), answered when it is
///   received (no message is sent after it).
/// * A frame that breaks the protocol (unmasked from a client, reserved
///   bits, a long or fragmented control frame, text that is not UTF-8 …)
///   is [`Error::InvalidFrame`](crate::Error::InvalidFrame), after a close
///   frame that says why (1002, 1007, or 1009 for a message too large).
/// * The handshake (the HTTP upgrade, after TLS for `wss://`) is bounded by
///   [`Config::handshake_timeout`]: a client's `connect` and a listener's
///   `accept` return once it is done; a failed one is
///   [`Error::WebSocket`](crate::Error::WebSocket).
#[derive(Debug)]
pub struct Ws {
    tx: StreamSender,
    rx: StreamReceiver,
}

impl Transport for Ws {
    type Sender = StreamSender;
    type Receiver = StreamReceiver;

    fn into_halves(self) -> (StreamSender, StreamReceiver) {
        (self.tx, self.rx)
    }
}

impl Ws {
    /// Connects to a `ws://HOST[:PORT][/path]` or `wss://…` URL (`wss://`
    /// verifies the server as [`Tls`](crate::Tls) does, with
    /// [`Config::with_tls_client`]); returns once the upgrade is done.
    pub fn connect(url: &str, config: &Config) -> Result<Ws> {
        config.validate()?;
        let url = Url::parse(url)?;
        if !matches!(url.scheme, Scheme::Ws | Scheme::Wss) {
            return Err(crate::url::unknown_scheme(&url.input).into());
        }
        let recipe = Recipe::client(&url, config)?;
        let (tx, rx) = stream::connect(&url.resolve()?, &recipe, config)?;
        Ok(Ws { tx, rx })
    }
}

/// A WebSocket server socket (`ws://`, or `wss://` with
/// [`Config::with_tls_server`]): every accepted connection that completes
/// the upgrade is a [`Ws`] transport.
///
/// `accept` completes the upgrade (and, for `wss://`, the TLS handshake)
/// of each connection before returning it, bounded by
/// [`Config::handshake_timeout`]. A plain HTTP request gets an answer for
/// every method (see [`crate::ws`]): the listener's page for `GET /`
/// ([`serve_page`](Self::serve_page)), after which `accept` goes on to the
/// next connection; otherwise a refusal, and `accept` returns
/// [`Error::WebSocket`](crate::Error::WebSocket) for that connection
/// (transient: accept again).
#[derive(Debug)]
pub struct WsListener {
    inner: Listening,
}

impl WsListener {
    /// Binds `addr` (`HOST:PORT`) for `ws://`, or with `secure` for
    /// `wss://` (which needs [`Config::with_tls_server`]).
    pub fn bind(addr: impl ToSocketAddrs, secure: bool, config: &Config) -> Result<WsListener> {
        let addrs = addr::socket_addrs(addr, "WebSocket address")?;
        let scheme = if secure { Scheme::Wss } else { Scheme::Ws };
        let recipe = Recipe::server_of(scheme, config)?;
        Ok(WsListener {
            inner: Listening::bind(&addrs, recipe, config)?,
        })
    }

    /// Answers a plain HTTP `GET /` (and `HEAD /`) with `page`: a browser
    /// opening the address gets it, and the page can then open a
    /// WebSocket to the same address. Other paths get `404`.
    pub fn serve_page(&mut self, page: Page) {
        // A WebSocket listener's recipe takes a page.
        let _ = self.inner.recipe.serve_page(page);
    }

    /// Accepts the next connection and completes its upgrade.
    ///
    /// # Errors
    ///
    /// [`Error::WebSocket`](crate::Error::WebSocket) or
    /// [`Error::Tls`](crate::Error) for a connection whose handshake failed
    /// or that was not a WebSocket (the listener goes on:
    /// [`Error::is_transient`](crate::Error::is_transient) is true);
    /// otherwise as [`TcpListener::accept`](crate::TcpListener::accept).
    pub fn accept(&self) -> Result<Ws> {
        let (tx, rx) = self.inner.accept()?;
        Ok(Ws { tx, rx })
    }

    /// The bound address, as `ws://IP:PORT` (or `wss://`).
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

    pub(crate) fn into_listening(self) -> Listening {
        self.inner
    }
}
