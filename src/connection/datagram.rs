//! A datagram conversation's rules, sans-IO: a UDP client, a Unix datagram
//! socket, or a peer of a UDP listener. One datagram is one message; one
//! over the limit is reported as lost, never delivered cut short;
//! idleness counts from the peer's last datagram; a close writes what is
//! queued, then ends (a datagram socket has no end to send or to wait
//! for); the end is reported once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Delivery, End};
use crate::addr::Addr;
use crate::error::Error;

/// What a datagram was.
#[derive(Debug)]
pub(crate) enum Arrival {
    /// A message.
    Message(Bytes),
    /// Lost, and why (over the limit: [`Error::Truncated`]).
    Lost(Error),
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Datagrams {
    max: usize,
    idle: Option<Duration>,
    last_arrival: Instant,
    /// Datagrams to send, in order, and their bytes.
    out: VecDeque<Bytes>,
    out_bytes: usize,
    /// Bytes of the outbox sent so far.
    written: u64,
    /// The outbox's bound (a switchboard's); `None` for none.
    backlog: Option<usize>,
    closing: bool,
    end: Option<End>,
    reported: bool,
    peer: Addr,
}

impl Datagrams {
    /// A conversation with `peer`, datagrams at most `max` bytes, ending
    /// after `idle` without one; started at `now`.
    pub(crate) fn new(
        peer: Addr,
        max: usize,
        idle: Option<Duration>,
        backlog: Option<usize>,
        now: Instant,
    ) -> Datagrams {
        Datagrams {
            max,
            idle,
            last_arrival: now,
            out: VecDeque::new(),
            out_bytes: 0,
            written: 0,
            backlog,
            closing: false,
            end: None,
            reported: false,
            peer,
        }
    }

    /// The peer.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn peer(&self) -> &Addr {
        &self.peer
    }

    pub(crate) fn max_message_len(&self) -> usize {
        self.max
    }

    /// A datagram of `len` bytes arrived at `now`: `bytes` holds it whole
    /// (or, for one over the limit, at least one byte more than the
    /// limit, which says it was cut).
    pub(crate) fn on_datagram(&mut self, bytes: &[u8], now: Instant) -> Option<Arrival> {
        self.last_arrival = now;
        if self.end.is_some() || self.closing {
            return None;
        }
        if bytes.len() > self.max {
            return Some(Arrival::Lost(Error::Truncated {
                addr: self.peer.clone(),
                max: self.max,
            }));
        }
        Some(Arrival::Message(Bytes::copy_from_slice(bytes)))
    }

    /// A datagram came back refused (ICMP: nothing listens there).
    pub(crate) fn unreachable(&self) -> Error {
        Error::PeerUnreachable {
            addr: self.peer.clone(),
        }
    }

    /// Queues `msg` if it fits the outbox (`Ok(false)` if it does not).
    pub(crate) fn send(&mut self, msg: &[u8]) -> Result<bool, Error> {
        if self.end.is_some() || self.closing {
            return Err(Error::Closed);
        }
        if msg.len() > self.max {
            return Err(Error::MessageTooLarge {
                len: msg.len() as u64,
                max: self.max as u64,
            });
        }
        if let Some(limit) = self.backlog {
            if !self.out.is_empty() && self.out_bytes + msg.len() > limit {
                return Ok(false);
            }
        }
        self.out_bytes += msg.len();
        self.out.push_back(Bytes::copy_from_slice(msg));
        Ok(true)
    }

    /// Bytes of the outbox sent so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Bytes queued to send.
    pub(crate) fn queued(&self) -> usize {
        self.out_bytes
    }

    /// The next datagram to send.
    pub(crate) fn front(&self) -> Option<&Bytes> {
        self.out.front()
    }

    /// The front datagram was sent (or refused: it is done either way).
    pub(crate) fn sent(&mut self) {
        if let Some(d) = self.out.pop_front() {
            self.out_bytes -= d.len();
            self.written += d.len() as u64;
        }
        self.check_closed();
    }

    /// `close`: what is queued goes out, then the end.
    pub(crate) fn close(&mut self) {
        if self.end.is_none() {
            self.closing = true;
            self.check_closed();
        }
    }

    fn check_closed(&mut self) {
        if self.closing && self.out.is_empty() && self.end.is_none() {
            self.end = Some(End::Closed(Delivery::Unknown));
        }
    }

    /// Ends at once, discarding what is queued.
    pub(crate) fn abort(&mut self) {
        self.out.clear();
        self.out_bytes = 0;
        self.decide(End::Aborted);
    }

    /// A fatal error of the socket.
    pub(crate) fn fail(&mut self, err: Error) {
        self.out.clear();
        self.out_bytes = 0;
        self.decide(End::Failed(err));
    }

    /// The outbox passed its bound: the conversation ends as a slow
    /// consumer; the error is for the sender.
    pub(crate) fn slow_consumer(&mut self, len: usize) -> Error {
        let (queued, limit) = (
            (self.out_bytes + len) as u64,
            self.backlog.unwrap_or(0) as u64,
        );
        self.fail(Error::SlowConsumer {
            addr: self.peer.clone(),
            queued,
            limit,
        });
        Error::SlowConsumer {
            addr: self.peer.clone(),
            queued,
            limit,
        }
    }

    /// The peer is gone (its listener stopped, or its idle time passed).
    pub(crate) fn idle(&mut self) {
        self.decide(End::Idle);
    }

    fn decide(&mut self, end: End) {
        if self.end.is_none() {
            self.end = Some(end);
        }
    }

    /// When the peer's silence ends the conversation.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        match self.end {
            None if !self.closing => self.idle.map(|idle| self.last_arrival + idle),
            _ => None,
        }
    }

    /// The idle timeout, at `now` (call it after reading what arrived).
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if let Some(due) = self.poll_timeout() {
            if now >= due {
                self.decide(End::Idle);
            }
        }
    }

    /// The end, once, when it is decided.
    pub(crate) fn poll_end(&mut self) -> Option<End> {
        if self.reported {
            return None;
        }
        let end = self.end.take()?;
        self.reported = true;
        Some(end)
    }

    /// `true` once the end was reported: the socket can go.
    pub(crate) fn is_done(&self) -> bool {
        self.reported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(now: Instant) -> Datagrams {
        Datagrams::new(
            Addr::Unknown,
            10,
            Some(Duration::from_secs(5)),
            Some(16),
            now,
        )
    }

    #[test]
    fn idleness_counts_from_the_last_datagram_and_the_end_is_said_once() {
        let t0 = Instant::now();
        let mut d = conv(t0);
        assert_eq!(d.poll_timeout(), Some(t0 + Duration::from_secs(5)));
        d.on_datagram(b"x", t0 + Duration::from_secs(4));
        d.handle_timeout(t0 + Duration::from_secs(5));
        assert!(d.poll_end().is_none(), "not idle: a datagram came at 4 s");
        d.handle_timeout(t0 + Duration::from_secs(9));
        assert!(matches!(d.poll_end(), Some(End::Idle)));
        d.fail(Error::Closed);
        d.close();
        assert!(d.poll_end().is_none(), "once");
    }

    #[test]
    fn a_datagram_over_the_limit_is_lost_not_cut() {
        let mut d = conv(Instant::now());
        let now = Instant::now();
        assert!(matches!(
            d.on_datagram(&[0; 11], now),
            Some(Arrival::Lost(Error::Truncated { max: 10, .. }))
        ));
        assert!(matches!(d.on_datagram(&[0; 10], now), Some(Arrival::Message(m)) if m.len() == 10));
    }

    #[test]
    fn close_writes_what_is_queued_first_and_the_outbox_is_bounded() {
        let mut d = conv(Instant::now());
        assert!(d.send(b"0123456789").unwrap());
        assert!(d.send(b"abcdef").unwrap());
        assert!(!d.send(b"z").unwrap(), "over the 16-byte bound");
        assert!(d.send(&[0; 11]).is_err());
        d.close();
        assert!(d.poll_end().is_none(), "two datagrams still to send");
        assert!(d.send(b"late").is_err());
        d.sent();
        d.sent();
        assert!(matches!(d.poll_end(), Some(End::Closed(Delivery::Unknown))));
        assert!(d.is_done());
    }
}
