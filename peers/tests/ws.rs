//! WebSocket: text and binary, pings, the close handshake, hostile peers
//! and handshakes, the switchboard (with its page), and other
//! implementations (Python's `websockets`, tokio-tungstenite). The scenario
//! suite runs over `ws://` and `wss://` too (`tests/scenarios.rs`).
#![cfg(feature = "ws")]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::ws::*;
use common::*;
use converse::switchboard::{End, Event, Switchboard};
use converse::ws::Page;
use converse::ws::WsError;
use converse::{Config, Delivery, Error};
use futures_util::{SinkExt, StreamExt};

/// A ws:// echo server: each conversation on a thread, text answered as
/// text and binary as binary; outcomes as [`Echo`]'s.
fn ws_echo(config: &Config) -> Echo {
    Echo::serve(converse::listen_with("ws://127.0.0.1:0", config).unwrap())
}

/// After a protocol violation: the server's close frame with `code`, or
/// (for a violation its stream cut off at the header) the end at once.
fn closed_with(s: &mut TcpStream, code: u16) {
    let mut h = [0u8; 2];
    match s.read(&mut h[..1]) {
        Ok(0) | Err(_) => return,
        Ok(_) => {}
    }
    s.read_exact(&mut h[1..]).unwrap();
    assert_eq!(h, [0x88, 2], "a close frame");
    let mut payload = [0u8; 2];
    s.read_exact(&mut payload).unwrap();
    assert_eq!(u16::from_be_bytes(payload), code);
}

/// Reads one unmasked frame from the server: (first byte, payload).
fn server_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).unwrap();
    assert_eq!(h[1] & 0x80, 0, "a server never masks");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).unwrap();
            u16::from_be_bytes(b) as usize
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).unwrap();
            u64::from_be_bytes(b) as usize
        }
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    (h[0], payload)
}

#[test]
fn messages_of_every_size_round_trip_and_close_is_the_close_handshake() {
    let config = config();
    let echo = ws_echo(&config);
    let mut c = converse::connect_with(&format!("{}/chat?room=1", echo.url), &config).unwrap();
    assert_eq!(c.peer_addr().unwrap().scheme(), "ws");
    for size in [0usize, 1, 125, 126, 65_535, 65_536, 1_000_000] {
        let msg: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        c.send(&msg).unwrap();
        assert_eq!(c.recv().unwrap().unwrap(), msg, "{size}");
    }
    c.send_text("текст").unwrap();
    assert_eq!(c.recv_text().unwrap().as_deref(), Some("текст"));
    assert_eq!(c.close().unwrap(), Delivery::Confirmed);
    assert_eq!(echo.outcome(), Ok(8));
}

#[test]
fn a_message_over_the_limit_is_refused_before_allocation_on_both_sides() {
    let config = config().with_max_message_len(1000);
    let echo = ws_echo(&config);
    let mut c = converse::connect_with(&echo.url, &config).unwrap();
    assert!(matches!(
        c.send(vec![0u8; 1001]),
        Err(Error::MessageTooLarge {
            len: 1001,
            max: 1000
        })
    ));
    c.send(vec![0u8; 1000]).unwrap();
    assert_eq!(c.recv().unwrap().unwrap().len(), 1000);
    // A header declaring 2^62 bytes: refused from the header alone.
    let mut s = raw_upgraded(echo.addr());
    let mut f = vec![0x82, 0x80 | 127];
    f.extend_from_slice(&(1u64 << 62).to_be_bytes());
    f.extend_from_slice(&[1, 2, 3, 4]);
    s.write_all(&f).unwrap();
    closed_with(&mut s, 1009);
    let outcome = echo.outcome().unwrap_err();
    assert!(outcome.contains("larger than the limit"), "{outcome}");
    // Fragments whose total passes the limit, each under it.
    let mut s = raw_upgraded(echo.addr());
    s.write_all(&client_frame(0x02, &[0u8; 600])).unwrap();
    s.write_all(&client_frame(0x80, &[0u8; 600])).unwrap();
    let outcome = echo.outcome().unwrap_err();
    assert!(outcome.contains("1200 bytes"), "{outcome}");
    // Here the stream was still whole: the close frame says why.
    assert_eq!(server_frame(&mut s), (0x88, 1009u16.to_be_bytes().to_vec()));
}

#[test]
fn protocol_violations_are_typed_errors_for_their_connection_alone() {
    let config = config();
    let echo = ws_echo(&config);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("unmasked", vec![0x82, 0x01, 0x41], "unmasked"),
        ("reserved bits", client_frame(0xc2, b"x"), "reserved"),
        ("unknown opcode", client_frame(0x83, b"x"), "opcode"),
        (
            "long ping",
            client_frame(0x89, &[0u8; 126]),
            "longer than 125",
        ),
        ("fragmented ping", client_frame(0x09, b"x"), "fragmented"),
        (
            "continuation of nothing",
            client_frame(0x80, b"x"),
            "continuation",
        ),
    ];
    for (what, bytes, why) in cases {
        let mut s = raw_upgraded(echo.addr());
        s.write_all(&bytes).unwrap();
        let outcome = echo.outcome().unwrap_err();
        assert!(outcome.contains(why), "{what}: {outcome}");
        closed_with(&mut s, 1002);
    }
    // The listener still serves.
    let mut c = converse::connect_with(&echo.url, &config).unwrap();
    c.send("fine").unwrap();
    assert_eq!(c.recv().unwrap().unwrap(), &b"fine"[..]);
}

#[test]
fn a_plain_http_request_or_garbage_is_refused_and_the_listener_goes_on() {
    let config = config();
    let listener = converse::listen_with("ws://127.0.0.1:0", &config).unwrap();
    let addr = listener.local_addr().unwrap().socket_addr().unwrap();
    let url = listener.local_addr().unwrap().to_string();
    let server = spawn(move || {
        let mut outcomes = Vec::new();
        for _ in 0..4 {
            outcomes.push(listener.accept().map(|_| ()));
        }
        outcomes
    });
    // A browser asking for a page.
    let mut s = raw_client(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(read_head(&mut s).starts_with("HTTP/1.1 426"));
    // Not HTTP at all; a head that never ends.
    let mut s = raw_client(addr);
    s.write_all(b"\x16\x03\x01 this is not http\r\n\r\n")
        .unwrap();
    let mut s2 = raw_client(addr);
    s2.write_all(&vec![b'x'; 20_000]).unwrap();
    // And a real client after them.
    let mut c = converse::connect_with(&url, &config).unwrap();
    c.send("after all that").unwrap();
    let outcomes = server.join();
    assert!(matches!(
        &outcomes[0],
        Err(Error::WebSocket {
            reason: WsError::NotWebSocket,
            ..
        })
    ));
    assert!(
        matches!(
            &outcomes[1],
            Err(Error::WebSocket {
                reason: WsError::BadHandshake(_),
                ..
            })
        ),
        "{:?}",
        outcomes[1]
    );
    assert!(
        matches!(
            &outcomes[2],
            Err(Error::WebSocket {
                reason: WsError::BadHandshake(_),
                ..
            })
        ),
        "{:?}",
        outcomes[2]
    );
    assert!(outcomes[3].is_ok());
    drop((s, s2));
}

#[test]
fn a_client_refused_or_answered_badly_says_why() {
    // A plain HTTP server.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let answers: [&[u8]; 2] = [
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\n\r\n",
    ];
    let t = spawn(move || {
        for answer in answers {
            let (mut s, _) = server.accept().unwrap();
            let _ = read_head(&mut s);
            s.write_all(answer).unwrap();
        }
    });
    let url = format!("ws://{addr}");
    match converse::connect_with(&url, &config()) {
        Err(Error::WebSocket {
            reason: WsError::Refused(404),
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    match converse::connect_with(&url, &config()) {
        Err(Error::WebSocket {
            reason: WsError::BadHandshake(why),
            ..
        }) => {
            assert!(why.contains("Accept"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    t.join();
    // A server that says nothing: the handshake timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}", silent.local_addr().unwrap());
    let started = Instant::now();
    match converse::connect_with(
        &url,
        &config().with_handshake_timeout(Duration::from_millis(200)),
    ) {
        Err(Error::WebSocket {
            reason: WsError::HandshakeTimeout,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn fragments_that_never_end_miss_the_deadline_and_pings_are_answered() {
    let config = config().with_message_deadline(Duration::from_millis(300));
    let echo = ws_echo(&config);
    let mut s = raw_upgraded(echo.addr());
    // A ping flood first: each answered with its own bytes (or the latest).
    for i in 0..200u8 {
        s.write_all(&client_frame(0x89, &[i])).unwrap();
    }
    let mut pongs = 0;
    let mut last = None;
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut h = [0u8; 3];
    while let Ok(()) = s.read_exact(&mut h) {
        assert_eq!((h[0], h[1]), (0x8a, 1), "a pong of one byte");
        pongs += 1;
        last = Some(h[2]);
        if h[2] == 199 {
            break;
        }
    }
    assert!(
        pongs >= 1 && last == Some(199),
        "{pongs} pongs, last {last:?}"
    );
    // Then a message whose fragments keep coming, slower than its deadline.
    s.set_read_timeout(Some(T)).unwrap();
    s.write_all(&client_frame(0x01, b"never")).unwrap();
    let started = Instant::now();
    let mut cut = false;
    while started.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
        if s.write_all(&client_frame(0x00, b" ending")).is_err() {
            cut = true;
            break;
        }
    }
    let outcome = echo.outcome().unwrap_err();
    assert!(
        outcome.contains("deadline") || outcome.contains("within"),
        "{outcome}"
    );
    let _ = cut;
}

#[test]
fn full_duplex_from_two_threads_with_pings_answered_by_the_receiver() {
    let config = config();
    let listener = converse::listen_with("ws://127.0.0.1:0", &config).unwrap();
    let addr = listener.local_addr().unwrap().socket_addr().unwrap();
    let server = spawn(move || {
        let c = listener.accept().unwrap();
        let (mut tx, mut rx) = c.split();
        let reader = spawn(move || {
            let mut n = 0;
            while let Some(m) = rx.recv().unwrap() {
                assert_eq!(m, vec![n as u8; 100]);
                n += 1;
            }
            n
        });
        for i in 0..500u32 {
            tx.send(i.to_be_bytes()).unwrap();
        }
        let n = reader.join();
        let _ = tx.close();
        n
    });
    // The client pings while it sends and reads. A ping that comes while
    // the answer to an earlier one still waits may be answered with the
    // latest only (RFC 6455 §5.5.3), so the pongs come in order and the
    // last ping is answered.
    let mut s = raw_upgraded(addr);
    let mut reader = s.try_clone().unwrap();
    let read = spawn(move || {
        let (mut messages, mut pongs) = (0, Vec::new());
        while messages < 500 || pongs.last() != Some(&90u8) {
            let (first, payload) = server_frame(&mut reader);
            match first {
                0x82 => {
                    assert_eq!(payload, (messages as u32).to_be_bytes());
                    messages += 1;
                }
                0x8a => {
                    assert_eq!(payload.len(), 1);
                    pongs.push(payload[0]);
                }
                other => panic!("{other:#x}"),
            }
        }
        (messages, pongs)
    });
    for i in 0..100u8 {
        s.write_all(&client_frame(0x82, &[i; 100])).unwrap();
        if i % 10 == 0 {
            s.write_all(&client_frame(0x89, &[i])).unwrap();
        }
    }
    let (messages, pongs) = read.join();
    assert_eq!(messages, 500);
    assert!(pongs.windows(2).all(|w| w[0] < w[1]), "{pongs:?}");
    assert!(pongs.iter().all(|p| p % 10 == 0), "{pongs:?}");
    s.write_all(&client_frame(0x88, &1000u16.to_be_bytes()))
        .unwrap();
    assert_eq!(server.join(), 100);
}

#[test]
fn wss_is_websocket_over_verified_tls() {
    let config = tls::config(config());
    let echo = Echo::serve(converse::listen_with("wss://127.0.0.1:0", &config).unwrap());
    assert!(echo.url.starts_with("wss://"));
    let mut c = converse::connect_with(&echo.url, &config).unwrap();
    assert!(c.peer_identity().unwrap().is_valid_for("127.0.0.1"));
    c.send_text("secret").unwrap();
    assert_eq!(c.recv_text().unwrap().as_deref(), Some("secret"));
    assert_eq!(c.close().unwrap(), Delivery::Confirmed);
    assert_eq!(echo.outcome(), Ok(1));
    // A client that trusts another CA.
    let stranger = common::certs::Authority::new("stranger");
    let other = common::config()
        .with_tls_client(converse::tls::TlsClient::trusting_ca_pem(stranger.cert_pem()).unwrap());
    assert!(matches!(
        converse::connect_with(&echo.url, &other),
        Err(Error::Tls { .. })
    ));
}

/// A blocking listener serves its page as the switchboard does: an HTTP
/// answer for every method, and `accept` goes on to the next connection
/// that is a WebSocket.
#[test]
fn a_blocking_listener_serves_its_page_and_goes_on_to_websockets() {
    let mut listener = converse::WsListener::bind("127.0.0.1:0", false, &config()).unwrap();
    listener.serve_page(Page::html("<p>the room</p>"));
    let addr = listener.local_addr().unwrap().socket_addr().unwrap();
    let server = spawn(move || {
        // The refused requests are each a transient error; the page is
        // not a conversation at all.
        let mut refused = 0;
        let ws = loop {
            match listener.accept() {
                Ok(ws) => break ws,
                Err(e @ Error::WebSocket { .. }) if e.is_transient() => refused += 1,
                Err(e) => panic!("{e}"),
            }
        };
        let mut c = converse::Conversation::new(ws);
        let m = c.recv_text().unwrap();
        c.send_text("welcome").unwrap();
        (refused, m)
    });
    let answer = |request: &str| {
        let mut s = raw_client(addr);
        s.write_all(request.as_bytes()).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        String::from_utf8_lossy(&got).into_owned()
    };
    let page = answer("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        page.starts_with("HTTP/1.1 200") && page.ends_with("<p>the room</p>"),
        "{page}"
    );
    let head = answer("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    let post = answer("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    let missing = answer("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    let mut c = converse::connect_with(&format!("ws://{addr}"), &config()).unwrap();
    c.send_text("hello").unwrap();
    assert_eq!(c.recv_text().unwrap().as_deref(), Some("welcome"));
    assert_eq!(server.join(), (2, Some("hello".to_owned())));
}

// ---------------------------------------------------------------------------
// The switchboard

#[test]
fn the_switchboard_upgrades_by_readiness_and_serves_its_page() {
    let config = config().with_handshake_timeout(Duration::from_millis(300));
    let mut board = Switchboard::with_config(&config).unwrap();
    let listener = board.listen("ws://127.0.0.1:0").unwrap();
    board
        .serve_page(listener, Page::html("<p>the room</p>"))
        .unwrap();
    let url = board.listener_addr(listener).unwrap().to_string();
    let addr = board
        .listener_addr(listener)
        .unwrap()
        .socket_addr()
        .unwrap();
    let page = spawn(move || {
        let mut s = raw_client(addr);
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).unwrap();
        let mut other = raw_client(addr);
        other
            .write_all(b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        (all, read_head(&mut other))
    });
    let silent = raw_client(addr);
    let client = spawn(move || {
        let mut c = converse::connect_with(&url, &config).unwrap();
        for i in 0..50 {
            c.send_text(&format!("m{i}")).unwrap();
            assert_eq!(c.recv_text().unwrap().unwrap(), format!("m{i}"));
        }
        c.send(vec![3u8; 300_000]).unwrap();
        assert_eq!(c.recv().unwrap().unwrap().len(), 300_000);
        c.close().unwrap()
    });
    let (mut accepted, mut failed, mut ended) = (0, 0, None);
    run_until(&mut board, |board, event| {
        match event {
            Event::Accepted { .. } => accepted += 1,
            Event::Message { id, message } => board.send(id, &message).unwrap(),
            Event::HandshakeFailed { error, .. } => {
                assert!(matches!(
                    error,
                    Error::WebSocket {
                        reason: WsError::HandshakeTimeout,
                        ..
                    }
                ));
                failed += 1;
            }
            Event::Ended { end, .. } => ended = Some(format!("{end:?}")),
            other => panic!("{other:?}"),
        }
        ended.is_some() && failed == 1
    });
    assert_eq!(accepted, 1, "the page requests were never conversations");
    assert_eq!(client.join(), Delivery::Confirmed);
    assert_eq!(ended.as_deref(), Some("Peer"));
    let (page, other) = page.join();
    assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
    assert!(
        page.contains("text/html") && page.ends_with("<p>the room</p>"),
        "{page}"
    );
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    drop(silent);
}

#[test]
fn the_switchboard_refuses_protocol_violations_and_closes_with_a_close_frame() {
    let mut board = Switchboard::with_config(&config()).unwrap();
    let listener = board.listen("ws://127.0.0.1:0").unwrap();
    let addr = board
        .listener_addr(listener)
        .unwrap()
        .socket_addr()
        .unwrap();
    // Requests and frames at once: the switchboard answers when it runs.
    let mut bad = raw_request(addr);
    let mut good = raw_request(addr);
    bad.write_all(&[0x82, 0x01, 0x41]).unwrap(); // unmasked
    good.write_all(&client_frame(0x81, b"hello")).unwrap();
    let mut ends = Vec::new();
    let mut answered = false;
    run_until(&mut board, |board, event| {
        match event {
            Event::Message { id, message } => {
                assert_eq!(message, "hello");
                board.send_text(id, "bye now").unwrap();
                board.close(id);
                answered = true;
            }
            Event::Ended { end, .. } => ends.push(end),
            _ => {}
        }
        ends.len() == 1 && answered
    });
    assert!(
        matches!(&ends[0], End::Failed(Error::InvalidFrame { .. })),
        "{:?}",
        ends[0]
    );
    // The good one: its text, then the close handshake, read on a thread
    // while the switchboard runs.
    let reader = spawn(move || {
        upgraded(&mut good);
        let text = server_frame(&mut good);
        let close = server_frame(&mut good);
        good.write_all(&client_frame(0x88, &1000u16.to_be_bytes()))
            .unwrap();
        (text, close)
    });
    run_until(&mut board, |_, event| {
        if let Event::Ended { end, .. } = event {
            assert!(matches!(end, End::Closed(Delivery::Confirmed)), "{end:?}");
            return true;
        }
        false
    });
    let (text, close) = reader.join();
    assert_eq!(text, (0x81, b"bye now".to_vec()));
    assert_eq!(close, (0x88, 1000u16.to_be_bytes().to_vec()));
}

// ---------------------------------------------------------------------------
// Other implementations

/// `true` if Python's `websockets` package is importable (otherwise skips).
fn have_websockets() -> bool {
    if !have_python() {
        return false;
    }
    let ok = Command::new("python3")
        .args(["-c", "import websockets"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip("Python's websockets package is not installed (pip install websockets)");
    }
    ok
}

const PY_CLIENT: &str = r#"
import asyncio, sys
from websockets.asyncio.client import connect
async def main():
    async with connect(sys.argv[1], max_size=None) as ws:
        await ws.send("héllo")
        got = await ws.recv()
        assert got == "héllo" and isinstance(got, str), repr(got)
        await ws.send(b"\x00\xff" * 50000)
        got = await ws.recv()
        assert got == b"\x00\xff" * 50000 and isinstance(got, bytes), len(got)
        pong = await ws.ping(b"ping?")
        await asyncio.wait_for(pong, 10)
        print("ok")
asyncio.run(main())
"#;

#[test]
fn python_websockets_client_against_a_converse_server() {
    if !have_websockets() {
        return;
    }
    let listener = converse::listen_with("ws://127.0.0.1:0", &config()).unwrap();
    let url = listener.local_addr().unwrap().to_string();
    let server = spawn(move || {
        let mut c = listener.accept().unwrap();
        let mut n = 0;
        // Text answered as text (the client checks it gets a str), bytes as
        // bytes.
        while let Some(m) = c.recv().unwrap() {
            match std::str::from_utf8(&m) {
                Ok(text) if n == 0 => c.send_text(text).unwrap(),
                _ => c.send(&m).unwrap(),
            }
            n += 1;
        }
        n
    });
    let out = Command::new("python3")
        .args(["-c", PY_CLIENT, &url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n");
    assert_eq!(server.join(), 2);
}

const PY_SERVER: &str = r#"
import asyncio, sys
from websockets.asyncio.server import serve
async def echo(ws):
    async for message in ws:
        await ws.send(message)
async def main():
    async with serve(echo, "127.0.0.1", 0, max_size=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(30)
asyncio.run(main())
"#;

#[test]
fn a_converse_client_against_a_python_websockets_server() {
    if !have_websockets() {
        return;
    }
    let mut child = Command::new("python3")
        .args(["-c", PY_SERVER])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let port = {
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while out.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        String::from_utf8(line).unwrap()
    };
    let mut c = converse::connect_with(&format!("ws://127.0.0.1:{port}/"), &config()).unwrap();
    c.send_text("text from converse").unwrap();
    assert_eq!(
        c.recv_text().unwrap().as_deref(),
        Some("text from converse")
    );
    for size in [0usize, 10, 70_000, 2_000_000] {
        c.send(vec![7u8; size]).unwrap();
        assert_eq!(c.recv().unwrap().unwrap().len(), size);
    }
    assert_eq!(c.close().unwrap(), Delivery::Confirmed);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn tokio_tungstenite_against_converse_both_ways() {
    use tokio_tungstenite::tungstenite::Message;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    // tokio-tungstenite client, converse server.
    let echo = ws_echo(&config());
    rt.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(echo.url.as_str())
            .await
            .unwrap();
        ws.send(Message::text("hi")).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap().into_data(),
            "hi".as_bytes()
        );
        for size in [1usize, 200_000] {
            ws.send(Message::binary(vec![1u8; size])).await.unwrap();
            assert_eq!(ws.next().await.unwrap().unwrap().into_data().len(), size);
        }
        ws.close(None).await.unwrap();
        while let Some(Ok(_)) = ws.next().await {}
    });
    assert_eq!(echo.outcome(), Ok(3));

    // converse client, tokio-tungstenite server.
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let server = spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        rt.block_on(async {
            std_listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let mut n = 0;
            while let Some(Ok(m)) = ws.next().await {
                if m.is_close() {
                    break;
                }
                if m.is_text() || m.is_binary() {
                    ws.send(m).await.unwrap();
                    n += 1;
                }
            }
            n
        })
    });
    let mut c = converse::connect_with(&format!("ws://{addr}"), &config()).unwrap();
    c.send_text("über").unwrap();
    assert_eq!(c.recv_text().unwrap().as_deref(), Some("über"));
    c.send(vec![9u8; 100_000]).unwrap();
    assert_eq!(c.recv().unwrap().unwrap().len(), 100_000);
    let _ = c.close();
    assert_eq!(server.join(), 2);
}
