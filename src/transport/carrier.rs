//! What carries a stream connection's bytes for the blocking driver: a
//! connected socket (TCP, Unix), or one QUIC stream. Both read and write
//! bytes with a timeout in force per direction, end the sending side, and
//! are released with a clean end or a reset; the stream driver
//! (`stream/`) is written against this and does not know which it has.

use std::io::{self, IoSlice, Read};
use std::net::Shutdown;
use std::time::Duration;

use socket2::Socket;

use super::sockopt;

/// A stream connection's carrier.
#[derive(Debug)]
pub(crate) enum Carrier {
    /// A connected stream socket.
    Socket(Socket),
    /// One bidirectional stream of a QUIC connection (boxed: a socket's
    /// conversations stay small on a switchboard).
    #[cfg(feature = "quic")]
    Quic(Box<super::quic::QuicStream>),
}

impl From<Socket> for Carrier {
    fn from(socket: Socket) -> Carrier {
        Carrier::Socket(socket)
    }
}

impl Carrier {
    /// The socket, when the carrier is one.
    pub(crate) fn socket(&self) -> Option<&Socket> {
        match self {
            Carrier::Socket(s) => Some(s),
            #[cfg(feature = "quic")]
            Carrier::Quic(_) => None,
        }
    }

    /// Reads what has come, waiting up to the read timeout (`Ok(0)`: the
    /// peer's end; `WouldBlock` or `TimedOut`: nothing came in time).
    #[inline]
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Carrier::Socket(s) => {
                let mut s: &Socket = s;
                s.read(buf)
            }
            #[cfg(feature = "quic")]
            Carrier::Quic(q) => q.read(buf),
        }
    }

    /// Writes what the carrier takes, waiting up to the write timeout.
    #[inline]
    pub(crate) fn send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Carrier::Socket(s) => sockopt::send(s, buf),
            #[cfg(feature = "quic")]
            Carrier::Quic(q) => q.write(&[IoSlice::new(buf)], false),
        }
    }

    /// Writes what the carrier takes of `bufs`, waiting up to the write
    /// timeout.
    #[inline]
    pub(crate) fn send_vectored(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Carrier::Socket(s) => sockopt::send_vectored(s, bufs),
            #[cfg(feature = "quic")]
            Carrier::Quic(q) => q.write(bufs, false),
        }
    }

    /// `SO_RCVTIMEO`, or the QUIC stream's equivalent.
    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Carrier::Socket(s) => sockopt::set_read_timeout(s, timeout),
            #[cfg(feature = "quic")]
            Carrier::Quic(q) => {
                q.set_read_timeout(timeout);
                Ok(())
            }
        }
    }

    /// `SO_SNDTIMEO`, or the QUIC stream's equivalent.
    pub(crate) fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Carrier::Socket(s) => sockopt::set_write_timeout(s, timeout),
            #[cfg(feature = "quic")]
            Carrier::Quic(q) => {
                q.set_write_timeout(timeout);
                Ok(())
            }
        }
    }

    /// `O_NONBLOCK`: reads and writes take what is there and never wait.
    pub(crate) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        match self {
            Carrier::Socket(s) => sockopt::set_nonblocking(s, on),
            #[cfg(feature = "quic")]
            Carrier::Quic(q) => {
                q.set_nonblocking(on);
                Ok(())
            }
        }
    }

    /// Ends our sending side after what was written (`Write`), or both
    /// sides (`Both`: the carrier is done).
    pub(crate) fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Carrier::Socket(s) => s.shutdown(how),
            #[cfg(feature = "quic")]
            Carrier::Quic(q) => {
                q.shutdown(how);
                Ok(())
            }
        }
    }

    /// Releasing the carrier resets it, discarding anything unsent.
    pub(crate) fn linger_zero(&self) -> io::Result<()> {
        match self {
            Carrier::Socket(s) => sockopt::linger_zero(s),
            #[cfg(feature = "quic")]
            Carrier::Quic(q) => {
                q.reset();
                Ok(())
            }
        }
    }

    /// `true` when bytes that were never read wait in the carrier.
    pub(crate) fn has_unread(&self) -> bool {
        match self {
            Carrier::Socket(s) => sockopt::has_unread(s),
            #[cfg(feature = "quic")]
            Carrier::Quic(q) => q.has_unread(),
        }
    }

    /// A reset that came after the peer's end, taken.
    pub(crate) fn take_error(&self) -> Option<io::Error> {
        match self {
            Carrier::Socket(s) => sockopt::take_error(s),
            #[cfg(feature = "quic")]
            Carrier::Quic(q) => q.take_error(),
        }
    }

    /// The peer's verified identity, where the carrier knows it (QUIC's
    /// handshake is the carrier's; over a socket, TLS is the connection's).
    #[cfg(feature = "tls")]
    pub(crate) fn peer_identity(&self) -> Option<crate::tls::PeerIdentity> {
        match self {
            Carrier::Socket(_) => None,
            #[cfg(feature = "quic")]
            Carrier::Quic(q) => q.peer_identity(),
        }
    }

    /// Tells `ready` whenever the carrier may have become readable or
    /// writable, for a driver that has no readiness of its own for it (a
    /// QUIC stream on a switchboard). `false` for a socket: register it
    /// with the poller instead.
    pub(crate) fn watch(&self, ready: Option<std::sync::Arc<dyn Fn() + Send + Sync>>) -> bool {
        match self {
            Carrier::Socket(_) => {
                let _ = ready;
                false
            }
            #[cfg(feature = "quic")]
            Carrier::Quic(q) => {
                q.watch(ready);
                true
            }
        }
    }

    /// Stops a blocked read or write from another thread (both sides end).
    pub(crate) fn wake_up(&self) {
        match self {
            Carrier::Socket(s) => sockopt::wake_up(s),
            #[cfg(feature = "quic")]
            Carrier::Quic(q) => q.shutdown(Shutdown::Both),
        }
    }
}

/// A carrier as a connection's [`Sink`](crate::connection::link::Sink):
/// it takes what it can (`now`: without waiting).
pub(crate) struct CarrierSink<'a> {
    pub(crate) carrier: &'a Carrier,
    pub(crate) now: bool,
    /// Bytes the carrier took, counted.
    pub(crate) sent: u64,
}

impl CarrierSink<'_> {
    fn socket_sink<'s>(&self, socket: &'s Socket) -> sockopt::SocketSink<'s> {
        sockopt::SocketSink {
            socket,
            now: self.now,
            sent: 0,
        }
    }
}

impl crate::connection::link::Sink for CarrierSink<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self.carrier {
            // One buffer, one plain send: the socket's fast path.
            Carrier::Socket(socket) => {
                let n = self.socket_sink(socket).put(bytes)?;
                self.sent += n as u64;
                Ok(n)
            }
            #[cfg(feature = "quic")]
            Carrier::Quic(_) => self.put_vectored(&[IoSlice::new(bytes)]),
        }
    }

    fn put_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let n = match self.carrier {
            Carrier::Socket(socket) => self.socket_sink(socket).put_vectored(bufs)?,
            #[cfg(feature = "quic")]
            Carrier::Quic(q) => q.write(bufs, self.now)?,
        };
        self.sent += n as u64;
        Ok(n)
    }
}
