//! QUIC for the blocking driver: one UDP socket per endpoint, the
//! endpoint's state ([`Hub`], sans-IO) behind one lock, and a thread that
//! waits on the socket and the endpoint's next deadline. A conversation is
//! a stream connection (a framing, as over TCP) whose carrier is one QUIC
//! stream ([`QuicStream`]): its reads and writes take the lock, move bytes
//! in or out of the stream, send what that made ready from the calling
//! thread, and wait on a condition variable the endpoint's thread signals.
//!
//! Clients share one endpoint per address family for the whole process,
//! and their conversations to the same server share a connection; a
//! listener has its own endpoint.

use std::collections::HashMap;
use std::io::{self, IoSlice};
use std::net::{Shutdown, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use qp::{ConnectionHandle, StreamId};
use quinn_proto as qp;

use super::carrier::Carrier;
use super::stream::{self, StreamReceiver, StreamSender};
use super::{sockopt, Stopper};
use crate::addr::Addr;
use crate::config::{Config, ConfigError};
use crate::connect::Accept;
use crate::connection::quic::{Hub, Key, Limits, ALPN};
use crate::conversation::Conversation;
use crate::error::{Error, Result};
use crate::url::Url;

/// The largest UDP payload read (quinn-proto's default largest payload,
/// as its `EndpointConfig` says).
const MAX_DATAGRAM_PAYLOAD: usize = 1_472;
/// At most this many datagrams leave in one system call (more costs
/// memory and bursts for little gain; quinn settles on the same).
const MAX_SEGMENTS: usize = 10;
/// The socket send buffer asked for (the system may give less).
const SEND_BUFFER: usize = 2 * 1024 * 1024;
/// What one batch of datagrams to send may take.
const MAX_DATAGRAM: usize = 65_536;
/// Datagrams read per wake-up before timers and sending get a turn.
const READ_BATCH: usize = 256;
/// The streams a peer may have open at once on one connection.
const MAX_STREAMS: u32 = 256;
/// The idle time after which a connection is lost, when the
/// configuration has no idle timeout; clients keep connections alive
/// with a ping at a third of it.
const DEFAULT_IDLE: Duration = Duration::from_secs(30);

/// An endpoint: its socket, its state, and its thread.
pub(crate) struct Endpoint {
    state: Mutex<State>,
    /// Conversations and the listener wait here for the endpoint to change.
    changed: Condvar,
    socket: UdpSocket,
    /// The socket's batched I/O (segmentation offload, several datagrams
    /// a system call where the system has it).
    udp: quinn_udp::UdpSocketState,
    local: SocketAddr,
    waker: mio::Waker,
}

struct State {
    hub: Hub,
    /// When the endpoint's thread wakes next (`None`: only for a datagram).
    asleep_until: Option<Instant>,
    /// Conversations, connects under way and the listener.
    users: usize,
    /// The thread has ended: nothing drives this endpoint any more.
    stopped: bool,
    /// The listener was stopped.
    listener_stopped: bool,
    /// The listener was dropped: once its conversations are gone too, the
    /// endpoint closes its connections and ends.
    listener_gone: bool,
    buf: Vec<u8>,
    /// Datagrams the socket did not take (its buffer full): sent first,
    /// when it is writable again.
    unsent: Option<(qp::Transmit, Vec<u8>)>,
    /// Who is told when a stream may be ready (its driver has no readiness
    /// of its own for it: a switchboard).
    watchers: HashMap<(ConnectionHandle, StreamId), Watcher>,
    /// Who is told when streams were accepted.
    accept_watcher: Option<Watcher>,
    touched: Vec<(ConnectionHandle, StreamId)>,
    /// Who is told when a connection under way had events: each connect
    /// that does not wait (a switchboard's, an async one), by the
    /// connection it waits for (connects to one server share its
    /// handshake; each is told).
    dial_watchers: HashMap<ConnectionHandle, Vec<(u64, Watcher)>>,
    news: Vec<ConnectionHandle>,
}

/// Called when something may be ready.
type Watcher = Arc<dyn Fn() + Send + Sync>;

impl State {
    /// Tells `watcher` of connect `dial` when connection `ch` has news.
    fn tell_dial(&mut self, ch: ConnectionHandle, dial: u64, watcher: Watcher) {
        let all = self.dial_watchers.entry(ch).or_default();
        all.retain(|(d, _)| *d != dial);
        all.push((dial, watcher));
    }

    /// Connect `dial` no longer waits for connection `ch`.
    fn forget_dial(&mut self, ch: ConnectionHandle, dial: u64) {
        if let Some(all) = self.dial_watchers.get_mut(&ch) {
            all.retain(|(d, _)| *d != dial);
            if all.is_empty() {
                self.dial_watchers.remove(&ch);
            }
        }
    }

    /// Tells the watchers of the streams that may have become ready (and
    /// of the listener, if streams were accepted). They only queue a note
    /// and wake their driver: called with the lock held.
    fn tell_watchers(&mut self) {
        let mut touched = std::mem::take(&mut self.touched);
        let accepted = self.hub.take_touched(&mut touched);
        if !self.watchers.is_empty() {
            touched.sort_unstable();
            touched.dedup();
            for key in &touched {
                if let Some(w) = self.watchers.get(key) {
                    w();
                }
            }
        }
        touched.clear();
        self.touched = touched;
        let mut news = std::mem::take(&mut self.news);
        self.hub.take_conn_news(&mut news);
        if !self.dial_watchers.is_empty() {
            news.sort_unstable();
            news.dedup();
            for ch in &news {
                for (_, w) in self.dial_watchers.get(ch).into_iter().flatten() {
                    w();
                }
            }
        }
        news.clear();
        self.news = news;
        if accepted {
            if let Some(w) = &self.accept_watcher {
                w();
            }
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("local", &self.local)
            .finish()
    }
}

impl Endpoint {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An endpoint on `socket` with one user (the caller), its thread
    /// started; `hub` makes its state (told whether the socket may
    /// fragment datagrams).
    fn start(socket: UdpSocket, hub: impl FnOnce(bool) -> Hub) -> io::Result<Arc<Endpoint>> {
        socket.set_nonblocking(true)?;
        let udp = quinn_udp::UdpSocketState::new((&socket).into())?;
        // Room for bursts: batches of datagrams the system may hold up.
        let _ = udp.set_send_buffer_size((&socket).into(), SEND_BUFFER);
        let hub = hub(udp.may_fragment());
        let local = socket.local_addr()?;
        let poll = mio::Poll::new()?;
        let waker = mio::Waker::new(poll.registry(), WAKE)?;
        {
            use std::os::fd::AsRawFd;
            let fd = socket.as_raw_fd();
            poll.registry().register(
                &mut mio::unix::SourceFd(&fd),
                SOCKET,
                mio::Interest::READABLE | mio::Interest::WRITABLE,
            )?;
        }
        let ep = Arc::new(Endpoint {
            state: Mutex::new(State {
                hub,
                asleep_until: None,
                users: 1,
                stopped: false,
                listener_stopped: false,
                listener_gone: false,
                buf: Vec::with_capacity(MAX_DATAGRAM),
                unsent: None,
                watchers: HashMap::new(),
                accept_watcher: None,
                touched: Vec::new(),
                dial_watchers: HashMap::new(),
                news: Vec::new(),
            }),
            changed: Condvar::new(),
            socket,
            udp,
            local,
            waker,
        });
        let runner = Arc::clone(&ep);
        std::thread::Builder::new()
            .name("converse-quic".into())
            .spawn(move || runner.run(poll))?;
        Ok(ep)
    }

    /// The endpoint's thread: datagrams in, timers, datagrams out, until
    /// nobody uses the endpoint and its connections are gone.
    fn run(self: Arc<Self>, mut poll: mio::Poll) {
        let mut events = mio::Events::with_capacity(16);
        // Room for a batch of reads, each of as many datagrams as the
        // system hands over at once.
        let per_buffer = self.udp.gro_segments().max(1) * MAX_DATAGRAM_PAYLOAD;
        let batch = quinn_udp::BATCH_SIZE;
        let mut data = vec![0u8; per_buffer * batch];
        let mut meta = vec![quinn_udp::RecvMeta::default(); batch];
        let mut more = false;
        loop {
            let wait = {
                let mut st = self.lock();
                if st.users == 0 && st.listener_gone && st.hub.connections() > 0 {
                    // Nobody serves these connections any more: their
                    // clients are told now (once: closing ones are left
                    // to drain).
                    let now = Instant::now();
                    st.hub.close_all(now, "the listener is gone");
                    self.transmit(&mut st, now, None);
                }
                if st.users == 0 && st.hub.connections() == 0 {
                    st.stopped = true;
                    self.changed.notify_all();
                    return;
                }
                let next = st.hub.poll_timeout();
                st.asleep_until = next;
                if more {
                    Some(Duration::ZERO)
                } else {
                    next.map(|t| t.saturating_duration_since(Instant::now()))
                }
            };
            if poll.poll(&mut events, wait).is_err() {
                std::thread::sleep(Duration::from_millis(1));
            }
            let now = Instant::now();
            let mut st = self.lock();
            st.asleep_until = Some(now);
            more = false;
            let mut got = 0;
            loop {
                if got >= READ_BATCH {
                    more = true;
                    break;
                }
                let mut slices: Vec<io::IoSliceMut<'_>> = data
                    .chunks_mut(per_buffer)
                    .map(io::IoSliceMut::new)
                    .collect();
                match self.udp.recv((&self.socket).into(), &mut slices, &mut meta) {
                    Ok(n) => {
                        for (m, buf) in meta.iter().zip(data.chunks(per_buffer)).take(n) {
                            let ecn = m.ecn.and_then(|e| qp::EcnCodepoint::from_bits(e as u8));
                            let stride = m.stride.max(1);
                            for d in buf[..m.len].chunks(stride) {
                                got += 1;
                                st.hub.handle_datagram_with(
                                    now,
                                    m.addr,
                                    m.dst_ip,
                                    ecn,
                                    BytesMut::from(d),
                                );
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // An ICMP error for an earlier datagram: QUIC has its
                    // own timers.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                        ) => {}
                    Err(_) => break,
                }
            }
            st.hub.handle_timeout(now);
            st.hub.mark_all_dirty();
            self.transmit(&mut st, now, None);
            if st.hub.take_changed() {
                self.changed.notify_all();
            }
            st.tell_watchers();
        }
    }

    /// Sends what the hub has (`only`: that connection's), several
    /// datagrams a system call where the system can. What the socket does
    /// not take waits for it to be writable (the endpoint's thread is woken
    /// then).
    fn transmit(&self, st: &mut State, now: Instant, only: Option<ConnectionHandle>) {
        if let Some((t, bytes)) = st.unsent.take() {
            if !self.send(&t, &bytes) {
                st.unsent = Some((t, bytes));
                return;
            }
        }
        let mut buf = std::mem::take(&mut st.buf);
        let segments = self.udp.max_gso_segments().min(MAX_SEGMENTS);
        while let Some(t) = st.hub.poll_transmit_batch(now, only, segments, &mut buf) {
            if !self.send(&t, &buf[..t.size]) {
                let bytes = buf[..t.size].to_vec();
                st.unsent = Some((t, bytes));
                break;
            }
        }
        st.buf = buf;
    }

    /// One send: `false` if the socket's buffer is full (nothing sent).
    /// Other errors lose the datagrams, which QUIC sends again.
    fn send(&self, t: &qp::Transmit, contents: &[u8]) -> bool {
        let transmit = quinn_udp::Transmit {
            destination: t.destination,
            ecn: t
                .ecn
                .and_then(|e| quinn_udp::EcnCodepoint::from_bits(e as u8)),
            contents,
            segment_size: t.segment_size,
            src_ip: t.src_ip,
        };
        let sent = self.udp.send((&self.socket).into(), &transmit);
        !matches!(sent, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// After a conversation's call: sends what it made ready, wakes the
    /// endpoint's thread if a timer moved earlier, wakes waiters.
    fn after(&self, st: &mut State, ch: ConnectionHandle) {
        let now = Instant::now();
        self.transmit(st, now, Some(ch));
        let next = st.hub.poll_timeout();
        let earlier = match (next, st.asleep_until) {
            (Some(n), Some(a)) => n < a,
            (Some(_), None) => true,
            _ => false,
        };
        if earlier {
            st.asleep_until = next;
            let _ = self.waker.wake();
        }
        if st.hub.take_changed() {
            self.changed.notify_all();
        }
        st.tell_watchers();
    }

    /// Waits for a change until `until` (`None`: a while): `false` when the
    /// time is up.
    fn wait<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
        until: Option<Instant>,
    ) -> (MutexGuard<'a, State>, bool) {
        let left = match until {
            None => Duration::from_millis(200),
            Some(t) => match t.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => left.min(Duration::from_millis(200)),
                _ => return (st, false),
            },
        };
        let (st, _) = self
            .changed
            .wait_timeout(st, left)
            .unwrap_or_else(|e| e.into_inner());
        (st, true)
    }
}

const SOCKET: mio::Token = mio::Token(0);
const WAKE: mio::Token = mio::Token(1);

/// A timeout kept in an atomic (`u64::MAX`: none).
#[derive(Debug)]
struct Timeout(AtomicU64);

impl Timeout {
    fn new() -> Timeout {
        Timeout(AtomicU64::new(u64::MAX))
    }
    fn set(&self, t: Option<Duration>) {
        let nanos = t.map_or(u64::MAX, |t| {
            u64::try_from(t.as_nanos()).unwrap_or(u64::MAX - 1)
        });
        self.0.store(nanos, Ordering::Relaxed);
    }
    fn until(&self) -> Option<Instant> {
        match self.0.load(Ordering::Relaxed) {
            u64::MAX => None,
            n => Instant::now().checked_add(Duration::from_nanos(n)),
        }
    }
}

/// One QUIC stream, as a stream connection's carrier: reads and writes
/// with timeouts, as a socket's.
#[derive(Debug)]
pub(crate) struct QuicStream {
    ep: Arc<Endpoint>,
    ch: ConnectionHandle,
    id: StreamId,
    read_timeout: Timeout,
    write_timeout: Timeout,
    nonblocking: AtomicBool,
    /// Reads say "end" (a local shutdown of both sides).
    read_shut: AtomicBool,
    /// Our side was ended or reset.
    write_shut: AtomicBool,
    released: AtomicBool,
}

impl QuicStream {
    fn new(ep: Arc<Endpoint>, ch: ConnectionHandle, id: StreamId) -> QuicStream {
        QuicStream {
            ep,
            ch,
            id,
            read_timeout: Timeout::new(),
            write_timeout: Timeout::new(),
            nonblocking: AtomicBool::new(false),
            read_shut: AtomicBool::new(false),
            write_shut: AtomicBool::new(false),
            released: AtomicBool::new(false),
        }
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let wait = !self.nonblocking.load(Ordering::Relaxed) && !buf.is_empty();
        self.when_ready(self.read_timeout.until(), wait, |hub| {
            if self.read_shut.load(Ordering::Relaxed) {
                return Ok(0);
            }
            hub.read(self.ch, self.id, buf)
        })
    }

    /// Writes what the stream takes of `bufs`; with `now`, without
    /// waiting.
    pub(crate) fn write(&self, bufs: &[IoSlice<'_>], now: bool) -> io::Result<usize> {
        let wait = !now && !self.nonblocking.load(Ordering::Relaxed);
        self.when_ready(self.write_timeout.until(), wait, |hub| {
            if self.write_shut.load(Ordering::Relaxed) {
                return Err(io::ErrorKind::BrokenPipe.into());
            }
            hub.write(self.ch, self.id, bufs)
        })
    }

    /// Runs `op` on the endpoint until it does not say `WouldBlock`, waiting
    /// for the endpoint to change in between (if `wait`) until `until`
    /// (then `WouldBlock`, which the stream driver reads as its timeout);
    /// then sends what it made ready.
    fn when_ready(
        &self,
        until: Option<Instant>,
        wait: bool,
        mut op: impl FnMut(&mut Hub) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let mut st = self.ep.lock();
        loop {
            match op(&mut st.hub) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !wait {
                        return Err(e);
                    }
                    if st.stopped {
                        return Err(io::ErrorKind::NotConnected.into());
                    }
                    let (next, more) = self.ep.wait(st, until);
                    st = next;
                    if !more {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                }
                other => {
                    self.ep.after(&mut st, self.ch);
                    return other;
                }
            }
        }
    }

    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) {
        self.read_timeout.set(t);
    }

    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) {
        self.write_timeout.set(t);
    }

    pub(crate) fn set_nonblocking(&self, on: bool) {
        self.nonblocking.store(on, Ordering::Relaxed);
    }

    /// `Write`: the stream's FIN after what was written. `Both`: also
    /// reads end here (and the peer is asked to stop if it was not read
    /// to its end); the conversation is done with the stream.
    pub(crate) fn shutdown(&self, how: Shutdown) {
        let mut st = self.ep.lock();
        if !self.write_shut.swap(true, Ordering::Relaxed) {
            st.hub.finish(self.ch, self.id);
        }
        if how != Shutdown::Write {
            self.read_shut.store(true, Ordering::Relaxed);
            self.release(&mut st, false);
        }
        self.ep.after(&mut st, self.ch);
        self.ep.changed.notify_all();
    }

    /// An abort: the stream reset both ways.
    pub(crate) fn reset(&self) {
        let mut st = self.ep.lock();
        self.write_shut.store(true, Ordering::Relaxed);
        self.read_shut.store(true, Ordering::Relaxed);
        self.release(&mut st, true);
        self.ep.after(&mut st, self.ch);
        self.ep.changed.notify_all();
    }

    fn release(&self, st: &mut State, reset: bool) {
        if !self.released.swap(true, Ordering::Relaxed) {
            st.watchers.remove(&(self.ch, self.id));
            st.hub.release(self.ch, self.id, reset, Instant::now());
            st.users = st.users.saturating_sub(1);
        }
    }

    /// Tells `ready` (from now on, until `None`) whenever the stream may
    /// have become readable or writable, or ended.
    pub(crate) fn watch(&self, ready: Option<Watcher>) {
        let mut st = self.ep.lock();
        match ready {
            Some(w) => {
                st.watchers.insert((self.ch, self.id), w);
            }
            None => {
                st.watchers.remove(&(self.ch, self.id));
            }
        }
    }

    /// The peer's verified identity (its certificates), once known.
    pub(crate) fn peer_identity(&self) -> Option<crate::tls::PeerIdentity> {
        let certs = self.ep.lock().hub.peer_certificates(self.ch)?;
        crate::tls::PeerIdentity::new(certs)
    }

    pub(crate) fn has_unread(&self) -> bool {
        self.ep.lock().hub.has_unread(self.ch, self.id)
    }

    pub(crate) fn take_error(&self) -> Option<io::Error> {
        self.ep.lock().hub.take_error(self.ch, self.id)
    }
}

impl Drop for QuicStream {
    /// As a socket closed: our side ends after what was written (a reset,
    /// if the peer's bytes were left unread).
    fn drop(&mut self) {
        let mut st = self.ep.lock();
        self.release(&mut st, false);
        self.ep.after(&mut st, self.ch);
        let _ = self.ep.waker.wake();
    }
}

// ---------------------------------------------------------------------------
// Settings

fn bad_tls(reason: &'static str) -> Error {
    Error::InvalidConfig(ConfigError {
        setting: "tls",
        reason,
    })
}

fn transport_config(config: &Config, client: bool) -> Arc<qp::TransportConfig> {
    let mut t = qp::TransportConfig::default();
    let idle = config.idle_timeout.unwrap_or(DEFAULT_IDLE);
    t.max_idle_timeout(qp::IdleTimeout::try_from(idle).ok());
    t.max_concurrent_bidi_streams(qp::VarInt::from_u32(if client { 0 } else { MAX_STREAMS }));
    t.max_concurrent_uni_streams(qp::VarInt::from_u32(0));
    if client {
        t.keep_alive_interval(Some(idle / 3));
    }
    Arc::new(t)
}

/// The client settings for `config`, and their identity (for reusing a
/// connection: `None` for the default ones).
pub(crate) fn client_config(
    config: &Config,
) -> Result<(qp::ClientConfig, Option<Arc<rustls::ClientConfig>>)> {
    let tls = config.tls_client.clone().unwrap_or_default();
    let tag = config
        .tls_client
        .as_ref()
        .map(|t| Arc::clone(t.rustls_config()));
    let mut rustls = (**tls.rustls_config()).clone();
    rustls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = qp::crypto::rustls::QuicClientConfig::try_from(rustls)
        .map_err(|_| bad_tls("QUIC needs TLS 1.3 in the TLS client settings"))?;
    let mut qc = qp::ClientConfig::new(Arc::new(crypto));
    qc.transport_config(transport_config(config, true));
    Ok((qc, tag))
}

pub(crate) fn server_config(config: &Config) -> Result<Arc<qp::ServerConfig>> {
    let tls = config.tls_server.as_ref().ok_or_else(|| {
        Error::InvalidConfig(ConfigError {
            setting: "tls_server",
            reason: "a quic:// listener needs a certificate and key (Config::with_tls_server)",
        })
    })?;
    let mut rustls = (**tls.rustls_config()).clone();
    rustls.alpn_protocols = vec![ALPN.to_vec()];
    rustls.max_early_data_size = 0;
    let crypto = qp::crypto::rustls::QuicServerConfig::try_from(rustls)
        .map_err(|_| bad_tls("QUIC needs TLS 1.3 in the TLS server settings"))?;
    let mut sc = qp::ServerConfig::with_crypto(Arc::new(crypto));
    sc.transport_config(transport_config(config, false));
    sc.max_incoming(config.max_peers.max(1));
    Ok(Arc::new(sc))
}

fn limits(config: &Config, fragments: bool) -> Limits {
    Limits {
        max_connections: config.max_peers.max(1),
        handshake_timeout: config.handshake_timeout,
        linger: config.linger,
        mtu_discovery: !fragments,
    }
}

// ---------------------------------------------------------------------------
// Clients

/// The process's client endpoints (IPv4, IPv6), while something uses them.
static CLIENTS: Mutex<[Option<Weak<Endpoint>>; 2]> = Mutex::new([None, None]);

/// The client endpoint for `v6` (made, or started again, if needed), with
/// one user counted for the caller.
fn client_endpoint(v6: bool, config: &Config) -> Result<Arc<Endpoint>> {
    let mut clients = CLIENTS.lock().unwrap_or_else(|e| e.into_inner());
    let slot = &mut clients[usize::from(v6)];
    if let Some(ep) = slot.as_ref().and_then(Weak::upgrade) {
        let mut st = ep.lock();
        if !st.stopped {
            st.users += 1;
            drop(st);
            return Ok(ep);
        }
    }
    let any: SocketAddr = if v6 {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    };
    let socket =
        sockopt::udp_listener(any, config).map_err(|e| Error::from_io(e, &Addr::Quic(any)))?;
    let ep = Endpoint::start(socket, |fragments| Hub::client(limits(config, fragments)))
        .map_err(|e| Error::from_io(e, &Addr::Quic(any)))?;
    *slot = Some(Arc::downgrade(&ep));
    Ok(ep)
}

/// A client's conversation to `url`: a new stream on the connection to the
/// server there is, or on a new one (its handshake done within the
/// handshake timeout).
pub(crate) fn connect(
    url: &Url,
    recipe: &super::recipe::Recipe,
    config: &Config,
) -> Result<(StreamSender, StreamReceiver)> {
    let won = open_first(Dial::new(url, config)?)?;
    let peer = Addr::Quic(won.addr);
    let settings = crate::connection::Settings::new(config, None);
    let conn = recipe.conn(&settings, peer.clone(), Instant::now())?;
    stream::carried(won.carrier(), won.local(), peer, conn, config)
}

/// How long an address has to answer before the next one is tried too
/// (RFC 8305's "Connection Attempt Delay"; the earlier attempts go on).
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// While attempts on two endpoints go on, how often each is looked at.
const ATTEMPT_POLL: Duration = Duration::from_millis(5);

/// One address's handshake under way.
struct Attempt {
    ep: Arc<Endpoint>,
    ch: ConnectionHandle,
    /// Its connect's number (for its watcher).
    dial: u64,
    addr: SocketAddr,
    until: Instant,
}

impl Attempt {
    /// Its endpoint's user given back, its connection left to close.
    fn give_up(self) {
        let mut st = self.ep.lock();
        st.forget_dial(self.ch, self.dial);
        st.hub.abandon(self.ch, Instant::now());
        st.users = st.users.saturating_sub(1);
        self.ep.after(&mut st, self.ch);
        drop(st);
        let _ = self.ep.waker.wake();
    }
}

/// A stream on a new (or shared) connection, opened by a [`Dial`].
pub(crate) struct Dialed {
    pub(crate) ep: Arc<Endpoint>,
    pub(crate) ch: ConnectionHandle,
    pub(crate) addr: SocketAddr,
    pub(crate) id: StreamId,
}

impl Dialed {
    /// The stream as a carrier.
    pub(crate) fn carrier(&self) -> Carrier {
        Carrier::Quic(Box::new(QuicStream::new(
            Arc::clone(&self.ep),
            self.ch,
            self.id,
        )))
    }

    /// Our end's address.
    pub(crate) fn local(&self) -> Addr {
        Addr::Quic(self.ep.local)
    }
}

/// A connect under way, that nothing waits for: a stream on a connection
/// to the first of its addresses that answers, each within the handshake
/// timeout. The addresses are tried in turn, a new one once the last has
/// not answered within [`ATTEMPT_DELAY`], as Happy Eyeballs does: an
/// address nobody listens on (say `::1` for a server on 127.0.0.1) costs
/// a quarter of a second, not the handshake timeout.
///
/// [`poll`](Dial::poll) looks; a watcher set with [`watch`](Dial::watch)
/// is told when a handshake under way had news, and
/// [`deadline`](Dial::deadline) says when to look at the latest.
/// Dropped, it gives up the handshakes under way.
pub(crate) struct Dial {
    /// Its number, unique in the process.
    id: u64,
    pending: std::vec::IntoIter<SocketAddr>,
    active: Vec<Attempt>,
    last: Option<Error>,
    next_start: Instant,
    client: qp::ClientConfig,
    name: String,
    tls: Option<Arc<rustls::ClientConfig>>,
    config: Config,
    watcher: Option<Watcher>,
}

impl std::fmt::Debug for Dial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dial")
            .field("name", &self.name)
            .field("attempts", &self.active.len())
            .finish()
    }
}

impl Dial {
    /// A connect to `url`, its first handshake begun when first polled.
    pub(crate) fn new(url: &Url, config: &Config) -> Result<Dial> {
        let (host, _) = url
            .host_port()
            .ok_or_else(|| crate::addr::no_address("the address"))?;
        let name = crate::tls::server_name(host)?;
        let name = match &name {
            rustls::pki_types::ServerName::DnsName(d) => d.as_ref().to_owned(),
            rustls::pki_types::ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
            _ => host.to_owned(),
        };
        Dial::to(url.resolve()?, name, config)
    }

    /// A connect to `addrs` in turn, the server verified for `name`.
    pub(crate) fn to(addrs: Vec<SocketAddr>, name: String, config: &Config) -> Result<Dial> {
        let (client, tls) = client_config(config)?;
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Ok(Dial {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            pending: addrs.into_iter(),
            active: Vec::new(),
            last: None,
            next_start: Instant::now(),
            client,
            name,
            tls,
            config: config.clone(),
            watcher: None,
        })
    }

    /// The first address tried, as the peer's until one answers.
    pub(crate) fn first(&self) -> Addr {
        self.pending
            .as_slice()
            .first()
            .map_or(Addr::Unknown, |&a| Addr::Quic(a))
    }

    /// Tells `watcher` (from now on) whenever a handshake under way had
    /// news.
    pub(crate) fn watch(&mut self, watcher: Watcher) {
        for a in &self.active {
            a.ep.lock().tell_dial(a.ch, a.dial, Arc::clone(&watcher));
        }
        self.watcher = Some(watcher);
    }

    /// When to look again at the latest: the first handshake's deadline,
    /// or the next address's start.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let until = self.active.iter().map(|a| a.until).min();
        if self.pending.len() > 0 {
            Some(until.map_or(self.next_start, |u| u.min(self.next_start)))
        } else {
            until
        }
    }

    /// Begins what is due and looks at each handshake: the first with a
    /// stream wins (`Ok(Some)`, the others given up); `Ok(None)` while
    /// they go on; the last error once every address failed.
    pub(crate) fn poll(&mut self, now: Instant) -> Result<Option<Dialed>> {
        loop {
            while self.active.is_empty() || now >= self.next_start {
                let Some(addr) = self.pending.next() else {
                    break;
                };
                self.start(addr);
                self.next_start = now + ATTEMPT_DELAY;
            }
            if self.active.is_empty() {
                return Err(self
                    .last
                    .take()
                    .unwrap_or_else(|| crate::addr::no_address("the address").into()));
            }
            if let Some(won) = self.look(now) {
                return Ok(Some(won));
            }
            if !self.active.is_empty() {
                return Ok(None);
            }
            // Every handshake under way failed: the next address now.
        }
    }

    /// A handshake to `addr` begun.
    fn start(&mut self, addr: SocketAddr) {
        let key = Key {
            addr,
            name: self.name.clone(),
            tls: self.tls.clone(),
        };
        match start_attempt(addr, &self.client, key, &self.config, self.id) {
            Ok(a) => {
                if let Some(w) = &self.watcher {
                    a.ep.lock().tell_dial(a.ch, a.dial, Arc::clone(w));
                }
                self.active.push(a);
            }
            Err(e) => self.last = Some(e),
        }
    }

    /// Each handshake looked at: the first with a stream, if one has.
    fn look(&mut self, now: Instant) -> Option<Dialed> {
        let mut i = 0;
        while i < self.active.len() {
            let a = &self.active[i];
            let mut st = a.ep.lock();
            // A stream once established (`None` while the server allows
            // no more).
            let outcome = match st.hub.established(a.ch) {
                Ok(true) => st.hub.open(a.ch),
                Ok(false) if st.stopped => Err(io::ErrorKind::NotConnected.into()),
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            }
            .and_then(|id| match id {
                None if now >= a.until => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the QUIC handshake took longer than the handshake timeout",
                )),
                id => Ok(id),
            });
            match outcome {
                Ok(Some(id)) => {
                    st.forget_dial(a.ch, a.dial);
                    a.ep.after(&mut st, a.ch);
                    drop(st);
                    let won = self.active.swap_remove(i);
                    for other in self.active.drain(..) {
                        other.give_up();
                    }
                    return Some(Dialed {
                        ep: won.ep,
                        ch: won.ch,
                        addr: won.addr,
                        id,
                    });
                }
                Ok(None) => i += 1,
                Err(e) => {
                    drop(st);
                    let a = self.active.swap_remove(i);
                    self.last = Some(Error::from_io(e, &Addr::Quic(a.addr)));
                    a.give_up();
                }
            }
        }
        None
    }

    /// Waits for news of a handshake, or its time: on the one attempt's
    /// endpoint, or, with attempts on more than one endpoint, a short
    /// while.
    fn wait(&self) {
        let Some(a) = self.active.last() else {
            return;
        };
        let mut until = self.deadline().unwrap_or(a.until);
        if self.active.len() > 1 {
            until = until.min(Instant::now() + ATTEMPT_POLL);
        }
        let st = a.ep.lock();
        if st.hub.established(a.ch).unwrap_or(true) || st.stopped {
            return;
        }
        let _ = a.ep.wait(st, Some(until));
    }
}

impl Drop for Dial {
    fn drop(&mut self) {
        for a in self.active.drain(..) {
            a.give_up();
        }
    }
}

/// A stream on a connection to the first of `dial`'s addresses that
/// answers, waited for.
pub(crate) fn open_first(mut dial: Dial) -> Result<Dialed> {
    loop {
        if let Some(won) = dial.poll(Instant::now())? {
            return Ok(won);
        }
        dial.wait();
    }
}

/// A handshake to `addr` begun (or the connection there is, shared).
fn start_attempt(
    addr: SocketAddr,
    client: &qp::ClientConfig,
    key: Key,
    config: &Config,
    dial: u64,
) -> Result<Attempt> {
    let ep = client_endpoint(addr.is_ipv6(), config)?;
    let mut st = ep.lock();
    match st.hub.connect(Instant::now(), client.clone(), key) {
        Ok(ch) => {
            ep.after(&mut st, ch);
            drop(st);
            Ok(Attempt {
                ep,
                ch,
                dial,
                addr,
                until: Instant::now() + config.handshake_timeout,
            })
        }
        Err(e) => {
            st.users = st.users.saturating_sub(1);
            drop(st);
            let _ = ep.waker.wake();
            Err(Error::from_io(e, &Addr::Quic(addr)))
        }
    }
}

// ---------------------------------------------------------------------------
// Listeners

/// A QUIC listener: every stream a client opens is a conversation.
#[derive(Debug)]
pub(crate) struct QuicListener {
    ep: Arc<Endpoint>,
    recipe: super::recipe::Recipe,
    config: Config,
    accept_timeout: Mutex<Option<Duration>>,
}

impl QuicListener {
    /// Listens on the first of `addrs` that can be bound.
    pub(crate) fn bind(
        addrs: &[SocketAddr],
        recipe: super::recipe::Recipe,
        config: &Config,
    ) -> Result<QuicListener> {
        let server = server_config(config)?;
        let mut last = None;
        for &addr in addrs {
            let socket = match sockopt::udp_listener(addr, config) {
                Ok(s) => s,
                Err(e) => {
                    last = Some(Error::from_io(e, &Addr::Quic(addr)));
                    continue;
                }
            };
            let ep = Endpoint::start(socket, |fragments| {
                Hub::server(Arc::clone(&server), limits(config, fragments))
            })
            .map_err(|e| Error::from_io(e, &Addr::Quic(addr)))?;
            return Ok(QuicListener {
                ep,
                recipe,
                config: config.clone(),
                accept_timeout: Mutex::new(config.accept_timeout),
            });
        }
        Err(last.unwrap_or_else(|| crate::addr::no_address("the address").into()))
    }

    fn accept_halves(&self) -> Result<(StreamSender, StreamReceiver)> {
        let timeout = *self
            .accept_timeout
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let until = timeout.map(|t| Instant::now() + t);
        let mut st = self.ep.lock();
        loop {
            if st.listener_stopped {
                return Err(Error::Closed);
            }
            if let Some((ch, id, addr)) = st.hub.take_accepted() {
                st.users += 1;
                drop(st);
                let carrier =
                    Carrier::Quic(Box::new(QuicStream::new(Arc::clone(&self.ep), ch, id)));
                let peer = Addr::Quic(addr);
                let settings = crate::connection::Settings::new(&self.config, None);
                let conn = self.recipe.conn(&settings, peer.clone(), Instant::now())?;
                return stream::carried(
                    carrier,
                    Addr::Quic(self.ep.local),
                    peer,
                    conn,
                    &self.config,
                );
            }
            if until.is_none() {
                st = self.ep.wait(st, None).0;
                continue;
            }
            let (next, more) = self.ep.wait(st, until);
            st = next;
            if !more {
                return Err(Error::Timeout);
            }
        }
    }
}

impl QuicListener {
    /// A stream accepted and not taken yet, without waiting.
    pub(crate) fn try_accept(&self) -> Option<(StreamSender, StreamReceiver)> {
        let mut st = self.ep.lock();
        let (ch, id, addr) = st.hub.take_accepted()?;
        st.users += 1;
        drop(st);
        let carrier = Carrier::Quic(Box::new(QuicStream::new(Arc::clone(&self.ep), ch, id)));
        let peer = Addr::Quic(addr);
        let settings = crate::connection::Settings::new(&self.config, None);
        let conn = self
            .recipe
            .conn(&settings, peer.clone(), Instant::now())
            .ok()?;
        stream::carried(carrier, Addr::Quic(self.ep.local), peer, conn, &self.config).ok()
    }

    /// Tells `ready` (from now on, until `None`) whenever streams were
    /// accepted.
    pub(crate) fn watch(&self, ready: Option<Watcher>) {
        self.ep.lock().accept_watcher = ready;
    }

    /// The address it listens on.
    pub(crate) fn local(&self) -> Addr {
        Addr::Quic(self.ep.local)
    }
}

impl Drop for QuicListener {
    fn drop(&mut self) {
        let mut st = self.ep.lock();
        st.hub.stop_listening(Instant::now());
        st.listener_stopped = true;
        st.listener_gone = true;
        st.users = st.users.saturating_sub(1);
        st.hub.mark_all_dirty();
        self.ep.transmit(&mut st, Instant::now(), None);
        drop(st);
        let _ = self.ep.waker.wake();
        self.ep.changed.notify_all();
    }
}

impl Accept for QuicListener {
    fn accept(&self) -> Result<Conversation> {
        self.accept_halves().map(|t| Conversation::new(t).boxed())
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(Addr::Quic(self.ep.local))
    }

    fn set_accept_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        crate::config::check_timeout("accept_timeout", timeout)?;
        *self
            .accept_timeout
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = timeout;
        Ok(())
    }

    fn stopper(&self) -> Stopper {
        let ep = Arc::downgrade(&self.ep);
        Stopper::from_fn(move || {
            if let Some(ep) = ep.upgrade() {
                ep.lock().listener_stopped = true;
                ep.changed.notify_all();
            }
        })
    }
}
