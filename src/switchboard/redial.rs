//! How a switchboard's NATS conversation connects again when its server
//! goes away: where to, how, and how long to wait first.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::transport::recipe::Recipe;

/// How a NATS conversation connects again.
pub(super) struct Redial {
    pub(super) addrs: Vec<SocketAddr>,
    pub(super) recipe: Recipe,
    pub(super) config: Config,
    pub(super) backoff: Backoff,
    /// When it tries next (while between connections).
    pub(super) retry_at: Instant,
    /// A connection was lost, and none has stood since.
    pub(super) lost: bool,
}

impl Redial {
    /// A connection stood: the next loss waits the least again.
    pub(super) fn stood(&mut self, peer: &crate::addr::Addr) {
        self.backoff.reset();
        if std::mem::take(&mut self.lost) {
            crate::trace::reconnected(peer);
        }
    }
}

/// How long to wait before connecting again after each failed try:
/// 250 ms, doubling to at most 5 s; a connection that stood resets it.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    pub(crate) const FIRST: Duration = Duration::from_millis(250);
    pub(crate) const LAST: Duration = Duration::from_secs(5);

    pub(crate) fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    /// The wait before the next try; the one after is longer.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::LAST);
        wait
    }

    /// A connection stood: the next failure waits the least again.
    pub(crate) fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnects_back_off_and_reset() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..7).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_wait(), Backoff::FIRST);
    }
}
