//! The QUIC endpoint's rules on a fake clock: two hubs joined by a
//! hand-moved network, no sockets, no sleeping.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::quic::{Hub, Key, Limits, RETRY_ABOVE};
use crate::config::Config;

use super::tests::certs;

const CLIENT: &str = "127.0.0.1:5000";
const SERVER: &str = "127.0.0.1:4433";

fn configs() -> (Config, Config) {
    let ca = certs::Authority::new("test CA");
    let server = ca.issue(certs::Role::Server, "localhost", &["localhost"]);
    let server = crate::tls::TlsServer::from_pem(&server.cert_pem, &server.key_pem).unwrap();
    let client = crate::tls::TlsClient::trusting_ca_pem(ca.cert_pem()).unwrap();
    (
        Config::new().with_tls_client(client),
        Config::new().with_tls_server(server),
    )
}

fn limits(max_connections: usize) -> Limits {
    limits_with(max_connections, Duration::from_secs(2))
}

fn limits_with(max_connections: usize, handshake_timeout: Duration) -> Limits {
    Limits {
        max_connections,
        handshake_timeout,
        linger: Duration::from_secs(5),
        mtu_discovery: false,
    }
}

/// A client hub and a server hub, and the datagrams between them.
struct Net {
    client: Hub,
    server: Hub,
    client_config: Config,
    /// TLS settings by tag: each another connection.
    tags: Vec<std::sync::Arc<rustls::ClientConfig>>,
    now: Instant,
    /// Datagrams from the client are lost.
    client_cut: bool,
}

impl Net {
    fn new(max_connections: usize) -> Net {
        Net::with_limits(limits(max_connections))
    }

    fn with_limits(limits: Limits) -> Net {
        let (client_config, server_config) = configs();
        let server = crate::transport::quic::server_config(&server_config).unwrap();
        Net {
            client: Hub::client(limits),
            server: Hub::server(server, limits),
            client_config,
            tags: Vec::new(),
            now: Instant::now(),
            client_cut: false,
        }
    }

    fn key(&mut self, tag: usize) -> Key {
        let tls = self.client_config.tls_client().unwrap().rustls_config();
        while self.tags.len() <= tag {
            self.tags.push(std::sync::Arc::new((**tls).clone()));
        }
        Key {
            addr: SERVER.parse().unwrap(),
            name: "localhost".into(),
            tls: Some(std::sync::Arc::clone(&self.tags[tag])),
        }
    }

    fn connect(&mut self, tag: usize) -> quinn_proto::ConnectionHandle {
        let (qc, _) = crate::transport::quic::client_config(&self.client_config).unwrap();
        let key = self.key(tag);
        self.client.connect(self.now, qc, key).unwrap()
    }

    /// Moves datagrams both ways until neither side has any: how many
    /// moved.
    fn deliver(&mut self) -> usize {
        let mut moved = 0;
        for _ in 0..10_000 {
            match self.exchange() {
                0 => return moved,
                n => moved += n,
            }
        }
        panic!("the hubs never went quiet");
    }

    /// One round: what the client has to send, then what the server has:
    /// how many datagrams moved.
    fn exchange(&mut self) -> usize {
        let (c, s): (SocketAddr, SocketAddr) = (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
        let mut moved = 0;
        let mut buf = Vec::new();
        self.client.mark_all_dirty();
        while let Some((to, n)) = self.client.poll_transmit(self.now, None, &mut buf) {
            assert_eq!(to, s);
            moved += 1;
            if !self.client_cut {
                self.server
                    .handle_datagram(self.now, c, BytesMut::from(&buf[..n]));
            }
        }
        self.server.mark_all_dirty();
        while let Some((to, n)) = self.server.poll_transmit(self.now, None, &mut buf) {
            assert_eq!(to, c);
            moved += 1;
            self.client
                .handle_datagram(self.now, s, BytesMut::from(&buf[..n]));
        }
        moved
    }

    /// Lets `dt` pass in steps no longer than `step`, timers handled and
    /// datagrams moved after each.
    fn pass(&mut self, dt: Duration, step: Duration) {
        let end = self.now + dt;
        while self.now < end {
            self.now = (self.now + step).min(end);
            self.client.handle_timeout(self.now);
            self.server.handle_timeout(self.now);
            self.deliver();
        }
    }
}

fn read_all(
    hub: &mut Hub,
    ch: quinn_proto::ConnectionHandle,
    id: quinn_proto::StreamId,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match hub.read(ch, id, &mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn a_stream_carries_bytes_both_ways_and_its_end() {
    let mut net = Net::new(8);
    let ch = net.connect(0);
    net.deliver();
    assert!(net.client.established(ch).unwrap());
    let id = net.client.open(ch).unwrap().expect("a stream");
    // The header makes the stream known to the listener before any message.
    assert!(net.server.take_accepted().is_none());
    net.deliver();
    let (sch, sid, from) = net.server.take_accepted().expect("accepted at its header");
    assert_eq!(from, CLIENT.parse::<SocketAddr>().unwrap());
    assert_eq!(read_all(&mut net.server, sch, sid), b"");
    let n = net
        .server
        .write(
            sch,
            sid,
            &[IoSlice::new(b"the server "), IoSlice::new(b"speaks first")],
        )
        .unwrap();
    assert_eq!(n, 23);
    net.deliver();
    assert_eq!(
        read_all(&mut net.client, ch, id),
        b"the server speaks first"
    );
    net.client
        .write(ch, id, &[IoSlice::new(b"and the client answers")])
        .unwrap();
    net.client.finish(ch, id);
    net.deliver();
    assert_eq!(
        read_all(&mut net.server, sch, sid),
        b"and the client answers"
    );
    // The end, once everything before it was read.
    assert_eq!(net.server.read(sch, sid, &mut [0u8; 16]).unwrap(), 0);
    assert!(net.server.take_error(sch, sid).is_none());
}

#[test]
fn a_handshake_that_stalls_is_closed_at_its_deadline() {
    let mut net = Net::new(8);
    let _ = net.connect(0);
    // The client's Initial arrives; then the client falls silent.
    let (c, mut buf) = (CLIENT.parse().unwrap(), Vec::new());
    net.client.mark_all_dirty();
    let (_, n) = net.client.poll_transmit(net.now, None, &mut buf).unwrap();
    net.server
        .handle_datagram(net.now, c, BytesMut::from(&buf[..n]));
    assert_eq!(net.server.connections(), 1);
    net.client_cut = true;
    net.pass(Duration::from_millis(1_900), Duration::from_millis(100));
    assert_eq!(net.server.connections(), 1, "before the deadline");
    // Past the handshake deadline (2 s), well before the idle timeout
    // (30 s): closed, then drained.
    net.pass(Duration::from_secs(8), Duration::from_millis(100));
    assert_eq!(net.server.connections(), 0);
}

#[test]
fn an_unused_connection_closes_once_its_bytes_are_acknowledged() {
    let mut net = Net::new(8);
    let ch = net.connect(0);
    net.deliver();
    let id = net.client.open(ch).unwrap().unwrap();
    net.client
        .write(ch, id, &[IoSlice::new(&[7u8; 10_000])])
        .unwrap();
    net.deliver();
    let (sch, sid, _) = net.server.take_accepted().unwrap();
    assert_eq!(read_all(&mut net.server, sch, sid).len(), 10_000);
    net.client.release(ch, id, false, net.now);
    net.server.release(sch, sid, false, net.now);
    net.pass(Duration::from_millis(500), Duration::from_millis(50));
    // Closed by the client, the peer told; both drained within a few
    // round trips of fake time, long before the idle timeout.
    net.pass(Duration::from_secs(5), Duration::from_millis(100));
    assert_eq!(net.client.connections(), 0);
    assert_eq!(net.server.connections(), 0);
}

#[test]
fn conversations_share_a_connection_and_the_cap_counts_connections() {
    let mut net = Net::new(1);
    let ch = net.connect(0);
    net.deliver();
    assert!(net.client.established(ch).unwrap());
    // The same key: the same connection, no handshake.
    assert_eq!(net.connect(0), ch);
    let ids: Vec<_> = (0..3)
        .map(|_| net.client.open(ch).unwrap().unwrap())
        .collect();
    net.deliver();
    for _ in &ids {
        assert!(net.server.take_accepted().is_some());
    }
    // Another key is another connection: over the cap, refused.
    let other = net.connect(1);
    assert_ne!(other, ch);
    net.deliver();
    assert!(net.client.established(other).is_err());
    assert_eq!(net.server.connections(), 1);
    // Once its conversations are gone, a connection is not taken again.
    for id in ids {
        net.client.release(ch, id, false, net.now);
    }
    assert_ne!(net.connect(0), ch);
}

#[test]
fn many_handshakes_at_once_are_asked_to_retry_and_all_complete() {
    let mut net = Net::new(1_000);
    let n = RETRY_ABOVE + 6;
    let handles: Vec<_> = (0..n).map(|tag| net.connect(tag)).collect();
    // Every client's Initial reaches the server before any answer goes
    // back.
    let (c, mut buf) = (CLIENT.parse().unwrap(), Vec::new());
    net.client.mark_all_dirty();
    while let Some((_, len)) = net.client.poll_transmit(net.now, None, &mut buf) {
        net.server
            .handle_datagram(net.now, c, BytesMut::from(&buf[..len]));
    }
    assert_eq!(
        net.server.connections(),
        RETRY_ABOVE,
        "the rest were asked to prove their address first"
    );
    net.deliver();
    for ch in handles {
        assert!(net.client.established(ch).unwrap());
    }
    assert_eq!(net.server.connections(), n);
}

#[test]
fn garbage_costs_nothing() {
    let mut net = Net::new(8);
    let c: SocketAddr = CLIENT.parse().unwrap();
    let mut seed = 0x1234_5678_u64;
    for i in 0..2_000 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let len = 1 + (seed % 1_400) as usize;
        let mut d: Vec<u8> = (0..len)
            .map(|k| (seed.rotate_left(k as u32 % 64) >> 3) as u8)
            .collect();
        if i % 2 == 0 {
            d[0] |= 0xc0;
        }
        net.server
            .handle_datagram(net.now, c, BytesMut::from(&d[..]));
    }
    assert_eq!(net.server.connections(), 0);
    assert!(net.server.take_accepted().is_none());
}

/// Under loss (a fifth of the datagrams each way, seeded), handshakes
/// complete on both sides, and bytes get through, within a bounded time.
#[test]
fn handshakes_and_bytes_get_through_loss() {
    for seed in 1..=40u64 {
        // A handshake deadline that loss recovery's backing off fits in.
        let mut net = Net::with_limits(limits_with(8, Duration::from_secs(60)));
        let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let mut lose = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % 5 == 0
        };
        let ch = net.connect(0);
        let (c, s): (SocketAddr, SocketAddr) = (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
        let mut buf = Vec::new();
        let start = net.now;
        let mut sid = None;
        let mut id = None;
        let mut got = 0usize;
        while net.now < start + Duration::from_secs(120) {
            net.client.mark_all_dirty();
            while let Some((_, n)) = net.client.poll_transmit(net.now, None, &mut buf) {
                if !lose() {
                    net.server
                        .handle_datagram(net.now, c, BytesMut::from(&buf[..n]));
                }
            }
            net.server.mark_all_dirty();
            while let Some((_, n)) = net.server.poll_transmit(net.now, None, &mut buf) {
                if !lose() {
                    net.client
                        .handle_datagram(net.now, s, BytesMut::from(&buf[..n]));
                }
            }
            if id.is_none() && matches!(net.client.established(ch), Ok(true)) {
                id = net.client.open(ch).unwrap();
                let id = id.unwrap();
                net.client
                    .write(ch, id, &[IoSlice::new(&[1u8; 50_000])])
                    .unwrap();
                net.client.finish(ch, id);
            }
            if sid.is_none() {
                sid = net.server.take_accepted();
            }
            if let Some((sch, sid, _)) = sid {
                got += read_all(&mut net.server, sch, sid).len();
            }
            if got == 50_000 {
                break;
            }
            net.now += Duration::from_millis(5);
            net.client.handle_timeout(net.now);
            net.server.handle_timeout(net.now);
        }
        // Loss recovery backs off (each probe lost doubles the wait), so
        // the bound is generous; the fake clock makes it cost nothing.
        assert_eq!(
            got,
            50_000,
            "seed {seed}: not through in {:?}: client {:?}, opened {:?}, accepted {:?}, server connections {}",
            net.now - start,
            net.client.established(ch),
            id,
            sid.map(|s| s.1),
            net.server.connections()
        );
    }
}

#[test]
fn an_abandoned_handshake_is_closed_long_before_the_idle_timeout() {
    let mut net = Net::new(8);
    // Nobody answers: the client's datagrams are lost.
    net.client_cut = true;
    let abandoned = net.connect(0);
    let _kept = net.connect(1);
    net.deliver();
    assert_eq!(net.client.connections(), 2);
    net.client.abandon(abandoned, net.now);
    // Well before the idle timeout (30 s): the abandoned one is gone; the
    // other still tries.
    net.pass(Duration::from_secs(10), Duration::from_millis(100));
    assert_eq!(net.client.connections(), 1);
}

/// A client's connection carries streams once the server confirmed the
/// handshake, not as soon as the client sent its Finished: were its
/// Finished lost with stream data sent behind it, quinn-proto would send
/// the Finished again only within a congestion window that data the
/// server cannot read yet fills for good.
#[test]
fn a_client_waits_for_the_server_to_confirm_the_handshake() {
    let mut net = Net::new(8);
    let ch = net.connect(0);
    // Both ways, until the client has the server's whole flight.
    for _ in 0..20 {
        if net.client.finished_sent(ch) {
            break;
        }
        net.exchange();
    }
    assert!(
        net.client.finished_sent(ch),
        "the client got the server's flight"
    );
    // Its Finished is lost.
    let mut buf = Vec::new();
    net.client.mark_all_dirty();
    let mut lost = 0;
    while net.client.poll_transmit(net.now, None, &mut buf).is_some() {
        lost += 1;
    }
    assert!(lost > 0, "the client sent its Finished");
    assert!(
        matches!(net.client.established(ch), Ok(false)),
        "no stream before the server confirms the handshake"
    );
    // Sent again on its timer, confirmed by the server: now it is.
    net.pass(Duration::from_secs(5), Duration::from_millis(50));
    assert!(matches!(net.client.established(ch), Ok(true)));
}

/// Two connects to one server share its connection while its handshake
/// goes on: one given up (its shorter timeout passed) leaves the
/// connection to the other, which is only closed once nobody waits for it.
#[test]
fn a_handshake_shared_by_two_connects_outlives_the_one_given_up() {
    let mut net = Net::new(8);
    net.client_cut = true;
    let first = net.connect(0);
    let second = net.connect(0);
    assert_eq!(first, second, "the connection under way is shared");
    net.deliver();
    net.client.abandon(first, net.now);
    net.pass(Duration::from_secs(10), Duration::from_millis(100));
    assert_eq!(net.client.connections(), 1);
    assert!(
        matches!(net.client.established(second), Ok(false)),
        "still shaking hands for the connect that waits"
    );
    net.client.abandon(second, net.now);
    net.pass(Duration::from_secs(10), Duration::from_millis(100));
    assert_eq!(net.client.connections(), 0);
}

/// A socket test beside the fake-clock ones: the addresses of a name are
/// tried in turn, the next one a moment after the last (Happy Eyeballs),
/// so an address that never answers costs that moment, not the handshake
/// timeout.
#[test]
fn an_address_that_never_answers_does_not_hold_up_the_next() {
    let (client_config, server_config) = configs();
    // An hour to shake hands: a connect that waits for the silent address
    // to give up never returns within the test's bound.
    let client_config = client_config.with_handshake_timeout(Duration::from_secs(3600));
    let listener = crate::listen_with("quic://127.0.0.1:0", &server_config).unwrap();
    let live = listener.local_addr().unwrap().socket_addr().unwrap();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = silent.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let opened = crate::transport::quic::Dial::to(
            vec![dead, live],
            "localhost".to_owned(),
            &client_config,
        )
        .and_then(crate::transport::quic::open_first)
        .map(|won| won.addr);
        let _ = tx.send(opened);
    });
    let opened = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the connect waited for the address that never answers");
    assert_eq!(opened.unwrap(), live);
    // The silent address did get a handshake attempt.
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        silent.recv_from(&mut buf).unwrap().0 >= 1200,
        "a QUIC Initial"
    );
}
