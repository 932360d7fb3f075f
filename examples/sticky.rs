//! Sticky packets (粘包): why a byte stream needs framing.
//!
//! ```text
//! cargo run --example sticky
//! ```
//!
//! The tutorial's servers call `conn.recv(1024)` and treat what comes back as
//! one message. TCP promises bytes, not messages: three quick `send`s can
//! arrive as one `recv`. This program sends three messages back to back
//! twice, in one process: first over a raw stream (the tutorial's way: they
//! arrive stuck together), then with converse's default framing (a length
//! prefix: they arrive as three).

mod common;

use std::sync::mpsc;
use std::thread;

use clap::Parser;
use common::{main_with, say, text, Failed};
use converse::codec::Framing;
use converse::Config;

/// Three messages sent back to back, over a raw stream and a framed one.
#[derive(Parser)]
struct Args {}

const MESSAGES: [&str; 3] = ["hello", "world", "!"];

/// Sends the three messages, and reports what the receiving side got.
fn run(framing: Framing) -> converse::Result<Vec<String>> {
    let config = Config::new().with_framing(framing);
    let listener = converse::listen_with("tcp://127.0.0.1:0", &config)?;
    let url = listener.local_addr()?.to_string();
    let (sent_tx, sent) = mpsc::channel();
    let server = thread::spawn(move || -> converse::Result<Vec<String>> {
        let mut conversation = listener.accept()?;
        // Read only once everything was sent, as a busy server would.
        let _ = sent.recv();
        let mut received = Vec::new();
        while let Some(message) = conversation.recv()? {
            received.push(text(&message));
        }
        conversation.close()?;
        Ok(received)
    });
    let mut client = converse::connect_with(&url, &config)?;
    for message in MESSAGES {
        client.send_text(message)?;
    }
    // The end of our stream follows the three messages.
    let (tx, mut rx) = client.split();
    tx.close()?;
    let _ = sent_tx.send(());
    while rx.recv()?.is_some() {}
    server.join().expect("the server thread panicked")
}

fn main() {
    Args::parse();
    main_with(|| {
        say(format!(
            "sent, back to back: {}",
            quoted(&MESSAGES.map(String::from))
        ));
        for (name, framing) in [
            ("raw stream (the tutorial's recv(1024))", Framing::Raw),
            ("length-prefixed (converse's default)", Framing::default()),
        ] {
            let received = run(framing).map_err(|e| Failed::new(name, e))?;
            say(format!(
                "{name}: {} send(s) arrived as {} receive(s): {}",
                MESSAGES.len(),
                received.len(),
                quoted(&received)
            ));
        }
        Ok(())
    });
}

fn quoted(messages: &[String]) -> String {
    messages
        .iter()
        .map(|m| format!("{m:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}
