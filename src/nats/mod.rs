//! NATS (`nats://HOST:PORT/SUBJECT`; feature `nats`): a conversation on a
//! subject of a NATS server.
//!
//! The client protocol is converse's own, pure: the server's operations
//! cut and checked before anything is buffered (a control line of at most
//! [`MAX_CONTROL_LINE`] bytes, a payload of at most the server's
//! `max_payload` and converse's own limit), the handshake (`INFO`, TLS
//! where the server requires it, `CONNECT`, `SUB`, `PING` answered by
//! `PONG`), the keepalive (a quiet server is pinged; two pings unanswered
//! and it is given up) and the backoff between reconnections. The
//! connection runs it for every driver; [`NatsDecoder`] and the `encode_*`
//! functions offer it to a program that does its own I/O. (The only
//! blocking NATS crate is deprecated, so the protocol, which is small, is
//! written here.)

mod codec;
mod error;
pub(crate) mod ops;
pub(crate) mod session;

pub(crate) use codec::fault;
pub use codec::{encode_connect, encode_pub, encode_sub, NatsDecoder};
pub use error::NatsError;
pub use ops::{ServerInfo, ServerOp, MAX_CONTROL_LINE};
