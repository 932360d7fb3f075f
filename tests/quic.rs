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
    let config = quic_config().with_read_timeout(Some(4 * T));
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
        t.join_within(20 * T);
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

/// A listener needs a certificate; the drivers that do not speak QUIC yet
/// say so.
#[test]
fn what_quic_needs_and_where() {
    assert!(matches!(
        converse::listen_with("quic://127.0.0.1:0", &config()),
        Err(Error::InvalidConfig(_))
    ));
    let mut board = converse::Switchboard::new().unwrap();
    assert!(matches!(
        board.connect("quic://127.0.0.1:4433"),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        board.listen_with("quic://127.0.0.1:0", &quic_config()),
        Err(Error::Unsupported(_))
    ));
}
