//! One scenario suite, run over every transport and both drivers.
//!
//! The transports: in-memory, TCP, TCP through the fault-injecting proxy
//! (writes sliced to 1..512 bytes), UDP, Unix stream and datagram
//! sockets, TLS (directly and through the proxy, so records arrive split
//! at any byte), WebSocket (likewise) and WebSocket over TLS.
//!
//! The drivers: the blocking halves, and the switchboard, whose
//! conversations are seen through the same API by a transport of the
//! tests' own (`common/board.rs` says what each promise is on a
//! switchboard). On the switchboard both ends of a pair are switchboard
//! conversations, each on a switchboard of its own: the client connects
//! without blocking, the server side is accepted by a switchboard's
//! listener (a Unix datagram socket, which nothing listens on, is handed
//! over instead). The in-memory pair has no switchboard.
//!
//! Each scenario is a function of the transport kind and the driver; the
//! macro at the end instantiates it for each pair of them. Where the SPEC
//! says UDP differs (loss is possible, close is local and the peer is not
//! told), the scenario asserts the difference rather than skipping it.

#[path = "common/board.rs"]
mod board;
mod common;
#[cfg(feature = "tokio")]
#[path = "common/tokio_driver.rs"]
mod tokio_driver;

use std::sync::Arc;
use std::time::{Duration, Instant};

use board::Host;

use common::proxy::{TcpFault, TcpProxy};
use common::*;
use converse::{
    Config, Conversation, Delivery, Error, Memory, TcpListener, Udp, UdpListener, UnixDatagram,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Memory,
    Tcp,
    /// TCP through the fault-injecting proxy, slicing every write into
    /// pieces of 1 to 512 bytes.
    TcpSliced,
    Udp,
    /// A Unix stream socket: `UnixListener` and `unix:///path`.
    Unix,
    /// A Unix datagram socket: `unixgram:///path` against a bound socket.
    UnixDatagram,
    /// TLS: `tls://127.0.0.1:PORT`, the server verified against a CA.
    Tls,
    /// TLS through the fault-injecting proxy: records split at any byte.
    TlsSliced,
    /// WebSocket: `ws://127.0.0.1:PORT`.
    Ws,
    /// WebSocket through the slicing proxy: frames split at any byte.
    WsSliced,
    /// WebSocket over TLS: `wss://127.0.0.1:PORT`.
    Wss,
    /// QUIC: `quic://127.0.0.1:PORT`, one stream of a connection.
    #[cfg_attr(not(feature = "quic"), allow(dead_code))]
    Quic,
}

impl Kind {
    /// The URL scheme of a kind over IP, and whether it goes through the
    /// slicing proxy.
    fn over_ip(self) -> Option<(&'static str, bool)> {
        Some(match self {
            Kind::Tcp => ("tcp", false),
            Kind::TcpSliced => ("tcp", true),
            Kind::Udp => ("udp", false),
            Kind::Tls => ("tls", false),
            Kind::TlsSliced => ("tls", true),
            Kind::Ws => ("ws", false),
            Kind::WsSliced => ("ws", true),
            Kind::Wss => ("wss", false),
            Kind::Quic => ("quic", false),
            Kind::Memory | Kind::Unix | Kind::UnixDatagram => return None,
        })
    }
}

/// Who runs a conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Driver {
    Blocking,
    Switchboard,
    /// `converse::tokio` (with the feature `tokio`, which the workspace's
    /// `cargo test` turns on).
    #[cfg(feature = "tokio")]
    Tokio,
}

/// Two connected conversations, and whatever must live as long as they do.
struct Pair {
    a: Conversation,
    b: Conversation,
    /// A listener or a proxy that must outlive the conversations.
    _guard: Option<Box<dyn std::any::Any>>,
    /// The switchboard `b` is on, if it is on one.
    b_host: Option<Arc<Host>>,
}

/// A TLS pair: the server accepts and completes the handshake on a thread
/// (its handshake runs in its first use), while the client connects,
/// directly or through a slicing proxy.
fn tls_pair(config: &Config, sliced: bool) -> Pair {
    threaded_pair("tls", config, sliced)
}

/// A pair whose server side needs its own thread to complete a handshake
/// (TLS, WebSocket): `scheme` on 127.0.0.1, directly or through a slicing
/// proxy.
fn threaded_pair(scheme: &str, config: &Config, sliced: bool) -> Pair {
    let config = common::tls::config(config.clone());
    let l = converse::listen_with(&format!("{scheme}://127.0.0.1:0"), &config).unwrap();
    let addr = l.local_addr().unwrap();
    assert_eq!(addr.scheme(), scheme);
    let server = spawn(move || {
        let mut b = l.accept().unwrap();
        b.handshake().unwrap();
        b
    });
    let (url, proxy) = if sliced {
        let proxy = TcpProxy::start(addr.socket_addr().unwrap(), TcpFault::Slice { max: 512 });
        (format!("{scheme}://{}", proxy.addr), Some(proxy))
    } else {
        (addr.to_string(), None)
    };
    let a = converse::connect_with(&url, &config).unwrap();
    if scheme == "tls" || scheme == "wss" {
        assert!(a.peer_identity().unwrap().is_valid_for("127.0.0.1"));
    }
    let b = server.join();
    Pair {
        a,
        b,
        _guard: proxy.map(|p| Box::new(p) as Box<dyn std::any::Any>),
        b_host: None,
    }
}

fn blocking_pair(kind: Kind, config: &Config) -> Pair {
    match kind {
        Kind::Tls => tls_pair(config, false),
        Kind::TlsSliced => tls_pair(config, true),
        Kind::Ws => threaded_pair("ws", config, false),
        Kind::WsSliced => threaded_pair("ws", config, true),
        Kind::Wss => threaded_pair("wss", config, false),
        Kind::Quic => threaded_pair("quic", config, false),
        Kind::Memory => {
            let (a, b) = Memory::pair_with(config).unwrap();
            let (a, b) = (Conversation::new(a), Conversation::new(b));
            Pair {
                a: a.boxed(),
                b: b.boxed(),
                _guard: None,
                b_host: None,
            }
        }
        Kind::Tcp => {
            let l = TcpListener::bind_with("127.0.0.1:0", config).unwrap();
            let a = converse::connect_with(&l.local_addr().unwrap().to_string(), config).unwrap();
            let b = Conversation::new(l.accept().unwrap()).boxed();
            Pair {
                a,
                b,
                _guard: None,
                b_host: None,
            }
        }
        Kind::TcpSliced => {
            let l = TcpListener::bind_with("127.0.0.1:0", config).unwrap();
            let target = l.local_addr().unwrap().socket_addr().unwrap();
            let proxy = TcpProxy::start(target, TcpFault::Slice { max: 512 });
            let a = converse::connect_with(&format!("tcp://{}", proxy.addr), config).unwrap();
            let b = Conversation::new(l.accept().unwrap()).boxed();
            Pair {
                a,
                b,
                _guard: Some(Box::new(proxy)),
                b_host: None,
            }
        }
        Kind::Udp => {
            let l = UdpListener::bind_with("127.0.0.1:0", config).unwrap();
            let mut a =
                converse::connect_with(&l.local_addr().unwrap().to_string(), config).unwrap();
            // A UDP listener learns of a peer from its first datagram.
            a.send("hello, listener").unwrap();
            let mut b = Conversation::new(l.accept().unwrap()).boxed();
            assert_eq!(b.recv().unwrap().unwrap(), &b"hello, listener"[..]);
            Pair {
                a,
                b,
                _guard: Some(Box::new(l)),
                b_host: None,
            }
        }
        Kind::Unix => {
            let path = SocketPath::new("scenario");
            let l = converse::UnixListener::bind_with(&path.0, config).unwrap();
            assert_eq!(l.local_addr().unwrap().to_string(), path.url("unix"));
            let a = converse::connect_with(&path.url("unix"), config).unwrap();
            let b = Conversation::new(l.accept().unwrap()).boxed();
            Pair {
                a,
                b,
                _guard: Some(Box::new((l, path))),
                b_host: None,
            }
        }
        Kind::UnixDatagram => {
            let path = SocketPath::new("scenario-dgram");
            let server = std::os::unix::net::UnixDatagram::bind(&path.0).unwrap();
            server.set_read_timeout(Some(T)).unwrap();
            let mut a = converse::connect_with(&path.url("unixgram"), config).unwrap();
            assert_eq!(a.peer_addr().unwrap().to_string(), path.url("unixgram"));
            // The server learns the client's (abstract) address from its
            // first datagram, and connects back to it.
            a.send("hello, server").unwrap();
            let mut first = [0u8; 64];
            let (n, from) = server.recv_from(&mut first).unwrap();
            assert_eq!(&first[..n], b"hello, server");
            server.connect_addr(&from).unwrap();
            let b = converse::UnixDatagram::from_socket(server, config).unwrap();
            Pair {
                a,
                b: Conversation::new(b).boxed(),
                _guard: Some(Box::new(path)),
                b_host: None,
            }
        }
    }
}

fn pair(kind: Kind, driver: Driver, config: &Config) -> Pair {
    match driver {
        Driver::Blocking => blocking_pair(kind, config),
        Driver::Switchboard => board_pair(kind, config),
        #[cfg(feature = "tokio")]
        Driver::Tokio => tokio_pair(kind, config),
    }
}

/// A pair of tokio conversations: `a` connected, `b` accepted by a tokio
/// listener (its handshake run as a task while `a` connects), both on one
/// runtime. A bound Unix datagram socket cannot be handed to the tokio
/// driver: there, `b` is the blocking driver's.
#[cfg(feature = "tokio")]
fn tokio_pair(kind: Kind, config: &Config) -> Pair {
    let config = match kind {
        Kind::Tls | Kind::TlsSliced | Kind::Wss | Kind::Quic => common::tls::config(config.clone()),
        _ => config.clone(),
    };
    let rt = tokio_driver::runtime();
    let conversation = |c: converse::tokio::Conversation| {
        Conversation::new(tokio_driver::TokioTransport::new(&rt, c, &config)).boxed()
    };
    let (scheme, sliced) = match (kind, kind.over_ip()) {
        (_, Some(over_ip)) => over_ip,
        (Kind::Unix, None) => ("unix", false),
        (Kind::UnixDatagram, None) => {
            let path = SocketPath::new("tokio-scenario-dgram");
            let server = std::os::unix::net::UnixDatagram::bind(&path.0).unwrap();
            server.set_read_timeout(Some(T)).unwrap();
            let client = rt
                .block_on(converse::tokio::connect_with(
                    &path.url("unixgram"),
                    &config,
                ))
                .unwrap();
            assert_eq!(client.peer_addr().to_string(), path.url("unixgram"));
            let mut a = conversation(client);
            a.send("hello, server").unwrap();
            let mut first = [0u8; 64];
            let (n, from) = server.recv_from(&mut first).unwrap();
            assert_eq!(&first[..n], b"hello, server");
            server.connect_addr(&from).unwrap();
            let b = UnixDatagram::from_socket(server, &config).unwrap();
            return Pair {
                a,
                b: Conversation::new(b).boxed(),
                _guard: Some(Box::new((path, rt))),
                b_host: None,
            };
        }
        _ => unreachable!("an in-memory pair has no tokio driver"),
    };
    let path = (kind == Kind::Unix).then(|| SocketPath::new("tokio-scenario"));
    let url = match &path {
        Some(path) => path.url("unix"),
        None => format!("{scheme}://127.0.0.1:0"),
    };
    let listener = rt
        .block_on(converse::tokio::listen_with(&url, &config))
        .unwrap();
    let addr = listener.local_addr().clone();
    assert_eq!(addr.scheme(), scheme);
    let server = rt.spawn(async move {
        let mut b = listener.accept().await.unwrap();
        b.handshake().await.unwrap();
        (b, listener)
    });
    let (url, proxy) = if sliced {
        let proxy = TcpProxy::start(addr.socket_addr().unwrap(), TcpFault::Slice { max: 512 });
        (format!("{scheme}://{}", proxy.addr), Some(proxy))
    } else {
        (addr.to_string(), None)
    };
    let client = rt
        .block_on(converse::tokio::connect_with(&url, &config))
        .unwrap();
    let mut a = conversation(client);
    if kind == Kind::Udp {
        // A UDP listener learns of a peer from its first datagram.
        a.send("hello, listener").unwrap();
    }
    let (b, listener) = rt.block_on(async {
        ::tokio::time::timeout(T, server)
            .await
            .expect("accepted in time")
            .unwrap()
    });
    let mut b = conversation(b);
    if kind == Kind::Udp {
        assert_eq!(b.recv().unwrap().unwrap(), &b"hello, listener"[..]);
    }
    Pair {
        a,
        b,
        _guard: Some(Box::new((proxy, listener, path, rt))),
        b_host: None,
    }
}

/// A pair of switchboard conversations: `a` connected by one switchboard,
/// `b` accepted by another's listener.
fn board_pair(kind: Kind, config: &Config) -> Pair {
    let config = match kind {
        Kind::Tls | Kind::TlsSliced | Kind::Wss | Kind::Quic => common::tls::config(config.clone()),
        _ => config.clone(),
    };
    let a_host = Arc::new(Host::new(&config));
    let b_host = Arc::new(Host::new(&config));
    let conversation = |t: board::BoardTransport| Conversation::new(t.with_config(&config)).boxed();
    let (scheme, sliced) = match (kind, kind.over_ip()) {
        (_, Some(over_ip)) => over_ip,
        (Kind::Unix, None) => {
            let path = SocketPath::new("board-scenario");
            let (addr, accepted) = b_host.listen(&path.url("unix"), &config);
            assert_eq!(addr.to_string(), path.url("unix"));
            let a = conversation(a_host.connect(&path.url("unix"), &config));
            let b = conversation(accepted.next(&b_host));
            return Pair {
                a,
                b,
                _guard: Some(Box::new((path, a_host))),
                b_host: Some(b_host),
            };
        }
        (Kind::UnixDatagram, None) => {
            let path = SocketPath::new("board-scenario-dgram");
            let server = std::os::unix::net::UnixDatagram::bind(&path.0).unwrap();
            server.set_read_timeout(Some(T)).unwrap();
            let mut a = conversation(a_host.connect(&path.url("unixgram"), &config));
            a.send("hello, server").unwrap();
            let mut first = [0u8; 64];
            let (n, from) = server.recv_from(&mut first).unwrap();
            assert_eq!(&first[..n], b"hello, server");
            server.connect_addr(&from).unwrap();
            let b = UnixDatagram::from_socket(server, &config).unwrap();
            let b = conversation(b_host.adopt(b));
            return Pair {
                a,
                b,
                _guard: Some(Box::new((path, a_host))),
                b_host: Some(b_host),
            };
        }
        _ => unreachable!("an in-memory pair has no switchboard"),
    };
    let (addr, accepted) = b_host.listen(&format!("{scheme}://127.0.0.1:0"), &config);
    assert_eq!(addr.scheme(), scheme);
    let (url, proxy) = if sliced {
        let proxy = TcpProxy::start(addr.socket_addr().unwrap(), TcpFault::Slice { max: 512 });
        (format!("{scheme}://{}", proxy.addr), Some(proxy))
    } else {
        (addr.to_string(), None)
    };
    let mut a = conversation(a_host.connect(&url, &config));
    if kind == Kind::Udp {
        // A UDP listener learns of a peer from its first datagram.
        a.send("hello, listener").unwrap();
    }
    let mut b = conversation(accepted.next(&b_host));
    if kind == Kind::Udp {
        assert_eq!(b.recv().unwrap().unwrap(), &b"hello, listener"[..]);
    }
    Pair {
        a,
        b,
        _guard: Some(Box::new((proxy, a_host))),
        b_host: Some(b_host),
    }
}

fn echo_1000_messages_in_order(kind: Kind, driver: Driver) {
    let Pair {
        mut a, b, _guard, ..
    } = pair(kind, driver, &config());
    let echo = spawn(move || {
        let mut b = b;
        for _ in 0..1000 {
            let m = b.recv().unwrap().expect("a message");
            b.send(&m).unwrap();
        }
    });
    for i in 0..1000u32 {
        // Lockstep, so that UDP on loopback loses nothing.
        a.send(format!("message {i}")).unwrap();
        assert_eq!(a.recv_text().unwrap().unwrap(), format!("message {i}"));
    }
    echo.join();
}

fn an_empty_message(kind: Kind, driver: Driver) {
    let Pair {
        mut a,
        mut b,
        _guard,
        ..
    } = pair(kind, driver, &config());
    a.send("").unwrap();
    a.send("after").unwrap();
    assert_eq!(b.recv().unwrap().unwrap(), &b""[..]);
    assert_eq!(b.recv().unwrap().unwrap(), &b"after"[..]);
}

fn the_largest_message_and_one_more(kind: Kind, driver: Driver) {
    let Pair {
        a, mut b, _guard, ..
    } = pair(kind, driver, &config());
    let max = a.max_message_len();
    let expected_max = match kind {
        Kind::Udp => Udp::MAX_PAYLOAD_V4,
        Kind::UnixDatagram => UnixDatagram::MAX_DATAGRAM,
        _ => 8 * 1024 * 1024,
    };
    assert_eq!(max, expected_max);
    let sender = spawn(move || {
        let mut a = a;
        a.send(vec![0x5a; max]).unwrap();
        match a.send(vec![0x5a; max + 1]) {
            Err(Error::MessageTooLarge { len, max: m }) => {
                assert_eq!((len, m), (max as u64 + 1, max as u64))
            }
            other => panic!("{other:?}"),
        }
        a.send("next").unwrap();
        a
    });
    let got = b.recv().unwrap().unwrap();
    assert!(got.len() == max && got.iter().all(|&x| x == 0x5a));
    assert_eq!(b.recv().unwrap().unwrap(), &b"next"[..]);
    drop(sender.join());
}

fn text_and_invalid_utf8(kind: Kind, driver: Driver) {
    let Pair {
        mut a,
        mut b,
        _guard,
        ..
    } = pair(kind, driver, &config());
    a.send_text("你好, héllo").unwrap();
    a.send([0xc3, 0x28]).unwrap();
    a.send_text("still fine").unwrap();
    assert_eq!(b.recv_text().unwrap().as_deref(), Some("你好, héllo"));
    match b.recv_text() {
        Err(Error::InvalidText { message, .. }) => assert_eq!(&message[..], &[0xc3, 0x28]),
        other => panic!("{other:?}"),
    }
    assert_eq!(b.recv_text().unwrap().as_deref(), Some("still fine"));
}

fn split_halves_from_two_threads(kind: Kind, driver: Driver) {
    // UDP is unpaced here; keep within what loopback buffers hold.
    let n: u32 = if kind == Kind::Udp { 100 } else { 1000 };
    let Pair { a, b, _guard, .. } = pair(kind, driver, &config());
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for (name, conversation) in [("a", a), ("b", b)] {
        let (mut tx, mut rx) = conversation.split();
        senders.push(spawn(move || {
            for i in 0..n {
                tx.send(format!("{name} {i}")).unwrap();
            }
            tx // kept open until both directions are done
        }));
        let other = if name == "a" { "b" } else { "a" };
        receivers.push(spawn(move || {
            for i in 0..n {
                assert_eq!(rx.recv_text().unwrap().unwrap(), format!("{other} {i}"));
            }
        }));
    }
    receivers.into_iter().for_each(|r| r.join());
    senders.into_iter().for_each(|s| drop(s.join()));
}

fn a_timeout_loses_nothing(kind: Kind, driver: Driver) {
    let Pair {
        mut a,
        mut b,
        _guard,
        ..
    } = pair(kind, driver, &config());
    b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    assert!(matches!(b.recv(), Err(Error::Timeout)));
    assert!(matches!(b.recv(), Err(Error::Timeout)));
    a.send("late").unwrap();
    b.set_read_timeout(Some(T)).unwrap();
    assert_eq!(b.recv().unwrap().unwrap(), &b"late"[..]);
    assert!(
        b.set_read_timeout(Some(Duration::ZERO)).is_err(),
        "a zero timeout is refused"
    );
}

fn close(kind: Kind, driver: Driver) {
    let Pair {
        a, mut b, _guard, ..
    } = pair(kind, driver, &config());
    let closer = spawn(move || {
        let mut a = a;
        for i in 0..10u8 {
            a.send([i]).unwrap();
        }
        a.close()
    });
    for i in 0..10u8 {
        assert_eq!(b.recv().unwrap().unwrap(), &[i][..]);
    }
    match kind {
        // A stream's close reaches the peer: the clean end, after everything.
        Kind::Memory
        | Kind::Tcp
        | Kind::TcpSliced
        | Kind::Unix
        | Kind::Tls
        | Kind::TlsSliced
        | Kind::Ws
        | Kind::WsSliced
        | Kind::Wss
        | Kind::Quic => {
            assert_eq!(b.recv().unwrap(), None);
            b.close().unwrap();
        }
        // Datagrams have no close: the peer is not told, it just hears
        // nothing more.
        Kind::Udp | Kind::UnixDatagram => {
            b.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            assert!(matches!(b.recv(), Err(Error::Timeout)));
        }
    }
    closer.join().unwrap();
}

fn is_datagram(kind: Kind) -> bool {
    matches!(kind, Kind::Udp | Kind::UnixDatagram)
}

fn a_stopped_conversation_refuses_use(kind: Kind, driver: Driver) {
    let Pair {
        mut a, b, _guard, ..
    } = pair(kind, driver, &config());
    a.stopper()
        .expect("every transport of the crate has one")
        .stop();
    assert!(matches!(a.send("x"), Err(Error::Closed)));
    assert!(matches!(a.recv(), Err(Error::Closed)));
    // Closing a stopped conversation is not an error, and cannot confirm.
    assert_eq!(a.close().unwrap(), Delivery::Unknown);
    drop(b);
}

fn a_stopper_wakes_a_blocked_receive(kind: Kind, driver: Driver) {
    let Pair { a, b, _guard, .. } = pair(kind, driver, &config().with_read_timeout(None));
    let stop = b.stopper().unwrap();
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let receiver = spawn(move || {
        let mut b = b;
        entered_tx.send(()).unwrap();
        let started = Instant::now();
        let outcome = b.recv();
        (outcome.map(|m| m.map(|m| m.to_vec())), started.elapsed())
    });
    entered.recv_timeout(T).unwrap();
    // The receive is (about to be) blocked without a timeout: stop it. A
    // stop that lands before the receive starts is seen by it too.
    std::thread::sleep(Duration::from_millis(50));
    stop.stop();
    let (outcome, took) = receiver.join();
    assert!(matches!(outcome, Err(Error::Closed)), "{outcome:?}");
    assert!(took < T, "{took:?}");
    drop(a);
}

fn zero_timeouts_are_refused_alike(kind: Kind, driver: Driver) {
    let Pair {
        mut a, b, _guard, ..
    } = pair(kind, driver, &config());
    for result in [
        a.set_read_timeout(Some(Duration::ZERO)),
        a.set_write_timeout(Some(Duration::ZERO)),
    ] {
        match result {
            Err(Error::InvalidConfig(e)) => assert!(e.reason.contains("zero"), "{e}"),
            other => panic!("{kind:?}: {other:?}"),
        }
    }
    // The timeouts in force are unchanged, and `None` is accepted.
    assert_eq!(a.read_timeout(), Some(T));
    a.set_read_timeout(None).unwrap();
    a.set_write_timeout(None).unwrap();
    assert_eq!(a.write_timeout(), None);
    drop(b);
}

/// A peer that stops reading: the sender sends numbered messages with a
/// short write timeout, resending whatever timed out, until it has seen a
/// few timeouts; then the peer reads everything. Every number arrives
/// exactly once, in order: a send that timed out had taken nothing.
fn resending_after_a_timeout_never_duplicates(kind: Kind, driver: Driver) {
    let config = config()
        .with_write_timeout(Some(Duration::from_millis(20)))
        .with_queue_depth(64)
        .with_send_buffer(4096);
    let Pair {
        mut a,
        b,
        _guard,
        b_host,
    } = pair(kind, driver, &config);
    // `b` does not read: a blocking `b` reads only when asked; a
    // switchboard is held (it reads and writes nothing).
    if let Some(host) = &b_host {
        host.pause(true);
    }
    if kind == Kind::Udp {
        // A UDP send never waits for the peer: nothing times out, and
        // what the peer's buffer cannot hold is lost (counted by a listener).
        for i in 0..1000u32 {
            a.send(i.to_be_bytes()).unwrap();
        }
        return;
    }
    let mut timeouts = 0;
    let mut next = 0u32;
    let started = Instant::now();
    while timeouts < 5 {
        assert!(started.elapsed() < T, "{kind:?}: no send ever timed out");
        // Mixed sizes: small ones batched with what is queued, large ones
        // written straight from the slice.
        let len = if next % 7 == 3 { 9000 } else { 40 };
        let mut msg = next.to_be_bytes().to_vec();
        msg.resize(len.min(a.max_message_len()), 0xaa);
        match a.send(&msg) {
            Ok(()) => next += 1,
            Err(Error::Timeout) => timeouts += 1,
            Err(e) => panic!("{kind:?}: {e}"),
        }
    }
    // Fed messages behave the same: a timed-out feed took nothing.
    for _ in 0..50 {
        let mut msg = next.to_be_bytes().to_vec();
        msg.resize(40, 0xbb);
        match a.feed(&msg) {
            Ok(()) => next += 1,
            Err(Error::Timeout) => {}
            Err(e) => panic!("{kind:?}: {e}"),
        }
    }
    // Now `b` reads everything.
    if let Some(host) = &b_host {
        host.pause(false);
    }
    let reader = spawn(move || {
        let mut b = b;
        let mut got = Vec::new();
        while let Some(m) = b.recv().unwrap() {
            got.push(u32::from_be_bytes(m[..4].try_into().unwrap()));
        }
        got
    });
    a.set_write_timeout(Some(T)).unwrap();
    a.flush().unwrap();
    if is_datagram(kind) {
        // Datagrams have no end to send: a last marker instead.
        a.send(u32::MAX.to_be_bytes()).unwrap();
    }
    let _ = a.close();
    let got = if is_datagram(kind) {
        drop(reader);
        return;
    } else {
        reader.join()
    };
    assert_eq!(got, (0..next).collect::<Vec<_>>(), "{kind:?}");
}

fn close_is_bounded_when_the_peer_never_ends(kind: Kind, driver: Driver) {
    let linger = Duration::from_millis(300);
    let Pair {
        a,
        b,
        _guard,
        b_host,
    } = pair(kind, driver, &config().with_linger(linger));
    // b is alive and never ends its side (a switchboard ends its side
    // after the peer's end by itself: it is held).
    if let Some(host) = &b_host {
        host.pause(true);
    }
    let started = Instant::now();
    let delivery = a.close().unwrap();
    let took = started.elapsed();
    assert_eq!(delivery, Delivery::Unknown, "{kind:?}");
    if is_datagram(kind) {
        assert!(
            took < linger,
            "{kind:?}: datagrams have nothing to wait for"
        );
    } else {
        assert!(took >= linger - Duration::from_millis(50), "{took:?}");
    }
    assert!(took < linger + Duration::from_secs(2), "{kind:?}: {took:?}");
    drop(b);
}

fn dropping_after_feed_delivers_what_was_fed(kind: Kind, driver: Driver) {
    let Pair {
        mut a,
        mut b,
        _guard,
        ..
    } = pair(kind, driver, &config());
    for i in 0..100u32 {
        a.feed(i.to_be_bytes()).unwrap();
    }
    drop(a);
    for i in 0..100u32 {
        assert_eq!(b.recv().unwrap().unwrap(), &i.to_be_bytes()[..], "{kind:?}");
    }
    if !is_datagram(kind) {
        assert_eq!(b.recv().unwrap(), None, "then the clean end");
    }
}

fn send_all_says_how_many_were_taken(kind: Kind, driver: Driver) {
    let Pair {
        mut a,
        mut b,
        _guard,
        ..
    } = pair(kind, driver, &config());
    let too_large = vec![0u8; a.max_message_len() + 1];
    let msgs: Vec<&[u8]> = vec![b"one", b"two", &too_large, b"four"];
    let err = a.send_all(&msgs).unwrap_err();
    assert_eq!(err.taken, 2, "{kind:?}");
    assert!(matches!(err.error, Error::MessageTooLarge { .. }), "{err}");
    // Those two were taken (and go out with the next flush); the rest not.
    a.send("after").unwrap();
    for want in ["one", "two", "after"] {
        assert_eq!(b.recv_text().unwrap().as_deref(), Some(want), "{kind:?}");
    }
    let into: Error = a.send_all(&msgs).unwrap_err().into();
    assert!(matches!(into, Error::MessageTooLarge { .. }));
}

fn halves_reunite_and_strangers_do_not(kind: Kind, driver: Driver) {
    let Pair {
        a, mut b, _guard, ..
    } = pair(kind, driver, &config());
    let Pair { a: other, .. } = pair(kind, driver, &config());
    let (tx, rx) = a.split();
    let (other_tx, other_rx) = other.split();
    let converse::ReuniteError(tx, _) = tx.reunite(other_rx).unwrap_err();
    let _ = other_tx;
    let mut a = tx.reunite(rx).unwrap();
    a.send("whole again").unwrap();
    assert_eq!(b.recv_text().unwrap().as_deref(), Some("whole again"));
    b.send("both ways").unwrap();
    assert_eq!(a.recv_text().unwrap().as_deref(), Some("both ways"));
}

fn lent_and_owned_receives_mix(kind: Kind, driver: Driver) {
    let Pair {
        mut a,
        mut b,
        _guard,
        ..
    } = pair(kind, driver, &config());
    // Small messages, and (where the transport takes them) some larger
    // than a lending buffer keeps (64 KiB).
    let big = a.max_message_len() >= 100_000;
    let message = move |i: u32| -> Vec<u8> {
        if big && i % 10 == 5 {
            let mut m = vec![b'x'; 70_000 + i as usize];
            m[..4].copy_from_slice(&i.to_be_bytes());
            m
        } else {
            format!("m{i}").into_bytes()
        }
    };
    let sender = std::thread::spawn(move || {
        for i in 0..50u32 {
            a.send(message(i)).unwrap();
        }
        a
    });
    for i in 0..50u32 {
        if i % 2 == 0 {
            assert_eq!(b.recv_ref().unwrap().unwrap(), &message(i)[..]);
        } else {
            assert_eq!(b.recv().unwrap().unwrap(), &message(i)[..]);
        }
    }
    drop(sender.join().unwrap());
}

macro_rules! over_every_transport {
    ($($scenario:ident),* $(,)?) => {
        mod blocking {
            use super::{Driver, Kind};
            mod memory { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Memory, super::Driver::Blocking) } )* }
            mod tcp { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Tcp, super::Driver::Blocking) } )* }
            mod tcp_sliced { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::TcpSliced, super::Driver::Blocking) } )* }
            mod udp { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Udp, super::Driver::Blocking) } )* }
            mod unix { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Unix, super::Driver::Blocking) } )* }
            mod unix_datagram { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::UnixDatagram, super::Driver::Blocking) } )* }
            mod tls { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Tls, super::Driver::Blocking) } )* }
            mod tls_sliced { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::TlsSliced, super::Driver::Blocking) } )* }
            mod ws { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Ws, super::Driver::Blocking) } )* }
            mod ws_sliced { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::WsSliced, super::Driver::Blocking) } )* }
            mod wss { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Wss, super::Driver::Blocking) } )* }
            #[cfg(feature = "quic")]
            mod quic { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Quic, super::Driver::Blocking) } )* }
        }
        mod switchboard {
            use super::{Driver, Kind};
            mod tcp { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Tcp, super::Driver::Switchboard) } )* }
            mod tcp_sliced { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::TcpSliced, super::Driver::Switchboard) } )* }
            mod udp { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Udp, super::Driver::Switchboard) } )* }
            mod unix { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Unix, super::Driver::Switchboard) } )* }
            mod unix_datagram { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::UnixDatagram, super::Driver::Switchboard) } )* }
            mod tls { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Tls, super::Driver::Switchboard) } )* }
            mod tls_sliced { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::TlsSliced, super::Driver::Switchboard) } )* }
            mod ws { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Ws, super::Driver::Switchboard) } )* }
            mod ws_sliced { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::WsSliced, super::Driver::Switchboard) } )* }
            mod wss { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Wss, super::Driver::Switchboard) } )* }
            #[cfg(feature = "quic")]
            mod quic { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Quic, super::Driver::Switchboard) } )* }
        }
        #[cfg(feature = "tokio")]
        mod tokio {
            use super::{Driver, Kind};
            mod tcp { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Tcp, super::Driver::Tokio) } )* }
            mod tcp_sliced { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::TcpSliced, super::Driver::Tokio) } )* }
            mod udp { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Udp, super::Driver::Tokio) } )* }
            mod unix { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Unix, super::Driver::Tokio) } )* }
            mod unix_datagram { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::UnixDatagram, super::Driver::Tokio) } )* }
            mod tls { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Tls, super::Driver::Tokio) } )* }
            mod tls_sliced { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::TlsSliced, super::Driver::Tokio) } )* }
            mod ws { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Ws, super::Driver::Tokio) } )* }
            mod ws_sliced { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::WsSliced, super::Driver::Tokio) } )* }
            mod wss { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Wss, super::Driver::Tokio) } )* }
            #[cfg(feature = "quic")]
            mod quic { $( #[test] fn $scenario() { super::super::$scenario(super::Kind::Quic, super::Driver::Tokio) } )* }
        }
    };
}

over_every_transport!(
    echo_1000_messages_in_order,
    an_empty_message,
    the_largest_message_and_one_more,
    text_and_invalid_utf8,
    split_halves_from_two_threads,
    a_timeout_loses_nothing,
    close,
    a_stopped_conversation_refuses_use,
    a_stopper_wakes_a_blocked_receive,
    zero_timeouts_are_refused_alike,
    resending_after_a_timeout_never_duplicates,
    close_is_bounded_when_the_peer_never_ends,
    dropping_after_feed_delivers_what_was_fed,
    send_all_says_how_many_were_taken,
    halves_reunite_and_strangers_do_not,
    lent_and_owned_receives_mix,
);

#[test]
fn memory_backpressure_times_out_without_taking_the_message() {
    let config = config()
        .with_queue_depth(2)
        .with_write_timeout(Some(Duration::from_millis(50)));
    let (mut a, mut b) = memory_pair(&config);
    a.send("1").unwrap();
    a.send("2").unwrap();
    assert!(matches!(a.send("3"), Err(Error::Timeout)));
    assert_eq!(b.recv().unwrap().unwrap(), &b"1"[..]);
    a.send("3").unwrap();
    assert_eq!(b.recv().unwrap().unwrap(), &b"2"[..]);
    assert_eq!(b.recv().unwrap().unwrap(), &b"3"[..]);
    drop(b);
    assert!(matches!(a.send("4"), Err(Error::BrokenPipe { .. })));
}
