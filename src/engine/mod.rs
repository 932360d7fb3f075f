//! The pure state machines: bytes and time in, messages and decisions out.
//! No socket, no thread, no clock: every function that depends on time
//! takes `now`, so each promise is tested with a fake clock. The blocking
//! transports and the selector drive the same engines.
//!
//! * [`inbound`]: the receiving side of a framed stream (read buffer,
//!   codec, per-message deadline measured from arrival);
//! * [`outbound`]: the sending side of a framed stream (the queue of taken
//!   bytes, partial writes, taking a message back);
//! * [`demux`]: the UDP demultiplexer (peer table, caps, idle eviction by
//!   arrival time, the stats invariant);
//! * [`records`]: where a TLS byte stream stands between records (to tell
//!   a connection cut inside a record from one ended between records);
//! * [`websocket`]: WebSocket frames and messages (headers checked before
//!   allocation, masking, fragments, control frames, the deadline of a
//!   fragmented message);
//! * [`nats`]: the NATS client protocol (server operations cut and checked
//!   before allocation, the client's operations, the keepalive, the
//!   reconnect backoff).

pub(crate) mod demux;
pub(crate) mod inbound;
#[cfg(feature = "nats")]
pub(crate) mod nats;
pub(crate) mod outbound;
#[cfg_attr(not(feature = "tls"), allow(dead_code))]
pub(crate) mod records;
#[cfg_attr(not(feature = "ws"), allow(dead_code))]
pub(crate) mod websocket;
