//! The tutorial's first client (`tcp_client.py`): send `hello!`, print the
//! reply.
//!
//! ```text
//! cargo run --example hello_client                       # to tcp://127.0.0.1:8898
//! cargo run --example hello_client -- --message 你好 --transport udp
//! ```
//!
//! What converse changes: the reply is one whole message, and a server that
//! is not there is a one-line error naming its address.

mod common;

use clap::Parser;
use common::{main_with, say, text, At, Endpoint, Failed};

/// Sends one message and prints the reply.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: Endpoint,
    /// The message to send.
    #[arg(long, default_value = "hello!")]
    message: String,
}

fn run(args: &Args) -> Result<(), Failed> {
    let url = args.endpoint.url("127.0.0.1:8898")?;
    let mut sk = common::connect(&url, &args.endpoint.client_config()?)?; // sk.connect(('127.0.0.1',8898))
    sk.send_text(&args.message).at(&url)?; //                      sk.send(b'hello!')
    let ret = sk.recv().at(&url)?; //                              ret = sk.recv(1024)
    let ret = ret.ok_or_else(|| Failed::new(&url, "the server ended without a reply"))?;
    say(text(&ret)); //                                            print(ret)
    sk.close().at(&url)?; //                                       sk.close()
    Ok(())
}

fn main() {
    let args = Args::parse();
    main_with(|| run(&args));
}
