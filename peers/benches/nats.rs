//! How fast is NATS? Through a local `nats-server` started here (a missing
//! server skips the bench with a message):
//!
//! * `nats_pubsub/{converse,async-nats,converse-tokio}/{64,16384}`:
//!   publish → subscribe throughput, one publisher and one subscriber on a
//!   subject, each of its own kind (the async ones on a current-thread
//!   runtime, and with `-mt` on a two-worker one); the time per message from the first publish to the
//!   last message received (messages per second = 1 / that).
//! * `nats_fanout/{one_room,two_rooms}`: a chat line from a member of one
//!   room to a member of the same room (one server), against a member of
//!   a room on another chat server joined through NATS (`chat_room
//!   --relay`): the one-way time from `send` to `recv`.

#[allow(dead_code)]
#[path = "../../examples/common/room.rs"]
mod room;

#[allow(dead_code)]
#[path = "../../tests/common/nats_server.rs"]
mod nats_server;

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use converse::{Config, Conversation, Switchboard};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use futures_util::StreamExt;
use nats_server::NatsServer;

/// A `nats-server` on a free port, if this machine has one.
fn server() -> Option<NatsServer> {
    nats_server::program().map(|_| NatsServer::start())
}

const SIZES: [usize; 2] = [64, 16 * 1024];

/// How long a subscriber waits for the next message before it counts the
/// rest as lost: core NATS delivers at most once, and drops what a slow
/// consumer cannot take.
const LOST: Duration = Duration::from_secs(5);

/// Says, once per sample that lost messages, that its time is void: the
/// sample ends (a bench never waits for a message that will not come).
fn lost(id: &str, got: u64, sent: u64) {
    if got < sent {
        eprintln!(
            "{id}: error: {} of {sent} messages never arrived within {LOST:?} \
             (core NATS dropped them); this sample's time is void",
            sent - got
        );
    }
}

pub fn pubsub(c: &mut Criterion) {
    let Some(server) = server() else {
        eprintln!("nats_pubsub: skipped, nats-server is not installed");
        return;
    };
    let mut group = c.benchmark_group("nats_pubsub");
    group.measurement_time(Duration::from_secs(4));
    for size in SIZES {
        group.throughput(Throughput::Elements(1));
        let msg = vec![0x5a; size];

        // converse: a publisher feeding (batched, flushed at the end) and a
        // subscriber receiving on a thread of its own.
        let url = server.url(&format!("bench.converse.{size}"));
        let config = Config::new();
        let mut publisher = converse::connect_with(&url, &config).unwrap();
        let mut subscriber = converse::connect_with(&url, &config).unwrap();
        subscriber.set_read_timeout(Some(LOST)).unwrap();
        let (want_tx, want_rx) = mpsc::channel::<u64>();
        let (done_tx, done_rx) = mpsc::channel::<u64>();
        let sub = thread::spawn(move || {
            for n in want_rx {
                let mut got = 0;
                while got < n {
                    match subscriber.recv_ref() {
                        Ok(Some(_)) => got += 1,
                        Err(converse::Error::Timeout) => break,
                        other => panic!("nats_pubsub/converse: {other:?}"),
                    }
                }
                done_tx.send(got).unwrap();
            }
        });
        let id = format!("nats_pubsub/converse/{size}");
        group.bench_with_input(BenchmarkId::new("converse", size), &msg, |b, msg| {
            b.iter_custom(|iters| {
                want_tx.send(iters).unwrap();
                let started = Instant::now();
                for _ in 0..iters {
                    publisher.feed(msg).unwrap();
                }
                publisher.flush().unwrap();
                let got = done_rx.recv().unwrap();
                let took = started.elapsed();
                lost(&id, got, iters);
                took
            })
        });
        drop(want_tx);
        sub.join().unwrap();

        // The async clients on a current-thread runtime, then (`-mt`) on a
        // two-worker one.
        for (runtime, suffix) in common::TOKIO_RUNTIMES {
            let rt = runtime();
            // async-nats: one client publishing (it batches itself), one
            // subscribing.
            let addr = format!("nats://127.0.0.1:{}", server.port);
            let subject = format!("bench.async{suffix}.{size}");
            let (publisher, mut subscription) = rt.block_on(async {
                let p = async_nats::connect(&addr).await.unwrap();
                let s = async_nats::connect(&addr).await.unwrap();
                let subscription = s.subscribe(subject.clone()).await.unwrap();
                s.flush().await.unwrap();
                // The subscriber's client lives as long as its subscription.
                std::mem::forget(s);
                (p, subscription)
            });
            let payload = bytes::Bytes::from(msg.clone());
            let id = format!("nats_pubsub/async-nats{suffix}/{size}");
            group.bench_function(BenchmarkId::new(format!("async-nats{suffix}"), size), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(async {
                        let started = Instant::now();
                        let receiving = async {
                            let mut got = 0;
                            while got < iters {
                                match tokio::time::timeout(LOST, subscription.next()).await {
                                    Ok(Some(_)) => got += 1,
                                    Ok(None) => panic!("{id}: the subscription ended"),
                                    Err(_) => break,
                                }
                            }
                            got
                        };
                        let publishing = async {
                            for _ in 0..iters {
                                publisher
                                    .publish(subject.clone(), payload.clone())
                                    .await
                                    .unwrap();
                            }
                            publisher.flush().await.unwrap();
                        };
                        let (got, ()) = tokio::join!(receiving, publishing);
                        let took = started.elapsed();
                        lost(&id, got, iters);
                        took
                    })
                })
            });

            // converse's async driver, the same way on the same runtime: one
            // conversation feeding (flushed at the end), one receiving.
            let url = server.url(&format!("bench.converse-tokio{suffix}.{size}"));
            let (mut publisher, mut subscriber) = rt.block_on(async {
                let p = converse::tokio::connect(&url).await.unwrap();
                let s = converse::tokio::connect(&url).await.unwrap();
                (p, s)
            });
            let id = format!("nats_pubsub/converse-tokio{suffix}/{size}");
            group.bench_function(
                BenchmarkId::new(format!("converse-tokio{suffix}"), size),
                |b| {
                    b.iter_custom(|iters| {
                        rt.block_on(async {
                            let started = Instant::now();
                            let receiving = async {
                                let mut got = 0;
                                while got < iters {
                                    match tokio::time::timeout(LOST, subscriber.recv()).await {
                                        Ok(Ok(Some(_))) => got += 1,
                                        Ok(other) => panic!("{id}: {other:?}"),
                                        Err(_) => break,
                                    }
                                }
                                got
                            };
                            let publishing = async {
                                for _ in 0..iters {
                                    publisher.feed(&msg).unwrap();
                                }
                                publisher.flush().await.unwrap();
                            };
                            let (got, ()) = tokio::join!(receiving, publishing);
                            let took = started.elapsed();
                            lost(&id, got, iters);
                            took
                        })
                    })
                },
            );
        }
    }
    group.finish();
}

/// A room on a switchboard of its own, on a thread of its own, listening
/// on TCP; relayed through NATS if `relay` is given. Returns its URL.
fn room(relay: Option<(String, &str)>) -> String {
    let mut board = Switchboard::new().unwrap();
    let listener = board.listen("tcp://127.0.0.1:0").unwrap();
    let url = board.listener_addr(listener).unwrap().to_string();
    let relayed = relay.is_some();
    // The relay's throughput is measured: no flood limit (the example's
    // is 100 lines a second per member).
    let mut room = room::Room::new(board, room::Printer::none()).flood_limit(None);
    if let Some((nats, label)) = relay {
        room = room.relay(room::Relay::new(&nats, label));
    }
    thread::spawn(move || room.run());
    if relayed {
        // The relay connects as the room starts.
        thread::sleep(Duration::from_millis(300));
    }
    url
}

fn member(url: &str, name: &str) -> Conversation {
    let config = Config::new().with_read_timeout(Some(Duration::from_secs(10)));
    let mut c = converse::connect_with(url, &config).unwrap();
    c.send(name).unwrap();
    c
}

/// Reads until `line` comes (announcements of others joining may come
/// first).
fn read_until(c: &mut Conversation, line: &str) {
    while c.recv_text().unwrap().unwrap() != line {}
}

/// The one-way time of a line from alice (in room `from`) to bob (in room
/// `to`), who hears it as `heard`; `bob_as`: how alice hears bob join.
fn line_latency(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    (from, to): (&str, &str),
    (bob_as, alice_as): (&str, &str),
) {
    let mut alice = member(from, "alice");
    let mut bob = member(to, "bob");
    read_until(&mut alice, &format!("* {bob_as} joined"));
    alice.send("warm").unwrap();
    read_until(&mut bob, &format!("{alice_as}: warm"));
    let heard = format!("{alice_as}: ping");
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                alice.send("ping").unwrap();
                let line = bob.recv_ref().unwrap().unwrap();
                total += started.elapsed();
                assert_eq!(line, heard.as_bytes());
            }
            total
        })
    });
}

fn fanout(c: &mut Criterion) {
    let Some(server) = server() else {
        eprintln!("nats_fanout: skipped, nats-server is not installed");
        return;
    };
    let mut group = c.benchmark_group("nats_fanout");
    group.measurement_time(Duration::from_secs(4));
    // One room: alice and bob on the same server.
    let one = room(None);
    line_latency(&mut group, "one_room", (&one, &one), ("bob", "alice"));
    // Two rooms on two servers, one subject: alice on A, bob on B.
    let relay = server.url("bench.rooms");
    let a = room(Some((relay.clone(), "A")));
    let b = room(Some((relay, "B")));
    line_latency(&mut group, "two_rooms", (&a, &b), ("bob@B", "alice@A"));
    group.finish();
}

criterion_group!(benches, pubsub, fanout);
criterion_main!(benches);
