//! Heap footprint of idle conversations, measured with dhat's counting
//! allocator (in a test binary of its own: the allocator is process-wide).
//!
//! Run `cargo test --test footprint -- --nocapture` to see the figures.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use converse::{Conversation, Tcp, Udp, UdpListener};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const PAIRS: usize = 50;

fn heap() -> u64 {
    dhat::HeapStats::get().curr_bytes as u64
}

#[test]
fn idle_conversations_are_small_and_buffers_shrink_back() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let config = config();

    // TCP, fresh and after one small message each way.
    let (tcp_listener, addr) = listener(&config);
    let before = heap();
    let mut pairs: Vec<(Conversation<Tcp>, Conversation<Tcp>)> = (0..PAIRS)
        .map(|_| {
            let c = client(addr, &config);
            let s = Conversation::new(tcp_listener.accept().unwrap());
            (c, s)
        })
        .collect();
    let fresh = (heap() - before) / (2 * PAIRS as u64);
    for (c, s) in &mut pairs {
        c.send("ping").unwrap();
        assert_eq!(s.recv().unwrap().unwrap(), &b"ping"[..]);
        s.send("pong").unwrap();
        assert_eq!(c.recv().unwrap().unwrap(), &b"pong"[..]);
    }
    let used = (heap() - before) / (2 * PAIRS as u64);
    println!("TCP conversation: {fresh} bytes fresh, {used} bytes idle after a message each way");
    assert!(
        used <= 16 * 1024,
        "an idle TCP conversation holds {used} bytes"
    );

    drop(pairs);
    drop(tcp_listener);

    // After a 4 MiB message, the read buffer is given back.
    let (tcp_listener, addr) = listener(&config);
    let mut c = client(addr, &config);
    let mut s = Conversation::new(tcp_listener.accept().unwrap());
    let baseline = heap();
    let big = vec![7u8; 4 * 1024 * 1024];
    let sender = spawn(move || {
        c.send(&big).unwrap();
        c.send("small").unwrap();
        c
    });
    assert_eq!(s.recv().unwrap().unwrap().len(), 4 * 1024 * 1024);
    assert_eq!(s.recv().unwrap().unwrap(), &b"small"[..]);
    let c = sender.join();
    let after = heap().saturating_sub(baseline);
    println!("TCP conversation after a 4 MiB message: {after} bytes more than before it");
    assert!(after <= 64 * 1024, "the read buffer kept {after} bytes");
    drop((c, s));

    // In-memory pairs.
    let before = heap();
    let mems: Vec<_> = (0..PAIRS)
        .map(|_| memory_pair(&converse::Config::new()))
        .collect();
    let mem = (heap() - before) / (2 * PAIRS as u64);
    println!("memory conversation: {mem} bytes");
    assert!(mem <= 16 * 1024);
    drop(mems);

    // UDP: a listener's conversation holds a queue, not a buffer; a client
    // holds a receive buffer of twice the largest datagram once it receives.
    let listener = UdpListener::bind_with("127.0.0.1:0", &config).unwrap();
    let to = listener.local_addr().unwrap().socket_addr().unwrap();
    let mut clients: Vec<Conversation<Udp>> = (0..PAIRS)
        .map(|_| Conversation::new(Udp::connect_with(to, &config).unwrap()))
        .collect();
    let before = heap();
    let mut accepted = Vec::new();
    for c in &mut clients {
        c.send("hi").unwrap();
        let mut s = Conversation::new(listener.accept().unwrap());
        s.recv().unwrap().unwrap();
        accepted.push(s);
    }
    let peer = (heap() - before) / PAIRS as u64;
    println!("UDP listener conversation: {peer} bytes idle");
    assert!(peer <= 16 * 1024);
    let before = heap();
    for (c, s) in clients.iter_mut().zip(&mut accepted) {
        s.send("back").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.recv().unwrap().unwrap();
    }
    let udp_client = (heap() - before) / PAIRS as u64;
    println!("UDP client conversation: {udp_client} more bytes once it has received");
    drop((clients, accepted, listener));

    idle_switchboard_conversations_hold_no_buffers();
    idle_tokio_conversations_hold_no_read_buffer();
    #[cfg(feature = "tls")]
    idle_tls_conversations();
    #[cfg(feature = "ws")]
    idle_ws_conversations();
    #[cfg(feature = "nats")]
    idle_nats_conversations();
    #[cfg(feature = "quic")]
    idle_quic_conversations();
}

/// The heap of idle QUIC conversations (each end counted), after a
/// message each way: many on one connection (a stream each), and each on
/// a connection of its own (quinn-proto's connection state, keys, and
/// its timers and buffers).
#[cfg(feature = "quic")]
fn idle_quic_conversations() {
    const N: usize = PAIRS_OF_A_KIND;
    let config = tls::config(config());
    let listener = converse::listen_with("quic://127.0.0.1:0", &config).unwrap();
    let url = listener.local_addr().unwrap().to_string();
    // The client endpoint (its socket, its thread and its receive
    // buffers) is made outside the count, and kept.
    let warm = converse::connect_with(&url, &config).unwrap();
    let warm_server = listener.accept().unwrap();
    let measure = |fresh_client: bool| {
        let before = heap();
        let mut pairs = Vec::new();
        for _ in 0..N {
            let config = if fresh_client {
                // Other TLS client settings: another connection.
                config.clone().with_tls_client(tls::client())
            } else {
                config.clone()
            };
            let mut c = converse::connect_with(&url, &config).unwrap();
            c.send("ping").unwrap();
            let mut s = listener.accept().unwrap();
            assert_eq!(s.recv().unwrap().unwrap(), &b"ping"[..]);
            s.send("pong").unwrap();
            assert_eq!(c.recv().unwrap().unwrap(), &b"pong"[..]);
            pairs.push((c, s));
        }
        let used = (heap() - before) / (2 * N as u64);
        drop(pairs);
        used
    };
    let shared = measure(false);
    println!(
        "QUIC conversation sharing a connection: {shared} bytes idle after a message each way"
    );
    let own = measure(true);
    println!(
        "QUIC conversation on a connection of its own: {own} bytes idle after a message each way"
    );
    assert!(
        shared <= 64 * 1024,
        "an idle QUIC conversation holds {shared} bytes"
    );
    drop((warm, warm_server));
}

/// The heap of an idle NATS conversation (blocking, and on a switchboard),
/// after a message each way through a real nats-server.
#[cfg(feature = "nats")]
fn idle_nats_conversations() {
    use converse::switchboard::{Event, Events, Switchboard};
    if !common::nats::have_nats_server() {
        return;
    }
    const N: usize = 50;
    let server = common::nats::NatsServer::start();
    let config = config();
    let mut peer = converse::connect_with(&server.url("footprint"), &config).unwrap();
    let before = heap();
    let mut convs: Vec<_> = (0..N)
        .map(|i| converse::connect_with(&server.url(&format!("footprint.{i}")), &config).unwrap())
        .collect();
    let mut echo = converse::connect_with(&server.url("footprint.*"), &config).unwrap();
    for c in &mut convs {
        c.send("ping").unwrap();
        let got = echo.recv().unwrap().unwrap();
        assert_eq!(&got[..], b"ping");
    }
    let used = (heap() - before) / N as u64;
    println!("NATS conversation: {used} bytes idle after publishing");
    assert!(
        used <= 32 * 1024,
        "an idle NATS conversation holds {used} bytes"
    );
    drop((convs, echo));

    let mut board = Switchboard::with_config(&config).unwrap();
    let mut events = Events::new();
    let before = heap();
    let ids: Vec<_> = (0..N)
        .map(|_| board.connect(&server.url("footprint")).unwrap())
        .collect();
    // The connects do not wait: all subscribed first (NATS keeps nothing
    // for a subscriber that is not there yet).
    let mut connected = 0;
    let until = std::time::Instant::now() + T;
    while connected < N {
        assert!(
            std::time::Instant::now() < until,
            "only {connected} connected"
        );
        board
            .wait(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        connected += events
            .drain()
            .filter(|e| matches!(e, Event::Connected { .. }))
            .count();
    }
    peer.send("hello, all").unwrap();
    let mut heard = 0;
    let until = std::time::Instant::now() + T;
    while heard < N {
        assert!(std::time::Instant::now() < until, "only {heard} heard");
        board
            .wait(&mut events, Some(Duration::from_millis(100)))
            .unwrap();
        heard += events
            .drain()
            .filter(|e| matches!(e, Event::Message { .. }))
            .count();
    }
    let per = (heap() - before) / N as u64;
    println!("switchboard NATS conversation: {per} bytes idle after a message");
    assert!(
        per <= 16 * 1024,
        "an idle switchboard NATS conversation holds {per} bytes"
    );
    drop((ids, board));
}

/// The conversations of each kind measured by [`blocking_heap`] and
/// [`board_heap`].
#[cfg(any(feature = "ws", feature = "tls"))]
const PAIRS_OF_A_KIND: usize = 100;

/// The heap per conversation of blocking pairs over `scheme` (each end
/// counted): right after connecting (handshakes done), and idle after a
/// message each way.
#[cfg(any(feature = "ws", feature = "tls"))]
fn blocking_heap(scheme: &str, config: &converse::Config) -> (u64, u64) {
    const N: usize = PAIRS_OF_A_KIND;
    // Certificates and configurations are made outside the count.
    let listener = converse::listen_with(&format!("{scheme}://127.0.0.1:0"), config).unwrap();
    let url = listener.local_addr().unwrap().to_string();
    let before = heap();
    let mut pairs = Vec::new();
    for _ in 0..N {
        let client = spawn({
            let (url, config) = (url.clone(), config.clone());
            move || converse::connect_with(&url, &config).unwrap()
        });
        let mut s = listener.accept().unwrap();
        s.handshake().unwrap();
        pairs.push((client.join(), s));
    }
    let fresh = (heap() - before) / (2 * N as u64);
    for (c, s) in &mut pairs {
        c.send("ping").unwrap();
        assert_eq!(s.recv().unwrap().unwrap(), &b"ping"[..]);
        s.send("pong").unwrap();
        assert_eq!(c.recv().unwrap().unwrap(), &b"pong"[..]);
    }
    let used = (heap() - before) / (2 * N as u64);
    (fresh, used)
}

/// The heap per conversation of a switchboard serving `scheme`, idle
/// after a message each way. The clients are raw sockets that keep
/// nothing on the heap once their exchange (`exchange`: the handshake,
/// `hello` out, `hi` back) is done, so what is counted is the
/// switchboard's alone.
#[cfg(any(feature = "ws", feature = "tls"))]
fn board_heap(
    scheme: &str,
    config: &converse::Config,
    exchange: fn(std::net::SocketAddr) -> std::net::TcpStream,
) -> u64 {
    use converse::switchboard::{Event, Events, Switchboard};
    const N: usize = PAIRS_OF_A_KIND;
    let mut board = Switchboard::with_config(config).unwrap();
    let l = board.listen(&format!("{scheme}://127.0.0.1:0")).unwrap();
    let addr = board.listener_addr(l).unwrap().socket_addr().unwrap();
    let mut events = Events::new();
    // Serves until `n` clients are done: each message answered.
    let mut serve = |board: &mut Switchboard, n: usize| {
        let (done_tx, done) = std::sync::mpsc::channel();
        let clients = spawn(move || {
            let clients: Vec<_> = (0..n).map(|_| exchange(addr)).collect();
            let _ = done_tx.send(());
            clients
        });
        let until = std::time::Instant::now() + T;
        while done.try_recv().is_err() {
            assert!(
                std::time::Instant::now() < until,
                "the clients never finished"
            );
            board
                .wait(&mut events, Some(Duration::from_millis(10)))
                .unwrap();
            for event in events.drain() {
                if let Event::Message { id, .. } = event {
                    board.send(id, "hi").unwrap();
                }
            }
        }
        clients.join()
    };
    // Warm up: the switchboard's own buffers, and the client's certificates.
    let warm = serve(&mut board, 1);
    let before = heap();
    let clients = serve(&mut board, N);
    let per = (heap() - before) / N as u64;
    drop((clients, warm));
    per
}

/// A raw TLS client's exchange with a switchboard: rustls's own client,
/// dropped once it is done (its socket kept open).
#[cfg(feature = "tls")]
fn tls_exchange(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let conn = tls::rustls_client();
    let mut s = rustls::StreamOwned::new(conn, raw_client(addr));
    s.write_all(&frame(b"hello")).unwrap();
    s.flush().unwrap();
    let mut reply = [0u8; 6];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply, &frame(b"hi")[..]);
    s.sock
}

/// A raw WebSocket client's exchange with a switchboard: the upgrade and
/// one frame each way, by hand.
#[cfg(feature = "ws")]
fn ws_exchange(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = common::ws::raw_upgraded(addr);
    // "hello", masked with a zero key.
    s.write_all(&[0x82, 0x85, 0, 0, 0, 0, b'h', b'e', b'l', b'l', b'o'])
        .unwrap();
    let mut reply = [0u8; 4];
    s.read_exact(&mut reply).unwrap();
    assert_eq!(reply, [0x82, 2, b'h', b'i']);
    s
}

/// The heap of an idle WebSocket conversation, after a message each way:
/// blocking (each end), and the server's end on a switchboard.
#[cfg(feature = "ws")]
fn idle_ws_conversations() {
    let config = config().with_backlog(1024);
    let (_, used) = blocking_heap("ws", &config);
    println!("WebSocket conversation: {used} bytes idle after a message each way");
    assert!(
        used <= 32 * 1024,
        "an idle WebSocket conversation holds {used} bytes"
    );
    let per = board_heap("ws", &config, ws_exchange);
    println!("switchboard WebSocket conversation: {per} bytes idle after a message each way");
    assert!(
        per <= 1024,
        "an idle switchboard WebSocket conversation holds {per} bytes"
    );
}

/// The heap of an idle TLS conversation, after a message each way:
/// blocking (each end) and on a switchboard. On a switchboard it is
/// rustls's session (keys, the peer's certificates): no record buffer,
/// in or out, stays with an idle conversation.
#[cfg(feature = "tls")]
fn idle_tls_conversations() {
    let config = tls::config(config()).with_backlog(1024);
    let (fresh, used) = blocking_heap("tls", &config);
    println!("TLS conversation: {fresh} bytes after the handshake, {used} bytes idle after a message each way");
    assert!(
        used <= 48 * 1024,
        "an idle TLS conversation holds {used} bytes"
    );
    let per = board_heap("tls", &config, tls_exchange);
    println!("switchboard TLS conversation: {per} bytes idle after a message each way");
    assert!(
        per <= 6 * 1024,
        "an idle switchboard TLS conversation holds {per} bytes"
    );
}

/// An idle conversation on a switchboard holds no read buffer and no
/// outbox: the heap it costs is its bookkeeping alone (goal ≤ 1 KiB).
/// (Called from the one test: dhat counts for one test at a time.)
fn idle_switchboard_conversations_hold_no_buffers() {
    use converse::switchboard::{Event, Events, Switchboard};
    const N: usize = 1000;
    let config = config().with_backlog(1024);
    let mut board = Switchboard::with_config(&config).unwrap();
    let listener = board.listen("tcp://127.0.0.1:0").unwrap();
    let addr = board
        .listener_addr(listener)
        .unwrap()
        .socket_addr()
        .unwrap();
    let mut events = Events::new();
    // Warm up: the switchboard's own buffers (scratch, events, timers).
    let mut warm = raw_client(addr);
    write_all(&mut warm, &frame(b"warm"));
    let mut seen = 0;
    while seen < 2 {
        board.wait(&mut events, Some(T)).unwrap();
        seen += events.drain().count();
    }
    let before = heap();
    let clients: Vec<_> = (0..N).map(|_| raw_client(addr)).collect();
    let mut accepted = Vec::new();
    while accepted.len() < N {
        board.wait(&mut events, Some(T)).unwrap();
        for event in events.drain() {
            if let Event::Accepted { id, .. } = event {
                accepted.push(id);
            }
        }
    }
    // Each says something and is answered, then all are idle.
    for mut c in clients.iter() {
        std::io::Write::write_all(&mut c, &frame(b"hello")).unwrap();
    }
    let mut heard = 0;
    while heard < N {
        board.wait(&mut events, Some(T)).unwrap();
        for event in events.drain() {
            if let Event::Message { id, .. } = event {
                board.send(id, "hi").unwrap();
                heard += 1;
            }
        }
    }
    // The replies go out when the switchboard next waits.
    board.wait(&mut events, Some(Duration::ZERO)).unwrap();
    for mut c in clients.iter() {
        let mut reply = [0u8; 6];
        std::io::Read::read_exact(&mut c, &mut reply).unwrap();
    }
    board.wait(&mut events, Some(Duration::ZERO)).unwrap();
    let per = (heap() - before) / N as u64;
    println!("switchboard conversation: {per} bytes idle, after a message each way");
    assert!(
        per <= 1024,
        "an idle switchboard conversation holds {per} bytes"
    );
    drop(clients);
}

/// Idle TCP conversations on the async driver: after a message each way,
/// a conversation holds its connection and its tokio registration, and no
/// read buffer (the thread's one is shared by all it polls). (Run by the
/// test above: the counting allocator is the process's.)
fn idle_tokio_conversations_hold_no_read_buffer() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = converse::tokio::listen("tcp://127.0.0.1:0").await.unwrap();
        let url = listener.local_addr().to_string();
        // The thread's read buffer and the runtime's first allocations are
        // made outside the count.
        let mut warm = converse::tokio::connect(&url).await.unwrap();
        let mut warm_served = listener.accept().await.unwrap();
        warm.send("warm").await.unwrap();
        assert_eq!(warm_served.recv().await.unwrap().unwrap(), &b"warm"[..]);
        let before = heap();
        let mut pairs = Vec::new();
        for _ in 0..PAIRS {
            let c = converse::tokio::connect(&url).await.unwrap();
            let s = listener.accept().await.unwrap();
            pairs.push((c, s));
        }
        for (c, s) in &mut pairs {
            c.send("ping").await.unwrap();
            assert_eq!(s.recv().await.unwrap().unwrap(), &b"ping"[..]);
            s.send("pong").await.unwrap();
            assert_eq!(c.recv().await.unwrap().unwrap(), &b"pong"[..]);
        }
        let used = heap().saturating_sub(before) / (2 * PAIRS as u64);
        println!("tokio TCP conversation: {used} bytes idle after a message each way");
        assert!(
            used <= 4 * 1024,
            "an idle tokio TCP conversation holds {used} bytes"
        );
    });
}
