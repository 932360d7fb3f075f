//! Helpers shared by the integration tests: every blocking call gets a
//! timeout, every thread is joined with a deadline, every socket binds
//! port 0 on loopback.
#![allow(dead_code)]

pub mod proxy;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use converse::{Config, Conversation, Tcp, TcpListener};

/// The timeout of every blocking call in the tests.
pub const T: Duration = Duration::from_secs(10);

/// The default config with timeouts on every blocking call.
pub fn config() -> Config {
    Config::new()
        .read_timeout(Some(T))
        .write_timeout(Some(T))
        .connect_timeout(Some(T))
}

/// A listener on 127.0.0.1, port 0, and its address.
pub fn listener(config: &Config) -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind_with("127.0.0.1:0", config).expect("bind");
    let addr = listener.local_addr().unwrap().socket_addr().unwrap();
    (listener, addr)
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
