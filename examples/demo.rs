//! The one-command tour: `cargo run --example demo`.
//!
//! In one process it starts a server on an ephemeral port, holds a short
//! scripted conversation with it over TCP, then does the same over UDP,
//! over TLS (with a CA and a server certificate made on the spot, the
//! client verifying the server against that CA), over WebSocket and over
//! WebSocket in TLS, and prints the transcripts. The script is the tutorial's hello/hi, then what
//! the tutorial could not do: three messages sent back to back arrive as
//! three (no "sticky packets"), a 100,000-byte message arrives whole over
//! TCP and is refused before sending over UDP (over its 65,507-byte limit),
//! and `bye` ends the conversation on both sides.

mod common;

use std::thread;

use clap::Parser;
use common::certs::Kit;
use common::{main_with, say, text, Failed};
use converse::tls::{TlsClient, TlsServer};
use converse::{Config, Conversation};

/// The server's side: `hi` to the first message, then a reply to each.
fn serve(mut conversation: Conversation) -> converse::Result<()> {
    if conversation.recv()?.is_none() {
        return Ok(());
    }
    conversation.send_text("hi")?;
    while let Some(message) = conversation.recv()? {
        let reply = match &message[..] {
            b"bye" => "bye".to_owned(),
            m if m.len() > 64 => format!("received {} bytes in one message", m.len()),
            m => format!("you said {:?}", text(m)),
        };
        conversation.send_text(&reply)?;
        if reply == "bye" {
            break;
        }
    }
    conversation.close()?;
    Ok(())
}

/// The client's side, printing the transcript as it goes.
fn script(url: &str, config: &Config) -> converse::Result<()> {
    let mut c = converse::connect_with(url, config)?;
    if let Some(server) = c.peer_identity() {
        say(format!(
            "  (server verified: its certificate is signed by the demo's CA, valid for \
             127.0.0.1: {}, and names {})",
            server.is_valid_for("127.0.0.1"),
            server.dns_names().join(", ")
        ));
    }
    let exchange = |c: &mut Conversation, msg: &str| -> converse::Result<()> {
        say(format!("  client > {msg}"));
        c.send_text(msg)?;
        say(format!("  server > {}", c.recv_text()?.unwrap_or_default()));
        Ok(())
    };
    exchange(&mut c, "hello!")?;

    for msg in ["one", "two", "three"] {
        say(format!("  client > {msg}"));
        c.send_text(msg)?;
    }
    for _ in 0..3 {
        say(format!("  server > {}", c.recv_text()?.unwrap_or_default()));
    }

    let big = vec![b'x'; 100_000];
    say("  client > (a 100000-byte message)");
    match c.send(&big) {
        Ok(()) => say(format!("  server > {}", c.recv_text()?.unwrap_or_default())),
        Err(e) => say(format!("  (not sent: {e})")),
    }

    exchange(&mut c, "bye")?;
    let delivery = c.close()?;
    say(format!("  (closed: delivery {delivery:?})"));
    Ok(())
}

fn run(transport: &str) -> converse::Result<()> {
    let (server_config, client_config) = if matches!(transport, "tls" | "wss" | "quic") {
        // A CA and a server certificate for localhost, made on the spot.
        let kit = Kit::new("demo-client");
        let server = TlsServer::from_pem(&kit.server.cert_pem, &kit.server.key_pem)?;
        let client = TlsClient::trusting_ca_pem(kit.ca.cert_pem())?;
        (
            Config::new().with_tls_server(server),
            Config::new().with_tls_client(client),
        )
    } else {
        (Config::new(), Config::new())
    };
    let listener = converse::listen_with(&format!("{transport}://127.0.0.1:0"), &server_config)?;
    let url = listener.local_addr()?.to_string();
    say(format!(
        "== {} transcript ({url})",
        transport.to_uppercase()
    ));
    let server = thread::spawn(move || listener.accept().and_then(serve));
    script(&url, &client_config)?;
    server.join().expect("the server thread panicked")
}

/// A scripted conversation over TCP, UDP, TLS, WebSocket, WebSocket in TLS
/// and QUIC, transcripts printed.
#[derive(Parser)]
struct Args {}

fn main() {
    Args::parse();
    main_with(|| {
        for transport in ["tcp", "udp", "tls", "ws", "wss", "quic"] {
            run(transport).map_err(|e| Failed::new(transport, e))?;
            say("");
        }
        Ok(())
    });
}
