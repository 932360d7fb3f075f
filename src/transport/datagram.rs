//! A datagram socket connected to one peer (a UDP client, a Unix datagram
//! socket): one message is one datagram, in two halves over one socket.

use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use socket2::Socket;

use super::sockopt;
use super::sockopt::{earliest, SockTimer, MIN_WAIT};
use super::{Delivery, Receiver, Sender, Stopper};
use crate::addr::Addr;
use crate::config::{check_timeout, Config};
use crate::error::{Error, Result};

#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) socket: Socket,
    pub(crate) local: Addr,
    pub(crate) peer: Addr,
    stopped: AtomicBool,
}

impl Link {
    fn check(&self) -> Result<()> {
        if self.stopped.load(Ordering::Relaxed) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }
}

/// The error for a datagram socket: a closed port (ICMP, or a Unix peer
/// gone) is `PeerUnreachable`, after which the conversation goes on.
fn map_err(err: io::Error, link: &Link) -> Error {
    if link.stopped.load(Ordering::Relaxed) {
        return Error::Closed;
    }
    match err.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotConnected => Error::PeerUnreachable {
            addr: link.peer.clone(),
        },
        _ => match err.raw_os_error() {
            #[cfg(unix)]
            Some(libc::EMSGSIZE) => Error::MessageTooLarge { len: 0, max: 0 },
            _ => Error::from_io(err, &link.peer),
        },
    }
}

/// The two halves over a connected datagram socket whose largest message
/// is `max`.
pub(crate) fn halves(
    socket: Socket,
    local: Addr,
    peer: Addr,
    max: usize,
    config: &Config,
) -> Result<(DatagramSender, DatagramReceiver)> {
    config.validate()?;
    sockopt::datagram(&socket, config).map_err(|e| Error::from_io(e, &peer))?;
    let link = Arc::new(Link {
        socket,
        local,
        peer,
        stopped: AtomicBool::new(false),
    });
    Ok((
        DatagramSender {
            link: Arc::clone(&link),
            max,
            timeout: config.write_timeout,
            closed: false,
        },
        DatagramReceiver {
            link,
            max,
            buf: BytesMut::new(),
            timeout: config.read_timeout,
            timer: SockTimer::new(config.read_timeout),
            idle: config.idle_timeout,
            last_arrival: Instant::now(),
            state: RecvState::Open,
        },
    ))
}

/// The sending half over a connected datagram socket: each message leaves
/// as one datagram, at once (nothing is batched). A message over the limit
/// is refused before any system call. The write timeout applies (`SO_SNDTIMEO`):
/// a Unix datagram send waits while the peer's queue is full.
#[derive(Debug)]
pub struct DatagramSender {
    link: Arc<Link>,
    max: usize,
    timeout: Option<Duration>,
    closed: bool,
}

impl Sender for DatagramSender {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.link.check()?;
        if self.closed {
            return Err(Error::Closed);
        }
        if msg.len() > self.max {
            return Err(Error::MessageTooLarge {
                len: msg.len() as u64,
                max: self.max as u64,
            });
        }
        loop {
            match self.link.socket.send(msg) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(match map_err(e, &self.link) {
                        Error::MessageTooLarge { .. } => Error::MessageTooLarge {
                            len: msg.len() as u64,
                            max: self.max as u64,
                        },
                        other => other,
                    })
                }
            }
        }
    }

    /// Local only: there is no close to send, and the peer is not told.
    fn finish(&mut self, _until: Instant) -> Result<()> {
        self.closed = true;
        Ok(())
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.link.peer.clone())
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self.link.local.clone())
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        let timeout = check_timeout("write_timeout", timeout)?;
        sockopt::set_write_timeout(&self.link.socket, timeout)
            .map_err(|e| Error::from_io(e, &self.link.peer))?;
        self.timeout = timeout;
        Ok(())
    }

    fn write_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn max_message_len(&self) -> usize {
        self.max
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(stopper(&self.link))
    }

    #[cfg(unix)]
    fn socket(&self) -> Option<socket2::SockRef<'_>> {
        Some(socket2::SockRef::from(&self.link.socket))
    }
}

/// A datagram conversation taken apart, for a driver that owns its socket.
pub(crate) struct DatagramParts {
    pub(crate) socket: Socket,
    pub(crate) local: Addr,
    pub(crate) peer: Addr,
    pub(crate) max: usize,
    pub(crate) idle: Option<Duration>,
}

/// Takes a conversation's halves apart. `None` if the socket is shared.
pub(crate) fn into_parts(tx: DatagramSender, rx: DatagramReceiver) -> Option<DatagramParts> {
    if !Arc::ptr_eq(&tx.link, &rx.link) {
        return None;
    }
    let (max, idle) = (tx.max, rx.idle);
    drop(tx);
    let link = Arc::try_unwrap(rx.link).ok()?;
    Some(DatagramParts {
        socket: link.socket,
        local: link.local,
        peer: link.peer,
        max,
        idle,
    })
}

fn stopper(link: &Arc<Link>) -> Stopper {
    let link = Arc::clone(link);
    Stopper::from_fn(move || {
        link.stopped.store(true, Ordering::Relaxed);
        sockopt::wake_up(&link.socket);
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecvState {
    Open,
    /// Idle for the idle timeout: the end was reported.
    Ended,
}

/// The receiving half over a connected datagram socket.
///
/// * Only the peer's datagrams arrive (the socket is connected).
/// * A datagram over the limit is never cut short silently: the receive
///   returns [`Error::Truncated`], and the next one is received normally.
/// * The idle timeout ([`Config::idle_timeout`]) counts from the peer's last
///   datagram (or from the start), never from the application's last
///   receive, and datagrams already waiting are delivered before the end is
///   reported.
#[derive(Debug)]
pub struct DatagramReceiver {
    link: Arc<Link>,
    max: usize,
    /// Initialised scratch space of at least `max + 1` bytes: a datagram
    /// that fills more than `max` of it was over the limit.
    buf: BytesMut,
    timeout: Option<Duration>,
    timer: SockTimer,
    idle: Option<Duration>,
    last_arrival: Instant,
    state: RecvState,
}

impl DatagramReceiver {
    /// Sets the idle timeout (`None`: never end for silence), counted from
    /// the peer's last datagram.
    pub fn set_idle_timeout(&mut self, idle: Option<Duration>) -> Result<()> {
        if idle == Some(Duration::ZERO) {
            return Err(crate::config::ConfigError {
                setting: "idle_timeout",
                reason: "a zero idle timeout would end the conversation at once",
            }
            .into());
        }
        self.idle = idle;
        Ok(())
    }
}

impl Receiver for DatagramReceiver {
    fn recv(&mut self) -> Result<Option<Bytes>> {
        if self.state == RecvState::Ended {
            return Ok(None);
        }
        self.link.check()?;
        let room = self.max + 1;
        if self.buf.len() < room {
            // Reclaimed in place when no earlier message still uses it.
            self.buf.clear();
            self.buf.reserve(2 * room);
            self.buf.resize(self.buf.capacity(), 0);
        }
        let start = Instant::now();
        let mut tried = false;
        loop {
            let now = Instant::now();
            let user_left = self.timeout.map(|t| t.saturating_sub(now - start));
            let idle_left = self
                .idle
                .map(|idle| (self.last_arrival + idle).saturating_duration_since(now));
            if tried {
                // Only after a read found nothing waiting.
                if idle_left.is_some_and(|l| l < MIN_WAIT) {
                    self.state = RecvState::Ended;
                    return Ok(None);
                }
                if user_left.is_some_and(|l| l < MIN_WAIT) {
                    return Err(Error::Timeout);
                }
            }
            let (wait, exact) = earliest(user_left, idle_left);
            let socket = &self.link.socket;
            self.timer
                .fit(wait, exact, |t| sockopt::set_read_timeout(socket, t))
                .map_err(|e| Error::from_io(e, &self.link.peer))?;
            match (&self.link.socket).read(&mut self.buf[..room]) {
                Ok(n) => {
                    self.link.check()?;
                    self.last_arrival = Instant::now();
                    if n > self.max {
                        return Err(Error::Truncated {
                            addr: self.link.peer.clone(),
                            max: self.max,
                        });
                    }
                    return Ok(Some(self.buf.split_to(n).freeze()));
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => tried = true,
                    _ => return Err(map_err(e, &self.link)),
                },
            }
        }
    }

    /// Datagrams have no end to wait for: [`Delivery::Unknown`] at once.
    fn drain(&mut self, _until: Instant) -> Result<Delivery> {
        self.state = RecvState::Ended;
        Ok(Delivery::Unknown)
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.link.peer.clone())
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self.link.local.clone())
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = check_timeout("read_timeout", timeout)?;
        Ok(())
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn max_message_len(&self) -> usize {
        self.max
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(stopper(&self.link))
    }
}
