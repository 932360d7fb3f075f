//! The UDP demultiplexer: which source a datagram belongs to, whether it is
//! kept, and when a silent peer is forgotten, as a state machine with no
//! socket and no clock in it.
//!
//! The driver reports each datagram with [`datagram`](Demux::datagram) and
//! the time it arrived, each datagram a conversation takes out of its queue
//! with [`taken`](Demux::taken), and asks which peers have gone idle with
//! [`expire`](Demux::expire). It keeps the counts, never the bytes:
//! the driver queues them where its conversations wait (a queue per peer for
//! blocking receives, an event for the selector).
//!
//! Promises kept here, each with a test below:
//! * idleness is measured from the peer's last datagram, never from when
//!   the application last received;
//! * a peer with datagrams still queued is never forgotten: its
//!   conversation receives them all, then its end;
//! * every datagram is counted once, as delivered or in exactly one drop
//!   counter (`datagrams = delivered + queue_full + peer_cap + bytes_cap`);
//! * a forgotten peer is counted once in `evicted`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What a UDP listener has seen, for monitoring.
///
/// Every datagram the listener received is counted once: as `delivered`
/// (queued for a conversation), or in exactly one of the `dropped_*`
/// counters, so `datagrams = delivered + dropped_queue_full +
/// dropped_peer_cap + dropped_bytes_cap` in every snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UdpStats {
    /// Datagrams received by the listener's socket.
    pub datagrams: u64,
    /// Datagrams queued for a conversation.
    pub delivered: u64,
    /// Dropped: that conversation's queue was full
    /// ([`Config::queue_depth`](crate::Config::queue_depth)).
    pub dropped_queue_full: u64,
    /// Dropped: a new source while
    /// [`Config::max_peers`](crate::Config::max_peers) peers were active.
    pub dropped_peer_cap: u64,
    /// Dropped: [`Config::max_queued_bytes`](crate::Config::max_queued_bytes)
    /// were already waiting.
    pub dropped_bytes_cap: u64,
    /// Of the delivered: datagrams over the limit, reported to their
    /// conversation as [`Error::Truncated`](crate::Error::Truncated), never
    /// delivered cut short.
    pub truncated: u64,
    /// Of the delivered: datagrams still queued when their conversation was
    /// closed or dropped, never read by the application.
    pub unread: u64,
    /// Peers forgotten for being silent for the idle timeout (each once).
    pub evicted: u64,
    /// Peers with a conversation now.
    pub peers: usize,
    /// Socket errors the listener went on after.
    pub errors: u64,
}

/// The limits of a demultiplexer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_peers: usize,
    pub(crate) queue_depth: usize,
    pub(crate) max_queued_bytes: usize,
    pub(crate) idle: Option<Duration>,
}

impl Limits {
    /// The limits a listener made with `config` keeps.
    pub(crate) fn of(config: &crate::config::Config) -> Limits {
        Limits {
            max_peers: config.max_peers,
            queue_depth: config.queue_depth,
            max_queued_bytes: config.max_queued_bytes,
            idle: config.idle_timeout,
        }
    }
}

/// What became of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Queue it for conversation `id`.
    Deliver(u64),
    /// A new source: conversation `id` starts, with this datagram first.
    New(u64),
    /// Dropped, and counted.
    Dropped,
}

/// After a conversation took a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// Nothing more to say.
    Open,
    /// That was the last one queued, and the peer had gone idle: the
    /// conversation's end comes now, after it.
    End,
}

#[derive(Debug)]
struct Peer {
    id: u64,
    last_arrival: Instant,
    /// Datagrams queued and not yet taken.
    queued: usize,
    /// Their bytes.
    bytes: usize,
    /// Idle since its last datagram, waiting for its queue to empty.
    idle: bool,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Demux {
    peers: HashMap<SocketAddr, Peer>,
    by_id: HashMap<u64, SocketAddr>,
    /// When each peer may go idle, at the earliest; checked lazily.
    expiry: BinaryHeap<Reverse<(Instant, u64)>>,
    next_id: u64,
    queued_bytes: usize,
    limits: Limits,
    stats: UdpStats,
    /// New sources start conversations (off once the listener stops
    /// accepting: they are dropped as over the peer cap).
    accepting: bool,
}

impl Demux {
    pub(crate) fn new(limits: Limits) -> Demux {
        Demux {
            peers: HashMap::new(),
            by_id: HashMap::new(),
            expiry: BinaryHeap::new(),
            next_id: 0,
            queued_bytes: 0,
            limits,
            stats: UdpStats::default(),
            accepting: true,
        }
    }

    /// Stops (or resumes) starting conversations for new sources.
    pub(crate) fn set_accepting(&mut self, accepting: bool) {
        self.accepting = accepting;
    }

    /// The counters, consistent with each other.
    pub(crate) fn stats(&self) -> UdpStats {
        UdpStats {
            peers: self.peers.len(),
            ..self.stats
        }
    }

    /// Counts a socket error the driver went on after.
    pub(crate) fn error(&mut self) {
        self.stats.errors += 1;
    }

    /// A datagram of `size` bytes (0 for one that was `truncated`: over the
    /// limit and not kept) arrived from `from` at `now`.
    pub(crate) fn datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        size: usize,
        truncated: bool,
    ) -> Admit {
        self.stats.datagrams += 1;
        if self.queued_bytes + size > self.limits.max_queued_bytes {
            crate::trace::udp_dropped(from, size, "the listener's byte cap is reached");
            self.stats.dropped_bytes_cap += 1;
            return Admit::Dropped;
        }
        if let Some(peer) = self.peers.get_mut(&from) {
            if peer.queued >= self.limits.queue_depth {
                crate::trace::udp_dropped(from, size, "the peer's queue is full");
                self.stats.dropped_queue_full += 1;
                return Admit::Dropped;
            }
            peer.queued += 1;
            peer.bytes += size;
            peer.last_arrival = now;
            if peer.idle {
                // Back before its conversation ended: not idle after all.
                peer.idle = false;
                if let Some(idle) = self.limits.idle {
                    self.expiry.push(Reverse((now + idle, peer.id)));
                }
            }
            let id = peer.id;
            self.admitted(size, truncated);
            return Admit::Deliver(id);
        }
        if self.peers.len() >= self.limits.max_peers || !self.accepting {
            crate::trace::udp_dropped(from, size, "no room for a new peer");
            self.stats.dropped_peer_cap += 1;
            return Admit::Dropped;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.peers.insert(
            from,
            Peer {
                id,
                last_arrival: now,
                queued: 1,
                bytes: size,
                idle: false,
            },
        );
        self.by_id.insert(id, from);
        if let Some(idle) = self.limits.idle {
            self.expiry.push(Reverse((now + idle, id)));
        }
        self.admitted(size, truncated);
        Admit::New(id)
    }

    fn admitted(&mut self, size: usize, truncated: bool) {
        self.queued_bytes += size;
        self.stats.delivered += 1;
        if truncated {
            self.stats.truncated += 1;
        }
    }

    /// Conversation `id` took one queued datagram of `size` bytes.
    pub(crate) fn taken(&mut self, id: u64, size: usize) -> Taken {
        let Some(addr) = self.by_id.get(&id).copied() else {
            return Taken::Open;
        };
        let Some(peer) = self.peers.get_mut(&addr) else {
            return Taken::Open;
        };
        peer.queued = peer.queued.saturating_sub(1);
        peer.bytes = peer.bytes.saturating_sub(size);
        self.queued_bytes = self.queued_bytes.saturating_sub(size);
        if peer.queued == 0 && peer.idle {
            self.evict(addr);
            return Taken::End;
        }
        Taken::Open
    }

    /// Conversation `id` was closed or dropped locally: the peer is
    /// forgotten (a later datagram from it starts a new conversation), and
    /// what it had not read is counted as `unread`.
    pub(crate) fn closed(&mut self, id: u64) {
        if let Some(addr) = self.by_id.remove(&id) {
            if let Some(peer) = self.peers.remove(&addr) {
                self.queued_bytes = self.queued_bytes.saturating_sub(peer.bytes);
                self.stats.unread += peer.queued as u64;
            }
        }
    }

    /// `n` datagrams a conversation had taken out of the listener's queue
    /// were dropped with it, unread.
    pub(crate) fn unread(&mut self, n: usize) {
        self.stats.unread += n as u64;
    }

    fn evict(&mut self, addr: SocketAddr) {
        if let Some(peer) = self.peers.remove(&addr) {
            self.by_id.remove(&peer.id);
            self.queued_bytes = self.queued_bytes.saturating_sub(peer.bytes);
            self.stats.evicted += 1;
        }
    }

    /// The earliest time a peer may go idle (the driver wakes then), `None`
    /// without peers or without an idle timeout.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.expiry.peek().map(|Reverse((at, _))| *at)
    }

    /// A conversation whose peer has gone idle by `now` and has nothing
    /// queued: it ends now, and its peer is forgotten. A peer idle with
    /// datagrams still queued ends after its conversation takes the last
    /// one (see [`taken`](Self::taken)). Call until `None`.
    pub(crate) fn expire(&mut self, now: Instant) -> Option<u64> {
        let idle = self.limits.idle?;
        while let Some(&Reverse((at, id))) = self.expiry.peek() {
            if at > now {
                return None;
            }
            self.expiry.pop();
            let Some(addr) = self.by_id.get(&id).copied() else {
                continue; // closed or evicted already
            };
            let peer = self.peers.get_mut(&addr).expect("by_id follows peers");
            let due = peer.last_arrival + idle;
            if due > now {
                self.expiry.push(Reverse((due, id)));
                continue;
            }
            if peer.queued > 0 {
                peer.idle = true;
                continue;
            }
            self.evict(addr);
            return Some(id);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    //! The demultiplexer's promises, with a fake clock.
    use super::*;

    const IDLE: Duration = Duration::from_secs(120);

    fn demux(max_peers: usize, depth: usize, bytes: usize) -> Demux {
        Demux::new(Limits {
            max_peers,
            queue_depth: depth,
            max_queued_bytes: bytes,
            idle: Some(IDLE),
        })
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn invariant(d: &Demux) {
        let s = d.stats();
        assert_eq!(
            s.datagrams,
            s.delivered + s.dropped_queue_full + s.dropped_peer_cap + s.dropped_bytes_cap,
            "{s:?}"
        );
    }

    #[test]
    fn idleness_counts_from_the_peers_last_datagram_not_from_receives() {
        let t0 = Instant::now();
        let mut d = demux(8, 8, 1 << 20);
        let Admit::New(id) = d.datagram(t0, addr(1), 5, false) else {
            panic!()
        };
        assert_eq!(d.taken(id, 5), Taken::Open);
        // The peer speaks again at t0 + 100 s; the application receives it
        // only at t0 + 200 s.
        let t1 = t0 + Duration::from_secs(100);
        assert_eq!(d.datagram(t1, addr(1), 5, false), Admit::Deliver(id));
        assert_eq!(d.expire(t0 + IDLE), None, "not idle: it spoke at t1");
        assert_eq!(d.taken(id, 5), Taken::Open);
        assert_eq!(d.expire(t1 + IDLE - Duration::from_millis(1)), None);
        assert_eq!(d.expire(t1 + IDLE), Some(id));
        assert_eq!(d.stats().evicted, 1);
        assert_eq!(d.stats().peers, 0);
        invariant(&d);
    }

    #[test]
    fn waiting_datagrams_are_delivered_before_the_end() {
        let t0 = Instant::now();
        let mut d = demux(8, 8, 1 << 20);
        let Admit::New(id) = d.datagram(t0, addr(1), 1, false) else {
            panic!()
        };
        assert_eq!(d.datagram(t0, addr(1), 1, false), Admit::Deliver(id));
        // A busy application has not received either when the peer goes idle.
        let late = t0 + IDLE + Duration::from_secs(60);
        assert_eq!(d.expire(late), None, "queued datagrams keep the peer");
        assert_eq!(d.stats().peers, 1);
        assert_eq!(d.taken(id, 1), Taken::Open);
        assert_eq!(d.taken(id, 1), Taken::End, "the end comes after the last");
        assert_eq!(d.stats().evicted, 1);
        assert_eq!(d.stats().unread, 0);
        invariant(&d);
    }

    #[test]
    fn a_late_accept_loses_nothing() {
        let t0 = Instant::now();
        let mut d = demux(8, 8, 1 << 20);
        let Admit::New(id) = d.datagram(t0, addr(9), 3, false) else {
            panic!()
        };
        // Nobody accepts for three idle timeouts.
        assert_eq!(d.expire(t0 + 3 * IDLE), None);
        assert_eq!(d.taken(id, 3), Taken::End, "first message, then the end");
    }

    #[test]
    fn a_peer_that_comes_back_while_marked_idle_stays() {
        let t0 = Instant::now();
        let mut d = demux(8, 8, 1 << 20);
        let Admit::New(id) = d.datagram(t0, addr(1), 1, false) else {
            panic!()
        };
        assert_eq!(d.expire(t0 + IDLE), None); // idle, but one queued
        let t1 = t0 + IDLE + Duration::from_secs(1);
        assert_eq!(d.datagram(t1, addr(1), 1, false), Admit::Deliver(id));
        assert_eq!(d.taken(id, 1), Taken::Open);
        assert_eq!(d.taken(id, 1), Taken::Open, "it spoke again: not the end");
        assert_eq!(d.expire(t1 + IDLE), Some(id));
        assert_eq!(d.stats().evicted, 1);
    }

    #[test]
    fn each_cap_drops_and_counts_once() {
        let t0 = Instant::now();
        let mut d = demux(2, 2, 100);
        let Admit::New(a) = d.datagram(t0, addr(1), 10, false) else {
            panic!()
        };
        assert_eq!(d.datagram(t0, addr(1), 10, false), Admit::Deliver(a));
        assert_eq!(d.datagram(t0, addr(1), 10, false), Admit::Dropped);
        assert_eq!(d.stats().dropped_queue_full, 1);
        assert!(matches!(d.datagram(t0, addr(2), 10, false), Admit::New(_)));
        assert_eq!(d.datagram(t0, addr(3), 10, false), Admit::Dropped);
        assert_eq!(d.stats().dropped_peer_cap, 1);
        assert_eq!(d.datagram(t0, addr(2), 71, false), Admit::Dropped);
        assert_eq!(d.stats().dropped_bytes_cap, 1);
        invariant(&d);
        assert_eq!(d.stats().delivered, 3);
    }

    #[test]
    fn closing_forgets_the_peer_and_counts_what_it_left_unread() {
        let t0 = Instant::now();
        let mut d = demux(8, 8, 1 << 20);
        let Admit::New(id) = d.datagram(t0, addr(1), 4, false) else {
            panic!()
        };
        d.datagram(t0, addr(1), 4, false);
        d.closed(id);
        assert_eq!(d.stats().unread, 2);
        assert_eq!(d.stats().peers, 0);
        // The same source starts a new conversation.
        assert!(matches!(d.datagram(t0, addr(1), 4, false), Admit::New(n) if n != id));
        // An eviction after a close counts nothing twice.
        d.closed(id);
        assert_eq!(d.expire(t0 + 10 * IDLE), None);
        assert_eq!(d.stats().evicted, 0);
        invariant(&d);
    }

    #[test]
    fn an_evicted_peer_is_counted_once_whatever_else_happens() {
        let t0 = Instant::now();
        let mut d = demux(8, 8, 1 << 20);
        let Admit::New(id) = d.datagram(t0, addr(1), 1, false) else {
            panic!()
        };
        d.taken(id, 1);
        assert_eq!(d.expire(t0 + IDLE), Some(id));
        // Its conversation then closes, and is taken from again: no change.
        d.closed(id);
        assert_eq!(d.taken(id, 1), Taken::Open);
        assert_eq!(d.expire(t0 + 5 * IDLE), None);
        assert_eq!(d.stats().evicted, 1);
    }

    #[test]
    fn truncated_datagrams_are_delivered_as_such_and_counted() {
        let t0 = Instant::now();
        let mut d = demux(8, 8, 1 << 20);
        assert!(matches!(d.datagram(t0, addr(1), 0, true), Admit::New(_)));
        assert_eq!(d.stats().truncated, 1);
        assert_eq!(d.stats().delivered, 1);
        invariant(&d);
    }

    #[test]
    fn without_an_idle_timeout_nobody_expires() {
        let t0 = Instant::now();
        let mut d = Demux::new(Limits {
            max_peers: 4,
            queue_depth: 4,
            max_queued_bytes: 1 << 20,
            idle: None,
        });
        let Admit::New(id) = d.datagram(t0, addr(1), 1, false) else {
            panic!()
        };
        d.taken(id, 1);
        assert_eq!(d.next_expiry(), None);
        assert_eq!(d.expire(t0 + Duration::from_secs(1 << 30)), None);
    }

    #[test]
    fn a_thousand_peers_expire_in_order_of_their_last_datagram() {
        let t0 = Instant::now();
        let mut d = demux(2000, 8, 1 << 30);
        let mut ids = Vec::new();
        for p in 0..1000u16 {
            let at = t0 + Duration::from_millis(u64::from(999 - p));
            let Admit::New(id) = d.datagram(at, addr(p + 1), 1, false) else {
                panic!()
            };
            d.taken(id, 1);
            ids.push(id);
        }
        let mut gone = Vec::new();
        while let Some(id) = d.expire(t0 + IDLE + Duration::from_secs(1)) {
            gone.push(id);
        }
        ids.reverse();
        assert_eq!(gone, ids);
        assert_eq!(d.stats().evicted, 1000);
    }
}
