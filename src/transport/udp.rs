//! UDP: one message is one datagram, payload only.
//!
//! Two sides: [`Udp`], a client conversation on a connected socket, and
//! [`UdpListener`], which demultiplexes the datagrams arriving at one bound
//! socket by source address into one conversation ([`UdpPeer`]) per peer.
//!
//! UDP has no connection and no close: a conversation over UDP ends when it
//! is closed *locally*, or after an idle timeout ([`Config::idle_timeout`]).
//! The peer is not told. Datagrams may be lost, duplicated or reordered by
//! the network (not on loopback at a sane rate); this module never merges,
//! splits or truncates them.

use std::collections::HashMap;
use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use socket2::Socket;

use super::sockopt;
use super::timer::{self, RecvTimer, Wait};
use super::{check_timeout, Transport, TransportRecv, TransportSend};
use crate::addr::{self, Addr};
use crate::config::Config;
use crate::conversation::Conversation;
use crate::error::{Error, Result};
use crate::queue::{PopError, PushError, Queue};

/// The largest UDP payload over IPv4: 65,535 − 8 (UDP header) − 20 (IPv4 header).
pub const MAX_UDP_PAYLOAD_V4: usize = 65_507;
/// The largest UDP payload over IPv6: 65,535 − 8 (UDP header).
pub const MAX_UDP_PAYLOAD_V6: usize = 65_527;

/// The largest payload for a socket of `addr`'s family, lowered to `configured`.
fn payload_limit(addr: &SocketAddr, configured: usize) -> usize {
    let family_max = match addr {
        SocketAddr::V4(_) => MAX_UDP_PAYLOAD_V4,
        SocketAddr::V6(_) => MAX_UDP_PAYLOAD_V6,
    };
    configured.min(family_max)
}

fn too_large(len: usize, max: usize) -> Error {
    Error::MessageTooLarge {
        len: len as u64,
        max: max as u64,
    }
}

/// The unspecified address of `addr`'s family, port 0.
fn any_of_family(addr: &SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    }
}

fn map_udp_err(err: io::Error, peer: &Addr) -> Error {
    match err.kind() {
        // A Unix datagram socket whose peer is gone refuses once, then is
        // no longer connected.
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotConnected => {
            Error::PeerUnreachable { addr: peer.clone() }
        }
        _ => Error::from_io(err, peer),
    }
}

// ---------------------------------------------------------------------------
// The client side.

#[derive(Debug)]
struct ClientShared {
    socket: Socket,
    local: Addr,
    peer: Addr,
}

/// A UDP client conversation's transport: a socket connected to one server
/// address.
///
/// * The socket is connected, so the kernel drops datagrams from any other
///   source: strangers cannot inject messages.
/// * One message is one datagram, payload only: any UDP peer (Python's
///   `sendto`, `nc -u`) interoperates. An empty datagram is an empty message.
/// * The largest message is 65,507 bytes over IPv4 and 65,527 over IPv6, or
///   the lower [`Config::max_message_len`]; a larger send fails with
///   [`Error::MessageTooLarge`] before any system call.
/// * A datagram larger than that is never cut short silently: the receive
///   returns [`Error::Truncated`] and the next datagram is received normally.
/// * When the server's port is closed, the ICMP "port unreachable" it sends
///   back becomes [`Error::PeerUnreachable`]; the conversation stays usable.
/// * Nothing received for [`Config::idle_timeout`] (default 120 s) is the end.
///
/// ```no_run
/// use converse::{Conversation, Udp};
///
/// let mut conversation = Conversation::new(Udp::connect("127.0.0.1:8090")?);
/// conversation.send_text("hello")?;
/// println!("{:?}", conversation.recv_text()?);
/// # Ok::<(), converse::Error>(())
/// ```
#[derive(Debug)]
pub struct Udp {
    inner: Datagrams,
}

impl Udp {
    /// Connects to `addr` with the default [`Config`].
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Udp> {
        Udp::connect_with(addr, &Config::default())
    }

    /// Connects to `addr` with `config`: binds an ephemeral port of the same
    /// family and connects the socket to the first resolved address.
    pub fn connect_with(addr: impl ToSocketAddrs, config: &Config) -> Result<Udp> {
        let addrs = addr::socket_addrs(addr, "UDP address")?;
        connect_any(&addrs, config)
    }

    /// Wraps a UDP socket that is already connected to its peer.
    pub fn from_socket(socket: UdpSocket, config: &Config) -> Result<Udp> {
        let peer = socket
            .peer_addr()
            .map_err(|e| Error::from_io(e, &Addr::Unknown))?;
        Ok(Udp::from_connected(socket, peer, config))
    }

    /// The underlying socket, for options this crate does not cover.
    pub fn socket(&self) -> &Socket {
        self.inner.socket()
    }
}

super::delegate_transport!(Udp);

pub(crate) fn connect_any(addrs: &[SocketAddr], config: &Config) -> Result<Udp> {
    let mut last = None;
    for &addr in addrs {
        let peer = Addr::Udp(addr);
        let attempt = sockopt::udp_socket(any_of_family(&addr), config).and_then(|socket| {
            socket.connect(addr)?;
            Ok(socket)
        });
        match attempt {
            Ok(socket) => return Ok(Udp::from_connected(socket, addr, config)),
            Err(e) => last = Some(map_udp_err(e, &peer)),
        }
    }
    Err(last.unwrap_or_else(|| addr::no_address("UDP address")))
}

impl Udp {
    fn from_connected(socket: UdpSocket, peer: SocketAddr, config: &Config) -> Udp {
        let max = payload_limit(&peer, config.max_message_len);
        let local = socket.local_addr().map(Addr::Udp).unwrap_or(Addr::Unknown);
        Udp {
            inner: Datagrams::new(Socket::from(socket), local, Addr::Udp(peer), max, config),
        }
    }
}

/// A datagram socket connected to one peer (UDP or a Unix datagram
/// socket): one message is one datagram.
#[derive(Debug)]
pub(crate) struct Datagrams {
    send: DatagramSend,
    recv: DatagramRecv,
}

impl Datagrams {
    pub(crate) fn new(
        socket: Socket,
        local: Addr,
        peer: Addr,
        max: usize,
        config: &Config,
    ) -> Self {
        let shared = Arc::new(ClientShared {
            socket,
            local,
            peer,
        });
        Datagrams {
            send: DatagramSend {
                shared: Arc::clone(&shared),
                max,
                timeout: config.write_timeout,
                closed: false,
            },
            recv: DatagramRecv {
                shared,
                max,
                buf: BytesMut::new(),
                timeout: config.read_timeout,
                idle: config.idle_timeout,
                last: Instant::now(),
                timer: RecvTimer::new(None),
                state: RecvState::Open,
            },
        }
    }

    pub(crate) fn socket(&self) -> &Socket {
        &self.send.shared.socket
    }
}

impl Transport for Datagrams {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send.send(msg)
    }

    fn recv(&mut self) -> Result<Option<Bytes>> {
        self.recv.recv()
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self.send.shared.local.clone())
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.send.shared.peer.clone())
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        TransportRecv::set_read_timeout(&mut self.recv, timeout)
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.recv.timeout
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.send.set_write_timeout(timeout)
    }

    fn write_timeout(&self) -> Option<Duration> {
        self.send.timeout
    }

    /// Local only: there is no close to send, and the peer is not told.
    fn close(&mut self) -> Result<()> {
        self.send.closed = true;
        self.recv.state = RecvState::Closed;
        Ok(())
    }

    fn max_message_len(&self) -> usize {
        self.send.max
    }

    fn split(self: Box<Self>) -> Result<(Box<dyn TransportSend>, Box<dyn TransportRecv>)> {
        let Datagrams { send, recv } = *self;
        Ok((Box::new(send), Box::new(recv)))
    }
}

#[derive(Debug)]
struct DatagramSend {
    shared: Arc<ClientShared>,
    max: usize,
    timeout: Option<Duration>,
    closed: bool,
}

impl DatagramSend {
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        let timeout = check_timeout(timeout, &self.shared.peer)?;
        sockopt::set_write_timeout(&self.shared.socket, timeout)
            .map_err(|e| Error::from_io(e, &self.shared.peer))?;
        self.timeout = timeout;
        Ok(())
    }
}

impl TransportSend for DatagramSend {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        if msg.len() > self.max {
            return Err(too_large(msg.len(), self.max));
        }
        loop {
            match self.shared.socket.send(msg) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(map_udp_err(e, &self.shared.peer)),
            }
        }
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.shared.peer.clone())
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        DatagramSend::set_write_timeout(self, timeout)
    }

    fn write_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn close(&mut self) -> Result<()> {
        self.closed = true;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecvState {
    Open,
    /// Idle for longer than the idle timeout.
    Ended,
    /// Closed locally.
    Closed,
}

/// The receiving half of a client conversation. `buf` is initialised
/// scratch space of at least `max + 1` bytes: a datagram that fills more
/// than `max` bytes of it was larger than the limit (never cut silently).
#[derive(Debug)]
struct DatagramRecv {
    shared: Arc<ClientShared>,
    max: usize,
    buf: BytesMut,
    timeout: Option<Duration>,
    idle: Option<Duration>,
    last: Instant,
    timer: RecvTimer,
    state: RecvState,
}

impl DatagramRecv {
    fn recv(&mut self) -> Result<Option<Bytes>> {
        match self.state {
            RecvState::Open => {}
            RecvState::Ended => return Ok(None),
            RecvState::Closed => return Err(Error::Closed),
        }
        let room = self.max + 1;
        if self.buf.len() < room {
            // Reclaimed in place when no earlier message still uses the buffer.
            self.buf.clear();
            self.buf.reserve(2 * room);
            self.buf.resize(self.buf.capacity(), 0);
        }
        let wait_start = self.timeout.map(|_| Instant::now());
        let mut woke = false;
        loop {
            let idle_left = self.idle.map(|idle| timer::left(idle, self.last));
            let socket = &self.shared.socket;
            let wait = self
                .timer
                .next_wait(self.timeout, wait_start, woke, idle_left, |t| {
                    sockopt::set_read_timeout(socket, t)
                })
                .map_err(|e| Error::from_io(e, &self.shared.peer))?;
            match wait {
                Wait::Go => {}
                Wait::UserTimeout => return Err(Error::Timeout),
                Wait::LimitReached => {
                    self.state = RecvState::Ended;
                    return Ok(None);
                }
            }
            match (&self.shared.socket).read(&mut self.buf[..room]) {
                Ok(n) => {
                    if self.idle.is_some() {
                        self.last = Instant::now();
                    }
                    if n > self.max {
                        return Err(Error::Truncated {
                            addr: self.shared.peer.clone(),
                            max: self.max,
                        });
                    }
                    return Ok(Some(self.buf.split_to(n).freeze()));
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => woke = true,
                    _ => return Err(map_udp_err(e, &self.shared.peer)),
                },
            }
        }
    }
}

impl TransportRecv for DatagramRecv {
    fn recv(&mut self) -> Result<Option<Bytes>> {
        DatagramRecv::recv(self)
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.shared.peer.clone())
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = check_timeout(timeout, &self.shared.peer)?;
        Ok(())
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

// ---------------------------------------------------------------------------
// The server side.

/// What the dispatcher hands a conversation.
#[derive(Debug)]
enum Item {
    Datagram(Bytes),
    /// A datagram over the limit arrived (and was dropped).
    Truncated,
}

impl Item {
    fn size(&self) -> usize {
        match self {
            Item::Datagram(b) => b.len(),
            Item::Truncated => 0,
        }
    }
}

#[derive(Debug)]
struct Slot {
    queue: Arc<Queue<Item>>,
    id: u64,
    last_seen: Instant,
}

#[derive(Debug, Default)]
struct Counters {
    datagrams: AtomicU64,
    delivered: AtomicU64,
    queue_full: AtomicU64,
    peer_cap: AtomicU64,
    bytes_cap: AtomicU64,
    truncated: AtomicU64,
    evicted: AtomicU64,
    errors: AtomicU64,
}

/// What a [`UdpListener`] has seen, for monitoring. Every datagram that did
/// not reach a conversation is counted in exactly one of the drop counters.
///
/// A snapshot is consistent: `datagrams` equals `delivered` plus the drop
/// counters, and every datagram a conversation has already received is
/// counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpStats {
    /// Datagrams received by the listener's socket.
    pub datagrams: u64,
    /// Datagrams queued for a conversation.
    pub delivered: u64,
    /// Dropped: that conversation's queue was full ([`Config::queue_depth`]).
    pub dropped_queue_full: u64,
    /// Dropped: a new source while [`Config::max_peers`] peers were active.
    pub dropped_peer_cap: u64,
    /// Dropped: [`Config::max_queued_bytes`] were already waiting.
    pub dropped_bytes_cap: u64,
    /// Datagrams over the limit (reported to their conversation as
    /// [`Error::Truncated`], never delivered cut short).
    pub truncated: u64,
    /// Conversations ended for being idle.
    pub evicted: u64,
    /// Peers with a conversation now.
    pub peers: usize,
    /// Socket errors the receive loop went on after.
    pub errors: u64,
}

#[derive(Debug)]
struct ListenerShared {
    socket: UdpSocket,
    local: SocketAddr,
    max: usize,
    peers: Mutex<HashMap<SocketAddr, Slot>>,
    accept: Queue<UdpPeer>,
    counters: Counters,
    queued_bytes: AtomicUsize,
    next_id: AtomicU64,
    stop: AtomicBool,
    config: Config,
}

impl ListenerShared {
    fn peers(&self) -> MutexGuard<'_, HashMap<SocketAddr, Slot>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets peer `addr` if its slot is still conversation `id`'s (counting
    /// an eviction if `evicted`), and gives back the bytes its queue held.
    fn forget(&self, addr: &SocketAddr, id: u64, queue: &Queue<Item>, evicted: bool) {
        {
            let mut peers = self.peers();
            if peers.get(addr).is_some_and(|slot| slot.id == id) {
                peers.remove(addr);
            }
            if evicted {
                self.counters.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
        let dropped: usize = queue.close_rx().iter().map(Item::size).sum();
        self.queued_bytes.fetch_sub(dropped, Ordering::Relaxed);
    }

    /// The receive loop of the dispatcher thread.
    fn run(self: Arc<Self>) {
        let mut buf = vec![0u8; self.max + 1];
        loop {
            let received = self.socket.recv_from(&mut buf);
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            match received {
                Ok((n, from)) => {
                    let item = if n > self.max {
                        Item::Truncated
                    } else {
                        Item::Datagram(Bytes::copy_from_slice(&buf[..n]))
                    };
                    self.dispatch(from, item);
                }
                Err(e) => match e.kind() {
                    // ICMP errors reported on the shared socket (Windows) and
                    // signals: never a reason to stop serving everyone else.
                    io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::Interrupted
                    | io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut => {}
                    _ => {
                        self.counters.errors.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(10));
                    }
                },
            }
        }
        // Every conversation's receive ends, accept ends. Conversations never
        // accepted are dropped here: they hold this very structure.
        let slots: Vec<Slot> = self.peers().drain().map(|(_, slot)| slot).collect();
        for slot in &slots {
            slot.queue.close_tx();
        }
        self.accept.close_tx();
        drop(self.accept.close_rx());
    }

    fn dispatch(self: &Arc<Self>, from: SocketAddr, item: Item) {
        let size = item.size();
        let counters = &self.counters;
        // Everything below, counting included, happens under the peer
        // table's lock, which `stats` takes too: a snapshot shows every
        // datagram with its fate, and every datagram a conversation has
        // already received.
        let mut peers = self.peers();
        counters.datagrams.fetch_add(1, Ordering::Relaxed);
        if matches!(item, Item::Truncated) {
            counters.truncated.fetch_add(1, Ordering::Relaxed);
        }
        if self.queued_bytes.load(Ordering::Relaxed) + size > self.config.max_queued_bytes {
            counters.bytes_cap.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let item = match peers.get_mut(&from) {
            Some(slot) => match slot.queue.try_push(item) {
                Ok(()) => {
                    slot.last_seen = Instant::now();
                    self.queued_bytes.fetch_add(size, Ordering::Relaxed);
                    counters.delivered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(PushError::Full(_)) => {
                    counters.queue_full.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                // That conversation was closed: this source starts a new one.
                Err(PushError::Closed(item)) => {
                    peers.remove(&from);
                    item
                }
            },
            None => item,
        };
        if peers.len() >= self.config.max_peers {
            self.evict_idle(&mut peers);
            if peers.len() >= self.config.max_peers {
                counters.peer_cap.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let queue = Arc::new(Queue::new(self.config.queue_depth));
        if queue.try_push(item).is_err() {
            return;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conversation = UdpPeer::new(self, from, Arc::clone(&queue), id);
        if let Err(PushError::Full(mut rejected) | PushError::Closed(mut rejected)) =
            self.accept.try_push(conversation)
        {
            // Never registered: its drop must not touch the peer table,
            // which this thread holds locked.
            rejected.recv.state = RecvState::Closed;
            counters.peer_cap.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        counters.delivered.fetch_add(1, Ordering::Relaxed);
        peers.insert(
            from,
            Slot {
                queue,
                id,
                last_seen: Instant::now(),
            },
        );
    }

    /// Ends the conversations of peers idle for longer than the idle timeout
    /// (called only when the peer table is full).
    fn evict_idle(&self, peers: &mut HashMap<SocketAddr, Slot>) {
        let Some(idle) = self.config.idle_timeout else {
            return;
        };
        peers.retain(|_, slot| {
            let keep = slot.last_seen.elapsed() < idle && !slot.queue.is_rx_closed();
            if !keep {
                slot.queue.close_tx();
                self.counters.evicted.fetch_add(1, Ordering::Relaxed);
            }
            keep
        });
    }
}

/// A UDP server socket that turns each new source address into a
/// [`Conversation`].
///
/// One thread receives every datagram and hands it to the conversation of
/// its source, through a bounded queue ([`Config::queue_depth`]); it blocks
/// in the kernel when there is nothing to do, so an idle listener uses no
/// CPU. Replies go out from the listener's own socket, so from the bound
/// address, as the tutorial's `sendto` does.
///
/// Limits, each counted in [`stats`](Self::stats) when it drops a datagram:
/// at most [`Config::max_peers`] peers (default 1024), at most
/// [`Config::queue_depth`] datagrams waiting per conversation (default 256),
/// at most [`Config::max_queued_bytes`] waiting in all (default 32 MiB). A
/// peer silent for [`Config::idle_timeout`] (default 120 s) is forgotten and
/// its conversation's receive reports the end; a later datagram from it
/// starts a new conversation.
///
/// Dropping the listener stops its thread at once; the receives of its
/// conversations then report the end (their sends still work).
///
/// ```no_run
/// use converse::UdpListener;
///
/// let listener = UdpListener::bind("127.0.0.1:8090")?;
/// loop {
///     let mut conversation = listener.accept()?;
///     std::thread::spawn(move || -> converse::Result<()> {
///         while let Some(message) = conversation.recv()? {
///             conversation.send(&message)?; // echo, from 127.0.0.1:8090
///         }
///         Ok(())
///     });
/// }
/// # Ok::<(), converse::Error>(())
/// ```
#[derive(Debug)]
pub struct UdpListener {
    shared: Arc<ListenerShared>,
    thread: Option<JoinHandle<()>>,
}

impl UdpListener {
    /// Binds `addr` with the default [`Config`]. Port 0 picks a free port.
    pub fn bind(addr: impl ToSocketAddrs) -> Result<UdpListener> {
        UdpListener::bind_with(addr, &Config::default())
    }

    /// Binds `addr` with `config`, trying each resolved address in turn.
    pub fn bind_with(addr: impl ToSocketAddrs, config: &Config) -> Result<UdpListener> {
        let addrs = addr::socket_addrs(addr, "UDP address")?;
        bind_any(&addrs, config)
    }

    /// Waits for a datagram from a new source, and returns its conversation
    /// (that first datagram is its first message).
    pub fn accept(&self) -> Result<Conversation<UdpPeer>> {
        self.accept_inner(None)
    }

    /// Like [`accept`](Self::accept), but waits at most `timeout`
    /// ([`Error::Timeout`] then).
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Conversation<UdpPeer>> {
        self.accept_inner(Some(timeout))
    }

    fn accept_inner(&self, timeout: Option<Duration>) -> Result<Conversation<UdpPeer>> {
        match self.shared.accept.pop(timeout) {
            Ok(peer) => Ok(Conversation::new(peer)),
            Err(PopError::Timeout) => Err(Error::Timeout),
            Err(PopError::Ended) => Err(Error::Closed),
        }
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> Result<Addr> {
        Ok(Addr::Udp(self.shared.local))
    }

    /// What the listener has received, delivered and dropped so far.
    pub fn stats(&self) -> UdpStats {
        let c = &self.shared.counters;
        // The dispatcher counts under this lock: the snapshot is consistent.
        let peers = self.shared.peers();
        UdpStats {
            datagrams: c.datagrams.load(Ordering::Relaxed),
            delivered: c.delivered.load(Ordering::Relaxed),
            dropped_queue_full: c.queue_full.load(Ordering::Relaxed),
            dropped_peer_cap: c.peer_cap.load(Ordering::Relaxed),
            dropped_bytes_cap: c.bytes_cap.load(Ordering::Relaxed),
            truncated: c.truncated.load(Ordering::Relaxed),
            evicted: c.evicted.load(Ordering::Relaxed),
            peers: peers.len(),
            errors: c.errors.load(Ordering::Relaxed),
        }
    }
}

pub(crate) fn bind_any(addrs: &[SocketAddr], config: &Config) -> Result<UdpListener> {
    let mut last = None;
    for &addr in addrs {
        match sockopt::udp_listener(addr, config) {
            Ok(socket) => return UdpListener::start(socket, addr, config),
            Err(e) => last = Some(Error::from_io(e, &Addr::Udp(addr))),
        }
    }
    Err(last.unwrap_or_else(|| addr::no_address("UDP address")))
}

impl UdpListener {
    fn start(socket: UdpSocket, addr: SocketAddr, config: &Config) -> Result<UdpListener> {
        let local = socket.local_addr().unwrap_or(addr);
        let shared = Arc::new(ListenerShared {
            max: payload_limit(&local, config.max_message_len),
            socket,
            local,
            peers: Mutex::new(HashMap::new()),
            accept: Queue::new(config.max_peers),
            counters: Counters::default(),
            queued_bytes: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            config: config.clone(),
        });
        let runner = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("converse:{}", local.port())) // fits the 15 bytes Linux keeps
            .spawn(move || runner.run())
            .map_err(|e| Error::from_io(e, &Addr::Udp(local)))?;
        Ok(UdpListener {
            shared,
            thread: Some(thread),
        })
    }
}

impl Drop for UdpListener {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Wake the receive loop with a datagram to ourselves. Should the
        // socket's buffer be full and drop it, the loop is not blocked: it
        // sees the stop flag after the next datagram it takes.
        let local = self.shared.local;
        let target = match local {
            SocketAddr::V4(a) if a.ip().is_unspecified() => (Ipv4Addr::LOCALHOST, a.port()).into(),
            SocketAddr::V6(a) if a.ip().is_unspecified() => (Ipv6Addr::LOCALHOST, a.port()).into(),
            other => other,
        };
        if let Ok(waker) = UdpSocket::bind(any_of_family(&target)) {
            let _ = waker.send_to(&[], target);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The transport of a conversation accepted by a [`UdpListener`]: the
/// datagrams of one source, in arrival order; replies sent from the
/// listener's socket.
///
/// Closing it is local (UDP has no close; the peer is not told): the
/// listener forgets the peer, and a later datagram from it starts a new
/// conversation. The write timeout is recorded but not applied: the socket
/// is shared by every conversation of the listener, and a UDP send does not
/// wait for the peer.
#[derive(Debug)]
pub struct UdpPeer {
    send: PeerSend,
    recv: PeerRecv,
}

impl UdpPeer {
    fn new(
        shared: &Arc<ListenerShared>,
        peer: SocketAddr,
        queue: Arc<Queue<Item>>,
        id: u64,
    ) -> UdpPeer {
        UdpPeer {
            send: PeerSend {
                shared: Arc::clone(shared),
                peer,
                timeout: shared.config.write_timeout,
                closed: false,
            },
            recv: PeerRecv {
                shared: Arc::clone(shared),
                peer,
                queue,
                id,
                timeout: shared.config.read_timeout,
                idle: shared.config.idle_timeout,
                last: Instant::now(),
                state: RecvState::Open,
            },
        }
    }
}

impl Transport for UdpPeer {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send.send(msg)
    }

    fn recv(&mut self) -> Result<Option<Bytes>> {
        self.recv.recv()
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(Addr::Udp(self.send.shared.local))
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(Addr::Udp(self.send.peer))
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        TransportRecv::set_read_timeout(&mut self.recv, timeout)
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.recv.timeout
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        TransportSend::set_write_timeout(&mut self.send, timeout)
    }

    fn write_timeout(&self) -> Option<Duration> {
        self.send.timeout
    }

    /// Local only: UDP has no close, and the peer is not told.
    fn close(&mut self) -> Result<()> {
        self.send.closed = true;
        self.recv.end(RecvState::Closed);
        Ok(())
    }

    fn max_message_len(&self) -> usize {
        self.send.shared.max
    }

    fn split(self: Box<Self>) -> Result<(Box<dyn TransportSend>, Box<dyn TransportRecv>)> {
        let UdpPeer { send, recv } = *self;
        Ok((Box::new(send), Box::new(recv)))
    }
}

#[derive(Debug)]
struct PeerSend {
    shared: Arc<ListenerShared>,
    peer: SocketAddr,
    timeout: Option<Duration>,
    closed: bool,
}

impl TransportSend for PeerSend {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        if msg.len() > self.shared.max {
            return Err(too_large(msg.len(), self.shared.max));
        }
        loop {
            match self.shared.socket.send_to(msg, self.peer) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(map_udp_err(e, &Addr::Udp(self.peer))),
            }
        }
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(Addr::Udp(self.peer))
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = check_timeout(timeout, &Addr::Udp(self.peer))?;
        Ok(())
    }

    fn write_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn close(&mut self) -> Result<()> {
        self.closed = true;
        Ok(())
    }
}

#[derive(Debug)]
struct PeerRecv {
    shared: Arc<ListenerShared>,
    peer: SocketAddr,
    queue: Arc<Queue<Item>>,
    id: u64,
    timeout: Option<Duration>,
    idle: Option<Duration>,
    last: Instant,
    state: RecvState,
}

impl PeerRecv {
    fn end(&mut self, state: RecvState) {
        if self.state == RecvState::Open {
            let evicted = state == RecvState::Ended;
            self.shared
                .forget(&self.peer, self.id, &self.queue, evicted);
        }
        self.state = state;
    }
}

impl TransportRecv for PeerRecv {
    fn recv(&mut self) -> Result<Option<Bytes>> {
        match self.state {
            RecvState::Open => {}
            RecvState::Ended => return Ok(None),
            RecvState::Closed => return Err(Error::Closed),
        }
        let wait_start = Instant::now();
        loop {
            let idle_left = self.idle.map(|idle| timer::left(idle, self.last));
            let user_left = self.timeout.map(|t| t.saturating_sub(wait_start.elapsed()));
            if user_left == Some(Duration::ZERO) {
                return Err(Error::Timeout);
            }
            if idle_left == Some(Duration::ZERO) {
                self.end(RecvState::Ended);
                return Ok(None);
            }
            let wait = match (user_left, idle_left) {
                (Some(u), Some(i)) => Some(u.min(i)),
                (u, i) => u.or(i),
            };
            match self.queue.pop(wait) {
                Ok(item) => {
                    if self.idle.is_some() {
                        self.last = Instant::now();
                    }
                    self.shared
                        .queued_bytes
                        .fetch_sub(item.size(), Ordering::Relaxed);
                    return match item {
                        Item::Datagram(msg) => Ok(Some(msg)),
                        Item::Truncated => Err(Error::Truncated {
                            addr: Addr::Udp(self.peer),
                            max: self.shared.max,
                        }),
                    };
                }
                Err(PopError::Timeout) => {}
                Err(PopError::Ended) => {
                    // Evicted by the listener, or the listener is gone.
                    self.state = RecvState::Ended;
                    return Ok(None);
                }
            }
        }
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(Addr::Udp(self.peer))
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = check_timeout(timeout, &Addr::Udp(self.peer))?;
        Ok(())
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.timeout
    }
}

impl Drop for PeerRecv {
    fn drop(&mut self) {
        if self.state == RecvState::Open {
            self.shared.forget(&self.peer, self.id, &self.queue, false);
        }
    }
}
