//! WebSocket (`ws://`, and `wss://` over converse's TLS): a protocol layer
//! above a stream transport. The HTTP upgrade is tungstenite's (request
//! and response parsing, the accept key); frames and messages are the
//! crate's own engine ([`crate::engine::websocket`]), fed by the stream
//! driver with a codec that cuts whole frames and checks each header before
//! anything is allocated.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use socket2::Socket;

use super::listener::StreamListener;
use super::stream;
use super::{lock, sockopt, Delivery, Receiver, Sender, Stopper, Transport};
use crate::addr::{self, Addr};
use crate::codec::Codec;
use crate::config::Config;
use crate::engine::websocket::{
    encode, Lent, MaskKeys, OpCode, ReadFault, Role, WsEvent, WsReader, CLOSE_NORMAL,
    CLOSE_PROTOCOL, CLOSE_TOO_BIG, MAX_HEADER,
};
use crate::error::{Error, Result};

/// The largest HTTP head of an upgrade request or response.
pub(crate) const MAX_HTTP_HEAD: usize = 16 * 1024;

/// Why a WebSocket handshake failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WsError {
    /// The peer spoke HTTP but did not ask for a WebSocket (a plain `GET`,
    /// a browser looking for a page): it was answered `426 Upgrade
    /// Required` (or the page, on a switchboard that serves one).
    NotWebSocket,
    /// The server answered the upgrade with this HTTP status instead of
    /// `101 Switching Protocols`.
    Refused(u16),
    /// The upgrade request or response is not valid (what is wrong).
    BadHandshake(String),
    /// The upgrade did not finish within the handshake timeout.
    HandshakeTimeout,
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::NotWebSocket => f.write_str("not a WebSocket upgrade request"),
            WsError::Refused(status) => {
                write!(
                    f,
                    "the server refused the WebSocket upgrade (HTTP {status})"
                )
            }
            WsError::BadHandshake(why) => write!(f, "bad WebSocket handshake: {why}"),
            WsError::HandshakeTimeout => {
                f.write_str("the WebSocket handshake did not finish in time")
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The stream below: TCP or TLS.

use super::below::{inner, inner_rx, InnerRx, InnerTx};

impl InnerRx {
    fn set_codec(&mut self, codec: Codec) {
        inner_rx!(self, r => r.set_codec(codec))
    }
}

/// The codecs of a WebSocket's stream: frames go out as bytes already
/// encoded (raw, a frame header's worth above the limit); what comes in is
/// first an HTTP head, then whole frames.
fn codecs(config: &Config) -> (Codec, Codec) {
    (
        crate::codec::Framing::Raw.codec(config.max_message_len.saturating_add(MAX_HEADER)),
        Codec::http_head(MAX_HTTP_HEAD),
    )
}

// ---------------------------------------------------------------------------
// Sending

struct TxState {
    inner: InnerTx,
    /// Where frames are encoded.
    scratch: BytesMut,
    /// Masking keys (a client's).
    keys: Option<MaskKeys>,
    close_sent: bool,
}

impl TxState {
    /// Encodes one frame into the scratch buffer.
    fn frame(&mut self, opcode: OpCode, payload: &[u8]) -> &[u8] {
        self.scratch.clear();
        let mask = self.keys.as_mut().map(MaskKeys::next_key);
        encode(opcode, payload, mask, &mut self.scratch);
        &self.scratch
    }

    fn send(&mut self, opcode: OpCode, payload: &[u8]) -> Result<()> {
        self.frame(opcode, payload);
        let frame = std::mem::take(&mut self.scratch);
        let result = inner!(&mut self.inner, t => t.send(&frame));
        self.scratch = frame;
        result
    }

    /// Queues one frame, encoded straight into the stream's queue.
    fn feed(&mut self, opcode: OpCode, payload: &[u8]) -> Result<()> {
        let mask = self.keys.as_mut().map(MaskKeys::next_key);
        let len = payload.len() + MAX_HEADER;
        inner!(&mut self.inner, t => t.feed_encoded(len, |dst| encode(opcode, payload, mask, dst)))
    }
}

/// What both halves share: the sending side (the receiving half answers
/// pings and the peer's close through it), and a pong waiting for it.
struct Shared {
    tx: Mutex<TxState>,
    /// A pong (or a close reply) the receiving half could not send because
    /// the sending half was busy; the latest only (RFC 6455 5.5.3).
    pending: Mutex<Option<(OpCode, Bytes)>>,
    has_pending: AtomicBool,
    local: Addr,
    peer: Addr,
}

impl Shared {
    /// Sends a control frame from the receiving half: at once if the
    /// sending half is free (waiting at most `PATIENCE` for the socket),
    /// otherwise through the sending half, which sends what is pending at
    /// the end of what it is doing.
    fn reply(&self, opcode: OpCode, payload: Bytes) {
        *lock(&self.pending) = Some((opcode, payload));
        self.has_pending.store(true, Ordering::Release);
        self.flush_pending();
    }

    /// Sends the pending control frame from the receiving half, if the
    /// sending half can be had within a moment; if it is busy, it sends it
    /// itself when its call ends (or the receiving half's next call does).
    fn flush_pending(&self) {
        const PATIENCE: Duration = Duration::from_millis(50);
        let give_up = Instant::now() + Duration::from_millis(10);
        while self.has_pending.load(Ordering::Acquire) {
            if let Ok(mut tx) = self.tx.try_lock() {
                if self.send_pending(&mut tx).is_ok() {
                    let saved = inner!(&tx.inner, t => t.write_timeout());
                    let patience = Some(saved.map_or(PATIENCE, |s| s.min(PATIENCE)));
                    let _ = inner!(&mut tx.inner, t => t.set_write_timeout(patience));
                    let _ = inner!(&mut tx.inner, t => t.flush());
                    let _ = inner!(&mut tx.inner, t => t.set_write_timeout(saved));
                }
                return;
            }
            if Instant::now() >= give_up {
                return;
            }
            std::thread::yield_now();
        }
    }

    /// Sends what the receiving half left (called with the sending half
    /// locked).
    fn send_pending(&self, tx: &mut TxState) -> Result<()> {
        if !self.has_pending.load(Ordering::Acquire) {
            return Ok(());
        }
        self.has_pending.store(false, Ordering::Release);
        if let Some((opcode, payload)) = lock(&self.pending).take() {
            if tx.close_sent {
                return Ok(());
            }
            if opcode == OpCode::Close {
                tx.close_sent = true;
            }
            tx.feed(opcode, &payload)?;
        }
        Ok(())
    }
}

/// The sending half of a WebSocket conversation: each message one frame,
/// binary ([`send`](Sender::send)) or text ([`send_text`](Sender::send_text),
/// so that a browser receives a string).
pub struct WsSender {
    shared: Arc<Shared>,
    max: usize,
}

impl std::fmt::Debug for WsSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsSender")
            .field("peer", &self.shared.peer)
            .finish()
    }
}

impl WsSender {
    fn check(&self, len: usize) -> Result<()> {
        if len > self.max {
            return Err(Error::MessageTooLarge {
                len: len as u64,
                max: self.max as u64,
            });
        }
        Ok(())
    }

    fn send_op(&mut self, opcode: OpCode, msg: &[u8]) -> Result<()> {
        self.check(msg.len())?;
        let mut tx = lock(&self.shared.tx);
        if tx.close_sent {
            return Err(Error::Closed);
        }
        self.shared.send_pending(&mut tx)?;
        tx.send(opcode, msg)?;
        // A pong the receiving half left while this send was under way.
        if self.shared.has_pending.load(Ordering::Acquire) {
            self.shared.send_pending(&mut tx)?;
            inner!(&mut tx.inner, t => t.flush())?;
        }
        Ok(())
    }
}

impl Sender for WsSender {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_op(OpCode::Binary, msg)
    }

    fn send_text(&mut self, text: &str) -> Result<()> {
        self.send_op(OpCode::Text, text.as_bytes())
    }

    fn feed(&mut self, msg: &[u8]) -> Result<()> {
        self.check(msg.len())?;
        let mut tx = lock(&self.shared.tx);
        if tx.close_sent {
            return Err(Error::Closed);
        }
        self.shared.send_pending(&mut tx)?;
        tx.feed(OpCode::Binary, msg)
    }

    fn flush(&mut self) -> Result<()> {
        let mut tx = lock(&self.shared.tx);
        self.shared.send_pending(&mut tx)?;
        inner!(&mut tx.inner, t => t.flush())
    }

    fn queued(&self) -> usize {
        let tx = lock(&self.shared.tx);
        inner!(&tx.inner, t => t.queued())
    }

    /// The close handshake: a close frame (1000) after everything queued,
    /// then the end of the stream below.
    fn finish(&mut self, until: Instant) -> Result<()> {
        let mut tx = lock(&self.shared.tx);
        if !tx.close_sent {
            tx.close_sent = true;
            let _ = self.shared.send_pending(&mut tx);
            // A failed conversation has nothing to close: its error was
            // reported then.
            if tx.feed(OpCode::Close, &CLOSE_NORMAL.to_be_bytes()).is_err() {
                return inner!(&mut tx.inner, t => t.finish(until));
            }
        }
        inner!(&mut tx.inner, t => t.finish(until))
    }

    fn abort(&mut self) {
        let mut tx = lock(&self.shared.tx);
        tx.close_sent = true;
        inner!(&mut tx.inner, t => t.abort())
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.shared.peer.clone())
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self.shared.local.clone())
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        let mut tx = lock(&self.shared.tx);
        inner!(&mut tx.inner, t => t.set_write_timeout(timeout))
    }

    fn write_timeout(&self) -> Option<Duration> {
        let tx = lock(&self.shared.tx);
        inner!(&tx.inner, t => t.write_timeout())
    }

    fn linger(&self) -> Duration {
        let tx = lock(&self.shared.tx);
        inner!(&tx.inner, t => t.linger())
    }

    fn set_linger(&mut self, linger: Duration) {
        let mut tx = lock(&self.shared.tx);
        inner!(&mut tx.inner, t => t.set_linger(linger))
    }

    fn max_message_len(&self) -> usize {
        self.max
    }

    fn stopper(&self) -> Option<Stopper> {
        let tx = lock(&self.shared.tx);
        inner!(&tx.inner, t => t.stopper())
    }

    #[cfg(feature = "tls")]
    fn peer_identity(&self) -> Option<crate::tls::PeerIdentity> {
        let tx = lock(&self.shared.tx);
        inner!(&tx.inner, t => t.peer_identity())
    }
}

// ---------------------------------------------------------------------------
// Receiving

/// The receiving half of a WebSocket conversation: one message per
/// WebSocket message, text or binary alike (`recv_text` works on either if
/// it is UTF-8). Pings are answered; the peer's close frame is answered
/// and is the clean end (`Ok(None)`).
pub struct WsReceiver {
    inner: InnerRx,
    shared: Arc<Shared>,
    reader: WsReader,
    /// The user's read timeout (the stream below gets what is left of it,
    /// or of a fragmented message's deadline).
    timeout: Option<Duration>,
    /// The peer's close frame came.
    closed: bool,
    /// The text flag of the last message received.
    last_text: bool,
    max: usize,
    /// The read timeout the stream below has now.
    inner_timeout: Option<Duration>,
    /// Frames come masked (a server's): lend them and copy once.
    lend: bool,
    /// Where small messages from a client are unmasked to be lent
    /// (at most `LEND_MAX` bytes).
    scratch: Vec<u8>,
}

impl std::fmt::Debug for WsReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsReceiver")
            .field("peer", &self.shared.peer)
            .finish()
    }
}

impl WsReceiver {
    /// `true` when the last message received came in a text frame.
    pub fn last_was_text(&self) -> bool {
        self.last_text
    }

    fn fail(&mut self, fault: ReadFault) -> Error {
        let peer = self.shared.peer.clone();
        let (code, err) = match fault {
            ReadFault::Frame(crate::engine::websocket::FrameFault::Invalid(reason)) => {
                (CLOSE_PROTOCOL, Error::InvalidFrame { addr: peer, reason })
            }
            ReadFault::Frame(crate::engine::websocket::FrameFault::TooLarge { len, max }) => {
                (CLOSE_TOO_BIG, Error::MessageTooLarge { len, max })
            }
            ReadFault::Deadline(deadline) => (
                CLOSE_PROTOCOL,
                Error::DeadlineExceeded {
                    addr: peer,
                    deadline,
                },
            ),
        };
        self.shared
            .reply(OpCode::Close, Bytes::copy_from_slice(&code.to_be_bytes()));
        // The stream below is over too.
        if let Some(stop) = inner_rx!(&self.inner, r => r.stopper()) {
            stop.stop();
        }
        err
    }

    /// A frame from below, bounded by the read timeout and a fragmented
    /// message's deadline.
    fn next_frame(
        &mut self,
        started: Option<Instant>,
        lent: bool,
    ) -> Result<Option<std::result::Result<Lent, ReadFault>>> {
        // The clock is read only when something is timed: a read timeout,
        // or a fragmented message under way.
        let wait = if self.timeout.is_some() || self.reader.in_message() {
            let now = Instant::now();
            let user_left = self
                .timeout
                .map(|t| t.saturating_sub(now - started.unwrap_or(now)));
            let deadline_left = self
                .reader
                .deadline()
                .map(|at| at.saturating_duration_since(now));
            let wait = match (user_left, deadline_left) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            if wait.is_some_and(|w| w.is_zero()) {
                if let Err(fault) = self.reader.check_deadline(now) {
                    return Err(self.fail(fault));
                }
                return Err(Error::Timeout);
            }
            wait
        } else {
            None
        };
        if wait != self.inner_timeout {
            inner_rx!(&mut self.inner, r => r.set_read_timeout(wait))?;
            self.inner_timeout = wait;
        }
        let lend = self.lend;
        let scratch = (lent && lend).then_some(&mut self.scratch);
        match inner_rx!(&mut self.inner, r => pull(r, &mut self.reader, lend, scratch)) {
            Err(Error::Timeout) => {
                if let Err(fault) = self.reader.check_deadline(Instant::now()) {
                    return Err(self.fail(fault));
                }
                Err(Error::Timeout)
            }
            Err(Error::InvalidFrame { addr, reason }) => {
                self.shared.reply(
                    OpCode::Close,
                    Bytes::copy_from_slice(&CLOSE_PROTOCOL.to_be_bytes()),
                );
                Err(Error::InvalidFrame { addr, reason })
            }
            other => other,
        }
    }

    fn recv_message(&mut self) -> Result<Option<Bytes>> {
        match self.recv_got(false)? {
            Some(Got::Owned(data)) => Ok(Some(data)),
            Some(Got::Scratch) => Ok(Some(Bytes::copy_from_slice(&self.scratch))),
            None => Ok(None),
        }
    }

    /// The next message: owned, or (`lent`, from a client) in the scratch
    /// buffer.
    fn recv_got(&mut self, lent: bool) -> Result<Option<Got>> {
        if self.closed {
            return Ok(None);
        }
        if self.shared.has_pending.load(Ordering::Acquire) {
            self.shared.flush_pending();
        }
        let started = self.timeout.map(|_| Instant::now());
        loop {
            let event = match self.next_frame(started, lent)? {
                Some(event) => event,
                // The stream ended without a close frame: inside a message
                // that is a cut; between messages, an end all the same.
                None if self.reader.in_message() => {
                    return Err(Error::UnexpectedEof {
                        addr: self.shared.peer.clone(),
                    })
                }
                None => return Ok(None),
            };
            match event {
                Ok(Lent::Message { text }) => {
                    self.last_text = text;
                    return Ok(Some(Got::Scratch));
                }
                Ok(Lent::Other(None)) | Ok(Lent::Other(Some(WsEvent::Pong))) => {}
                Ok(Lent::Other(Some(WsEvent::Message { data, text }))) => {
                    self.last_text = text;
                    return Ok(Some(Got::Owned(data)));
                }
                Ok(Lent::Other(Some(WsEvent::Ping(payload)))) => {
                    self.shared.reply(OpCode::Pong, payload)
                }
                Ok(Lent::Other(Some(WsEvent::Close { code }))) => {
                    self.closed = true;
                    let code = code.unwrap_or(CLOSE_NORMAL);
                    self.shared
                        .reply(OpCode::Close, Bytes::copy_from_slice(&code.to_be_bytes()));
                    return Ok(None);
                }
                Err(fault) => return Err(self.fail(fault)),
            }
        }
    }
}

/// The next frame from below, through the engine: lent out of the read
/// buffer and copied once (frames from a client, unmasked on the way), or
/// cut out of it without copying (from a server).
fn pull<R: Receiver>(
    r: &mut R,
    reader: &mut WsReader,
    lend: bool,
    scratch: Option<&mut Vec<u8>>,
) -> Result<Option<std::result::Result<Lent, ReadFault>>> {
    if lend {
        let mut hold = None;
        Ok(r.recv_ref(&mut hold)?.map(|frame| match scratch {
            Some(scratch) => reader.frame_lent(frame, Instant::now, scratch),
            None => reader.frame_ref(frame, Instant::now).map(Lent::Other),
        }))
    } else {
        Ok(r.recv()?
            .map(|frame| reader.frame(frame, Instant::now).map(Lent::Other)))
    }
}

/// Where [`WsReceiver::recv_got`] put a message.
enum Got {
    Owned(Bytes),
    /// In the receiver's scratch buffer.
    Scratch,
}

impl Receiver for WsReceiver {
    fn recv(&mut self) -> Result<Option<Bytes>> {
        self.recv_message()
    }

    /// Lends a message from a client (masked) out of a scratch buffer it
    /// is unmasked into, so that small messages cost no allocation.
    fn recv_ref<'a>(&'a mut self, hold: &'a mut Option<Bytes>) -> Result<Option<&'a [u8]>> {
        match self.recv_got(true)? {
            Some(Got::Scratch) => Ok(Some(&self.scratch)),
            Some(Got::Owned(data)) => {
                *hold = Some(data);
                Ok(hold.as_deref())
            }
            None => Ok(None),
        }
    }

    /// Reads until the peer's close frame and the end of the stream
    /// ([`Delivery::Confirmed`]) or `until`.
    fn drain(&mut self, until: Instant) -> Result<Delivery> {
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Delivery::Unknown);
            }
            if !self.closed {
                self.timeout = Some(left);
                match self.recv_message() {
                    Ok(Some(_)) => continue,
                    Ok(None) if self.closed => {}
                    Ok(None) => return Ok(Delivery::Unknown),
                    Err(Error::Timeout) | Err(Error::Closed) => return Ok(Delivery::Unknown),
                    Err(_) => return Ok(Delivery::Unknown),
                }
            }
            // The close frame came: the stream's end confirms it.
            return inner_rx!(&mut self.inner, r => r.drain(until));
        }
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.shared.peer.clone())
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self.shared.local.clone())
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = crate::config::check_timeout("read_timeout", timeout)?;
        Ok(())
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn set_message_deadline(&mut self, deadline: Duration) -> Result<()> {
        inner_rx!(&mut self.inner, r => r.set_message_deadline(deadline))?;
        self.reader.set_deadline(deadline);
        Ok(())
    }

    fn max_message_len(&self) -> usize {
        self.max
    }

    fn stopper(&self) -> Option<Stopper> {
        inner_rx!(&self.inner, r => r.stopper())
    }

    fn on_split(&mut self) {
        inner_rx!(&mut self.inner, r => r.on_split())
    }
}

// ---------------------------------------------------------------------------
// The transport, its handshakes and its listener

/// A WebSocket conversation's transport (`ws://`, or `wss://` over TLS):
/// each WebSocket message one message.
///
/// * Text and binary frames are both received as messages (`recv_text`
///   works on either if it is UTF-8); [`send_text`](Sender::send_text)
///   sends a text frame, so that a browser receives a string, and `send` a
///   binary one.
/// * The limit is the conversation's `max_message_len`, checked on each
///   frame header before anything is allocated (a header declaring more is
///   [`Error::MessageTooLarge`]), and on the total of a fragmented message.
///   A fragmented message must be whole within the per-message deadline,
///   counted from its first fragment.
/// * Pings are answered (by the receiving half, through the sending half:
///   full duplex from two threads works); the close handshake is the
///   graceful close, bounded by the linger time; the peer's close frame is
///   the clean end (`Ok(None)`).
/// * A frame that breaks the protocol (unmasked from a client, reserved
///   bits, a long or fragmented control frame …) is
///   [`Error::InvalidFrame`], after a close frame with status 1002.
/// * The handshake (the HTTP upgrade, after TLS for `wss://`) is bounded by
///   [`Config::handshake_timeout`]: a client's `connect` and a listener's
///   `accept` return once it is done; a failed one is [`Error::WebSocket`].
pub struct Ws {
    tx: WsSender,
    rx: WsReceiver,
}

impl std::fmt::Debug for Ws {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ws")
            .field("peer", &self.tx.shared.peer)
            .finish()
    }
}

impl Transport for Ws {
    type Sender = WsSender;
    type Receiver = WsReceiver;

    fn into_halves(self) -> (WsSender, WsReceiver) {
        (self.tx, self.rx)
    }
}

/// `HOST:PORT[/path]` split into the address and the path (`/` by default).
pub(crate) fn split_path(rest: &str) -> (&str, &str) {
    match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    }
}

fn handshake_error(peer: &Addr, reason: WsError) -> Error {
    Error::WebSocket {
        addr: peer.clone(),
        reason,
    }
}

impl Ws {
    /// Connects to a `ws://` or `wss://` URL (`wss://` verifies the server
    /// as [`Tls`](crate::Tls) does, with [`Config::tls_client`]); returns
    /// once the upgrade is done.
    pub fn connect(url: &str, config: &Config) -> Result<Ws> {
        config.validate()?;
        let (scheme, rest) = addr::split_url(url)?;
        let secure = match scheme.as_str() {
            "ws" => false,
            "wss" => true,
            _ => return Err(addr::unknown_scheme(url, &["ws", "wss"]).into()),
        };
        let (hostport, path) = split_path(rest);
        let addrs = addr::resolve(url, hostport)?;
        let mut last = None;
        for addr in addrs {
            match Ws::connect_one(addr, hostport, path, secure, config) {
                Err(e @ Error::ConnectionRefused { .. }) | Err(e @ Error::Io { .. }) => {
                    last = Some(e)
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| addr::no_address(url).into()))
    }

    fn connect_one(
        addr: SocketAddr,
        hostport: &str,
        path: &str,
        secure: bool,
        config: &Config,
    ) -> Result<Ws> {
        let started = Instant::now();
        let scheme_addr = if secure {
            Addr::Wss(addr)
        } else {
            Addr::Ws(addr)
        };
        let socket =
            sockopt::tcp_connect(addr, config).map_err(|e| Error::from_io(e, &scheme_addr))?;
        let (send, recv) = codecs(config);
        let (tx, rx, local) = if secure {
            #[cfg(feature = "tls")]
            {
                let host = super::tls::host_of(hostport)?;
                let name = super::tls::server_name(host)?;
                let tls = crate::Tls::client_with(socket, addr, name, config, (send, recv))?;
                let local = tls.local_addr_as(Addr::Wss);
                let (tx, rx) = tls.into_halves();
                (InnerTx::Tls(tx), InnerRx::Tls(rx), local)
            }
            #[cfg(not(feature = "tls"))]
            {
                let _ = (socket, send, recv);
                return Err(Error::Unsupported("wss:// without the `tls` feature"));
            }
        } else {
            let local = local_of(&socket, Addr::Ws);
            sockopt::tcp_stream(&socket, config).map_err(|e| Error::from_io(e, &scheme_addr))?;
            let (tx, rx) = stream::halves_with(
                socket,
                local.clone(),
                scheme_addr.clone(),
                config,
                send,
                recv,
            )?;
            (InnerTx::Tcp(tx), InnerRx::Tcp(rx), local)
        };
        let mut ws = Ws::assemble(tx, rx, local, scheme_addr.clone(), Role::Client, config);
        let key = tungstenite::handshake::client::generate_key();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        let until = started + config.handshake_timeout;
        ws.write_head(request.as_bytes(), until)?;
        let head = ws.read_head(until)?;
        let response = match <tungstenite::handshake::client::Response as tungstenite::handshake::machine::TryParse>::try_parse(&head) {
            Ok(Some((_, response))) => response,
            Ok(None) => return Err(handshake_error(&scheme_addr, WsError::BadHandshake("a cut HTTP response".into()))),
            Err(e) => return Err(handshake_error(&scheme_addr, WsError::BadHandshake(e.to_string()))),
        };
        let status = response.status().as_u16();
        if status != 101 {
            return Err(handshake_error(&scheme_addr, WsError::Refused(status)));
        }
        let headers = response.headers();
        let has = |name: &str, token: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        };
        if !has("Upgrade", "websocket") || !has("Connection", "upgrade") {
            return Err(handshake_error(
                &scheme_addr,
                WsError::BadHandshake("the response does not upgrade to websocket".into()),
            ));
        }
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        if headers
            .get("Sec-WebSocket-Accept")
            .and_then(|v| v.to_str().ok())
            != Some(accept.as_str())
        {
            return Err(handshake_error(
                &scheme_addr,
                WsError::BadHandshake("a wrong Sec-WebSocket-Accept".into()),
            ));
        }
        if headers.get("Sec-WebSocket-Extensions").is_some() {
            return Err(handshake_error(
                &scheme_addr,
                WsError::BadHandshake("an extension the client did not ask for".into()),
            ));
        }
        ws.rx
            .inner
            .set_codec(Codec::ws_frames(config.max_message_len, false));
        ws.restore_timeouts(config);
        Ok(ws)
    }

    fn assemble(
        tx: InnerTx,
        rx: InnerRx,
        local: Addr,
        peer: Addr,
        role: Role,
        config: &Config,
    ) -> Ws {
        let keys = (role == Role::Client).then(|| MaskKeys::new(sockopt::random_u128()));
        let shared = Arc::new(Shared {
            tx: Mutex::new(TxState {
                inner: tx,
                scratch: BytesMut::new(),
                keys,
                close_sent: false,
            }),
            pending: Mutex::new(None),
            has_pending: AtomicBool::new(false),
            local,
            peer,
        });
        Ws {
            tx: WsSender {
                shared: Arc::clone(&shared),
                max: config.max_message_len,
            },
            rx: WsReceiver {
                inner: rx,
                shared,
                reader: WsReader::new(config.max_message_len, config.message_deadline),
                timeout: config.read_timeout,
                closed: false,
                last_text: false,
                max: config.max_message_len,
                inner_timeout: config.read_timeout,
                lend: role == Role::Server,
                scratch: Vec::new(),
            },
        }
    }

    fn timeout_error(&self, e: Error) -> Error {
        match e {
            Error::Timeout => handshake_error(&self.tx.shared.peer, WsError::HandshakeTimeout),
            Error::MessageTooLarge { .. } | Error::InvalidFrame { .. } => handshake_error(
                &self.tx.shared.peer,
                WsError::BadHandshake("an HTTP head over 16 KiB".into()),
            ),
            e => e,
        }
    }

    fn write_head(&mut self, head: &[u8], until: Instant) -> Result<()> {
        let left = until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let mut tx = lock(&self.tx.shared.tx);
        inner!(&mut tx.inner, t => t.set_write_timeout(Some(left)))?;
        let sent = inner!(&mut tx.inner, t => t.send(head));
        drop(tx);
        sent.map_err(|e| self.timeout_error(e))
    }

    fn read_head(&mut self, until: Instant) -> Result<Bytes> {
        let left = until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        inner_rx!(&mut self.rx.inner, r => r.set_read_timeout(Some(left)))?;
        match inner_rx!(&mut self.rx.inner, r => r.recv()) {
            Ok(Some(head)) => Ok(head),
            Ok(None) => Err(handshake_error(
                &self.tx.shared.peer,
                WsError::BadHandshake("the connection ended during the handshake".into()),
            )),
            Err(e) => Err(self.timeout_error(e)),
        }
    }

    fn restore_timeouts(&mut self, config: &Config) {
        let mut tx = lock(&self.tx.shared.tx);
        let _ = inner!(&mut tx.inner, t => t.set_write_timeout(config.write_timeout));
        drop(tx);
        let _ = inner_rx!(&mut self.rx.inner, r => r.set_read_timeout(config.read_timeout));
    }

    /// The server's side of the upgrade, on a freshly accepted stream.
    fn accept_upgrade(mut self, config: &Config) -> Result<Ws> {
        let until = Instant::now() + config.handshake_timeout;
        let head = self.read_head(until)?;
        let peer = self.tx.shared.peer.clone();
        let request = match <tungstenite::handshake::server::Request as tungstenite::handshake::machine::TryParse>::try_parse(&head) {
            Ok(Some((_, request))) => request,
            Ok(None) => return Err(handshake_error(&peer, WsError::BadHandshake("a cut HTTP request".into()))),
            Err(e) => {
                let _ = self.write_head(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", until);
                return Err(handshake_error(&peer, WsError::BadHandshake(e.to_string())));
            }
        };
        if !is_upgrade(&request) {
            let _ = self.write_head(
                b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                until,
            );
            return Err(handshake_error(&peer, WsError::NotWebSocket));
        }
        let response = match tungstenite::handshake::server::create_response(&request) {
            Ok(response) => response,
            Err(e) => {
                let _ = self.write_head(
                    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                    until,
                );
                return Err(handshake_error(&peer, WsError::BadHandshake(e.to_string())));
            }
        };
        let mut out = Vec::new();
        tungstenite::handshake::server::write_response(&mut out, &response)
            .map_err(|e| handshake_error(&peer, WsError::BadHandshake(e.to_string())))?;
        self.write_head(&out, until)?;
        self.rx
            .inner
            .set_codec(Codec::ws_frames(config.max_message_len, true));
        self.restore_timeouts(config);
        Ok(self)
    }
}

/// `true` when `request` asks for a WebSocket (`Upgrade: websocket`).
pub(crate) fn is_upgrade<B>(request: &tungstenite::http::Request<B>) -> bool {
    request
        .headers()
        .get("Upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn local_of(socket: &Socket, scheme: fn(SocketAddr) -> Addr) -> Addr {
    socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(scheme)
        .unwrap_or(Addr::Unknown)
}

/// A WebSocket server socket (`ws://`, or `wss://` with
/// [`Config::tls_server`]): every accepted connection that completes the
/// upgrade is a [`Ws`] transport.
///
/// `accept` completes the upgrade (and, for `wss://`, the TLS handshake)
/// of each connection before returning it, bounded by
/// [`Config::handshake_timeout`]; a connection that fails it is
/// [`Error::WebSocket`] (or [`Error::Tls`]) for that connection, and the
/// listener goes on. A plain HTTP request is answered `426 Upgrade
/// Required` (the switchboard can serve a page instead).
pub struct WsListener {
    inner: StreamListener,
    config: Config,
    #[cfg(feature = "tls")]
    server: Option<crate::tls::TlsServer>,
}

impl std::fmt::Debug for WsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsListener")
            .field("local", &self.inner.local)
            .finish()
    }
}

impl WsListener {
    /// Binds `addr` (`HOST:PORT`) for `ws://`, or with `secure` for
    /// `wss://` (which needs [`Config::tls_server`]).
    pub fn bind(addr: impl ToSocketAddrs, secure: bool, config: &Config) -> Result<WsListener> {
        config.validate()?;
        let addrs = addr::socket_addrs(addr, "WebSocket address")?;
        bind_any(&addrs, secure, config)
    }

    /// Accepts the next connection and completes its upgrade.
    ///
    /// # Errors
    ///
    /// [`Error::WebSocket`] or [`Error::Tls`] for a connection whose
    /// handshake failed (the listener goes on: accept again); otherwise as
    /// [`TcpListener::accept`](crate::TcpListener::accept).
    pub fn accept(&self) -> Result<Ws> {
        let (socket, from) = self.inner.accept()?;
        let from = from.as_socket();
        let (send, recv) = codecs(&self.config);
        #[cfg(feature = "tls")]
        if let Some(server) = &self.server {
            let peer = from.map(Addr::Wss).unwrap_or(Addr::Unknown);
            let local = local_of(&socket, Addr::Wss);
            let tls =
                crate::Tls::server_with(socket, peer.clone(), server, &self.config, (send, recv))?;
            let (tx, rx) = tls.into_halves();
            let ws = Ws::assemble(
                InnerTx::Tls(tx),
                InnerRx::Tls(rx),
                local,
                peer,
                Role::Server,
                &self.config,
            );
            return ws.accept_upgrade(&self.config);
        }
        let peer = from.map(Addr::Ws).unwrap_or(Addr::Unknown);
        let local = local_of(&socket, Addr::Ws);
        sockopt::tcp_stream(&socket, &self.config).map_err(|e| Error::from_io(e, &peer))?;
        let (tx, rx) = stream::halves_with(
            socket,
            local.clone(),
            peer.clone(),
            &self.config,
            send,
            recv,
        )?;
        let ws = Ws::assemble(
            InnerTx::Tcp(tx),
            InnerRx::Tcp(rx),
            local,
            peer,
            Role::Server,
            &self.config,
        );
        ws.accept_upgrade(&self.config)
    }

    /// The bound address, as `ws://IP:PORT` (or `wss://`).
    pub fn local_addr(&self) -> Result<Addr> {
        Ok(self.inner.local.clone())
    }

    /// Bounds every later `accept` (`None`: wait as long as it takes).
    pub fn set_accept_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.inner.set_accept_timeout(timeout)
    }

    /// A handle that stops a blocked `accept` from another thread.
    pub fn stopper(&self) -> Stopper {
        self.inner.stopper()
    }

    pub(crate) fn into_parts(self) -> Option<(Socket, Addr, Config)> {
        let (socket, local) = self.inner.into_socket()?;
        Some((socket, local, self.config))
    }
}

pub(crate) fn bind_any(addrs: &[SocketAddr], secure: bool, config: &Config) -> Result<WsListener> {
    config.validate()?;
    #[cfg(feature = "tls")]
    let server =
        if secure {
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
    if secure {
        return Err(Error::Unsupported("wss:// without the `tls` feature"));
    }
    let scheme = if secure { Addr::Wss } else { Addr::Ws };
    let mut last = None;
    for &addr in addrs {
        match sockopt::tcp_listener(addr, config) {
            Ok(socket) => {
                let local = socket
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .map(scheme)
                    .unwrap_or(scheme(addr));
                return Ok(WsListener {
                    inner: StreamListener::new(socket, local, config.accept_timeout),
                    config: config.clone(),
                    #[cfg(feature = "tls")]
                    server,
                });
            }
            Err(e) => last = Some(Error::from_io(e, &scheme(addr))),
        }
    }
    Err(last.unwrap_or_else(|| addr::no_address("WebSocket address").into()))
}
