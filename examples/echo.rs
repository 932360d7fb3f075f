//! The smallest useful program: an echo server and a client in one process.
//!
//! ```text
//! cargo run --example echo                      # server + client, then exit
//! cargo run --example echo -- one two three     # echo these messages instead
//! cargo run --example echo -- --serve tcp://127.0.0.1:8080   # server only
//! ```
//!
//! The client sends each message with one call; the server receives each
//! with one call: boundaries survive, even for the empty message.

use std::thread;

use clap::Parser;

/// An echo server and client over converse.
#[derive(Parser)]
struct Args {
    /// Only serve, at this address (e.g. tcp://127.0.0.1:8080), until interrupted.
    #[arg(long)]
    serve: Option<String>,
    /// The messages the client sends.
    #[arg(default_values_t = ["hello".to_owned(), String::new(), "world".to_owned()])]
    messages: Vec<String>,
}

fn serve(listener: converse::Listener) -> converse::Result<()> {
    loop {
        let mut conversation = listener.accept()?;
        thread::spawn(move || -> converse::Result<()> {
            while let Some(message) = conversation.recv()? {
                conversation.send(&message)?;
            }
            conversation.close()?;
            Ok(())
        });
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if let Some(url) = args.serve {
        let listener = converse::listen(&url)?;
        println!("listening on {}", listener.local_addr()?);
        serve(listener)?;
        return Ok(());
    }

    let listener = converse::listen("tcp://127.0.0.1:0")?;
    let url = listener.local_addr()?.to_string();
    println!("echo server listening on {url}");
    thread::spawn(move || serve(listener));

    let mut client = converse::connect(&url)?;
    for message in &args.messages {
        client.send_text(message)?;
        let echo = client
            .recv_text()?
            .ok_or("the server ended the conversation")?;
        println!("sent {message:?}, got back {echo:?}");
    }
    client.close()?;
    Ok(())
}
