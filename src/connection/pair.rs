//! A pair of connections joined by in-memory pipes, driven as a driver
//! would drive them, on a fake clock: the harness of the connection's
//! tests and of its fuzz target. Nothing sleeps; bytes move and time
//! passes only when the caller says so.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Conn, End, Security, Settings, Stack};
use crate::addr::Addr;

/// One end of a pair, as a driver sees it.
pub(super) struct Side {
    pub(super) conn: Conn,
    /// Messages received, in order.
    pub(super) got: Vec<Bytes>,
    /// Ends reported, in order (more than one is a bug).
    pub(super) ends: Vec<String>,
    pub(super) established: usize,
    /// Answered as plain HTTP (a WebSocket server): never a conversation,
    /// so never an end.
    pub(super) answered: bool,
    /// Bytes written by this side, not yet delivered to the other.
    pub(super) pipe: VecDeque<u8>,
    /// This side shut its write side down (after the pipe drains, the
    /// other side sees the end of its bytes).
    pub(super) shut: bool,
    /// The other side saw that end already.
    pub(super) eof_delivered: bool,
    /// A reset is in flight to the other side.
    pub(super) reset: bool,
    /// The other side saw that reset already.
    pub(super) reset_delivered: bool,
    /// How many bytes a write takes at most (a socket that fills).
    pub(super) window: usize,
    /// This side reads what arrives (a peer that stops reading: `false`).
    pub(super) reading: bool,
    pub(super) released: bool,
}

impl Side {
    pub(super) fn new(conn: Conn) -> Side {
        Side {
            conn,
            got: Vec::new(),
            ends: Vec::new(),
            established: 0,
            answered: false,
            pipe: VecDeque::new(),
            shut: false,
            eof_delivered: false,
            reset: false,
            reset_delivered: false,
            window: usize::MAX,
            reading: true,
            released: false,
        }
    }

    /// Writes what the connection has, as far as the window takes it.
    pub(super) fn transmit(&mut self) {
        if self.released {
            return;
        }
        let pipe = &mut self.pipe;
        let window = &mut self.window;
        let mut sink = |bytes: &[u8]| -> std::io::Result<usize> {
            let room = window.saturating_sub(pipe.len());
            if room == 0 {
                return Err(std::io::ErrorKind::WouldBlock.into());
            }
            let n = bytes.len().min(room);
            pipe.extend(&bytes[..n]);
            Ok(n)
        };
        let _ = self.conn.link.transmit(&mut sink);
        if self.conn.link.take_shutdown() {
            self.shut = true;
        }
    }

    /// What the driver does after every turn: ends, establishment, release.
    pub(super) fn poll(&mut self) {
        while let Some(end) = self.conn.link.poll_end() {
            self.ends.push(describe(&end));
        }
        if self.conn.link.poll_established() {
            self.established += 1;
        }
        if self.conn.link.take_answered().is_some() {
            self.answered = true;
        }
        if self.conn.link.is_done() && !self.released {
            self.released = true;
            if self.conn.link.wants_reset() {
                self.reset = true;
            } else {
                self.shut = true;
            }
        }
    }
}

pub(super) fn describe(end: &End) -> String {
    match end {
        End::Failed(e) => format!("Failed({e})"),
        other => format!("{other:?}"),
    }
}

/// Two connections, a pipe each way, and a fake clock.
pub(super) struct Pair {
    pub(super) a: Side,
    pub(super) b: Side,
    pub(super) now: Instant,
}

impl Pair {
    pub(super) fn new(a: Conn, b: Conn, now: Instant) -> Pair {
        Pair {
            a: Side::new(a),
            b: Side::new(b),
            now,
        }
    }

    /// Moves bytes both ways until nothing more moves (at most `chunk`
    /// bytes per delivery, so that units arrive split).
    pub(super) fn drive_with(&mut self, chunk: usize) {
        for _ in 0..100_000 {
            let mut moved = false;
            for (from, to) in [(0, 1), (1, 0)] {
                let (src, dst) = if from == 0 {
                    (&mut self.a, &mut self.b)
                } else {
                    (&mut self.b, &mut self.a)
                };
                src.transmit();
                src.poll();
                if dst.released && !src.pipe.is_empty() {
                    // Bytes for a closed socket: it answers with a reset.
                    src.pipe.clear();
                    dst.reset = true;
                }
                if !dst.reading {
                    continue;
                }
                if !src.pipe.is_empty() {
                    let n = src.pipe.len().min(chunk);
                    let bytes: Vec<u8> = src.pipe.drain(..n).collect();
                    let got = &mut dst.got;
                    dst.conn
                        .on_bytes(&bytes, self.now, &mut |m: Bytes| got.push(m));
                    moved = true;
                } else if src.reset && !src.reset_delivered && !dst.released {
                    src.reset_delivered = true;
                    dst.conn.on_error(crate::error::Error::ConnectionReset {
                        addr: Addr::Unknown,
                    });
                    moved = true;
                } else if src.shut && !dst.eof_delivered && !dst.released {
                    dst.eof_delivered = true;
                    dst.conn.on_eof(self.now);
                    moved = true;
                }
                dst.poll();
                let _ = to;
            }
            if !moved {
                return;
            }
        }
        panic!("the pair never settled");
    }

    pub(super) fn drive(&mut self) {
        self.drive_with(usize::MAX);
    }

    /// Moves the clock on by `by`, runs both sides' timers, and drives.
    pub(super) fn advance(&mut self, by: Duration) {
        self.now += by;
        for side in [&mut self.a, &mut self.b] {
            if !side.released {
                side.conn.handle_timeout(self.now);
            }
        }
        self.drive();
    }

    /// Runs timers until both sides are released (bounded).
    pub(super) fn settle(&mut self) {
        for _ in 0..100 {
            self.drive();
            if self.a.released && self.b.released {
                return;
            }
            let next = [&self.a, &self.b]
                .iter()
                .filter(|s| !s.released)
                .filter_map(|s| s.conn.poll_timeout())
                .min();
            match next {
                Some(at) if at > self.now => self.advance(at - self.now),
                Some(_) => self.advance(Duration::ZERO),
                None => return,
            }
        }
    }
}

pub(super) fn settings(backlog: Option<usize>) -> Settings {
    Settings::new(
        &crate::Config::new().with_linger(Duration::from_secs(5)),
        backlog,
    )
}

#[cfg(test)]
pub(super) fn framed_pair(now: Instant) -> Pair {
    let s = settings(None);
    let a = Conn::new(Stack::Framed, Security::Plain, &s, Addr::Unknown, now).unwrap();
    let b = Conn::new(Stack::Framed, Security::Plain, &s, Addr::Unknown, now).unwrap();
    Pair::new(a, b, now)
}
