//! A NATS client connection, pure: the handshake (`INFO`, TLS if the
//! server requires it, then `CONNECT`, `SUB` and a `PING` answered by
//! `PONG`), what each server operation means once it is open, when to
//! ping a quiet server and when to give it up, and how long to wait before
//! connecting again. Time is an argument: nothing here reads a clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::ops::{encode_connect, encode_sub, parse_op, Credentials, ServerOp, PING, PONG};
use super::NatsError;

/// The subscription id of a conversation's subject (one per connection).
pub(crate) const SID: u64 = 1;

/// What a client subscribes to and how it introduces itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Subscription {
    /// The subject published to and received from.
    pub(crate) subject: Arc<str>,
    /// The queue group joined, if any.
    pub(crate) queue: Option<String>,
    /// Credentials for `CONNECT`.
    pub(crate) creds: Credentials,
}

impl Subscription {
    /// Whether messages can be published to the subject (no wildcards).
    pub(crate) fn publishable(&self) -> bool {
        super::ops::valid_subject(&self.subject, false)
    }
}

/// Where the handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for the server's `INFO`.
    Info,
    /// Waiting for TLS to be established (the server requires it).
    Tls,
    /// `CONNECT`, `SUB` and `PING` sent; waiting for the `PONG`.
    Pong,
    /// Subscribed.
    Open,
}

/// What one server operation calls for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing.
    Nothing,
    /// A message on the subject.
    Message(Bytes),
    /// Send these bytes.
    Send(Vec<u8>),
    /// The server requires TLS: start it, then call
    /// [`NatsSession::tls_established`].
    StartTls,
    /// The handshake is over: subscribed.
    Established,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct NatsSession {
    sub: Arc<Subscription>,
    /// converse's own limit, and the server's `max_payload` within it.
    own_max: usize,
    max: usize,
    phase: Phase,
    keepalive: Keepalive,
}

impl NatsSession {
    /// A session about to connect at `now`, with a message limit of
    /// `own_max` (the server's may be lower) and a keepalive `interval`.
    pub(crate) fn new(
        sub: Arc<Subscription>,
        own_max: usize,
        interval: Duration,
        now: Instant,
    ) -> NatsSession {
        NatsSession {
            sub,
            own_max,
            max: own_max,
            phase: Phase::Info,
            keepalive: Keepalive::new(interval, now),
        }
    }

    /// The largest payload to send and to accept: the server's
    /// `max_payload`, at most converse's own.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// `true` once subscribed.
    pub(crate) fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }

    /// `true` once the server's `INFO` came: it speaks NATS.
    pub(crate) fn heard_info(&self) -> bool {
        self.phase != Phase::Info
    }

    /// `CONNECT`, `SUB` and `PING`.
    fn hello(&self, tls: bool) -> Vec<u8> {
        let mut hello = encode_connect(&self.sub.creds, tls, "converse");
        hello.extend_from_slice(&encode_sub(
            &self.sub.subject,
            self.sub.queue.as_deref(),
            SID,
        ));
        hello.extend_from_slice(PING);
        hello
    }

    /// TLS, which the server asked for, is established: the hello follows.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn tls_established(&mut self) -> Vec<u8> {
        debug_assert_eq!(self.phase, Phase::Tls);
        self.phase = Phase::Pong;
        self.hello(true)
    }

    /// One whole operation from the server (as it was cut), at `now`;
    /// `tls`: whether this build can speak TLS.
    pub(crate) fn on_op(&mut self, op: Bytes, now: Instant, tls: bool) -> Result<Step, NatsError> {
        self.keepalive.heard(now);
        // Not even an operation where `INFO` should be.
        let not_nats = self.phase == Phase::Info
            && !op.get(..4).is_some_and(|w| w.eq_ignore_ascii_case(b"INFO"));
        let op = match parse_op(op) {
            Ok(op) => op,
            Err(_) if not_nats => return Err(NatsError::NotNats),
            Err(fault) => return Err(NatsError::Protocol(fault.describe())),
        };
        match (self.phase, op) {
            (_, ServerOp::Err(reason)) => Err(NatsError::Server(reason)),
            (Phase::Info, ServerOp::Info(info)) => {
                self.max = info.payload_limit(self.own_max);
                if info.tls_required {
                    if !tls {
                        return Err(NatsError::TlsUnavailable);
                    }
                    self.phase = Phase::Tls;
                    return Ok(Step::StartTls);
                }
                self.phase = Phase::Pong;
                Ok(Step::Send(self.hello(false)))
            }
            (Phase::Info | Phase::Tls, _) => Err(NatsError::NotNats),
            (_, ServerOp::Info(info)) => {
                self.max = info.payload_limit(self.own_max);
                Ok(Step::Nothing)
            }
            (_, ServerOp::Ping) => Ok(Step::Send(PONG.to_vec())),
            (Phase::Pong, ServerOp::Pong) => {
                self.phase = Phase::Open;
                Ok(Step::Established)
            }
            // A message published just after the SUB may come before the
            // PONG: it is the subject's all the same.
            (_, ServerOp::Msg { sid, payload, .. }) if sid == SID => Ok(Step::Message(payload)),
            (_, ServerOp::Msg { .. } | ServerOp::Pong | ServerOp::Ok) => Ok(Step::Nothing),
        }
    }

    /// When [`on_timeout`](Self::on_timeout) has something to do, once
    /// subscribed.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        (self.phase == Phase::Open).then(|| self.keepalive.due())
    }

    /// The keepalive's turn at `now`: a `PING` to send, nothing, or the
    /// server is taken for dead.
    pub(crate) fn on_timeout(&mut self, now: Instant) -> Result<Option<&'static [u8]>, NatsError> {
        if self.phase != Phase::Open {
            return Ok(None);
        }
        match self.keepalive.poll(now) {
            Beat::Wait(_) => Ok(None),
            Beat::Ping => Ok(Some(PING)),
            Beat::Stale => Err(NatsError::Stale),
        }
    }
}

/// Pings left unanswered before the connection is taken for dead.
pub(crate) const MAX_PINGS_OUT: u32 = 2;

/// When to ping the server, and when to give it up: every `interval`
/// without anything from the server a `PING` goes out; when
/// [`MAX_PINGS_OUT`] of them are unanswered at the next turn, the
/// connection is stale.
#[derive(Clone, Debug)]
pub(crate) struct Keepalive {
    interval: Duration,
    next: Instant,
    out: u32,
}

/// What [`Keepalive::poll`] says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Beat {
    /// Nothing to do before this instant.
    Wait(Instant),
    /// Send a `PING` now.
    Ping,
    /// The server answered none of the pings: the connection is dead.
    Stale,
}

impl Keepalive {
    /// A keepalive starting at `now`.
    pub(crate) fn new(interval: Duration, now: Instant) -> Keepalive {
        Keepalive {
            interval,
            next: now + interval,
            out: 0,
        }
    }

    /// Anything came from the server at `now`: it is alive, and the next
    /// ping is an interval away.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.out = 0;
        self.next = now + self.interval;
    }

    /// The next instant at which [`poll`](Self::poll) has something to say.
    pub(crate) fn due(&self) -> Instant {
        self.next
    }

    /// What to do at `now`.
    pub(crate) fn poll(&mut self, now: Instant) -> Beat {
        if now < self.next {
            return Beat::Wait(self.next);
        }
        if self.out >= MAX_PINGS_OUT {
            return Beat::Stale;
        }
        self.out += 1;
        self.next = now + self.interval;
        Beat::Ping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    fn session(now: Instant) -> NatsSession {
        let sub = Subscription {
            subject: Arc::from("chat.room"),
            queue: None,
            creds: Credentials::default(),
        };
        NatsSession::new(Arc::new(sub), 1 << 20, Duration::from_secs(10), now)
    }

    #[test]
    fn the_handshake_subscribes_and_a_message_before_the_pong_is_kept() {
        let t0 = Instant::now();
        let mut s = session(t0);
        let Step::Send(hello) = s
            .on_op(op("INFO {\"max_payload\":1024}\r\n"), t0, true)
            .unwrap()
        else {
            panic!("no hello")
        };
        let hello = String::from_utf8(hello).unwrap();
        assert!(hello.starts_with("CONNECT {"));
        assert!(hello.ends_with("SUB chat.room 1\r\nPING\r\n"), "{hello}");
        assert_eq!(s.max(), 1024);
        assert_eq!(s.poll_timeout(), None, "no keepalive before it is open");
        assert_eq!(
            s.on_op(op("MSG chat.room 1 2\r\nhi\r\n"), t0, true),
            Ok(Step::Message(Bytes::from_static(b"hi")))
        );
        assert_eq!(
            s.on_op(op("PING\r\n"), t0, true),
            Ok(Step::Send(PONG.to_vec()))
        );
        assert_eq!(s.on_op(op("PONG\r\n"), t0, true), Ok(Step::Established));
        assert!(s.is_open());
        assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(10)));
        // Another subscription's message is not ours.
        assert_eq!(
            s.on_op(op("MSG other 2 1\r\nx\r\n"), t0, true),
            Ok(Step::Nothing)
        );
    }

    #[test]
    fn a_server_that_is_not_nats_refuses_or_wants_tls_is_told_apart() {
        let t0 = Instant::now();
        assert_eq!(
            session(t0).on_op(op("PING\r\n"), t0, true),
            Err(NatsError::NotNats)
        );
        assert_eq!(
            session(t0).on_op(op("HTTP/1.1 200 OK\r\n"), t0, true),
            Err(NatsError::NotNats)
        );
        assert_eq!(
            session(t0).on_op(op("-ERR 'Authorization Violation'\r\n"), t0, true),
            Err(NatsError::Server("Authorization Violation".into()))
        );
        let info = op("INFO {\"tls_required\":true}\r\n");
        assert_eq!(
            session(t0).on_op(info.clone(), t0, false),
            Err(NatsError::TlsUnavailable)
        );
        let mut s = session(t0);
        assert_eq!(s.on_op(info, t0, true), Ok(Step::StartTls));
        let hello = String::from_utf8(s.tls_established()).unwrap();
        assert!(hello.contains("\"tls_required\":true"), "{hello}");
        assert!(matches!(
            session(t0).on_op(op("INFO {\r\n"), t0, true),
            Err(NatsError::Protocol(_))
        ));
    }

    #[test]
    fn a_quiet_server_is_pinged_then_given_up() {
        let t0 = Instant::now();
        let s10 = Duration::from_secs(10);
        let mut s = session(t0);
        s.on_op(op("INFO {}\r\n"), t0, true).unwrap();
        s.on_op(op("PONG\r\n"), t0, true).unwrap();
        assert_eq!(s.on_timeout(t0 + s10), Ok(Some(PING)));
        assert_eq!(s.on_timeout(t0 + 2 * s10), Ok(Some(PING)));
        assert_eq!(s.on_timeout(t0 + 3 * s10), Err(NatsError::Stale));
    }

    #[test]
    fn keepalive_pings_when_quiet_and_gives_up() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut k = Keepalive::new(10 * s, t0);
        assert_eq!(k.poll(t0 + 9 * s), Beat::Wait(t0 + 10 * s));
        // Traffic pushes the ping back.
        k.heard(t0 + 9 * s);
        assert_eq!(k.poll(t0 + 18 * s), Beat::Wait(t0 + 19 * s));
        assert_eq!(k.poll(t0 + 19 * s), Beat::Ping);
        assert_eq!(k.poll(t0 + 20 * s), Beat::Wait(t0 + 29 * s));
        assert_eq!(k.poll(t0 + 29 * s), Beat::Ping);
        assert_eq!(k.poll(t0 + 39 * s), Beat::Stale);
        // A late answer revives it.
        k.heard(t0 + 39 * s);
        assert_eq!(k.poll(t0 + 49 * s), Beat::Ping);
    }
}
