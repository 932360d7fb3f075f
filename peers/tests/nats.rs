//! `nats://` conversations: against a real `nats-server` (started by the
//! tests on a free port; a missing server skips, or fails under
//! `CONVERSE_REQUIRE_ALL=1`), and against a fake hostile server.
#![cfg(feature = "nats")]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::nats::{have_nats_server, NatsServer};
use common::{config, spawn, T};
use converse::nats::NatsError;
use converse::{Config, Conversation, Error};

fn connect(url: &str) -> Conversation {
    converse::connect_with(url, &config()).expect("connect to nats-server")
}

/// Receives until a message comes, skipping nothing.
fn recv(c: &mut Conversation) -> Vec<u8> {
    c.recv().expect("recv").expect("a message").to_vec()
}

#[test]
fn publish_and_subscribe_round_trip() {
    if !have_nats_server() {
        return;
    }
    let server = NatsServer::start();
    let mut a = connect(&server.url("chat.room"));
    let mut b = connect(&server.url("chat.room"));
    let mut other = connect(&server.url("chat.other"));
    assert_eq!(a.peer_addr().unwrap().scheme(), "nats");
    // The server's default max_payload (1 MB) is the conversation's limit.
    assert_eq!(a.max_message_len(), 1024 * 1024);

    a.send("hello").unwrap();
    assert_eq!(recv(&mut b), b"hello");
    b.send("hi").unwrap();
    // a's own "x" is not echoed back to it: its next message is b's.
    a.send("x").unwrap();
    assert_eq!(recv(&mut a), b"hi");
    assert_eq!(recv(&mut b), b"x");
    // Boundaries survive, empty messages too, in order.
    for m in ["", "one", "two\r\nMSG fake 1 3\r\nabc", "three"] {
        a.send(m).unwrap();
    }
    for m in ["", "one", "two\r\nMSG fake 1 3\r\nabc", "three"] {
        assert_eq!(recv(&mut b), m.as_bytes());
    }
    // Another subject hears none of it.
    other
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(matches!(other.recv(), Err(Error::Timeout)));
    // A read timeout loses nothing.
    b.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    assert!(matches!(b.recv(), Err(Error::Timeout)));
    b.set_read_timeout(Some(T)).unwrap();
    a.send("after").unwrap();
    assert_eq!(recv(&mut b), b"after");
    // A graceful close: what was published goes out first; the server's
    // end confirms it, within the linger time.
    a.send("last").unwrap();
    assert_eq!(a.close().unwrap(), converse::Delivery::Confirmed);
    assert_eq!(recv(&mut b), b"last");
}

#[test]
fn sizes_up_to_max_payload_and_not_beyond() {
    if !have_nats_server() {
        return;
    }
    let server = NatsServer::start_with(None, "max_payload: 4096\n");
    let mut a = connect(&server.url("sizes"));
    let mut b = connect(&server.url("sizes"));
    assert_eq!(a.max_message_len(), 4096);
    let mut rng = common::Rng::new(7);
    for len in [0, 1, 100, 4095, 4096] {
        let msg = rng.bytes(len);
        a.send(&msg).unwrap();
        assert_eq!(recv(&mut b), msg, "{len} bytes");
    }
    // Over the server's limit: refused before anything is written, and
    // the conversation goes on.
    match a.send(vec![0u8; 4097]) {
        Err(Error::MessageTooLarge {
            len: 4097,
            max: 4096,
        }) => {}
        other => panic!("{other:?}"),
    }
    a.send("still here").unwrap();
    assert_eq!(recv(&mut b), b"still here");
    // Converse's own smaller limit wins.
    let small =
        converse::connect_with(&server.url("sizes"), &config().with_max_message_len(100)).unwrap();
    assert_eq!(small.max_message_len(), 100);
}

#[test]
fn queue_groups_share_the_work() {
    if !have_nats_server() {
        return;
    }
    let server = NatsServer::start();
    let url = format!("{}?queue=workers", server.url("jobs"));
    let mut w1 = connect(&url);
    let mut w2 = connect(&url);
    let mut boss = connect(&server.url("jobs"));
    for i in 0..40 {
        boss.send(format!("job {i}")).unwrap();
    }
    let mut got = Vec::new();
    let (mut n1, mut n2) = (0, 0);
    let until = Instant::now() + T;
    for w in [&mut w1, &mut w2] {
        w.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
    }
    while got.len() < 40 && Instant::now() < until {
        if let Ok(Some(m)) = w1.recv() {
            got.push(m);
            n1 += 1;
        }
        if let Ok(Some(m)) = w2.recv() {
            got.push(m);
            n2 += 1;
        }
    }
    assert_eq!(got.len(), 40, "every job once");
    got.sort();
    got.dedup();
    assert_eq!(got.len(), 40, "no job twice");
    assert!(n1 > 0 && n2 > 0, "both workers worked: {n1} and {n2}");
}

#[test]
fn credentials_come_from_the_url() {
    if !have_nats_server() {
        return;
    }
    let server = NatsServer::start_with(
        None,
        "authorization {\n user: me\n password: \"s3cret\"\n}\n",
    );
    let good = format!("nats://me:s3cret@127.0.0.1:{}/secret.room", server.port);
    let mut a = connect(&good);
    let mut b = connect(&good);
    a.send("in").unwrap();
    assert_eq!(recv(&mut b), b"in");
    for bad in [
        server.url("secret.room"),
        format!("nats://me:wrong@127.0.0.1:{}/secret.room", server.port),
    ] {
        match converse::connect_with(&bad, &config()) {
            Err(Error::Nats {
                reason: NatsError::Server(reason),
                ..
            }) => assert!(reason.contains("Authorization"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_killed_server_is_reported_and_reconnect_subscribes_anew() {
    if !have_nats_server() {
        return;
    }
    let server = NatsServer::start();
    let url = server.url("outage");
    let mut a = connect(&url);
    let mut b = connect(&url);
    a.send("before").unwrap();
    assert_eq!(recv(&mut b), b"before");

    let port = server.kill();
    // Typed, and at once: no hang.
    match b.recv() {
        Err(Error::Nats {
            reason: NatsError::Disconnected,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    match b.recv() {
        Err(Error::Nats {
            reason: NatsError::Disconnected,
            ..
        }) => {}
        other => panic!("stays down: {other:?}"),
    }
    // While the server is away, reconnecting fails, typed.
    assert!(b.reconnect().is_err());
    // A publisher finds out by its second send at the latest.
    let lost = (0..50).find_map(|_| a.send("lost").err());
    assert!(
        matches!(
            lost,
            Some(Error::Nats {
                reason: NatsError::Disconnected,
                ..
            })
        ),
        "{lost:?}"
    );

    let _server = NatsServer::start_with(Some(port), "");
    for c in [&mut a, &mut b] {
        let until = Instant::now() + T;
        while let Err(e) = c.reconnect() {
            assert!(Instant::now() < until, "no reconnect: {e}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    a.send("after").unwrap();
    assert_eq!(recv(&mut b), b"after");
    b.send("both ways").unwrap();
    assert_eq!(recv(&mut a), b"both ways");
}

#[test]
fn urls_that_are_not_nats_urls_are_refused() {
    for bad in [
        "nats://127.0.0.1:4222",
        "nats://127.0.0.1:4222/",
        "nats://127.0.0.1:4222/a b",
        "nats://127.0.0.1:4222/a..b",
        "nats://127.0.0.1:4222/a?queue=",
        "nats://127.0.0.1:4222/a?other=1",
    ] {
        match converse::connect_with(bad, &config()) {
            Err(Error::InvalidAddress(_)) => {}
            other => panic!("{bad}: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// A fake server, hostile on cue.

const INFO: &str =
    "INFO {\"server_id\":\"fake\",\"version\":\"2.9.10\",\"max_payload\":1048576,\"proto\":1}\r\n";

/// A fake server: says `INFO`, reads the client's lines until its `PING`,
/// then runs `script` on the stream.
fn fake(
    script: impl FnOnce(TcpStream, BufReader<TcpStream>) + Send + 'static,
) -> (String, common::Joiner<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://{}/chat", listener.local_addr().unwrap());
    let j = spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        s.write_all(INFO.as_bytes()).unwrap();
        let mut reader = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line.starts_with("PING") {
                break;
            }
        }
        script(s, reader);
    });
    (url, j)
}

fn handshake_done(mut s: TcpStream, bytes: &[u8]) -> TcpStream {
    s.write_all(b"PONG\r\n").unwrap();
    s.write_all(bytes).unwrap();
    s
}

fn expect_nats(result: converse::Result<Option<bytes::Bytes>>) -> NatsError {
    match result {
        Err(Error::Nats { reason, .. }) => reason,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_msg_declaring_4_gib_is_refused_from_its_line() {
    let (url, j) = fake(|s, _| {
        let mut s = handshake_done(s, b"MSG chat 1 4294967296\r\n");
        // What a real attacker would go on sending.
        let _ = s.write_all(&[b'x'; 65536]);
        let _ = s.read(&mut [0u8; 16]);
    });
    let mut c = connect(&url);
    match c.recv() {
        Err(Error::MessageTooLarge {
            len: 4294967296,
            max: 1048576,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(c.recv().is_err(), "over after that");
    drop(c);
    j.join();
}

#[test]
fn an_endless_line_is_a_protocol_error() {
    let (url, j) = fake(|s, _| {
        let mut s = handshake_done(s, b"");
        let chunk = [b'A'; 8192];
        for _ in 0..32 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let mut c = connect(&url);
    assert!(matches!(expect_nats(c.recv()), NatsError::Protocol(why) if why.contains("4096")));
    drop(c);
    j.join();
}

#[test]
fn garbage_err_and_unknown_ops_are_typed() {
    // Garbage instead of INFO.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://{}/chat", listener.local_addr().unwrap());
    let j = spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
        let _ = s.read(&mut [0u8; 64]);
    });
    match converse::connect_with(&url, &config()) {
        Err(Error::Nats {
            reason: NatsError::NotNats,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    j.join();

    // -ERR after the handshake.
    let (url, j) = fake(|s, _| {
        let mut s = handshake_done(s, b"MSG chat 1 2\r\nok\r\n-ERR 'Stale Connection'\r\n");
        let _ = s.read(&mut [0u8; 16]);
    });
    let mut c = connect(&url);
    assert_eq!(recv(&mut c), b"ok");
    assert_eq!(
        expect_nats(c.recv()),
        NatsError::Server("Stale Connection".into())
    );
    drop(c);
    j.join();

    // An unknown operation, a payload without its line end.
    for bytes in [
        &b"HELLO\r\n"[..],
        b"MSG chat 1 2\r\nokXY",
        b"HMSG chat 1 3 3\r\n\r\n\r\n",
    ] {
        let (url, j) = fake(move |s, _| {
            let mut s = handshake_done(s, bytes);
            let _ = s.read(&mut [0u8; 16]);
        });
        let mut c = connect(&url);
        assert!(matches!(expect_nats(c.recv()), NatsError::Protocol(_)));
        drop(c);
        j.join();
    }

    // -ERR instead of the PONG: connect fails with the reason.
    let (url, j) = fake(|mut s, _| {
        let _ = s.write_all(b"-ERR 'Authorization Violation'\r\n");
    });
    match converse::connect_with(&url, &config()) {
        Err(Error::Nats {
            reason: NatsError::Server(r),
            ..
        }) => assert_eq!(r, "Authorization Violation"),
        other => panic!("{other:?}"),
    }
    j.join();
}

#[test]
fn a_silent_server_times_out_the_handshake() {
    let (url, j) = fake(|_s, mut r| {
        // Never answers the PING; waits for the client to go.
        let _ = r.read(&mut [0u8; 16]);
    });
    let started = Instant::now();
    let cfg = config().with_handshake_timeout(Duration::from_millis(300));
    match converse::connect_with(&url, &cfg) {
        Err(Error::Nats {
            reason: NatsError::HandshakeTimeout,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < T);
    j.join();
}

#[test]
fn pings_are_answered_and_a_dead_server_is_found_by_pinging() {
    // The server pings; the client, waiting in recv, answers.
    let (url, j) = fake(|s, mut r| {
        let mut s = handshake_done(s, b"PING\r\n");
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "PONG\r\n");
        s.write_all(b"MSG chat 1 4\r\ndone\r\n").unwrap();
        let _ = r.read(&mut [0u8; 16]);
    });
    let mut c = connect(&url);
    assert_eq!(recv(&mut c), b"done");
    drop(c);
    j.join();

    // A server that stops answering: pinged every interval, given up after
    // two unanswered pings.
    let (url, j) = fake(|s, mut r| {
        let _s = handshake_done(s, b"");
        let mut pings = 0;
        let mut line = String::new();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            if line == "PING\r\n" {
                pings += 1;
            }
            line.clear();
        }
        assert_eq!(pings, 2, "two pings, then the client gave up");
    });
    let cfg: Config = config().with_ping_interval(Duration::from_millis(100));
    let mut c = converse::connect_with(&url, &cfg).unwrap();
    assert_eq!(expect_nats(c.recv()), NatsError::Stale);
    drop(c);
    j.join();
}

// ---------------------------------------------------------------------------
// On a switchboard.

use converse::switchboard::{End, Event, Events, Id, Switchboard};

/// Waits on `board` until `pick` finds what it wants in an event, bounded;
/// the events after it stay in `events`.
fn wait_for<R>(
    board: &mut Switchboard,
    events: &mut Events,
    mut pick: impl FnMut(Event) -> Option<R>,
) -> R {
    let until = Instant::now() + T;
    loop {
        for event in events.drain() {
            if let Some(r) = pick(event) {
                return r;
            }
        }
        assert!(Instant::now() < until, "the event never came");
        board
            .wait(events, Some(Duration::from_millis(100)))
            .unwrap();
    }
}

/// Picks the moment conversation `id` is connected.
fn connected(id: Id) -> impl FnMut(Event) -> Option<()> {
    move |event| match event {
        Event::Connected { id: of } if of == id => Some(()),
        Event::Ended { id: of, end } if of == id => panic!("ended: {end:?}"),
        _ => None,
    }
}

/// Picks the end of conversation `id`.
fn end_of(id: Id) -> impl FnMut(Event) -> Option<End> {
    move |event| match event {
        Event::Ended { id: of, end } if of == id => Some(end),
        _ => None,
    }
}

fn message_for(id: Id) -> impl FnMut(Event) -> Option<Vec<u8>> {
    move |event| match event {
        Event::Message { id: of, message } if of == id => Some(message.to_vec()),
        Event::Ended { id: of, end } if of == id => panic!("ended: {end:?}"),
        _ => None,
    }
}

#[test]
fn a_switchboard_publishes_and_subscribes_and_hears_the_server_go() {
    if !have_nats_server() {
        return;
    }
    let server = NatsServer::start_with(None, "max_payload: 16384\n");
    let mut board = Switchboard::with_config(&config()).unwrap();
    let mut events = Events::new();
    let id = board.connect(&server.url("board")).unwrap();
    let mut b = connect(&server.url("board"));
    // Sent before the connect is done: it goes out once it is.
    board.send(id, "from the board").unwrap();
    wait_for(&mut board, &mut events, connected(id));
    board.flush();
    assert_eq!(recv(&mut b), b"from the board");
    let big = vec![7u8; 16384];
    b.send("to the board").unwrap();
    b.send(&big).unwrap();
    assert_eq!(
        wait_for(&mut board, &mut events, message_for(id)),
        b"to the board"
    );
    assert_eq!(wait_for(&mut board, &mut events, message_for(id)), big);
    match board.send(id, vec![0u8; 16385]) {
        Err(Error::MessageTooLarge {
            len: 16385,
            max: 16384,
        }) => {}
        other => panic!("{other:?}"),
    }
    let port = server.kill();
    // Told, then it connects again by itself, without blocking the board.
    let error = wait_for(&mut board, &mut events, |event| match event {
        Event::Disconnected { id: of, error, .. } if of == id => Some(error),
        Event::Ended { end, .. } => panic!("ended: {end:?}"),
        _ => None,
    });
    assert!(
        matches!(
            error,
            Error::Nats {
                reason: NatsError::Disconnected,
                ..
            }
        ),
        "{error:?}"
    );
    let server = NatsServer::start_with(Some(port), "max_payload: 16384\n");
    wait_for(&mut board, &mut events, connected(id));
    // Subscribed anew: it hears what is published now.
    let mut b = connect(&server.url("board"));
    b.send("after the outage").unwrap();
    assert_eq!(
        wait_for(&mut board, &mut events, message_for(id)),
        b"after the outage"
    );
    board.send(id, "back").unwrap();
    board.flush();
    assert_eq!(recv(&mut b), b"back");
    board.close(id);
    assert!(matches!(
        wait_for(&mut board, &mut events, end_of(id)),
        End::Closed(_)
    ));
}

#[test]
fn a_switchboard_answers_pings_pings_a_quiet_server_and_gives_up_a_dead_one() {
    let (url, j) = fake(|s, mut r| {
        let mut s = handshake_done(s, b"PING\r\n");
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert_eq!(line, "PONG\r\n");
        s.write_all(b"MSG chat 1 5\r\nhello\r\n").unwrap();
        // Then silence: the client pings twice and gives up.
        let mut pings = 0;
        line.clear();
        while r.read_line(&mut line).unwrap_or(0) > 0 {
            if line == "PING\r\n" {
                pings += 1;
            }
            line.clear();
        }
        assert_eq!(pings, 2);
    });
    let cfg = config().with_ping_interval(Duration::from_millis(100));
    let mut board = Switchboard::with_config(&cfg).unwrap();
    let mut events = Events::new();
    let id = board.connect(&url).unwrap();
    assert_eq!(wait_for(&mut board, &mut events, message_for(id)), b"hello");
    // Given up: told, and it connects again by itself, backing off.
    let (error, retry_in) = wait_for(&mut board, &mut events, |event| match event {
        Event::Disconnected {
            id: of,
            error,
            retry_in,
        } if of == id => Some((error, retry_in)),
        Event::Ended { end, .. } => panic!("ended: {end:?}"),
        _ => None,
    });
    assert!(
        matches!(
            error,
            Error::Nats {
                reason: NatsError::Stale,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(retry_in, Duration::from_millis(250));
    j.join();
    // Closed while it waits to connect again: ended, once.
    board.close(id);
    assert!(matches!(
        wait_for(&mut board, &mut events, end_of(id)),
        End::Closed(_)
    ));
    assert!(board.is_empty());
}

/// A server that requires TLS gets it (after its plain INFO, as NATS
/// does), verified against the CA the config trusts; a client that does
/// not trust it is refused with the reason.
#[cfg(feature = "tls")]
#[test]
fn a_server_that_requires_tls_gets_it() {
    if !have_nats_server() {
        return;
    }
    let kit = common::tls::kit();
    let cert = common::SocketPath::new("nats-cert");
    let key = common::SocketPath::new("nats-key");
    std::fs::write(&cert.0, &kit.server.cert_pem).unwrap();
    std::fs::write(&key.0, &kit.server.key_pem).unwrap();
    let conf = format!(
        "tls {{\n cert_file: \"{}\"\n key_file: \"{}\"\n}}\n",
        cert.0.display(),
        key.0.display()
    );
    let server = NatsServer::start_with(None, &conf);
    let url = server.url("secure.room");
    let tls = config().with_tls_client(common::tls::client());
    let mut a = converse::connect_with(&url, &tls).unwrap();
    let mut b = converse::connect_with(&url, &tls).unwrap();
    a.send("encrypted").unwrap();
    assert_eq!(recv(&mut b), b"encrypted");
    // On a switchboard too.
    let mut board = Switchboard::with_config(&tls).unwrap();
    let mut events = Events::new();
    let id = board.connect(&url).unwrap();
    board.send(id, "from the board, encrypted").unwrap();
    wait_for(&mut board, &mut events, connected(id));
    board.flush();
    assert_eq!(recv(&mut b), b"from the board, encrypted");
    a.send("to the board").unwrap();
    assert_eq!(
        wait_for(&mut board, &mut events, message_for(id)),
        b"to the board"
    );
    // The system's roots do not know this CA.
    match converse::connect_with(&url, &config()) {
        Err(Error::Tls { reason, .. }) => {
            assert!(reason.to_string().contains("issuer"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

/// A message that came with the server's first `PONG` (read by the
/// handshake, before the switchboard took over) is handed out at once,
/// without waiting for more bytes.
#[test]
fn a_message_read_during_the_handshake_is_not_held_back() {
    let (url, j) = fake(|mut s, mut r| {
        // In one write, so that the handshake's read takes both.
        s.write_all(b"PONG\r\nMSG chat 1 5\r\nearly\r\n").unwrap();
        // Then silence until the client goes.
        let _ = r.read(&mut [0u8; 16]);
    });
    let mut board = Switchboard::with_config(&config()).unwrap();
    let mut events = Events::new();
    let id = board.connect(&url).unwrap();
    assert_eq!(wait_for(&mut board, &mut events, message_for(id)), b"early");
    drop(board);
    j.join();
}

/// A server that says `-ERR` and closes at once: the switchboard reports
/// the server's reason, as the blocking API does, not a lost connection.
#[test]
fn an_err_then_the_end_is_reported_with_the_servers_reason() {
    let (url, j) = fake(|s, _| {
        drop(handshake_done(
            s,
            b"-ERR 'Maximum Connections Exceeded'\r\n",
        ));
    });
    let mut board = Switchboard::with_config(&config()).unwrap();
    let mut events = Events::new();
    // The connect does not wait: the handshake goes on while the board
    // waits.
    let id = board.connect(&url).unwrap();
    let end = wait_for(&mut board, &mut events, end_of(id));
    match end {
        End::Failed(Error::Nats {
            reason: NatsError::Server(reason),
            ..
        }) => assert_eq!(reason, "Maximum Connections Exceeded"),
        other => panic!("{other:?}"),
    }
    j.join();
}

#[test]
fn a_hostile_server_costs_a_switchboard_one_conversation() {
    let hostile: [&[u8]; 4] = [
        b"MSG chat 1 4294967296\r\n",
        &[b'A'; 9000],
        b"-ERR 'Unknown Protocol Operation'\r\n",
        b"MSG chat 1 3\r\nabcXY",
    ];
    let mut board = Switchboard::with_config(&config()).unwrap();
    let mut events = Events::new();
    for bytes in hostile {
        let (url, j) = fake(move |s, _| {
            let mut s = handshake_done(s, bytes);
            let _ = s.read(&mut [0u8; 16]);
        });
        let id = board.connect(&url).unwrap();
        let end = wait_for(&mut board, &mut events, |event| match event {
            Event::Ended { id: of, end } if of == id => Some(end),
            Event::Message { id: of, .. } if of == id => panic!("a message out of garbage"),
            _ => None,
        });
        match end {
            End::Failed(Error::MessageTooLarge {
                len: 4294967296, ..
            }) => {}
            End::Failed(Error::InvalidFrame { .. }) => {}
            End::Failed(Error::Nats {
                reason: NatsError::Server(_) | NatsError::Protocol(_),
                ..
            }) => {}
            other => panic!(
                "{:?}: {other:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
            ),
        }
        j.join();
    }
    assert!(board.is_empty());
}

/// Another client on the same subject: async-nats hears converse, and
/// converse hears async-nats.
#[test]
fn async_nats_and_converse_on_one_subject() {
    use futures_util::StreamExt;
    if !have_nats_server() {
        return;
    }
    let server = NatsServer::start();
    let mut ours = connect(&server.url("mixed"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let addr = format!("nats://127.0.0.1:{}", server.port);
    rt.block_on(async {
        let client = tokio::time::timeout(T, async_nats::connect(&addr))
            .await
            .unwrap()
            .unwrap();
        let mut sub = client.subscribe("mixed").await.unwrap();
        // async-nats's flush does not wait for the server: until its SUB
        // is in, what is published is not for it (at most once). Publish
        // until it hears one, bounded.
        let until = Instant::now() + T;
        let got = loop {
            assert!(Instant::now() < until, "async-nats never heard converse");
            ours.send("from converse").unwrap();
            if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(50), sub.next()).await {
                break m;
            }
        };
        assert_eq!(&got.payload[..], b"from converse");
        client
            .publish("mixed", bytes::Bytes::from_static(b"from async-nats"))
            .await
            .unwrap();
        client.flush().await.unwrap();
    });
    assert_eq!(recv(&mut ours), b"from async-nats");
}
