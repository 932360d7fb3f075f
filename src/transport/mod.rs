//! Transports: each a sending and a receiving half, most of them the
//! blocking driver of a connection over a socket.
//!
//! A transport is two halves: a [`Sender`] and a [`Receiver`]
//! ([`Transport::into_halves`]). [`Conversation`](crate::Conversation) is
//! written once over any pair of them, so a transport of your own is two
//! small impls — and `(MySender, MyReceiver)` is already a [`Transport`]:
//!
//! ```
//! use std::sync::mpsc;
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use converse::transport::{Receiver, Sender};
//! use converse::{Addr, Conversation, Result};
//!
//! struct Tx(mpsc::Sender<Bytes>);
//! struct Rx(mpsc::Receiver<Bytes>);
//!
//! impl Sender for Tx {
//!     fn send(&mut self, msg: &[u8]) -> Result<()> {
//!         self.0.send(Bytes::copy_from_slice(msg)).map_err(|_| converse::Error::Closed)
//!     }
//!     fn finish(&mut self, _until: Instant) -> Result<()> {
//!         Ok(())
//!     }
//!     fn peer_addr(&self) -> Result<Addr> {
//!         Ok(Addr::Unknown)
//!     }
//! }
//!
//! impl Receiver for Rx {
//!     fn recv(&mut self) -> Result<Option<Bytes>> {
//!         Ok(self.0.recv().ok()) // the sender gone is the clean end
//!     }
//!     fn peer_addr(&self) -> Result<Addr> {
//!         Ok(Addr::Unknown)
//!     }
//! }
//!
//! let (tx, rx) = mpsc::channel();
//! let mut conversation = Conversation::new((Tx(tx), Rx(rx)));
//! conversation.send_text("to myself")?;
//! assert_eq!(conversation.recv_text()?.as_deref(), Some("to myself"));
//! # Ok::<(), converse::Error>(())
//! ```
//!
//! The crate's own transports: TCP ([`Tcp`], [`TcpListener`]), TLS
//! (`Tls`, `TlsListener`, feature `tls`), WebSocket (`Ws`, `WsListener`,
//! feature `ws`), UDP ([`Udp`], [`UdpListener`]), Unix domain sockets (`Unix`, `UnixListener`,
//! `UnixDatagram`, on Unix systems) and an in-memory pair ([`Memory`]).
//! Listeners hand out transports; [`Conversation::new`](crate::Conversation::new)
//! wraps them.

mod bounded_queue;
pub(crate) mod carrier;
pub(crate) mod datagram;
pub(crate) mod listener;
mod memory;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "quic")]
pub(crate) mod quic;
pub(crate) mod recipe;
pub(crate) mod sockopt;
pub(crate) mod stream;
pub(crate) mod tcp;
#[cfg(feature = "tls")]
mod tls;
pub(crate) mod udp;
pub(crate) mod udp_listener;
#[cfg(unix)]
pub(crate) mod unix;
#[cfg(feature = "ws")]
mod ws;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::addr::Addr;
use crate::config::Config;
use crate::error::{Error, Result};

pub use crate::connection::demux::UdpStats;
pub use crate::connection::Delivery;
pub use datagram::{DatagramReceiver, DatagramSender};
pub use memory::{Memory, MemoryReceiver, MemorySender};
#[cfg(feature = "nats")]
#[cfg_attr(docsrs, doc(cfg(feature = "nats")))]
pub use nats::Nats;
pub use stream::{StreamReceiver, StreamSender};
pub use tcp::{Tcp, TcpListener};
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use tls::{Tls, TlsListener};
pub use udp::Udp;
pub use udp_listener::{PeerReceiver, PeerSender, UdpListener, UdpPeer};
#[cfg(unix)]
pub use unix::{Unix, UnixDatagram, UnixListener};
#[cfg(feature = "ws")]
#[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
pub use ws::{Ws, WsListener};

/// A transport: a sending and a receiving half that together carry whole
/// messages to and from one peer.
///
/// Every transport of this crate is one (`Tcp`, `Udp`, `UdpPeer`, `Unix`,
/// `UnixDatagram`, `Memory`), and so is any pair `(S, R)` of a [`Sender`]
/// and a [`Receiver`]. A transport chosen at run time is [`DynTransport`]:
/// its halves boxed.
pub trait Transport {
    /// The sending half.
    type Sender: Sender;
    /// The receiving half.
    type Receiver: Receiver;

    /// The two halves.
    fn into_halves(self) -> (Self::Sender, Self::Receiver);
}

impl<S: Sender, R: Receiver> Transport for (S, R) {
    type Sender = S;
    type Receiver = R;

    fn into_halves(self) -> (S, R) {
        self
    }
}

/// A transport chosen at run time: both halves boxed. This is what
/// [`connect`](crate::connect) and [`listen`](crate::listen) hand out, and
/// what `Conversation` (without a type argument) holds.
pub type DynTransport = (Box<dyn Sender>, Box<dyn Receiver>);

/// Stops a blocked operation from another thread: an `accept`, a `recv` or
/// a `send` waiting on the network returns [`Error::Closed`] at once, and so
/// does every later use. Cloneable and cheap; get one from
/// [`Conversation::stopper`](crate::Conversation::stopper) or a listener's
/// `stopper`.
///
/// ```
/// use std::time::Duration;
/// use converse::{Conversation, Error, TcpListener};
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let stop = listener.stopper();
/// let server = std::thread::spawn(move || listener.accept().map(|_| ()));
/// std::thread::sleep(Duration::from_millis(50));
/// stop.stop(); // a server shutting down
/// assert!(matches!(server.join().unwrap(), Err(Error::Closed)));
/// # Ok::<(), converse::Error>(())
/// ```
#[derive(Clone)]
pub struct Stopper {
    stop: Arc<dyn Fn() + Send + Sync>,
}

impl Stopper {
    /// A stopper that runs `stop` (for a transport of your own).
    pub fn from_fn(stop: impl Fn() + Send + Sync + 'static) -> Stopper {
        Stopper {
            stop: Arc::new(stop),
        }
    }

    /// Stops it. Stopping twice is harmless.
    pub fn stop(&self) {
        (self.stop)()
    }
}

impl std::fmt::Debug for Stopper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stopper")
    }
}

/// The sending half of a transport.
///
/// The contract of every sending method: `Ok` means the message was
/// **taken** (it reaches the peer unless the connection fails; a close
/// tells whether it did). [`Error::Timeout`] means nothing of it was taken,
/// and sending it again is right. Only [`send`](Sender::send),
/// [`finish`](Sender::finish) and [`peer_addr`](Sender::peer_addr) are
/// required.
pub trait Sender: Send {
    /// Sends one message now (after anything fed before it).
    fn send(&mut self, msg: &[u8]) -> Result<()>;

    /// Sends one message of text. Transports that tell text from bytes
    /// (WebSocket: a text frame, which a browser receives as a string)
    /// mark it; the default sends its bytes.
    fn send_text(&mut self, text: &str) -> Result<()> {
        self.send(text.as_bytes())
    }

    /// Queues one message for a later [`flush`](Sender::flush), so that many
    /// small messages leave in few system calls. A transport writes first
    /// when its queue is full. The default sends at once.
    fn feed(&mut self, msg: &[u8]) -> Result<()> {
        self.send(msg)
    }

    /// Writes everything fed. [`Error::Timeout`] leaves the rest queued for
    /// the next flush.
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// Bytes fed and not yet written.
    fn queued(&self) -> usize {
        0
    }

    /// Ends the sending direction: writes everything queued, waiting at most
    /// until `until`, then tells the peer (TCP: shuts down the write side,
    /// so the peer receives every message, then the clean end). If the queue
    /// cannot be written in time, the connection is reset and the error is
    /// [`Error::Unsent`]. Sending afterwards is [`Error::Closed`].
    fn finish(&mut self, until: Instant) -> Result<()>;

    /// Ends at once, discarding what is queued (TCP: the connection is reset
    /// when it is closed). The default does nothing more than
    /// finishing would.
    fn abort(&mut self) {}

    /// The peer's address.
    fn peer_addr(&self) -> Result<Addr>;

    /// The local address.
    fn local_addr(&self) -> Result<Addr> {
        Ok(Addr::Unknown)
    }

    /// Sets the write timeout (`None`: block). A zero duration is refused
    /// with [`Error::InvalidConfig`].
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        crate::config::check_timeout("write_timeout", timeout)?;
        Err(Error::Unsupported("write timeouts"))
    }

    /// The write timeout.
    fn write_timeout(&self) -> Option<Duration> {
        None
    }

    /// How long closing (or dropping with messages queued) waits for the
    /// peer.
    fn linger(&self) -> Duration {
        Config::DEFAULT_LINGER
    }

    /// Sets the linger time.
    fn set_linger(&mut self, _linger: Duration) {}

    /// The largest message this half sends.
    fn max_message_len(&self) -> usize {
        usize::MAX
    }

    /// A handle that stops this transport from another thread, if it has
    /// one.
    fn stopper(&self) -> Option<Stopper> {
        None
    }

    /// The socket, for options this crate does not cover (`SO_SNDBUF`,
    /// keepalive …). Reading or writing it directly breaks the framing.
    #[cfg(unix)]
    fn socket(&self) -> Option<socket2::SockRef<'_>> {
        None
    }

    /// Completes the connection's setup now, if the transport has one that
    /// is not over (a TLS handshake); otherwise it happens in the first
    /// send or receive. The default does nothing.
    fn handshake(&mut self) -> Result<()> {
        Ok(())
    }

    /// The verified identity of the peer (TLS, once the handshake is over;
    /// feature `tls`). The default: none.
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    fn peer_identity(&self) -> Option<crate::tls::PeerIdentity> {
        None
    }
}

/// The receiving half of a transport. Only [`recv`](Receiver::recv) and
/// [`peer_addr`](Receiver::peer_addr) are required.
pub trait Receiver: Send {
    /// Receives one message; `Ok(None)` is the peer's clean end.
    fn recv(&mut self) -> Result<Option<Bytes>>;

    /// Receives one message without handing out ownership: the slice is
    /// valid until the next receive. A stream transport lends it straight
    /// out of its read buffer (no reference count, no allocation). The
    /// default receives a [`Bytes`] into `hold` and lends that.
    fn recv_ref<'a>(&'a mut self, hold: &'a mut Option<Bytes>) -> Result<Option<&'a [u8]>> {
        *hold = self.recv()?;
        Ok(hold.as_deref())
    }

    /// Reads and discards until the peer's end (then [`Delivery::Confirmed`])
    /// or `until` (then [`Delivery::Unknown`]); the second half of a
    /// graceful close. A reset is [`Error::ConnectionReset`]. The default
    /// receives with a read timeout until then.
    fn drain(&mut self, until: Instant) -> Result<Delivery> {
        let saved = self.read_timeout();
        let outcome = loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Ok(Delivery::Unknown);
            }
            if self.set_read_timeout(Some(left)).is_err() {
                break Ok(Delivery::Unknown);
            }
            match self.recv() {
                Ok(Some(_)) => {}
                Ok(None) => break Ok(Delivery::Confirmed),
                Err(Error::Timeout) => break Ok(Delivery::Unknown),
                Err(Error::Closed) => break Ok(Delivery::Unknown),
                Err(e) => break Err(e),
            }
        };
        let _ = self.set_read_timeout(saved);
        outcome
    }

    /// The peer's address.
    fn peer_addr(&self) -> Result<Addr>;

    /// The local address.
    fn local_addr(&self) -> Result<Addr> {
        Ok(Addr::Unknown)
    }

    /// Sets the read timeout (`None`: block). A zero duration is refused
    /// with [`Error::InvalidConfig`].
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        crate::config::check_timeout("read_timeout", timeout)?;
        Err(Error::Unsupported("read timeouts"))
    }

    /// The read timeout.
    fn read_timeout(&self) -> Option<Duration> {
        None
    }

    /// Sets the per-message deadline (stream transports; see
    /// [`Config::message_deadline`](crate::Config::message_deadline)).
    fn set_message_deadline(&mut self, deadline: Duration) -> Result<()> {
        let _ = deadline;
        Err(Error::Unsupported("per-message deadlines"))
    }

    /// The largest message this half accepts.
    fn max_message_len(&self) -> usize {
        usize::MAX
    }

    /// A handle that stops this transport from another thread, if it has
    /// one.
    fn stopper(&self) -> Option<Stopper> {
        None
    }

    /// Called when the conversation is split, before its halves go to two
    /// threads: a receiver that changes socket state its sending half relies
    /// on (the TCP latency mode makes the socket non-blocking while it
    /// spins) stops doing so. The default does nothing.
    fn on_split(&mut self) {}

    /// Connects again after the connection below was lost, where the
    /// transport can (NATS: a new connection to the server, subscribed
    /// anew). The default says [`Error::Unsupported`].
    fn reconnect(&mut self) -> Result<()> {
        Err(Error::Unsupported("reconnecting this transport"))
    }
}

impl<S: Sender + ?Sized> Sender for Box<S> {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        (**self).send(msg)
    }
    fn send_text(&mut self, text: &str) -> Result<()> {
        (**self).send_text(text)
    }
    #[inline]
    fn feed(&mut self, msg: &[u8]) -> Result<()> {
        (**self).feed(msg)
    }
    #[inline]
    fn flush(&mut self) -> Result<()> {
        (**self).flush()
    }
    fn queued(&self) -> usize {
        (**self).queued()
    }
    fn finish(&mut self, until: Instant) -> Result<()> {
        (**self).finish(until)
    }
    fn abort(&mut self) {
        (**self).abort()
    }
    fn peer_addr(&self) -> Result<Addr> {
        (**self).peer_addr()
    }
    fn local_addr(&self) -> Result<Addr> {
        (**self).local_addr()
    }
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        (**self).set_write_timeout(timeout)
    }
    fn write_timeout(&self) -> Option<Duration> {
        (**self).write_timeout()
    }
    fn linger(&self) -> Duration {
        (**self).linger()
    }
    fn set_linger(&mut self, linger: Duration) {
        (**self).set_linger(linger)
    }
    fn max_message_len(&self) -> usize {
        (**self).max_message_len()
    }
    fn stopper(&self) -> Option<Stopper> {
        (**self).stopper()
    }
    #[cfg(unix)]
    fn socket(&self) -> Option<socket2::SockRef<'_>> {
        (**self).socket()
    }
    fn handshake(&mut self) -> Result<()> {
        (**self).handshake()
    }
    #[cfg(feature = "tls")]
    fn peer_identity(&self) -> Option<crate::tls::PeerIdentity> {
        (**self).peer_identity()
    }
}

impl<R: Receiver + ?Sized> Receiver for Box<R> {
    #[inline]
    fn recv(&mut self) -> Result<Option<Bytes>> {
        (**self).recv()
    }
    #[inline]
    fn recv_ref<'a>(&'a mut self, hold: &'a mut Option<Bytes>) -> Result<Option<&'a [u8]>> {
        (**self).recv_ref(hold)
    }
    fn drain(&mut self, until: Instant) -> Result<Delivery> {
        (**self).drain(until)
    }
    fn peer_addr(&self) -> Result<Addr> {
        (**self).peer_addr()
    }
    fn local_addr(&self) -> Result<Addr> {
        (**self).local_addr()
    }
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        (**self).set_read_timeout(timeout)
    }
    fn read_timeout(&self) -> Option<Duration> {
        (**self).read_timeout()
    }
    fn set_message_deadline(&mut self, deadline: Duration) -> Result<()> {
        (**self).set_message_deadline(deadline)
    }
    fn max_message_len(&self) -> usize {
        (**self).max_message_len()
    }
    fn stopper(&self) -> Option<Stopper> {
        (**self).stopper()
    }
    fn on_split(&mut self) {
        (**self).on_split()
    }
    fn reconnect(&mut self) -> Result<()> {
        (**self).reconnect()
    }
}
