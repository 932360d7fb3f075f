//! The tutorial's first client (`tcp_client.py`): connect, send `hello!`,
//! print the reply, close.
//!
//! ```text
//! cargo run --example hello_client                         # to tcp://127.0.0.1:8898
//! cargo run --example hello_client -- --message "你好"
//! cargo run --example hello_client -- --transport udp
//! ```
//!
//! What converse changes: the reply is one whole message, not whatever
//! `recv(1024)` happened to return; a server that is not there is a one-line
//! error naming its address (TCP: connection refused; UDP: peer unreachable).

mod common;

use clap::Parser;
use common::{fail, say, text, Endpoint};

/// Sends one message and prints the reply.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: Endpoint,
    /// The message to send.
    #[arg(long, default_value = "hello!")]
    message: String,
}

fn main() {
    let args = Args::parse();
    let url = args.endpoint.url("127.0.0.1:8898");
    let mut conversation = common::connect(&url, &args.endpoint.config());
    if let Err(e) = conversation.send_text(&args.message) {
        fail(&url, &e);
    }
    match conversation.recv() {
        Ok(Some(reply)) => say(text(&reply)),
        Ok(None) => fail(&url, &converse::Error::Closed),
        Err(e) => fail(&url, &e),
    }
    if let Err(e) = conversation.close() {
        fail(&url, &e);
    }
}
