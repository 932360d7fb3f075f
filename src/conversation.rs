//! The one user-facing API over every transport.

use std::time::Duration;

use bytes::Bytes;

use crate::addr::{self, Addr, Scheme};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::transport::{
    self, Tcp, TcpListener, Transport, TransportRecv, TransportSend, UdpListener,
};

/// A conversation with one peer: whole messages, in order, over any
/// [`Transport`].
///
/// Use it generically (`Conversation<Tcp>`), or with the transport chosen at
/// run time from an address ([`connect`], [`listen`]), in which case the type
/// is `Conversation` (that is, `Conversation<Box<dyn Transport>>`).
///
/// ```
/// use converse::{Conversation, TcpListener};
/// use std::thread;
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let url = listener.local_addr()?.to_string(); // tcp://127.0.0.1:PORT
///
/// let server = thread::spawn(move || -> converse::Result<()> {
///     let mut conversation = listener.accept()?;
///     let hello = conversation.recv_text()?.expect("a message");
///     conversation.send_text(&format!("hi, {hello}"))?;
///     conversation.close()
/// });
///
/// let mut client = converse::connect(&url)?;
/// client.send_text("hello!")?;
/// assert_eq!(client.recv_text()?.as_deref(), Some("hi, hello!"));
/// assert_eq!(client.recv()?, None); // the server's clean end
/// client.close()?; // lets the server's graceful close finish at once
/// server.join().unwrap()?;
/// # Ok::<(), converse::Error>(())
/// ```
pub struct Conversation<T = Box<dyn Transport>> {
    transport: T,
}

impl<T: Transport> std::fmt::Debug for Conversation<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversation")
            .field("local", &self.transport.local_addr().ok())
            .field("peer", &self.transport.peer_addr().ok())
            .finish()
    }
}

impl<T: Transport> Conversation<T> {
    /// Wraps a transport.
    pub fn new(transport: T) -> Self {
        Conversation { transport }
    }

    /// Sends one message now.
    ///
    /// `Ok` means the message was taken: it reaches the peer unless the
    /// connection fails (close the conversation to be sure it did).
    /// [`Error::Timeout`] means nothing of it was taken: sending it again is
    /// right. A message over the limit fails with
    /// [`Error::MessageTooLarge`] before anything is written.
    pub fn send(&mut self, msg: impl AsRef<[u8]>) -> Result<()> {
        self.transport.send(msg.as_ref())
    }

    /// Sends one message of text (as its UTF-8 bytes).
    pub fn send_text(&mut self, text: &str) -> Result<()> {
        self.transport.send(text.as_bytes())
    }

    /// Queues one message; [`flush`](Self::flush) sends everything queued in
    /// few system calls. The queue is bounded ([`Config::send_buffer`]):
    /// feeding past it flushes first, so memory never grows without limit.
    pub fn feed(&mut self, msg: impl AsRef<[u8]>) -> Result<()> {
        self.transport.feed(msg.as_ref())
    }

    /// Sends everything queued by [`feed`](Self::feed).
    pub fn flush(&mut self) -> Result<()> {
        self.transport.flush()
    }

    /// Sends every message of `msgs`, batched, then flushes.
    pub fn send_all<I>(&mut self, msgs: I) -> Result<()>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        for msg in msgs {
            self.transport.feed(msg.as_ref())?;
        }
        self.transport.flush()
    }

    /// Receives one message. `Ok(None)` is the peer's clean end.
    ///
    /// The message is a [`Bytes`] cut out of the transport's read buffer
    /// without copying.
    pub fn recv(&mut self) -> Result<Option<Bytes>> {
        self.transport.recv()
    }

    /// Receives one message as text. A message that is not UTF-8 is
    /// [`Error::InvalidText`], which carries the message; the conversation
    /// stays usable.
    pub fn recv_text(&mut self) -> Result<Option<String>> {
        self.transport.recv()?.map(into_text).transpose()
    }

    /// An iterator over received messages, until the peer's clean end or the
    /// first error (which it yields, then stops).
    pub fn messages(&mut self) -> Messages<'_, T> {
        Messages {
            conversation: self,
            done: false,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Result<Addr> {
        self.transport.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> Result<Addr> {
        self.transport.local_addr()
    }

    /// Sets the read timeout (`None`: receives block). A zero duration is an
    /// error.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.transport.set_read_timeout(timeout)
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.transport.read_timeout()
    }

    /// Sets the write timeout (`None`: sends block). A zero duration is an
    /// error.
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.transport.set_write_timeout(timeout)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.transport.write_timeout()
    }

    /// The largest message this conversation sends and accepts.
    pub fn max_message_len(&self) -> usize {
        self.transport.max_message_len()
    }

    /// Closes gracefully: every message sent before reaches the peer (TCP:
    /// flush, shut down the write side, drain until the peer's end or the
    /// linger time, then close; never a reset that discards data).
    pub fn close(mut self) -> Result<()> {
        self.transport.close()
    }

    /// Closes at once, discarding anything not yet delivered (TCP: a reset).
    pub fn abort(mut self) -> Result<()> {
        self.transport.abort()
    }

    /// Splits into a sending half and a receiving half that two threads can
    /// use at once, without a lock between them.
    pub fn split(self) -> Result<(SendHalf, RecvHalf)>
    where
        T: 'static,
    {
        let (send, recv) = Box::new(self.transport).split()?;
        Ok((SendHalf { inner: send }, RecvHalf { inner: recv }))
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, mutably.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Unwraps the transport.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Boxes the transport, to mix conversations over different transports.
    pub fn boxed(self) -> Conversation
    where
        T: 'static,
    {
        Conversation::new(Box::new(self.transport))
    }
}

fn into_text(message: Bytes) -> Result<String> {
    match std::str::from_utf8(&message) {
        Ok(text) => Ok(text.to_owned()),
        Err(source) => Err(Error::InvalidText { message, source }),
    }
}

/// The messages of a conversation, as an iterator (see
/// [`Conversation::messages`]).
#[derive(Debug)]
pub struct Messages<'a, T: Transport> {
    conversation: &'a mut Conversation<T>,
    done: bool,
}

impl<T: Transport> Iterator for Messages<'_, T> {
    type Item = Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.conversation.recv() {
            Ok(Some(msg)) => Some(Ok(msg)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// The sending half of a split [`Conversation`].
pub struct SendHalf {
    inner: Box<dyn TransportSend>,
}

impl std::fmt::Debug for SendHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendHalf")
            .field("peer", &self.inner.peer_addr().ok())
            .finish()
    }
}

impl SendHalf {
    /// See [`Conversation::send`].
    pub fn send(&mut self, msg: impl AsRef<[u8]>) -> Result<()> {
        self.inner.send(msg.as_ref())
    }

    /// See [`Conversation::send_text`].
    pub fn send_text(&mut self, text: &str) -> Result<()> {
        self.inner.send(text.as_bytes())
    }

    /// See [`Conversation::feed`].
    pub fn feed(&mut self, msg: impl AsRef<[u8]>) -> Result<()> {
        self.inner.feed(msg.as_ref())
    }

    /// See [`Conversation::flush`].
    pub fn flush(&mut self) -> Result<()> {
        self.inner.flush()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Result<Addr> {
        self.inner.peer_addr()
    }

    /// See [`Conversation::set_write_timeout`].
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.inner.set_write_timeout(timeout)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.inner.write_timeout()
    }

    /// Flushes and ends the sending direction: the peer sees the clean end
    /// after every message sent. The receiving half keeps working.
    pub fn close(mut self) -> Result<()> {
        self.inner.close()
    }
}

/// The receiving half of a split [`Conversation`].
pub struct RecvHalf {
    inner: Box<dyn TransportRecv>,
}

impl std::fmt::Debug for RecvHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvHalf")
            .field("peer", &self.inner.peer_addr().ok())
            .finish()
    }
}

impl RecvHalf {
    /// See [`Conversation::recv`].
    pub fn recv(&mut self) -> Result<Option<Bytes>> {
        self.inner.recv()
    }

    /// See [`Conversation::recv_text`].
    pub fn recv_text(&mut self) -> Result<Option<String>> {
        self.inner.recv()?.map(into_text).transpose()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Result<Addr> {
        self.inner.peer_addr()
    }

    /// See [`Conversation::set_read_timeout`].
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.inner.set_read_timeout(timeout)
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.inner.read_timeout()
    }
}

/// Connects to a URL with the default [`Config`]. The scheme picks the
/// transport:
///
/// | URL | transport |
/// |---|---|
/// | `tcp://HOST:PORT` (IPv6 as `tcp://[::1]:8090`) | [`Tcp`] |
/// | `udp://HOST:PORT` | [`Udp`](crate::Udp) |
/// | `unix:///path` (Unix systems) | `Unix`, a framed stream |
/// | `unixgram:///path` (Unix systems) | `UnixDatagram` |
///
/// (`unix` and `unixgram` are the names Go's `net` package gives the two
/// kinds of Unix sockets.)
///
/// ```no_run
/// let mut conversation = converse::connect("tcp://127.0.0.1:8090")?;
/// conversation.send_text("hello!")?;
/// # Ok::<(), converse::Error>(())
/// ```
pub fn connect(url: &str) -> Result<Conversation> {
    connect_with(url, &Config::default())
}

/// Connects to a URL with `config`. See [`connect`].
pub fn connect_with(url: &str, config: &Config) -> Result<Conversation> {
    let (scheme, rest) = addr::split_url(url)?;
    match scheme {
        Scheme::Tcp => {
            let addrs = addr::resolve(url, rest)?;
            let tcp = transport::tcp::connect_any(&addrs, config)?;
            Ok(Conversation::new(Box::new(tcp)))
        }
        Scheme::Udp => {
            let addrs = addr::resolve(url, rest)?;
            let udp = transport::udp::connect_any(&addrs, config)?;
            Ok(Conversation::new(Box::new(udp)))
        }
        #[cfg(unix)]
        Scheme::Unix => Ok(Conversation::new(Box::new(transport::Unix::connect_with(
            rest, config,
        )?))),
        #[cfg(unix)]
        Scheme::UnixDatagram => Ok(Conversation::new(Box::new(
            transport::UnixDatagram::connect_with(rest, config)?,
        ))),
        #[cfg(not(unix))]
        Scheme::Unix | Scheme::UnixDatagram => {
            Err(Error::Unsupported("Unix domain sockets on this system"))
        }
    }
}

/// Listens on a URL with the default [`Config`]: `tcp://HOST:PORT`,
/// `udp://HOST:PORT` or `unix:///path`. Port 0 picks a free port;
/// [`Listener::local_addr`] tells which. (There is no listener for
/// `unixgram://`: see `UnixDatagram`.)
pub fn listen(url: &str) -> Result<Listener> {
    listen_with(url, &Config::default())
}

/// Listens on a URL with `config`. See [`listen`].
pub fn listen_with(url: &str, config: &Config) -> Result<Listener> {
    let (scheme, rest) = addr::split_url(url)?;
    match scheme {
        Scheme::Tcp => {
            let addrs = addr::resolve(url, rest)?;
            let listener = transport::tcp::bind_any(&addrs, config)?;
            Ok(Listener::new(listener))
        }
        Scheme::Udp => {
            let addrs = addr::resolve(url, rest)?;
            let listener = transport::udp::bind_any(&addrs, config)?;
            Ok(Listener::new(listener))
        }
        #[cfg(unix)]
        Scheme::Unix => Ok(Listener::new(transport::UnixListener::bind_with(
            rest, config,
        )?)),
        Scheme::UnixDatagram => Err(Error::Unsupported(
            "listening on unixgram:// (bind a std UnixDatagram, connect it to its peer, \
             and wrap it with UnixDatagram::from_socket)",
        )),
        #[cfg(not(unix))]
        Scheme::Unix => Err(Error::Unsupported("Unix domain sockets on this system")),
    }
}

/// The server side of a transport: each accepted peer is a conversation.
///
/// Implemented by [`TcpListener`] and [`UdpListener`]; a user's own listener can implement it
/// too and be used through [`Listener`].
pub trait Accept: Send + Sync {
    /// Waits for the next peer.
    fn accept(&self) -> Result<Conversation>;
    /// The bound address.
    fn local_addr(&self) -> Result<Addr>;
}

impl Accept for TcpListener {
    fn accept(&self) -> Result<Conversation> {
        TcpListener::accept(self).map(Conversation::boxed)
    }

    fn local_addr(&self) -> Result<Addr> {
        TcpListener::local_addr(self)
    }
}

#[cfg(unix)]
impl Accept for transport::UnixListener {
    fn accept(&self) -> Result<Conversation> {
        transport::UnixListener::accept(self).map(Conversation::boxed)
    }

    fn local_addr(&self) -> Result<Addr> {
        transport::UnixListener::local_addr(self)
    }
}

impl Accept for UdpListener {
    fn accept(&self) -> Result<Conversation> {
        UdpListener::accept(self).map(Conversation::boxed)
    }

    fn local_addr(&self) -> Result<Addr> {
        UdpListener::local_addr(self)
    }
}

/// A listener whose transport was chosen at run time (see [`listen`]).
pub struct Listener {
    inner: Box<dyn Accept>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("local", &self.inner.local_addr().ok())
            .finish()
    }
}

impl Listener {
    /// Wraps a listener of any transport.
    pub fn new(inner: impl Accept + 'static) -> Listener {
        Listener {
            inner: Box::new(inner),
        }
    }

    /// Waits for the next peer.
    pub fn accept(&self) -> Result<Conversation> {
        self.inner.accept()
    }

    /// The bound address, as a URL that [`connect`] accepts
    /// (`tcp://127.0.0.1:PORT`, with the real port).
    pub fn local_addr(&self) -> Result<Addr> {
        self.inner.local_addr()
    }
}

#[allow(dead_code)]
fn _assert_object_safe(_: &dyn Transport, _: Conversation<Tcp>) {}
