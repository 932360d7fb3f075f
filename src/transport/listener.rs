//! What every stream listener shares (TCP, Unix, TLS, WebSocket): a
//! listening socket whose `accept` has a timeout, can be stopped from
//! another thread, and skips connections that died before they were
//! accepted; and what each accepted connection becomes (its recipe).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::{SockAddr, Socket};

use super::recipe::Recipe;
use super::stream::{self, StreamReceiver, StreamSender};
use super::{sockopt, Stopper};
use crate::addr::{self, Addr};
use crate::config::{check_timeout, Config};
use crate::error::{Error, Result};

#[derive(Debug)]
struct Shared {
    socket: Socket,
    stopped: AtomicBool,
}

/// A listening stream socket.
#[derive(Debug)]
pub(crate) struct StreamListener {
    shared: Arc<Shared>,
    pub(crate) local: Addr,
    timeout: Mutex<Option<Duration>>,
}

/// A hold on a listening socket, taken from a [`StreamListener`].
pub(crate) struct Detached {
    shared: Arc<Shared>,
    local: Addr,
}

impl Detached {
    /// The socket, once every other hold is gone.
    pub(crate) fn into_socket(self) -> Option<(Socket, Addr)> {
        let shared = Arc::try_unwrap(self.shared).ok()?;
        Some((shared.socket, self.local))
    }
}

impl StreamListener {
    pub(crate) fn new(socket: Socket, local: Addr, timeout: Option<Duration>) -> StreamListener {
        StreamListener {
            shared: Arc::new(Shared {
                socket,
                stopped: AtomicBool::new(false),
            }),
            local,
            timeout: Mutex::new(timeout),
        }
    }

    pub(crate) fn socket(&self) -> &Socket {
        &self.shared.socket
    }

    /// The next live connection. Connections reset (or failed) before they
    /// were accepted are skipped, as are clients that gave up during their
    /// handshake (`ECONNABORTED`). An error that leaves the listener usable
    /// ([`Error::is_transient`]: out of file descriptors for a moment) is
    /// returned for the caller to pause on.
    pub(crate) fn accept(&self) -> Result<(Socket, SockAddr)> {
        loop {
            if self.shared.stopped.load(Ordering::Relaxed) {
                return Err(Error::Closed);
            }
            match self.shared.socket.accept() {
                Ok((socket, addr)) => {
                    if sockopt::accepted_dead(&socket) {
                        continue;
                    }
                    return Ok((socket, addr));
                }
                Err(_) if self.shared.stopped.load(Ordering::Relaxed) => return Err(Error::Closed),
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::ConnectionReset => {}
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        return Err(Error::Timeout)
                    }
                    _ => {
                        let error = Error::from_io(e, &self.local);
                        crate::trace::accept_error(&self.local, &error, None);
                        return Err(error);
                    }
                },
            }
        }
    }

    pub(crate) fn set_accept_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        let timeout = check_timeout("accept_timeout", timeout)?;
        sockopt::set_accept_timeout(&self.shared.socket, timeout)
            .map_err(|e| Error::from_io(e, &self.local))?;
        *self.timeout.lock().unwrap_or_else(|e| e.into_inner()) = timeout;
        Ok(())
    }

    pub(crate) fn accept_timeout(&self) -> Option<Duration> {
        *self.timeout.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The listening socket itself, if nothing else holds it.
    pub(crate) fn into_socket(self) -> Option<(Socket, Addr)> {
        let shared = Arc::try_unwrap(self.shared).ok()?;
        Some((shared.socket, self.local))
    }

    /// A second hold on the socket, that outlives this listener.
    pub(crate) fn detach(&self) -> Detached {
        Detached {
            shared: Arc::clone(&self.shared),
            local: self.local.clone(),
        }
    }

    pub(crate) fn stopper(&self) -> Stopper {
        let shared = Arc::clone(&self.shared);
        Stopper::from_fn(move || {
            shared.stopped.store(true, Ordering::Relaxed);
            sockopt::wake_up(&shared.socket);
        })
    }
}

/// A stream listener and what its connections become.
#[derive(Debug)]
pub(crate) struct Listening {
    pub(crate) inner: StreamListener,
    pub(crate) config: Config,
    pub(crate) recipe: Recipe,
}

impl Listening {
    /// Binds the first of `addrs` that can be bound, for `recipe`.
    pub(crate) fn bind(
        addrs: &[std::net::SocketAddr],
        recipe: Recipe,
        config: &Config,
    ) -> Result<Listening> {
        config.validate()?;
        let mut last = None;
        for &at in addrs {
            match sockopt::tcp_listener(at, config) {
                Ok(socket) => {
                    let local = socket
                        .local_addr()
                        .ok()
                        .and_then(|a| a.as_socket())
                        .map_or(recipe.addr(at), |a| recipe.addr(a));
                    return Ok(Listening {
                        inner: StreamListener::new(socket, local, config.accept_timeout),
                        config: config.clone(),
                        recipe,
                    });
                }
                Err(e) => last = Some(Error::from_io(e, &recipe.addr(at))),
            }
        }
        Err(last.unwrap_or_else(|| addr::no_address("the listener's address").into()))
    }

    /// The next connection, its upgrade done if it has one (a WebSocket's:
    /// bounded by the handshake timeout; a plain HTTP request for the page
    /// is answered and skipped). A TLS handshake happens in the
    /// conversation's first use, so a slow peer never holds up `accept`.
    pub(crate) fn accept(&self) -> Result<(StreamSender, StreamReceiver)> {
        loop {
            let (socket, _) = self.inner.accept()?;
            let (tx, mut rx) = match stream::open(socket, &self.recipe, &self.config) {
                // Gone between accept and configuring it: skip it.
                Err(Error::ConnectionReset { .. }) => continue,
                other => other?,
            };
            if self.recipe.upgrades() {
                match rx.establish(self.config.handshake_timeout) {
                    Ok(true) => {}
                    // A page served: not a conversation.
                    Ok(false) => continue,
                    Err(e) => return Err(e),
                }
            }
            return Ok((tx, rx));
        }
    }

    /// The bound address.
    pub(crate) fn local_addr(&self) -> Addr {
        self.inner.local.clone()
    }

    pub(crate) fn into_parts(self) -> Option<(Socket, Addr, Config, Recipe)> {
        let (socket, local) = self.inner.into_socket()?;
        Some((socket, local, self.config, self.recipe))
    }
}
