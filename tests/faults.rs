//! Conversations through the fault-injecting proxy (`common/proxy.rs`):
//! what the network does to bytes and datagrams, and what each side sees.

mod common;

use std::time::{Duration, Instant};

use common::proxy::{TcpFault, TcpProxy, UdpFaults, UdpProxy};
use common::*;
use converse::{Conversation, Error, Udp, UdpListener};

/// The tests' echo server; returns its address and the errors of its
/// conversations (one line each; clean ends are not reported).
fn echo(config: &converse::Config) -> (std::net::SocketAddr, std::sync::mpsc::Receiver<String>) {
    let echo = Echo::tcp(config);
    let addr = echo.addr();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        while let Ok(outcome) = echo.outcomes.recv() {
            if let Err(e) = outcome {
                let _ = tx.send(e);
            }
        }
    });
    (addr, rx)
}

fn message(i: usize) -> Vec<u8> {
    (0..(i * 131) % 5000).map(|j| (i + j) as u8).collect()
}

#[test]
fn one_byte_writes_change_nothing() {
    let config = config();
    let (server, errors) = echo(&config);
    let proxy = TcpProxy::start(server, TcpFault::Slice { max: 1 });
    let mut c = client(proxy.addr, &config);
    for i in 0..100 {
        c.send(message(i)).unwrap();
    }
    for i in 0..100 {
        assert_eq!(c.recv().unwrap().unwrap(), message(i), "message {i}");
    }
    c.close().unwrap();
    assert!(errors.try_recv().is_err());
}

#[test]
fn delays_change_nothing_but_time() {
    let config = config();
    let (server, _) = echo(&config);
    let proxy = TcpProxy::start(server, TcpFault::Delay(Duration::from_millis(20)));
    let mut c = client(proxy.addr, &config);
    let started = Instant::now();
    c.send_all((0..20).map(message)).unwrap();
    for i in 0..20 {
        assert_eq!(c.recv().unwrap().unwrap(), message(i));
    }
    assert!(started.elapsed() >= Duration::from_millis(40));
}

#[test]
fn a_stream_cut_mid_frame_is_an_unexpected_end_on_both_sides() {
    let config = config();
    let (server, errors) = echo(&config);
    // Two whole frames of 8 bytes, then 3 bytes of the third.
    let proxy = TcpProxy::start(server, TcpFault::CutAfter(8 + 8 + 3));
    let mut c = client(proxy.addr, &config);
    for m in ["1111", "2222", "3333"] {
        c.send(m).unwrap();
    }
    // The server saw half a frame, then the end.
    let err = errors.recv_timeout(T).unwrap();
    assert!(err.contains("in the middle of a message"), "{err}");
    // The proxy cut the client's side too, at once: the client receives
    // some prefix of the echoes, whole, then the end of its stream (clean,
    // or unexpected if the cut fell inside an echo).
    let mut echoes = Vec::new();
    let end = loop {
        match c.recv() {
            Ok(Some(m)) => echoes.push(m),
            other => break other,
        }
    };
    assert!(["1111", "2222"].starts_with(
        &echoes
            .iter()
            .map(|m| std::str::from_utf8(m).unwrap())
            .collect::<Vec<_>>()[..]
    ));
    assert!(
        matches!(end, Ok(None) | Err(Error::UnexpectedEof { .. })),
        "{end:?}"
    );
}

#[test]
fn a_reset_mid_frame_is_a_reset_or_an_unexpected_end() {
    let config = config();
    let (server, errors) = echo(&config);
    let proxy = TcpProxy::start(server, TcpFault::ResetAfter(8 + 2));
    let mut c = client(proxy.addr, &config);
    // One echo first: the server has accepted (a connection reset before it
    // is accepted is skipped, and would never be served).
    c.send("1111").unwrap();
    assert_eq!(c.recv().unwrap().unwrap(), &b"1111"[..]);
    c.send("2222").unwrap();
    let err = errors.recv_timeout(T).unwrap();
    assert!(
        err.contains("reset") || err.contains("in the middle of a message"),
        "{err}"
    );
    let outcome = c.recv();
    assert!(
        matches!(outcome, Err(Error::ConnectionReset { .. }) | Ok(None)),
        "{outcome:?}"
    );
}

#[test]
fn a_peer_that_stops_reading_makes_sends_time_out() {
    let config = config().with_write_timeout(Some(Duration::from_millis(300)));
    let (server, _) = echo(&config);
    let proxy = TcpProxy::start(server, TcpFault::StopReadingAfter(0));
    let mut c = client(proxy.addr, &config);
    let chunk = vec![0u8; 1 << 20];
    let started = Instant::now();
    let err = (0..200)
        .find_map(|_| c.send(&chunk).err())
        .expect("a send times out");
    assert!(matches!(err, Error::Timeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn udp_drops_duplicates_and_reorderings_arrive_exactly_as_scheduled() {
    let faults = UdpFaults {
        drop_every: Some(10),
        duplicate_every: Some(7),
        swap_every: Some(5),
    };
    let config = config().with_queue_depth(4096);
    let listener = UdpListener::bind_with("127.0.0.1:0", &config).unwrap();
    let proxy = UdpProxy::start(
        listener.local_addr().unwrap().socket_addr().unwrap(),
        faults,
    );
    let mut c = Conversation::new(Udp::connect_with(proxy.addr, &config).unwrap());
    let sent: Vec<String> = (0..1000).map(|i| format!("datagram {i:04}")).collect();
    let expected = faults.apply(&sent);
    // In lockstep, so that no socket buffer ever holds more than a datagram
    // or two (a busy machine's loopback drops what overflows one): each
    // datagram is sent once the proxy has taken the one before, and
    // everything the proxy has passed on is received before the next.
    let stats = &proxy.stats;
    let count = |n: &std::sync::atomic::AtomicU64| n.load(std::sync::atomic::Ordering::Relaxed);
    let mut s: Option<Conversation<_>> = None;
    let mut got = Vec::new();
    for (i, m) in sent.iter().enumerate() {
        c.send(m).unwrap();
        let until = Instant::now() + T;
        while count(&stats.seen) < i as u64 + 1 {
            assert!(Instant::now() < until, "the proxy never took datagram {i}");
            std::thread::yield_now();
        }
        while (got.len() as u64) < count(&stats.forwarded) {
            let s = s.get_or_insert_with(|| {
                let mut s = Conversation::new(listener.accept().unwrap());
                s.set_read_timeout(Some(T)).unwrap();
                s
            });
            let m = s.recv().unwrap().expect("a datagram the proxy passed on");
            got.push(String::from_utf8(m.to_vec()).unwrap());
        }
    }
    assert_eq!(got.len(), expected.len());
    assert_eq!(
        got, expected,
        "every datagram whole, in the order the faults made"
    );
    let dropped = proxy
        .stats
        .dropped
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(dropped, 100);
}
