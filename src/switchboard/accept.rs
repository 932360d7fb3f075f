//! A switchboard's listeners: stream listeners accepting (each connection
//! a conversation of the listener's recipe, reported once its handshakes
//! are done), and UDP listeners demultiplexing datagrams by source (each
//! new source a conversation) and sending their replies.

use std::io;
use std::time::{Duration, Instant};

use super::arena::Key;
use super::events::{Event, Events, Id, ListenerId};
use super::registry::{Carrier, Conv, Entry, Listen, Origin};
use super::Switchboard;
use crate::addr::Addr;
use crate::connection::datagram::{Arrival, Datagrams};
use crate::connection::demux::Admit;
use crate::connection::Settings;
use crate::error::{Error, Result};
use crate::transport::sockopt;
use crate::transport::udp::payload_limit;

/// Connections accepted per readiness before others get a turn.
const ACCEPT_BUDGET: usize = 128;
/// Datagrams read per readiness before others get a turn.
const DATAGRAM_BUDGET: usize = 256;

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Switchboard {
    /// Reads what listener `key` has; `true` if there may be more.
    pub(super) fn read_listener(&mut self, key: Key, events: &mut Events) -> bool {
        let Some(Entry::Listener(listening)) = self.entries.get(key) else {
            return false;
        };
        match &**listening {
            Listen::Stream { paused: true, .. } | Listen::Udp { closing: true, .. } => false,
            Listen::Stream { .. } => self.accept_streams(key, events),
            Listen::Udp { .. } => self.read_udp(key, events),
            #[cfg(feature = "quic")]
            Listen::Quic { .. } => self.accept_quic(key, events),
        }
    }

    /// Takes the streams a QUIC listener accepted (its endpoint's thread
    /// said there are some): each is a conversation at once.
    #[cfg(feature = "quic")]
    fn accept_quic(&mut self, key: Key, events: &mut Events) -> bool {
        for _ in 0..ACCEPT_BUDGET {
            if events.full() {
                return true;
            }
            let Some(Entry::Listener(listening)) = self.entries.get_mut(key) else {
                return false;
            };
            let Listen::Quic {
                listener,
                max_backlog,
                ..
            } = &mut **listening
            else {
                return false;
            };
            let max_backlog = *max_backlog;
            let Some((tx, rx)) = listener.try_accept() else {
                return false;
            };
            let Some((wire, local, peer, mut conn, _)) =
                crate::transport::stream::into_parts(tx, rx)
            else {
                continue;
            };
            conn.link.limits.backlog = Some(max_backlog);
            self.stats.accepted += 1;
            if let Ok(id) = self.add_stream(wire, conn, peer, local, Origin::Told) {
                events.push(Event::Accepted {
                    listener: ListenerId(key),
                    id,
                });
            }
        }
        true
    }

    fn accept_streams(&mut self, key: Key, events: &mut Events) -> bool {
        for _ in 0..ACCEPT_BUDGET {
            if events.full() {
                return true;
            }
            let Some(Entry::Listener(listening)) = self.entries.get_mut(key) else {
                return false;
            };
            let Listen::Stream {
                socket,
                local,
                config,
                recipe,
                paused,
                backoff,
                ..
            } = &mut **listening
            else {
                return false;
            };
            match socket.accept() {
                Ok((conn, _)) => {
                    if sockopt::accepted_dead(&conn) {
                        continue;
                    }
                    *backoff = Duration::from_millis(50);
                    let (config, recipe) = ((**config).clone(), (**recipe).clone());
                    let listener = ListenerId(key);
                    if let Ok(id) = self.accepted(conn, &config, &recipe, listener) {
                        // Without handshakes it is a conversation at once.
                        self.settle(id.0, Some(events));
                    }
                }
                Err(e) if would_block(&e) => return false,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => {
                    let error = Error::from_io(e, local);
                    let retry_in = *backoff;
                    crate::trace::accept_error(local, &error, Some(retry_in));
                    *backoff = (*backoff * 2).min(Duration::from_secs(1));
                    *paused = true;
                    self.timer_at(Instant::now() + retry_in, key);
                    events.push(Event::AcceptPaused {
                        listener: ListenerId(key),
                        error,
                        retry_in,
                    });
                    return false;
                }
            }
        }
        true
    }

    /// A connection a listener accepted: a conversation of its recipe.
    fn accepted(
        &mut self,
        socket: socket2::Socket,
        config: &crate::config::Config,
        recipe: &crate::transport::recipe::Recipe,
        listener: ListenerId,
    ) -> Result<Id> {
        let unix = recipe.scheme == crate::url::Scheme::Unix;
        let addr_of = |a: io::Result<socket2::SockAddr>| -> Addr {
            match a {
                Ok(a) if unix => Addr::Unix(a.as_pathname().map(|p| p.to_path_buf())),
                Ok(a) => a.as_socket().map_or(Addr::Unknown, |a| recipe.addr(a)),
                Err(_) => Addr::Unknown,
            }
        };
        let (peer, local) = (addr_of(socket.peer_addr()), addr_of(socket.local_addr()));
        if !unix {
            sockopt::tcp_stream(&socket, config).map_err(|e| Error::from_io(e, &peer))?;
        }
        let settings = Settings::new(config, Some(config.max_backlog));
        let conn = recipe.conn(&settings, peer.clone(), Instant::now())?;
        let origin = if conn.link.is_established() {
            self.stats.accepted += 1;
            Origin::Told
        } else {
            Origin::Accepted(listener)
        };
        let told = origin == Origin::Told;
        let id = self.add_stream(socket.into(), conn, peer, local, origin)?;
        if told {
            self.pending.push_back(Event::Accepted { listener, id });
        }
        Ok(id)
    }

    fn read_udp(&mut self, key: Key, events: &mut Events) -> bool {
        let now = Instant::now();
        for _ in 0..DATAGRAM_BUDGET {
            if events.full() {
                return true;
            }
            // The key a new peer's conversation will get.
            let conv_key = self.entries.next_key();
            let Some(Entry::Listener(listening)) = self.entries.get_mut(key) else {
                return false;
            };
            let Listen::Udp {
                socket,
                local,
                config,
                max,
                demux,
                peers,
                ..
            } = &mut **listening
            else {
                return false;
            };
            let room = (*max + 1).min(self.scratch.len());
            let (n, from) = match socket.recv_from(&mut self.scratch[..room]) {
                Ok(got) => got,
                Err(e) if would_block(&e) => return false,
                // ICMP errors on the shared socket, signals: go on.
                Err(_) => continue,
            };
            self.stats.bytes_in += n as u64;
            let peer_max = payload_limit(&from, config.max_message_len);
            let truncated = n > peer_max;
            let size = if truncated { 0 } else { n };
            let (did, new) = match demux.datagram(now, from, size, truncated) {
                Admit::Dropped => continue,
                Admit::Deliver(did) => (did, false),
                Admit::New(did) => (did, true),
            };
            // Delivered at once: the event list is this peer's queue.
            demux.taken(did, size);
            let conv_key = if new {
                let dg = Datagrams::new(
                    Addr::Udp(from),
                    peer_max,
                    None,
                    Some(config.max_backlog),
                    now,
                );
                let conv = Conv::new(
                    Carrier::UdpPeer {
                        listener: key,
                        demux_id: did,
                        to: from,
                        dg: Box::new(dg),
                    },
                    Addr::Udp(from),
                    Addr::Udp(*local),
                    Origin::Told,
                );
                let next_expiry = demux.next_expiry();
                peers.insert(did, conv_key);
                let inserted = self.entries.insert(Entry::Conv(Box::new(conv)));
                debug_assert_eq!(inserted, conv_key);
                if let Some(at) = next_expiry {
                    self.timer_at(at, key);
                }
                self.stats.accepted += 1;
                events.push(Event::Accepted {
                    listener: ListenerId(key),
                    id: Id(conv_key),
                });
                conv_key
            } else {
                match peers.get(&did) {
                    Some(&k) => k,
                    None => continue,
                }
            };
            let id = Id(conv_key);
            let Some(Entry::Conv(conv)) = self.entries.get_mut(conv_key) else {
                continue;
            };
            if conv.paused {
                // Datagrams cannot be held back: the peer stays (its
                // datagram counted as heard), its message is dropped.
                self.stats.paused_drops += 1;
                continue;
            }
            let Carrier::UdpPeer { dg, .. } = &mut conv.carrier else {
                continue;
            };
            match dg.on_datagram(&self.scratch[..n], now) {
                Some(Arrival::Message(message)) => {
                    self.stats.received += 1;
                    events.push(Event::Message { id, message });
                }
                Some(Arrival::Lost(error)) => events.push(Event::Lost { id, error }),
                None => {}
            }
        }
        true
    }

    /// Sends a UDP peer's queued datagrams from its listener's socket.
    pub(super) fn flush_udp_peer(&mut self, key: Key) {
        loop {
            let Some(Entry::Conv(conv)) = self.entries.get(key) else {
                return;
            };
            let Carrier::UdpPeer {
                listener, to, dg, ..
            } = &conv.carrier
            else {
                return;
            };
            let (listener, to) = (*listener, *to);
            let Some(msg) = dg.front().cloned() else {
                return;
            };
            let Some(Entry::Listener(l)) = self.entries.get_mut(listener) else {
                // The listener is gone: nothing can be sent.
                return;
            };
            let Listen::Udp {
                socket,
                writable,
                waiting,
                ..
            } = &mut **l
            else {
                return;
            };
            if !*writable {
                waiting.push_back(key);
                return;
            }
            match socket.send_to(&msg, to) {
                Ok(n) => self.stats.bytes_out += n as u64,
                Err(e) if would_block(&e) => {
                    *writable = false;
                    waiting.push_back(key);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Sent, or refused by ICMP from someone: this datagram is
                // done either way.
                _ => {}
            }
            if let Some(conv) = self.conv_mut(key) {
                if let Carrier::UdpPeer { dg, .. } = &mut conv.carrier {
                    dg.sent();
                }
            }
        }
    }

    /// A UDP listener's socket takes datagrams again: its peers waiting
    /// for it write.
    pub(super) fn udp_writable(&mut self, key: Key) {
        let Some(Entry::Listener(l)) = self.entries.get_mut(key) else {
            return;
        };
        if let Listen::Udp {
            writable, waiting, ..
        } = &mut **l
        {
            *writable = true;
            let keys: Vec<Key> = waiting.drain(..).collect();
            for k in keys {
                self.mark_dirty(k);
            }
        }
    }

    /// A UDP listener's peers silent for the idle timeout end.
    pub(super) fn udp_idle_due(&mut self, key: Key, now: Instant, events: &mut Events) {
        let mut ended = Vec::new();
        let mut next = None;
        if let Some(Entry::Listener(l)) = self.entries.get_mut(key) {
            if let Listen::Udp { demux, peers, .. } = &mut **l {
                while let Some(did) = demux.expire(now) {
                    if let Some(k) = peers.remove(&did) {
                        ended.push(k);
                    }
                }
                next = demux.next_expiry();
            }
        }
        if let Some(at) = next {
            self.timer_at(at, key);
        }
        for k in ended {
            if let Some(conv) = self.conv_mut(k) {
                if let Carrier::UdpPeer { dg, .. } = &mut conv.carrier {
                    dg.idle();
                }
            }
            self.settle(k, Some(events));
        }
    }
}
