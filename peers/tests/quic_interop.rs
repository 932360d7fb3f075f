//! QUIC with quinn (on tokio), both ways: a quinn server for converse's
//! client, and quinn clients for converse's listener, speaking the wire
//! rules converse documents (ALPN `converse`; each stream opened by the
//! client, starting with the byte 0xC1; then tokio-util's
//! `LengthDelimitedCodec` framing, which is converse's `length` framing).
#![cfg(feature = "quic")]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use converse::{Config, Delivery, Error};
use futures_util::{SinkExt, StreamExt};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

/// The byte that starts each conversation's stream.
const HEADER: u8 = 0xC1;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn quinn_server_config() -> quinn::ServerConfig {
    let mut rustls = (**tls::server().rustls_config()).clone();
    rustls.alpn_protocols = vec![b"converse".to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(rustls).unwrap();
    quinn::ServerConfig::with_crypto(Arc::new(crypto))
}

fn quinn_client_config() -> quinn::ClientConfig {
    let mut rustls = (**tls::client().rustls_config()).clone();
    rustls.alpn_protocols = vec![b"converse".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(rustls).unwrap();
    quinn::ClientConfig::new(Arc::new(crypto))
}

/// A quinn echo server: each stream's header checked, its messages echoed,
/// its end answered with ours.
#[test]
fn converse_client_against_a_quinn_server() {
    let rt = runtime();
    let endpoint = rt.block_on(async {
        quinn::Endpoint::server(quinn_server_config(), "127.0.0.1:0".parse().unwrap()).unwrap()
    });
    let addr = endpoint.local_addr().unwrap();
    let server = rt.spawn(async move {
        let conn = endpoint.accept().await.unwrap().await.unwrap();
        let mut echoed = Vec::new();
        // Two conversations, one connection.
        for _ in 0..2 {
            let (send, mut recv) = conn.accept_bi().await.unwrap();
            let mut header = [0u8; 1];
            recv.read_exact(&mut header).await.unwrap();
            assert_eq!(header[0], HEADER);
            echoed.push(tokio::spawn(async move {
                let mut rx = FramedRead::new(recv, LengthDelimitedCodec::new());
                let mut tx = FramedWrite::new(send, LengthDelimitedCodec::new());
                let mut n = 0;
                while let Some(m) = rx.next().await {
                    tx.send(m.unwrap().freeze()).await.unwrap();
                    n += 1;
                }
                let mut send = tx.into_inner();
                send.finish().unwrap();
                let _ = send.stopped().await;
                n
            }));
        }
        let mut counts = Vec::new();
        for e in echoed {
            counts.push(e.await.unwrap());
        }
        // The client closes the connection once nobody uses it.
        let closed = tokio::time::timeout(T, conn.closed()).await;
        (counts, closed.is_ok(), endpoint)
    });
    let config = tls::config(config());
    let url = format!("quic://{addr}");
    let mut a = converse::connect_with(&url, &config).unwrap();
    let mut b = converse::connect_with(&url, &config).unwrap();
    for i in 0..20 {
        a.send(format!("a{i}")).unwrap();
        b.send(vec![i as u8; 30_000]).unwrap();
    }
    for i in 0..20 {
        assert_eq!(a.recv_text().unwrap().unwrap(), format!("a{i}"));
        assert_eq!(b.recv().unwrap().unwrap(), vec![i as u8; 30_000]);
    }
    assert_eq!(a.close().unwrap(), Delivery::Confirmed);
    assert_eq!(b.close().unwrap(), Delivery::Confirmed);
    let (counts, closed, _endpoint) = rt.block_on(async {
        tokio::time::timeout(2 * T, server)
            .await
            .expect("the quinn server finished")
            .unwrap()
    });
    assert_eq!(counts, vec![20, 20]);
    assert!(closed, "the unused connection was closed");
}

/// quinn clients against converse's listener: two conversations on one
/// connection, echoed; a stream without the header is refused.
#[test]
fn quinn_clients_against_a_converse_listener() {
    let config = tls::config(config());
    let echo = Echo::serve(converse::listen_with("quic://127.0.0.1:0", &config).unwrap());
    let addr: SocketAddr = echo.addr();
    let rt = runtime();
    rt.block_on(async move {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(quinn_client_config());
        let conn = endpoint.connect(addr, "localhost").unwrap().await.unwrap();
        let mut talks = Vec::new();
        for k in 0..2u8 {
            let (mut send, recv) = conn.open_bi().await.unwrap();
            send.write_all(&[HEADER]).await.unwrap();
            talks.push(tokio::spawn(async move {
                let mut tx = FramedWrite::new(send, LengthDelimitedCodec::new());
                let mut rx = FramedRead::new(recv, LengthDelimitedCodec::new());
                for i in 0..50u32 {
                    let m = format!("{k}:{i}:{}", "x".repeat(i as usize * 100));
                    tx.send(bytes::Bytes::from(m.clone())).await.unwrap();
                    assert_eq!(rx.next().await.unwrap().unwrap(), m.as_bytes());
                }
                tx.into_inner().finish().unwrap();
                // converse answers our end with its own.
                assert!(rx.next().await.is_none());
            }));
        }
        for t in talks {
            tokio::time::timeout(T, t).await.unwrap().unwrap();
        }
        // A stream that does not start with the header is stopped.
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        send.write_all(b"\0\0\0\x05hello").await.unwrap();
        let refused = tokio::time::timeout(T, recv.read_to_end(1024))
            .await
            .unwrap();
        assert!(refused.is_err(), "{refused:?}");
        conn.close(0u32.into(), b"done");
        endpoint.wait_idle().await;
    });
    assert_eq!(echo.outcome(), Ok(50));
    assert_eq!(echo.outcome(), Ok(50));
    // Nothing else was accepted (the headerless stream never was).
    assert!(echo
        .outcomes
        .recv_timeout(std::time::Duration::from_millis(200))
        .is_err());
}

/// A converse listener's certificate checks apply to quinn clients too: one
/// that does not trust the CA fails its handshake.
#[test]
fn a_quinn_client_that_does_not_trust_the_server_is_refused() {
    let config = tls::config(config());
    let l = converse::listen_with("quic://127.0.0.1:0", &config).unwrap();
    let addr = l.local_addr().unwrap().socket_addr().unwrap();
    let rt = runtime();
    let outcome = rt.block_on(async move {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut rustls = (**converse::tls::TlsClient::new().rustls_config()).clone();
        rustls.alpn_protocols = vec![b"converse".to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(rustls).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        tokio::time::timeout(T, endpoint.connect(addr, "localhost").unwrap())
            .await
            .unwrap()
            .map(|_| ())
    });
    assert!(outcome.is_err());
    l.set_accept_timeout(Some(std::time::Duration::from_millis(100)))
        .unwrap();
    assert!(matches!(l.accept(), Err(Error::Timeout)));
    let _: Config = config;
}
