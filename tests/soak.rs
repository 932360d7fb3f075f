//! Soak: many concurrent conversations through an echo server built on the
//! crate, every message carrying a sequence number and a CRC32; afterwards
//! nothing lost, duplicated, reordered or corrupted, and file descriptors
//! and memory back to where they were.
//!
//! CI runs a scaled-down version; the full scale is ignored by default:
//!
//! ```text
//! cargo test --release --test soak -- --ignored --nocapture
//! ```

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use converse::{Conversation, Udp, UdpListener};

/// `seq (8 bytes) | crc32 of the rest (4 bytes) | payload`.
fn message(conversation: u64, seq: u64) -> Vec<u8> {
    let len = ((conversation * 31 + seq * 17) % 200) as usize;
    let payload: Vec<u8> = (0..len).map(|i| (seq as usize + i) as u8).collect();
    let mut m = seq.to_be_bytes().to_vec();
    m.extend(crc32fast::hash(&payload).to_be_bytes());
    m.extend(payload);
    m
}

#[derive(Default)]
struct Tally {
    received: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
    corrupted: AtomicU64,
}

impl Tally {
    /// Checks one echoed message against the sequence number expected next.
    fn check(&self, m: &[u8], expected: u64) {
        self.received.fetch_add(1, Ordering::Relaxed);
        if m.len() < 12 || crc32fast::hash(&m[12..]).to_be_bytes() != m[8..12] {
            self.corrupted.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let seq = u64::from_be_bytes(m[..8].try_into().unwrap());
        match seq.cmp(&expected) {
            std::cmp::Ordering::Equal => {}
            std::cmp::Ordering::Less => {
                self.duplicated.fetch_add(1, Ordering::Relaxed);
            }
            std::cmp::Ordering::Greater => {
                self.reordered.fetch_add(1, Ordering::Relaxed);
                self.lost.fetch_add(seq - expected, Ordering::Relaxed);
            }
        }
    }

    fn assert_clean(&self, expected_total: u64, what: &str) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        println!(
            "{what}: {} received of {expected_total}, lost {}, duplicated {}, reordered {}, corrupted {}",
            get(&self.received),
            get(&self.lost),
            get(&self.duplicated),
            get(&self.reordered),
            get(&self.corrupted)
        );
        assert_eq!(get(&self.received), expected_total, "{what}");
        for (name, n) in [
            ("lost", get(&self.lost)),
            ("duplicated", get(&self.duplicated)),
            ("reordered", get(&self.reordered)),
            ("corrupted", get(&self.corrupted)),
        ] {
            assert_eq!(n, 0, "{what}: {name}");
        }
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Waits (bounded) until the open descriptors are back to `baseline`.
fn fds_settle(baseline: usize) -> usize {
    let until = Instant::now() + T;
    loop {
        let now = open_fds();
        if now <= baseline || Instant::now() > until {
            return now;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

const BATCH: u64 = 50;

/// One soak at a time: each counts the process's descriptors and memory.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The timeout of every blocking call: a guard against a hang, not a
/// speed limit. At full scale, 2 000 busy threads share the cores, and one
/// of them can wait its turn for longer than the usual 10 s.
fn patience(conversations: u64) -> Duration {
    if conversations > 100 {
        Duration::from_secs(120)
    } else {
        T
    }
}

fn tcp_soak(conversations: u64, messages: u64) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let wait = Some(patience(conversations));
    let config = config()
        .with_backlog(1024)
        .with_read_timeout(wait)
        .with_write_timeout(wait);
    let fds_before = open_fds();
    let rss_before = rss_kib();
    let (listener, addr) = listener(&config);
    let server = spawn(move || {
        let mut handlers = Vec::new();
        for _ in 0..conversations {
            let mut c = Conversation::new(listener.accept().unwrap());
            handlers.push(spawn(move || {
                while let Some(m) = c.recv().unwrap() {
                    c.send(&m).unwrap();
                }
                c.close().unwrap();
            }));
        }
        for h in handlers {
            h.join_within(Duration::from_secs(3600));
        }
    });
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let clients: Vec<_> = (0..conversations)
        .map(|id| {
            let tally = Arc::clone(&tally);
            let config = config.clone();
            spawn(move || {
                let mut c = client(addr, &config);
                let mut seq = 0;
                while seq < messages {
                    let n = BATCH.min(messages - seq);
                    c.send_all((seq..seq + n).map(|s| message(id, s))).unwrap();
                    for s in seq..seq + n {
                        tally.check(&c.recv().unwrap().unwrap(), s);
                    }
                    seq += n;
                }
                c.close().unwrap();
            })
        })
        .collect();
    for c in clients {
        c.join_within(Duration::from_secs(3600));
    }
    server.join_within(Duration::from_secs(3600));
    let took = started.elapsed();
    tally.assert_clean(
        conversations * messages,
        &format!("TCP soak {conversations} x {messages}"),
    );
    let fds_after = fds_settle(fds_before);
    let rss_after = rss_kib();
    println!(
        "TCP soak {conversations} x {messages}: {took:?}; fds {fds_before} -> {fds_after}; RSS {rss_before} KiB -> {rss_after} KiB"
    );
    assert_eq!(fds_after, fds_before, "file descriptors left open");
    assert!(
        rss_after <= rss_before + 64 * 1024,
        "RSS {rss_before} KiB -> {rss_after} KiB"
    );
}

fn udp_soak(peers: u64, messages: u64) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let wait = patience(peers);
    let config = config()
        .with_max_peers(peers as usize + 16)
        .with_read_timeout(Some(wait))
        .with_write_timeout(Some(wait))
        .with_accept_timeout(Some(wait));
    let fds_before = open_fds();
    let rss_before = rss_kib();
    let listener = UdpListener::bind_with("127.0.0.1:0", &config).unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap().socket_addr().unwrap();
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let server = spawn(move || {
        let mut handlers = Vec::new();
        for _ in 0..peers {
            let mut c = Conversation::new(listener.accept().unwrap());
            handlers.push(spawn(move || {
                for _ in 0..messages {
                    let m = c.recv().unwrap().unwrap();
                    c.send(&m).unwrap();
                }
            }));
        }
        for h in handlers {
            h.join_within(Duration::from_secs(3600));
        }
        listener.stats()
    });
    let clients: Vec<_> = (0..peers)
        .map(|id| {
            let tally = Arc::clone(&tally);
            let config = config.clone();
            spawn(move || {
                let mut c = Conversation::new(Udp::connect_with(addr, &config).unwrap());
                // Paced: one datagram in flight per peer.
                for s in 0..messages {
                    c.send(message(id, s)).unwrap();
                    tally.check(&c.recv().unwrap().unwrap(), s);
                }
            })
        })
        .collect();
    for c in clients {
        c.join_within(Duration::from_secs(3600));
    }
    let stats = server.join_within(Duration::from_secs(3600));
    let took = started.elapsed();
    tally.assert_clean(peers * messages, &format!("UDP soak {peers} x {messages}"));
    println!("UDP soak {peers} x {messages}: {took:?}; listener {stats:?}");
    assert_eq!(stats.delivered, peers * messages);
    assert_eq!(
        stats.dropped_queue_full + stats.dropped_peer_cap + stats.dropped_bytes_cap,
        0
    );
    let fds_after = fds_settle(fds_before);
    let rss_after = rss_kib();
    println!("UDP soak: fds {fds_before} -> {fds_after}; RSS {rss_before} KiB -> {rss_after} KiB");
    assert_eq!(fds_after, fds_before, "file descriptors left open");
}

#[test]
fn tcp_soak_100_conversations_x_1000_messages() {
    tcp_soak(100, 1000);
}

#[test]
fn udp_soak_100_peers_x_1000_messages() {
    udp_soak(100, 1000);
}

#[test]
#[ignore = "full scale: minutes; run with --ignored"]
fn tcp_soak_1000_conversations_x_10000_messages() {
    tcp_soak(1000, 10_000);
}

#[test]
#[ignore = "full scale: minutes; run with --ignored"]
fn udp_soak_1000_peers_x_10000_messages() {
    udp_soak(1000, 10_000);
}
