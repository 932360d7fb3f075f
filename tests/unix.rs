//! Unix domain sockets: what differs from TCP and UDP, or only exists here.
//! (The shared behaviour is in the scenario suite, `tests/scenarios.rs`.)
#![cfg(unix)]

mod common;

use std::io::Write;
use std::os::unix::net::{UnixDatagram as StdDatagram, UnixStream as StdStream};
use std::time::Duration;

use common::*;
use converse::codec::Framing;
use converse::{Conversation, Error, Unix, UnixDatagram, UnixListener};

#[test]
fn every_framing_over_a_unix_stream() {
    for framing in ["length", "length16le", "varint", "lines", "length8be"] {
        let config = config().with_framing(framing.parse::<Framing>().unwrap());
        let (a, b) = Unix::pair_with(&config).unwrap();
        let (mut a, mut b) = (Conversation::new(a), Conversation::new(b));
        for msg in ["one", "", "three, a longer one"] {
            a.send(msg).unwrap();
        }
        for msg in ["one", "", "three, a longer one"] {
            assert_eq!(b.recv_text().unwrap().as_deref(), Some(msg), "{framing}");
        }
    }
}

#[test]
fn lines_from_a_plain_unix_stream_peer() {
    let (mine, mut theirs) = StdStream::pair().unwrap();
    let mut c =
        Conversation::new(Unix::from_stream(mine, &config().with_framing(Framing::Lines)).unwrap());
    theirs.write_all(b"hello\r\nworld\n").unwrap();
    assert_eq!(c.recv_text().unwrap().as_deref(), Some("hello"));
    assert_eq!(c.recv_text().unwrap().as_deref(), Some("world"));
}

#[test]
fn a_hostile_header_is_refused_without_allocating_it() {
    let (mine, mut theirs) = StdStream::pair().unwrap();
    let mut c = Conversation::new(Unix::from_stream(mine, &config()).unwrap());
    theirs.write_all(&u32::MAX.to_be_bytes()).unwrap();
    match c.recv() {
        Err(Error::MessageTooLarge { len, max }) => {
            assert_eq!((len, max), (u64::from(u32::MAX), 8 * 1024 * 1024))
        }
        other => panic!("{other:?}"),
    }
    assert!(c.receiver().buffer_capacity() < 1024 * 1024);
}

#[test]
fn the_listener_names_its_path_and_removes_its_file() {
    let path = SocketPath::new("listener");
    let listener = UnixListener::bind(&path.0).unwrap();
    assert!(path.0.exists());
    // A second bind on the same path fails, naming it.
    let err = UnixListener::bind(&path.0).unwrap_err();
    assert!(
        err.to_string().contains(&path.0.display().to_string()),
        "{err}"
    );
    drop(listener);
    assert!(!path.0.exists(), "the socket file is removed on drop");
}

#[test]
fn connecting_to_nothing_names_the_path() {
    let path = SocketPath::new("nothing");
    let err = converse::connect_with(&path.url("unix"), &config()).unwrap_err();
    assert!(
        err.to_string().contains(&path.0.display().to_string()),
        "{err}"
    );
    let err = converse::connect_with(&path.url("unixgram"), &config()).unwrap_err();
    assert!(
        err.to_string().contains(&path.0.display().to_string()),
        "{err}"
    );
}

#[test]
fn listen_over_unix_urls() {
    let path = SocketPath::new("url");
    let listener = converse::listen_with(&path.url("unix"), &config()).unwrap();
    assert_eq!(listener.local_addr().unwrap().to_string(), path.url("unix"));
    let mut client = converse::connect_with(&path.url("unix"), &config()).unwrap();
    let mut server = listener.accept().unwrap();
    client.send("over a path").unwrap();
    assert_eq!(server.recv_text().unwrap().as_deref(), Some("over a path"));
    assert!(matches!(
        converse::listen(&SocketPath::new("gram").url("unixgram")),
        Err(Error::Unsupported(_))
    ));
}

fn datagram_pair() -> (Conversation<UnixDatagram>, StdDatagram) {
    let (mine, theirs) = StdDatagram::pair().unwrap();
    theirs.set_read_timeout(Some(T)).unwrap();
    theirs.set_write_timeout(Some(T)).unwrap();
    let c = Conversation::new(UnixDatagram::from_socket(mine, &config()).unwrap());
    (c, theirs)
}

#[test]
fn a_datagram_too_large_is_refused_on_send_and_detected_on_receive() {
    let (mut c, theirs) = datagram_pair();
    assert_eq!(c.max_message_len(), UnixDatagram::MAX_DATAGRAM);
    match c.send(vec![1; UnixDatagram::MAX_DATAGRAM + 1]) {
        Err(Error::MessageTooLarge { len, max }) => {
            assert_eq!(
                (len, max),
                (
                    UnixDatagram::MAX_DATAGRAM as u64 + 1,
                    UnixDatagram::MAX_DATAGRAM as u64
                )
            )
        }
        other => panic!("{other:?}"),
    }
    // A peer that ignores the limit: detected, never cut short silently.
    theirs
        .send(&vec![2; UnixDatagram::MAX_DATAGRAM + 100])
        .unwrap();
    theirs.send(b"").unwrap();
    theirs.send(b"next").unwrap();
    assert!(matches!(c.recv(), Err(Error::Truncated { .. })));
    assert_eq!(
        c.recv().unwrap().unwrap(),
        &b""[..],
        "an empty datagram is a message"
    );
    assert_eq!(c.recv().unwrap().unwrap(), &b"next"[..]);
}

#[test]
fn a_full_receiver_makes_the_sender_wait_and_nothing_is_lost() {
    let (mine, theirs) = StdDatagram::pair().unwrap();
    let config = config().with_write_timeout(Some(Duration::from_millis(50)));
    let mut c = Conversation::new(UnixDatagram::from_socket(mine, &config).unwrap());
    // Fill the peer's queue until a send times out.
    let mut sent = 0u32;
    loop {
        match c.send(sent.to_be_bytes()) {
            Ok(()) => sent += 1,
            Err(Error::Timeout) => break,
            Err(e) => panic!("{e:?}"),
        }
        assert!(sent < 1_000_000, "the queue never filled");
    }
    theirs.set_read_timeout(Some(T)).unwrap();
    let mut buf = [0u8; 8];
    for i in 0..sent {
        let n = theirs.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &i.to_be_bytes(), "in order, none lost");
    }
    // Room again: the message that timed out was not taken, and can be sent.
    c.send(sent.to_be_bytes()).unwrap();
    let n = theirs.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], &sent.to_be_bytes());
}

#[test]
fn a_peer_gone_is_unreachable() {
    let path = SocketPath::new("gone");
    let server = StdDatagram::bind(&path.0).unwrap();
    let mut c = converse::connect_with(&path.url("unixgram"), &config()).unwrap();
    c.send("first").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(server.recv(&mut buf).unwrap(), 5);
    drop(server);
    for _ in 0..2 {
        assert!(
            matches!(c.send("after"), Err(Error::PeerUnreachable { .. })),
            "every send after the peer is gone"
        );
    }
}
