//! A fault-injecting loopback proxy, for tests.
//!
//! TCP: every accepted connection is forwarded to the target, through a
//! [`TcpFault`]: writes sliced small (down to one byte), delayed, the stream
//! cut or reset after some bytes, or a peer that stops reading.
//!
//! UDP: datagrams from one client are forwarded to the target and back,
//! through a deterministic [`UdpFaults`] schedule of drops, duplicates and
//! reorderings, counted so that a test can predict exactly what arrives.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// What the TCP proxy does to the bytes it forwards.
#[derive(Clone, Copy, Debug)]
pub enum TcpFault {
    /// Forwards each read as writes of 1 to `max` bytes (pseudo-random
    /// sizes; `max` 1 means one byte per write), each sent at once.
    Slice { max: usize },
    /// Waits this long before forwarding each read.
    Delay(Duration),
    /// Forwards this many client bytes, then closes both sides cleanly.
    CutAfter(usize),
    /// Forwards this many client bytes, then resets both sides.
    ResetAfter(usize),
    /// Forwards this many client bytes, then stops reading from the client
    /// (it will see its sends block).
    StopReadingAfter(usize),
}

/// A TCP proxy; it stops accepting when dropped.
pub struct TcpProxy {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl TcpProxy {
    pub fn start(target: SocketAddr, fault: TcpFault) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        thread::spawn(move || {
            for client in listener.incoming() {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                for s in [&client, &server] {
                    s.set_nodelay(true).unwrap();
                }
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || pump(client, server, fault, true));
                thread::spawn(move || pump(s2, c2, fault, false));
            }
        });
        TcpProxy { addr, stop }
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
    }
}

/// Copies `from` to `to`, applying `fault` (the limits count only the
/// client-to-server direction).
fn pump(mut from: TcpStream, mut to: TcpStream, fault: TcpFault, upstream: bool) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut forwarded = 0usize;
    let mut rng = super::Rng::new(0x2545_f491_4f6c_dd1d ^ upstream as u64);
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        if upstream {
            let limit = match fault {
                TcpFault::CutAfter(l) | TcpFault::ResetAfter(l) | TcpFault::StopReadingAfter(l) => {
                    Some(l)
                }
                _ => None,
            };
            if let Some(limit) = limit {
                let room = limit.saturating_sub(forwarded);
                if chunk.len() >= room {
                    let _ = to.write_all(&chunk[..room]);
                    match fault {
                        TcpFault::CutAfter(_) => {
                            // The server sees the end of its stream here;
                            // the client's connection is cut both ways.
                            let _ = to.shutdown(Shutdown::Write);
                            let _ = from.shutdown(Shutdown::Both);
                        }
                        TcpFault::ResetAfter(_) => {
                            for s in [&to, &from] {
                                let _ = socket2::SockRef::from(s).set_linger(Some(Duration::ZERO));
                            }
                            // Dropping both (this thread's handles; the other
                            // pump's clones are shut down) sends the resets.
                            let _ = to.shutdown(Shutdown::Read);
                            let _ = from.shutdown(Shutdown::Read);
                        }
                        _ => {
                            // Stop reading: hold the connection open, idle.
                            thread::sleep(Duration::from_secs(30));
                        }
                    }
                    return;
                }
            }
        }
        forwarded += chunk.len();
        match fault {
            TcpFault::Slice { max } => {
                while !chunk.is_empty() {
                    let k = (1 + rng.below(max.max(1) as u64) as usize).min(chunk.len());
                    if to.write_all(&chunk[..k]).is_err() {
                        return;
                    }
                    chunk = &chunk[k..];
                }
            }
            TcpFault::Delay(d) => {
                thread::sleep(d);
                if to.write_all(chunk).is_err() {
                    return;
                }
            }
            _ => {
                if to.write_all(chunk).is_err() {
                    // The other side is gone: keep reading until this side
                    // ends, so that closing resets nothing it sent.
                    while matches!(from.read(&mut buf), Ok(n) if n > 0) {}
                    return;
                }
            }
        }
    }
}

/// A deterministic schedule of UDP faults, counted per direction from 1.
#[derive(Clone, Copy, Debug, Default)]
pub struct UdpFaults {
    /// Drop every n-th datagram.
    pub drop_every: Option<u64>,
    /// Send every n-th datagram twice.
    pub duplicate_every: Option<u64>,
    /// Hold every n-th datagram back and send it after the next one.
    pub swap_every: Option<u64>,
}

impl UdpFaults {
    /// What the receiver gets, in order, when `sent` passes through.
    pub fn apply<T: Clone>(&self, sent: &[T]) -> Vec<T> {
        let mut out = Vec::new();
        let mut held: Option<T> = None;
        for (i, item) in sent.iter().enumerate() {
            let n = i as u64 + 1;
            if self.drop_every.is_some_and(|k| n % k == 0) {
                continue;
            }
            let copies = if self.duplicate_every.is_some_and(|k| n % k == 0) {
                2
            } else {
                1
            };
            if held.is_none() && self.swap_every.is_some_and(|k| n % k == 0) {
                held = Some(item.clone());
                continue;
            }
            for _ in 0..copies {
                out.push(item.clone());
            }
            if let Some(h) = held.take() {
                out.push(h);
            }
        }
        out.extend(held);
        out
    }
}

/// Counts of what the UDP proxy did.
#[derive(Debug, Default)]
pub struct UdpProxyStats {
    /// Datagrams received from the client (before any fault).
    pub seen: AtomicU64,
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub swapped: AtomicU64,
}

/// A UDP proxy for one client: faults apply client-to-server only.
pub struct UdpProxy {
    pub addr: SocketAddr,
    pub stats: Arc<UdpProxyStats>,
    stop: Arc<AtomicBool>,
}

impl UdpProxy {
    pub fn start(target: SocketAddr, faults: UdpFaults) -> UdpProxy {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(target).unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        }
        let addr = front.local_addr().unwrap();
        let stats = Arc::new(UdpProxyStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();

        let (f2, b2, st, c2, flag) = (
            front.try_clone().unwrap(),
            back.try_clone().unwrap(),
            Arc::clone(&stats),
            Arc::clone(&client),
            Arc::clone(&stop),
        );
        thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            let mut n = 0u64;
            let mut held: Option<Vec<u8>> = None;
            while !flag.load(Ordering::Relaxed) {
                let (len, from) = match f2.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        continue
                    }
                    Err(_) => continue,
                };
                *c2.lock().unwrap() = Some(from);
                n += 1;
                st.seen.fetch_add(1, Ordering::Relaxed);
                let d = &buf[..len];
                if faults.drop_every.is_some_and(|k| n % k == 0) {
                    st.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let copies = if faults.duplicate_every.is_some_and(|k| n % k == 0) {
                    st.duplicated.fetch_add(1, Ordering::Relaxed);
                    2
                } else {
                    1
                };
                if held.is_none() && faults.swap_every.is_some_and(|k| n % k == 0) {
                    st.swapped.fetch_add(1, Ordering::Relaxed);
                    held = Some(d.to_vec());
                    continue;
                }
                for _ in 0..copies {
                    let _ = b2.send(d);
                    st.forwarded.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(h) = held.take() {
                    let _ = b2.send(&h);
                    st.forwarded.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        let flag = Arc::clone(&stop);
        thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !flag.load(Ordering::Relaxed) {
                if let Ok(len) = back.recv(&mut buf) {
                    if let Some(to) = *client.lock().unwrap() {
                        let _ = front.send_to(&buf[..len], to);
                    }
                }
            }
        });
        UdpProxy { addr, stats, stop }
    }
}

impl Drop for UdpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What the lossy UDP proxy does, each way, to each datagram: drop it,
/// send it twice, or hold it back behind the next one (fractions, from a
/// seeded generator).
#[derive(Clone, Copy, Debug)]
pub struct Loss {
    pub drop: f64,
    pub duplicate: f64,
    pub reorder: f64,
    pub seed: u64,
}

/// A UDP proxy for one client that loses, duplicates and reorders in both
/// directions (`Loss`); it stops when dropped.
pub struct LossyUdpProxy {
    pub addr: SocketAddr,
    pub stats: Arc<UdpProxyStats>,
    stop: Arc<AtomicBool>,
}

impl LossyUdpProxy {
    pub fn start(target: SocketAddr, loss: Loss) -> LossyUdpProxy {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(target).unwrap();
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        }
        let addr = front.local_addr().unwrap();
        let stats = Arc::new(UdpProxyStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<std::sync::Mutex<Option<SocketAddr>>> = Arc::default();
        // Client to server.
        {
            let (front, back) = (front.try_clone().unwrap(), back.try_clone().unwrap());
            let (stats, client, stop) =
                (Arc::clone(&stats), Arc::clone(&client), Arc::clone(&stop));
            thread::spawn(move || {
                let mut lossy = Lossy::new(loss, 1);
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    match front.recv_from(&mut buf) {
                        Ok((len, from)) => {
                            *client.lock().unwrap() = Some(from);
                            lossy.pass(&buf[..len], &stats, |d| {
                                let _ = back.send(d);
                            });
                        }
                        Err(_) => lossy.flush(&stats, |d| {
                            let _ = back.send(d);
                        }),
                    }
                }
            });
        }
        // Server to client.
        {
            let (stats, stop) = (Arc::clone(&stats), Arc::clone(&stop));
            thread::spawn(move || {
                let mut lossy = Lossy::new(loss, 2);
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let to = *client.lock().unwrap();
                    match (back.recv(&mut buf), to) {
                        (Ok(len), Some(to)) => lossy.pass(&buf[..len], &stats, |d| {
                            let _ = front.send_to(d, to);
                        }),
                        (_, Some(to)) => lossy.flush(&stats, |d| {
                            let _ = front.send_to(d, to);
                        }),
                        _ => {}
                    }
                }
            });
        }
        LossyUdpProxy { addr, stats, stop }
    }
}

impl Drop for LossyUdpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One direction's faults.
struct Lossy {
    loss: Loss,
    rng: super::Rng,
    held: Option<Vec<u8>>,
}

impl Lossy {
    fn new(loss: Loss, direction: u64) -> Lossy {
        Lossy {
            loss,
            rng: super::Rng::new(loss.seed.wrapping_mul(31).wrapping_add(direction)),
            held: None,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.rng.below(1_000_000) as f64) < p * 1_000_000.0
    }

    fn pass(&mut self, d: &[u8], stats: &UdpProxyStats, mut send: impl FnMut(&[u8])) {
        stats.seen.fetch_add(1, Ordering::Relaxed);
        if self.chance(self.loss.drop) {
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.held.is_none() && self.chance(self.loss.reorder) {
            stats.swapped.fetch_add(1, Ordering::Relaxed);
            self.held = Some(d.to_vec());
            return;
        }
        send(d);
        stats.forwarded.fetch_add(1, Ordering::Relaxed);
        if self.chance(self.loss.duplicate) {
            stats.duplicated.fetch_add(1, Ordering::Relaxed);
            send(d);
        }
        self.flush(stats, send);
    }

    /// Sends what was held back (after the next datagram, or when nothing
    /// came for a while).
    fn flush(&mut self, stats: &UdpProxyStats, mut send: impl FnMut(&[u8])) {
        if let Some(h) = self.held.take() {
            send(&h);
            stats.forwarded.fetch_add(1, Ordering::Relaxed);
        }
    }
}
