//! The connection, sans-IO: every rule of a conversation's protocols,
//! written once, for every driver.
//!
//! A connection takes bytes and `now`, and gives out messages, typed ends,
//! bytes to transmit and its next deadline; `send`, `close` and `abort`
//! are inputs like any other. It never touches a socket or reads a clock,
//! so each promise is proven on a pair of connections with a fake clock
//! (`tests` below), and the drivers — the blocking halves and the
//! switchboard — only move bytes between sockets and connections and
//! decide *when* to call them.
//!
//! | input | output |
//! |---|---|
//! | bytes received, or their end, with `now` | whole messages, the end (once), the handshakes done |
//! | `send` / `close` / `abort` | what was taken (a mark a timeout can take back), or a typed refusal |
//! | `now` passing | the next deadline, and what expired |
//! | — | bytes to transmit, and when to shut the write side down |
//!
//! A stream connection ([`Conn`]) stacks what the URL says: a framing, or
//! WebSocket, or NATS, over TLS or not. It is three parts: the receiving
//! side ([`Rx`]), the sending side ([`Tx`]) and what both share
//! ([`Link`]); a blocking conversation's halves each own their side and
//! share the link behind one lock, and a switchboard owns all three. The
//! datagram conversations' rules ([`datagram`]) and the UDP listener's
//! demultiplexer ([`demux`]) are the same shape.

pub(crate) mod datagram;
pub(crate) mod demux;
#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz;
pub(crate) mod inbound;
pub(crate) mod link;
pub(crate) mod outbound;
#[cfg(any(test, fuzzing))]
mod pair;
#[cfg(feature = "quic")]
pub(crate) mod quic;
#[cfg(all(any(test, fuzzing), feature = "quic"))]
pub(crate) mod quic_fuzz;
#[cfg(all(test, feature = "quic"))]
mod quic_tests;
pub(crate) mod receive;
pub(crate) mod send;
#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::addr::Addr;
use crate::config::Config;
use crate::error::Error;
use link::{Limits, Link, Proto};
pub(crate) use receive::{Next, Rx};
pub(crate) use send::Tx;

/// Whether a graceful close knows that everything sent reached the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Delivery {
    /// Everything sent was written, our end was sent after it, and the
    /// peer ended its own side cleanly (for TLS its `close_notify`, for
    /// WebSocket its close frame), within the linger time, with no reset
    /// seen: the strongest confirmation the socket interface gives. (A
    /// TCP peer that closes with unread data resets the connection
    /// instead, which `close` reports as
    /// [`Error::ConnectionReset`](crate::Error::ConnectionReset), also
    /// when the reset comes after the peer's end, if it comes before
    /// `close` returns.)
    Confirmed,
    /// Everything sent was handed to the system, but this transport cannot
    /// tell whether it reached the peer: datagrams (UDP and Unix datagram
    /// sockets have no close to answer), a stream peer that did not end its
    /// side within the linger time, or a conversation that had already
    /// failed or been stopped (its error was reported then).
    Unknown,
}

/// How a conversation ended. Every conversation ends exactly once, with
/// one of these, whatever order the peer's end, a reset, `close_notify`,
/// a close frame and the user's `close` come in.
#[derive(Debug)]
#[non_exhaustive]
pub enum End {
    /// The peer ended the conversation cleanly, between messages. What was
    /// queued for it is still written (within the linger time), then our
    /// end, and the connection is closed.
    Peer,
    /// UDP: the peer was silent for the idle timeout (counted from its last
    /// datagram).
    Idle,
    /// Closed here, and what is known of delivery.
    Closed(Delivery),
    /// Aborted here: what was queued was discarded.
    Aborted,
    /// The conversation failed, and the error says why: a peer gone in the
    /// middle of a message, a message too large, a deadline missed, a reset,
    /// a slow consumer, a close that could not write what was queued …
    Failed(Error),
}

/// What a connection needs of a [`Config`], with the driver's outbox
/// bound.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) framing: crate::codec::Framing,
    pub(crate) max: usize,
    pub(crate) deadline: Duration,
    /// The batching buffer of a blocking sending half.
    pub(crate) batch: usize,
    pub(crate) limits: Limits,
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) ping_interval: Duration,
}

impl Settings {
    /// For a blocking conversation (`backlog`: none) or a switchboard's
    /// (its outbox bound).
    pub(crate) fn new(config: &Config, backlog: Option<usize>) -> Settings {
        Settings {
            framing: config.framing,
            max: config.max_message_len,
            deadline: config.message_deadline,
            batch: config.send_buffer,
            limits: Limits {
                linger: config.linger,
                handshake: config.handshake_timeout,
                backlog,
            },
            ping_interval: config.ping_interval,
        }
    }
}

/// What a connection speaks above the stream.
#[derive(Debug)]
pub(crate) enum Stack {
    /// Messages of the configured framing.
    Framed,
    /// A WebSocket client: it asks for `path` on `authority` (`HOST:PORT`).
    #[cfg(feature = "ws")]
    WsClient { authority: String, path: String },
    /// A WebSocket server, answering plain `GET`s with `page`.
    #[cfg(feature = "ws")]
    WsServer {
        page: Option<std::sync::Arc<crate::ws::Page>>,
    },
    /// A NATS client on a subscription; the TLS a server may ask for.
    #[cfg(feature = "nats")]
    Nats {
        sub: std::sync::Arc<crate::nats::session::Subscription>,
        #[cfg(feature = "tls")]
        tls: Option<(
            crate::tls::TlsClient,
            rustls::pki_types::ServerName<'static>,
        )>,
    },
}

/// What is below the stack: plain bytes, or TLS.
#[derive(Debug)]
pub(crate) enum Security {
    Plain,
    /// A TLS client verifying the server's name.
    #[cfg(feature = "tls")]
    Client(
        crate::tls::TlsClient,
        rustls::pki_types::ServerName<'static>,
    ),
    /// A TLS server.
    #[cfg(feature = "tls")]
    Server(crate::tls::TlsServer),
}

/// A stream connection: see the module docs.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) rx: Rx,
    pub(crate) tx: Tx,
    pub(crate) link: Link,
}

impl Conn {
    /// A connection speaking `stack` over `security` to `peer`, started at
    /// `now` (its handshakes, if it has any, are timed from then).
    pub(crate) fn new(
        stack: Stack,
        security: Security,
        settings: &Settings,
        peer: Addr,
        now: Instant,
    ) -> Result<Conn, Error> {
        let codec = settings.framing.codec(settings.max);
        let raw = || crate::codec::Framing::Raw.codec(1);
        let (rx, tx, out, proto) = match stack {
            Stack::Framed => (
                Rx::framed(inbound::Cutter::Framing(codec.clone()), settings.deadline),
                Tx::framed(codec.clone(), settings.batch),
                outbound::Outbound::new(codec, settings.batch),
                Proto::Framed,
            ),
            #[cfg(feature = "ws")]
            Stack::WsClient { authority, path } => {
                let (asked, request) = crate::ws::upgrade::ClientUpgrade::new(&authority, &path);
                let mut out = outbound::Outbound::new(raw(), settings.batch);
                out.push_raw(&request);
                (
                    Rx::ws(false, settings.max, settings.deadline),
                    Tx::ws(true, settings.max, settings.batch),
                    out,
                    Proto::Ws(Box::new(link::WsLink {
                        client: true,
                        upgraded: false,
                        asked: Some(asked),
                        page: None,
                        close_sent: false,
                        close_code: crate::ws::frames::CLOSE_NORMAL,
                        waiting: Default::default(),
                    })),
                )
            }
            #[cfg(feature = "ws")]
            Stack::WsServer { page } => (
                Rx::ws(true, settings.max, settings.deadline),
                Tx::ws(false, settings.max, settings.batch),
                outbound::Outbound::new(raw(), settings.batch),
                Proto::Ws(Box::new(link::WsLink {
                    client: false,
                    upgraded: false,
                    asked: None,
                    page,
                    close_sent: false,
                    close_code: crate::ws::frames::CLOSE_NORMAL,
                    waiting: Default::default(),
                })),
            ),
            #[cfg(feature = "nats")]
            Stack::Nats {
                sub,
                #[cfg(feature = "tls")]
                tls,
            } => {
                let session = crate::nats::session::NatsSession::new(
                    std::sync::Arc::clone(&sub),
                    settings.max,
                    settings.ping_interval,
                    now,
                );
                (
                    Rx::nats(settings.max, settings.deadline),
                    Tx::nats(&sub, settings.max, settings.batch),
                    outbound::Outbound::new(raw(), settings.batch),
                    Proto::Nats(Box::new(link::NatsLink {
                        session,
                        #[cfg(feature = "tls")]
                        tls,
                        waiting: Default::default(),
                    })),
                )
            }
        };
        let _ = raw;
        let mut conn = Conn {
            rx,
            tx,
            link: Link::new(out, proto, settings.limits, peer),
        };
        match security {
            Security::Plain => {}
            #[cfg(feature = "tls")]
            Security::Client(settings, name) => {
                conn.start_tls(crate::tls::session::TlsSession::client(&settings, name))?
            }
            #[cfg(feature = "tls")]
            Security::Server(settings) => {
                conn.start_tls(crate::tls::session::TlsSession::server(&settings))?
            }
        }
        conn.link.start(now);
        Ok(conn)
    }

    #[cfg(feature = "tls")]
    fn start_tls(
        &mut self,
        session: Result<crate::tls::session::TlsSession, crate::tls::error::TlsFailure>,
    ) -> Result<(), Error> {
        let session = session.map_err(|failure| failure.at(self.link.peer.clone()))?;
        self.link.tls = Some(Box::new(session));
        self.rx.set_tls();
        Ok(())
    }

    // -----------------------------------------------------------------------
    // The combined API (a switchboard's, and the tests').

    /// Bytes received at `now`, from a buffer that is not the connection's:
    /// whole messages go to `emit`, in order.
    pub(crate) fn on_bytes(&mut self, bytes: &[u8], now: Instant, emit: &mut dyn FnMut(Bytes)) {
        self.rx.on_bytes(&mut self.link, bytes, now, emit);
    }

    /// The end of the peer's bytes.
    pub(crate) fn on_eof(&mut self, now: Instant) {
        self.rx.on_eof(&mut &mut self.link, now);
    }

    /// A socket error (a reset …).
    pub(crate) fn on_error(&mut self, err: Error) {
        self.rx.on_error(&mut &mut self.link, err);
    }

    /// The next message already received (for drivers that read into the
    /// connection's own buffer).
    pub(crate) fn next(&mut self, now: Instant) -> Next {
        self.rx.next(&mut &mut self.link, now, false)
    }

    /// Queues `msg` if it fits the outbox (`Ok(false)` if it does not).
    pub(crate) fn send(&mut self, msg: &[u8], text: bool) -> Result<bool, Error> {
        self.tx.offer(&mut self.link, msg, text)
    }

    /// `close`: see [`Link::close`].
    pub(crate) fn close(&mut self, now: Instant) {
        self.link.close(now);
    }

    /// Our side is done sending (after the peer's end).
    pub(crate) fn finish(&mut self, now: Instant) {
        self.link.finish(now);
    }

    /// Ends at once, discarding what is queued.
    pub(crate) fn abort(&mut self) {
        self.tx.discard();
        self.link.abort();
    }

    /// The next instant [`handle_timeout`](Self::handle_timeout) has
    /// something to do.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let rx = if self.link.is_down() || self.link.has_peer_ended() {
            None
        } else {
            self.rx.poll_timeout()
        };
        match (rx, self.link.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs what is due at `now` (call it after reading everything that
    /// has arrived).
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if !self.link.is_down() && !self.link.has_peer_ended() {
            self.rx.handle_timeout(&mut &mut self.link, now);
        }
        self.link.handle_timeout(now);
    }

    /// Bytes waiting to be written.
    pub(crate) fn queued(&self) -> usize {
        self.link.queued() + self.tx.staged()
    }
}
