//! Datagrams on tokio (a UDP client, a Unix datagram socket): the datagram
//! connection's rules, driven by tokio's readiness and timers. A datagram
//! read is handed out in the same poll: a `recv` future dropped between
//! polls has taken nothing.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use bytes::Bytes;

use crate::addr::Addr;
use crate::connection::datagram::{Arrival, Datagrams};
use crate::connection::{Delivery, End};
use crate::error::{Error, Result};
use crate::transport::datagram::DatagramParts;

thread_local! {
    /// One receive buffer per thread for every datagram conversation
    /// polled on it, as large as the largest datagram any of them takes.
    static BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The socket under a datagram conversation.
#[derive(Debug)]
enum DgIo {
    Udp(tokio::net::UdpSocket),
    #[cfg(unix)]
    Unix(tokio::net::UnixDatagram),
}

impl DgIo {
    fn poll_recv_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            DgIo::Udp(s) => s.poll_recv_ready(cx),
            #[cfg(unix)]
            DgIo::Unix(s) => s.poll_recv_ready(cx),
        }
    }

    fn poll_send_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            DgIo::Udp(s) => s.poll_send_ready(cx),
            #[cfg(unix)]
            DgIo::Unix(s) => s.poll_send_ready(cx),
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
    local: Addr,
    /// The end, once reported (kept: every later call says it).
    ended: Option<End>,
    /// The timer of the idle timeout, made at the first wait.
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// A close was begun.
    closing: bool,
    /// A close's outcome was said.
    closed: bool,
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
            local,
            ended: None,
            sleep: None,
            closing: false,
            closed: false,
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

    pub(super) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>>> {
        loop {
            self.poll_end();
            match &self.ended {
                Some(End::Idle | End::Peer) => return Poll::Ready(Ok(None)),
                Some(End::Failed(_)) => return Poll::Ready(Err(self.take_failure())),
                Some(_) => return Poll::Ready(Err(Error::Closed)),
                None => {}
            }
            // One byte more than the largest message: a longer datagram is
            // seen as truncated, never taken cut short.
            let want = self.dg.max_message_len() + 1;
            let received = BUF.with_borrow_mut(|buf| {
                if buf.len() < want {
                    buf.resize(want, 0);
                }
                let received = self.socket.try_recv(&mut buf[..want]);
                received.map(|n| self.dg.on_datagram(&buf[..n], Instant::now()))
            });
            match received {
                Ok(arrival) => match arrival {
                    Some(Arrival::Message(message)) => return Poll::Ready(Ok(Some(message))),
                    Some(Arrival::Lost(error)) => return Poll::Ready(Err(error)),
                    None => {}
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready!(self.poll_readable(cx));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if bounced(&e) => return Poll::Ready(Err(self.dg.unreachable())),
                Err(e) => {
                    let peer = self.dg.peer().clone();
                    self.dg.fail(Error::from_io(e, &peer));
                }
            }
        }
    }

    /// Ready when the socket may be readable or the idle timeout has come
    /// (then handled); pending, with the waker registered for both, when
    /// neither.
    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.socket.poll_recv_ready(cx).is_ready() {
            // An error of the socket is read by the next receive.
            return Poll::Ready(());
        }
        let Some(at) = self.dg.poll_timeout() else {
            return Poll::Pending;
        };
        let at = tokio::time::Instant::from_std(at);
        match &mut self.sleep {
            Some(sleep) if sleep.deadline() == at => {}
            Some(sleep) => sleep.as_mut().reset(at),
            None => self.sleep = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        let sleep = self.sleep.as_mut().expect("made above");
        ready!(sleep.as_mut().poll(cx));
        self.dg.handle_timeout(Instant::now());
        Poll::Ready(())
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

    /// Bytes queued and not yet sent.
    pub(super) fn queued(&self) -> usize {
        self.dg.queued()
    }

    pub(super) fn max_message_len(&self) -> usize {
        self.dg.max_message_len()
    }

    pub(super) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        while let Some(datagram) = self.dg.front() {
            match self.socket.try_send(datagram) {
                Ok(_) => self.dg.sent(),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // An error of the socket is met by the next send.
                    let _ = ready!(self.socket.poll_send_ready(cx));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if bounced(&e) => {
                    // That datagram bounced: said, and done with.
                    self.dg.sent();
                    return Poll::Ready(Err(self.dg.unreachable()));
                }
                Err(e) => {
                    let peer = self.dg.peer().clone();
                    self.dg.fail(Error::from_io(e, &peer));
                    self.poll_end();
                    return Poll::Ready(Err(self.take_failure()));
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Sends what is queued and ends; a datagram socket cannot tell of
    /// delivery. Said once; after that, [`Error::Closed`].
    pub(super) fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Result<Delivery>> {
        if self.closed {
            return Poll::Ready(Err(Error::Closed));
        }
        if !self.closing {
            self.closing = true;
            self.dg.close();
        }
        let flushed = ready!(self.poll_flush(cx));
        self.closed = true;
        self.poll_end();
        Poll::Ready(match self.ended.take() {
            Some(End::Failed(e)) => Err(e),
            _ => flushed.map(|()| Delivery::Unknown),
        })
    }

    /// Ends our side: what is queued is sent (a datagram socket has no
    /// end to send).
    pub(super) fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        self.poll_flush(cx)
    }

    pub(super) fn abort(&mut self) {
        self.dg.abort();
    }
}
