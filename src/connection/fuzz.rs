//! The connection's fuzz target: a pair of connections (a framed stream,
//! or a WebSocket client and server) fed a random interleaving of bytes
//! moving either way in pieces of any size, sends, closes, finishes and
//! aborts on either side, a clock that jumps, windows that fill, and bytes
//! a hostile peer makes up. After every step, and once both sides have
//! ended their own way, it checks the invariants:
//!
//! * each side reports one end, never two, and at last exactly one (a
//!   WebSocket server that answered plain HTTP is no conversation: no
//!   end, no establishment);
//! * no message arrives twice, or out of order (each carries its number);
//! * nothing taken is lost without an error: once everything on the way
//!   has arrived, when a side's end is the peer's clean end, every
//!   message the peer took arrived (unless bytes were made up or dropped
//!   on the way).
//!
//! TLS is left out: its state machine is rustls's, and its records are
//! the unit tests' business.

use std::time::{Duration, Instant};

use super::pair::{settings, Pair, Side};
use super::{Conn, Security, Stack};
use crate::addr::Addr;

/// At most this many steps per input.
const MAX_STEPS: usize = 400;

/// The input, read a byte at a time (zeros once it is used up).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What one side took (the numbers of its messages, in order) and what it
/// received.
#[derive(Default)]
struct Ledger {
    taken: Vec<u32>,
    next: u32,
}

/// Runs one input. Panics if an invariant does not hold.
pub fn connection_pair(data: &[u8]) {
    let mut input = Input(data);
    let now = Instant::now();
    let backlog = match input.byte() % 3 {
        0 => None,
        1 => Some(4096),
        _ => Some(64 * 1024),
    };
    let mut p = match input.byte() % 2 {
        0 => framed(now, backlog),
        _ => websocket(now, backlog),
    };
    let mut ledgers = [Ledger::default(), Ledger::default()];
    // Bytes were made up or dropped on the way: what arrives is not
    // checked against what was taken.
    let mut hostile = false;
    for _ in 0..MAX_STEPS {
        if input.is_empty() {
            break;
        }
        let op = input.byte();
        let who = usize::from(op & 1);
        match op >> 1 {
            0..=19 => {
                let size = match input.byte() {
                    n @ 0..=249 => usize::from(n),
                    250..=253 => 20_000,
                    _ => 70_000,
                };
                send(&mut p, who, &mut ledgers[who], size);
            }
            20..=59 => {
                let chunk = usize::from(input.byte()) * 37 + 1;
                deliver(&mut p, who, chunk);
            }
            60..=63 => {
                let now = p.now;
                side(&mut p, who).conn.close(now);
            }
            64..=66 => {
                let now = p.now;
                side(&mut p, who).conn.finish(now);
            }
            67 => side(&mut p, who).conn.abort(),
            68..=79 => {
                let ms = u64::from(input.byte()) * u64::from(input.byte() % 64 + 1);
                advance(&mut p, Duration::from_millis(ms));
            }
            80..=84 => {
                // A window that fills (a peer slow to read), or opens.
                let s = side(&mut p, who);
                s.window = match input.byte() {
                    0 => usize::MAX,
                    n => usize::from(n) * 97,
                };
            }
            85..=87 => {
                // The other side stops reading, or reads again.
                let s = side(&mut p, 1 - who);
                s.reading = !s.reading;
            }
            88..=89 => {
                // Bytes made up by a hostile peer, in flight.
                let n = usize::from(input.byte() % 16) + 1;
                let junk: Vec<u8> = (0..n).map(|_| input.byte()).collect();
                side(&mut p, who).pipe.extend(junk);
                hostile = true;
            }
            90 => {
                // Bytes lost in flight.
                let s = side(&mut p, who);
                let n = usize::from(input.byte()).min(s.pipe.len());
                s.pipe.drain(..n);
                hostile |= n > 0;
            }
            _ => p.drive(),
        }
        check(&p, &ledgers, hostile, false);
    }
    // Both end their own way, read everything, and time passes.
    p.a.reading = true;
    p.b.reading = true;
    p.a.window = usize::MAX;
    p.b.window = usize::MAX;
    p.a.conn.close(p.now);
    p.b.conn.close(p.now);
    p.settle();
    check(&p, &ledgers, hostile, true);
}

fn framed(now: Instant, backlog: Option<usize>) -> Pair {
    let s = settings(backlog);
    let a = Conn::new(Stack::Framed, Security::Plain, &s, Addr::Unknown, now);
    let b = Conn::new(Stack::Framed, Security::Plain, &s, Addr::Unknown, now);
    Pair::new(
        a.expect("a framed stream"),
        b.expect("a framed stream"),
        now,
    )
}

#[cfg(feature = "ws")]
fn websocket(now: Instant, backlog: Option<usize>) -> Pair {
    let s = settings(backlog);
    let client = Stack::WsClient {
        authority: "127.0.0.1:80".into(),
        path: "/".into(),
    };
    let a = Conn::new(client, Security::Plain, &s, Addr::Unknown, now);
    let b = Conn::new(
        Stack::WsServer { page: None },
        Security::Plain,
        &s,
        Addr::Unknown,
        now,
    );
    Pair::new(a.expect("a client"), b.expect("a server"), now)
}

#[cfg(not(feature = "ws"))]
fn websocket(now: Instant, backlog: Option<usize>) -> Pair {
    framed(now, backlog)
}

fn side(p: &mut Pair, who: usize) -> &mut Side {
    if who == 0 {
        &mut p.a
    } else {
        &mut p.b
    }
}

/// Side `who` sends its next message, of `size` bytes (at least its
/// number); taken or not, as the connection says.
fn send(p: &mut Pair, who: usize, ledger: &mut Ledger, size: usize) {
    let n = ledger.next;
    let mut msg = n.to_be_bytes().to_vec();
    msg.resize(size.max(4), (n % 251) as u8);
    if let Ok(true) = side(p, who).conn.send(&msg, false) {
        ledger.taken.push(n);
        ledger.next += 1;
    }
    side(p, who).poll();
}

/// Moves at most `chunk` bytes from side `who` to the other, or the end
/// of its bytes, or its reset, as a socket would.
fn deliver(p: &mut Pair, who: usize, chunk: usize) {
    let now = p.now;
    let (src, dst) = if who == 0 {
        (&mut p.a, &mut p.b)
    } else {
        (&mut p.b, &mut p.a)
    };
    src.transmit();
    src.poll();
    if dst.released {
        if !src.pipe.is_empty() {
            // Bytes for a closed socket: it answers with a reset.
            src.pipe.clear();
            dst.reset = true;
        }
        return;
    }
    if !dst.reading {
        return;
    }
    if !src.pipe.is_empty() {
        let n = src.pipe.len().min(chunk);
        let bytes: Vec<u8> = src.pipe.drain(..n).collect();
        let got = &mut dst.got;
        dst.conn.on_bytes(&bytes, now, &mut |m| got.push(m));
    } else if src.reset && !src.reset_delivered {
        src.reset_delivered = true;
        dst.conn.on_error(crate::error::Error::ConnectionReset {
            addr: Addr::Unknown,
        });
    } else if src.shut && !dst.eof_delivered {
        dst.eof_delivered = true;
        dst.conn.on_eof(now);
    }
    dst.poll();
}

/// The clock jumps by `by`; both sides' timers run.
fn advance(p: &mut Pair, by: Duration) {
    p.now += by;
    for s in [&mut p.a, &mut p.b] {
        if !s.released {
            s.conn.handle_timeout(p.now);
            s.poll();
        }
    }
}

/// The number a received message carries, if it is one of ours.
fn number(m: &[u8]) -> Option<u32> {
    let n = u32::from_be_bytes(m.get(..4)?.try_into().ok()?);
    let fill = (n % 251) as u8;
    m[4..].iter().all(|&b| b == fill).then_some(n)
}

fn check(p: &Pair, ledgers: &[Ledger; 2], hostile: bool, at_last: bool) {
    for (who, s) in [&p.a, &p.b].into_iter().enumerate() {
        assert!(s.ends.len() <= 1, "side {who} ended twice: {:?}", s.ends);
        assert!(
            !(s.answered && (s.established > 0 || !s.ends.is_empty())),
            "side {who} answered as plain HTTP and a conversation: {:?}",
            s.ends
        );
        if at_last && !s.answered {
            assert_eq!(s.ends.len(), 1, "side {who} never ended");
        }
        if hostile {
            continue;
        }
        // What this side got is what the other took, in order, each once.
        let sent = &ledgers[1 - who].taken;
        let got: Vec<u32> = s
            .got
            .iter()
            .map(|m| number(m).expect("a message of the peer's"))
            .collect();
        assert!(
            sent.starts_with(&got),
            "side {who} got {got:?} of {sent:?} taken"
        );
        // When this side's end is the peer's clean end, everything the
        // peer took arrived (checked at last: until then, bytes may still
        // be on the way). A side that closed or aborted first is done
        // receiving: what came after is not its program's.
        let peer = if who == 0 { &p.b } else { &p.a };
        let clean = s.ends.first().is_some_and(|e| e == "Peer");
        if at_last && clean {
            assert_eq!(
                &got, sent,
                "side {who}: the peer's clean end, yet not everything it took arrived (the peer: {:?})",
                peer.ends
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every input of the fuzz target's corpus, replayed.
    #[test]
    fn the_corpus_replays() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/connection_pair");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).expect("the corpus") {
            let path = entry.expect("an entry").path();
            let data = std::fs::read(&path).expect("an input");
            if let Err(panic) = std::panic::catch_unwind(|| connection_pair(&data)) {
                eprintln!("failing input: {}", path.display());
                std::panic::resume_unwind(panic);
            }
            count += 1;
        }
        assert!(count > 0, "no corpus in {}", dir.display());
    }

    proptest::proptest! {
        /// Random inputs on the stable toolchain, between fuzzing runs
        /// (`PROPTEST_CASES` says how many; 256 by default).
        #[test]
        fn random_inputs_hold_the_invariants(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            connection_pair(&data);
        }
    }
}
