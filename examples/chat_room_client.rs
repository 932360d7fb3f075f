//! A participant in the multi-person chat (the tutorial's `udp_client` chat):
//! says its name, then sends each line of stdin while printing every message
//! it receives. At the end of stdin it says `bye` and exits.
//!
//! ```text
//! cargo run --example chat_room_client -- --name 明威
//! cargo run --example chat_room_client -- --name alice --transport udp
//! ```
//!
//! What converse changes: sending and receiving happen at once, on the two
//! halves of one conversation, without a lock between them; every message
//! printed is exactly one message sent by the room.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use clap::Parser;
use common::{fail, note, one_line, say, text, Endpoint, Input, TransportKind};

/// Joins a chat_room under a name.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: Endpoint,
    /// The name the others see.
    #[arg(long)]
    name: String,
}

fn main() {
    let args = Args::parse();
    let url = args.endpoint.url("127.0.0.1:8091");
    let mut conversation = common::connect(&url, &args.endpoint.config());
    if let Err(e) = conversation.send_text(&args.name) {
        fail(&url, &e);
    }
    let (mut tx, mut rx) = conversation.split().unwrap_or_else(|e| fail(&url, &e));

    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        loop {
            match rx.recv() {
                Ok(Some(message)) => say(text(&message)),
                Ok(None) => break,
                Err(e @ converse::Error::Truncated { .. }) => note(one_line(&e)),
                Err(e) => {
                    note(one_line(&e));
                    break;
                }
            }
        }
        let _ = done_tx.send(());
    });

    let mut input = Input::new("");
    while let Some(line) = input.line() {
        if let Err(e) = tx.send_text(&line) {
            fail(&url, &e);
        }
        if line == "bye" {
            break;
        }
    }
    if let Err(e) = tx.send_text("bye") {
        fail(&url, &e);
    }
    if args.endpoint.transport == TransportKind::Tcp {
        // A graceful end: the room closes its side after our `bye`; wait
        // for that (briefly), so nothing in flight is reset.
        let _ = tx.close();
        let _ = done.recv_timeout(Duration::from_secs(3));
    }
}
