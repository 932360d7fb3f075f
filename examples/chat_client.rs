//! The tutorial's chat client: read a line, send it, print the reply, until
//! either side says `bye`.
//!
//! ```text
//! cargo run --example chat_client                     # to tcp://127.0.0.1:8090
//! cargo run --example chat_client -- --transport udp
//! ```
//!
//! The end of stdin counts as `bye`; an empty line is not sent (there is
//! nothing to say). What converse changes: the reply is one whole message;
//! a server that is gone is a one-line error naming its address. Over UDP
//! the client keeps its place with a keepalive while its user thinks, and
//! waits for a late reply as long as it takes.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use common::{main_with, say, seconds, text, At, Endpoint, Failed, Input, KeepAlive};

/// Chats with a chat_server, one line each way.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: Endpoint,
    /// UDP: seconds between keepalives while nothing is sent.
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "30")]
    keepalive: Duration,
}

fn run(args: &Args) -> Result<(), Failed> {
    let url = args.endpoint.url("127.0.0.1:8090")?;
    let udp = args.endpoint.is_udp();
    // A UDP reply may come however late (a person is typing it): the
    // conversation does not end for silence while the client runs.
    let config = args.endpoint.client_config()?.with_idle_timeout(None);
    let sk = common::connect(&url, &config)?; //                sk.connect(('127.0.0.1',8090))
    let (tx, mut rx) = sk.split();
    let tx = Arc::new(Mutex::new(tx));
    let keepalive = udp.then(|| KeepAlive::start(Arc::clone(&tx), args.keepalive));
    let mut input = Input::new("客户端>>> ");
    loop {
        let msg = input.said().unwrap_or_else(|| "bye".to_owned()); // msg = input('客户端>>>')
        let sent = tx.lock().unwrap().send_text(&msg); //            sk.send(msg.encode('utf-8'))
        sent.at(&url)?;
        if msg == "bye" {
            break; //                                                 if msg == 'bye': break
        }
        let ret = loop {
            match rx.recv().at(&url)? {
                //                                                    ret = sk.recv(1024)
                Some(ret) if ret.is_empty() => continue, // a keepalive
                Some(ret) => break text(&ret), //                     ret = ret.decode('utf-8')
                None => return Err(Failed::new(&url, "the server ended the conversation")),
            }
        };
        say(&ret); //                                                 print(ret)
        if ret == "bye" {
            break; //                                                 if ret == 'bye': break
        }
    }
    drop(keepalive); // waits for its thread: the sending half is ours again
    let tx = Arc::into_inner(tx).expect("the keepalive has ended");
    let tx = tx.into_inner().unwrap_or_else(|e| e.into_inner());
    let sk = tx.reunite(rx).at(&url)?;
    sk.close().at(&url)?; //                                          sk.close()
    Ok(())
}

fn main() {
    let args = Args::parse();
    main_with(|| run(&args));
}
