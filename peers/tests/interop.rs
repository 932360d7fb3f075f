//! Interoperability with other implementations of the same wire formats:
//! tokio-util's `LengthDelimitedCodec` (both directions, the default and a
//! 2-byte little-endian length) and Python peers (`struct.pack('>I')`,
//! lines, UDP `sendto`). Without `python3` the Python tests are skipped,
//! with a message, or fail under `CONVERSE_REQUIRE_ALL=1`.

#[path = "../../tests/common/mod.rs"]
mod common;

use std::net::TcpStream;
use std::process::Command;

use bytes::Bytes;
use common::*;
use converse::codec::{Framing, Width};
use converse::Conversation;
use converse::{Config, UdpListener};
use futures_util::{SinkExt, StreamExt};
use tokio_util::codec::{Decoder, Encoder, Framed, LengthDelimitedCodec};

fn messages() -> Vec<Vec<u8>> {
    (0..50)
        .map(|i| (0..(i * 97) % 3000).map(|j| (i + j) as u8).collect())
        .collect()
}

fn tokio_codec(two_byte_le: bool) -> LengthDelimitedCodec {
    let mut b = LengthDelimitedCodec::builder();
    if two_byte_le {
        b.length_field_length(2).little_endian();
    }
    b.new_codec()
}

fn converse_config(two_byte_le: bool) -> Config {
    let c = config();
    if two_byte_le {
        c.with_framing(Framing::Length {
            width: Width::U16,
            big_endian: false,
        })
    } else {
        c
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap()
}

/// A tokio-util echo server for one connection, on a thread.
fn tokio_echo(two_byte_le: bool) -> (std::net::SocketAddr, Joiner<()>) {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let server = spawn(move || {
        let rt = runtime();
        rt.block_on(async {
            std_listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            let mut framed = Framed::new(stream, tokio_codec(two_byte_le));
            while let Some(frame) = framed.next().await {
                framed.send(frame.unwrap().freeze()).await.unwrap();
            }
        });
    });
    (addr, server)
}

fn converse_client_against_tokio_server(two_byte_le: bool) {
    let (addr, server) = tokio_echo(two_byte_le);
    let mut c = client(addr, &converse_config(two_byte_le));
    for m in messages() {
        c.send(&m).unwrap();
        assert_eq!(c.recv().unwrap().unwrap(), m);
    }
    c.close().unwrap();
    server.join();
}

fn tokio_client_against_converse_server(two_byte_le: bool) {
    let (addr, server) = converse_echo(converse_config(two_byte_le));
    framed_client(addr, tokio_codec(two_byte_le));
    server.join();
}

/// A tokio `Framed` client with `codec` against the echo server at
/// `addr`: every message comes back, whole.
fn framed_client<C, I>(addr: std::net::SocketAddr, codec: C)
where
    C: Decoder<Item = I, Error = std::io::Error> + Encoder<Bytes, Error = std::io::Error>,
    I: PartialEq<Vec<u8>> + std::fmt::Debug,
{
    runtime().block_on(async {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nonblocking(true).unwrap();
        let mut framed = Framed::new(tokio::net::TcpStream::from_std(stream).unwrap(), codec);
        for m in messages() {
            framed.send(Bytes::from(m.clone())).await.unwrap();
            assert_eq!(framed.next().await.unwrap().unwrap(), m);
        }
    });
}

#[test]
fn tokio_util_default_both_directions() {
    converse_client_against_tokio_server(false);
    tokio_client_against_converse_server(false);
}

#[test]
fn tokio_util_two_byte_little_endian_both_directions() {
    converse_client_against_tokio_server(true);
    tokio_client_against_converse_server(true);
}

/// converse's own codecs in tokio-util's `Framed` (feature `tokio`): a
/// tokio client reaches a converse server, and a tokio server speaking
/// `LengthDelimitedCodec` takes a converse codec's frames, with no codec of
/// the user's own in between.
#[test]
fn converse_codecs_in_tokio_framed_both_ways() {
    for two_byte_le in [false, true] {
        let config = converse_config(two_byte_le);
        let codec = || config.framing().codec(config.max_message_len());
        let (addr, server) = converse_echo(config.clone());
        framed_client(addr, codec());
        server.join();
        // Against tokio-util's own codec on the other side.
        let (addr, server) = tokio_echo(two_byte_le);
        framed_client(addr, codec());
        server.join();
    }
}

/// A header declaring more than the limit ends a `Framed` stream with
/// `InvalidData` before anything of the message is read or reserved.
#[test]
fn a_converse_codec_in_framed_refuses_an_oversized_header() {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_listener.local_addr().unwrap();
    let hostile = spawn(move || {
        let (mut s, _) = std_listener.accept().unwrap();
        use std::io::Write;
        s.write_all(&u32::MAX.to_be_bytes()).unwrap();
        s
    });
    let rt = runtime();
    rt.block_on(async {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nonblocking(true).unwrap();
        let codec = converse::codec::LengthDelimited::new();
        let mut framed = Framed::new(tokio::net::TcpStream::from_std(stream).unwrap(), codec);
        let e = framed.next().await.unwrap().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
        assert!(e.to_string().contains("larger than the limit"), "{e}");
    });
    drop(hostile.join());
}

/// Runs a Python script with `args`; `None` (and a message) without python3.
fn python(script: &str, args: &[String]) -> Option<String> {
    if !have_python() {
        return None;
    }
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// The start of a Python TCP peer: `s`, connected to the port in `argv[1]`,
/// and `recv_exact(n)`.
const PY_CONNECT: &str = r#"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
def recv_exact(n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        assert chunk, "connection closed"
        b += chunk
    return b
"#;

/// A converse echo server with `config`, serving one conversation.
fn converse_echo(config: Config) -> (std::net::SocketAddr, Joiner<()>) {
    let (listener, addr) = listener(&config);
    let server = spawn(move || {
        let mut c = Conversation::new(listener.accept().unwrap());
        while let Some(m) = c.recv().unwrap() {
            c.send(&m).unwrap();
        }
        c.close().unwrap();
    });
    (addr, server)
}

#[test]
fn python_struct_pack_peer() {
    let (addr, server) = converse_echo(config());
    let script = PY_CONNECT.to_owned()
        + r#"
import struct
for msg in [b"hello", b"", "你好".encode(), b"x" * 100000]:
    s.sendall(struct.pack(">I", len(msg)) + msg)
    (n,) = struct.unpack(">I", recv_exact(4))
    print(len(recv_exact(n)) == len(msg), n)
s.close()
"#;
    if let Some(out) = python(&script, &[addr.port().to_string()]) {
        assert_eq!(out, "True 5\nTrue 0\nTrue 6\nTrue 100000\n");
    }
    server.join();
}

#[test]
fn python_lines_peer() {
    let (addr, server) = converse_echo(config().with_framing(Framing::Lines));
    let script = r#"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"hello\nworld\r\n\n")
f = s.makefile("rb")
for _ in range(3):
    print(repr(f.readline()))
s.close()
"#;
    if let Some(out) = python(script, &[addr.port().to_string()]) {
        assert_eq!(out, "b'hello\\n'\nb'world\\n'\nb'\\n'\n");
    }
    server.join();
}

#[test]
fn python_udp_peer() {
    let config = config();
    let listener = UdpListener::bind_with("127.0.0.1:0", &config).unwrap();
    let port = listener.local_addr().unwrap().socket_addr().unwrap().port();
    let server = spawn(move || {
        let mut c = Conversation::new(listener.accept().unwrap());
        for _ in 0..3 {
            let m = c.recv().unwrap().unwrap();
            c.send(&m).unwrap();
        }
    });
    let script = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(10)
for msg in [b"hello", b"", b"y" * 65507]:
    s.sendto(msg, ("127.0.0.1", int(sys.argv[1])))
    data, addr = s.recvfrom(70000)
    print(data == msg, len(data), addr[1] == int(sys.argv[1]))
"#;
    if let Some(out) = python(script, &[port.to_string()]) {
        assert_eq!(out, "True 5 True\nTrue 0 True\nTrue 65507 True\n");
    }
    server.join();
}

/// message-io's framing: the length as an unsigned LEB128 varint.
#[test]
fn python_varint_peer() {
    let (addr, server) = converse_echo(config().with_framing(Framing::Varint));
    let script = PY_CONNECT.to_owned()
        + r#"
def varint(n):
    out = b""
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])
def recv_varint():
    n, shift = 0, 0
    while True:
        b = recv_exact(1)[0]
        n |= (b & 0x7f) << shift
        shift += 7
        if not b & 0x80:
            return n
for msg in [b"hi", b"", b"z" * 300, b"w" * 70000]:
    s.sendall(varint(len(msg)) + msg)
    n = recv_varint()
    print(recv_exact(n) == msg, n)
s.close()
"#;
    if let Some(out) = python(&script, &[addr.port().to_string()]) {
        assert_eq!(out, "True 2\nTrue 0\nTrue 300\nTrue 70000\n");
    }
    server.join();
}

/// A Python peer over a Unix stream socket, with the default framing.
#[cfg(unix)]
#[test]
fn python_unix_stream_peer() {
    let path = SocketPath::new("interop");
    let listener = converse::UnixListener::bind_with(&path.0, &config()).unwrap();
    let server = spawn(move || {
        let mut c = Conversation::new(listener.accept().unwrap());
        while let Some(m) = c.recv().unwrap() {
            c.send(&m).unwrap();
        }
        c.close().unwrap();
    });
    let script = r#"
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
for msg in [b"over a path", b""]:
    s.sendall(struct.pack(">I", len(msg)) + msg)
    (n,) = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))
    print(s.recv(n, socket.MSG_WAITALL) if n else b"", n)
s.close()
"#;
    if let Some(out) = python(script, &[path.0.display().to_string()]) {
        assert_eq!(out, "b'over a path' 11\nb'' 0\n");
    }
    server.join();
}
