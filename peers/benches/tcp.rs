//! How fast is TCP? Round trips, one-way streams with one send per message,
//! and batched streams — converse, raw `std::net` doing the same work (the
//! same wire format, a `BufReader` on the receiving side), and tokio-util's
//! `LengthDelimitedCodec` over tokio, each with a peer of its own kind.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures_util::{SinkExt, StreamExt};
use tokio_util::codec::Framed;

/// A connected pair of std streams, TCP_NODELAY on both.
fn std_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

/// A pair whose client end is a `converse::tokio` conversation (on `rt`)
/// and whose server end a std stream.
fn converse_tokio_pair(rt: &tokio::runtime::Runtime) -> (converse::tokio::Conversation, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    let client = rt.block_on(converse::tokio::connect(&url)).unwrap();
    let (server, _) = listener.accept().unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

/// One end of a pair as a converse conversation.
fn converse_end(stream: TcpStream) -> converse::Conversation<converse::Tcp> {
    converse::Conversation::new(
        converse::Tcp::from_stream(stream, &converse::Config::new()).unwrap(),
    )
}

/// A converse pair (config applied to both ends).
fn converse_pair(
    config: &converse::Config,
) -> (
    converse::Conversation<converse::Tcp>,
    converse::Conversation<converse::Tcp>,
) {
    let (client, server) = std_pair();
    (
        converse::Conversation::new(converse::Tcp::from_stream(client, config).unwrap()),
        converse::Conversation::new(converse::Tcp::from_stream(server, config).unwrap()),
    )
}

/// An echo server on a switchboard, on a thread of its own, serving the
/// server end of a fresh pair; returns the client end.
fn switchboard_echo() -> (TcpStream, thread::JoinHandle<()>) {
    let (client, server) = std_pair();
    let thread = thread::spawn(move || {
        let config = converse::Config::new();
        let mut board = converse::Switchboard::with_config(&config).unwrap();
        board
            .adopt(converse::Tcp::from_stream(server, &config).unwrap())
            .unwrap();
        let mut events = converse::switchboard::Events::new();
        loop {
            board.wait(&mut events, None).unwrap();
            for event in events.drain() {
                match event {
                    converse::switchboard::Event::Message { id, message } => {
                        board.send(id, &message).unwrap()
                    }
                    converse::switchboard::Event::Ended { .. } => return,
                    _ => {}
                }
            }
        }
    });
    (client, thread)
}

/// A switchboard with one conversation (the client end of a fresh pair) and
/// the server end; `flush` writes everything queued before returning.
struct BoardSender {
    board: converse::Switchboard,
    id: converse::switchboard::Id,
    events: converse::switchboard::Events,
}

impl BoardSender {
    fn new(stream: TcpStream) -> BoardSender {
        let config = converse::Config::new().with_max_backlog(64 << 20);
        let mut board = converse::Switchboard::with_config(&config).unwrap();
        let id = board
            .adopt(converse::Tcp::from_stream(stream, &config).unwrap())
            .unwrap();
        BoardSender {
            board,
            id,
            events: converse::switchboard::Events::new(),
        }
    }

    fn flush(&mut self) {
        self.board.flush();
        while self.board.queued(self.id).unwrap_or(0) > 0 {
            self.board
                .wait(&mut self.events, Some(Duration::from_millis(10)))
                .unwrap();
            self.events.drain().for_each(drop);
        }
    }
}

type TokioFramed = Framed<tokio::net::TcpStream, tokio_util::codec::LengthDelimitedCodec>;

fn tokio_framed(rt: &tokio::runtime::Runtime, stream: TcpStream) -> TokioFramed {
    stream.set_nonblocking(true).unwrap();
    let _guard = rt.enter();
    Framed::new(
        tokio::net::TcpStream::from_std(stream).unwrap(),
        common::tokio_codec(),
    )
}

/// tokio-util's echo on `server`, on a thread of its own with its own
/// runtime, until the peer ends.
fn tokio_echo(server: TcpStream) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let rt = common::tokio_runtime();
        let mut framed = tokio_framed(&rt, server);
        rt.block_on(async {
            while let Some(Ok(m)) = framed.next().await {
                framed.send(m.freeze()).await.unwrap();
            }
        });
    })
}

/// Raw std: read one frame into `payload`.
fn raw_read_frame(reader: &mut impl Read, payload: &mut Vec<u8>) -> std::io::Result<()> {
    let mut header = [0u8; 4];
    reader.read_exact(&mut header)?;
    payload.resize(u32::from_be_bytes(header) as usize, 0);
    reader.read_exact(payload)
}

// ---------------------------------------------------------------------------

pub fn tcp_pingpong(c: &mut Criterion) {
    let mut group = c.benchmark_group("tcp_pingpong");
    for size in [64usize, 4096] {
        group.throughput(common::throughput(1, size));
        let payload = vec![0x42u8; size];

        let mut impls = vec![("converse", converse::Config::new())];
        if size == 64 {
            impls.push((
                "converse-spin",
                converse::Config::new().with_spin(Some(Duration::from_millis(1))),
            ));
        }
        for (name, config) in impls {
            let (mut client, mut server) = converse_pair(&config);
            let echo = thread::spawn(move || {
                while let Ok(Some(m)) = server.recv() {
                    server.send(&m).unwrap();
                }
            });
            group.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter(|| {
                    client.send(&payload).unwrap();
                    client.recv().unwrap().unwrap()
                })
            });
            drop(client);
            echo.join().unwrap();
        }

        {
            // The same blocking client, against an echo server on a
            // switchboard.
            let (client, echo) = switchboard_echo();
            let mut client = converse::Conversation::new(
                converse::Tcp::from_stream(client, &converse::Config::new()).unwrap(),
            );
            group.bench_function(BenchmarkId::new("converse-switchboard", size), |b| {
                b.iter(|| {
                    client.send(&payload).unwrap();
                    client.recv().unwrap().unwrap()
                })
            });
            drop(client);
            echo.join().unwrap();
        }

        if size == 64 {
            // The floor of latency mode on this machine: raw std sockets,
            // non-blocking, both sides busy-polling.
            let (client, server) = std_pair();
            client.set_nonblocking(true).unwrap();
            server.set_nonblocking(true).unwrap();
            let echo = thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match (&server).read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => (&server).write_all(&buf[..n]).unwrap(),
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::hint::spin_loop()
                        }
                        Err(_) => break,
                    }
                }
            });
            let frame = common::frame(&payload);
            let mut reply = vec![0u8; frame.len()];
            group.bench_function(BenchmarkId::new("raw-spin", size), |b| {
                b.iter(|| {
                    (&client).write_all(&frame).unwrap();
                    let mut got = 0;
                    while got < reply.len() {
                        match (&client).read(&mut reply[got..]) {
                            Ok(n) => got += n,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                std::hint::spin_loop()
                            }
                            Err(e) => panic!("{e}"),
                        }
                    }
                })
            });
            drop(client);
            echo.join().unwrap();
        }

        {
            let (client, server) = std_pair();
            let echo = thread::spawn(move || {
                let mut reader = BufReader::with_capacity(64 * 1024, &server);
                let (mut payload, mut out) = (Vec::new(), Vec::new());
                while raw_read_frame(&mut reader, &mut payload).is_ok() {
                    out.clear();
                    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                    out.extend_from_slice(&payload);
                    (&server).write_all(&out).unwrap();
                }
            });
            let frame = common::frame(&payload);
            let mut reader = BufReader::with_capacity(64 * 1024, &client);
            let mut reply = Vec::new();
            group.bench_function(BenchmarkId::new("raw", size), |b| {
                b.iter(|| {
                    (&client).write_all(&frame).unwrap();
                    raw_read_frame(&mut reader, &mut reply).unwrap();
                })
            });
            drop(reader);
            drop(client);
            echo.join().unwrap();
        }

        for (runtime, suffix) in common::TOKIO_RUNTIMES {
            // The async driver, against the same tokio-util echo.
            let rt = runtime();
            let (mut client, server) = converse_tokio_pair(&rt);
            let echo = tokio_echo(server);
            group.bench_function(
                BenchmarkId::new(format!("converse-tokio{suffix}"), size),
                |b| {
                    b.iter(|| {
                        rt.block_on(async {
                            client.send(&payload).await.unwrap();
                            client.recv().await.unwrap().unwrap()
                        })
                    })
                },
            );
            drop(client);
            echo.join().unwrap();
        }

        for (runtime, suffix) in common::TOKIO_RUNTIMES {
            let (client, server) = std_pair();
            let echo = tokio_echo(server);
            let rt = runtime();
            let mut framed = tokio_framed(&rt, client);
            let payload = Bytes::from(payload.clone());
            group.bench_function(BenchmarkId::new(format!("tokio-util{suffix}"), size), |b| {
                b.iter(|| {
                    rt.block_on(async {
                        framed.send(payload.clone()).await.unwrap();
                        framed.next().await.unwrap().unwrap()
                    })
                })
            });
            drop(framed);
            echo.join().unwrap();
        }
    }
    group.finish();
}

// ---------------------------------------------------------------------------

/// A receiving thread that, for each count it is sent, receives that many
/// messages and then says so.
struct Sink {
    counts: mpsc::Sender<u64>,
    done: mpsc::Receiver<()>,
    thread: thread::JoinHandle<()>,
}

impl Sink {
    fn start(mut receive: impl FnMut(u64) + Send + 'static) -> Sink {
        let (counts, count_rx) = mpsc::channel::<u64>();
        let (done_tx, done) = mpsc::channel();
        let thread = thread::spawn(move || {
            while let Ok(n) = count_rx.recv() {
                receive(n);
                done_tx.send(()).unwrap();
            }
        });
        Sink {
            counts,
            done,
            thread,
        }
    }

    /// Times `send` sending `n` messages, until the sink has them all.
    fn time(&self, n: u64, send: impl FnOnce()) -> Duration {
        self.counts.send(n).unwrap();
        let start = Instant::now();
        send();
        self.done.recv().unwrap();
        start.elapsed()
    }

    fn stop(self) {
        drop(self.counts);
        self.thread.join().unwrap();
    }
}

fn converse_sink(mut server: converse::Conversation<converse::Tcp>) -> Sink {
    Sink::start(move |n| {
        for _ in 0..n {
            server.recv().unwrap().unwrap();
        }
    })
}

/// A converse sink that reads the way a batch consumer would: each message
/// lent out of the read buffer (`recv_ref`), no `Bytes` per message.
fn converse_sink_lent(mut server: converse::Conversation<converse::Tcp>) -> Sink {
    Sink::start(move |n| {
        for _ in 0..n {
            std::hint::black_box(server.recv_ref().unwrap().unwrap());
        }
    })
}

fn raw_sink(server: TcpStream) -> Sink {
    let mut reader = BufReader::with_capacity(64 * 1024, server);
    let mut payload = Vec::new();
    Sink::start(move |n| {
        for _ in 0..n {
            raw_read_frame(&mut reader, &mut payload).unwrap();
        }
    })
}

fn tokio_sink(server: TcpStream) -> Sink {
    // The runtime lives on the sink's thread; build the framed stream there.
    let mut state: Option<(tokio::runtime::Runtime, TokioFramed)> = None;
    let mut server = Some(server);
    Sink::start(move |n| {
        let (rt, framed) = state.get_or_insert_with(|| {
            let rt = common::tokio_runtime();
            let framed = tokio_framed(&rt, server.take().unwrap());
            (rt, framed)
        });
        rt.block_on(async {
            for _ in 0..n {
                framed.next().await.unwrap().unwrap();
            }
        });
    })
}

pub fn tcp_stream(c: &mut Criterion) {
    let mut group = c.benchmark_group("tcp_stream");
    for size in [64usize, 65536] {
        group.throughput(common::throughput(1, size));
        let payload = vec![0x42u8; size];

        {
            let (mut client, server) = converse_pair(&converse::Config::new());
            let sink = converse_sink(server);
            group.bench_function(BenchmarkId::new("converse", size), |b| {
                b.iter_custom(|n| {
                    sink.time(n, || {
                        for _ in 0..n {
                            client.send(&payload).unwrap();
                        }
                    })
                })
            });
            drop(client);
            sink.stop();
        }

        {
            let (client, server) = std_pair();
            let sink = raw_sink(server);
            let frame = common::frame(&payload);
            group.bench_function(BenchmarkId::new("raw", size), |b| {
                b.iter_custom(|n| {
                    sink.time(n, || {
                        for _ in 0..n {
                            (&client).write_all(&frame).unwrap();
                        }
                    })
                })
            });
            drop(client);
            sink.stop();
        }

        {
            // Each message sent and written out before the next.
            let (client, server) = std_pair();
            let sink = converse_sink(converse_end(server));
            let mut board = BoardSender::new(client);
            group.bench_function(BenchmarkId::new("converse-switchboard", size), |b| {
                b.iter_custom(|n| {
                    sink.time(n, || {
                        for _ in 0..n {
                            board.board.send(board.id, &payload).unwrap();
                            board.flush();
                        }
                    })
                })
            });
            drop(board);
            sink.stop();
        }

        for (runtime, suffix) in common::TOKIO_RUNTIMES {
            // The async driver, into the same tokio-util reader.
            let rt = runtime();
            let (mut client, server) = converse_tokio_pair(&rt);
            let sink = tokio_sink(server);
            group.bench_function(
                BenchmarkId::new(format!("converse-tokio{suffix}"), size),
                |b| {
                    b.iter_custom(|n| {
                        sink.time(n, || {
                            rt.block_on(async {
                                for _ in 0..n {
                                    client.send(&payload).await.unwrap();
                                }
                            })
                        })
                    })
                },
            );
            drop(client);
            sink.stop();
        }
        for (runtime, suffix) in common::TOKIO_RUNTIMES {
            let (client, server) = std_pair();
            let sink = tokio_sink(server);
            let rt = runtime();
            let mut framed = tokio_framed(&rt, client);
            let payload = Bytes::from(payload.clone());
            group.bench_function(BenchmarkId::new(format!("tokio-util{suffix}"), size), |b| {
                b.iter_custom(|n| {
                    sink.time(n, || {
                        rt.block_on(async {
                            for _ in 0..n {
                                framed.send(payload.clone()).await.unwrap();
                            }
                        })
                    })
                })
            });
            drop(framed);
            sink.stop();
        }
    }
    group.finish();
}

pub fn tcp_stream_batched(c: &mut Criterion) {
    let mut group = c.benchmark_group("tcp_stream_batched");
    let size = 64usize;
    group.throughput(common::throughput(1, size));
    let payload = vec![0x42u8; size];

    // `converse` reads each message lent (`recv_ref`), as a batch consumer
    // would; `converse-bytes` takes each as an owned `Bytes` (`recv`).
    for (name, lent) in [("converse", true), ("converse-bytes", false)] {
        let (mut client, server) = converse_pair(&converse::Config::new());
        let sink = if lent {
            converse_sink_lent(server)
        } else {
            converse_sink(server)
        };
        group.bench_function(BenchmarkId::new(name, size), |b| {
            b.iter_custom(|n| {
                sink.time(n, || {
                    for _ in 0..n {
                        client.feed(&payload).unwrap();
                    }
                    client.flush().unwrap();
                })
            })
        });
        drop(client);
        sink.stop();
    }

    {
        // Queued on the switchboard, written when it waits.
        let (client, server) = std_pair();
        let sink = converse_sink_lent(converse_end(server));
        let mut board = BoardSender::new(client);
        group.bench_function(BenchmarkId::new("converse-switchboard", size), |b| {
            b.iter_custom(|n| {
                sink.time(n, || {
                    for i in 0..n {
                        board.board.send(board.id, &payload).unwrap();
                        if i % 1024 == 1023 {
                            board.flush();
                        }
                    }
                    board.flush();
                })
            })
        });
        drop(board);
        sink.stop();
    }

    {
        let (client, server) = std_pair();
        let sink = raw_sink(server);
        let frame = common::frame(&payload);
        let mut batch = Vec::with_capacity(64 * 1024);
        group.bench_function(BenchmarkId::new("raw", size), |b| {
            b.iter_custom(|n| {
                sink.time(n, || {
                    for _ in 0..n {
                        if batch.len() + frame.len() > 64 * 1024 {
                            (&client).write_all(&batch).unwrap();
                            batch.clear();
                        }
                        batch.extend_from_slice(&frame);
                    }
                    (&client).write_all(&batch).unwrap();
                    batch.clear();
                })
            })
        });
        drop(client);
        sink.stop();
    }

    {
        let (client, server) = std_pair();
        let sink = tokio_sink(server);
        let rt = common::tokio_runtime();
        let mut framed = tokio_framed(&rt, client);
        let payload = Bytes::from(payload.clone());
        group.bench_function(BenchmarkId::new("tokio-util", size), |b| {
            b.iter_custom(|n| {
                sink.time(n, || {
                    rt.block_on(async {
                        for i in 0..n {
                            framed.feed(payload.clone()).await.unwrap();
                            // About 64 KiB of frames between flushes.
                            if i % 963 == 962 {
                                SinkExt::<Bytes>::flush(&mut framed).await.unwrap();
                            }
                        }
                        SinkExt::<Bytes>::flush(&mut framed).await.unwrap();
                    })
                })
            })
        });
        drop(framed);
        sink.stop();
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = tcp_pingpong, tcp_stream, tcp_stream_batched
}
criterion_main!(benches);
