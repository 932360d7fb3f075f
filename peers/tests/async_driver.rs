//! The tokio driver (`converse::tokio`): the same conversations from async
//! code, against itself and against the blocking driver, over TCP and
//! WebSocket; and cancellation: `recv` and `send` futures dropped after
//! every number of polls lose nothing and duplicate nothing.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

#[cfg(unix)]
use common::SocketPath;
use common::*;
use converse::{Conversation, Delivery, Error};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Message `i`: its number, then bytes that depend on it, of a size that
/// varies (up to `max`).
fn message(i: usize, max: usize) -> Vec<u8> {
    let len = 8 + (i * 7919) % max;
    let mut m = (i as u64).to_be_bytes().to_vec();
    m.extend((8..len).map(|j| (i + j) as u8));
    m
}

/// Polls `fut` up to `n` times (letting the runtime run between polls);
/// its output if it finished.
async fn poll_times<F: Future>(mut fut: Pin<&mut F>, n: usize) -> Option<F::Output> {
    for _ in 0..n {
        let polled = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
        if let Poll::Ready(out) = polled {
            return Some(out);
        }
        tokio::task::yield_now().await;
    }
    None
}

/// An echo server on `converse::tokio`, for one conversation, as a task:
/// its URL, and the task (which says how its close went).
async fn async_echo(url: &str) -> (String, tokio::task::JoinHandle<Delivery>) {
    let listener = converse::tokio::listen(url).await.unwrap();
    let url = listener.local_addr().to_string();
    let server = tokio::spawn(async move {
        let mut c = listener.accept().await.unwrap();
        while let Some(m) = c.recv().await.unwrap() {
            c.send(&m).await.unwrap();
        }
        c.close().await.unwrap()
    });
    (url, server)
}

#[test]
fn async_to_async_over_tcp_echoes_and_closes_confirmed() {
    runtime().block_on(async {
        let (url, server) = async_echo("tcp://127.0.0.1:0").await;
        let mut client = converse::tokio::connect(&url).await.unwrap();
        for i in 0..200 {
            let m = message(i, 100_000);
            client.send(&m).await.unwrap();
            assert_eq!(client.recv().await.unwrap().unwrap(), m);
        }
        // The largest message, whole.
        let big = vec![0x5a; 8 << 20];
        client.send(&big).await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap().len(), big.len());
        match client.send(vec![0u8; (8 << 20) + 1]).await {
            Err(Error::MessageTooLarge { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(client.close().await.unwrap(), Delivery::Confirmed);
        assert_eq!(server.await.unwrap(), Delivery::Confirmed);
    });
}

#[test]
fn async_client_and_blocking_server_over_tcp_and_websocket() {
    for scheme in ["tcp", "ws"] {
        let listener =
            converse::listen_with(&format!("{scheme}://127.0.0.1:0"), &config()).unwrap();
        let url = listener.local_addr().unwrap().to_string();
        let server = spawn(move || {
            let mut c = listener.accept().unwrap();
            while let Some(m) = c.recv().unwrap() {
                c.send(&m).unwrap();
            }
            c.close().unwrap();
        });
        runtime().block_on(async {
            let mut client = converse::tokio::connect(&url).await.unwrap();
            for i in 0..100 {
                let m = message(i, 70_000);
                client.send(&m).await.unwrap();
                assert_eq!(client.recv().await.unwrap().unwrap(), m, "{scheme}");
            }
            client.send_text("text").await.unwrap();
            assert_eq!(client.recv_text().await.unwrap().as_deref(), Some("text"));
            client.close().await.unwrap();
        });
        server.join();
    }
}

#[test]
fn blocking_client_and_async_server() {
    let rt = runtime();
    let listener = rt
        .block_on(converse::tokio::listen("ws://127.0.0.1:0"))
        .unwrap();
    let url = listener.local_addr().to_string();
    let client = spawn(move || {
        let mut c = converse::connect_with(&url, &config()).unwrap();
        for i in 0..100 {
            let m = message(i, 50_000);
            c.send(&m).unwrap();
            assert_eq!(c.recv().unwrap().unwrap(), m);
        }
        c.close().unwrap()
    });
    rt.block_on(async {
        let mut c = listener.accept().await.unwrap();
        while let Some(m) = c.recv().await.unwrap() {
            c.send(&m).await.unwrap();
        }
        c.close().await.unwrap();
    });
    assert_eq!(client.join(), Delivery::Confirmed);
}

/// A `recv` future dropped after any number of polls loses no message:
/// every message arrives once, in order, though each is sent in pieces
/// (so that futures are dropped in the middle of messages too).
#[test]
fn a_recv_dropped_at_any_poll_loses_nothing() {
    const COUNT: usize = 300;
    let rt = runtime();
    rt.block_on(async {
        let listener = converse::tokio::listen("tcp://127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().socket_addr().unwrap();
        let writer = spawn(move || {
            let mut raw = raw_client(addr);
            for i in 0..COUNT {
                let wire = frame(&message(i, 3000));
                // In three pieces, a moment apart.
                let third = wire.len() / 3;
                for piece in [&wire[..third], &wire[third..2 * third], &wire[2 * third..]] {
                    write_all(&mut raw, piece);
                    if i % 10 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
            }
            raw
        });
        let mut c = listener.accept().await.unwrap();
        let mut next = 0;
        let mut polls = 1;
        let until = std::time::Instant::now() + 2 * T;
        while next < COUNT {
            assert!(std::time::Instant::now() < until, "{next} of {COUNT}");
            let got = {
                let fut = std::pin::pin!(c.recv());
                poll_times(fut, polls).await
            };
            polls = polls % 7 + 1;
            if let Some(got) = got {
                assert_eq!(got.unwrap().unwrap(), message(next, 3000), "message {next}");
                next += 1;
            }
        }
        drop(writer.join());
    });
}

/// A `send` future takes its message whole at its first poll: dropped
/// after any number of polls, the message still arrives, once, whole and
/// in order; a future never polled took nothing.
#[test]
fn a_send_dropped_at_any_poll_took_all_of_its_message_or_none() {
    const COUNT: usize = 40;
    let rt = runtime();
    rt.block_on(async {
        let listener = converse::tokio::listen("tcp://127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().socket_addr().unwrap();
        // A reader that takes its time, so that sends wait for the socket.
        let reader = spawn(move || {
            let mut c = Conversation::new(converse::Tcp::connect_with(addr, &config()).unwrap());
            let mut got = Vec::new();
            while let Some(m) = c.recv().unwrap() {
                got.push(m.to_vec());
                if got.len() % 8 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            got
        });
        let mut c = listener.accept().await.unwrap();
        let mut expected = Vec::new();
        for i in 0..COUNT {
            let m = message(i, 1 << 20);
            if i % 5 == 4 {
                // Never polled: nothing taken.
                drop(c.send(message(10_000 + i, 64)));
                continue;
            }
            {
                let fut = std::pin::pin!(c.send(&m));
                let _ = poll_times(fut, 1 + i % 4).await;
            }
            expected.push(m);
        }
        c.flush().await.unwrap();
        c.close().await.unwrap();
        let got = reader.join();
        assert_eq!(got.len(), expected.len());
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(
                g == e,
                "message {i}: {} bytes, expected {}",
                g.len(),
                e.len()
            );
        }
    });
}

#[test]
fn async_to_async_over_unix_sockets() {
    let path = SocketPath::new("async");
    let url = path.url("unix");
    runtime().block_on(async {
        let (_, server) = async_echo(&url).await;
        let mut client = converse::tokio::connect(&url).await.unwrap();
        for i in 0..100 {
            let m = message(i, 200_000);
            client.send(&m).await.unwrap();
            assert_eq!(client.recv().await.unwrap().unwrap(), m);
        }
        assert_eq!(client.close().await.unwrap(), Delivery::Confirmed);
        assert_eq!(server.await.unwrap(), Delivery::Confirmed);
    });
    // A Unix datagram socket listens on no driver: said, not faked.
    runtime().block_on(async {
        match converse::tokio::listen(&path.url("unixgram")).await {
            Err(Error::Unsupported(_)) => {}
            other => panic!("{other:?}"),
        }
    });
}

/// A UDP client on tokio against the blocking UDP listener: one datagram,
/// one message, both ways. Loopback UDP may lose a datagram: each ping is
/// sent again until its echo comes (a late duplicate echo is skipped).
#[test]
fn a_udp_client_on_tokio_against_the_blocking_listener() {
    let listener = converse::UdpListener::bind_with("127.0.0.1:0", &config()).unwrap();
    let addr = listener.local_addr().unwrap().socket_addr().unwrap();
    let server = spawn(move || {
        let mut c = Conversation::new(listener.accept().unwrap());
        while let Ok(Some(m)) = c.recv() {
            if &m[..] == b"done" {
                break;
            }
            let _ = c.send(&m);
        }
    });
    runtime().block_on(async {
        let mut c = converse::tokio::connect(&format!("udp://{addr}"))
            .await
            .unwrap();
        for i in 0..50 {
            let m = message(i, 60_000);
            let mut tries = 0;
            loop {
                tries += 1;
                assert!(tries < 20, "no echo of {i}");
                c.send(&m).await.unwrap();
                match tokio::time::timeout(Duration::from_millis(500), c.recv()).await {
                    Ok(got) if got.as_ref().unwrap().as_deref() == Some(&m[..]) => break,
                    _ => continue,
                }
            }
        }
        c.send("done").await.unwrap();
        assert!(matches!(c.close().await, Ok(Delivery::Unknown)));
    });
    server.join();
}

/// A datagram over the limit is `Truncated`, whole, and the conversation
/// goes on.
#[test]
fn a_udp_datagram_over_the_limit_is_truncated_and_the_conversation_goes_on() {
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let at = peer.local_addr().unwrap();
    runtime().block_on(async {
        let config = config().with_max_message_len(1000);
        let mut c = converse::tokio::connect_with(&format!("udp://{at}"), &config)
            .await
            .unwrap();
        let ours = c.local_addr().socket_addr().unwrap();
        let (mut truncated, mut after) = (false, false);
        for _ in 0..50 {
            peer.send_to(&[7u8; 1001], ours).unwrap();
            peer.send_to(b"after", ours).unwrap();
            while let Ok(got) = tokio::time::timeout(Duration::from_millis(200), c.recv()).await {
                match got {
                    Err(Error::Truncated { .. }) => truncated = true,
                    Ok(Some(m)) => {
                        assert_eq!(&m[..], b"after");
                        after = true;
                    }
                    other => panic!("{other:?}"),
                }
            }
            if truncated && after {
                break;
            }
        }
        assert!(truncated && after);
    });
}

/// TLS, WebSocket over TLS and QUIC, the async client against the
/// blocking server: the handshake is the connection's (QUIC's, its
/// endpoint's), and the server's verified identity is the client's to see.
#[cfg(feature = "tls")]
#[test]
fn async_client_and_blocking_server_over_tls_and_wss() {
    let schemes: &[&str] = if cfg!(feature = "quic") {
        &["tls", "wss", "quic"]
    } else {
        &["tls", "wss"]
    };
    for &scheme in schemes {
        let server_config = config().with_tls_server(common::tls::server());
        let listener =
            converse::listen_with(&format!("{scheme}://127.0.0.1:0"), &server_config).unwrap();
        let port = listener.local_addr().unwrap().socket_addr().unwrap().port();
        let server = spawn(move || {
            let mut c = listener.accept().unwrap();
            while let Some(m) = c.recv().unwrap() {
                c.send(&m).unwrap();
            }
            c.close().unwrap()
        });
        let client_config = converse::Config::new().with_tls_client(common::tls::client());
        runtime().block_on(async {
            // (QUIC to 127.0.0.1 itself: a datagram to a ::1 nobody
            // listens on is not refused, it waits for the handshake
            // timeout.)
            let host = if scheme == "quic" {
                "127.0.0.1"
            } else {
                "localhost"
            };
            let url = format!("{scheme}://{host}:{port}");
            let mut client = converse::tokio::connect_with(&url, &client_config)
                .await
                .unwrap();
            let server_id = client.peer_identity().expect("a verified server");
            assert!(server_id.is_valid_for(host), "{scheme}");
            for i in 0..50 {
                let m = message(i, 100_000);
                client.send(&m).await.unwrap();
                assert_eq!(client.recv().await.unwrap().unwrap(), m, "{scheme}");
            }
            assert_eq!(
                client.close().await.unwrap(),
                Delivery::Confirmed,
                "{scheme}"
            );
        });
        assert_eq!(server.join(), Delivery::Confirmed, "{scheme}");
    }
}

/// A certificate the client does not trust fails `connect` with the
/// typed TLS error, as on every driver.
#[cfg(feature = "tls")]
#[test]
fn an_untrusted_certificate_fails_the_async_connect() {
    let server_config = config().with_tls_server(common::tls::server());
    let listener = converse::listen_with("tls://127.0.0.1:0", &server_config).unwrap();
    let port = listener.local_addr().unwrap().socket_addr().unwrap().port();
    let server = spawn(move || {
        // The handshake runs with the first receive.
        if let Ok(mut c) = listener.accept() {
            let _ = c.recv();
        }
    });
    runtime().block_on(async {
        // The bundled roots: not the test CA.
        match converse::tokio::connect(&format!("tls://localhost:{port}")).await {
            Err(e @ Error::Tls { .. }) => assert!(e.to_string().contains("certificate"), "{e}"),
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("an untrusted certificate was taken"),
        }
    });
    server.join();
}

/// NATS: publish and receive through a real server, from async code.
#[cfg(feature = "nats")]
#[test]
fn async_nats_publishes_and_receives() {
    if !common::nats::have_nats_server() {
        return;
    }
    let nats = common::nats::NatsServer::start();
    let url = nats.url("async.test");
    runtime().block_on(async {
        let mut a = converse::tokio::connect(&url).await.unwrap();
        let mut b = converse::tokio::connect(&url).await.unwrap();
        // Both subscribed once connected (CONNECT and SUB are answered by
        // the server's PONG before `connect` returns).
        for i in 0..20 {
            a.send(format!("hello {i}")).await.unwrap();
        }
        for i in 0..20 {
            let got = tokio::time::timeout(T, b.recv_text())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got.as_deref(), Some(format!("hello {i}").as_str()));
        }
        a.close().await.unwrap();
        b.close().await.unwrap();
    });
}

#[allow(dead_code)]
#[path = "../../examples/common/room.rs"]
mod room;

/// `chat_room_client_async` joins the room beside a blocking member: each
/// hears the other, and it leaves at the end of its stdin.
#[test]
fn the_async_chat_client_joins_the_room() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Command, Stdio};

    let mut board = converse::Switchboard::with_config(&converse::Config::new()).unwrap();
    let listener = board.listen("tcp://127.0.0.1:0").unwrap();
    let url = board.listener_addr(listener).unwrap().to_string();
    std::thread::spawn(move || {
        let mut room = room::Room::new(board, room::Printer::none());
        let _ = room.run();
    });
    let mut alice = converse::connect_with(&url, &config()).unwrap();
    alice.send("alice").unwrap();

    let exe = std::env::current_exe().unwrap();
    let examples = exe.parent().unwrap().parent().unwrap().join("examples");
    let mut carol = Command::new(examples.join("chat_room_client_async"))
        .args(["--addr", &url, "--name", "carol"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let out = carol.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    assert_eq!(
        alice.recv_text().unwrap().as_deref(),
        Some("* carol joined")
    );
    let mut stdin = carol.stdin.take().unwrap();
    writeln!(stdin, "hello from tokio").unwrap();
    assert_eq!(
        alice.recv_text().unwrap().as_deref(),
        Some("carol: hello from tokio")
    );
    alice.send("hi, carol\u{1b}[2J").unwrap();
    assert_eq!(
        lines.recv_timeout(T).unwrap(),
        "alice: hi, carol\\u{1b}[2J",
        "shown with its escape visible"
    );
    drop(stdin);
    assert_eq!(alice.recv_text().unwrap().as_deref(), Some("* carol left"));
    let until = std::time::Instant::now() + T;
    let status = loop {
        if let Some(status) = carol.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < until, "carol did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
}

/// The connection's deadlines are tokio timers: a message that does not
/// come whole within the per-message deadline ends the conversation with
/// the typed error, as on every driver.
#[test]
fn a_message_past_its_deadline_fails_on_tokio_too() {
    runtime().block_on(async {
        let config = converse::Config::new().with_message_deadline(Duration::from_millis(200));
        let listener = converse::tokio::listen_with("tcp://127.0.0.1:0", &config)
            .await
            .unwrap();
        let addr = listener.local_addr().socket_addr().unwrap();
        let writer = spawn(move || {
            let mut raw = raw_client(addr);
            // Half a message, and no more.
            write_all(&mut raw, &frame(b"never finished")[..8]);
            std::thread::sleep(Duration::from_secs(1));
            raw
        });
        let mut c = listener.accept().await.unwrap();
        let started = std::time::Instant::now();
        match tokio::time::timeout(T, c.recv()).await.unwrap() {
            Err(Error::DeadlineExceeded { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert!(matches!(c.recv().await, Err(Error::Closed)));
        drop(writer.join());
    });
}

/// A client that never finishes its handshake holds up nobody: `accept`
/// hands it out at once, its handshake fails on its own task (past the
/// handshake timeout, typed), and the next client is served meanwhile.
#[cfg(feature = "tls")]
#[test]
fn a_silent_handshake_holds_up_nobody() {
    runtime().block_on(async {
        let server_config = converse::Config::new()
            .with_tls_server(common::tls::server())
            .with_handshake_timeout(Duration::from_secs(3));
        let listener = converse::tokio::listen_with("tls://127.0.0.1:0", &server_config)
            .await
            .unwrap();
        let port = listener.local_addr().socket_addr().unwrap().port();
        // Says nothing: no ClientHello.
        let silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut first = tokio::time::timeout(T, listener.accept())
            .await
            .unwrap()
            .unwrap();
        let failed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&failed);
        let pending = tokio::spawn(async move {
            let outcome = first.handshake().await;
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            outcome
        });
        let honest = spawn(move || {
            let client_config = config().with_tls_client(common::tls::client());
            let mut c =
                converse::connect_with(&format!("tls://localhost:{port}"), &client_config).unwrap();
            c.send("hello").unwrap();
            c.recv_text().unwrap()
        });
        let mut c = tokio::time::timeout(T, listener.accept())
            .await
            .unwrap()
            .unwrap();
        let m = c.recv().await.unwrap().unwrap();
        c.send(&m).await.unwrap();
        // Served while the silent one still waits for its hello.
        assert!(!failed.load(std::sync::atomic::Ordering::SeqCst));
        let reply = tokio::task::spawn_blocking(move || honest.join())
            .await
            .unwrap();
        assert_eq!(reply.as_deref(), Some("hello"));
        match tokio::time::timeout(T, pending).await.unwrap().unwrap() {
            Err(e) => assert!(matches!(e, Error::Timeout | Error::Tls { .. }), "{e:?}"),
            Ok(()) => panic!("a silent client completed a handshake"),
        }
        drop(silent);
    });
}

fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A blocking echo server on `scheme` (TLS with the tests' certificates):
/// the URL a client connects to, its client config, and the thread, which
/// echoes until the peer's end and then closes.
fn blocking_echo(scheme: &str) -> (String, converse::Config, Joiner<Delivery>) {
    let tls = matches!(scheme, "tls" | "wss");
    let server_config = if tls {
        config().with_tls_server(common::tls::server())
    } else {
        config()
    };
    let listener =
        converse::listen_with(&format!("{scheme}://127.0.0.1:0"), &server_config).unwrap();
    let port = listener.local_addr().unwrap().socket_addr().unwrap().port();
    let server = spawn(move || {
        let mut c = listener.accept().unwrap();
        while let Some(m) = c.recv().unwrap() {
            c.send(&m).unwrap();
        }
        c.close().unwrap()
    });
    let (host, client_config) = if tls {
        ("localhost", config().with_tls_client(common::tls::client()))
    } else {
        ("127.0.0.1", config())
    };
    (format!("{scheme}://{host}:{port}"), client_config, server)
}

/// The halves of a split conversation on two tasks of a multi-thread
/// runtime: one sends 500 messages of up to 70 KB while the other
/// receives their echoes, every one whole and in order; the sending half's
/// close ends our side, the receiving half then sees the peer's end, and
/// the peer's close is confirmed.
#[test]
fn split_halves_send_and_receive_on_two_tasks() {
    for scheme in ["tcp", "tls", "ws", "wss"] {
        let (url, client_config, server) = blocking_echo(scheme);
        multi_thread_runtime().block_on(async {
            let client = converse::tokio::connect_with(&url, &client_config)
                .await
                .unwrap();
            let (mut rx, mut tx) = client.split();
            let sender = tokio::spawn(async move {
                for i in 0..500 {
                    tx.send(message(i, 70_000)).await.unwrap();
                }
                tx.close().await.unwrap();
            });
            let receiver = tokio::spawn(async move {
                for i in 0..500 {
                    let m = rx.recv().await.unwrap().expect("an echo");
                    assert_eq!(m, message(i, 70_000), "{scheme} message {i}");
                }
                assert_eq!(rx.recv().await.unwrap(), None, "{scheme}");
            });
            tokio::time::timeout(Duration::from_secs(60), async {
                sender.await.unwrap();
                receiver.await.unwrap();
            })
            .await
            .expect("the halves finish");
        });
        assert_eq!(server.join(), Delivery::Confirmed, "{scheme}");
    }
}

/// A receiving half's `recv` dropped after any number of polls, while the
/// sending half goes on, loses nothing; the halves reunite into the
/// conversation, and halves of two conversations do not.
#[test]
fn a_split_recv_dropped_at_any_poll_loses_nothing_and_halves_reunite() {
    let (url, client_config, server) = blocking_echo("ws");
    runtime().block_on(async {
        let client = converse::tokio::connect_with(&url, &client_config)
            .await
            .unwrap();
        let (mut rx, mut tx) = client.split();
        let mut next = 0;
        for n in 0..40 {
            tx.send(message(n, 3000)).await.unwrap();
            tx.send(message(n + 1000, 3000)).await.unwrap();
            let got = {
                let recv = std::pin::pin!(rx.recv());
                poll_times(recv, n).await
            };
            let mut expect = vec![message(n, 3000), message(n + 1000, 3000)];
            if let Some(m) = got {
                assert_eq!(m.unwrap().unwrap(), expect.remove(0));
                next += 1;
            }
            for e in expect {
                let m = tokio::time::timeout(T, rx.recv()).await.unwrap();
                assert_eq!(m.unwrap().unwrap(), e, "after {n} polls");
            }
        }
        assert!(next > 0, "some receives finished within their polls");
        let (other_url, other_config, other_server) = blocking_echo("tcp");
        let other = converse::tokio::connect_with(&other_url, &other_config).await;
        let (orx, otx) = other.unwrap().split();
        let converse::tokio::ReuniteError(orx, tx) = tx.reunite(orx).unwrap_err();
        let other = otx.reunite(orx).unwrap();
        assert_eq!(other.close().await.unwrap(), Delivery::Confirmed);
        assert_eq!(other_server.join(), Delivery::Confirmed);
        let mut client = tx.reunite(rx).unwrap();
        client.send("whole again").await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().as_deref(),
            Some(&b"whole again"[..])
        );
        client.close().await.unwrap();
    });
    assert_eq!(server.join(), Delivery::Confirmed);
}

/// A conversation is a `Sink` and a `Stream` of messages: `send_all` of a
/// stream of 500 messages and the echoes collected from the stream, whole
/// and in order; the stream ends at the peer's end.
#[test]
fn a_conversation_is_a_sink_and_a_stream_of_messages() {
    use futures_util::{SinkExt, StreamExt};
    for scheme in ["tcp", "ws"] {
        let (url, client_config, server) = blocking_echo(scheme);
        multi_thread_runtime().block_on(async {
            let client = converse::tokio::connect_with(&url, &client_config)
                .await
                .unwrap();
            let (rx, mut tx) = client.split();
            let sending = tokio::spawn(async move {
                let mut messages =
                    futures_util::stream::iter((0..500).map(|i| Ok(message(i, 20_000))));
                tx.send_all(&mut messages).await.unwrap();
                SinkExt::<Vec<u8>>::close(&mut tx).await.unwrap();
            });
            let echoes: Vec<_> = tokio::time::timeout(Duration::from_secs(60), rx.collect())
                .await
                .expect("the stream ends");
            sending.await.unwrap();
            assert_eq!(echoes.len(), 500, "{scheme}");
            for (i, echo) in echoes.into_iter().enumerate() {
                assert_eq!(echo.unwrap(), message(i, 20_000), "{scheme}");
            }
        });
        assert_eq!(server.join(), Delivery::Confirmed, "{scheme}");
    }
    // Unsplit, over UDP: the sink and the stream of one conversation.
    let listener = converse::UdpListener::bind_with("127.0.0.1:0", &config()).unwrap();
    let url = listener.local_addr().unwrap().to_string();
    runtime().block_on(async {
        let mut client = converse::tokio::connect(&url).await.unwrap();
        client.send("first").await.unwrap();
        let mut served = converse::Conversation::new(listener.accept().unwrap());
        served.set_read_timeout(Some(T)).unwrap();
        assert_eq!(served.recv().unwrap().unwrap(), &b"first"[..]);
        client.feed("second").unwrap();
        SinkExt::<&str>::flush(&mut client).await.unwrap();
        assert_eq!(served.recv().unwrap().unwrap(), &b"second"[..]);
        served.send("back").unwrap();
        let back = tokio::time::timeout(T, client.next()).await.unwrap();
        assert_eq!(back.unwrap().unwrap(), &b"back"[..]);
    });
}

/// Sends `m` until `c` receives `expect` (loopback UDP may lose either
/// way; a late duplicate of an earlier answer is skipped).
async fn udp_ask(c: &mut converse::tokio::Conversation, m: &[u8], expect: &[u8]) {
    for _ in 0..20 {
        c.send(m).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while let Ok(got) = tokio::time::timeout_at(deadline, c.recv()).await {
            if got.unwrap().as_deref() == Some(expect) {
                return;
            }
        }
    }
    panic!("no answer to {:?}", String::from_utf8_lossy(m));
}

/// A UDP listener on tokio: each source is a conversation of its own,
/// served by a task, its replies from the listener's address; twenty
/// clients at once each hear only their own echoes.
#[test]
fn a_udp_listener_on_tokio_serves_each_source_as_a_conversation() {
    multi_thread_runtime().block_on(async {
        let listener = converse::tokio::listen("udp://127.0.0.1:0").await.unwrap();
        let url = listener.local_addr().to_string();
        assert!(url.starts_with("udp://127.0.0.1:"), "{url}");
        let (served_tx, mut served) = tokio::sync::mpsc::unbounded_channel();
        let server = tokio::spawn(async move {
            for _ in 0..20 {
                let mut c = listener.accept().await.unwrap();
                let served_tx = served_tx.clone();
                tokio::spawn(async move {
                    served_tx.send(c.peer_addr().to_string()).unwrap();
                    while let Ok(Some(m)) = c.recv().await {
                        let mut echo = b"echo ".to_vec();
                        echo.extend_from_slice(&m);
                        let _ = c.send(&echo).await;
                    }
                });
            }
            listener
        });
        let mut clients = Vec::new();
        for k in 0..20 {
            let url = url.clone();
            clients.push(tokio::spawn(async move {
                let mut c = converse::tokio::connect(&url).await.unwrap();
                assert_eq!(c.peer_addr().to_string(), url);
                for i in 0..10 {
                    let m = format!("{k}/{i}");
                    udp_ask(&mut c, m.as_bytes(), format!("echo {m}").as_bytes()).await;
                }
                c.local_addr().to_string()
            }));
        }
        let mut locals = Vec::new();
        for client in clients {
            locals.push(tokio::time::timeout(T, client).await.unwrap().unwrap());
        }
        let listener = tokio::time::timeout(T, server).await.unwrap().unwrap();
        let mut peers = Vec::new();
        while let Ok(peer) = served.try_recv() {
            peers.push(peer);
        }
        peers.sort();
        locals.sort();
        assert_eq!(peers, locals, "one conversation per source");
        let stats = listener.udp_stats().expect("a UDP listener's counts");
        assert_eq!(stats.peers, 20);
        assert_eq!(
            stats.datagrams,
            stats.delivered
                + stats.dropped_queue_full
                + stats.dropped_peer_cap
                + stats.dropped_bytes_cap
        );
    });
}

/// Sends `m` from `from` until `to` receives it (loopback UDP may lose it).
async fn udp_tell(
    from: &mut converse::tokio::Conversation,
    to: &mut converse::tokio::Conversation,
    m: &[u8],
) {
    for _ in 0..20 {
        from.send(m).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        while let Ok(got) = tokio::time::timeout_at(deadline, to.recv()).await {
            if got.unwrap().as_deref() == Some(m) {
                return;
            }
        }
    }
    panic!("{:?} never arrived", String::from_utf8_lossy(m));
}

/// Sends `m` from `c` until `listener` accepts a conversation (loopback
/// UDP may lose the datagram); the conversation and its first message.
async fn udp_join(
    listener: &converse::tokio::Listener,
    c: &mut converse::tokio::Conversation,
    m: &[u8],
) -> converse::tokio::Conversation {
    for _ in 0..20 {
        c.send(m).await.unwrap();
        if let Ok(accepted) =
            tokio::time::timeout(Duration::from_millis(300), listener.accept()).await
        {
            let mut served = accepted.unwrap();
            assert_eq!(served.recv().await.unwrap().as_deref(), Some(m));
            return served;
        }
    }
    panic!("never accepted");
}

/// Receives on `c` within `T`, skipping copies of `skip` (a datagram sent
/// again because its first copy might have been lost).
async fn recv_skipping(
    c: &mut converse::tokio::Conversation,
    skip: &[u8],
) -> converse::Result<Option<bytes::Bytes>> {
    loop {
        match tokio::time::timeout(T, c.recv()).await.expect("within T") {
            Ok(Some(m)) if &m[..] == skip => continue,
            other => return other,
        }
    }
}

/// A peer silent for the idle timeout ends its conversation (`Ok(None)`)
/// after what it sent; its next datagram starts a new one; a datagram over
/// the limit is `Truncated` and the conversation goes on; a dropped
/// listener ends its conversations' receives, and their sends still go.
/// Loopback UDP may lose: every exchange is repeated until it is seen.
#[test]
fn a_tokio_udp_listener_ends_idle_peers_and_ends_with_its_listener() {
    runtime().block_on(async {
        let config = config()
            .with_idle_timeout(Some(Duration::from_millis(300)))
            .with_max_message_len(1000);
        let listener = converse::tokio::listen_with("udp://127.0.0.1:0", &config)
            .await
            .unwrap();
        let mut client = converse::tokio::connect(&listener.local_addr().to_string())
            .await
            .unwrap();
        let mut served = udp_join(&listener, &mut client, b"first").await;
        // Silence: the end, once the idle timeout has passed.
        assert_eq!(recv_skipping(&mut served, b"first").await.unwrap(), None);
        // The same source again: a new conversation.
        let again = udp_join(&listener, &mut client, b"again").await;
        assert!(matches!(again.close().await, Ok(Delivery::Unknown)));

        // Without an idle timeout (nothing ends by itself from here on).
        let config = config.with_idle_timeout(None);
        let listener = converse::tokio::listen_with("udp://127.0.0.1:0", &config)
            .await
            .unwrap();
        let mut client = converse::tokio::connect(&listener.local_addr().to_string())
            .await
            .unwrap();
        let mut served = udp_join(&listener, &mut client, b"first").await;
        // Over the limit: said, whole, and the conversation goes on.
        let (mut truncated, mut after) = (false, false);
        for _ in 0..20 {
            client.send(vec![7u8; 1001]).await.unwrap();
            client.send("after").await.unwrap();
            let wait = Duration::from_millis(300);
            while let Ok(got) = tokio::time::timeout(wait, served.recv()).await {
                match got {
                    Err(Error::Truncated { max: 1000, .. }) => truncated = true,
                    Ok(Some(m)) if &m[..] == b"after" => after = true,
                    Ok(Some(m)) if &m[..] == b"first" => {}
                    other => panic!("{other:?}"),
                }
            }
            if truncated && after {
                break;
            }
        }
        assert!(truncated && after);
        udp_tell(&mut served, &mut client, b"reply").await;
        drop(listener);
        // Ended with its listener: what was queued, then the end.
        loop {
            match tokio::time::timeout(T, served.recv()).await.unwrap() {
                Ok(None) => break,
                Ok(Some(_)) | Err(Error::Truncated { .. }) => {}
                other => panic!("{other:?}"),
            }
        }
        // Its sends still go, from the listener's socket.
        udp_tell(&mut served, &mut client, b"still").await;
    });
}

/// A conversation dropped once its sending half has closed keeps reading
/// (and discarding) what arrives late, until the peer's end or the linger
/// time: the system does not answer the late bytes with a reset (a peer
/// between, such as a proxy, would lose what it had not yet passed on).
#[test]
fn a_conversation_dropped_after_its_close_ends_cleanly_despite_late_bytes() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let rt = multi_thread_runtime();
    let c = rt
        .block_on(converse::tokio::connect(&format!("tcp://{addr}")))
        .unwrap();
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(T)).unwrap();
    let (rx, mut tx) = c.split();
    rt.block_on(async {
        tx.send("before the end").await.unwrap();
        tx.close().await.unwrap();
    });
    // Dropped on its runtime (its task goes on there); below, dropped
    // outside one: no task to hand the socket to, and no panic either.
    rt.block_on(async move { drop(rx) });
    // Late bytes from the peer, after the conversation is gone: taken, not
    // answered with a reset (which would fail the second write).
    for _ in 0..2 {
        peer.write_all(&[0, 0, 0, 4, b'l', b'a', b't', b'e'])
            .expect("late bytes taken");
    }
    let mut got = Vec::new();
    peer.read_to_end(&mut got)
        .expect("everything, then a clean end (not a reset)");
    assert_eq!(got, frame(b"before the end"));
    let c = rt
        .block_on(converse::tokio::connect(&format!("tcp://{addr}")))
        .unwrap();
    let (rx, tx) = c.split();
    rt.block_on(async { tx.close().await.unwrap() });
    drop(rx);
}
