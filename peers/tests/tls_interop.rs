//! TLS with other implementations: Python's `ssl` module as client and as
//! server (with and without client certificates), `openssl s_client`, and
//! tokio-rustls with tokio-util's codec. Without `python3` or `openssl`
//! those tests are skipped with a message (or fail under
//! `CONVERSE_REQUIRE_ALL=1`).
#![cfg(feature = "tls")]

#[path = "../../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use common::certs::Authority;
use common::*;
use converse::tls::{TlsClient, TlsError};
use converse::{Config, Delivery, Error};
use futures_util::{SinkExt, StreamExt};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// The kit's certificates as files, for the other implementations.
struct Files {
    dir: PathBuf,
}

impl Files {
    fn write() -> Files {
        let kit = tls::kit();
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("converse-tls-interop-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, pem) in [
            ("ca.pem", kit.ca.cert_pem()),
            ("server.pem", kit.server.cert_pem.clone()),
            ("server.key", kit.server.key_pem.clone()),
            ("client.pem", kit.client.cert_pem.clone()),
            ("client.key", kit.client.key_pem.clone()),
        ] {
            std::fs::write(dir.join(name), pem).unwrap();
        }
        Files { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn reason(e: &Error) -> TlsError {
    match e {
        Error::Tls { reason, .. } => reason.clone(),
        other => panic!("not a TLS error: {other:?}"),
    }
}

/// A converse TLS server on a thread: for each of `n` conversations, echo
/// until the end; the outcomes (messages echoed, or the error).
fn converse_server(config: Config, n: usize) -> (u16, Joiner<Vec<Result<usize, Error>>>) {
    let listener = converse::listen_with("tls://127.0.0.1:0", &config).unwrap();
    let port = listener.local_addr().unwrap().socket_addr().unwrap().port();
    let server = spawn(move || {
        (0..n)
            .map(|_| {
                let mut c = listener.accept().unwrap();
                let mut echoed = 0;
                loop {
                    match c.recv() {
                        Ok(Some(m)) => {
                            c.send(&m).unwrap();
                            echoed += 1;
                        }
                        Ok(None) => {
                            c.close().unwrap();
                            return Ok(echoed);
                        }
                        Err(e) => return Err(e),
                    }
                }
            })
            .collect()
    });
    (port, server)
}

/// Runs a Python script; `None` (and a message) without python3.
fn python(script: &str, args: &[String]) -> Option<std::process::Output> {
    if !have_python() {
        return None;
    }
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    Some(out)
}

/// A Python ssl client: connects to `argv[1]`, verifying the server
/// against `argv[2]` for the name 127.0.0.1, presenting `argv[3]`/`argv[4]`
/// if given; sends framed messages, prints the echoes; ends with
/// close_notify (`unwrap`) or without (`close`) as `argv[5]` says.
const PY_CLIENT: &str = r#"
import socket, ssl, struct, sys
port, ca, cert, key, ending = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=ca)
if cert:
    ctx.load_cert_chain(cert, key)
raw = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
try:
    s = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    def recv_exact(n):
        b = b""
        while len(b) < n:
            chunk = s.recv(n - len(b))
            assert chunk, "connection closed"
            b += chunk
        return b
    for msg in [b"", b"hello from python", "你好".encode(), b"x" * 100000]:
        s.sendall(struct.pack(">I", len(msg)) + msg)
        (n,) = struct.unpack(">I", recv_exact(4))
        got = recv_exact(n)
        assert got == msg, (len(got), len(msg))
        print(len(got))
    if ending == "unwrap":
        s = s.unwrap()
        s.close()
    else:
        s.close()
    print("done")
except (ssl.SSLError, ConnectionError) as e:
    print("refused:", e)
"#;

#[test]
fn python_ssl_client_against_a_converse_server() {
    let files = Files::write();
    // Server verified by the client; the end with and without close_notify.
    let (port, server) = converse_server(tls::config(config()), 2);
    for ending in ["unwrap", "close"] {
        let args = [
            port.to_string(),
            files.path("ca.pem"),
            String::new(),
            String::new(),
            ending.into(),
        ];
        let Some(out) = python(PY_CLIENT, &args) else {
            return;
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout,
            "0\n17\n6\n100000\ndone\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let outcomes = server.join();
    assert_eq!(
        outcomes[0].as_ref().unwrap(),
        &4,
        "close_notify: the clean end"
    );
    // Python's close() sends no close_notify: told apart, after 4 whole
    // messages.
    assert!(
        matches!(outcomes[1], Err(Error::NoCloseNotify { .. })),
        "{:?}",
        outcomes[1]
    );

    // Mutual TLS: with the client certificate, and without.
    let server_config = config().with_tls_server(
        tls::server()
            .require_client_certs(tls::kit().ca.cert_pem())
            .unwrap(),
    );
    let (port, server) = converse_server(server_config, 2);
    let with = [
        port.to_string(),
        files.path("ca.pem"),
        files.path("client.pem"),
        files.path("client.key"),
        "unwrap".into(),
    ];
    let out = python(PY_CLIENT, &with).unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).ends_with("done\n"));
    let without = [
        port.to_string(),
        files.path("ca.pem"),
        String::new(),
        String::new(),
        "unwrap".into(),
    ];
    let out = python(PY_CLIENT, &without).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("refused:"), "{stdout}");
    let outcomes = server.join();
    assert_eq!(outcomes[0].as_ref().unwrap(), &4);
    assert_eq!(
        reason(outcomes[1].as_ref().unwrap_err()),
        TlsError::NoClientCertificate
    );
}

/// A Python ssl server: presents `argv[1]`/`argv[2]`, requires client
/// certificates signed by `argv[3]` if given; prints its port; serves one
/// connection, echoing framed messages until the client's close_notify,
/// then answers with its own (`unwrap`).
const PY_SERVER: &str = r#"
import socket, ssl, struct, sys
cert, key, ca = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
if ca:
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(ca)
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(1)
ls.settimeout(10)
print(ls.getsockname()[1], flush=True)
raw, _ = ls.accept()
raw.settimeout(10)
try:
    s = ctx.wrap_socket(raw, server_side=True)
except (ssl.SSLError, ConnectionError) as e:
    print("refused:", e, flush=True)
    sys.exit(0)
if ca:
    print("client:", dict(x[0] for x in s.getpeercert()["subject"])["commonName"], flush=True)
def recv_exact(n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            return None
        b += chunk
    return b
count = 0
while True:
    head = recv_exact(4)
    if head is None:
        break
    (n,) = struct.unpack(">I", head)
    msg = recv_exact(n)
    s.sendall(struct.pack(">I", n) + msg)
    count += 1
print("echoed", count, flush=True)
s.unwrap().close()
"#;

fn python_server(
    files: &Files,
    mutual: bool,
) -> Option<(Child, u16, std::sync::mpsc::Receiver<String>)> {
    if !have_python() {
        return None;
    }
    let ca = if mutual {
        files.path("ca.pem")
    } else {
        String::new()
    };
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(PY_SERVER)
        .args([files.path("server.pem"), files.path("server.key"), ca])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let port = rx.recv_timeout(T).expect("the port").parse().unwrap();
    Some((child, port, rx))
}

#[test]
fn a_converse_client_against_python_ssl_servers() {
    let files = Files::write();
    let Some((mut child, port, lines)) = python_server(&files, false) else {
        return;
    };
    let url = format!("tls://127.0.0.1:{port}");
    let mut c = converse::connect_with(&url, &config().with_tls_client(tls::client())).unwrap();
    for size in [0usize, 5, 70_000] {
        let msg = vec![b'p'; size];
        c.send(&msg).unwrap();
        assert_eq!(c.recv().unwrap().unwrap(), msg);
    }
    // Our close_notify, then Python's: confirmed.
    assert_eq!(c.close().unwrap(), Delivery::Confirmed);
    assert_eq!(lines.recv_timeout(T).unwrap(), "echoed 3");
    child.wait().unwrap();

    // Mutual TLS: Python sees the client's name.
    let (mut child, port, lines) = python_server(&files, true).unwrap();
    let url = format!("tls://127.0.0.1:{port}");
    let mut c =
        converse::connect_with(&url, &config().with_tls_client(tls::client_with_cert())).unwrap();
    c.send("hi").unwrap();
    assert_eq!(c.recv_text().unwrap().as_deref(), Some("hi"));
    assert_eq!(lines.recv_timeout(T).unwrap(), "client: alice");
    c.close().unwrap();
    child.wait().unwrap();

    // Without a client certificate: Python refuses; converse says why.
    let (mut child, port, lines) = python_server(&files, true).unwrap();
    let url = format!("tls://127.0.0.1:{port}");
    let outcome = converse::connect_with(&url, &config().with_tls_client(tls::client()))
        .and_then(|mut c| c.recv().map(|_| ()));
    let err = outcome.unwrap_err();
    assert!(matches!(reason(&err), TlsError::Refused(_)), "{err}");
    assert!(lines.recv_timeout(T).unwrap().starts_with("refused:"));
    child.wait().unwrap();

    // A client trusting another CA: unknown issuer.
    let (mut child, port, _lines) = python_server(&files, false).unwrap();
    let stranger = Authority::new("stranger");
    let client = TlsClient::trusting_ca_pem(stranger.cert_pem()).unwrap();
    let err = converse::connect_with(
        &format!("tls://127.0.0.1:{port}"),
        &config().with_tls_client(client),
    )
    .unwrap_err();
    assert_eq!(reason(&err), TlsError::UnknownIssuer);
    child.wait().unwrap();
}

/// `true` if `openssl` runs here (otherwise skips).
fn have_openssl() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip("openssl is not installed");
    }
    ok
}

#[test]
fn openssl_s_client_against_a_converse_server() {
    if !have_openssl() {
        return;
    }
    let files = Files::write();
    for mutual in [false, true] {
        let mut server_tls = tls::server();
        if mutual {
            server_tls = server_tls
                .require_client_certs(tls::kit().ca.cert_pem())
                .unwrap();
        }
        let listener =
            converse::listen_with("tls://127.0.0.1:0", &config().with_tls_server(server_tls))
                .unwrap();
        let port = listener.local_addr().unwrap().socket_addr().unwrap().port();
        let server = spawn(move || {
            let mut c = listener.accept().unwrap();
            let got = c.recv().unwrap().unwrap();
            c.send(format!(
                "converse heard {:?}",
                String::from_utf8_lossy(&got)
            ))
            .unwrap();
            let who = c.peer_identity().map(|p| p.dns_names());
            let _ = c.close();
            who
        });
        let mut args = vec![
            "s_client".to_owned(),
            "-connect".to_owned(),
            format!("127.0.0.1:{port}"),
            "-CAfile".to_owned(),
            files.path("ca.pem"),
            "-verify_return_error".to_owned(),
            "-verify_ip".to_owned(),
            "127.0.0.1".to_owned(),
            "-quiet".to_owned(),
        ];
        if mutual {
            args.extend(
                [
                    "-cert",
                    &files.path("client.pem"),
                    "-key",
                    &files.path("client.key"),
                ]
                .map(String::from),
            );
        }
        let mut child = Command::new("openssl")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&frame(b"from openssl")).unwrap();
        stdin.flush().unwrap();
        let who = server.join();
        let mut out = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        drop(stdin);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(out, frame(b"converse heard \"from openssl\""));
        assert_eq!(who, mutual.then(|| vec!["alice".to_owned()]));
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap()
}

#[test]
fn tokio_rustls_against_converse_both_ways() {
    // tokio-rustls client, converse server.
    let (port, server) = converse_server(tls::config(config()), 1);
    runtime().block_on(async {
        let connector = tokio_rustls::TlsConnector::from(Arc::clone(tls::client().rustls_config()));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let stream = connector.connect(name, tcp).await.unwrap();
        let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
        for i in 0..100usize {
            let msg = vec![i as u8; i * 331];
            framed.send(bytes::Bytes::from(msg.clone())).await.unwrap();
            assert_eq!(framed.next().await.unwrap().unwrap(), msg);
        }
        let mut stream = framed.into_inner();
        tokio::io::AsyncWriteExt::shutdown(&mut stream)
            .await
            .unwrap();
    });
    assert_eq!(server.join()[0].as_ref().unwrap(), &100);

    // converse client, tokio-rustls server.
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = std_listener.local_addr().unwrap().port();
    let server = spawn(move || {
        runtime().block_on(async {
            std_listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
            let acceptor =
                tokio_rustls::TlsAcceptor::from(Arc::clone(tls::server().rustls_config()));
            let (tcp, _) = listener.accept().await.unwrap();
            let stream = acceptor.accept(tcp).await.unwrap();
            let mut framed = Framed::new(stream, LengthDelimitedCodec::new());
            let mut n = 0;
            while let Some(frame) = framed.next().await {
                framed.send(frame.unwrap().freeze()).await.unwrap();
                n += 1;
            }
            let mut stream = framed.into_inner();
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
            n
        })
    });
    let mut c = converse::connect_with(
        &format!("tls://127.0.0.1:{port}"),
        &config().with_tls_client(tls::client()),
    )
    .unwrap();
    for i in 0..100usize {
        let msg = vec![i as u8; i * 331];
        c.send(&msg).unwrap();
        assert_eq!(c.recv().unwrap().unwrap(), msg);
    }
    assert_eq!(c.close().unwrap(), Delivery::Confirmed);
    assert_eq!(server.join(), 100);
}
