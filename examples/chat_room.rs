//! The tutorial's multi-person chat (the UDP `udp_client` chat that everyone
//! sends to one server): every participant is served at once, and what one
//! says, the others hear.
//!
//! ```text
//! cargo run --example chat_room                      # tcp://127.0.0.1:8091
//! cargo run --example chat_room -- --transport udp
//! ```
//!
//! A participant's first message is its name; every later message is relayed
//! to every other participant as `NAME: TEXT` (and printed here the same
//! way); `bye` makes the participant leave. Joins and leaves are announced to
//! the others as `* NAME joined` and `* NAME left`, and printed here too.
//! Runs until interrupted.
//!
//! What converse changes: the tutorial's servers talk to one client at a
//! time; here each participant has a thread, and the same code serves TCP and
//! UDP participants (over UDP, each source address is one participant). A
//! participant that vanishes just leaves the room. An empty message is a UDP
//! client's keepalive: it keeps the member's place, and is never relayed.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use common::{accept, main_with, note, say, seconds, text, Endpoint, Failed};
use converse::{Conversation, SendHalf};

/// A chat room: every participant hears every other.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: Endpoint,
    /// UDP: seconds of silence after which a member is gone (its client
    /// sends keepalives while it runs).
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "120")]
    idle_timeout: Duration,
}

/// The participants who have said their name, by id.
#[derive(Default)]
struct Room {
    members: Mutex<Members>,
}

/// Each participant's name and sending half, by id.
type Members = HashMap<u64, (String, SendHalf)>;

impl Room {
    /// Runs `change` on the members, then prints `line` and sends it to
    /// everyone but `from`, all under one lock: a participant joining
    /// meanwhile hears an announcement either in full or not at all, and
    /// everyone hears announcements in the order they are printed.
    fn announce(&self, from: u64, line: &str, change: impl FnOnce(&mut Members)) {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut members);
        say(line);
        for (id, (name, tx)) in members.iter_mut() {
            if *id != from {
                if let Err(e) = tx.send_text(line) {
                    note(format!("could not reach {name}: {e}"));
                }
            }
        }
    }
}

fn serve(room: &Room, id: u64, conversation: Conversation, stream: bool) -> converse::Result<()> {
    let (mut tx, mut rx) = conversation.split();
    // A participant that stops reading must not stall the room.
    tx.set_write_timeout(Some(Duration::from_secs(2)))?;
    let name = loop {
        match rx.recv()? {
            Some(name) if name.is_empty() => continue, // a keepalive
            Some(name) if &name[..] != b"bye" => break text(&name),
            _ => return Ok(()),
        }
    };
    room.announce(id, &format!("* {name} joined"), |members| {
        members.insert(id, (name.clone(), tx));
    });

    let outcome = loop {
        match rx.recv() {
            Ok(Some(message)) if &message[..] == b"bye" => break Ok(()),
            Ok(Some(message)) if message.is_empty() => {} // a keepalive
            Ok(Some(message)) => room.announce(id, &format!("{name}: {}", text(&message)), |_| {}),
            Ok(None) => break Ok(()),
            // An oversize UDP datagram: that one message is lost, not the participant.
            Err(e @ converse::Error::Truncated { .. }) => note(e),
            Err(e) => break Err(e),
        }
    };

    let mut member = None;
    room.announce(id, &format!("* {name} left"), |members| {
        member = members.remove(&id);
    });
    if let Some((_, tx)) = member {
        let _ = tx.close();
    }
    if stream {
        // Read until the participant's end, so that closing resets nothing.
        rx.set_read_timeout(Some(Duration::from_secs(2)))?;
        while let Ok(Some(_)) = rx.recv() {}
    }
    outcome
}

fn run(args: &Args) -> Result<(), Failed> {
    let url = args.endpoint.url("127.0.0.1:8091")?;
    let config = args.endpoint.config().idle_timeout(Some(args.idle_timeout));
    let listener = common::listen(&url, &config)?;
    let stream = !args.endpoint.is_udp();
    let room = Arc::new(Room::default());
    let ids = AtomicU64::new(0);
    loop {
        let conversation = accept(&listener, &url)?;
        let room = Arc::clone(&room);
        let id = ids.fetch_add(1, Ordering::Relaxed);
        std::thread::spawn(move || {
            let peer = common::peer(&conversation);
            if let Err(e) = serve(&room, id, conversation, stream) {
                note(format!("{peer}: {e}"));
            }
        });
    }
}

fn main() {
    let args = Args::parse();
    main_with(|| run(&args));
}
