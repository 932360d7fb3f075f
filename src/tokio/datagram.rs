//! Datagrams on tokio (a UDP client, a Unix datagram socket): the datagram
//! connection's rules, driven by tokio's readiness and timers. A datagram
//! read is handed out at once, with no await between: a `recv` future
//! dropped at its await has taken nothing.

use std::io;
use std::time::Instant;

use bytes::Bytes;

use crate::addr::Addr;
use crate::connection::datagram::{Arrival, Datagrams};
use crate::connection::{Delivery, End};
use crate::error::{Error, Result};
use crate::transport::datagram::DatagramParts;

/// The socket under a datagram conversation.
#[derive(Debug)]
enum DgIo {
    Udp(tokio::net::UdpSocket),
    #[cfg(unix)]
    Unix(tokio::net::UnixDatagram),
}

impl DgIo {
    async fn readable(&self) -> io::Result<()> {
        match self {
            DgIo::Udp(s) => s.readable().await,
            #[cfg(unix)]
            DgIo::Unix(s) => s.readable().await,
        }
    }

    async fn writable(&self) -> io::Result<()> {
        match self {
            DgIo::Udp(s) => s.writable().await,
            #[cfg(unix)]
            DgIo::Unix(s) => s.writable().await,
        }
    }

    fn try_recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            DgIo::Udp(s) => s.try_recv(buf),
            #[cfg(unix)]
            DgIo::Unix(s) => s.try_recv(buf),
        }
    }

    fn try_send(&self, buf: &[u8]) -> io::Result<usize> {
        match self {
            DgIo::Udp(s) => s.try_send(buf),
            #[cfg(unix)]
            DgIo::Unix(s) => s.try_send(buf),
        }
    }
}

/// A datagram bounced: the peer's port is closed (an ICMP error).
fn bounced(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotConnected
    )
}

/// A connected datagram conversation on tokio.
#[derive(Debug)]
pub(super) struct DatagramConv {
    socket: DgIo,
    dg: Datagrams,
    buf: Box<[u8]>,
    local: Addr,
    /// The end, once reported (kept: every later call says it).
    ended: Option<End>,
}

impl DatagramConv {
    /// A UDP client or Unix datagram socket, taken apart, on tokio.
    pub(super) fn new(parts: DatagramParts, unix: bool) -> Result<DatagramConv> {
        let DatagramParts {
            socket,
            local,
            peer,
            max,
            idle,
        } = parts;
        socket
            .set_nonblocking(true)
            .map_err(|e| Error::from_io(e, &peer))?;
        let io = if unix {
            #[cfg(unix)]
            {
                let std: std::os::unix::net::UnixDatagram = socket.into();
                DgIo::Unix(
                    tokio::net::UnixDatagram::from_std(std)
                        .map_err(|e| Error::from_io(e, &peer))?,
                )
            }
            #[cfg(not(unix))]
            unreachable!("unix datagrams are Unix's")
        } else {
            let std: std::net::UdpSocket = socket.into();
            DgIo::Udp(tokio::net::UdpSocket::from_std(std).map_err(|e| Error::from_io(e, &peer))?)
        };
        Ok(DatagramConv {
            socket: io,
            dg: Datagrams::new(peer, max, idle, None, Instant::now()),
            // One byte more than the largest message: a longer datagram
            // is seen as truncated, never taken cut short.
            buf: vec![0u8; max + 1].into_boxed_slice(),
            local,
            ended: None,
        })
    }

    pub(super) fn peer_addr(&self) -> &Addr {
        self.dg.peer()
    }

    pub(super) fn local_addr(&self) -> &Addr {
        &self.local
    }

    fn poll_end(&mut self) {
        if self.ended.is_none() {
            self.ended = self.dg.poll_end();
        }
    }

    pub(super) async fn recv(&mut self) -> Result<Option<Bytes>> {
        loop {
            self.poll_end();
            match &self.ended {
                Some(End::Idle | End::Peer) => return Ok(None),
                Some(End::Failed(_)) => return Err(self.take_failure()),
                Some(_) => return Err(Error::Closed),
                None => {}
            }
            match self.socket.try_recv(&mut self.buf) {
                Ok(n) => match self.dg.on_datagram(&self.buf[..n], Instant::now()) {
                    Some(Arrival::Message(message)) => return Ok(Some(message)),
                    Some(Arrival::Lost(error)) => return Err(error),
                    None => {}
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_readable().await,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if bounced(&e) => return Err(self.dg.unreachable()),
                Err(e) => {
                    let peer = self.dg.peer().clone();
                    self.dg.fail(Error::from_io(e, &peer));
                }
            }
        }
    }

    /// Waits until the socket is readable or the idle timeout is due.
    async fn wait_readable(&mut self) {
        let deadline = self.dg.poll_timeout();
        let readable = self.socket.readable();
        match deadline {
            Some(at) => {
                if tokio::time::timeout_at(at.into(), readable).await.is_err() {
                    self.dg.handle_timeout(Instant::now());
                }
            }
            None => {
                let _ = readable.await;
            }
        }
    }

    /// The failure to tell, once; [`Error::Closed`] after that.
    fn take_failure(&mut self) -> Error {
        match self.ended.replace(End::Aborted) {
            Some(End::Failed(e)) => e,
            _ => Error::Closed,
        }
    }

    pub(super) fn take(&mut self, msg: &[u8]) -> Result<()> {
        self.poll_end();
        if self.ended.is_some() {
            return Err(Error::Closed);
        }
        // No outbox bound here: queued whole, now.
        self.dg.send(msg).map(drop)
    }

    pub(super) async fn flush(&mut self) -> Result<()> {
        while let Some(datagram) = self.dg.front() {
            match self.socket.try_send(datagram) {
                Ok(_) => self.dg.sent(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let _ = self.socket.writable().await;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if bounced(&e) => {
                    // That datagram bounced: said, and done with.
                    self.dg.sent();
                    return Err(self.dg.unreachable());
                }
                Err(e) => {
                    let peer = self.dg.peer().clone();
                    self.dg.fail(Error::from_io(e, &peer));
                    self.poll_end();
                    return Err(self.take_failure());
                }
            }
        }
        Ok(())
    }

    pub(super) async fn close(mut self) -> Result<Delivery> {
        self.dg.close();
        let flushed = self.flush().await;
        self.poll_end();
        match self.ended.take() {
            Some(End::Failed(e)) => Err(e),
            _ => flushed.map(|()| Delivery::Unknown),
        }
    }

    pub(super) fn abort(mut self) {
        self.dg.abort();
    }
}
