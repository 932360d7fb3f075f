//! WebSocket frames as a pure codec, for a program that does its own I/O:
//! the same frames and messages converse's `ws://` conversations run. Bytes in,
//! messages out; messages in, frames out. Every header is checked before
//! anything is allocated; fragments are joined (their total bounded by the
//! same limit); text must be UTF-8; control frames are handed out as they
//! come.

use bytes::{Bytes, BytesMut};

use super::frames::{self, cut_frame, FrameFault, OpCode};
use super::reader::{ReadFault, WsEvent, WsReader};
use crate::codec::{FrameError, Parse};

/// What a [`WsDecoder`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WsItem {
    /// A whole message, from a text frame (`text`, then UTF-8) or a binary
    /// one.
    Message {
        /// Its bytes.
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
/// use converse::ws::{WsDecoder, WsEncoder, WsItem};
///
/// let mut wire = BytesMut::new();
/// let mut client = WsEncoder::client();
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
    masked: bool,
    max: usize,
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
            masked,
            max,
            // Time is the caller's business: no deadline here.
            reader: WsReader::new(max, std::time::Duration::from_secs(365 * 24 * 3600)),
        }
    }

    /// The next item at the front of `buf` (what it used is taken out);
    /// `Ok(None)`: more bytes are needed. An error means the connection
    /// must be failed: close status 1009 for [`FrameError::TooLarge`],
    /// 1007 for text that is not UTF-8, 1002 for the rest.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<WsItem>, FrameError> {
        loop {
            let consumed = match cut_frame(buf, self.masked, self.max).map_err(fault)? {
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
                Err(ReadFault::Frame(f)) => return Err(fault(f)),
                Err(ReadFault::NotUtf8) => {
                    return Err(FrameError::Invalid("a text message that is not UTF-8"))
                }
                Err(ReadFault::Deadline(_)) => {
                    return Err(FrameError::Invalid("a message that missed its deadline"))
                }
            }
        }
    }
}

fn fault(f: FrameFault) -> FrameError {
    match f {
        FrameFault::Invalid(why) => FrameError::Invalid(why),
        FrameFault::TooLarge { len, max } => FrameError::TooLarge { len, max },
    }
}

/// Encodes frames: a client's are masked, with keys from the operating
/// system's random source (RFC 6455 section 5.3); a server's are not.
#[derive(Debug)]
pub struct WsEncoder {
    client: bool,
}

impl WsEncoder {
    /// A client's encoder.
    pub fn client() -> WsEncoder {
        WsEncoder { client: true }
    }

    /// A server's encoder.
    pub fn server() -> WsEncoder {
        WsEncoder { client: false }
    }

    fn frame(&mut self, opcode: OpCode, payload: &[u8], dst: &mut BytesMut) {
        let mask = self.client.then(frames::mask_key);
        frames::encode(opcode, payload, mask, dst);
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
