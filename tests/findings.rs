//! The findings the connection was rebuilt for, one test each, written
//! against the documented behaviour (each failed before). The masking
//! keys' source (from the operating system's random source, not a
//! predictable generator) is tested with the WebSocket frames.
//!
//! Every blocking call has a timeout, every loop is bounded in count and
//! time, every socket binds port 0 on 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use common::ws::{client_frame, read_head, UPGRADE};
use common::*;
use converse::switchboard::{serve, Event, Events, Switchboard};
use converse::{Delivery, Error};

// ---------------------------------------------------------------------------
// Helpers

/// Runs `board` for at most `within`: `step` gets `Some(event)` for every
/// event and then `None` after every wait, when what it returns says
/// whether it is done. `true` if it was done in time.
fn pump(
    board: &mut Switchboard,
    within: Duration,
    mut step: impl FnMut(&mut Switchboard, Option<Event>) -> bool,
) -> bool {
    let until = Instant::now() + within;
    let mut events = Events::new();
    while Instant::now() < until {
        board
            .wait(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        // Every event first (what `step` returns for one is not looked
        // at), then the question.
        for event in events.drain() {
            step(board, Some(event));
        }
        if step(board, None) {
            return true;
        }
    }
    false
}

fn listener_socket_addr(board: &Switchboard, l: converse::switchboard::ListenerId) -> SocketAddr {
    board.listener_addr(l).unwrap().socket_addr().unwrap()
}

/// Reads a raw stream until its end or an error (a reset), with the
/// stream's timeout: everything that arrived.
fn read_all(s: &mut TcpStream) -> (Vec<u8>, String) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        match s.read(&mut buf) {
            Ok(0) => break "end of stream".to_owned(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break format!("{:?}", e.kind()),
        }
    };
    (got, end)
}

/// A raw TCP client with a tiny receive buffer (so that what it does not
/// read soon stays with the sender).
fn small_window_client(addr: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect_timeout(&addr.into(), T).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(T)).unwrap();
    s.set_write_timeout(Some(T)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

// ---------------------------------------------------------------------------
// 1. Replies to a peer that half-closed

/// `End::Peer` says "what was queued for it is still written": a peer that
/// sends its requests and half-closes at once (requests and FIN in one
/// read) must still get its replies. The handler answers each message as
/// it comes, before it even sees the end.
#[test]
fn replies_to_messages_that_came_with_the_peers_half_close_are_sent() {
    let config = config().with_linger(Duration::from_secs(5));
    let mut board = Switchboard::with_config(&config).unwrap();
    let listener = board.listen("tcp://127.0.0.1:0").unwrap();
    let addr = listener_socket_addr(&board, listener);
    // Two requests and the half-close, all before the switchboard runs.
    let mut client = raw_client(addr);
    write_all(&mut client, &frame(b"one"));
    write_all(&mut client, &frame(b"two"));
    client.shutdown(Shutdown::Write).unwrap();
    let mut sends = Vec::new();
    let mut ended = None;
    run_until(&mut board, |board, event| {
        match event {
            Event::Message { id, message } => {
                let mut reply = b"re: ".to_vec();
                reply.extend_from_slice(&message);
                sends.push(format!("{:?}", board.send(id, reply)));
            }
            Event::Ended { end, .. } => ended = Some(format!("{end:?}")),
            _ => {}
        }
        ended.is_some()
    });
    // Let it write what it took, then go.
    let gone = pump(&mut board, T, |board, _| board.stats().conversations == 0);
    assert!(gone, "the conversation never went");
    let (got, end) = read_all(&mut client);
    assert_eq!(ended.as_deref(), Some("Peer"));
    assert_eq!(
        sends,
        vec!["Ok(())", "Ok(())"],
        "the replies to a half-closed peer's messages were refused"
    );
    let mut expected = frame(b"re: one");
    expected.extend_from_slice(&frame(b"re: two"));
    assert_eq!(got, expected, "then {end}");
    assert_eq!(end, "end of stream");
}

// ---------------------------------------------------------------------------
// 2. A conversation ends twice

/// "Every conversation ends exactly once": a peer that half-closes (its
/// end is reported, `End::Peer`) and then resets, while megabytes of
/// replies are still queued for it, must not be reported a second time.
#[test]
fn a_half_close_then_a_reset_with_replies_queued_is_one_end() {
    let config = config()
        .with_max_backlog(8 << 20)
        .with_linger(Duration::from_secs(3));
    let mut board = Switchboard::with_config(&config).unwrap();
    let listener = board.listen("tcp://127.0.0.1:0").unwrap();
    let addr = listener_socket_addr(&board, listener);
    let mut client = small_window_client(addr);
    write_all(&mut client, &frame(b"send me a lot"));
    // 4 MiB of replies, which the peer never reads.
    let mut id = None;
    run_until(&mut board, |board, event| {
        if let Event::Message { id: i, .. } = event {
            for _ in 0..64 {
                board.send(i, vec![7u8; 64 * 1024]).unwrap();
            }
            id = Some(i);
        }
        id.is_some()
    });
    let id = id.unwrap();
    let mut ends: Vec<String> = Vec::new();
    let record = |event: Option<Event>, ends: &mut Vec<String>| {
        if let Some(Event::Ended { id: i, end }) = event {
            if i == id {
                ends.push(format!("{end:?}"));
            }
        }
    };
    let mut events = Events::new();
    board.wait(&mut events, Some(Duration::ZERO)).unwrap();
    for event in events.drain() {
        record(Some(event), &mut ends);
    }
    let queued = board.queued(id).unwrap_or(0);
    assert!(queued > 1 << 20, "the replies were not held back: {queued}");
    // The peer's half-close: its end.
    client.shutdown(Shutdown::Write).unwrap();
    let reported = pump(&mut board, T, |_, event| {
        record(event, &mut ends);
        !ends.is_empty()
    });
    assert!(reported, "the half-close was never reported");
    assert!(board.queued(id).is_some(), "still writing: {ends:?}");
    // Then a reset.
    socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    // Until the conversation is gone (its linger time at most).
    let gone = pump(&mut board, Duration::from_secs(6), |board, event| {
        record(event, &mut ends);
        board.queued(id).is_none()
    });
    assert!(gone, "the conversation never went: {ends:?}");
    assert_eq!(ends, vec!["Peer"], "one conversation, {} ends", ends.len());
}

/// The same over TLS: the peer's close_notify is its end (`End::Peer`);
/// a reset right after it must not be a second end.
#[cfg(feature = "tls")]
#[test]
fn a_tls_close_notify_then_a_reset_is_one_end() {
    let config = tls::config(config()).with_linger(Duration::from_secs(3));
    let mut board = Switchboard::with_config(&config).unwrap();
    let listener = board.listen("tls://127.0.0.1:0").unwrap();
    let addr = listener_socket_addr(&board, listener);
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let client = spawn(move || {
        let tcp = raw_client(addr);
        let conn = tls::rustls_client();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        tls.write_all(&frame(b"hello")).unwrap();
        tls.flush().unwrap();
        go_rx.recv_timeout(T).unwrap();
        // close_notify, then a reset, before the switchboard looks again.
        tls.conn.send_close_notify();
        while tls.conn.wants_write() {
            tls.conn.write_tls(&mut tls.sock).unwrap();
        }
        socket2::SockRef::from(&tls.sock)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(tls);
    });
    let mut id = None;
    run_until(&mut board, |_, event| {
        if let Event::Message { id: i, message } = event {
            assert_eq!(message, "hello");
            id = Some(i);
        }
        id.is_some()
    });
    let id = id.unwrap();
    go_tx.send(()).unwrap();
    client.join();
    let mut ends = Vec::new();
    let gone = pump(&mut board, Duration::from_secs(6), |board, event| {
        if let Some(Event::Ended { id: i, end }) = event {
            if i == id {
                ends.push(format!("{end:?}"));
            }
        }
        board.queued(id).is_none()
    });
    assert!(gone, "the conversation never went: {ends:?}");
    assert_eq!(ends, vec!["Peer"], "one conversation, {} ends", ends.len());
}

// ---------------------------------------------------------------------------
// 3. A shutdown drops replies queued for UDP peers

/// `shutdown` "closes every conversation gracefully (as close)", and close
/// writes what is queued: replies sent to UDP peers in the same turn as
/// the shutdown must go out.
#[test]
fn a_shutdown_sends_the_replies_queued_for_udp_peers() {
    const CLIENTS: usize = 3;
    let config = config();
    let mut board = Switchboard::with_config(&config).unwrap();
    let listener = board.listen("udp://127.0.0.1:0").unwrap();
    let addr = listener_socket_addr(&board, listener);
    let clients: Vec<UdpSocket> = (0..CLIENTS)
        .map(|i| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.send_to(format!("hello {i}").as_bytes(), addr).unwrap();
            s
        })
        .collect();
    let mut got = Vec::new();
    run_until(&mut board, |_, event| {
        if let Event::Message { id, message } = event {
            got.push((id, message));
        }
        got.len() == CLIENTS
    });
    // The replies, then the shutdown, in the same turn.
    for (id, message) in &got {
        let mut reply = b"re: ".to_vec();
        reply.extend_from_slice(message);
        board.send(*id, reply).unwrap();
    }
    board.shutdown();
    let mut ends = Vec::new();
    let empty = pump(&mut board, T, |board, event| {
        if let Some(Event::Ended { end, .. }) = event {
            ends.push(format!("{end:?}"));
        }
        board.is_empty()
    });
    assert!(empty, "the shutdown never finished");
    // The switchboard is gone: whatever it sent is waiting already.
    let mut answers = Vec::new();
    for (i, s) in clients.iter().enumerate() {
        let mut buf = [0u8; 100];
        answers.push(match s.recv_from(&mut buf) {
            Ok((n, _)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) => format!("client {i}: nothing ({:?})", e.kind()),
        });
    }
    answers.sort();
    let expected: Vec<String> = (0..CLIENTS).map(|i| format!("re: hello {i}")).collect();
    assert_eq!(answers, expected, "ends: {ends:?}");
}

// ---------------------------------------------------------------------------
// 4. serve never returns after an adoption during the shutdown's linger

/// `serve` "returns once the switchboard is shut down and empty": a
/// conversation handed over right after the shutdown (while another
/// conversation lingers) must not keep it from returning.
#[test]
fn serve_returns_after_a_shutdown_even_if_a_conversation_is_handed_over() {
    let config = config().with_linger(Duration::from_secs(2));
    let mut board = Switchboard::with_config(&config).unwrap();
    let listener = board.listen("tcp://127.0.0.1:0").unwrap();
    let addr = listener_socket_addr(&board, listener);
    let handle = board.handle();
    let (accepted_tx, accepted) = mpsc::channel();
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let r = serve(board, 2, move |_, event| {
            if let Event::Accepted { .. } = event {
                let _ = accepted_tx.send(());
            }
        });
        let _ = done_tx.send(r.map_err(|e| e.to_string()));
    });
    // A silent peer, whose conversation lingers through the shutdown.
    let silent = raw_client(addr);
    accepted.recv_timeout(T).expect("accepted");
    // A conversation to hand over, with a peer that keeps it open.
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = converse::Tcp::connect_with(other.local_addr().unwrap(), &config).unwrap();
    let (peer, _) = other.accept().unwrap();
    let started = Instant::now();
    handle.shutdown();
    handle.adopt(tcp);
    let outcome = done.recv_timeout(Duration::from_secs(10));
    if outcome.is_err() {
        // Let the serving thread go: the adopted conversation's peer ends.
        drop(peer);
        drop(silent);
        let _ = done.recv_timeout(Duration::from_secs(5));
        panic!(
            "serve did not return within {:?} of the shutdown (a conversation \
             was handed over during the linger)",
            started.elapsed()
        );
    }
    assert_eq!(outcome.unwrap(), Ok(()));
    drop((peer, silent));
}

// ---------------------------------------------------------------------------
// 5. No WebSocket close frame on the switchboard

/// A protocol violation is answered with a close frame saying why (1002;
/// 1009 for a frame over the limit) before the end of the stream, as the
/// blocking driver does.
#[cfg(feature = "ws")]
#[test]
fn the_switchboard_closes_a_websocket_protocol_violation_with_a_close_frame() {
    let mut board = Switchboard::with_config(&config()).unwrap();
    let listener = board.listen("ws://127.0.0.1:0").unwrap();
    let addr = listener_socket_addr(&board, listener);
    let mut huge = vec![0x82, 0x80 | 127];
    huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
    huge.extend_from_slice(&[1, 2, 3, 4]);
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", vec![0x82, 0x01, 0x41], 1002),
        ("reserved bit", client_frame(0xc2, b"x"), 1002),
        ("2^62-byte header", huge, 1009),
    ];
    let mut report = Vec::new();
    let mut all_ok = true;
    for (what, bytes, code) in cases {
        let mut s = raw_client(addr);
        s.write_all(UPGRADE).unwrap();
        let id = accepted(&mut board);
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 101"), "{what}: {head}");
        s.write_all(&bytes).unwrap();
        let mut end = None;
        run_until(&mut board, |_, event| {
            if let Event::Ended { id: i, end: e } = event {
                if i == id {
                    end = Some(format!("{e:?}"));
                }
            }
            end.is_some()
        });
        // The conversation is over: what it wrote is waiting.
        let (got, how) = read_all(&mut s);
        let mut expected = vec![0x88, 0x02];
        expected.extend_from_slice(&code.to_be_bytes());
        let ok = got.starts_with(&expected);
        all_ok &= ok;
        report.push(format!(
            "{what}: ended {}, the client read {got:02x?} then {how} (expected a close frame {expected:02x?})",
            end.unwrap()
        ));
    }
    assert!(all_ok, "{}", report.join("\n"));
}

// ---------------------------------------------------------------------------
// 6. A ping flood grows the outbox without bound

/// The outbox is bounded by `max_backlog` ("a peer that does not read
/// costs its own outbox and nothing else"): pongs for a client that pings
/// and never reads must not grow it past the limit.
#[cfg(feature = "ws")]
#[test]
fn pongs_to_a_client_that_never_reads_stay_within_the_backlog_limit() {
    const LIMIT: usize = 64 * 1024;
    const PINGS: usize = 200_000;
    const BATCH: usize = 500;
    let config = config().with_max_backlog(LIMIT);
    let mut board = Switchboard::with_config(&config).unwrap();
    let listener = board.listen("ws://127.0.0.1:0").unwrap();
    let addr = listener_socket_addr(&board, listener);
    let mut s = small_window_client(addr);
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(UPGRADE).unwrap();
    let id = accepted(&mut board);
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let (done_tx, done) = mpsc::channel();
    let writer = spawn(move || {
        let batch: Vec<u8> = (0..BATCH)
            .flat_map(|_| client_frame(0x89, &[0x5a; 125]))
            .collect();
        let mut sent = 0;
        while sent < PINGS && !flag.load(Ordering::Relaxed) {
            if s.write_all(&batch).is_err() {
                break;
            }
            sent += BATCH;
        }
        let _ = done_tx.send(());
        (sent, s)
    });
    let mut max = 0;
    let mut end = None;
    let mut writer_done_at: Option<Instant> = None;
    let until = Instant::now() + T;
    let mut events = Events::new();
    while Instant::now() < until {
        board
            .wait(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
        for event in events.drain() {
            if let Event::Ended { id: i, end: e } = event {
                if i == id {
                    end = Some(format!("{e:?}"));
                }
            }
        }
        match board.queued(id) {
            Some(q) => max = max.max(q),
            None => break,
        }
        // Far past the limit: no need to go on.
        if max > 32 * LIMIT {
            break;
        }
        if writer_done_at.is_none() && done.try_recv().is_ok() {
            writer_done_at = Some(Instant::now());
        }
        if writer_done_at.is_some_and(|at| at.elapsed() > Duration::from_millis(500)) {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, s) = writer.join();
    assert!(
        max <= 2 * LIMIT,
        "{max} bytes queued for a client that never reads (max_backlog {LIMIT}), \
         after {sent} pings written; end: {end:?}"
    );
    drop(s);
}

// ---------------------------------------------------------------------------
// 7. HEAD or POST to a page listener gets no HTTP answer

/// A WebSocket listener serving a page answers HTTP: `HEAD /` with the
/// page's head and no body, any other method with a 4xx (405), before the
/// connection closes.
#[cfg(feature = "ws")]
#[test]
fn head_and_post_to_a_page_listener_get_an_http_answer() {
    use converse::ws::Page;
    let config = config().with_handshake_timeout(Duration::from_secs(2));
    let mut board = Switchboard::with_config(&config).unwrap();
    let listener = board.listen("ws://127.0.0.1:0").unwrap();
    board
        .serve_page(listener, Page::html("<p>the room</p>"))
        .unwrap();
    let addr = listener_socket_addr(&board, listener);
    let (tx, rx) = mpsc::channel();
    let requests: [(&str, &[u8]); 2] = [
        ("HEAD", b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"),
        (
            "POST",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        ),
    ];
    for (what, request) in requests {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut s = raw_client(addr);
            s.write_all(request).unwrap();
            let (got, how) = read_all(&mut s);
            let _ = tx.send((what, String::from_utf8_lossy(&got).into_owned(), how));
        });
    }
    let mut answers = Vec::new();
    let mut failures = Vec::new();
    let all = pump(&mut board, Duration::from_secs(12), |_, event| {
        if let Some(Event::HandshakeFailed { error, .. }) = event {
            failures.push(error.to_string());
        }
        while let Ok(answer) = rx.try_recv() {
            answers.push(answer);
        }
        answers.len() == 2
    });
    assert!(all, "the clients never finished");
    answers.sort();
    let head = &answers[0];
    let post = &answers[1];
    let head_ok = head.1.starts_with("HTTP/1.1 200") && head.1.ends_with("\r\n\r\n");
    let post_ok = post.1.starts_with("HTTP/1.1 4");
    assert!(
        head_ok && post_ok,
        "HEAD got {:?} (then {}); POST got {:?} (then {}); the switchboard said {failures:?}",
        head.1,
        head.2,
        post.1,
        post.2
    );
}

// ---------------------------------------------------------------------------
// 8. A cut upgrade request fails accept with an error that is not transient

/// `WsListener::accept` documents `Error::WebSocket` for a connection
/// whose handshake failed ("the listener goes on: accept again"), and
/// `is_transient` covers "one client gave up during its handshake": a
/// client that sends half a request and goes must give a WebSocket error
/// an accept loop survives.
#[cfg(feature = "ws")]
#[test]
fn a_client_that_goes_during_the_upgrade_is_a_transient_websocket_error() {
    let config = config().with_handshake_timeout(Duration::from_secs(5));
    let listener = converse::listen_with("ws://127.0.0.1:0", &config).unwrap();
    let addr = listener.local_addr().unwrap().socket_addr().unwrap();
    let server = spawn(move || listener.accept().map(|_| ()));
    let mut s = raw_client(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost:").unwrap();
    drop(s);
    let e = server
        .join()
        .expect_err("half a request is not a conversation");
    let websocket = matches!(e, Error::WebSocket { .. });
    assert!(
        websocket && e.is_transient(),
        "accept gave {e:?} ({e}); Error::WebSocket: {websocket}, is_transient: {}",
        e.is_transient()
    );
}

// ---------------------------------------------------------------------------
// 9. close() confirms when the converse peer dropped our message unread

/// `close` is `Ok(Confirmed)` only if "the peer ended its side after
/// everything, with no reset", and `Err(ConnectionReset)` when "the peer
/// reset the connection, so messages it had not read were lost". A converse
/// conversation dropped with our message unread loses it: close must say
/// so, as it does for a plain std peer.
#[test]
fn close_reports_a_converse_peer_dropped_with_our_message_unread() {
    const ROUNDS: usize = 20;
    let config = config().with_linger(Duration::from_secs(3));
    /// Waits until a message has arrived (unread) on `s`.
    fn arrived(s: &socket2::Socket) {
        s.set_read_timeout(Some(T)).unwrap();
        let mut buf = [MaybeUninit::<u8>::uninit(); 1];
        assert_eq!(s.peek(&mut buf).unwrap(), 1);
    }
    let outcome = |r: converse::Result<Delivery>| match r {
        Err(Error::ConnectionReset { .. }) => "ConnectionReset".to_owned(),
        other => format!("{other:?}"),
    };
    // A plain std peer, for comparison.
    let mut std_outcomes = Vec::new();
    for _ in 0..5 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = spawn(move || {
            let (peer, _) = listener.accept().unwrap();
            arrived(&socket2::Socket::from(peer));
        });
        let mut c = client(addr, &config);
        c.send("you will not read this").unwrap();
        server.join();
        std_outcomes.push(outcome(c.close()));
    }
    assert!(
        std_outcomes.iter().all(|o| o == "ConnectionReset"),
        "the std peer: {std_outcomes:?}"
    );
    // A converse peer.
    let mut outcomes = Vec::new();
    for _ in 0..ROUNDS {
        let (listener, addr) = common::listener(&config);
        let server = spawn(move || {
            let peer = accept(&listener);
            arrived(&peer.socket().unwrap());
            drop(peer); // our message unread
        });
        let mut c = client(addr, &config);
        c.send("you will not read this").unwrap();
        let closed = c.close();
        server.join();
        outcomes.push(outcome(closed));
    }
    let confirmed = outcomes.iter().filter(|o| *o == "Ok(Confirmed)").count();
    assert!(
        outcomes.iter().all(|o| o == "ConnectionReset"),
        "{confirmed} of {ROUNDS} closes said Ok(Confirmed) though the converse peer \
         dropped our message unread: {outcomes:?} (a std peer: {std_outcomes:?})"
    );
}

// ---------------------------------------------------------------------------
// 10. Messages taken by a failed send_all stay queued

/// `SendAllError`: the messages taken before the error "reach the peer
/// unless the conversation fails". After a write timeout the conversation
/// goes on; once the peer reads again, a caller waiting for the replies to
/// the taken messages must get them, without flushing by hand.
#[test]
fn messages_taken_by_a_send_all_that_timed_out_reach_the_peer() {
    const N: u32 = 100_000;
    const SIZE: usize = 1000;
    // A peer that does not read until told, then answers each message with
    // its number.
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    s.listen(8).unwrap();
    let listener: std::net::TcpListener = s.into();
    let addr = listener.local_addr().unwrap();
    let (go_tx, go) = mpsc::channel::<()>();
    let peer = spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        s.set_write_timeout(Some(T)).unwrap();
        go.recv_timeout(T).unwrap();
        let mut read = 0u32;
        let mut header = [0u8; 4];
        let mut body = vec![0u8; SIZE];
        while s.read_exact(&mut header).is_ok() {
            let len = u32::from_be_bytes(header) as usize;
            assert_eq!(len, SIZE);
            if s.read_exact(&mut body).is_err() {
                break;
            }
            if s.write_all(&frame(&body[..4])).is_err() {
                break;
            }
            read += 1;
        }
        read
    });
    let config = config().with_write_timeout(Some(Duration::from_millis(200)));
    let mut c = client(addr, &config);
    c.socket().unwrap().set_send_buffer_size(4096).unwrap();
    let message = |i: u32| {
        let mut m = vec![0u8; SIZE];
        m[..4].copy_from_slice(&i.to_be_bytes());
        m
    };
    let err = c
        .send_all((0..N).map(message))
        .expect_err("a peer that does not read: send_all times out");
    let taken = err.taken;
    assert!(taken > 0 && matches!(err.error, Error::Timeout), "{err:?}");
    let queued = c.queued();
    assert!(queued > 0, "nothing stayed queued: the case is not made");
    // The peer reads again; we wait for the answers to what was taken.
    go_tx.send(()).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut answered = 0usize;
    let collect = |c: &mut converse::Conversation<converse::Tcp>, answered: &mut usize| {
        while *answered < taken {
            match c.recv() {
                Ok(Some(m)) => {
                    assert_eq!(&m[..], &(*answered as u32).to_be_bytes());
                    *answered += 1;
                }
                _ => break,
            }
        }
    };
    collect(&mut c, &mut answered);
    let before_flush = answered;
    // Only an explicit flush sends the rest.
    let flushed = c.flush();
    collect(&mut c, &mut answered);
    drop(c);
    let read = peer.join();
    assert_eq!(
        before_flush, taken,
        "send_all took {taken} messages ({}), {queued} bytes of them stayed queued; \
         the peer, reading again, answered {before_flush}; after an explicit flush \
         ({flushed:?}) it answered {answered} (the peer read {read})",
        err.error
    );
}
