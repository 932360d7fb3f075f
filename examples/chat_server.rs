//! The tutorial's chat server, in its last form: a server that serves
//! clients one after another (the `while True: conn, addr = sk.accept()`
//! loop), each conversation going back and forth until either side says
//! `bye`. `--once` is the earlier form that talks to its first client only.
//!
//! ```text
//! cargo run --example chat_server                     # tcp://127.0.0.1:8090, backlog 5
//! cargo run --example chat_server -- --backlog 1 --once
//! cargo run --example chat_server -- --transport udp
//! cargo run --example chat_server -- --framing lines   # then: nc 127.0.0.1 8090
//! cargo run --example chat_server -- --framing raw     # the tutorial's own client
//! ```
//!
//! In each conversation: receive a message and print it; if it is `bye`,
//! the conversation ends; otherwise read a line from stdin and send it; if
//! that line is `bye`, the conversation ends. The end of stdin counts as the
//! line `bye`, after which the server exits.
//!
//! What converse changes: a client that vanishes (killed, reset, half a
//! message, a 4 GiB header) no longer crashes the server or makes it spin on
//! empty reads: one line on stderr, and the next client is served. Messages
//! keep their boundaries, so `bye` is recognised even when sent right after
//! another message.

mod common;

use clap::Parser;
use common::{fail, note, one_line, say, text, Endpoint, Input};

/// Serves chat conversations one after another.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: Endpoint,
    /// How many connections wait for `accept` (the tutorial's `listen(5)`).
    #[arg(long, default_value_t = converse::DEFAULT_BACKLOG)]
    backlog: i32,
    /// Serve only the first conversation, then exit.
    #[arg(long)]
    once: bool,
}

/// How a conversation ended.
enum End {
    /// Either side said `bye`: serve the next client.
    Bye,
    /// Stdin ended: `bye` was sent, and the server stops.
    StdinEnded,
}

fn converse_with(
    conversation: &mut converse::Conversation,
    input: &mut Input,
) -> converse::Result<End> {
    loop {
        let Some(message) = conversation.recv()? else {
            return Err(converse::Error::Closed);
        };
        let message = text(&message);
        say(&message);
        if message == "bye" {
            return Ok(End::Bye);
        }
        let (line, stdin_ended) = match input.line() {
            Some(line) => (line, false),
            None => ("bye".to_owned(), true),
        };
        conversation.send_text(&line)?;
        if stdin_ended {
            return Ok(End::StdinEnded);
        }
        if line == "bye" {
            return Ok(End::Bye);
        }
    }
}

fn main() {
    let args = Args::parse();
    let url = args.endpoint.url("127.0.0.1:8090");
    let config = args.endpoint.config().backlog(args.backlog);
    let listener = common::listen(&url, &config);
    let mut input = Input::new("服务端>> ");

    loop {
        let mut conversation = listener.accept().unwrap_or_else(|e| fail(&url, &e));
        let peer = conversation
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        note(format!("talking with {peer}"));
        let end = converse_with(&mut conversation, &mut input);
        match &end {
            Ok(_) => {
                if let Err(e) = conversation.close() {
                    note(format!("{peer}: {}", one_line(&e)));
                }
            }
            Err(converse::Error::Closed) => note(format!("{peer} left without saying bye")),
            Err(e) => note(format!("{peer} vanished: {}", one_line(e))),
        }
        if args.once || matches!(end, Ok(End::StdinEnded)) {
            return;
        }
    }
}
