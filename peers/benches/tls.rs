//! How fast is TLS? Round trips, one-way streams (64 KiB messages, and
//! 64-byte messages batched), the switchboard, and handshakes per second —
//! converse against hand-written rustls (`StreamOwned` over `std::net`, the
//! same wire format, a `BufReader` on the receiving side) and tokio-rustls
//! with tokio-util's `LengthDelimitedCodec`, each with a peer of its own
//! kind; and converse's async driver (`converse-tokio`) against
//! tokio-rustls's peer. All of them use the same rustls configurations (ring, TLS 1.3,
//! the same certificates), so the cryptography is the same work.

#[path = "../../examples/common/certs.rs"]
mod certs;
mod common;

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use converse::tls::{TlsClient, TlsServer};
use converse::{Config, Conversation, Tls};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, ServerConnection, StreamOwned};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// The certificates and the rustls configurations every implementation
/// uses.
struct Setup {
    server: TlsServer,
    client: TlsClient,
}

impl Setup {
    fn new() -> Setup {
        let kit = certs::Kit::new("bench");
        Setup {
            server: TlsServer::from_pem(&kit.server.cert_pem, &kit.server.key_pem).unwrap(),
            client: TlsClient::trusting_ca_pem(kit.ca.cert_pem()).unwrap(),
        }
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(self.server.rustls_config())
    }

    fn client_config(&self) -> Arc<rustls::ClientConfig> {
        Arc::clone(self.client.rustls_config())
    }

    fn converse_config(&self) -> Config {
        Config::new()
            .with_tls_server(self.server.clone())
            .with_tls_client(self.client.clone())
    }
}

fn name() -> ServerName<'static> {
    ServerName::try_from("127.0.0.1").unwrap()
}

/// A connected pair of std streams, TCP_NODELAY on both.
fn std_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

/// A converse pair over TLS, handshake done.
fn converse_pair(setup: &Setup) -> (Conversation<Tls>, Conversation<Tls>) {
    let (client, server) = std_pair();
    let config = setup.converse_config();
    let server_config = config.clone();
    let server = thread::spawn(move || {
        let mut tls = Tls::server_from_stream(server, &server_config).unwrap();
        tls.handshake().unwrap();
        tls
    });
    let client = Tls::client_from_stream(client, "127.0.0.1", &config).unwrap();
    (
        Conversation::new(client),
        Conversation::new(server.join().unwrap()),
    )
}

type RawClient = StreamOwned<ClientConnection, TcpStream>;
type RawServer = StreamOwned<ServerConnection, TcpStream>;

/// A hand-written rustls pair over std, handshake done.
fn raw_pair(setup: &Setup) -> (RawClient, RawServer) {
    let (client, server) = std_pair();
    let server_config = setup.server_config();
    let server = thread::spawn(move || {
        let mut s = StreamOwned::new(ServerConnection::new(server_config).unwrap(), server);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock).unwrap();
        }
        s
    });
    let mut c = StreamOwned::new(
        ClientConnection::new(setup.client_config(), name()).unwrap(),
        client,
    );
    while c.conn.is_handshaking() {
        c.conn.complete_io(&mut c.sock).unwrap();
    }
    (c, server.join().unwrap())
}

type TokioClient =
    Framed<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, LengthDelimitedCodec>;
type TokioServer =
    Framed<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, LengthDelimitedCodec>;

fn tokio_client(rt: &tokio::runtime::Runtime, stream: TcpStream, setup: &Setup) -> TokioClient {
    stream.set_nonblocking(true).unwrap();
    let connector = tokio_rustls::TlsConnector::from(setup.client_config());
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::from_std(stream).unwrap();
        let tls = connector.connect(name(), tcp).await.unwrap();
        Framed::new(tls, common::tokio_codec())
    })
}

fn tokio_server(
    rt: &tokio::runtime::Runtime,
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
) -> TokioServer {
    stream.set_nonblocking(true).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::from_std(stream).unwrap();
        let tls = acceptor.accept(tcp).await.unwrap();
        Framed::new(tls, common::tokio_codec())
    })
}

/// An async TLS client: tokio-rustls with tokio-util's codec, or converse's
/// async driver (`converse::tokio`), against the same tokio-rustls server.
enum AsyncClient {
    Rustls(Box<TokioClient>),
    Converse(converse::tokio::Conversation),
}

/// The async clients, by benchmark name.
const ASYNC_CLIENTS: [&str; 2] = ["tokio-rustls", "converse-tokio"];

impl AsyncClient {
    /// A client of `name` connected to `listener`, whose server side is
    /// accepted (and its handshake run) on a thread of its own by `serve`.
    fn connect(
        name: &str,
        rt: &tokio::runtime::Runtime,
        setup: &Setup,
        listener: TcpListener,
        serve: impl FnOnce(TcpStream) + Send + 'static,
    ) -> (Self, thread::JoinHandle<()>) {
        let addr = listener.local_addr().unwrap();
        let server = thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            stream.set_nodelay(true).unwrap();
            serve(stream)
        });
        (AsyncClient::dial(name, rt, setup, addr), server)
    }

    /// A client of `name` connected to `addr` (its handshake done).
    fn dial(
        name: &str,
        rt: &tokio::runtime::Runtime,
        setup: &Setup,
        addr: std::net::SocketAddr,
    ) -> Self {
        match name {
            "converse-tokio" => AsyncClient::Converse(
                rt.block_on(converse::tokio::connect_with(
                    &format!("tls://{addr}"),
                    &setup.converse_config(),
                ))
                .unwrap(),
            ),
            _ => {
                let stream = TcpStream::connect(addr).unwrap();
                stream.set_nodelay(true).unwrap();
                AsyncClient::Rustls(Box::new(tokio_client(rt, stream, setup)))
            }
        }
    }

    async fn send(&mut self, payload: &Bytes) {
        match self {
            AsyncClient::Rustls(framed) => framed.send(payload.clone()).await.unwrap(),
            AsyncClient::Converse(c) => c.send(payload).await.unwrap(),
        }
    }

    async fn feed(&mut self, payload: &Bytes) {
        match self {
            AsyncClient::Rustls(framed) => framed.feed(payload.clone()).await.unwrap(),
            AsyncClient::Converse(c) => c.feed(payload).unwrap(),
        }
    }

    async fn flush(&mut self) {
        match self {
            AsyncClient::Rustls(framed) => SinkExt::<Bytes>::flush(framed).await.unwrap(),
            AsyncClient::Converse(c) => c.flush().await.unwrap(),
        }
    }

    async fn recv(&mut self) -> usize {
        match self {
            AsyncClient::Rustls(framed) => framed.next().await.unwrap().unwrap().len(),
            AsyncClient::Converse(c) => c.recv().await.unwrap().unwrap().len(),
        }
    }
}

/// Raw: read one frame into `payload`.
fn raw_read_frame(reader: &mut impl Read, payload: &mut Vec<u8>) -> std::io::Result<()> {
    let mut header = [0u8; 4];
    reader.read_exact(&mut header)?;
    payload.resize(u32::from_be_bytes(header) as usize, 0);
    reader.read_exact(payload)
}

// ---------------------------------------------------------------------------

pub fn tls_pingpong(c: &mut Criterion) {
    let setup = Setup::new();
    let mut group = c.benchmark_group("tls_pingpong");
    for size in [64usize, 4096] {
        group.throughput(common::throughput(1, size));
        let payload = vec![0x42u8; size];

        {
            let (mut client, mut server) = converse_pair(&setup);
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
            let (mut client, server) = raw_pair(&setup);
            let echo = thread::spawn(move || {
                let mut reader = BufReader::with_capacity(64 * 1024, server);
                let mut payload = Vec::new();
                while raw_read_frame(&mut reader, &mut payload).is_ok() {
                    let s = reader.get_mut();
                    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
                    frame.extend_from_slice(&payload);
                    if s.write_all(&frame).is_err() {
                        break;
                    }
                }
            });
            let frame = common::frame(&payload);
            let mut reply = Vec::new();
            group.bench_function(BenchmarkId::new("rustls", size), |b| {
                b.iter(|| {
                    client.write_all(&frame).unwrap();
                    raw_read_frame(&mut client, &mut reply).unwrap();
                })
            });
            client.conn.send_close_notify();
            let _ = client.flush();
            drop(client);
            echo.join().unwrap();
        }

        for (runtime, suffix) in common::TOKIO_RUNTIMES {
            for name in ASYNC_CLIENTS {
                let server_config = setup.server_config();
                let rt = runtime();
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let (mut client, echo) =
                    AsyncClient::connect(name, &rt, &setup, listener, move |server| {
                        let rt = common::tokio_runtime();
                        let mut framed = tokio_server(&rt, server, server_config);
                        rt.block_on(async {
                            while let Some(Ok(frame)) = framed.next().await {
                                if framed.send(frame.freeze()).await.is_err() {
                                    break;
                                }
                            }
                        });
                    });
                let payload = Bytes::from(payload.clone());
                group.bench_function(BenchmarkId::new(format!("{name}{suffix}"), size), |b| {
                    b.iter(|| {
                        rt.block_on(async {
                            client.send(&payload).await;
                            client.recv().await
                        })
                    })
                });
                drop(client);
                echo.join().unwrap();
            }
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

fn converse_sink(mut server: Conversation<Tls>) -> Sink {
    Sink::start(move |n| {
        for _ in 0..n {
            std::hint::black_box(server.recv_ref().unwrap().unwrap());
        }
    })
}

fn raw_sink(server: RawServer) -> Sink {
    let mut reader = BufReader::with_capacity(64 * 1024, server);
    let mut payload = Vec::new();
    Sink::start(move |n| {
        for _ in 0..n {
            raw_read_frame(&mut reader, &mut payload).unwrap();
        }
    })
}

/// A tokio-rustls sink; its handshake runs on its own thread, started
/// here and finished once the client has connected (`wait_ready`).
fn tokio_sink(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> Sink {
    let mut state: Option<(tokio::runtime::Runtime, TokioServer)> = None;
    let mut listener = Some(listener);
    let sink = Sink::start(move |n| {
        let (rt, framed) = state.get_or_insert_with(|| {
            let rt = common::tokio_runtime();
            let (server, _) = listener.take().unwrap().accept().unwrap();
            server.set_nodelay(true).unwrap();
            let framed = tokio_server(&rt, server, Arc::clone(&config));
            (rt, framed)
        });
        rt.block_on(async {
            for _ in 0..n {
                framed.next().await.unwrap().unwrap();
            }
        });
    });
    sink.counts.send(0).unwrap();
    sink
}

/// The streams of one implementation: a sender that sends `n` messages
/// (each on its own, or batched), timed until the sink has them.
fn tls_stream_group(c: &mut Criterion, group_name: &str, size: usize, batched: bool) {
    let setup = Setup::new();
    let mut group = c.benchmark_group(group_name);
    group.throughput(common::throughput(1, size));
    let payload = vec![0x42u8; size];

    {
        let (mut client, server) = converse_pair(&setup);
        let sink = converse_sink(server);
        group.bench_function(BenchmarkId::new("converse", size), |b| {
            b.iter_custom(|n| {
                sink.time(n, || {
                    if batched {
                        for _ in 0..n {
                            client.feed(&payload).unwrap();
                        }
                        client.flush().unwrap();
                    } else {
                        for _ in 0..n {
                            client.send(&payload).unwrap();
                        }
                    }
                })
            })
        });
        drop(client);
        sink.stop();
    }

    {
        let (mut client, server) = raw_pair(&setup);
        let sink = raw_sink(server);
        let frame = common::frame(&payload);
        let mut batch = Vec::with_capacity(64 * 1024);
        group.bench_function(BenchmarkId::new("rustls", size), |b| {
            b.iter_custom(|n| {
                sink.time(n, || {
                    if batched {
                        for _ in 0..n {
                            if batch.len() + frame.len() > 64 * 1024 {
                                client.write_all(&batch).unwrap();
                                batch.clear();
                            }
                            batch.extend_from_slice(&frame);
                        }
                        client.write_all(&batch).unwrap();
                        batch.clear();
                    } else {
                        for _ in 0..n {
                            client.write_all(&frame).unwrap();
                        }
                    }
                    client.flush().unwrap();
                })
            })
        });
        client.conn.send_close_notify();
        let _ = client.flush();
        drop(client);
        sink.stop();
    }

    for (runtime, suffix) in common::TOKIO_RUNTIMES {
        for name in ASYNC_CLIENTS {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let sink = tokio_sink(listener, setup.server_config());
            let rt = runtime();
            let mut client = AsyncClient::dial(name, &rt, &setup, addr);
            sink.done.recv().unwrap(); // its handshake is over
            let payload = Bytes::from(payload.clone());
            group.bench_function(BenchmarkId::new(format!("{name}{suffix}"), size), |b| {
                b.iter_custom(|n| {
                    sink.time(n, || {
                        rt.block_on(async {
                            for i in 0..n {
                                if batched {
                                    client.feed(&payload).await;
                                    if i % 963 == 962 {
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
            drop(client);
            sink.stop();
        }
    }
    group.finish();
}

pub fn tls_stream(c: &mut Criterion) {
    tls_stream_group(c, "tls_stream", 65536, false);
}

pub fn tls_stream_batched(c: &mut Criterion) {
    tls_stream_group(c, "tls_stream_batched", 64, true);
}

// ---------------------------------------------------------------------------

/// Handshakes per second: a fresh TCP connection and a full handshake each
/// time (the client configuration's default session resumption, the same
/// for both), the server accepting on a thread of its own.
fn tls_handshake(c: &mut Criterion) {
    let setup = Setup::new();
    let mut group = c.benchmark_group("tls_handshake");
    group.throughput(criterion::Throughput::Elements(1));

    {
        let config = setup.converse_config().with_backlog(128);
        let listener = converse::TlsListener::bind("127.0.0.1:0", &config).unwrap();
        let addr = listener.local_addr().unwrap().socket_addr().unwrap();
        let stop = listener.stopper();
        let server = thread::spawn(move || {
            while let Ok(mut tls) = listener.accept() {
                let _ = tls.handshake();
            }
        });
        group.bench_function("converse", |b| {
            b.iter(|| Tls::connect_to("127.0.0.1", addr, &config).unwrap())
        });
        stop.stop();
        server.join().unwrap();
    }

    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server_config = setup.server_config();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let server = thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                stream.set_nodelay(true).unwrap();
                let conn = ServerConnection::new(Arc::clone(&server_config)).unwrap();
                let mut s = StreamOwned::new(conn, stream);
                while s.conn.is_handshaking() {
                    if s.conn.complete_io(&mut s.sock).is_err() {
                        break;
                    }
                }
                let _ = s.conn.complete_io(&mut s.sock);
            }
        });
        let client_config = setup.client_config();
        group.bench_function("rustls", |b| {
            b.iter(|| {
                let tcp = TcpStream::connect(addr).unwrap();
                tcp.set_nodelay(true).unwrap();
                let conn = ClientConnection::new(Arc::clone(&client_config), name()).unwrap();
                let mut c = StreamOwned::new(conn, tcp);
                while c.conn.is_handshaking() {
                    c.conn.complete_io(&mut c.sock).unwrap();
                }
                c
            })
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = TcpStream::connect(addr);
        server.join().unwrap();
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = tls_pingpong, tls_stream, tls_stream_batched, tls_handshake
}
criterion_main!(benches);
