//! The one user-facing API over every transport, written once over a
//! sending and a receiving half.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::addr::Addr;
use crate::error::{Error, Result};
use crate::transport::{Delivery, DynTransport, Receiver, Sender, Stopper, Transport};

/// Tells split halves of different conversations apart.
static NEXT_PAIR: AtomicU64 = AtomicU64::new(1);

/// A conversation with one peer: whole messages, in order, over any
/// [`Transport`].
///
/// Use it generically (`Conversation<Tcp>`), or with the transport chosen at
/// run time from an address ([`connect`](crate::connect),
/// [`listen`](crate::listen)), in which case the type is `Conversation`
/// (that is, `Conversation<DynTransport>`: boxed halves).
///
/// ```
/// use converse::{Conversation, TcpListener};
/// use std::thread;
///
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let url = listener.local_addr()?.to_string(); // tcp://127.0.0.1:PORT
///
/// let server = thread::spawn(move || -> converse::Result<()> {
///     let mut conversation = Conversation::new(listener.accept()?);
///     let hello = conversation.recv_text()?.expect("a message");
///     conversation.send_text(&format!("hi, {hello}"))?;
///     conversation.close()?;
///     Ok(())
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
pub struct Conversation<T: Transport = DynTransport> {
    // The receiving half is dropped first: a sending half dropped after it
    // knows whether input was left unread (then the connection is reset,
    // not ended cleanly).
    rx: T::Receiver,
    tx: T::Sender,
    /// A message lent by `recv_ref` when the receiver has no buffer of its own.
    hold: Option<Bytes>,
}

impl<T: Transport> std::fmt::Debug for Conversation<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversation")
            .field("local", &self.tx.local_addr().ok())
            .field("peer", &self.tx.peer_addr().ok())
            .finish()
    }
}

/// Why [`Conversation::send_all`] stopped: the error, and how many of the
/// messages were taken before it. Those were taken (they reach the peer
/// unless the conversation fails); the rest were not. When the final flush
/// is what failed, `taken` is every message, and on a
/// [`Timeout`](Error::Timeout) the next flush sends what is left.
#[derive(Debug, thiserror::Error)]
#[error("send_all stopped after {taken} messages were taken")]
pub struct SendAllError {
    /// How many messages, from the start, were taken.
    pub taken: usize,
    /// What stopped it.
    #[source]
    pub error: Error,
}

impl From<SendAllError> for Error {
    fn from(err: SendAllError) -> Error {
        err.error
    }
}

impl<T: Transport> Conversation<T> {
    /// Wraps a transport.
    pub fn new(transport: T) -> Self {
        let (tx, rx) = transport.into_halves();
        Conversation { tx, rx, hold: None }
    }

    /// Sends one message now.
    ///
    /// `Ok` means the message was taken: it reaches the peer unless the
    /// connection fails ([`close`](Self::close) tells whether it did).
    ///
    /// # Errors
    ///
    /// * [`Error::Timeout`]: the write timeout passed and **nothing** of the
    ///   message was taken: sending it again is right, and never duplicates
    ///   it. (A message that had any byte written is taken: `Ok`, and the
    ///   rest goes out first next time.)
    /// * [`Error::MessageTooLarge`], [`Error::InvalidFrame`] (a line
    ///   containing `\n`, an empty message over `raw`): nothing was written;
    ///   the conversation goes on.
    /// * [`Error::BrokenPipe`], [`Error::ConnectionReset`]: the peer is gone;
    ///   the conversation is over.
    /// * [`Error::Closed`]: the conversation was closed, stopped, or had
    ///   failed before.
    #[inline]
    pub fn send(&mut self, msg: impl AsRef<[u8]>) -> Result<()> {
        self.tx.send(msg.as_ref())
    }

    /// Sends one message of text (as its UTF-8 bytes; over WebSocket, a
    /// text frame, so that a browser receives a string).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_text(&mut self, text: &str) -> Result<()> {
        self.tx.send_text(text)
    }

    /// Queues one message; [`flush`](Self::flush) sends everything queued in
    /// few system calls. `Ok` means taken, as for [`send`](Self::send). The
    /// queue is bounded ([`Config::send_buffer`](crate::Config::send_buffer)):
    /// feeding past it writes first, so memory never grows without limit;
    /// if that write times out, this message is not taken
    /// ([`Error::Timeout`]).
    ///
    /// A conversation dropped with messages still queued writes them first,
    /// waiting at most the linger time; if it cannot, the connection is
    /// reset so that the peer sees an error, never a clean end after missing
    /// messages.
    #[inline]
    pub fn feed(&mut self, msg: impl AsRef<[u8]>) -> Result<()> {
        self.tx.feed(msg.as_ref())
    }

    /// Writes everything queued by [`feed`](Self::feed). On
    /// [`Error::Timeout`] the rest stays queued for the next flush.
    pub fn flush(&mut self) -> Result<()> {
        self.tx.flush()
    }

    /// Bytes queued by [`feed`](Self::feed) and not yet written.
    pub fn queued(&self) -> usize {
        self.tx.queued()
    }

    /// Sends every message of `msgs`, batched, then flushes.
    ///
    /// # Errors
    ///
    /// A [`SendAllError`] says how many messages were taken before the
    /// error (it converts into the [`Error`] with `?`).
    pub fn send_all<I>(&mut self, msgs: I) -> Result<(), SendAllError>
    where
        I: IntoIterator,
        I::Item: AsRef<[u8]>,
    {
        let mut taken = 0;
        for msg in msgs {
            self.tx
                .feed(msg.as_ref())
                .map_err(|error| SendAllError { taken, error })?;
            taken += 1;
        }
        self.tx
            .flush()
            .map_err(|error| SendAllError { taken, error })
    }

    /// Receives one message. `Ok(None)` is the peer's clean end (and every
    /// later receive says it again).
    ///
    /// The message is a [`Bytes`] cut out of the transport's read buffer
    /// without copying; [`recv_ref`](Self::recv_ref) lends it instead.
    ///
    /// # Errors
    ///
    /// * [`Error::Timeout`]: the read timeout passed; nothing is lost (a
    ///   message half received is completed by the next receive).
    /// * [`Error::UnexpectedEof`], [`Error::DeadlineExceeded`],
    ///   [`Error::MessageTooLarge`], [`Error::InvalidFrame`],
    ///   [`Error::ConnectionReset`]: the conversation is over (both halves
    ///   answer [`Error::Closed`] from then on).
    /// * [`Error::Truncated`], [`Error::PeerUnreachable`] (datagrams): that
    ///   datagram is lost; the conversation goes on.
    #[inline]
    pub fn recv(&mut self) -> Result<Option<Bytes>> {
        self.rx.recv()
    }

    /// Receives one message and lends it: the slice is valid until the next
    /// receive. Over a stream it points straight into the read buffer: no
    /// reference count, no allocation, the cheapest way to read many small
    /// messages (as `BufRead::fill_buf` is for bytes).
    ///
    /// ```
    /// # use converse::{Conversation, Memory};
    /// # let (a, b) = Memory::pair();
    /// # let (mut a, mut b) = (Conversation::new(a), Conversation::new(b));
    /// a.send_all(["1", "2", "3"])?;
    /// a.close()?;
    /// let mut sum = 0;
    /// while let Some(message) = b.recv_ref()? {
    ///     sum += std::str::from_utf8(message).unwrap().parse::<u32>().unwrap();
    /// }
    /// assert_eq!(sum, 6);
    /// # Ok::<(), converse::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv).
    #[inline]
    pub fn recv_ref(&mut self) -> Result<Option<&[u8]>> {
        self.rx.recv_ref(&mut self.hold)
    }

    /// Receives one message as text.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), and [`Error::InvalidText`] for a message
    /// that is not UTF-8: it carries the message, and the conversation goes
    /// on.
    pub fn recv_text(&mut self) -> Result<Option<String>> {
        self.rx.recv()?.map(into_text).transpose()
    }

    /// An iterator over received messages, until the peer's clean end or the
    /// first error (which it yields, then stops).
    pub fn messages(&mut self) -> Messages<'_, T::Receiver> {
        Messages {
            rx: &mut self.rx,
            done: false,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Result<Addr> {
        self.tx.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> Result<Addr> {
        self.tx.local_addr()
    }

    /// Sets the read timeout (`None`: receives block). A zero duration is
    /// refused with [`Error::InvalidConfig`], as everywhere.
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.rx.set_read_timeout(timeout)
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.rx.read_timeout()
    }

    /// Sets the write timeout (`None`: sends block). A zero duration is
    /// refused with [`Error::InvalidConfig`].
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.tx.set_write_timeout(timeout)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.tx.write_timeout()
    }

    /// Sets the per-message deadline (stream transports; see
    /// [`Config::message_deadline`](crate::Config::message_deadline)).
    pub fn set_message_deadline(&mut self, deadline: Duration) -> Result<()> {
        self.rx.set_message_deadline(deadline)
    }

    /// Sets how long [`close`](Self::close) (or a drop with messages queued)
    /// waits for the peer.
    pub fn set_linger(&mut self, linger: Duration) {
        self.tx.set_linger(linger);
    }

    /// The linger time.
    pub fn linger(&self) -> Duration {
        self.tx.linger()
    }

    /// The largest message this conversation sends.
    pub fn max_message_len(&self) -> usize {
        self.tx.max_message_len()
    }

    /// A handle that stops this conversation from another thread: a blocked
    /// `recv` or `send` returns [`Error::Closed`] at once, and so does every
    /// later use. `None` for a transport that offers none.
    pub fn stopper(&self) -> Option<Stopper> {
        self.rx.stopper().or_else(|| self.tx.stopper())
    }

    /// The socket, for options this crate does not cover (on the
    /// run-time-chosen path too). Reading or writing it directly breaks the
    /// framing.
    #[cfg(unix)]
    pub fn socket(&self) -> Option<socket2::SockRef<'_>> {
        self.tx.socket()
    }

    /// Connects again after the connection below was lost, and goes on as
    /// the same conversation: for NATS, a new connection to the server,
    /// subscribed anew to the same subject (what was published in between
    /// is lost: core NATS delivers at most once). Transports that cannot
    /// say [`Error::Unsupported`].
    ///
    /// # Errors
    ///
    /// As connecting: [`Error::ConnectionRefused`] while the server is
    /// still away (call again later), [`Error::Nats`](crate::Error) if it
    /// refuses.
    pub fn reconnect(&mut self) -> Result<()> {
        self.rx.reconnect()
    }

    /// Completes the connection's setup now, if it is not over: the TLS
    /// handshake of an accepted conversation, which otherwise happens in
    /// its first send or receive (bounded by
    /// [`Config::handshake_timeout`](crate::Config::handshake_timeout)).
    /// Nothing for transports without one.
    ///
    /// # Errors
    ///
    /// [`Error::Tls`](crate::Error) with the reason the handshake failed;
    /// I/O errors.
    pub fn handshake(&mut self) -> Result<()> {
        self.tx.handshake()
    }

    /// The verified identity of the peer: its certificate chain and the
    /// names it is valid for (TLS, once the handshake is over; a client
    /// always has the server's, a server has the client's with mutual
    /// TLS). `None` for other transports. Feature `tls`.
    ///
    /// ```no_run
    /// let listener = converse::listen_with("tls://127.0.0.1:8443", &converse::Config::new())?;
    /// let mut conversation = listener.accept()?;
    /// conversation.handshake()?;
    /// if let Some(peer) = conversation.peer_identity() {
    ///     println!("{:?}", peer.dns_names());
    /// }
    /// # Ok::<(), converse::Error>(())
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn peer_identity(&self) -> Option<crate::tls::PeerIdentity> {
        self.tx.peer_identity()
    }

    /// Closes gracefully and says whether the peer is known to have had
    /// everything: writes what is queued, ends the sending direction (TCP:
    /// shuts down the write side, never a reset that discards data), then
    /// receives and discards until the peer's end. The same for every
    /// transport.
    ///
    /// Bounded: it returns within the linger time
    /// ([`Config::linger`](crate::Config::linger), default 5 s) plus the
    /// write timeout if one is set, whatever the peer does.
    ///
    /// # Errors
    ///
    /// * [`Error::Unsent`]: the peer did not read what was queued in time;
    ///   the connection was reset so that the peer sees an error.
    /// * [`Error::ConnectionReset`]: the peer reset the connection, so
    ///   messages it had not read were lost.
    ///
    /// `Ok(`[`Delivery::Confirmed`]`)`: the peer ended its side after
    /// everything, with no reset. `Ok(`[`Delivery::Unknown`]`)`: the
    /// transport cannot tell (datagrams, a peer that did not end its side
    /// in time, or a conversation that had already failed).
    pub fn close(mut self) -> Result<Delivery> {
        let start = Instant::now();
        let linger = self.tx.linger();
        // Writing what is queued may take the write timeout on top of the
        // linger time; waiting for the peer's end, the linger time.
        self.tx
            .finish(start + linger + self.tx.write_timeout().unwrap_or_default())?;
        self.rx.drain((start + linger).max(Instant::now()))
    }

    /// Closes at once, discarding anything not yet delivered (TCP: a reset).
    pub fn abort(mut self) {
        self.tx.abort();
    }

    /// Splits into a sending half and a receiving half that two threads use
    /// at once, without a lock between them. No boxing: the halves are the
    /// transport's own. [`SendHalf::reunite`] puts them back together.
    pub fn split(mut self) -> (SendHalf<T>, RecvHalf<T>) {
        self.rx.on_split();
        let pair = NEXT_PAIR.fetch_add(1, Ordering::Relaxed);
        (
            SendHalf { tx: self.tx, pair },
            RecvHalf {
                rx: self.rx,
                hold: self.hold,
                pair,
            },
        )
    }

    /// The two halves, unwrapped.
    pub fn into_halves(self) -> (T::Sender, T::Receiver) {
        (self.tx, self.rx)
    }

    /// The sending half.
    pub fn sender(&self) -> &T::Sender {
        &self.tx
    }

    /// The sending half, mutably.
    pub fn sender_mut(&mut self) -> &mut T::Sender {
        &mut self.tx
    }

    /// The receiving half.
    pub fn receiver(&self) -> &T::Receiver {
        &self.rx
    }

    /// The receiving half, mutably (for what only it has, such as
    /// `StreamReceiver::set_spin`).
    pub fn receiver_mut(&mut self) -> &mut T::Receiver {
        &mut self.rx
    }

    /// Boxes the halves, to mix conversations over different transports.
    pub fn boxed(self) -> Conversation
    where
        T::Sender: 'static,
        T::Receiver: 'static,
    {
        Conversation {
            tx: Box::new(self.tx),
            rx: Box::new(self.rx),
            hold: self.hold,
        }
    }
}

pub(crate) fn into_text(message: Bytes) -> Result<String> {
    match std::str::from_utf8(&message) {
        Ok(text) => Ok(text.to_owned()),
        Err(source) => Err(Error::InvalidText { message, source }),
    }
}

/// The messages of a conversation, as an iterator (see
/// [`Conversation::messages`]).
#[derive(Debug)]
pub struct Messages<'a, R: Receiver> {
    rx: &'a mut R,
    done: bool,
}

impl<R: Receiver> Iterator for Messages<'_, R> {
    type Item = Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.rx.recv() {
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
pub struct SendHalf<T: Transport = DynTransport> {
    tx: T::Sender,
    pair: u64,
}

impl<T: Transport> std::fmt::Debug for SendHalf<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendHalf")
            .field("peer", &self.tx.peer_addr().ok())
            .finish()
    }
}

/// Two halves that are not of the same conversation, handed back.
pub struct ReuniteError<T: Transport = DynTransport>(pub SendHalf<T>, pub RecvHalf<T>);

impl<T: Transport> std::fmt::Debug for ReuniteError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReuniteError(..)")
    }
}

impl<T: Transport> std::fmt::Display for ReuniteError<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the halves are not of the same conversation")
    }
}

impl<T: Transport> std::error::Error for ReuniteError<T> {}

impl<T: Transport> SendHalf<T> {
    /// See [`Conversation::send`].
    #[inline]
    pub fn send(&mut self, msg: impl AsRef<[u8]>) -> Result<()> {
        self.tx.send(msg.as_ref())
    }

    /// See [`Conversation::send_text`].
    pub fn send_text(&mut self, text: &str) -> Result<()> {
        self.tx.send_text(text)
    }

    /// See [`Conversation::feed`].
    #[inline]
    pub fn feed(&mut self, msg: impl AsRef<[u8]>) -> Result<()> {
        self.tx.feed(msg.as_ref())
    }

    /// See [`Conversation::flush`].
    pub fn flush(&mut self) -> Result<()> {
        self.tx.flush()
    }

    /// See [`Conversation::queued`].
    pub fn queued(&self) -> usize {
        self.tx.queued()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Result<Addr> {
        self.tx.peer_addr()
    }

    /// See [`Conversation::set_write_timeout`].
    pub fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.tx.set_write_timeout(timeout)
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> Option<Duration> {
        self.tx.write_timeout()
    }

    /// A handle that stops the conversation from another thread.
    pub fn stopper(&self) -> Option<Stopper> {
        self.tx.stopper()
    }

    /// The half itself.
    pub fn inner(&mut self) -> &mut T::Sender {
        &mut self.tx
    }

    /// Writes what is queued and ends the sending direction, within the
    /// linger time (plus the write timeout): the peer receives every message
    /// sent, then the clean end. The receiving half keeps working (receive
    /// until its `Ok(None)`, then drop it).
    ///
    /// # Errors
    ///
    /// [`Error::Unsent`] when the queue could not be written in time (the
    /// connection was reset).
    pub fn close(mut self) -> Result<()> {
        let until = Instant::now() + self.tx.linger() + self.tx.write_timeout().unwrap_or_default();
        self.tx.finish(until)
    }

    /// Puts the halves back together.
    ///
    /// # Errors
    ///
    /// [`ReuniteError`], holding both, if they are not of the same
    /// conversation.
    pub fn reunite(self, rx: RecvHalf<T>) -> Result<Conversation<T>, ReuniteError<T>> {
        if self.pair != rx.pair {
            return Err(ReuniteError(self, rx));
        }
        Ok(Conversation {
            tx: self.tx,
            rx: rx.rx,
            hold: rx.hold,
        })
    }
}

/// The receiving half of a split [`Conversation`].
pub struct RecvHalf<T: Transport = DynTransport> {
    rx: T::Receiver,
    hold: Option<Bytes>,
    pair: u64,
}

impl<T: Transport> std::fmt::Debug for RecvHalf<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvHalf")
            .field("peer", &self.rx.peer_addr().ok())
            .finish()
    }
}

impl<T: Transport> RecvHalf<T> {
    /// See [`Conversation::recv`].
    #[inline]
    pub fn recv(&mut self) -> Result<Option<Bytes>> {
        self.rx.recv()
    }

    /// See [`Conversation::recv_ref`].
    #[inline]
    pub fn recv_ref(&mut self) -> Result<Option<&[u8]>> {
        self.rx.recv_ref(&mut self.hold)
    }

    /// See [`Conversation::recv_text`].
    pub fn recv_text(&mut self) -> Result<Option<String>> {
        self.rx.recv()?.map(into_text).transpose()
    }

    /// See [`Conversation::messages`].
    pub fn messages(&mut self) -> Messages<'_, T::Receiver> {
        Messages {
            rx: &mut self.rx,
            done: false,
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Result<Addr> {
        self.rx.peer_addr()
    }

    /// See [`Conversation::set_read_timeout`].
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.rx.set_read_timeout(timeout)
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> Option<Duration> {
        self.rx.read_timeout()
    }

    /// A handle that stops the conversation from another thread.
    pub fn stopper(&self) -> Option<Stopper> {
        self.rx.stopper()
    }

    /// The half itself.
    pub fn inner(&mut self) -> &mut T::Receiver {
        &mut self.rx
    }

    /// Receives and discards until the peer's end, waiting at most `linger`:
    /// the second half of a graceful close, for a conversation whose sending
    /// half was closed on its own.
    pub fn close(mut self, linger: Duration) -> Result<Delivery> {
        self.rx.drain(Instant::now() + linger)
    }
}
