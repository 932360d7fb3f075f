//! TLS: verified servers, mutual TLS, the reasons a handshake fails (on
//! both sides), the ends of a session, and the same behaviour on the
//! switchboard. (The scenario suite runs over TLS too: `tests/scenarios.rs`.)
#![cfg(feature = "tls")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::certs::{Authority, Role};
use common::*;
use converse::switchboard::{End, Event, Switchboard};
use converse::tls::{TlsClient, TlsError, TlsServer};
use converse::{Config, Delivery, Error};

/// A TLS listener with `server`, serving each conversation on a thread:
/// the handshake, then echo. Outcomes as [`Echo`]'s, the error's text.
fn tls_echo(server: TlsServer, config: &Config) -> Echo {
    let config = config.clone().with_tls_server(server);
    Echo::serve(converse::listen_with("tls://127.0.0.1:0", &config).unwrap())
}

fn reason(e: &Error) -> TlsError {
    match e {
        Error::Tls { reason, .. } => reason.clone(),
        other => panic!("not a TLS error: {other:?} ({other})"),
    }
}

#[test]
fn a_verified_echo_with_every_framing() {
    for framing in ["length", "varint", "lines", "length16le"] {
        let framing: converse::codec::Framing = framing.parse().unwrap();
        let config = config().with_framing(framing);
        let echo = tls_echo(tls::server(), &config);
        let mut c =
            converse::connect_with(&echo.url, &config.clone().with_tls_client(tls::client()))
                .unwrap();
        assert_eq!(c.peer_addr().unwrap().scheme(), "tls");
        let sizes: &[usize] = if framing.to_string().starts_with("length16") {
            &[0, 1, 100, 65_535]
        } else {
            &[0, 1, 100, 16_384, 100_000]
        };
        for &size in sizes {
            let msg: Vec<u8> = if framing.to_string() == "lines" {
                vec![b'x'; size]
            } else {
                (0..size).map(|i| (i % 251) as u8).collect()
            };
            c.send(&msg).unwrap();
            assert_eq!(c.recv().unwrap().unwrap(), msg, "{framing}: {size}");
        }
        // Many small messages in few records.
        for i in 0..1000u32 {
            c.feed(format!("m{i}")).unwrap();
        }
        c.flush().unwrap();
        for i in 0..1000u32 {
            assert_eq!(c.recv_text().unwrap().unwrap(), format!("m{i}"));
        }
        assert_eq!(c.close().unwrap(), Delivery::Confirmed, "{framing}");
        assert_eq!(echo.outcome(), Ok(1000 + sizes.len()), "{framing}");
    }
}

#[test]
fn the_client_checks_the_name_it_connected_to_ip_addresses_too() {
    let config = config();
    let echo = tls_echo(tls::server(), &config);
    let port = echo.addr().port();
    let client = config.clone().with_tls_client(tls::client());
    // The certificate names localhost, 127.0.0.1 and ::1.
    for url in [
        format!("tls://127.0.0.1:{port}"),
        format!("tls://localhost:{port}"),
    ] {
        let mut c = converse::connect_with(&url, &client).unwrap();
        let peer = c.peer_identity().expect("the server's identity");
        assert!(peer.is_valid_for("localhost") && peer.is_valid_for("127.0.0.1"));
        assert!(!peer.is_valid_for("example.com"));
        assert_eq!(peer.dns_names(), vec!["localhost".to_owned()]);
        c.send("hi").unwrap();
        assert_eq!(c.recv_text().unwrap().as_deref(), Some("hi"));
        c.close().unwrap();
    }
    // A certificate for another name: refused, and the reason says which.
    let ca = Authority::new("another CA");
    let other = ca.issue(Role::Server, "elsewhere", &["elsewhere.example"]);
    let echo = tls_echo(
        TlsServer::from_pem(&other.cert_pem, &other.key_pem).unwrap(),
        &config,
    );
    let client = config
        .clone()
        .with_tls_client(TlsClient::trusting_ca_pem(ca.cert_pem()).unwrap());
    let err = converse::connect_with(&echo.url, &client).unwrap_err();
    match reason(&err) {
        TlsError::NameMismatch {
            expected,
            presented,
        } => {
            assert_eq!(expected, "127.0.0.1");
            assert_eq!(presented, vec!["DnsName(\"elsewhere.example\")".to_owned()]);
        }
        other => panic!("{other:?}"),
    }
    let line = err.to_string();
    assert!(
        line.contains("name mismatch") && line.contains("127.0.0.1"),
        "{line}"
    );
    assert!(!line.contains('\n'));
    // The server is told too: the client refused its certificate.
    let server_side = echo.outcome().unwrap_err();
    assert!(server_side.contains("BadCertificate"), "{server_side}");
}

#[test]
fn an_unknown_issuer_and_an_expired_certificate_are_refused_with_their_reason() {
    let config = config();
    // Signed by a CA the client does not trust.
    let echo = tls_echo(tls::server(), &config);
    let stranger = Authority::new("stranger");
    let client = config
        .clone()
        .with_tls_client(TlsClient::trusting_ca_pem(stranger.cert_pem()).unwrap());
    let err = converse::connect_with(&echo.url, &client).unwrap_err();
    assert_eq!(reason(&err), TlsError::UnknownIssuer, "{err}");
    assert!(err.to_string().contains("unknown issuer"), "{err}");
    // rustls's own error is the source, for code that walks the chain.
    let source = std::error::Error::source(&err).expect("rustls's error as the source");
    assert!(
        matches!(
            source.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        ),
        "{source:?}"
    );
    // As an io::Error (code built on `io`), the error itself is inside.
    let io = std::io::Error::from(err);
    assert_eq!(io.kind(), std::io::ErrorKind::Other);
    assert!(io.get_ref().is_some_and(|e| e.is::<Error>()));
    let server_side = echo.outcome().unwrap_err();
    assert!(server_side.contains("UnknownCA"), "{server_side}");

    // Expired.
    let ca = Authority::new("old CA");
    let old = ca.issue_valid(Role::Server, "localhost", &["127.0.0.1"], (2001, 2002));
    let echo = tls_echo(
        TlsServer::from_pem(&old.cert_pem, &old.key_pem).unwrap(),
        &config,
    );
    let client = config
        .clone()
        .with_tls_client(TlsClient::trusting_ca_pem(ca.cert_pem()).unwrap());
    let err = converse::connect_with(&echo.url, &client).unwrap_err();
    assert_eq!(reason(&err), TlsError::Expired, "{err}");
    assert!(echo.outcome().is_err());
}

#[test]
fn mutual_tls_requires_a_client_certificate_and_names_the_client() {
    let config = config();
    let kit = tls::kit();
    let server = tls::server()
        .require_client_certs(kit.ca.cert_pem())
        .unwrap();
    let server_config = config.clone().with_tls_server(server);
    let listener = converse::listen_with("tls://127.0.0.1:0", &server_config).unwrap();
    let url = listener.local_addr().unwrap().to_string();
    let server = spawn(move || {
        let mut outcomes = Vec::new();
        for _ in 0..3 {
            let mut c = listener.accept().unwrap();
            outcomes.push(match c.handshake() {
                Ok(()) => {
                    let who = c.peer_identity().expect("a verified client");
                    let name = who.dns_names().join(",");
                    c.send_text(&format!("hello, {name}")).unwrap();
                    let _ = c.recv();
                    Ok(name)
                }
                Err(e) => Err((reason(&e), e.to_string())),
            });
        }
        outcomes
    });

    // With the client certificate: verified and named.
    let mut alice = converse::connect_with(
        &url,
        &config.clone().with_tls_client(tls::client_with_cert()),
    )
    .unwrap();
    assert_eq!(alice.recv_text().unwrap().as_deref(), Some("hello, alice"));
    alice.close().unwrap();

    // Without one: TLS 1.3 finishes the client's side of the handshake
    // first, so the server's refusal arrives with the first receive.
    let mut anonymous =
        converse::connect_with(&url, &config.clone().with_tls_client(tls::client())).unwrap();
    let err = anonymous.recv().unwrap_err();
    match reason(&err) {
        TlsError::Refused(why) => assert!(why.contains("requires a client certificate"), "{why}"),
        other => panic!("{other:?}"),
    }

    // A client certificate from another CA.
    let stranger = Authority::new("stranger");
    let mallory = stranger.issue(Role::Client, "mallory", &["mallory"]);
    let mut mallory = converse::connect_with(
        &url,
        &config.clone().with_tls_client(
            tls::client()
                .with_identity_pem(&mallory.cert_pem, &mallory.key_pem)
                .unwrap(),
        ),
    )
    .unwrap();
    let err = mallory.recv().unwrap_err();
    assert!(matches!(reason(&err), TlsError::Refused(_)), "{err}");

    let outcomes = server.join();
    assert_eq!(outcomes[0], Ok("alice".to_owned()));
    let (why, line) = outcomes[1].clone().unwrap_err();
    assert_eq!(why, TlsError::NoClientCertificate, "{line}");
    assert!(line.contains("no client certificate"), "{line}");
    let (why, _) = outcomes[2].clone().unwrap_err();
    assert_eq!(why, TlsError::UnknownIssuer);
}

#[test]
fn optional_client_certificates_say_who_presented_one() {
    let config = config();
    let server = tls::server()
        .accept_client_certs(tls::kit().ca.cert_pem())
        .unwrap();
    let listener =
        converse::listen_with("tls://127.0.0.1:0", &config.clone().with_tls_server(server))
            .unwrap();
    let url = listener.local_addr().unwrap().to_string();
    let server = spawn(move || {
        let mut names = Vec::new();
        for _ in 0..2 {
            let mut c = listener.accept().unwrap();
            let _ = c.recv().unwrap();
            names.push(c.peer_identity().map(|p| p.dns_names()));
        }
        names
    });
    for client in [tls::client_with_cert(), tls::client()] {
        let mut c = converse::connect_with(&url, &config.clone().with_tls_client(client)).unwrap();
        c.send("hi").unwrap();
        c.close().unwrap();
    }
    assert_eq!(server.join(), vec![Some(vec!["alice".to_owned()]), None]);
}

#[test]
fn close_notify_between_messages_is_the_end_and_without_it_is_told_apart() {
    let config = config();
    // The peer's close_notify: Ok(None), and close confirms.
    let echo = tls_echo(tls::server(), &config);
    let mut c =
        converse::connect_with(&echo.url, &config.clone().with_tls_client(tls::client())).unwrap();
    c.send("one").unwrap();
    assert_eq!(c.recv_text().unwrap().as_deref(), Some("one"));
    assert_eq!(c.close().unwrap(), Delivery::Confirmed);
    assert_eq!(echo.outcome(), Ok(1));

    // A raw TLS peer (rustls over std) that ends the TCP connection without
    // close_notify, between messages and then in the middle of one.
    for cut_mid_message in [false, true] {
        let listener =
            converse::listen_with("tls://127.0.0.1:0", &tls::config(config.clone())).unwrap();
        let addr = listener.local_addr().unwrap().socket_addr().unwrap();
        let server = spawn(move || {
            let mut c = listener.accept().unwrap();
            let first = c.recv().map(|m| m.map(|m| m.to_vec()));
            (first, c.recv())
        });
        let mut tcp = raw_client(addr);
        let conn = tls::rustls_client();
        let mut tls = rustls::StreamOwned::new(conn, tcp.try_clone().unwrap());
        tls.write_all(&frame(b"whole")).unwrap();
        if cut_mid_message {
            tls.write_all(&frame(b"cut short")[..6]).unwrap();
        }
        tls.flush().unwrap();
        drop(tls);
        tcp.shutdown(std::net::Shutdown::Both).unwrap();
        let (first, second) = server.join();
        assert_eq!(first.unwrap().unwrap(), b"whole");
        let err = second.unwrap_err();
        if cut_mid_message {
            assert!(matches!(err, Error::UnexpectedEof { .. }), "{err:?}");
        } else {
            assert!(matches!(err, Error::NoCloseNotify { .. }), "{err:?}");
            assert!(err.to_string().contains("close_notify"));
        }
        let _ = tcp.read(&mut [0u8; 1]);
    }
}

#[test]
fn a_read_timeout_in_the_middle_of_a_record_loses_nothing() {
    // A record written in three pieces, with pauses longer than the read
    // timeout between them.
    let config = config();
    let listener =
        converse::listen_with("tls://127.0.0.1:0", &tls::config(config.clone())).unwrap();
    let addr = listener.local_addr().unwrap().socket_addr().unwrap();
    let server = spawn(move || {
        let mut c = listener.accept().unwrap();
        c.handshake().unwrap();
        c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let mut timeouts = 0;
        let started = Instant::now();
        loop {
            assert!(started.elapsed() < T);
            match c.recv() {
                Ok(Some(m)) => return (m.to_vec(), timeouts),
                Err(Error::Timeout) => timeouts += 1,
                other => panic!("{other:?}"),
            }
        }
    });
    let tcp = raw_client(addr);
    let conn = tls::rustls_client();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // Complete the handshake, then encrypt without writing.
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls.conn
        .writer()
        .write_all(&frame(b"slowly but whole"))
        .unwrap();
    let mut record = Vec::new();
    while tls.conn.wants_write() {
        tls.conn.write_tls(&mut record).unwrap();
    }
    let third = record.len() / 3;
    for piece in [
        &record[..third],
        &record[third..2 * third],
        &record[2 * third..],
    ] {
        tls.sock.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(80));
    }
    let (got, timeouts) = server.join();
    assert_eq!(got, b"slowly but whole");
    assert!(
        timeouts >= 2,
        "{timeouts} timeouts in the middle of the record"
    );
}

#[test]
fn a_tls_listener_needs_a_certificate_and_refuses_plaintext_per_connection() {
    let config = config();
    match converse::listen_with("tls://127.0.0.1:0", &config) {
        Err(Error::InvalidConfig(e)) => assert_eq!(e.setting, "tls_server"),
        other => panic!("{other:?}"),
    }
    let echo = tls_echo(tls::server(), &config);
    // Plaintext framed message, an HTTP request, garbage: each costs its
    // own connection a typed error.
    for bytes in [
        frame(b"hello"),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0xff; 64],
    ] {
        let mut s = raw_client(echo.addr());
        s.write_all(&bytes).unwrap();
        let _ = read_to_end(&mut s);
        let outcome = echo.outcome().unwrap_err();
        assert!(outcome.contains("TLS"), "{outcome}");
    }
    // And the listener still serves.
    let mut c =
        converse::connect_with(&echo.url, &config.clone().with_tls_client(tls::client())).unwrap();
    c.send("still here").unwrap();
    assert_eq!(c.recv_text().unwrap().as_deref(), Some("still here"));
}

#[test]
fn tcp_to_a_tls_port_says_not_tls() {
    let config = config();
    let listener =
        converse::listen_with("tls://127.0.0.1:0", &tls::config(config.clone())).unwrap();
    let addr = listener.local_addr().unwrap().socket_addr().unwrap();
    let server = spawn(move || listener.accept().unwrap().recv().unwrap_err());
    let mut s = raw_client(addr);
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let err = server.join();
    assert_eq!(reason(&err), TlsError::NotTls, "{err}");
    assert!(err.to_string().contains("not TLS"), "{err}");
}

#[test]
fn the_handshake_has_its_own_deadline() {
    let config = config().with_handshake_timeout(Duration::from_millis(200));
    let listener =
        converse::listen_with("tls://127.0.0.1:0", &tls::config(config.clone())).unwrap();
    let addr = listener.local_addr().unwrap().socket_addr().unwrap();
    let server = spawn(move || {
        let mut c = listener.accept().unwrap();
        let started = Instant::now();
        (c.recv().unwrap_err(), started.elapsed())
    });
    // Connects and says nothing (a read timeout of 10 s does not matter).
    let _silent = raw_client(addr);
    let (err, took) = server.join();
    assert_eq!(reason(&err), TlsError::HandshakeTimeout, "{err}");
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_zero_handshake_timeout_is_refused() {
    match converse::listen_with(
        "tls://127.0.0.1:0",
        &tls::config(Config::new().with_handshake_timeout(Duration::ZERO)),
    ) {
        Err(Error::InvalidConfig(e)) => assert_eq!(e.setting, "handshake_timeout"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_certificate_files_are_refused_when_given() {
    let dir = std::env::temp_dir().join(format!("converse-certs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    for err in [
        TlsServer::from_pem_files(&junk, &junk).unwrap_err(),
        TlsServer::from_pem_files(dir.join("missing.pem"), &junk).unwrap_err(),
        TlsClient::trusting_ca_file(&junk).unwrap_err(),
    ] {
        assert!(!err.what.is_empty() && !err.reason.is_empty(), "{err:?}");
        assert!(!err.to_string().contains('\n'));
        assert!(matches!(Error::from(err), Error::InvalidCertificate(_)));
    }
    let _ = std::fs::remove_dir_all(dir);
}

// ---------------------------------------------------------------------------
// The switchboard

#[test]
fn the_switchboard_serves_tls_with_handshakes_driven_by_readiness() {
    let kit = tls::kit();
    let server = tls::server()
        .require_client_certs(kit.ca.cert_pem())
        .unwrap();
    let config = config()
        .with_tls_server(server)
        .with_backlog(64)
        .with_handshake_timeout(Duration::from_millis(300));
    let mut board = Switchboard::with_config(&config).unwrap();
    let listener = board.listen("tls://127.0.0.1:0").unwrap();
    let url = board.listener_addr(listener).unwrap().to_string();
    let addr = board
        .listener_addr(listener)
        .unwrap()
        .socket_addr()
        .unwrap();

    // Hostile first: silent connections and plaintext, which must not hold
    // up the verified client that comes after them.
    let silent: Vec<TcpStream> = (0..20).map(|_| raw_client(addr)).collect();
    let mut plain = raw_client(addr);
    plain.write_all(&frame(b"plaintext")).unwrap();

    let client_config = common::config().with_tls_client(tls::client_with_cert());
    let client = spawn(move || {
        let mut c = converse::connect_with(&url, &client_config).unwrap();
        for i in 0..100 {
            c.send(format!("m{i}")).unwrap();
            assert_eq!(c.recv_text().unwrap().unwrap(), format!("m{i}"));
        }
        c.send(vec![7u8; 200_000]).unwrap();
        assert_eq!(c.recv().unwrap().unwrap().len(), 200_000);
        c.close().unwrap()
    });

    let mut accepted = None;
    let mut failures = Vec::new();
    let mut ended = None;
    run_until(&mut board, |board, event| {
        match event {
            Event::Accepted { id, .. } => {
                let who = board.peer_identity(id).expect("verified");
                assert_eq!(who.dns_names(), vec!["alice".to_owned()]);
                assert_eq!(board.peer_addr(id).unwrap().scheme(), "tls");
                accepted = Some(id);
            }
            Event::Message { id, message } => {
                assert_eq!(Some(id), accepted, "messages only after Accepted");
                board.send(id, &message).unwrap();
            }
            Event::HandshakeFailed { error, .. } => failures.push(reason(&error)),
            Event::Ended { end, .. } => ended = Some(format!("{end:?}")),
            other => panic!("{other:?}"),
        }
        ended.is_some() && failures.len() == 21
    });
    assert_eq!(client.join(), Delivery::Confirmed);
    assert_eq!(ended.as_deref(), Some("Peer"));
    assert_eq!(
        failures.iter().filter(|r| **r == TlsError::NotTls).count(),
        1,
        "{failures:?}"
    );
    assert_eq!(
        failures
            .iter()
            .filter(|r| **r == TlsError::HandshakeTimeout)
            .count(),
        20,
        "{failures:?}"
    );
    assert_eq!(board.stats().accepted, 1);
    assert_eq!(board.stats().handshake_failures, 21);
    drop(silent);
}

/// A switchboard's own connect whose handshake fails ends with the TLS
/// reason, and counts as a failed handshake.
#[test]
fn a_switchboard_connect_refused_by_tls_counts_as_a_failed_handshake() {
    let config = config();
    let echo = tls_echo(tls::server(), &config);
    let stranger = Authority::new("stranger");
    let client = config
        .clone()
        .with_tls_client(TlsClient::trusting_ca_pem(stranger.cert_pem()).unwrap());
    let mut board = Switchboard::with_config(&client).unwrap();
    let id = board.connect(&echo.url).unwrap();
    run_until(&mut board, |_, event| match event {
        Event::Ended { id: e, end } => {
            assert_eq!(e, id);
            match end {
                End::Failed(err) => assert_eq!(reason(&err), TlsError::UnknownIssuer),
                other => panic!("{other:?}"),
            }
            true
        }
        other => panic!("{other:?}"),
    });
    let stats = board.stats();
    assert_eq!((stats.handshake_failures, stats.ended), (1, 1), "{stats:?}");
}

#[test]
fn a_switchboard_connects_over_tls_and_closes_with_close_notify() {
    let config = config();
    let echo = tls_echo(tls::server(), &config);
    let mut board =
        Switchboard::with_config(&config.clone().with_tls_client(tls::client())).unwrap();
    let id = board.connect(&echo.url).unwrap();
    // The connect does not wait: its handshake is driven by readiness.
    assert!(board.peer_identity(id).is_none());
    run_until(
        &mut board,
        |_, event| matches!(event, Event::Connected { id: c } if c == id),
    );
    assert!(board.peer_identity(id).unwrap().is_valid_for("127.0.0.1"));
    // One conversation handed over from the blocking API, too.
    let blocking = converse::Tls::connect(
        echo.url.trim_start_matches("tls://"),
        &config.clone().with_tls_client(tls::client()),
    )
    .unwrap();
    let adopted = board.adopt(blocking).unwrap();
    for id in [id, adopted] {
        board.send(id, "hello").unwrap();
    }
    // An end may come in the same turn as the other conversation's echo.
    let mut echoed = 0;
    let mut ends = Vec::new();
    run_until(&mut board, |board, event| {
        match event {
            Event::Message { id, message } => {
                assert_eq!(message, "hello");
                echoed += 1;
                board.close(id);
            }
            Event::Ended { end, .. } => {
                assert!(matches!(end, End::Closed(Delivery::Confirmed)), "{end:?}");
                ends.push(end);
            }
            other => panic!("{other:?}"),
        }
        echoed == 2 && ends.len() == 2
    });
    assert_eq!(echo.outcome(), Ok(1));
    assert_eq!(echo.outcome(), Ok(1));
}
