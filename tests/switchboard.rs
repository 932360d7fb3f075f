//! The switchboard: many conversations on one thread, every event kind,
//! slow consumers, partial frames across wake-ups, idle ends, other
//! threads, and the same results as the blocking API.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::proxy::{TcpFault, TcpProxy};
use common::*;
use converse::switchboard::{serve, End, Event, Events, Switchboard};
use converse::{Config, Delivery, Error, Tcp, Udp};

/// An echo server on a switchboard, on a thread; returns the listening URL
/// and the ends it saw (in order).
fn board_echo(url: &str, config: &Config) -> (String, std::sync::mpsc::Receiver<String>) {
    let mut board = Switchboard::with_config(config).unwrap();
    let listener = board.listen(url).unwrap();
    let url = board.listener_addr(listener).unwrap().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut events = Events::new();
        loop {
            if board.wait(&mut events, None).is_err() {
                return;
            }
            for event in events.drain() {
                match event {
                    Event::Message { id, message } => {
                        let _ = board.send(id, &message);
                    }
                    Event::Ended { end, .. } if tx.send(format!("{end:?}")).is_err() => return,
                    _ => {}
                }
            }
        }
    });
    (url, rx)
}

#[test]
fn every_transport_echoes_through_one_switchboard() {
    let config = config();
    let path = SocketPath::new("board");
    for url in [
        "tcp://127.0.0.1:0".to_owned(),
        "udp://127.0.0.1:0".to_owned(),
        path.url("unix"),
    ] {
        let (url, ends) = board_echo(&url, &config);
        let mut c = converse::connect_with(&url, &config).unwrap();
        for size in [0usize, 1, 100, 1000, 60_000] {
            let msg: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            c.send(&msg).unwrap();
            assert_eq!(c.recv().unwrap().unwrap(), msg, "{url}: {size} bytes");
        }
        let delivery = c.close().unwrap();
        if url.starts_with("udp") {
            assert_eq!(delivery, Delivery::Unknown);
        } else {
            assert_eq!(delivery, Delivery::Confirmed, "{url}");
            assert_eq!(ends.recv_timeout(T).unwrap(), "Peer", "{url}");
        }
    }
}

#[test]
fn client_conversations_on_a_switchboard_too() {
    let config = config();
    let echo = Echo::tcp(&config);
    let udp_server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let udp_addr = udp_server.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = udp_server.recv_from(&mut buf) {
            let _ = udp_server.send_to(&buf[..n], from);
        }
    });
    let mut board = Switchboard::with_config(&config).unwrap();
    let tcp = board.connect(&echo.url).unwrap();
    let udp = board
        .adopt(Udp::connect_with(udp_addr, &config).unwrap())
        .unwrap();
    // A TCP conversation with a message already buffered is handed over
    // with it.
    let blocking = Tcp::connect_with(echo.addr(), &config).unwrap();
    let adopted = board.adopt(blocking).unwrap();
    for id in [tcp, udp, adopted] {
        board.send(id, format!("to {id:?}")).unwrap();
    }
    let mut got = HashMap::new();
    run_until(&mut board, |_, event| {
        if let Event::Message { id, message } = event {
            got.insert(id, String::from_utf8(message.to_vec()).unwrap());
        }
        got.len() == 3
    });
    for id in [tcp, udp, adopted] {
        assert_eq!(got[&id], format!("to {id:?}"));
    }
    assert_eq!(board.peer_addr(udp).unwrap().socket_addr(), Some(udp_addr));
}

#[test]
fn every_end_has_its_reason() {
    let config = config()
        .with_max_message_len(1000)
        .with_message_deadline(Duration::from_millis(200));
    let mut board = Switchboard::with_config(&config).unwrap();
    let listener = board.listen("tcp://127.0.0.1:0").unwrap();
    let addr = board
        .listener_addr(listener)
        .unwrap()
        .socket_addr()
        .unwrap();

    // Five clients, each ending its own way.
    let mut clean = raw_client(addr);
    write_all(&mut clean, &frame(b"bye"));
    clean.shutdown(std::net::Shutdown::Write).unwrap();
    let mut cut = raw_client(addr);
    write_all(&mut cut, &frame(b"whole"));
    write_all(&mut cut, &frame(b"half")[..5]);
    cut.shutdown(std::net::Shutdown::Write).unwrap();
    let mut large = raw_client(addr);
    write_all(&mut large, &5000u32.to_be_bytes());
    let mut slow = raw_client(addr);
    write_all(&mut slow, &frame(b"never finished")[..6]);
    let mut reset = raw_client(addr);
    write_all(&mut reset, &frame(b"then a reset"));

    let mut peers = HashMap::new();
    let mut ends: HashMap<String, String> = HashMap::new();
    let mut reset = Some(reset);
    run_until(&mut board, |board, event| {
        match event {
            Event::Accepted { id, .. } => {
                let peer = board.peer_addr(id).unwrap().socket_addr().unwrap();
                peers.insert(id, peer);
            }
            Event::Message { message, .. } if &message[..] == b"then a reset" => {
                let s = reset.take().unwrap();
                socket2::SockRef::from(&s)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(s);
            }
            Event::Ended { id, end } => {
                let text = match end {
                    End::Failed(e) => match e {
                        Error::UnexpectedEof { .. } => "UnexpectedEof",
                        Error::MessageTooLarge { .. } => "MessageTooLarge",
                        Error::DeadlineExceeded { .. } => "DeadlineExceeded",
                        Error::ConnectionReset { .. } => "ConnectionReset",
                        _ => "other",
                    },
                    End::Peer => "Peer",
                    _ => "other",
                };
                ends.insert(peers[&id].to_string(), text.to_owned());
            }
            _ => {}
        }
        ends.len() == 5
    });
    let of = |s: &std::net::TcpStream| ends[&s.local_addr().unwrap().to_string()].clone();
    assert_eq!(of(&clean), "Peer");
    assert_eq!(of(&cut), "UnexpectedEof");
    assert_eq!(of(&large), "MessageTooLarge");
    assert_eq!(of(&slow), "DeadlineExceeded");
    assert!(ends.values().any(|e| e == "ConnectionReset"), "{ends:?}");
    // The listener goes on.
    let mut good = client(addr, &config);
    good.send("still here").unwrap();
    let mut heard = false;
    run_until(&mut board, |_, event| {
        heard |=
            matches!(event, Event::Message { ref message, .. } if &message[..] == b"still here");
        heard
    });
}

#[test]
fn a_peer_that_never_reads_is_dropped_and_nobody_waits_for_it() {
    const MEMBERS: usize = 20;
    const MESSAGES: usize = 3000;
    let config = config().with_max_backlog(64 * 1024).with_backlog(64);
    let (mut board, addr) = board_on_tcp(&config);
    // Readers read everything; one member never reads.
    let readers: Vec<_> = (0..MEMBERS)
        .map(|_| {
            let mut c = client(addr, &config);
            c.send("ready").unwrap();
            spawn(move || {
                let mut n = 0;
                while let Some(m) = c.recv().unwrap() {
                    assert_eq!(m.len(), 1024);
                    n += 1;
                }
                n
            })
        })
        .collect();
    // A small receive window, so the kernel's buffers fill soon.
    let stuck = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    stuck.set_recv_buffer_size(4096).unwrap();
    stuck.connect(&addr.into()).unwrap();
    let mut stuck: std::net::TcpStream = stuck.into();
    write_all(&mut stuck, &frame(b"ready"));
    let mut members = Vec::new();
    run_until(&mut board, |_, event| {
        if let Event::Message { id, .. } = event {
            members.push(id);
        }
        members.len() == MEMBERS + 1
    });
    let started = Instant::now();
    let mut slow = None;
    let mut slow_end = None;
    let mut events = Events::new();
    for _ in 0..MESSAGES {
        for &id in &members {
            match board.send(id, [7u8; 1024]) {
                Ok(()) => {}
                Err(Error::SlowConsumer { queued, limit, .. }) => {
                    assert!(queued > limit);
                    slow = Some(id);
                }
                Err(Error::Closed) => assert_eq!(Some(id), slow),
                Err(e) => panic!("{e}"),
            }
        }
        // Let the sockets take some between rounds, as a room would.
        board.wait(&mut events, Some(Duration::ZERO)).unwrap();
        for event in events.drain() {
            if let Event::Ended { id, end } = event {
                assert_eq!(Some(id), slow, "only the slow one ends");
                slow_end = Some(end);
            }
        }
    }
    for &id in &members {
        if Some(id) != slow {
            board.close(id);
        }
    }
    let mut closed = 0;
    run_until(&mut board, |_, event| {
        if let Event::Ended { id, end } = event {
            if Some(id) == slow {
                slow_end = Some(end);
            } else {
                closed += 1;
            }
        }
        closed == MEMBERS && slow_end.is_some()
    });
    assert!(matches!(
        slow_end,
        Some(End::Failed(Error::SlowConsumer { .. }))
    ));
    assert_eq!(board.stats().slow_consumers, 1);
    for reader in readers {
        assert_eq!(reader.join(), MESSAGES, "every reader got every message");
    }
    assert!(started.elapsed() < T, "{:?}", started.elapsed());
    // The stuck member's connection was reset.
    stuck.set_read_timeout(Some(T)).unwrap();
    let mut sink = Vec::new();
    assert!(
        stuck.read_to_end(&mut sink).is_err(),
        "a reset, not a clean end"
    );
}

#[test]
fn stats_count_the_bytes_each_way() {
    let config = config();
    let mut board = Switchboard::with_config(&config).unwrap();
    let listener = board.listen("tcp://127.0.0.1:0").unwrap();
    let addr = board.listener_addr(listener).unwrap();
    let mut client = std::net::TcpStream::connect(addr.socket_addr().unwrap()).unwrap();
    client.set_read_timeout(Some(T)).unwrap();
    client.write_all(&frame(&[7u8; 100])).unwrap();
    run_until(&mut board, |board, event| match event {
        Event::Message { id, message } => {
            board.send(id, &message).unwrap();
            true
        }
        _ => false,
    });
    board.flush();
    let mut back = [0u8; 104];
    client.read_exact(&mut back).unwrap();
    assert_eq!(back.to_vec(), frame(&[7u8; 100]));
    let stats = board.stats();
    assert_eq!((stats.bytes_in, stats.bytes_out), (104, 104), "{stats:?}");
    assert_eq!((stats.received, stats.sent), (1, 1), "{stats:?}");
    assert_eq!(stats.handshake_failures, 0);
}

#[test]
fn try_send_lets_the_caller_decide_and_says_when_it_drained() {
    let config = config().with_max_backlog(16 * 1024);
    let (mut board, addr) = board_on_tcp(&config);
    let mut raw = raw_client(addr);
    let id = accepted(&mut board);
    // Fill the socket's buffers and the outbox.
    let mut full = false;
    for _ in 0..100_000 {
        if !board.try_send(id, [1u8; 1000]).unwrap() {
            full = true;
            break;
        }
        let mut events = Events::new();
        board.wait(&mut events, Some(Duration::ZERO)).unwrap();
    }
    assert!(full, "the outbox never filled");
    assert!(board.queued(id).unwrap() <= 16 * 1024);
    // The conversation goes on; once the peer reads, it drains.
    let reader = spawn(move || {
        let mut buf = vec![0u8; 1 << 16];
        while raw.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
    });
    let mut drained = false;
    run_until(&mut board, |_, event| {
        drained |= matches!(event, Event::Drained { id: i } if i == id);
        drained
    });
    assert!(board.try_send(id, "room again").unwrap());
    board.abort(id);
    reader.join();
}

#[test]
fn frames_sliced_into_single_bytes_arrive_whole_across_many_wakeups() {
    let config = config();
    let (url, _ends) = board_echo("tcp://127.0.0.1:0", &config);
    let target = url
        .parse::<converse::Addr>()
        .unwrap()
        .socket_addr()
        .unwrap();
    let proxy = TcpProxy::start(target, TcpFault::Slice { max: 3 });
    let mut c = client(proxy.addr, &config);
    for i in 0..200usize {
        let msg: Vec<u8> = (0..(i * 37) % 900).map(|j| (i + j) as u8).collect();
        c.send(&msg).unwrap();
        assert_eq!(c.recv().unwrap().unwrap(), msg, "message {i}");
    }
    c.close().unwrap();
}

#[test]
fn udp_peers_silent_for_the_idle_timeout_end() {
    let config = config().with_idle_timeout(Some(Duration::from_millis(200)));
    let (mut board, addr) = board_on(&config, "udp://127.0.0.1:0");
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"one", addr).unwrap();
    let mut seen = Vec::new();
    let started = Instant::now();
    run_until(&mut board, |_, event| {
        let ended = matches!(event, Event::Ended { end: End::Idle, .. });
        seen.push(format!("{event:?}"));
        ended
    });
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    assert!(seen[0].starts_with("Accepted"), "{seen:?}");
    assert!(seen[1].starts_with("Message"), "{seen:?}");
    assert_eq!(seen.len(), 3, "{seen:?}");
    // The same source again: a new conversation.
    s.send_to(b"again", addr).unwrap();
    let mut accepted = false;
    run_until(&mut board, |_, event| {
        accepted |= matches!(event, Event::Accepted { .. });
        accepted
    });
}

#[test]
fn a_thousand_conversations_at_once() {
    const N: usize = 1000;
    let config = config().with_backlog(1024);
    let (mut board, addr) = board_on_tcp(&config);
    let (done_tx, done) = std::sync::mpsc::channel();
    let clients = spawn(move || {
        let mut conns: Vec<std::net::TcpStream> = (0..N).map(|_| raw_client(addr)).collect();
        for (i, c) in conns.iter_mut().enumerate() {
            write_all(c, &frame(format!("{i}").as_bytes()));
        }
        for (i, c) in conns.iter_mut().enumerate() {
            let mut got = vec![0u8; 4 + format!("{i}!").len()];
            c.read_exact(&mut got).unwrap();
            assert_eq!(&got[4..], format!("{i}!").as_bytes());
        }
        done_tx.send(()).unwrap();
        conns
    });
    let started = Instant::now();
    let mut answered = 0;
    run_until(&mut board, |board, event| {
        if let Event::Message { id, message } = event {
            let mut reply = message.to_vec();
            reply.push(b'!');
            board.send(id, reply).unwrap();
            answered += 1;
        }
        answered == N
    });
    // Keep serving until every client has its answer.
    let mut events = Events::new();
    while done.try_recv().is_err() {
        assert!(started.elapsed() < 2 * T);
        board
            .wait(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
    }
    let conns = clients.join();
    assert_eq!(board.stats().conversations, N);
    drop(conns);
    let mut ended = 0;
    run_until(&mut board, |_, event| {
        ended += usize::from(matches!(event, Event::Ended { end: End::Peer, .. }));
        ended == N
    });
    assert!(started.elapsed() < T, "{:?}", started.elapsed());
}

#[test]
fn other_threads_send_close_and_hand_over_through_a_handle() {
    let config = config();
    let echo = Echo::tcp(&config);
    let mut board = Switchboard::with_config(&config).unwrap();
    let handle = board.handle();
    let t = spawn(move || {
        handle.adopt(Tcp::connect_with(echo.addr(), &config).unwrap());
        handle
    });
    let handle = t.join();
    let mut id = None;
    run_until(&mut board, |_, event| {
        if let Event::Adopted { id: i } = event {
            id = Some(i);
        }
        id.is_some()
    });
    let id = id.unwrap();
    let h = handle.clone();
    spawn(move || h.send(id, "from another thread")).join();
    let mut heard = false;
    run_until(&mut board, |_, event| {
        heard |= matches!(event, Event::Message { ref message, .. } if &message[..] == b"from another thread");
        heard
    });
    handle.close(id);
    let mut end = None;
    run_until(&mut board, |_, event| {
        if let Event::Ended { end: e, .. } = event {
            end = Some(e);
        }
        end.is_some()
    });
    assert!(
        matches!(end, Some(End::Closed(Delivery::Confirmed))),
        "{end:?}"
    );
    // A wake with nothing to do returns at once.
    let started = Instant::now();
    handle.wake();
    let mut events = Events::new();
    board.wait(&mut events, Some(T)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn workers_answer_for_the_serving_thread() {
    let config = config();
    let mut board = Switchboard::with_config(&config).unwrap();
    let listener = board.listen("tcp://127.0.0.1:0").unwrap();
    let url = board.listener_addr(listener).unwrap().to_string();
    let handle = board.handle();
    let server = spawn(move || {
        serve(board, 3, |handle, event| {
            if let Event::Message { id, message } = event {
                // Slow work, off the serving thread.
                std::thread::sleep(Duration::from_millis(5));
                let mut reply = b"done: ".to_vec();
                reply.extend_from_slice(&message);
                handle.send(id, reply);
            }
        })
    });
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let url = url.clone();
            spawn(move || {
                let mut c = converse::connect_with(&url, &common::config()).unwrap();
                for j in 0..10 {
                    c.send(format!("{i}.{j}")).unwrap();
                    assert_eq!(c.recv_text().unwrap().unwrap(), format!("done: {i}.{j}"));
                }
                c.close().unwrap();
            })
        })
        .collect();
    for c in clients {
        c.join();
    }
    handle.shutdown();
    server.join().unwrap();
}

#[test]
fn a_shutdown_closes_everything_within_the_linger_time() {
    let linger = Duration::from_millis(300);
    let config = config().with_linger(linger);
    let (mut board, addr) = board_on_tcp(&config);
    // One peer ends when it sees our end; one never does.
    let mut polite = raw_client(addr);
    let _silent = raw_client(addr);
    let mut accepted = Vec::new();
    run_until(&mut board, |_, event| {
        if let Event::Accepted { id, .. } = event {
            accepted.push(id);
        }
        accepted.len() == 2
    });
    for &id in &accepted {
        board.send(id, "goodbye").unwrap();
    }
    let polite = spawn(move || {
        let got = read_to_end(&mut polite).unwrap();
        assert_eq!(got, frame(b"goodbye"));
        drop(polite); // our end, after theirs
    });
    let started = Instant::now();
    board.shutdown();
    let mut ends = Vec::new();
    run_until(&mut board, |_, event| {
        if let Event::Ended { end, .. } = event {
            ends.push(format!("{end:?}"));
        }
        ends.len() == 2
    });
    polite.join();
    ends.sort();
    assert_eq!(ends, vec!["Closed(Confirmed)", "Closed(Unknown)"]);
    assert!(started.elapsed() < linger + Duration::from_secs(2));
    assert!(board.is_empty());
}

/// The same exchanges against a blocking server and a switchboard give the
/// same transcript: sizes at every edge, empty messages, invalid UTF-8, a
/// message over the limit ending the conversation.
#[test]
fn the_switchboard_and_the_blocking_api_give_the_same_results() {
    let config = config().with_max_message_len(70_000);
    let blocking = Echo::tcp(&config);
    let (board_url, _ends) = board_echo("tcp://127.0.0.1:0", &config);
    let transcript = |url: &str| -> Vec<String> {
        let mut c = converse::connect_with(url, &config).unwrap();
        let mut out = Vec::new();
        for size in [0usize, 1, 2, 255, 256, 65_535, 65_536, 70_000] {
            c.send(vec![9u8; size]).unwrap();
            out.push(format!("{:?}", c.recv().unwrap().map(|m| m.len())));
        }
        c.send([0xc3, 0x28]).unwrap();
        out.push(format!("{:?}", c.recv_text().map_err(|e| e.to_string())));
        let (mut tx, mut rx) = c.split();
        // Over the server's limit: raw bytes, since ours refuses to send it.
        tx.inner()
            .socket()
            .unwrap()
            .send(&frame(&vec![0u8; 70_001]))
            .unwrap();
        out.push(format!(
            "{:?}",
            rx.recv()
                .map(|m| m.map(|m| m.len()))
                .map_err(|e| e.to_string().replace(url, "<server>"))
        ));
        out
    };
    assert_eq!(transcript(&blocking.url), transcript(&board_url));
}

#[test]
fn closing_an_id_that_names_nothing_does_nothing() {
    let mut board = Switchboard::new().unwrap();
    let listener = board.listen("tcp://127.0.0.1:0").unwrap();
    let addr = board
        .listener_addr(listener)
        .unwrap()
        .socket_addr()
        .unwrap();
    let mut c = raw_client(addr);
    let id = accepted(&mut board);
    board.abort(id);
    let mut ended = false;
    run_until(&mut board, |_, event| {
        ended |= matches!(
            event,
            Event::Ended {
                end: End::Aborted,
                ..
            }
        );
        ended
    });
    board.close(id);
    assert!(matches!(board.send(id, "x"), Err(Error::Closed)));
    assert!(board.peer_addr(id).is_none());
    c.set_read_timeout(Some(T)).unwrap();
    let mut buf = [0u8; 4];
    assert!(c.read(&mut buf).is_err(), "aborted: a reset");
    let _ = c.write(b"");
}

#[test]
fn an_oversize_datagram_is_lost_and_the_conversation_goes_on() {
    let config = config().with_max_message_len(100);
    let (mut board, addr) = board_on(&config, "udp://127.0.0.1:0");
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.send_to(b"first", addr).unwrap();
    s.send_to(&[0u8; 101], addr).unwrap();
    s.send_to(b"third", addr).unwrap();
    let mut seen = Vec::new();
    run_until(&mut board, |_, event| {
        match event {
            Event::Message { message, .. } => {
                seen.push(String::from_utf8(message.to_vec()).unwrap())
            }
            Event::Lost {
                error: Error::Truncated { max, .. },
                ..
            } => seen.push(format!("lost (limit {max})")),
            _ => {}
        }
        seen.len() == 3
    });
    assert_eq!(seen, vec!["first", "lost (limit 100)", "third"]);
}

#[test]
fn a_paused_conversation_pushes_back_on_its_peer_and_loses_nothing() {
    let config = config();
    let (mut board, addr) = board_on_tcp(&config);
    let mut raw = raw_client(addr);
    write_all(&mut raw, &frame(b"first"));
    let mut id = None;
    run_until(&mut board, |_, event| {
        if let Event::Message { id: i, message } = event {
            assert_eq!(&message[..], b"first");
            id = Some(i);
        }
        id.is_some()
    });
    let id = id.unwrap();
    board.pause(id);
    assert!(board.is_paused(id));
    // The peer writes until the kernel's buffers are full: nothing of it
    // is read meanwhile, and its writes are made to wait.
    raw.set_nonblocking(true).unwrap();
    let message = [7u8; 1000];
    let framed = frame(&message);
    let mut sent = 0usize;
    let mut partial = 0usize;
    let mut events = Events::new();
    let until = Instant::now() + T;
    'fill: while Instant::now() < until {
        for _ in 0..64 {
            match raw.write(&framed[partial..]) {
                Ok(n) => {
                    partial += n;
                    if partial == framed.len() {
                        partial = 0;
                        sent += 1;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break 'fill,
                Err(e) => panic!("{e}"),
            }
        }
        board.wait(&mut events, Some(Duration::ZERO)).unwrap();
        for event in events.drain() {
            assert!(
                !matches!(event, Event::Message { .. }),
                "a paused conversation delivered {event:?}"
            );
        }
    }
    assert!(
        Instant::now() < until,
        "the peer was never pushed back ({sent} messages taken)"
    );
    assert!(sent > 0);
    // The message cut in the middle is finished while still paused: it
    // waits in the socket with the rest.
    raw.set_nonblocking(false).unwrap();
    let rest = framed[partial..].to_vec();
    let writer = (partial > 0).then(|| {
        sent += 1;
        let mut w = raw.try_clone().unwrap();
        spawn(move || w.write_all(&rest).unwrap())
    });
    board.resume(id);
    assert!(!board.is_paused(id));
    let mut got = 0usize;
    run_until(&mut board, |_, event| {
        if let Event::Message { id: i, message: m } = event {
            assert_eq!(i, id);
            assert_eq!(&m[..], &message[..]);
            got += 1;
        }
        got == sent
    });
    if let Some(writer) = writer {
        writer.join();
    }
    board.abort(id);
}

#[test]
fn a_message_under_way_is_not_failed_for_the_time_it_was_paused() {
    let config = config().with_message_deadline(Duration::from_secs(1));
    let (mut board, addr) = board_on_tcp(&config);
    let mut raw = raw_client(addr);
    write_all(&mut raw, &frame(b"hello"));
    let mut id = None;
    run_until(&mut board, |_, event| {
        if let Event::Message { id: i, .. } = event {
            id = Some(i);
        }
        id.is_some()
    });
    let id = id.unwrap();
    // Half a message, read; then paused for longer than the deadline,
    // while the rest waits in the socket.
    let whole = frame(b"a message in two halves");
    write_all(&mut raw, &whole[..10]);
    let mut events = Events::new();
    let until = Instant::now() + T;
    while board.queued(id).is_some() && Instant::now() < until {
        board
            .wait(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
        assert!(events.is_empty(), "{:?}", events.drain().next());
        // Read once the half has been taken in (the stats count it).
        if board.stats().bytes_in >= (frame(b"hello").len() + 10) as u64 {
            break;
        }
    }
    board.pause(id);
    let paused = Instant::now();
    while paused.elapsed() < Duration::from_millis(1500) {
        board
            .wait(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        if let Some(event) = events.drain().next() {
            panic!("while paused: {event:?}");
        }
    }
    // Resumed past the deadline counted from its first byte: the pause
    // does not count, so the rest may still come.
    board.resume(id);
    for _ in 0..3 {
        board
            .wait(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        if let Some(event) = events.drain().next() {
            panic!("just resumed: {event:?}");
        }
    }
    write_all(&mut raw, &whole[10..]);
    let mut got = None;
    run_until(&mut board, |_, event| match event {
        Event::Message { message, .. } => {
            got = Some(message);
            true
        }
        Event::Ended { end, .. } => panic!("ended: {end:?}"),
        _ => false,
    });
    assert_eq!(&got.unwrap()[..], b"a message in two halves");
    board.abort(id);
}

#[test]
fn a_paused_udp_peer_stays_and_its_datagrams_are_counted_as_dropped() {
    let config = config().with_idle_timeout(Some(Duration::from_secs(60)));
    let (mut board, addr) = board_on(&config, "udp://127.0.0.1:0");
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.send_to(b"one", addr).unwrap();
    let mut id = None;
    run_until(&mut board, |_, event| {
        if let Event::Message { id: i, .. } = event {
            id = Some(i);
        }
        id.is_some()
    });
    let id = id.unwrap();
    board.pause(id);
    // Loopback UDP may lose datagrams: send until some are counted.
    let mut events = Events::new();
    let until = Instant::now() + T;
    while board.stats().paused_drops == 0 && Instant::now() < until {
        peer.send_to(b"dropped", addr).unwrap();
        board
            .wait(&mut events, Some(Duration::from_millis(20)))
            .unwrap();
        for event in events.drain() {
            assert!(
                !matches!(event, Event::Message { .. }),
                "a paused peer delivered {event:?}"
            );
        }
    }
    assert!(board.stats().paused_drops > 0);
    board.resume(id);
    peer.send_to(b"again", addr).unwrap();
    let mut again = false;
    run_until(&mut board, |_, event| {
        if let Event::Message { id: i, message } = event {
            // The same peer: it was never forgotten.
            assert_eq!(i, id);
            again = &message[..] == b"again";
        }
        again
    });
}

/// Every unfinished message is within the largest message's bound, and
/// their sum within the switchboard's memory budget: the ones holding the
/// most are ended, and an honest peer is served meanwhile.
#[test]
fn unfinished_messages_together_stay_within_the_memory_budget() {
    const MAX: usize = 1 << 20;
    const BUDGET: usize = 4 << 20;
    let config = config()
        .with_max_message_len(MAX)
        .with_memory_budget(BUDGET)
        .with_backlog(64);
    let (mut board, addr) = board_on_tcp(&config);
    // Eight peers each declare a whole message and send most of it:
    // 7 MiB in all, each within its own bound.
    let mut hostile = Vec::new();
    for _ in 0..8 {
        let mut raw = raw_client(addr);
        write_all(&mut raw, &(MAX as u32).to_be_bytes());
        hostile.push(raw);
    }
    let part = vec![0x55u8; 7 * MAX / 8];
    let writers: Vec<_> = hostile
        .iter()
        .map(|raw| {
            let (mut w, part) = (raw.try_clone().unwrap(), part.clone());
            spawn(move || {
                let _ = w.write_all(&part); // reset if ended
            })
        })
        .collect();
    let mut over = 0;
    let mut most = 0;
    run_until(&mut board, |board, event| {
        most = most.max(board.stats().held);
        match event {
            Event::Ended {
                end: End::Failed(Error::OverBudget { held, budget, .. }),
                ..
            } => {
                assert_eq!(budget, BUDGET as u64);
                assert!(held > 0 && held <= MAX as u64);
                over += 1;
            }
            Event::Ended { end, .. } => panic!("{end:?}"),
            _ => {}
        }
        // Seven eighths of a MiB each: four fit the budget, and so at
        // least four are ended once all eight have sent.
        over >= 4
    });
    for w in writers {
        w.join();
    }
    let stats = board.stats();
    assert_eq!(stats.over_budget, over);
    // Past the budget by one turn's read at most.
    assert!(most <= BUDGET + 256 * 1024, "{most} held at most");
    assert!(stats.held <= BUDGET, "{} held", stats.held);
    // An honest peer is served meanwhile.
    let mut honest = raw_client(addr);
    write_all(&mut honest, &frame(b"still here"));
    run_until(&mut board, |board, event| {
        if let Event::Message { id, message } = event {
            assert_eq!(&message[..], b"still here");
            board.send(id, message).unwrap();
            return true;
        }
        false
    });
    board.flush();
    let mut reply = vec![0u8; frame(b"still here").len()];
    honest.read_exact(&mut reply).unwrap();
    assert_eq!(reply, frame(b"still here"));
}

/// Outboxes count against the budget too: a send that would pass it ends
/// the conversation holding the most (a peer that does not read), not the
/// one being sent to if it holds less.
#[test]
fn a_send_past_the_memory_budget_ends_the_largest_holder() {
    const BUDGET: usize = 2 << 20;
    let config = config()
        .with_max_message_len(256 * 1024)
        .with_max_backlog(BUDGET)
        .with_memory_budget(BUDGET);
    let (mut board, addr) = board_on_tcp(&config);
    let _stuck = raw_client(addr);
    let stuck = accepted(&mut board);
    let mut other = raw_client(addr);
    let other_id = accepted(&mut board);
    // The stuck peer never reads: its outbox grows until the budget is
    // reached.
    let chunk = vec![1u8; 200 * 1024];
    let mut events = Events::new();
    let mut sent = 0;
    while board.stats().held + chunk.len() <= BUDGET {
        board.send(stuck, &chunk).unwrap();
        board.wait(&mut events, Some(Duration::ZERO)).unwrap();
        sent += 1;
        assert!(sent < 1000, "the stuck peer's outbox never grew");
    }
    assert!(board.queued(stuck).unwrap() > BUDGET / 2);
    // A message to the other one does not fit: the stuck one goes.
    board.send(other_id, &chunk).unwrap();
    let mut ended = false;
    run_until(&mut board, |_, event| {
        if let Event::Ended { id, end } = event {
            assert_eq!(id, stuck);
            assert!(
                matches!(end, End::Failed(Error::OverBudget { .. })),
                "{end:?}"
            );
            ended = true;
        }
        ended
    });
    assert_eq!(board.stats().over_budget, 1);
    // The other one gets its message.
    let mut got = vec![0u8; frame(&chunk).len()];
    let reader = spawn(move || {
        other.read_exact(&mut got).unwrap();
        got
    });
    let until = Instant::now() + T;
    let mut events = Events::new();
    while board.queued(other_id) != Some(0) {
        assert!(Instant::now() < until, "never written");
        board
            .wait(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
    }
    assert_eq!(reader.join(), frame(&chunk));
}

#[test]
fn a_memory_budget_below_the_largest_message_is_refused() {
    let config = config()
        .with_max_message_len(1 << 20)
        .with_memory_budget((1 << 20) - 1);
    match Switchboard::with_config(&config) {
        Err(Error::InvalidConfig(e)) => assert_eq!(e.setting, "memory_budget"),
        other => panic!("{other:?}"),
    }
    let fits = config.with_memory_budget(1 << 20);
    assert!(Switchboard::with_config(&fits).is_ok());
}

#[test]
fn written_counts_what_reached_the_socket() {
    let (mut board, addr) = board_on_tcp(&config());
    let mut raw = raw_client(addr);
    let id = accepted(&mut board);
    assert_eq!(board.written(id), Some(0));
    board.send(id, "twelve bytes").unwrap();
    board.flush();
    assert_eq!(board.queued(id), Some(0));
    assert_eq!(board.written(id), Some(frame(b"twelve bytes").len() as u64));
    let mut got = vec![0u8; 16];
    raw.read_exact(&mut got).unwrap();
    board.abort(id);
    assert_eq!(board.written(id), None);
}
