//! The chat room under attack: each attack runs against a real `chat_room`
//! process (default settings) while two honest members chat, alice saying
//! a line every 50 ms and bob timing each. What must hold: nothing they
//! send is lost, neither is dropped, no forged line reaches them, a
//! newcomer gets in, and the server's memory stays bounded.
//!
//! The tests run each attack for two seconds and assert those promises
//! (latency is printed, not asserted: this machine is shared). The ignored
//! `hostile_table` runs every attack for longer and prints the table the
//! README shows: lost lines, the slowest line, the server's peak RSS and
//! descriptors:
//!
//! ```text
//! cargo test --test hostile_room -- --ignored --nocapture hostile_table
//! ```
//!
//! `CONVERSE_ROOM_BIN=/path/to/chat_room` runs them against another build
//! of the room (an older one, for before-and-after figures).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::*;
use converse::{Config, Conversation, Tcp};

// ---------------------------------------------------------------------------
// The room, as a process.

fn room_path() -> PathBuf {
    if let Some(bin) = std::env::var_os("CONVERSE_ROOM_BIN") {
        return bin.into();
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("examples").join("chat_room");
    assert!(path.exists(), "{} is not built", path.display());
    path
}

struct Room {
    child: Child,
    /// The listeners' addresses, by scheme.
    urls: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Room {
    /// A room listening on TCP, UDP and WebSocket, its stdout read (or
    /// not: a pipe nobody reads).
    fn start(read_stdout: bool) -> Room {
        let mut args = vec![
            "--listen",
            "tcp://127.0.0.1:0",
            "--listen",
            "udp://127.0.0.1:0",
            "--listen",
            "ws://127.0.0.1:0",
        ];
        // A connection that never names itself: closed within the run, so
        // that it shows (an older room has no such setting).
        let help = Command::new(room_path()).arg("--help").output().unwrap();
        if String::from_utf8_lossy(&help.stdout).contains("--name-timeout") {
            args.extend(["--name-timeout", "1"]);
        }
        let mut child = Command::new(room_path())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut urls = Vec::new();
        for _ in 0..3 {
            let mut line = String::new();
            out.read_line(&mut line).unwrap();
            let url = line
                .trim()
                .strip_prefix("listening on ")
                .unwrap_or_else(|| panic!("{line:?}"));
            urls.push(url.to_owned());
        }
        if read_stdout {
            std::thread::spawn(move || {
                for line in out.lines() {
                    if line.is_err() {
                        break;
                    }
                }
            });
        } else {
            // Held, never read: the pipe fills.
            std::mem::forget(out);
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().unwrap();
                // Enough to diagnose; an attack may make much of it.
                if s.len() < 1 << 20 {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Room {
            child,
            urls,
            stderr,
        }
    }

    fn addr(&self, scheme: &str) -> SocketAddr {
        let url = self
            .urls
            .iter()
            .find(|u| u.starts_with(&format!("{scheme}://")))
            .unwrap();
        url[scheme.len() + 3..].parse().unwrap()
    }

    fn addrs(&self) -> Addrs {
        Addrs {
            tcp: self.addr("tcp"),
            udp: self.addr("udp"),
            ws: self.addr("ws"),
        }
    }

    fn status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }

    /// The peak of the room's resident set so far.
    fn rss_peak(&self) -> u64 {
        self.status("VmHWM:")
    }

    fn rss(&self) -> u64 {
        self.status("VmRSS:")
    }

    /// Its open file descriptors now.
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The honest members.

fn honest_config() -> Config {
    config().with_read_timeout(Some(Duration::from_millis(100)))
}

/// A member of the room over TCP, named, its two halves.
fn member(addr: SocketAddr, name: &str) -> Conversation<Tcp> {
    let mut c = client(addr, &honest_config());
    c.send(name).unwrap();
    c
}

/// What the honest members saw.
#[derive(Debug, Default)]
struct Outcome {
    sent: usize,
    heard: usize,
    /// The slowest of alice's lines, sent to heard by bob.
    slowest: Duration,
    /// Alice or bob was disconnected.
    dropped: Vec<String>,
    /// Lines that claimed to be alice's or bob's, or said they left.
    forged: Vec<String>,
    /// The newcomer heard alice within the attack.
    newcomer_in: bool,
}

impl Outcome {
    fn lost(&self) -> usize {
        self.sent - self.heard
    }

    /// The promises, asserted.
    fn holds(&self, attack: &str, room: &Room) {
        assert!(
            self.dropped.is_empty(),
            "{attack}: dropped: {:?}; the room said: {}",
            self.dropped,
            tail(&room.stderr())
        );
        assert_eq!(self.lost(), 0, "{attack}: {self:?}");
        assert!(
            self.forged.is_empty(),
            "{attack}: forged: {:?}",
            self.forged
        );
        assert!(self.newcomer_in, "{attack}: the newcomer never got in");
    }
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(2000);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[start..]
}

/// Alice says a line every 50 ms for `run`; bob hears each. Meanwhile a
/// newcomer joins (halfway) and must hear alice.
fn honest_chat(room: &Room, run: Duration, attack_started: impl FnOnce()) -> Outcome {
    let addr = room.addrs().tcp;
    let bob = member(addr, "bob");
    let (_bob_tx, mut bob_rx) = bob.split();
    let alice = member(addr, "alice");
    // Bob hears alice join: both are in.
    let until = Instant::now() + T;
    loop {
        assert!(Instant::now() < until, "alice never joined");
        if let Ok(Some(line)) = bob_rx.recv_text() {
            if line == "* alice joined" {
                break;
            }
        }
    }
    let (mut alice_tx, mut alice_rx) = alice.split();
    let stop = Arc::new(AtomicBool::new(false));
    let sent_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    // Alice reads too (she must not become slow herself).
    let alice_reader = {
        let (stop, outcome) = (Arc::clone(&stop), Arc::clone(&outcome));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match alice_rx.recv_text() {
                    Ok(Some(line)) => check_forged(&line, "alice", &outcome),
                    Ok(None) | Err(converse::Error::Closed) => {
                        outcome.lock().unwrap().dropped.push("alice".into());
                        return;
                    }
                    Err(converse::Error::Timeout) => {}
                    Err(e) => {
                        outcome.lock().unwrap().dropped.push(format!("alice: {e}"));
                        return;
                    }
                }
            }
        })
    };
    let bob_reader = {
        let (stop, outcome, sent_at) = (
            Arc::clone(&stop),
            Arc::clone(&outcome),
            Arc::clone(&sent_at),
        );
        std::thread::spawn(move || loop {
            // Stopped once the last lines had their time to arrive.
            if stop.load(Ordering::Relaxed) {
                return;
            }
            match bob_rx.recv_text() {
                Ok(Some(line)) => {
                    if let Some(n) = line.strip_prefix("alice: line ") {
                        if let Ok(n) = n.parse::<usize>() {
                            let at = sent_at.lock().unwrap()[n];
                            let mut o = outcome.lock().unwrap();
                            o.heard += 1;
                            o.slowest = o.slowest.max(at.elapsed());
                            continue;
                        }
                    }
                    check_forged(&line, "bob", &outcome);
                }
                Ok(None) | Err(converse::Error::Closed) => {
                    outcome.lock().unwrap().dropped.push("bob".into());
                    return;
                }
                Err(converse::Error::Timeout) => {}
                Err(e) => {
                    outcome.lock().unwrap().dropped.push(format!("bob: {e}"));
                    return;
                }
            }
        })
    };
    attack_started();
    let started = Instant::now();
    let mut newcomer: Option<JoinHandle<bool>> = None;
    let mut n = 0;
    while started.elapsed() < run {
        if newcomer.is_none() && started.elapsed() >= run / 2 {
            newcomer = Some(std::thread::spawn(move || {
                let Ok(c) = Tcp::connect_with(addr, &honest_config()) else {
                    return false;
                };
                let mut c = Conversation::new(c);
                if c.send("carol").is_err() {
                    return false;
                }
                let until = Instant::now() + T;
                while Instant::now() < until {
                    match c.recv_text() {
                        Ok(Some(line)) if line.starts_with("alice: line ") => return true,
                        Ok(Some(_)) | Err(converse::Error::Timeout) => {}
                        _ => return false,
                    }
                }
                false
            }));
        }
        sent_at.lock().unwrap().push(Instant::now());
        if alice_tx.send(format!("line {n}")).is_err() {
            outcome.lock().unwrap().dropped.push("alice (send)".into());
            break;
        }
        n += 1;
        outcome.lock().unwrap().sent = n;
        std::thread::sleep(Duration::from_millis(50));
    }
    // The last lines have T to arrive.
    let until = Instant::now() + T;
    while Instant::now() < until {
        let o = outcome.lock().unwrap();
        if o.heard == o.sent || !o.dropped.is_empty() {
            break;
        }
        drop(o);
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let newcomer_in = newcomer.map(|h| h.join().unwrap_or(false)).unwrap_or(false);
    let _ = bob_reader.join();
    let _ = alice_reader.join();
    let mut o = std::mem::take(&mut *outcome.lock().unwrap());
    o.newcomer_in = newcomer_in;
    // "* bob left" is the truth once bob was dropped.
    let gone: Vec<String> = o
        .dropped
        .iter()
        .filter_map(|d| d.split([':', ' ']).next())
        .map(|who| format!("* {who} left"))
        .collect();
    o.forged.retain(|line| !gone.contains(line));
    o
}

/// A line another member sent that pretends to be alice's or bob's, or
/// the room's word that one of them left.
fn check_forged(line: &str, me: &str, outcome: &Mutex<Outcome>) {
    let forged = line.contains('\n')
        || line.contains('\u{1b}')
        || line == "* alice left"
        || line == "* bob left"
        || (line.starts_with("alice: ") && !line.starts_with("alice: line "))
        || (line.starts_with("bob: ") && me == "alice");
    if forged {
        outcome.lock().unwrap().forged.push(line.to_owned());
    }
}

// ---------------------------------------------------------------------------
// The attacks: each runs until `stop`.

type Attack = fn(Addrs, Arc<AtomicBool>);

/// The room's addresses, for an attacker's thread.
#[derive(Clone, Copy)]
struct Addrs {
    tcp: SocketAddr,
    udp: SocketAddr,
    ws: SocketAddr,
}

fn stopped(stop: &AtomicBool) -> bool {
    stop.load(Ordering::Relaxed)
}

/// Holds what the attack made (connections, sockets) until it is stopped.
fn hold_until(stop: &AtomicBool) {
    while !stopped(stop) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A raw connection that has said its name.
fn named_raw(addr: SocketAddr, name: &str) -> TcpStream {
    let mut s = raw_client(addr);
    s.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s.write_all(&frame(name.as_bytes())).unwrap();
    s
}

/// Writes `bytes` until done or `stop` (a write that times out is tried
/// again: the room pushes back).
fn write_until(s: &mut TcpStream, mut bytes: &[u8], stop: &AtomicBool) -> bool {
    while !bytes.is_empty() {
        if stopped(stop) {
            return false;
        }
        match s.write(bytes) {
            Ok(0) => return false,
            Ok(n) => bytes = &bytes[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return false,
        }
    }
    true
}

/// Lines as fast as TCP takes them, unpaced, never reading.
fn tcp_flood(room: Addrs, stop: Arc<AtomicBool>) {
    let mut s = named_raw(room.tcp, "mallory");
    let mut batch = Vec::new();
    for i in 0..1000 {
        batch.extend_from_slice(&frame(format!("flood {i}").as_bytes()));
    }
    while write_until(&mut s, &batch, &stop) {}
}

/// Two 8 MiB messages.
fn big_messages(room: Addrs, stop: Arc<AtomicBool>) {
    let mut s = named_raw(room.tcp, "mallory");
    let big = frame(&vec![b'x'; 8 << 20]);
    for _ in 0..2 {
        if !write_until(&mut s, &big, &stop) {
            break;
        }
    }
    hold_until(&stop);
}

/// A 4 MiB name, then two one-byte lines.
fn big_name(room: Addrs, stop: Arc<AtomicBool>) {
    let mut s = raw_client(room.tcp);
    s.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut wire = frame(&vec![b'm'; 4 << 20]);
    wire.extend_from_slice(&frame(b"a"));
    wire.extend_from_slice(&frame(b"b"));
    write_until(&mut s, &wire, &stop);
    hold_until(&stop);
}

/// 128 connections, each holding a message that never finishes (as large
/// as the room takes, all but its last bytes), renewed when ended.
fn unfinished(room: Addrs, stop: Arc<AtomicBool>) {
    let addr = room.tcp;
    let mut held = Vec::new();
    for i in 0..128 {
        if stopped(&stop) {
            break;
        }
        let Ok(mut s) = TcpStream::connect_timeout(&addr, T) else {
            continue;
        };
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut wire = frame(format!("holder{i}").as_bytes());
        // 8 MiB declared: ended at once by a room that takes less; else
        // most of it.
        let declared: u32 = 8 << 20;
        wire.extend_from_slice(&declared.to_be_bytes());
        wire.extend_from_slice(&vec![0u8; (declared - 16) as usize]);
        let _ = write_until(&mut s, &wire, &stop);
        held.push(s);
    }
    hold_until(&stop);
}

/// WebSocket clients that upgrade, never name themselves, never read, and
/// send pings as fast as they can.
fn ws_pings(room: Addrs, stop: Arc<AtomicBool>) {
    let addr = room.ws;
    let mut threads = Vec::new();
    for _ in 0..4 {
        let stop = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || {
            let mut s = common::ws::raw_upgraded(addr);
            s.set_write_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            let ping = common::ws::client_frame(0x89, &[7u8; 125]);
            let pings: Vec<u8> = ping
                .iter()
                .copied()
                .cycle()
                .take(ping.len() * 512)
                .collect();
            while write_until(&mut s, &pings, &stop) {}
        }));
    }
    for t in threads {
        let _ = t.join();
    }
}

/// 2,000 connections that never say their name.
fn nameless(room: Addrs, stop: Arc<AtomicBool>) {
    let addr = room.tcp;
    let mut held = Vec::new();
    let mut opened = 0;
    while !stopped(&stop) {
        if opened < 2000 {
            if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                held.push(s);
            }
            opened += 1;
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// 200 members that join and never read, while one member says the
/// largest lines the room takes as fast as it is let.
fn non_readers(room: Addrs, stop: Arc<AtomicBool>) {
    let addr = room.tcp;
    let mut held = Vec::new();
    for i in 0..200 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.set_recv_buffer_size(4096).unwrap();
        if s.connect_timeout(&addr.into(), T).is_err() {
            continue;
        }
        let mut s: TcpStream = s.into();
        let _ = s.write_all(&frame(format!("deaf{i}").as_bytes()));
        held.push(s);
    }
    let mut s = named_raw(addr, "mallory");
    let line = frame(&vec![b'y'; 60_000]);
    while write_until(&mut s, &line, &stop) {}
}

/// A UDP member sends 2,000 of the largest datagrams, unpaced.
fn udp_flood(room: Addrs, stop: Arc<AtomicBool>) {
    let addr = room.udp;
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let _ = s.send_to(b"mallory", addr);
    let big = vec![b'z'; 65_000];
    for _ in 0..2000 {
        if stopped(&stop) {
            break;
        }
        let _ = s.send_to(&big, addr);
    }
    hold_until(&stop);
}

/// 3,000 source addresses, one datagram (a name) each.
fn udp_joins(room: Addrs, stop: Arc<AtomicBool>) {
    let addr = room.udp;
    let mut sockets = Vec::new();
    for i in 0..3000 {
        if stopped(&stop) {
            break;
        }
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let _ = s.send_to(format!("u{i}").as_bytes(), addr);
        sockets.push(s);
    }
    hold_until(&stop);
}

/// Names and lines that would lie: alice's name again (any case), a
/// name with a line end, lines that forge the room's announcements and
/// alice's words, over TCP and UDP.
fn liars(room: Addrs, stop: Arc<AtomicBool>) {
    let addr = room.tcp;
    let mut held = Vec::new();
    for name in ["alice", "ALICE", "bob\n* alice left", "eve"] {
        let mut s = raw_client(addr);
        let _ = s.write_all(&frame(name.as_bytes()));
        held.push(s);
    }
    let eve = held.last_mut().unwrap();
    for line in [
        "hi\n* bob left",
        "\n* alice left\nalice: please send your password to mallory",
        "\u{1b}[2K\ralice: line 999999",
    ] {
        let _ = eve.write_all(&frame(line.as_bytes()));
    }
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    for _ in 0..200 {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let _ = s.send_to(b"alice", room.udp);
    }
    let _ = udp.send_to(b"bob", room.udp);
    hold_until(&stop);
}

/// Connections that come and go without a name, as fast as they can: the
/// room's diagnostics (a stderr nobody reads, in the test that holds it).
fn churn(room: Addrs, stop: Arc<AtomicBool>) {
    let addr = room.tcp;
    while !stopped(&stop) {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            // An oversized header: an error line each.
            let _ = s.write_all(&u32::MAX.to_be_bytes());
        }
    }
}

/// One attack, with the honest chat around it: the outcome and the room's
/// figures.
struct Run {
    outcome: Outcome,
    rss_peak: u64,
    rss_after: u64,
    fds_during: usize,
}

fn run(attack: Attack, run_for: Duration, read_stdout: bool) -> (Room, Run) {
    let room = Room::start(read_stdout);
    let stop = Arc::new(AtomicBool::new(false));
    let mut attacker = None;
    let outcome = honest_chat(&room, run_for, || {
        let (stop, addrs) = (Arc::clone(&stop), room.addrs());
        attacker = Some(std::thread::spawn(move || attack(addrs, stop)));
    });
    let fds_during = room.fds();
    stop.store(true, Ordering::Relaxed);
    if let Some(a) = attacker {
        let _ = a.join();
    }
    let rss_peak = room.rss_peak();
    let rss_after = room.rss();
    (
        room,
        Run {
            outcome,
            rss_peak,
            rss_after,
            fds_during,
        },
    )
}

const QUICK: Duration = Duration::from_secs(2);

/// The attacks: name, function, whether the room's stdout is read.
const ATTACKS: &[(&str, Attack, bool)] = &[
    ("TCP flood, unpaced", tcp_flood, true),
    ("two 8 MiB messages", big_messages, true),
    ("a 4 MiB name, then two lines", big_name, true),
    ("128 unfinished largest messages", unfinished, true),
    ("WebSocket ping flood, never reading", ws_pings, true),
    ("2,000 connections never naming", nameless, true),
    (
        "200 members never reading, largest lines",
        non_readers,
        true,
    ),
    ("UDP: 2,000 largest datagrams", udp_flood, true),
    ("UDP: 3,000 sources joining", udp_joins, true),
    ("names and lines that lie", liars, true),
    ("stdout nobody reads, TCP flood", tcp_flood, false),
    ("churn of bad connections (stderr)", churn, true),
];

fn quick(name: &str) {
    let &(label, attack, read_stdout) = ATTACKS.iter().find(|a| a.0 == name).unwrap();
    let (room, run) = run(attack, QUICK, read_stdout);
    println!(
        "{label}: {} sent, {} lost, slowest {:?}, RSS peak {} MB, {} fds",
        run.outcome.sent,
        run.outcome.lost(),
        run.outcome.slowest,
        run.rss_peak >> 20,
        run.fds_during
    );
    run.outcome.holds(label, &room);
    assert!(
        run.rss_peak < 256 << 20,
        "{label}: the room's RSS reached {} MB",
        run.rss_peak >> 20
    );
}

#[test]
fn a_flooder_is_slowed_and_the_others_lose_nothing() {
    quick("TCP flood, unpaced");
}

#[test]
fn messages_and_names_too_large_cost_only_their_sender() {
    quick("two 8 MiB messages");
    quick("a 4 MiB name, then two lines");
}

#[test]
fn unfinished_messages_are_bounded() {
    quick("128 unfinished largest messages");
}

#[test]
fn a_websocket_ping_flood_costs_its_own_connection() {
    quick("WebSocket ping flood, never reading");
}

#[test]
fn members_who_never_read_are_dropped_and_readers_are_not() {
    quick("200 members never reading, largest lines");
}

#[test]
fn a_udp_flood_and_a_join_storm_from_many_sources() {
    quick("UDP: 2,000 largest datagrams");
    quick("UDP: 3,000 sources joining");
}

#[test]
fn nothing_forged_reaches_anyone() {
    quick("names and lines that lie");
}

#[test]
fn an_unread_stdout_never_stops_the_room() {
    quick("stdout nobody reads, TCP flood");
}

/// Every attack for longer, the table printed (the README's):
/// `HOSTILE_SECS` per run (8), `HOSTILE_ROUNDS` runs of each (3).
#[test]
#[ignore = "a printed run of every attack, a few minutes"]
fn hostile_table() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (secs, rounds) = (env("HOSTILE_SECS", 8), env("HOSTILE_ROUNDS", 3));
    println!(
        "| attack ({rounds} runs of {secs} s; alice says a line every 50 ms) | alice's lines lost | slowest line | runs with alice or bob dropped | forged lines | newcomer got in | server RSS peak | RSS after | server fds |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &(label, attack, read_stdout) in ATTACKS {
        let (mut sent, mut lost, mut slowest, mut dropped, mut forged, mut newcomer) =
            (0, 0, Duration::ZERO, 0, 0, 0);
        let (mut peak, mut after, mut fds) = (0, 0, 0);
        for _ in 0..rounds {
            let outcome =
                std::panic::catch_unwind(|| run(attack, Duration::from_secs(secs), read_stdout));
            let Ok((_room, run)) = outcome else {
                dropped += 1;
                continue;
            };
            let o = &run.outcome;
            sent += o.sent;
            lost += o.lost();
            slowest = slowest.max(o.slowest);
            dropped += usize::from(!o.dropped.is_empty());
            forged += o.forged.len();
            newcomer += usize::from(o.newcomer_in);
            peak = peak.max(run.rss_peak);
            after = after.max(run.rss_after);
            fds = fds.max(run.fds_during);
        }
        println!(
            "| {label} | {lost} of {sent} | {} ms | {dropped} of {rounds} | {forged} | {newcomer} of {rounds} | {} MB | {} MB | {fds} |",
            slowest.as_millis(),
            peak >> 20,
            after >> 20,
        );
    }
}
