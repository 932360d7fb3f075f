//! What every example shares: the address, transport and framing options;
//! printing received messages (one per line, flushed); prompts on stderr
//! only when stdin is a terminal; one error line that names the address;
//! an `accept` loop that survives a moment without file descriptors; and
//! the keepalive that holds a UDP client's place.
#![allow(dead_code)]

pub mod certs;
pub mod room;

use std::fmt::Display;
use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, ValueEnum};
use converse::codec::Framing;
use converse::{Config, Conversation, Listener, SendHalf};

/// The transport, chosen on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum TransportKind {
    /// TCP, with a framing (a length prefix by default).
    #[default]
    Tcp,
    /// UDP, one datagram per message.
    Udp,
    /// A Unix stream socket (--addr is a path), with a framing.
    Unix,
    /// TLS over TCP, with a framing (--tls-cert, --tls-key, --tls-ca).
    Tls,
    /// WebSocket (--addr HOST:PORT[/path]).
    Ws,
    /// WebSocket over TLS (--tls-cert, --tls-key, --tls-ca).
    Wss,
    /// QUIC: one stream of a connection over UDP, TLS 1.3 built in
    /// (--tls-cert, --tls-key, --tls-ca).
    Quic,
}

impl TransportKind {
    pub fn scheme(self) -> &'static str {
        match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Udp => "udp",
            TransportKind::Unix => "unix",
            TransportKind::Tls => "tls",
            TransportKind::Ws => "ws",
            TransportKind::Wss => "wss",
            TransportKind::Quic => "quic",
        }
    }

    /// TLS (or QUIC, whose handshake is TLS): certificates apply.
    pub fn has_tls(self) -> bool {
        matches!(
            self,
            TransportKind::Tls | TransportKind::Wss | TransportKind::Quic
        )
    }

    fn from_scheme(scheme: &str) -> Option<TransportKind> {
        TransportKind::value_variants()
            .iter()
            .copied()
            .find(|t| t.scheme() == scheme)
    }
}

/// `--addr`, `--transport` and `--framing`, flattened into each example's
/// arguments.
#[derive(Args, Debug)]
pub struct Endpoint {
    /// HOST:PORT to bind (servers; port 0 lets the system pick) or to
    /// connect to (clients). IPv6 in brackets: [::1]:8090. A URL such as
    /// udp://127.0.0.1:8090 also says the transport.
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
    /// The transport [default: tcp, or the scheme of --addr].
    #[arg(long, value_enum)]
    pub transport: Option<TransportKind>,
    /// How messages are delimited over TCP: length (4-byte big-endian
    /// prefix), length8be ... length64le (other widths and byte orders),
    /// varint, lines (nc and telnet can take part), raw (no framing: the
    /// tutorial's own Python programs can take part; boundaries are lost,
    /// and an empty message cannot be sent). UDP: one datagram per message.
    #[arg(long, default_value = "length", value_parser = parse_framing)]
    pub framing: Framing,
    #[command(flatten)]
    pub tls: TlsFiles,
}

/// `--tls-cert`, `--tls-key`, `--tls-ca`: PEM files.
#[derive(Args, Debug, Default)]
pub struct TlsFiles {
    /// TLS: the certificate chain (PEM) a server presents, or a client's
    /// own certificate for mutual TLS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// TLS: the private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// TLS: the CA (PEM) the peer's certificate must be signed by. A client
    /// verifies the server against it instead of the Mozilla root
    /// certificates converse bundles (webpki-roots); a server requires
    /// client certificates signed by it (mutual TLS).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
}

impl TlsFiles {
    /// A server's TLS settings, if a certificate was given.
    pub fn server(&self) -> Result<Option<converse::tls::TlsServer>, Failed> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let server = converse::tls::TlsServer::from_pem_files(cert, key).at("--tls-cert")?;
        Ok(Some(match &self.tls_ca {
            Some(ca) => server.require_client_certs_file(ca).at("--tls-ca")?,
            None => server,
        }))
    }

    /// A client's TLS settings: whom it trusts, what it presents.
    pub fn client(&self) -> Result<converse::tls::TlsClient, Failed> {
        let client = match &self.tls_ca {
            Some(ca) => converse::tls::TlsClient::trusting_ca_file(ca).at("--tls-ca")?,
            None => converse::tls::TlsClient::new(),
        };
        match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => client.with_identity_files(cert, key).at("--tls-cert"),
            _ => Ok(client),
        }
    }
}

fn parse_framing(name: &str) -> Result<Framing, String> {
    name.parse::<Framing>().map_err(|e| e.to_string())
}

impl Endpoint {
    /// The transport: `--transport`, or the scheme of `--addr`, or TCP.
    pub fn transport(&self) -> Result<TransportKind, Failed> {
        match (self.scheme()?, self.transport) {
            (Some(from_addr), Some(given)) if from_addr != given => Err(Failed::new(
                self.addr.as_deref().unwrap_or_default(),
                format!(
                    "--addr says {} but --transport says {}",
                    from_addr.scheme(),
                    given.scheme()
                ),
            )),
            (Some(from_addr), _) => Ok(from_addr),
            (None, given) => Ok(given.unwrap_or_default()),
        }
    }

    /// The transport named by the scheme of `--addr`, if it has one.
    fn scheme(&self) -> Result<Option<TransportKind>, Failed> {
        let Some(addr) = &self.addr else {
            return Ok(None);
        };
        let Some((scheme, _)) = addr.split_once("://") else {
            return Ok(None);
        };
        let known: Vec<&str> = TransportKind::value_variants()
            .iter()
            .map(|t| t.scheme())
            .collect();
        TransportKind::from_scheme(&scheme.to_ascii_lowercase())
            .map(Some)
            .ok_or_else(|| {
                Failed::new(
                    addr,
                    format!(
                        "unknown scheme {scheme:?} (this program speaks {})",
                        known.join(", ")
                    ),
                )
            })
    }

    /// The URL for this endpoint, with `default` (HOST:PORT) when no
    /// `--addr` was given.
    pub fn url(&self, default: &str) -> Result<String, Failed> {
        let transport = self.transport()?;
        let addr = self.addr.as_deref().unwrap_or(default);
        let hostport = addr.split_once("://").map_or(addr, |(_, rest)| rest);
        Ok(format!("{}://{hostport}", transport.scheme()))
    }

    /// The configuration these options ask for: the framing.
    pub fn config(&self) -> Config {
        Config::new().with_framing(self.framing)
    }

    /// A server's configuration: the framing, and for TLS the certificate
    /// (required) and the client CA.
    pub fn server_config(&self) -> Result<Config, Failed> {
        let config = self.config();
        match self.tls.server()? {
            Some(server) => Ok(config.with_tls_server(server)),
            None if self.transport()?.has_tls() => Err(Failed::new(
                self.addr.as_deref().unwrap_or("tls"),
                "a TLS server needs --tls-cert FILE --tls-key FILE (make them with: \
                 cargo run --example make_certs)",
            )),
            None => Ok(config),
        }
    }

    /// A client's configuration: the framing, and for TLS whom it trusts
    /// and what it presents.
    pub fn client_config(&self) -> Result<Config, Failed> {
        let config = self.config();
        if self.transport()?.has_tls() {
            return Ok(config.with_tls_client(self.tls.client()?));
        }
        Ok(config)
    }

    pub fn is_udp(&self) -> bool {
        matches!(self.transport(), Ok(TransportKind::Udp))
    }
}

/// What went wrong, and where: the one line `main` prints.
#[derive(Debug)]
pub struct Failed {
    at: String,
    what: String,
}

impl Failed {
    pub fn new(at: &str, what: impl Display) -> Failed {
        Failed {
            at: at.to_owned(),
            what: what.to_string(),
        }
    }
}

impl Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.what.contains(&self.at) || self.at.is_empty() {
            f.write_str(&self.what)
        } else {
            write!(f, "{}: {}", self.at, self.what)
        }
    }
}

/// Names the place an error concerns: `listener.accept().at(&url)?`.
pub trait At<T> {
    fn at(self, place: &str) -> Result<T, Failed>;
}

impl<T, E: std::error::Error> At<T> for Result<T, E> {
    fn at(self, place: &str) -> Result<T, Failed> {
        self.map_err(|e| Failed::new(place, e))
    }
}

/// Runs an example's `run`, and on failure prints its one error line and
/// exits 1.
pub fn main_with(run: impl FnOnce() -> Result<(), Failed>) {
    trace_as_rust_log_says();
    if let Err(failed) = run() {
        eprintln!("error: {failed}");
        std::process::exit(1);
    }
}

/// Prints converse's `tracing` events and spans on stderr at the levels
/// `RUST_LOG` names (`RUST_LOG=debug`, `RUST_LOG=converse=debug,warn`),
/// when the crate is built with its `tracing` feature.
fn trace_as_rust_log_says() {
    let Ok(spec) = std::env::var("RUST_LOG") else {
        return;
    };
    #[cfg(feature = "tracing")]
    {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        match spec.parse::<tracing_subscriber::filter::Targets>() {
            Ok(filter) => {
                let _ = tracing_subscriber::registry()
                    .with(tracing_subscriber::fmt::layer().with_writer(io::stderr))
                    .with(filter)
                    .try_init();
            }
            Err(e) => note(format!("RUST_LOG={spec}: {e}")),
        }
    }
    #[cfg(not(feature = "tracing"))]
    note(format!(
        "RUST_LOG={spec} is set, but converse was built without its `tracing` \
         feature: run with --features tracing to see its events"
    ));
}

/// Binds a server and prints the one `listening on …` line, flushed.
pub fn listen(url: &str, config: &Config) -> Result<Listener, Failed> {
    let listener = converse::listen_with(url, config).at(url)?;
    let bound = listener.local_addr().at(url)?;
    say(format!("listening on {bound}"));
    Ok(listener)
}

/// Accepts the next conversation. A moment without file descriptors or
/// buffers (`EMFILE`, `ENFILE`, `ENOBUFS`) or a client that gave up
/// mid-handshake costs one line on stderr and a short pause, then the next
/// client is served; anything else is a failure.
pub fn accept(listener: &Listener, url: &str) -> Result<Conversation, Failed> {
    loop {
        if let Some(conversation) = accept_or_stop(listener, url, || true)? {
            return Ok(conversation);
        }
    }
}

/// Accepts as [`accept`] does, looking at `go_on` every `every` while it
/// waits; `None` once `go_on` says to stop.
pub fn accept_while(
    listener: &Listener,
    url: &str,
    every: Duration,
    go_on: impl FnMut() -> bool,
) -> Result<Option<Conversation>, Failed> {
    listener.set_accept_timeout(Some(every)).at(url)?;
    let accepted = accept_or_stop(listener, url, go_on);
    listener.set_accept_timeout(None).at(url)?;
    accepted
}

/// The accept loop of both: `go_on` is looked at before each try (each
/// accept timeout, if the listener has one).
fn accept_or_stop(
    listener: &Listener,
    url: &str,
    mut go_on: impl FnMut() -> bool,
) -> Result<Option<Conversation>, Failed> {
    let mut pause = Duration::from_millis(50);
    loop {
        if !go_on() {
            return Ok(None);
        }
        match listener.accept() {
            Ok(conversation) => return Ok(Some(conversation)),
            // The accept timeout: time to look at `go_on` again.
            Err(converse::Error::Timeout) => {}
            Err(e) if e.is_transient() => {
                note(format!("{url}: accept: {e} (retrying in {pause:?})"));
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            // A WebSocket listener upgrades in accept: one peer's failed
            // handshake is that peer's, and the next one is served.
            Err(e @ (converse::Error::WebSocket { .. } | converse::Error::Tls { .. })) => note(e),
            Err(e) => return Err(Failed::new(url, e)),
        }
    }
}

/// Connects a client.
pub fn connect(url: &str, config: &Config) -> Result<Conversation, Failed> {
    converse::connect_with(url, config).at(url)
}

/// The peer's address, as text.
pub fn peer(conversation: &Conversation) -> String {
    conversation
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default()
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

/// Lines of stdin, with a prompt on stderr before each when stdin is a
/// terminal. `None` at end of input. A thread reads stdin, so that a
/// program waiting for something else can still see stdin end
/// ([`Input::ended`]).
pub struct Input {
    lines: mpsc::Receiver<String>,
    /// A line taken from the channel by `ended`, not yet given out.
    ahead: Option<String>,
    prompt: Option<String>,
}

impl Input {
    pub fn new(prompt: &str) -> Input {
        let stdin = io::stdin();
        let prompt = stdin.is_terminal().then(|| prompt.to_owned());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in io::stdin().lock().lines() {
                match line {
                    Ok(line) => {
                        let line = line.strip_suffix('\r').unwrap_or(&line).to_owned();
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        note(format!("stdin: {e}"));
                        return;
                    }
                }
            }
        });
        Input {
            lines,
            ahead: None,
            prompt,
        }
    }

    /// The next line without its line ending; `None` at end of input.
    pub fn line(&mut self) -> Option<String> {
        if let Some(line) = self.ahead.take() {
            return Some(line);
        }
        if let Some(prompt) = &self.prompt {
            eprint!("{prompt}");
            let _ = io::stderr().flush();
        }
        self.lines.recv().ok()
    }

    /// Stdin has ended and every line of it has been given out (without
    /// waiting).
    pub fn ended(&mut self) -> bool {
        if self.ahead.is_some() {
            return false;
        }
        match self.lines.try_recv() {
            Ok(line) => {
                self.ahead = Some(line);
                false
            }
            Err(mpsc::TryRecvError::Empty) => false,
            Err(mpsc::TryRecvError::Disconnected) => true,
        }
    }

    /// The next line that is not empty (an empty message is a keepalive
    /// to these programs, never something said); `None` at end of input.
    pub fn said(&mut self) -> Option<String> {
        loop {
            let line = self.line()?;
            if !line.is_empty() {
                return Some(line);
            }
        }
    }
}

/// The text of a message, with bytes that are not UTF-8 shown as U+FFFD.
pub fn text(msg: &[u8]) -> String {
    String::from_utf8_lossy(msg).into_owned()
}

/// The keepalive of a UDP client: UDP has no connection, so a server
/// forgets a peer that is silent for its idle timeout (120 s by default).
/// While the client runs, an empty message every `every` keeps its place;
/// the examples never print or relay an empty message. Stops when dropped.
pub struct KeepAlive {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The default interval of the keepalive: well inside a 120 s idle timeout.
pub const KEEPALIVE: Duration = Duration::from_secs(30);

impl KeepAlive {
    pub fn start(tx: Arc<Mutex<SendHalf>>, every: Duration) -> KeepAlive {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                let mut tx = tx.lock().unwrap_or_else(|e| e.into_inner());
                if tx.send("").is_err() {
                    return;
                }
            }
        });
        KeepAlive {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for KeepAlive {
    /// Stops the keepalive and waits for its thread (and its hold on the
    /// sending half) to end.
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Parses a number of seconds (fractions allowed) as a duration.
pub fn seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err("expected a positive number of seconds".to_owned());
    }
    Ok(Duration::from_secs_f64(secs))
}
