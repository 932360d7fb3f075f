//! The connection's promises, on pairs of connections with a fake clock:
//! bytes move between them through in-memory pipes, time moves when a test
//! says so, and nothing sleeps.

use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::prelude::*;

use super::pair::{framed_pair, settings, Pair, Side};
use super::*;
use crate::addr::Addr;

#[cfg(feature = "tls")]
pub(super) use crate::test_certs as certs;

fn texts(got: &[Bytes]) -> Vec<&str> {
    got.iter()
        .map(|m| std::str::from_utf8(m).unwrap())
        .collect()
}

/// A closes; B sees the end and finishes its side at its next turn; A's
/// close is confirmed and both are released (bytes moved in `chunk`s).
fn close_and_confirm(p: &mut Pair, chunk: usize) {
    p.a.conn.close(p.now);
    p.drive_with(chunk);
    assert_eq!(p.b.ends, ["Peer"], "chunk {chunk}");
    p.b.conn.finish(p.now);
    p.drive_with(chunk);
    assert_eq!(p.a.ends, ["Closed(Confirmed)"], "chunk {chunk}");
    assert!(p.a.released && p.b.released, "chunk {chunk}");
}

#[test]
fn messages_cross_split_at_any_byte_and_a_close_is_confirmed() {
    for chunk in [1, 3, 7, 1 << 20] {
        let mut p = framed_pair(Instant::now());
        for m in ["one", "", "three"] {
            assert!(p.a.conn.send(m.as_bytes(), false).unwrap());
        }
        p.drive_with(chunk);
        assert_eq!(texts(&p.b.got), ["one", "", "three"]);
        close_and_confirm(&mut p, chunk);
    }
}

#[test]
fn replies_to_the_messages_that_came_with_the_peers_end_are_delivered() {
    let mut p = framed_pair(Instant::now());
    p.a.conn.send(b"question 1", false).unwrap();
    p.a.conn.send(b"question 2", false).unwrap();
    // A's messages and its end arrive at B in one turn.
    p.a.conn.finish(p.now);
    p.drive();
    assert_eq!(texts(&p.b.got), ["question 1", "question 2"]);
    assert_eq!(p.b.ends, ["Peer"]);
    // Handling those messages, B replies: taken, not refused.
    assert!(p.b.conn.send(b"answer 1", false).unwrap());
    assert!(p.b.conn.send(b"answer 2", false).unwrap());
    p.b.conn.finish(p.now);
    p.drive();
    assert_eq!(texts(&p.a.got), ["answer 1", "answer 2"]);
    assert!(p.b.released, "B's end went after its replies");
    assert_eq!(p.b.ends, ["Peer"], "and its end was said once");
}

#[test]
fn the_end_does_not_depend_on_how_the_facts_were_batched() {
    // The peer's last message, its end, then a reset: read in one turn
    // (one poll after all three) or in three, the end is the peer's, and a
    // close afterwards says the reset.
    let reset = || crate::error::Error::ConnectionReset {
        addr: Addr::Unknown,
    };
    for batched in [true, false] {
        let mut p = framed_pair(Instant::now());
        let side = &mut p.b;
        let got = &mut side.got;
        side.conn.on_bytes(
            &[0, 0, 0, 4, b'l', b'a', b's', b't'],
            p.now,
            &mut |m: Bytes| got.push(m),
        );
        if !batched {
            side.poll();
        }
        side.conn.on_eof(p.now);
        if !batched {
            side.poll();
        }
        side.conn.on_error(reset());
        side.poll();
        assert_eq!(texts(&side.got), ["last"]);
        assert_eq!(side.ends, ["Peer"], "batched: {batched}");
        side.conn.close(p.now);
        assert!(
            matches!(
                side.conn.link.poll_close(),
                Some(Err(crate::error::Error::ConnectionReset { .. }))
            ),
            "batched: {batched}"
        );
    }
}

#[test]
fn a_reset_after_the_peers_end_is_said_once_and_fails_a_close() {
    // B half-closes; A has a lot queued for B that B never reads, then B
    // resets.
    let mut p = framed_pair(Instant::now());
    p.b.conn.finish(p.now);
    p.a.window = 4096;
    p.drive();
    p.b.reading = false;
    for _ in 0..64 {
        p.a.conn.send(&[7; 1024], false).unwrap();
    }
    p.drive();
    assert_eq!(p.a.ends, ["Peer"]);
    p.a.conn.finish(p.now);
    p.b.conn.abort();
    p.drive();
    assert_eq!(p.a.ends, ["Peer"], "no second end");
    assert!(p.a.released);

    // The same reset while A is closing: its close says so.
    let mut p = framed_pair(Instant::now());
    p.a.conn.send(b"unread", false).unwrap();
    p.a.conn.close(p.now);
    p.b.conn.abort();
    p.drive();
    assert_eq!(p.a.ends.len(), 1);
    assert!(p.a.ends[0].contains("reset"), "{:?}", p.a.ends);
}

#[test]
fn close_is_bounded_by_the_linger_time_on_the_fake_clock() {
    // B never reads and never ends: A's close gives up at the linger.
    let mut p = framed_pair(Instant::now());
    p.a.window = 100;
    p.b.reading = false;
    p.a.conn.send(&[1; 1000], false).unwrap();
    p.a.conn.close(p.now);
    p.drive();
    assert!(p.a.ends.is_empty());
    p.advance(Duration::from_secs(4));
    assert!(p.a.ends.is_empty());
    p.advance(Duration::from_secs(1));
    assert_eq!(p.a.ends.len(), 1);
    assert!(p.a.ends[0].contains("never sent"), "{:?}", p.a.ends);
    assert!(p.a.released && p.a.reset, "released with a reset");

    // Everything written, but the peer never ends: Unknown.
    let mut p = framed_pair(Instant::now());
    p.a.conn.send(b"hi", false).unwrap();
    p.a.conn.close(p.now);
    p.drive();
    assert_eq!(texts(&p.b.got), ["hi"]);
    p.advance(Duration::from_secs(5));
    assert_eq!(p.a.ends, ["Closed(Unknown)"]);
}

#[test]
fn the_message_deadline_counts_from_the_first_byte_by_the_fake_clock() {
    let mut p = framed_pair(Instant::now());
    p.b.conn
        .on_bytes(&[0, 0, 0, 9, b'a'], p.now, &mut |_: Bytes| {});
    assert_eq!(
        p.b.conn.poll_timeout(),
        Some(p.now + Config::DEFAULT_MESSAGE_DEADLINE)
    );
    p.advance(Duration::from_secs(29));
    assert!(p.b.ends.is_empty());
    p.advance(Duration::from_secs(1));
    assert_eq!(p.b.ends.len(), 1);
    assert!(p.b.ends[0].contains("deadline"), "{:?}", p.b.ends);
}

use crate::Config;

/// The facts an ordering test applies to one side of a pair.
#[derive(Clone, Copy, Debug)]
enum Fact {
    /// The other side ends cleanly (its FIN, or its close frame).
    PeerFinish,
    /// The other side resets.
    PeerReset,
    /// The other side closes.
    PeerClose,
    /// This side closes.
    Close,
    /// This side finishes (a switchboard after the peer's end).
    Finish,
    /// This side aborts.
    Abort,
    /// This side sends a message.
    Send,
    /// The other side sends a message.
    PeerSend,
    /// Time passes.
    Wait(u8),
    /// Bytes move.
    Drive,
}

fn fact() -> impl Strategy<Value = Fact> {
    prop_oneof![
        Just(Fact::PeerFinish),
        Just(Fact::PeerReset),
        Just(Fact::PeerClose),
        Just(Fact::Close),
        Just(Fact::Finish),
        Just(Fact::Abort),
        Just(Fact::Send),
        Just(Fact::PeerSend),
        (0u8..8).prop_map(Fact::Wait),
        Just(Fact::Drive),
    ]
}

fn apply(p: &mut Pair, fact: Fact) {
    match fact {
        Fact::PeerFinish => p.b.conn.finish(p.now),
        Fact::PeerReset => p.b.conn.abort(),
        Fact::PeerClose => p.b.conn.close(p.now),
        Fact::Close => p.a.conn.close(p.now),
        Fact::Finish => p.a.conn.finish(p.now),
        Fact::Abort => p.a.conn.abort(),
        Fact::Send => {
            let _ = p.a.conn.send(b"from a", false);
        }
        Fact::PeerSend => {
            let _ = p.b.conn.send(b"from b", false);
        }
        Fact::Wait(s) => p.advance(Duration::from_secs(u64::from(s))),
        Fact::Drive => p.drive(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever order the peer's end, its reset, our close, our finish and
    /// an abort come in, each side reports exactly one end, and every
    /// message the peer sent before its end arrives once, in order.
    #[test]
    fn every_order_of_ends_reports_exactly_one_end(facts in proptest::collection::vec(fact(), 0..12)) {
        let mut p = framed_pair(Instant::now());
        for f in facts {
            apply(&mut p, f);
            prop_assert!(p.a.ends.len() <= 1 && p.b.ends.len() <= 1, "{:?} {:?}", p.a.ends, p.b.ends);
        }
        // Both sides end their own way at last; time passes.
        p.a.conn.close(p.now);
        p.b.conn.close(p.now);
        p.settle();
        prop_assert_eq!(p.a.ends.len(), 1, "a: {:?}", p.a.ends);
        prop_assert_eq!(p.b.ends.len(), 1, "b: {:?}", p.b.ends);
        prop_assert!(p.a.released && p.b.released);
        for side in [&p.a, &p.b] {
            prop_assert!(side.got.iter().all(|m| m == &b"from a"[..] || m == &b"from b"[..]));
        }
    }
}

// ---------------------------------------------------------------------------
// TLS.

#[cfg(feature = "tls")]
mod tls {
    use super::*;

    use super::certs;

    fn settings_pair() -> (crate::tls::TlsClient, crate::tls::TlsServer) {
        let ca = certs::Authority::new("test CA");
        let server = ca.issue(certs::Role::Server, "localhost", &["localhost"]);
        (
            crate::tls::TlsClient::trusting_ca_pem(ca.cert_pem()).unwrap(),
            crate::tls::TlsServer::from_pem(&server.cert_pem, &server.key_pem).unwrap(),
        )
    }

    /// WebSocket over TLS: a client that sends and closes before either
    /// handshake is over; its messages, then its close frame, then
    /// `close_notify`, all in order, and both ends clean.
    #[cfg(feature = "ws")]
    #[test]
    fn a_wss_client_closing_during_its_handshakes_holds_everything_in_order() {
        let (client, server) = settings_pair();
        let s = settings(None);
        let now = Instant::now();
        let name = crate::tls::server_name("localhost").unwrap();
        let stack = Stack::WsClient {
            authority: "localhost:443".into(),
            path: "/".into(),
        };
        let a = Conn::new(
            stack,
            Security::Client(client, name),
            &s,
            Addr::Unknown,
            now,
        );
        let b = Conn::new(
            Stack::WsServer { page: None },
            Security::Server(server),
            &s,
            Addr::Unknown,
            now,
        );
        let mut p = Pair::new(a.unwrap(), b.unwrap(), now);
        for m in ["one", "two"] {
            assert!(p.a.conn.send(m.as_bytes(), false).unwrap());
        }
        p.a.conn.close(p.now);
        for chunk in [1, 7, 1 << 20] {
            p.drive_with(chunk);
        }
        assert_eq!(texts(&p.b.got), ["one", "two"]);
        assert_eq!(p.b.ends, ["Peer"]);
        p.b.conn.finish(p.now);
        p.drive();
        assert_eq!(p.a.ends, ["Closed(Confirmed)"]);
        assert!(p.a.released && p.b.released);
    }

    pub(super) fn tls_pair(now: Instant) -> Pair {
        let (client, server) = settings_pair();
        let s = settings(None);
        let name = crate::tls::server_name("localhost").unwrap();
        let a = Conn::new(
            Stack::Framed,
            Security::Client(client, name),
            &s,
            Addr::Unknown,
            now,
        )
        .unwrap();
        let b = Conn::new(
            Stack::Framed,
            Security::Server(server),
            &s,
            Addr::Unknown,
            now,
        )
        .unwrap();
        Pair::new(a, b, now)
    }

    #[test]
    fn a_handshake_by_bytes_then_messages_and_a_confirmed_close() {
        for chunk in [1, 5, 100, 1 << 20] {
            let mut p = tls_pair(Instant::now());
            // Sent before the handshake is over: it waits for it.
            p.a.conn.send(b"early", false).unwrap();
            p.drive_with(chunk);
            assert_eq!((p.a.established, p.b.established), (1, 1), "chunk {chunk}");
            assert!(p.b.conn.link.tls.as_ref().unwrap().identity().is_none());
            assert!(p.a.conn.link.tls.as_ref().unwrap().identity().is_some());
            p.b.conn.send(b"late", false).unwrap();
            p.drive_with(chunk);
            assert_eq!(texts(&p.b.got), ["early"]);
            assert_eq!(texts(&p.a.got), ["late"]);
            // close_notify, then the end.
            close_and_confirm(&mut p, chunk);
        }
    }

    /// Ciphertext that a full socket did not take is counted as queued
    /// (a driver that sees nothing queued writes no more), and goes out
    /// whole once the socket takes it.
    #[test]
    fn ciphertext_a_full_socket_left_is_still_queued() {
        let mut p = tls_pair(Instant::now());
        p.drive();
        p.a.window = 1000;
        let big = vec![7u8; 64 * 1024];
        assert!(p.a.conn.send(&big, false).unwrap());
        p.a.transmit();
        assert_eq!(p.a.pipe.len(), 1000);
        assert!(p.a.conn.queued() > 60 * 1024, "{}", p.a.conn.queued());
        p.a.window = usize::MAX;
        p.drive();
        assert_eq!(p.b.got.len(), 1);
        assert_eq!(p.b.got[0].len(), big.len());
        assert_eq!(p.a.conn.queued(), 0);
    }

    /// A message encrypted straight from the caller's slice is taken
    /// only when nothing is queued ahead of it: behind ciphertext a full
    /// socket left, it waits its turn (a driver then times it out, and
    /// nothing piles up beyond the queue's bound).
    #[test]
    fn nothing_is_encrypted_past_ciphertext_still_queued() {
        let mut p = tls_pair(Instant::now());
        p.drive();
        p.a.window = 10;
        let big = vec![7u8; 9000];
        let framed = [&4u32.to_be_bytes()[..], &big[..4]];
        assert!(p.a.conn.link.encrypt_direct(&framed, 8) > 0);
        p.a.transmit();
        assert!(p.a.conn.queued() > 0, "ciphertext left by the socket");
        let queued = p.a.conn.queued();
        assert_eq!(p.a.conn.link.encrypt_direct(&framed, 8), 0);
        assert_eq!(p.a.conn.queued(), queued);
        p.a.window = usize::MAX;
        p.drive();
        assert_eq!(p.a.conn.queued(), 0);
        assert!(p.a.conn.link.encrypt_direct(&framed, 8) > 0, "free again");
    }

    #[test]
    fn close_notify_then_a_reset_is_one_end() {
        let mut p = tls_pair(Instant::now());
        p.drive();
        p.b.conn.send(b"last", false).unwrap();
        p.b.conn.finish(p.now);
        p.b.transmit();
        assert!(p.b.shut, "close_notify and the end are on the wire");
        p.b.conn.abort();
        p.b.poll();
        p.drive();
        assert_eq!(texts(&p.a.got), ["last"]);
        assert_eq!(p.a.ends, ["Peer"]);
        // A's own close after that: the reset makes it a failure, said to
        // the caller of close, but the end was reported once.
        p.a.conn.close(p.now);
        p.settle();
        assert_eq!(p.a.ends, ["Peer"]);
    }

    #[test]
    fn plaintext_to_a_tls_server_is_one_typed_failure_and_a_slow_handshake_times_out() {
        let mut p = tls_pair(Instant::now());
        p.b.conn
            .on_bytes(b"GET / HTTP/1.1\r\n\r\n", p.now, &mut |_: Bytes| {});
        p.b.poll();
        assert_eq!(p.b.ends.len(), 1);
        assert!(p.b.ends[0].contains("not TLS"), "{:?}", p.b.ends);

        // A client that says nothing: the server gives up at its deadline.
        let mut p = tls_pair(Instant::now());
        p.a.reading = false;
        p.b.reading = false;
        p.advance(Config::DEFAULT_HANDSHAKE_TIMEOUT - Duration::from_millis(1));
        assert!(p.b.ends.is_empty());
        p.advance(Duration::from_millis(1));
        assert_eq!(p.b.ends.len(), 1);
        assert!(
            p.b.ends[0].contains("did not finish in time"),
            "{:?}",
            p.b.ends
        );
    }

    #[test]
    fn a_connection_cut_inside_a_record_is_not_a_clean_end() {
        let mut p = tls_pair(Instant::now());
        p.drive();
        p.b.conn.send(b"cut short", false).unwrap();
        p.b.transmit();
        // Half the record arrives, then the end of the bytes.
        let n = p.b.pipe.len() / 2;
        let bytes: Vec<u8> = p.b.pipe.drain(..n).collect();
        p.b.pipe.clear();
        p.a.conn.on_bytes(&bytes, p.now, &mut |_: Bytes| {});
        p.a.conn.on_eof(p.now);
        p.a.poll();
        assert_eq!(p.a.ends.len(), 1);
        assert!(
            p.a.ends[0].contains("middle of a message"),
            "{:?}",
            p.a.ends
        );

        // Between records, without close_notify: told apart.
        let mut p = tls_pair(Instant::now());
        p.drive();
        p.a.conn.on_eof(p.now);
        p.a.poll();
        assert!(
            p.a.ends[0].contains("without TLS close_notify"),
            "{:?}",
            p.a.ends
        );
    }
}

// ---------------------------------------------------------------------------
// WebSocket.

#[cfg(feature = "ws")]
mod ws {
    use super::*;
    use crate::ws::frames::{encode, OpCode};

    fn page() -> Option<std::sync::Arc<crate::ws::Page>> {
        Some(std::sync::Arc::new(crate::ws::Page::html("<p>room</p>")))
    }

    fn ws_pair(now: Instant, backlog: Option<usize>) -> Pair {
        let s = settings(backlog);
        let a = Conn::new(
            Stack::WsClient {
                authority: "127.0.0.1:80".into(),
                path: "/".into(),
            },
            Security::Plain,
            &s,
            Addr::Unknown,
            now,
        )
        .unwrap();
        let b = Conn::new(
            Stack::WsServer { page: page() },
            Security::Plain,
            &s,
            Addr::Unknown,
            now,
        )
        .unwrap();
        Pair::new(a, b, now)
    }

    /// A server alone, fed bytes by the test (a hostile client).
    fn server(now: Instant, backlog: Option<usize>) -> Side {
        let mut p = ws_pair(now, backlog);
        p.drive();
        assert_eq!(p.b.established, 1);
        p.b
    }

    fn masked(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        let mut f = bytes::BytesMut::new();
        encode(opcode, payload, Some([1, 2, 3, 4]), &mut f);
        f.to_vec()
    }

    #[test]
    fn an_upgrade_then_messages_both_ways_and_the_close_handshake() {
        for chunk in [1, 2, 9, 1 << 20] {
            let mut p = ws_pair(Instant::now(), None);
            p.a.conn.send(b"hello", true).unwrap();
            p.drive_with(chunk);
            assert_eq!((p.a.established, p.b.established), (1, 1));
            assert_eq!(texts(&p.b.got), ["hello"]);
            p.b.conn.send(b"hi", true).unwrap();
            p.drive_with(chunk);
            assert_eq!(texts(&p.a.got), ["hi"]);
            close_and_confirm(&mut p, chunk);
        }
    }

    #[test]
    fn a_client_holds_its_messages_and_its_close_until_the_server_said_101() {
        let mut p = ws_pair(Instant::now(), None);
        p.a.conn.send(b"early", false).unwrap();
        p.a.conn.close(p.now);
        p.a.transmit();
        let request: Vec<u8> = p.a.pipe.iter().copied().collect();
        assert!(request.starts_with(b"GET / HTTP/1.1\r\n"));
        assert!(request.ends_with(b"\r\n\r\n"), "the request alone");
        assert!(p.a.conn.queued() > 0, "the message waits");
        p.drive();
        assert_eq!(texts(&p.b.got), ["early"]);
        assert_eq!(p.b.ends, ["Peer"], "then the close frame");
        p.b.conn.finish(p.now);
        p.drive();
        assert_eq!(p.a.ends, ["Closed(Confirmed)"]);
    }

    #[test]
    fn replies_to_messages_that_came_with_the_close_frame_go_before_our_close() {
        let mut p = ws_pair(Instant::now(), None);
        p.drive();
        p.a.conn.send(b"q", false).unwrap();
        p.a.conn.close(p.now);
        p.drive();
        assert_eq!(texts(&p.b.got), ["q"]);
        assert_eq!(p.b.ends, ["Peer"]);
        assert!(p.b.conn.send(b"a", false).unwrap(), "a reply is taken");
        p.b.conn.finish(p.now);
        p.drive();
        assert_eq!(texts(&p.a.got), ["a"]);
        assert_eq!(p.a.ends, ["Closed(Confirmed)"]);
    }

    /// What the server wrote, until its end.
    fn written(side: &mut Side) -> Vec<u8> {
        side.transmit();
        side.pipe.drain(..).collect()
    }

    #[test]
    fn protocol_violations_get_their_close_frame_before_the_end() {
        let cases: Vec<(Vec<u8>, u16)> = vec![
            // Unmasked from a client.
            (vec![0x82, 0x01, b'x'], 1002),
            // A reserved bit.
            (vec![0xc2, 0x80, 0, 0, 0, 0], 1002),
            // A header declaring 2^62 bytes.
            (
                [
                    &[0x82u8, 0xff][..],
                    &(1u64 << 62).to_be_bytes(),
                    &[0, 0, 0, 0],
                ]
                .concat(),
                1009,
            ),
            // Text that is not UTF-8.
            (masked(OpCode::Text, &[b'a', 0xff]), 1007),
        ];
        for (bytes, code) in cases {
            let mut b = server(Instant::now(), Some(64 * 1024));
            b.conn.on_bytes(&bytes, Instant::now(), &mut |_: Bytes| {});
            b.poll();
            assert_eq!(b.ends.len(), 1, "{bytes:?}");
            let out = written(&mut b);
            let close = [0x88, 0x02, (code >> 8) as u8, code as u8];
            assert!(out.ends_with(&close), "{code}: {out:?}");
            assert!(b.shut, "the end follows the close frame");
            b.poll();
            assert!(b.released);
        }
    }

    #[test]
    fn a_ping_flood_from_a_peer_that_never_reads_costs_one_pong() {
        let mut b = server(Instant::now(), Some(64 * 1024));
        b.window = 4096; // its socket fills: the client reads nothing
        let ping = masked(OpCode::Ping, &[7; 125]);
        let mut max_queued = 0;
        for _ in 0..100_000 {
            b.conn.on_bytes(&ping, Instant::now(), &mut |_: Bytes| {});
            b.transmit();
            b.poll();
            max_queued = max_queued.max(b.conn.queued());
        }
        assert!(b.ends.is_empty(), "{:?}", b.ends);
        assert!(max_queued <= 2 * 129, "{max_queued} bytes queued");
    }

    #[test]
    fn every_plain_request_gets_an_answer_and_is_never_a_conversation() {
        for (request, status) in [
            ("GET / HTTP/1.1\r\nHost: x\r\n\r\n", "200 OK"),
            ("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", "200 OK"),
            (
                "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                "405 ",
            ),
            ("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", "404 "),
        ] {
            let s = settings(None);
            let mut b = Side::new(
                Conn::new(
                    Stack::WsServer { page: page() },
                    Security::Plain,
                    &s,
                    Addr::Unknown,
                    Instant::now(),
                )
                .unwrap(),
            );
            b.conn
                .on_bytes(request.as_bytes(), Instant::now(), &mut |_: Bytes| {});
            let out = String::from_utf8(written(&mut b)).unwrap();
            assert!(out.starts_with(&format!("HTTP/1.1 {status}")), "{out}");
            assert!(b.shut, "answered, then our end");
            b.poll();
            assert!(b.ends.is_empty() && b.established == 0 && b.answered);
            assert!(b.conn.link.was_answered());
        }
    }

    #[test]
    fn a_client_cut_in_the_middle_of_its_upgrade_is_a_websocket_error() {
        let s = settings(None);
        let mut b = Side::new(
            Conn::new(
                Stack::WsServer { page: None },
                Security::Plain,
                &s,
                Addr::Unknown,
                Instant::now(),
            )
            .unwrap(),
        );
        b.conn.on_bytes(
            b"GET / HTTP/1.1\r\nHost:",
            Instant::now(),
            &mut |_: Bytes| {},
        );
        b.conn.on_eof(Instant::now());
        b.poll();
        assert_eq!(b.ends.len(), 1);
        assert!(
            b.ends[0].contains("bad WebSocket handshake"),
            "{:?}",
            b.ends
        );
    }
}

// ---------------------------------------------------------------------------
// NATS.

#[cfg(feature = "nats")]
mod nats {
    use super::*;

    fn client(now: Instant) -> Side {
        let sub = crate::nats::session::Subscription {
            subject: std::sync::Arc::from("chat"),
            queue: None,
            creds: Default::default(),
        };
        Side::new(
            Conn::new(
                Stack::Nats {
                    sub: std::sync::Arc::new(sub),
                    #[cfg(feature = "tls")]
                    tls: None,
                },
                Security::Plain,
                &settings(None),
                Addr::Unknown,
                now,
            )
            .unwrap(),
        )
    }

    fn feed(c: &mut Side, bytes: &[u8], now: Instant) {
        let got = &mut c.got;
        c.conn.on_bytes(bytes, now, &mut |m: Bytes| got.push(m));
        c.poll();
    }

    fn written(c: &mut Side) -> String {
        c.transmit();
        String::from_utf8(c.pipe.drain(..).collect()).unwrap()
    }

    #[test]
    fn connect_subscribe_receive_and_answer_pings() {
        let t0 = Instant::now();
        let mut c = client(t0);
        assert_eq!(written(&mut c), "", "nothing before the server's INFO");
        feed(&mut c, b"INFO {\"max_payload\":4}\r\n", t0);
        let hello = written(&mut c);
        assert!(hello.starts_with("CONNECT ") && hello.ends_with("SUB chat 1\r\nPING\r\n"));
        assert_eq!(c.established, 0);
        feed(
            &mut c,
            b"PONG\r\nMSG chat 1 2\r\nhi\r\nPING\r\nPING\r\n",
            t0,
        );
        assert_eq!(c.established, 1);
        assert_eq!(texts(&c.got), ["hi"]);
        assert_eq!(written(&mut c), "PONG\r\n", "two pings at once: one pong");
        // The server's limit is the conversation's.
        assert!(c.conn.send(b"12345", false).is_err());
        assert!(c.conn.send(b"1234", false).unwrap());
        assert_eq!(written(&mut c), "PUB chat 4\r\n1234\r\n");
    }

    #[test]
    fn messages_sent_before_the_subscription_stands_follow_it() {
        let t0 = Instant::now();
        let mut c = client(t0);
        assert!(c.conn.send(b"early", false).unwrap());
        assert_eq!(written(&mut c), "", "nothing before the server's INFO");
        feed(&mut c, b"INFO {}\r\n", t0);
        assert!(written(&mut c).ends_with("SUB chat 1\r\nPING\r\n"));
        feed(&mut c, b"PONG\r\n", t0);
        assert_eq!(written(&mut c), "PUB chat 5\r\nearly\r\n");
    }

    #[test]
    fn the_server_gone_or_refusing_is_one_typed_end() {
        let t0 = Instant::now();
        let mut c = client(t0);
        feed(&mut c, b"INFO {}\r\n", t0);
        feed(&mut c, b"-ERR 'Authorization Violation'\r\n", t0);
        c.conn.on_eof(t0);
        c.poll();
        assert_eq!(c.ends.len(), 1);
        assert!(
            c.ends[0].contains("Authorization Violation"),
            "{:?}",
            c.ends
        );

        let mut c = client(t0);
        feed(&mut c, b"INFO {}\r\nPONG\r\n", t0);
        c.conn.on_eof(t0);
        c.poll();
        assert_eq!(c.ends.len(), 1);
        assert!(c.ends[0].contains("is lost"), "{:?}", c.ends);
    }

    #[test]
    fn a_quiet_server_is_pinged_and_a_dead_one_given_up_by_the_fake_clock() {
        let t0 = Instant::now();
        let mut c = client(t0);
        feed(&mut c, b"INFO {}\r\nPONG\r\n", t0);
        let _ = written(&mut c);
        let every = Config::DEFAULT_PING_INTERVAL;
        assert_eq!(c.conn.poll_timeout(), Some(t0 + every));
        c.conn.handle_timeout(t0 + every);
        assert_eq!(written(&mut c), "PING\r\n");
        c.conn.handle_timeout(t0 + 2 * every);
        c.conn.handle_timeout(t0 + 3 * every);
        c.poll();
        assert_eq!(c.ends.len(), 1);
        assert!(c.ends[0].contains("answered no ping"), "{:?}", c.ends);
    }
}
