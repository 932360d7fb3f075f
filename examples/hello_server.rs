//! The tutorial's first server (`tcp_server.py`): bind, accept one client,
//! receive one message, print it, reply `hi`, close.
//!
//! ```text
//! cargo run --example hello_server                    # tcp://127.0.0.1:8898
//! cargo run --example hello_server -- --transport udp # the recvfrom/sendto version
//! ```
//!
//! What converse changes: `conn.recv(1024)` could return half a message, or
//! two; here `recv` returns exactly the message the client sent, however
//! long. The reply reaches the client even though the server closes at once
//! (a graceful close, not a reset). Over UDP, a datagram larger than the
//! limit is reported, never silently cut.

mod common;

use clap::Parser;
use common::{fail, say, text, Endpoint};

/// Accepts one conversation, prints the message it receives, replies `hi`.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: Endpoint,
}

fn main() {
    let args = Args::parse();
    let url = args.endpoint.url("127.0.0.1:8898");
    let listener = common::listen(&url, &args.endpoint.config());

    let mut conversation = listener.accept().unwrap_or_else(|e| fail(&url, &e));
    let peer = conversation
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    match conversation.recv() {
        Ok(Some(message)) => say(text(&message)),
        Ok(None) => fail(&peer, &converse::Error::Closed),
        Err(e) => fail(&peer, &e),
    }
    if let Err(e) = conversation.send("hi").and_then(|()| conversation.close()) {
        fail(&peer, &e);
    }
}
