//! The chat room at scale: `cargo bench --bench scale`.
//!
//! Four servers, each in a process of its own, driven by the same clients
//! (tokio, in this process), one after another in one run:
//!
//! * `converse`: the `chat_room` example's room (`examples/common/room.rs`)
//!   on a `Switchboard`, one serving thread;
//! * `tokio`: a chat server written the way tokio's own `examples/chat.rs`
//!   is: a task per peer, `Framed` + `LengthDelimitedCodec`, an unbounded
//!   channel per peer, a shared map under a lock;
//! * `converse-tokio`: the same tokio design on converse's async driver
//!   (`converse::tokio` conversations instead of `Framed`);
//! * `threads`: converse's room as it was before the switchboard, a thread
//!   per member relaying under one lock with a 2 s write timeout.
//!
//! Scenarios, each on a fresh server:
//!
//! * join storm: `MEMBERS` (10,000) members join, every join announced to
//!   everyone present; the time until the first member has heard every
//!   other join; the server's threads and resident memory at the end;
//! * fan-out: one sender, `RECEIVERS` (1,000) receivers, `MESSAGES`
//!   (20,000) 64-byte messages; delivered messages per second;
//! * slow consumer: the same fan-out, four times as long, with one member
//!   that never reads (a 4 KiB receive window; even so, the kernel's send
//!   buffer takes about 3 MB before the room's 1 MiB backlog fills, so it
//!   takes some 57,000 lines to find it out);
//! * idle memory: `MEMBERS` idle connections; resident memory per
//!   connection.
//!
//! Sizes come from the environment (`CONVERSE_SCALE_MEMBERS`,
//! `CONVERSE_SCALE_RECEIVERS`, `CONVERSE_SCALE_MESSAGES`,
//! `CONVERSE_SCALE_SERVERS=converse,tokio,converse-tokio,threads`, and
//! `CONVERSE_SCALE_CAP` seconds per scenario, default 60). The run raises
//! its file-descriptor soft limit to the hard one (and says so if that is
//! too low for the members asked).
//!
//! Besides its table, the run draws what it measured as SVG plots
//! (`plot/`), in `docs/` at the workspace's root or in the folder
//! `CONVERSE_SCALE_PLOTS` names: `scale-joins.svg` and `scale-rss.svg`
//! (the join storm's rate and the server's resident memory as the room
//! fills, sampled every twentieth of the members), `scale-fanout.svg` and
//! `scale-idle-memory.svg`.

mod plot;
#[allow(dead_code)]
#[path = "../../examples/common/room.rs"]
mod room;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        serve(&args[i + 1]);
        return;
    }
    if std::env::var_os("CONVERSE_SCALE_RAISED").is_none() {
        // Raise the soft file-descriptor limit to the hard one, for this
        // process and the servers it starts, and run again.
        let status = Command::new("sh")
            .arg("-c")
            .arg("ulimit -Sn \"$(ulimit -Hn)\" && exec \"$0\" \"$@\"")
            .arg(&args[0])
            .args(&args[1..])
            .env("CONVERSE_SCALE_RAISED", "1")
            .status()
            .expect("sh");
        std::process::exit(status.code().unwrap_or(1));
    }
    run();
}

// ---------------------------------------------------------------------------
// The servers.

fn serve(kind: &str) {
    match kind {
        "converse" => serve_converse(),
        "tokio" => serve_tokio(),
        "converse-tokio" => serve_converse_tokio(),
        "threads" => serve_threads(),
        other => panic!("no server {other}"),
    }
}

fn say_port(port: u16) {
    println!("{port}");
}

fn serve_converse() {
    let config = converse::Config::new().with_backlog(4096);
    let mut board = converse::Switchboard::with_config(&config).unwrap();
    let listener = board.listen("tcp://127.0.0.1:0").unwrap();
    let port = board
        .listener_addr(listener)
        .unwrap()
        .socket_addr()
        .unwrap()
        .port();
    say_port(port);
    // The room's throughput is measured, against servers without one: no
    // flood limit (the example's is 100 lines a second per member).
    let mut room = room::Room::new(board, room::Printer::none()).flood_limit(None);
    room.run().unwrap();
}

/// The state of tokio's `examples/chat.rs`: an unbounded channel per peer.
struct Shared {
    peers: HashMap<SocketAddr, mpsc::UnboundedSender<Bytes>>,
}

impl Shared {
    fn broadcast(&self, sender: SocketAddr, message: &str) {
        let message = Bytes::copy_from_slice(message.as_bytes());
        for (peer, tx) in &self.peers {
            if *peer != sender {
                let _ = tx.send(message.clone());
            }
        }
    }
}

/// tokio's `examples/chat.rs`, with the length-delimited framing.
fn serve_tokio() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = socket.listen(4096).unwrap();
        say_port(listener.local_addr().unwrap().port());
        let state = Arc::new(Mutex::new(Shared {
            peers: HashMap::new(),
        }));
        loop {
            let Ok((stream, addr)) = listener.accept().await else {
                continue;
            };
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let mut lines = Framed::new(stream, LengthDelimitedCodec::new());
                let Some(Ok(name)) = lines.next().await else {
                    return;
                };
                let name = String::from_utf8_lossy(&name).into_owned();
                let (tx, mut rx) = mpsc::unbounded_channel();
                {
                    let mut state = state.lock().unwrap();
                    state.peers.insert(addr, tx);
                    state.broadcast(addr, &format!("* {name} joined"));
                }
                loop {
                    tokio::select! {
                        Some(msg) = rx.recv() => {
                            if lines.send(msg).await.is_err() {
                                break;
                            }
                        }
                        result = lines.next() => match result {
                            Some(Ok(msg)) => {
                                let text = String::from_utf8_lossy(&msg);
                                let state = state.lock().unwrap();
                                state.broadcast(addr, &format!("{name}: {text}"));
                            }
                            _ => break,
                        },
                    }
                }
                let mut state = state.lock().unwrap();
                state.peers.remove(&addr);
                state.broadcast(addr, &format!("* {name} left"));
            });
        }
    });
}

/// tokio's `examples/chat.rs` design again, on converse's async driver: a
/// task per peer serving a `converse::tokio` conversation (its `recv` is
/// cancel-safe, so it sits in `select!` as `Framed::next` does), an
/// unbounded channel per peer, a shared map under a lock.
fn serve_converse_tokio() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // The tokio design's sockets keep tokio's default (Nagle's
        // algorithm on); converse turns it off by default: the same
        // socket options for both, so that the library is what differs.
        let config = converse::Config::new()
            .with_backlog(4096)
            .with_nodelay(false);
        let listener = converse::tokio::listen_with("tcp://127.0.0.1:0", &config)
            .await
            .unwrap();
        say_port(listener.local_addr().socket_addr().unwrap().port());
        let state = Arc::new(Mutex::new(Shared {
            peers: HashMap::new(),
        }));
        loop {
            let Ok(mut member) = listener.accept().await else {
                continue;
            };
            let Some(addr) = member.peer_addr().socket_addr() else {
                continue;
            };
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let Ok(Some(name)) = member.recv().await else {
                    return;
                };
                let name = String::from_utf8_lossy(&name).into_owned();
                let (tx, mut rx) = mpsc::unbounded_channel();
                {
                    let mut state = state.lock().unwrap();
                    state.peers.insert(addr, tx);
                    state.broadcast(addr, &format!("* {name} joined"));
                }
                loop {
                    tokio::select! {
                        Some(msg) = rx.recv() => {
                            if member.send(&msg).await.is_err() {
                                break;
                            }
                        }
                        result = member.recv() => match result {
                            Ok(Some(msg)) => {
                                let text = String::from_utf8_lossy(&msg);
                                let state = state.lock().unwrap();
                                state.broadcast(addr, &format!("{name}: {text}"));
                            }
                            _ => break,
                        },
                    }
                }
                let mut state = state.lock().unwrap();
                state.peers.remove(&addr);
                state.broadcast(addr, &format!("* {name} left"));
            });
        }
    });
}

/// converse's room before the switchboard: a thread per member.
fn serve_threads() {
    use converse::{Conversation, SendHalf};
    type Members = HashMap<u64, SendHalf>;
    let members: Arc<Mutex<Members>> = Arc::default();
    let config = converse::Config::new().with_backlog(4096);
    let listener = converse::TcpListener::bind_with("127.0.0.1:0", &config).unwrap();
    say_port(listener.local_addr().unwrap().socket_addr().unwrap().port());
    let announce = |members: &Mutex<Members>, from: u64, line: &str| {
        let mut members = members.lock().unwrap();
        for (id, tx) in members.iter_mut() {
            if *id != from {
                let _ = tx.send_text(line);
            }
        }
    };
    for id in 0u64.. {
        let Ok(tcp) = listener.accept() else {
            continue;
        };
        let members = Arc::clone(&members);
        std::thread::spawn(move || {
            let (mut tx, mut rx) = Conversation::new(tcp).boxed().split();
            let _ = tx.set_write_timeout(Some(Duration::from_secs(2)));
            let Ok(Some(name)) = rx.recv() else {
                return;
            };
            let name = String::from_utf8_lossy(&name).into_owned();
            {
                let mut m = members.lock().unwrap();
                m.insert(id, tx);
                drop(m);
            }
            announce(&members, id, &format!("* {name} joined"));
            while let Ok(Some(msg)) = rx.recv() {
                announce(
                    &members,
                    id,
                    &format!("{name}: {}", String::from_utf8_lossy(&msg)),
                );
            }
            members.lock().unwrap().remove(&id);
            announce(&members, id, &format!("* {name} left"));
        });
    }
}

// ---------------------------------------------------------------------------
// A server process.

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(kind: &str) -> Server {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--serve", kind])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap();
        Server { child, port }
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The server's threads and resident memory, from /proc.
    fn status(&self) -> (usize, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("Threads:") as usize, field("VmRSS:") * 1024)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The clients.

fn frame(text: &[u8]) -> Vec<u8> {
    let mut v = (text.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(text);
    v
}

async fn connect(addr: SocketAddr) -> TcpStream {
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return s;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A member that joins under `name` and reads (and drops) everything.
async fn lurker(addr: SocketAddr, name: String, gate: Arc<Semaphore>) -> TcpStream {
    let permit = gate.acquire().await.unwrap();
    let stream = connect(addr).await;
    stream.writable().await.unwrap();
    let _ = stream.try_write(&frame(name.as_bytes()));
    drop(permit);
    stream
}

fn drain(stream: TcpStream) {
    tokio::spawn(async move {
        let mut stream = stream;
        let mut buf = vec![0u8; 16 * 1024];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    });
}

/// Where a join storm stood when its first member had heard a number of
/// joins.
struct Sample {
    /// Members in the room by then: the first, and those it heard join.
    members: usize,
    at: Duration,
    /// The server's resident memory.
    rss: u64,
}

struct Storm {
    took: Option<Duration>,
    threads: usize,
    rss: u64,
    /// Before the storm, at every `members / 20` members, and at its end.
    samples: Vec<Sample>,
}

/// Joins per second over each step between two samples, at the step's
/// end: (members, joins/s).
fn step_rates(samples: &[Sample]) -> Vec<(f64, f64)> {
    samples
        .windows(2)
        .filter_map(|w| {
            let joins = w[1].members.saturating_sub(w[0].members);
            let secs = w[1].at.saturating_sub(w[0].at).as_secs_f64();
            (joins > 0 && secs > 0.0).then(|| (w[1].members as f64, joins as f64 / secs))
        })
        .collect()
}

fn join_storm(
    rt: &tokio::runtime::Runtime,
    server: &Server,
    members: usize,
    cap: Duration,
) -> Storm {
    let addr = server.addr();
    rt.block_on(async move {
        // The first member hears every other join.
        let first = connect(addr).await;
        let mut first = Framed::new(first, LengthDelimitedCodec::new());
        first.send(Bytes::from_static(b"m0")).await.unwrap();
        // Its own join is not announced to it: wait until a second
        // member's is, so that it is in the room before the storm.
        let gate = Arc::new(Semaphore::new(512));
        let second = lurker(addr, "m1".into(), Arc::clone(&gate)).await;
        drain(second);
        let heard = first.next().await;
        assert_eq!(heard.unwrap().unwrap(), &b"* m1 joined"[..]);
        let started = Instant::now();
        let mut samples = vec![Sample {
            members: 2,
            at: Duration::ZERO,
            rss: server.status().1,
        }];
        let step = (members / 20).max(1);
        let mut joiners = Vec::new();
        for i in 2..members {
            let gate = Arc::clone(&gate);
            joiners.push(tokio::spawn(async move {
                let s = lurker(addr, format!("m{i}"), gate).await;
                drain(s);
            }));
        }
        let mut joins = 1;
        let outcome = tokio::time::timeout(cap, async {
            while joins < members - 1 {
                match first.next().await {
                    Some(Ok(m)) if m.ends_with(b" joined") => {
                        joins += 1;
                        if (joins + 1) % step == 0 {
                            samples.push(Sample {
                                members: joins + 1,
                                at: started.elapsed(),
                                rss: server.status().1,
                            });
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
        })
        .await;
        let elapsed = started.elapsed();
        let took = (outcome.is_ok() && joins == members - 1).then_some(elapsed);
        let (threads, rss) = server.status();
        if samples.last().is_some_and(|s| s.members == joins + 1) {
            samples.pop();
        }
        samples.push(Sample {
            members: joins + 1,
            at: elapsed,
            rss,
        });
        if took.is_none() {
            println!(
                "  (the storm did not finish within {cap:?}: {joins} of {} joins heard)",
                members - 1
            );
        }
        for j in joiners {
            j.abort();
        }
        Storm {
            took,
            threads,
            rss,
            samples,
        }
    })
}

struct FanOut {
    took: Option<Duration>,
    delivered: usize,
    slow_dropped: bool,
}

impl FanOut {
    /// A fan-out that never began (its receivers not all in the room):
    /// their tasks stopped.
    fn not_begun(tasks: Vec<tokio::task::JoinHandle<()>>) -> FanOut {
        for t in tasks {
            t.abort();
        }
        FanOut {
            took: None,
            delivered: 0,
            slow_dropped: false,
        }
    }
}

/// `receivers` members hear `messages` 64-byte lines from one sender (and,
/// with `slow`, one more member never reads).
fn fan_out(
    rt: &tokio::runtime::Runtime,
    server: &Server,
    receivers: usize,
    messages: usize,
    slow: bool,
    cap: Duration,
) -> FanOut {
    let addr = server.addr();
    rt.block_on(async move {
        let heard = Arc::new(AtomicUsize::new(0));
        let (ready_tx, mut ready) = mpsc::unbounded_channel::<()>();
        let (done_tx, mut done) = mpsc::unbounded_channel::<()>();
        // The receivers join one after another: each is in the room once
        // the first has heard it join (a server may take names in any
        // order; one taken after the sender's would never hear it).
        let (joined_tx, mut joined) = mpsc::unbounded_channel::<Bytes>();
        let mut tasks = Vec::new();
        for i in 0..receivers {
            let (heard, ready_tx, done_tx) =
                (Arc::clone(&heard), ready_tx.clone(), done_tx.clone());
            let witness = (i == 0).then(|| joined_tx.clone());
            let stream = connect(addr).await;
            tasks.push(tokio::spawn(async move {
                let mut f = Framed::new(stream, LengthDelimitedCodec::new());
                f.send(Bytes::from(format!("r{i}"))).await.unwrap();
                let mut got = 0;
                while let Some(Ok(m)) = f.next().await {
                    if &m[..] == b"* s joined" {
                        let _ = ready_tx.send(());
                    } else if m.starts_with(b"s: ") {
                        got += 1;
                        heard.fetch_add(1, Ordering::Relaxed);
                        if got == messages {
                            let _ = done_tx.send(());
                        }
                    } else if let Some(witness) = &witness {
                        let _ = witness.send(m.freeze());
                    }
                }
            }));
            if i > 0 {
                let line = format!("* r{i} joined");
                let seen = tokio::time::timeout(cap, async {
                    while let Some(m) = joined.recv().await {
                        if m == line.as_bytes() {
                            return true;
                        }
                    }
                    false
                })
                .await;
                if seen != Ok(true) {
                    println!("  (receiver r{i} was not in the room within {cap:?})");
                    return FanOut::not_begun(tasks);
                }
            }
        }
        let stuck = if slow {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            let s = socket.connect(addr).await.unwrap();
            s.writable().await.unwrap();
            let _ = s.try_write(&frame(b"slow"));
            Some(s) // held, never read
        } else {
            None
        };
        // The sender joins last; everyone must have heard it join.
        let sender = connect(addr).await;
        let mut sender = Framed::new(sender, LengthDelimitedCodec::new());
        sender.send(Bytes::from_static(b"s")).await.unwrap();
        let all_ready = tokio::time::timeout(cap, async {
            for _ in 0..receivers {
                ready.recv().await;
            }
        })
        .await;
        if all_ready.is_err() {
            println!("  (the receivers were not all in the room within {cap:?})");
            return FanOut::not_begun(tasks);
        }
        let line = Bytes::from(vec![b'x'; 64]);
        let started = Instant::now();
        let send = async {
            for i in 0..messages {
                sender.feed(line.clone()).await.unwrap();
                if i % 64 == 63 {
                    SinkExt::<Bytes>::flush(&mut sender).await.unwrap();
                }
            }
            SinkExt::<Bytes>::flush(&mut sender).await.unwrap();
        };
        let all_done = async {
            for _ in 0..receivers {
                done.recv().await;
            }
        };
        let outcome = tokio::time::timeout(cap, async { tokio::join!(send, all_done) }).await;
        let took = outcome.is_ok().then(|| started.elapsed());
        let delivered = heard.load(Ordering::Relaxed);
        // Was the slow member dropped? Its socket then ends (after what the
        // kernel buffered).
        let slow_dropped = match stuck {
            Some(mut s) => {
                let mut buf = vec![0u8; 1 << 16];
                let read = tokio::time::timeout(Duration::from_secs(10), async {
                    loop {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return true,
                            Ok(_) => {}
                        }
                    }
                })
                .await;
                read.unwrap_or(false)
            }
            None => false,
        };
        for t in tasks {
            t.abort();
        }
        FanOut {
            took,
            delivered,
            slow_dropped,
        }
    })
}

/// `members` connections that say nothing: the server's resident memory
/// per connection.
fn idle_memory(rt: &tokio::runtime::Runtime, server: &Server, members: usize) -> f64 {
    let addr = server.addr();
    std::thread::sleep(Duration::from_millis(300));
    let (_, before) = server.status();
    let held = rt.block_on(async move {
        let mut held = Vec::with_capacity(members);
        for _ in 0..members {
            match tokio::time::timeout(Duration::from_secs(5), connect(addr)).await {
                Ok(s) => held.push(s),
                Err(_) => break,
            }
        }
        // Let the server take them all.
        tokio::time::sleep(Duration::from_secs(2)).await;
        held
    });
    let (_, after) = server.status();
    drop(held);
    after.saturating_sub(before) as f64 / members.max(1) as f64
}

fn run() {
    let members = env_usize("CONVERSE_SCALE_MEMBERS", 10_000);
    let receivers = env_usize("CONVERSE_SCALE_RECEIVERS", 1_000);
    let messages = env_usize("CONVERSE_SCALE_MESSAGES", 20_000);
    let cap = Duration::from_secs(env_usize("CONVERSE_SCALE_CAP", 60) as u64);
    let servers = std::env::var("CONVERSE_SCALE_SERVERS")
        .unwrap_or_else(|_| "converse,tokio,threads".to_owned());
    let limit = Command::new("sh")
        .args(["-c", "ulimit -Sn"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!("file descriptors per process: {limit}; {members} members, {receivers} receivers x {messages} messages; cap {cap:?} per scenario");
    if limit.parse::<usize>().is_ok_and(|l| l < members + 100) {
        println!("(the limit is below the members asked: expect connect errors; lower CONVERSE_SCALE_MEMBERS)");
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for kind in servers.split(',') {
        println!("== {kind}");
        let server = Server::start(kind);
        let storm = join_storm(&rt, &server, members, cap);
        match storm.took {
            Some(t) => println!(
                "  join storm: {members} members in {:.2} s ({:.0} joins/s), {} server threads, {:.1} MB resident",
                t.as_secs_f64(),
                members as f64 / t.as_secs_f64(),
                storm.threads,
                storm.rss as f64 / 1e6
            ),
            None => println!("  join storm: did not finish; {} threads, {:.1} MB", storm.threads, storm.rss as f64 / 1e6),
        }
        drop(server);

        let mut rates = Vec::new();
        let mut slow_dropped = false;
        for slow in [false, true] {
            let server = Server::start(kind);
            let messages = if slow { 4 * messages } else { messages };
            let f = fan_out(&rt, &server, receivers, messages, slow, cap);
            let total = receivers * messages;
            if slow {
                slow_dropped = f.slow_dropped;
            }
            let what = if slow {
                "fan-out with a slow member"
            } else {
                "fan-out"
            };
            match f.took {
                Some(t) => {
                    let rate = total as f64 / t.as_secs_f64();
                    rates.push(Some(rate));
                    println!(
                        "  {what}: {total} deliveries in {:.2} s ({:.0} msg/s){}",
                        t.as_secs_f64(),
                        rate,
                        if slow {
                            format!("; slow member dropped: {}", f.slow_dropped)
                        } else {
                            String::new()
                        }
                    );
                }
                None => {
                    rates.push(None);
                    println!(
                        "  {what}: did not finish within {cap:?} ({} of {total} delivered){}",
                        f.delivered,
                        if slow {
                            format!("; slow member dropped: {}", f.slow_dropped)
                        } else {
                            String::new()
                        }
                    );
                }
            }
        }

        let server = Server::start(kind);
        let per = idle_memory(&rt, &server, members);
        println!("  idle: {:.0} bytes resident per idle connection", per);
        drop(server);
        rows.push(Row {
            kind: kind.to_owned(),
            storm,
            rates,
            slow_dropped,
            idle: per,
        });
    }
    println!();
    println!("| server | join storm ({members}) | joins/s | threads | RSS | fan-out msg/s | with a slow member | idle bytes/conn |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for Row {
        kind,
        storm,
        rates,
        idle: per,
        ..
    } in &rows
    {
        let secs = storm
            .took
            .map_or("—".to_owned(), |t| format!("{:.2} s", t.as_secs_f64()));
        let jps = storm.took.map_or("—".to_owned(), |t| {
            format!("{:.0}", members as f64 / t.as_secs_f64())
        });
        let rate = |r: &Option<f64>| r.map_or("did not finish".to_owned(), |r| format!("{r:.0}"));
        println!(
            "| {kind} | {secs} | {jps} | {} | {:.1} MB | {} | {} | {per:.0} |",
            storm.threads,
            storm.rss as f64 / 1e6,
            rate(&rates[0]),
            rate(&rates[1]),
        );
    }
    let run = Run {
        members,
        receivers,
        messages,
        cap,
        rows,
    };
    let dir = std::env::var_os("CONVERSE_SCALE_PLOTS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs"),
        PathBuf::from,
    );
    println!();
    match write_plots(&run, &dir) {
        Ok(paths) => {
            for path in paths {
                println!("wrote {}", path.display());
            }
        }
        Err(e) => println!("could not write the plots in {}: {e}", dir.display()),
    }
}

// ---------------------------------------------------------------------------
// The plots.

/// One server's figures.
struct Row {
    kind: String,
    storm: Storm,
    /// Delivered messages per second: the fan-out, then the same with a
    /// slow member (`None`: did not finish).
    rates: Vec<Option<f64>>,
    slow_dropped: bool,
    /// Resident bytes per idle connection.
    idle: f64,
}

/// What a run measured, and with what sizes.
struct Run {
    members: usize,
    receivers: usize,
    messages: usize,
    cap: Duration,
    rows: Vec<Row>,
}

/// The servers a run can start.
const KINDS: [&str; 4] = ["converse", "tokio", "converse-tokio", "threads"];

/// A server's name in the plots, and its colour, the same in each.
fn design(kind: &str) -> (String, &'static str) {
    let (name, color) = match kind {
        "converse" => ("converse (switchboard)", "#1f6fb4"),
        "tokio" => ("tokio chat design", "#e8831f"),
        "converse-tokio" => ("tokio chat design on converse::tokio", "#9b59b6"),
        "threads" => ("thread per member", "#3a9a4a"),
        other => (other, "#888888"),
    };
    (name.to_owned(), color)
}

fn count(n: usize) -> String {
    plot::thousands(n as u64)
}

/// A plot's subtitle: what it shows, the machine and the cap, and what it
/// does not show (the servers not run, and `left_out`).
fn subtitle(run: &Run, what: String, mut left_out: Vec<String>) -> Vec<String> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut lines = vec![
        what,
        format!(
            "One run, {cores} cores, each scenario capped at {} s.",
            run.cap.as_secs()
        ),
    ];
    for kind in KINDS {
        if !run.rows.iter().any(|r| r.kind == kind) {
            left_out.push(format!("{} (not run)", design(kind).0));
        }
    }
    if !left_out.is_empty() {
        lines.push(format!("Left out: {}.", left_out.join("; ")));
    }
    lines
}

fn joins_plot(run: &Run) -> String {
    let mut lines = Vec::new();
    let mut left_out = Vec::new();
    for row in &run.rows {
        let (name, color) = design(&row.kind);
        let points = step_rates(&row.storm.samples);
        if points.is_empty() {
            left_out.push(format!("{name} (no join heard)"));
            continue;
        }
        let heard = row.storm.samples.last().map_or(0, |s| s.members - 1);
        let note = match row.storm.took {
            Some(t) => format!(
                "{} joins/s overall ({:.2} s)",
                count((run.members as f64 / t.as_secs_f64()).round() as usize),
                t.as_secs_f64()
            ),
            None => format!(
                "{} of {} joins in {} s",
                count(heard),
                count(run.members - 1),
                run.cap.as_secs()
            ),
        };
        lines.push(plot::Line {
            name,
            note: Some(note),
            color,
            points,
        });
    }
    storm_chart(
        run,
        "Join storm: how fast members join as the room fills",
        format!(
            "joins/s as the first member heard them, over each {} joins.",
            count((run.members / 20).max(1))
        ),
        plot::Axis {
            label: "joins/s (log scale)".to_owned(),
            unit: "",
            scale: plot::Scale::Log,
        },
        lines,
        left_out,
    )
}

/// A line chart of the join storm against the members in the room.
fn storm_chart(
    run: &Run,
    title: &str,
    what: String,
    y: plot::Axis,
    lines: Vec<plot::Line>,
    left_out: Vec<String>,
) -> String {
    plot::line_chart(&plot::LineChart {
        title: title.to_owned(),
        subtitle: subtitle(
            run,
            format!(
                "{} members join, each join announced to everyone present; {what}",
                count(run.members)
            ),
            left_out,
        ),
        x: plot::Axis {
            label: "members in the room".to_owned(),
            unit: "",
            scale: plot::Scale::Linear,
        },
        y,
        lines,
    })
}

fn rss_plot(run: &Run) -> String {
    let mut lines = Vec::new();
    let mut left_out = Vec::new();
    for row in &run.rows {
        let (name, color) = design(&row.kind);
        let points: Vec<(f64, f64)> = row
            .storm
            .samples
            .iter()
            .filter(|s| s.rss > 0)
            .map(|s| (s.members as f64, s.rss as f64))
            .collect();
        if points.is_empty() {
            left_out.push(format!("{name} (no memory read)"));
            continue;
        }
        let last = row.storm.samples.last().map_or(0, |s| s.members);
        lines.push(plot::Line {
            name,
            note: Some(format!(
                "{} at {} members\n{} server threads",
                plot::value_label(row.storm.rss as f64, "B"),
                count(last),
                count(row.storm.threads)
            )),
            color,
            points,
        });
    }
    storm_chart(
        run,
        "Join storm: the server's memory as the room fills",
        format!(
            "the server's resident memory (VmRSS) before the storm, when the first member had heard each {} joins, and at the end.",
            count((run.members / 20).max(1))
        ),
        plot::Axis {
            label: "server resident memory (log scale)".to_owned(),
            unit: "B",
            scale: plot::Scale::Log,
        },
        lines,
        left_out,
    )
}

fn fanout_plot(run: &Run) -> String {
    let mut bars = Vec::new();
    let mut left_out = Vec::new();
    for row in &run.rows {
        let (name, color) = design(&row.kind);
        if row.rates.iter().all(Option::is_none) {
            left_out.push(format!(
                "{name} (did not finish within {} s)",
                run.cap.as_secs()
            ));
            continue;
        }
        let note = row.rates.get(1).copied().flatten().map(|_| {
            if row.slow_dropped {
                "the slow member dropped".to_owned()
            } else {
                "the slow member never dropped".to_owned()
            }
        });
        bars.push(plot::Bars {
            name,
            note,
            color,
            values: row.rates.clone(),
        });
    }
    plot::bar_chart(&plot::BarChart {
        title: "Fan-out: messages delivered per second".to_owned(),
        subtitle: subtitle(
            run,
            format!(
                "1 sender, {} receivers, 64-byte messages; deliveries (messages × receivers) per second.",
                count(run.receivers)
            ),
            left_out,
        ),
        groups: vec![
            format!("{} messages", count(run.messages)),
            format!(
                "{} messages, one member never reads",
                count(4 * run.messages)
            ),
        ],
        y: plot::Axis {
            label: "messages delivered/s".to_owned(),
            unit: "",
            scale: plot::Scale::Linear,
        },
        bars,
        missing: "did not finish".to_owned(),
    })
}

fn idle_plot(run: &Run) -> String {
    let mut bars = Vec::new();
    let mut left_out = Vec::new();
    for row in &run.rows {
        let (name, color) = design(&row.kind);
        if row.idle.is_nan() || row.idle <= 0.0 {
            left_out.push(format!("{name} (no memory read)"));
            continue;
        }
        bars.push(plot::Bars {
            name,
            note: None,
            color,
            values: vec![Some(row.idle)],
        });
    }
    plot::bar_chart(&plot::BarChart {
        title: "Memory per idle connection".to_owned(),
        subtitle: subtitle(
            run,
            format!(
                "The server's resident memory (VmRSS) with {} idle TCP connections, less before them, per connection.",
                count(run.members)
            ),
            left_out,
        ),
        groups: vec![format!("{} idle TCP connections", count(run.members))],
        y: plot::Axis {
            label: "server resident memory per connection".to_owned(),
            unit: "B",
            scale: plot::Scale::Linear,
        },
        bars,
        missing: "not measured".to_owned(),
    })
}

/// Writes the four plots in `dir` (made if missing); their paths.
fn write_plots(run: &Run, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    let plots = [
        ("scale-joins.svg", joins_plot(run)),
        ("scale-rss.svg", rss_plot(run)),
        ("scale-fanout.svg", fanout_plot(run)),
        ("scale-idle-memory.svg", idle_plot(run)),
    ];
    let mut paths = Vec::new();
    for (name, svg) in plots {
        let path = dir.join(name);
        std::fs::write(&path, svg)?;
        paths.push(path);
    }
    Ok(paths)
}
