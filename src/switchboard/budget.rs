//! The switchboard's memory budget: what its conversations hold together
//! (received of messages not yet whole, and outboxes) stays within
//! [`Config::memory_budget`](crate::Config::memory_budget); when a read or
//! a send would pass it, the conversations holding the most are ended.

use super::arena::Key;
use super::events::Events;
use super::registry::{Carrier, Entry};
use super::Switchboard;
use crate::error::Error;

impl Switchboard {
    /// Counts again what conversation `key` holds.
    pub(super) fn account(&mut self, key: Key) {
        let Some(Entry::Conv(conv)) = self.entries.get_mut(key) else {
            return;
        };
        let now = conv.holding();
        let before = std::mem::replace(&mut conv.held, now);
        self.held = self.held - before + now;
    }

    /// Ends the conversations holding the most until `need` more bytes,
    /// for conversation `wanting`, fit the budget. `false` if `wanting`
    /// itself holds the most: the caller refuses it instead.
    pub(super) fn make_room(
        &mut self,
        need: usize,
        wanting: Option<Key>,
        mut events: Option<&mut Events>,
    ) -> bool {
        let budget = self.config.memory_budget;
        while self.held + need > budget {
            let mut largest: Option<(usize, Key)> = None;
            for key in self.entries.keys() {
                if let Some(Entry::Conv(conv)) = self.entries.get(key) {
                    let held = conv.held + if Some(key) == wanting { need } else { 0 };
                    if held > 0 && largest.is_none_or(|(most, _)| held > most) {
                        largest = Some((held, key));
                    }
                }
            }
            let Some((_, key)) = largest else {
                return true;
            };
            if Some(key) == wanting {
                return false;
            }
            self.end_over_budget(key, events.as_deref_mut());
        }
        true
    }

    /// Ends conversation `key` for holding the most when the budget was
    /// reached.
    pub(super) fn end_over_budget(&mut self, key: Key, events: Option<&mut Events>) {
        let budget = self.config.memory_budget as u64;
        let Some(Entry::Conv(conv)) = self.entries.get_mut(key) else {
            return;
        };
        let err = Error::OverBudget {
            addr: conv.peer.clone(),
            held: conv.held as u64,
            budget,
        };
        match &mut conv.carrier {
            Carrier::Stream { conn, .. } => conn.link.fail(err),
            Carrier::Datagram { dg, .. } | Carrier::UdpPeer { dg, .. } => dg.fail(err),
            #[cfg(feature = "quic")]
            Carrier::Dialing { conn, .. } => conn.link.fail(err),
            Carrier::Between => return,
        }
        self.stats.over_budget += 1;
        self.settle(key, events);
    }
}
