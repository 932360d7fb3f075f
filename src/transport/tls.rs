//! TLS over TCP: rustls's sans-IO connection between the socket and the
//! framing engines, driven by the calling thread.
//!
//! The two halves share one rustls connection (a `Mutex`), held only while
//! bytes go in or out of it, never while a thread waits on the socket: a
//! sending thread blocked on a full socket never stops the receiving one.
//! Ciphertext leaves in the order rustls made it: whoever holds the write
//! turn (a second `Mutex`, uncontended unless the conversation is split)
//! takes it out of rustls and writes it.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::ServerName;
use socket2::Socket;

use super::listener::StreamListener;
use super::sockopt;
use super::timer::{earliest, SockTimer, MIN_WAIT};
use super::{lock, Delivery, Receiver, Sender, Stopper, Transport};
use crate::addr::{self, Addr};
use crate::config::{check_timeout, Config};
use crate::engine::inbound::{Inbound, InboundError, State};
use crate::engine::outbound::Outbound;
use crate::engine::records::RecordCursor;
use crate::error::{Error, Result};
use crate::tls::{PeerIdentity, TlsError, TlsServer};

/// The most ciphertext one `read` takes: one whole record and then some.
const READ_CHUNK: usize = 17 * 1024;

/// Messages up to this size are copied into the plaintext queue, so that a
/// message and its frame header leave in one record (a record holds 16 KiB;
/// a separate record for the header would cost a second encryption);
/// larger ones go to rustls straight from the caller's slice.
const SMALL: usize = 16 * 1024 - 16;

const FAILED: u8 = 1;
const STOPPED: u8 = 2;

/// The rustls connection and what is known of the peer's end.
struct Session {
    conn: rustls::Connection,
    /// The peer's `close_notify` has been read: the authenticated end.
    peer_closed: bool,
    /// Where the ciphertext stands between records.
    records: RecordCursor,
}

/// The write turn: ciphertext taken out of rustls and not yet written.
struct Writing {
    cipher: Vec<u8>,
    at: usize,
}

impl Writing {
    fn pending(&self) -> &[u8] {
        &self.cipher[self.at..]
    }

    fn advance(&mut self, n: usize) {
        self.at += n;
        if self.at == self.cipher.len() {
            self.cipher.clear();
            self.at = 0;
        }
    }
}

/// The socket, the session and what both halves must know.
pub(crate) struct TlsLink {
    socket: Socket,
    local: Addr,
    peer: Addr,
    session: Mutex<Session>,
    writing: Mutex<Writing>,
    established: AtomicBool,
    /// The handshake must be over by then.
    handshake_until: Instant,
    identity: OnceLock<Option<PeerIdentity>>,
    down: AtomicU8,
}

impl std::fmt::Debug for TlsLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsLink")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("established", &self.established)
            .finish()
    }
}

/// Writes to the socket without waiting (`MSG_DONTWAIT`), for rustls's
/// `write_tls`.
struct DontWait<'a>(&'a Socket);

impl Write for DontWait<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .send_with_flags(buf, sockopt::SEND_FLAGS | sockopt::DONTWAIT)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.0
            .send_vectored_with_flags(bufs, sockopt::SEND_FLAGS | sockopt::DONTWAIT)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsLink {
    #[inline]
    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::Relaxed) != 0 {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn is_stopped(&self) -> bool {
        self.down.load(Ordering::Relaxed) & STOPPED != 0
    }

    fn is_down(&self) -> bool {
        self.check().is_err()
    }

    fn fail(&self, err: Error) -> Error {
        self.down.fetch_or(FAILED, Ordering::Relaxed);
        let _ = self.socket.shutdown(Shutdown::Both);
        if self.is_stopped() {
            Error::Closed
        } else {
            err
        }
    }

    fn stop(&self) {
        self.down.fetch_or(STOPPED, Ordering::Relaxed);
        sockopt::wake_up(&self.socket);
    }

    fn io_error(&self, e: io::Error) -> Error {
        self.fail(Error::from_io(e, &self.peer))
    }

    fn tls_error(&self, reason: TlsError) -> Error {
        self.fail(Error::Tls {
            addr: self.peer.clone(),
            reason,
        })
    }

    /// A rustls error: the alert rustls queued for the peer goes out if the
    /// socket takes it at once, then the conversation fails.
    fn rustls_error(&self, session: &mut Session, e: &rustls::Error) -> Error {
        let mut out = DontWait(&self.socket);
        while session.conn.wants_write() {
            if session.conn.write_tls(&mut out).is_err() {
                break;
            }
        }
        let reason = match TlsError::from_rustls(e) {
            // rustls names the server it expected only in its own type.
            TlsError::NameMismatch {
                expected,
                presented,
            } if expected.is_empty() => TlsError::NameMismatch {
                expected: self.peer.to_string(),
                presented,
            },
            other => other,
        };
        self.tls_error(reason)
    }

    #[inline]
    fn is_established(&self) -> bool {
        self.established.load(Ordering::Acquire)
    }

    /// Completes the handshake if it is not over: by the handshake timeout
    /// (then it fails with [`TlsError::HandshakeTimeout`]) or by `until`, a
    /// caller's own timeout (then [`Error::Timeout`], and the next call
    /// goes on where this one stopped).
    #[inline]
    fn ensure_handshake(&self, until: Option<Instant>) -> Result<()> {
        if self.is_established() {
            return Ok(());
        }
        self.handshake(until)
    }

    #[cold]
    fn handshake(&self, until: Option<Instant>) -> Result<()> {
        let mut w = lock(&self.writing);
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            self.check()?;
            if self.is_established() {
                return Ok(());
            }
            let handshaking = {
                let mut s = lock(&self.session);
                while s.conn.wants_write() {
                    let _ = s.conn.write_tls(&mut w.cipher);
                }
                s.conn.is_handshaking()
            };
            let left = self.handshake_left(until)?;
            while !w.pending().is_empty() {
                let left = self.handshake_left(until)?;
                sockopt::set_write_timeout(&self.socket, Some(left))
                    .map_err(|e| self.io_error(e))?;
                match sockopt::send(&self.socket, w.pending()) {
                    Ok(0) => return Err(self.tls_error(TlsError::ClosedDuringHandshake)),
                    Ok(n) => w.advance(n),
                    Err(e) => match e.kind() {
                        io::ErrorKind::Interrupted => {}
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {}
                        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => {
                            return Err(self.tls_error(TlsError::ClosedDuringHandshake))
                        }
                        _ => return Err(self.io_error(e)),
                    },
                }
            }
            if !handshaking {
                self.finish_handshake();
                return Ok(());
            }
            sockopt::set_read_timeout(&self.socket, Some(left)).map_err(|e| self.io_error(e))?;
            let n = match (&self.socket).read(&mut buf) {
                Ok(0) if self.is_stopped() => return Err(Error::Closed),
                Ok(0) => return Err(self.tls_error(TlsError::ClosedDuringHandshake)),
                Ok(n) => n,
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted
                    | io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut => continue,
                    io::ErrorKind::ConnectionReset => {
                        return Err(self.tls_error(TlsError::ClosedDuringHandshake))
                    }
                    _ => return Err(self.io_error(e)),
                },
            };
            let mut s = lock(&self.session);
            s.records.feed(&buf[..n]);
            let mut data = &buf[..n];
            while !data.is_empty() {
                match s.conn.read_tls(&mut data) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(self.tls_error(TlsError::Protocol(e.to_string()))),
                }
                if let Err(e) = s.conn.process_new_packets() {
                    return Err(self.rustls_error(&mut s, &e));
                }
            }
        }
    }

    /// What is left of the handshake's time and the caller's, whichever is
    /// shorter. Errors once either is over.
    fn handshake_left(&self, until: Option<Instant>) -> Result<Duration> {
        let now = Instant::now();
        let hs = self.handshake_until.saturating_duration_since(now);
        let user = until.map(|u| u.saturating_duration_since(now));
        match user {
            Some(u) if u < hs => {
                if u < MIN_WAIT {
                    return Err(Error::Timeout);
                }
                Ok(u)
            }
            _ => {
                if hs < MIN_WAIT {
                    return Err(self.tls_error(TlsError::HandshakeTimeout));
                }
                Ok(hs)
            }
        }
    }

    /// The handshake is over: the peer's identity is known, and the socket
    /// goes back to blocking without timeouts (the halves set their own
    /// lazily, and have set none yet).
    fn finish_handshake(&self) {
        let s = lock(&self.session);
        let certs = s
            .conn
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        let _ = self.identity.set(PeerIdentity::new(certs));
        drop(s);
        let _ = sockopt::set_read_timeout(&self.socket, None);
        let _ = sockopt::set_write_timeout(&self.socket, None);
        self.established.store(true, Ordering::Release);
    }
}

/// Sets the socket up for TLS and makes the two halves, with the codecs
/// of each direction given.
pub(crate) fn halves_with(
    socket: Socket,
    peer: Addr,
    conn: rustls::Connection,
    config: &Config,
    send: crate::codec::Codec,
    recv: crate::codec::Codec,
) -> Result<(TlsSender, TlsReceiver)> {
    config.validate()?;
    sockopt::stream(&socket, config).map_err(|e| Error::from_io(e, &peer))?;
    sockopt::tcp_stream(&socket, config).map_err(|e| Error::from_io(e, &peer))?;
    // The halves fit the socket's timeouts to each wait themselves.
    sockopt::set_read_timeout(&socket, None).map_err(|e| Error::from_io(e, &peer))?;
    sockopt::set_write_timeout(&socket, None).map_err(|e| Error::from_io(e, &peer))?;
    let local = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(Addr::Tls)
        .unwrap_or(Addr::Unknown);
    let link = Arc::new(TlsLink {
        socket,
        local,
        peer,
        session: Mutex::new(Session {
            conn,
            peer_closed: false,
            records: RecordCursor::default(),
        }),
        writing: Mutex::new(Writing {
            cipher: Vec::new(),
            at: 0,
        }),
        established: AtomicBool::new(false),
        handshake_until: Instant::now() + config.handshake_timeout,
        identity: OnceLock::new(),
        down: AtomicU8::new(0),
    });
    Ok((
        TlsSender {
            link: Arc::clone(&link),
            out: Outbound::new(send, config.send_buffer),
            timeout: config.write_timeout,
            timer: SockTimer::new(None),
            linger: config.linger,
            finished: false,
        },
        TlsReceiver {
            link,
            inbound: Inbound::new(recv, config.message_deadline),
            timeout: config.read_timeout,
            timer: SockTimer::new(None),
            buf: Vec::new(),
        },
    ))
}

// ---------------------------------------------------------------------------
// The transport and its listener

/// A TLS conversation's transport: messages framed as over TCP
/// ([`Config::framing`]), inside a TLS session (rustls, TLS 1.2 and 1.3).
///
/// * A client verifies the server's certificate for the name it connected
///   to (a DNS name or an IP address), against Mozilla's roots or the CA of
///   [`Config::tls_client`]; a server presents the certificate of
///   [`Config::tls_server`] and, for mutual TLS, verifies the client's.
/// * The handshake is bounded by [`Config::handshake_timeout`] (default
///   10 s), counted from the connection: a client's `connect` completes it;
///   an accepted conversation completes it in its first send or receive (or
///   in [`Conversation::handshake`](crate::Conversation::handshake)), so a
///   slow peer never holds up `accept`. A failed handshake is
///   [`Error::Tls`] with the reason in one line.
/// * Every promise of [`Tcp`](crate::Tcp) holds: a read timeout in the
///   middle of a record or a message loses nothing; the per-message
///   deadline; a send that times out took nothing of its message (a message
///   is taken once rustls has encrypted any of it); batching with `feed`
///   puts many messages in one record.
/// * [`close`](crate::Conversation::close) sends `close_notify` after
///   everything queued, then reads until the peer's `close_notify` or the
///   linger time: [`Delivery::Confirmed`] only when the peer's
///   `close_notify` came.
/// * The end of the peer: its `close_notify` between two messages is the
///   clean end (`Ok(None)`). A connection that ends without one is not
///   authenticated: between messages it is [`Error::NoCloseNotify`] (every
///   message received was whole, but an attacker could have cut what came
///   after — only ever at a message boundary, since a cut inside one is
///   [`Error::UnexpectedEof`]).
pub struct Tls {
    tx: TlsSender,
    rx: TlsReceiver,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("link", &self.tx.link).finish()
    }
}

impl Transport for Tls {
    type Sender = TlsSender;
    type Receiver = TlsReceiver;

    fn into_halves(self) -> (TlsSender, TlsReceiver) {
        (self.tx, self.rx)
    }
}

/// The server name to verify for `host` (a DNS name, or an IP address,
/// with or without brackets).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned())
        .map_err(|_| addr::AddrError::new(host, "not a DNS name or an IP address").into())
}

/// Splits `HOST:PORT` into the host (brackets kept off) and the rest.
pub(crate) fn host_of(hostport: &str) -> Result<&str> {
    let bad = || Error::from(addr::AddrError::new(hostport, "expected HOST:PORT"));
    if let Some(rest) = hostport.strip_prefix('[') {
        let end = rest.find(']').ok_or_else(bad)?;
        return Ok(&rest[..end]);
    }
    let (host, _) = hostport.rsplit_once(':').ok_or_else(bad)?;
    Ok(host)
}

impl Tls {
    /// Connects to `hostport` (`HOST:PORT`) with `config`, and verifies the
    /// server's certificate for `HOST` (a DNS name or an IP address) with
    /// [`Config::tls_client`] (by default Mozilla's roots). Returns once
    /// the handshake is over.
    pub fn connect(hostport: &str, config: &Config) -> Result<Tls> {
        let host = host_of(hostport)?;
        let addrs = addr::resolve(hostport, hostport)?;
        Tls::connect_to(host, &addrs[..], config)
    }

    /// Connects to `addr`, verifying the server's certificate for
    /// `server_name` (a DNS name or an IP address).
    pub fn connect_to(server_name: &str, addr: impl ToSocketAddrs, config: &Config) -> Result<Tls> {
        config.validate()?;
        let name = self::server_name(server_name)?;
        let addrs = addr::socket_addrs(addr, "TLS address")?;
        let mut last = None;
        for addr in addrs {
            match sockopt::tcp_connect(addr, config) {
                Ok(socket) => return Tls::client(socket, addr, name, config),
                Err(e) => last = Some(Error::from_io(e, &Addr::Tls(addr))),
            }
        }
        Err(last.unwrap_or_else(|| addr::no_address("TLS address").into()))
    }

    /// Starts TLS as a client on a connected stream, verifying the server
    /// for `server_name`; returns once the handshake is over.
    pub fn client_from_stream(
        stream: TcpStream,
        server_name: &str,
        config: &Config,
    ) -> Result<Tls> {
        let name = self::server_name(server_name)?;
        let peer = stream
            .peer_addr()
            .map_err(|e| Error::from_io(e, &Addr::Unknown))?;
        Tls::client(sockopt::from_tcp(stream), peer, name, config)
    }

    /// Starts TLS as a server on a connected stream, with
    /// [`Config::tls_server`]. The handshake happens in the first send or
    /// receive (or [`handshake`](Self::handshake)).
    pub fn server_from_stream(stream: TcpStream, config: &Config) -> Result<Tls> {
        let server =
            config
                .tls_server
                .as_ref()
                .ok_or(Error::InvalidConfig(crate::config::ConfigError {
                    setting: "tls_server",
                    reason: "a TLS server needs a certificate and key (Config::tls_server)",
                }))?;
        let peer = stream
            .peer_addr()
            .map(Addr::Tls)
            .map_err(|e| Error::from_io(e, &Addr::Unknown))?;
        Tls::server(sockopt::from_tcp(stream), peer, server, config)
    }

    fn client(
        socket: Socket,
        addr: SocketAddr,
        name: ServerName<'static>,
        config: &Config,
    ) -> Result<Tls> {
        let codec = config.framing.codec(config.max_message_len);
        Tls::client_with(socket, addr, name, config, (codec.clone(), codec))
    }

    /// A client over `socket` with the codecs of each direction given; the
    /// handshake done.
    pub(crate) fn client_with(
        socket: Socket,
        addr: SocketAddr,
        name: ServerName<'static>,
        config: &Config,
        (send, recv): (crate::codec::Codec, crate::codec::Codec),
    ) -> Result<Tls> {
        let peer = Addr::Tls(addr);
        let client = config.tls_client.clone().unwrap_or_default();
        let conn = rustls::ClientConnection::new(Arc::clone(client.rustls_config()), name)
            .map_err(|e| Error::Tls {
                addr: peer.clone(),
                reason: TlsError::from_rustls(&e),
            })?;
        let (tx, rx) = halves_with(socket, peer, conn.into(), config, send, recv)?;
        let tls = Tls { tx, rx };
        tls.handshake()?;
        Ok(tls)
    }

    pub(crate) fn server(
        socket: Socket,
        peer: Addr,
        server: &TlsServer,
        config: &Config,
    ) -> Result<Tls> {
        let codec = config.framing.codec(config.max_message_len);
        Tls::server_with(socket, peer, server, config, (codec.clone(), codec))
    }

    /// A server over `socket` with the codecs of each direction given (the
    /// handshake happens in the first use).
    pub(crate) fn server_with(
        socket: Socket,
        peer: Addr,
        server: &TlsServer,
        config: &Config,
        (send, recv): (crate::codec::Codec, crate::codec::Codec),
    ) -> Result<Tls> {
        let conn =
            rustls::ServerConnection::new(Arc::clone(server.rustls_config())).map_err(|e| {
                Error::Tls {
                    addr: peer.clone(),
                    reason: TlsError::from_rustls(&e),
                }
            })?;
        let (tx, rx) = halves_with(socket, peer, conn.into(), config, send, recv)?;
        Ok(Tls { tx, rx })
    }

    /// Completes the handshake now, if it is not over (bounded by the
    /// handshake timeout).
    pub fn handshake(&self) -> Result<()> {
        self.tx.link.ensure_handshake(None)
    }

    /// The verified identity of the peer (its certificate chain), once the
    /// handshake is over: the server's for a client; the client's for a
    /// server that asks for client certificates. `None` before the
    /// handshake and for a client that presented none.
    pub fn peer_identity(&self) -> Option<PeerIdentity> {
        self.tx.link.identity.get().cloned().flatten()
    }

    /// The local address, under another scheme (a protocol above TLS).
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) fn local_addr_as(&self, scheme: fn(SocketAddr) -> Addr) -> Addr {
        self.tx
            .link
            .local
            .socket_addr()
            .map(scheme)
            .unwrap_or(Addr::Unknown)
    }

    /// The socket, for options this crate does not cover. Reading or writing
    /// it directly breaks the session.
    pub fn socket(&self) -> &Socket {
        &self.tx.link.socket
    }

    pub(crate) fn into_parts(self) -> Option<TlsParts> {
        into_parts(self.tx, self.rx)
    }
}

/// A TLS server socket: every accepted connection is a [`Tls`] transport
/// whose handshake runs in its first send or receive, bounded by
/// [`Config::handshake_timeout`] (so `accept` never waits on a slow peer).
///
/// ```no_run
/// use converse::tls::TlsServer;
/// use converse::{Config, Conversation, TlsListener};
///
/// let server = TlsServer::from_pem_files("server.pem", "server.key")?;
/// let listener = TlsListener::bind("127.0.0.1:8443", &Config::new().tls_server(server))?;
/// let mut conversation = Conversation::new(listener.accept()?);
/// while let Some(message) = conversation.recv()? {
///     conversation.send(&message)?;
/// }
/// # Ok::<(), converse::Error>(())
/// ```
#[derive(Debug)]
pub struct TlsListener {
    inner: StreamListener,
    server: TlsServer,
    config: Config,
}

impl TlsListener {
    /// Binds `addr` with `config`, which must carry a certificate
    /// ([`Config::tls_server`]). Port 0 picks a free port.
    pub fn bind(addr: impl ToSocketAddrs, config: &Config) -> Result<TlsListener> {
        let addrs = addr::socket_addrs(addr, "TLS address")?;
        bind_any(&addrs, config)
    }

    /// Accepts the next connection. The handshake is not done yet: it
    /// happens in the conversation's first send or receive.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::accept`](crate::TcpListener::accept).
    pub fn accept(&self) -> Result<Tls> {
        loop {
            let (socket, from) = self.inner.accept()?;
            let peer = from.as_socket().map(Addr::Tls).unwrap_or(Addr::Unknown);
            match Tls::server(socket, peer, &self.server, &self.config) {
                Err(Error::ConnectionReset { .. }) => {}
                other => return other,
            }
        }
    }

    /// The bound address, as `tls://IP:PORT`.
    pub fn local_addr(&self) -> Result<Addr> {
        Ok(self.inner.local.clone())
    }

    /// Bounds every later `accept` (`None`: wait as long as it takes).
    pub fn set_accept_timeout(&self, timeout: Option<Duration>) -> Result<()> {
        self.inner.set_accept_timeout(timeout)
    }

    /// A handle that stops a blocked `accept` from another thread.
    pub fn stopper(&self) -> Stopper {
        self.inner.stopper()
    }

    /// The configuration accepted conversations get.
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn into_parts(self) -> Option<(Socket, Addr, Config, TlsServer)> {
        let (socket, local) = self.inner.into_socket()?;
        Some((socket, local, self.config, self.server))
    }
}

pub(crate) fn bind_any(addrs: &[SocketAddr], config: &Config) -> Result<TlsListener> {
    config.validate()?;
    let server =
        config
            .tls_server
            .clone()
            .ok_or(Error::InvalidConfig(crate::config::ConfigError {
                setting: "tls_server",
                reason: "a TLS listener needs a certificate and key (Config::tls_server)",
            }))?;
    let mut last = None;
    for &addr in addrs {
        match sockopt::tcp_listener(addr, config) {
            Ok(socket) => {
                let local = socket
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .map(Addr::Tls)
                    .unwrap_or(Addr::Tls(addr));
                return Ok(TlsListener {
                    inner: StreamListener::new(socket, local, config.accept_timeout),
                    server,
                    config: config.clone(),
                });
            }
            Err(e) => last = Some(Error::from_io(e, &Addr::Tls(addr))),
        }
    }
    Err(last.unwrap_or_else(|| addr::no_address("TLS address").into()))
}

/// A TLS conversation taken apart for the switchboard.
pub(crate) struct TlsParts {
    pub(crate) socket: Socket,
    pub(crate) local: Addr,
    pub(crate) peer: Addr,
    pub(crate) conn: rustls::Connection,
    pub(crate) established: bool,
    pub(crate) peer_closed: bool,
    pub(crate) identity: Option<PeerIdentity>,
    pub(crate) handshake_until: Instant,
    pub(crate) inbound: Inbound,
    pub(crate) outbound: Outbound,
    pub(crate) linger: Duration,
}

pub(crate) fn into_parts(mut tx: TlsSender, mut rx: TlsReceiver) -> Option<TlsParts> {
    if !Arc::ptr_eq(&tx.link, &rx.link)
        || tx.link.is_down()
        || !lock(&tx.link.writing).pending().is_empty()
    {
        // Shared, failed, or with a record half written: not movable.
        return None;
    }
    let limit = tx.out.limit();
    let outbound = std::mem::replace(
        &mut tx.out,
        Outbound::new(crate::codec::Framing::Raw.codec(1), limit),
    );
    let inbound = std::mem::replace(
        &mut rx.inbound,
        Inbound::new(crate::codec::Framing::Raw.codec(1), Duration::from_secs(1)),
    );
    tx.finished = true;
    let linger = tx.linger;
    let link = Arc::clone(&tx.link);
    drop(tx);
    drop(rx);
    let link = Arc::try_unwrap(link).ok()?;
    let session = link.session.into_inner().unwrap_or_else(|e| e.into_inner());
    Some(TlsParts {
        socket: link.socket,
        local: link.local,
        peer: link.peer,
        conn: session.conn,
        established: link.established.into_inner(),
        peer_closed: session.peer_closed,
        identity: link.identity.into_inner().flatten(),
        handshake_until: link.handshake_until,
        inbound,
        outbound,
        linger,
    })
}

fn stopper(link: &Arc<TlsLink>) -> Stopper {
    let link = Arc::clone(link);
    Stopper::from_fn(move || link.stop())
}

// ---------------------------------------------------------------------------
// Sending

/// The sending half of a TLS conversation: framed plaintext queued, then
/// encrypted by rustls and written, as few records and system calls as it
/// takes.
pub struct TlsSender {
    link: Arc<TlsLink>,
    /// Framed plaintext not yet given to rustls.
    out: Outbound,
    timeout: Option<Duration>,
    timer: SockTimer,
    linger: Duration,
    finished: bool,
}

impl std::fmt::Debug for TlsSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSender")
            .field("peer", &self.link.peer)
            .field("queued", &self.out.len())
            .finish()
    }
}

/// Writes the write turn's ciphertext, by `until`. `Err(Timeout)` leaves
/// the rest for next time.
fn write_cipher(
    link: &TlsLink,
    timer: &mut SockTimer,
    w: &mut Writing,
    until: Option<Instant>,
) -> Result<()> {
    while !w.pending().is_empty() {
        let left = match until {
            None => None,
            Some(until) => match until.checked_duration_since(Instant::now()) {
                Some(left) if left >= MIN_WAIT => Some(left),
                _ => return Err(Error::Timeout),
            },
        };
        timer
            .fit(left, true, |t| sockopt::set_write_timeout(&link.socket, t))
            .map_err(|e| Error::from_io(e, &link.peer))?;
        match sockopt::send(&link.socket, w.pending()) {
            Ok(0) => {
                let e = io::Error::new(io::ErrorKind::WriteZero, "the socket took no bytes");
                return Err(link.io_error(e));
            }
            Ok(n) => w.advance(n),
            Err(e) => match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => return Err(Error::Timeout),
                _ => return Err(link.io_error(e)),
            },
        }
    }
    Ok(())
}

/// Takes what rustls has to send: straight to the socket while it takes it
/// without waiting, the rest into the write turn's buffer.
fn take_ciphertext(link: &TlsLink, s: &mut Session, w: &mut Writing) -> Result<()> {
    if w.pending().is_empty() {
        let mut out = DontWait(&link.socket);
        while s.conn.wants_write() {
            match s.conn.write_tls(&mut out) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(link.io_error(e)),
            }
        }
    }
    while s.conn.wants_write() {
        let _ = s.conn.write_tls(&mut w.cipher);
    }
    Ok(())
}

impl TlsSender {
    #[inline]
    fn check(&self) -> Result<()> {
        self.link.check()?;
        if self.finished {
            return Err(Error::Closed);
        }
        Ok(())
    }

    #[inline]
    fn until(&self) -> Option<Instant> {
        self.timeout.map(|t| Instant::now() + t)
    }

    fn frame_error(&self, e: crate::codec::FrameError) -> Error {
        Error::from_frame(e, &self.link.peer)
    }

    /// Encrypts everything queued, then `direct` (a message too large to
    /// copy, from its `written`th byte), and writes it all, by `until`.
    ///
    /// Older ciphertext goes first; if it cannot be written in time nothing
    /// new is encrypted, the message pushed at `mark` is taken back and the
    /// result is `Timeout`. Once any byte of a message is encrypted it is
    /// taken: a timeout after that keeps the rest queued (plaintext or
    /// ciphertext) for the next call and returns `Ok`.
    fn transmit(
        &mut self,
        until: Option<Instant>,
        mark: Option<crate::engine::outbound::Mark>,
        mut direct: Option<(&crate::engine::outbound::Frame, &[u8])>,
    ) -> Result<()> {
        let link = &*self.link;
        let mut w = lock(&link.writing);
        match write_cipher(link, &mut self.timer, &mut w, until) {
            Ok(()) => {}
            Err(Error::Timeout) => {
                let taken = match mark {
                    Some(mark) => !self.out.untake(mark),
                    None => false,
                };
                return if taken { Ok(()) } else { Err(Error::Timeout) };
            }
            Err(e) => {
                self.out.discard();
                return Err(e);
            }
        }
        let mut written = 0;
        loop {
            let mut more = false;
            {
                let mut s = lock(&link.session);
                while !self.out.is_empty() {
                    let n = s
                        .conn
                        .writer()
                        .write(self.out.pending())
                        .map_err(|e| link.io_error(e))?;
                    if n == 0 {
                        break;
                    }
                    self.out.advance(n);
                }
                if let Some((frame, msg)) = direct {
                    if self.out.is_empty() {
                        let parts: [&[u8]; 3] = [&frame.prefix, msg, frame.suffix];
                        let mut skip = written;
                        for part in parts {
                            if skip >= part.len() {
                                skip -= part.len();
                                continue;
                            }
                            let n = s
                                .conn
                                .writer()
                                .write(&part[skip..])
                                .map_err(|e| link.io_error(e))?;
                            written += n;
                            if n < part.len() - skip {
                                break;
                            }
                            skip = 0;
                        }
                        if written == frame.len {
                            direct = None;
                        }
                    }
                }
                more |= !self.out.is_empty() || direct.is_some();
                take_ciphertext(link, &mut s, &mut w)?;
            }
            match write_cipher(link, &mut self.timer, &mut w, until) {
                Ok(()) => {}
                Err(Error::Timeout) => {
                    if let Some((frame, msg)) = direct {
                        self.out.push_rest(frame, msg, written);
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.out.discard();
                    return Err(e);
                }
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// Writes what is queued by `until`, or resets the connection and says
    /// how much was never sent.
    fn write_out_or_reset(&mut self, until: Instant) -> Result<()> {
        let outcome = self.transmit(Some(until), None, None);
        let left = self.out.len() + lock(&self.link.writing).pending().len();
        match outcome {
            Ok(()) if left == 0 => Ok(()),
            Ok(()) | Err(Error::Timeout) => {
                self.out.discard();
                self.reset();
                Err(Error::Unsent {
                    addr: self.link.peer.clone(),
                    bytes: left as u64,
                })
            }
            Err(e) => Err(e),
        }
    }

    fn reset(&mut self) {
        let _ = sockopt::linger_zero(&self.link.socket);
        self.link.down.fetch_or(FAILED, Ordering::Relaxed);
        self.finished = true;
    }

    /// Everything queued, then `close_notify`, then the end of our side.
    fn end(&mut self, until: Instant) -> Result<()> {
        if !self.link.is_established() {
            // Nothing was ever said: no session to close.
            self.finished = true;
            let _ = self.link.socket.shutdown(Shutdown::Write);
            return Ok(());
        }
        self.write_out_or_reset(until)?;
        {
            let link = &*self.link;
            let mut w = lock(&link.writing);
            {
                let mut s = lock(&link.session);
                s.conn.send_close_notify();
                take_ciphertext(link, &mut s, &mut w)?;
            }
            if let Err(e) = write_cipher(link, &mut self.timer, &mut w, Some(until)) {
                drop(w);
                return match e {
                    Error::Timeout => {
                        self.reset();
                        Err(Error::Unsent {
                            addr: self.link.peer.clone(),
                            bytes: 0,
                        })
                    }
                    e => Err(e),
                };
            }
        }
        self.finished = true;
        let _ = self.link.socket.shutdown(Shutdown::Write);
        Ok(())
    }

    /// The verified identity of the peer, once the handshake is over.
    pub fn peer_identity(&self) -> Option<PeerIdentity> {
        self.link.identity.get().cloned().flatten()
    }

    /// Feeds bytes a protocol above encodes itself, straight into the queue
    /// (`len`: how many `encode` appends, at most).
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) fn feed_encoded(
        &mut self,
        len: usize,
        encode: impl FnOnce(&mut bytes::BytesMut),
    ) -> Result<()> {
        self.check()?;
        if self.out.has_room_for(len) {
            self.out.push_encoded(encode);
            return Ok(());
        }
        let mut frame = bytes::BytesMut::with_capacity(len);
        encode(&mut frame);
        self.feed(&frame)
    }
}

impl Sender for TlsSender {
    fn send(&mut self, msg: &[u8]) -> Result<()> {
        self.check()?;
        let until = self.until();
        self.link.ensure_handshake(until)?;
        let frame = self.out.frame(msg).map_err(|e| self.frame_error(e))?;
        if msg.len() <= SMALL {
            let mark = self.out.push(msg).map_err(|e| self.frame_error(e))?;
            return self.transmit(until, Some(mark), None);
        }
        if !self.out.is_empty() || !lock(&self.link.writing).pending().is_empty() {
            // What is queued goes first; a timeout there: not taken.
            self.transmit(until, None, None)?;
            if !self.out.is_empty() || !lock(&self.link.writing).pending().is_empty() {
                return Err(Error::Timeout);
            }
        }
        self.transmit(until, None, Some((&frame, msg)))
    }

    #[inline]
    fn feed(&mut self, msg: &[u8]) -> Result<()> {
        self.check()?;
        if self.out.has_room_for(msg.len()) {
            return match self.out.push(msg) {
                Ok(_) => Ok(()),
                Err(e) => Err(self.frame_error(e)),
            };
        }
        let frame = self.out.frame(msg).map_err(|e| self.frame_error(e))?;
        let until = self.until();
        self.link.ensure_handshake(until)?;
        if self.out.is_full_for(frame.len) {
            self.transmit(until, None, None)?;
            if !self.out.is_empty() {
                return Err(Error::Timeout);
            }
        }
        if frame.len > self.out.limit() {
            return self.transmit(until, None, Some((&frame, msg)));
        }
        self.out.push(msg).map_err(|e| self.frame_error(e))?;
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.check()?;
        let until = self.until();
        self.link.ensure_handshake(until)?;
        self.transmit(until, None, None)?;
        if self.out.is_empty() && lock(&self.link.writing).pending().is_empty() {
            Ok(())
        } else {
            Err(Error::Timeout)
        }
    }

    fn queued(&self) -> usize {
        self.out.len()
    }

    fn finish(&mut self, until: Instant) -> Result<()> {
        if self.finished || self.link.is_down() {
            self.finished = true;
            return Ok(());
        }
        if self.link.is_established() || !self.out.is_empty() {
            match self.link.ensure_handshake(Some(until)) {
                Ok(()) => {}
                Err(Error::Timeout) => {
                    let bytes = self.out.discard() as u64;
                    self.reset();
                    return Err(Error::Unsent {
                        addr: self.link.peer.clone(),
                        bytes,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        self.end(until)
    }

    fn abort(&mut self) {
        self.out.discard();
        self.reset();
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.link.peer.clone())
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self.link.local.clone())
    }

    fn set_write_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = check_timeout("write_timeout", timeout)?;
        Ok(())
    }

    fn write_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn linger(&self) -> Duration {
        self.linger
    }

    fn set_linger(&mut self, linger: Duration) {
        self.linger = linger;
    }

    fn max_message_len(&self) -> usize {
        self.out.max_message_len()
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(stopper(&self.link))
    }

    #[cfg(unix)]
    fn socket(&self) -> Option<socket2::SockRef<'_>> {
        Some(socket2::SockRef::from(&self.link.socket))
    }

    fn handshake(&mut self) -> Result<()> {
        self.link.ensure_handshake(None)
    }

    fn peer_identity(&self) -> Option<PeerIdentity> {
        TlsSender::peer_identity(self)
    }
}

impl Drop for TlsSender {
    fn drop(&mut self) {
        if self.finished || self.link.is_down() {
            return;
        }
        let until = Instant::now() + self.linger;
        if self.link.is_established() {
            let _ = self.end(until);
        } else if self.out.is_empty() {
            let _ = self.link.socket.shutdown(Shutdown::Write);
        } else if self.link.ensure_handshake(Some(until)).is_ok() {
            let _ = self.end(until);
        }
    }
}

// ---------------------------------------------------------------------------
// Receiving

/// The receiving half of a TLS conversation: ciphertext read from the
/// socket, decrypted by rustls, cut into messages by the framing.
pub struct TlsReceiver {
    link: Arc<TlsLink>,
    inbound: Inbound,
    timeout: Option<Duration>,
    timer: SockTimer,
    /// Where ciphertext is read (allocated at the first read).
    buf: Vec<u8>,
}

impl std::fmt::Debug for TlsReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsReceiver")
            .field("peer", &self.link.peer)
            .field("buffered", &self.inbound.buffered())
            .finish()
    }
}

/// What one read brought.
enum Got {
    Plaintext,
    /// The peer's `close_notify`.
    Closed,
    Nothing,
}

impl TlsReceiver {
    fn error(&self, e: InboundError) -> Error {
        let peer = &self.link.peer;
        let err = match e {
            InboundError::Frame(f) => Error::from_frame(f, peer),
            InboundError::UnexpectedEof => Error::UnexpectedEof { addr: peer.clone() },
            InboundError::Deadline(deadline) => Error::DeadlineExceeded {
                addr: peer.clone(),
                deadline,
            },
        };
        self.link.fail(err)
    }

    /// Moves what rustls has decrypted into the framing engine.
    fn drain_plaintext(&mut self, s: &mut Session, now: Instant) -> Result<Got> {
        let mut got = Got::Nothing;
        loop {
            let space = self.inbound.space();
            match s.conn.reader().read(space) {
                Ok(0) => {
                    s.peer_closed = true;
                    // Messages first; the end once they are taken.
                    return Ok(match got {
                        Got::Plaintext => Got::Plaintext,
                        _ => Got::Closed,
                    });
                }
                Ok(n) => {
                    self.inbound.filled(n, now);
                    got = Got::Plaintext;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(got),
                // The end without close_notify: the caller reports it.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(got),
                Err(e) => return Err(self.link.io_error(e)),
            }
        }
    }

    /// Feeds `n` bytes of ciphertext from `buf` to rustls and takes out the
    /// plaintext. Records rustls wants sent in answer go out if the write
    /// turn is free.
    fn absorb(&mut self, n: usize, now: Instant) -> Result<Got> {
        let link = Arc::clone(&self.link);
        let mut s = lock(&link.session);
        let buf = std::mem::take(&mut self.buf);
        s.records.feed(&buf[..n]);
        let mut data = &buf[..n];
        let mut got = Got::Nothing;
        let outcome = loop {
            if data.is_empty() {
                break Ok(());
            }
            match s.conn.read_tls(&mut data) {
                // After the peer's close_notify nothing more is read.
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) => {
                    // The plaintext buffer is full: take it out, then go on.
                    if matches!(self.drain_plaintext(&mut s, now), Ok(Got::Plaintext)) {
                        got = Got::Plaintext;
                        continue;
                    }
                    break Err(link.tls_error(TlsError::Protocol(e.to_string())));
                }
            }
            if let Err(e) = s.conn.process_new_packets() {
                break Err(link.rustls_error(&mut s, &e));
            }
            match self.drain_plaintext(&mut s, now) {
                Ok(Got::Nothing) => {}
                Ok(Got::Plaintext) => got = Got::Plaintext,
                Ok(Got::Closed) => {
                    got = Got::Closed;
                    break Ok(());
                }
                Err(e) => break Err(e),
            }
        };
        self.buf = buf;
        outcome?;
        if s.conn.wants_write() {
            if let Ok(mut w) = link.writing.try_lock() {
                let _ = take_ciphertext(&link, &mut s, &mut w);
            }
        }
        Ok(got)
    }

    /// `Ok(true)`: a message is whole in the buffer. `Ok(false)`: the clean
    /// end. Reads until one of them, the read timeout, or the deadline.
    fn wait_for_message(&mut self) -> Result<bool> {
        let start = Instant::now();
        let until = self.timeout.map(|t| start + t);
        self.link.ensure_handshake(until)?;
        // Plaintext rustls already holds (it came with the handshake).
        {
            let link = Arc::clone(&self.link);
            let mut s = lock(&link.session);
            match self.drain_plaintext(&mut s, start)? {
                Got::Plaintext => return Ok(true),
                Got::Closed => return self.end(),
                Got::Nothing => {}
            }
            if s.peer_closed {
                return self.end();
            }
        }
        if self.buf.is_empty() {
            self.buf = vec![0u8; READ_CHUNK];
        }
        let mut tried = false;
        loop {
            let now = Instant::now();
            let user_left = self.timeout.map(|t| t.saturating_sub(now - start));
            let deadline_left = self
                .inbound
                .deadline()
                .map(|at| at.saturating_duration_since(now));
            if tried {
                if let Err(e) = self.inbound.check_deadline(now) {
                    return Err(self.error(e));
                }
                if user_left.is_some_and(|l| l < MIN_WAIT) {
                    return Err(Error::Timeout);
                }
            }
            let (wait, exact) = earliest(user_left, deadline_left);
            let socket = &self.link.socket;
            self.timer
                .fit(wait, exact, |t| sockopt::set_read_timeout(socket, t))
                .map_err(|e| Error::from_io(e, &self.link.peer))?;
            let n = match (&self.link.socket).read(&mut self.buf) {
                Ok(0) if self.link.is_stopped() => return Err(Error::Closed),
                Ok(0) => return self.eof(),
                Ok(n) => n,
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        tried = true;
                        continue;
                    }
                    _ => return Err(self.link.io_error(e)),
                },
            };
            match self.absorb(n, Instant::now())? {
                Got::Closed => return self.end(),
                Got::Plaintext => return Ok(true),
                // Records that held no data (a handshake message, a ticket):
                // read again at once.
                Got::Nothing => tried = false,
            }
        }
    }

    /// The peer's `close_notify`: the authenticated end.
    fn end(&mut self) -> Result<bool> {
        match self.inbound.end() {
            Ok(()) => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    /// The connection ended without `close_notify`: inside a record or a
    /// message it was cut short; between them, the end is unauthenticated.
    fn eof(&mut self) -> Result<bool> {
        let cut_record = !lock(&self.link.session).records.at_boundary();
        if self.inbound.buffered() > 0 || cut_record {
            return Err(self.error(InboundError::UnexpectedEof));
        }
        let _ = self.inbound.fail(InboundError::UnexpectedEof);
        Err(self.link.fail(Error::NoCloseNotify {
            addr: self.link.peer.clone(),
        }))
    }

    #[inline]
    fn check(&self) -> Result<bool> {
        match self.inbound.state() {
            State::Open => self.link.check().map(|()| true),
            State::Ended => Ok(false),
            State::Failed => Err(Error::Closed),
        }
    }

    /// The verified identity of the peer, once the handshake is over.
    pub fn peer_identity(&self) -> Option<PeerIdentity> {
        self.link.identity.get().cloned().flatten()
    }

    /// Reads with another codec from now on; what is buffered stays.
    #[cfg_attr(not(feature = "ws"), allow(dead_code))]
    pub(crate) fn set_codec(&mut self, codec: crate::codec::Codec) {
        self.inbound.set_codec(codec);
    }
}

impl Receiver for TlsReceiver {
    fn recv(&mut self) -> Result<Option<Bytes>> {
        loop {
            if !self.check()? {
                return Ok(None);
            }
            match self.inbound.next() {
                Ok(Some(msg)) => return Ok(Some(msg)),
                Ok(None) => {}
                Err(e) => return Err(self.error(e)),
            }
            if !self.wait_for_message()? {
                return Ok(None);
            }
        }
    }

    fn recv_ref<'a>(&'a mut self, _hold: &'a mut Option<Bytes>) -> Result<Option<&'a [u8]>> {
        loop {
            if !self.check()? {
                return Ok(None);
            }
            match self.inbound.lend_next() {
                Ok(true) => return Ok(Some(self.inbound.lent())),
                Ok(false) => {}
                Err(e) => return Err(self.error(e)),
            }
            if !self.wait_for_message()? {
                return Ok(None);
            }
        }
    }

    /// Reads and discards until the peer's `close_notify` (then
    /// [`Delivery::Confirmed`]), its end without one, or `until` (then
    /// [`Delivery::Unknown`]).
    fn drain(&mut self, until: Instant) -> Result<Delivery> {
        match self.inbound.state() {
            State::Ended => return Ok(Delivery::Confirmed),
            State::Failed => return Ok(Delivery::Unknown),
            State::Open if self.link.is_down() || !self.link.is_established() => {
                return Ok(Delivery::Unknown)
            }
            State::Open => {}
        }
        if lock(&self.link.session).peer_closed {
            let _ = self.inbound.end();
            return Ok(Delivery::Confirmed);
        }
        if self.buf.is_empty() {
            self.buf = vec![0u8; READ_CHUNK];
        }
        self.timer.invalidate();
        loop {
            let left = until
                .saturating_duration_since(Instant::now())
                .max(MIN_WAIT);
            if sockopt::set_read_timeout(&self.link.socket, Some(left)).is_err() {
                return Ok(Delivery::Unknown);
            }
            let n = match (&self.link.socket).read(&mut self.buf) {
                Ok(0) => return Ok(Delivery::Unknown),
                Ok(n) => n,
                Err(e) => match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        return Ok(Delivery::Unknown)
                    }
                    _ if self.link.is_stopped() => return Ok(Delivery::Unknown),
                    _ => return Err(self.link.io_error(e)),
                },
            };
            // Discard what arrives; look only for the end.
            let got = self.absorb(n, Instant::now());
            while let Ok(Some(_)) = self.inbound.next() {}
            match got {
                Ok(Got::Closed) => {
                    let _ = self.inbound.end();
                    return Ok(Delivery::Confirmed);
                }
                Ok(_) if Instant::now() >= until => return Ok(Delivery::Unknown),
                Ok(_) => {}
                Err(_) => return Ok(Delivery::Unknown),
            }
        }
    }

    fn peer_addr(&self) -> Result<Addr> {
        Ok(self.link.peer.clone())
    }

    fn local_addr(&self) -> Result<Addr> {
        Ok(self.link.local.clone())
    }

    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.timeout = check_timeout("read_timeout", timeout)?;
        Ok(())
    }

    fn read_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn set_message_deadline(&mut self, deadline: Duration) -> Result<()> {
        self.inbound
            .set_deadline(crate::config::check_deadline(deadline)?);
        Ok(())
    }

    fn max_message_len(&self) -> usize {
        self.inbound.max_message_len()
    }

    fn stopper(&self) -> Option<Stopper> {
        Some(stopper(&self.link))
    }
}
