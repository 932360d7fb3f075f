//! # converse
//!
//! Blocking, transport-agnostic messaging. A *message* is a byte string whose
//! boundaries survive the trip: what one side sends with one call, the other
//! side receives with one call, whole, in order.
//!
//! * A [`Transport`](transport::Transport) is a sending and a receiving
//!   half ([`Sender`](transport::Sender), [`Receiver`](transport::Receiver))
//!   that move whole messages. TCP ([`Tcp`]) and Unix stream
//!   sockets keep boundaries with a framing ([`codec::Framing`]: a length
//!   prefix by default, or varint, lines, raw); UDP ([`Udp`],
//!   [`UdpListener`]) and Unix datagram sockets carry one message per
//!   datagram; [`Memory`] is an in-process pair for tests. With their
//!   features (on by default): TLS (`Tls`, rustls), WebSocket (`Ws`, for
//!   browsers; the [`ws`] module) and NATS (`Nats`: a subject of a NATS
//!   server, to join programs across machines; the [`nats`] module). A
//!   transport of your own is two small impls (see [`transport`]).
//! * [`Conversation`] is the one API over every transport, written once
//!   over the halves: send and receive bytes or text, timeouts, batching,
//!   splitting into halves and putting them back, a graceful close that is
//!   bounded in time and says whether delivery is confirmed.
//! * [`connect`] and [`listen`] pick the transport at run time from an
//!   address such as `tcp://127.0.0.1:8090`, `udp://[::1]:8090`,
//!   `unix:///tmp/chat.sock` or `nats://127.0.0.1:4222/chat.room`.
//! * [`Switchboard`] serves thousands of conversations, of every transport,
//!   from one thread: it connects, accepts, reads and writes without ever
//!   blocking it, and keeps the same promises as the blocking halves.
//!
//! ## Features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `tls` | on | `tls://` and `wss://`: rustls with the ring provider, Mozilla's roots bundled ([`tls`]) |
//! | `ws` | on | `ws://` and `wss://`: tungstenite for the HTTP upgrade only ([`ws`]) |
//! | `nats` | on | `nats://`: a subject of a NATS server ([`nats`]) |
//! | `serde` | off | typed messages: `send_value` / `recv_value`, encoded with postcard (the `value` module) |
//! | `tracing` | off | a span per conversation; events for handshakes, ends (slow consumers, deadlines, failures), accept errors, reconnects and UDP datagrams dropped, for any `tracing` subscriber |
//! | `tokio` | off | the same conversations from async code ([`tokio`]: every transport connects, every stream listens; cancellation-safe); converse's framings as tokio-util codecs ([`codec::tokio`]) |
//!
//! Without default features the crate is the small core: TCP, UDP, Unix
//! sockets, the in-memory pair and the switchboard.
//!
//! ## The wire format (TCP)
//!
//! ```text
//! +----------------------+---------------------+
//! | len: u32, big-endian |  payload: len bytes |
//! +----------------------+---------------------+
//! ```
//!
//! `len` counts the payload only (0 is a valid empty message), at most 8 MiB
//! by default ([`Config::max_message_len`]). It is byte for byte tokio-util's
//! `LengthDelimitedCodec` default and Python's `struct.pack('>I', n) + p`.
//!
//! ## Example
//!
//! ```
//! use std::thread;
//!
//! // A server on a port the system picks.
//! let listener = converse::listen("tcp://127.0.0.1:0")?;
//! let url = listener.local_addr()?.to_string();
//! let server = thread::spawn(move || -> converse::Result<()> {
//!     let mut conversation = listener.accept()?;
//!     // Messages keep their boundaries: two sends are two receives.
//!     while let Some(message) = conversation.recv()? {
//!         conversation.send(&message)?;
//!     }
//!     conversation.close()?;
//!     Ok(())
//! });
//!
//! let mut client = converse::connect(&url)?;
//! client.send("hello")?;
//! client.send("world")?;
//! assert_eq!(client.recv()?.as_deref(), Some(&b"hello"[..]));
//! assert_eq!(client.recv_text()?.as_deref(), Some("world"));
//! client.close()?;
//! server.join().unwrap()?;
//! # Ok::<(), converse::Error>(())
//! ```
//!
//! ## One connection, two drivers
//!
//! Each protocol stack (a framing, TLS, WebSocket, NATS, and UDP peers
//! through a demultiplexer) is written once, as a connection with no
//! socket in it: it takes bytes and `now`, and gives out messages, bytes
//! to write, its next deadline and one end. The blocking halves and the
//! switchboard only move bytes and time to it, so every rule (what an end
//! means, pongs and close frames within the outbox's bound, the NATS
//! keepalive, what "taken" means for a send) is the same on both.
//!
//! ## Time
//!
//! Every promise that involves time is kept by that connection, which
//! takes `now` as an argument, so each is proven with a fake clock: a send
//! that times out took nothing of its message; a read timeout loses
//! nothing; the per-message deadline counts from when a message's bytes
//! arrived; UDP idleness counts from the peer's last datagram; `close`
//! returns within the linger time; a conversation ends exactly once.
//!
//! ## Typed messages
//!
//! With the `serde` feature (off by default), `Conversation::send_value` and
//! `recv_value` send any `Serialize` value as one message, encoded with
//! postcard; see the `value` module.
//!
//! ## Errors
//!
//! [`Error`] tells apart the clean end (`Ok(None)` from a receive), a peer
//! that vanished mid-message ([`Error::UnexpectedEof`]), a message over the
//! limit ([`Error::MessageTooLarge`] with the length and the limit), a
//! timeout ([`Error::Timeout`], after which nothing is lost), invalid text,
//! a reset, a broken pipe, and I/O errors with the address they concern.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(rust_2018_idioms, missing_debug_implementations)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod addr;
pub mod codec;
mod config;
mod connect;
mod connection;
mod conversation;
mod error;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub mod nats;
pub mod switchboard;
/// Certificates made on the spot, for tests (the examples' own helper).
#[cfg(all(test, feature = "tls"))]
#[path = "../examples/common/certs.rs"]
mod test_certs;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod tokio;
mod trace;
pub mod transport;
mod url;
#[cfg(feature = "serde")]
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
pub mod value;
#[cfg(feature = "ws")]
#[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
pub mod ws;

pub use addr::{Addr, AddrError};
pub use config::{Config, ConfigError};
pub use connect::{connect, connect_with, listen, listen_with, Accept, Listener};
pub use connection::Delivery;
pub use conversation::{Conversation, Messages, RecvHalf, ReuniteError, SendAllError, SendHalf};
pub use error::{Error, Result};
pub use switchboard::Switchboard;
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use transport::Nats;
pub use transport::{Memory, Stopper, Tcp, TcpListener, Udp, UdpListener};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use transport::{Tls, TlsListener};
#[cfg(unix)]
pub use transport::{Unix, UnixDatagram, UnixListener};
#[cfg(feature = "ws")]
#[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
pub use transport::{Ws, WsListener};

/// The connection's and the QUIC listener's fuzz targets, for `cargo fuzz` (which sets
/// `cfg(fuzzing)`); not part of the API.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzz {
    pub use crate::connection::fuzz::connection_pair;
    #[cfg(feature = "quic")]
    pub use crate::connection::quic_fuzz::quic_listener;
}

/// The README's and the guide's examples, compiled as doctests.
#[cfg(doctest)]
mod guide_doctests {
    #[doc = include_str!("../README.md")]
    struct Readme;
    #[doc = include_str!("../docs/tutorial.md")]
    struct Tutorial;
    #[doc = include_str!("../docs/conversations.md")]
    struct Conversations;
    #[doc = include_str!("../docs/switchboard.md")]
    struct Switchboard;
    #[doc = include_str!("../docs/transports.md")]
    struct Transports;
    #[doc = include_str!("../docs/tls.md")]
    struct Tls;
    #[doc = include_str!("../docs/websocket.md")]
    struct WebSocket;
    #[doc = include_str!("../docs/nats.md")]
    struct Nats;
    #[cfg(feature = "quic")]
    #[doc = include_str!("../docs/quic.md")]
    struct Quic;
    #[doc = include_str!("../docs/promises.md")]
    struct Promises;
    #[doc = include_str!("../docs/architecture.md")]
    struct Architecture;
    #[doc = include_str!("../docs/performance.md")]
    struct Performance;
    #[doc = include_str!("../docs/development.md")]
    struct Development;
}
