//! A participant of the chat room (the tutorial's UDP `udp_client` chat):
//! says its name, then sends each line of stdin while printing everything
//! the room relays.
//!
//! ```text
//! cargo run --example chat_room_client                # named as the login user
//! cargo run --example chat_room_client -- --name 明威
//! cargo run --example chat_room_client -- --name 明威 --transport udp
//! ```
//!
//! At the end of stdin it sends `bye` and exits. A name the room refuses
//! (taken, too long, with control characters …) ends it with the reason
//! and exit status 1. What it prints is what was sent, one message per
//! line: line ends, terminal escapes and invisible characters are shown as
//! escapes (`\u{1b}`), never obeyed. Over UDP it keeps its
//! place in the room with a keepalive (an empty message) while it runs,
//! however long its user is silent.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use common::room::names;
use common::{main_with, note, say, seconds, text, At, Endpoint, Failed, Input, KeepAlive};

/// Joins a chat_room under a name.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: Endpoint,
    /// The name the others see (default: the login name, from `USER`,
    /// `LOGNAME` or `USERNAME`).
    #[arg(long)]
    name: Option<String>,
    /// UDP: seconds between keepalives.
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "30")]
    keepalive: Duration,
}

/// The user's login name, as the environment says it.
fn login_name() -> Option<String> {
    ["USER", "LOGNAME", "USERNAME"]
        .into_iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|name| !name.trim().is_empty())
}

fn run(args: &Args) -> Result<(), Failed> {
    let url = args.endpoint.url("127.0.0.1:8091")?;
    let udp = args.endpoint.is_udp();
    // The room may be quiet for hours: that is not the end.
    let config = args.endpoint.client_config()?.with_idle_timeout(None);
    let name = match &args.name {
        Some(name) => name.clone(),
        None => login_name().ok_or_else(|| {
            Failed::new(
                "--name",
                "no --name given, and no login name in USER, LOGNAME or USERNAME",
            )
        })?,
    };
    let mut conversation = common::connect(&url, &config)?;
    conversation.send_text(&name).at(&url)?;
    let (tx, mut rx) = conversation.split();
    let tx = Arc::new(Mutex::new(tx));

    let (done_tx, done) = mpsc::channel();
    // The room's answer to a name it refuses: the first line, then the end.
    let refused = format!("* {} refused: ", names::shown(&name));
    let mut first = true;
    let mut cookie_sent = false;
    // Weak: the sending half is the main thread's to close at the end.
    let answer = Arc::downgrade(&tx);
    std::thread::spawn(move || {
        loop {
            match rx.recv() {
                Ok(Some(message)) if message.is_empty() => {}
                Ok(Some(message)) => {
                    // Shown as sent: one message, one line, with nothing
                    // the terminal would obey (line ends, escapes).
                    let line = text(&message);
                    if std::mem::take(&mut first) {
                        if let Some(why) = line.strip_prefix(&refused) {
                            // Over UDP, a room that many are joining at
                            // once lets in a client that proves it
                            // receives: its cookie, sent back with the name.
                            let cookie = why.rsplit_once("with the cookie ").map(|(_, c)| c);
                            if let (Some(cookie), false, true) = (cookie, cookie_sent, udp) {
                                cookie_sent = true;
                                first = true;
                                let again = format!("{name}\t{cookie}");
                                let sent = answer
                                    .upgrade()
                                    .is_some_and(|tx| tx.lock().unwrap().send_text(&again).is_ok());
                                if sent {
                                    continue;
                                }
                            }
                            note(format!("error: the room refused the name: {why}"));
                            std::process::exit(1);
                        }
                    }
                    say(names::visible(&line));
                }
                Ok(None) => break,
                Err(e @ converse::Error::Truncated { .. }) => note(e),
                Err(e) => {
                    note(e);
                    break;
                }
            }
        }
        let _ = done_tx.send(());
    });

    let keepalive = udp.then(|| KeepAlive::start(Arc::clone(&tx), args.keepalive));
    let mut input = Input::new("");
    while let Some(line) = input.said() {
        tx.lock().unwrap().send_text(&line).at(&url)?;
        if line == "bye" {
            break;
        }
    }
    drop(keepalive);
    let tx = Arc::into_inner(tx).expect("the keepalive has ended");
    let mut tx = tx.into_inner().unwrap_or_else(|e| e.into_inner());
    tx.send_text("bye").at(&url)?;
    if !udp {
        // A graceful end: the room closes its side after our `bye`; wait
        // for that (briefly), so nothing in flight is reset.
        tx.close().at(&url)?;
        let _ = done.recv_timeout(Duration::from_secs(3));
    }
    Ok(())
}

fn main() {
    let args = Args::parse();
    main_with(|| run(&args));
}
