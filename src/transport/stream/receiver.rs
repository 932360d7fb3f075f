//! The receiving half of a stream conversation.

use super::*;

/// The receiving half of a stream conversation: the connection's read
/// buffer, cut into messages by its protocol.
///
/// * A read timeout in the middle of a message returns [`Error::Timeout`]
///   and the next receive continues the same message: the stream never
///   loses sync.
/// * Once a message has started arriving it must be whole within the
///   per-message deadline, counted from when its first bytes arrived; a
///   message that arrived whole is delivered however late it is received.
/// * [`recv_ref`](Receiver::recv_ref) lends a message straight out of the
///   read buffer.
/// * While it waits for the peer it writes what the connection has to say
///   (pongs, close frames, TLS records) and what a timed-out send left.
pub struct StreamReceiver {
    pub(super) shared: Arc<Shared>,
    pub(super) rx: Rx,
    pub(super) timeout: Option<Duration>,
    pub(super) timer: SockTimer,
    /// Latency mode: how long to poll before blocking.
    pub(super) spin: Option<Duration>,
    /// Messages that came with the handshake, before it was over: handed
    /// out first.
    pub(super) held: std::collections::VecDeque<Bytes>,
    /// How to make this connection again (NATS).
    pub(super) remake: Option<Remake>,
}

/// Makes a connection again, from scratch: the socket and the connection
/// established, with their addresses.
pub(crate) type Remake = Box<dyn Fn() -> Result<(StreamSender, StreamReceiver)> + Send>;

impl std::fmt::Debug for StreamReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReceiver")
            .field("peer", &self.shared.peer)
            .field("buffered", &self.rx.buffered())
            .finish()
    }
}

/// What a receive found.
enum Got {
    Owned(Bytes),
    Lent,
    End,
}

impl StreamReceiver {
    /// Latency mode: before blocking in a receive, poll the socket without
    /// blocking for up to `spin` (`None`, the default: block at once).
    ///
    /// A message that arrives within the spin is picked up without the
    /// thread being put to sleep and woken again, which on a loaded machine
    /// is most of a loopback round trip. The cost is CPU: the receiving
    /// thread keeps one core at 100% for up to `spin` on every receive that
    /// has to wait. Meant for request/response on one thread over a plain
    /// framing: splitting the conversation turns it off (the spin makes
    /// the socket non-blocking, which a send on another thread must not
    /// see).
    pub fn set_spin(&mut self, spin: Option<Duration>) {
        self.spin = spin.filter(|s| !s.is_zero());
    }

    /// The capacity of the read buffers, in bytes: what an idle
    /// conversation holds on to between messages.
    pub fn buffer_capacity(&self) -> usize {
        self.rx.capacity()
    }

    /// `true` when the last message received came in a WebSocket text
    /// frame.
    pub fn last_was_text(&self) -> bool {
        self.rx.last_was_text()
    }

    /// The socket, for options this crate does not cover (`None` over
    /// QUIC, whose streams share one UDP socket). Reading or writing it
    /// directly breaks the framing.
    pub fn socket_ref(&self) -> Option<&Socket> {
        self.shared.carrier.socket()
    }

    /// The next message, or the end; waits for bytes as needed.
    #[inline]
    fn next(&mut self, lend: bool) -> Result<Got> {
        if !self.held.is_empty() {
            return Ok(Got::Owned(self.held.pop_front().expect("a held message")));
        }
        let mut start = None;
        let mut tried = false;
        loop {
            match self.rx.next(&mut &self.shared.link, Now, lend) {
                Next::Message(m) => return Ok(Got::Owned(m)),
                Next::Lent => return Ok(Got::Lent),
                Next::End => return Ok(Got::End),
                Next::More => {}
            }
            self.wait(&mut start, &mut tried, self.timeout)?;
        }
    }

    /// Waits for more bytes (bounded by `timeout` from `start`, and by the
    /// connection's own deadlines), writing what waits to be written.
    fn wait(
        &mut self,
        start: &mut Option<Instant>,
        tried: &mut bool,
        timeout: Option<Duration>,
    ) -> Result<()> {
        self.shared.check_stopped()?;
        let now = Instant::now();
        let start = *start.get_or_insert(now);
        let shared = Arc::clone(&self.shared);
        let (deadline, pending) = {
            let mut link = shared.lock();
            self.rx.take_early(&mut link, now);
            if *tried {
                // Only after a read that found nothing more: a message
                // whole in the kernel's buffer is never refused.
                self.rx.handle_timeout(&mut &mut *link, now);
                link.handle_timeout(now);
            }
            shared.flush_now(&mut link);
            if link.is_down() || link.is_eof() || link.was_answered() {
                // Nothing more to read.
                return Ok(());
            }
            // Before the connection is established, the sending half may
            // be reading (a handshake it drives): wait for it.
            if !link.is_established() {
                while shared.reading.load(Ordering::Relaxed) {
                    link = shared.wait_changed(link, timeout.map(|t| start + t))?;
                }
                shared.reading.store(true, Ordering::Relaxed);
            }
            let deadline = earliest_instant(self.rx.poll_timeout(), link.poll_timeout());
            (
                deadline,
                link.queued() > 0 && !shared.writing.load(Ordering::Relaxed),
            )
        };
        let result = self.read_once(start, now, tried, timeout, deadline, pending);
        if shared.reading.load(Ordering::Relaxed) {
            let _guard = shared.lock();
            shared.reading.store(false, Ordering::Relaxed);
            shared.changed.notify_all();
        }
        result
    }

    /// One read, with the socket's timeout fitted to the wait.
    fn read_once(
        &mut self,
        start: Instant,
        now: Instant,
        tried: &mut bool,
        timeout: Option<Duration>,
        deadline: Option<Instant>,
        pending: bool,
    ) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let user_left = timeout.map(|t| t.saturating_sub(now - start));
        if *tried && user_left.is_some_and(|l| l < MIN_WAIT) {
            return Err(Error::Timeout);
        }
        if let Some(spin) = self.spin {
            if self.spin_read(spin, tried)? {
                return Ok(());
            }
        }
        shared.set_nonblocking(false)?;
        let deadline_left = deadline.map(|at| at.saturating_duration_since(now).max(MIN_WAIT));
        let retry = pending.then_some(RETRY_WRITE);
        let (wait, exact) = earliest(user_left, earliest_duration(deadline_left, retry));
        if shared.rcv_timeout_dirty.swap(false, Ordering::Relaxed) {
            self.timer.invalidate();
        }
        let carrier = &shared.carrier;
        self.timer
            .fit(wait, exact, |t| carrier.set_read_timeout(t))
            .map_err(|e| shared.io_error(e))?;
        self.read_into(tried)
    }

    /// One `read` into the connection's buffer.
    fn read_into(&mut self, tried: &mut bool) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        loop {
            let space = self.rx.space();
            match shared.carrier.read(space) {
                // A stop shuts the socket down, which reads as an end.
                Ok(0) if shared.is_stopped() => return Err(Error::Closed),
                Ok(0) => {
                    self.on_end();
                    return Ok(());
                }
                Ok(n) => {
                    *tried = false;
                    self.rx.on_read(&mut &shared.link, n, Instant::now());
                    return Ok(());
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        *tried = true;
                        return Ok(());
                    }
                    _ if shared.is_stopped() => return Err(Error::Closed),
                    _ => {
                        let err = shared.io_error(e);
                        self.rx.on_error(&mut &shared.link, err);
                        return Ok(());
                    }
                },
            }
        }
    }

    /// The end of the peer's bytes, or a reset that came after it.
    fn on_end(&mut self) {
        let shared = Arc::clone(&self.shared);
        // Once our side has ended, a reset that came with the peer's end
        // says it did not take what we sent: `close` must not confirm it.
        let ended = shared.lock().ours() != Ours::Open;
        match shared.carrier.take_error().filter(|_| ended) {
            Some(e) => self.rx.on_error(&mut &shared.link, shared.io_error(e)),
            None => self.rx.on_eof(&mut &shared.link, Instant::now()),
        }
    }

    /// Polls without blocking for up to `spin`: `true` if a read brought
    /// something (bytes or the end).
    fn spin_read(&mut self, spin: Duration, tried: &mut bool) -> Result<bool> {
        self.shared.set_nonblocking(true)?;
        let until = Instant::now() + spin;
        loop {
            *tried = false;
            self.read_into(tried)?;
            if !*tried {
                return Ok(true);
            }
            if Instant::now() >= until {
                return Ok(false);
            }
            std::hint::spin_loop();
        }
    }

    /// The end `next` found: the peer's clean end (every later receive
    /// says it again), or the failure (said once; `Closed` afterwards).
    fn end(&mut self) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let mut link = shared.lock();
        let outcome = match link.poll_end() {
            Some(End::Failed(e)) => Err(e),
            Some(End::Peer) | Some(End::Closed(_)) if link.has_peer_ended() => Ok(()),
            Some(_) => Err(Error::Closed),
            None if link.has_peer_ended() && !link.is_down() => Ok(()),
            None => Err(link.after_end()),
        };
        if outcome.is_ok() {
            link.ack_peer_end(Instant::now());
        }
        shared.flush_now(&mut link);
        if let Some(answered) = link.take_answered() {
            // A plain HTTP request (a blocking WebSocket accept's business).
            return match answered {
                crate::connection::link::Answered::Refused(e) => Err(e),
                crate::connection::link::Answered::Page => Err(Error::Closed),
            };
        }
        outcome
    }

    /// Completes the handshakes (a client's connect, a WebSocket server's
    /// upgrade) within `within`: `Ok(true)` when established, `Ok(false)`
    /// when the peer was answered as plain HTTP (a page served).
    pub(crate) fn establish(&mut self, within: Duration) -> Result<bool> {
        let start = Instant::now();
        let mut begun = Some(start);
        let mut tried = false;
        for _ in 0.. {
            {
                let mut link = self.shared.lock();
                self.shared.flush_now(&mut link);
                if link.is_established() {
                    let _ = link.poll_established();
                    return Ok(true);
                }
                if link.was_answered() {
                    // Its answer goes out; the connection is done.
                    let until = start + within;
                    drop(link);
                    let _ = self
                        .shared
                        .write_out(Some(until), &mut SockTimer::new(None));
                    let mut link = self.shared.lock();
                    return match link.take_answered() {
                        Some(crate::connection::link::Answered::Refused(e)) => Err(e),
                        _ => Ok(false),
                    };
                }
                if link.is_down() {
                    return Err(link_end_error(&mut link));
                }
                if Instant::now() >= start + within {
                    link.handle_timeout(Instant::now());
                    continue;
                }
            }
            // What the handshake brought is processed; messages that came
            // with it are held for the first receives.
            let mut more = false;
            loop {
                match self.rx.next(&mut &self.shared.link, Now, false) {
                    Next::Message(m) => self.held.push_back(m),
                    Next::Lent => self.held.push_back(Bytes::copy_from_slice(self.rx.lent())),
                    Next::More => {
                        more = true;
                        break;
                    }
                    Next::End => break,
                }
            }
            let settled = {
                let link = self.shared.lock();
                link.is_established() || link.was_answered() || link.is_down()
            };
            if more && !settled {
                match self.wait(&mut begun, &mut tried, Some(within)) {
                    Err(Error::Timeout) => {
                        self.shared.lock().handle_timeout(Instant::now());
                    }
                    other => other?,
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// Dropped without a word.
    pub(super) fn forget(mut self) {
        self.held.clear();
        self.rx = Rx::framed(
            crate::connection::inbound::Cutter::Framing(crate::codec::Framing::Raw.codec(1)),
            Duration::from_secs(1),
        );
    }

    /// How to make the connection again, for [`Receiver::reconnect`].
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn set_remake(&mut self, remake: Remake) {
        self.remake = Some(remake);
    }

    /// The half's own side, handed to a switchboard.
    pub(super) fn disarm(mut self) -> Rx {
        let rx = std::mem::replace(
            &mut self.rx,
            Rx::framed(
                crate::connection::inbound::Cutter::Framing(crate::codec::Framing::Raw.codec(1)),
                Duration::from_secs(1),
            ),
        );
        self.shared.released.store(true, Ordering::Relaxed);
        rx
    }
}

impl Receiver for StreamReceiver {
    #[inline]
    fn recv(&mut self) -> Result<Option<Bytes>> {
        match self.next(false)? {
            Got::Owned(m) => Ok(Some(m)),
            Got::Lent => Ok(Some(Bytes::copy_from_slice(self.rx.lent()))),
            Got::End => self.end().map(|()| None),
        }
    }

    #[inline]
    fn recv_ref<'a>(&'a mut self, hold: &'a mut Option<Bytes>) -> Result<Option<&'a [u8]>> {
        // The common case first, with nothing to build and match on.
        if self.held.is_empty() && self.rx.lend_whole() {
            return Ok(Some(self.rx.lent_whole()));
        }
        match self.next(true)? {
            Got::Lent => Ok(Some(self.rx.lent())),
            Got::Owned(m) => {
                *hold = Some(m);
                Ok(hold.as_deref())
            }
            Got::End => self.end().map(|()| None),
        }
    }

    /// Reads and discards until the peer's end: what the connection knows
    /// of delivery then (a reset after the peer's end is
    /// [`Error::ConnectionReset`]), or [`Delivery::Unknown`] at `until`.
    fn drain(&mut self, until: Instant) -> Result<Delivery> {
        let shared = Arc::clone(&self.shared);
        shared.lock().await_close(Instant::now(), until);
        let mut begun = None;
        let mut tried = false;
        loop {
            {
                let mut link = shared.lock();
                if Instant::now() >= until {
                    link.handle_timeout(Instant::now());
                }
                if let Some(outcome) = link.poll_close() {
                    shared.after(&mut link);
                    return outcome;
                }
            }
            // What arrives is discarded.
            while let Next::Message(_) | Next::Lent = self.rx.next(&mut &shared.link, Now, true) {}
            {
                let mut link = shared.lock();
                if let Some(outcome) = link.poll_close() {
                    shared.after(&mut link);
                    return outcome;
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            match self.wait(&mut begun, &mut tried, Some(left.max(MIN_WAIT))) {
                Ok(()) => {}
                Err(Error::Timeout) => {
                    let mut link = shared.lock();
                    link.handle_timeout(Instant::now());
                    tried = false;
                    begun = None;
                }
                Err(Error::Closed) => return Ok(Delivery::Unknown),
                Err(e) => return Err(e),
            }
        }
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.shared.peer.clone())
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self.shared.local.clone())
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = check_timeout("read_timeout", timeout)?;
        Ok(())
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn set_message_deadline(&mut self, deadline: Duration) -> Result<()> {
        self.rx
            .set_deadline(crate::config::check_deadline(deadline)?);
        Ok(())
    }

    fn max_message_len(&self) -> usize {
        self.rx.max_message_len()
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(stopper(&self.shared))
    }

    fn on_split(&mut self) {
        self.spin = None;
        let _ = self.shared.set_nonblocking(false);
    }

    /// Connects again (NATS: a new connection to the server, subscribed
    /// anew); the sending half moves to it at its next call.
    fn reconnect(&mut self) -> Result<()> {
        let Some(remake) = &self.remake else {
            return Err(Error::Unsupported("reconnecting this transport"));
        };
        let (tx, mut rx) = remake()?;
        let next = Arc::clone(&rx.shared);
        let old = std::mem::replace(&mut self.shared, Arc::clone(&next));
        std::mem::swap(&mut self.rx, &mut rx.rx);
        self.held = std::mem::take(&mut rx.held);
        self.timer = SockTimer::new(None);
        // The fresh halves are not used: this one and the old sending half
        // carry on over the new connection.
        tx.forget();
        rx.shared = Arc::clone(&old);
        rx.forget();
        *old.successor.lock().unwrap_or_else(|e| e.into_inner()) = Some(next);
        old.down.fetch_or(FAILED, Ordering::Relaxed);
        old.carrier.wake_up();
        crate::trace::reconnected(&self.shared.peer);
        Ok(())
    }
}

impl StreamReceiver {
    /// `true` when a message came that was never received: held, buffered,
    /// or waiting in the socket (read now, without waiting, to tell a
    /// message from the peer's end marker).
    fn left_unread(&mut self) -> bool {
        if !self.held.is_empty() {
            return true;
        }
        let shared = Arc::clone(&self.shared);
        if shared.released.load(Ordering::Relaxed) || !shared.carrier.has_unread() {
            return self.rx.buffered() > 0;
        }
        if shared.set_nonblocking(true).is_err() {
            return true;
        }
        for _ in 0..64 {
            match self.rx.next(&mut &shared.link, Now, true) {
                Next::Message(_) | Next::Lent => return true,
                Next::End => return false,
                Next::More => {}
            }
            match shared.carrier.read(self.rx.space()) {
                Ok(0) => return self.rx.buffered() > 0,
                Ok(n) => self.rx.on_read(&mut &shared.link, n, Instant::now()),
                Err(_) => return self.rx.buffered() > 0,
            }
        }
        true
    }
}

impl Drop for StreamReceiver {
    /// Says whether a message was left unread: a sending half dropped after
    /// it then resets the connection instead of ending it cleanly (the peer
    /// must not take what it sent for delivered).
    fn drop(&mut self) {
        let unread = self.left_unread();
        self.shared.dropped_unread.store(unread, Ordering::Relaxed);
        self.shared.receiver_gone.store(true, Ordering::Relaxed);
    }
}
