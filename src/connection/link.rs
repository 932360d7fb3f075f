//! What both directions of a stream connection share: the queue of bytes
//! for the wire (and TLS below it), the control frames the receiving side
//! answers with, the handshakes, the end machine, and the timers. The
//! receiving side ([`Rx`](super::Rx)) and the sending side
//! ([`Tx`](super::Tx)) reach it for every rule that concerns both; a
//! blocking conversation's halves share it behind one lock, a switchboard
//! owns it with the rest.
//!
//! ## The end, once
//!
//! What is known of the end is kept as facts (the peer's clean end, the
//! end of its bytes, the first fatal error, our own end written, a close
//! asked for, the linger passed, an abort); the end reported is derived
//! from them when the driver asks, and handed out once
//! ([`Link::poll_end`]):
//!
//! | facts, in order of precedence | end |
//! |---|---|
//! | aborted here | `Aborted` |
//! | a fatal error, unless the peer's clean end came first and nobody closed here (closing, a reset after the peer's clean end fails the close) | `Failed(error)` |
//! | closed here, our end written, and the peer's clean end (its close frame or `close_notify`, or the end of a plain stream's bytes), with no reset seen | `Closed(Confirmed)` |
//! | closed here, and the linger passed or the peer's bytes ended without its clean end | `Closed(Unknown)` (`Failed(Unsent)` if what was queued was never written) |
//! | the peer's clean end | `Peer` |
//!
//! Whatever order the facts come in, one end is reported, once; facts that
//! come after it change nothing reported (they may only release the
//! socket sooner), and the end does not depend on whether the facts came
//! in one read or in several. An error that comes after the peer's clean
//! end, without a close here, is still said by a later `close`.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::outbound::Outbound;
use super::{Delivery, End};
use crate::addr::Addr;
use crate::error::Error;

/// The settings a connection's rules need.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// How long our end waits for what is queued to be written and for the
    /// peer's end.
    pub(crate) linger: Duration,
    /// How long the handshakes may take, from the connection on.
    pub(crate) handshake: Duration,
    /// A switchboard's bound on the outbox; `None` for a blocking
    /// conversation, whose writes wait instead.
    pub(crate) backlog: Option<usize>,
}

/// Our own direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ours {
    /// Sending.
    Open,
    /// Ending: what is queued goes out, then our end marker (a close
    /// frame, `close_notify`), then the end of our bytes.
    Finishing,
    /// Our end is on the wire (or nothing more will be: failed, aborted).
    Ended,
}

/// What the protocol above the stream keeps of its own that both
/// directions need.
#[derive(Debug)]
pub(crate) enum Proto {
    Framed,
    #[cfg(feature = "ws")]
    Ws(Box<WsLink>),
    #[cfg(feature = "nats")]
    Nats(Box<NatsLink>),
}

/// The WebSocket state both directions share.
#[cfg(feature = "ws")]
#[derive(Debug)]
pub(crate) struct WsLink {
    /// A client masks its frames.
    pub(crate) client: bool,
    /// The upgrade is done.
    pub(crate) upgraded: bool,
    /// A client's upgrade, waiting for the answer.
    pub(crate) asked: Option<crate::ws::upgrade::ClientUpgrade>,
    /// A server's page, for plain `GET`s.
    pub(crate) page: Option<std::sync::Arc<crate::ws::Page>>,
    /// Our close frame is queued.
    pub(crate) close_sent: bool,
    /// The status our close frame says: 1000, the peer's own when it
    /// closed first, or the reason of a failure.
    pub(crate) close_code: u16,
    pub(crate) waiting: Waiting,
}

/// What waits to be queued, for a protocol above the stream that has a
/// handshake of its own and pings (WebSocket, NATS).
#[derive(Debug, Default)]
#[cfg_attr(not(any(feature = "ws", feature = "nats")), allow(dead_code))]
pub(crate) struct Waiting {
    /// Messages sent before the handshakes are done (a WebSocket client's
    /// before the server's `101`, a NATS conversation's before its
    /// subscription stands): whole units, that go after the handshake's
    /// own bytes once it is over.
    held: BytesMut,
    /// A pong waits to be queued (its payload, for WebSocket).
    pong: Option<bytes::Bytes>,
    /// Where the last pong queued ends (in the queue's positions).
    pong_end: u64,
}

/// The NATS state both directions share.
#[cfg(feature = "nats")]
#[derive(Debug)]
pub(crate) struct NatsLink {
    pub(crate) session: crate::nats::session::NatsSession,
    /// The TLS a server may ask for: our settings and its name.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<(
        crate::tls::TlsClient,
        rustls::pki_types::ServerName<'static>,
    )>,
    pub(crate) waiting: Waiting,
}

/// Why a plain HTTP request got an answer instead of a WebSocket.
#[derive(Debug)]
#[cfg_attr(not(feature = "ws"), allow(dead_code))]
pub(crate) enum Answered {
    /// The listener's page: not an error.
    Page,
    /// Refused, and why.
    Refused(Error),
}

/// The facts. See the module docs.
#[derive(Debug)]
struct State {
    /// The handshakes must be over by then (while they are not).
    handshake_until: Option<Instant>,
    established: bool,
    /// Established, and not yet told to the driver.
    established_news: bool,
    /// A plain HTTP request was answered: written, then released, never a
    /// conversation.
    answered: bool,
    /// How, until it is taken.
    answer: Option<Box<Answered>>,
    /// The peer ended cleanly (between messages: a close frame,
    /// `close_notify`, or the end of a plain stream).
    peer_end: bool,
    /// That end was said by the protocol (a close frame, `close_notify`),
    /// not only by the end of the bytes.
    peer_end_said: bool,
    /// The end of the peer's bytes came.
    eof: bool,
    /// The first fatal error, until it is handed out.
    error: Option<Box<Error>>,
    failed: bool,
    /// The peer's clean end came before the failure: not closing, the
    /// conversation ended as the peer said (the failure only cut the
    /// rest of our output).
    ended_before_failure: bool,
    ours: Ours,
    /// Our end must be written, and the peer's must come, by then.
    until: Option<Instant>,
    /// `close` was asked for: the end says what is known of delivery.
    closing: bool,
    /// The linger passed before everything was done.
    gave_up: bool,
    aborted: bool,
    /// The end was handed to the driver.
    reported: bool,
    /// The write side is to be shut down (the driver does it).
    shutdown_due: bool,
    /// Release with a reset (`SO_LINGER` 0): what was not delivered is not
    /// taken for complete.
    reset: bool,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Link {
    /// Bytes for the wire, whole units (frames, control frames, a
    /// protocol's lines), before TLS; the front may be partly written.
    pub(crate) out: Outbound,
    /// TLS, between the queue and the wire.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Box<crate::tls::session::TlsSession>>,
    pub(crate) proto: Proto,
    state: State,
    pub(crate) limits: Limits,
    /// The peer, for errors.
    pub(crate) peer: Addr,
    /// The conversation's span (feature `tracing`; zero-sized without).
    pub(crate) span: crate::trace::Span,
}

/// A place that takes bytes as a non-blocking socket does: as many as it
/// can now, `Err(WouldBlock)` when it takes none.
pub(crate) trait Sink {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<usize>;

    /// As [`put`](Sink::put), from several buffers in order (a socket
    /// takes them in one system call).
    #[cfg_attr(not(feature = "quic"), allow(dead_code))]
    fn put_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(b) => self.put(b),
            None => Ok(0),
        }
    }
}

impl<F: FnMut(&[u8]) -> std::io::Result<usize>> Sink for F {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self(bytes)
    }
}

/// Bytes taken out of a link, to be written without holding it (see
/// [`Link::take_wire`]).
#[derive(Debug)]
pub(crate) struct Wire {
    bytes: bytes::BytesMut,
    /// Ciphertext, or queued plaintext.
    cipher: bool,
}

impl Wire {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Link {
    pub(crate) fn new(out: Outbound, proto: Proto, limits: Limits, peer: Addr) -> Link {
        Link {
            span: crate::trace::conversation(&peer),
            out,
            #[cfg(feature = "tls")]
            tls: None,
            proto,
            state: State {
                handshake_until: None,
                established: false,
                established_news: false,
                answered: false,
                answer: None,
                peer_end: false,
                peer_end_said: false,
                eof: false,
                error: None,
                failed: false,
                ended_before_failure: false,
                ours: Ours::Open,
                until: None,
                closing: false,
                gave_up: false,
                aborted: false,
                reported: false,
                shutdown_due: false,
                reset: false,
            },
            limits,
            peer,
        }
    }

    /// Starts the connection at `now`: established at once, or its
    /// handshakes timed from now.
    pub(crate) fn start(&mut self, now: Instant) {
        if self.handshakes_done() {
            self.state.established = true;
        } else {
            self.state.handshake_until = Some(now + self.limits.handshake);
        }
    }

    /// No TLS below (nothing to encrypt: messages may be written straight).
    pub(crate) fn tls_free(&self) -> bool {
        #[cfg(feature = "tls")]
        return self.tls.is_none();
        #[cfg(not(feature = "tls"))]
        true
    }

    /// Messages of a plain framing (no protocol of its own above).
    pub(crate) fn is_framed(&self) -> bool {
        matches!(self.proto, Proto::Framed)
    }

    /// The verified peer of a TLS session, once its handshake is over.
    #[cfg(feature = "tls")]
    pub(crate) fn identity(&self) -> Option<crate::tls::PeerIdentity> {
        self.tls.as_ref().and_then(|t| t.identity().cloned())
    }

    /// `true` once TLS, the upgrade and NATS's subscription are done.
    fn handshakes_done(&self) -> bool {
        #[cfg(feature = "tls")]
        if self.tls.as_ref().is_some_and(|t| !t.is_established()) {
            return false;
        }
        match &self.proto {
            Proto::Framed => true,
            #[cfg(feature = "ws")]
            Proto::Ws(ws) => ws.upgraded,
            #[cfg(feature = "nats")]
            Proto::Nats(n) => n.session.is_open(),
        }
    }

    /// A handshake may have finished: the connection is established once
    /// all of them have.
    #[cfg_attr(
        not(any(feature = "ws", feature = "nats", feature = "tls")),
        allow(dead_code)
    )]
    pub(crate) fn check_established(&mut self) {
        if !self.state.established && !self.is_down() && self.handshakes_done() {
            crate::trace::established(&self.span, &self.peer);
            self.state.established = true;
            self.state.established_news = true;
            self.state.handshake_until = None;
            if let Some(w) = self.waiting_mut() {
                let mut held = std::mem::take(&mut w.held);
                self.out.append_bytes(&mut held);
            }
            // Closed while the handshake went on: the close frame follows
            // the messages held.
            #[cfg(feature = "ws")]
            if self.state.ours == Ours::Finishing {
                self.queue_ws_close();
            }
        }
    }

    pub(crate) fn is_established(&self) -> bool {
        self.state.established
    }

    /// Once, when the handshakes are over: report the conversation now.
    pub(crate) fn poll_established(&mut self) -> bool {
        std::mem::take(&mut self.state.established_news)
    }

    /// A plain HTTP request was answered with `answer` queued: it is
    /// written, then the connection is released, never a conversation.
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) fn answered(&mut self, answer: &[u8], why: Answered, now: Instant) {
        if self.state.ours != Ours::Open || self.is_down() || self.state.reported {
            // Ended here before the request came: nothing more is said.
            return;
        }
        self.out.push_raw(answer);
        self.state.answered = true;
        self.state.answer = Some(Box::new(why));
        self.state.handshake_until = None;
        self.state.ours = Ours::Finishing;
        self.state.until = Some(now + self.limits.linger);
    }

    /// How a plain HTTP request was answered, if it was (once).
    pub(crate) fn take_answered(&mut self) -> Option<Answered> {
        self.state.answer.take().map(|a| *a)
    }

    /// A plain HTTP request was answered: this is not a conversation.
    pub(crate) fn was_answered(&self) -> bool {
        self.state.answered
    }

    /// Ciphertext read by the sending half while it drives a handshake:
    /// records go to TLS, any plaintext waits in `early`.
    #[cfg(feature = "tls")]
    pub(crate) fn handshake_read(&mut self, cipher: &[u8], now: Instant) {
        use crate::tls::session::Plain;
        let Some(tls) = self.tls.as_mut() else {
            return;
        };
        let mut established = false;
        let mut early = std::mem::take(&mut tls.early);
        let result = tls.read(cipher, |p| match p {
            Plain::Established => established = true,
            Plain::Data(chunk) => early.extend_from_slice(chunk),
        });
        tls.early = early;
        if let Err(failure) = result {
            let err = failure.at(self.peer.clone());
            self.fail_with_goodbye(err, now);
            return;
        }
        if established {
            self.check_established();
        }
    }

    // -----------------------------------------------------------------------
    // What the peer did.

    /// The peer ended cleanly (between messages).
    pub(crate) fn peer_ended(&mut self) {
        self.state.peer_end = true;
        if !self.state.eof {
            // Before the end of its bytes: the protocol said it.
            self.state.peer_end_said = true;
        }
    }

    pub(crate) fn has_peer_ended(&self) -> bool {
        self.state.peer_end
    }

    /// The end of the peer's bytes came (the receiving side has said what
    /// it means).
    pub(crate) fn eof(&mut self) {
        self.state.eof = true;
    }

    pub(crate) fn is_eof(&self) -> bool {
        self.state.eof
    }

    /// A fatal error: the first one is the end (unless an end was
    /// reported already). The connection stops at once: nothing more is
    /// written, and it is released with a reset, so that the peer sees an
    /// error too, never a clean end.
    pub(crate) fn fail(&mut self, err: Error) {
        self.record(err);
        self.discard_output();
        self.state.ours = Ours::Ended;
        self.state.reset = true;
    }

    /// Keeps the first fatal error. A NATS connection that breaks is the
    /// typed disconnect, whichever call found it.
    fn record(&mut self, err: Error) {
        #[cfg(feature = "nats")]
        let err = match (&self.proto, err) {
            (
                Proto::Nats(_),
                Error::ConnectionReset { addr }
                | Error::BrokenPipe { addr }
                | Error::UnexpectedEof { addr },
            ) => Error::Nats {
                addr,
                reason: crate::nats::NatsError::Disconnected,
            },
            (_, err) => err,
        };
        if !self.state.failed {
            self.state.failed = true;
            self.state.ended_before_failure = self.state.peer_end;
            self.state.error = Some(Box::new(err));
        }
    }

    /// What a call says once the end was reported: `Closed`; for a NATS
    /// conversation that lost its server (not closed by us), the typed
    /// disconnect again, until it connects anew.
    pub(crate) fn after_end(&self) -> Error {
        #[cfg(feature = "nats")]
        if matches!(self.proto, Proto::Nats(_))
            && self.state.failed
            && !self.state.closing
            && !self.state.aborted
        {
            return Error::Nats {
                addr: self.peer.clone(),
                reason: crate::nats::NatsError::Disconnected,
            };
        }
        Error::Closed
    }

    /// A fatal error after which a goodbye is still said (a close frame
    /// queued after this, or rustls's alert): what is queued goes out
    /// within the linger time, then the write side is shut down.
    #[cfg_attr(not(any(feature = "ws", feature = "tls")), allow(dead_code))]
    pub(crate) fn fail_with_goodbye(&mut self, err: Error, now: Instant) {
        self.record(err);
        if self.state.ours == Ours::Open {
            self.state.ours = Ours::Finishing;
            self.state.until = Some(now + self.limits.linger);
        }
    }

    /// Drops what was queued and not yet written.
    fn discard_output(&mut self) {
        self.out.discard();
        if let Some(w) = self.waiting_mut() {
            w.held = BytesMut::new();
            w.pong = None;
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            tls.cipher = BytesMut::new();
        }
        if let Some(w) = self.waiting_mut() {
            w.pong = None;
        }
    }

    /// `true` once the connection cannot carry messages any more: failed,
    /// aborted, or answered as plain HTTP.
    pub(crate) fn is_down(&self) -> bool {
        self.state.failed || self.state.aborted || self.state.answered
    }

    // -----------------------------------------------------------------------
    // What we do.

    /// Our side is done sending: what is queued goes out, then our end
    /// marker, then the end of our bytes, by `now` plus the linger time.
    pub(crate) fn finish(&mut self, now: Instant) {
        if self.state.ours != Ours::Open {
            return;
        }
        self.state.until = Some(now + self.limits.linger);
        if !self.state.established && self.queued() == 0 {
            // Nothing was ever said: no session, no upgrade to close.
            self.state.ours = Ours::Ended;
            self.state.shutdown_due = true;
            return;
        }
        self.state.ours = Ours::Finishing;
        #[cfg(feature = "ws")]
        self.queue_ws_close();
    }

    /// `close`: finish, then wait for the peer's end; the end says what is
    /// known of delivery.
    pub(crate) fn close(&mut self, now: Instant) {
        if !self.is_down() && !self.state.reported {
            self.state.closing = true;
        }
        self.finish(now);
    }

    /// A close by the receiving side only (the sending side ended before):
    /// the end says what is known of delivery, the peer awaited until
    /// `until`.
    pub(crate) fn await_close(&mut self, now: Instant, until: Instant) {
        if !self.is_down() && !self.state.reported {
            self.state.closing = true;
        }
        if self.state.until.is_none() {
            self.state.until = Some(until.max(now));
        }
    }

    /// Ends at once, discarding what is queued: released with a reset.
    pub(crate) fn abort(&mut self) {
        self.state.aborted = true;
        self.state.reset = true;
        self.discard_output();
        self.state.ours = Ours::Ended;
    }

    /// Ends as a slow consumer (nothing it holds is written; reset), and
    /// the error, to return to the sender that found it full.
    pub(crate) fn slow_consumer(&mut self, len: usize) -> Error {
        let queued = (self.queued() + len) as u64;
        let limit = self.limits.backlog.unwrap_or(0) as u64;
        let err = |addr: &Addr| Error::SlowConsumer {
            addr: addr.clone(),
            queued,
            limit,
        };
        self.fail(err(&self.peer));
        self.state.reset = true;
        err(&self.peer)
    }

    pub(crate) fn ours(&self) -> Ours {
        self.state.ours
    }

    /// Messages may be sent: our side is open and nothing failed (and,
    /// over WebSocket, no close frame was sent).
    pub(crate) fn can_send(&self) -> bool {
        self.state.ours == Ours::Open && !self.is_down()
    }

    /// Bytes waiting for the socket: the outbox (and ciphertext).
    pub(crate) fn queued(&self) -> usize {
        #[cfg(feature = "tls")]
        return self.out.len() + self.tls.as_ref().map_or(0, |t| t.cipher.len()) + self.held_len();
        #[cfg(not(feature = "tls"))]
        return self.out.len() + self.held_len();
    }

    /// `true` while messages must wait for the handshakes (they go to
    /// [`held`](Self::held)): the protocol above has its own handshake
    /// that the peer must answer first. (TLS keeps plaintext back by
    /// itself.)
    pub(crate) fn holds_messages(&self) -> bool {
        !self.state.established && !matches!(self.proto, Proto::Framed)
    }

    /// Where messages wait for the handshakes (see
    /// [`holds_messages`](Self::holds_messages)).
    pub(crate) fn held(&mut self) -> &mut BytesMut {
        match self.waiting_mut() {
            Some(w) => &mut w.held,
            None => unreachable!("a framed stream holds no messages"),
        }
    }

    fn held_len(&self) -> usize {
        match &self.proto {
            #[cfg(feature = "ws")]
            Proto::Ws(ws) => ws.waiting.held.len(),
            #[cfg(feature = "nats")]
            Proto::Nats(n) => n.waiting.held.len(),
            Proto::Framed => 0,
        }
    }

    fn waiting_mut(&mut self) -> Option<&mut Waiting> {
        match &mut self.proto {
            #[cfg(feature = "ws")]
            Proto::Ws(ws) => Some(&mut ws.waiting),
            #[cfg(feature = "nats")]
            Proto::Nats(n) => Some(&mut n.waiting),
            Proto::Framed => None,
        }
    }

    /// `true` when a unit of `len` bytes fits the outbox's bound (an empty
    /// outbox takes one, whatever its size).
    pub(crate) fn has_room(&self, len: usize) -> bool {
        match self.limits.backlog {
            Some(limit) => self.queued() == 0 || self.queued() + len <= limit,
            None => true,
        }
    }

    /// Queues a control unit (a protocol line, a frame the connection says
    /// of itself), counted against the outbox's bound: one that does not
    /// fit makes the connection a slow consumer.
    #[cfg_attr(not(any(feature = "ws", feature = "nats")), allow(dead_code))]
    pub(crate) fn queue_control(&mut self, bytes: &[u8]) {
        if self.state.ours == Ours::Ended || self.is_down() {
            return;
        }
        if !self.has_room(bytes.len()) {
            self.slow_consumer(bytes.len());
            return;
        }
        self.out.push_raw(bytes);
    }

    // -----------------------------------------------------------------------
    // Pongs and close frames.

    /// A ping came (a WebSocket ping's payload, or NATS's `PING`): a pong
    /// answers it. One pong at most waits to be written at a time; a newer
    /// ping replaces what an unsent one would say (RFC 6455 section
    /// 5.5.3), so a flood of pings costs one pong.
    #[cfg_attr(not(any(feature = "ws", feature = "nats")), allow(dead_code))]
    pub(crate) fn ping(&mut self, payload: bytes::Bytes) {
        if self.state.ours == Ours::Open && !self.is_down() && !self.close_frame_sent() {
            if let Some(w) = self.waiting_mut() {
                w.pong = Some(payload);
            }
        }
    }

    /// Queues the pong that waits, once the last one queued is written.
    fn queue_pong(&mut self) {
        let written = self.out.written();
        let Some(w) = self.waiting_mut() else {
            return;
        };
        if w.pong.is_none() || written < w.pong_end {
            return;
        }
        let Some(payload) = w.pong.take() else {
            return;
        };
        match &self.proto {
            #[cfg(feature = "ws")]
            Proto::Ws(ws) => {
                let mut frame = BytesMut::new();
                let mask = ws.client.then(crate::ws::frames::mask_key);
                crate::ws::frames::encode(
                    crate::ws::frames::OpCode::Pong,
                    &payload,
                    mask,
                    &mut frame,
                );
                self.queue_control(&frame);
            }
            #[cfg(feature = "nats")]
            Proto::Nats(_) => self.queue_control(crate::nats::ops::PONG),
            _ => {}
        }
        let _ = payload;
        let pushed = self.out.pushed();
        if let Some(w) = self.waiting_mut() {
            w.pong_end = pushed;
        }
    }

    #[cfg_attr(not(any(feature = "ws", feature = "nats")), allow(dead_code))]
    fn close_frame_sent(&self) -> bool {
        match &self.proto {
            #[cfg(feature = "ws")]
            Proto::Ws(ws) => ws.close_sent,
            _ => false,
        }
    }

    /// Our close frame (once), after what is queued.
    #[cfg(feature = "ws")]
    fn queue_ws_close(&mut self) {
        let Proto::Ws(ws) = &mut self.proto else {
            return;
        };
        if !ws.upgraded || ws.close_sent {
            return;
        }
        ws.close_sent = true;
        let mut frame = BytesMut::new();
        let mask = ws.client.then(crate::ws::frames::mask_key);
        crate::ws::frames::encode(
            crate::ws::frames::OpCode::Close,
            &ws.close_code.to_be_bytes(),
            mask,
            &mut frame,
        );
        if let Some(w) = self.waiting_mut() {
            w.pong = None;
        }
        if self.has_room(frame.len()) {
            self.out.push_raw(&frame);
        } else {
            // It cannot be said within the bound: a reset says it.
            let _ = self.slow_consumer(frame.len());
        }
    }

    /// The peer's close frame came, with `code` if it gave one: its clean
    /// end. Our close frame, when it goes, says the same code (RFC 6455
    /// section 5.5.1), or 1000 for one that must not be sent back.
    #[cfg(feature = "ws")]
    pub(crate) fn ws_peer_closed(&mut self, code: Option<u16>) {
        if let Proto::Ws(ws) = &mut self.proto {
            if !ws.close_sent {
                ws.close_code = match code {
                    Some(c @ (1000..=1003 | 1007..=1014 | 3000..=4999)) => c,
                    _ => crate::ws::frames::CLOSE_NORMAL,
                };
            }
        }
        if let Some(w) = self.waiting_mut() {
            w.pong = None;
        }
        self.peer_ended();
    }

    /// A WebSocket failure with status `code`: a close frame says why,
    /// after what is queued, within the linger time; then the write side
    /// is shut down.
    #[cfg(feature = "ws")]
    pub(crate) fn ws_fail(&mut self, err: Error, code: u16, now: Instant) {
        let upgraded = match &mut self.proto {
            Proto::Ws(ws) => {
                if !ws.close_sent {
                    ws.close_code = code;
                }
                ws.upgraded
            }
            _ => false,
        };
        if !upgraded {
            return self.fail(err);
        }
        self.fail_with_goodbye(err, now);
        self.queue_ws_close();
    }

    /// The peer's end is taken in (a blocking receive returned it): over
    /// WebSocket the close handshake is answered now, and nothing more is
    /// sent.
    pub(crate) fn ack_peer_end(&mut self, now: Instant) {
        #[cfg(feature = "ws")]
        if matches!(self.proto, Proto::Ws(_)) && self.state.peer_end {
            self.finish(now);
        }
        let _ = now;
    }

    // -----------------------------------------------------------------------
    // Writing.

    /// Queues what is due before writing: a pong that waits, our end
    /// marker once everything before it is out of the queue; and says when
    /// our end is on the wire.
    fn prepare(&mut self) {
        self.queue_pong();
        if self.state.ours != Ours::Finishing || self.held_len() > 0 {
            // (Messages held for the handshake go before our end.)
            return;
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &mut self.tls {
            if self.out.is_empty() && tls.is_established() && !tls.close_sent() {
                tls.send_close_notify();
            }
        }
        if self.queued() == 0 {
            self.state.ours = Ours::Ended;
            self.state.shutdown_due = true;
        }
    }

    /// Moves queued plaintext into TLS (once its handshake is over), as
    /// far as rustls takes it.
    #[cfg(feature = "tls")]
    fn encrypt(&mut self) {
        if let Some(tls) = &mut self.tls {
            if tls.failed() {
                // Nothing more can be sent after its alert.
                self.out.discard();
                return;
            }
            if !tls.is_established() || tls.close_sent() {
                return;
            }
            while !self.out.is_empty() {
                let n = tls.encrypt(self.out.pending());
                if n == 0 {
                    break;
                }
                self.out.advance(n);
            }
        }
    }

    /// Encrypts a frame straight from the caller's slices (`parts`: at
    /// most three, `len` bytes in all), when nothing is queued before it: how many bytes of
    /// it TLS took (taken: they are in its records now; the rest is the
    /// caller's to queue). 0 when it cannot now.
    #[cfg(feature = "tls")]
    pub(crate) fn encrypt_direct(&mut self, parts: &[&[u8]], len: usize) -> usize {
        let Some(tls) = self.tls.as_mut() else {
            return 0;
        };
        // Only with nothing queued ahead of it (plaintext, ciphertext
        // stashed or still in rustls): a message taken this way is then
        // the one the queue may hold beyond its bound.
        if !self.out.is_empty()
            || !tls.cipher.is_empty()
            || !self.state.established
            || self.state.ours != Ours::Open
            || !tls.is_established()
            || tls.close_sent()
        {
            return 0;
        }
        let mut took = 0;
        while took < len {
            // What is left of the frame, as at most three slices.
            let mut rest = [std::io::IoSlice::new(&[]); 3];
            let mut skip = took;
            for (slot, part) in rest.iter_mut().zip(parts) {
                let t = skip.min(part.len());
                skip -= t;
                *slot = std::io::IoSlice::new(&part[t..]);
            }
            let n = tls.encrypt_vectored(&rest[..parts.len().min(3)]);
            if n == 0 {
                break;
            }
            took += n;
        }
        self.out.advanced_outside(took);
        took
    }

    /// `true` when there is something to write now.
    pub(crate) fn wants_write(&mut self) -> bool {
        self.prepare();
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            self.encrypt();
            return self.tls.as_ref().is_some_and(|t| !t.cipher.is_empty());
        }
        !self.out.is_empty()
    }

    /// Writes what is ready to `sink` until it takes no more or nothing
    /// can be written now: `Ok(false)` when the sink is full. A write error
    /// other than `WouldBlock` is the caller's to report.
    pub(crate) fn transmit(&mut self, sink: &mut dyn Sink) -> std::io::Result<bool> {
        let full = |e: &std::io::Error| e.kind() == std::io::ErrorKind::WouldBlock;
        loop {
            self.prepare();
            #[cfg(feature = "tls")]
            if let Some(tls) = self.tls.as_mut() {
                if !tls.cipher.is_empty() {
                    match sink.put(&tls.cipher) {
                        Ok(n) if n == tls.cipher.len() => {
                            // All written: the buffer goes back (an idle
                            // connection holds none).
                            tls.cipher = BytesMut::new();
                        }
                        Ok(n) => {
                            bytes::Buf::advance(&mut tls.cipher, n);
                        }
                        Err(e) if full(&e) => return Ok(false),
                        Err(e) => return Err(e),
                    }
                    continue;
                }
                self.encrypt();
                if self.tls.as_ref().is_some_and(|t| t.cipher.is_empty()) {
                    // Our end marker may be due now; otherwise, done.
                    self.prepare();
                    if self.tls.as_ref().is_some_and(|t| t.cipher.is_empty()) {
                        return Ok(true);
                    }
                }
                continue;
            }
            if self.out.is_empty() {
                return Ok(true);
            }
            match sink.put(self.out.pending()) {
                Ok(n) => self.out.advance(n),
                Err(e) if full(&e) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
    }

    /// Takes the bytes to write next out of the link, for a writer that
    /// writes them without holding it (a blocking half); `None` when
    /// nothing is to be written. [`wire_written`](Self::wire_written) gives
    /// back what was not.
    pub(crate) fn take_wire(&mut self) -> Option<Wire> {
        self.prepare();
        #[cfg(feature = "tls")]
        if self.tls.is_some() {
            self.encrypt();
            let tls = self.tls.as_mut().expect("a TLS session");
            if tls.cipher.is_empty() {
                return None;
            }
            // The whole buffer: once written, nothing of it stays here.
            return Some(Wire {
                bytes: std::mem::take(&mut tls.cipher),
                cipher: true,
            });
        }
        if self.out.is_empty() {
            return None;
        }
        Some(Wire {
            bytes: self.out.take_pending(),
            cipher: false,
        })
    }

    /// `n` bytes of `wire` (from [`take_wire`](Self::take_wire)) were
    /// written; the rest goes back to the front.
    pub(crate) fn wire_written(&mut self, wire: Wire, n: usize) {
        if wire.cipher {
            #[cfg(feature = "tls")]
            {
                let mut rest = wire.bytes;
                let _ = rest.split_to(n);
                if let (false, Some(tls)) = (rest.is_empty(), self.tls.as_mut()) {
                    rest.unsplit(std::mem::take(&mut tls.cipher));
                    tls.cipher = rest;
                }
            }
        } else {
            self.out.give_back(wire.bytes, n);
        }
        self.prepare();
    }

    /// Once, when our end is written: shut the write side down now.
    pub(crate) fn take_shutdown(&mut self) -> bool {
        std::mem::take(&mut self.state.shutdown_due)
    }

    // -----------------------------------------------------------------------
    // Time.

    /// The next instant [`handle_timeout`](Self::handle_timeout) has
    /// something to do.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.state.handshake_until;
        if !self.is_done() {
            next = earliest(next, self.state.until);
        }
        #[cfg(feature = "nats")]
        if let Proto::Nats(n) = &self.proto {
            if self.state.ours == Ours::Open && !self.is_down() {
                next = earliest(next, n.session.poll_timeout());
            }
        }
        next
    }

    /// Runs what is due at `now`: a handshake too slow fails, the linger
    /// gives up, a quiet NATS server is pinged or given up.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Some(until) = self.state.handshake_until {
            if now >= until && !self.state.established {
                self.state.handshake_until = None;
                let err = self.handshake_timeout();
                self.fail(err);
            }
        }
        if let Some(until) = self.state.until {
            if now >= until && !self.is_done() {
                self.give_up();
            }
        }
        #[cfg(feature = "nats")]
        if let Proto::Nats(n) = &mut self.proto {
            if self.state.ours == Ours::Open && !self.state.failed {
                match n.session.on_timeout(now) {
                    Ok(Some(ping)) => self.queue_control(ping),
                    Ok(None) => {}
                    Err(reason) => {
                        let err = Error::Nats {
                            addr: self.peer.clone(),
                            reason,
                        };
                        self.fail(err)
                    }
                }
            }
        }
    }

    /// The linger passed: what could not be written is lost with a reset
    /// (and, for a close, said as `Unsent`); a peer whose end did not come
    /// is not waited for any more.
    fn give_up(&mut self) {
        self.state.gave_up = true;
        if self.state.ours != Ours::Ended {
            let bytes = self.queued() as u64;
            if self.state.closing && !self.state.reported && !self.state.failed {
                self.record(Error::Unsent {
                    addr: self.peer.clone(),
                    bytes,
                });
            }
            self.state.reset = true;
            self.discard_output();
            self.state.ours = Ours::Ended;
        }
    }

    /// The error of a handshake that did not finish in time: the first
    /// one not over.
    fn handshake_timeout(&self) -> Error {
        #[cfg(feature = "tls")]
        if self.tls.as_ref().is_some_and(|t| !t.is_established()) {
            return Error::Tls {
                addr: self.peer.clone(),
                reason: crate::tls::TlsError::HandshakeTimeout,
                source: None,
            };
        }
        match &self.proto {
            #[cfg(feature = "ws")]
            Proto::Ws(_) => Error::WebSocket {
                addr: self.peer.clone(),
                reason: crate::ws::WsError::HandshakeTimeout,
            },
            #[cfg(feature = "nats")]
            Proto::Nats(_) => Error::Nats {
                addr: self.peer.clone(),
                reason: crate::nats::NatsError::HandshakeTimeout,
            },
            _ => Error::Timeout,
        }
    }

    // -----------------------------------------------------------------------
    // The end.

    /// The end, derived from the facts (see the module docs); `None` while
    /// it is not decided.
    fn decided(&self) -> Option<Decided> {
        let s = &self.state;
        if s.answered {
            // Plain HTTP, answered: never a conversation, never an end.
            return None;
        }
        if s.aborted {
            return Some(Decided::Aborted);
        }
        if s.failed && (s.closing || !s.ended_before_failure) {
            return Some(Decided::Failed);
        }
        if s.closing {
            let ended = s.ours == Ours::Ended;
            // The peer's own end after ours confirms it: a protocol's end
            // marker (a close frame, `close_notify`) at once, the end of
            // a plain stream once read (a reset seen with it fails it).
            if ended && s.peer_end && (s.gave_up || self.peer_finished()) {
                return Some(Decided::Closed(Delivery::Confirmed));
            }
            if s.gave_up || (ended && s.eof) {
                return Some(Decided::Closed(Delivery::Unknown));
            }
            return None;
        }
        s.peer_end.then_some(Decided::Peer)
    }

    /// The end, once it is decided, handed out once.
    pub(crate) fn poll_end(&mut self) -> Option<End> {
        if self.state.reported {
            return None;
        }
        let end = match self.decided()? {
            Decided::Aborted => End::Aborted,
            Decided::Failed => End::Failed(self.take_error()),
            Decided::Closed(d) => End::Closed(d),
            Decided::Peer => End::Peer,
        };
        crate::trace::ended(&self.span, &self.peer, &end);
        self.state.reported = true;
        Some(end)
    }

    fn take_error(&mut self) -> Error {
        self.state.error.take().map_or(Error::Closed, |e| *e)
    }

    /// What a blocking `close` returns, once it is known: delivery, or the
    /// error (a reset after the peer's clean end among them). A
    /// conversation whose end was reported before as a failure says
    /// `Unknown` (its error was returned then).
    pub(crate) fn poll_close(&mut self) -> Option<Result<Delivery, Error>> {
        if !self.state.reported {
            return match self.poll_end()? {
                End::Closed(d) => Some(Ok(d)),
                End::Failed(e) => Some(Err(e)),
                End::Peer | End::Aborted | End::Idle => Some(Ok(Delivery::Unknown)),
            };
        }
        // Reported before (the peer's end, or a failure).
        if let Some(err) = self.state.error.take() {
            return Some(Err(*err));
        }
        let s = &self.state;
        if s.failed || s.aborted {
            return Some(Ok(Delivery::Unknown));
        }
        if s.ours == Ours::Ended && s.peer_end && (s.gave_up || self.peer_finished()) {
            return Some(Ok(Delivery::Confirmed));
        }
        if s.gave_up {
            return Some(Ok(Delivery::Unknown));
        }
        None
    }

    /// `true` once nothing more is to be done: the socket can be released.
    pub(crate) fn is_done(&self) -> bool {
        let s = &self.state;
        s.ours == Ours::Ended
            && !s.shutdown_due
            && (s.aborted
                || s.failed
                || s.eof
                || s.gave_up
                || (self.peer_finished() && (s.reported || !s.closing) && !s.answered))
    }

    /// The peer is done sending: the end of its bytes, or its end said by
    /// the protocol with nothing to come below it (over TLS, once its
    /// `close_notify` came too, which follows a WebSocket close frame:
    /// a socket closed before it is read would answer it with a reset).
    fn peer_finished(&self) -> bool {
        let s = &self.state;
        #[cfg(feature = "tls")]
        let below = self.tls.as_ref().is_none_or(|t| t.peer_closed());
        #[cfg(not(feature = "tls"))]
        let below = true;
        s.eof || (s.peer_end_said && below)
    }

    /// Release with a reset (`SO_LINGER` 0).
    pub(crate) fn wants_reset(&self) -> bool {
        self.state.reset
    }
}

/// The end, before it is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decided {
    Aborted,
    Failed,
    Closed(Delivery),
    Peer,
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
