//! Hostile peers against a live server built on the crate: every case ends
//! in a typed error for that conversation only, while well-behaved peers are
//! served alongside and lose nothing.
//!
//! Further hostile cases live beside the feature they attack: `tcp.rs`
//! (oversize and 4 GiB headers, end of stream at every offset, slowloris,
//! timeout mid-frame, a reader that never reads, lingering close, half-close,
//! a peer that never ends), `sigpipe.rs` (writing to a closed peer), `udp.rs`
//! (truncation, oversize send, zero length, dead port, ICMP on the listener,
//! strangers, queue and peer caps).

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use converse::{Config, Conversation, Error, TcpListener, UdpListener};

/// The tests' echo server over TCP: its address, and each conversation's
/// outcome (`Ok(messages echoed)` or the error's text).
fn echo_server(config: &Config) -> (SocketAddr, mpsc::Receiver<Result<usize, String>>) {
    let echo = Echo::tcp(config);
    (echo.addr(), echo.outcomes)
}

/// A well-behaved client's round of `n` echoes, checked.
fn good_client_round(addr: SocketAddr, config: &Config, n: u32) {
    let mut c = client(addr, config);
    for i in 0..n {
        let msg = format!("well-behaved {i}");
        c.send(&msg).unwrap();
        assert_eq!(c.recv_text().unwrap().unwrap(), msg);
    }
    c.close().unwrap();
}

/// The process's resident set, from /proc (Linux).
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[test]
fn u32_max_and_max_plus_one_headers_end_only_their_conversation() {
    let config = config();
    let (addr, outcomes) = echo_server(&config);
    let max = config.max_message_len() as u64;
    for declared in [u64::from(u32::MAX), max + 1] {
        let mut hostile = raw_client(addr);
        write_all(&mut hostile, &(declared as u32).to_be_bytes());
        let mut rest = Vec::new();
        let _ = hostile.read_to_end(&mut rest); // closed: an end or a reset
        assert!(rest.is_empty());
        let outcome = outcomes.recv_timeout(T).unwrap();
        assert_eq!(
            outcome,
            Err(format!(
                "message of {declared} bytes is larger than the limit of {max} bytes"
            ))
        );
        good_client_round(addr, &config, 10);
        assert_eq!(outcomes.recv_timeout(T).unwrap(), Ok(10));
    }
}

#[cfg(target_os = "linux")]
#[test]
fn five_hundred_max_size_headers_cost_what_arrived_not_500_times_the_maximum() {
    const CONNECTIONS: usize = 500;
    let config = config();
    let max = config.max_message_len();
    let listener =
        TcpListener::bind_with("127.0.0.1:0", &config.clone().with_backlog(1024)).unwrap();
    let addr = listener.local_addr().unwrap().socket_addr().unwrap();
    let (ready_tx, ready) = mpsc::channel();
    let (release_tx, release) = mpsc::channel::<()>();
    let server = spawn(move || {
        let mut conversations = Vec::new();
        for _ in 0..CONNECTIONS {
            let mut c = Conversation::new(listener.accept().unwrap());
            // Short: the receives below wait out their timeouts one by one.
            c.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
            conversations.push(c);
        }
        // Every conversation reads its header and what follows, and waits
        // for the rest of a message that never comes.
        for (i, c) in conversations.iter_mut().enumerate() {
            let outcome = c.recv();
            assert!(
                matches!(outcome, Err(Error::Timeout)),
                "conversation {i}: {outcome:?}"
            );
        }
        ready_tx.send(()).unwrap();
        let _ = release.recv_timeout(2 * T);
        conversations.len()
    });
    let before = rss_bytes().unwrap();
    let mut hostiles = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut s = raw_client(addr);
        write_all(&mut s, &(max as u32).to_be_bytes());
        write_all(&mut s, &[0x55; 1000]);
        hostiles.push(s);
    }
    ready
        .recv_timeout(2 * T)
        .expect("the server read every header");
    let grown = rss_bytes().unwrap().saturating_sub(before);
    let received = CONNECTIONS as u64 * 1004;
    println!(
        "{CONNECTIONS} headers declaring {max} bytes each, {received} bytes received: RSS grew by {grown} bytes \
         (declared: {} bytes)",
        CONNECTIONS as u64 * max as u64
    );
    // A read buffer grows no further ahead than what arrived (8 KiB at
    // first); the rest is the sockets' and the conversations' own keep.
    assert!(
        grown < CONNECTIONS as u64 * 48 * 1024,
        "RSS grew by {grown} bytes for {received} bytes received"
    );
    release_tx.send(()).unwrap();
    assert_eq!(server.join(), CONNECTIONS);
}

#[test]
fn a_reset_in_the_middle_of_a_frame_is_a_reset_error() {
    let config = config();
    let (addr, outcomes) = echo_server(&config);
    let mut s = raw_client(addr);
    // One echo first: the server has accepted (a connection reset before
    // it is accepted is skipped, and would never be served).
    write_all(&mut s, &frame(b"ping"));
    let mut echo = [0u8; 8];
    s.read_exact(&mut echo).unwrap();
    (&s).write_all(&[0, 0, 0, 100, 1, 2, 3]).unwrap();
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(s);
    let outcome = outcomes.recv_timeout(T).unwrap().unwrap_err();
    assert!(outcome.contains("connection reset by peer"), "{outcome}");
    good_client_round(addr, &config, 5);
    assert_eq!(outcomes.recv_timeout(T).unwrap(), Ok(5));
}

#[test]
fn random_bytes_from_ten_connections_while_a_good_client_is_served() {
    let config = config().with_max_message_len(64 * 1024);
    let (addr, outcomes) = echo_server(&config);
    let noisy: Vec<_> = (0..10u64)
        .map(|seed| {
            spawn(move || {
                let mut rng = Rng::new(seed);
                let mut s = raw_client(addr);
                s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
                let mut sink = [0u8; 4096];
                for _ in 0..50 {
                    let n = (rng.next_u64() % 300) as usize + 1;
                    if s.write_all(&rng.bytes(n)).is_err() {
                        break; // the server gave up on us: that is the point
                    }
                    let _ = s.read(&mut sink);
                }
            })
        })
        .collect();
    for _ in 0..5 {
        good_client_round(addr, &config, 200);
    }
    for n in noisy {
        n.join();
    }
    // Every noisy conversation ended with an error or an end, the five
    // good ones with all their messages.
    let mut good = 0;
    for _ in 0..15 {
        if outcomes.recv_timeout(T).unwrap() == Ok(200) {
            good += 1;
        }
    }
    assert!(good >= 5, "the good client's conversations: {good}");
}

#[test]
fn send_then_close_at_once_delivers_everything_then_the_end_1000_times() {
    const N: usize = 10;
    let config = config();
    let listener =
        TcpListener::bind_with("127.0.0.1:0", &config.clone().with_backlog(128)).unwrap();
    let addr = listener.local_addr().unwrap().socket_addr().unwrap();
    let server = spawn(move || {
        for round in 0..1000 {
            let mut c = Conversation::new(listener.accept().unwrap());
            for i in 0..N {
                c.send(format!("round {round} message {i}")).unwrap();
            }
            c.close().unwrap();
        }
    });
    for round in 0..1000 {
        let mut c = client(addr, &config);
        for i in 0..N {
            assert_eq!(
                c.recv_text().unwrap().as_deref(),
                Some(format!("round {round} message {i}").as_str())
            );
        }
        assert_eq!(c.recv().unwrap(), None, "round {round}: the clean end");
        c.close().unwrap();
    }
    server.join();
}

#[test]
fn a_flood_of_new_udp_sources_is_capped_and_counted() {
    const SOURCES: usize = 500;
    let config = config().with_max_peers(100);
    let listener = UdpListener::bind_with("127.0.0.1:0", &config).unwrap();
    let to = listener.local_addr().unwrap().socket_addr().unwrap();
    let sockets: Vec<UdpSocket> = (0..SOURCES)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for (i, s) in sockets.iter().enumerate() {
        s.send_to(format!("source {i}").as_bytes(), to).unwrap();
    }
    let until = Instant::now() + T;
    let stats = loop {
        let stats = listener.stats();
        if stats.datagrams == SOURCES as u64 {
            break stats;
        }
        assert!(Instant::now() < until, "{stats:?}");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(stats.peers, 100, "{stats:?}");
    assert_eq!(stats.delivered, 100, "{stats:?}");
    assert_eq!(stats.dropped_peer_cap, (SOURCES - 100) as u64, "{stats:?}");
    // The hundred that got in are served.
    for _ in 0..100 {
        let mut c = Conversation::new(listener.accept().unwrap());
        assert!(c.recv_text().unwrap().unwrap().starts_with("source "));
    }
}

/// A datagram whose content is determined by its sequence number and size,
/// so that merging, splitting or corruption would be seen.
fn datagram(seq: u32) -> Vec<u8> {
    let len = 4 + (seq as usize * 7919) % 1400;
    let mut d = seq.to_be_bytes().to_vec();
    d.extend((4..len).map(|i| (seq as usize + i) as u8));
    d
}

fn check_datagram(d: &[u8]) -> u32 {
    let seq = u32::from_be_bytes(d[..4].try_into().unwrap());
    assert_eq!(d, datagram(seq), "datagram {seq} arrived altered");
    seq
}

#[test]
fn a_flood_of_datagrams_drops_but_never_merges_or_splits() {
    const SENT: u32 = 20_000;
    let config = config().with_queue_depth(64);
    let listener = UdpListener::bind_with("127.0.0.1:0", &config).unwrap();
    let to = listener.local_addr().unwrap().socket_addr().unwrap();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.connect(to).unwrap();
    sender.send(&datagram(0)).unwrap();
    let mut c = Conversation::new(listener.accept().unwrap());
    assert_eq!(check_datagram(&c.recv().unwrap().unwrap()), 0);
    // Unpaced, while the receiver dawdles: drops are expected.
    let flood = spawn(move || {
        for seq in 1..SENT {
            sender.send(&datagram(seq)).unwrap();
        }
    });
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut seen: HashMap<u32, usize> = HashMap::new();
    let mut last = 0;
    loop {
        match c.recv() {
            Ok(Some(d)) => {
                let seq = check_datagram(&d);
                assert!(seq > last, "reordered: {seq} after {last}");
                last = seq;
                *seen.entry(seq).or_default() += 1;
                if seen.len() % 97 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Err(Error::Timeout) => break,
            other => panic!("{other:?}"),
        }
    }
    flood.join();
    let stats = listener.stats();
    let received = seen.len() as u64 + 1;
    println!("flood: {SENT} sent, {received} received, listener {stats:?}");
    assert!(seen.values().all(|&n| n == 1), "duplicated datagrams");
    // What reached the listener's socket is either delivered or counted.
    assert_eq!(stats.delivered, received);
    assert_eq!(
        stats.datagrams,
        stats.delivered
            + stats.dropped_queue_full
            + stats.dropped_bytes_cap
            + stats.dropped_peer_cap
    );
    assert!(stats.datagrams <= u64::from(SENT));
}

// ---------------------------------------------------------------------------
// TLS

/// A TLS echo server: each conversation served on a thread (its handshake
/// in its first receive); outcomes as the TCP one's.
#[cfg(feature = "tls")]
fn tls_echo_server(config: &Config) -> Echo {
    Echo::serve(converse::listen_with("tls://127.0.0.1:0", &tls::config(config.clone())).unwrap())
}

/// A well-behaved TLS client's round of `n` echoes.
#[cfg(feature = "tls")]
fn good_tls_round(url: &str, config: &Config, n: u32) {
    let mut c = converse::connect_with(url, &tls::config(config.clone())).unwrap();
    for i in 0..n {
        let msg = format!("well-behaved {i}");
        c.send(&msg).unwrap();
        assert_eq!(c.recv_text().unwrap().unwrap(), msg);
    }
    c.close().unwrap();
}

/// What a real client sends, record by record: its ClientHello, then
/// (once the server answered) the rest of its handshake, then one framed
/// message; captured from rustls, so that a hostile peer can stop anywhere
/// in it.
#[cfg(feature = "tls")]
struct Script {
    hello: Vec<u8>,
}

#[cfg(feature = "tls")]
impl Script {
    fn client() -> rustls::ClientConnection {
        tls::rustls_client()
    }

    fn new() -> Script {
        let mut conn = Script::client();
        let mut hello = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut hello).unwrap();
        }
        Script { hello }
    }
}

#[cfg(feature = "tls")]
#[test]
fn plaintext_garbage_and_a_huge_record_header_on_a_tls_port_cost_one_connection_each() {
    let config = config();
    let echo = tls_echo_server(&config);
    let huge_record = [0x17, 0x03, 0x03, 0xff, 0xff]; // application data, 65535 bytes
    let huge_handshake = [0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0xff, 0xff, 0xff];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a framed plaintext message", frame(b"hello")),
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        ),
        ("garbage", (0..200u32).map(|i| (i * 37) as u8).collect()),
        ("a huge application data record", huge_record.to_vec()),
        ("a huge handshake record", huge_handshake.to_vec()),
    ];
    for (what, bytes) in cases {
        let mut s = raw_client(echo.addr());
        s.write_all(&bytes).unwrap();
        let _ = read_to_end(&mut s);
        let outcome = echo.outcome().unwrap_err();
        assert!(outcome.contains("TLS"), "{what}: {outcome}");
        assert!(!outcome.contains('\n'), "{what}: one line: {outcome}");
        good_tls_round(&echo.url, &config, 3);
        assert_eq!(echo.outcome(), Ok(3), "{what}");
    }
}

#[cfg(feature = "tls")]
#[test]
fn a_connection_cut_at_every_stage_of_tls_is_a_typed_error_for_it_alone() {
    let config = config();
    let echo = tls_echo_server(&config);
    let script = Script::new();
    // Cut after 0 bytes, in the middle of the ClientHello, right after it.
    for cut in [0, 1, 5, script.hello.len() / 2, script.hello.len()] {
        for reset in [false, true] {
            if reset && cut < script.hello.len() {
                // A reset that may come before the accept: the listener
                // skips such a connection unseen, so only a reset once the
                // server has answered is sure to be reported.
                continue;
            }
            let mut s = raw_client(echo.addr());
            s.write_all(&script.hello[..cut]).unwrap();
            if cut == script.hello.len() {
                // Wait for the server's answer: the handshake is under way.
                let mut first = [0u8; 1];
                s.read_exact(&mut first).unwrap();
            }
            if reset {
                socket2::SockRef::from(&s)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            drop(s);
            let outcome = echo.outcome().unwrap_err();
            assert!(
                outcome.contains("during the handshake") || outcome.contains("reset"),
                "cut at {cut}, reset {reset}: {outcome}"
            );
        }
    }
    // After the handshake: in the middle of a record, in the middle of a
    // message (whole records), between messages.
    for stage in ["mid-record", "mid-message", "between messages"] {
        let tcp = raw_client(echo.addr());
        let mut tls = rustls::StreamOwned::new(Script::client(), tcp);
        tls.write_all(&frame(b"first")).unwrap();
        let mut echoed = [0u8; 9];
        tls.read_exact(&mut echoed).unwrap();
        match stage {
            "mid-record" => {
                tls.conn.writer().write_all(&frame(b"second")).unwrap();
                let mut record = Vec::new();
                tls.conn.write_tls(&mut record).unwrap();
                tls.sock.write_all(&record[..record.len() / 2]).unwrap();
            }
            "mid-message" => tls.write_all(&frame(b"second")[..7]).unwrap(),
            _ => {}
        }
        tls.flush().unwrap();
        tls.sock.shutdown(std::net::Shutdown::Both).unwrap();
        let outcome = echo.outcome().unwrap_err();
        match stage {
            "mid-record" | "mid-message" => {
                assert!(
                    outcome.contains("in the middle of a message"),
                    "{stage}: {outcome}"
                )
            }
            _ => assert!(outcome.contains("close_notify"), "{stage}: {outcome}"),
        }
    }
    good_tls_round(&echo.url, &config, 5);
    assert_eq!(echo.outcome(), Ok(5));
}

#[cfg(feature = "tls")]
#[test]
fn a_client_hello_trickled_past_the_handshake_deadline_is_dropped() {
    let config = config().with_handshake_timeout(Duration::from_millis(300));
    let echo = tls_echo_server(&config);
    let script = Script::new();
    let mut s = raw_client(echo.addr());
    let started = Instant::now();
    // One byte every 50 ms: each arrives well within any read timeout, but
    // the whole hello would take seconds.
    let mut cut_off = false;
    for byte in &script.hello {
        if s.write_all(&[*byte]).is_err() {
            cut_off = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if started.elapsed() > T {
            break;
        }
    }
    let outcome = echo.outcome().unwrap_err();
    assert!(outcome.contains("did not finish in time"), "{outcome}");
    assert!(cut_off || started.elapsed() < T, "the server never let go");
    good_tls_round(&echo.url, &config, 2);
    assert_eq!(echo.outcome(), Ok(2));
}

#[cfg(all(feature = "tls", target_os = "linux"))]
#[test]
fn five_hundred_half_open_tls_handshakes_keep_rss_bounded() {
    use converse::switchboard::{Event, Events, Switchboard};
    const HALF_OPEN: usize = 500;
    let config = tls::config(config())
        .with_backlog(1024)
        .with_handshake_timeout(Duration::from_secs(30));
    let mut board = Switchboard::with_config(&config).unwrap();
    let listener = board.listen("tls://127.0.0.1:0").unwrap();
    let url = board.listener_addr(listener).unwrap().to_string();
    let addr = board
        .listener_addr(listener)
        .unwrap()
        .socket_addr()
        .unwrap();
    let (stop_tx, stop) = mpsc::channel::<()>();
    let (stats_tx, stats) = mpsc::channel();
    let server = spawn(move || {
        let mut events = Events::new();
        let mut accepted = 0;
        while stop.try_recv().is_err() {
            board
                .wait(&mut events, Some(Duration::from_millis(20)))
                .unwrap();
            for event in events.drain() {
                match event {
                    Event::Accepted { .. } => accepted += 1,
                    Event::Message { id, message } => {
                        let _ = board.send(id, &message);
                    }
                    _ => {}
                }
            }
            let _ = stats_tx.send(board.stats().conversations);
        }
        accepted
    });
    let script = Script::new();
    let before = rss_bytes().unwrap();
    // Each sends its ClientHello and never finishes the handshake.
    let mut hostiles = Vec::new();
    for _ in 0..HALF_OPEN {
        let mut s = raw_client(addr);
        s.write_all(&script.hello).unwrap();
        hostiles.push(s);
    }
    // Wait until the server holds them all (and has answered each).
    for s in &mut hostiles {
        let mut first = [0u8; 1];
        s.read_exact(&mut first).unwrap();
    }
    let grown = rss_bytes().unwrap().saturating_sub(before);
    println!("{HALF_OPEN} half-open TLS handshakes: RSS grew by {grown} bytes");
    assert!(
        grown < HALF_OPEN as u64 * 64 * 1024,
        "RSS grew by {grown} bytes for {HALF_OPEN} half-open handshakes"
    );
    // A real client is served all the same.
    good_tls_round(&url, &config, 3);
    let held = stats.try_iter().last().unwrap_or(0);
    assert!(held >= HALF_OPEN, "the server held {held} conversations");
    stop_tx.send(()).unwrap();
    assert_eq!(server.join(), 1, "only the real client was ever accepted");
    drop(hostiles);
}
