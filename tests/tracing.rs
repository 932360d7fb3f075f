//! Feature `tracing`: a server's life shows in `tracing` events, each with
//! its fields (a handshake failure, a slow consumer, UDP datagrams
//! dropped, an accepted conversation's end), and the events of a
//! conversation sit in its span.
#![cfg(all(feature = "tracing", feature = "tls"))]

mod common;

use std::io::Write;
use std::net::{TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use converse::switchboard::{Event, Events, Switchboard};

/// Everything a subscriber printed, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A subscriber at `DEBUG` printing into what it returns, the default on
/// this thread while the guard lives.
fn capture() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[test]
fn a_servers_life_shows_in_tracing_events() {
    let (captured, _guard) = capture();

    // A TLS listener, and a client that speaks plaintext.
    let config = config()
        .with_tls_server(tls::server())
        .with_max_backlog(64 * 1024)
        .with_max_peers(1);
    let mut board = Switchboard::with_config(&config).unwrap();
    let tls_listener = board.listen("tls://127.0.0.1:0").unwrap();
    let tls_addr = board.listener_addr(tls_listener).unwrap();
    let mut plain = TcpStream::connect(tls_addr.socket_addr().unwrap()).unwrap();
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    run_until(&mut board, |_, event| {
        matches!(event, Event::HandshakeFailed { .. })
    });
    let log = captured.text();
    let line = log
        .lines()
        .find(|l| l.contains("handshake failed"))
        .unwrap_or_else(|| panic!("no handshake failure in:\n{log}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.contains("conversation{peer=tls://127.0.0.1:"),
        "{line}"
    );
    assert!(line.contains("not TLS"), "{line}");
    assert_eq!(board.stats().handshake_failures, 1);

    // A TCP member that never reads, sent more than its backlog.
    let tcp_listener = board.listen("tcp://127.0.0.1:0").unwrap();
    let tcp_addr = board.listener_addr(tcp_listener).unwrap();
    let stuck = TcpStream::connect(tcp_addr.socket_addr().unwrap()).unwrap();
    let chunk = vec![0u8; 60_000];
    run_until(&mut board, |board, event| match event {
        Event::Accepted { id, .. } => {
            for _ in 0..100 {
                if board.send(id, &chunk).is_err() {
                    break;
                }
            }
            false
        }
        Event::Ended { .. } => true,
        _ => false,
    });
    let log = captured.text();
    let line = log
        .lines()
        .find(|l| l.contains("slow consumer dropped"))
        .unwrap_or_else(|| panic!("no slow consumer in:\n{log}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("limit=65536"), "{line}");
    assert!(line.contains("queued="), "{line}");
    assert!(
        line.contains(&format!("peer=tcp://{}", stuck.local_addr().unwrap())),
        "{line}"
    );

    // UDP: one peer at most; a second source's datagrams are dropped.
    let udp_listener = board.listen("udp://127.0.0.1:0").unwrap();
    let udp_addr = board
        .listener_addr(udp_listener)
        .unwrap()
        .socket_addr()
        .unwrap();
    let first = UdpSocket::bind("127.0.0.1:0").unwrap();
    let second = UdpSocket::bind("127.0.0.1:0").unwrap();
    first.send_to(b"hello", udp_addr).unwrap();
    run_until(&mut board, |_, event| {
        matches!(event, Event::Message { .. })
    });
    let until = Instant::now() + T;
    // Each datagram may be lost on a busy loopback: send until one is
    // dropped as it should be.
    while !captured.text().contains("UDP datagram dropped") {
        assert!(
            Instant::now() < until,
            "no UDP drop in:\n{}",
            captured.text()
        );
        second.send_to(b"me too", udp_addr).unwrap();
        let mut events = Events::new();
        board
            .wait(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
    }
    let log = captured.text();
    let line = log
        .lines()
        .find(|l| l.contains("UDP datagram dropped"))
        .unwrap();
    assert!(line.contains("DEBUG"), "{line}");
    assert!(
        line.contains(&format!("from={}", second.local_addr().unwrap())),
        "{line}"
    );
    assert!(line.contains("bytes=6"), "{line}");
    assert!(line.contains("no room for a new peer"), "{line}");
}

#[test]
fn a_blocking_conversations_end_shows_in_its_span() {
    let (captured, _guard) = capture();

    // A peer that declares a message larger than the limit.
    let config = config().with_max_message_len(1024);
    let listener = converse::listen_with("tcp://127.0.0.1:0", &config).unwrap();
    let addr = listener.local_addr().unwrap().socket_addr().unwrap();
    let mut peer = TcpStream::connect(addr).unwrap();
    peer.write_all(&100_000u32.to_be_bytes()).unwrap();
    let mut conversation = listener.accept().unwrap();
    conversation.set_read_timeout(Some(T)).unwrap();
    let err = conversation.recv().unwrap_err();
    let log = captured.text();
    let line = log
        .lines()
        .find(|l| l.contains("failed"))
        .unwrap_or_else(|| panic!("no end in:\n{log}"));
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains(&err.to_string()), "{line}\n{err}");
    assert!(
        line.contains(&format!(
            "conversation{{peer=tcp://{}}}",
            peer.local_addr().unwrap()
        )),
        "{line}"
    );
}
