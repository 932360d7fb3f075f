//! How fast is UDP? Round trips against an echo peer, one-way streams
//! between two client conversations, and one-way into a listener's accepted
//! conversation — converse and raw `std::net` doing the same work.
//!
//! UDP may drop datagrams when a receiver falls behind; every one-way bench
//! counts what arrived, prints the loss at the end of its run, and reports
//! *delivered* messages per second: the time until the last datagram that
//! arrived, scaled by sent / received.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use converse::{Conversation, Udp, UdpListener};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// How long a receiver waits after the last datagram before it concludes
/// that the rest were lost.
const QUIET: Duration = Duration::from_millis(50);

fn bound() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

fn addr(s: &UdpSocket) -> SocketAddr {
    s.local_addr().unwrap()
}

/// An echo peer (the same for every implementation), stopped on drop.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Echo {
    fn start() -> Echo {
        let socket = bound();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let addr = addr(&socket);
        let thread = thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !flag.load(Ordering::Relaxed) {
                if let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let _ = socket.send_to(&buf[..n], from);
                }
            }
        });
        Echo {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

/// How long a ping waits for its echo before it is sent again.
const RESEND: Duration = Duration::from_secs(1);

pub fn udp_pingpong(c: &mut Criterion) {
    let mut group = c.benchmark_group("udp_pingpong");
    let size = 64usize;
    group.throughput(common::throughput(1, size));
    let payload = vec![0x42u8; size];
    let echo = Echo::start();

    // A ping or its echo may be lost (UDP): after RESEND without the echo,
    // the ping is sent again, so that a bench never waits for ever.
    let mut client = Conversation::new(Udp::connect(echo.addr).unwrap());
    client.set_read_timeout(Some(RESEND)).unwrap();
    group.bench_function(BenchmarkId::new("converse", size), |b| {
        b.iter(|| loop {
            client.send(&payload).unwrap();
            match client.recv() {
                Ok(Some(echo)) => return echo,
                Err(converse::Error::Timeout) => eprintln!("udp_pingpong/converse: lost, resent"),
                other => panic!("udp_pingpong/converse: {other:?}"),
            }
        })
    });

    let raw = bound();
    raw.connect(echo.addr).unwrap();
    raw.set_read_timeout(Some(RESEND)).unwrap();
    let mut buf = vec![0u8; 65536];
    group.bench_function(BenchmarkId::new("raw", size), |b| {
        b.iter(|| loop {
            raw.send(&payload).unwrap();
            match raw.recv(&mut buf) {
                Ok(n) => return n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    eprintln!("udp_pingpong/raw: lost, resent")
                }
                Err(e) => panic!("udp_pingpong/raw: {e}"),
            }
        })
    });
    group.finish();
}

/// A receiving thread: for each count it is sent, receives until it has
/// that many datagrams or `QUIET` passes without one, and answers with the
/// number received and when the last arrived.
struct Counter {
    counts: mpsc::Sender<u64>,
    results: mpsc::Receiver<(u64, Instant)>,
    thread: thread::JoinHandle<()>,
    sent: u64,
    received: u64,
}

impl Counter {
    /// `recv` returns `false` when `QUIET` passed without a datagram.
    fn start(mut recv: impl FnMut() -> bool + Send + 'static) -> Counter {
        let (counts, count_rx) = mpsc::channel::<u64>();
        let (result_tx, results) = mpsc::channel();
        let thread = thread::spawn(move || {
            while let Ok(n) = count_rx.recv() {
                let (mut got, mut last) = (0, Instant::now());
                while got < n && recv() {
                    got += 1;
                    last = Instant::now();
                }
                result_tx.send((got, last)).unwrap();
            }
        });
        Counter {
            counts,
            results,
            thread,
            sent: 0,
            received: 0,
        }
    }

    fn time(&mut self, n: u64, send: impl FnOnce()) -> Duration {
        self.counts.send(n).unwrap();
        let start = Instant::now();
        send();
        let (got, last) = self.results.recv().unwrap();
        self.sent += n;
        self.received += got;
        // Lost datagrams are not throughput: charge their share of the time.
        let elapsed = last.saturating_duration_since(start);
        elapsed.mul_f64(n as f64 / got.max(1) as f64)
    }

    fn report(self, id: &str) {
        drop(self.counts);
        self.thread.join().unwrap();
        let lost = self.sent - self.received;
        eprintln!(
            "{id}: {} of {} datagrams received, {lost} lost ({:.3}%)",
            self.received,
            self.sent,
            100.0 * lost as f64 / self.sent.max(1) as f64
        );
    }
}

pub fn udp_stream(c: &mut Criterion) {
    let mut group = c.benchmark_group("udp_stream");
    for size in [64usize, 1400] {
        group.throughput(common::throughput(1, size));
        let payload = vec![0x42u8; size];

        {
            let (a, b) = (bound(), bound());
            a.connect(addr(&b)).unwrap();
            b.connect(addr(&a)).unwrap();
            let config = converse::Config::new().with_read_timeout(Some(QUIET));
            let mut sender = Conversation::new(Udp::from_socket(a, &config).unwrap());
            let mut receiver = Conversation::new(Udp::from_socket(b, &config).unwrap());
            let mut counter = Counter::start(move || receiver.recv().is_ok());
            group.bench_function(BenchmarkId::new("converse", size), |b| {
                b.iter_custom(|n| {
                    counter.time(n, || {
                        for _ in 0..n {
                            sender.send(&payload).unwrap();
                        }
                    })
                })
            });
            counter.report(&format!("udp_stream/converse/{size}"));
        }

        {
            let (a, b) = (bound(), bound());
            a.connect(addr(&b)).unwrap();
            b.connect(addr(&a)).unwrap();
            b.set_read_timeout(Some(QUIET)).unwrap();
            let mut buf = vec![0u8; 65536];
            let mut counter = Counter::start(move || b.recv(&mut buf).is_ok());
            group.bench_function(BenchmarkId::new("raw", size), |bench| {
                bench.iter_custom(|n| {
                    counter.time(n, || {
                        for _ in 0..n {
                            a.send(&payload).unwrap();
                        }
                    })
                })
            });
            counter.report(&format!("udp_stream/raw/{size}"));
        }
    }
    group.finish();
}

fn udp_listener_stream(c: &mut Criterion) {
    let mut group = c.benchmark_group("udp_listener_stream");
    let size = 64usize;
    group.throughput(common::throughput(1, size));
    let payload = vec![0x42u8; size];

    {
        let config = converse::Config::new().with_read_timeout(Some(QUIET));
        let listener = UdpListener::bind_with("127.0.0.1:0", &config).unwrap();
        let sender = bound();
        sender
            .connect(listener.local_addr().unwrap().socket_addr().unwrap())
            .unwrap();
        sender.send(b"hello").unwrap();
        let mut conversation = converse::Conversation::new(listener.accept().unwrap());
        conversation.recv().unwrap().unwrap();
        let mut counter = Counter::start(move || conversation.recv().is_ok());
        group.bench_function(BenchmarkId::new("converse", size), |b| {
            b.iter_custom(|n| {
                counter.time(n, || {
                    for _ in 0..n {
                        sender.send(&payload).unwrap();
                    }
                })
            })
        });
        counter.report(&format!("udp_listener_stream/converse/{size}"));
        eprintln!(
            "udp_listener_stream/converse/{size}: listener {:?}",
            listener.stats()
        );
    }

    {
        let receiver = bound();
        receiver.set_read_timeout(Some(QUIET)).unwrap();
        let sender = bound();
        sender.connect(addr(&receiver)).unwrap();
        let mut buf = vec![0u8; 65536];
        let mut counter = Counter::start(move || receiver.recv_from(&mut buf).is_ok());
        group.bench_function(BenchmarkId::new("raw", size), |b| {
            b.iter_custom(|n| {
                counter.time(n, || {
                    for _ in 0..n {
                        sender.send(&payload).unwrap();
                    }
                })
            })
        });
        counter.report(&format!("udp_listener_stream/raw/{size}"));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = udp_pingpong, udp_stream, udp_listener_stream
}
criterion_main!(benches);
