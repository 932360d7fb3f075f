//! Writing to a peer that has gone returns an error; no `SIGPIPE` is raised.
//!
//! Rust programs ignore `SIGPIPE` by default, so a plain write would not kill
//! this test process. To prove the library never raises the signal at all
//! (programs embedding it may have `SIGPIPE` at its default, which kills),
//! this test installs a handler that counts `SIGPIPE`s, shows that a plain
//! `writev` to a dead connection does raise one, and that the library's
//! sends do not. It lives in a file of its own: the handler is process-wide.
#![cfg(unix)]

mod common;

use std::io::{IoSlice, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::*;
use converse::Conversation;
use converse::Error;

/// Sends on `c` until the OS reports the peer gone (bounded).
fn send_until_broken(c: &mut converse::Conversation<converse::Tcp>) -> Error {
    for _ in 0..1000 {
        if let Err(e) = c.send("are you there?") {
            return e;
        }
        std::thread::yield_now();
    }
    panic!("1000 sends to a closed peer all succeeded");
}

#[test]
fn writing_to_a_closed_peer_is_broken_pipe_not_sigpipe() {
    let raised = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGPIPE, Arc::clone(&raised)).unwrap();

    let config = config();
    let (listener, addr) = listener(&config);

    // The library: several send paths, none raises SIGPIPE.
    for path in ["send", "feed+flush", "large"] {
        let mut c = client(addr, &config);
        drop(Conversation::new(listener.accept().unwrap())); // the peer closes
        let err = match path {
            "send" => send_until_broken(&mut c),
            "feed+flush" => (0..1000)
                .find_map(|_| c.feed("x").and_then(|()| c.flush()).err())
                .expect("an error"),
            _ => (0..1000)
                .find_map(|_| c.send(vec![0u8; 300_000]).err())
                .expect("an error"),
        };
        assert!(
            matches!(
                err,
                Error::BrokenPipe { .. } | Error::ConnectionReset { .. }
            ),
            "{path}: {err:?}"
        );
        assert!(!raised.load(Ordering::SeqCst), "{path}: SIGPIPE was raised");
    }

    // The control: a plain writev to a closed peer does raise SIGPIPE, so
    // the check above can fail.
    let mut raw = raw_client(addr);
    drop(Conversation::new(listener.accept().unwrap()));
    for _ in 0..1000 {
        if raw.write_vectored(&[IoSlice::new(b"x")]).is_err() {
            break;
        }
    }
    assert!(
        raised.load(Ordering::SeqCst),
        "the control write raised no SIGPIPE"
    );
}
