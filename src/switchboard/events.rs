//! What a switchboard tells: the ids of its conversations and listeners,
//! its events, the buffer they are gathered in, and its statistics.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;

use super::arena::Key;
use crate::addr::Addr;
use crate::connection::End;
use crate::error::Error;

/// A conversation on a switchboard. Ids are never reused: once a
/// conversation has ended, its id names nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Id(pub(super) Key);

/// A listener on a switchboard.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub(super) Key);

impl std::fmt::Debug for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Id({}.{})", self.0.index, self.0.generation)
    }
}

impl std::fmt::Debug for ListenerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ListenerId({}.{})", self.0.index, self.0.generation)
    }
}

impl Id {
    /// A number that names this conversation for as long as the
    /// switchboard lives (useful as a map key or in logs).
    pub fn as_u64(self) -> u64 {
        self.0.to_u64()
    }
}

impl ListenerId {
    /// A number that names this listener for as long as the switchboard
    /// lives.
    pub fn as_u64(self) -> u64 {
        self.0.to_u64()
    }
}

/// What happened: the switchboard's events, in the order they happened.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A listener accepted a conversation, its handshakes done (TLS, the
    /// WebSocket upgrade). For UDP: a new source's first datagram, which
    /// follows as a message.
    Accepted {
        /// The listener.
        listener: ListenerId,
        /// The new conversation.
        id: Id,
    },
    /// A conversation [`connect`](super::Switchboard::connect)ed here is
    /// established (its handshakes done: TLS, the upgrade, NATS's
    /// subscription), or a NATS conversation is connected again after
    /// [`Event::Disconnected`]. What was sent before it goes out now.
    Connected {
        /// The conversation.
        id: Id,
    },
    /// A conversation handed over through a [`Handle`](super::Handle) is on
    /// the switchboard.
    Adopted {
        /// The conversation.
        id: Id,
    },
    /// A whole message arrived.
    Message {
        /// From which conversation.
        id: Id,
        /// The message.
        message: Bytes,
    },
    /// A datagram conversation lost one datagram (it was over the limit:
    /// [`Error::Truncated`]) or learned that its peer's port is closed
    /// ([`Error::PeerUnreachable`]). The conversation goes on.
    Lost {
        /// The conversation.
        id: Id,
        /// What happened.
        error: Error,
    },
    /// A NATS conversation lost its connection to the server: it connects
    /// again by itself, in `retry_in` and then backing off, and says
    /// [`Event::Connected`] when it is back. What others publish meanwhile
    /// is lost to it (core NATS delivers at most once), and sends fail with
    /// [`NatsError::Disconnected`](crate::nats::NatsError::Disconnected)
    /// until then. The conversation goes on.
    Disconnected {
        /// The conversation.
        id: Id,
        /// What broke.
        error: Error,
        /// When it tries again.
        retry_in: Duration,
    },
    /// A conversation's outbox is empty again, after
    /// [`try_send`](super::Switchboard::try_send) found it full.
    Drained {
        /// The conversation.
        id: Id,
    },
    /// A listener could not accept for a moment (out of file descriptors,
    /// `EMFILE`): it pauses, then tries again by itself.
    AcceptPaused {
        /// The listener.
        listener: ListenerId,
        /// What went wrong.
        error: Error,
        /// When it tries again.
        retry_in: Duration,
    },
    /// A connection accepted by a TLS or WebSocket listener failed its
    /// handshake (not TLS at all, a certificate refused, a broken upgrade,
    /// too slow …) and is gone. It was never reported as accepted; the
    /// listener goes on. (A plain HTTP request answered with the page or a
    /// refusal is not an event.)
    HandshakeFailed {
        /// The listener.
        listener: ListenerId,
        /// Who connected.
        peer: Addr,
        /// Why it failed ([`Error::Tls`](crate::Error) or
        /// [`Error::WebSocket`](crate::Error), for most).
        error: Error,
    },
    /// A conversation ended (exactly once); its id names nothing
    /// afterwards, but sends made while handling the events of the same
    /// [`wait`](super::Switchboard::wait) still go out (replies to the
    /// messages that came with the peer's end).
    Ended {
        /// The conversation.
        id: Id,
        /// How.
        end: End,
    },
}

impl Event {
    /// The conversation this event is about, if it is about one.
    pub fn id(&self) -> Option<Id> {
        match self {
            Event::Accepted { id, .. }
            | Event::Connected { id }
            | Event::Adopted { id }
            | Event::Message { id, .. }
            | Event::Lost { id, .. }
            | Event::Disconnected { id, .. }
            | Event::Drained { id }
            | Event::Ended { id, .. } => Some(*id),
            Event::AcceptPaused { .. } | Event::HandshakeFailed { .. } => None,
        }
    }
}

/// A reusable buffer of events, filled by [`Switchboard::wait`](super::Switchboard::wait).
///
/// Its capacity bounds how many events one `wait` gathers: past it, the
/// switchboard stops reading (what is left waits in the sockets, and the
/// next `wait` goes on), so a program that takes its time with each event
/// is never buried. Events not taken out remain for the next round.
#[derive(Debug)]
pub struct Events {
    pub(super) list: VecDeque<Event>,
    limit: usize,
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

impl Events {
    /// A buffer gathering up to 1024 events per `wait`.
    pub fn new() -> Events {
        Events::with_capacity(1024)
    }

    /// A buffer gathering up to `limit` events per `wait` (at least 1).
    pub fn with_capacity(limit: usize) -> Events {
        Events {
            list: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    /// Takes the events out, in order. Events not taken (the iterator
    /// dropped early) stay for the next round.
    pub fn drain(&mut self) -> impl Iterator<Item = Event> + '_ {
        std::iter::from_fn(move || self.list.pop_front())
    }

    /// How many events are waiting.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// `true` when no event is waiting.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// How many events one `wait` gathers.
    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    pub(super) fn full(&self) -> bool {
        self.list.len() >= self.limit
    }

    pub(super) fn push(&mut self, event: Event) {
        self.list.push_back(event);
    }
}

/// What a switchboard has done, for monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Conversations now.
    pub conversations: usize,
    /// Listeners now.
    pub listeners: usize,
    /// Conversations accepted, ever.
    pub accepted: u64,
    /// Messages received.
    pub received: u64,
    /// Messages queued to send.
    pub sent: u64,
    /// Conversations ended as slow consumers.
    pub slow_consumers: u64,
    /// Conversations ended, for any reason.
    pub ended: u64,
    /// Bytes read from sockets (framing, TLS records and protocol
    /// overhead included; UDP: datagrams' payloads).
    pub bytes_in: u64,
    /// Bytes written to sockets (as `bytes_in`).
    pub bytes_out: u64,
    /// TLS and WebSocket handshakes that failed: accepted ones
    /// ([`Event::HandshakeFailed`]) and conversations being connected
    /// that ended with [`Error::Tls`](crate::Error) or
    /// [`Error::WebSocket`](crate::Error) before their first event.
    pub handshake_failures: u64,
    /// Datagrams from UDP listeners' peers dropped because the program had
    /// paused reading them ([`Switchboard::pause`](super::Switchboard::pause)).
    pub paused_drops: u64,
    /// Bytes the conversations hold now, together: received of messages
    /// not yet whole, and queued to send (what
    /// [`Config::memory_budget`](crate::Config::memory_budget) bounds).
    pub held: usize,
    /// Conversations ended because the memory budget was reached
    /// ([`Error::OverBudget`](crate::Error::OverBudget)).
    pub over_budget: u64,
}
