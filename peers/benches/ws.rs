//! How fast is WebSocket? Round trips and one-way streams (a client
//! sending to a server, so every frame is masked), converse against
//! hand-written blocking tungstenite (`WebSocket<TcpStream>`) and
//! tokio-tungstenite, each with a peer of its own kind; and converse's async
//! driver (`converse-tokio`) against tokio-tungstenite's peer.

mod common;

use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use converse::{Config, Conversation, Ws};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures_util::{SinkExt, StreamExt};
use tungstenite::{Message, WebSocket};

/// A converse pair: client and server conversations, upgraded.
fn converse_pair() -> (Conversation<Ws>, Conversation<Ws>) {
    let config = Config::new();
    let listener = converse::WsListener::bind("127.0.0.1:0", false, &config).unwrap();
    let url = listener.local_addr().unwrap().to_string();
    let server = thread::spawn(move || listener.accept().unwrap());
    let client = Ws::connect(&url, &config).unwrap();
    (
        Conversation::new(client),
        Conversation::new(server.join().unwrap()),
    )
}

/// A blocking tungstenite pair over std streams, TCP_NODELAY on both.
fn tungstenite_pair() -> (WebSocket<TcpStream>, WebSocket<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        tungstenite::accept(s).unwrap()
    });
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    let (client, _) = tungstenite::client(format!("ws://{addr}/"), s).unwrap();
    (client, server.join().unwrap())
}

type TokioWs = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

fn tokio_client(rt: &tokio::runtime::Runtime, addr: std::net::SocketAddr) -> TokioWs {
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
            .await
            .unwrap();
        ws
    })
}

/// An async WebSocket client: tokio-tungstenite's, or converse's async
/// driver (`converse::tokio`), against the same tokio-tungstenite server.
enum AsyncClient {
    Tungstenite(Box<TokioWs>),
    Converse(converse::tokio::Conversation),
}

/// The async clients, by benchmark name.
const ASYNC_CLIENTS: [&str; 2] = ["tokio-tungstenite", "converse-tokio"];

impl AsyncClient {
    fn connect(name: &str, rt: &tokio::runtime::Runtime, addr: std::net::SocketAddr) -> Self {
        match name {
            "converse-tokio" => AsyncClient::Converse(
                rt.block_on(converse::tokio::connect(&format!("ws://{addr}")))
                    .unwrap(),
            ),
            _ => AsyncClient::Tungstenite(Box::new(tokio_client(rt, addr))),
        }
    }

    async fn send(&mut self, payload: &[u8]) {
        match self {
            AsyncClient::Tungstenite(ws) => {
                ws.send(Message::binary(payload.to_vec())).await.unwrap()
            }
            AsyncClient::Converse(c) => c.send(payload).await.unwrap(),
        }
    }

    async fn feed(&mut self, payload: &[u8]) {
        match self {
            AsyncClient::Tungstenite(ws) => {
                ws.feed(Message::binary(payload.to_vec())).await.unwrap()
            }
            AsyncClient::Converse(c) => c.feed(payload).unwrap(),
        }
    }

    async fn flush(&mut self) {
        match self {
            AsyncClient::Tungstenite(ws) => ws.flush().await.unwrap(),
            AsyncClient::Converse(c) => c.flush().await.unwrap(),
        }
    }

    async fn recv(&mut self) -> usize {
        match self {
            AsyncClient::Tungstenite(ws) => ws.next().await.unwrap().unwrap().len(),
            AsyncClient::Converse(c) => c.recv().await.unwrap().unwrap().len(),
        }
    }

    async fn close(self) {
        match self {
            AsyncClient::Tungstenite(mut ws) => {
                let _ = (*ws).close(None).await;
            }
            AsyncClient::Converse(c) => {
                let _ = c.close().await;
            }
        }
    }
}

fn tokio_server(rt: &tokio::runtime::Runtime, listener: TcpListener) -> TokioWs {
    listener.set_nonblocking(true).unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        tcp.set_nodelay(true).unwrap();
        tokio_tungstenite::accept_async(tcp).await.unwrap()
    })
}

// ---------------------------------------------------------------------------

pub fn ws_pingpong(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_pingpong");
    let size = 64usize;
    group.throughput(common::throughput(1, size));
    let payload = vec![0x42u8; size];

    {
        let (mut client, mut server) = converse_pair();
        let echo = thread::spawn(move || {
            while let Ok(Some(m)) = server.recv() {
                server.send(&m).unwrap();
            }
        });
        group.bench_function(BenchmarkId::new("converse", size), |b| {
            b.iter(|| {
                client.send(&payload).unwrap();
                client.recv().unwrap().unwrap()
            })
        });
        drop(client);
        echo.join().unwrap();
    }

    {
        let (mut client, mut server) = tungstenite_pair();
        let echo = thread::spawn(move || {
            while let Ok(m) = server.read() {
                if m.is_close() || server.send(m).is_err() {
                    break;
                }
            }
        });
        group.bench_function(BenchmarkId::new("tungstenite", size), |b| {
            b.iter(|| {
                client.send(Message::binary(payload.clone())).unwrap();
                client.read().unwrap()
            })
        });
        let _ = client.close(None);
        let _ = client.flush();
        drop(client);
        echo.join().unwrap();
    }

    for (runtime, suffix) in common::TOKIO_RUNTIMES {
        for name in ASYNC_CLIENTS {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let echo = thread::spawn(move || {
                let rt = common::tokio_runtime();
                let mut ws = tokio_server(&rt, listener);
                rt.block_on(async {
                    while let Some(Ok(m)) = ws.next().await {
                        if m.is_close() || ws.send(m).await.is_err() {
                            break;
                        }
                    }
                });
            });
            let rt = runtime();
            let mut client = AsyncClient::connect(name, &rt, addr);
            group.bench_function(BenchmarkId::new(format!("{name}{suffix}"), size), |b| {
                b.iter(|| {
                    rt.block_on(async {
                        client.send(&payload).await;
                        client.recv().await
                    })
                })
            });
            rt.block_on(client.close());
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

/// One-way streams: `n` messages each sent on its own (or, `batched`,
/// queued and flushed about every 64 KiB), timed until the sink has them.
fn ws_stream_group(c: &mut Criterion, name: &str, sizes: &[usize], batched: bool) {
    let mut group = c.benchmark_group(name);
    for &size in sizes {
        group.throughput(common::throughput(1, size));
        let payload = vec![0x42u8; size];
        let every = (64 * 1024 / (size + 14)).max(1) as u64;

        {
            let (mut client, mut server) = converse_pair();
            let sink = Sink::start(move |n| {
                for _ in 0..n {
                    std::hint::black_box(server.recv_ref().unwrap().unwrap());
                }
            });
            group.bench_function(BenchmarkId::new("converse", size), |b| {
                b.iter_custom(|n| {
                    sink.time(n, || {
                        for i in 0..n {
                            if batched {
                                client.feed(&payload).unwrap();
                                if i % every == every - 1 {
                                    client.flush().unwrap();
                                }
                            } else {
                                client.send(&payload).unwrap();
                            }
                        }
                        client.flush().unwrap();
                    })
                })
            });
            drop(client);
            sink.stop();
        }

        {
            let (mut client, mut server) = tungstenite_pair();
            let sink = Sink::start(move |n| {
                for _ in 0..n {
                    std::hint::black_box(server.read().unwrap());
                }
            });
            group.bench_function(BenchmarkId::new("tungstenite", size), |b| {
                b.iter_custom(|n| {
                    sink.time(n, || {
                        for i in 0..n {
                            let m = Message::binary(payload.clone());
                            if batched {
                                client.write(m).unwrap();
                                if i % every == every - 1 {
                                    client.flush().unwrap();
                                }
                            } else {
                                client.send(m).unwrap();
                            }
                        }
                        client.flush().unwrap();
                    })
                })
            });
            let _ = client.close(None);
            let _ = client.flush();
            drop(client);
            sink.stop();
        }

        for (runtime, suffix) in common::TOKIO_RUNTIMES {
            for name in ASYNC_CLIENTS {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let mut listener = Some(listener);
                let mut state: Option<(tokio::runtime::Runtime, TokioWs)> = None;
                let sink = Sink::start(move |n| {
                    let (rt, ws) = state.get_or_insert_with(|| {
                        let rt = common::tokio_runtime();
                        let ws = tokio_server(&rt, listener.take().unwrap());
                        (rt, ws)
                    });
                    rt.block_on(async {
                        for _ in 0..n {
                            std::hint::black_box(ws.next().await.unwrap().unwrap());
                        }
                    });
                });
                sink.counts.send(0).unwrap();
                let rt = runtime();
                let mut client = AsyncClient::connect(name, &rt, addr);
                sink.done.recv().unwrap();
                group.bench_function(BenchmarkId::new(format!("{name}{suffix}"), size), |b| {
                    b.iter_custom(|n| {
                        sink.time(n, || {
                            rt.block_on(async {
                                for i in 0..n {
                                    if batched {
                                        client.feed(&payload).await;
                                        if i % every == every - 1 {
                                            client.flush().await;
                                        }
                                    } else {
                                        client.send(&payload).await;
                                    }
                                }
                                client.flush().await;
                            })
                        })
                    })
                });
                rt.block_on(client.close());
                sink.stop();
            }
        }
    }
    group.finish();
}

pub fn ws_stream(c: &mut Criterion) {
    ws_stream_group(c, "ws_stream", &[64, 65536], false);
}

pub fn ws_stream_batched(c: &mut Criterion) {
    ws_stream_group(c, "ws_stream_batched", &[64], true);
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = ws_pingpong, ws_stream, ws_stream_batched
}
criterion_main!(benches);
