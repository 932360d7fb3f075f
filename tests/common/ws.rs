//! WebSocket by hand, for writing what a well-behaved peer never would:
//! the upgrade request, frames from a client, the server's answer.

use std::io::{Read, Write};
use std::net::TcpStream;

use super::raw_client;

/// An upgrade request, with RFC 6455's sample key.
pub const UPGRADE: &[u8] =
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Opens a raw TCP connection and sends an upgrade request by hand (for
/// writing frames a well-behaved client never would).
pub fn raw_request(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = raw_client(addr);
    s.write_all(UPGRADE).unwrap();
    s
}

/// Reads the answer to [`raw_request`]: the upgrade, with the right key.
pub fn upgraded(s: &mut TcpStream) {
    let head = read_head(s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
}

/// [`raw_request`], then [`upgraded`].
pub fn raw_upgraded(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = raw_request(addr);
    upgraded(&mut s);
    s
}

pub fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// A frame from a client (masked with a fixed key), `fin` and `opcode` as
/// given, or with its first byte replaced.
pub fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}
