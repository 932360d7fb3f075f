//! SPEC's *Promises under time*, end to end over real sockets. Each promise
//! is proven first without sockets or sleeps, by the engine's unit tests
//! (`src/engine/`); these show the drivers keep it. Where a test sleeps, the
//! sleep is the point: an application that is late or busy.

mod common;

use std::io::{ErrorKind, Read};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;
use converse::{Config, Conversation, Delivery, Error, Udp, UdpListener};

/// A whole message is delivered however late `recv` comes, even when its
/// first half was read long before the deadline passed.
#[test]
fn a_message_that_arrived_whole_in_time_is_delivered_however_late_recv_comes() {
    let deadline = Duration::from_millis(100);
    let config = config().with_message_deadline(deadline);
    let (listener, addr) = listener(&config);
    let mut raw = raw_client(addr);
    let mut server = accept(&listener);
    let wire = frame(b"patience");
    write_all(&mut raw, &wire[..6]);
    server
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    // The first half is read: the message is under way.
    assert!(matches!(server.recv(), Err(Error::Timeout)));
    write_all(&mut raw, &wire[6..]);
    // The application is busy for three deadlines.
    std::thread::sleep(3 * deadline);
    assert_eq!(server.recv().unwrap().unwrap(), &b"patience"[..]);
    // A message that never completes still fails, from its arrival.
    write_all(&mut raw, &frame(b"never finished")[..6]);
    server.set_read_timeout(Some(T)).unwrap();
    let started = Instant::now();
    assert!(matches!(server.recv(), Err(Error::DeadlineExceeded { .. })));
    assert!(started.elapsed() < deadline + Duration::from_secs(1));
}

/// A UDP listener's datagrams wait for a late `accept`, and for a busy
/// handler: they are all delivered before the end is reported.
#[test]
fn udp_datagrams_already_waiting_are_delivered_before_the_end() {
    let idle = Duration::from_millis(150);
    let config = config().with_idle_timeout(Some(idle));
    let l = UdpListener::bind_with("127.0.0.1:0", &config).unwrap();
    let addr = l.local_addr().unwrap().socket_addr().unwrap();
    let mut c = Conversation::new(
        Udp::connect_with(addr, &config.clone().with_idle_timeout(None)).unwrap(),
    );
    for i in 0..3u8 {
        c.send([i]).unwrap();
    }
    // `accept` comes three idle timeouts late: nothing is lost.
    std::thread::sleep(3 * idle);
    let mut s = Conversation::new(l.accept().unwrap());
    for i in 0..3u8 {
        assert_eq!(s.recv().unwrap().unwrap(), &[i][..]);
    }
    assert_eq!(s.recv().unwrap(), None, "then the end: the peer is silent");
    let stats = l.stats();
    assert_eq!(
        (stats.delivered, stats.unread, stats.evicted),
        (3, 0, 1),
        "{stats:?}"
    );

    // A busy handler: the peer speaks while the handler works, then goes
    // quiet; the handler finds everything, then the end.
    c.send("first").unwrap();
    let mut s = Conversation::new(l.accept().unwrap());
    assert_eq!(s.recv().unwrap().unwrap(), &b"first"[..]);
    c.send("while you were busy").unwrap();
    c.send("and this").unwrap();
    std::thread::sleep(3 * idle);
    assert_eq!(s.recv().unwrap().unwrap(), &b"while you were busy"[..]);
    assert_eq!(s.recv().unwrap().unwrap(), &b"and this"[..]);
    assert_eq!(s.recv().unwrap(), None);
    let stats = l.stats();
    assert_eq!(
        (stats.delivered, stats.unread, stats.evicted),
        (6, 0, 2),
        "{stats:?}"
    );
}

/// A UDP client's idleness counts from the server's last datagram; a
/// reply that arrived while the client was busy is received, not taken for
/// the end.
#[test]
fn a_udp_reply_already_waiting_is_received_not_taken_for_the_end() {
    let idle = Duration::from_millis(150);
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_read_timeout(Some(T)).unwrap();
    let config = config().with_idle_timeout(Some(idle));
    let mut c =
        Conversation::new(Udp::connect_with(server.local_addr().unwrap(), &config).unwrap());
    c.send("question").unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"question");
    server.send_to(b"answer", from).unwrap();
    // The client is busy for longer than its idle timeout.
    std::thread::sleep(3 * idle);
    assert_eq!(c.recv().unwrap().unwrap(), &b"answer"[..]);
    // Nothing more comes: now the silence is the end.
    let started = Instant::now();
    assert_eq!(c.recv().unwrap(), None);
    let took = started.elapsed();
    assert!(
        took >= idle - Duration::from_millis(20) && took < T,
        "{took:?}"
    );
}

/// `close` returns within the linger time even with megabytes queued for a
/// peer that never reads, says what was never sent, and the peer sees a
/// reset, never a clean end.
#[test]
fn close_is_bounded_with_megabytes_queued_for_a_peer_that_never_reads() {
    let linger = Duration::from_millis(300);
    let config = config()
        .with_linger(linger)
        .with_write_timeout(None)
        .with_send_buffer(16 << 20);
    let (listener, addr) = listener(&config);
    let mut raw = raw_client(addr);
    raw.set_read_timeout(Some(T)).unwrap();
    let mut server = accept(&listener);
    let chunk = vec![7u8; 64 * 1024];
    for _ in 0..128 {
        server.feed(&chunk).unwrap(); // 8 MiB, queued: none written yet
    }
    assert!(server.queued() >= 8 << 20);
    let started = Instant::now();
    let outcome = server.close();
    let took = started.elapsed();
    assert!(took < linger + Duration::from_secs(2), "{took:?}");
    match outcome {
        Err(Error::Unsent { bytes, .. }) => assert!(bytes > 0 && bytes <= 8 << 20),
        other => panic!("{other:?}"),
    }
    // The peer reads what got through, then a reset: not a clean end.
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let end = loop {
        match raw.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => got += n,
            Err(e) => break Err(e.kind()),
        }
    };
    assert_eq!(end, Err(ErrorKind::ConnectionReset), "after {got} bytes");
    assert!(got < 8 << 20);
}

/// A peer that resets the connection with our messages unread: `close`
/// says so instead of `Ok`.
#[test]
fn close_reports_a_peer_that_reset_the_connection_unread() {
    let config = config();
    let (listener, addr) = listener(&config);
    let raw = raw_client(addr);
    let mut server = accept(&listener);
    server.send("you will not read this").unwrap();
    // The peer closes with that message unread: its kernel resets.
    let peer = spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        drop(raw);
    });
    match server.close() {
        Err(Error::ConnectionReset { .. }) => {}
        other => panic!("{other:?}"),
    }
    peer.join();
}

/// A peer that reads everything and ends its side: `close` confirms.
#[test]
fn close_confirms_when_the_peer_ends_after_reading() {
    let config = config();
    let (listener, addr) = listener(&config);
    let mut raw = raw_client(addr);
    let mut server = accept(&listener);
    server.send("read me").unwrap();
    let peer = spawn(move || {
        let mut buf = [0u8; 11];
        raw.read_exact(&mut buf).unwrap();
        assert_eq!(&buf[4..], b"read me");
        // Reads our end, then ends its own.
        assert_eq!(read_to_end(&mut raw).unwrap(), b"");
    });
    assert_eq!(server.close().unwrap(), Delivery::Confirmed);
    peer.join();
}

/// Dropping a conversation with messages fed but not flushed: if the peer
/// does not read them within the linger time, the connection is reset, so
/// the peer sees an error, never a clean end after missing messages.
#[test]
fn dropping_with_a_queue_the_peer_never_reads_is_a_visible_reset() {
    let config = config()
        .with_linger(Duration::from_millis(200))
        .with_send_buffer(16 << 20);
    let (listener, addr) = listener(&config);
    let mut raw = raw_client(addr);
    let mut server = accept(&listener);
    for _ in 0..128 {
        server.feed(vec![1u8; 64 * 1024]).unwrap();
    }
    let started = Instant::now();
    drop(server);
    assert!(started.elapsed() < Duration::from_secs(3));
    let mut buf = vec![0u8; 1 << 16];
    let end = loop {
        match raw.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(_) => {}
            Err(e) => break Err(e.kind()),
        }
    };
    assert_eq!(end, Err(ErrorKind::ConnectionReset));
}

/// After a fatal receive error, both halves say `Closed` (not the
/// `BrokenPipe` a send into the shut socket would give).
#[test]
fn after_a_fatal_receive_error_sending_is_closed() {
    let config = config().with_max_message_len(100);
    let (listener, addr) = listener(&config);
    let mut raw = raw_client(addr);
    let mut server = accept(&listener);
    write_all(&mut raw, &1000u32.to_be_bytes());
    assert!(matches!(
        server.recv(),
        Err(Error::MessageTooLarge {
            len: 1000,
            max: 100
        })
    ));
    assert!(matches!(server.send("reply"), Err(Error::Closed)));
    assert!(matches!(server.feed("reply"), Err(Error::Closed)));
    assert!(matches!(server.recv(), Err(Error::Closed)));
    // Closing it is not an error: the failure was reported.
    assert_eq!(server.close().unwrap(), Delivery::Unknown);
}

/// A configuration that cannot work is refused by every constructor,
/// alike, before anything is created.
#[test]
fn a_configuration_that_cannot_work_is_refused_when_it_is_made() {
    let zero = Duration::ZERO;
    let bad = [
        (Config::new().with_read_timeout(Some(zero)), "read_timeout"),
        (
            Config::new().with_write_timeout(Some(zero)),
            "write_timeout",
        ),
        (
            Config::new().with_connect_timeout(Some(zero)),
            "connect_timeout",
        ),
        (
            Config::new().with_accept_timeout(Some(zero)),
            "accept_timeout",
        ),
        (
            Config::new().with_message_deadline(zero),
            "message_deadline",
        ),
        (Config::new().with_idle_timeout(Some(zero)), "idle_timeout"),
    ];
    let path = SocketPath::new("refused");
    for (config, setting) in bad {
        let outcomes = [
            converse::listen_with("tcp://127.0.0.1:0", &config).map(drop),
            converse::listen_with("udp://127.0.0.1:0", &config).map(drop),
            converse::listen_with(&path.url("unix"), &config).map(drop),
            converse::connect_with("tcp://127.0.0.1:1", &config).map(drop),
            converse::connect_with("udp://127.0.0.1:1", &config).map(drop),
            converse::Memory::pair_with(&config).map(drop),
        ];
        for outcome in outcomes {
            match outcome {
                Err(Error::InvalidConfig(e)) => assert_eq!(e.setting, setting),
                other => panic!("{setting}: {other:?}"),
            }
        }
    }
}

/// The UDP client applies its write timeout to its socket (it used to
/// record it and never apply it).
#[test]
fn the_udp_client_applies_its_write_timeout() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let config = Config::new().with_write_timeout(Some(Duration::from_millis(700)));
    let mut c =
        Conversation::new(Udp::connect_with(server.local_addr().unwrap(), &config).unwrap());
    let socket_timeout = |c: &Conversation<Udp>| c.socket().unwrap().write_timeout().unwrap();
    assert_eq!(socket_timeout(&c), Some(Duration::from_millis(700)));
    c.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    assert_eq!(socket_timeout(&c), Some(Duration::from_secs(3)));
    c.set_write_timeout(None).unwrap();
    assert_eq!(socket_timeout(&c), None);
}

/// A dual-stack `[::]` listener gives an IPv4 peer the IPv4 limit, and a
/// datagram over it is `MessageTooLarge`, not a raw `EMSGSIZE`.
#[test]
fn a_dual_stack_listener_gives_an_ipv4_peer_the_ipv4_limit() {
    if !have_ipv6() {
        return;
    }
    let config = config().with_only_v6(false);
    let l = UdpListener::bind_with("[::]:0", &config).unwrap();
    let port = l.local_addr().unwrap().socket_addr().unwrap().port();
    let mut c = Conversation::new(Udp::connect_with(("127.0.0.1", port), &config).unwrap());
    c.send("from v4").unwrap();
    let mut s = Conversation::new(l.accept().unwrap());
    assert_eq!(s.recv().unwrap().unwrap(), &b"from v4"[..]);
    assert_eq!(s.max_message_len(), Udp::MAX_PAYLOAD_V4);
    match s.send(vec![0u8; Udp::MAX_PAYLOAD_V4 + 1]) {
        Err(Error::MessageTooLarge { len, max }) => {
            assert_eq!((len, max), (65_508, 65_507))
        }
        other => panic!("{other:?}"),
    }
    s.send(vec![1u8; Udp::MAX_PAYLOAD_V4]).unwrap();
    assert_eq!(c.recv().unwrap().unwrap().len(), Udp::MAX_PAYLOAD_V4);
}

/// `TcpListener::accept` skips a connection that was reset before it was
/// accepted, and hands out the next live one.
#[test]
fn accept_skips_connections_reset_before_they_were_accepted() {
    let config = config();
    let (listener, addr) = listener(&config);
    for _ in 0..3 {
        let doomed = raw_client(addr);
        socket2::SockRef::from(&doomed)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(doomed); // a reset, while it waits in the backlog
    }
    let mut good = client(addr, &config);
    let good_addr = good.local_addr().unwrap();
    good.send("alive").unwrap();
    let mut server = accept(&listener);
    assert_eq!(server.peer_addr().unwrap(), good_addr);
    assert_eq!(server.recv().unwrap().unwrap(), &b"alive"[..]);
}

/// An I/O error says what went wrong, once: "address in use", not "I/O
/// error", and not the system's message twice.
#[test]
fn an_io_error_says_what_went_wrong_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", taken.local_addr().unwrap());
    let err = converse::listen(&url).unwrap_err();
    let text = err.to_string();
    assert_eq!(text, format!("{url}: address in use"), "{err:?}");
    let source = std::error::Error::source(&err).expect("the system's error");
    assert!(
        source.to_string().contains("Address already in use"),
        "{source}"
    );
}

/// Every listener's `accept` has a timeout, and can be stopped from
/// another thread.
#[test]
fn every_listener_accept_times_out_and_can_be_stopped() {
    let path = SocketPath::new("stop");
    for url in [
        "tcp://127.0.0.1:0".to_owned(),
        "udp://127.0.0.1:0".to_owned(),
        path.url("unix"),
    ] {
        let config = Config::new().with_accept_timeout(Some(Duration::from_millis(50)));
        let listener = converse::listen_with(&url, &config).unwrap();
        let started = Instant::now();
        assert!(matches!(listener.accept(), Err(Error::Timeout)), "{url}");
        assert!(started.elapsed() >= Duration::from_millis(40), "{url}");

        listener.set_accept_timeout(None).unwrap();
        let stop = listener.stopper();
        let waiting = spawn(move || {
            let outcome = listener.accept().map(drop);
            (outcome, listener)
        });
        std::thread::sleep(Duration::from_millis(50));
        stop.stop();
        let (outcome, listener) = waiting.join();
        assert!(matches!(outcome, Err(Error::Closed)), "{url}: {outcome:?}");
        assert!(matches!(listener.accept(), Err(Error::Closed)), "{url}");
    }
}

/// Per-connection options are reachable after `accept` on the
/// run-time-chosen path: the socket, the deadline, the linger time.
#[test]
fn per_connection_options_are_reachable_on_the_run_time_path() {
    let listener = converse::listen_with("tcp://127.0.0.1:0", &config()).unwrap();
    let url = listener.local_addr().unwrap().to_string();
    let _client = converse::connect(&url).unwrap();
    let mut server = listener.accept().unwrap();
    let socket = server.socket().expect("a socket");
    assert!(socket.tcp_nodelay().unwrap());
    socket.set_tcp_nodelay(false).unwrap();
    assert!(!server.socket().unwrap().tcp_nodelay().unwrap());
    server.set_message_deadline(Duration::from_secs(2)).unwrap();
    assert!(matches!(
        server.set_message_deadline(Duration::ZERO),
        Err(Error::InvalidConfig(_))
    ));
    server.set_linger(Duration::from_millis(10));
    assert_eq!(server.linger(), Duration::from_millis(10));
}
