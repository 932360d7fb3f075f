//! A switchboard's own connections: connects that never block its thread
//! (the TCP connect and every handshake are driven by readiness), and a
//! NATS conversation that connects again by itself, backing off, when its
//! server goes away.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::arena::Key;
use super::events::{Event, Events, Id};
use super::redial::{Backoff, Redial};
use super::registry::{Carrier, Entry, Origin};
use super::Switchboard;
use crate::addr::Addr;
use crate::config::Config;
use crate::connection::datagram::Datagrams;
use crate::connection::Settings;
use crate::error::{Error, Result};
use crate::transport::recipe::Recipe;
use crate::transport::sockopt;
use crate::url::{Place, Scheme};

/// Starts a TCP connect to `at` without waiting: the socket, non-blocking,
/// its connect under way.
fn begin_connect(at: SocketAddr, config: &Config) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(at), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    sockopt::tcp_stream(&socket, config)?;
    match socket.connect(&SockAddr::from(at)) {
        Ok(()) => Ok(socket),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(socket),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(socket),
        Err(e) => Err(e),
    }
}

impl Switchboard {
    /// Connects to a URL with `config`; see [`connect`](Switchboard::connect).
    pub fn connect_with(&mut self, url: &str, config: &Config) -> Result<Id> {
        let parsed = crate::connect::parse(url, config, false)?;
        match (&parsed.place, parsed.scheme) {
            // QUIC's handshakes are driven by its endpoint's thread, which
            // tells this thread when one had news.
            #[cfg(feature = "quic")]
            (_, Scheme::Quic) => {
                let recipe = Recipe::client(&parsed, config)?;
                let dial = crate::transport::quic::Dial::new(&parsed, config)?;
                let peer = dial.first();
                let settings = Settings::new(config, Some(config.max_backlog));
                let conn = recipe.conn(&settings, peer.clone(), Instant::now())?;
                Ok(self.add_dial(dial, conn, peer))
            }
            (_, Scheme::Udp) => {
                let udp = crate::transport::udp::connect_any(&parsed.resolve()?, config)?;
                self.adopt(udp)
            }
            #[cfg(unix)]
            (Place::Path(path), Scheme::Unix) => {
                self.adopt(crate::transport::Unix::connect_with(path, config)?)
            }
            #[cfg(unix)]
            (Place::Path(path), _) => {
                self.adopt(crate::transport::UnixDatagram::connect_with(path, config)?)
            }
            _ => {
                let recipe = Recipe::client(&parsed, config)?;
                let addrs = parsed.resolve()?;
                let id = self.dial(&addrs, &recipe, config)?;
                if parsed.scheme == Scheme::Nats {
                    if let Some(conv) = self.conv_mut(id.0) {
                        conv.redial = Some(Box::new(Redial {
                            addrs,
                            recipe,
                            config: config.clone(),
                            backoff: Backoff::new(),
                            retry_at: Instant::now(),
                            lost: false,
                        }));
                    }
                }
                Ok(id)
            }
        }
    }

    /// A conversation of `recipe`, its connect to the first of `addrs`
    /// under way.
    fn dial(&mut self, addrs: &[SocketAddr], recipe: &Recipe, config: &Config) -> Result<Id> {
        let (socket, conn, peer) = self.begin(addrs, recipe, config)?;
        let local = Addr::Unknown;
        let id = self.add_stream(socket.into(), conn, peer, local, Origin::Connecting)?;
        if let Some(conv) = self.conv_mut(id.0) {
            conv.connecting = true;
        }
        Ok(id)
    }

    /// The socket of a connect under way, and its connection.
    fn begin(
        &mut self,
        addrs: &[SocketAddr],
        recipe: &Recipe,
        config: &Config,
    ) -> Result<(Socket, crate::connection::Conn, Addr)> {
        let mut last = None;
        for &at in addrs {
            let peer = recipe.addr(at);
            match begin_connect(at, config) {
                Ok(socket) => {
                    let settings = Settings::new(config, Some(config.max_backlog));
                    let conn = recipe.conn(&settings, peer.clone(), Instant::now())?;
                    return Ok((socket, conn, peer));
                }
                Err(e) => last = Some(Error::from_io(e, &peer)),
            }
        }
        Err(last.unwrap_or_else(|| crate::addr::no_address("the address").into()))
    }

    /// A QUIC connect under way, added and begun.
    #[cfg(feature = "quic")]
    fn add_dial(
        &mut self,
        mut dial: crate::transport::quic::Dial,
        conn: crate::connection::Conn,
        peer: Addr,
    ) -> Id {
        let key = self.entries.next_key();
        dial.watch(self.ready_notifier(key));
        let carrier = Carrier::Dialing {
            conn: Box::new(conn),
            dial: Box::new(dial),
        };
        let mut conv = super::registry::Conv::new(carrier, peer, Addr::Unknown, Origin::Connecting);
        conv.connecting = true;
        let inserted = self.entries.insert(Entry::Conv(Box::new(conv)));
        debug_assert_eq!(inserted, key);
        self.dial_step(key, None);
        Id(key)
    }

    /// Looks at a QUIC connect under way (its handshakes had news, or a
    /// deadline came): connected, failed, or still going.
    #[cfg(feature = "quic")]
    pub(super) fn dial_step(&mut self, key: Key, mut events: Option<&mut Events>) {
        let ready = self.ready_notifier(key);
        let Some(conv) = self.conv_mut(key) else {
            return;
        };
        let Carrier::Dialing { conn, dial } = &mut conv.carrier else {
            return;
        };
        match dial.poll(Instant::now()) {
            Ok(None) => {}
            Ok(Some(won)) => {
                let wire = won.carrier();
                let peer = Addr::Quic(won.addr);
                conn.link.peer = peer.clone();
                conv.peer = peer;
                conv.local = won.local();
                conv.connecting = false;
                conv.writable = true;
                conv.origin = Origin::Told;
                let old = std::mem::replace(&mut conv.carrier, Carrier::Between);
                let Carrier::Dialing { conn, .. } = old else {
                    return;
                };
                let made = wire.set_nonblocking(true);
                wire.watch(Some(ready));
                conv.carrier = Carrier::Stream { socket: wire, conn };
                let event = Event::Connected { id: Id(key) };
                match events.as_deref_mut() {
                    Some(events) => events.push(event),
                    None => self.pending.push_back(event),
                }
                if let Err(e) = made {
                    if let Some(Carrier::Stream { conn, .. }) =
                        self.conv_mut(key).map(|c| &mut c.carrier)
                    {
                        let peer = conn.link.peer.clone();
                        conn.on_error(Error::from_io(e, &peer));
                    }
                }
                self.push_backlog(key);
                self.mark_dirty(key);
            }
            Err(e) => conn.on_error(e),
        }
        self.settle(key, events);
    }

    /// A connect under way became writable: it is done, or it failed.
    pub(super) fn connected(&mut self, key: Key, events: &mut Events) {
        #[cfg(feature = "quic")]
        if matches!(
            self.conv(key).map(|c| &c.carrier),
            Some(Carrier::Dialing { .. })
        ) {
            self.dial_step(key, Some(events));
            return;
        }
        let Some(Entry::Conv(conv)) = self.entries.get_mut(key) else {
            return;
        };
        let conv = &mut **conv;
        conv.connecting = false;
        conv.writable = true;
        let Carrier::Stream { socket, conn } = &mut conv.carrier else {
            return;
        };
        let Some(socket) = socket.socket() else {
            return;
        };
        let outcome = sockopt::take_error(socket)
            .map(Err)
            .unwrap_or_else(|| socket.peer_addr().map(|_| ()));
        match outcome {
            Err(e) => {
                let e = if e.kind() == io::ErrorKind::NotConnected {
                    io::Error::from(io::ErrorKind::ConnectionRefused)
                } else {
                    e
                };
                conn.on_error(Error::from_io(e, &conv.peer));
            }
            Ok(()) => {
                conv.local = socket
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .zip(conv.peer.socket_addr())
                    .map_or(Addr::Unknown, |(local, _)| match conv.peer {
                        Addr::Tls(_) => Addr::Tls(local),
                        Addr::Ws(_) => Addr::Ws(local),
                        Addr::Wss(_) => Addr::Wss(local),
                        Addr::Nats(_) => Addr::Nats(local),
                        _ => Addr::Tcp(local),
                    });
                if conn.link.is_established() && conv.origin == Origin::Connecting {
                    // No handshake: connected now.
                    conv.origin = Origin::Told;
                    events.push(Event::Connected { id: Id(key) });
                }
            }
        }
        self.mark_dirty(key);
        self.push_backlog(key);
        self.settle(key, Some(events));
    }

    /// `true` when a conversation that failed with `error` connects again
    /// instead of ending: a NATS conversation that lost its server.
    pub(super) fn redial_after(&self, key: Key, error: &Error) -> bool {
        let Some(conv) = self.conv(key) else {
            return false;
        };
        if conv.redial.is_none() {
            return false;
        }
        match error {
            #[cfg(feature = "nats")]
            Error::Nats { reason, .. } => matches!(
                reason,
                crate::nats::NatsError::Disconnected
                    | crate::nats::NatsError::Stale
                    | crate::nats::NatsError::HandshakeTimeout
            ),
            Error::ConnectionRefused { .. }
            | Error::ConnectionReset { .. }
            | Error::BrokenPipe { .. }
            | Error::UnexpectedEof { .. }
            | Error::Io { .. } => true,
            _ => false,
        }
    }

    /// Lets the connection go and waits before connecting again: the wait.
    pub(super) fn start_redial(&mut self, key: Key) -> Duration {
        let Some(conv) = self.conv_mut(key) else {
            return Duration::ZERO;
        };
        let old = std::mem::replace(&mut conv.carrier, Carrier::Between);
        conv.connecting = false;
        conv.origin = Origin::Connecting;
        let wait = match &mut conv.redial {
            Some(redial) => {
                redial.lost = true;
                let wait = redial.backoff.next_wait();
                redial.retry_at = Instant::now() + wait;
                wait
            }
            None => Duration::ZERO,
        };
        if let Carrier::Stream { socket, .. } = old {
            if let Some(socket) = socket.socket() {
                let _ = self.poll.registry().deregister(&mut mio::unix::SourceFd(
                    &std::os::fd::AsRawFd::as_raw_fd(socket),
                ));
            }
        }
        self.schedule(key);
        wait
    }

    /// Connects again (its retry came).
    pub(super) fn redial(&mut self, key: Key, events: &mut Events) {
        let Some(conv) = self.conv_mut(key) else {
            return;
        };
        let Some(redial) = conv.redial.take() else {
            return;
        };
        let begun = self.begin(&redial.addrs, &redial.recipe, &redial.config);
        let Some(conv) = self.conv_mut(key) else {
            return;
        };
        conv.redial = Some(redial);
        match begun {
            Ok((socket, conn, peer)) => {
                if socket.set_nonblocking(true).is_err()
                    || self
                        .register(&socket, key, super::registry::interest())
                        .is_err()
                {
                    self.start_redial(key);
                    return;
                }
                let Some(conv) = self.conv_mut(key) else {
                    return;
                };
                conv.peer = peer;
                conv.carrier = Carrier::Stream {
                    socket: socket.into(),
                    conn: Box::new(conn),
                };
                conv.connecting = true;
                conv.writable = false;
                let _ = events;
            }
            Err(_) => {
                // Not even begun (no route …): wait, then try again.
                self.start_redial(key);
            }
        }
    }

    /// A connected datagram conversation (a UDP client, a Unix datagram
    /// socket), taken over.
    pub(super) fn add_datagram_parts(
        &mut self,
        socket: Socket,
        peer: Addr,
        local: Addr,
        max: usize,
        idle: Option<Duration>,
    ) -> Result<Id> {
        let dg = Datagrams::new(
            peer.clone(),
            max,
            idle,
            Some(self.config.max_backlog),
            Instant::now(),
        );
        self.add_datagram(socket, dg, peer, local)
    }
}
