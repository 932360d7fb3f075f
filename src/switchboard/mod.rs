//! Many conversations on one thread: the [`Switchboard`].
//!
//! The tutorial's servers talk to one client at a time; its next step is
//! `select`, one thread watching many sockets. A switchboard is that step at
//! the level of messages: it hands out whole messages, accepted
//! conversations and ends (with their reason), never byte readiness. The
//! framing, the limits, the per-message deadline and the UDP idle timeout
//! are the same pure engines the blocking conversations use; the switchboard
//! only decides when to run them, from `mio` readiness and a timer heap.
//!
//! Sending never blocks the serving thread: each conversation has a bounded
//! outbox ([`Config::max_backlog`], 1 MiB by default) written out when its
//! socket is writable, many messages per system call. A peer that does not
//! read fills its own outbox, and is then ended as a slow consumer
//! ([`Error::SlowConsumer`]), counted, and reported; nobody else waits for
//! it. [`Switchboard::try_send`] lets the caller decide instead.
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

mod arena;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "ws")]
mod ws;

#[cfg(not(feature = "ws"))]
use self::no_ws::{Turn, WsState};
#[cfg(feature = "ws")]
pub use self::ws::Page;
#[cfg(feature = "ws")]
use self::ws::{Turn, WsState};

/// Without the `ws` feature no conversation speaks WebSocket.
#[cfg(not(feature = "ws"))]
mod no_ws {
    use crate::addr::Addr;
    use crate::engine::inbound::Inbound;
    use crate::engine::outbound::Outbound;
    use crate::error::Error;
    use bytes::Bytes;
    use std::time::Instant;

    pub(super) enum WsState {}
    #[allow(dead_code)]
    pub(super) enum Turn {
        Going,
        Upgraded(Option<super::ListenerId>),
        PeerClosed,
        Answered,
    }

    impl WsState {
        pub(super) fn is_upgraded(&self) -> bool {
            match *self {}
        }
        pub(super) fn pending_listener(&self) -> Option<super::ListenerId> {
            match *self {}
        }
        pub(super) fn in_message(&self) -> bool {
            match *self {}
        }
        pub(super) fn ended_in_handshake(&self, _: &Addr) -> Error {
            match *self {}
        }
        pub(super) fn deadline(&self) -> Option<Instant> {
            match *self {}
        }
        pub(super) fn check_deadline(&mut self, _: Instant) -> Result<(), Error> {
            match *self {}
        }
        pub(super) fn frame_len(&self, _: usize) -> usize {
            match *self {}
        }
        pub(super) fn max(&self) -> usize {
            match *self {}
        }
        pub(super) fn queue_message(&mut self, _: &mut Outbound, _: &[u8], _: bool) {
            match *self {}
        }
        pub(super) fn queue_close(&mut self, _: &mut Outbound, _: u16) {
            match *self {}
        }
        pub(super) fn close_was_sent(&self) -> bool {
            match *self {}
        }
        pub(super) fn take(
            &mut self,
            _: &mut Inbound,
            _: &mut Outbound,
            _: &Addr,
            _: Instant,
            _: impl FnMut(Bytes),
        ) -> Result<Turn, Error> {
            match *self {}
        }
    }
}

#[cfg(feature = "tls")]
use self::tls::{Plain, TlsState};
#[cfg(feature = "tls")]
type ServerTls = crate::tls::TlsServer;
#[cfg(not(feature = "tls"))]
use self::no_tls::{Plain, ServerTls, TlsState};

/// Without the `tls` feature no conversation has a TLS session: the types
/// are empty, and the code that would use them cannot be reached.
#[cfg(not(feature = "tls"))]
mod no_tls {
    use crate::addr::Addr;
    use crate::engine::outbound::Outbound;
    use crate::error::Error;
    use socket2::Socket;

    pub(super) enum TlsState {}
    #[derive(Clone)]
    pub(super) enum ServerTls {}
    #[allow(dead_code)]
    pub(super) enum Plain<'a> {
        Established,
        Data(&'a [u8]),
    }

    impl TlsState {
        pub(super) fn absorb(
            &mut self,
            _: &[u8],
            _: &Addr,
            _: impl FnMut(Plain<'_>) -> bool,
        ) -> Result<(), Error> {
            match *self {}
        }
        pub(super) fn encrypt(&mut self, _: &mut Outbound) -> std::io::Result<()> {
            match *self {}
        }
        pub(super) fn write(&mut self, _: &Socket) -> std::io::Result<bool> {
            match *self {}
        }
        pub(super) fn wants_write(&self) -> bool {
            match *self {}
        }
        pub(super) fn send_close_notify(&mut self) {
            match *self {}
        }
        pub(super) fn is_established(&self) -> bool {
            match *self {}
        }
        pub(super) fn peer_closed(&self) -> bool {
            match *self {}
        }
        pub(super) fn at_record_boundary(&self) -> bool {
            match *self {}
        }
        pub(super) fn close_was_sent(&self) -> bool {
            match *self {}
        }
        pub(super) fn pending_listener(&self) -> Option<super::ListenerId> {
            match *self {}
        }
        pub(super) fn clear_listener(&mut self) {
            match *self {}
        }
    }
}

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::{self, Read};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::unix::SourceFd;
use mio::{Interest, Poll, Token, Waker};
use socket2::{SockAddr, Socket};

use self::arena::{Arena, Key};
use crate::addr::{self, Addr, AddrError};
use crate::config::Config;
use crate::engine::demux::{Admit, Demux, Limits};
use crate::engine::inbound::{Inbound, InboundError, State as InState};
use crate::engine::outbound::Outbound;
use crate::error::{Error, Result};
use crate::transport::{sockopt, udp::payload_limit, Delivery};

/// A conversation on a switchboard. Ids are never reused: once a
/// conversation has ended, its id names nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(Key);

/// A listener on a switchboard.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(Key);

impl std::fmt::Debug for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Id({}.{})", self.0.index, self.0.generation)
    }
}

impl std::fmt::Debug for ListenerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ListenerId({}.{})", self.0.index, self.0.generation)
    }
}

impl Id {
    /// A number that names this conversation for as long as the
    /// switchboard lives (useful as a map key or in logs).
    pub fn as_u64(self) -> u64 {
        self.0.to_u64()
    }
}

/// How a conversation ended. Every conversation ends exactly once, with an
/// [`Event::Ended`]; its id names nothing afterwards.
#[derive(Debug)]
#[non_exhaustive]
pub enum End {
    /// The peer ended the conversation cleanly, between messages. What was
    /// queued for it is still written (within the linger time), then the
    /// connection is closed.
    Peer,
    /// UDP: the peer was silent for the idle timeout (counted from its last
    /// datagram).
    Idle,
    /// Closed here ([`Switchboard::close`], or a shutdown), and what is known
    /// of delivery.
    Closed(Delivery),
    /// Aborted here ([`Switchboard::abort`]): what was queued was discarded.
    Aborted,
    /// The conversation failed, and the error says why: a peer gone in the
    /// middle of a message, a message too large, a deadline missed, a reset,
    /// a slow consumer, a close that could not write what was queued …
    Failed(Error),
}

/// What happened: the switchboard's events, in the order they happened.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A listener accepted a conversation (for UDP: a new source's first
    /// datagram, which follows as a message).
    Accepted {
        /// The listener.
        listener: ListenerId,
        /// The new conversation.
        id: Id,
    },
    /// A conversation handed over through a [`Handle`] is on the switchboard.
    Adopted {
        /// The conversation.
        id: Id,
    },
    /// A whole message arrived.
    Message {
        /// From which conversation.
        id: Id,
        /// The message.
        message: Bytes,
    },
    /// A datagram conversation lost one datagram (it was over the limit:
    /// [`Error::Truncated`]) or learned that its peer's port is closed
    /// ([`Error::PeerUnreachable`]). The conversation goes on.
    Lost {
        /// The conversation.
        id: Id,
        /// What happened.
        error: Error,
    },
    /// A conversation's outbox is empty again, after
    /// [`try_send`](Switchboard::try_send) found it full.
    Drained {
        /// The conversation.
        id: Id,
    },
    /// A listener could not accept for a moment (out of file descriptors,
    /// `EMFILE`): it pauses, then tries again by itself.
    AcceptPaused {
        /// The listener.
        listener: ListenerId,
        /// What went wrong.
        error: Error,
        /// When it tries again.
        retry_in: Duration,
    },
    /// A connection accepted by a TLS listener failed its handshake (not
    /// TLS at all, a certificate refused, too slow …) and is gone. It was
    /// never reported as accepted; the listener goes on.
    HandshakeFailed {
        /// The listener.
        listener: ListenerId,
        /// Who connected.
        peer: Addr,
        /// Why it failed ([`Error::Tls`] with the reason, for most).
        error: Error,
    },
    /// A conversation ended; its id names nothing afterwards.
    Ended {
        /// The conversation.
        id: Id,
        /// How.
        end: End,
    },
}

/// A reusable buffer of events, filled by [`Switchboard::wait`].
///
/// Its capacity bounds how many events one `wait` gathers: past it, the
/// switchboard stops reading (what is left waits in the sockets, and the
/// next `wait` goes on), so a program that takes its time with each event
/// is never buried. Events not taken out remain for the next round.
#[derive(Debug)]
pub struct Events {
    list: VecDeque<Event>,
    limit: usize,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    /// A buffer gathering up to 1024 events per `wait`.
    pub fn new() -> Events {
        Events::with_capacity(1024)
    }

    /// A buffer gathering up to `limit` events per `wait` (at least 1).
    pub fn with_capacity(limit: usize) -> Events {
        Events {
            list: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    /// Takes the events out, in order. Events not taken (the iterator
    /// dropped early) stay for the next round.
    pub fn drain(&mut self) -> impl Iterator<Item = Event> + '_ {
        std::iter::from_fn(move || self.list.pop_front())
    }

    /// How many events are waiting.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// `true` when no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn full(&self) -> bool {
        self.list.len() >= self.limit
    }

    fn push(&mut self, event: Event) {
        self.list.push_back(event);
    }

    /// Passes the events from `start` on through `f`, which may change
    /// each in place, and keeps those it returns `true` for.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    fn retain_from(&mut self, start: usize, mut f: impl FnMut(&mut Event) -> bool) {
        let mut at = 0;
        self.list.retain_mut(|event| {
            at += 1;
            at <= start || f(event)
        });
    }
}

/// What a switchboard has done, for monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Conversations now.
    pub conversations: usize,
    /// Listeners now.
    pub listeners: usize,
    /// Conversations accepted, ever.
    pub accepted: u64,
    /// Messages received.
    pub received: u64,
    /// Messages queued to send.
    pub sent: u64,
    /// Conversations ended as slow consumers.
    pub slow_consumers: u64,
    /// Conversations ended, for any reason.
    pub ended: u64,
}

// ---------------------------------------------------------------------------
// The state of one entry.

/// A conversation's socket and engines.
enum Carrier {
    /// A framed stream (TCP, Unix), inside a TLS session for `tls://`.
    Stream {
        socket: Socket,
        inbound: Inbound,
        out: Outbound,
        tls: Option<Box<TlsState>>,
        /// WebSocket, above the stream (and above TLS for `wss://`).
        ws: Option<Box<WsState>>,
    },
    /// A connected datagram socket (UDP client, Unix datagram).
    Datagram {
        socket: Socket,
        max: usize,
        out: DatagramOut,
        idle: Option<Duration>,
        last_arrival: Instant,
    },
    /// A peer of a UDP listener: its datagrams, and replies from the
    /// listener's socket.
    UdpPeer {
        listener: Key,
        demux_id: u64,
        peer: SocketAddr,
        max: usize,
        out: DatagramOut,
    },
}

/// The outbox of a datagram conversation: whole datagrams, bounded in bytes.
#[derive(Default)]
struct DatagramOut {
    queue: VecDeque<Bytes>,
    bytes: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Open,
    /// `close`: write what is queued, shut down our side, drain until the
    /// peer's end or `until`.
    Closing {
        until: Instant,
        shut: bool,
    },
    /// The peer ended (and the event was given): write what is queued, by
    /// `until`, then go.
    Finishing {
        until: Instant,
    },
}

struct Conv {
    carrier: Carrier,
    peer: Addr,
    local: Addr,
    phase: Phase,
    linger: Duration,
    limit: usize,
    /// The socket took everything last time (or nothing was tried yet).
    writable: bool,
    /// In `dirty`: has output to write.
    dirty: bool,
    /// In `backlog`: may have more to read.
    backlogged: bool,
    /// `try_send` found it full: say when it drains.
    wants_drained: bool,
    /// NATS, above the stream.
    #[cfg(feature = "nats")]
    nats: Option<Box<nats::NatsConv>>,
}

enum Listening {
    Stream {
        socket: Socket,
        local: Addr,
        config: Box<Config>,
        unix_file: Option<std::path::PathBuf>,
        paused: bool,
        backoff: Duration,
        /// A TLS listener's certificate.
        tls: Option<ServerTls>,
        /// A WebSocket listener, and the page it answers a plain `GET` with.
        ws: Option<WsListen>,
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
    },
}

/// A WebSocket listener's settings.
#[derive(Clone, Default)]
struct WsListen {
    #[cfg(feature = "ws")]
    page: Option<Arc<Page>>,
}

enum Entry {
    Conv(Box<Conv>),
    Listener(Box<Listening>),
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum TimerKind {
    /// A message under way must be whole by now.
    Deadline,
    /// A closing (or finishing) conversation's bound.
    Linger,
    /// A UDP client's idle timeout.
    Idle,
    /// A UDP listener's peers may go idle.
    UdpIdle,
    /// A paused listener tries again.
    AcceptRetry,
    /// A TLS handshake must be over by now.
    Handshake,
    /// A NATS server may need a ping.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    Keepalive,
}

/// A conversation handed over from another thread, registered on the
/// switchboard's own.
type Adoption = Box<dyn FnOnce(&mut Switchboard) -> Result<Id> + Send>;

/// Commands from other threads.
enum Command {
    Send(Id, Bytes),
    Close(Id),
    Abort(Id),
    Adopt(Adoption),
    Shutdown,
}

struct Shared {
    commands: Mutex<VecDeque<Command>>,
    waker: Waker,
}

const WAKE: Token = Token(usize::MAX);
/// Bytes read from one conversation per readiness before others get a turn.
const READ_BUDGET: usize = 256 * 1024;
/// Connections accepted per readiness before others get a turn.
const ACCEPT_BUDGET: usize = 128;
/// The shared read buffer.
const SCRATCH: usize = 64 * 1024;

/// Many conversations and listeners, of every transport, served from one
/// thread. See the [module docs](self).
pub struct Switchboard {
    poll: Poll,
    mio_events: mio::Events,
    shared: Arc<Shared>,
    entries: Arena<Entry>,
    timers: BinaryHeap<Reverse<(Instant, Key, TimerKind)>>,
    /// Conversations (and UDP listeners) with output to write.
    dirty: Vec<Key>,
    /// Entries that may have more to read than one turn took.
    backlog: VecDeque<Key>,
    /// Events produced outside `wait` (a send that ended a slow consumer).
    pending: VecDeque<Event>,
    scratch: Vec<u8>,
    config: Config,
    stats: Stats,
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

/// The interest every socket is registered with (edge-triggered).
fn interest() -> Interest {
    Interest::READABLE | Interest::WRITABLE
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Switchboard {
    /// A switchboard whose conversations get the default [`Config`].
    pub fn new() -> Result<Switchboard> {
        Switchboard::with_config(&Config::default())
    }

    /// A switchboard whose conversations (connected or accepted through
    /// [`listen`](Self::listen)) get `config`: framing, limits, deadline,
    /// linger, idle timeout, and the backlog limit
    /// ([`Config::max_backlog`]).
    pub fn with_config(config: &Config) -> Result<Switchboard> {
        config.validate()?;
        let io = |e| Error::from_io(e, &Addr::Unknown);
        let poll = Poll::new().map_err(io)?;
        let waker = Waker::new(poll.registry(), WAKE).map_err(io)?;
        Ok(Switchboard {
            poll,
            mio_events: mio::Events::with_capacity(1024),
            shared: Arc::new(Shared {
                commands: Mutex::new(VecDeque::new()),
                waker,
            }),
            entries: Arena::new(),
            timers: BinaryHeap::new(),
            dirty: Vec::new(),
            backlog: VecDeque::new(),
            pending: VecDeque::new(),
            scratch: vec![0u8; SCRATCH],
            config: config.clone(),
            stats: Stats::default(),
            shutting_down: false,
        })
    }

    /// What the switchboard has done so far.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats;
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
    // Adding listeners and conversations.

    /// Listens on a URL (`tcp://HOST:PORT`, `udp://HOST:PORT`,
    /// `unix:///path`) with the switchboard's configuration.
    pub fn listen(&mut self, url: &str) -> Result<ListenerId> {
        let config = self.config.clone();
        self.listen_with(url, &config)
    }

    /// Listens on a URL, its conversations getting `config`.
    pub fn listen_with(&mut self, url: &str, config: &Config) -> Result<ListenerId> {
        config.validate()?;
        let (scheme, rest) = addr::split_url(url)?;
        match scheme.as_str() {
            "tcp" => {
                let addrs = addr::resolve(url, rest)?;
                let listener = crate::transport::tcp::bind_any(&addrs, config)?;
                self.adopt_tcp_listener(listener)
            }
            "udp" => {
                let addrs = addr::resolve(url, rest)?;
                let mut last = None;
                for addr in addrs {
                    match sockopt::udp_listener(addr, config) {
                        Ok(socket) => return self.add_udp_listener(socket, config),
                        Err(e) => last = Some(Error::from_io(e, &Addr::Udp(addr))),
                    }
                }
                Err(last.unwrap_or_else(|| addr::no_address(url).into()))
            }
            "unix" => {
                let listener = crate::transport::UnixListener::bind_with(rest, config)?;
                self.adopt_unix_listener(listener)
            }
            #[cfg(feature = "tls")]
            "tls" => {
                let addrs = addr::resolve(url, rest)?;
                let listener = crate::transport::tls::bind_any(&addrs, config)?;
                self.adopt_tls_listener(listener)
            }
            #[cfg(feature = "ws")]
            "ws" | "wss" => {
                let (hostport, _path) = crate::transport::ws::split_path(rest);
                let addrs = addr::resolve(url, hostport)?;
                let listener = crate::transport::ws::bind_any(&addrs, scheme == "wss", config)?;
                self.adopt_ws_listener(listener)
            }
            "nats" => Err(Error::Unsupported(
                "listening on nats:// (a NATS conversation connects to a NATS server: use connect)",
            )),
            _ => Err(addr::unknown_scheme(url, &["tcp", "udp", "unix", "tls", "ws", "wss"]).into()),
        }
    }

    /// Takes over a TCP listener (with the configuration it was made with).
    pub fn adopt_tcp_listener(&mut self, listener: crate::TcpListener) -> Result<ListenerId> {
        let (socket, local, config) = listener
            .into_parts()
            .ok_or(Error::Unsupported("a listener whose socket is shared"))?;
        self.add_stream_listener(socket, local, config, None, None, None)
    }

    /// Takes over a TLS listener: accepted connections complete their
    /// handshakes on the switchboard (driven by readiness, each bounded by
    /// [`Config::handshake_timeout`]) and are reported as
    /// [`Event::Accepted`] once verified, or as [`Event::HandshakeFailed`].
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn adopt_tls_listener(&mut self, listener: crate::TlsListener) -> Result<ListenerId> {
        let (socket, local, config, server) = listener
            .into_parts()
            .ok_or(Error::Unsupported("a listener whose socket is shared"))?;
        self.add_stream_listener(socket, local, config, None, Some(server), None)
    }

    /// Takes over a WebSocket listener (`ws://`, or `wss://` with the TLS
    /// certificate of its configuration): each connection completes its
    /// upgrade on the switchboard, driven by readiness, and is reported as
    /// [`Event::Accepted`] once upgraded. A plain HTTP request is answered
    /// with the listener's page ([`serve_page`](Self::serve_page)), or
    /// `426 Upgrade Required`, and closed.
    #[cfg(feature = "ws")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn adopt_ws_listener(&mut self, listener: crate::WsListener) -> Result<ListenerId> {
        let secure = listener
            .local_addr()
            .is_ok_and(|a| matches!(a, Addr::Wss(_)));
        let (socket, local, config) = listener
            .into_parts()
            .ok_or(Error::Unsupported("a listener whose socket is shared"))?;
        #[cfg(feature = "tls")]
        let tls = if secure {
            Some(config.tls_server.clone().ok_or(Error::InvalidConfig(
                crate::config::ConfigError {
                    setting: "tls_server",
                    reason: "a wss:// listener needs a certificate and key (Config::tls_server)",
                },
            ))?)
        } else {
            None
        };
        #[cfg(not(feature = "tls"))]
        let tls = {
            let _ = secure;
            None
        };
        self.add_stream_listener(socket, local, config, None, tls, Some(WsListen::default()))
    }

    /// Answers a plain HTTP `GET /` on WebSocket listener `listener` with
    /// `page` (a browser opening the address gets it; the page can then
    /// open a WebSocket to the same address). Other paths get `404`.
    #[cfg(feature = "ws")]
    #[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
    pub fn serve_page(&mut self, listener: ListenerId, page: Page) -> Result<()> {
        match self.entries.get_mut(listener.0) {
            Some(Entry::Listener(l)) => match &mut **l {
                Listening::Stream { ws: Some(ws), .. } => {
                    ws.page = Some(Arc::new(page));
                    Ok(())
                }
                _ => Err(Error::Unsupported(
                    "a page on a listener that is not WebSocket",
                )),
            },
            _ => Err(Error::Closed),
        }
    }

    /// Takes over a Unix stream listener; the switchboard removes its
    /// socket file when it is done with it.
    pub fn adopt_unix_listener(&mut self, listener: crate::UnixListener) -> Result<ListenerId> {
        let (socket, local, config, file) = listener
            .into_parts()
            .ok_or(Error::Unsupported("a listener whose socket is shared"))?;
        self.add_stream_listener(socket, local, config, file, None, None)
    }

    fn add_stream_listener(
        &mut self,
        socket: Socket,
        local: Addr,
        config: Config,
        unix_file: Option<std::path::PathBuf>,
        tls: Option<ServerTls>,
        ws: Option<WsListen>,
    ) -> Result<ListenerId> {
        let io = |e| Error::from_io(e, &local);
        socket.set_nonblocking(true).map_err(io)?;
        let key = self.entries.next_key();
        self.poll
            .registry()
            .register(
                &mut SourceFd(&socket.as_raw_fd()),
                token(key),
                Interest::READABLE,
            )
            .map_err(io)?;
        let key2 = self
            .entries
            .insert(Entry::Listener(Box::new(Listening::Stream {
                socket,
                local,
                config: Box::new(config),
                unix_file,
                paused: false,
                backoff: Duration::from_millis(50),
                tls,
                ws,
            })));
        debug_assert_eq!(key, key2);
        // Connections may already wait in the backlog.
        self.push_backlog(key);
        Ok(ListenerId(key))
    }

    fn add_udp_listener(
        &mut self,
        socket: std::net::UdpSocket,
        config: &Config,
    ) -> Result<ListenerId> {
        let local = socket
            .local_addr()
            .map_err(|e| Error::from_io(e, &Addr::Unknown))?;
        let io = |e| Error::from_io(e, &Addr::Udp(local));
        socket.set_nonblocking(true).map_err(io)?;
        let key = self.entries.next_key();
        self.poll
            .registry()
            .register(&mut SourceFd(&socket.as_raw_fd()), token(key), interest())
            .map_err(io)?;
        let max = config
            .max_message_len
            .min(payload_limit(&local, usize::MAX));
        self.entries
            .insert(Entry::Listener(Box::new(Listening::Udp {
                socket,
                local,
                config: Box::new(config.clone()),
                max,
                demux: Box::new(Demux::new(Limits {
                    max_peers: config.max_peers,
                    queue_depth: config.queue_depth,
                    max_queued_bytes: config.max_queued_bytes,
                    idle: config.idle_timeout,
                })),
                peers: HashMap::new(),
                writable: true,
                waiting: VecDeque::new(),
            })));
        Ok(ListenerId(key))
    }

    /// Connects to a URL (`tcp://`, `udp://`, `unix://`, `unixgram://`,
    /// `tls://`, `nats://`) with the switchboard's configuration. The
    /// connect itself waits (at most the connect timeout, and for TLS or
    /// NATS the handshake, at most the handshake timeout); everything
    /// after it does not.
    pub fn connect(&mut self, url: &str) -> Result<Id> {
        let config = self.config.clone();
        let (scheme, rest) = addr::split_url(url)?;
        match scheme.as_str() {
            "tcp" => {
                let addrs = addr::resolve(url, rest)?;
                let tcp = crate::transport::tcp::connect_any(&addrs, &config)?;
                self.adopt_tcp(tcp)
            }
            "udp" => {
                let addrs = addr::resolve(url, rest)?;
                let udp = crate::transport::udp::connect_any(&addrs, &config)?;
                self.adopt_udp(udp)
            }
            "unix" => self.adopt_unix(crate::Unix::connect_with(rest, &config)?),
            "unixgram" => {
                self.adopt_unix_datagram(crate::UnixDatagram::connect_with(rest, &config)?)
            }
            #[cfg(feature = "tls")]
            "tls" => {
                let addrs = addr::resolve(url, rest)?;
                let host = crate::transport::tls::host_of(rest)?;
                self.adopt_tls(crate::Tls::connect_to(host, &addrs[..], &config)?)
            }
            #[cfg(feature = "nats")]
            "nats" => self.adopt_nats(crate::Nats::connect(url, &config)?),
            _ => {
                let err: AddrError =
                    addr::unknown_scheme(url, &["tcp", "udp", "unix", "unixgram", "tls", "nats"]);
                Err(err.into())
            }
        }
    }

    /// Takes over a NATS conversation (connected and subscribed): what
    /// others publish to its subject arrives as [`Event::Message`], each
    /// [`send`](Self::send) publishes, the server is pinged when quiet.
    /// When the connection to the server is lost the conversation ends
    /// with [`Error::Nats`] ([`NatsError::Disconnected`](crate::NatsError::Disconnected));
    /// connect again to go on (what was published meanwhile is lost).
    ///
    /// # Errors
    ///
    /// [`Error::Unsupported`] for a conversation already split.
    #[cfg(feature = "nats")]
    #[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
    pub fn adopt_nats(&mut self, nats: crate::Nats) -> Result<Id> {
        let parts = nats
            .into_parts()
            .ok_or(Error::Unsupported("a NATS conversation already split"))?;
        let state = nats::NatsConv::new(&parts, self.config.max_message_len, Instant::now());
        let due = state.due();
        let id = match parts.stream {
            crate::transport::nats::Carried::Tcp(stream) => self.add_stream(*stream)?,
            #[cfg(feature = "tls")]
            crate::transport::nats::Carried::Tls(tls) => self.add_tls(*tls)?,
        };
        if let Some(conv) = self.conv_mut(id.0) {
            conv.nats = Some(Box::new(state));
        }
        self.timer(due, id.0, TimerKind::Keepalive);
        Ok(id)
    }

    /// Takes over a TCP conversation's transport, with everything it has
    /// buffered either way.
    pub fn adopt_tcp(&mut self, tcp: crate::Tcp) -> Result<Id> {
        let parts = tcp
            .into_parts()
            .ok_or(Error::Unsupported("a transport whose socket is shared"))?;
        self.add_stream(parts)
    }

    /// Takes over a Unix stream conversation's transport.
    pub fn adopt_unix(&mut self, unix: crate::Unix) -> Result<Id> {
        let parts = unix
            .into_parts()
            .ok_or(Error::Unsupported("a transport whose socket is shared"))?;
        self.add_stream(parts)
    }

    /// Takes over a TLS conversation's transport (its session, and
    /// everything buffered either way). One whose handshake is not over
    /// completes it on the switchboard.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn adopt_tls(&mut self, tls: crate::Tls) -> Result<Id> {
        let parts = tls
            .into_parts()
            .ok_or(Error::Unsupported("a transport whose socket is shared"))?;
        self.add_tls(parts)
    }

    #[cfg(feature = "tls")]
    fn add_tls(&mut self, parts: crate::transport::tls::TlsParts) -> Result<Id> {
        let crate::transport::tls::TlsParts {
            socket,
            local,
            peer,
            conn,
            established,
            peer_closed,
            identity,
            handshake_until,
            inbound,
            mut outbound,
            linger,
        } = parts;
        outbound.set_limit(self.config.max_backlog);
        let limit = self.config.max_backlog;
        let state = TlsState::adopted(conn, established, peer_closed, identity);
        let carrier = Carrier::Stream {
            socket,
            inbound,
            out: outbound,
            tls: Some(Box::new(state)),
            ws: None,
        };
        let id = self.add_conv(carrier, peer, local, linger, limit)?;
        if !established {
            self.timer(handshake_until, id.0, TimerKind::Handshake);
        }
        Ok(id)
    }

    /// The verified identity of conversation `id`'s peer (TLS, once the
    /// handshake is over; see [`Conversation::peer_identity`](crate::Conversation::peer_identity)).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn peer_identity(&self, id: Id) -> Option<crate::tls::PeerIdentity> {
        match self.entries.get(id.0)? {
            Entry::Conv(c) => match &c.carrier {
                Carrier::Stream { tls: Some(t), .. } => t.identity(),
                _ => None,
            },
            Entry::Listener(_) => None,
        }
    }

    /// Takes over a UDP client conversation's transport.
    pub fn adopt_udp(&mut self, udp: crate::Udp) -> Result<Id> {
        let parts = udp
            .into_parts()
            .ok_or(Error::Unsupported("a transport whose socket is shared"))?;
        self.add_datagram(parts)
    }

    /// Takes over a Unix datagram conversation's transport.
    pub fn adopt_unix_datagram(&mut self, unix: crate::UnixDatagram) -> Result<Id> {
        let parts = unix
            .into_parts()
            .ok_or(Error::Unsupported("a transport whose socket is shared"))?;
        self.add_datagram(parts)
    }

    fn add_stream(&mut self, parts: crate::transport::stream::StreamParts) -> Result<Id> {
        let crate::transport::stream::StreamParts {
            socket,
            local,
            peer,
            inbound,
            mut outbound,
            linger,
        } = parts;
        outbound.set_limit(self.config.max_backlog);
        let limit = self.config.max_backlog;
        let carrier = Carrier::Stream {
            socket,
            inbound,
            out: outbound,
            tls: None,
            ws: None,
        };
        self.add_conv(carrier, peer, local, linger, limit)
    }

    fn add_datagram(&mut self, parts: crate::transport::datagram::DatagramParts) -> Result<Id> {
        let crate::transport::datagram::DatagramParts {
            socket,
            local,
            peer,
            max,
            idle,
        } = parts;
        let carrier = Carrier::Datagram {
            socket,
            max,
            out: DatagramOut::default(),
            idle,
            last_arrival: Instant::now(),
        };
        let (linger, limit) = (self.config.linger, self.config.max_backlog);
        let id = self.add_conv(carrier, peer, local, linger, limit)?;
        if let Some(idle) = idle {
            self.timer(Instant::now() + idle, id.0, TimerKind::Idle);
        }
        Ok(id)
    }

    fn add_conv(
        &mut self,
        carrier: Carrier,
        peer: Addr,
        local: Addr,
        linger: Duration,
        limit: usize,
    ) -> Result<Id> {
        let socket = match &carrier {
            Carrier::Stream { socket, .. } | Carrier::Datagram { socket, .. } => socket,
            Carrier::UdpPeer { .. } => unreachable!("UDP peers have no socket of their own"),
        };
        let io = |e| Error::from_io(e, &peer);
        socket.set_nonblocking(true).map_err(io)?;
        let key = self.entries.next_key();
        self.poll
            .registry()
            .register(&mut SourceFd(&socket.as_raw_fd()), token(key), interest())
            .map_err(io)?;
        let key2 = self.entries.insert(Entry::Conv(Box::new(Conv {
            carrier,
            peer,
            local,
            phase: Phase::Open,
            linger,
            limit,
            writable: true,
            dirty: false,
            backlogged: false,
            wants_drained: false,
            #[cfg(feature = "nats")]
            nats: None,
        })));
        debug_assert_eq!(key, key2);
        // Bytes may already wait (in the socket, or in a handed-over engine).
        self.push_backlog(key);
        self.mark_dirty(key);
        Ok(Id(key))
    }

    // -----------------------------------------------------------------------
    // Sending and ending.

    /// Queues `msg` for conversation `id`; it is written when the socket
    /// takes it, batched with whatever else is queued.
    ///
    /// # Errors
    ///
    /// * [`Error::MessageTooLarge`], [`Error::InvalidFrame`]: nothing was
    ///   queued; the conversation goes on.
    /// * [`Error::SlowConsumer`]: the message would pass the conversation's
    ///   backlog limit; the conversation was ended (an [`Event::Ended`]
    ///   follows) and nobody else waits for it.
    /// * [`Error::Closed`]: no such conversation (it has ended, or is
    ///   closing).
    pub fn send(&mut self, id: Id, msg: impl AsRef<[u8]>) -> Result<()> {
        self.send_as(id, msg.as_ref(), false)
    }

    /// Queues one message of text, as [`send`](Self::send) does; over
    /// WebSocket it goes in a text frame, so that a browser receives a
    /// string.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_text(&mut self, id: Id, text: &str) -> Result<()> {
        self.send_as(id, text.as_bytes(), true)
    }

    fn send_as(&mut self, id: Id, msg: &[u8], text: bool) -> Result<()> {
        match self.queue(id, msg, text)? {
            true => Ok(()),
            false => {
                let err = self.slow_consumer(id, msg.len());
                Err(err)
            }
        }
    }

    /// Queues `msg` if it fits under the backlog limit: `Ok(true)`. If it
    /// does not, `Ok(false)`: nothing was queued, the conversation goes on,
    /// and an [`Event::Drained`] says when its outbox is empty again.
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send), but never `SlowConsumer`.
    pub fn try_send(&mut self, id: Id, msg: impl AsRef<[u8]>) -> Result<bool> {
        let queued = self.queue(id, msg.as_ref(), false)?;
        if !queued {
            if let Some(conv) = self.conv_mut(id.0) {
                conv.wants_drained = true;
            }
        }
        Ok(queued)
    }

    /// Bytes waiting in conversation `id`'s outbox.
    pub fn queued(&self, id: Id) -> Option<usize> {
        match self.entries.get(id.0)? {
            Entry::Conv(c) => Some(match &c.carrier {
                Carrier::Stream { out, .. } => out.len(),
                Carrier::Datagram { out, .. } | Carrier::UdpPeer { out, .. } => out.bytes,
            }),
            Entry::Listener(_) => None,
        }
    }

    /// `Ok(true)` queued, `Ok(false)` over the backlog limit (nothing queued).
    #[inline]
    fn queue(&mut self, id: Id, msg: &[u8], text: bool) -> Result<bool> {
        let Some(Entry::Conv(conv)) = self.entries.get_mut(id.0) else {
            return Err(Error::Closed);
        };
        if conv.phase != Phase::Open {
            return Err(Error::Closed);
        }
        let limit = conv.limit;
        #[cfg(feature = "nats")]
        let nats = conv.nats.as_deref();
        #[cfg(not(feature = "nats"))]
        let nats: Option<&std::convert::Infallible> = None;
        match (&mut conv.carrier, nats) {
            #[cfg(feature = "nats")]
            (Carrier::Stream { out, .. }, Some(n)) => {
                if msg.len() > n.max() {
                    return Err(Error::MessageTooLarge {
                        len: msg.len() as u64,
                        max: n.max() as u64,
                    });
                }
                if !out.is_empty() && out.len() + n.pub_len(msg.len()) > limit {
                    return Ok(false);
                }
                n.queue_message(out, msg);
            }
            (
                Carrier::Stream {
                    out, ws: Some(ws), ..
                },
                _,
            ) => {
                if msg.len() > ws.max() {
                    return Err(Error::MessageTooLarge {
                        len: msg.len() as u64,
                        max: ws.max() as u64,
                    });
                }
                if !out.is_empty() && out.len() + ws.frame_len(msg.len()) > limit {
                    return Ok(false);
                }
                ws.queue_message(out, msg, text);
            }
            (Carrier::Stream { out, .. }, _) => {
                // A frame adds at most 11 bytes: only near the limit is the
                // exact frame worked out first.
                if !out.is_empty() && out.len() + msg.len() + 11 > limit {
                    let frame = out
                        .frame(msg)
                        .map_err(|e| Error::from_frame(e, &conv.peer))?;
                    if out.len() + frame.len > limit {
                        return Ok(false);
                    }
                }
                out.push(msg)
                    .map_err(|e| Error::from_frame(e, &conv.peer))?;
            }
            (Carrier::Datagram { out, max, .. } | Carrier::UdpPeer { out, max, .. }, _) => {
                if msg.len() > *max {
                    return Err(Error::MessageTooLarge {
                        len: msg.len() as u64,
                        max: *max as u64,
                    });
                }
                if !out.queue.is_empty() && out.bytes + msg.len() > limit {
                    return Ok(false);
                }
                out.bytes += msg.len();
                out.queue.push_back(Bytes::copy_from_slice(msg));
            }
        }
        if !conv.dirty {
            conv.dirty = true;
            self.dirty.push(id.0);
        }
        self.stats.sent += 1;
        Ok(true)
    }

    /// Ends `id` as a slow consumer: what it holds is discarded, the
    /// connection reset, the end reported.
    fn slow_consumer(&mut self, id: Id, len: usize) -> Error {
        let (peer, queued, limit) = match self.conv_mut(id.0) {
            Some(conv) => {
                let queued = match &conv.carrier {
                    Carrier::Stream { out, .. } => out.len(),
                    Carrier::Datagram { out, .. } | Carrier::UdpPeer { out, .. } => out.bytes,
                };
                (conv.peer.clone(), (queued + len) as u64, conv.limit as u64)
            }
            None => return Error::Closed,
        };
        self.stats.slow_consumers += 1;
        let report = Error::SlowConsumer {
            addr: peer.clone(),
            queued,
            limit,
        };
        self.reset(id.0);
        self.finish(
            id.0,
            End::Failed(Error::SlowConsumer {
                addr: peer,
                queued,
                limit,
            }),
            None,
        );
        report
    }

    /// Closes `id` gracefully: writes what is queued, ends our side, and
    /// waits for the peer's end, within the linger time; then an
    /// [`Event::Ended`] with [`End::Closed`] says what is known of delivery
    /// (or [`End::Failed`] with [`Error::Unsent`] if the queue could not be
    /// written). Sending to it afterwards is [`Error::Closed`]. Closing an
    /// id that names nothing does nothing.
    pub fn close(&mut self, id: Id) {
        let now = Instant::now();
        let Some(conv) = self.conv_mut(id.0) else {
            return;
        };
        if conv.phase != Phase::Open {
            return;
        }
        let until = now + conv.linger;
        conv.phase = Phase::Closing { until, shut: false };
        self.timer(until, id.0, TimerKind::Linger);
        self.mark_dirty(id.0);
    }

    /// Ends `id` at once, discarding what is queued (TCP: a reset); an
    /// [`Event::Ended`] with [`End::Aborted`] follows.
    pub fn abort(&mut self, id: Id) {
        if self.conv_mut(id.0).is_some() {
            self.reset(id.0);
            self.finish(id.0, End::Aborted, None);
        }
    }

    /// Stops a listener; the conversations it accepted go on (a UDP
    /// listener's conversations end with it: they are its socket's).
    pub fn close_listener(&mut self, listener: ListenerId) {
        let Some(Entry::Listener(l)) = self.entries.get(listener.0) else {
            return;
        };
        if let Listening::Udp { peers, .. } = &**l {
            let keys: Vec<Key> = peers.values().copied().collect();
            for key in keys {
                self.finish(key, End::Closed(Delivery::Unknown), None);
            }
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
        match self.entries.get(id.0)? {
            Entry::Conv(c) => Some(c.peer.clone()),
            Entry::Listener(_) => None,
        }
    }

    /// The local address of conversation `id`.
    pub fn local_addr(&self, id: Id) -> Option<Addr> {
        match self.entries.get(id.0)? {
            Entry::Conv(c) => Some(c.local.clone()),
            Entry::Listener(_) => None,
        }
    }

    /// The bound address of a listener (with the real port).
    pub fn listener_addr(&self, listener: ListenerId) -> Option<Addr> {
        match self.entries.get(listener.0)? {
            Entry::Listener(l) => Some(match &**l {
                Listening::Stream { local, .. } => local.clone(),
                Listening::Udp { local, .. } => Addr::Udp(*local),
            }),
            Entry::Conv(_) => None,
        }
    }

    // -----------------------------------------------------------------------
    // The loop.

    /// Writes what [`send`](Self::send) queued, now, as far as the sockets
    /// take it, without waiting (a `wait` does this first anyway). Useful
    /// before a long computation, or to measure. Ends that this causes are
    /// reported by the next `wait`.
    pub fn flush(&mut self) {
        let mut events = Events::with_capacity(usize::MAX);
        self.flush_dirty(&mut events);
        self.pending.extend(events.list);
    }

    /// Waits until something happens or `timeout` passes (`None`: as long
    /// as it takes), and puts what happened in `events`.
    ///
    /// Before waiting it writes what [`send`](Self::send) queued; while
    /// waiting it runs the conversations' deadlines, idle timeouts and
    /// lingering closes. Level-triggered at the message level: a message
    /// that arrived is in `events` (now or, past the buffer's capacity, on a
    /// later call); there is never a socket to drain.
    ///
    /// # Errors
    ///
    /// Only an error of the system's polling itself; conversations' errors
    /// are events.
    pub fn wait(&mut self, events: &mut Events, timeout: Option<Duration>) -> Result<()> {
        self.apply_commands(events);
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
        if let Some(&Reverse((at, _, _))) = self.timers.peek() {
            let left = at.saturating_duration_since(now);
            poll_timeout = Some(poll_timeout.map_or(left, |t| t.min(left)));
        }
        match self.poll.poll(&mut self.mio_events, poll_timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::from_io(e, &Addr::Unknown)),
        }
        let ready: Vec<(Token, bool, bool)> = self
            .mio_events
            .iter()
            .map(|e| {
                (
                    e.token(),
                    e.is_readable() || e.is_read_closed() || e.is_error(),
                    e.is_writable() || e.is_write_closed() || e.is_error(),
                )
            })
            .collect();
        for (token, readable, writable) in ready {
            if token == WAKE {
                self.apply_commands(events);
                continue;
            }
            let Some(key) = self.entries.key_at(token.0) else {
                continue;
            };
            if writable {
                self.on_writable(key);
            }
            if readable {
                self.push_backlog(key);
            }
        }
        self.read_backlog(events);
        self.run_timers(events);
        self.flush_dirty(events);
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

    fn apply_commands(&mut self, events: &mut Events) {
        let commands: Vec<Command> = {
            let mut queue = self
                .shared
                .commands
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            queue.drain(..).collect()
        };
        for command in commands {
            match command {
                Command::Send(id, msg) => {
                    // Errors are events already (a slow consumer's end), or
                    // mean the conversation is gone.
                    let _ = self.send(id, &msg);
                }
                Command::Close(id) => self.close(id),
                Command::Abort(id) => self.abort(id),
                Command::Adopt(adopt) => {
                    // A transport that cannot be registered is dropped.
                    if let Ok(id) = adopt(self) {
                        events.push(Event::Adopted { id });
                    }
                }
                Command::Shutdown => self.shutdown(),
            }
        }
    }

    fn conv_mut(&mut self, key: Key) -> Option<&mut Conv> {
        match self.entries.get_mut(key)? {
            Entry::Conv(c) => Some(c),
            Entry::Listener(_) => None,
        }
    }

    fn timer(&mut self, at: Instant, key: Key, kind: TimerKind) {
        self.timers.push(Reverse((at, key, kind)));
    }

    fn mark_dirty(&mut self, key: Key) {
        if let Some(conv) = self.conv_mut(key) {
            if !conv.dirty {
                conv.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    fn push_backlog(&mut self, key: Key) {
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

    // -----------------------------------------------------------------------
    // Reading.

    /// Reads what conversation `key` has; `true` if there may be more.
    fn read_conv(&mut self, key: Key, events: &mut Events) -> bool {
        let now = Instant::now();
        let id = Id(key);
        #[cfg(feature = "nats")]
        let first = events.len();
        let Some(Entry::Conv(conv)) = self.entries.get_mut(key) else {
            return false;
        };
        let conv = &mut **conv;
        let closing = !matches!(conv.phase, Phase::Open);
        let mut outcome: Option<End> = None;
        let mut lost: Vec<Error> = Vec::new();
        let mut more = false;
        let mut received = 0u64;
        let mut accepted = 0u64;
        let mut wants_write = false;
        let mut answered = false;
        match &mut conv.carrier {
            Carrier::Stream {
                socket,
                inbound,
                out,
                tls: Some(tls),
                ws,
            } => {
                let peer = &conv.peer;
                let mut taken = 0;
                if ws.is_none() && !closing {
                    if let Err(e) = take_buffered(inbound, id, events, &mut received) {
                        outcome = Some(End::Failed(inbound_error(e, peer)));
                    }
                }
                while outcome.is_none() {
                    if taken >= READ_BUDGET || events.full() {
                        more = true;
                        break;
                    }
                    match (&*socket).read(&mut self.scratch) {
                        Ok(0) => {
                            outcome = Some(tls_eof(tls, inbound, closing, peer));
                            break;
                        }
                        Ok(n) => {
                            taken += n;
                            let pending = tls.pending_listener();
                            let mut decoded = Ok(());
                            let absorbed =
                                tls.absorb(&self.scratch[..n], peer, |plain| match plain {
                                    Plain::Established => {
                                        // A WebSocket is reported once upgraded.
                                        if let (Some(listener), None) = (pending, &ws) {
                                            accepted += 1;
                                            events.push(Event::Accepted { listener, id });
                                        }
                                        true
                                    }
                                    Plain::Data(_) if closing => true,
                                    Plain::Data(chunk) if ws.is_some() => {
                                        inbound.extend(chunk, now);
                                        true
                                    }
                                    Plain::Data(chunk) => {
                                        decoded = inbound.decode_from(chunk, now, |message| {
                                            received += 1;
                                            events.push(Event::Message { id, message });
                                        });
                                        decoded.is_ok()
                                    }
                                });
                            if tls.is_established() {
                                tls.clear_listener();
                            }
                            if let Err(e) = absorbed {
                                // The alert that says why, if the socket takes it.
                                let _ = tls.write(socket);
                                outcome = Some(End::Failed(e));
                                break;
                            }
                            if let Err(e) = decoded {
                                outcome = Some(End::Failed(inbound_error(e, peer)));
                                break;
                            }
                            if let (Some(ws), false) = (ws.as_deref_mut(), closing) {
                                let next = ws_turn(
                                    ws,
                                    inbound,
                                    out,
                                    peer,
                                    now,
                                    id,
                                    events,
                                    &mut received,
                                    &mut accepted,
                                );
                                match next {
                                    WsNext::Go => {}
                                    WsNext::End(end) => {
                                        outcome = Some(end);
                                        break;
                                    }
                                    WsNext::Answered => {
                                        answered = true;
                                        break;
                                    }
                                }
                            }
                            if tls.peer_closed() {
                                outcome = Some(if closing {
                                    End::Closed(Delivery::Confirmed)
                                } else {
                                    match inbound.end() {
                                        Ok(()) => End::Peer,
                                        Err(e) => End::Failed(inbound_error(e, peer)),
                                    }
                                });
                                break;
                            }
                        }
                        Err(e) if would_block(&e) => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            outcome = Some(End::Failed(Error::from_io(e, peer)));
                            break;
                        }
                    }
                }
                wants_write = tls.wants_write() || !out.is_empty();
                if let Some(at) = ws.as_ref().and_then(|w| w.deadline()) {
                    self.timers.push(Reverse((at, key, TimerKind::Deadline)));
                }
                inbound.release_if_empty();
                if outcome.is_none() && !closing {
                    if let Some(at) = inbound.deadline() {
                        self.timers.push(Reverse((at, key, TimerKind::Deadline)));
                    }
                }
            }
            Carrier::Stream {
                socket,
                inbound,
                out,
                tls: None,
                ws: Some(ws),
            } => {
                let peer = &conv.peer;
                let mut taken = 0;
                loop {
                    if taken >= READ_BUDGET || events.full() {
                        more = true;
                        break;
                    }
                    match (&*socket).read(&mut self.scratch) {
                        Ok(0) => {
                            outcome = Some(if closing {
                                End::Closed(if ws.close_was_sent() {
                                    Delivery::Confirmed
                                } else {
                                    Delivery::Unknown
                                })
                            } else if !ws.is_upgraded() {
                                End::Failed(ws.ended_in_handshake(peer))
                            } else if ws.in_message() {
                                End::Failed(Error::UnexpectedEof { addr: peer.clone() })
                            } else {
                                match inbound.end() {
                                    Ok(()) => End::Peer,
                                    Err(e) => End::Failed(inbound_error(e, peer)),
                                }
                            });
                            break;
                        }
                        Ok(n) => {
                            taken += n;
                            if closing {
                                continue;
                            }
                            inbound.extend(&self.scratch[..n], now);
                            let next = ws_turn(
                                ws,
                                inbound,
                                out,
                                peer,
                                now,
                                id,
                                events,
                                &mut received,
                                &mut accepted,
                            );
                            match next {
                                WsNext::Go => {}
                                WsNext::End(end) => {
                                    outcome = Some(end);
                                    break;
                                }
                                WsNext::Answered => {
                                    answered = true;
                                    break;
                                }
                            }
                        }
                        Err(e) if would_block(&e) => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            outcome = Some(End::Failed(Error::from_io(e, peer)));
                            break;
                        }
                    }
                }
                wants_write = !out.is_empty();
                if let Some(at) = ws.deadline().or_else(|| inbound.deadline()) {
                    if outcome.is_none() && !closing {
                        self.timers.push(Reverse((at, key, TimerKind::Deadline)));
                    }
                }
                inbound.release_if_empty();
            }
            Carrier::Stream {
                socket, inbound, ..
            } => {
                let mut taken = 0;
                if !closing {
                    if let Err(e) = take_buffered(inbound, id, events, &mut received) {
                        outcome = Some(End::Failed(inbound_error(e, &conv.peer)));
                    }
                }
                while outcome.is_none() {
                    if taken >= READ_BUDGET || events.full() {
                        more = true;
                        break;
                    }
                    // A message under way is read straight into its own
                    // buffer; otherwise into the shared scratch buffer.
                    let partial = inbound.buffered() > 0 && inbound.state() == InState::Open;
                    let read = if partial {
                        let space = inbound.space();
                        (&*socket).read(space)
                    } else {
                        (&*socket).read(&mut self.scratch)
                    };
                    match read {
                        Ok(0) => {
                            outcome = Some(if closing {
                                End::Closed(Delivery::Confirmed)
                            } else {
                                match inbound.end() {
                                    Ok(()) => End::Peer,
                                    Err(e) => End::Failed(inbound_error(e, &conv.peer)),
                                }
                            });
                            break;
                        }
                        Ok(n) => {
                            taken += n;
                            if closing {
                                continue; // draining: discarded
                            }
                            let result = if partial {
                                inbound.filled(n, now);
                                let mut r = Ok(());
                                loop {
                                    match inbound.next() {
                                        Ok(Some(message)) => {
                                            received += 1;
                                            events.push(Event::Message { id, message });
                                        }
                                        Ok(None) => break,
                                        Err(e) => {
                                            r = Err(e);
                                            break;
                                        }
                                    }
                                }
                                r
                            } else {
                                inbound.decode_from(&self.scratch[..n], now, |message| {
                                    received += 1;
                                    events.push(Event::Message { id, message });
                                })
                            };
                            if let Err(e) = result {
                                outcome = Some(End::Failed(inbound_error(e, &conv.peer)));
                                break;
                            }
                        }
                        Err(e) if would_block(&e) => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            outcome = Some(End::Failed(Error::from_io(e, &conv.peer)));
                            break;
                        }
                    }
                }
                inbound.release_if_empty();
                if outcome.is_none() && !closing {
                    if let Some(at) = inbound.deadline() {
                        self.timers.push(Reverse((at, key, TimerKind::Deadline)));
                    }
                }
            }
            Carrier::Datagram {
                socket,
                max,
                last_arrival,
                ..
            } => {
                let room = (*max + 1).min(self.scratch.len());
                for _ in 0..256 {
                    if events.full() {
                        more = true;
                        break;
                    }
                    match (&*socket).read(&mut self.scratch[..room]) {
                        Ok(n) => {
                            *last_arrival = now;
                            if closing {
                                continue;
                            }
                            if n > *max {
                                lost.push(Error::Truncated {
                                    addr: conv.peer.clone(),
                                    max: *max,
                                });
                            } else {
                                received += 1;
                                events.push(Event::Message {
                                    id,
                                    message: Bytes::copy_from_slice(&self.scratch[..n]),
                                });
                            }
                        }
                        Err(e) if would_block(&e) => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotConnected
                            ) =>
                        {
                            lost.push(Error::PeerUnreachable {
                                addr: conv.peer.clone(),
                            })
                        }
                        Err(e) => {
                            outcome = Some(End::Failed(Error::from_io(e, &conv.peer)));
                            break;
                        }
                    }
                }
            }
            Carrier::UdpPeer { .. } => {}
        }
        #[cfg(feature = "nats")]
        if let Some(Entry::Conv(conv)) = self.entries.get_mut(key) {
            let conv = &mut **conv;
            if let (Some(n), Carrier::Stream { out, .. }) =
                (conv.nats.as_deref_mut(), &mut conv.carrier)
            {
                let turn = nats::rewrite(events, first, id, n, out, &conv.peer, now);
                received = received.saturating_sub(turn.controls);
                wants_write |= turn.wrote;
                let gone = |peer: &Addr| Error::Nats {
                    addr: peer.clone(),
                    reason: crate::transport::NatsError::Disconnected,
                };
                outcome = match (outcome, turn.failure) {
                    // The server's own reason (`-ERR`), also when it closed
                    // the connection in the same turn.
                    (
                        None
                        | Some(End::Peer)
                        | Some(End::Failed(
                            Error::ConnectionReset { .. } | Error::UnexpectedEof { .. },
                        )),
                        Some(e),
                    ) => Some(End::Failed(e)),
                    // The server's end is not the subject's: the connection is lost.
                    (Some(End::Peer), _) => Some(End::Failed(gone(&conv.peer))),
                    (
                        Some(End::Failed(
                            Error::ConnectionReset { .. } | Error::UnexpectedEof { .. },
                        )),
                        _,
                    ) => Some(End::Failed(gone(&conv.peer))),
                    (o, _) => o,
                };
            }
        }
        self.stats.received += received;
        self.stats.accepted += accepted;
        if wants_write && outcome.is_none() {
            self.mark_dirty(key);
        }
        if answered && outcome.is_none() {
            // A page or a refusal: written, then the connection closed,
            // never reported.
            self.begin_finishing(key);
            return false;
        }
        for error in lost {
            events.push(Event::Lost { id, error });
        }
        if let Some(end) = outcome {
            let (peer_end, failed) = (matches!(end, End::Peer), matches!(end, End::Failed(_)));
            if failed {
                self.shut(key);
            }
            if peer_end {
                // Reported now; what is queued still goes out, then it goes.
                events.push(Event::Ended { id, end });
                self.stats.ended += 1;
                self.begin_finishing(key);
            } else {
                self.finish(key, end, Some(events));
            }
            return false;
        }
        more
    }

    /// After the peer's end: write what is queued (by the linger time),
    /// shut down, go. The end was reported already.
    fn begin_finishing(&mut self, key: Key) {
        let now = Instant::now();
        let Some(conv) = self.conv_mut(key) else {
            return;
        };
        let until = now + conv.linger;
        conv.phase = Phase::Finishing { until };
        self.timer(until, key, TimerKind::Linger);
        self.mark_dirty(key);
    }

    fn read_listener(&mut self, key: Key, events: &mut Events) -> bool {
        let Some(Entry::Listener(listening)) = self.entries.get_mut(key) else {
            return false;
        };
        match &mut **listening {
            Listening::Stream { paused: true, .. } => false,
            Listening::Stream { .. } => self.accept_streams(key, events),
            Listening::Udp { .. } => self.read_udp(key, events),
        }
    }

    fn accept_streams(&mut self, key: Key, events: &mut Events) -> bool {
        for _ in 0..ACCEPT_BUDGET {
            if events.full() {
                return true;
            }
            let Some(Entry::Listener(listening)) = self.entries.get_mut(key) else {
                return false;
            };
            let Listening::Stream {
                socket,
                local,
                config,
                paused,
                backoff,
                tls,
                ws,
                ..
            } = &mut **listening
            else {
                return false;
            };
            let config = (**config).clone();
            let server = tls.clone();
            let ws = ws.clone();
            match socket.accept() {
                Ok((conn, _)) => {
                    if sockopt::accepted_dead(&conn) {
                        continue;
                    }
                    *backoff = Duration::from_millis(50);
                    let unix = matches!(local, Addr::Unix(_));
                    let listener = ListenerId(key);
                    let pending = server.is_some() || ws.is_some();
                    match self.accepted_stream(conn, &config, unix, server.as_ref(), ws, listener) {
                        // TLS and WebSocket conversations are reported once
                        // their handshakes are over.
                        Ok(_) if pending => {}
                        Ok(id) => {
                            self.stats.accepted += 1;
                            events.push(Event::Accepted {
                                listener: ListenerId(key),
                                id,
                            });
                        }
                        Err(_) => continue, // gone before it could be set up
                    }
                }
                Err(e) if would_block(&e) => return false,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => {
                    let error = Error::from_io(e, local);
                    let retry_in = *backoff;
                    *backoff = (*backoff * 2).min(Duration::from_secs(1));
                    *paused = true;
                    self.timer(Instant::now() + retry_in, key, TimerKind::AcceptRetry);
                    events.push(Event::AcceptPaused {
                        listener: ListenerId(key),
                        error,
                        retry_in,
                    });
                    return false;
                }
            }
        }
        true
    }

    fn accepted_stream(
        &mut self,
        socket: Socket,
        config: &Config,
        unix: bool,
        server: Option<&ServerTls>,
        ws: Option<WsListen>,
        listener: ListenerId,
    ) -> Result<Id> {
        let tcp = match (server.is_some(), ws.is_some()) {
            (false, false) => Addr::Tcp,
            (true, false) => Addr::Tls,
            #[cfg(feature = "ws")]
            (false, true) => Addr::Ws,
            #[cfg(feature = "ws")]
            (true, true) => Addr::Wss,
            #[cfg(not(feature = "ws"))]
            (_, true) => Addr::Tcp,
        };
        let addr_of = |a: io::Result<SockAddr>| -> Addr {
            match a {
                Ok(a) if unix => Addr::Unix(a.as_pathname().map(|p| p.to_path_buf())),
                Ok(a) => a.as_socket().map(tcp).unwrap_or(Addr::Unknown),
                Err(_) => Addr::Unknown,
            }
        };
        let peer = addr_of(socket.peer_addr());
        let local = addr_of(socket.local_addr());
        if !unix {
            sockopt::tcp_stream(&socket, config).map_err(|e| Error::from_io(e, &peer))?;
        }
        let codec = config.framing.codec(config.max_message_len);
        #[cfg(feature = "ws")]
        let (send_codec, recv_codec, ws) = match ws {
            Some(ws) => {
                let (send, recv) = WsState::server_codecs(config.max_message_len);
                let state = WsState::accepted(
                    listener,
                    ws.page.clone(),
                    config.max_message_len,
                    config.message_deadline,
                );
                (send, recv, Some(Box::new(state)))
            }
            None => (codec.clone(), codec, None),
        };
        #[cfg(not(feature = "ws"))]
        let (send_codec, recv_codec, ws): (_, _, Option<Box<WsState>>) = {
            let _ = ws;
            (codec.clone(), codec, None)
        };
        let upgrading = ws.is_some();
        #[cfg(feature = "tls")]
        let (tls, handshake_until) = match server {
            Some(server) => {
                let until = Instant::now() + config.handshake_timeout;
                let state = TlsState::accepted(server, listener).map_err(|e| Error::Tls {
                    addr: peer.clone(),
                    reason: crate::tls::TlsError::from_rustls(&e),
                })?;
                (Some(Box::new(state)), Some(until))
            }
            None => (None, None),
        };
        #[cfg(not(feature = "tls"))]
        let (tls, handshake_until): (Option<Box<TlsState>>, Option<Instant>) = {
            let _ = (server, listener);
            (None, None)
        };
        let handshake_until = handshake_until
            .or_else(|| upgrading.then(|| Instant::now() + config.handshake_timeout));
        let carrier = Carrier::Stream {
            socket,
            inbound: Inbound::new(recv_codec, config.message_deadline),
            out: Outbound::new(send_codec, config.max_backlog),
            tls,
            ws,
        };
        let id = self.add_conv(carrier, peer, local, config.linger, config.max_backlog)?;
        if let Some(until) = handshake_until {
            self.timer(until, id.0, TimerKind::Handshake);
        }
        Ok(id)
    }

    fn read_udp(&mut self, key: Key, events: &mut Events) -> bool {
        let now = Instant::now();
        for _ in 0..256 {
            if events.full() {
                return true;
            }
            // The key a new peer's conversation will get.
            let conv_key = self.entries.next_key();
            let Some(Entry::Listener(listening)) = self.entries.get_mut(key) else {
                return false;
            };
            let Listening::Udp {
                socket,
                local,
                config,
                max,
                demux,
                peers,
                ..
            } = &mut **listening
            else {
                return false;
            };
            let room = (*max + 1).min(self.scratch.len());
            let (n, from) = match socket.recv_from(&mut self.scratch[..room]) {
                Ok(got) => got,
                Err(e) if would_block(&e) => return false,
                Err(_) => continue, // ICMP errors on the shared socket, signals
            };
            let peer_max = payload_limit(&from, config.max_message_len);
            let truncated = n > peer_max;
            let size = if truncated { 0 } else { n };
            let (did, new) = match demux.datagram(now, from, size, truncated) {
                Admit::Dropped => continue,
                Admit::Deliver(did) => (did, false),
                Admit::New(did) => (did, true),
            };
            // Delivered at once: the event list is this peer's queue.
            demux.taken(did, size);
            let conv_key = if new {
                let conv = Conv {
                    carrier: Carrier::UdpPeer {
                        listener: key,
                        demux_id: did,
                        peer: from,
                        max: peer_max,
                        out: DatagramOut::default(),
                    },
                    peer: Addr::Udp(from),
                    local: Addr::Udp(*local),
                    phase: Phase::Open,
                    linger: config.linger,
                    limit: config.max_backlog,
                    writable: true,
                    dirty: false,
                    backlogged: false,
                    wants_drained: false,
                    #[cfg(feature = "nats")]
                    nats: None,
                };
                let next_expiry = demux.next_expiry();
                peers.insert(did, conv_key);
                let inserted = self.entries.insert(Entry::Conv(Box::new(conv)));
                debug_assert_eq!(inserted, conv_key);
                if let Some(at) = next_expiry {
                    self.timer(at, key, TimerKind::UdpIdle);
                }
                self.stats.accepted += 1;
                events.push(Event::Accepted {
                    listener: ListenerId(key),
                    id: Id(conv_key),
                });
                conv_key
            } else {
                match peers.get(&did) {
                    Some(&k) => k,
                    None => continue,
                }
            };
            let id = Id(conv_key);
            if truncated {
                events.push(Event::Lost {
                    id,
                    error: Error::Truncated {
                        addr: Addr::Udp(from),
                        max: peer_max,
                    },
                });
            } else {
                self.stats.received += 1;
                events.push(Event::Message {
                    id,
                    message: Bytes::copy_from_slice(&self.scratch[..n]),
                });
            }
        }
        true
    }

    // -----------------------------------------------------------------------
    // Writing.

    fn on_writable(&mut self, key: Key) {
        match self.entries.get_mut(key) {
            Some(Entry::Conv(conv)) => {
                conv.writable = true;
                self.mark_dirty(key);
            }
            Some(Entry::Listener(l)) => {
                if let Listening::Udp {
                    writable, waiting, ..
                } = &mut **l
                {
                    *writable = true;
                    let keys: Vec<Key> = waiting.drain(..).collect();
                    for k in keys {
                        self.mark_dirty(k);
                    }
                }
            }
            None => {}
        }
    }

    fn flush_dirty(&mut self, events: &mut Events) {
        let dirty = std::mem::take(&mut self.dirty);
        for key in dirty {
            if let Some(conv) = self.conv_mut(key) {
                conv.dirty = false;
                self.flush_conv(key, events);
            }
        }
    }

    /// Writes what conversation `key` has queued, as far as its socket takes
    /// it; moves a closing conversation along.
    fn flush_conv(&mut self, key: Key, events: &mut Events) {
        let Some(Entry::Conv(conv)) = self.entries.get_mut(key) else {
            return;
        };
        let conv = &mut **conv;
        let mut failed: Option<Error> = None;
        let mut emptied = false;
        match &mut conv.carrier {
            Carrier::Stream {
                socket,
                out,
                tls: Some(tls),
                ..
            } => {
                loop {
                    if let Err(e) = tls.encrypt(out) {
                        failed = Some(Error::from_io(e, &conv.peer));
                        break;
                    }
                    if !conv.writable || !tls.wants_write() {
                        break;
                    }
                    match tls.write(socket) {
                        Ok(true) => {}
                        Ok(false) => conv.writable = false,
                        Err(e) => {
                            failed = Some(Error::from_io(e, &conv.peer));
                            break;
                        }
                    }
                }
                if out.is_empty() && !tls.wants_write() {
                    out.release_if_empty();
                    emptied = true;
                }
            }
            Carrier::Stream { socket, out, .. } => {
                while conv.writable && !out.is_empty() {
                    match sockopt::send(socket, out.pending()) {
                        Ok(n) => out.advance(n),
                        Err(e) if would_block(&e) => conv.writable = false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            failed = Some(Error::from_io(e, &conv.peer));
                            break;
                        }
                    }
                }
                if out.is_empty() {
                    out.release_if_empty();
                    emptied = true;
                }
            }
            Carrier::Datagram { socket, out, .. } => {
                while conv.writable {
                    let Some(msg) = out.queue.front() else {
                        break;
                    };
                    match socket.send(msg) {
                        Ok(_) => {
                            out.bytes -= msg.len();
                            out.queue.pop_front();
                        }
                        Err(e) if would_block(&e) => conv.writable = false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotConnected
                            ) =>
                        {
                            // That datagram bounced: reported, and dropped.
                            out.bytes -= msg.len();
                            out.queue.pop_front();
                            events.push(Event::Lost {
                                id: Id(key),
                                error: Error::PeerUnreachable {
                                    addr: conv.peer.clone(),
                                },
                            });
                        }
                        Err(e) => {
                            failed = Some(Error::from_io(e, &conv.peer));
                            break;
                        }
                    }
                }
                emptied = out.queue.is_empty();
            }
            Carrier::UdpPeer { .. } => {
                emptied = self.flush_udp_peer(key);
            }
        }
        if let Some(error) = failed {
            self.reset(key);
            self.finish(key, End::Failed(error), Some(events));
            return;
        }
        let Some(conv) = self.conv_mut(key) else {
            return;
        };
        if emptied && conv.wants_drained && conv.phase == Phase::Open {
            conv.wants_drained = false;
            events.push(Event::Drained { id: Id(key) });
        }
        match conv.phase {
            Phase::Closing { shut: false, until } if emptied => {
                let datagram = !matches!(conv.carrier, Carrier::Stream { .. });
                if datagram {
                    // Datagrams have no end to send or to wait for.
                    self.finish(key, End::Closed(Delivery::Unknown), Some(events));
                    return;
                }
                if let Carrier::Stream {
                    out, ws: Some(ws), ..
                } = &mut conv.carrier
                {
                    if ws.is_upgraded() && !ws.close_was_sent() {
                        // The close handshake first.
                        ws.queue_close(out, 1000);
                        self.mark_dirty(key);
                        return;
                    }
                }
                if let Carrier::Stream {
                    socket,
                    tls: Some(tls),
                    ..
                } = &mut conv.carrier
                {
                    if !tls.close_was_sent() {
                        // close_notify first, then the end of the bytes.
                        tls.send_close_notify();
                        self.mark_dirty(key);
                        return;
                    }
                    let _ = socket;
                }
                if let Carrier::Stream { socket, .. } = &conv.carrier {
                    let _ = socket.shutdown(std::net::Shutdown::Write);
                }
                conv.phase = Phase::Closing { until, shut: true };
                // The peer's end may already be waiting.
                self.push_backlog(key);
            }
            Phase::Finishing { .. } if emptied => {
                if let Carrier::Stream {
                    out, ws: Some(ws), ..
                } = &mut conv.carrier
                {
                    if ws.is_upgraded() && !ws.close_was_sent() {
                        ws.queue_close(out, 1000);
                        self.mark_dirty(key);
                        return;
                    }
                }
                if let Carrier::Stream { tls: Some(tls), .. } = &mut conv.carrier {
                    if !tls.close_was_sent() {
                        tls.send_close_notify();
                        self.mark_dirty(key);
                        return;
                    }
                }
                if let Carrier::Stream { socket, .. } = &conv.carrier {
                    let _ = socket.shutdown(std::net::Shutdown::Write);
                }
                self.remove_conv(key);
            }
            _ => {}
        }
    }

    /// Sends a UDP peer's queued datagrams from its listener's socket;
    /// `true` when none is left.
    fn flush_udp_peer(&mut self, key: Key) -> bool {
        let Some(Entry::Conv(conv)) = self.entries.get_mut(key) else {
            return true;
        };
        let Carrier::UdpPeer {
            listener,
            peer,
            out,
            ..
        } = &mut conv.carrier
        else {
            return true;
        };
        let (listener, peer) = (*listener, *peer);
        let mut queue = std::mem::take(out);
        let mut blocked = false;
        if let Some(Entry::Listener(l)) = self.entries.get_mut(listener) {
            if let Listening::Udp {
                socket,
                writable,
                waiting,
                ..
            } = &mut **l
            {
                while let Some(msg) = queue.queue.front() {
                    if !*writable {
                        blocked = true;
                        break;
                    }
                    match socket.send_to(msg, peer) {
                        Err(e) if would_block(&e) => {
                            *writable = false;
                            blocked = true;
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        // Sent, or refused by ICMP from someone: either way
                        // this datagram is done.
                        _ => {}
                    }
                    queue.bytes -= msg.len();
                    queue.queue.pop_front();
                }
                if blocked {
                    waiting.push_back(key);
                }
            }
        } else {
            // The listener is gone: nothing can be sent.
            queue = DatagramOut::default();
        }
        let emptied = queue.queue.is_empty();
        if let Some(Entry::Conv(conv)) = self.entries.get_mut(key) {
            if let Carrier::UdpPeer { out, .. } = &mut conv.carrier {
                *out = queue;
            }
        }
        emptied
    }

    // -----------------------------------------------------------------------
    // Time.

    fn run_timers(&mut self, events: &mut Events) {
        let now = Instant::now();
        while let Some(&Reverse((at, key, kind))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            match kind {
                TimerKind::Deadline => self.deadline_due(key, now, events),
                TimerKind::Linger => self.linger_due(key, now, events),
                TimerKind::Idle => self.idle_due(key, now, events),
                TimerKind::UdpIdle => self.udp_idle_due(key, now, events),
                TimerKind::Handshake => self.handshake_due(key, events),
                TimerKind::Keepalive => self.keepalive_due(key, now, events),
                TimerKind::AcceptRetry => {
                    if let Some(Entry::Listener(l)) = self.entries.get_mut(key) {
                        if let Listening::Stream { paused, .. } = &mut **l {
                            *paused = false;
                            self.push_backlog(key);
                        }
                    }
                }
            }
        }
    }

    /// A NATS conversation's keepalive: ping a quiet server, give up a dead
    /// one.
    #[cfg_attr(not(feature = "nats"), allow(unused_variables))]
    fn keepalive_due(&mut self, key: Key, now: Instant, events: &mut Events) {
        #[cfg(feature = "nats")]
        {
            let Some(conv) = self.conv_mut(key) else {
                return;
            };
            if conv.phase != Phase::Open {
                return;
            }
            let peer = conv.peer.clone();
            let (Some(n), Carrier::Stream { out, .. }) =
                (conv.nats.as_deref_mut(), &mut conv.carrier)
            else {
                return;
            };
            match n.beat(out, now, &peer) {
                Ok(wrote) => {
                    let due = n.due();
                    self.timer(due, key, TimerKind::Keepalive);
                    if wrote {
                        self.mark_dirty(key);
                    }
                }
                Err(e) => {
                    self.shut(key);
                    self.finish(key, End::Failed(e), Some(events));
                }
            }
        }
    }

    /// A TLS handshake that is not over by its time fails.
    fn handshake_due(&mut self, key: Key, events: &mut Events) {
        let Some(conv) = self.conv_mut(key) else {
            return;
        };
        let (tls_done, ws_done) = match &conv.carrier {
            Carrier::Stream { tls, ws, .. } => (
                tls.as_ref().is_none_or(|t| t.is_established()),
                ws.as_ref().is_none_or(|w| w.is_upgraded()),
            ),
            _ => return,
        };
        if tls_done && !ws_done {
            #[cfg(feature = "ws")]
            {
                let error = Error::WebSocket {
                    addr: conv.peer.clone(),
                    reason: crate::transport::WsError::HandshakeTimeout,
                };
                self.shut(key);
                self.finish(key, End::Failed(error), Some(events));
            }
            return;
        }
        if tls_done {
            return;
        }
        #[cfg(feature = "tls")]
        {
            let error = Error::Tls {
                addr: conv.peer.clone(),
                reason: crate::tls::TlsError::HandshakeTimeout,
            };
            self.shut(key);
            self.finish(key, End::Failed(error), Some(events));
        }
        #[cfg(not(feature = "tls"))]
        let _ = events;
    }

    fn deadline_due(&mut self, key: Key, now: Instant, events: &mut Events) {
        let Some(conv) = self.conv_mut(key) else {
            return;
        };
        if conv.phase != Phase::Open {
            return;
        }
        if conv.backlogged {
            // Unread bytes wait: read them first, then judge.
            self.timer(now + Duration::from_millis(1), key, TimerKind::Deadline);
            return;
        }
        let peer = conv.peer.clone();
        let Carrier::Stream { inbound, ws, .. } = &mut conv.carrier else {
            return;
        };
        if let Err(e) = inbound.check_deadline(now) {
            self.shut(key);
            self.finish(key, End::Failed(inbound_error(e, &peer)), Some(events));
            return;
        }
        if let Some(ws) = ws.as_deref_mut() {
            if let Err(e) = ws.check_deadline(now) {
                let e = match e {
                    Error::DeadlineExceeded { deadline, .. } => Error::DeadlineExceeded {
                        addr: peer,
                        deadline,
                    },
                    e => e,
                };
                self.shut(key);
                self.finish(key, End::Failed(e), Some(events));
            }
        }
    }

    fn linger_due(&mut self, key: Key, now: Instant, events: &mut Events) {
        let Some(conv) = self.conv_mut(key) else {
            return;
        };
        match conv.phase {
            Phase::Closing { until, shut } if until <= now => {
                let unsent = match &conv.carrier {
                    Carrier::Stream { out, .. } => out.len(),
                    Carrier::Datagram { out, .. } | Carrier::UdpPeer { out, .. } => out.bytes,
                };
                if !shut && unsent > 0 {
                    let peer = conv.peer.clone();
                    self.reset(key);
                    self.finish(
                        key,
                        End::Failed(Error::Unsent {
                            addr: peer,
                            bytes: unsent as u64,
                        }),
                        Some(events),
                    );
                } else {
                    self.finish(key, End::Closed(Delivery::Unknown), Some(events));
                }
            }
            Phase::Finishing { until } if until <= now => {
                // The end was reported: what could not be written is lost
                // with a reset, so the peer does not take it for complete.
                self.reset(key);
                self.remove_conv(key);
            }
            _ => {}
        }
    }

    fn idle_due(&mut self, key: Key, now: Instant, events: &mut Events) {
        let Some(conv) = self.conv_mut(key) else {
            return;
        };
        let Carrier::Datagram {
            idle: Some(idle),
            last_arrival,
            ..
        } = &conv.carrier
        else {
            return;
        };
        let due = *last_arrival + *idle;
        if conv.backlogged || due > now {
            let at = due.max(now + Duration::from_millis(1));
            self.timer(at, key, TimerKind::Idle);
            return;
        }
        if conv.phase == Phase::Open {
            self.finish(key, End::Idle, Some(events));
        }
    }

    fn udp_idle_due(&mut self, key: Key, now: Instant, events: &mut Events) {
        let mut ended = Vec::new();
        let mut next = None;
        if let Some(Entry::Listener(l)) = self.entries.get_mut(key) {
            if let Listening::Udp { demux, peers, .. } = &mut **l {
                while let Some(did) = demux.expire(now) {
                    if let Some(k) = peers.remove(&did) {
                        ended.push(k);
                    }
                }
                next = demux.next_expiry();
            }
        }
        if let Some(at) = next {
            self.timer(at, key, TimerKind::UdpIdle);
        }
        for k in ended {
            self.finish(k, End::Idle, Some(events));
        }
    }

    // -----------------------------------------------------------------------
    // Endings.

    /// A stream that cannot go on (its peer broke the framing, or missed
    /// the deadline): shut in both directions, as the blocking driver does,
    /// so both drivers end such a conversation alike.
    fn shut(&mut self, key: Key) {
        if let Some(conv) = self.conv_mut(key) {
            if let Carrier::Stream { socket, out, .. } = &mut conv.carrier {
                out.discard();
                let _ = socket.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Resets a stream's connection when its socket closes (`SO_LINGER` 0).
    fn reset(&mut self, key: Key) {
        if let Some(conv) = self.conv_mut(key) {
            if let Carrier::Stream { socket, out, .. } = &mut conv.carrier {
                out.discard();
                let _ = sockopt::linger_zero(socket);
            }
        }
    }

    /// Reports `end` for `key` (now into `events`, or at the next `wait`)
    /// and removes it.
    fn finish(&mut self, key: Key, end: End, events: Option<&mut Events>) {
        let Some(conv) = self.conv_mut(key) else {
            return;
        };
        let pending = match &conv.carrier {
            Carrier::Stream { tls, ws, .. } => ws
                .as_ref()
                .and_then(|w| w.pending_listener())
                .or_else(|| tls.as_ref().and_then(|t| t.pending_listener())),
            _ => None,
        };
        {
            if let Some(listener) = pending {
                // Never reported as accepted: its failure is the listener's
                // news, and nothing else is said of it.
                let peer = conv.peer.clone();
                self.remove_conv(key);
                if let End::Failed(error) = end {
                    let event = Event::HandshakeFailed {
                        listener,
                        peer,
                        error,
                    };
                    match events {
                        Some(events) => events.push(event),
                        None => self.pending.push_back(event),
                    }
                }
                return;
            }
        }
        self.stats.ended += 1;
        let event = Event::Ended { id: Id(key), end };
        match events {
            Some(events) => events.push(event),
            None => self.pending.push_back(event),
        }
        self.remove_conv(key);
    }

    fn remove_conv(&mut self, key: Key) {
        let Some(Entry::Conv(conv)) = self.entries.remove(key) else {
            return;
        };
        match conv.carrier {
            Carrier::Stream { socket, .. } | Carrier::Datagram { socket, .. } => {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&socket.as_raw_fd()));
            }
            Carrier::UdpPeer {
                listener, demux_id, ..
            } => {
                if let Some(Entry::Listener(l)) = self.entries.get_mut(listener) {
                    if let Listening::Udp { demux, peers, .. } = &mut **l {
                        if peers.remove(&demux_id).is_some() {
                            demux.closed(demux_id);
                        }
                    }
                }
            }
        }
    }

    fn remove_listener(&mut self, key: Key) {
        let Some(Entry::Listener(l)) = self.entries.remove(key) else {
            return;
        };
        match *l {
            Listening::Stream {
                socket, unix_file, ..
            } => {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&socket.as_raw_fd()));
                drop(socket);
                if let Some(path) = unix_file {
                    let _ = std::fs::remove_file(path);
                }
            }
            Listening::Udp { socket, .. } => {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut SourceFd(&socket.as_raw_fd()));
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

/// What a WebSocket conversation's turn came to.
enum WsNext {
    Go,
    End(End),
    /// A page or a refusal was queued (the conversation was never a
    /// WebSocket).
    Answered,
}

/// Runs a WebSocket conversation's engine over what its inbound holds:
/// the upgrade (reported as accepted), then messages, pongs and the close.
#[allow(clippy::too_many_arguments)]
fn ws_turn(
    ws: &mut WsState,
    inbound: &mut Inbound,
    out: &mut Outbound,
    peer: &Addr,
    now: Instant,
    id: Id,
    events: &mut Events,
    received: &mut u64,
    accepted: &mut u64,
) -> WsNext {
    loop {
        let turn = ws.take(inbound, out, peer, now, |message| {
            *received += 1;
            events.push(Event::Message { id, message });
        });
        match turn {
            Ok(Turn::Going) => return WsNext::Go,
            Ok(Turn::Upgraded(listener)) => {
                if let Some(listener) = listener {
                    *accepted += 1;
                    events.push(Event::Accepted { listener, id });
                }
            }
            Ok(Turn::PeerClosed) => return WsNext::End(End::Peer),
            Ok(Turn::Answered) => return WsNext::Answered,
            Err(e) => return WsNext::End(End::Failed(e)),
        }
    }
}

/// The end of a TLS connection's bytes: what it means depends on whether
/// the peer said `close_notify` first.
fn tls_eof(tls: &TlsState, inbound: &mut Inbound, closing: bool, peer: &Addr) -> End {
    if closing {
        return End::Closed(if tls.peer_closed() {
            Delivery::Confirmed
        } else {
            Delivery::Unknown
        });
    }
    if !tls.is_established() {
        #[cfg(feature = "tls")]
        return End::Failed(Error::Tls {
            addr: peer.clone(),
            reason: crate::tls::TlsError::ClosedDuringHandshake,
        });
    }
    if tls.peer_closed() {
        return match inbound.end() {
            Ok(()) => End::Peer,
            Err(e) => End::Failed(inbound_error(e, peer)),
        };
    }
    if inbound.buffered() > 0 || !tls.at_record_boundary() {
        return End::Failed(Error::UnexpectedEof { addr: peer.clone() });
    }
    End::Failed(Error::NoCloseNotify { addr: peer.clone() })
}

fn token(key: Key) -> Token {
    Token(key.index as usize)
}

/// Hands out the whole messages an engine already holds: those of a
/// conversation taken over from the blocking driver with messages read but
/// not yet received. (After a read every whole message is handed out, so
/// this finds some only at the first turn.)
fn take_buffered(
    inbound: &mut Inbound,
    id: Id,
    events: &mut Events,
    received: &mut u64,
) -> std::result::Result<(), InboundError> {
    if inbound.buffered() == 0 || inbound.state() != InState::Open {
        return Ok(());
    }
    while let Some(message) = inbound.next()? {
        *received += 1;
        events.push(Event::Message { id, message });
    }
    Ok(())
}

fn inbound_error(e: InboundError, peer: &Addr) -> Error {
    match e {
        InboundError::Frame(f) => Error::from_frame(f, peer),
        InboundError::UnexpectedEof => Error::UnexpectedEof { addr: peer.clone() },
        InboundError::Deadline(deadline) => Error::DeadlineExceeded {
            addr: peer.clone(),
            deadline,
        },
    }
}

// ---------------------------------------------------------------------------
// Other threads.

/// Sends into a [`Switchboard`] from other threads, and wakes it.
/// Cloneable; cheap.
///
/// What a handle asks is done by the switchboard's own thread at its next
/// `wait` (the handle wakes it). Errors are the switchboard's events: a
/// send that ends a slow consumer shows as that conversation's
/// [`Event::Ended`].
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Handle")
    }
}

impl Handle {
    fn command(&self, command: Command) {
        self.shared
            .commands
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(command);
        let _ = self.shared.waker.wake();
    }

    /// Sends `msg` to conversation `id` (see [`Switchboard::send`]).
    pub fn send(&self, id: Id, msg: impl Into<Bytes>) {
        self.command(Command::Send(id, msg.into()));
    }

    /// Closes conversation `id` gracefully (see [`Switchboard::close`]).
    pub fn close(&self, id: Id) {
        self.command(Command::Close(id));
    }

    /// Aborts conversation `id` (see [`Switchboard::abort`]).
    pub fn abort(&self, id: Id) {
        self.command(Command::Abort(id));
    }

    /// Hands a TCP conversation over to the switchboard's thread; an
    /// [`Event::Adopted`] names it there.
    pub fn adopt_tcp(&self, tcp: crate::Tcp) {
        self.command(Command::Adopt(Box::new(move |board| board.adopt_tcp(tcp))));
    }

    /// Hands a Unix stream conversation over (see [`adopt_tcp`](Self::adopt_tcp)).
    pub fn adopt_unix(&self, unix: crate::Unix) {
        self.command(Command::Adopt(Box::new(move |board| {
            board.adopt_unix(unix)
        })));
    }

    /// Shuts the switchboard down (see [`Switchboard::shutdown`]).
    pub fn shutdown(&self) {
        self.command(Command::Shutdown);
    }

    /// Wakes the switchboard: its `wait` returns (perhaps with no events).
    pub fn wake(&self) {
        let _ = self.shared.waker.wake();
    }
}

/// Serves `board` on this thread and hands its events to `workers` threads,
/// which answer through the [`Handle`] they are given: the
/// `socketserver`-style shape, for work too slow for the serving thread.
///
/// The events of one conversation always go to the same worker, in order.
/// Returns once the switchboard is shut down (by a handle's
/// [`shutdown`](Handle::shutdown)) and empty.
pub fn serve<F>(mut board: Switchboard, workers: usize, handler: F) -> Result<()>
where
    F: Fn(&Handle, Event) + Send + Sync + 'static,
{
    let workers = workers.max(1);
    let handler = Arc::new(handler);
    let handle = board.handle();
    let mut lanes = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (tx, rx) = std::sync::mpsc::channel::<Event>();
        let (handler, handle) = (Arc::clone(&handler), handle.clone());
        threads.push(std::thread::spawn(move || {
            for event in rx {
                handler(&handle, event);
            }
        }));
        lanes.push(tx);
    }
    let lane_of = |event: &Event| -> usize {
        let id = match event {
            Event::Accepted { id, .. }
            | Event::Adopted { id }
            | Event::Message { id, .. }
            | Event::Lost { id, .. }
            | Event::Drained { id }
            | Event::Ended { id, .. } => id.as_u64(),
            Event::AcceptPaused { listener, .. } | Event::HandshakeFailed { listener, .. } => {
                listener.0.to_u64()
            }
        };
        (id % workers as u64) as usize
    };
    let mut events = Events::new();
    loop {
        board.wait(&mut events, None)?;
        for event in events.drain() {
            let lane = lane_of(&event);
            let _ = lanes[lane].send(event);
        }
        if board.shutting_down && board.is_empty() {
            break;
        }
    }
    drop(lanes);
    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}
