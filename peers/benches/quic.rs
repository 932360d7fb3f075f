//! How fast is QUIC? Round trips and one-way streams (64 KiB messages, and
//! 64-byte messages batched) — converse's blocking `quic://` against quinn
//! on tokio doing the same work (one bidirectional stream, the same
//! length-prefixed framing through tokio-util's codec, the same rustls
//! configurations), and against converse's own TLS over TCP on the same
//! machine (what QUIC costs). The servers are each implementation's own;
//! converse's async driver (`converse-tokio`) talks to quinn's server.

#[path = "../../examples/common/certs.rs"]
mod certs;
mod common;

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use converse::tls::{TlsClient, TlsServer};
use converse::{Config, Conversation};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use futures_util::{SinkExt, StreamExt};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// The byte that starts each converse QUIC stream (the wire rule a quinn
/// peer follows).
const HEADER: u8 = 0xC1;

/// The implementations, by benchmark name; the async ones on a
/// current-thread runtime and (`-mt`) on a two-worker one.
const IMPLS: [&str; 6] = [
    "converse",
    "quinn",
    "quinn-mt",
    "converse-tokio",
    "converse-tokio-mt",
    "converse-tls",
];

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

    fn converse_config(&self) -> Config {
        Config::new()
            .with_tls_server(self.server.clone())
            .with_tls_client(self.client.clone())
    }

    fn quinn_server(&self) -> quinn::ServerConfig {
        let mut rustls = (**self.server.rustls_config()).clone();
        rustls.alpn_protocols = vec![b"converse".to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(rustls).unwrap();
        quinn::ServerConfig::with_crypto(Arc::new(crypto))
    }

    fn quinn_client(&self) -> quinn::ClientConfig {
        let mut rustls = (**self.client.rustls_config()).clone();
        rustls.alpn_protocols = vec![b"converse".to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(rustls).unwrap();
        quinn::ClientConfig::new(Arc::new(crypto))
    }
}

/// What a server does with each message: echo it, or count it (and say
/// when the count the client asks for is reached).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Serve {
    Echo,
    Count,
}

/// A client of one implementation, connected to a server of the same kind
/// (on threads of its own); `counted` says how many messages the counting
/// server has taken so far.
enum Client {
    Converse(Conversation),
    Quinn(Box<QuinnClient>),
    Tokio(tokio::runtime::Runtime, converse::tokio::Conversation),
}

/// A quinn client: its runtime, its stream's two sides framed, and its
/// endpoint.
struct QuinnClient {
    rt: tokio::runtime::Runtime,
    tx: FramedWrite<quinn::SendStream, LengthDelimitedCodec>,
    rx: FramedRead<quinn::RecvStream, LengthDelimitedCodec>,
    _endpoint: quinn::Endpoint,
}

struct Bench {
    client: Client,
    counted: tokio::sync::mpsc::UnboundedReceiver<u64>,
    /// Where a blocking client waits for the count.
    waiter: tokio::runtime::Runtime,
    _server: Box<dyn std::any::Any>,
}

fn start(name: &str, setup: &Setup, serve: Serve) -> Bench {
    let (count_tx, counted) = tokio::sync::mpsc::unbounded_channel();
    let client_runtime = if name.ends_with("-mt") {
        common::tokio_runtime_mt
    } else {
        common::tokio_runtime
    };
    match name.trim_end_matches("-mt") {
        base @ ("quinn" | "converse-tokio") => {
            let server_rt = common::tokio_runtime_mt();
            let endpoint = server_rt.block_on(async {
                quinn::Endpoint::server(setup.quinn_server(), "127.0.0.1:0".parse().unwrap())
                    .unwrap()
            });
            let addr = endpoint.local_addr().unwrap();
            server_rt.spawn(async move {
                let conn = endpoint.accept().await.unwrap().await.unwrap();
                let (send, mut recv) = conn.accept_bi().await.unwrap();
                let mut header = [0u8; 1];
                recv.read_exact(&mut header).await.unwrap();
                let mut rx = FramedRead::new(recv, common::tokio_codec());
                let mut tx = FramedWrite::new(send, common::tokio_codec());
                let mut n = 0u64;
                while let Some(Ok(m)) = rx.next().await {
                    match serve {
                        Serve::Echo => {
                            if tx.send(m.freeze()).await.is_err() {
                                break;
                            }
                        }
                        Serve::Count => {
                            n += 1;
                            if n % 64 == 0 && count_tx.send(n).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = count_tx.send(n);
                drop(endpoint);
            });
            if base == "converse-tokio" {
                // converse's endpoint has a thread of its own: the
                // conversation's runtime only polls it.
                let rt = client_runtime();
                let c = rt
                    .block_on(converse::tokio::connect_with(
                        &format!("quic://{addr}"),
                        &setup.converse_config(),
                    ))
                    .unwrap();
                return Bench {
                    client: Client::Tokio(rt, c),
                    counted,
                    waiter: common::tokio_runtime(),
                    _server: Box::new(server_rt),
                };
            }
            // quinn's connection is driven by a task of the client's
            // runtime: a multi-thread one keeps driving it between calls,
            // a current-thread one only while the client awaits.
            let rt = client_runtime();
            let (tx, rx, endpoint) = rt.block_on(async {
                let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
                endpoint.set_default_client_config(setup.quinn_client());
                let conn = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
                let (mut send, recv) = conn.open_bi().await.unwrap();
                send.write_all(&[HEADER]).await.unwrap();
                (
                    FramedWrite::new(send, common::tokio_codec()),
                    FramedRead::new(recv, common::tokio_codec()),
                    endpoint,
                )
            });
            Bench {
                client: Client::Quinn(Box::new(QuinnClient {
                    rt,
                    tx,
                    rx,
                    _endpoint: endpoint,
                })),
                counted,
                waiter: common::tokio_runtime(),
                _server: Box::new(server_rt),
            }
        }
        _ => {
            let scheme = if name == "converse" { "quic" } else { "tls" };
            let config = setup.converse_config();
            let listener =
                converse::listen_with(&format!("{scheme}://127.0.0.1:0"), &config).unwrap();
            let url = listener.local_addr().unwrap().to_string();
            thread::spawn(move || {
                let mut c = listener.accept().unwrap();
                let mut n = 0u64;
                while let Ok(Some(m)) = c.recv() {
                    match serve {
                        Serve::Echo => {
                            if c.send(&m).is_err() {
                                break;
                            }
                        }
                        Serve::Count => {
                            n += 1;
                            if n % 64 == 0 && count_tx.send(n).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = count_tx.send(n);
            });
            let client = converse::connect_with(&url, &config).unwrap();
            Bench {
                client: Client::Converse(client),
                counted,
                waiter: common::tokio_runtime(),
                _server: Box::new(()),
            }
        }
    }
}

impl Bench {
    fn round_trip(&mut self, payload: &Bytes) -> usize {
        match &mut self.client {
            Client::Converse(c) => {
                c.send(payload).unwrap();
                c.recv().unwrap().unwrap().len()
            }
            Client::Quinn(q) => {
                let QuinnClient { rt, tx, rx, .. } = &mut **q;
                rt.block_on(async {
                    tx.send(payload.clone()).await.unwrap();
                    rx.next().await.unwrap().unwrap().len()
                })
            }
            Client::Tokio(rt, c) => rt.block_on(async {
                c.send(payload).await.unwrap();
                c.recv().await.unwrap().unwrap().len()
            }),
        }
    }

    /// Sends `n` messages, batched (fed, one flush), and waits until the
    /// server has taken them all (`sent` so far before).
    fn stream(&mut self, payload: &Bytes, n: u64, sent: &mut u64) {
        match &mut self.client {
            Client::Converse(c) => {
                for _ in 0..n {
                    c.feed(payload).unwrap();
                }
                c.flush().unwrap();
            }
            Client::Quinn(q) => {
                let QuinnClient { rt, tx, .. } = &mut **q;
                rt.block_on(async {
                    for _ in 0..n {
                        tx.feed(payload.clone()).await.unwrap();
                    }
                    SinkExt::<Bytes>::flush(tx).await.unwrap();
                })
            }
            Client::Tokio(rt, c) => rt.block_on(async {
                for _ in 0..n {
                    c.feed(payload).unwrap();
                }
                c.flush().await.unwrap();
            }),
        }
        *sent += n;
        let target = *sent - *sent % 64;
        // The wait runs on the client's runtime, if it has one: a
        // current-thread runtime drives quinn's connection only while
        // something is awaited on it.
        let wait = async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                match tokio::time::timeout_at(deadline, self.counted.recv()).await {
                    Ok(Some(got)) if got >= target => break,
                    Ok(Some(_)) => {}
                    other => panic!("the server counts what arrives: {other:?}"),
                }
            }
        };
        match &self.client {
            Client::Quinn(q) => q.rt.block_on(wait),
            Client::Tokio(rt, _) => rt.block_on(wait),
            Client::Converse(_) => self.waiter.block_on(wait),
        }
    }
}

pub fn quic_pingpong(c: &mut Criterion) {
    let setup = Setup::new();
    let mut group = c.benchmark_group("quic_pingpong");
    for size in [64usize, 4096] {
        group.throughput(common::throughput(1, size));
        let payload = Bytes::from(vec![0x42u8; size]);
        for name in IMPLS {
            let mut bench = start(name, &setup, Serve::Echo);
            group.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter(|| bench.round_trip(&payload))
            });
        }
    }
    group.finish();
}

/// One-way streams: 64 KiB messages, and 64-byte ones (fed and flushed in
/// batches of 64 each way).
pub fn quic_stream(c: &mut Criterion) {
    let setup = Setup::new();
    let mut group = c.benchmark_group("quic_stream");
    for size in [64usize, 65536] {
        // Multiples of 64: the servers report their count every 64.
        let batch: u64 = if size == 64 { 1024 } else { 64 };
        group.throughput(common::throughput(batch, size));
        let payload = Bytes::from(vec![0x42u8; size]);
        for name in IMPLS {
            let mut bench = start(name, &setup, Serve::Count);
            let mut sent = 0;
            group.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter(|| bench.stream(&payload, batch, &mut sent))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = quic_pingpong, quic_stream
}
criterion_main!(benches);
