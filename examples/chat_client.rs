//! The tutorial's chat client: read a line, send it, print the reply, until
//! either side says `bye`.
//!
//! ```text
//! cargo run --example chat_client                     # to tcp://127.0.0.1:8090
//! cargo run --example chat_client -- --transport udp
//! ```
//!
//! The end of stdin counts as `bye`.
//!
//! What converse changes: the reply is one whole message; a server that is
//! gone is a one-line error naming its address, not a traceback.

mod common;

use clap::Parser;
use common::{fail, say, text, Endpoint, Input};

/// Chats with a chat_server, one line each way.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: Endpoint,
}

fn main() {
    let args = Args::parse();
    let url = args.endpoint.url("127.0.0.1:8090");
    let mut conversation = common::connect(&url, &args.endpoint.config());
    let mut input = Input::new("客户端>>> ");
    loop {
        let line = input.line().unwrap_or_else(|| "bye".to_owned());
        if let Err(e) = conversation.send_text(&line) {
            fail(&url, &e);
        }
        if line == "bye" {
            break;
        }
        let reply = match conversation.recv() {
            Ok(Some(reply)) => text(&reply),
            Ok(None) => fail(&url, &converse::Error::Closed),
            Err(e) => fail(&url, &e),
        };
        say(&reply);
        if reply == "bye" {
            break;
        }
    }
    if let Err(e) = conversation.close() {
        fail(&url, &e);
    }
}
