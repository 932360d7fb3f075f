//! The sending half of a stream conversation.

use super::*;

/// The sending half of a stream conversation (TCP, Unix, TLS, WebSocket,
/// NATS): messages checked and encoded by the connection, queued, and
/// written with as few system calls as it takes.
///
/// What "taken" means here: a message is taken once it is queued for the
/// wire (or fed into the batching buffer). A `send` whose message had no
/// byte written when its write timeout expired takes the message back and
/// returns [`Error::Timeout`]; otherwise the rest stays queued, first in
/// line, and whoever writes next — this half, or the receiving half while
/// it waits for the peer — writes it.
///
/// Dropping it ends the sending direction gracefully (what is queued is
/// written first, waiting at most the linger time; if it cannot be, the
/// connection is reset so the peer sees an error, never a clean end after
/// missing messages). A conversation dropped with input it never read is
/// reset, as a socket closed with unread data is.
#[derive(Debug)]
pub struct StreamSender {
    pub(super) shared: Arc<Shared>,
    pub(super) tx: Tx,
    pub(super) timeout: Option<Duration>,
    pub(super) timer: SockTimer,
    pub(super) linger: Duration,
    /// A plain framing with no TLS below: large messages go straight from
    /// the caller's slice.
    pub(super) plain: bool,
    /// Where this half reads while it drives a handshake.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(super) hs_buf: Vec<u8>,
    /// Its side was taken away (to a switchboard, or a reconnection):
    /// dropped without a word.
    pub(super) disarmed: bool,
}

impl StreamSender {
    #[inline]
    fn check(&mut self) -> Result<()> {
        if self.shared.check().is_err() && !self.follow() {
            return Err(self.shared.down_error());
        }
        if self.shared.send_closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Moves to the connection that replaced this one, if one did (a
    /// reconnection by the receiving half): `true` if it moved.
    #[cold]
    fn follow(&mut self) -> bool {
        let next = self
            .shared
            .successor
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match next {
            Some(next) => {
                self.shared = next;
                self.timer = SockTimer::new(None);
                self.shared.check().is_ok()
            }
            None => false,
        }
    }

    #[inline]
    fn until(&self) -> Option<Instant> {
        self.timeout.map(|t| Instant::now() + t)
    }

    /// Completes the handshake if it is not over: by `until` (then
    /// [`Error::Timeout`], and the next call goes on), or by the handshake
    /// timeout (then the handshake's error).
    #[inline]
    fn established(&mut self, until: Option<Instant>) -> Result<()> {
        if self.shared.established.load(Ordering::Acquire) {
            return Ok(());
        }
        self.drive_handshake(until)
    }

    /// Without TLS, every handshake is over before the halves are handed
    /// out.
    #[cfg(not(feature = "tls"))]
    fn drive_handshake(&mut self, _until: Option<Instant>) -> Result<()> {
        Ok(())
    }

    /// A TLS server's handshake, driven by this half when the receiving
    /// half is not reading (a server that speaks first); otherwise waits
    /// for the receiving half to finish it.
    #[cfg(feature = "tls")]
    #[cold]
    fn drive_handshake(&mut self, until: Option<Instant>) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let mut link = shared.lock();
        loop {
            shared.after(&mut link);
            if link.is_established() {
                return Ok(());
            }
            if link.is_down() {
                return Err(link_end_error(&mut link));
            }
            if shared.reading.load(Ordering::Relaxed) || shared.writing.load(Ordering::Relaxed) {
                link = shared.wait_changed(link, until)?;
                continue;
            }
            shared.flush_now(&mut link);
            let now = Instant::now();
            let hs_left = link
                .poll_timeout()
                .map(|at| at.saturating_duration_since(now));
            let user_left = until.map(|u| u.saturating_duration_since(now));
            if hs_left.is_some_and(|l| l.is_zero()) {
                link.handle_timeout(now);
                continue;
            }
            if user_left.is_some_and(|l| l < MIN_WAIT) {
                return Err(Error::Timeout);
            }
            let (wait, _) = earliest(user_left, hs_left);
            shared.reading.store(true, Ordering::Relaxed);
            drop(link);
            if self.hs_buf.is_empty() {
                self.hs_buf = vec![0u8; 17 * 1024];
            }
            shared.rcv_timeout_dirty.store(true, Ordering::Relaxed);
            let read = shared
                .carrier
                .set_read_timeout(wait)
                .and_then(|()| shared.carrier.read(&mut self.hs_buf));
            link = shared.lock();
            shared.reading.store(false, Ordering::Relaxed);
            shared.changed.notify_all();
            match read {
                Ok(0) if shared.is_stopped() => return Err(Error::Closed),
                Ok(0) => link.fail(Error::Tls {
                    addr: shared.peer.clone(),
                    reason: crate::tls::TlsError::ClosedDuringHandshake,
                    source: None,
                }),
                Ok(n) => link.handshake_read(&self.hs_buf[..n], Instant::now()),
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted
                    | io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut => link.handle_timeout(Instant::now()),
                    _ => link.fail(shared.io_error(e)),
                },
            }
        }
    }

    fn send_as(&mut self, msg: &[u8], text: bool) -> Result<()> {
        self.check()?;
        let until = self.until();
        self.established(until)?;
        if self.plain && msg.len() > SMALL {
            return self.send_direct(msg, until);
        }
        let shared = Arc::clone(&self.shared);
        let mut link = shared.lock();
        if !link.can_send() {
            shared.after(&mut link);
            return Err(link_end_error(&mut link));
        }
        self.tx.learn(&link);
        self.tx.check(msg, &shared.peer)?;
        #[cfg(feature = "tls")]
        if msg.len() > SMALL && !self.plain {
            // A large message over TLS: encrypted from the caller's slice,
            // taken as soon as TLS has any of it.
            self.tx.commit(&mut link);
            if self.tx.push_through_tls(&mut link, msg) {
                shared.flush_now(&mut link);
                if link.queued() == 0 || link.is_down() {
                    return link_error(&mut link).map_or(Ok(()), Err);
                }
                drop(link);
                return match shared.write_out(until, &mut self.timer) {
                    // Taken: the rest goes first next time.
                    Err(Error::Timeout) => Ok(()),
                    other => other,
                };
            }
        }
        let mark = self.tx.push(&mut link, msg, text);
        shared.flush_now(&mut link);
        if link.queued() == 0 || link.is_down() {
            return match link_error(&mut link) {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }
        drop(link);
        match shared.write_out(until, &mut self.timer) {
            Err(Error::Timeout) => {
                let mut link = shared.lock();
                if link.out.untake(mark) {
                    Err(Error::Timeout)
                } else {
                    // Some of it went: it is taken, the rest goes first next
                    // time (or with the receiving half's next wait).
                    Ok(())
                }
            }
            other => other,
        }
    }

    /// A large message of a plain framing: written straight from `msg`
    /// (header and payload in one `writev`), after what is queued; what the
    /// socket did not take by `until` is queued, first in line.
    fn send_direct(&mut self, msg: &[u8], until: Option<Instant>) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        let mut link = shared.lock();
        if !link.can_send() {
            return Err(link_end_error(&mut link));
        }
        self.tx.learn(&link);
        self.tx.check(msg, &shared.peer)?;
        if self.tx.staged() > 0 || link.queued() > 0 || shared.writing.load(Ordering::Relaxed) {
            // What is queued goes first; a timeout there: not taken.
            self.tx.commit(&mut link);
            drop(link);
            shared.write_out(until, &mut self.timer)?;
            link = shared.lock();
            if link.queued() > 0 {
                return Err(Error::Timeout);
            }
        }
        let frame = link
            .out
            .frame(msg)
            .map_err(|e| Error::from_frame(e, &shared.peer))?;
        shared.writing.store(true, Ordering::Relaxed);
        drop(link);
        let mut written = 0;
        let outcome = loop {
            if written == frame.len {
                break Ok(());
            }
            let parts: [&[u8]; 3] = [&frame.prefix, msg, frame.suffix];
            let mut skip = written;
            let mut slices = [IoSlice::new(&[]); 3];
            for (slot, part) in slices.iter_mut().zip(parts) {
                let take = skip.min(part.len());
                skip -= take;
                *slot = IoSlice::new(&part[take..]);
            }
            if let Err(e) = shared.arm_write(until, &mut self.timer) {
                break Err(e);
            }
            match shared.carrier.send_vectored(&slices) {
                Ok(0) => {
                    let e = io::Error::new(io::ErrorKind::WriteZero, "the socket took no bytes");
                    break Err(shared.io_error(e));
                }
                Ok(n) => written += n,
                Err(e) => {
                    if let Err(e) = shared.write_error(e) {
                        break Err(e);
                    }
                }
            }
        };
        let mut link = shared.lock();
        shared.writing.store(false, Ordering::Relaxed);
        shared.changed.notify_all();
        match outcome {
            Ok(()) => {
                link.out.advanced_outside(frame.len);
                shared.flush_now(&mut link);
                Ok(())
            }
            Err(Error::Timeout) if written == 0 => {
                shared.after(&mut link);
                Err(Error::Timeout)
            }
            Err(Error::Timeout) => {
                // Taken: the rest goes first next time.
                link.out.advanced_outside(written);
                self.tx.push_rest(&mut link, msg, written);
                shared.flush_now(&mut link);
                Ok(())
            }
            Err(e) => {
                link.fail(e);
                shared.after(&mut link);
                Err(link_end_error(&mut link))
            }
        }
    }

    /// Feeds past the batching bound: what was fed goes first (a timeout
    /// there: this message is not taken), then this one.
    fn feed_past_the_bound(&mut self, msg: &[u8], text: bool) -> Result<()> {
        self.tx.check(msg, &self.shared.peer)?;
        if self.tx.staged() > 0 {
            self.flush()?;
        }
        if self.tx.has_room_staged(msg.len()) {
            self.tx.stage(msg, text);
            return Ok(());
        }
        self.send_as(msg, text)
    }

    /// Ends our side: what is queued is written, then our end marker and
    /// the end of our bytes, by `until`; `close` says what is known of
    /// delivery once the receiving half has the peer's end.
    fn end(&mut self, until: Instant) -> Result<()> {
        let shared = Arc::clone(&self.shared);
        {
            let mut link = shared.lock();
            self.tx.commit(&mut link);
            link.close(Instant::now());
            shared.after(&mut link);
        }
        match shared.write_out(Some(until), &mut self.timer) {
            Ok(()) => Ok(()),
            Err(Error::Timeout) => {
                // The linger passed with bytes unwritten: reset, `Unsent`.
                let mut link = shared.lock();
                link.handle_timeout(Instant::now().max(until));
                shared.after(&mut link);
                match link.poll_close() {
                    Some(Err(e)) => Err(e),
                    _ => Ok(()),
                }
            }
            Err(Error::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Dropped without a word (its connection goes on elsewhere).
    pub(super) fn forget(self) {
        let _ = self.disarm_quietly();
    }

    fn disarm_quietly(mut self) -> Tx {
        self.disarmed = true;
        std::mem::replace(
            &mut self.tx,
            Tx::framed(crate::codec::Framing::Raw.codec(1), 64),
        )
    }

    /// The half's own side, handed to a switchboard.
    pub(super) fn disarm(mut self) -> Tx {
        self.disarmed = true;
        let tx = std::mem::replace(
            &mut self.tx,
            Tx::framed(crate::codec::Framing::Raw.codec(1), 64),
        );
        // Dropped without a word: no flush, no end.
        self.shared.released.store(true, Ordering::Relaxed);
        self.shared.down.fetch_or(FAILED, Ordering::Relaxed);
        tx
    }

    /// The verified identity of the peer, once the handshake is over.
    #[cfg(feature = "tls")]
    pub fn peer_identity(&self) -> Option<crate::tls::PeerIdentity> {
        #[cfg(feature = "quic")]
        if let super::Carrier::Quic(q) = &self.shared.carrier {
            return q.peer_identity();
        }
        self.shared.lock().identity()
    }

    /// The socket, for options this crate does not cover (`None` over
    /// QUIC, whose streams share one UDP socket). Reading or writing it
    /// directly breaks the framing.
    pub fn socket_ref(&self) -> Option<&Socket> {
        self.shared.carrier.socket()
    }
}

impl Sender for StreamSender {
    #[inline]
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.send_as(msg, false)
    }

    fn send_text(&mut self, text: &str) -> Result<()> {
        self.send_as(text.as_bytes(), true)
    }

    #[inline]
    fn feed(&mut self, msg: &[u8]) -> Result<()> {
        self.check()?;
        if self.tx.stage_plain(msg) {
            return Ok(());
        }
        if msg.len() <= self.tx.max_message_len() && self.tx.has_room_staged(msg.len()) {
            // The common case: it fits the batching buffer, no lock.
            self.tx.check(msg, &self.shared.peer)?;
            self.tx.stage(msg, false);
            return Ok(());
        }
        self.feed_past_the_bound(msg, false)
    }

    fn flush(&mut self) -> Result<()> {
        self.check()?;
        let until = self.until();
        self.established(until)?;
        let shared = Arc::clone(&self.shared);
        {
            let mut link = shared.lock();
            if !link.can_send() {
                self.tx.discard();
                return Err(link_end_error(&mut link));
            }
            self.tx.commit(&mut link);
            shared.flush_now(&mut link);
            if let Some(e) = link_error(&mut link) {
                return Err(e);
            }
            if link.queued() == 0 {
                return Ok(());
            }
        }
        // Whatever is left is taken: on a timeout it stays queued, and the
        // next flush, send or the receiving half's next wait writes it.
        shared.write_out(until, &mut self.timer)
    }

    fn queued(&self) -> usize {
        self.tx.staged() + self.shared.lock().queued()
    }

    fn finish(&mut self, until: Instant) -> Result<()> {
        let ours = self.shared.lock().ours();
        if ours != Ours::Open || self.shared.down.load(Ordering::Relaxed) != 0 {
            // Ended before, or failed (its error was said then), or stopped.
            return Ok(());
        }
        if !self.shared.established.load(Ordering::Acquire) && self.tx.staged() > 0 {
            if let Err(e) = self.drive_handshake(Some(until)) {
                return match e {
                    Error::Timeout => {
                        let bytes = self.tx.discard() as u64;
                        self.abort();
                        Err(Error::Unsent {
                            addr: self.shared.peer.clone(),
                            bytes,
                        })
                    }
                    e => Err(e),
                };
            }
        }
        self.end(until)
    }

    /// Ends at once, discarding what is queued: the connection is reset
    /// when the socket closes.
    fn abort(&mut self) {
        self.tx.discard();
        let mut link = self.shared.lock();
        link.abort();
        self.shared.after(&mut link);
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.shared.peer.clone())
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self.shared.local.clone())
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = check_timeout("write_timeout", timeout)?;
        Ok(())
    }

    fn write_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn linger(&self) -> Duration {
        self.linger
    }

    fn set_linger(&mut self, linger: Duration) {
        self.linger = linger;
        self.shared.lock().limits.linger = linger;
    }

    fn max_message_len(&self) -> usize {
        self.tx.max_message_len()
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(stopper(&self.shared))
    }

    #[cfg(unix)]
    fn socket(&self) -> Option<socket2::SockRef<'_>> {
        self.shared.carrier.socket().map(socket2::SockRef::from)
    }

    fn handshake(&mut self) -> Result<()> {
        self.established(None)
    }

    #[cfg(feature = "tls")]
    fn peer_identity(&self) -> Option<crate::tls::PeerIdentity> {
        StreamSender::peer_identity(self)
    }
}

impl Drop for StreamSender {
    fn drop(&mut self) {
        if self.disarmed {
            return;
        }
        if self.shared.released.load(Ordering::Relaxed)
            || self.shared.down.load(Ordering::Relaxed) != 0
        {
            return;
        }
        let shared = Arc::clone(&self.shared);
        let unread = shared.receiver_gone.load(Ordering::Relaxed)
            && shared.dropped_unread.load(Ordering::Relaxed);
        {
            let mut link = shared.lock();
            if link.ours() != Ours::Open {
                return;
            }
            self.tx.commit(&mut link);
            if unread && link.queued() == 0 {
                // Dropped with input never read: a reset, as the system
                // does for a socket closed with unread data, and no clean
                // end first (the peer must not take it for delivered).
                link.abort();
                shared.after(&mut link);
                return;
            }
            link.finish(Instant::now());
            shared.after(&mut link);
        }
        let until = Instant::now() + self.linger;
        if shared.write_out(Some(until), &mut self.timer).is_err() {
            let mut link = shared.lock();
            link.handle_timeout(until.max(Instant::now()));
            if link.ours() != Ours::Ended {
                link.abort();
            }
            shared.after(&mut link);
            return;
        }
        if unread {
            let mut link = shared.lock();
            link.abort();
            shared.after(&mut link);
        }
    }
}
