//! The TCP transport over real loopback sockets: framing, limits, ends of
//! stream, timeouts, deadlines, graceful close, split halves.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use common::*;
use converse::{Config, Conversation, Error, Tcp};

/// Accepts one conversation on a fresh listener and returns both ends: the
/// accepted converse side and a raw std client.
fn accepted_with_raw(config: &Config) -> (Conversation<Tcp>, std::net::TcpStream) {
    let (listener, addr) = listener(config);
    let raw = raw_client(addr);
    let server = accept(&listener);
    (server, raw)
}

#[test]
fn a_message_split_at_every_byte_arrives_whole() {
    let config = config();
    let (mut server, mut raw) = accepted_with_raw(&config);
    let mut wire = frame(b"hello");
    wire.extend(frame(b""));
    wire.extend(frame("你好, world!".as_bytes()));
    for split in 1..wire.len() {
        write_all(&mut raw, &wire[..split]);
        // Only part of the sequence is there: whatever is whole is delivered,
        // and the partial rest waits (a timeout, not a loss).
        server
            .set_read_timeout(Some(Duration::from_millis(30)))
            .unwrap();
        let mut got = Vec::new();
        loop {
            match server.recv() {
                Ok(Some(m)) => got.push(m),
                Err(Error::Timeout) => break,
                other => panic!("split {split}: {other:?}"),
            }
        }
        write_all(&mut raw, &wire[split..]);
        server.set_read_timeout(Some(T)).unwrap();
        while got.len() < 3 {
            got.push(server.recv().unwrap().expect("a message"));
        }
        assert_eq!(got[0], &b"hello"[..], "split {split}");
        assert_eq!(got[1], &b""[..], "split {split}");
        assert_eq!(got[2], "你好, world!".as_bytes(), "split {split}");
    }
}

#[test]
fn many_messages_in_one_segment_come_out_in_order() {
    let config = config();
    let (mut server, mut raw) = accepted_with_raw(&config);
    let mut wire = Vec::new();
    for i in 0..1000u32 {
        wire.extend(frame(format!("message {i}").as_bytes()));
    }
    write_all(&mut raw, &wire);
    for i in 0..1000u32 {
        assert_eq!(server.recv_text().unwrap().unwrap(), format!("message {i}"));
    }
    raw.shutdown(Shutdown::Write).unwrap();
    assert_eq!(server.recv().unwrap(), None);
}

#[test]
fn the_largest_message_is_accepted_and_the_buffer_shrinks_back() {
    let config = config();
    let (listener, addr) = listener(&config);
    let mut client = client(addr, &config);
    let mut server = accept(&listener);
    let max = config.max_message_len();
    let big: Vec<u8> = (0..max).map(|i| (i % 251) as u8).collect();
    let sender = spawn(move || {
        client.send(&big).unwrap();
        client.send("after").unwrap();
        client
    });
    let got = server.recv().unwrap().unwrap();
    assert_eq!(got.len(), max);
    assert!(got.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    assert_eq!(server.recv_text().unwrap().as_deref(), Some("after"));
    drop(got);
    assert!(
        server.receiver().buffer_capacity() <= 128 * 1024,
        "read buffer kept {} bytes after the large message",
        server.receiver().buffer_capacity()
    );
    drop(sender.join());
}

#[test]
fn one_byte_over_the_limit_is_rejected_on_receive_without_allocating() {
    let config = config().with_max_message_len(1000);
    let (mut server, mut raw) = accepted_with_raw(&config);
    write_all(&mut raw, &frame(&[7; 1000]));
    write_all(&mut raw, &1001u32.to_be_bytes());
    assert_eq!(server.recv().unwrap().unwrap().len(), 1000);
    let cap_before = server.receiver().buffer_capacity();
    match server.recv() {
        Err(Error::MessageTooLarge {
            len: 1001,
            max: 1000,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(cap_before < 64 * 1024);
    // The conversation is over: later receives fail, and once it is
    // dropped the peer sees a reset, never a clean end.
    assert!(matches!(server.recv(), Err(Error::Closed)));
    drop(server);
    let mut rest = Vec::new();
    match raw.read_to_end(&mut rest) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        Ok(n) => panic!("a clean end after {n} bytes"),
    }
}

#[test]
fn a_header_declaring_the_maximum_grows_the_buffer_only_with_what_arrives() {
    let config = config();
    let (mut server, mut raw) = accepted_with_raw(&config);
    let max = config.max_message_len() as u32;
    write_all(&mut raw, &max.to_be_bytes());
    write_all(&mut raw, &[1; 100]);
    server
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    assert!(matches!(server.recv(), Err(Error::Timeout)));
    let cap = server.receiver().buffer_capacity();
    assert!(cap <= 256 * 1024, "{cap} bytes reserved for 104 received");
}

#[test]
fn one_byte_over_the_limit_is_rejected_on_send_before_writing() {
    let config = config().with_max_message_len(1000);
    let (listener, addr) = listener(&config);
    let mut client = client(addr, &config);
    let mut server = accept(&listener);
    match client.send(vec![0u8; 1001]) {
        Err(Error::MessageTooLarge {
            len: 1001,
            max: 1000,
        }) => {}
        other => panic!("{other:?}"),
    }
    match client.feed(vec![0u8; 1001]) {
        Err(Error::MessageTooLarge {
            len: 1001,
            max: 1000,
        }) => {}
        other => panic!("{other:?}"),
    }
    client.send(vec![1u8; 1000]).unwrap();
    // The first thing on the wire is the valid message.
    assert_eq!(server.recv().unwrap().unwrap(), vec![1u8; 1000]);
}

#[test]
fn a_4_gib_header_ends_that_conversation_and_the_listener_serves_the_next() {
    let config = config();
    let (listener, addr) = listener(&config);
    let server = spawn(move || {
        let mut outcomes = Vec::new();
        for _ in 0..2 {
            let mut c = accept(&listener);
            let outcome = loop {
                match c.recv() {
                    Ok(Some(m)) => c.send(&m).unwrap(),
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            };
            outcomes.push(outcome.map_err(|e| e.to_string()));
            let _ = c.close();
        }
        outcomes
    });
    let mut hostile = raw_client(addr);
    write_all(&mut hostile, &[0xff, 0xff, 0xff, 0xff]);
    let mut rest = Vec::new();
    let _ = hostile.read_to_end(&mut rest); // closed by the server (end or reset)
    assert!(rest.is_empty());

    let mut good = client(addr, &config);
    good.send("still serving?").unwrap();
    assert_eq!(good.recv_text().unwrap().as_deref(), Some("still serving?"));
    good.close().unwrap();

    let outcomes = server.join();
    assert_eq!(
        outcomes[0],
        Err(format!(
            "message of {} bytes is larger than the limit of {} bytes",
            u32::MAX,
            8 * 1024 * 1024
        ))
    );
    assert_eq!(outcomes[1], Ok(()));
}

#[test]
fn end_of_stream_inside_a_frame_is_unexpected_and_between_frames_is_clean() {
    let config = config();
    let second = frame(b"payload");
    for cut in 0..second.len() {
        let (mut server, mut raw) = accepted_with_raw(&config);
        write_all(&mut raw, &frame(b"first"));
        write_all(&mut raw, &second[..cut]);
        raw.shutdown(Shutdown::Write).unwrap();
        assert_eq!(server.recv().unwrap().unwrap(), &b"first"[..]);
        match (cut, server.recv()) {
            (0, Ok(None)) => {}
            (1.., Err(Error::UnexpectedEof { addr })) => {
                assert_eq!(addr.socket_addr(), Some(raw.local_addr().unwrap()));
            }
            (cut, other) => panic!("cut at {cut}: {other:?}"),
        }
        // Asking again does not turn one into the other.
        if cut == 0 {
            assert_eq!(server.recv().unwrap(), None);
        } else {
            assert!(matches!(server.recv(), Err(Error::Closed)));
        }
    }
}

#[test]
fn a_read_timeout_mid_message_loses_nothing() {
    let config = config();
    let (mut server, mut raw) = accepted_with_raw(&config);
    let wire = frame(&[42; 10_000]);
    write_all(&mut raw, &wire[..5_000]);
    server
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    assert!(matches!(server.recv(), Err(Error::Timeout)));
    assert!(started.elapsed() >= Duration::from_millis(90));
    assert!(matches!(server.recv(), Err(Error::Timeout)));
    write_all(&mut raw, &wire[5_000..]);
    write_all(&mut raw, &frame(b"next"));
    assert_eq!(server.recv().unwrap().unwrap(), vec![42u8; 10_000]);
    assert_eq!(server.recv().unwrap().unwrap(), &b"next"[..]);
}

#[test]
fn a_slow_sender_hits_the_per_message_deadline() {
    let deadline = Duration::from_millis(600);
    let config = config()
        .with_message_deadline(deadline)
        .with_read_timeout(Some(Duration::from_millis(300)));
    let (mut server, raw) = accepted_with_raw(&config);
    // One byte every 100 ms: always inside the 300 ms read timeout.
    let trickler = spawn(move || {
        let mut raw = raw;
        let wire = frame(&[0; 64]);
        for byte in wire.iter().take(40) {
            if raw.write_all(std::slice::from_ref(byte)).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let started = Instant::now();
    let outcome = loop {
        match server.recv() {
            Err(Error::Timeout) => continue, // never happens: bytes keep coming
            other => break other,
        }
    };
    let took = started.elapsed();
    match outcome {
        Err(Error::DeadlineExceeded { deadline: d, .. }) => assert_eq!(d, deadline),
        other => panic!("{other:?}"),
    }
    assert!(took >= deadline - Duration::from_millis(150), "{took:?}");
    assert!(took < deadline * 3, "{took:?}");
    assert!(matches!(server.recv(), Err(Error::Closed)));
    trickler.join();
}

#[test]
fn graceful_close_with_unread_data_in_flight_delivers_the_whole_reply() {
    const REPLY: usize = 2 * 1024 * 1024;
    let config = config();
    let (listener, addr) = listener(&config);
    let server = spawn(move || {
        for _ in 0..20 {
            let mut c = accept(&listener);
            c.recv().unwrap().unwrap(); // the request; what follows stays unread
            c.send(vec![b'r'; REPLY]).unwrap();
            c.close().unwrap();
        }
    });
    for run in 0..20 {
        let c = client(addr, &config);
        let (mut tx, mut rx) = c.split();
        tx.send("request").unwrap();
        let noise = spawn(move || {
            // Bytes the server never reads, in flight when it closes.
            for _ in 0..16 {
                if tx.send(vec![b'n'; 16 * 1024]).is_err() {
                    break;
                }
            }
            let _ = tx.close();
        });
        let reply = rx.recv().unwrap_or_else(|e| panic!("run {run}: {e}"));
        assert_eq!(reply.map(|r| r.len()), Some(REPLY), "run {run}");
        assert_eq!(rx.recv().unwrap(), None, "run {run}: the clean end");
        noise.join();
    }
    server.join();
}

#[test]
fn half_close_ends_one_direction_only() {
    let config = config();
    let (mut server, mut raw) = accepted_with_raw(&config);
    write_all(&mut raw, &frame(b"last words"));
    raw.shutdown(Shutdown::Write).unwrap();
    assert_eq!(server.recv().unwrap().unwrap(), &b"last words"[..]);
    assert_eq!(server.recv().unwrap(), None);
    // Our direction is still open.
    server.send("still heard").unwrap();
    server.close().unwrap();
    let got = read_to_end(&mut raw).unwrap();
    assert_eq!(got, frame(b"still heard"));
}

#[test]
fn a_split_send_half_close_is_a_half_close() {
    let config = config();
    let (listener, addr) = listener(&config);
    let c = client(addr, &config);
    let mut server = accept(&listener);
    let (mut tx, mut rx) = c.split();
    tx.send("one").unwrap();
    tx.close().unwrap();
    assert_eq!(server.recv_text().unwrap().as_deref(), Some("one"));
    assert_eq!(server.recv().unwrap(), None);
    server.send("reply after your end").unwrap();
    assert_eq!(
        rx.recv_text().unwrap().as_deref(),
        Some("reply after your end")
    );
    server.close().unwrap();
    assert_eq!(rx.recv().unwrap(), None);
}

#[test]
fn split_halves_carry_10_000_messages_each_way_at_once() {
    const N: u32 = 10_000;
    let config = config();
    let (listener, addr) = listener(&config);
    let client = client(addr, &config);
    let server = accept(&listener);
    let mut joins = Vec::new();
    for (side, conversation) in [("client", client), ("server", server)] {
        let (mut tx, mut rx) = conversation.split();
        joins.push(spawn(move || {
            for i in 0..N {
                tx.send(format!("{side} {i}")).unwrap();
            }
            tx.close().unwrap();
        }));
        let other = if side == "client" { "server" } else { "client" };
        joins.push(spawn(move || {
            for i in 0..N {
                assert_eq!(rx.recv_text().unwrap().unwrap(), format!("{other} {i}"));
            }
            assert_eq!(rx.recv().unwrap(), None);
        }));
    }
    for j in joins {
        j.join();
    }
}

#[test]
fn batching_sends_many_messages_in_order() {
    let config = config().with_send_buffer(4096);
    let (listener, addr) = listener(&config);
    let mut client = client(addr, &config);
    let mut server = accept(&listener);
    let sender = spawn(move || {
        for i in 0..5000u32 {
            client.feed(i.to_be_bytes()).unwrap();
        }
        client.feed(vec![9u8; 100_000]).unwrap(); // larger than the buffer
        client.send_all(["x", "y"]).unwrap();
        client.close().unwrap();
    });
    for i in 0..5000u32 {
        assert_eq!(server.recv().unwrap().unwrap(), &i.to_be_bytes()[..]);
    }
    assert_eq!(server.recv().unwrap().unwrap(), vec![9u8; 100_000]);
    assert_eq!(server.recv().unwrap().unwrap(), &b"x"[..]);
    assert_eq!(server.recv().unwrap().unwrap(), &b"y"[..]);
    assert_eq!(server.recv().unwrap(), None);
    server.close().unwrap();
    sender.join();
}

#[test]
fn a_peer_that_never_reads_makes_send_time_out_without_unbounded_buffering() {
    let config = config().with_write_timeout(Some(Duration::from_millis(200)));
    let (listener, addr) = listener(&config);
    let mut client = client(addr, &config);
    let _server = accept(&listener); // never reads
    let chunk = vec![0u8; 256 * 1024];
    let mut taken = 0usize;
    let outcome = loop {
        match client.send(&chunk) {
            Ok(()) => taken += 1,
            Err(e) => break e,
        }
        assert!(taken < 1000, "sends never blocked");
    };
    assert!(matches!(outcome, Error::Timeout), "{outcome:?}");
    // A timed-out send took nothing: trying again times out again.
    assert!(matches!(client.send(&chunk), Err(Error::Timeout)));
}

#[test]
fn text_that_is_not_utf8_is_an_error_that_keeps_the_message() {
    let config = config();
    let (mut server, mut raw) = accepted_with_raw(&config);
    write_all(&mut raw, &frame(&[0xff, 0xfe, b'a']));
    write_all(&mut raw, &frame("ok ✓".as_bytes()));
    match server.recv_text() {
        Err(Error::InvalidText { message, .. }) => assert_eq!(&message[..], &[0xff, 0xfe, b'a']),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.recv_text().unwrap().as_deref(), Some("ok ✓"));
}

#[test]
fn ipv6_loopback_works_where_available() {
    let config = config();
    if !have_ipv6() {
        return;
    }
    let listener = converse::TcpListener::bind_with("[::1]:0", &config).unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(addr.to_string().starts_with("tcp://[::1]:"), "{addr}");
    let mut c = converse::connect_with(&addr.to_string(), &config).unwrap();
    let mut s = accept(&listener);
    c.send("over v6").unwrap();
    assert_eq!(s.recv_text().unwrap().as_deref(), Some("over v6"));
}

#[test]
fn run_time_selection_from_an_address() {
    let config = config();
    let listener = converse::listen_with("tcp://127.0.0.1:0", &config).unwrap();
    let url = listener.local_addr().unwrap().to_string();
    assert!(
        url.starts_with("tcp://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    let mut c = converse::connect_with(&url, &config).unwrap();
    let mut s = listener.accept().unwrap();
    c.send_text("picked at run time").unwrap();
    assert_eq!(
        s.recv_text().unwrap().as_deref(),
        Some("picked at run time")
    );
    assert_eq!(c.peer_addr().unwrap(), s.local_addr().unwrap());
    assert_eq!(c.local_addr().unwrap(), s.peer_addr().unwrap());

    // localhost resolves.
    let port = listener.local_addr().unwrap().socket_addr().unwrap().port();
    let _c2 = converse::connect_with(&format!("tcp://localhost:{port}"), &config).unwrap();

    for bad in [
        "127.0.0.1:80",
        "tcp://",
        "tcp://nohostport",
        "sctp://127.0.0.1:1",
        "tcp://[::1:80",
    ] {
        match converse::connect(bad) {
            Err(Error::InvalidAddress(e)) => assert_eq!(e.input, bad),
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn connection_refused_names_the_address() {
    // A port that was just free: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    match converse::connect_with(&url, &config()) {
        Err(e @ Error::ConnectionRefused { .. }) => assert!(e.to_string().contains(&url), "{e}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn close_waits_at_most_the_linger_time_for_a_silent_peer() {
    let config = config().with_linger(Duration::from_millis(300));
    let (listener, addr) = listener(&config);
    let mut raw = raw_client(addr);
    let server = accept(&listener);
    let started = Instant::now();
    server.close().unwrap(); // the peer never sends its end
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(read_to_end(&mut raw).unwrap(), b"");
}

#[test]
fn abort_resets_the_connection() {
    let config = config();
    let (listener, addr) = listener(&config);
    let mut raw = raw_client(addr);
    let server = accept(&listener);
    write_all(&mut raw, &frame(b"unread"));
    server.abort();
    let mut buf = [0u8; 16];
    let err = raw.read(&mut buf).expect_err("a reset, not a clean end");
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

#[test]
fn a_closed_half_refuses_further_use_and_closing_twice_is_harmless() {
    let config = config();
    let (listener, addr) = listener(&config);
    let c = client(addr, &config);
    let s = accept(&listener);
    drop(s);
    let (mut tx, mut rx) = c.split();
    use converse::transport::Sender;
    let until = Instant::now() + Duration::from_secs(1);
    tx.inner().finish(until).unwrap();
    tx.inner().finish(until).unwrap(); // twice is harmless
    assert!(matches!(tx.send("x"), Err(Error::Closed)));
    assert_eq!(rx.recv().unwrap(), None); // the peer's end still arrives
}

#[test]
fn spin_mode_delivers_the_same_messages_and_keeps_timeouts() {
    let config = config().with_spin(Some(Duration::from_millis(2)));
    let (listener, addr) = listener(&config);
    let mut client = client(addr, &config);
    let mut server = accept(&listener);
    let echo = spawn(move || {
        while let Some(m) = server.recv().unwrap() {
            server.send(&m).unwrap();
        }
        server.close().unwrap();
    });
    for i in 0..2000u32 {
        let msg = vec![(i % 256) as u8; (i as usize * 37) % 70_000];
        client.send(&msg).unwrap();
        assert_eq!(client.recv().unwrap().unwrap(), msg, "message {i}");
    }
    // A receive that spins, then blocks, still honours the read timeout.
    client
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    assert!(matches!(client.recv(), Err(Error::Timeout)));
    assert!(started.elapsed() >= Duration::from_millis(90));
    client.set_read_timeout(Some(T)).unwrap();
    client.send("after the timeout").unwrap();
    assert_eq!(client.recv().unwrap().unwrap(), &b"after the timeout"[..]);
    client.close().unwrap();
    echo.join();
}

#[test]
fn spin_mode_is_off_in_split_halves_which_carry_large_messages_safely() {
    const N: u32 = 300;
    let config = config().with_spin(Some(Duration::from_millis(1)));
    let (listener, addr) = listener(&config);
    let client = client(addr, &config);
    let server = accept(&listener);
    let mut joins = Vec::new();
    for conversation in [client, server] {
        let (mut tx, mut rx) = conversation.split();
        // Large messages fill the socket buffers: were the receive on the
        // other thread spinning (non-blocking), sends would see it.
        joins.push(spawn(move || {
            for i in 0..N {
                tx.send(vec![(i % 251) as u8; 200_000]).unwrap();
            }
            tx.close().unwrap();
        }));
        joins.push(spawn(move || {
            for i in 0..N {
                assert_eq!(rx.recv().unwrap().unwrap(), vec![(i % 251) as u8; 200_000]);
            }
            assert_eq!(rx.recv().unwrap(), None);
        }));
    }
    for j in joins {
        j.join();
    }
}

/// `with_socket_send_buffer` sets the kernel's send buffer of connected
/// and accepted sockets alike (Linux doubles the figure).
#[cfg(target_os = "linux")]
#[test]
fn the_socket_send_buffer_is_set_on_both_ends() {
    let config = config().with_socket_send_buffer(Some(64 * 1024));
    let (listener, addr) = listener(&config);
    let client = client(addr, &config);
    let server = accept(&listener);
    for c in [&client, &server] {
        let size = c.socket().unwrap().send_buffer_size().unwrap();
        assert_eq!(size, 128 * 1024);
    }
    let plain = common::client(addr, &common::config());
    let _accepted = accept(&listener);
    let size = plain.socket().unwrap().send_buffer_size().unwrap();
    assert_ne!(size, 128 * 1024, "the system's, unless set");
}
