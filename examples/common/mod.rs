//! What every example shares: the address and transport options, printing
//! received messages (one per line, flushed), prompts on stderr only when
//! stdin is a terminal, and a one-line error naming the address.
#![allow(dead_code)]

use std::fmt::Display;
use std::io::{self, BufRead, IsTerminal, Write};

use clap::{Args, ValueEnum};

/// The transport, chosen on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum TransportKind {
    /// TCP, with length-prefixed framing.
    #[default]
    Tcp,
    /// UDP, one datagram per message.
    Udp,
}

impl Display for TransportKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Udp => "udp",
        })
    }
}

/// How messages are delimited over TCP, chosen on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum FramingKind {
    /// A 4-byte big-endian length, then the message (converse's wire format).
    #[default]
    Length,
    /// One message per line: `nc` or telnet can take part.
    Lines,
    /// No framing: the tutorial's own Python programs can take part
    /// (message boundaries are not kept).
    Raw,
    /// A varint (LEB128) length, then the message.
    Varint,
}

/// `--addr`, `--transport` and `--framing`, flattened into each example's
/// arguments.
#[derive(Args, Debug)]
pub struct Endpoint {
    /// HOST:PORT to bind (servers; port 0 lets the system pick) or to
    /// connect to (clients). IPv6 in brackets: [::1]:8090.
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// The transport.
    #[arg(long, value_enum, default_value_t = TransportKind::Tcp)]
    pub transport: TransportKind,
    /// How messages are delimited over TCP (UDP: one datagram per message).
    #[arg(long, value_enum, default_value_t = FramingKind::Length)]
    pub framing: FramingKind,
}

impl Endpoint {
    /// The URL for this endpoint, with `default` when no `--addr` was given.
    pub fn url(&self, default: &str) -> String {
        format!(
            "{}://{}",
            self.transport,
            self.addr.as_deref().unwrap_or(default)
        )
    }

    /// The configuration these options ask for.
    pub fn config(&self) -> converse::Config {
        use converse::codec::Framing;
        converse::Config::new().framing(match self.framing {
            FramingKind::Length => Framing::default(),
            FramingKind::Lines => Framing::Lines,
            FramingKind::Raw => Framing::Raw,
            FramingKind::Varint => Framing::Varint,
        })
    }
}

/// Binds a server and prints the one `listening on …` line, flushed.
pub fn listen(url: &str, config: &converse::Config) -> converse::Listener {
    let listener = converse::listen_with(url, config).unwrap_or_else(|e| fail(url, &e));
    let bound = listener.local_addr().unwrap_or_else(|e| fail(url, &e));
    say(format!("listening on {bound}"));
    listener
}

/// Connects a client.
pub fn connect(url: &str, config: &converse::Config) -> converse::Conversation {
    converse::connect_with(url, config).unwrap_or_else(|e| fail(url, &e))
}

/// Prints one line to stdout and flushes it at once.
pub fn say(line: impl Display) {
    let mut out = io::stdout().lock();
    // A closed stdout is not a reason to stop serving.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A diagnostic: one line on stderr.
pub fn note(line: impl Display) {
    eprintln!("{line}");
}

/// An error and its causes on one line.
pub fn one_line(err: &dyn std::error::Error) -> String {
    let mut line = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

/// Reports a failure on one line of stderr that names the address, and exits 1.
pub fn fail(url: &str, err: &dyn std::error::Error) -> ! {
    let line = one_line(err);
    if line.contains(url) {
        eprintln!("error: {line}");
    } else {
        eprintln!("error: {url}: {line}");
    }
    std::process::exit(1)
}

/// Lines of stdin, with a prompt on stderr before each when stdin is a
/// terminal. `None` at end of input.
pub struct Input {
    lines: io::Lines<io::StdinLock<'static>>,
    prompt: Option<String>,
}

impl Input {
    pub fn new(prompt: &str) -> Input {
        let stdin = io::stdin();
        let prompt = stdin.is_terminal().then(|| prompt.to_owned());
        Input {
            lines: stdin.lock().lines(),
            prompt,
        }
    }

    /// The next line without its line ending; `None` at end of input.
    pub fn line(&mut self) -> Option<String> {
        if let Some(prompt) = &self.prompt {
            eprint!("{prompt}");
            let _ = io::stderr().flush();
        }
        match self.lines.next()? {
            Ok(line) => Some(line.strip_suffix('\r').unwrap_or(&line).to_owned()),
            Err(e) => {
                note(format!("stdin: {e}"));
                None
            }
        }
    }
}

/// The text of a message, with bytes that are not UTF-8 shown as U+FFFD.
pub fn text(msg: &[u8]) -> String {
    String::from_utf8_lossy(msg).into_owned()
}
