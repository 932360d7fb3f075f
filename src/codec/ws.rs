//! WebSocket frames as a pure codec (feature `ws`): the engine that
//! converse's `ws://` conversations run, for a program that does its own
//! I/O. Bytes in, messages out; messages in, frames out. Every header is
//! checked before anything is allocated; fragments are joined (their total
//! bounded by the same limit); control frames are handed out as they come.

use bytes::{Bytes, BytesMut};

use super::{Codec, FrameError, Parse};
use crate::engine::websocket::{self, FrameFault, MaskKeys, OpCode, ReadFault, WsEvent, WsReader};

/// What a [`WsDecoder`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WsItem {
    /// A whole message, from a text frame (`text`) or a binary one.
    Message {
        /// Its bytes (a text message's are meant to be UTF-8).
        data: Bytes,
        /// Whether it came in a text frame.
        text: bool,
    },
    /// A ping: answer with a pong carrying the same bytes.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// The peer's close, with its status code if it gave one.
    Close(Option<u16>),
}

/// Decodes the frames of one direction of a WebSocket connection.
///
/// ```
/// use bytes::BytesMut;
/// use converse::codec::ws::{WsDecoder, WsEncoder, WsItem};
///
/// let mut wire = BytesMut::new();
/// let mut client = WsEncoder::client(0x1234_5678);
/// client.text("hello", &mut wire);
/// let mut server = WsDecoder::server(1024);
/// match server.decode(&mut wire)? {
///     Some(WsItem::Message { data, text: true }) => assert_eq!(data, "hello"),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), converse::codec::FrameError>(())
/// ```
#[derive(Debug)]
pub struct WsDecoder {
    codec: Codec,
    reader: WsReader,
}

impl WsDecoder {
    /// A server's decoder: frames must be masked; messages at most `max`
    /// bytes.
    pub fn server(max: usize) -> WsDecoder {
        WsDecoder::new(max, true)
    }

    /// A client's decoder: frames must not be masked.
    pub fn client(max: usize) -> WsDecoder {
        WsDecoder::new(max, false)
    }

    fn new(max: usize, masked: bool) -> WsDecoder {
        WsDecoder {
            codec: Codec::ws_frames(max, masked),
            // Time is the driver's business: no deadline here.
            reader: WsReader::new(max, std::time::Duration::from_secs(365 * 24 * 3600)),
        }
    }

    /// The next item at the front of `buf` (what it used is taken out);
    /// `Ok(None)`: more bytes are needed. An error means the connection
    /// must be failed (close status 1002, or 1009 for `TooLarge`).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<WsItem>, FrameError> {
        loop {
            let consumed = match self.codec.parse(buf)? {
                Parse::Incomplete { .. } => return Ok(None),
                Parse::Frame { consumed, .. } => consumed,
            };
            let frame = buf.split_to(consumed).freeze();
            match self.reader.frame(frame, std::time::Instant::now) {
                Ok(None) => continue,
                Ok(Some(WsEvent::Message { data, text })) => {
                    return Ok(Some(WsItem::Message { data, text }))
                }
                Ok(Some(WsEvent::Ping(payload))) => return Ok(Some(WsItem::Ping(payload))),
                Ok(Some(WsEvent::Pong)) => return Ok(Some(WsItem::Pong)),
                Ok(Some(WsEvent::Close { code })) => return Ok(Some(WsItem::Close(code))),
                Err(ReadFault::Frame(FrameFault::Invalid(why))) => {
                    return Err(FrameError::Invalid(why))
                }
                Err(ReadFault::Frame(FrameFault::TooLarge { len, max })) => {
                    return Err(FrameError::TooLarge { len, max })
                }
                Err(ReadFault::Deadline(_)) => unreachable!("no deadline"),
            }
        }
    }
}

/// Encodes frames: a client's are masked (with keys from a generator seeded
/// by `seed`), a server's are not.
#[derive(Debug)]
pub struct WsEncoder {
    keys: Option<MaskKeys>,
}

impl WsEncoder {
    /// A client's encoder; `seed` should be unpredictable (the masking
    /// keys derive from it).
    pub fn client(seed: u128) -> WsEncoder {
        WsEncoder {
            keys: Some(MaskKeys::new(seed)),
        }
    }

    /// A server's encoder.
    pub fn server() -> WsEncoder {
        WsEncoder { keys: None }
    }

    fn frame(&mut self, opcode: OpCode, payload: &[u8], dst: &mut BytesMut) {
        let mask = self.keys.as_mut().map(MaskKeys::next_key);
        websocket::encode(opcode, payload, mask, dst);
    }

    /// Appends a binary message (one frame).
    pub fn binary(&mut self, msg: &[u8], dst: &mut BytesMut) {
        self.frame(OpCode::Binary, msg, dst)
    }

    /// Appends a text message (one frame).
    pub fn text(&mut self, msg: &str, dst: &mut BytesMut) {
        self.frame(OpCode::Text, msg.as_bytes(), dst)
    }

    /// Appends a pong answering a ping's `payload` (at most 125 bytes).
    pub fn pong(&mut self, payload: &[u8], dst: &mut BytesMut) {
        self.frame(OpCode::Pong, &payload[..payload.len().min(125)], dst)
    }

    /// Appends a close frame with `code`.
    pub fn close(&mut self, code: u16, dst: &mut BytesMut) {
        self.frame(OpCode::Close, &code.to_be_bytes(), dst)
    }
}
