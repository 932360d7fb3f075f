//! What a switchboard holds: its conversations and listeners in an arena,
//! each registered with `mio` under its key; adding and removing them.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Token};
use socket2::Socket;

use super::arena::Key;
use super::events::{Event, Events, Id, ListenerId};
use super::Switchboard;
use crate::addr::Addr;
use crate::config::Config;
use crate::connection::datagram::Datagrams;
use crate::connection::demux::Demux;
use crate::connection::{Conn, End};
use crate::error::{Error, Result};
use crate::transport::carrier::Carrier as Wire;
use crate::transport::recipe::Recipe;

/// An entry of the arena.
pub(super) enum Entry {
    Conv(Box<Conv>),
    Listener(Box<Listen>),
}

/// Where a conversation's bytes go.
pub(super) enum Carrier {
    /// A stream (its socket, or a QUIC stream) and its connection.
    Stream { socket: Wire, conn: Box<Conn> },
    /// A connected datagram socket (UDP client, Unix datagram).
    Datagram { socket: Socket, dg: Box<Datagrams> },
    /// A peer of a UDP listener: its datagrams come from, and replies go
    /// out of, the listener's socket.
    UdpPeer {
        listener: Key,
        demux_id: u64,
        to: SocketAddr,
        dg: Box<Datagrams>,
    },
    /// A NATS conversation between two connections (reconnecting).
    Between,
    /// A QUIC connect under way (the endpoint's thread drives its
    /// handshakes): what is sent meanwhile waits in the connection.
    #[cfg(feature = "quic")]
    Dialing {
        conn: Box<Conn>,
        dial: Box<crate::transport::quic::Dial>,
    },
}

/// How a conversation came, until it is reported.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Origin {
    /// Accepted by this listener; reported once its handshakes are done.
    Accepted(ListenerId),
    /// Connected here (or connecting again); `Connected` once established.
    Connecting,
    /// Reported.
    Told,
}

/// A conversation.
pub(super) struct Conv {
    pub(super) carrier: Carrier,
    pub(super) peer: Addr,
    pub(super) local: Addr,
    pub(super) origin: Origin,
    /// The TCP connect is under way (a client's, not yet writable).
    pub(super) connecting: bool,
    /// The socket took everything last time (or nothing was tried yet).
    pub(super) writable: bool,
    /// In `dirty`: has output to write.
    pub(super) dirty: bool,
    /// In `backlog`: may have more to read.
    pub(super) backlogged: bool,
    /// The peer's end or an error was signalled: read until the socket
    /// says so, even after a short read (which otherwise shows the socket
    /// drained: readiness is edge-triggered, and new bytes signal again).
    pub(super) read_to_end: bool,
    /// `try_send` found it full: say when it drains.
    pub(super) wants_drained: bool,
    /// The peer's end was reported: our side finishes at the next turn
    /// (replies to the messages of the turn go first).
    pub(super) finish_next: bool,
    /// The earliest instant it has in the timer heap.
    pub(super) timer: Option<Instant>,
    /// What it holds, as last counted in the switchboard's total.
    pub(super) held: usize,
    /// The program paused reading it (`Switchboard::pause`; since when is
    /// kept beside, so that an idle conversation stays small).
    pub(super) paused: bool,
    /// How to connect again (a NATS client).
    pub(super) redial: Option<Box<super::redial::Redial>>,
}

impl Conv {
    pub(super) fn new(carrier: Carrier, peer: Addr, local: Addr, origin: Origin) -> Conv {
        Conv {
            carrier,
            peer,
            local,
            origin,
            connecting: false,
            writable: true,
            dirty: false,
            backlogged: false,
            read_to_end: false,
            wants_drained: false,
            finish_next: false,
            timer: None,
            held: 0,
            paused: false,
            redial: None,
        }
    }

    /// Between connections, or connecting (its timers are the connect's,
    /// paused or not).
    pub(super) fn connects(&self) -> bool {
        match self.carrier {
            Carrier::Between => true,
            #[cfg(feature = "quic")]
            Carrier::Dialing { .. } => true,
            _ => false,
        }
    }

    /// What it holds against the switchboard's memory budget: received
    /// of a message not yet whole, and its outbox; nothing once it has
    /// failed (what it held goes with it).
    pub(super) fn holding(&self) -> usize {
        match &self.carrier {
            Carrier::Stream { conn, .. } if conn.link.is_down() => 0,
            Carrier::Stream { conn, .. } => conn.queued() + conn.rx.buffered(),
            Carrier::Datagram { dg, .. } | Carrier::UdpPeer { dg, .. } => dg.queued(),
            Carrier::Between => 0,
            #[cfg(feature = "quic")]
            Carrier::Dialing { conn, .. } => conn.queued(),
        }
    }

    /// Bytes waiting in its outbox.
    pub(super) fn queued(&self) -> usize {
        match &self.carrier {
            Carrier::Stream { conn, .. } => conn.queued(),
            Carrier::Datagram { dg, .. } | Carrier::UdpPeer { dg, .. } => dg.queued(),
            Carrier::Between => 0,
            #[cfg(feature = "quic")]
            Carrier::Dialing { conn, .. } => conn.queued(),
        }
    }
}

/// A listener.
pub(super) enum Listen {
    Stream {
        socket: Socket,
        local: Addr,
        config: Box<Config>,
        recipe: Box<Recipe>,
        /// A Unix socket's file, removed with the listener.
        unix_file: Option<std::path::PathBuf>,
        paused: bool,
        backoff: Duration,
    },
    Udp {
        socket: std::net::UdpSocket,
        local: SocketAddr,
        config: Box<Config>,
        max: usize,
        demux: Box<Demux>,
        peers: HashMap<u64, Key>,
        writable: bool,
        /// Peers with datagrams waiting for the socket.
        waiting: VecDeque<Key>,
        /// Closed: its peers finish, then it goes; no new ones.
        closing: bool,
    },
    /// A QUIC listener: its endpoint's thread reads the socket, and tells
    /// the switchboard when streams were accepted.
    #[cfg(feature = "quic")]
    Quic {
        listener: Box<crate::transport::quic::QuicListener>,
        local: Addr,
        max_backlog: usize,
    },
}

/// The `mio` token of a key.
pub(super) fn token(key: Key) -> Token {
    Token(key.index as usize)
}

/// The interest every socket is registered with (edge-triggered).
pub(super) fn interest() -> Interest {
    Interest::READABLE | Interest::WRITABLE
}

impl Switchboard {
    pub(super) fn conv_mut(&mut self, key: Key) -> Option<&mut Conv> {
        match self.entries.get_mut(key)? {
            Entry::Conv(c) => Some(c),
            Entry::Listener(_) => None,
        }
    }

    pub(super) fn conv(&self, key: Key) -> Option<&Conv> {
        match self.entries.get(key)? {
            Entry::Conv(c) => Some(c),
            Entry::Listener(_) => None,
        }
    }

    /// Registers `fd` for `key` with `interest`.
    pub(super) fn register(&self, fd: &impl AsRawFd, key: Key, interest: Interest) -> Result<()> {
        self.poll
            .registry()
            .register(&mut SourceFd(&fd.as_raw_fd()), token(key), interest)
            .map_err(|e| Error::from_io(e, &Addr::Unknown))
    }

    fn deregister(&self, fd: &impl AsRawFd) {
        let _ = self
            .poll
            .registry()
            .deregister(&mut SourceFd(&fd.as_raw_fd()));
    }

    /// Adds a conversation over `wire` (non-blocking from now on: a socket
    /// registered with the poller, or a QUIC stream that says when it may
    /// be ready) and its connection; the first turn runs at once (what it
    /// already holds is handed out, what it has to say goes out).
    pub(super) fn add_stream(
        &mut self,
        wire: Wire,
        conn: Conn,
        peer: Addr,
        local: Addr,
        origin: Origin,
    ) -> Result<Id> {
        let key = match wire {
            Wire::Socket(socket) => self.insert_conv(socket, peer, |socket, peer| {
                let conn = Box::new(conn);
                Conv::new(
                    Carrier::Stream {
                        socket: Wire::Socket(socket),
                        conn,
                    },
                    peer,
                    local,
                    origin,
                )
            })?,
            #[allow(unreachable_patterns)]
            wire => {
                wire.set_nonblocking(true)
                    .map_err(|e| Error::from_io(e, &peer))?;
                let key = self.entries.next_key();
                wire.watch(Some(self.ready_notifier(key)));
                let conn = Box::new(conn);
                let conv = Conv::new(Carrier::Stream { socket: wire, conn }, peer, local, origin);
                let inserted = self.entries.insert(Entry::Conv(Box::new(conv)));
                debug_assert_eq!(inserted, key);
                key
            }
        };
        // Whatever came with a handover waits in the socket or the buffer.
        self.push_backlog(key);
        self.mark_dirty(key);
        Ok(Id(key))
    }

    /// Adds a connected datagram conversation.
    pub(super) fn add_datagram(
        &mut self,
        socket: Socket,
        dg: Datagrams,
        peer: Addr,
        local: Addr,
    ) -> Result<Id> {
        let key = self.insert_conv(socket, peer, |socket, peer| {
            let dg = Box::new(dg);
            Conv::new(Carrier::Datagram { socket, dg }, peer, local, Origin::Told)
        })?;
        self.schedule(key);
        self.push_backlog(key);
        Ok(Id(key))
    }

    /// Makes `socket` non-blocking, registers it under the next key and
    /// inserts the conversation `make` builds around it.
    fn insert_conv(
        &mut self,
        socket: Socket,
        peer: Addr,
        make: impl FnOnce(Socket, Addr) -> Conv,
    ) -> Result<Key> {
        socket
            .set_nonblocking(true)
            .map_err(|e| Error::from_io(e, &peer))?;
        let key = self.entries.next_key();
        self.register(&socket, key, interest())?;
        let inserted = self
            .entries
            .insert(Entry::Conv(Box::new(make(socket, peer))));
        debug_assert_eq!(inserted, key);
        Ok(key)
    }

    /// Adds a stream listener (its socket non-blocking from now on).
    pub(super) fn add_stream_listener(
        &mut self,
        socket: Socket,
        local: Addr,
        config: Config,
        recipe: Recipe,
        unix_file: Option<std::path::PathBuf>,
    ) -> Result<ListenerId> {
        socket
            .set_nonblocking(true)
            .map_err(|e| Error::from_io(e, &local))?;
        let key = self.entries.next_key();
        self.register(&socket, key, Interest::READABLE)?;
        self.entries
            .insert(Entry::Listener(Box::new(Listen::Stream {
                socket,
                local,
                config: Box::new(config),
                recipe: Box::new(recipe),
                unix_file,
                paused: false,
                backoff: Duration::from_millis(50),
            })));
        // Connections may already wait in the backlog.
        self.push_backlog(key);
        Ok(ListenerId(key))
    }

    /// Reports `end` for `key` (now into `events`, or at the next `wait`)
    /// and removes it; a conversation never reported as accepted is the
    /// listener's news instead (a failed handshake), or nothing at all.
    pub(super) fn report_end(&mut self, key: Key, end: End, events: Option<&mut Events>) {
        let Some(conv) = self.conv(key) else {
            return;
        };
        let event = match (conv.origin, end) {
            (Origin::Accepted(listener), End::Failed(error)) => {
                let peer = conv.peer.clone();
                self.stats.handshake_failures += 1;
                Some(Event::HandshakeFailed {
                    listener,
                    peer,
                    error,
                })
            }
            (Origin::Accepted(_), _) => None,
            (origin, end) => {
                if origin == Origin::Connecting
                    && matches!(&end, End::Failed(e) if e.is_handshake())
                {
                    self.stats.handshake_failures += 1;
                }
                self.stats.ended += 1;
                if matches!(&end, End::Failed(Error::SlowConsumer { .. })) {
                    self.stats.slow_consumers += 1;
                }
                Some(Event::Ended { id: Id(key), end })
            }
        };
        if let Some(event) = event {
            match events {
                Some(events) => events.push(event),
                None => self.pending.push_back(event),
            }
        }
    }

    /// Removes a conversation: its socket deregistered and closed (reset,
    /// if its connection asks for one), a UDP peer forgotten.
    pub(super) fn remove_conv(&mut self, key: Key) {
        let Some(Entry::Conv(conv)) = self.entries.remove(key) else {
            return;
        };
        self.held -= conv.held;
        if conv.paused {
            self.paused_since.remove(&key);
        }
        match conv.carrier {
            Carrier::Stream { socket, conn } => {
                match socket.socket() {
                    Some(s) => self.deregister(s),
                    None => {
                        socket.watch(None);
                    }
                }
                if conn.link.wants_reset() {
                    let _ = socket.linger_zero();
                }
            }
            Carrier::Datagram { socket, .. } => self.deregister(&socket),
            Carrier::UdpPeer {
                listener, demux_id, ..
            } => {
                if let Some(Entry::Listener(l)) = self.entries.get_mut(listener) {
                    if let Listen::Udp { demux, peers, .. } = &mut **l {
                        if peers.remove(&demux_id).is_some() {
                            demux.closed(demux_id);
                        }
                    }
                }
                self.remove_udp_listener_if_done(listener);
            }
            // A connect under way is given up as it goes.
            Carrier::Between => {}
            #[cfg(feature = "quic")]
            Carrier::Dialing { .. } => {}
        }
    }

    pub(super) fn remove_listener(&mut self, key: Key) {
        let Some(Entry::Listener(l)) = self.entries.remove(key) else {
            return;
        };
        match *l {
            Listen::Stream {
                socket, unix_file, ..
            } => {
                self.deregister(&socket);
                drop(socket);
                if let Some(path) = unix_file {
                    let _ = std::fs::remove_file(path);
                }
            }
            Listen::Udp { socket, .. } => self.deregister(&socket),
            #[cfg(feature = "quic")]
            Listen::Quic { listener, .. } => listener.watch(None),
        }
    }

    pub(super) fn mark_dirty(&mut self, key: Key) {
        if let Some(conv) = self.conv_mut(key) {
            if !conv.dirty {
                conv.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    pub(super) fn push_backlog(&mut self, key: Key) {
        match self.entries.get_mut(key) {
            Some(Entry::Conv(conv)) => {
                if conv.backlogged {
                    return;
                }
                conv.backlogged = true;
            }
            Some(Entry::Listener(_)) => {
                if self.backlog.contains(&key) {
                    return;
                }
            }
            None => return,
        }
        self.backlog.push_back(key);
    }
}
