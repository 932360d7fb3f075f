//! `chat_room_client` on tokio: joins the same room as the blocking and
//! browser members, through `converse::tokio`.
//!
//! ```text
//! cargo run --example chat_room                         # the room, tcp://127.0.0.1:8091
//! cargo run -p converse-peers --example chat_room_client_async -- --addr tcp://127.0.0.1:8091 --name 明威
//! ```
//!
//! It sends its name, then each line of stdin, and prints every message it
//! receives (control characters made visible); at the end of stdin it
//! sends `bye` and exits 0. A refused name is said on stderr, exit 1.
//! One `select!` waits for stdin and for the room at once: whichever comes
//! first, the other's future is dropped, and the conversation's `recv` is
//! cancel-safe, so no message is lost by it.

#[allow(dead_code)]
#[path = "../../examples/common/room.rs"]
mod room;

use std::process::ExitCode;

use room::names;
use tokio::io::{AsyncBufReadExt, BufReader};

fn usage() -> ExitCode {
    eprintln!("usage: chat_room_client_async --addr URL --name NAME");
    ExitCode::from(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut addr, mut name) = (None, None);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => addr = args.next(),
            "--name" => name = args.next(),
            "--help" | "-h" => {
                println!("Usage: chat_room_client_async --addr URL --name NAME");
                return ExitCode::SUCCESS;
            }
            _ => return usage(),
        }
    }
    let (Some(addr), Some(name)) = (addr, name) else {
        return usage();
    };
    let url = if addr.contains("://") {
        addr
    } else {
        format!("tcp://{addr}")
    };
    match run(&url, &name).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(url: &str, name: &str) -> converse::Result<ExitCode> {
    let mut room = converse::tokio::connect(url).await?;
    room.send_text(name).await?;
    let refused = format!("* {} refused: ", names::shown(name));
    let mut first = true;
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = stdin.next_line() => {
                let line = line.ok().flatten();
                let bye = line.as_deref().is_none_or(|l| l == "bye");
                room.send_text(line.as_deref().unwrap_or("bye")).await?;
                if bye {
                    break;
                }
            }
            said = room.recv() => match said? {
                Some(message) => {
                    let text = String::from_utf8_lossy(&message);
                    if std::mem::take(&mut first) {
                        if let Some(why) = text.strip_prefix(&refused) {
                            eprintln!("error: the room refused the name: {why}");
                            return Ok(ExitCode::FAILURE);
                        }
                    }
                    if !message.is_empty() {
                        println!("{}", names::visible(&text));
                    }
                }
                None => break,
            },
        }
    }
    room.close().await?;
    Ok(ExitCode::SUCCESS)
}
