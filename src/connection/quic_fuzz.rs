//! The QUIC listener's fuzz target: what a listening endpoint reads. A
//! real client's datagrams, corrupted, dropped, duplicated and reordered
//! by the input, and datagrams the input makes up, from a few addresses,
//! with a clock that jumps. After every datagram, and once time has run
//! out, it checks that:
//!
//! * the endpoint never holds more connections than its cap;
//! * what it sends is bounded (no endless transmit);
//! * every connection ends once nobody speaks (handshake deadline, idle
//!   timeout): garbage and half handshakes cost only themselves.
//!
//! The certificate (`quic_fuzz/`) is a test certificate, made for this
//! harness and nothing else: its key is no secret.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::quic::{Hub, Key, Limits};
use crate::config::Config;

/// At most this many datagrams per input.
const MAX_DATAGRAMS: usize = 96;
/// The listener's cap on connections.
const CAP: usize = 3;

const CA: &str = include_str!("quic_fuzz/ca.pem");
const SERVER_CERT: &str = include_str!("quic_fuzz/server.pem");
const SERVER_KEY: &str = include_str!("quic_fuzz/server.key");

/// The input, read a byte at a time (zeros once it is used up).
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn limits() -> Limits {
    Limits {
        max_connections: CAP,
        handshake_timeout: Duration::from_secs(2),
        linger: Duration::from_secs(1),
        mtu_discovery: false,
    }
}

/// Feeds a listening endpoint what `data` says (see the module's
/// documentation); panics if it misbehaves.
pub fn quic_listener(data: &[u8]) {
    let server = crate::tls::TlsServer::from_pem(SERVER_CERT, SERVER_KEY).expect("the test key");
    let client = crate::tls::TlsClient::trusting_ca_pem(CA).expect("the test CA");
    let server_config = Config::new()
        .with_tls_server(server)
        .with_idle_timeout(Some(Duration::from_secs(10)));
    let client_config = Config::new()
        .with_tls_client(client)
        .with_idle_timeout(Some(Duration::from_secs(10)));
    let server_config =
        crate::transport::quic::server_config(&server_config).expect("a server configuration");
    let mut listener = Hub::server(server_config, limits());
    let mut clients: Vec<Hub> = (0..2).map(|_| Hub::client(limits())).collect();
    let peers: [SocketAddr; 4] = [
        "127.0.0.1:1001".parse().unwrap(),
        "127.0.0.1:1002".parse().unwrap(),
        "[::1]:1003".parse().unwrap(),
        "10.0.0.4:1004".parse().unwrap(),
    ];
    let here: SocketAddr = "127.0.0.1:4433".parse().unwrap();
    let mut now = Instant::now();
    let mut input = Input(data);
    let mut conns = Vec::new();
    for (k, hub) in clients.iter_mut().enumerate() {
        let (qc, _) =
            crate::transport::quic::client_config(&client_config).expect("a client configuration");
        // Other TLS settings: each client another connection.
        let tls = client_config
            .tls_client()
            .expect("set above")
            .rustls_config();
        let _ = k;
        let key = Key {
            addr: here,
            name: "localhost".into(),
            tls: Some(std::sync::Arc::new((**tls).clone())),
        };
        conns.push((
            hub.connect(now, qc, key).expect("a client connection"),
            false,
        ));
    }
    let mut buf = Vec::new();
    let mut held: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    for _ in 0..MAX_DATAGRAMS {
        if input.is_empty() {
            break;
        }
        let op = input.byte();
        let from = peers[usize::from(op >> 6)];
        match op % 4 {
            // A datagram the input makes up.
            0 => {
                let len = usize::from(input.byte()) * 6;
                let d = input.bytes(len).to_vec();
                listener.handle_datagram(now, from, BytesMut::from(&d[..]));
            }
            // A real client's next datagram, maybe corrupted, maybe held
            // back (delivered later, out of order, or twice).
            1 | 2 => {
                let c = usize::from(op >> 7);
                clients[c].mark_all_dirty();
                if let Some((_, n)) = clients[c].poll_transmit(now, None, &mut buf) {
                    let mut d = buf[..n].to_vec();
                    let flips = input.byte() % 4;
                    for _ in 0..flips {
                        let at = usize::from(input.byte()) * 5 % d.len().max(1);
                        if let Some(b) = d.get_mut(at) {
                            *b ^= input.byte() | 1;
                        }
                    }
                    let client_addr = peers[c];
                    if op % 4 == 2 {
                        held.push((client_addr, d.clone()));
                    }
                    listener.handle_datagram(now, client_addr, BytesMut::from(&d[..]));
                }
            }
            // Something held back, again.
            _ => {
                if !held.is_empty() {
                    let i = usize::from(input.byte()) % held.len();
                    let (at, d) = held.swap_remove(i);
                    listener.handle_datagram(now, at, BytesMut::from(&d[..]));
                }
            }
        }
        // The listener answers; its answers reach the real clients.
        now += Duration::from_millis(u64::from(input.byte()) * 8);
        listener.handle_timeout(now);
        for hub in &mut clients {
            hub.handle_timeout(now);
        }
        listener.mark_all_dirty();
        let mut sent = 0;
        while let Some((to, n)) = listener.poll_transmit(now, None, &mut buf) {
            sent += 1;
            assert!(sent < 10_000, "the listener's transmits never end");
            if let Some(c) = peers[..2].iter().position(|&p| p == to) {
                let d = BytesMut::from(&buf[..n]);
                clients[c].handle_datagram(now, here, d);
            }
        }
        assert!(listener.connections() <= CAP, "over the cap");
        // A client whose handshake is done opens a conversation and says
        // something.
        for (hub, (ch, opened)) in clients.iter_mut().zip(&mut conns) {
            if !*opened && matches!(hub.established(*ch), Ok(true)) {
                *opened = true;
                if let Ok(Some(id)) = hub.open(*ch) {
                    let _ = hub.write(*ch, id, &[std::io::IoSlice::new(b"\0\0\0\x02hi")]);
                }
            }
        }
        while let Some((ch, id, _)) = listener.take_accepted() {
            let mut scratch = [0u8; 256];
            let _ = listener.read(ch, id, &mut scratch);
            listener.release(ch, id, false, now);
        }
    }
    // Nobody speaks any more: every connection ends, within the idle
    // timeout and the drain.
    for _ in 0..200 {
        now += Duration::from_millis(100);
        listener.handle_timeout(now);
        listener.mark_all_dirty();
        while listener.poll_transmit(now, None, &mut buf).is_some() {}
    }
    assert_eq!(listener.connections(), 0, "a connection outlived silence");
}

#[cfg(test)]
mod tests {
    use super::quic_listener;

    /// The corpus (`fuzz/corpus/quic_listener`) replayed.
    #[test]
    fn the_corpus_passes() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/quic_listener");
        let mut count = 0;
        for entry in std::fs::read_dir(&dir).expect("the corpus") {
            let data = std::fs::read(entry.expect("an entry").path()).expect("an input");
            quic_listener(&data);
            count += 1;
        }
        assert!(count > 0);
    }

    /// Inputs of every operation, made up here.
    #[test]
    fn made_up_inputs_pass() {
        let mut seed = 0x9e37_79b9_u64;
        for _ in 0..24 {
            let data: Vec<u8> = (0..400)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            quic_listener(&data);
        }
        // A handshake left whole: the clients' datagrams in order.
        let whole: Vec<u8> = (0..60).flat_map(|_| [1u8, 0, 1]).collect();
        quic_listener(&whole);
    }
}
