//! UDP over real loopback sockets: the client conversation, the listener's
//! demultiplexing, limits and their counters, idle eviction, shutdown.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use converse::transport::UdpStats;
use converse::{Config, Conversation, Error, Udp, UdpListener};

/// A plain UDP socket on loopback with a receive timeout.
fn raw_udp(ip: &str) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).expect("bind");
    s.set_read_timeout(Some(T)).unwrap();
    s
}

fn addr_of(s: &UdpSocket) -> SocketAddr {
    s.local_addr().unwrap()
}

fn udp_client(to: SocketAddr, config: &Config) -> Conversation<Udp> {
    Conversation::new(Udp::connect_with(to, config).expect("connect"))
}

fn udp_listener(config: &Config) -> (UdpListener, SocketAddr) {
    let l = UdpListener::bind_with("127.0.0.1:0", config).expect("bind");
    let a = l.local_addr().unwrap().socket_addr().unwrap();
    (l, a)
}

/// Waits (bounded) until the listener's stats satisfy `done`.
fn wait_stats(l: &UdpListener, done: impl Fn(&UdpStats) -> bool) -> UdpStats {
    let until = Instant::now() + T;
    loop {
        let s = l.stats();
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < until, "stats never got there: {s:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_client_ignores_datagrams_from_strangers() {
    let config = config();
    let server = raw_udp("127.0.0.1");
    let mut c = udp_client(addr_of(&server), &config);
    let me = c.local_addr().unwrap().socket_addr().unwrap();
    let stranger = raw_udp("127.0.0.1");
    stranger.send_to(b"injected", me).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    assert!(matches!(c.recv(), Err(Error::Timeout)));
    server.send_to(b"genuine", me).unwrap();
    c.set_read_timeout(Some(T)).unwrap();
    assert_eq!(c.recv().unwrap().unwrap(), &b"genuine"[..]);
}

fn largest_payload_round(ip: &str, max: usize) {
    let config = config();
    let server = raw_udp(ip);
    let mut c = udp_client(addr_of(&server), &config);
    assert_eq!(c.max_message_len(), max);
    c.send(vec![7u8; max]).unwrap();
    let mut buf = vec![0u8; 70_000];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(n, max);
    assert!(buf[..n].iter().all(|&b| b == 7));
    match c.send(vec![7u8; max + 1]) {
        Err(Error::MessageTooLarge { len, max: m }) => {
            assert_eq!((len, m), (max as u64 + 1, max as u64));
        }
        other => panic!("{other:?}"),
    }
    // Nothing was sent: the next datagram the server sees is the next send.
    c.send("after").unwrap();
    let (n, _) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"after");
    // And the largest reply comes back whole.
    server.send_to(&vec![9u8; max], from).unwrap();
    assert_eq!(c.recv().unwrap().unwrap().len(), max);
}

#[test]
fn the_largest_ipv4_payload_is_accepted_and_one_more_rejected() {
    largest_payload_round("127.0.0.1", Udp::MAX_PAYLOAD_V4);
}

#[test]
fn the_largest_ipv6_payload_is_accepted_and_one_more_rejected() {
    if !have_ipv6() {
        return;
    }
    largest_payload_round("::1", Udp::MAX_PAYLOAD_V6);
}

#[test]
fn an_oversize_datagram_is_reported_not_truncated_and_the_next_arrives() {
    let config = config().with_max_message_len(100);
    let server = raw_udp("127.0.0.1");
    let mut c = udp_client(addr_of(&server), &config);
    let me = c.local_addr().unwrap().socket_addr().unwrap();
    server.send_to(&[1u8; 100], me).unwrap();
    server.send_to(&[2u8; 101], me).unwrap();
    server.send_to(&[3u8; 5000], me).unwrap();
    server.send_to(&[4u8; 50], me).unwrap();
    assert_eq!(c.recv().unwrap().unwrap(), vec![1u8; 100]);
    for _ in 0..2 {
        match c.recv() {
            Err(Error::Truncated { max: 100, addr }) => {
                assert_eq!(addr.socket_addr(), Some(addr_of(&server)));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(c.recv().unwrap().unwrap(), vec![4u8; 50]);
}

#[test]
fn an_oversize_datagram_to_a_listener_conversation_is_reported_too() {
    let config = config().with_max_message_len(100);
    let (l, addr) = udp_listener(&config);
    let raw = raw_udp("127.0.0.1");
    raw.send_to(b"first", addr).unwrap();
    raw.send_to(&[0u8; 101], addr).unwrap();
    raw.send_to(b"third", addr).unwrap();
    let mut c = Conversation::new(l.accept().unwrap());
    assert_eq!(c.recv().unwrap().unwrap(), &b"first"[..]);
    assert!(matches!(c.recv(), Err(Error::Truncated { max: 100, .. })));
    assert_eq!(c.recv().unwrap().unwrap(), &b"third"[..]);
    let s = l.stats();
    assert_eq!((s.datagrams, s.truncated), (3, 1));
}

#[test]
fn zero_length_datagrams_are_empty_messages_not_the_end() {
    let config = config();
    let server = raw_udp("127.0.0.1");
    let mut c = udp_client(addr_of(&server), &config);
    let me = c.local_addr().unwrap().socket_addr().unwrap();
    server.send_to(b"", me).unwrap();
    server.send_to(b"x", me).unwrap();
    assert_eq!(c.recv().unwrap().unwrap(), &b""[..]);
    assert_eq!(c.recv().unwrap().unwrap(), &b"x"[..]);

    let (l, addr) = udp_listener(&config);
    c = udp_client(addr, &config);
    c.send("").unwrap();
    c.send("").unwrap();
    let mut s = Conversation::new(l.accept().unwrap());
    assert_eq!(s.recv().unwrap().unwrap(), &b""[..]);
    assert_eq!(s.recv().unwrap().unwrap(), &b""[..]);
}

#[test]
fn a_dead_port_is_peer_unreachable_and_the_conversation_survives() {
    let config = config();
    let dead = {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        addr_of(&s)
    };
    let mut c = udp_client(dead, &config);
    for _ in 0..2 {
        c.send("anyone?").unwrap();
        match c.recv() {
            Err(Error::PeerUnreachable { addr }) => assert_eq!(addr.socket_addr(), Some(dead)),
            other => panic!("{other:?}"),
        }
    }
    // Someone starts listening there: the same conversation works.
    let Ok(server) = UdpSocket::bind(dead) else {
        eprintln!("skipped the second half: port {dead} was taken meanwhile");
        return;
    };
    server.set_read_timeout(Some(T)).unwrap();
    c.send("now?").unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = server.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"now?");
    server.send_to(b"yes", from).unwrap();
    assert_eq!(c.recv().unwrap().unwrap(), &b"yes"[..]);
}

#[test]
fn a_listener_replies_from_its_bound_address() {
    let config = config();
    let (l, addr) = udp_listener(&config);
    let raw = raw_udp("127.0.0.1");
    raw.send_to(b"hello", addr).unwrap();
    let mut c = Conversation::new(l.accept().unwrap());
    assert_eq!(c.peer_addr().unwrap().socket_addr(), Some(addr_of(&raw)));
    assert_eq!(c.recv().unwrap().unwrap(), &b"hello"[..]);
    c.send("hi").unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = raw.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"hi"[..], addr));
}

#[test]
fn a_hundred_peers_each_get_exactly_their_own_messages_in_order() {
    const PEERS: usize = 100;
    const MESSAGES: usize = 100;
    let config = config();
    let (l, addr) = udp_listener(&config);
    let server = spawn(move || {
        let mut workers = Vec::new();
        for _ in 0..PEERS {
            let mut c = Conversation::new(l.accept().unwrap());
            workers.push(spawn(move || {
                let mut got = Vec::new();
                while got.len() < MESSAGES {
                    let m = c.recv_text().unwrap().expect("a message");
                    c.send(format!("ack {m}")).unwrap();
                    got.push(m);
                }
                (c.peer_addr().unwrap(), got)
            }));
        }
        let results: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        (results, l.stats())
    });
    // Every client keeps its socket until all have finished, so that no
    // two of them ever have the same local address (the OS may give a
    // closed client's port to the next one).
    let finished = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..PEERS)
        .map(|p| {
            let config = config.clone();
            let finished = std::sync::Arc::clone(&finished);
            spawn(move || {
                let mut c = udp_client(addr, &config);
                for i in 0..MESSAGES {
                    // Lockstep: at most one datagram in flight per client.
                    c.send(format!("{p}/{i}")).unwrap();
                    assert_eq!(c.recv_text().unwrap().unwrap(), format!("ack {p}/{i}"));
                }
                finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let until = Instant::now() + T;
                while finished.load(std::sync::atomic::Ordering::SeqCst) < PEERS {
                    assert!(Instant::now() < until, "the other clients did not finish");
                    std::thread::sleep(Duration::from_millis(1));
                }
                (p, c.local_addr().unwrap())
            })
        })
        .collect();
    let client_addrs: Vec<_> = clients.into_iter().map(|c| c.join()).collect();
    let (results, stats) = server.join();
    let mut seen = [false; PEERS];
    for (peer, got) in results {
        // Which client this was, by its address (unique while all were open).
        let &(p, _) = client_addrs
            .iter()
            .find(|(_, a)| *a == peer)
            .expect("a known peer");
        assert!(!seen[p], "two conversations for client {p}");
        seen[p] = true;
        let want: Vec<String> = (0..MESSAGES).map(|i| format!("{p}/{i}")).collect();
        assert_eq!(got, want, "peer {p}");
    }
    let total = (PEERS * MESSAGES) as u64;
    assert_eq!(
        (stats.datagrams, stats.delivered),
        (total, total),
        "{stats:?}"
    );
    assert_eq!(
        stats.dropped_queue_full + stats.dropped_peer_cap + stats.dropped_bytes_cap,
        0
    );
}

#[test]
fn a_full_queue_drops_and_counts() {
    let config = config().with_queue_depth(4);
    let (l, addr) = udp_listener(&config);
    let mut c = udp_client(addr, &config);
    for i in 0..20u8 {
        c.send([i]).unwrap();
    }
    let stats = wait_stats(&l, |s| s.datagrams == 20);
    assert_eq!(
        (stats.delivered, stats.dropped_queue_full),
        (4, 16),
        "{stats:?}"
    );
    let mut s = Conversation::new(l.accept().unwrap());
    for i in 0..4u8 {
        assert_eq!(s.recv().unwrap().unwrap(), &[i][..]);
    }
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    assert!(matches!(s.recv(), Err(Error::Timeout)));
}

/// `datagrams == delivered + drops` in every snapshot taken while a flood
/// arrives, and a datagram a conversation has received is always counted.
#[test]
fn every_stats_snapshot_accounts_for_each_datagram() {
    const SENT: u32 = 5_000;
    let config = config().with_queue_depth(8);
    let (l, addr) = udp_listener(&config);
    let l = std::sync::Arc::new(l);
    let mut c = udp_client(addr, &config);
    c.send(0u32.to_be_bytes()).unwrap();
    let mut s = Conversation::new(l.accept().unwrap());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (l, done) = (l.clone(), done.clone());
        spawn(move || {
            let until = Instant::now() + T;
            let mut snapshots = 0u64;
            while !done.load(std::sync::atomic::Ordering::Acquire) && Instant::now() < until {
                let st = l.stats();
                let fates = st.delivered
                    + st.dropped_queue_full
                    + st.dropped_peer_cap
                    + st.dropped_bytes_cap;
                assert_eq!(st.datagrams, fates, "an inconsistent snapshot: {st:?}");
                snapshots += 1;
            }
            snapshots
        })
    };
    let sender = spawn(move || {
        for i in 1..SENT {
            c.send(i.to_be_bytes()).unwrap();
        }
        c
    });
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut received = 0u64;
    loop {
        match s.recv() {
            Ok(Some(_)) => {
                received += 1;
                let delivered = l.stats().delivered;
                assert!(delivered >= received, "{delivered} < {received}");
            }
            Err(Error::Timeout) => break,
            other => panic!("{other:?}"),
        }
    }
    let _client = sender.join();
    done.store(true, std::sync::atomic::Ordering::Release);
    let snapshots = poller.join();
    assert!(snapshots > 0);
    assert!(received > 0 && received <= u64::from(SENT));
}

#[test]
fn the_peer_cap_drops_and_counts_new_sources() {
    let config = config().with_max_peers(3);
    let (l, addr) = udp_listener(&config);
    let clients: Vec<_> = (0..5)
        .map(|i| {
            let mut c = udp_client(addr, &config);
            c.send(format!("peer {i}")).unwrap();
            // One at a time, so which three get in is known.
            wait_stats(&l, |s| s.datagrams == i + 1);
            c
        })
        .collect();
    let stats = l.stats();
    assert_eq!(
        (stats.peers, stats.delivered, stats.dropped_peer_cap),
        (3, 3, 2),
        "{stats:?}"
    );
    for i in 0..3 {
        let mut s = Conversation::new(l.accept().unwrap());
        assert_eq!(s.recv_text().unwrap().unwrap(), format!("peer {i}"));
    }
    l.set_accept_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    assert!(matches!(l.accept(), Err(Error::Timeout)));
    drop(clients);
}

#[test]
fn the_byte_cap_drops_and_counts() {
    let config = config().with_max_queued_bytes(10_000);
    let (l, addr) = udp_listener(&config);
    let mut c = udp_client(addr, &config);
    for _ in 0..5 {
        c.send(vec![0u8; 3000]).unwrap();
    }
    let stats = wait_stats(&l, |s| s.datagrams == 5);
    assert_eq!(
        (stats.delivered, stats.dropped_bytes_cap),
        (3, 2),
        "{stats:?}"
    );
    // Receiving gives the budget back.
    let mut s = Conversation::new(l.accept().unwrap());
    for _ in 0..3 {
        assert_eq!(s.recv().unwrap().unwrap().len(), 3000);
    }
    c.send(vec![1u8; 3000]).unwrap();
    assert_eq!(s.recv().unwrap().unwrap(), vec![1u8; 3000]);
}

#[test]
fn an_idle_peer_is_evicted_and_its_conversation_ends() {
    let idle = Duration::from_millis(300);
    let config = config().with_idle_timeout(Some(idle));
    let (l, addr) = udp_listener(&config);
    let mut c = udp_client(addr, &config);
    c.send("one").unwrap();
    let mut s = Conversation::new(l.accept().unwrap());
    assert_eq!(s.recv().unwrap().unwrap(), &b"one"[..]);
    let started = Instant::now();
    assert_eq!(s.recv().unwrap(), None, "the end, after the idle timeout");
    let took = started.elapsed();
    assert!(
        took >= idle - Duration::from_millis(20) && took < T,
        "{took:?}"
    );
    let stats = l.stats();
    assert_eq!((stats.evicted, stats.peers), (1, 0), "{stats:?}");
    // The client conversation ends for silence too.
    assert_eq!(c.recv().unwrap(), None);
    // A later datagram from the same source starts a new conversation.
    let mut c2 = udp_client(addr, &config.clone().with_idle_timeout(None));
    c2.send("again").unwrap();
    let mut s2 = Conversation::new(l.accept().unwrap());
    assert_eq!(s2.recv().unwrap().unwrap(), &b"again"[..]);
}

#[test]
fn closing_a_udp_conversation_is_local() {
    let config = config();
    let (l, addr) = udp_listener(&config);
    let mut c = udp_client(addr, &config);
    c.send("hello").unwrap();
    let s = Conversation::new(l.accept().unwrap());
    s.close().unwrap();
    // The client was not told: it can still send, and nothing ends.
    c.send("still there?").unwrap();
    // That datagram starts a new conversation on the listener.
    let mut s2 = Conversation::new(l.accept().unwrap());
    assert_eq!(s2.recv().unwrap().unwrap(), &b"still there?"[..]);
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    assert!(matches!(c.recv(), Err(Error::Timeout)));
    c.close().unwrap();
    drop(s2);
}

#[test]
fn icmp_errors_never_stop_the_listener() {
    let config = config();
    let (l, addr) = udp_listener(&config);
    // A peer that says hello and vanishes: replies to it bounce (ICMP).
    let gone = raw_udp("127.0.0.1");
    gone.send_to(b"hello", addr).unwrap();
    let mut s = Conversation::new(l.accept().unwrap());
    drop(gone);
    for _ in 0..20 {
        let _ = s.send("are you there?");
    }
    // The listener still serves a new peer.
    let mut c = udp_client(addr, &config);
    c.send("next").unwrap();
    let mut s2 = Conversation::new(l.accept().unwrap());
    assert_eq!(s2.recv().unwrap().unwrap(), &b"next"[..]);
    s2.send("served").unwrap();
    assert_eq!(c.recv().unwrap().unwrap(), &b"served"[..]);
}

#[test]
fn dropping_the_listener_stops_its_thread_within_a_second() {
    let config = config();
    let (l, addr) = udp_listener(&config);
    let mut c = udp_client(addr, &config);
    c.send("hello").unwrap();
    let mut s = Conversation::new(l.accept().unwrap());
    assert_eq!(s.recv().unwrap().unwrap(), &b"hello"[..]);
    let started = Instant::now();
    drop(l);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Its conversations' receives end; their sends still work.
    assert_eq!(s.recv().unwrap(), None);
    s.send("bye from a closed listener").unwrap();
    assert_eq!(
        c.recv().unwrap().unwrap(),
        &b"bye from a closed listener"[..]
    );
    drop(s);
    // With the last conversation gone, the port is free again: nothing holds the socket.
    let rebound = UdpSocket::bind(addr);
    assert!(rebound.is_ok(), "{rebound:?}");
}

#[test]
fn udp_urls_select_udp() {
    let config = config();
    let l = converse::listen_with("udp://127.0.0.1:0", &config).unwrap();
    let url = l.local_addr().unwrap().to_string();
    assert!(
        url.starts_with("udp://127.0.0.1:") && !url.ends_with(":0"),
        "{url}"
    );
    let mut c = converse::connect_with(&url, &config).unwrap();
    c.send_text("over udp").unwrap();
    let mut s = l.accept().unwrap();
    assert_eq!(s.recv_text().unwrap().as_deref(), Some("over udp"));
    s.send_text("back").unwrap();
    assert_eq!(c.recv_text().unwrap().as_deref(), Some("back"));
    assert_eq!(c.peer_addr().unwrap().to_string(), url);
}

/// The state and CPU time (user + system, in clock ticks) of this process's
/// thread named `name`, from /proc; `None` while no such thread exists.
///
/// Other tests' threads start and end while this reads the directory, so an
/// entry that vanishes between listing and reading is skipped, not an error.
#[cfg(target_os = "linux")]
fn thread_state_and_ticks(name: &str) -> Option<(char, u64)> {
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let dir = task.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if comm.trim_end() != name {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let state = fields[0].chars().next()?;
        let ticks = fields[11].parse::<u64>().ok()? + fields[12].parse::<u64>().ok()?;
        return Some((state, ticks));
    }
    None
}

#[cfg(target_os = "linux")]
#[test]
fn an_idle_listener_uses_no_cpu() {
    let config = config();
    let (l, addr) = udp_listener(&config);
    // The listener's thread is named after its port. A spawned thread names
    // itself once it runs, so wait (bounded) until it exists and has gone to
    // sleep in its blocking receive.
    let name = format!("converse:{}", addr.port());
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        match thread_state_and_ticks(&name) {
            Some(('S', ticks)) => break ticks,
            seen => assert!(
                Instant::now() < deadline,
                "the listener's thread never went to sleep: {seen:?}"
            ),
        }
        std::thread::yield_now();
    };
    std::thread::sleep(Duration::from_millis(500));
    let (_, after) = thread_state_and_ticks(&name).expect("the listener's thread");
    assert_eq!(
        after - before,
        0,
        "the idle listener used {} ticks",
        after - before
    );
    drop(l);
}
