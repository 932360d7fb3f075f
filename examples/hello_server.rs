//! The tutorial's first server (`tcp_server.py`): accept one client,
//! receive one message, print it, reply `hi`, close.
//!
//! ```text
//! cargo run --example hello_server                  # tcp://127.0.0.1:8898
//! cargo run --example hello_server -- --transport udp
//! cargo run --example hello_server -- --addr udp://127.0.0.1:0
//! ```
//!
//! What converse changes: the message arrives whole however the network
//! cuts it (TCP) and is never cut short silently (UDP), and `close` lets
//! the reply reach the client before the connection goes.

mod common;

use clap::Parser;
use common::{accept, main_with, say, text, At, Endpoint, Failed};

/// Accepts one conversation, prints the message it receives, replies `hi`.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: Endpoint,
}

fn run(args: &Args) -> Result<(), Failed> {
    let url = args.endpoint.url("127.0.0.1:8898")?;
    let sk = common::listen(&url, &args.endpoint.server_config()?)?; // sk.bind(('127.0.0.1',8898)); sk.listen()
    let mut conn = accept(&sk, &url)?; //                        conn,addr = sk.accept()
    let peer = common::peer(&conn);
    let ret = conn.recv().at(&peer)?; //                         ret = conn.recv(1024)
    let ret = ret.ok_or_else(|| Failed::new(&peer, "the client left without a message"))?;
    say(text(&ret)); //                                          print(ret)
    conn.send("hi").at(&peer)?; //                               conn.send(b'hi')
    conn.close().at(&peer)?; //                                  conn.close()
    Ok(()) //                                                    sk.close()
}

fn main() {
    let args = Args::parse();
    main_with(|| run(&args));
}
