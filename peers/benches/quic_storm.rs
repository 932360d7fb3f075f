//! A join storm over QUIC against the same storm over TLS: a room on a
//! switchboard (each member's first message is its name; every join is
//! announced to every member present), and members that join as fast as
//! they can, each on a connection of its own (its own handshake), from
//! eight client threads, a switchboard each. Printed, not timed by
//! criterion:
//!
//! ```text
//! cargo bench --bench quic_storm                               # 2,000 members
//! CONVERSE_STORM_MEMBERS=500 cargo bench --bench quic_storm
//! ```

#[path = "../../examples/common/certs.rs"]
mod certs;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use converse::switchboard::{Event, Events, Id, Switchboard};
use converse::tls::{TlsClient, TlsServer};
use converse::Config;

/// Threads the members join from.
const CLIENT_THREADS: usize = 8;

/// The messages among `events`, taken.
fn count(events: &mut Events) -> u64 {
    events
        .drain()
        .filter(|e| matches!(e, Event::Message { .. }))
        .count() as u64
}

fn main() {
    let members: usize = std::env::var("CONVERSE_STORM_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let kit = certs::Kit::new("storm");
    let server = TlsServer::from_pem(&kit.server.cert_pem, &kit.server.key_pem).unwrap();
    let ca = kit.ca.cert_pem();
    println!("join storm: {members} members, each on a connection of its own");
    println!(
        "| transport | all joined in | joins/s | announcements delivered | handshakes failed |"
    );
    println!("|---|---:|---:|---:|---:|");
    for scheme in ["tls", "quic"] {
        let config = Config::new()
            .with_tls_server(server.clone())
            .with_backlog(4096)
            .with_max_peers(members + 16)
            .with_max_backlog(64 * 1024 * 1024);
        let (addr_tx, addr_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let room = {
            let config = config.clone();
            thread::spawn(move || room(&config, scheme, members, addr_tx, done_tx))
        };
        let url = addr_rx.recv().unwrap();
        let started = Instant::now();
        // Members join from several threads at once, each a switchboard
        // of its own (a QUIC connect on a switchboard waits for its
        // handshake), and read what the room announces until it is done.
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENT_THREADS)
            .map(|t| {
                let (url, ca, stop) = (url.clone(), ca.clone(), Arc::clone(&stop));
                thread::spawn(move || {
                    let mut board =
                        Switchboard::with_config(&Config::new().with_max_backlog(64 * 1024 * 1024))
                            .unwrap();
                    let (mut failed, mut delivered) = (0u64, 0u64);
                    let mut events = Events::new();
                    for i in (t..members).step_by(CLIENT_THREADS) {
                        // Other TLS settings: another connection, another
                        // handshake.
                        let client = TlsClient::trusting_ca_pem(&ca).unwrap();
                        let config = Config::new().with_tls_client(client);
                        match board.connect_with(&url, &config) {
                            Ok(id) => drop(board.send(id, format!("m{i}"))),
                            Err(_) => failed += 1,
                        }
                        let _ = board.wait(&mut events, Some(Duration::ZERO));
                        delivered += count(&mut events);
                    }
                    while !stop.load(Ordering::Relaxed) {
                        let _ = board.wait(&mut events, Some(Duration::from_millis(20)));
                        delivered += count(&mut events);
                    }
                    (failed, delivered)
                })
            })
            .collect();
        let joined_in = match done_rx.recv_timeout(Duration::from_secs(300)) {
            Ok(at) => at - started,
            Err(_) => Duration::MAX,
        };
        stop.store(true, Ordering::Relaxed);
        let (mut failed, mut delivered) = (0, 0);
        for c in clients {
            let (f, d) = c.join().unwrap();
            failed += f;
            delivered += d;
        }
        let secs = joined_in.as_secs_f64();
        println!(
            "| {scheme} | {secs:.2} s | {:.0} | {delivered} | {failed} |",
            members as f64 / secs
        );
        let _ = room.join();
    }
}

/// The room: serves until `members` have said their names, then says when.
fn room(
    config: &Config,
    scheme: &str,
    members: usize,
    addr: mpsc::Sender<String>,
    done: mpsc::Sender<Instant>,
) {
    let mut board = Switchboard::with_config(config).unwrap();
    let listener = board.listen(&format!("{scheme}://127.0.0.1:0")).unwrap();
    addr.send(board.listener_addr(listener).unwrap().to_string())
        .unwrap();
    let mut named: Vec<Id> = Vec::new();
    let mut seen = HashSet::new();
    let mut events = Events::new();
    let until = Instant::now() + Duration::from_secs(300);
    while named.len() < members && Instant::now() < until {
        board
            .wait(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        for event in events.drain().collect::<Vec<_>>() {
            if let Event::Message { id, message } = event {
                if seen.insert(id) {
                    let line = format!("* {} joined", String::from_utf8_lossy(&message));
                    for &m in &named {
                        let _ = board.send(m, &line);
                    }
                    named.push(id);
                }
            }
        }
    }
    let _ = done.send(Instant::now());
    // Lets the last announcements go out.
    let flush_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < flush_until {
        let _ = board.wait(&mut events, Some(Duration::from_millis(20)));
        events.drain().for_each(drop);
    }
}
