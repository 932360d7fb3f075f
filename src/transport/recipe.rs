//! What each scheme stacks, for a client and for a listener's accepted
//! connections: the one place that turns a URL's scheme into a connection
//! (a framing, WebSocket or NATS; TLS or not), for every driver.

#[cfg(any(feature = "ws", feature = "nats"))]
use std::sync::Arc;
use std::time::Instant;

use crate::addr::Addr;
use crate::config::Config;
#[cfg(feature = "tls")]
use crate::config::ConfigError;
use crate::connection::{Conn, Security, Settings, Stack};
use crate::error::{Error, Result};
use crate::url::{Scheme, Url};

/// How to make a connection of one scheme.
#[derive(Clone, Debug)]
pub(crate) struct Recipe {
    pub(crate) scheme: Scheme,
    kind: Kind,
    #[cfg(feature = "tls")]
    tls_client: Option<(
        crate::tls::TlsClient,
        rustls::pki_types::ServerName<'static>,
    )>,
    #[cfg(feature = "tls")]
    tls_server: Option<crate::tls::TlsServer>,
}

#[derive(Clone, Debug)]
enum Kind {
    Framed,
    #[cfg(feature = "ws")]
    WsClient {
        authority: String,
        path: String,
    },
    #[cfg(feature = "ws")]
    WsServer {
        page: Option<Arc<crate::ws::Page>>,
    },
    #[cfg(feature = "nats")]
    Nats(Arc<crate::nats::session::Subscription>),
}

/// The error for a TLS listener without a certificate.
#[cfg(feature = "tls")]
fn no_certificate(what: &'static str) -> Error {
    Error::InvalidConfig(ConfigError {
        setting: "tls_server",
        reason: what,
    })
}

impl Recipe {
    /// A client's recipe for `url`.
    pub(crate) fn client(url: &Url, config: &Config) -> Result<Recipe> {
        if let Some(why) = url.scheme.unavailable() {
            return Err(Error::Unsupported(why));
        }
        let kind = match url.scheme {
            #[cfg(feature = "ws")]
            Scheme::Ws | Scheme::Wss => Kind::WsClient {
                authority: url.authority(),
                path: url.path().to_owned(),
            },
            #[cfg(feature = "nats")]
            Scheme::Nats => Kind::Nats(Arc::new(url.subscription()?)),
            _ => Kind::Framed,
        };
        #[cfg(feature = "tls")]
        let tls_client = match (url.scheme, url.host_port()) {
            (Scheme::Tls | Scheme::Wss | Scheme::Nats, Some((host, _))) => Some((
                config.tls_client.clone().unwrap_or_default(),
                crate::tls::server_name(host)?,
            )),
            _ => None,
        };
        #[cfg(not(feature = "tls"))]
        let _ = config;
        Ok(Recipe {
            scheme: url.scheme,
            kind,
            #[cfg(feature = "tls")]
            tls_client,
            #[cfg(feature = "tls")]
            tls_server: None,
        })
    }

    /// A listener's recipe for `url` (its accepted connections).
    pub(crate) fn server(url: &Url, config: &Config) -> Result<Recipe> {
        Recipe::server_of(url.scheme, config)
    }

    /// A listener's recipe for `scheme`.
    pub(crate) fn server_of(scheme: Scheme, config: &Config) -> Result<Recipe> {
        if let Some(why) = scheme.unavailable() {
            return Err(Error::Unsupported(why));
        }
        if let Some(why) = scheme.cannot_listen() {
            return Err(Error::Unsupported(why));
        }
        let kind = match scheme {
            #[cfg(feature = "ws")]
            Scheme::Ws | Scheme::Wss => Kind::WsServer { page: None },
            _ => Kind::Framed,
        };
        #[cfg(feature = "tls")]
        let tls_server = match scheme {
            Scheme::Tls => Some(config.tls_server.clone().ok_or_else(|| {
                no_certificate(
                    "a TLS listener needs a certificate and key (Config::with_tls_server)",
                )
            })?),
            Scheme::Wss => Some(config.tls_server.clone().ok_or_else(|| {
                no_certificate(
                    "a wss:// listener needs a certificate and key (Config::with_tls_server)",
                )
            })?),
            _ => None,
        };
        #[cfg(not(feature = "tls"))]
        let _ = config;
        Ok(Recipe {
            scheme,
            kind,
            #[cfg(feature = "tls")]
            tls_client: None,
            #[cfg(feature = "tls")]
            tls_server,
        })
    }

    /// Serves `page` to plain `GET`s (a WebSocket listener's).
    #[cfg(feature = "ws")]
    pub(crate) fn serve_page(&mut self, page: crate::ws::Page) -> Result<()> {
        match &mut self.kind {
            Kind::WsServer { page: slot } => {
                *slot = Some(Arc::new(page));
                Ok(())
            }
            _ => Err(Error::Unsupported(
                "a page on a listener that is not WebSocket",
            )),
        }
    }

    /// The connection the recipe makes, to `peer`, started at `now`.
    pub(crate) fn conn(&self, settings: &Settings, peer: Addr, now: Instant) -> Result<Conn> {
        let stack = match &self.kind {
            Kind::Framed => Stack::Framed,
            #[cfg(feature = "ws")]
            Kind::WsClient { authority, path } => Stack::WsClient {
                authority: authority.clone(),
                path: path.clone(),
            },
            #[cfg(feature = "ws")]
            Kind::WsServer { page } => Stack::WsServer { page: page.clone() },
            #[cfg(feature = "nats")]
            Kind::Nats(sub) => Stack::Nats {
                sub: Arc::clone(sub),
                #[cfg(feature = "tls")]
                tls: self.tls_client.clone(),
            },
        };
        let security = self.security();
        Conn::new(stack, security, settings, peer, now)
    }

    fn security(&self) -> Security {
        #[cfg(feature = "tls")]
        {
            if matches!(self.kind, Kind::Framed) || cfg!(feature = "ws") && self.is_ws() {
                if let Some(server) = &self.tls_server {
                    return Security::Server(server.clone());
                }
                if let Some((client, name)) = &self.tls_client {
                    return Security::Client(client.clone(), name.clone());
                }
            }
        }
        Security::Plain
    }

    #[cfg(feature = "tls")]
    fn is_ws(&self) -> bool {
        match self.kind {
            #[cfg(feature = "ws")]
            Kind::WsClient { .. } | Kind::WsServer { .. } => true,
            _ => false,
        }
    }

    /// The address of an endpoint of this scheme.
    pub(crate) fn addr(&self, at: std::net::SocketAddr) -> Addr {
        self.scheme.addr(at)
    }

    /// A client's connection has handshakes to complete before it is
    /// handed out (TLS, the upgrade, NATS's subscription).
    pub(crate) fn has_handshake(&self) -> bool {
        !matches!(self.scheme, Scheme::Tcp | Scheme::Unix)
    }

    /// The recipe's accepted connections upgrade (WebSocket) before they
    /// are handed out.
    pub(crate) fn upgrades(&self) -> bool {
        matches!(self.scheme, Scheme::Ws | Scheme::Wss)
    }
}
