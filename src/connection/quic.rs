//! QUIC, sans-IO: one endpoint and its connections (quinn-proto's state
//! machines), with converse's rules for conversations on top. Datagrams and
//! `now` go in; datagrams to send, the next deadline, accepted streams and
//! each stream's bytes come out. It never touches a socket or reads a
//! clock: a driver moves datagrams and decides when to call it.
//!
//! A conversation is one bidirectional stream carrying a framing (the
//! stream connection's, as over TCP). The wire rules, for peers written
//! with other QUIC libraries:
//! - ALPN [`ALPN`] (`converse`);
//! - the client opens each conversation's stream and writes one byte,
//!   [`STREAM_HEADER`], before the framed messages (so that the listener
//!   sees the conversation at once, as a TCP `accept` does, even when the
//!   server speaks first); the server writes framed messages from the
//!   start;
//! - the end of a conversation's side is the stream's FIN; an abort is a
//!   `RESET_STREAM` (and a `STOP_SENDING`) with code 0.
//!
//! A client's conversations to the same server (the same address, name
//! and TLS settings) share one connection while any of them lives: a new
//! conversation is a new stream, without a handshake. A client's
//! connection nobody uses is closed once what was sent on it is
//! acknowledged, or after the linger time; a listener leaves its
//! connections to their clients and to the idle timeout, until it and its
//! conversations are gone.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use qp::{ConnectionHandle, Dir, StreamId, VarInt};
use quinn_proto as qp;

/// The ALPN protocol of converse's QUIC conversations.
pub(crate) const ALPN: &[u8] = b"converse";

/// The byte a client writes first on each conversation's stream.
pub(crate) const STREAM_HEADER: u8 = 0xC1;

/// The application error code of an abort, a refused stream, and a
/// connection closed because nobody uses it.
const CODE_NONE: u32 = 0;
/// The connection error code of a handshake that took too long.
const CODE_HANDSHAKE_TIMEOUT: u32 = 1;
/// The stream error code of a stream that did not start with the header.
const CODE_BAD_HEADER: u32 = 2;

/// Handshakes under way before new ones from unvalidated addresses are
/// asked to retry (proving their address first).
pub(crate) const RETRY_ABOVE: usize = 64;

/// Which client connections may carry a new conversation: the same server,
/// the same name, the same TLS settings.
#[derive(Clone, Debug)]
pub(crate) struct Key {
    pub(crate) addr: SocketAddr,
    pub(crate) name: String,
    /// The TLS client settings given (`None`: the default ones), held so
    /// that their identity is never another's (a freed one's address
    /// reused).
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.addr == other.addr
            && self.name == other.name
            && match (&self.tls, &other.tls) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Eq for Key {}

/// What the endpoint's listener allows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Connections at once (more are refused).
    pub(crate) max_connections: usize,
    /// How long a handshake may take.
    pub(crate) handshake_timeout: Duration,
    /// How long a connection nobody uses waits for its last bytes to be
    /// acknowledged.
    pub(crate) linger: Duration,
    /// Path MTU discovery (when the socket never fragments).
    pub(crate) mtu_discovery: bool,
}

/// One stream's state, as conversations see it.
#[derive(Debug, Default)]
struct Stream {
    /// Bytes (or the end) may be waiting.
    readable: bool,
    /// The peer's end was read.
    ended: bool,
    /// The peer reset its side.
    reset: bool,
    /// The peer asked us to stop sending (it will not read): a reset, for
    /// whoever asks after the end.
    stopped: bool,
    /// The error after the end was taken.
    told: bool,
    /// Our side was finished or reset.
    done_sending: bool,
    /// A conversation holds it.
    held: bool,
}

/// One connection.
struct Conn {
    conn: qp::Connection,
    /// Why it was lost, once it was.
    lost: Option<qp::ConnectionError>,
    /// The handshake is done: for a server, once the client's Finished
    /// came; for a client, once the server confirmed it (its
    /// `HANDSHAKE_DONE`), see [`Hub::process`].
    established: bool,
    /// A server's connection that did not finish its handshake by then is
    /// closed.
    handshake_deadline: Option<Instant>,
    /// Conversations on it.
    users: usize,
    /// Connects waiting for it (its handshake, or room for a stream): it
    /// is not unused while one waits.
    dialing: usize,
    /// Since when nobody uses it (then it closes, see [`Limits::linger`]).
    unused_since: Option<Instant>,
    /// A client's: what it may be reused for.
    key: Option<Key>,
    /// Streams the peer opened whose header did not come yet.
    pending: Vec<StreamId>,
    streams: HashMap<StreamId, Stream>,
    /// We closed it.
    closing: bool,
}

/// An endpoint and its connections.
pub(crate) struct Hub {
    endpoint: qp::Endpoint,
    conns: HashMap<ConnectionHandle, Conn>,
    /// Streams whose header came, for the listener (each held already).
    accepted: VecDeque<(ConnectionHandle, StreamId)>,
    /// Datagrams the endpoint itself answered with (refusals, retries,
    /// stateless resets).
    responses: VecDeque<(SocketAddr, Vec<u8>)>,
    /// New connections are accepted (a listener is there).
    listening: bool,
    limits: Limits,
    /// Something a waiting conversation may care about happened.
    changed: bool,
    /// Connections that may have something to send.
    dirty: Vec<ConnectionHandle>,
    /// Streams that may have become readable or writable, or ended, since
    /// they were last taken (for drivers that are told, not woken).
    touched: Vec<(ConnectionHandle, StreamId)>,
    /// Streams were accepted since last taken.
    accepted_news: bool,
    /// Connections that had events since they were last taken (a connect
    /// under way learns of its handshake this way).
    conn_news: Vec<ConnectionHandle>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.conns.len())
            .field("accepted", &self.accepted.len())
            .field("listening", &self.listening)
            .finish()
    }
}

/// The error a lost connection means to its conversations.
fn lost_error(reason: &qp::ConnectionError) -> io::Error {
    use qp::ConnectionError as E;
    match reason {
        E::ApplicationClosed(_) | E::ConnectionClosed(_) | E::Reset => io::Error::new(
            io::ErrorKind::ConnectionReset,
            format!("QUIC connection closed: {reason}"),
        ),
        E::LocallyClosed => io::Error::new(io::ErrorKind::NotConnected, "QUIC connection closed"),
        E::TimedOut => io::Error::other("QUIC connection lost: the peer went silent"),
        _ => io::Error::other(format!("QUIC connection failed: {reason}")),
    }
}

impl Hub {
    /// A client's endpoint (it accepts no connections).
    pub(crate) fn client(limits: Limits) -> Hub {
        Hub::new(None, limits)
    }

    /// A listener's endpoint.
    pub(crate) fn server(config: Arc<qp::ServerConfig>, limits: Limits) -> Hub {
        let mut hub = Hub::new(Some(config), limits);
        hub.listening = true;
        hub
    }

    fn new(server: Option<Arc<qp::ServerConfig>>, limits: Limits) -> Hub {
        Hub {
            endpoint: qp::Endpoint::new(
                Arc::new(qp::EndpointConfig::default()),
                server,
                limits.mtu_discovery,
                None,
            ),
            conns: HashMap::new(),
            accepted: VecDeque::new(),
            responses: VecDeque::new(),
            listening: false,
            limits,
            changed: false,
            dirty: Vec::new(),
            touched: Vec::new(),
            accepted_news: false,
            conn_news: Vec::new(),
            buf: Vec::new(),
        }
    }

    /// Takes the streams that may have become readable or writable (or
    /// ended) since the last call, and whether streams were accepted.
    pub(crate) fn take_touched(&mut self, into: &mut Vec<(ConnectionHandle, StreamId)>) -> bool {
        into.append(&mut self.touched);
        std::mem::take(&mut self.accepted_news)
    }

    /// quinn-proto's own view: its side of the handshake is over (a
    /// client's Finished sent).
    #[cfg(test)]
    pub(crate) fn finished_sent(&self, ch: ConnectionHandle) -> bool {
        self.conns
            .get(&ch)
            .is_some_and(|c| !c.conn.is_handshaking())
    }

    /// Takes the connections that had events since the last call.
    pub(crate) fn take_conn_news(&mut self, into: &mut Vec<ConnectionHandle>) {
        into.append(&mut self.conn_news);
    }

    /// Takes whether something changed since the last call.
    pub(crate) fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Connections live (handshaking, open, closing or draining).
    pub(crate) fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Stops accepting: new connections are refused, streams accepted and
    /// never taken are reset.
    pub(crate) fn stop_listening(&mut self, now: Instant) {
        self.listening = false;
        while let Some((ch, id)) = self.accepted.pop_front() {
            self.release(ch, id, true, now);
        }
    }

    /// Closes every connection (a listener gone, its conversations too):
    /// their peers learn it at once instead of at their idle timeout.
    pub(crate) fn close_all(&mut self, now: Instant, reason: &'static str) {
        for (&ch, c) in &mut self.conns {
            if !c.closing {
                c.closing = true;
                c.conn
                    .close(now, VarInt::from_u32(CODE_NONE), reason.as_bytes().into());
                self.dirty.push(ch);
            }
        }
    }

    /// One datagram from `from`.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: BytesMut) {
        self.handle_datagram_with(now, from, None, None, data);
    }

    /// One datagram from `from`, with what the socket said of it: the
    /// local address it was sent to, and its ECN bits.
    pub(crate) fn handle_datagram_with(
        &mut self,
        now: Instant,
        from: SocketAddr,
        local_ip: Option<std::net::IpAddr>,
        ecn: Option<qp::EcnCodepoint>,
        data: BytesMut,
    ) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        match self
            .endpoint
            .handle(now, from, local_ip, ecn, data, &mut buf)
        {
            Some(qp::DatagramEvent::ConnectionEvent(ch, event)) => {
                if let Some(c) = self.conns.get_mut(&ch) {
                    c.conn.handle_event(event);
                    self.process(ch, now);
                }
            }
            Some(qp::DatagramEvent::NewConnection(incoming)) => {
                self.on_incoming(now, incoming, &mut buf);
            }
            Some(qp::DatagramEvent::Response(t)) => {
                self.responses
                    .push_back((t.destination, buf[..t.size].to_vec()));
            }
            None => {}
        }
        self.buf = buf;
    }

    fn on_incoming(&mut self, now: Instant, incoming: qp::Incoming, buf: &mut Vec<u8>) {
        buf.clear();
        let handshaking = self.conns.values().filter(|c| !c.established).count();
        if !self.listening || self.conns.len() >= self.limits.max_connections {
            let t = self.endpoint.refuse(incoming, buf);
            self.responses
                .push_back((t.destination, buf[..t.size].to_vec()));
            return;
        }
        if handshaking >= RETRY_ABOVE && !incoming.remote_address_validated() {
            if incoming.may_retry() {
                if let Ok(t) = self.endpoint.retry(incoming, buf) {
                    self.responses
                        .push_back((t.destination, buf[..t.size].to_vec()));
                }
            } else {
                self.endpoint.ignore(incoming);
            }
            return;
        }
        match self.endpoint.accept(incoming, now, buf, None) {
            Ok((ch, conn)) => {
                self.conns.insert(
                    ch,
                    Conn::new(conn, None, Some(now + self.limits.handshake_timeout)),
                );
                self.process(ch, now);
            }
            Err(e) => {
                if let Some(t) = e.response {
                    self.responses
                        .push_back((t.destination, buf[..t.size].to_vec()));
                }
            }
        }
    }

    /// A client connection to `key.addr`, or the one there is.
    pub(crate) fn connect(
        &mut self,
        now: Instant,
        config: qp::ClientConfig,
        key: Key,
    ) -> io::Result<ConnectionHandle> {
        // Not one whose conversations are all gone: it is on its way out,
        // and its server may be gone too (another may have its port).
        if let Some((&ch, _)) = self.conns.iter().find(|(_, c)| {
            c.key.as_ref() == Some(&key)
                && c.lost.is_none()
                && !c.closing
                && c.unused_since.is_none()
        }) {
            if let Some(c) = self.conns.get_mut(&ch) {
                c.dialing += 1;
            }
            return Ok(ch);
        }
        let (ch, conn) = self
            .endpoint
            .connect(now, config, key.addr, &key.name)
            .map_err(|e| io::Error::other(format!("QUIC connect: {e}")))?;
        self.conns.insert(ch, Conn::new(conn, Some(key), None));
        self.process(ch, now);
        Ok(ch)
    }

    /// `Ok(true)` once the handshake is done; the connection's error if it
    /// failed.
    pub(crate) fn established(&self, ch: ConnectionHandle) -> io::Result<bool> {
        let c = self.conn(ch)?;
        if let Some(reason) = &c.lost {
            return Err(lost_error(reason));
        }
        Ok(c.established)
    }

    /// A client connection whose handshake the caller gave up on (it took
    /// too long, or another address answered first): closed soon, as an
    /// unused one is, unless a conversation uses it.
    pub(crate) fn abandon(&mut self, ch: ConnectionHandle, now: Instant) {
        if let Some(c) = self.conns.get_mut(&ch) {
            c.dialing = c.dialing.saturating_sub(1);
            if c.users == 0 && c.dialing == 0 && c.unused_since.is_none() && c.key.is_some() {
                c.unused_since = Some(now);
                self.dirty.push(ch);
            }
        }
    }

    /// Opens a conversation's stream (its header written): `None` while the
    /// peer allows no more streams.
    pub(crate) fn open(&mut self, ch: ConnectionHandle) -> io::Result<Option<StreamId>> {
        let c = self.conn_mut(ch)?;
        if let Some(reason) = &c.lost {
            return Err(lost_error(reason));
        }
        let Some(id) = c.conn.streams().open(Dir::Bi) else {
            return Ok(None);
        };
        c.conn
            .send_stream(id)
            .write(&[STREAM_HEADER])
            .map_err(|e| io::Error::other(format!("QUIC stream: {e}")))?;
        c.streams.insert(
            id,
            Stream {
                held: true,
                ..Stream::default()
            },
        );
        c.users += 1;
        c.dialing = c.dialing.saturating_sub(1);
        c.unused_since = None;
        self.dirty.push(ch);
        Ok(Some(id))
    }

    /// A stream the listener accepted, taken.
    pub(crate) fn take_accepted(&mut self) -> Option<(ConnectionHandle, StreamId, SocketAddr)> {
        let (ch, id) = self.accepted.pop_front()?;
        let addr = self.conns.get(&ch)?.conn.remote_address();
        Some((ch, id, addr))
    }

    fn conn(&self, ch: ConnectionHandle) -> io::Result<&Conn> {
        self.conns
            .get(&ch)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "QUIC connection closed"))
    }

    fn conn_mut(&mut self, ch: ConnectionHandle) -> io::Result<&mut Conn> {
        self.conns
            .get_mut(&ch)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "QUIC connection closed"))
    }

    /// Reads what the stream has into `buf`: `Ok(0)` at the peer's end,
    /// `WouldBlock` when nothing is there yet.
    pub(crate) fn read(
        &mut self,
        ch: ConnectionHandle,
        id: StreamId,
        buf: &mut [u8],
    ) -> io::Result<usize> {
        let c = self
            .conns
            .get_mut(&ch)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "QUIC connection closed"))?;
        let s = c.streams.entry(id).or_default();
        if s.ended {
            return Ok(0);
        }
        if s.reset {
            return Err(io::ErrorKind::ConnectionReset.into());
        }
        let mut n = 0;
        let mut end = None;
        let transmit = match c.conn.recv_stream(id).read(true) {
            Ok(mut chunks) => {
                while n < buf.len() {
                    match chunks.next(buf.len() - n) {
                        Ok(Some(chunk)) => {
                            buf[n..n + chunk.bytes.len()].copy_from_slice(&chunk.bytes);
                            n += chunk.bytes.len();
                        }
                        Ok(None) => {
                            end = Some(false);
                            break;
                        }
                        Err(qp::ReadError::Blocked) => break,
                        Err(qp::ReadError::Reset(_)) => {
                            end = Some(true);
                            break;
                        }
                    }
                }
                chunks.finalize().should_transmit()
            }
            // Read to its end and freed, or stopped by us.
            Err(_) => {
                end = Some(false);
                false
            }
        };
        let s = c.streams.entry(id).or_default();
        match end {
            Some(false) => s.ended = true,
            Some(true) => s.reset = true,
            None if n < buf.len() => s.readable = false,
            None => {}
        }
        let result = match end {
            _ if n > 0 => Ok(n),
            Some(false) => Ok(0),
            Some(true) => Err(io::ErrorKind::ConnectionReset.into()),
            None => match &c.lost {
                Some(reason) => Err(lost_error(reason)),
                None => Err(io::ErrorKind::WouldBlock.into()),
            },
        };
        if transmit {
            self.dirty.push(ch);
        }
        result
    }

    /// Writes what the stream takes of `bufs`: `WouldBlock` when it takes
    /// nothing now (flow or congestion control).
    pub(crate) fn write(
        &mut self,
        ch: ConnectionHandle,
        id: StreamId,
        bufs: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        let c = self
            .conns
            .get_mut(&ch)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "QUIC connection closed"))?;
        if let Some(reason) = &c.lost {
            return Err(lost_error(reason));
        }
        let mut n = 0;
        let mut failed = None;
        {
            let mut stream = c.conn.send_stream(id);
            for b in bufs.iter().filter(|b| !b.is_empty()) {
                match stream.write(b) {
                    Ok(k) => {
                        n += k;
                        if k < b.len() {
                            break;
                        }
                    }
                    Err(qp::WriteError::Blocked) => break,
                    Err(qp::WriteError::Stopped(_)) => {
                        failed = Some(io::ErrorKind::ConnectionReset);
                        break;
                    }
                    Err(qp::WriteError::ClosedStream) => {
                        failed = Some(io::ErrorKind::BrokenPipe);
                        break;
                    }
                }
            }
        }
        if n > 0 {
            self.dirty.push(ch);
            return Ok(n);
        }
        let c = self.conns.get_mut(&ch).expect("looked up above");
        match failed {
            Some(kind) => {
                if kind == io::ErrorKind::ConnectionReset {
                    c.streams.entry(id).or_default().told = true;
                }
                Err(kind.into())
            }
            None if bufs.iter().all(|b| b.is_empty()) => Ok(0),
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    /// Ends our side of the stream after what was written.
    pub(crate) fn finish(&mut self, ch: ConnectionHandle, id: StreamId) {
        if let Some(c) = self.conns.get_mut(&ch) {
            let s = c.streams.entry(id).or_default();
            if !s.done_sending {
                s.done_sending = true;
                let _ = c.conn.send_stream(id).finish();
                self.dirty.push(ch);
            }
        }
    }

    /// Resets our side and stops the peer's: an abort.
    pub(crate) fn reset(&mut self, ch: ConnectionHandle, id: StreamId) {
        if let Some(c) = self.conns.get_mut(&ch) {
            let s = c.streams.entry(id).or_default();
            if !s.done_sending {
                s.done_sending = true;
                let _ = c.conn.send_stream(id).reset(VarInt::from_u32(CODE_NONE));
            }
            if !s.ended && !s.reset {
                s.reset = true;
                let _ = c.conn.recv_stream(id).stop(VarInt::from_u32(CODE_NONE));
            }
            self.dirty.push(ch);
        }
    }

    /// The certificates the peer presented, once the handshake is done.
    pub(crate) fn peer_certificates(
        &self,
        ch: ConnectionHandle,
    ) -> Option<Vec<rustls::pki_types::CertificateDer<'static>>> {
        let c = self.conns.get(&ch)?;
        let any = c.conn.crypto_session().peer_identity()?;
        any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
            .ok()
            .map(|b| *b)
    }

    /// `true` when bytes (or the end) may wait unread.
    pub(crate) fn has_unread(&self, ch: ConnectionHandle, id: StreamId) -> bool {
        self.conns
            .get(&ch)
            .and_then(|c| c.streams.get(&id))
            .is_some_and(|s| s.readable && !s.ended && !s.reset)
    }

    /// A reset that came after the peer's end (it stopped our side, so it
    /// did not read everything we sent), told once.
    pub(crate) fn take_error(&mut self, ch: ConnectionHandle, id: StreamId) -> Option<io::Error> {
        let c = self.conns.get_mut(&ch)?;
        let s = c.streams.get_mut(&id)?;
        if s.stopped && !s.told {
            s.told = true;
            return Some(io::ErrorKind::ConnectionReset.into());
        }
        None
    }

    /// The conversation on the stream is gone: its side finished (or reset
    /// with `reset`, or when the peer's bytes were left unread, as a socket
    /// closed with unread data is), the peer's stopped if not read to its
    /// end.
    pub(crate) fn release(
        &mut self,
        ch: ConnectionHandle,
        id: StreamId,
        reset: bool,
        now: Instant,
    ) {
        let unread = self.has_unread(ch, id);
        if reset || unread {
            self.reset(ch, id);
        } else {
            self.finish(ch, id);
        }
        let Some(c) = self.conns.get_mut(&ch) else {
            return;
        };
        if let Some(s) = c.streams.get_mut(&id) {
            if !s.ended && !s.reset {
                s.reset = true;
                let _ = c.conn.recv_stream(id).stop(VarInt::from_u32(CODE_NONE));
            }
            if s.held {
                s.held = false;
                c.users = c.users.saturating_sub(1);
                if c.users == 0 && c.dialing == 0 {
                    c.unused_since = Some(now);
                }
            }
        }
        c.streams.remove(&id);
        self.dirty.push(ch);
        self.changed = true;
    }

    /// Handles the timers due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let linger = self.limits.linger;
        let due: Vec<ConnectionHandle> = self
            .conns
            .iter_mut()
            .filter_map(|(&ch, c)| {
                c.next_timeout(linger)
                    .is_some_and(|t| t <= now)
                    .then_some(ch)
            })
            .collect();
        for ch in due {
            if let Some(c) = self.conns.get_mut(&ch) {
                if c.handshake_deadline.is_some_and(|t| t <= now) && !c.established {
                    c.handshake_deadline = None;
                    c.closing = true;
                    c.conn.close(
                        now,
                        VarInt::from_u32(CODE_HANDSHAKE_TIMEOUT),
                        "handshake timeout".into(),
                    );
                }
                if c.users == 0
                    && c.dialing == 0
                    && !c.closing
                    && c.key.is_some()
                    && c.unused_since.is_some_and(|t| {
                        c.conn.streams().send_streams() == 0 || t + self.limits.linger <= now
                    })
                {
                    c.closing = true;
                    c.conn
                        .close(now, VarInt::from_u32(CODE_NONE), "done".into());
                }
                if c.conn.poll_timeout().is_some_and(|t| t <= now) {
                    c.conn.handle_timeout(now);
                }
            }
            self.process(ch, now);
        }
    }

    /// The next time [`Hub::handle_timeout`] has something to do.
    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        let linger = self.limits.linger;
        self.conns
            .values_mut()
            .filter_map(|c| c.next_timeout(linger))
            .min()
    }

    /// The next datagram to send, written into `buf`: its destination and
    /// length. With `only`, that connection's (after a conversation wrote
    /// or read); without, any.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn poll_transmit(
        &mut self,
        now: Instant,
        only: Option<ConnectionHandle>,
        buf: &mut Vec<u8>,
    ) -> Option<(SocketAddr, usize)> {
        self.poll_transmit_batch(now, only, 1, buf)
            .map(|t| (t.destination, t.size))
    }

    /// The next datagrams to send, up to `segments` of one connection to
    /// one destination in `buf` (for segmentation offload: `segment_size`
    /// apart).
    pub(crate) fn poll_transmit_batch(
        &mut self,
        now: Instant,
        only: Option<ConnectionHandle>,
        segments: usize,
        buf: &mut Vec<u8>,
    ) -> Option<qp::Transmit> {
        if only.is_none() {
            if let Some((to, bytes)) = self.responses.pop_front() {
                buf.clear();
                buf.extend_from_slice(&bytes);
                return Some(qp::Transmit {
                    destination: to,
                    ecn: None,
                    size: bytes.len(),
                    segment_size: None,
                    src_ip: None,
                });
            }
        }
        loop {
            let ch = match only {
                Some(ch) => ch,
                None => *self.dirty.last()?,
            };
            buf.clear();
            let t = self
                .conns
                .get_mut(&ch)
                .and_then(|c| c.conn.poll_transmit(now, segments.max(1), buf));
            match t {
                Some(t) => return Some(t),
                None => {
                    self.dirty.retain(|&d| d != ch);
                    // Sending may have changed the timers.
                    self.process(ch, now);
                    if only.is_some() {
                        return None;
                    }
                }
            }
        }
    }

    /// Every connection may have something to send (after timers or
    /// datagrams).
    pub(crate) fn mark_all_dirty(&mut self) {
        self.dirty.clear();
        self.dirty.extend(self.conns.keys().copied());
    }

    /// Takes a connection's events: endpoint bookkeeping, the handshake, its
    /// loss, streams opened, readable and stopped.
    fn process(&mut self, ch: ConnectionHandle, now: Instant) {
        let Some(c) = self.conns.get_mut(&ch) else {
            return;
        };
        while let Some(event) = c.conn.poll_endpoint_events() {
            if let Some(back) = self.endpoint.handle_event(ch, event) {
                c.conn.handle_event(back);
            }
        }
        let mut opened = false;
        while let Some(event) = c.conn.poll() {
            if self.conn_news.last() != Some(&ch) {
                self.conn_news.push(ch);
            }
            self.changed = true;
            match event {
                qp::Event::Connected => {
                    // A client waits for the server's confirmation.
                    c.established = c.key.is_none();
                    c.handshake_deadline = None;
                }
                qp::Event::ConnectionLost { reason } => {
                    c.lost.get_or_insert(reason);
                    self.touched.extend(c.streams.keys().map(|&id| (ch, id)));
                }
                qp::Event::Stream(qp::StreamEvent::Opened { .. }) => opened = true,
                qp::Event::Stream(qp::StreamEvent::Readable { id }) => {
                    if let Some(s) = c.streams.get_mut(&id) {
                        s.readable = true;
                        self.touched.push((ch, id));
                    }
                }
                qp::Event::Stream(qp::StreamEvent::Stopped { id, .. }) => {
                    if let Some(s) = c.streams.get_mut(&id) {
                        s.stopped = true;
                        self.touched.push((ch, id));
                    }
                }
                qp::Event::Stream(
                    qp::StreamEvent::Writable { id } | qp::StreamEvent::Finished { id },
                ) if c.streams.contains_key(&id) => {
                    self.touched.push((ch, id));
                }
                _ => {}
            }
        }
        if !c.established
            && c.key.is_some()
            && !c.conn.is_handshaking()
            && c.conn.stats().frame_rx.handshake_done > 0
        {
            // A client's streams open once the server confirmed the
            // handshake, not at its own Finished: quinn-proto sends a
            // lost Finished again only within the congestion window, and
            // stream data sent before the server can read it fills that
            // window for good (the deadlock of quicwg/base-drafts#2886).
            // It costs a client's first message one round trip.
            c.established = true;
            if self.conn_news.last() != Some(&ch) {
                self.conn_news.push(ch);
            }
            self.changed = true;
        }
        if opened {
            // Only a listener takes streams, and only bidirectional ones.
            while let Some(id) = c.conn.streams().accept(Dir::Uni) {
                let _ = c.conn.recv_stream(id).stop(VarInt::from_u32(CODE_NONE));
            }
            while let Some(id) = c.conn.streams().accept(Dir::Bi) {
                if c.key.is_some() {
                    let _ = c.conn.recv_stream(id).stop(VarInt::from_u32(CODE_NONE));
                    let _ = c.conn.send_stream(id).reset(VarInt::from_u32(CODE_NONE));
                } else {
                    c.pending.push(id);
                }
            }
        }
        if !c.pending.is_empty() {
            let pending = std::mem::take(&mut c.pending);
            let waiting = pending.len();
            for id in pending {
                let got = match c.conn.recv_stream(id).read(true) {
                    Ok(mut chunks) => {
                        let got = match chunks.next(1) {
                            Ok(Some(chunk)) => Some(chunk.bytes.first() == Some(&STREAM_HEADER)),
                            Ok(None) | Err(qp::ReadError::Reset(_)) => Some(false),
                            Err(qp::ReadError::Blocked) => None,
                        };
                        let _ = chunks.finalize();
                        got
                    }
                    Err(_) => Some(false),
                };
                match got {
                    None => c.pending.push(id),
                    Some(true) if self.listening => {
                        c.streams.insert(
                            id,
                            Stream {
                                held: true,
                                readable: true,
                                ..Stream::default()
                            },
                        );
                        c.users += 1;
                        c.unused_since = None;
                        self.accepted.push_back((ch, id));
                        self.accepted_news = true;
                    }
                    Some(_) => {
                        let _ = c
                            .conn
                            .recv_stream(id)
                            .stop(VarInt::from_u32(CODE_BAD_HEADER));
                        let _ = c
                            .conn
                            .send_stream(id)
                            .reset(VarInt::from_u32(CODE_BAD_HEADER));
                    }
                }
            }
            if c.pending.len() < waiting {
                // Reading a header may have opened flow control windows.
                self.dirty.push(ch);
            }
        }
        if c.lost.is_some() {
            // Conversations on it learn at their next call; a stream never
            // accepted goes with it.
            c.pending.clear();
        }
        if c.conn.is_drained() {
            self.conns.remove(&ch);
            self.accepted.retain(|&(a, _)| a != ch);
            self.dirty.retain(|&d| d != ch);
            self.changed = true;
        }
        let _ = now;
    }
}

impl Conn {
    fn new(conn: qp::Connection, key: Option<Key>, handshake_deadline: Option<Instant>) -> Conn {
        Conn {
            conn,
            lost: None,
            established: false,
            handshake_deadline,
            users: 0,
            // A client's is made for a connect.
            dialing: usize::from(key.is_some()),
            unused_since: None,
            key,
            pending: Vec::new(),
            streams: HashMap::new(),
            closing: false,
        }
    }

    fn next_timeout(&mut self, linger: Duration) -> Option<Instant> {
        // A client closes a connection nobody uses; a server leaves that to
        // the client (or the idle timeout).
        let unused = self
            .unused_since
            .filter(|_| self.users == 0 && self.dialing == 0 && !self.closing && self.key.is_some())
            .map(|t| {
                if self.conn.streams().send_streams() == 0 {
                    t
                } else {
                    t + linger
                }
            });
        [
            self.conn.poll_timeout(),
            self.handshake_deadline.filter(|_| !self.established),
            unused,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}
