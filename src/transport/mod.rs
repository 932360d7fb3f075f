//! Transports: the ways whole messages travel.
//!
//! A [`Transport`] moves whole messages between two ends. The crate ships TCP
//! ([`Tcp`]), UDP ([`Udp`], [`UdpListener`]), Unix domain sockets (`Unix`,
//! `UnixListener`, `UnixDatagram`, on Unix systems) and an in-memory pair
//! ([`Memory`]); a user can implement the trait for a transport of their own and
//! use it through [`Conversation`](crate::Conversation) like any other.

mod memory;
mod sockopt;
mod stream;
pub(crate) mod tcp;
mod timer;
pub(crate) mod udp;
#[cfg(unix)]
pub(crate) mod unix;

use std::time::Duration;

use bytes::Bytes;

use crate::addr::Addr;
use crate::error::{Error, Result};

pub use memory::Memory;
pub use tcp::{Tcp, TcpListener};
pub use udp::{Udp, UdpListener, UdpPeer, UdpStats, MAX_UDP_PAYLOAD_V4, MAX_UDP_PAYLOAD_V6};
#[cfg(unix)]
pub use unix::{Unix, UnixDatagram, UnixListener, MAX_UNIX_DATAGRAM};

/// Rejects a zero timeout, as std's sockets do (naming `addr`).
pub(crate) fn check_timeout(timeout: Option<Duration>, addr: &Addr) -> Result<Option<Duration>> {
    if timeout == Some(Duration::ZERO) {
        return Err(Error::Io {
            addr: addr.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a zero timeout is not allowed",
            ),
        });
    }
    Ok(timeout)
}

/// Moves whole messages to and from one peer.
///
/// The trait is object-safe: `Box<dyn Transport>` is itself a transport, which
/// is how a transport is chosen at run time.
///
/// Required behaviour:
/// * [`send`](Transport::send) delivers one whole message (or fails before
///   writing anything if it is too large);
/// * [`recv`](Transport::recv) returns one whole message, or `Ok(None)` at the
///   peer's clean end;
/// * a timeout is [`Error::Timeout`] and loses nothing.
pub trait Transport: Send {
    /// Sends one message, now (anything fed before it goes first).
    fn send(&mut self, msg: &[u8]) -> Result<()>;

    /// Queues one message to be sent by a later [`flush`](Transport::flush),
    /// so that many small messages leave in few system calls. A transport may
    /// send at once when its buffer is full. The default sends at once.
    fn feed(&mut self, msg: &[u8]) -> Result<()> {
        self.send(msg)
    }

    /// Sends everything queued by [`feed`](Transport::feed).
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// Receives one message; `Ok(None)` is the peer's clean end.
    fn recv(&mut self) -> Result<Option<Bytes>>;

    /// The local address.
    fn local_addr(&self) -> Result<Addr>;

    /// The peer's address.
    fn peer_addr(&self) -> Result<Addr>;

    /// Sets the read timeout (`None`: block).
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()>;

    /// The read timeout.
    fn read_timeout(&self) -> Option<Duration>;

    /// Sets the write timeout (`None`: block).
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()>;

    /// The write timeout.
    fn write_timeout(&self) -> Option<Duration>;

    /// Closes gracefully: everything sent before reaches the peer.
    fn close(&mut self) -> Result<()>;

    /// Closes at once, discarding anything not yet delivered (TCP: a reset).
    fn abort(&mut self) -> Result<()> {
        self.close()
    }

    /// The largest message this transport sends and accepts.
    fn max_message_len(&self) -> usize {
        usize::MAX
    }

    /// `true` for a byte-stream transport (where framing keeps boundaries),
    /// `false` for one that carries messages natively.
    fn is_stream(&self) -> bool {
        false
    }

    /// Splits into a sending and a receiving half that two threads can use at
    /// once. The default: not supported.
    fn split(self: Box<Self>) -> Result<(Box<dyn TransportSend>, Box<dyn TransportRecv>)> {
        Err(Error::Unsupported("split"))
    }
}

/// The sending half of a split transport.
pub trait TransportSend: Send {
    /// See [`Transport::send`].
    fn send(&mut self, msg: &[u8]) -> Result<()>;
    /// See [`Transport::feed`].
    fn feed(&mut self, msg: &[u8]) -> Result<()> {
        self.send(msg)
    }
    /// See [`Transport::flush`].
    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
    /// The peer's address.
    fn peer_addr(&self) -> Result<Addr>;
    /// See [`Transport::set_write_timeout`].
    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()>;
    /// See [`Transport::write_timeout`].
    fn write_timeout(&self) -> Option<Duration>;
    /// Flushes and ends the sending direction (TCP: shuts down the write side,
    /// so the peer sees the clean end). The receiving half keeps working.
    fn close(&mut self) -> Result<()>;
}

/// The receiving half of a split transport.
pub trait TransportRecv: Send {
    /// See [`Transport::recv`].
    fn recv(&mut self) -> Result<Option<Bytes>>;
    /// The peer's address.
    fn peer_addr(&self) -> Result<Addr>;
    /// See [`Transport::set_read_timeout`].
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()>;
    /// See [`Transport::read_timeout`].
    fn read_timeout(&self) -> Option<Duration>;
}

macro_rules! forward_transport {
    ($($ty:ty),*) => {$(
        impl<T: Transport + ?Sized> Transport for $ty {
            fn send(&mut self, msg: &[u8]) -> Result<()> { (**self).send(msg) }
            fn feed(&mut self, msg: &[u8]) -> Result<()> { (**self).feed(msg) }
            fn flush(&mut self) -> Result<()> { (**self).flush() }
            fn recv(&mut self) -> Result<Option<Bytes>> { (**self).recv() }
            fn local_addr(&self) -> Result<Addr> { (**self).local_addr() }
            fn peer_addr(&self) -> Result<Addr> { (**self).peer_addr() }
            fn set_read_timeout(&mut self, t: Option<Duration>) -> Result<()> { (**self).set_read_timeout(t) }
            fn read_timeout(&self) -> Option<Duration> { (**self).read_timeout() }
            fn set_write_timeout(&mut self, t: Option<Duration>) -> Result<()> { (**self).set_write_timeout(t) }
            fn write_timeout(&self) -> Option<Duration> { (**self).write_timeout() }
            fn close(&mut self) -> Result<()> { (**self).close() }
            fn abort(&mut self) -> Result<()> { (**self).abort() }
            fn max_message_len(&self) -> usize { (**self).max_message_len() }
            fn is_stream(&self) -> bool { (**self).is_stream() }
            fn split(self: Box<Self>) -> Result<(Box<dyn TransportSend>, Box<dyn TransportRecv>)> {
                T::split(*self)
            }
        }
    )*};
}
forward_transport!(Box<T>);

/// Implements [`Transport`] for a wrapper around a
/// [`Stream`](stream::Stream) or a [`Datagrams`](udp::Datagrams) in its
/// field `inner`.
macro_rules! delegate_transport {
    ($ty:ty) => {
        impl $crate::transport::Transport for $ty {
            #[inline]
            fn send(&mut self, msg: &[u8]) -> $crate::Result<()> {
                self.inner.send(msg)
            }
            #[inline]
            fn feed(&mut self, msg: &[u8]) -> $crate::Result<()> {
                self.inner.feed(msg)
            }
            #[inline]
            fn flush(&mut self) -> $crate::Result<()> {
                self.inner.flush()
            }
            #[inline]
            fn recv(&mut self) -> $crate::Result<Option<bytes::Bytes>> {
                self.inner.recv()
            }
            fn local_addr(&self) -> $crate::Result<$crate::Addr> {
                self.inner.local_addr()
            }
            fn peer_addr(&self) -> $crate::Result<$crate::Addr> {
                self.inner.peer_addr()
            }
            fn set_read_timeout(&mut self, t: Option<std::time::Duration>) -> $crate::Result<()> {
                self.inner.set_read_timeout(t)
            }
            fn read_timeout(&self) -> Option<std::time::Duration> {
                self.inner.read_timeout()
            }
            fn set_write_timeout(&mut self, t: Option<std::time::Duration>) -> $crate::Result<()> {
                self.inner.set_write_timeout(t)
            }
            fn write_timeout(&self) -> Option<std::time::Duration> {
                self.inner.write_timeout()
            }
            fn close(&mut self) -> $crate::Result<()> {
                self.inner.close()
            }
            fn abort(&mut self) -> $crate::Result<()> {
                self.inner.abort()
            }
            fn max_message_len(&self) -> usize {
                self.inner.max_message_len()
            }
            fn is_stream(&self) -> bool {
                self.inner.is_stream()
            }
            fn split(
                self: Box<Self>,
            ) -> $crate::Result<(
                Box<dyn $crate::transport::TransportSend>,
                Box<dyn $crate::transport::TransportRecv>,
            )> {
                Box::new(self.inner).split()
            }
        }
    };
}
pub(crate) use delegate_transport;
