//! QUIC: conversations over `quic://`, many on one connection, the ends of
//! a stream, a listener's limits, and messages whole and in order through
//! a lossy path. (The scenario suite runs over QUIC too:
//! `tests/scenarios.rs`.)
#![cfg(feature = "quic")]

mod common;

use std::time::{Duration, Instant};

use common::*;
use converse::{Config, Delivery, Error};

use common::proxy;

fn quic_config() -> Config {
    tls::config(config())
}

/// The silent server (a UDP socket that never answers) did get a
/// handshake attempt: a QUIC Initial, padded to 1,200 bytes at least.
fn assert_got_an_initial(silent: &std::net::UdpSocket) {
    silent.set_read_timeout(Some(T)).unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        silent.recv_from(&mut buf).unwrap().0 >= 1200,
        "a QUIC Initial"
    );
}

/// A listener on `quic://127.0.0.1:0` whose conversations echo.
fn quic_echo(config: &Config) -> Echo {
    Echo::serve(converse::listen_with("quic://127.0.0.1:0", config).unwrap())
}

#[test]
fn hello_and_hi_over_quic() {
    let config = quic_config();
    let echo = quic_echo(&config);
    let mut c = converse::connect_with(&echo.url, &config).unwrap();
    assert_eq!(c.peer_addr().unwrap().scheme(), "quic");
    c.send("hello").unwrap();
    assert_eq!(c.recv().unwrap().as_deref(), Some(&b"hello"[..]));
    let big = vec![7u8; 3 << 20];
    c.send(&big).unwrap();
    assert_eq!(c.recv().unwrap().as_deref(), Some(&big[..]));
    assert_eq!(c.close().unwrap(), Delivery::Confirmed);
}

/// The server's identity is verified (as over TLS), and the client's when
/// the listener asks for one.
#[test]
fn identities_are_verified_both_ways() {
    let kit = tls::kit();
    let server = tls::server()
        .require_client_certs(kit.ca.cert_pem())
        .unwrap();
    let config = config()
        .with_tls_server(server)
        .with_tls_client(tls::client_with_cert());
    let l = converse::listen_with("quic://127.0.0.1:0", &config).unwrap();
    let url = l.local_addr().unwrap().to_string();
    let server = spawn(move || {
        let mut b = l.accept().unwrap();
        let who = b.peer_identity().expect("the client's certificate");
        let m = b.recv().unwrap().unwrap();
        b.send(&m).unwrap();
        (who.certificates().len(), b.close().unwrap())
    });
    let mut a = converse::connect_with(&url, &config).unwrap();
    assert!(a.peer_identity().unwrap().is_valid_for("127.0.0.1"));
    a.send("who am I").unwrap();
    assert_eq!(a.recv().unwrap().as_deref(), Some(&b"who am I"[..]));
    assert_eq!(a.close().unwrap(), Delivery::Confirmed);
    let (certs, delivery) = server.join();
    assert!(certs >= 1);
    assert_eq!(delivery, Delivery::Confirmed);

    // A client without a certificate is turned away by the same listener.
    let l = converse::listen_with("quic://127.0.0.1:0", &config).unwrap();
    let url = l.local_addr().unwrap().to_string();
    let anonymous = common::config().with_tls_client(tls::client());
    let outcome = converse::connect_with(&url, &anonymous).and_then(|mut c| {
        c.send("let me in")?;
        c.recv()
    });
    assert!(outcome.is_err(), "{outcome:?}");
    // And a client that does not trust the server's CA refuses it.
    let stranger = common::config().with_tls_client(converse::tls::TlsClient::new());
    assert!(converse::connect_with(&url, &stranger).is_err());
}

/// Conversations to the same server share one connection: a listener that
/// takes one connection serves three conversations of one client at once,
/// and refuses a second connection (another client's settings).
#[test]
fn conversations_to_one_server_share_a_connection() {
    let config = quic_config().with_max_peers(1);
    let echo = quic_echo(&config);
    let mut convs: Vec<_> = (0..3)
        .map(|_| converse::connect_with(&echo.url, &config).unwrap())
        .collect();
    for (i, c) in convs.iter_mut().enumerate() {
        c.send(format!("conversation {i}")).unwrap();
    }
    for (i, c) in convs.iter_mut().enumerate().rev() {
        assert_eq!(
            c.recv_text().unwrap().as_deref(),
            Some(format!("conversation {i}").as_str())
        );
    }
    // Another TLS client setting is another connection: over the cap.
    let other = config.clone().with_tls_client(tls::client());
    let refused = converse::connect_with(&echo.url, &other).and_then(|mut c| {
        c.send("one more")?;
        c.recv()
    });
    assert!(refused.is_err(), "{refused:?}");
    for c in convs {
        assert_eq!(c.close().unwrap(), Delivery::Confirmed);
    }
    for _ in 0..3 {
        assert_eq!(echo.outcome(), Ok(1));
    }
}

/// An abort resets the stream: the peer's receive says so, and the
/// connection's other conversations go on.
#[test]
fn an_abort_resets_one_stream_only() {
    let config = quic_config();
    let l = converse::listen_with("quic://127.0.0.1:0", &config).unwrap();
    let url = l.local_addr().unwrap().to_string();
    let mut a1 = converse::connect_with(&url, &config).unwrap();
    let mut a2 = converse::connect_with(&url, &config).unwrap();
    a1.send("one").unwrap();
    a2.send("two").unwrap();
    let mut b1 = l.accept().unwrap();
    let mut b2 = l.accept().unwrap();
    assert_eq!(b1.recv_text().unwrap().as_deref(), Some("one"));
    assert_eq!(b2.recv_text().unwrap().as_deref(), Some("two"));
    a1.abort();
    assert!(
        matches!(b1.recv(), Err(Error::ConnectionReset { .. })),
        "an abort is a reset"
    );
    b2.send("still here").unwrap();
    assert_eq!(a2.recv_text().unwrap().as_deref(), Some("still here"));
    let closing = spawn(move || b2.recv().map(|m| m.is_none()).and_then(|_| b2.close()));
    assert_eq!(a2.close().unwrap(), Delivery::Confirmed);
    assert_eq!(closing.join().unwrap(), Delivery::Confirmed);
}

/// Datagrams lost, duplicated and reordered both ways (seeded): every
/// message arrives whole, once, in order, on two conversations at once.
#[test]
fn messages_survive_loss_duplication_and_reordering() {
    // Loss recovery backs off (each probe lost doubles the wait, from a
    // second during the handshake): the deadlines are generous, the
    // promise is that every message arrives.
    let config = quic_config()
        .with_read_timeout(Some(6 * T))
        .with_handshake_timeout(6 * T)
        .with_message_deadline(6 * T);
    let echo = quic_echo(&config);
    let loss = proxy::Loss {
        drop: 0.05,
        duplicate: 0.03,
        reorder: 0.05,
        seed: 7,
    };
    let proxy = proxy::LossyUdpProxy::start(echo.addr(), loss);
    let url = format!("quic://{}", proxy.addr);
    let talkers: Vec<_> = (0..2u64)
        .map(|k| {
            let (url, config) = (url.clone(), config.clone());
            spawn(move || {
                let c = converse::connect_with(&url, &config).unwrap();
                let mut rng = Rng::new(100 + k);
                let sent: Vec<Vec<u8>> = (0..120)
                    .map(|_| {
                        let len = rng.below(20_000) as usize;
                        rng.bytes(len)
                    })
                    .collect();
                let (mut tx, mut rx) = c.split();
                let to_send = sent.clone();
                let sender = spawn(move || {
                    for m in &to_send {
                        tx.send(m).unwrap();
                    }
                    tx
                });
                for (i, m) in sent.iter().enumerate() {
                    let got = rx
                        .recv()
                        .unwrap_or_else(|e| panic!("message {i} of conversation {k}: {e}"))
                        .expect("the echo");
                    assert_eq!(&got[..], &m[..], "message {i} of conversation {k}");
                }
                let tx = sender.join();
                let c = tx.reunite(rx).unwrap();
                c.close().unwrap()
            })
        })
        .collect();
    for t in talkers {
        t.join_within(30 * T);
    }
    let s = &proxy.stats;
    use std::sync::atomic::Ordering::Relaxed;
    assert!(s.dropped.load(Relaxed) > 0, "the path lost nothing: {s:?}");
    assert!(s.swapped.load(Relaxed) > 0 && s.duplicated.load(Relaxed) > 0);
}

/// Datagrams that are not QUIC cost the listener nothing: it accepts no
/// conversation from them and goes on serving.
#[test]
fn garbage_datagrams_cost_only_themselves() {
    let config = quic_config();
    let l = converse::listen_with("quic://127.0.0.1:0", &config).unwrap();
    let addr = l.local_addr().unwrap().socket_addr().unwrap();
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = Rng::new(9);
    for i in 0..500 {
        let len = 1 + rng.below(1500) as usize;
        let mut d = rng.bytes(len);
        if i % 2 == 0 {
            // A long header's first byte: the listener parses further.
            d[0] = 0xc0 | (d[0] & 0x0f);
        }
        junk.send_to(&d, addr).unwrap();
    }
    l.set_accept_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(matches!(l.accept(), Err(Error::Timeout)));
    let mut a = converse::connect_with(&l.local_addr().unwrap().to_string(), &config).unwrap();
    a.send("still serving").unwrap();
    l.set_accept_timeout(Some(T)).unwrap();
    let mut b = l.accept().unwrap();
    assert_eq!(b.recv_text().unwrap().as_deref(), Some("still serving"));
    let started = Instant::now();
    drop(b);
    drop(a);
    assert!(started.elapsed() < T);
}

/// A listener needs a certificate.
#[test]
fn a_listener_needs_a_certificate() {
    assert!(matches!(
        converse::listen_with("quic://127.0.0.1:0", &config()),
        Err(Error::InvalidConfig(_))
    ));
    let mut board = converse::Switchboard::new().unwrap();
    assert!(matches!(
        board.listen_with("quic://127.0.0.1:0", &config()),
        Err(Error::InvalidConfig(_))
    ));
}

/// A switchboard serves QUIC conversations on its thread beside TCP ones:
/// blocking clients, many conversations on one connection, each echoed,
/// each ended once; and it connects out over QUIC too.
#[test]
fn a_switchboard_serves_and_connects_over_quic() {
    use converse::switchboard::{End, Event, Events, Switchboard};
    let config = quic_config();
    let mut board = Switchboard::with_config(&config).unwrap();
    let quic = board.listen("quic://127.0.0.1:0").unwrap();
    let tcp = board.listen("tcp://127.0.0.1:0").unwrap();
    let quic_url = board.listener_addr(quic).unwrap().to_string();
    let tcp_url = board.listener_addr(tcp).unwrap().to_string();
    assert!(quic_url.starts_with("quic://127.0.0.1:"));
    let clients = spawn(move || {
        let mut convs = vec![converse::connect_with(&tcp_url, &quic_config()).unwrap()];
        for _ in 0..5 {
            convs.push(converse::connect_with(&quic_url, &quic_config()).unwrap());
        }
        for (i, c) in convs.iter_mut().enumerate() {
            for k in 0..20 {
                c.send(vec![i as u8; 1 + k * 997]).unwrap();
            }
        }
        for (i, c) in convs.iter_mut().enumerate() {
            for k in 0..20 {
                assert_eq!(c.recv().unwrap().unwrap(), vec![i as u8; 1 + k * 997]);
            }
        }
        convs
            .into_iter()
            .map(|c| c.close().unwrap())
            .collect::<Vec<_>>()
    });
    // Out: the switchboard as a QUIC client of a blocking listener.
    let out_listener = converse::listen_with("quic://127.0.0.1:0", &config).unwrap();
    let out = board
        .connect(&out_listener.local_addr().unwrap().to_string())
        .unwrap();
    board.send(out, "from the switchboard").unwrap();
    let far = spawn(move || {
        let mut c = out_listener.accept().unwrap();
        let m = c.recv().unwrap().unwrap();
        c.send(&m).unwrap();
        c.close().unwrap()
    });
    let mut events = Events::new();
    let (mut accepted, mut ended, mut echoed_out) = (0, 0, false);
    let until = Instant::now() + 4 * T;
    while (ended < 6 || !echoed_out) && Instant::now() < until {
        board
            .wait(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        let batch: Vec<Event> = events.drain().collect();
        for event in batch {
            match event {
                Event::Accepted { .. } => accepted += 1,
                Event::Message { id, message } if id == out => {
                    assert_eq!(&message[..], b"from the switchboard");
                    echoed_out = true;
                    board.close(out);
                }
                Event::Message { id, message } => board.send(id, &message).unwrap(),
                Event::Ended { id, end } if id != out => {
                    assert!(matches!(end, End::Peer | End::Closed(_)), "{end:?}");
                    board.close(id);
                    ended += 1;
                }
                _ => {}
            }
        }
    }
    assert_eq!(accepted, 6);
    assert_eq!(ended, 6);
    assert!(echoed_out);
    for delivery in clients.join() {
        assert_eq!(delivery, Delivery::Confirmed);
    }
    // Keep serving until the far end's close is answered.
    let far = std::thread::spawn(move || far.join());
    let until = Instant::now() + T;
    while !far.is_finished() && Instant::now() < until {
        board
            .wait(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        events.drain().for_each(drop);
    }
    assert_eq!(far.join().unwrap(), Delivery::Confirmed);
}

/// A switchboard's QUIC connect does not wait for the handshake: the id
/// comes at once, the thread serves its other conversations meanwhile,
/// and a server that never answers ends the conversation with the
/// handshake timeout, told once as an event, while another connect there
/// with more patience goes on (until `abort` ends it, once too).
#[test]
fn a_switchboard_quic_connect_does_not_hold_up_its_thread() {
    use converse::switchboard::{End, Event, Events, Switchboard};
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("quic://{}", silent.local_addr().unwrap());
    let echo = Echo::serve(converse::listen_with("tcp://127.0.0.1:0", &config()).unwrap());
    let board = spawn(move || {
        // An hour to shake hands: a connect that waits for it never
        // returns within the test's bound.
        let patient = quic_config().with_handshake_timeout(Duration::from_secs(3600));
        let mut board = Switchboard::with_config(&patient).unwrap();
        let waiting = board.connect(&silent_url).unwrap();
        board.send(waiting, "held until connected").unwrap();
        // Another connect to the same silent server, soon given up on.
        // (The same TLS settings: the two share the connection under way.)
        let brief = patient
            .clone()
            .with_handshake_timeout(Duration::from_millis(300));
        let timing_out = board.connect_with(&silent_url, &brief).unwrap();
        let tcp = board.connect(&echo.url).unwrap();
        board.send(tcp, "served meanwhile").unwrap();
        let mut events = Events::new();
        let (mut echoed, mut timed_out, mut aborted) = (false, 0, 0);
        let mut abort_at = None;
        let until = Instant::now() + 2 * T;
        while (!echoed || timed_out == 0 || aborted == 0) && Instant::now() < until {
            board
                .wait(&mut events, Some(Duration::from_millis(50)))
                .unwrap();
            if abort_at.is_some_and(|t| Instant::now() >= t) {
                // The patient one, still under way after the other's end
                // (the two share the handshake; that it outlives the one
                // given up is proven on a fake clock, in
                // `a_handshake_shared_by_two_connects_outlives_the_one_given_up`):
                // given up now.
                board.abort(waiting);
                abort_at = None;
            }
            let batch: Vec<Event> = events.drain().collect();
            for event in batch {
                match event {
                    Event::Message { id, message } if id == tcp => {
                        assert_eq!(&message[..], b"served meanwhile");
                        echoed = true;
                    }
                    Event::Ended { id, end } if id == timing_out => {
                        assert!(
                            matches!(end, End::Failed(Error::Timeout)),
                            "the handshake timeout: {end:?}"
                        );
                        timed_out += 1;
                        abort_at = Some(Instant::now() + Duration::from_millis(500));
                    }
                    Event::Ended { id, end } if id == waiting => {
                        assert!(matches!(end, End::Aborted), "{end:?}");
                        aborted += 1;
                    }
                    Event::Connected { id } => {
                        assert_eq!(id, tcp, "only the TCP conversation connects");
                    }
                    _ => {}
                }
            }
        }
        // Nothing more about either.
        board
            .wait(&mut events, Some(Duration::from_millis(200)))
            .unwrap();
        for event in events.drain() {
            assert!(
                !matches!(event, Event::Ended { id, .. } if id == waiting || id == timing_out),
                "ended twice: {event:?}"
            );
        }
        (echoed, timed_out, aborted)
    })
    .join_within(4 * T);
    assert_eq!(board, (true, 1, 1));
    assert_got_an_initial(&silent);
}

/// Connects that share a handshake are each told when it is done: two
/// switchboard connects to one server, made one after the other, both
/// connect at once (neither waits for its own hour-long deadline).
#[test]
fn switchboard_connects_that_share_a_handshake_both_connect() {
    use converse::switchboard::{Event, Events, Switchboard};
    let config = quic_config();
    let echo = quic_echo(&config);
    let done = spawn(move || {
        let patient = config.with_handshake_timeout(Duration::from_secs(3600));
        let mut board = Switchboard::with_config(&patient).unwrap();
        let ids = [
            board.connect(&echo.url).unwrap(),
            board.connect(&echo.url).unwrap(),
        ];
        for (i, &id) in ids.iter().enumerate() {
            board.send(id, vec![i as u8; 3]).unwrap();
        }
        let mut events = Events::new();
        let (mut connected, mut echoed) = (Vec::new(), 0);
        let until = Instant::now() + 2 * T;
        while echoed < 2 && Instant::now() < until {
            board
                .wait(&mut events, Some(Duration::from_millis(50)))
                .unwrap();
            for event in events.drain() {
                match event {
                    Event::Connected { id } => connected.push(id),
                    Event::Message { id, message } => {
                        let i = ids.iter().position(|&x| x == id).unwrap();
                        assert_eq!(&message[..], &[i as u8; 3][..]);
                        echoed += 1;
                    }
                    Event::Ended { id, end } => panic!("{id:?} ended: {end:?}"),
                    _ => {}
                }
            }
        }
        connected.sort_by_key(|id| id.as_u64());
        let mut expected = ids.to_vec();
        expected.sort_by_key(|id| id.as_u64());
        (connected == expected, echoed)
    })
    .join_within(4 * T);
    assert_eq!(done, (true, 2));
}

/// An async QUIC connect waits on the runtime, not on its blocking pool:
/// it connects while the pool's only thread is busy, and one cancelled
/// before its handshake is done gives the handshake up, so the runtime
/// can be dropped at once (a connect left on the pool, with an hour to
/// shake hands, would hold the drop for that hour).
#[cfg(feature = "tokio")]
#[test]
fn an_async_quic_connect_waits_on_the_runtime_and_is_cancelled_by_a_drop() {
    let config = quic_config();
    let echo = quic_echo(&config);
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("quic://{}", silent.local_addr().unwrap());
    let done = spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(1)
            .build()
            .unwrap();
        // The pool's only thread, busy until the connect is done.
        let (release, held) = std::sync::mpsc::channel::<()>();
        let busy = rt.spawn_blocking(move || held.recv_timeout(4 * T).is_ok());
        let echoed = rt.block_on(async {
            let connecting = converse::tokio::connect_with(&echo.url, &config);
            let mut c = tokio::time::timeout(T, connecting)
                .await
                .expect("connected while the blocking pool was busy")
                .unwrap();
            c.send("hi").await.unwrap();
            let m = tokio::time::timeout(T, c.recv()).await.unwrap().unwrap();
            m.as_deref() == Some(&b"hi"[..])
        });
        release.send(()).unwrap();
        assert!(rt.block_on(busy).unwrap());
        let patient = quic_config().with_handshake_timeout(Duration::from_secs(3600));
        let cut = rt.block_on(async {
            let connecting = converse::tokio::connect_with(&silent_url, &patient);
            tokio::time::timeout(Duration::from_millis(300), connecting)
                .await
                .is_err()
        });
        drop(rt);
        (echoed, cut)
    })
    .join_within(4 * T);
    assert_eq!(done, (true, true));
    assert_got_an_initial(&silent);
}

/// A listener dropped with its conversations: its connections are closed
/// at once (not left to the idle timeout), so its port is free again while
/// a client still holds its conversation.
#[test]
fn a_dropped_listener_closes_its_connections() {
    let config = quic_config();
    let l = converse::listen_with("quic://127.0.0.1:0", &config).unwrap();
    let url = l.local_addr().unwrap().to_string();
    let mut a = converse::connect_with(&url, &config).unwrap();
    a.send("hello").unwrap();
    let mut b = l.accept().unwrap();
    assert_eq!(b.recv_text().unwrap().as_deref(), Some("hello"));
    drop(b);
    drop(l);
    let started = Instant::now();
    let outcome = a.recv();
    assert!(
        !matches!(outcome, Ok(Some(_)) | Err(Error::Timeout)),
        "{outcome:?}"
    );
    assert!(started.elapsed() < T / 2, "{:?}", started.elapsed());
    // The port is free again once the endpoint has drained.
    let until = Instant::now() + T;
    loop {
        match converse::listen_with(&url, &config) {
            Ok(_) => break,
            Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("{url} still taken: {e}"),
        }
    }
}
