//! NATS: a conversation on a subject of a NATS server (`nats://`).
//!
//! The client protocol is converse's own engine
//! ([`crate::engine::nats`]); the byte carrier below is a TCP stream, or
//! converse's TLS where the server requires it.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use socket2::Socket;

use super::stream;
use super::{lock, sockopt, Delivery, Receiver, Sender, Stopper, Transport};
use crate::addr::{self, Addr, AddrError};
use crate::codec::Codec;
use crate::config::Config;
use crate::engine::nats::{
    encode_connect, encode_pub, encode_sub, op_len, parse_op, pub_len, valid_subject, Beat,
    Credentials, Keepalive, NatsFault, ServerInfo, ServerOp, MAX_CONTROL_LINE, PING, PONG,
};
use crate::error::{Error, Result};

/// The subscription id of a conversation's subject (one per connection).
pub(crate) const SID: u64 = 1;

/// Why a NATS conversation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NatsError {
    /// The server sent `-ERR` with this reason (for example
    /// `Authorization Violation`); the server closes the connection.
    Server(String),
    /// The server broke the protocol (a malformed operation).
    Protocol(String),
    /// The peer is not a NATS server (no `INFO` first).
    NotNats,
    /// The server answered none of our pings.
    Stale,
    /// The connection to the server ended or broke. What was published to
    /// the subject meanwhile is lost for this conversation (core NATS
    /// delivers at most once); [`Conversation::reconnect`](crate::Conversation::reconnect)
    /// connects again.
    Disconnected,
    /// The connection (`INFO`, `CONNECT`, the first `PONG`) did not finish
    /// within the handshake timeout.
    HandshakeTimeout,
    /// The server requires TLS, and this build has no TLS.
    TlsUnavailable,
}

impl std::fmt::Display for NatsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsError::Server(reason) => write!(f, "the NATS server said: {reason}"),
            NatsError::Protocol(why) => write!(f, "{why}"),
            NatsError::NotNats => f.write_str("not a NATS server (no INFO)"),
            NatsError::Stale => f.write_str("the NATS server answered no ping"),
            NatsError::Disconnected => f.write_str("the connection to the NATS server is lost"),
            NatsError::HandshakeTimeout => {
                f.write_str("the NATS server did not complete the connection in time")
            }
            NatsError::TlsUnavailable => {
                f.write_str("the NATS server requires TLS, and this build has no `tls` feature")
            }
        }
    }
}

fn nats_error(peer: &Addr, reason: NatsError) -> Error {
    Error::Nats {
        addr: peer.clone(),
        reason,
    }
}

fn fault_error(peer: &Addr, fault: NatsFault) -> Error {
    match fault {
        NatsFault::TooLarge { len, max } => Error::MessageTooLarge { len, max },
        other => nats_error(peer, NatsError::Protocol(other.describe())),
    }
}

// ---------------------------------------------------------------------------
// Where to connect.

/// A parsed `nats://[USER:PASS@|TOKEN@]HOST:PORT/SUBJECT[?queue=NAME]`.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) hostport: String,
    pub(crate) subject: String,
    pub(crate) queue: Option<String>,
    pub(crate) creds: Credentials,
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Target> {
        let (scheme, rest) = addr::split_url(url)?;
        if scheme != "nats" {
            return Err(addr::unknown_scheme(url, &["nats"]).into());
        }
        let bad = |why: &'static str| Error::from(AddrError::new(url, why));
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, subject) = rest
            .split_once('/')
            .ok_or_else(|| bad("expected nats://HOST:PORT/SUBJECT"))?;
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let mut creds = Credentials::default();
        let decode =
            |part: &str| percent_decode(part).ok_or_else(|| bad("credentials with a bad %-escape"));
        match userinfo.map(|u| u.split_once(':')) {
            None => {}
            Some(Some((user, pass))) => creds.user = Some((decode(user)?, decode(pass)?)),
            Some(None) => creds.token = userinfo.map(decode).transpose()?,
        }
        if !valid_subject(subject, true) {
            return Err(bad(
                "expected a NATS subject after the address: dot-separated tokens, no spaces",
            ));
        }
        let mut queue = None;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("queue", name)) if valid_subject(name, false) && !name.contains('.') => {
                    queue = Some(name.to_string())
                }
                _ => return Err(bad("the only query parameter is queue=NAME")),
            }
        }
        if hostport.is_empty() {
            return Err(bad("expected nats://HOST:PORT/SUBJECT"));
        }
        Ok(Target {
            hostport: hostport.to_string(),
            subject: subject.to_string(),
            queue,
            creds,
        })
    }

    fn publishable(&self) -> bool {
        valid_subject(&self.subject, false)
    }
}

/// `%XX` escapes decoded (so that a password may hold `@`, `:` or `/`);
/// `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            let hex = std::str::from_utf8(&hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------------------
// The stream below: TCP or TLS.

use super::below::{inner, inner_rx, InnerRx, InnerTx};

/// What both halves share: the sending side (the receiving half answers
/// pings and pings an idle server through it), and the limit the server
/// set.
struct Shared {
    tx: Mutex<InnerTx>,
    /// `PONG`s and `PING`s the receiving half could not write because the
    /// sending half was busy; the sending half writes them.
    pending: Mutex<Vec<u8>>,
    has_pending: AtomicBool,
    /// The largest payload: the server's `max_payload`, at most
    /// converse's own limit.
    max: AtomicUsize,
    /// The connection is over (the receiving half saw it end).
    down: AtomicBool,
    peer: Mutex<Addr>,
    local: Mutex<Addr>,
}

impl Shared {
    /// Writes a control operation from the receiving half: at once if the
    /// sending half is free, otherwise it goes out with the sending half's
    /// next call (or the receiving half's next try).
    fn control(&self, op: &[u8]) {
        lock(&self.pending).extend_from_slice(op);
        self.has_pending.store(true, Ordering::Release);
        self.flush_pending();
    }

    fn flush_pending(&self) {
        if let Ok(mut tx) = self.tx.try_lock() {
            if self.write_pending(&mut tx).is_ok() {
                let _ = inner!(&mut *tx, t => t.flush());
            }
        }
    }

    /// Queues what the receiving half left (the sending half locked).
    fn write_pending(&self, tx: &mut InnerTx) -> Result<()> {
        if !self.has_pending.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let ops = std::mem::take(&mut *lock(&self.pending));
        if ops.is_empty() {
            return Ok(());
        }
        inner!(tx, t => t.feed_encoded(ops.len(), |dst| dst.extend_from_slice(&ops)))
    }

    fn peer(&self) -> Addr {
        lock(&self.peer).clone()
    }
}

// ---------------------------------------------------------------------------
// Sending

/// The sending half of a NATS conversation: each message one `PUB` to the
/// subject.
pub struct NatsSender {
    shared: Arc<Shared>,
    subject: Arc<str>,
    publishable: bool,
    linger: Duration,
    write_timeout: Option<Duration>,
}

impl std::fmt::Debug for NatsSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsSender")
            .field("server", &self.shared.peer())
            .field("subject", &self.subject)
            .finish()
    }
}

impl NatsSender {
    fn publish(&mut self, msg: &[u8], flush: bool) -> Result<()> {
        if !self.publishable {
            return Err(Error::Unsupported("publishing to a subject with wildcards"));
        }
        let max = self.shared.max.load(Ordering::Relaxed);
        if msg.len() > max {
            return Err(Error::MessageTooLarge {
                len: msg.len() as u64,
                max: max as u64,
            });
        }
        if self.shared.down.load(Ordering::Acquire) {
            return Err(nats_error(&self.shared.peer(), NatsError::Disconnected));
        }
        let mut tx = lock(&self.shared.tx);
        self.shared.write_pending(&mut tx)?;
        let subject = &self.subject;
        let fed = inner!(&mut *tx, t => t.feed_encoded(pub_len(subject, msg.len()), |dst| {
            encode_pub(subject, msg, dst)
        }));
        let result = match fed {
            Ok(()) if flush => inner!(&mut *tx, t => t.flush()),
            other => other,
        };
        // A PONG the receiving half left while this call held the lock
        // goes out now, not with the next call (which may never come).
        if result.is_ok() && self.shared.has_pending.load(Ordering::Acquire) {
            let _ = self.shared.write_pending(&mut tx);
            let _ = inner!(&mut *tx, t => t.flush());
        }
        result.map_err(|e| self.lost(e))
    }

    /// A write that failed because the connection is gone is the typed
    /// disconnect.
    fn lost(&self, e: Error) -> Error {
        let gone = match e {
            Error::ConnectionReset { .. } | Error::BrokenPipe { .. } => true,
            Error::Closed => self.shared.down.load(Ordering::Acquire),
            _ => false,
        };
        if gone {
            self.shared.down.store(true, Ordering::Release);
            nats_error(&self.shared.peer(), NatsError::Disconnected)
        } else {
            e
        }
    }
}

impl Sender for NatsSender {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.publish(msg, true)
    }

    fn feed(&mut self, msg: &[u8]) -> Result<()> {
        self.publish(msg, false)
    }

    fn flush(&mut self) -> Result<()> {
        let mut tx = lock(&self.shared.tx);
        self.shared.write_pending(&mut tx)?;
        inner!(&mut *tx, t => t.flush()).map_err(|e| self.lost(e))
    }

    fn queued(&self) -> usize {
        let tx = lock(&self.shared.tx);
        inner!(&*tx, t => t.queued())
    }

    fn finish(&mut self, until: Instant) -> Result<()> {
        let mut tx = lock(&self.shared.tx);
        self.shared.write_pending(&mut tx)?;
        inner!(&mut *tx, t => t.finish(until))
    }

    fn abort(&mut self) {
        let mut tx = lock(&self.shared.tx);
        inner!(&mut *tx, t => t.abort())
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.shared.peer())
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(lock(&self.shared.local).clone())
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        let timeout = crate::config::check_timeout("write_timeout", timeout)?;
        self.write_timeout = timeout;
        let mut tx = lock(&self.shared.tx);
        inner!(&mut *tx, t => t.set_write_timeout(timeout))
    }

    fn write_timeout(&self) -> Option<Duration> {
        self.write_timeout
    }

    fn linger(&self) -> Duration {
        self.linger
    }

    fn set_linger(&mut self, linger: Duration) {
        self.linger = linger;
        let mut tx = lock(&self.shared.tx);
        inner!(&mut *tx, t => t.set_linger(linger))
    }

    fn max_message_len(&self) -> usize {
        self.shared.max.load(Ordering::Relaxed)
    }

    fn stopper(&self) -> Option<Stopper> {
        let tx = lock(&self.shared.tx);
        inner!(&*tx, t => t.stopper())
    }
}

// ---------------------------------------------------------------------------
// Receiving

/// The receiving half of a NATS conversation: what others publish to the
/// subject, one message each.
pub struct NatsReceiver {
    inner: InnerRx,
    shared: Arc<Shared>,
    target: Target,
    config: Config,
    keepalive: Keepalive,
    timeout: Option<Duration>,
    /// The read timeout the stream below has now.
    inner_timeout: Option<Duration>,
}

impl std::fmt::Debug for NatsReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsReceiver")
            .field("server", &self.shared.peer())
            .field("subject", &self.target.subject)
            .finish()
    }
}

impl NatsReceiver {
    /// The connection is over: both halves say so from now on.
    fn down(&mut self, err: Error) -> Error {
        self.shared.down.store(true, Ordering::Release);
        if let Some(stop) = inner_rx!(&self.inner, r => r.stopper()) {
            stop.stop();
        }
        err
    }

    fn disconnected(&mut self) -> Error {
        let err = nats_error(&self.shared.peer(), NatsError::Disconnected);
        self.down(err)
    }

    fn recv_message(&mut self) -> Result<Option<Bytes>> {
        if self.shared.down.load(Ordering::Acquire) {
            return Err(nats_error(&self.shared.peer(), NatsError::Disconnected));
        }
        if self.shared.has_pending.load(Ordering::Acquire) {
            self.shared.flush_pending();
        }
        let started = Instant::now();
        loop {
            if self.shared.has_pending.load(Ordering::Acquire) {
                self.shared.flush_pending();
            }
            let now = Instant::now();
            let user_left = self.timeout.map(|t| t.saturating_sub(now - started));
            if user_left.is_some_and(|l| l.is_zero()) {
                return Err(Error::Timeout);
            }
            let beat_left = self.keepalive.due().saturating_duration_since(now);
            if beat_left.is_zero() {
                match self.keepalive.poll(now) {
                    Beat::Ping => self.shared.control(PING),
                    Beat::Stale => {
                        let err = nats_error(&self.shared.peer(), NatsError::Stale);
                        return Err(self.down(err));
                    }
                    Beat::Wait(_) => {}
                }
                continue;
            }
            let wait = Some(user_left.map_or(beat_left, |u| u.min(beat_left)));
            if wait != self.inner_timeout {
                inner_rx!(&mut self.inner, r => r.set_read_timeout(wait))?;
                self.inner_timeout = wait;
            }
            let op = match inner_rx!(&mut self.inner, r => r.recv()) {
                Ok(Some(op)) => op,
                Ok(None) => return Err(self.disconnected()),
                Err(Error::Timeout) => continue,
                Err(Error::MessageTooLarge { len, max }) => {
                    return Err(self.down(Error::MessageTooLarge { len, max }))
                }
                Err(Error::InvalidFrame { reason, .. }) => {
                    let err =
                        nats_error(&self.shared.peer(), NatsError::Protocol(reason.to_string()));
                    return Err(self.down(err));
                }
                Err(
                    Error::ConnectionReset { .. }
                    | Error::UnexpectedEof { .. }
                    | Error::BrokenPipe { .. }
                    | Error::NoCloseNotify { .. },
                ) => return Err(self.disconnected()),
                Err(e) => return Err(self.down(e)),
            };
            self.keepalive.heard(Instant::now());
            match parse_op(op) {
                Ok(ServerOp::Msg { sid, payload, .. }) if sid == SID => return Ok(Some(payload)),
                Ok(ServerOp::Msg { .. } | ServerOp::Pong | ServerOp::Ok) => {}
                Ok(ServerOp::Ping) => self.shared.control(PONG),
                Ok(ServerOp::Info(info)) => set_max(&self.shared, &info, &self.config),
                Ok(ServerOp::Err(reason)) => {
                    let err = nats_error(&self.shared.peer(), NatsError::Server(reason));
                    return Err(self.down(err));
                }
                Err(fault) => {
                    let err = fault_error(&self.shared.peer(), fault);
                    return Err(self.down(err));
                }
            }
        }
    }

    /// A new connection to the same server, subscribed to the same subject
    /// with the same subscription id; the sending half uses it too.
    fn reconnect_now(&mut self) -> Result<()> {
        let fresh = Nats::connect_target(&self.target, &self.config)?;
        let Nats { tx, rx } = fresh;
        let NatsReceiver {
            inner,
            shared: rx_shared,
            keepalive,
            inner_timeout,
            ..
        } = rx;
        drop(rx_shared);
        let fresh_shared = Arc::try_unwrap(tx.shared)
            .map_err(|_| Error::Unsupported("a NATS connection shared while it is made"))?;
        let Shared {
            tx: new_inner,
            max,
            peer,
            local,
            ..
        } = fresh_shared;
        // Swap the carrier under the sending half's lock.
        {
            let mut tx = lock(&self.shared.tx);
            *tx = new_inner.into_inner().unwrap_or_else(|e| e.into_inner());
        }
        self.inner = inner;
        self.inner_timeout = inner_timeout;
        self.keepalive = keepalive;
        self.shared
            .max
            .store(max.load(Ordering::Relaxed), Ordering::Relaxed);
        *lock(&self.shared.peer) = lock(&peer).clone();
        *lock(&self.shared.local) = lock(&local).clone();
        lock(&self.shared.pending).clear();
        self.shared.has_pending.store(false, Ordering::Release);
        self.shared.down.store(false, Ordering::Release);
        Ok(())
    }
}

impl Receiver for NatsReceiver {
    fn recv(&mut self) -> Result<Option<Bytes>> {
        self.recv_message()
    }

    /// Reads until the server ends the connection ([`Delivery::Confirmed`])
    /// or `until`.
    fn drain(&mut self, until: Instant) -> Result<Delivery> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Delivery::Unknown);
            }
            inner_rx!(&mut self.inner, r => r.set_read_timeout(Some(left)))?;
            self.inner_timeout = Some(left);
            match inner_rx!(&mut self.inner, r => r.recv()) {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(Delivery::Confirmed),
                Err(_) => return Ok(Delivery::Unknown),
            }
        }
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.shared.peer())
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(lock(&self.shared.local).clone())
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = crate::config::check_timeout("read_timeout", timeout)?;
        Ok(())
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn set_message_deadline(&mut self, deadline: Duration) -> Result<()> {
        inner_rx!(&mut self.inner, r => r.set_message_deadline(deadline))
    }

    fn max_message_len(&self) -> usize {
        self.shared.max.load(Ordering::Relaxed)
    }

    fn stopper(&self) -> Option<Stopper> {
        inner_rx!(&self.inner, r => r.stopper())
    }

    fn on_split(&mut self) {
        inner_rx!(&mut self.inner, r => r.on_split())
    }

    fn reconnect(&mut self) -> Result<()> {
        // The old connection, if it still stands, is given up.
        if let Some(stop) = inner_rx!(&self.inner, r => r.stopper()) {
            stop.stop();
        }
        self.shared.down.store(true, Ordering::Release);
        self.reconnect_now()
    }
}

fn set_max(shared: &Shared, info: &ServerInfo, config: &Config) {
    let max = info.payload_limit(config.max_message_len);
    shared.max.store(max, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------
// The transport and its handshake

/// A NATS conversation's transport (`nats://HOST:PORT/SUBJECT`): `send`
/// publishes to the subject, `recv` returns what others publish to it,
/// one message each (our own publications are not echoed back).
///
/// * **At most once.** Core NATS keeps nothing: a message published while
///   this conversation is not subscribed (before it connects, or while it
///   is disconnected) is not delivered to it. When the connection to the
///   server ends or breaks, both halves report
///   [`Error::Nats`] with [`NatsError::Disconnected`];
///   [`Conversation::reconnect`](crate::Conversation::reconnect) connects
///   again and subscribes anew. What was published meanwhile is lost.
/// * **Limits.** The conversation's `max_message_len` is the server's
///   `max_payload` (at most [`Config::max_message_len`]): a larger `send`
///   is [`Error::MessageTooLarge`] before anything is written, and a
///   `MSG` declaring more is refused from its control line, before a byte
///   of it is buffered. Control lines are at most 4096 bytes.
/// * **Keepalive.** The server's `PING`s are answered; when the server is
///   quiet for [`Config::ping_interval`] the receiving half pings it, and
///   two unanswered pings are [`NatsError::Stale`].
/// * **Credentials** come from the URL, `%`-escaped where needed (`nats://USER:PASS@HOST:PORT/S` or
///   `nats://TOKEN@HOST:PORT/S`); a server that requires TLS gets it
///   (converse's TLS, verified with [`Config::tls_client`]).
/// * `?queue=NAME` joins a queue group: each message goes to one member
///   of the group.
pub struct Nats {
    tx: NatsSender,
    rx: NatsReceiver,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats")
            .field("server", &self.tx.shared.peer())
            .field("subject", &self.tx.subject)
            .finish()
    }
}

impl Transport for Nats {
    type Sender = NatsSender;
    type Receiver = NatsReceiver;

    fn into_halves(self) -> (NatsSender, NatsReceiver) {
        (self.tx, self.rx)
    }
}

/// The connection below, as the switchboard takes it over.
pub(crate) enum Carried {
    Tcp(Box<stream::StreamParts>),
    #[cfg(feature = "tls")]
    Tls(Box<super::tls::TlsParts>),
}

/// The parts the switchboard takes over: a TCP stream whose handshake is
/// done, and the NATS state.
pub(crate) struct NatsParts {
    pub(crate) stream: Carried,
    pub(crate) subject: Arc<str>,
    pub(crate) max: usize,
    pub(crate) ping_interval: Duration,
}

impl Nats {
    /// Connects to `nats://[USER:PASS@|TOKEN@]HOST:PORT/SUBJECT[?queue=NAME]`
    /// and subscribes to the subject; returns once the server has
    /// answered (within [`Config::handshake_timeout`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidAddress`] for a URL that is not one;
    /// [`Error::ConnectionRefused`] and other I/O errors;
    /// [`Error::Nats`] when the server refuses (`-ERR`, for example
    /// `Authorization Violation`), is not a NATS server, or is too slow.
    pub fn connect(url: &str, config: &Config) -> Result<Nats> {
        config.validate()?;
        let target = Target::parse(url)?;
        Nats::connect_target(&target, config)
    }

    fn connect_target(target: &Target, config: &Config) -> Result<Nats> {
        let url = format!("nats://{}", target.hostport);
        let addrs = addr::resolve(&url, &target.hostport)?;
        let mut last = None;
        for addr in addrs {
            match Nats::connect_one(addr, target, config) {
                Err(e @ Error::ConnectionRefused { .. }) | Err(e @ Error::Io { .. }) => {
                    last = Some(e)
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| addr::no_address(&url).into()))
    }

    fn connect_one(addr: SocketAddr, target: &Target, config: &Config) -> Result<Nats> {
        let started = Instant::now();
        let until = started + config.handshake_timeout;
        let peer = Addr::Nats(addr);
        let socket = sockopt::tcp_connect(addr, config).map_err(|e| Error::from_io(e, &peer))?;
        let info = read_info(&socket, &peer, until)?;
        let max = info.payload_limit(config.max_message_len);
        let codecs = (
            crate::codec::Framing::Raw.codec(usize::MAX / 2),
            Codec::nats_ops(max),
        );
        let local = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map(Addr::Nats)
            .unwrap_or(Addr::Unknown);
        let (tx, rx) = if info.tls_required {
            #[cfg(feature = "tls")]
            {
                let host = super::tls::host_of(&target.hostport)?;
                let name = super::tls::server_name(host)?;
                let tls = crate::Tls::client_with(socket, addr, name, config, codecs)?;
                let (tx, rx) = tls.into_halves();
                (InnerTx::Tls(tx), InnerRx::Tls(rx))
            }
            #[cfg(not(feature = "tls"))]
            {
                let _ = (socket, codecs);
                return Err(nats_error(&peer, NatsError::TlsUnavailable));
            }
        } else {
            sockopt::tcp_stream(&socket, config).map_err(|e| Error::from_io(e, &peer))?;
            let (tx, rx) = stream::halves_with(
                socket,
                local.clone(),
                peer.clone(),
                config,
                codecs.0,
                codecs.1,
            )?;
            (InnerTx::Tcp(tx), InnerRx::Tcp(rx))
        };
        let shared = Arc::new(Shared {
            tx: Mutex::new(tx),
            pending: Mutex::new(Vec::new()),
            has_pending: AtomicBool::new(false),
            max: AtomicUsize::new(max),
            down: AtomicBool::new(false),
            peer: Mutex::new(peer.clone()),
            local: Mutex::new(local),
        });
        let mut nats = Nats {
            tx: NatsSender {
                shared: Arc::clone(&shared),
                subject: Arc::from(target.subject.as_str()),
                publishable: target.publishable(),
                linger: config.linger,
                write_timeout: config.write_timeout,
            },
            rx: NatsReceiver {
                inner: rx,
                shared,
                target: target.clone(),
                config: config.clone(),
                keepalive: Keepalive::new(config.ping_interval, started),
                timeout: config.read_timeout,
                inner_timeout: None,
            },
        };
        nats.handshake(&info, target, until)?;
        Ok(nats)
    }

    /// `CONNECT`, `SUB`, `PING`; then everything up to the `PONG` (or
    /// `-ERR`).
    fn handshake(&mut self, info: &ServerInfo, target: &Target, until: Instant) -> Result<()> {
        let peer = self.tx.shared.peer();
        let timed_out = |e: Error| match e {
            Error::Timeout => nats_error(&peer, NatsError::HandshakeTimeout),
            e => e,
        };
        let mut hello = encode_connect(&target.creds, info.tls_required, "converse");
        hello.extend_from_slice(&encode_sub(&target.subject, target.queue.as_deref(), SID));
        hello.extend_from_slice(PING);
        let left = || {
            until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1))
        };
        {
            let mut tx = lock(&self.tx.shared.tx);
            inner!(&mut *tx, t => t.set_write_timeout(Some(left())))?;
            let sent = inner!(&mut *tx, t => t.send(&hello)).map_err(timed_out);
            inner!(&mut *tx, t => t.set_write_timeout(self.tx.write_timeout))?;
            sent?;
        }
        loop {
            if Instant::now() >= until {
                return Err(nats_error(&peer, NatsError::HandshakeTimeout));
            }
            inner_rx!(&mut self.rx.inner, r => r.set_read_timeout(Some(left())))?;
            let op = match inner_rx!(&mut self.rx.inner, r => r.recv()) {
                Ok(Some(op)) => op,
                Ok(None) => return Err(nats_error(&peer, NatsError::Disconnected)),
                Err(Error::InvalidFrame { reason, .. }) => {
                    return Err(nats_error(&peer, NatsError::Protocol(reason.to_string())))
                }
                Err(e) => return Err(timed_out(e)),
            };
            match parse_op(op).map_err(|f| fault_error(&peer, f))? {
                ServerOp::Pong => break,
                ServerOp::Ping => {
                    let mut tx = lock(&self.tx.shared.tx);
                    inner!(&mut *tx, t => t.send(PONG))?;
                }
                ServerOp::Err(reason) => return Err(nats_error(&peer, NatsError::Server(reason))),
                ServerOp::Info(info) => set_max(&self.tx.shared, &info, &self.rx.config),
                ServerOp::Ok | ServerOp::Msg { .. } => {}
            }
        }
        let timeout = self.rx.timeout;
        inner_rx!(&mut self.rx.inner, r => r.set_read_timeout(timeout))?;
        self.rx.inner_timeout = timeout;
        self.rx.keepalive.heard(Instant::now());
        Ok(())
    }

    /// The subject this conversation publishes to and receives from.
    pub fn subject(&self) -> &str {
        &self.tx.subject
    }

    /// The parts a switchboard takes over (not split).
    pub(crate) fn into_parts(self) -> Option<NatsParts> {
        let Nats { tx, rx } = self;
        let NatsSender {
            shared, subject, ..
        } = tx;
        let NatsReceiver {
            inner,
            config,
            shared: rx_shared,
            ..
        } = rx;
        drop(rx_shared);
        let max = shared.max.load(Ordering::Relaxed);
        let pending = std::mem::take(&mut *lock(&shared.pending));
        let shared = Arc::try_unwrap(shared).ok()?;
        let tx = shared.tx.into_inner().unwrap_or_else(|e| e.into_inner());
        let stream = match (tx, inner) {
            (InnerTx::Tcp(mut tx), InnerRx::Tcp(rx)) => {
                if !pending.is_empty() {
                    tx.feed_encoded(pending.len(), |dst| dst.extend_from_slice(&pending))
                        .ok()?;
                }
                Carried::Tcp(Box::new(stream::into_parts(tx, rx)?))
            }
            #[cfg(feature = "tls")]
            (InnerTx::Tls(mut tx), InnerRx::Tls(rx)) => {
                if !pending.is_empty() {
                    tx.feed_encoded(pending.len(), |dst| dst.extend_from_slice(&pending))
                        .ok()?;
                }
                Carried::Tls(Box::new(super::tls::into_parts(tx, rx)?))
            }
            #[cfg(feature = "tls")]
            _ => return None,
        };
        Some(NatsParts {
            stream,
            subject,
            max,
            ping_interval: config.ping_interval,
        })
    }
}

/// Reads the server's first line, which must be `INFO`, straight from the
/// socket (before TLS, which starts after it).
fn read_info(socket: &Socket, peer: &Addr, until: Instant) -> Result<ServerInfo> {
    let mut line = Vec::with_capacity(512);
    let mut byte = [0u8; 1];
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(nats_error(peer, NatsError::HandshakeTimeout));
        }
        socket
            .set_read_timeout(Some(left))
            .map_err(|e| Error::from_io(e, peer))?;
        match (&*socket).read(&mut byte) {
            Ok(0) => return Err(nats_error(peer, NatsError::NotNats)),
            Ok(_) => {
                line.push(byte[0]);
                if byte[0] == b'\n' {
                    break;
                }
                if line.len() > MAX_CONTROL_LINE + 2 {
                    return Err(nats_error(peer, NatsError::NotNats));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(nats_error(peer, NatsError::HandshakeTimeout))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::from_io(e, peer)),
        }
    }
    let _ = socket.set_read_timeout(None);
    match op_len(&line, 0) {
        Ok(Some(n)) if n == line.len() => match parse_op(Bytes::from(line)) {
            Ok(ServerOp::Info(info)) => Ok(info),
            Ok(ServerOp::Err(reason)) => Err(nats_error(peer, NatsError::Server(reason))),
            Ok(_) => Err(nats_error(peer, NatsError::NotNats)),
            Err(fault) => Err(nats_error(peer, NatsError::Protocol(fault.describe()))),
        },
        _ => Err(nats_error(peer, NatsError::NotNats)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_subject_queue_and_escaped_credentials() {
        let t = Target::parse("nats://me:p%40ss%3Aw%2Frd@127.0.0.1:4222/chat.room?queue=workers")
            .unwrap();
        assert_eq!(t.hostport, "127.0.0.1:4222");
        assert_eq!(t.subject, "chat.room");
        assert_eq!(t.queue.as_deref(), Some("workers"));
        assert_eq!(t.creds.user, Some(("me".into(), "p@ss:w/rd".into())));
        let t = Target::parse("nats://s3cr%65t@[::1]:4222/a.*").unwrap();
        assert_eq!(t.creds.token.as_deref(), Some("s3cret"));
        assert!(!t.publishable());
        for bad in [
            "nats://me:%4@127.0.0.1:4222/a",
            "nats://me:%zz@127.0.0.1:4222/a",
            "nats://@127.0.0.1:4222",
            "tcp://127.0.0.1:4222/a",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
