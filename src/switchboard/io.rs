//! Reading and writing a switchboard's conversations, and what follows
//! every turn of one (`settle`): the events its connection has for the
//! program, its timer, its output, its release.

use std::io::{self, Read};
use std::net::Shutdown;
use std::time::Instant;

use bytes::Bytes;

use super::arena::Key;
use super::events::{Event, Events, Id};
use super::registry::{Carrier, Entry, Origin};
use super::Switchboard;
use crate::connection::datagram::Arrival;
use crate::connection::link::Ours;
use crate::connection::{End, Next};
use crate::error::Error;

/// Bytes read from one conversation per readiness before others get a turn.
const READ_BUDGET: usize = 256 * 1024;
/// Datagrams read from one socket per readiness before others get a turn.
const DATAGRAM_BUDGET: usize = 256;

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// A datagram bounced: the peer's port is closed (an ICMP error).
fn bounced(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotConnected
    )
}

impl Switchboard {
    /// Reads what conversation `key` has; `true` if there may be more.
    pub(super) fn read_conv(&mut self, key: Key, events: &mut Events) -> bool {
        let now = Instant::now();
        let id = Id(key);
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut received = 0u64;
        let mut bytes_in = 0u64;
        let mut more = false;
        let Some(Entry::Conv(conv)) = self.entries.get_mut(key) else {
            self.scratch = scratch;
            return false;
        };
        let conv = &mut **conv;
        if conv.connecting || conv.paused {
            // Paused: what comes waits in the socket (its `resume` reads
            // it), and TCP's window tells the peer to wait too.
            self.scratch = scratch;
            return false;
        }
        match &mut conv.carrier {
            Carrier::Stream { socket, conn } => {
                let room = events.limit().saturating_sub(events.len());
                let count = std::cell::Cell::new(0usize);
                // No message comes before the handshakes are done: the
                // first one says they are, and the conversation is told
                // before its messages.
                let origin = &mut conv.origin;
                let accepted = std::cell::Cell::new(false);
                let mut emit = |message: Bytes| {
                    match std::mem::replace(origin, Origin::Told) {
                        Origin::Accepted(listener) => {
                            accepted.set(true);
                            events.push(Event::Accepted { listener, id })
                        }
                        Origin::Connecting => events.push(Event::Connected { id }),
                        Origin::Told => {}
                    }
                    count.set(count.get() + 1);
                    events.push(Event::Message { id, message });
                };
                let mut taken = 0;
                loop {
                    if conn.link.is_down() || conn.link.is_eof() {
                        break;
                    }
                    if taken >= READ_BUDGET || count.get() >= room {
                        more = true;
                        break;
                    }
                    // A large message under way is read straight into its
                    // own buffer; anything else into the shared scratch.
                    let direct = conn.rx.buffered() > 0 && conn.link.tls_free();
                    let (read, offered) = if direct {
                        let space = conn.rx.space();
                        let offered = space.len();
                        (socket.read(space), offered)
                    } else {
                        (socket.read(&mut scratch), scratch.len())
                    };
                    match read {
                        Ok(0) => {
                            // Once our side has ended, a reset that came
                            // with the peer's end fails a close.
                            let ended = conn.link.ours() != Ours::Open;
                            match socket.take_error().filter(|_| ended) {
                                Some(e) => conn.on_error(Error::from_io(e, &conv.peer)),
                                None => conn.on_eof(now),
                            }
                            break;
                        }
                        Ok(n) => {
                            taken += n;
                            bytes_in += n as u64;
                            if direct {
                                conn.rx.on_read(&mut &mut conn.link, n, now);
                                loop {
                                    match conn.next(now) {
                                        Next::Message(m) => emit(m),
                                        Next::Lent => emit(Bytes::copy_from_slice(conn.rx.lent())),
                                        Next::More | Next::End => break,
                                    }
                                }
                            } else {
                                conn.on_bytes(&scratch[..n], now, &mut emit);
                            }
                            if n < offered && !conv.read_to_end {
                                // A short read: the socket is drained (an
                                // edge comes with the next bytes), no read
                                // to learn it would block.
                                break;
                            }
                        }
                        Err(e) if would_block(&e) => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            conn.on_error(Error::from_io(e, &conv.peer));
                            break;
                        }
                    }
                }
                conn.rx.release_if_empty();
                received += count.get() as u64;
                if accepted.get() {
                    self.stats.accepted += 1;
                }
            }
            Carrier::Datagram { socket, dg } => {
                let room = (dg.max_message_len() + 1).min(scratch.len());
                for _ in 0..DATAGRAM_BUDGET {
                    if events.full() {
                        more = true;
                        break;
                    }
                    match (&*socket).read(&mut scratch[..room]) {
                        Ok(n) => {
                            bytes_in += n as u64;
                            match dg.on_datagram(&scratch[..n], now) {
                                Some(Arrival::Message(message)) => {
                                    received += 1;
                                    events.push(Event::Message { id, message });
                                }
                                Some(Arrival::Lost(error)) => {
                                    events.push(Event::Lost { id, error })
                                }
                                None => {}
                            }
                        }
                        Err(e) if would_block(&e) => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if bounced(&e) => events.push(Event::Lost {
                            id,
                            error: dg.unreachable(),
                        }),
                        Err(e) => {
                            dg.fail(Error::from_io(e, &conv.peer));
                            break;
                        }
                    }
                }
            }
            Carrier::UdpPeer { .. } | Carrier::Between => {}
            #[cfg(feature = "quic")]
            Carrier::Dialing { .. } => {}
        }
        self.scratch = scratch;
        self.stats.received += received;
        self.stats.bytes_in += bytes_in;
        self.settle(key, Some(events));
        if self.held > self.config.memory_budget {
            self.make_room(0, None, Some(events));
        }
        more
    }

    /// Writes what conversation `key` has queued, as far as its socket
    /// takes it.
    pub(super) fn flush_conv(&mut self, key: Key, events: &mut Events) {
        let id = Id(key);
        let Some(Entry::Conv(conv)) = self.entries.get_mut(key) else {
            return;
        };
        let conv = &mut **conv;
        if conv.connecting {
            return;
        }
        let mut udp_peer = false;
        match &mut conv.carrier {
            Carrier::Stream { socket, conn } => {
                if conv.writable {
                    let mut sink = crate::transport::carrier::CarrierSink {
                        carrier: socket,
                        now: false,
                        sent: 0,
                    };
                    let wrote = conn.link.transmit(&mut sink);
                    self.stats.bytes_out += sink.sent;
                    match wrote {
                        Ok(true) => conn.link.out.release_if_empty(),
                        Ok(false) => conv.writable = false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => conn.on_error(Error::from_io(e, &conv.peer)),
                    }
                }
            }
            Carrier::Datagram { socket, dg } => {
                while conv.writable {
                    let Some(msg) = dg.front() else {
                        break;
                    };
                    match socket.send(msg) {
                        Ok(n) => {
                            self.stats.bytes_out += n as u64;
                            dg.sent()
                        }
                        Err(e) if would_block(&e) => conv.writable = false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if bounced(&e) => {
                            // That datagram bounced: reported, and done.
                            dg.sent();
                            events.push(Event::Lost {
                                id,
                                error: dg.unreachable(),
                            });
                        }
                        Err(e) => {
                            dg.fail(Error::from_io(e, &conv.peer));
                            break;
                        }
                    }
                }
            }
            Carrier::UdpPeer { .. } => udp_peer = true,
            Carrier::Between => {}
            #[cfg(feature = "quic")]
            Carrier::Dialing { .. } => {}
        }
        if udp_peer {
            self.flush_udp_peer(key);
        }
        if let Some(conv) = self.conv_mut(key) {
            if conv.wants_drained && conv.queued() == 0 {
                conv.wants_drained = false;
                events.push(Event::Drained { id });
            }
        }
        self.settle(key, Some(events));
    }

    /// What follows every turn of conversation `key`: the handshakes done
    /// and the end (each told once), our side finishing after the peer's
    /// end, the write side shut down when our end is written, its output
    /// marked, its timer set, and its release once nothing is left to do.
    pub(super) fn settle(&mut self, key: Key, mut events: Option<&mut Events>) {
        let id = Id(key);
        self.account(key);
        let Some(conv) = self.conv_mut(key) else {
            return;
        };
        let mut told: Option<Event> = None;
        let (end, wants_write, done) = match &mut conv.carrier {
            Carrier::Stream { socket, conn } => {
                if conn.link.poll_established() {
                    // What the handshake taught (a NATS server's limit).
                    conn.tx.learn(&conn.link);
                    told = match conv.origin {
                        Origin::Accepted(listener) => Some(Event::Accepted { listener, id }),
                        Origin::Connecting => Some(Event::Connected { id }),
                        Origin::Told => None,
                    };
                    conv.origin = Origin::Told;
                    if let Some(redial) = &mut conv.redial {
                        redial.stood(&conv.peer);
                    }
                }
                let end = conn.link.poll_end();
                let wants_write = conn.link.wants_write();
                if conn.link.take_shutdown() {
                    let _ = socket.shutdown(Shutdown::Write);
                }
                (end, wants_write, conn.link.is_done())
            }
            Carrier::Datagram { dg, .. } | Carrier::UdpPeer { dg, .. } => {
                let end = dg.poll_end();
                let done = dg.is_done();
                (end, dg.front().is_some(), done)
            }
            Carrier::Between => (None, false, false),
            // Nothing is written before the connect is done; an end here
            // is a failure (the connect's, or the budget's).
            #[cfg(feature = "quic")]
            Carrier::Dialing { conn, .. } => (conn.link.poll_end(), false, conn.link.is_down()),
        };
        if let Some(event) = told {
            if matches!(event, Event::Accepted { .. }) {
                self.stats.accepted += 1;
            }
            match events.as_deref_mut() {
                Some(events) => events.push(event),
                None => self.pending.push_back(event),
            }
        }
        if let Some(end) = end {
            if let End::Failed(error) = end {
                if self.redial_after(key, &error) {
                    let retry_in = self.start_redial(key);
                    if let Some(conv) = self.conv(key) {
                        crate::trace::reconnecting(&conv.peer, &error, retry_in);
                    }
                    let event = Event::Disconnected {
                        id,
                        error,
                        retry_in,
                    };
                    match events.as_deref_mut() {
                        Some(events) => events.push(event),
                        None => self.pending.push_back(event),
                    }
                    return;
                }
                self.report_end(key, End::Failed(error), events.as_deref_mut());
            } else {
                let peer = matches!(end, End::Peer);
                self.report_end(key, end, events);
                if peer && !done {
                    // Replies to the messages that came with the end are
                    // sent while the program handles them; our side ends at
                    // the next turn.
                    if let Some(conv) = self.conv_mut(key) {
                        if !conv.finish_next {
                            conv.finish_next = true;
                            self.finishing.push(key);
                        }
                    }
                }
            }
        }
        if done {
            self.remove_conv(key);
            return;
        }
        if wants_write {
            self.mark_dirty(key);
        }
        self.schedule(key);
    }

    /// Conversations whose peer's end was reported in the last turn end
    /// their own side now, after the replies sent meanwhile.
    pub(super) fn finish_ended(&mut self) {
        let now = Instant::now();
        for key in std::mem::take(&mut self.finishing) {
            if let Some(conv) = self.conv_mut(key) {
                conv.finish_next = false;
                if let Carrier::Stream { conn, .. } = &mut conv.carrier {
                    conn.finish(now);
                }
                self.settle(key, None);
            }
        }
    }

    /// Writes what every conversation marked has queued.
    pub(super) fn flush_dirty(&mut self, events: &mut Events) {
        for key in std::mem::take(&mut self.dirty) {
            if let Some(conv) = self.conv_mut(key) {
                conv.dirty = false;
                self.flush_conv(key, events);
            }
        }
    }

    /// A socket became writable.
    pub(super) fn on_writable(&mut self, key: Key, events: &mut Events) {
        match self.entries.get_mut(key) {
            Some(Entry::Conv(conv)) => {
                if conv.connecting {
                    self.connected(key, events);
                    return;
                }
                conv.writable = true;
                self.mark_dirty(key);
            }
            Some(Entry::Listener(_)) => self.udp_writable(key),
            None => {}
        }
    }
}
