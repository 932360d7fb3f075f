//! The tutorial's chat server: talk with one client at a time, a line each
//! way, until either side says `bye`; then serve the next client, in the
//! order they arrived (`listen(5)` keeps them waiting).
//!
//! ```text
//! cargo run --example chat_server                     # tcp://127.0.0.1:8090
//! cargo run --example chat_server -- --once           # the first client only
//! cargo run --example chat_server -- --framing lines  # nc 127.0.0.1 8090 can chat
//! ```
//!
//! The end of stdin counts as the line `bye`, after which the server exits.
//! What converse changes: a client that vanishes (killed, reset, half a
//! message) ends only its own conversation, with one line on stderr; the
//! next client is served. An empty message is a UDP client's keepalive,
//! never a line of the chat.

mod common;

use std::time::Duration;

use clap::Parser;
use common::{accept_while, main_with, note, say, seconds, text, Endpoint, Failed, Input};
use converse::{Conversation, Error};

/// Serves chat conversations one after another.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: Endpoint,
    /// How many connections wait for `accept` (the tutorial's `listen(5)`).
    #[arg(long, default_value_t = converse::Config::DEFAULT_BACKLOG)]
    backlog: i32,
    /// Serve only the first conversation, then exit.
    #[arg(long)]
    once: bool,
    /// UDP: seconds of silence after which a client is gone (its client
    /// sends keepalives while it runs).
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "120")]
    idle_timeout: Duration,
}

/// How often `accept` looks at whether stdin has ended.
const STDIN_LOOK: Duration = Duration::from_millis(200);

/// How a conversation ended.
enum End {
    /// Either side said `bye`: serve the next client.
    Bye,
    /// Stdin ended: `bye` was sent, and the server stops.
    StdinEnded,
    /// The client left without `bye`.
    Left,
}

/// One conversation, as the tutorial's inner loop.
fn chat(conn: &mut Conversation, input: &mut Input) -> converse::Result<End> {
    loop {
        let Some(ret) = conn.recv()? else {
            //                                      ret = conn.recv(1024)
            return Ok(End::Left);
        };
        if ret.is_empty() {
            continue; // a keepalive
        }
        let ret = text(&ret); //                    ret = ret.decode('utf-8')
        say(&ret); //                               print(ret)
        if ret == "bye" {
            return Ok(End::Bye); //                 if ret == 'bye': break
        }
        let Some(msg) = input.said() else {
            //                                      msg = input('服务端>>')
            conn.send_text("bye")?;
            return Ok(End::StdinEnded);
        };
        conn.send_text(&msg)?; //                   conn.send(msg.encode('utf-8'))
        if msg == "bye" {
            return Ok(End::Bye); //                 if msg == 'bye': break
        }
    }
}

fn run(args: &Args) -> Result<(), Failed> {
    let url = args.endpoint.url("127.0.0.1:8090")?;
    let config = args
        .endpoint
        .server_config()?
        .with_backlog(args.backlog)
        .with_idle_timeout(Some(args.idle_timeout));
    let sk = common::listen(&url, &config)?; //     sk.bind(('127.0.0.1',8090)); sk.listen()
    let mut input = Input::new("服务端>> ");
    loop {
        // conn,addr = sk.accept(), watching stdin: its end stops the server
        // even while no client is there.
        let Some(mut conn) = accept_while(&sk, &url, STDIN_LOOK, || !input.ended())? else {
            return Ok(());
        };
        let peer = common::peer(&conn);
        note(format!("talking with {peer}"));
        let end = chat(&mut conn, &mut input);
        match &end {
            Ok(End::Bye | End::StdinEnded) => {
                if let Err(e) = conn.close() {
                    //                              conn.close()
                    note(format!("{peer}: {e}"));
                }
            }
            Ok(End::Left) => note(format!("{peer} left without saying bye")),
            Err(e @ Error::Truncated { .. }) => note(format!("{peer}: {e}")),
            Err(e) => note(format!("{peer} vanished: {e}")),
        }
        if args.once || matches!(end, Ok(End::StdinEnded)) {
            return Ok(());
        }
    }
}

fn main() {
    let args = Args::parse();
    main_with(|| run(&args));
}
