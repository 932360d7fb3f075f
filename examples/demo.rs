//! The one-command tour: `cargo run --example demo`.
//!
//! In one process it starts a server on an ephemeral port, holds a short
//! scripted conversation with it over TCP, then does the same over UDP, and
//! prints both transcripts. The script is the tutorial's hello/hi, then what
//! the tutorial could not do: three messages sent back to back arrive as
//! three (no "sticky packets"), a 100,000-byte message arrives whole over
//! TCP and is refused before sending over UDP (over its 65,507-byte limit),
//! and `bye` ends the conversation on both sides.

mod common;

use std::thread;

use clap::Parser;
use common::{main_with, say, text, Failed};
use converse::Conversation;

/// The server's side: `hi` to the first message, then a reply to each.
fn serve(mut conversation: Conversation) -> converse::Result<()> {
    if conversation.recv()?.is_none() {
        return Ok(());
    }
    conversation.send_text("hi")?;
    while let Some(message) = conversation.recv()? {
        let reply = match &message[..] {
            b"bye" => "bye".to_owned(),
            m if m.len() > 64 => format!("received {} bytes in one message", m.len()),
            m => format!("you said {:?}", text(m)),
        };
        conversation.send_text(&reply)?;
        if reply == "bye" {
            break;
        }
    }
    conversation.close()?;
    Ok(())
}

/// The client's side, printing the transcript as it goes.
fn script(url: &str) -> converse::Result<()> {
    let mut c = converse::connect(url)?;
    let exchange = |c: &mut Conversation, msg: &str| -> converse::Result<()> {
        say(format!("  client > {msg}"));
        c.send_text(msg)?;
        say(format!("  server > {}", c.recv_text()?.unwrap_or_default()));
        Ok(())
    };
    exchange(&mut c, "hello!")?;

    for msg in ["one", "two", "three"] {
        say(format!("  client > {msg}"));
        c.send_text(msg)?;
    }
    for _ in 0..3 {
        say(format!("  server > {}", c.recv_text()?.unwrap_or_default()));
    }

    let big = vec![b'x'; 100_000];
    say("  client > (a 100000-byte message)");
    match c.send(&big) {
        Ok(()) => say(format!("  server > {}", c.recv_text()?.unwrap_or_default())),
        Err(e) => say(format!("  (not sent: {e})")),
    }

    exchange(&mut c, "bye")?;
    let delivery = c.close()?;
    say(format!("  (closed: delivery {delivery:?})"));
    Ok(())
}

fn run(transport: &str) -> converse::Result<()> {
    let listener = converse::listen(&format!("{transport}://127.0.0.1:0"))?;
    let url = listener.local_addr()?.to_string();
    say(format!(
        "== {} transcript ({url})",
        transport.to_uppercase()
    ));
    let server = thread::spawn(move || listener.accept().and_then(serve));
    script(&url)?;
    server.join().expect("the server thread panicked")
}

/// A scripted conversation over TCP and then UDP, transcripts printed.
#[derive(Parser)]
struct Args {}

fn main() {
    Args::parse();
    main_with(|| {
        for transport in ["tcp", "udp"] {
            run(transport).map_err(|e| Failed::new(transport, e))?;
            say("");
        }
        Ok(())
    });
}
