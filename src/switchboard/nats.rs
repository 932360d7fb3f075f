//! NATS on the switchboard: a connection made (and subscribed) by the
//! blocking driver, then driven by readiness. The stream's codec cuts
//! whole server operations; this turns them into messages, answers pings,
//! pings a quiet server, and encodes each message sent as a `PUB`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::Event;
use crate::addr::Addr;
use crate::engine::nats::{encode_pub, parse_op, pub_len, Beat, Keepalive, ServerOp, PING, PONG};
use crate::engine::outbound::Outbound;
use crate::error::Error;
use crate::transport::nats::{NatsError, NatsParts, SID};

/// A NATS conversation's protocol state on the switchboard.
pub(super) struct NatsConv {
    subject: Arc<str>,
    max: usize,
    own_max: usize,
    keepalive: Keepalive,
}

/// What the operations read in one turn came to.
#[derive(Default)]
pub(super) struct Turn {
    /// Control operations (not messages) seen.
    pub(super) controls: u64,
    /// A `PONG` was queued.
    pub(super) wrote: bool,
    /// The server refused or broke the protocol.
    pub(super) failure: Option<Error>,
}

impl NatsConv {
    pub(super) fn new(parts: &NatsParts, own_max: usize, now: Instant) -> NatsConv {
        NatsConv {
            subject: Arc::clone(&parts.subject),
            max: parts.max,
            own_max,
            keepalive: Keepalive::new(parts.ping_interval, now),
        }
    }

    pub(super) fn max(&self) -> usize {
        self.max
    }

    pub(super) fn pub_len(&self, len: usize) -> usize {
        pub_len(&self.subject, len)
    }

    /// Queues `msg` as a `PUB` to the subject.
    pub(super) fn queue_message(&self, out: &mut Outbound, msg: &[u8]) {
        out.push_encoded(|dst| encode_pub(&self.subject, msg, dst));
    }

    /// The next instant the keepalive has something to do.
    pub(super) fn due(&self) -> Instant {
        self.keepalive.due()
    }

    /// The keepalive's turn at `now`: a `PING` queued (`Ok(true)`), nothing
    /// (`Ok(false)`), or the server is taken for dead.
    pub(super) fn beat(
        &mut self,
        out: &mut Outbound,
        now: Instant,
        peer: &Addr,
    ) -> Result<bool, Error> {
        match self.keepalive.poll(now) {
            Beat::Wait(_) => Ok(false),
            Beat::Ping => {
                out.push_encoded(|dst| dst.extend_from_slice(PING));
                Ok(true)
            }
            Beat::Stale => Err(Error::Nats {
                addr: peer.clone(),
                reason: NatsError::Stale,
            }),
        }
    }

    /// One operation from the server: the message it carries, if any.
    pub(super) fn take(
        &mut self,
        op: Bytes,
        out: &mut Outbound,
        peer: &Addr,
        now: Instant,
        turn: &mut Turn,
    ) -> Option<Bytes> {
        if turn.failure.is_some() {
            return None;
        }
        self.keepalive.heard(now);
        let control = |turn: &mut Turn| turn.controls += 1;
        match parse_op(op) {
            Ok(ServerOp::Msg { sid, payload, .. }) if sid == SID => return Some(payload),
            Ok(ServerOp::Ping) => {
                out.push_encoded(|dst| dst.extend_from_slice(PONG));
                turn.wrote = true;
            }
            Ok(ServerOp::Info(info)) => {
                self.max = info.payload_limit(self.own_max);
            }
            Ok(ServerOp::Msg { .. } | ServerOp::Pong | ServerOp::Ok) => {}
            Ok(ServerOp::Err(reason)) => {
                turn.failure = Some(Error::Nats {
                    addr: peer.clone(),
                    reason: NatsError::Server(reason),
                })
            }
            Err(fault) => {
                turn.failure = Some(Error::Nats {
                    addr: peer.clone(),
                    reason: NatsError::Protocol(fault.describe()),
                })
            }
        }
        control(turn);
        None
    }
}

/// Rewrites the events read for conversation `id` in this turn: each
/// operation becomes its message or nothing.
pub(super) fn rewrite(
    events: &mut super::Events,
    first: usize,
    id: super::Id,
    nats: &mut NatsConv,
    out: &mut Outbound,
    peer: &Addr,
    now: Instant,
) -> Turn {
    let mut turn = Turn::default();
    events.retain_from(first, |event| match event {
        Event::Message { id: of, message } if *of == id => {
            match nats.take(std::mem::take(message), out, peer, now, &mut turn) {
                Some(payload) => {
                    *message = payload;
                    true
                }
                None => false,
            }
        }
        _ => true,
    });
    turn
}
