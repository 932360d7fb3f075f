//! A join storm over QUIC against the same storm over TLS: a room on a
//! switchboard (each member's first message is its name; every join is
//! announced to every member present), and members that join as fast as
//! they can, each on a connection of its own (its own handshake), from a
//! second switchboard. Printed, not timed by criterion:
//!
//! ```text
//! cargo bench --bench quic_storm                               # 2,000 members
//! CONVERSE_STORM_MEMBERS=500 cargo bench --bench quic_storm
//! ```

#[path = "../../examples/common/certs.rs"]
mod certs;

use std::collections::HashSet;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use converse::switchboard::{Event, Events, Id, Switchboard};
use converse::tls::{TlsClient, TlsServer};
use converse::Config;

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
        let mut board =
            Switchboard::with_config(&Config::new().with_max_backlog(64 * 1024 * 1024)).unwrap();
        let mut failed = 0;
        let mut ids = HashSet::new();
        for i in 0..members {
            // Other TLS settings: another connection, another handshake.
            let client = TlsClient::trusting_ca_pem(&ca).unwrap();
            let config = Config::new().with_tls_client(client);
            match board.connect_with(&url, &config) {
                Ok(id) => {
                    let _ = board.send(id, format!("m{i}"));
                    ids.insert(id);
                }
                Err(_) => failed += 1,
            }
            if i % 64 == 0 {
                let mut events = Events::new();
                let _ = board.wait(&mut events, Some(Duration::ZERO));
            }
        }
        // Members read what the room announces until it says all joined.
        let mut events = Events::new();
        let mut delivered = 0u64;
        let joined_in = loop {
            board
                .wait(&mut events, Some(Duration::from_millis(20)))
                .unwrap();
            for event in events.drain() {
                match event {
                    Event::Message { .. } => delivered += 1,
                    Event::Ended { id, .. } => {
                        ids.remove(&id);
                    }
                    _ => {}
                }
            }
            if let Ok(at) = done_rx.try_recv() {
                break at - started;
            }
            if started.elapsed() > Duration::from_secs(300) {
                break Duration::MAX;
            }
        };
        let secs = joined_in.as_secs_f64();
        println!(
            "| {scheme} | {secs:.2} s | {:.0} | {delivered} | {failed} |",
            members as f64 / secs
        );
        drop(board);
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
