//! WebSocket on the switchboard: the upgrade (or a page, for a browser
//! that asks for one), then frames through the same engine the blocking
//! conversations use, driven by readiness.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::ListenerId;
use crate::codec::Codec;
use crate::engine::inbound::Inbound;
use crate::engine::outbound::Outbound;
use crate::engine::websocket::{
    encode, MaskKeys, OpCode, ReadFault, WsEvent, WsReader, CLOSE_NORMAL, CLOSE_PROTOCOL,
    CLOSE_TOO_BIG,
};
use crate::error::Error;
use crate::transport::ws::{is_upgrade, WsError};

/// What a WebSocket listener answers to a plain HTTP `GET` (a browser
/// opening the address): a page, or `426 Upgrade Required`.
#[derive(Clone, Debug)]
pub struct Page {
    content_type: String,
    body: Bytes,
}

impl Page {
    /// A page of `content_type` (`text/html; charset=utf-8` …).
    pub fn new(content_type: impl Into<String>, body: impl Into<Bytes>) -> Page {
        Page {
            content_type: content_type.into(),
            body: body.into(),
        }
    }

    /// An HTML page (UTF-8).
    pub fn html(body: impl Into<Bytes>) -> Page {
        Page::new("text/html; charset=utf-8", body)
    }
}

/// A conversation's WebSocket state.
pub(super) struct WsState {
    upgraded: bool,
    reader: WsReader,
    keys: Option<MaskKeys>,
    /// Accepted by this listener and not reported yet.
    listener: Option<ListenerId>,
    page: Option<Arc<Page>>,
    close_sent: bool,
    max: usize,
}

/// What the bytes brought, beyond messages.
pub(super) enum Turn {
    /// Nothing more.
    Going,
    /// The upgrade is done (report the conversation now).
    Upgraded(Option<ListenerId>),
    /// The peer's close frame: the clean end (our reply is queued).
    PeerClosed,
    /// A page or a refusal was queued: write it, then close, silently.
    Answered,
}

impl WsState {
    /// A server's state, waiting for the upgrade request.
    pub(super) fn accepted(
        listener: ListenerId,
        page: Option<Arc<Page>>,
        max: usize,
        deadline: std::time::Duration,
    ) -> WsState {
        WsState {
            upgraded: false,
            reader: WsReader::new(max, deadline),
            keys: None,
            listener: Some(listener),
            page,
            close_sent: false,
            max,
        }
    }

    /// A client's state, after its upgrade (adopted).
    #[allow(dead_code)]
    pub(super) fn client(seed: u128, max: usize, deadline: std::time::Duration) -> WsState {
        WsState {
            upgraded: true,
            reader: WsReader::new(max, deadline),
            keys: Some(MaskKeys::new(seed)),
            listener: None,
            page: None,
            close_sent: false,
            max,
        }
    }

    /// The codecs a server's stream starts with.
    pub(super) fn server_codecs(max: usize) -> (Codec, Codec) {
        (
            crate::codec::Framing::Raw
                .codec(max.saturating_add(crate::engine::websocket::MAX_HEADER)),
            Codec::http_head(crate::transport::ws::MAX_HTTP_HEAD),
        )
    }

    pub(super) fn is_upgraded(&self) -> bool {
        self.upgraded
    }

    /// The error for a connection that ended before its upgrade.
    pub(super) fn ended_in_handshake(&self, peer: &crate::addr::Addr) -> Error {
        Error::WebSocket {
            addr: peer.clone(),
            reason: WsError::BadHandshake("the connection ended during the handshake".into()),
        }
    }

    /// A message of fragments is under way.
    pub(super) fn in_message(&self) -> bool {
        self.reader.in_message()
    }

    pub(super) fn pending_listener(&self) -> Option<ListenerId> {
        self.listener
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        self.reader.deadline()
    }

    pub(super) fn check_deadline(&mut self, now: Instant) -> Result<(), Error> {
        self.reader.check_deadline(now).map_err(|f| fault(f, None))
    }

    /// The bytes on the wire of a message of `len` bytes.
    pub(super) fn frame_len(&self, len: usize) -> usize {
        let header = if len < 126 {
            2
        } else if len <= u16::MAX as usize {
            4
        } else {
            10
        };
        header + if self.keys.is_some() { 4 } else { 0 } + len
    }

    pub(super) fn max(&self) -> usize {
        self.max
    }

    /// Queues one frame.
    fn queue(&mut self, out: &mut Outbound, opcode: OpCode, payload: &[u8]) {
        let mask = self.keys.as_mut().map(MaskKeys::next_key);
        out.push_encoded(|dst: &mut BytesMut| encode(opcode, payload, mask, dst));
    }

    /// Queues one message: a text or a binary frame.
    pub(super) fn queue_message(&mut self, out: &mut Outbound, msg: &[u8], text: bool) {
        let opcode = if text { OpCode::Text } else { OpCode::Binary };
        self.queue(out, opcode, msg);
    }

    pub(super) fn close_was_sent(&self) -> bool {
        self.close_sent
    }

    /// Queues our close frame (once).
    pub(super) fn queue_close(&mut self, out: &mut Outbound, code: u16) {
        if !self.close_sent && self.upgraded {
            self.close_sent = true;
            self.queue(out, OpCode::Close, &code.to_be_bytes());
        }
    }

    /// Takes what `inbound` holds: the upgrade request, then frames. Each
    /// whole message goes to `emit`; replies (the upgrade response, pongs,
    /// a close) are queued in `out`.
    pub(super) fn take(
        &mut self,
        inbound: &mut Inbound,
        out: &mut Outbound,
        peer: &crate::addr::Addr,
        now: Instant,
        mut emit: impl FnMut(Bytes),
    ) -> Result<Turn, Error> {
        loop {
            let item = match inbound.next() {
                Ok(Some(item)) => item,
                Ok(None) => return Ok(Turn::Going),
                Err(e) => {
                    let err = crate::switchboard::inbound_error(e, peer);
                    if self.upgraded {
                        let code = match err {
                            Error::MessageTooLarge { .. } => CLOSE_TOO_BIG,
                            _ => CLOSE_PROTOCOL,
                        };
                        self.queue_close(out, code);
                    }
                    return Err(err);
                }
            };
            if !self.upgraded {
                // Reported before any message: the caller comes back for
                // the frames that came with the request.
                return self.upgrade(&item, inbound, out, peer);
            }
            match self.reader.frame(item, || now) {
                Ok(None) | Ok(Some(WsEvent::Pong)) => {}
                Ok(Some(WsEvent::Message { data, .. })) => emit(data),
                Ok(Some(WsEvent::Ping(payload))) => {
                    if !self.close_sent {
                        self.queue(out, OpCode::Pong, &payload);
                    }
                }
                Ok(Some(WsEvent::Close { code })) => {
                    self.queue_close(out, code.unwrap_or(CLOSE_NORMAL));
                    return Ok(Turn::PeerClosed);
                }
                Err(f) => {
                    let code = match f {
                        ReadFault::Frame(crate::engine::websocket::FrameFault::TooLarge {
                            ..
                        }) => CLOSE_TOO_BIG,
                        _ => CLOSE_PROTOCOL,
                    };
                    self.queue_close(out, code);
                    return Err(fault(f, Some(peer)));
                }
            }
        }
    }

    /// The server's side of the upgrade, from the request head.
    fn upgrade(
        &mut self,
        head: &[u8],
        inbound: &mut Inbound,
        out: &mut Outbound,
        peer: &crate::addr::Addr,
    ) -> Result<Turn, Error> {
        use tungstenite::handshake::machine::TryParse;
        let bad = |why: String| Error::WebSocket {
            addr: peer.clone(),
            reason: WsError::BadHandshake(why),
        };
        let request = match tungstenite::handshake::server::Request::try_parse(head) {
            Ok(Some((_, request))) => request,
            Ok(None) => return Err(bad("a cut HTTP request".into())),
            Err(e) => {
                out.push_encoded(|dst| {
                    dst.extend_from_slice(
                        b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                    )
                });
                return Err(bad(e.to_string()));
            }
        };
        if !is_upgrade(&request) {
            let path = request.uri().path();
            let answer = match (&self.page, request.method().as_str(), path) {
                (Some(page), "GET" | "HEAD", "/" | "/index.html") => {
                    let mut head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
                         Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
                        page.content_type,
                        page.body.len()
                    )
                    .into_bytes();
                    if request.method() == "GET" {
                        head.extend_from_slice(&page.body);
                    }
                    head
                }
                (Some(_), _, _) => b"HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec(),
                (None, _, _) => b"HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".to_vec(),
            };
            out.push_encoded(|dst| dst.extend_from_slice(&answer));
            return Ok(Turn::Answered);
        }
        let response = tungstenite::handshake::server::create_response(&request)
            .map_err(|e| bad(e.to_string()))?;
        let mut bytes = Vec::new();
        tungstenite::handshake::server::write_response(&mut bytes, &response)
            .map_err(|e| bad(e.to_string()))?;
        out.push_encoded(|dst| dst.extend_from_slice(&bytes));
        inbound.set_codec(Codec::ws_frames(self.max, true));
        self.upgraded = true;
        Ok(Turn::Upgraded(self.listener.take()))
    }
}

fn fault(f: ReadFault, peer: Option<&crate::addr::Addr>) -> Error {
    let addr = peer.cloned().unwrap_or(crate::addr::Addr::Unknown);
    match f {
        ReadFault::Frame(crate::engine::websocket::FrameFault::Invalid(reason)) => {
            Error::InvalidFrame { addr, reason }
        }
        ReadFault::Frame(crate::engine::websocket::FrameFault::TooLarge { len, max }) => {
            Error::MessageTooLarge { len, max }
        }
        ReadFault::Deadline(deadline) => Error::DeadlineExceeded { addr, deadline },
    }
}
