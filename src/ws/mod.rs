//! WebSocket (`ws://`, `wss://`; feature `ws`), RFC 6455: one WebSocket
//! message is one message.
//!
//! The protocol is converse's own, pure: the HTTP upgrade and what a
//! listener answers to every other request (a page, or a status for each
//! case), frames checked before anything is allocated, messages put
//! together from fragments, pings, pongs and the close handshake. The
//! connection runs it for every driver; [`WsDecoder`] and [`WsEncoder`]
//! offer the frames to a program that does its own I/O. The handshake's
//! accept key is tungstenite's.
//!
//! * Text and binary frames are both received as messages (`recv_text`
//!   works on either); `send_text` sends a text frame, so a browser gets a
//!   string. A text message that is not UTF-8 ends the connection with
//!   close status 1007.
//! * The limit is the conversation's `max_message_len`, checked on each
//!   frame header before anything is allocated (1009 past it) and on the
//!   total of a fragmented message, which must be whole within the
//!   per-message deadline.
//! * Pings are answered; pongs and close frames count against the
//!   conversation's outbox, and a pong not yet sent is replaced by the
//!   next (RFC 6455 section 5.5.3), so a ping flood costs one pong.
//! * A frame that breaks the protocol ends the connection after a close
//!   frame with status 1002.
//! * A listener answers a plain `GET /` with its [`Page`], if it has one.

pub(crate) mod codec;
mod error;
pub(crate) mod frames;
pub(crate) mod reader;
pub(crate) mod upgrade;

pub use codec::{WsDecoder, WsEncoder, WsItem};
pub use error::WsError;
pub use upgrade::Page;
