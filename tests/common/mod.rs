//! Helpers shared by the integration tests: every blocking call gets a
//! timeout, every thread is joined with a deadline, every socket binds
//! port 0 on loopback. One echo server, one seeded random generator, one
//! rule for tests that need a tool the machine may lack.
#![allow(dead_code)]

pub mod nats;
pub mod proxy;
pub mod ws;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use converse::{Config, Conversation, Memory, Tcp, TcpListener};

/// The timeout of every blocking call in the tests.
pub const T: Duration = Duration::from_secs(10);

/// The default config with timeouts on every blocking call.
pub fn config() -> Config {
    Config::new()
        .with_read_timeout(Some(T))
        .with_write_timeout(Some(T))
        .with_connect_timeout(Some(T))
        .with_accept_timeout(Some(T))
}

/// A listener on 127.0.0.1, port 0, and its address.
pub fn listener(config: &Config) -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind_with("127.0.0.1:0", config).expect("bind");
    let addr = listener.local_addr().unwrap().socket_addr().unwrap();
    (listener, addr)
}

/// The next conversation of a TCP listener.
pub fn accept(listener: &TcpListener) -> Conversation<Tcp> {
    Conversation::new(listener.accept().expect("accept"))
}

/// A plain std client (for writing arbitrary bytes), with timeouts.
pub fn raw_client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, T).expect("connect");
    s.set_read_timeout(Some(T)).unwrap();
    s.set_write_timeout(Some(T)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A converse client.
pub fn client(addr: SocketAddr, config: &Config) -> Conversation<Tcp> {
    Conversation::new(Tcp::connect_with(addr, config).expect("connect"))
}

/// Runs `board` until `done` says so (given every event), bounded by
/// twice the test timeout.
pub fn run_until(
    board: &mut converse::Switchboard,
    mut done: impl FnMut(&mut converse::Switchboard, converse::switchboard::Event) -> bool,
) {
    let until = std::time::Instant::now() + 2 * T;
    let mut events = converse::switchboard::Events::new();
    loop {
        assert!(
            std::time::Instant::now() < until,
            "the switchboard did not get there in time"
        );
        board
            .wait(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        for event in events.drain() {
            if done(board, event) {
                return;
            }
        }
    }
}

/// A switchboard with `config`, listening on TCP (port 0): it, and the
/// listener's address.
#[allow(dead_code)]
pub fn board_on_tcp(config: &Config) -> (converse::Switchboard, SocketAddr) {
    board_on(config, "tcp://127.0.0.1:0")
}

/// A switchboard with `config`, listening on `url` (port 0): it, and the
/// listener's address.
#[allow(dead_code)]
pub fn board_on(config: &Config, url: &str) -> (converse::Switchboard, SocketAddr) {
    let mut board = converse::Switchboard::with_config(config).unwrap();
    let listener = board.listen(url).unwrap();
    let addr = board
        .listener_addr(listener)
        .unwrap()
        .socket_addr()
        .unwrap();
    (board, addr)
}

/// Runs `board` until a conversation is accepted: its id.
#[allow(dead_code)]
pub fn accepted(board: &mut converse::Switchboard) -> converse::switchboard::Id {
    let mut id = None;
    run_until(board, |_, event| {
        if let converse::switchboard::Event::Accepted { id: i, .. } = event {
            id = Some(i);
        }
        id.is_some()
    });
    id.expect("accepted")
}

/// Two conversations joined in memory.
pub fn memory_pair(config: &Config) -> (Conversation<Memory>, Conversation<Memory>) {
    let (a, b) = Memory::pair_with(config).expect("a valid config");
    (Conversation::new(a), Conversation::new(b))
}

/// One frame of the default wire format.
pub fn frame(msg: &[u8]) -> Vec<u8> {
    let mut v = (msg.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(msg);
    v
}

/// Reads from a raw stream until its end (with the stream's timeout).
pub fn read_to_end(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(out)
}

/// Writes all of `bytes` to a raw stream.
pub fn write_all(s: &mut TcpStream, bytes: &[u8]) {
    s.write_all(bytes).expect("write");
}

/// A thread joined with a deadline.
pub struct Joiner<R> {
    rx: mpsc::Receiver<thread::Result<R>>,
}

/// Spawns `f` on a thread.
pub fn spawn<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Joiner<R> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let _ = tx.send(r);
    });
    Joiner { rx }
}

impl<R> Joiner<R> {
    /// The thread's result; fails the test if it takes longer than `within`
    /// or panicked.
    pub fn join_within(self, within: Duration) -> R {
        match self.rx.recv_timeout(within) {
            Ok(Ok(r)) => r,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!("thread did not finish within {within:?}"),
        }
    }

    /// [`join_within`](Self::join_within) the test timeout, doubled.
    pub fn join(self) -> R {
        self.join_within(2 * T)
    }
}

/// The echo server of the tests: every accepted conversation is served on
/// a thread of its own, echoing each message until the peer's end, then
/// closing. Each conversation's outcome (`Ok(messages echoed)` or the
/// error's text) is reported in `outcomes`, in the order they end.
pub struct Echo {
    /// The address to connect to (a URL).
    pub url: String,
    /// One outcome per conversation.
    pub outcomes: mpsc::Receiver<Result<usize, String>>,
}

impl Echo {
    /// Serves `listener` until it fails (it is stopped by dropping the
    /// process's last reference: tests simply let it run).
    pub fn serve(listener: converse::Listener) -> Echo {
        let url = listener.local_addr().unwrap().to_string();
        let (tx, outcomes) = mpsc::channel();
        thread::spawn(move || loop {
            let c = match listener.accept() {
                Ok(c) => c,
                Err(converse::Error::Timeout) => continue,
                Err(_) => return,
            };
            let tx = tx.clone();
            thread::spawn(move || {
                let _ = tx.send(echo_conversation(c));
            });
        });
        Echo { url, outcomes }
    }

    /// An echo server over TCP on 127.0.0.1 with `config`.
    pub fn tcp(config: &Config) -> Echo {
        Echo::serve(converse::listen_with("tcp://127.0.0.1:0", config).unwrap())
    }

    /// The server's socket address (TCP and UDP).
    pub fn addr(&self) -> SocketAddr {
        self.url
            .parse::<converse::Addr>()
            .unwrap()
            .socket_addr()
            .unwrap()
    }

    /// The next conversation's outcome, waiting at most the test timeout.
    pub fn outcome(&self) -> Result<usize, String> {
        self.outcomes.recv_timeout(2 * T).expect("an outcome")
    }
}

/// Echoes `c` until its end; the number of messages, or the error's text.
pub fn echo_conversation<X: converse::transport::Transport>(
    mut c: Conversation<X>,
) -> Result<usize, String> {
    let mut echoed = 0;
    let outcome = loop {
        match c.recv() {
            Ok(Some(m)) => match c.send(&m) {
                Ok(()) => echoed += 1,
                Err(e) => break Err(e.to_string()),
            },
            Ok(None) => break Ok(echoed),
            Err(e) => break Err(e.to_string()),
        }
    };
    let _ = c.close();
    outcome
}

/// The one random generator of the tests: xorshift64, seeded, so that a
/// failure can be replayed from the seed it prints.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; zero is moved off zero).
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// `true` when `CONVERSE_REQUIRE_ALL=1`: a test that would skip for a
/// missing tool (python3, IPv6 loopback, a browser, nats-server) fails
/// instead. `.ci/run` sets it and installs everything.
pub fn require_all() -> bool {
    std::env::var("CONVERSE_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Skips the rest of a test for `reason` (a missing tool), with a message;
/// under `CONVERSE_REQUIRE_ALL=1` fails it instead.
pub fn skip(reason: &str) {
    if require_all() {
        panic!("CONVERSE_REQUIRE_ALL=1, but {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// `true` if python3 runs here (otherwise [`skip`]s).
pub fn have_python() -> bool {
    let ok = std::process::Command::new("python3")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip("python3 is not installed");
    }
    ok
}

/// `true` if the IPv6 loopback works here (otherwise [`skip`]s).
pub fn have_ipv6() -> bool {
    let ok = std::net::TcpListener::bind("[::1]:0").is_ok();
    if !ok {
        skip("no IPv6 loopback on this machine");
    }
    ok
}

/// A fresh path for a Unix socket in the system's temporary directory,
/// removed (if it still exists) when the guard is dropped.
#[derive(Debug)]
pub struct SocketPath(pub std::path::PathBuf);

impl SocketPath {
    pub fn new(tag: &str) -> SocketPath {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("converse-{tag}-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        SocketPath(path)
    }

    /// The path as a URL of `scheme`: `unix:///tmp/...`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.0.display())
    }
}

impl Drop for SocketPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[path = "../../examples/common/certs.rs"]
pub mod certs;

/// TLS for the tests: one CA, a server certificate for `localhost`,
/// `127.0.0.1` and `::1`, and a client certificate, made once per process.
pub mod tls {
    use std::sync::OnceLock;

    use super::certs::Kit;
    use converse::tls::{TlsClient, TlsServer};
    use converse::Config;

    /// The test process's certificates.
    pub fn kit() -> &'static Kit {
        static KIT: OnceLock<Kit> = OnceLock::new();
        KIT.get_or_init(|| Kit::new("alice"))
    }

    /// A server presenting the kit's server certificate.
    pub fn server() -> TlsServer {
        let kit = kit();
        TlsServer::from_pem(&kit.server.cert_pem, &kit.server.key_pem).unwrap()
    }

    /// A client trusting the kit's CA.
    pub fn client() -> TlsClient {
        TlsClient::trusting_ca_pem(kit().ca.cert_pem()).unwrap()
    }

    /// A client trusting the kit's CA and presenting its client certificate.
    pub fn client_with_cert() -> TlsClient {
        let kit = kit();
        client()
            .with_identity_pem(&kit.client.cert_pem, &kit.client.key_pem)
            .unwrap()
    }

    /// `config` with both sides of the kit.
    pub fn config(config: Config) -> Config {
        config.with_tls_server(server()).with_tls_client(client())
    }

    /// A plain rustls client session for `127.0.0.1`, trusting the kit's
    /// CA: a peer written without converse.
    #[allow(dead_code)]
    pub fn rustls_client() -> rustls::ClientConnection {
        rustls::ClientConnection::new(
            client().rustls_config().clone(),
            "127.0.0.1".try_into().unwrap(),
        )
        .unwrap()
    }
}
