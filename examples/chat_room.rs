//! The tutorial's multi-person chat (the UDP `udp_client` chat that everyone
//! sends to one server): every participant is served at once, over every
//! transport at once, from one thread.
//!
//! ```text
//! cargo run --example chat_room                      # tcp://127.0.0.1:8091
//! cargo run --example chat_room -- --transport udp
//! cargo run --example chat_room -- --listen tcp://127.0.0.1:0 --listen udp://127.0.0.1:0 \
//!                                  --listen unix:///tmp/room.sock
//! cargo run --example chat_room -- --listen tcp://127.0.0.1:8091 --listen ws://127.0.0.1:8092
//! #   then open http://127.0.0.1:8092/ in a browser: a person in the same room
//! nats-server -a 127.0.0.1 -p 4222 &             # one room on two servers:
//! cargo run --example chat_room -- --listen tcp://127.0.0.1:8091 --relay nats://127.0.0.1:4222/chat
//! cargo run --example chat_room -- --listen ws://127.0.0.1:9091 --relay nats://127.0.0.1:4222/chat
//! cargo run --example make_certs -- --out certs   # then, members over mutual TLS:
//! cargo run --example chat_room -- --listen tls://127.0.0.1:8443 --listen quic://127.0.0.1:8443 \
//!     --tls-cert certs/server.pem --tls-key certs/server.key --tls-ca certs/ca.pem
//! ```
//!
//! A participant's first message is its name; every later message is relayed
//! to every other participant as `NAME: TEXT` (and printed here the same
//! way); `bye` makes the participant leave. Joins and leaves are announced to
//! the others as `* NAME joined` and `* NAME left`, and printed here too.
//! Runs until interrupted.
//!
//! A connection that has not said its name within `--name-timeout` (30 s)
//! is closed. Output and diagnostics leave the serving thread through
//! queues bounded in bytes: a stdout or stderr that nobody reads costs
//! lines (counted), never the room's time.
//!
//! A name is refused with its reason (`* NAME refused: REASON`, then the
//! member is closed) when it is taken here or in a room relayed with
//! (case aside), longer than 32
//! characters, empty or padded, holds a control or invisible character,
//! `@` or `:`, or starts with `*`. Line ends, terminal escapes and
//! invisible characters in what members say are shown as escapes
//! (`\u{1b}`) to everyone and here: one message is one line.
//!
//! What converse changes: the tutorial's servers talk to one client at a
//! time; here one thread serves every member, through a switchboard
//! (thousands of members, over TCP, UDP and Unix sockets in one room). A
//! participant that vanishes just leaves the room. An empty message is a UDP
//! client's keepalive: it keeps the member's place, and is never relayed.
//!
//! A member costs only itself. Senders are limited, not their audience: a
//! member past `--flood-limit` lines a second (`--flood-burst` at once) is
//! not read until it is within it again, so TCP slows it down (over UDP,
//! what comes past it is dropped). A member that stops reading is
//! disconnected once it has more than `--max-backlog` waiting and reads
//! nothing for `--stall` seconds, or has four times that waiting; one that
//! reads, however slowly, stays. Lines longer than `--max-message` end
//! their sender's connection; what all connections hold stays within
//! `--memory-budget`. Joins over UDP are capped (`--udp-joins` a second)
//! and announced in batches (`* a, b, … and N more joined`); a source
//! turned away gets a cookie with its refusal and joins at once by
//! sending `NAME<TAB>COOKIE` (proof that it receives at its address); at
//! most
//! `--max-unnamed` connections wait without a name, and out of file
//! descriptors the oldest of them make room for newcomers.

mod common;

use std::time::Duration;

use clap::Parser;
use common::room::{flood, Printer, Relay, Room};
use common::{main_with, say, seconds, At, Endpoint, Failed};
use converse::ws::Page;
use converse::Switchboard;

/// The room's web page, served on a plain `GET /` of a ws:// or wss://
/// listener: one self-contained file, kept beside this program.
const PAGE: &str = include_str!("chat_room.html");

/// A chat room: every participant hears every other.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    endpoint: Endpoint,
    /// A URL to listen on (repeatable): tcp://HOST:PORT, udp://HOST:PORT,
    /// unix:///path, tls://HOST:PORT, ws://HOST:PORT, wss://HOST:PORT (a
    /// browser opening http://HOST:PORT/ of a ws:// listener gets the room's
    /// page), quic://HOST:PORT. One room over all of them. Without it, --addr and
    /// --transport.
    #[arg(long, value_name = "URL")]
    listen: Vec<String>,
    /// A member with more than this waiting for it that reads nothing for
    /// --stall seconds is disconnected as a slow consumer; one with four
    /// times this waiting (the hard limit) at once.
    #[arg(long, value_name = "BYTES", default_value_t = converse::Config::DEFAULT_MAX_BACKLOG)]
    max_backlog: usize,
    /// The kernel's send buffer for each member (the kernel doubles it):
    /// what a member that does not read costs the machine beyond
    /// --max-backlog.
    #[arg(long, value_name = "BYTES", default_value_t = 128 * 1024)]
    socket_buffer: usize,
    /// How long a member over --max-backlog may read nothing.
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "5")]
    stall: Duration,
    /// Flood control: the lines a second one member may send (a line costs
    /// one more per KiB it holds); past it, the room stops reading that
    /// member until it is within it again. 0 for no limit.
    #[arg(long, value_name = "LINES", default_value_t = 100.0)]
    flood_limit: f64,
    /// Flood control: the lines one member may send at once.
    #[arg(long, value_name = "LINES", default_value_t = 1000.0)]
    flood_burst: f64,
    /// The longest line (a member's message), in bytes; a longer one ends
    /// that member's connection.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    max_message: usize,
    /// The most memory the room's connections hold together (lines being
    /// received, and what waits for members); past it, the ones holding
    /// the most are disconnected.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    memory_budget: usize,
    /// The most connections without a name at once; past it, the oldest
    /// are closed.
    #[arg(long, value_name = "N", default_value_t = common::room::MAX_UNNAMED)]
    max_unnamed: usize,
    /// The most members joining over UDP per second (their source
    /// addresses are cheap to vary); more are refused, to try again.
    #[arg(long, value_name = "N", default_value_t = 100.0)]
    udp_joins: f64,
    /// UDP: seconds of silence after which a member is gone (its client
    /// sends keepalives while it runs).
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "120")]
    idle_timeout: Duration,
    /// Seconds a connection has to say its name (its first message) before
    /// it is closed.
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "30")]
    name_timeout: Duration,
    /// How many connections wait for the room to accept them.
    #[arg(long, default_value_t = 1024)]
    backlog: i32,
    /// Joins this room to the rooms of other servers relaying to the same
    /// NATS subject: nats://HOST:PORT/SUBJECT. Every member hears every
    /// member, on any server; if the NATS server goes away the room goes on
    /// here alone, and the relay comes back when it does.
    #[arg(long, value_name = "URL")]
    relay: Option<String>,
    /// How this room's members are shown in the other rooms of the relay:
    /// NAME@LABEL (default: this room's first listening address).
    #[arg(long, value_name = "LABEL")]
    relay_label: Option<String>,
    /// How often this room tells the others who is in it; a room not heard
    /// for three of these is taken for gone and its members leave.
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "30")]
    relay_heartbeat: Duration,
}

fn run(args: &Args) -> Result<(), Failed> {
    let config = args
        .endpoint
        .server_config()?
        .with_max_backlog(args.max_backlog.saturating_mul(4))
        .with_max_message_len(args.max_message)
        .with_memory_budget(args.memory_budget)
        .with_socket_send_buffer(Some(args.socket_buffer))
        .with_idle_timeout(Some(args.idle_timeout))
        .with_backlog(args.backlog)
        .with_max_peers(100_000);
    let urls = if args.listen.is_empty() {
        vec![args.endpoint.url("127.0.0.1:8091")?]
    } else {
        args.listen.clone()
    };
    if urls
        .iter()
        .any(|u| u.starts_with("tls://") || u.starts_with("wss://") || u.starts_with("quic://"))
        && args.endpoint.tls.server()?.is_none()
    {
        return Err(Failed::new(
            "--listen tls://, wss:// or quic://",
            "a TLS listener needs --tls-cert FILE --tls-key FILE (make them with: \
             cargo run --example make_certs)",
        ));
    }
    if let Some(relay) = &args.relay {
        if !relay.starts_with("nats://") {
            return Err(Failed::new("--relay", "expected nats://HOST:PORT/SUBJECT"));
        }
    }
    let mut board = Switchboard::with_config(&config).at("switchboard")?;
    let mut first = None;
    for url in &urls {
        let listener = board.listen(url).at(url)?;
        if url.starts_with("ws://") || url.starts_with("wss://") {
            // A browser opening the address gets the room's page.
            board.serve_page(listener, Page::html(PAGE)).at(url)?;
        }
        let bound = board.listener_addr(listener).expect("just bound");
        say(format!("listening on {bound}"));
        first.get_or_insert_with(|| {
            bound
                .socket_addr()
                .map_or(bound.to_string(), |a| a.to_string())
        });
    }
    let mut room = Room::new(board, Printer::stdout())
        .name_timeout(args.name_timeout)
        .flood_limit(flood::Limit::new(args.flood_limit, args.flood_burst))
        .slow_consumers(args.max_backlog, args.stall)
        .max_unnamed(args.max_unnamed)
        .udp_joins(flood::Limit::new(args.udp_joins, args.udp_joins * 2.0));
    if let Some(url) = &args.relay {
        let label = args.relay_label.clone().or(first).unwrap_or_default();
        room = room.relay(Relay::new(url, &label).heartbeat(args.relay_heartbeat));
    }
    room.run().at("the room")
}

fn main() {
    let args = Args::parse();
    main_with(|| run(&args));
}
