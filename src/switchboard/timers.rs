//! A switchboard's time: one heap of instants, each conversation's next
//! deadline (as its connection says: a message's deadline, a handshake's,
//! the linger, a keepalive, UDP idleness) and each listener's (a paused
//! accept, UDP peers going idle). The rules are the connections'; this
//! only wakes them when their time comes.

use std::cmp::Reverse;
use std::time::{Duration, Instant};

use super::arena::Key;
use super::events::Events;
use super::registry::{Carrier, Entry, Listen};
use super::Switchboard;

impl Switchboard {
    /// Puts `key` in the heap at `at`.
    pub(super) fn timer_at(&mut self, at: Instant, key: Key) {
        self.timers.push(Reverse((at, key)));
    }

    /// Puts conversation `key` in the heap at its connection's next
    /// deadline, unless it is there already for that time or sooner.
    pub(super) fn schedule(&mut self, key: Key) {
        let Some(conv) = self.conv_mut(key) else {
            return;
        };
        let next = match &conv.carrier {
            Carrier::Stream { conn, .. } => conn.poll_timeout(),
            Carrier::Datagram { dg, .. } => dg.poll_timeout(),
            Carrier::UdpPeer { .. } => None,
            Carrier::Between => conv.redial.as_ref().map(|r| r.retry_at),
            #[cfg(feature = "quic")]
            Carrier::Dialing { dial, .. } => dial.deadline(),
        };
        let Some(at) = next else {
            return;
        };
        if conv.timer.is_some_and(|t| t <= at) {
            return;
        }
        conv.timer = Some(at);
        self.timer_at(at, key);
    }

    /// The next instant a timer is due.
    pub(super) fn next_timer(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Runs every timer that is due.
    pub(super) fn run_timers(&mut self, events: &mut Events) {
        let now = Instant::now();
        while let Some(&Reverse((at, key))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            match self.entries.get_mut(key) {
                Some(Entry::Conv(conv)) => {
                    if conv.timer == Some(at) {
                        conv.timer = None;
                    }
                    if conv.paused && !conv.connects() {
                        // Its deadlines wait with its reading (a message
                        // is never failed for bytes we chose not to read):
                        // `resume` schedules them again.
                        continue;
                    }
                    if conv.backlogged {
                        // Unread bytes wait: read them first, then judge (a
                        // message whole in the socket is never refused).
                        self.timer_at(now + Duration::from_millis(1), key);
                        continue;
                    }
                    match &mut conv.carrier {
                        Carrier::Stream { conn, .. } => conn.handle_timeout(now),
                        Carrier::Datagram { dg, .. } => dg.handle_timeout(now),
                        Carrier::UdpPeer { .. } => {}
                        Carrier::Between => {
                            self.redial(key, events);
                            continue;
                        }
                        #[cfg(feature = "quic")]
                        Carrier::Dialing { .. } => {
                            self.dial_step(key, Some(&mut *events));
                            continue;
                        }
                    }
                    self.settle(key, Some(events));
                }
                Some(Entry::Listener(l)) => match &mut **l {
                    Listen::Stream { paused, .. } => {
                        if *paused {
                            *paused = false;
                            self.push_backlog(key);
                        }
                    }
                    Listen::Udp { .. } => self.udp_idle_due(key, now, events),
                    #[cfg(feature = "quic")]
                    Listen::Quic { .. } => {}
                },
                None => {}
            }
        }
    }
}
