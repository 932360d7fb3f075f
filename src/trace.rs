//! What converse tells [`tracing`](https://docs.rs/tracing) (feature
//! `tracing`): a span per conversation, and events for what a server's
//! owner wants to see without the program printing it: handshakes done and
//! failed, every conversation's end (slow consumers, deadlines, resets …),
//! accept errors, NATS disconnects and reconnects, UDP datagrams dropped.
//!
//! Every function here is empty without the feature, and [`Span`] is then
//! zero-sized, so the callers never mention the feature.
//!
//! | event | level | fields |
//! |---|---|---|
//! | a conversation's span | `DEBUG` span `conversation` | `peer` |
//! | handshakes done (TLS, WebSocket upgrade, NATS subscription) | `DEBUG` | `peer` |
//! | a handshake failed | `WARN` | `peer`, `error` |
//! | a slow consumer dropped | `WARN` | `peer`, `queued`, `limit` |
//! | a per-message deadline missed | `INFO` | `peer`, `error` |
//! | another failure | `INFO` | `peer`, `error` |
//! | a clean end (peer, closed, idle, aborted) | `DEBUG` | `peer`, `end` |
//!
//! Events name the peer themselves, so a subscriber that keeps only
//! warnings still says whose they are; the span (allocated only when a
//! subscriber wants `DEBUG` spans) groups a conversation's events.
//! | an accept error | `WARN` | `listener`, `error`, `retry_in` |
//! | a NATS connection lost, retried (switchboard) | `WARN` | `peer`, `error`, `retry_in` |
//! | a NATS connection back (either driver) | `INFO` | `peer` |
//! | a UDP datagram dropped | `DEBUG` | `from`, `bytes`, `reason` |

#[cfg(feature = "tracing")]
use tracing::{debug, info, warn};

use crate::addr::Addr;
use crate::connection::End;
use crate::error::Error;

/// The span of one conversation: a pointer, and nothing allocated unless a
/// subscriber wants the span (zero-sized without the feature).
#[derive(Debug, Default)]
pub(crate) struct Span {
    #[cfg(feature = "tracing")]
    span: Option<Box<tracing::Span>>,
}

impl Span {
    /// The span's id, as events name their parent.
    #[cfg(feature = "tracing")]
    fn id(&self) -> Option<tracing::Id> {
        self.span.as_ref().and_then(|s| s.id())
    }
}

/// A new conversation's span.
pub(crate) fn conversation(peer: &Addr) -> Span {
    #[cfg(feature = "tracing")]
    {
        let span = tracing::debug_span!("conversation", peer = %peer);
        Span {
            span: (!span.is_disabled()).then(|| Box::new(span)),
        }
    }
    #[cfg(not(feature = "tracing"))]
    {
        let _ = peer;
        Span {}
    }
}

/// Every handshake of the conversation is done.
pub(crate) fn established(span: &Span, peer: &Addr) {
    #[cfg(feature = "tracing")]
    debug!(parent: span.id(), peer = %peer, "handshakes done");
    #[cfg(not(feature = "tracing"))]
    let _ = (span, peer);
}

/// The conversation's end, as it is reported (once).
pub(crate) fn ended(span: &Span, peer: &Addr, end: &End) {
    #[cfg(feature = "tracing")]
    {
        let parent = span.id();
        match end {
            End::Failed(error) if error.is_handshake() => {
                warn!(parent: parent, peer = %peer, error = %error, "handshake failed")
            }
            End::Failed(Error::SlowConsumer { queued, limit, .. }) => {
                warn!(parent: parent, peer = %peer, queued, limit, "slow consumer dropped")
            }
            End::Failed(Error::OverBudget { held, budget, .. }) => {
                warn!(parent: parent, peer = %peer, held, budget, "ended over the memory budget")
            }
            End::Failed(error @ Error::DeadlineExceeded { .. }) => {
                info!(parent: parent, peer = %peer, error = %error, "message deadline missed")
            }
            End::Failed(error) => info!(parent: parent, peer = %peer, error = %error, "failed"),
            other => debug!(parent: parent, peer = %peer, end = ?other, "ended"),
        }
    }
    #[cfg(not(feature = "tracing"))]
    let _ = (span, peer, end);
}

/// An accept failed in a way that pauses the listener.
pub(crate) fn accept_error(listener: &Addr, error: &Error, retry_in: Option<std::time::Duration>) {
    #[cfg(feature = "tracing")]
    warn!(listener = %listener, error = %error, retry_in = ?retry_in, "accept failed");
    #[cfg(not(feature = "tracing"))]
    let _ = (listener, error, retry_in);
}

/// A connection that reconnects (NATS on the switchboard) was lost;
/// connecting again in `retry_in`.
pub(crate) fn reconnecting(peer: &Addr, error: &Error, retry_in: std::time::Duration) {
    #[cfg(feature = "tracing")]
    warn!(peer = %peer, error = %error, retry_in = ?retry_in, "connection lost, reconnecting");
    #[cfg(not(feature = "tracing"))]
    let _ = (peer, error, retry_in);
}

/// A connection that was lost is back (NATS, on either driver).
pub(crate) fn reconnected(peer: &Addr) {
    #[cfg(feature = "tracing")]
    info!(peer = %peer, "reconnected");
    #[cfg(not(feature = "tracing"))]
    let _ = peer;
}

/// A UDP datagram of `bytes` bytes from `from` was dropped.
pub(crate) fn udp_dropped(from: std::net::SocketAddr, bytes: usize, reason: &'static str) {
    #[cfg(feature = "tracing")]
    debug!(from = %from, bytes, reason, "UDP datagram dropped");
    #[cfg(not(feature = "tracing"))]
    let _ = (from, bytes, reason);
}
