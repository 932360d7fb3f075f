//! The receiving side of a stream connection: bytes (or ciphertext) in;
//! messages, the peer's clean end and failures out, in order. The rules
//! that concern both directions (pongs, close frames, TLS, the end) go
//! through the [`Link`]; the common case — a message of a plain framing,
//! already in the buffer — does not touch it, so a blocking receiving
//! half takes its messages without a lock.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::inbound::{Cutter, Inbound, InboundError, State as InState};
use super::link::Link;
use crate::error::Error;

/// How the receiving side reaches the link: directly (a switchboard owns
/// both), or through a lock (a blocking conversation's halves share it).
/// It is reached only when a rule needs it.
pub(crate) trait LinkRef {
    /// The link, borrowed (or locked) for a moment.
    type Guard<'a>: std::ops::DerefMut<Target = Link>
    where
        Self: 'a;

    fn link(&mut self) -> Self::Guard<'_>;
}

impl LinkRef for &mut Link {
    type Guard<'a>
        = &'a mut Link
    where
        Self: 'a;

    fn link(&mut self) -> &mut Link {
        self
    }
}

impl LinkRef for &std::sync::Mutex<Link> {
    type Guard<'a>
        = std::sync::MutexGuard<'a, Link>
    where
        Self: 'a;

    fn link(&mut self) -> std::sync::MutexGuard<'_, Link> {
        // A panic while it was held leaves nothing half done that matters
        // more than the panic: go on with the link as it is.
        self.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The most ciphertext one read takes: one whole record and then some.
#[cfg(feature = "tls")]
const CIPHER_CHUNK: usize = 17 * 1024;

/// The time, read only when a rule needs it (most messages need none).
pub(crate) trait Clock: Copy {
    fn now(self) -> Instant;
}

impl Clock for Instant {
    fn now(self) -> Instant {
        self
    }
}

/// The system's clock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now;

impl Clock for Now {
    fn now(self) -> Instant {
        Instant::now()
    }
}

/// What the protocol keeps on the receiving side.
#[derive(Debug)]
enum Proto {
    Framed,
    #[cfg(feature = "ws")]
    Ws(Box<WsRx>),
    #[cfg(feature = "nats")]
    Nats,
}

#[cfg(feature = "ws")]
#[derive(Debug)]
struct WsRx {
    reader: crate::ws::reader::WsReader,
    /// Frames come masked (a server's): lend small messages from
    /// `scratch`, unmasked into it.
    lend: bool,
    scratch: Vec<u8>,
}

/// What [`Rx::next`] found.
#[derive(Debug)]
pub(crate) enum Next {
    /// A message.
    Message(Bytes),
    /// A message, lent: [`Rx::lent`].
    Lent,
    /// Nothing whole yet: more bytes are needed.
    More,
    /// The conversation's end is known (the peer's clean end, or a
    /// failure): the link says which.
    End,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Rx {
    inbound: Inbound,
    proto: Proto,
    /// TLS is below (ciphertext arrives).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    tls: bool,
    /// The peer's `close_notify` came: after the messages before it, the
    /// clean end.
    tls_closed: bool,
    /// Where ciphertext is read (a blocking driver's; allocated at the
    /// first read).
    #[cfg(feature = "tls")]
    cipher_in: Vec<u8>,
    /// The last message was lent from the WebSocket scratch buffer.
    lent_scratch: bool,
    /// The last message came in a text frame (WebSocket).
    last_text: bool,
}

impl Rx {
    /// A receiving side cutting with `cutter`, its messages whole within
    /// `deadline` of their first bytes.
    pub(crate) fn framed(cutter: Cutter, deadline: Duration) -> Rx {
        Rx::with(cutter, deadline, Proto::Framed)
    }

    /// A WebSocket's receiving side: first an HTTP head, then frames of
    /// messages at most `max` bytes (`server`: frames come masked).
    #[cfg(feature = "ws")]
    pub(crate) fn ws(server: bool, max: usize, deadline: Duration) -> Rx {
        Rx::with(
            Cutter::HttpHead { scanned: 0 },
            deadline,
            Proto::Ws(Box::new(WsRx {
                reader: crate::ws::reader::WsReader::new(max, deadline),
                lend: server,
                scratch: Vec::new(),
            })),
        )
    }

    /// A NATS client's receiving side: the server's operations, payloads
    /// at most `max` bytes.
    #[cfg(feature = "nats")]
    pub(crate) fn nats(max: usize, deadline: Duration) -> Rx {
        Rx::with(Cutter::NatsOps { max }, deadline, Proto::Nats)
    }

    fn with(cutter: Cutter, deadline: Duration, proto: Proto) -> Rx {
        Rx {
            inbound: Inbound::new(cutter, deadline),
            proto,
            tls: false,
            tls_closed: false,
            #[cfg(feature = "tls")]
            cipher_in: Vec::new(),
            lent_scratch: false,
            last_text: false,
        }
    }

    /// Ciphertext arrives from now on (TLS is below).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn set_tls(&mut self) {
        self.tls = true;
    }

    pub(crate) fn set_deadline(&mut self, deadline: Duration) {
        self.inbound.set_deadline(deadline);
        #[cfg(feature = "ws")]
        if let Proto::Ws(ws) = &mut self.proto {
            ws.reader.set_deadline(deadline);
        }
    }

    /// Gives the message under way `by` more time: its reading was paused
    /// that long.
    pub(crate) fn postpone(&mut self, by: Duration) {
        self.inbound.postpone(by);
        #[cfg(feature = "ws")]
        if let Proto::Ws(ws) = &mut self.proto {
            ws.reader.postpone(by);
        }
    }

    pub(crate) fn max_message_len(&self) -> usize {
        self.inbound.max_message_len()
    }

    /// The capacity of the read buffer: what an idle conversation holds.
    pub(crate) fn capacity(&self) -> usize {
        #[cfg(feature = "tls")]
        return self.inbound.capacity() + self.cipher_in.capacity();
        #[cfg(not(feature = "tls"))]
        self.inbound.capacity()
    }

    /// Bytes received and not handed out yet.
    pub(crate) fn buffered(&self) -> usize {
        self.inbound.buffered()
    }

    /// Gives the read buffers back when nothing is buffered.
    pub(crate) fn release_if_empty(&mut self) {
        self.inbound.release_if_empty();
    }

    /// The last message came in a text frame.
    pub(crate) fn last_was_text(&self) -> bool {
        self.last_text
    }

    // -----------------------------------------------------------------------
    // Bytes in.

    /// Where the next read goes (a blocking driver's): the read buffer, or
    /// for TLS the ciphertext buffer.
    pub(crate) fn space(&mut self) -> &mut [u8] {
        #[cfg(feature = "tls")]
        if self.tls {
            if self.cipher_in.len() < CIPHER_CHUNK {
                self.cipher_in.resize(CIPHER_CHUNK, 0);
            }
            return &mut self.cipher_in;
        }
        self.inbound.space()
    }

    /// A read put `n` bytes (at least 1) at the front of
    /// [`space`](Self::space), at `now`. Plaintext is only buffered here:
    /// [`next`](Self::next) takes the messages out.
    pub(crate) fn on_read(&mut self, link: &mut impl LinkRef, n: usize, now: Instant) {
        #[cfg(feature = "tls")]
        if self.tls {
            let cipher = std::mem::take(&mut self.cipher_in);
            let mut link = link.link();
            let inbound = &mut self.inbound;
            Rx::tls_read(
                &mut self.tls_closed,
                &mut link,
                &cipher[..n],
                now,
                &mut |chunk, now| inbound.extend(chunk, now),
            );
            self.cipher_in = cipher;
            return;
        }
        let _ = link;
        self.inbound.filled(n, now);
    }

    /// Takes what another half read for this side (plaintext that came
    /// while the sending half drove a TLS handshake).
    pub(crate) fn take_early(&mut self, link: &mut Link, now: Instant) {
        #[cfg(feature = "tls")]
        {
            if let Some(tls) = link.tls.as_mut().filter(|t| !t.early.is_empty()) {
                let early = std::mem::take(&mut tls.early);
                self.inbound.extend(&early, now);
            }
            if link.tls.as_ref().is_some_and(|t| t.peer_closed()) {
                self.tls_closed = true;
            }
        }
        let _ = (link, now);
    }

    /// Bytes read into a buffer that is not this side's (a switchboard's
    /// scratch buffer), at `now`: every whole message goes to `emit` (a
    /// copy), only the start of one still arriving is kept here.
    pub(crate) fn on_bytes(
        &mut self,
        link: &mut Link,
        bytes: &[u8],
        now: Instant,
        emit: &mut dyn FnMut(Bytes),
    ) {
        #[cfg(feature = "tls")]
        if self.tls {
            let mut decoded = Ok(());
            let fast = self.fast();
            let inbound = &mut self.inbound;
            Rx::tls_read(&mut self.tls_closed, link, bytes, now, &mut |chunk, now| {
                if decoded.is_err() {
                    return;
                }
                if fast {
                    decoded = inbound.decode_from(chunk, now, &mut *emit);
                } else {
                    inbound.extend(chunk, now);
                }
            });
            if let Err(e) = decoded {
                self.inbound_failed(link, e, now);
                return;
            }
            self.drain(link, now, emit);
            return;
        }
        if self.fast() {
            if let Err(e) = self.inbound.decode_from(bytes, now, &mut *emit) {
                self.inbound_failed(link, e, now);
            }
            return;
        }
        self.inbound.extend(bytes, now);
        self.drain(link, now, emit);
    }

    /// Messages of a plain framing, established: cut without the link.
    fn fast(&self) -> bool {
        matches!(self.proto, Proto::Framed) && !self.tls_closed
    }

    /// Takes every message out, to `emit`.
    fn drain(&mut self, link: &mut Link, now: Instant, emit: &mut dyn FnMut(Bytes)) {
        let mut link = link;
        loop {
            match self.next(&mut link, now, false) {
                Next::Message(m) => emit(m),
                Next::Lent => emit(Bytes::copy_from_slice(self.lent())),
                Next::More | Next::End => return,
            }
        }
    }

    /// Feeds ciphertext to TLS; plaintext goes to `plain`.
    #[cfg(feature = "tls")]
    fn tls_read(
        tls_closed: &mut bool,
        link: &mut Link,
        cipher: &[u8],
        now: Instant,
        plain: &mut dyn FnMut(&[u8], Instant),
    ) {
        use crate::tls::session::Plain;
        if link.is_down() && !link.was_answered() {
            return;
        }
        let Some(tls) = link.tls.as_mut() else {
            return;
        };
        let mut established = false;
        let result = tls.read(cipher, |p| match p {
            Plain::Established => established = true,
            Plain::Data(chunk) => plain(chunk, now),
        });
        let closed = tls.peer_closed();
        if let Err(failure) = result {
            let err = failure.at(link.peer.clone());
            // The alert rustls queued says why, if the socket takes it.
            link.fail_with_goodbye(err, now);
            return;
        }
        if established {
            #[cfg(feature = "nats")]
            if let super::link::Proto::Nats(n) = &mut link.proto {
                if !n.session.is_open() {
                    let hello = n.session.tls_established();
                    link.queue_control(&hello);
                }
            }
            link.check_established();
        }
        if closed {
            *tls_closed = true;
        }
    }

    /// The end of the peer's bytes came. Call it once every whole message
    /// has been taken out.
    pub(crate) fn on_eof(&mut self, link: &mut impl LinkRef, now: Instant) {
        let mut link = link.link();
        let link = &mut *link;
        let decide = !link.is_down() && !link.has_peer_ended();
        link.eof();
        if decide {
            if let Some(err) = self.eof_error(link) {
                link.fail(err);
            } else {
                self.clean_end(link, now);
            }
        }
    }

    /// What the end of the bytes means, if it is not a clean end.
    fn eof_error(&mut self, link: &mut Link) -> Option<Error> {
        let peer = link.peer.clone();
        let _ = &peer;
        #[cfg(feature = "tls")]
        if let Some(tls) = &link.tls {
            if !tls.is_established() {
                return Some(Error::Tls {
                    addr: peer,
                    reason: crate::tls::TlsError::ClosedDuringHandshake,
                    source: None,
                });
            }
        }
        match &self.proto {
            #[cfg(feature = "ws")]
            Proto::Ws(ws) => {
                let upgraded = matches!(&link.proto, super::link::Proto::Ws(l) if l.upgraded);
                if !upgraded {
                    return Some(Error::WebSocket {
                        addr: peer,
                        reason: crate::ws::WsError::BadHandshake(
                            "the connection ended during the handshake".into(),
                        ),
                    });
                }
                if ws.reader.in_message() {
                    return Some(Error::UnexpectedEof { addr: peer });
                }
            }
            #[cfg(feature = "nats")]
            Proto::Nats => {
                if link.ours() == super::link::Ours::Open {
                    let reason = match &link.proto {
                        super::link::Proto::Nats(n) if !n.session.is_open() && !self.tls => {
                            crate::nats::NatsError::NotNats
                        }
                        _ => crate::nats::NatsError::Disconnected,
                    };
                    return Some(Error::Nats { addr: peer, reason });
                }
                // We were ending: the server's end answers ours.
                return None;
            }
            Proto::Framed => {}
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &link.tls {
            if !self.tls_closed {
                if link.ours() != super::link::Ours::Open {
                    // We were closing: the end without close_notify says
                    // nothing of delivery (the link decides Unknown).
                    return None;
                }
                if self.inbound.buffered() > 0 || !tls.at_record_boundary() {
                    return Some(Error::UnexpectedEof { addr: peer });
                }
                return Some(Error::NoCloseNotify { addr: peer });
            }
        }
        None
    }

    /// The peer's clean end, if nothing of a message is left cut short.
    fn clean_end(&mut self, link: &mut Link, now: Instant) {
        // A NATS server's end after ours answers it (while we are open, it
        // is a disconnect: `eof_error` said so).
        #[cfg(feature = "nats")]
        if matches!(self.proto, Proto::Nats) {
            link.peer_ended();
            return;
        }
        #[cfg(feature = "tls")]
        if link.tls.is_some() && !self.tls_closed && link.ours() != super::link::Ours::Open {
            return;
        }
        match self.inbound.end() {
            Ok(()) => link.peer_ended(),
            Err(e) => self.inbound_failed(link, e, now),
        }
    }

    /// A read failed (a reset, or another error of the socket).
    pub(crate) fn on_error(&mut self, link: &mut impl LinkRef, err: Error) {
        let mut link = link.link();
        let err = match (&self.proto, err) {
            #[cfg(feature = "nats")]
            (Proto::Nats, Error::ConnectionReset { addr } | Error::BrokenPipe { addr }) => {
                Error::Nats {
                    addr,
                    reason: crate::nats::NatsError::Disconnected,
                }
            }
            (_, err) => err,
        };
        link.fail(err);
    }

    // -----------------------------------------------------------------------
    // Messages out.

    /// Lends the next message if it is a whole one of a plain framing
    /// already in the buffer (see [`lent`](Self::lent)); `false` leaves
    /// everything else to [`next`](Self::next).
    #[allow(irrefutable_let_patterns)]
    #[inline(always)]
    pub(crate) fn lend_whole(&mut self) -> bool {
        if let Proto::Framed = self.proto {
            self.lent_scratch = false;
            return self.inbound.lend_whole();
        }
        false
    }

    /// The message [`lend_whole`](Self::lend_whole) lent.
    #[inline(always)]
    pub(crate) fn lent_whole(&self) -> &[u8] {
        self.inbound.lent()
    }

    /// The next message, in order (lent, if `lend`, when it can be);
    /// control frames and operations are answered on the way.
    #[allow(irrefutable_let_patterns)]
    #[inline]
    pub(crate) fn next(&mut self, link: &mut impl LinkRef, now: impl Clock, lend: bool) -> Next {
        if let Proto::Framed = self.proto {
            // The common case, inlined into the driver: a whole message of
            // a plain framing already in the buffer.
            self.lent_scratch = false;
            let got = if lend {
                self.inbound
                    .lend_next()
                    .map(|lent| lent.then_some(Next::Lent))
            } else {
                self.inbound.next().map(|m| m.map(Next::Message))
            };
            if let Ok(Some(next)) = got {
                return next;
            }
            return self.framed_none(got, link, now);
        }
        self.next_unframed(link, now, lend)
    }

    /// What no message of a plain framing means: more to wait for, the
    /// end, or a framing error.
    #[cold]
    fn framed_none(
        &mut self,
        got: Result<Option<Next>, InboundError>,
        link: &mut impl LinkRef,
        now: impl Clock,
    ) -> Next {
        match got {
            Ok(Some(next)) => next,
            Ok(None) if self.tls_closed => {
                let mut link = link.link();
                if !link.is_down() && !link.has_peer_ended() {
                    self.clean_end(&mut link, now.now());
                }
                Next::End
            }
            Ok(None) => match self.inbound.state() {
                InState::Open => {
                    let link = link.link();
                    if link.is_down() || link.has_peer_ended() {
                        Next::End
                    } else {
                        Next::More
                    }
                }
                _ => Next::End,
            },
            Err(e) => {
                self.inbound_failed(&mut link.link(), e, now.now());
                Next::End
            }
        }
    }

    /// [`next`](Self::next) for a protocol above the stream.
    fn next_unframed(&mut self, link: &mut impl LinkRef, now: impl Clock, lend: bool) -> Next {
        self.lent_scratch = false;
        loop {
            if let Some(next) = self.next_unit(link, now.now(), lend) {
                return next;
            }
        }
    }

    /// One unit of a protocol above the stream: `Some` when it decided
    /// what to return, `None` to go on.
    fn next_unit(&mut self, link: &mut impl LinkRef, now: Instant, lend: bool) -> Option<Next> {
        let _ = (lend, now);
        let mut link = link.link();
        let link = &mut *link;
        if link.is_down() {
            return Some(Next::End);
        }
        #[cfg(feature = "ws")]
        if let Proto::Ws(ws) = &mut self.proto {
            let upgraded = matches!(&link.proto, super::link::Proto::Ws(l) if l.upgraded);
            if !upgraded {
                return match self.inbound.next() {
                    Ok(Some(head)) => {
                        self.ws_head(link, &head, now);
                        if link.is_down() {
                            Some(Next::End)
                        } else {
                            None
                        }
                    }
                    Ok(None) => Some(Next::More),
                    Err(_) => {
                        let reason =
                            crate::ws::WsError::BadHandshake("an HTTP head over 16 KiB".into());
                        self.ws_refuse(link, reason, now);
                        Some(Next::End)
                    }
                };
            }
            let lend_it = lend && ws.lend;
            let event = if ws.lend {
                match self.inbound.lend_next() {
                    Ok(true) => {
                        let frame = self.inbound.lent();
                        if lend_it {
                            ws.reader.frame_lent(frame, || now, &mut ws.scratch)
                        } else {
                            ws.reader
                                .frame_ref(frame, || now)
                                .map(crate::ws::reader::Lent::Other)
                        }
                    }
                    Ok(false) => return Some(self.more_or_end(link)),
                    Err(e) => {
                        self.inbound_failed(link, e, now);
                        return Some(Next::End);
                    }
                }
            } else {
                match self.inbound.next() {
                    Ok(Some(frame)) => ws
                        .reader
                        .frame(frame, || now)
                        .map(crate::ws::reader::Lent::Other),
                    Ok(None) => return Some(self.more_or_end(link)),
                    Err(e) => {
                        self.inbound_failed(link, e, now);
                        return Some(Next::End);
                    }
                }
            };
            return self.ws_event(link, event, now);
        }
        #[cfg(feature = "nats")]
        if let Proto::Nats = self.proto {
            let op = match self.inbound.next() {
                Ok(Some(op)) => op,
                Ok(None) => return Some(self.more_or_end(link)),
                Err(e) => {
                    self.inbound_failed(link, e, now);
                    return Some(Next::End);
                }
            };
            return self.nats_op(link, op, now);
        }
        Some(Next::More)
    }

    /// Nothing whole is buffered: more is needed, unless the peer ended.
    #[cfg_attr(not(any(feature = "ws", feature = "nats")), allow(dead_code))]
    fn more_or_end(&mut self, link: &mut Link) -> Next {
        if link.has_peer_ended() || link.is_down() {
            Next::End
        } else {
            Next::More
        }
    }

    /// The message lent by the last [`next`](Self::next) that said
    /// [`Next::Lent`].
    pub(crate) fn lent(&self) -> &[u8] {
        #[cfg(feature = "ws")]
        if self.lent_scratch {
            if let Proto::Ws(ws) = &self.proto {
                return &ws.scratch;
            }
        }
        self.inbound.lent()
    }

    /// The read buffer failed (bytes that break the framing, a unit over
    /// the limit, the end inside a message, the deadline).
    fn inbound_failed(&mut self, link: &mut Link, e: InboundError, now: Instant) {
        let _ = now;
        let peer = link.peer.clone();
        let err = match e {
            InboundError::Frame(f) => Error::from_frame(f, &peer),
            InboundError::UnexpectedEof => Error::UnexpectedEof { addr: peer.clone() },
            InboundError::Deadline(deadline) => Error::DeadlineExceeded {
                addr: peer.clone(),
                deadline,
            },
        };
        match &self.proto {
            #[cfg(feature = "ws")]
            Proto::Ws(_) => {
                let code = match err {
                    Error::MessageTooLarge { .. } => crate::ws::frames::CLOSE_TOO_BIG,
                    _ => crate::ws::frames::CLOSE_PROTOCOL,
                };
                link.ws_fail(err, code, now);
            }
            #[cfg(feature = "nats")]
            Proto::Nats => {
                let heard =
                    matches!(&link.proto, super::link::Proto::Nats(n) if n.session.heard_info());
                let err = match err {
                    // Not even an operation where `INFO` should be.
                    Error::InvalidFrame { .. } if !heard => Error::Nats {
                        addr: peer,
                        reason: crate::nats::NatsError::NotNats,
                    },
                    Error::InvalidFrame { reason, .. } => Error::Nats {
                        addr: peer,
                        reason: crate::nats::NatsError::Protocol(reason.to_string()),
                    },
                    err => err,
                };
                link.fail(err);
            }
            Proto::Framed => link.fail(err),
        }
    }

    // -----------------------------------------------------------------------
    // WebSocket.

    /// The HTTP head before the upgrade: a server answers it, a client
    /// checks the answer to its request.
    #[cfg(feature = "ws")]
    fn ws_head(&mut self, link: &mut Link, head: &[u8], now: Instant) {
        use crate::ws::upgrade::{answer, Answer};
        let super::link::Proto::Ws(ws) = &mut link.proto else {
            return;
        };
        let masked = !ws.client;
        if let Some(asked) = ws.asked.take() {
            if let Err(reason) = asked.check(head) {
                let err = Error::WebSocket {
                    addr: link.peer.clone(),
                    reason,
                };
                link.fail(err);
                return;
            }
        } else {
            match answer(head, ws.page.as_deref()) {
                Answer::Upgrade(response) => {
                    link.out.push_raw(&response);
                }
                Answer::Page(response) => {
                    link.answered(&response, super::link::Answered::Page, now);
                    return;
                }
                Answer::Refuse(response, reason) => {
                    let err = Error::WebSocket {
                        addr: link.peer.clone(),
                        reason,
                    };
                    link.answered(&response, super::link::Answered::Refused(err), now);
                    return;
                }
            }
        }
        if let super::link::Proto::Ws(ws) = &mut link.proto {
            ws.upgraded = true;
        }
        let max = match &self.proto {
            Proto::Ws(w) => w.reader_max(),
            _ => self.inbound.max_message_len(),
        };
        self.inbound.set_codec(Cutter::WsFrames { masked, max });
        link.check_established();
    }

    /// A head too long to be one: refused with `400`.
    #[cfg(feature = "ws")]
    fn ws_refuse(&mut self, link: &mut Link, reason: crate::ws::WsError, now: Instant) {
        let err = Error::WebSocket {
            addr: link.peer.clone(),
            reason,
        };
        let server = matches!(&link.proto, super::link::Proto::Ws(ws) if !ws.client);
        if server {
            link.answered(
                b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                super::link::Answered::Refused(err),
                now,
            );
        } else {
            link.fail(err);
        }
    }

    /// What a frame brought.
    #[cfg(feature = "ws")]
    fn ws_event(
        &mut self,
        link: &mut Link,
        event: Result<crate::ws::reader::Lent, crate::ws::reader::ReadFault>,
        now: Instant,
    ) -> Option<Next> {
        use crate::ws::reader::{Lent, ReadFault, WsEvent};
        match event {
            Ok(Lent::Message { text }) => {
                self.last_text = text;
                self.lent_scratch = true;
                Some(Next::Lent)
            }
            Ok(Lent::Other(None)) | Ok(Lent::Other(Some(WsEvent::Pong))) => None,
            Ok(Lent::Other(Some(WsEvent::Message { data, text }))) => {
                self.last_text = text;
                Some(Next::Message(data))
            }
            Ok(Lent::Other(Some(WsEvent::Ping(payload)))) => {
                link.ping(payload);
                None
            }
            Ok(Lent::Other(Some(WsEvent::Close { code }))) => {
                link.ws_peer_closed(code);
                Some(Next::End)
            }
            Err(fault) => {
                let peer = link.peer.clone();
                let (code, err) = match fault {
                    ReadFault::Frame(crate::ws::frames::FrameFault::Invalid(reason)) => (
                        crate::ws::frames::CLOSE_PROTOCOL,
                        Error::InvalidFrame { addr: peer, reason },
                    ),
                    ReadFault::Frame(crate::ws::frames::FrameFault::TooLarge { len, max }) => (
                        crate::ws::frames::CLOSE_TOO_BIG,
                        Error::MessageTooLarge { len, max },
                    ),
                    ReadFault::NotUtf8 => (
                        crate::ws::frames::CLOSE_NOT_UTF8,
                        Error::InvalidFrame {
                            addr: peer,
                            reason: "a text message that is not UTF-8",
                        },
                    ),
                    ReadFault::Deadline(deadline) => (
                        crate::ws::frames::CLOSE_PROTOCOL,
                        Error::DeadlineExceeded {
                            addr: peer,
                            deadline,
                        },
                    ),
                };
                link.ws_fail(err, code, now);
                Some(Next::End)
            }
        }
    }

    // -----------------------------------------------------------------------
    // NATS.

    /// One operation from the server.
    #[cfg(feature = "nats")]
    fn nats_op(&mut self, link: &mut Link, op: Bytes, now: Instant) -> Option<Next> {
        use crate::nats::session::Step;
        let super::link::Proto::Nats(n) = &mut link.proto else {
            return Some(Next::End);
        };
        let step = n.session.on_op(op, now, cfg!(feature = "tls"));
        let max = n.session.max();
        match step {
            Ok(Step::Message(payload)) => return Some(Next::Message(payload)),
            Ok(Step::Nothing) => {}
            Ok(Step::Send(bytes)) if bytes == crate::nats::ops::PONG => link.ping(Bytes::new()),
            Ok(Step::Send(bytes)) => link.queue_control(&bytes),
            Ok(Step::Established) => link.check_established(),
            Ok(Step::StartTls) => self.nats_start_tls(link),
            Err(reason) => {
                let err = Error::Nats {
                    addr: link.peer.clone(),
                    reason,
                };
                link.fail(err);
                return Some(Next::End);
            }
        }
        if max != self.inbound.max_message_len() {
            self.inbound.set_codec(Cutter::NatsOps { max });
        }
        if link.is_down() {
            Some(Next::End)
        } else {
            None
        }
    }

    /// The server requires TLS: everything from now on goes through it.
    #[cfg(feature = "nats")]
    fn nats_start_tls(&mut self, link: &mut Link) {
        #[cfg(feature = "tls")]
        {
            let super::link::Proto::Nats(n) = &mut link.proto else {
                return;
            };
            let (settings, name) = n.tls.clone().unwrap_or_else(|| {
                let name = rustls::pki_types::ServerName::try_from("localhost")
                    .expect("a DNS name")
                    .to_owned();
                (crate::tls::TlsClient::default(), name)
            });
            match crate::tls::session::TlsSession::client(&settings, name) {
                Ok(session) => {
                    link.tls = Some(Box::new(session));
                    self.tls = true;
                }
                Err(failure) => {
                    let err = failure.at(link.peer.clone());
                    link.fail(err);
                }
            }
        }
        #[cfg(not(feature = "tls"))]
        let _ = link;
    }

    // -----------------------------------------------------------------------
    // Time.

    /// When a message under way must be whole.
    pub(crate) fn poll_timeout(&self) -> Option<std::time::Instant> {
        let framed = self.inbound.deadline();
        #[cfg(feature = "ws")]
        if let Proto::Ws(ws) = &self.proto {
            return match (framed, ws.reader.deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        framed
    }

    /// A message under way that missed its deadline fails the
    /// conversation. Call it only after reading everything that has
    /// arrived: a message whole in the buffer is never refused.
    pub(crate) fn handle_timeout(&mut self, link: &mut impl LinkRef, now: Instant) {
        if let Err(e) = self.inbound.check_deadline(now) {
            self.inbound_failed(&mut link.link(), e, now);
            return;
        }
        #[cfg(feature = "ws")]
        if let Proto::Ws(ws) = &mut self.proto {
            if let Err(fault) = ws.reader.check_deadline(now) {
                let mut link = link.link();
                let _ = self.ws_event(&mut link, Err(fault), now);
            }
        }
    }
}

#[cfg(feature = "ws")]
impl WsRx {
    fn reader_max(&self) -> usize {
        self.reader.max()
    }
}
