//! The UDP listener: one bound socket, one thread that receives every
//! datagram and hands it to the conversation of its source. The decisions
//! (which conversation, kept or dropped, when a silent peer is forgotten)
//! are the [`Demux`]'s (sans-IO); this is its blocking driver.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::udp::payload_limit;
use super::{sockopt, Delivery, Receiver, Sender, Stopper, Transport};
use crate::addr::{self, Addr};
use crate::config::{check_timeout, Config};
use crate::connection::demux::{Admit, Demux, Limits, Taken, UdpStats};
use crate::error::{Error, Result};

/// What the dispatcher queues for a conversation.
#[derive(Debug)]
pub(crate) enum Item {
    Datagram(Bytes),
    /// A datagram over the limit arrived (and was dropped whole).
    Truncated,
}

impl Item {
    pub(crate) fn size(&self) -> usize {
        match self {
            Item::Datagram(b) => b.len(),
            Item::Truncated => 0,
        }
    }
}

/// What one receive of a listener's socket gave.
pub(crate) enum Received {
    /// A datagram of a source (over its limit: `Truncated`).
    Datagram(SocketAddr, Item),
    /// Nothing more for now.
    Drained,
    /// A signal, or an ICMP error reported on the shared socket: never a
    /// reason to stop serving.
    Again,
    /// A socket error that will not go away by itself.
    Failed,
}

impl Received {
    /// `got` of a receive into `buf`; `max` is a source's limit.
    pub(crate) fn of(
        got: io::Result<(usize, SocketAddr)>,
        buf: &[u8],
        max: impl Fn(&SocketAddr) -> usize,
    ) -> Received {
        match got {
            Ok((n, from)) if n > max(&from) => Received::Datagram(from, Item::Truncated),
            Ok((n, from)) => {
                Received::Datagram(from, Item::Datagram(Bytes::copy_from_slice(&buf[..n])))
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock => Received::Drained,
                io::ErrorKind::Interrupted
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionRefused => Received::Again,
                _ => Received::Failed,
            },
        }
    }
}

#[derive(Debug)]
struct Slot {
    items: VecDeque<Item>,
    wake: Arc<Condvar>,
    /// Its receiver sleeps on `wake`: waking is a system call, made only
    /// then.
    sleeping: bool,
    /// Idle (or the listener is gone): after `items`, the end.
    ended: bool,
}

#[derive(Debug)]
struct State {
    demux: Demux,
    slots: HashMap<u64, Slot>,
    accepts: VecDeque<UdpPeer>,
    /// No more accepts (stopped); new sources are dropped.
    accept_closed: bool,
    /// The listener is gone: every conversation's receive ends.
    gone: bool,
}

#[derive(Debug)]
struct Shared {
    socket: UdpSocket,
    local: SocketAddr,
    /// The receive limit of the socket's family (a datagram over the
    /// peer's own limit is reported as truncated).
    max: usize,
    config: Config,
    state: Mutex<State>,
    accept_wake: Condvar,
    accept_timeout: Mutex<Option<Duration>>,
    stop: AtomicBool,
    /// Wakes the dispatcher (to stop it).
    waker: Waker,
}

/// Datagrams handed to the conversations under one lock, at most.
const BATCH: usize = 64;
const SOCKET: Token = Token(0);
const WAKE: Token = Token(1);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding it; a poisoned lock is still whole.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn peer_max(&self, peer: &SocketAddr) -> usize {
        payload_limit(peer, self.config.max_message_len)
    }

    /// Ends conversation `id` (its queue is empty): its receive reports the
    /// end.
    fn end(state: &mut State, id: u64) {
        if let Some(slot) = state.slots.get_mut(&id) {
            slot.ended = true;
            slot.wake.notify_all();
        }
    }

    /// The receive loop of the dispatcher thread.
    fn run(self: Arc<Self>, mut poll: Poll) {
        let mut buf = vec![0u8; self.max + 1];
        let mut events = Events::with_capacity(4);
        let mut batch: Vec<(SocketAddr, Item)> = Vec::with_capacity(BATCH);
        let mut next: Option<Instant> = None;
        let mut errors = 0;
        'serve: loop {
            // Drain the socket (readiness is edge-triggered), handing each
            // batch to the conversations under one lock.
            loop {
                if self.stop.load(Ordering::Acquire) {
                    break 'serve;
                }
                let got = self.socket.recv_from(&mut buf);
                let drained = match Received::of(got, &buf, |from| self.peer_max(from)) {
                    Received::Datagram(from, item) => {
                        batch.push((from, item));
                        false
                    }
                    Received::Drained => true,
                    Received::Again => false,
                    Received::Failed => {
                        errors += 1;
                        true
                    }
                };
                if drained || batch.len() == BATCH {
                    next = self.dispatch_all(&mut batch, &mut errors);
                }
                if drained {
                    break;
                }
            }
            if errors > 0 {
                // A socket error that will not go away: do not spin on it.
                std::thread::sleep(Duration::from_millis(10));
            }
            let wait = next.map(|at| at.saturating_duration_since(Instant::now()));
            if let Err(e) = poll.poll(&mut events, wait) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.lock().demux.error();
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        // Every conversation's receive ends, accept ends. Conversations never
        // accepted are dropped here: they hold this very structure.
        let unaccepted: Vec<UdpPeer> = {
            let mut state = self.lock();
            state.gone = true;
            state.accept_closed = true;
            for slot in state.slots.values_mut() {
                slot.ended = true;
                slot.wake.notify_all();
            }
            state.accepts.drain(..).collect()
        };
        self.accept_wake.notify_all();
        drop(unaccepted);
    }

    /// Hands `batch` to the conversations, ends those idle by now, and says
    /// when the next one may go idle: all under one lock.
    fn dispatch_all(
        self: &Arc<Self>,
        batch: &mut Vec<(SocketAddr, Item)>,
        errors: &mut u64,
    ) -> Option<Instant> {
        let now = Instant::now();
        let mut state = self.lock();
        for _ in 0..std::mem::take(errors) {
            state.demux.error();
        }
        while let Some(id) = state.demux.expire(now) {
            Shared::end(&mut state, id);
        }
        for (from, item) in batch.drain(..) {
            self.dispatch(&mut state, now, from, item);
        }
        state.demux.next_expiry()
    }

    fn dispatch(self: &Arc<Self>, state: &mut State, now: Instant, from: SocketAddr, item: Item) {
        let truncated = matches!(item, Item::Truncated);
        match state.demux.datagram(now, from, item.size(), truncated) {
            Admit::Deliver(id) => {
                if let Some(slot) = state.slots.get_mut(&id) {
                    slot.items.push_back(item);
                    if slot.sleeping {
                        slot.wake.notify_one();
                    }
                }
            }
            Admit::New(id) => {
                let wake = Arc::new(Condvar::new());
                state.slots.insert(
                    id,
                    Slot {
                        items: VecDeque::from([item]),
                        wake: Arc::clone(&wake),
                        sleeping: false,
                        ended: false,
                    },
                );
                state.accepts.push_back(UdpPeer::new(self, from, id, wake));
                self.accept_wake.notify_one();
            }
            Admit::Dropped => {}
        }
    }
}

/// A UDP server socket that turns each new source address into a
/// conversation ([`UdpPeer`]).
///
/// One thread receives every datagram and hands it to the conversation of
/// its source, through a bounded queue ([`Config::queue_depth`]); it blocks
/// in the kernel when there is nothing to do, and wakes for nothing but
/// datagrams and the idle timeouts of its peers. Replies go out from the
/// listener's own socket, so from the bound address, as the tutorial's
/// `sendto` does.
///
/// Limits, each counted in [`stats`](Self::stats) when it drops a datagram:
/// at most [`Config::max_peers`] peers (default 1024), at most
/// [`Config::queue_depth`] datagrams waiting per conversation (default 256),
/// at most [`Config::max_queued_bytes`] waiting in all (default 32 MiB).
///
/// A peer silent for [`Config::idle_timeout`] (default 120 s, counted from
/// its last datagram) is forgotten: its conversation receives what was
/// already queued, then the end; a later datagram from it starts a new
/// conversation. A peer not yet accepted keeps its datagrams however late
/// `accept` comes.
///
/// Dropping the listener stops its thread at once; the receives of its
/// conversations then report the end (their sends still work).
///
/// ```no_run
/// use converse::{Conversation, UdpListener};
///
/// let listener = UdpListener::bind("127.0.0.1:8090")?;
/// loop {
///     let mut conversation = Conversation::new(listener.accept()?);
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
    shared: Arc<Shared>,
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
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the accept timeout passes
    /// ([`Config::accept_timeout`], [`set_accept_timeout`](Self::set_accept_timeout));
    /// [`Error::Closed`] once stopped.
    pub fn accept(&self) -> Result<UdpPeer> {
        let timeout = *self
            .shared
            .accept_timeout
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let until = timeout.map(|t| Instant::now() + t);
        let mut state = self.shared.lock();
        loop {
            if let Some(peer) = state.accepts.pop_front() {
                return Ok(peer);
            }
            if state.accept_closed {
                return Err(Error::Closed);
            }
            state = match until {
                None => self
                    .shared
                    .accept_wake
                    .wait(state)
                    .unwrap_or_else(|e| e.into_inner()),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Timeout);
                    }
                    self.shared
                        .accept_wake
                        .wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Bounds every later `accept` (`None`: wait as long as it takes).
    pub fn set_accept_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        let timeout = check_timeout("accept_timeout", timeout)?;
        *self
            .shared
            .accept_timeout
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = timeout;
        Ok(())
    }

    /// The accept timeout.
    pub fn accept_timeout(&self) -> Option<Duration> {
        *self
            .shared
            .accept_timeout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A handle that stops accepting from another thread: a blocked
    /// `accept` and every later one return [`Error::Closed`], datagrams from
    /// new sources are dropped (counted in `dropped_peer_cap`), and the
    /// conversations already accepted go on.
    pub fn stopper(&self) -> Stopper {
        let shared = Arc::clone(&self.shared);
        Stopper::from_fn(move || {
            let mut state = shared.lock();
            state.accept_closed = true;
            state.demux.set_accepting(false);
            drop(state);
            shared.accept_wake.notify_all();
        })
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> Result<Addr> {
        Ok(Addr::Udp(self.shared.local))
    }

    /// What the listener has received, delivered and dropped so far: a
    /// consistent snapshot (see [`UdpStats`]).
    pub fn stats(&self) -> UdpStats {
        self.shared.lock().demux.stats()
    }
}

pub(crate) fn bind_any(addrs: &[SocketAddr], config: &Config) -> Result<UdpListener> {
    let (socket, addr) = bind_socket(addrs, config)?;
    UdpListener::start(socket, addr, config)
}

/// A listener's socket, bound to the first of `addrs` that takes it, with
/// the address it was bound to.
pub(crate) fn bind_socket(
    addrs: &[SocketAddr],
    config: &Config,
) -> Result<(UdpSocket, SocketAddr)> {
    config.validate()?;
    let mut last = None;
    for &addr in addrs {
        match sockopt::udp_listener(addr, config) {
            Ok(socket) => return Ok((socket, addr)),
            Err(e) => last = Some(Error::from_io(e, &Addr::Udp(addr))),
        }
    }
    Err(last.unwrap_or_else(|| addr::no_address("UDP address").into()))
}

impl UdpListener {
    fn start(socket: UdpSocket, addr: SocketAddr, config: &Config) -> Result<UdpListener> {
        let local = socket.local_addr().unwrap_or(addr);
        let family_max = payload_limit(&local, usize::MAX);
        let io = |e| Error::from_io(e, &Addr::Udp(local));
        socket.set_nonblocking(true).map_err(io)?;
        let poll = Poll::new().map_err(io)?;
        poll.registry()
            .register(
                &mut SourceFd(&socket.as_raw_fd()),
                SOCKET,
                Interest::READABLE,
            )
            .map_err(io)?;
        let waker = Waker::new(poll.registry(), WAKE).map_err(io)?;
        let shared = Arc::new(Shared {
            max: config.max_message_len.min(family_max),
            socket,
            local,
            state: Mutex::new(State {
                demux: Demux::new(Limits::of(config)),
                slots: HashMap::new(),
                accepts: VecDeque::new(),
                accept_closed: false,
                gone: false,
            }),
            accept_wake: Condvar::new(),
            accept_timeout: Mutex::new(config.accept_timeout),
            stop: AtomicBool::new(false),
            waker,
            config: config.clone(),
        });
        let runner = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("converse:{}", local.port())) // fits the 15 bytes Linux keeps
            .spawn(move || runner.run(poll))
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
        let _ = self.shared.waker.wake();
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
/// conversation. The largest message is that of the peer's family (an IPv4
/// peer of a dual-stack `[::]` listener gets the IPv4 limit).
#[derive(Debug)]
pub struct UdpPeer {
    tx: PeerSender,
    rx: PeerReceiver,
}

impl Transport for UdpPeer {
    type Sender = PeerSender;
    type Receiver = PeerReceiver;

    fn into_halves(self) -> (PeerSender, PeerReceiver) {
        (self.tx, self.rx)
    }
}

impl UdpPeer {
    fn new(shared: &Arc<Shared>, peer: SocketAddr, id: u64, wake: Arc<Condvar>) -> UdpPeer {
        let stopped = Arc::new(AtomicBool::new(false));
        let max = shared.peer_max(&peer);
        UdpPeer {
            tx: PeerSender {
                shared: Arc::clone(shared),
                peer,
                max,
                stopped: Arc::clone(&stopped),
                wake: Arc::clone(&wake),
                closed: false,
            },
            rx: PeerReceiver {
                shared: Arc::clone(shared),
                peer,
                id,
                max,
                wake,
                stopped,
                timeout: shared.config.read_timeout,
                state: PeerState::Open,
                taken: VecDeque::new(),
                end_after: false,
            },
        }
    }
}

fn peer_stopper(shared: &Arc<Shared>, stopped: &Arc<AtomicBool>, wake: &Arc<Condvar>) -> Stopper {
    let (shared, stopped, wake) = (Arc::clone(shared), Arc::clone(stopped), Arc::clone(wake));
    Stopper::from_fn(move || {
        // Under the lock: a receiver about to sleep sees the flag first.
        let _state = shared.lock();
        stopped.store(true, Ordering::Relaxed);
        wake.notify_all();
    })
}

/// The sending half of a [`UdpPeer`]: datagrams to the peer, from the
/// listener's socket. A UDP send does not wait for the peer, so there is no
/// write timeout to apply (setting one is accepted and has no effect).
#[derive(Debug)]
pub struct PeerSender {
    shared: Arc<Shared>,
    peer: SocketAddr,
    max: usize,
    stopped: Arc<AtomicBool>,
    wake: Arc<Condvar>,
    closed: bool,
}

impl Sender for PeerSender {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        if self.closed || self.stopped.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        let too_large = || Error::MessageTooLarge {
            len: msg.len() as u64,
            max: self.max as u64,
        };
        if msg.len() > self.max {
            return Err(too_large());
        }
        loop {
            match self.shared.socket.send_to(msg, self.peer) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                #[cfg(unix)]
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => return Err(too_large()),
                Err(e) => {
                    return Err(match e.kind() {
                        io::ErrorKind::ConnectionRefused => Error::PeerUnreachable {
                            addr: Addr::Udp(self.peer),
                        },
                        _ => Error::from_io(e, &Addr::Udp(self.peer)),
                    })
                }
            }
        }
    }

    /// Local only: there is no close to send, and the peer is not told.
    fn finish(&mut self, _until: Instant) -> Result<()> {
        self.closed = true;
        Ok(())
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(Addr::Udp(self.peer))
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(Addr::Udp(self.shared.local))
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        check_timeout("write_timeout", timeout)?;
        Ok(())
    }

    fn max_message_len(&self) -> usize {
        self.max
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(peer_stopper(&self.shared, &self.stopped, &self.wake))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PeerState {
    Open,
    /// The end was reported.
    Ended,
}

/// The receiving half of a [`UdpPeer`]: the datagrams of its source, in
/// arrival order, then (once the peer has been silent for the idle timeout
/// and everything queued has been received) the end.
#[derive(Debug)]
pub struct PeerReceiver {
    shared: Arc<Shared>,
    peer: SocketAddr,
    id: u64,
    max: usize,
    wake: Arc<Condvar>,
    stopped: Arc<AtomicBool>,
    timeout: Option<Duration>,
    state: PeerState,
    /// Datagrams taken from the listener's queue in one go (one lock for
    /// many), handed out one by one.
    taken: VecDeque<Item>,
    /// The peer went idle: after `taken`, the end.
    end_after: bool,
}

impl PeerReceiver {
    /// The listener forgets the peer (counting what it left unread; nothing
    /// if it had already ended).
    fn forget(&mut self) {
        let mut state = self.shared.lock();
        state.slots.remove(&self.id);
        state.demux.closed(self.id);
        state.demux.unread(self.taken.len());
        self.taken.clear();
    }

    fn hand_out(&self, item: Item) -> Result<Option<Bytes>> {
        match item {
            Item::Datagram(msg) => Ok(Some(msg)),
            Item::Truncated => Err(Error::Truncated {
                addr: Addr::Udp(self.peer),
                max: self.max,
            }),
        }
    }
}

impl Receiver for PeerReceiver {
    fn recv(&mut self) -> Result<Option<Bytes>> {
        if self.state == PeerState::Ended {
            return Ok(None);
        }
        if self.stopped.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        if let Some(item) = self.taken.pop_front() {
            return self.hand_out(item);
        }
        if self.end_after {
            self.state = PeerState::Ended;
            return Ok(None);
        }
        let until = self.timeout.map(|t| Instant::now() + t);
        let shared = Arc::clone(&self.shared);
        let mut state = shared.lock();
        loop {
            if self.stopped.load(Ordering::Relaxed) {
                return Err(Error::Closed);
            }
            let Some(slot) = state.slots.get_mut(&self.id) else {
                self.state = PeerState::Ended;
                return Ok(None);
            };
            if !slot.items.is_empty() {
                // Everything queued, in one go.
                self.taken.extend(slot.items.drain(..));
                for item in &self.taken {
                    if state.demux.taken(self.id, item.size()) == Taken::End {
                        self.end_after = true;
                    }
                }
                if self.end_after {
                    Shared::end(&mut state, self.id);
                }
                drop(state);
                let item = self.taken.pop_front().expect("taken above");
                return self.hand_out(item);
            }
            if slot.ended {
                self.state = PeerState::Ended;
                return Ok(None);
            }
            let wake = Arc::clone(&slot.wake);
            slot.sleeping = true;
            state = match until {
                None => wake.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(until) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        slot.sleeping = false;
                        return Err(Error::Timeout);
                    }
                    wake.wait_timeout(state, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
            if let Some(slot) = state.slots.get_mut(&self.id) {
                slot.sleeping = false;
            }
        }
    }

    /// Datagrams have no end to wait for: the listener forgets the peer and
    /// the answer is [`Delivery::Unknown`], at once.
    fn drain(&mut self, _until: Instant) -> Result<Delivery> {
        if self.state == PeerState::Open {
            self.state = PeerState::Ended;
            self.forget();
        }
        Ok(Delivery::Unknown)
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(Addr::Udp(self.peer))
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(Addr::Udp(self.shared.local))
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = check_timeout("read_timeout", timeout)?;
        Ok(())
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn max_message_len(&self) -> usize {
        self.max
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(peer_stopper(&self.shared, &self.stopped, &self.wake))
    }
}

impl Drop for PeerReceiver {
    fn drop(&mut self) {
        self.forget();
    }
}
