//! Many conversations on one thread: the [`Switchboard`].
//!
//! The tutorial's servers talk to one client at a time; its next step is
//! `select`, one thread watching many sockets. A switchboard is that step at
//! the level of messages: it hands out whole messages, accepted
//! conversations and ends (with their reason), never byte readiness. Every
//! rule of every protocol — framing, limits, deadlines, TLS, WebSocket,
//! NATS, the end — is the connection's, the same one a blocking
//! conversation runs; the switchboard only decides when to run it, from
//! `mio` readiness and a timer heap.
//!
//! Sending never blocks the serving thread: each conversation has a bounded
//! outbox ([`Config::max_backlog`], 1 MiB by default; pongs and close
//! frames count in it) written out when its socket is writable, many
//! messages per system call. A peer that does not read fills its own
//! outbox, and is then ended as a slow consumer ([`Error::SlowConsumer`]),
//! counted, and reported; nobody else waits for it.
//! [`Switchboard::try_send`] lets the caller decide instead.
//!
//! ```
//! use converse::switchboard::{Event, Events, Switchboard};
//!
//! // An echo server for any number of clients, on this thread.
//! let mut board = Switchboard::new()?;
//! let listener = board.listen("tcp://127.0.0.1:0")?;
//! let url = board.listener_addr(listener).unwrap().to_string();
//!
//! let client = std::thread::spawn(move || -> converse::Result<()> {
//!     let mut c = converse::connect(&url)?;
//!     c.send_text("hello")?;
//!     assert_eq!(c.recv_text()?.as_deref(), Some("hello"));
//!     c.close()?;
//!     Ok(())
//! });
//!
//! let mut events = Events::new();
//! let mut done = false;
//! while !done {
//!     board.wait(&mut events, None)?;
//!     for event in events.drain() {
//!         match event {
//!             Event::Message { id, message } => board.send(id, &message)?,
//!             Event::Ended { .. } => done = true,
//!             _ => {}
//!         }
//!     }
//! }
//! client.join().unwrap()?;
//! # Ok::<(), converse::Error>(())
//! ```
//!
//! Other threads send through a [`Handle`], which wakes the switchboard;
//! [`serve`] hands events to a pool of worker threads and lets them answer.
//! Use one switchboard per thread to use every core (a [`Handle`] can hand a
//! conversation accepted on one to another).

mod accept;
mod arena;
mod budget;
mod dial;
mod events;
mod handle;
mod io;
mod redial;
mod registry;
mod timers;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mio::{Poll, Token, Waker};

use self::arena::{Arena, Key};
use self::registry::{Carrier, Entry, Listen};
use crate::addr::Addr;
use crate::config::Config;
use crate::connection::demux::{Demux, Limits};
use crate::error::{Error, Result};
use crate::transport::recipe::Recipe;
use crate::transport::udp::payload_limit;
use crate::url::{Place, Scheme};

pub use self::events::{Event, Events, Id, ListenerId, Stats};
pub use self::handle::{serve, Handle};
pub use crate::connection::End;

const WAKE: Token = Token(usize::MAX);
/// The shared read buffer.
const SCRATCH: usize = 64 * 1024;

/// Many conversations and listeners, of every transport, served from one
/// thread. See the [module docs](self).
pub struct Switchboard {
    poll: Poll,
    mio_events: mio::Events,
    /// What the last poll said, per token: (readable, with the peer's end
    /// or an error), writable (kept between waits).
    ready: Vec<(Token, (bool, bool), bool)>,
    shared: Arc<handle::Shared>,
    entries: Arena<Entry>,
    timers: BinaryHeap<Reverse<(Instant, Key)>>,
    /// Conversations (and UDP listeners) with output to write.
    dirty: Vec<Key>,
    /// Entries that may have more to read than one turn took.
    backlog: VecDeque<Key>,
    /// Conversations whose peer's end was reported: their side ends at the
    /// next turn.
    finishing: Vec<Key>,
    /// Events produced outside `wait` (a send that ended a slow consumer).
    pending: VecDeque<Event>,
    scratch: Vec<u8>,
    config: Config,
    stats: Stats,
    /// What the conversations hold together (see `budget`).
    held: usize,
    /// Since when each paused conversation is paused.
    paused_since: HashMap<Key, Instant>,
    /// A shutdown is under way: `wait` reports the ends, then `is_empty`.
    shutting_down: bool,
}

impl std::fmt::Debug for Switchboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switchboard")
            .field("stats", &self.stats())
            .finish()
    }
}

/// What a switchboard can take over: a blocking conversation's transport,
/// with everything it has buffered either way (`Tcp`, `Tls`, `Ws`, `Nats`,
/// `Unix`, `Udp`, `UnixDatagram`).
pub trait Adopt: sealed::Adoptable {}

/// What a switchboard can take over as a listener (`TcpListener`,
/// `TlsListener`, `WsListener`, `UnixListener`).
pub trait AdoptListener: sealed::TakenApart {}

mod sealed {
    use crate::error::Result;

    /// A transport taken apart.
    pub struct Parts(pub(super) super::Adopted);

    /// A listener taken apart.
    pub struct ListenerParts(pub(super) super::AdoptedListener);

    impl std::fmt::Debug for Parts {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Parts")
        }
    }

    impl std::fmt::Debug for ListenerParts {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("ListenerParts")
        }
    }

    pub trait Adoptable {
        fn into_parts(self) -> Result<Parts>;
    }

    pub trait TakenApart {
        fn into_listener_parts(self) -> Result<ListenerParts>;
    }
}

/// A transport taken apart for the switchboard.
enum Adopted {
    Stream(
        Box<(
            crate::transport::carrier::Carrier,
            Addr,
            Addr,
            crate::connection::Conn,
        )>,
    ),
    Datagram(socket2::Socket, Addr, Addr, usize, Option<Duration>),
}

/// A listener taken apart for the switchboard.
struct AdoptedListener {
    socket: socket2::Socket,
    local: Addr,
    config: Config,
    recipe: Recipe,
    unix_file: Option<std::path::PathBuf>,
}

fn shared_socket() -> Error {
    Error::Unsupported("a transport whose socket is shared (split, or a write half done)")
}

macro_rules! adopt_stream {
    ($($(#[$cfg:meta])* $t:ty),*) => {$(
        $(#[$cfg])*
        impl sealed::Adoptable for $t {
            fn into_parts(self) -> Result<sealed::Parts> {
                let (tx, rx) = crate::transport::Transport::into_halves(self);
                let (socket, local, peer, conn, _) =
                    crate::transport::stream::into_parts(tx, rx).ok_or_else(shared_socket)?;
                Ok(sealed::Parts(Adopted::Stream(Box::new((socket, local, peer, conn)))))
            }
        }
        $(#[$cfg])*
        impl Adopt for $t {}
    )*};
}

adopt_stream!(
    crate::Tcp,
    #[cfg(unix)]
    crate::Unix,
    #[cfg(feature = "tls")]
    crate::Tls,
    #[cfg(feature = "ws")]
    crate::Ws,
    #[cfg(feature = "nats")]
    crate::Nats
);

impl sealed::Adoptable for crate::Udp {
    fn into_parts(self) -> Result<sealed::Parts> {
        let p = self.into_parts().ok_or_else(shared_socket)?;
        Ok(sealed::Parts(Adopted::Datagram(
            p.socket, p.peer, p.local, p.max, p.idle,
        )))
    }
}
impl Adopt for crate::Udp {}

#[cfg(unix)]
impl sealed::Adoptable for crate::UnixDatagram {
    fn into_parts(self) -> Result<sealed::Parts> {
        let p = self.into_parts().ok_or_else(shared_socket)?;
        Ok(sealed::Parts(Adopted::Datagram(
            p.socket, p.peer, p.local, p.max, p.idle,
        )))
    }
}
#[cfg(unix)]
impl Adopt for crate::UnixDatagram {}

macro_rules! adopt_listener {
    ($($(#[$cfg:meta])* $t:ty),*) => {$(
        $(#[$cfg])*
        impl sealed::TakenApart for $t {
            fn into_listener_parts(self) -> Result<sealed::ListenerParts> {
                let (socket, local, config, recipe) = self
                    .into_listening()
                    .into_parts()
                    .ok_or_else(shared_socket)?;
                Ok(sealed::ListenerParts(AdoptedListener {
                    socket,
                    local,
                    config,
                    recipe,
                    unix_file: None,
                }))
            }
        }
        $(#[$cfg])*
        impl AdoptListener for $t {}
    )*};
}

adopt_listener!(
    crate::TcpListener,
    #[cfg(feature = "tls")]
    crate::TlsListener,
    #[cfg(feature = "ws")]
    crate::WsListener
);

#[cfg(unix)]
impl sealed::TakenApart for crate::UnixListener {
    fn into_listener_parts(self) -> Result<sealed::ListenerParts> {
        let (socket, local, config, unix_file) = self.into_parts().ok_or_else(shared_socket)?;
        let recipe = Recipe::server_of(Scheme::Unix, &config)?;
        Ok(sealed::ListenerParts(AdoptedListener {
            socket,
            local,
            config,
            recipe,
            unix_file,
        }))
    }
}
#[cfg(unix)]
impl AdoptListener for crate::UnixListener {}

impl Switchboard {
    /// A switchboard whose conversations get the default [`Config`].
    pub fn new() -> Result<Switchboard> {
        Switchboard::with_config(&Config::default())
    }

    /// A switchboard whose conversations (connected, or accepted through
    /// [`listen`](Self::listen)) get `config`: framing, limits, deadline,
    /// linger, idle timeout, TLS settings, and the backlog limit
    /// ([`Config::max_backlog`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a configuration that cannot work
    /// (see [`Config::validate`]), or a memory budget
    /// ([`Config::memory_budget`]) smaller than the largest message; an
    /// error of the system's polling.
    pub fn with_config(config: &Config) -> Result<Switchboard> {
        config.validate()?;
        if config.memory_budget < config.max_message_len {
            return Err(Error::InvalidConfig(crate::config::ConfigError {
                setting: "memory_budget",
                reason: "a memory budget smaller than the largest message would end \
                         every conversation receiving one",
            }));
        }
        let io = |e| Error::from_io(e, &Addr::Unknown);
        let poll = Poll::new().map_err(io)?;
        let waker = Waker::new(poll.registry(), WAKE).map_err(io)?;
        Ok(Switchboard {
            poll,
            mio_events: mio::Events::with_capacity(1024),
            ready: Vec::new(),
            shared: Arc::new(handle::Shared {
                commands: Mutex::new(VecDeque::new()),
                waker,
            }),
            entries: Arena::new(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            backlog: VecDeque::new(),
            finishing: Vec::new(),
            pending: VecDeque::new(),
            scratch: vec![0u8; SCRATCH],
            config: config.clone(),
            stats: Stats::default(),
            held: 0,
            paused_since: HashMap::new(),
            shutting_down: false,
        })
    }

    /// What the switchboard has done so far.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats;
        stats.held = self.held;
        stats.conversations = 0;
        stats.listeners = 0;
        for key in self.entries.keys() {
            match self.entries.get(key) {
                Some(Entry::Conv(_)) => stats.conversations += 1,
                Some(Entry::Listener(_)) => stats.listeners += 1,
                None => {}
            }
        }
        stats
    }

    /// `true` when no conversation or listener is left (after a shutdown,
    /// the loop can stop).
    pub fn is_empty(&self) -> bool {
        self.entries.len() == 0
    }

    /// A handle for other threads: send, close, hand over conversations,
    /// shut down; each wakes the switchboard.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: Arc::clone(&self.shared),
        }
    }

    // -----------------------------------------------------------------------
    // Listeners and conversations.

    /// Listens on a URL (`tcp://`, `udp://`, `unix://`, `tls://`, `ws://`,
    /// `wss://`, as [`listen`](crate::listen)) with the switchboard's
    /// configuration. TLS handshakes and WebSocket upgrades are driven by
    /// readiness, each bounded by [`Config::handshake_timeout`]; an
    /// accepted conversation is reported ([`Event::Accepted`]) once they
    /// are done, or is [`Event::HandshakeFailed`].
    pub fn listen(&mut self, url: &str) -> Result<ListenerId> {
        let config = self.config.clone();
        self.listen_with(url, &config)
    }

    /// Listens on a URL, its conversations getting `config`.
    pub fn listen_with(&mut self, url: &str, config: &Config) -> Result<ListenerId> {
        let parsed = crate::connect::parse(url, config, true)?;
        match (&parsed.place, parsed.scheme) {
            #[cfg(feature = "quic")]
            (_, Scheme::Quic) => {
                let recipe = Recipe::server(&parsed, config)?;
                let listener =
                    crate::transport::quic::QuicListener::bind(&parsed.resolve()?, recipe, config)?;
                let key = self.entries.next_key();
                listener.watch(Some(self.ready_notifier(key)));
                let local = listener.local();
                let inserted = self.entries.insert(registry::Entry::Listener(Box::new(
                    registry::Listen::Quic {
                        listener: Box::new(listener),
                        local,
                        max_backlog: config.max_backlog,
                    },
                )));
                debug_assert_eq!(inserted, key);
                // Streams may have been accepted already.
                self.push_backlog(key);
                Ok(ListenerId(key))
            }
            (_, Scheme::Udp) => {
                let mut last = None;
                for at in parsed.resolve()? {
                    match crate::transport::sockopt::udp_listener(at, config) {
                        Ok(socket) => return self.add_udp_listener(socket, config),
                        Err(e) => last = Some(Error::from_io(e, &Addr::Udp(at))),
                    }
                }
                Err(last.unwrap_or_else(|| crate::addr::no_address(url).into()))
            }
            #[cfg(unix)]
            (Place::Path(path), _) => {
                self.adopt_listener(crate::transport::UnixListener::bind_with(path, config)?)
            }
            _ => {
                let recipe = Recipe::server(&parsed, config)?;
                let listening = crate::transport::listener::Listening::bind(
                    &parsed.resolve()?,
                    recipe,
                    config,
                )?;
                let (socket, local, config, recipe) =
                    listening.into_parts().ok_or_else(shared_socket)?;
                self.add_stream_listener(socket, local, config, recipe, None)
            }
        }
    }

    fn add_udp_listener(
        &mut self,
        socket: std::net::UdpSocket,
        config: &Config,
    ) -> Result<ListenerId> {
        let local = socket
            .local_addr()
            .map_err(|e| Error::from_io(e, &Addr::Unknown))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| Error::from_io(e, &Addr::Udp(local)))?;
        let key = self.entries.next_key();
        self.register(&socket, key, registry::interest())?;
        let max = config
            .max_message_len
            .min(payload_limit(&local, usize::MAX));
        self.entries.insert(Entry::Listener(Box::new(Listen::Udp {
            socket,
            local,
            config: Box::new(config.clone()),
            max,
            demux: Box::new(Demux::new(Limits::of(config))),
            peers: HashMap::new(),
            writable: true,
            waiting: VecDeque::new(),
            closing: false,
        })));
        Ok(ListenerId(key))
    }

    /// Takes over a listener (with the configuration it was made with): a
    /// `TcpListener`, `TlsListener`, `WsListener` (with its page) or
    /// `UnixListener` (the switchboard removes its socket file when it is
    /// done with it).
    pub fn adopt_listener(&mut self, listener: impl AdoptListener) -> Result<ListenerId> {
        let sealed::ListenerParts(parts) = listener.into_listener_parts()?;
        self.add_stream_listener(
            parts.socket,
            parts.local,
            parts.config,
            parts.recipe,
            parts.unix_file,
        )
    }

    /// Answers a plain HTTP `GET /` (and `HEAD /`) on WebSocket listener
    /// `listener` with `page` (a browser opening the address gets it; the
    /// page can then open a WebSocket to the same address). Other paths
    /// get `404`, other methods `405`.
    #[cfg(feature = "ws")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn serve_page(&mut self, listener: ListenerId, page: crate::ws::Page) -> Result<()> {
        match self.entries.get_mut(listener.0) {
            Some(Entry::Listener(l)) => match &mut **l {
                Listen::Stream { recipe, .. } => recipe.serve_page(page),
                _ => Err(Error::Unsupported(
                    "a page on a listener that is not WebSocket",
                )),
            },
            _ => Err(Error::Closed),
        }
    }

    /// Connects to a URL (`tcp://`, `udp://`, `unix://`, `unixgram://`,
    /// `tls://`, `ws://`, `wss://`, `nats://`, and `quic://` with that
    /// feature) with the switchboard's configuration, without waiting: the
    /// id is the conversation's at once, and what is sent before it is
    /// established goes out after. [`Event::Connected`] says when its
    /// handshakes are done (TLS, the WebSocket upgrade, NATS's
    /// subscription, QUIC's); a connect that fails ends
    /// it ([`Event::Ended`] with the reason). A NATS conversation whose
    /// server goes away connects again by itself
    /// ([`Event::Disconnected`], then `Connected`). (A host name is looked
    /// up here, which waits for the system's resolver; an IP address is
    /// not.)
    pub fn connect(&mut self, url: &str) -> Result<Id> {
        let config = self.config.clone();
        self.connect_with(url, &config)
    }

    /// Takes over a blocking conversation's transport, with everything it
    /// has buffered either way: a `Tcp`, `Tls` (one whose handshake is not
    /// over completes it here), `Ws`, `Nats`, `Unix`, `Udp` or
    /// `UnixDatagram`.
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for a transport whose socket is shared (its
    /// halves taken apart).
    pub fn adopt(&mut self, transport: impl Adopt) -> Result<Id> {
        let sealed::Parts(parts) = transport.into_parts()?;
        let id = match parts {
            Adopted::Stream(parts) => {
                let (socket, local, peer, mut conn) = *parts;
                conn.link.limits.backlog = Some(self.config.max_backlog);
                let origin = registry::Origin::Told;
                self.add_stream(socket, conn, peer, local, origin)?
            }
            Adopted::Datagram(socket, peer, local, max, idle) => {
                self.add_datagram_parts(socket, peer, local, max, idle)?
            }
        };
        if self.shutting_down {
            // Handed over during a shutdown: it ends with the others.
            self.close(id);
        }
        Ok(id)
    }

    /// The verified identity of conversation `id`'s peer (TLS, once the
    /// handshake is over; see [`Conversation::peer_identity`](crate::Conversation::peer_identity)).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn peer_identity(&self, id: Id) -> Option<crate::tls::PeerIdentity> {
        match &self.conv(id.0)?.carrier {
            Carrier::Stream { conn, socket } => {
                conn.link.identity().or_else(|| socket.peer_identity())
            }
            _ => None,
        }
    }

    // -----------------------------------------------------------------------
    // Sending and ending.

    /// Queues `msg` for conversation `id`; it goes out when the socket
    /// takes it (after what was queued before).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] for an id that names nothing (or a conversation
    /// being closed); [`Error::MessageTooLarge`] (nothing queued; the
    /// conversation goes on); [`Error::SlowConsumer`] when the outbox would
    /// pass its bound: the conversation is ended (reset), and its
    /// [`Event::Ended`] follows. When the message would pass the
    /// switchboard's memory budget ([`Config::memory_budget`]), the
    /// conversations holding the most are ended first
    /// ([`Error::OverBudget`]); if that is this one, it is ended and the
    /// error returned.
    pub fn send(&mut self, id: Id, msg: impl AsRef<[u8]>) -> Result<()> {
        self.send_as(id, msg.as_ref(), false)
    }

    /// Queues `text` as one message (over WebSocket, a text frame, so that
    /// a browser receives a string). See [`send`](Self::send).
    pub fn send_text(&mut self, id: Id, text: &str) -> Result<()> {
        self.send_as(id, text.as_bytes(), true)
    }

    fn send_as(&mut self, id: Id, msg: &[u8], text: bool) -> Result<()> {
        if !self.within_budget(id, msg.len()) {
            // It holds the most of the budget, with this message: it goes.
            let Some((held, addr)) = self.conv(id.0).map(|c| (c.held, c.peer.clone())) else {
                return Err(Error::Closed);
            };
            self.end_over_budget(id.0, None);
            return Err(Error::OverBudget {
                addr,
                held: (held + msg.len()) as u64,
                budget: self.config.memory_budget as u64,
            });
        }
        if self.queue(id, msg, text)? {
            return Ok(());
        }
        let Some(conv) = self.conv_mut(id.0) else {
            return Err(Error::Closed);
        };
        let err = match &mut conv.carrier {
            Carrier::Stream { conn, .. } => conn.link.slow_consumer(msg.len()),
            Carrier::Datagram { dg, .. } | Carrier::UdpPeer { dg, .. } => {
                dg.slow_consumer(msg.len())
            }
            #[cfg(feature = "quic")]
            Carrier::Dialing { conn, .. } => conn.link.slow_consumer(msg.len()),
            Carrier::Between => return Err(Error::Closed),
        };
        self.settle(id.0, None);
        Err(err)
    }

    /// Queues `msg` only if it fits the outbox: `Ok(false)` when it would
    /// pass the backlog limit, or this conversation would hold the most of
    /// the memory budget (nothing queued; an [`Event::Drained`] follows
    /// when the outbox is empty again). Errors as
    /// [`send`](Self::send), but never `SlowConsumer`.
    pub fn try_send(&mut self, id: Id, msg: impl AsRef<[u8]>) -> Result<bool> {
        let msg = msg.as_ref();
        let queued = self.within_budget(id, msg.len()) && self.queue(id, msg, false)?;
        if !queued {
            if let Some(conv) = self.conv_mut(id.0) {
                conv.wants_drained = true;
            }
        }
        Ok(queued)
    }

    /// `Ok(true)` queued, `Ok(false)` over the backlog limit.
    fn queue(&mut self, id: Id, msg: &[u8], text: bool) -> Result<bool> {
        let Some(conv) = self.conv_mut(id.0) else {
            return Err(Error::Closed);
        };
        let queued = match &mut conv.carrier {
            Carrier::Stream { conn, .. } => conn.send(msg, text)?,
            #[cfg(feature = "quic")]
            Carrier::Dialing { conn, .. } => conn.send(msg, text)?,
            Carrier::Datagram { dg, .. } | Carrier::UdpPeer { dg, .. } => dg.send(msg)?,
            #[cfg(feature = "nats")]
            Carrier::Between => {
                return Err(Error::Nats {
                    addr: conv.peer.clone(),
                    reason: crate::nats::NatsError::Disconnected,
                })
            }
            #[cfg(not(feature = "nats"))]
            Carrier::Between => return Err(Error::Closed),
        };
        if queued {
            self.stats.sent += 1;
            self.account(id.0);
            self.mark_dirty(id.0);
        }
        Ok(queued)
    }

    /// `true` when `len` more bytes for `id` fit the memory budget, after
    /// ending the conversations that hold more than `id` would, if need
    /// be; `false` when `id` itself would hold the most.
    fn within_budget(&mut self, id: Id, len: usize) -> bool {
        self.held + len <= self.config.memory_budget
            || self.conv(id.0).is_none()
            || self.make_room(len, Some(id.0), None)
    }

    /// Bytes waiting in conversation `id`'s outbox.
    pub fn queued(&self, id: Id) -> Option<usize> {
        Some(self.conv(id.0)?.queued())
    }

    /// Bytes of conversation `id`'s outbox written to its socket so far
    /// (framing and protocol units included; for datagrams, their
    /// payloads): a count that grows as long as its peer reads. With
    /// [`queued`](Self::queued) it tells a peer that reads slowly from one
    /// that is stuck, as a server deciding whom to drop needs to.
    pub fn written(&self, id: Id) -> Option<u64> {
        Some(match &self.conv(id.0)?.carrier {
            Carrier::Stream { conn, .. } => conn.link.out.written(),
            Carrier::Datagram { dg, .. } | Carrier::UdpPeer { dg, .. } => dg.written(),
            Carrier::Between => 0,
            #[cfg(feature = "quic")]
            Carrier::Dialing { .. } => 0,
        })
    }

    /// Stops reading conversation `id` until [`resume`](Self::resume):
    /// backpressure. No [`Event::Message`] comes from it meanwhile; over a
    /// stream (TCP, TLS, Unix, WebSocket, NATS) what the peer sends waits
    /// in the socket, and once the kernel's buffers are full the peer's
    /// writes wait too, so a peer that sends faster than the program wants
    /// is slowed down rather than buffered. Its deadlines (a message under
    /// way, idle and handshake timeouts) wait as well and run again from
    /// `resume`; a message under way gets the paused time added to its
    /// deadline. Sending to it, and its writes, go on.
    ///
    /// A datagram cannot be held back: a UDP listener's peer that is
    /// paused stays a peer (what it sends keeps it from expiring), and its
    /// datagrams are dropped, counted in [`Stats::paused_drops`]; a
    /// connected UDP or Unix datagram socket is not read, and the kernel
    /// drops what its buffer cannot hold.
    ///
    /// Pausing an id that names nothing, or one already paused, does
    /// nothing; [`close`](Self::close) and [`abort`](Self::abort) resume
    /// first.
    ///
    /// ```no_run
    /// # fn main() -> converse::Result<()> {
    /// use converse::switchboard::{Event, Events, Switchboard};
    ///
    /// let mut board = Switchboard::new()?;
    /// board.listen("tcp://127.0.0.1:0")?;
    /// let mut events = Events::new();
    /// loop {
    ///     board.wait(&mut events, None)?;
    ///     for event in events.drain() {
    ///         if let Event::Message { id, message } = event {
    ///             board.send(id, &message)?;
    ///             // Echo no more until this reply has gone out.
    ///             if board.queued(id).unwrap_or(0) > 64 * 1024 {
    ///                 board.pause(id);
    ///             }
    ///         }
    ///     }
    ///     # break;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn pause(&mut self, id: Id) {
        if let Some(conv) = self.conv_mut(id.0) {
            if !std::mem::replace(&mut conv.paused, true) {
                self.paused_since.insert(id.0, Instant::now());
            }
        }
    }

    /// Reads conversation `id` again after [`pause`](Self::pause): what
    /// waited in its socket comes at the next [`wait`](Self::wait), and its
    /// deadlines run again. Resuming an id that is not paused does
    /// nothing.
    pub fn resume(&mut self, id: Id) {
        if !self.is_paused(id) {
            return;
        }
        let since = self.paused_since.remove(&id.0).unwrap_or_else(Instant::now);
        let Some(conv) = self.conv_mut(id.0) else {
            return;
        };
        conv.paused = false;
        if let Carrier::Stream { conn, .. } = &mut conv.carrier {
            // A message under way loses no time to the pause.
            conn.rx.postpone(since.elapsed());
        }
        // Readiness is edge-triggered: what came while paused was
        // signalled and not read, so it is read now.
        if matches!(
            conv.carrier,
            Carrier::Stream { .. } | Carrier::Datagram { .. }
        ) {
            self.push_backlog(id.0);
        }
        if let Some(conv) = self.conv_mut(id.0) {
            conv.timer = None;
        }
        self.schedule(id.0);
    }

    /// `true` while conversation `id` is paused ([`pause`](Self::pause)).
    pub fn is_paused(&self, id: Id) -> bool {
        self.conv(id.0).is_some_and(|c| c.paused)
    }

    /// Closes `id` gracefully: writes what is queued, ends our side (a
    /// close frame, `close_notify`, then the end of the bytes), and waits
    /// for the peer's end, within the linger time; then an
    /// [`Event::Ended`] with [`End::Closed`] says what is known of delivery
    /// (or [`End::Failed`] with [`Error::Unsent`] if the queue could not be
    /// written). Sending to it afterwards is [`Error::Closed`]. Closing an
    /// id that names nothing does nothing.
    pub fn close(&mut self, id: Id) {
        // The peer's end must be read to be known.
        self.resume(id);
        let now = Instant::now();
        let Some(conv) = self.conv_mut(id.0) else {
            return;
        };
        conv.redial = None;
        match &mut conv.carrier {
            Carrier::Stream { conn, .. } => conn.close(now),
            // Closed once connected (what was sent goes first), unless the
            // connect fails.
            #[cfg(feature = "quic")]
            Carrier::Dialing { conn, .. } => conn.close(now),
            Carrier::Datagram { dg, .. } | Carrier::UdpPeer { dg, .. } => dg.close(),
            Carrier::Between => {
                self.report_end(
                    id.0,
                    End::Closed(crate::connection::Delivery::Unknown),
                    None,
                );
                self.remove_conv(id.0);
                return;
            }
        }
        self.mark_dirty(id.0);
        self.settle(id.0, None);
    }

    /// Ends `id` at once, discarding what is queued (TCP: a reset); an
    /// [`Event::Ended`] with [`End::Aborted`] follows.
    pub fn abort(&mut self, id: Id) {
        self.resume(id);
        let Some(conv) = self.conv_mut(id.0) else {
            return;
        };
        conv.redial = None;
        match &mut conv.carrier {
            Carrier::Stream { conn, .. } => conn.abort(),
            Carrier::Datagram { dg, .. } | Carrier::UdpPeer { dg, .. } => dg.abort(),
            #[cfg(feature = "quic")]
            Carrier::Dialing { .. } => {
                self.report_end(id.0, End::Aborted, None);
                self.remove_conv(id.0);
                return;
            }
            Carrier::Between => {
                self.report_end(id.0, End::Aborted, None);
                self.remove_conv(id.0);
                return;
            }
        }
        self.settle(id.0, None);
    }

    /// Stops a listener; the conversations it accepted go on (a UDP
    /// listener's close as [`close`](Self::close) does — their replies are
    /// written first — and the listener goes once they have: they are its
    /// socket's).
    pub fn close_listener(&mut self, listener: ListenerId) {
        let Some(Entry::Listener(l)) = self.entries.get_mut(listener.0) else {
            return;
        };
        if let Listen::Udp {
            peers,
            closing,
            demux,
            ..
        } = &mut **l
        {
            *closing = true;
            demux.set_accepting(false);
            let keys: Vec<Key> = peers.values().copied().collect();
            for key in keys {
                self.close(Id(key));
            }
            self.remove_udp_listener_if_done(listener.0);
            return;
        }
        self.remove_listener(listener.0);
    }

    /// Closes every conversation gracefully (as [`close`](Self::close)) and
    /// every listener; keep calling [`wait`](Self::wait) until
    /// [`is_empty`](Self::is_empty): each conversation's end is reported,
    /// within its linger time.
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
        for key in self.entries.keys() {
            match self.entries.get(key) {
                Some(Entry::Listener(_)) => self.close_listener(ListenerId(key)),
                Some(Entry::Conv(_)) => self.close(Id(key)),
                None => {}
            }
        }
    }

    /// The peer of conversation `id`.
    pub fn peer_addr(&self, id: Id) -> Option<Addr> {
        Some(self.conv(id.0)?.peer.clone())
    }

    /// The local address of conversation `id`.
    pub fn local_addr(&self, id: Id) -> Option<Addr> {
        Some(self.conv(id.0)?.local.clone())
    }

    /// The largest message conversation `id` sends and accepts: the
    /// configured limit, a datagram's own bound, or, for NATS, the
    /// server's `max_payload` once connected.
    pub fn max_message_len(&self, id: Id) -> Option<usize> {
        Some(match &self.conv(id.0)?.carrier {
            Carrier::Stream { conn, .. } => conn.tx.max_message_len(),
            #[cfg(feature = "quic")]
            Carrier::Dialing { conn, .. } => conn.tx.max_message_len(),
            Carrier::Datagram { dg, .. } | Carrier::UdpPeer { dg, .. } => dg.max_message_len(),
            Carrier::Between => return None,
        })
    }

    /// The bound address of a listener (with the real port).
    pub fn listener_addr(&self, listener: ListenerId) -> Option<Addr> {
        match self.entries.get(listener.0)? {
            Entry::Listener(l) => Some(match &**l {
                Listen::Stream { local, .. } => local.clone(),
                Listen::Udp { local, .. } => Addr::Udp(*local),
                #[cfg(feature = "quic")]
                Listen::Quic { local, .. } => local.clone(),
            }),
            Entry::Conv(_) => None,
        }
    }

    // -----------------------------------------------------------------------
    // The loop.

    /// Writes what [`send`](Self::send) queued, now, as far as the sockets
    /// take it, without waiting (a `wait` does this first anyway). Ends
    /// that this causes are reported by the next `wait`.
    pub fn flush(&mut self) {
        let mut events = Events::with_capacity(usize::MAX);
        self.flush_dirty(&mut events);
        self.pending.extend(events.list);
    }

    /// Waits until something happens or `timeout` passes (`None`: as long
    /// as it takes), and puts what happened in `events`.
    ///
    /// Before waiting it applies what handles asked, ends the sides of
    /// conversations whose peer ended in the last turn (after the replies
    /// sent meanwhile), and writes what [`send`](Self::send) queued; while
    /// waiting it runs the conversations' deadlines, handshakes, idle
    /// timeouts, keepalives and lingering closes. Level-triggered at the
    /// message level: a message that arrived is in `events` (now or, past
    /// the buffer's capacity, on a later call); there is never a socket to
    /// drain.
    ///
    /// # Errors
    ///
    /// Only an error of the system's polling itself; conversations' errors
    /// are events.
    pub fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> Result<()> {
        self.apply_commands(events);
        self.finish_ended();
        self.flush_dirty(events);
        while let Some(event) = self.pending.pop_front() {
            events.push(event);
        }
        let now = Instant::now();
        let mut poll_timeout = if !events.is_empty() || !self.backlog.is_empty() {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        if let Some(at) = self.next_timer() {
            let left = at.saturating_duration_since(now);
            poll_timeout = Some(poll_timeout.map_or(left, |t| t.min(left)));
        }
        match self.poll.poll(&mut self.mio_events, poll_timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::from_io(e, &Addr::Unknown)),
        }
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(self.mio_events.iter().map(|e| {
            let closed = e.is_read_closed() || e.is_error();
            (
                e.token(),
                (e.is_readable() || closed, closed),
                e.is_writable() || e.is_write_closed() || e.is_error(),
            )
        }));
        for &(token, (readable, closed), writable) in &ready {
            if token == WAKE {
                self.apply_commands(events);
                continue;
            }
            let Some(key) = self.entries.key_at(token.0) else {
                continue;
            };
            if writable {
                self.on_writable(key, events);
            }
            if readable {
                if closed {
                    if let Some(conv) = self.conv_mut(key) {
                        conv.read_to_end = true;
                    }
                }
                self.push_backlog(key);
            }
        }
        self.ready = ready;
        self.read_backlog(events);
        self.run_timers(events);
        self.flush_dirty(events);
        while let Some(event) = self.pending.pop_front() {
            events.push(event);
        }
        Ok(())
    }

    /// Runs `wait` until `events` holds something (or `timeout` passes),
    /// then hands each event to `handle`. A convenience for simple loops.
    pub fn wait_each(
        &mut self,
        events: &mut Events,
        timeout: Option<Duration>,
        mut handle: impl FnMut(&mut Switchboard, Event),
    ) -> Result<()> {
        self.wait(events, timeout)?;
        while let Some(event) = events.list.pop_front() {
            handle(self, event);
        }
        Ok(())
    }

    fn read_backlog(&mut self, events: &mut Events) {
        let mut turns = self.backlog.len();
        while turns > 0 && !events.full() {
            turns -= 1;
            let Some(key) = self.backlog.pop_front() else {
                break;
            };
            if let Some(conv) = self.conv_mut(key) {
                conv.backlogged = false;
            }
            let more = match self.entries.get(key) {
                Some(Entry::Conv(_)) => self.read_conv(key, events),
                Some(Entry::Listener(_)) => self.read_listener(key, events),
                None => false,
            };
            if more {
                self.push_backlog(key);
            }
        }
    }

    /// A closing UDP listener goes once its peers are gone.
    pub(super) fn remove_udp_listener_if_done(&mut self, key: Key) {
        if let Some(Entry::Listener(l)) = self.entries.get(key) {
            if let Listen::Udp {
                peers,
                closing: true,
                ..
            } = &**l
            {
                if peers.is_empty() {
                    self.remove_listener(key);
                }
            }
        }
    }
}

impl Drop for Switchboard {
    fn drop(&mut self) {
        for key in self.entries.keys() {
            if let Some(Entry::Listener(_)) = self.entries.get(key) {
                self.remove_listener(key);
            }
        }
    }
}
