//! A TLS session, sans-IO: rustls's connection driven by bytes, with
//! what the connection's rules need to know of it — whether the handshake
//! is over, who the verified peer is, whether the peer's `close_notify`
//! came, and where the ciphertext stands between records (to tell a
//! connection cut inside a record, a message cut short whatever the
//! plaintext shows so far, from one that ended between records).
//!
//! It runs rustls's unbuffered connection: the ciphertext waits in a
//! buffer of ours and rustls decrypts the records in it, in place; what
//! rustls sends is written straight into [`TlsSession::cipher`]. Nothing
//! here touches a socket.

use std::io;
use std::sync::Arc;

use rustls::client::UnbufferedClientConnection;
use rustls::pki_types::ServerName;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};

use super::error::TlsFailure;
use super::{PeerIdentity, TlsClient, TlsError, TlsServer};

/// What ciphertext brought, in order.
pub(crate) enum Plain<'a> {
    /// The handshake just finished.
    Established,
    /// Application data.
    Data(&'a [u8]),
}

/// The most plaintext a record carries (and so what one encryption
/// step takes when the bytes come in several slices).
const RECORD: usize = 16 * 1024;

/// Ciphertext held in [`TlsSession::cipher`] beyond which no more
/// plaintext is encrypted (rustls's own default buffer limit): what is
/// taken is bounded, and plaintext beyond it stays in the caller's queue.
const CIPHER_LIMIT: usize = 64 * 1024;

/// Ciphertext that may wait for rustls at most: a handshake message
/// (rustls takes them up to 64 KiB) in records, and a record after it.
/// rustls refuses longer ones itself; this bounds the buffer whatever it
/// does.
const MAX_PENDING: usize = 128 * 1024;

/// See the module docs.
pub(crate) struct TlsSession {
    conn: Conn,
    /// The server's name, as a client connected to it (for messages).
    server_name: Option<String>,
    established: bool,
    /// The peer's `close_notify` has been read: the authenticated end.
    peer_closed: bool,
    /// Our `close_notify` has been queued.
    close_sent: bool,
    /// rustls failed (its alert is in `cipher`): it is not turned again.
    failed: bool,
    identity: Option<PeerIdentity>,
    records: RecordCursor,
    /// Ciphertext not yet taken by rustls (a record still arriving, or a
    /// handshake message whose records rustls joins in place).
    incoming: Incoming,
    placement: Placement,
    /// Ciphertext to write, in order: what rustls sends goes here at once
    /// (its front may be partly written).
    pub(crate) cipher: bytes::BytesMut,
    /// Plaintext that came while the sending half drove the handshake (a
    /// blocking TLS server that speaks first): the receiving side takes
    /// it before anything else.
    pub(crate) early: bytes::BytesMut,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("established", &self.established)
            .field("peer_closed", &self.peer_closed)
            .field("close_sent", &self.close_sent)
            .finish()
    }
}

/// rustls's connection, either side.
enum Conn {
    Client(Box<UnbufferedClientConnection>),
    Server(Box<UnbufferedServerConnection>),
}

impl Conn {
    fn common(&self) -> &rustls::CommonState {
        match self {
            Conn::Client(c) => c,
            Conn::Server(s) => s,
        }
    }

    /// One turn of rustls's state machine over `incoming`: how many of
    /// its bytes to discard from the front, and where it stopped.
    fn turn(
        &mut self,
        incoming: &mut [u8],
        ask: Ask<'_>,
        io: &mut Io<'_, '_>,
    ) -> (usize, Result<Turn, rustls::Error>) {
        let base = incoming.as_ptr() as usize;
        match self {
            Conn::Client(c) => turn(c.process_tls_records(incoming), base, ask, io),
            Conn::Server(s) => turn(s.process_tls_records(incoming), base, ask, io),
        }
    }
}

/// What to do if rustls lets us send application data.
#[derive(Clone, Copy)]
enum Ask<'a> {
    /// Nothing: that is where a turn stops.
    Nothing,
    /// Encrypt these bytes, in as many records as they take.
    Encrypt(&'a [u8]),
    /// Queue our `close_notify`.
    CloseNotify,
}

/// Where a turn left rustls.
enum Turn {
    /// It did something: turn again.
    Again,
    /// It waits for more ciphertext, or (with [`Ask::Nothing`]) it may
    /// send application data.
    Idle,
    /// The ask is done: this many bytes of plaintext were taken.
    Done(usize),
}

/// Where a turn puts what it gives out.
struct Io<'a, 'f> {
    cipher: &'a mut bytes::BytesMut,
    /// Where plaintext goes; without one, into `early`.
    plain: Option<&'a mut (dyn FnMut(Plain<'_>) + 'f)>,
    early: &'a mut bytes::BytesMut,
    /// The handshake is over, and `Plain::Established` was said.
    established: &'a mut bool,
    peer_closed: &'a mut bool,
    placement: &'a mut Placement,
}

impl Io<'_, '_> {
    fn give(&mut self, p: Plain<'_>) {
        match (&mut self.plain, p) {
            (Some(plain), p) => plain(p),
            (None, Plain::Data(chunk)) => self.early.extend_from_slice(chunk),
            (None, Plain::Established) => {}
        }
    }
}

/// One turn: the state rustls stopped in, handled.
fn turn<Data>(
    status: UnbufferedStatus<'_, '_, Data>,
    base: usize,
    ask: Ask<'_>,
    io: &mut Io<'_, '_>,
) -> (usize, Result<Turn, rustls::Error>) {
    let discard = status.discard;
    let state = match status.state {
        Ok(state) => state,
        Err(e) => return (discard, Err(e)),
    };
    let turn = match state {
        ConnectionState::ReadTraffic(mut traffic) => {
            // Application data comes only once the handshake is over.
            if !*io.established {
                *io.established = true;
                io.give(Plain::Established);
            }
            while let Some(record) = traffic.next_record() {
                match record {
                    Ok(record) => {
                        io.placement.saw(base + discard, record.payload);
                        io.give(Plain::Data(record.payload));
                    }
                    Err(e) => return (discard, Err(e)),
                }
            }
            Ok(Turn::Again)
        }
        ConnectionState::EncodeTlsData(mut data) => {
            let at = io.cipher.len();
            let mut room = 4096;
            loop {
                io.cipher.resize(at + room, 0);
                match data.encode(&mut io.cipher[at..]) {
                    Ok(n) => {
                        io.cipher.truncate(at + n);
                        break;
                    }
                    Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                        room = required_size
                    }
                    Err(_) => {
                        io.cipher.truncate(at);
                        break;
                    }
                }
            }
            Ok(Turn::Again)
        }
        // What was encoded is in `cipher`, for the driver to write.
        ConnectionState::TransmitTlsData(data) => {
            data.done();
            Ok(Turn::Again)
        }
        ConnectionState::BlockedHandshake => Ok(Turn::Idle),
        ConnectionState::PeerClosed => {
            *io.peer_closed = true;
            Ok(Turn::Again)
        }
        // Both `close_notify` alerts have passed.
        ConnectionState::Closed => {
            *io.peer_closed = true;
            Ok(Turn::Idle)
        }
        ConnectionState::WriteTraffic(mut traffic) => match ask {
            Ask::Nothing => Ok(Turn::Idle),
            Ask::Encrypt(plain) => Ok(Turn::Done(encrypt_into(io.cipher, plain, |out| {
                traffic.encrypt(plain, out)
            }))),
            Ask::CloseNotify => {
                encrypt_into(io.cipher, &[], |out| traffic.queue_close_notify(out));
                Ok(Turn::Done(0))
            }
        },
        // 0-RTT data is never enabled; nothing else is known.
        _ => Err(rustls::Error::General(
            "a TLS connection state converse does not handle".into(),
        )),
    };
    (discard, turn)
}

/// Appends what `encrypt` writes to `cipher`, given room enough: the
/// plaintext it took (all of `plain`), or 0 if it took none.
fn encrypt_into(
    cipher: &mut bytes::BytesMut,
    plain: &[u8],
    mut encrypt: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
) -> usize {
    let at = cipher.len();
    // Each record adds at most 40 bytes (header, nonce, tag, type); a
    // key update may go first.
    let mut room = plain.len() + (plain.len() / RECORD + 2) * 64;
    loop {
        cipher.resize(at + room, 0);
        match encrypt(&mut cipher[at..]) {
            Ok(n) => {
                cipher.truncate(at + n);
                return plain.len();
            }
            Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size }))
                if required_size > room =>
            {
                room = required_size;
            }
            // The keys are used up (rustls closes), or worse.
            Err(_) => {
                cipher.truncate(at);
                return 0;
            }
        }
    }
}

/// Turns rustls over the ciphertext that waits until it stops: what
/// `ask` took, if it got to it.
fn run(
    conn: &mut Conn,
    incoming: &mut Incoming,
    ask: Ask<'_>,
    io: &mut Io<'_, '_>,
) -> Result<usize, rustls::Error> {
    loop {
        let start = incoming.start;
        let (discard, turn) = conn.turn(&mut incoming.buf[start..], ask, io);
        incoming.discard(discard);
        match turn {
            Ok(Turn::Again) => {}
            Ok(Turn::Done(n)) => return Ok(n),
            Ok(Turn::Idle) => return Ok(0),
            Err(e) => return Err(e),
        }
    }
}

/// Ciphertext waiting for rustls: `buf[start..]`. The front is a gap of
/// [`Placement::skew`] bytes.
#[derive(Default)]
struct Incoming {
    buf: Vec<u8>,
    start: usize,
}

impl Incoming {
    fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Appends `data` after what waits, which first moves to `skew`.
    fn push(&mut self, data: &[u8], skew: usize) {
        let pending = self.pending();
        if self.start != skew {
            if pending == 0 {
                self.buf.clear();
                self.buf.resize(skew, 0);
            } else if skew < self.start {
                self.buf.copy_within(self.start.., skew);
                self.buf.truncate(skew + pending);
            } else {
                self.buf.resize(skew + pending, 0);
                self.buf.copy_within(self.start..self.start + pending, skew);
            }
            self.start = skew;
        }
        self.buf.extend_from_slice(data);
    }

    fn discard(&mut self, n: usize) {
        self.start += n;
        if self.start >= self.buf.len() {
            // Nothing waits: the buffer goes back (an idle connection
            // holds none).
            *self = Incoming::default();
        }
    }
}

/// Where the next ciphertext goes in [`Incoming`], so that rustls's copy
/// of each record's plaintext out of it runs at full speed.
///
/// rustls 0.23 decrypts a record in place, then copies its plaintext into
/// a vector of its own. On some CPUs (measured on AMD Zen with glibc's
/// `rep movsb` copy) a copy whose destination lies 1 to 63 bytes after
/// its source, modulo 4 KiB, runs 20 to 40 times slower than any other.
/// The allocator tends to put that vector at the same place every
/// time, and the records at the front of the buffer, so one bad distance
/// would slow every record. When a record's copy is at such a distance,
/// the buffer's front moves by [`Placement::STEP`] for the next ones.
#[derive(Default)]
struct Placement {
    skew: usize,
}

impl Placement {
    /// How far the front moves: out of the slow window whatever the
    /// distance in it.
    const STEP: usize = 256;
    /// Copies smaller than this are fast wherever they are.
    const MIN_LEN: usize = 1024;

    /// A record ending at `end` in [`Incoming`] was decrypted, and its
    /// plaintext copied to `copy`.
    fn saw(&mut self, end: usize, copy: &[u8]) {
        if copy.len() < Self::MIN_LEN {
            return;
        }
        // In place, the plaintext ends before the tag and content type
        // (TLS 1.3; TLS 1.2's is a byte later, near enough).
        let source = end.wrapping_sub(17 + copy.len());
        let distance = (copy.as_ptr() as usize).wrapping_sub(source) & 4095;
        if (1..64).contains(&distance) {
            self.skew = (self.skew + Self::STEP) % 4096;
        }
    }
}

impl TlsSession {
    /// A client session verifying the server for `name` (a DNS name or an
    /// IP address); its first flight is in [`cipher`](Self::cipher).
    pub(crate) fn client(
        settings: &TlsClient,
        name: ServerName<'static>,
    ) -> Result<TlsSession, TlsFailure> {
        let shown = name.to_str().into_owned();
        let conn = UnbufferedClientConnection::new(Arc::clone(settings.rustls_config()), name)
            .map_err(TlsFailure::rustls)?;
        let mut session = TlsSession::new(Conn::Client(Box::new(conn)), Some(shown));
        session.read(&[], |_| {})?;
        Ok(session)
    }

    /// A server session presenting `settings`.
    pub(crate) fn server(settings: &TlsServer) -> Result<TlsSession, TlsFailure> {
        let conn = UnbufferedServerConnection::new(Arc::clone(settings.rustls_config()))
            .map_err(TlsFailure::rustls)?;
        Ok(TlsSession::new(Conn::Server(Box::new(conn)), None))
    }

    fn new(conn: Conn, server_name: Option<String>) -> TlsSession {
        TlsSession {
            conn,
            server_name,
            established: false,
            peer_closed: false,
            close_sent: false,
            failed: false,
            identity: None,
            records: RecordCursor::default(),
            incoming: Incoming::default(),
            placement: Placement::default(),
            cipher: bytes::BytesMut::new(),
            early: bytes::BytesMut::new(),
        }
    }

    /// Feeds ciphertext and hands what it brings to `plain`, in order.
    /// After the peer's `close_notify` nothing more is read.
    pub(crate) fn read(
        &mut self,
        data: &[u8],
        mut plain: impl FnMut(Plain<'_>),
    ) -> Result<(), TlsFailure> {
        self.records.feed(data);
        if self.peer_closed || self.failed {
            return Ok(());
        }
        let was_established = self.established;
        self.incoming.push(data, self.placement.skew);
        if let Err(e) = self.turns(Ask::Nothing, Some(&mut plain), false) {
            return Err(self.failure(e));
        }
        if self.peer_closed {
            self.incoming = Incoming::default();
        } else if self.incoming.pending() > MAX_PENDING {
            self.failed = true;
            return Err(TlsError::Protocol(format!(
                "more than {MAX_PENDING} bytes of ciphertext without a whole record"
            ))
            .into());
        }
        if !self.established && !self.conn.common().is_handshaking() {
            self.established = true;
            plain(Plain::Established);
        }
        if self.established && !was_established {
            let certs: Vec<_> = self
                .conn
                .common()
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default();
            self.identity = PeerIdentity::new(certs);
        }
        Ok(())
    }

    /// A rustls error as ours, once the alert rustls queued for it (if
    /// any) is in [`cipher`](Self::cipher).
    fn failure(&mut self, e: rustls::Error) -> TlsFailure {
        let _ = self.turns(Ask::Nothing, None, true);
        self.failed = true;
        TlsFailure {
            reason: self.error(&e),
            source: Some(Box::new(e)),
        }
    }

    /// The reason for a rustls error, with the name connected to where
    /// rustls leaves it out.
    fn error(&self, e: &rustls::Error) -> TlsError {
        match TlsError::from_rustls(e) {
            TlsError::NameMismatch {
                expected,
                presented,
            } if expected.is_empty() => TlsError::NameMismatch {
                expected: self.server_name.clone().unwrap_or_default(),
                presented,
            },
            other => other,
        }
    }

    /// Encrypts as much of `plain` as is taken now (the ciphertext that
    /// waits in [`cipher`](Self::cipher) is bounded); returns how much.
    pub(crate) fn encrypt(&mut self, plain: &[u8]) -> usize {
        let take = plain.len().min(self.room());
        if take == 0 {
            return 0;
        }
        self.write(Ask::Encrypt(&plain[..take]))
    }

    /// As [`encrypt`](Self::encrypt), from several slices in order, into
    /// records that span them (only a record that spans two slices is
    /// copied together first).
    pub(crate) fn encrypt_vectored(&mut self, parts: &[io::IoSlice<'_>]) -> usize {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut took = 0;
        let mut joined = Vec::new();
        while took < total {
            let room = self.room();
            if room == 0 {
                break;
            }
            // Where `took` falls in the slices.
            let (mut i, mut skip) = (0, took);
            while skip >= parts[i].len() {
                skip -= parts[i].len();
                i += 1;
            }
            let here = &parts[i][skip..];
            let whole = RECORD.min(total - took);
            let n = if here.len() >= whole {
                self.write(Ask::Encrypt(&here[..here.len().min(room)]))
            } else {
                // One record from this slice and the next ones.
                let want = whole.min(room);
                joined.clear();
                for part in std::iter::once(here).chain(parts[i + 1..].iter().map(|p| &p[..])) {
                    let n = part.len().min(want - joined.len());
                    joined.extend_from_slice(&part[..n]);
                    if joined.len() == want {
                        break;
                    }
                }
                self.write(Ask::Encrypt(&joined))
            };
            if n == 0 {
                break;
            }
            took += n;
        }
        took
    }

    /// Plaintext that may be encrypted now: whole records, while the
    /// ciphertext waiting is under its limit.
    fn room(&self) -> usize {
        if !self.established || self.close_sent {
            return 0;
        }
        CIPHER_LIMIT
            .saturating_sub(self.cipher.len())
            .next_multiple_of(RECORD)
    }

    /// Has rustls do `ask` once it may send application data: what it
    /// took. Plaintext it hands out meanwhile (none: every whole record was
    /// read already) waits in [`early`](Self::early).
    fn write(&mut self, ask: Ask<'_>) -> usize {
        if self.failed {
            return 0;
        }
        // (An error here is one the next read reports.)
        self.turns(ask, None, false).unwrap_or(0)
    }

    /// Turns rustls until it stops (see [`run`]), its plaintext to
    /// `plain` (or [`early`](Self::early)); or, `queued_only`, only while
    /// it has something queued to send: after an error, the alert, and no
    /// reading again (which would fail again).
    fn turns(
        &mut self,
        ask: Ask<'_>,
        plain: Option<&mut dyn FnMut(Plain<'_>)>,
        queued_only: bool,
    ) -> Result<usize, rustls::Error> {
        let mut io = Io {
            cipher: &mut self.cipher,
            plain,
            early: &mut self.early,
            established: &mut self.established,
            peer_closed: &mut self.peer_closed,
            placement: &mut self.placement,
        };
        if !queued_only {
            return run(&mut self.conn, &mut self.incoming, ask, &mut io);
        }
        for _ in 0..8 {
            if !self.conn.common().wants_write() {
                break;
            }
            let start = self.incoming.start;
            let _ = self
                .conn
                .turn(&mut self.incoming.buf[start..], ask, &mut io);
        }
        Ok(0)
    }

    /// Queues our `close_notify` (once, and only in an established session).
    pub(crate) fn send_close_notify(&mut self) {
        if !self.close_sent {
            self.close_sent = true;
            if self.established {
                self.write(Ask::CloseNotify);
            }
        }
    }

    pub(crate) fn is_established(&self) -> bool {
        self.established
    }

    /// The peer's `close_notify` came.
    pub(crate) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    pub(crate) fn close_sent(&self) -> bool {
        self.close_sent
    }

    /// rustls failed: nothing more is encrypted (the alert that says why
    /// is in [`cipher`](Self::cipher)).
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    /// The ciphertext so far ends between two records.
    pub(crate) fn at_record_boundary(&self) -> bool {
        self.records.at_boundary()
    }

    /// The verified peer, once the handshake is over.
    pub(crate) fn identity(&self) -> Option<&PeerIdentity> {
        self.identity.as_ref()
    }
}

/// Where the ciphertext stands in the record framing: fed every byte
/// that arrives, it knows whether the stream is between records.
/// A TLS record header is 5 bytes: type, version (2), length (2).
const HEADER: usize = 5;

/// The position in the record framing of a TLS stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RecordCursor {
    /// Header bytes seen of the record under way (0..5).
    header: [u8; HEADER],
    have: usize,
    /// Body bytes still to come once the header is whole.
    body_left: usize,
}

impl RecordCursor {
    /// Follows `bytes`, the next ciphertext of the stream.
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == HEADER {
                self.body_left = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
                self.have = 0;
            }
        }
    }

    /// `true` between two records (or before the first).
    fn at_boundary(&self) -> bool {
        self.have == 0 && self.body_left == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_certs as certs;

    /// A client and a server session with their handshake done, in memory.
    fn established_pair() -> (TlsSession, TlsSession) {
        let ca = certs::Authority::new("test CA");
        let issued = ca.issue(certs::Role::Server, "localhost", &["localhost"]);
        let client = TlsClient::trusting_ca_pem(ca.cert_pem()).unwrap();
        let server = TlsServer::from_pem(&issued.cert_pem, &issued.key_pem).unwrap();
        let name = crate::tls::server_name("localhost").unwrap();
        let mut c = TlsSession::client(&client, name).unwrap();
        let mut s = TlsSession::server(&server).unwrap();
        for _ in 0..10 {
            let to_server = c.cipher.split();
            s.read(&to_server, |_| {}).unwrap();
            let to_client = s.cipher.split();
            c.read(&to_client, |_| {}).unwrap();
            if c.is_established()
                && s.is_established()
                && c.cipher.is_empty()
                && s.cipher.is_empty()
            {
                return (c, s);
            }
        }
        panic!("no handshake");
    }

    /// The plaintext in `cipher`, read by `to`, and the sizes of its
    /// records.
    fn deliver(cipher: &[u8], to: &mut TlsSession) -> (Vec<u8>, Vec<usize>) {
        let mut sizes = Vec::new();
        let mut rest = cipher;
        while rest.len() >= HEADER {
            let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
            sizes.push(len);
            rest = &rest[HEADER + len..];
        }
        assert!(rest.is_empty(), "whole records");
        let mut got = Vec::new();
        // In pieces, as a socket would give them.
        for piece in cipher.chunks(7_000) {
            to.read(piece, |p| {
                if let Plain::Data(d) = p {
                    got.extend_from_slice(d)
                }
            })
            .unwrap();
        }
        (got, sizes)
    }

    #[test]
    fn slices_are_encrypted_into_whole_records_that_span_them() {
        let (mut c, mut s) = established_pair();
        let prefix = [1, 2, 3, 4];
        let payload: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        let took = c.encrypt_vectored(&[io::IoSlice::new(&prefix), io::IoSlice::new(&payload)]);
        assert_eq!(took, 40_004);
        let cipher = c.cipher.split();
        let (got, sizes) = deliver(&cipher, &mut s);
        assert_eq!(&got[..4], &prefix);
        assert_eq!(&got[4..], &payload[..]);
        // 16 KiB, 16 KiB and the rest, each with TLS 1.3's 17 bytes more:
        // no record for the prefix alone.
        assert_eq!(sizes, [RECORD + 17, RECORD + 17, 40_004 - 2 * RECORD + 17]);
    }

    #[test]
    fn what_is_encrypted_at_once_is_bounded_and_the_rest_is_taken_later() {
        let (mut c, mut s) = established_pair();
        let big = vec![7u8; 200_000];
        let first = c.encrypt(&big);
        assert_eq!(first, CIPHER_LIMIT);
        assert_eq!(c.encrypt(&big[first..]), 0, "nothing more while it waits");
        let mut got = deliver(&c.cipher.split(), &mut s).0;
        let mut took = first;
        while took < big.len() {
            let n = c.encrypt(&big[took..]);
            assert!(n > 0);
            took += n;
            got.extend(deliver(&c.cipher.split(), &mut s).0);
        }
        assert_eq!(got, big);
    }

    #[test]
    fn after_close_notify_nothing_is_encrypted_and_the_peer_sees_it_after_the_data() {
        let (mut c, mut s) = established_pair();
        assert_eq!(c.encrypt(b"last words"), 10);
        c.send_close_notify();
        assert_eq!(c.encrypt(b"more"), 0);
        let (got, _) = deliver(&c.cipher.split(), &mut s);
        assert_eq!(got, b"last words");
        assert!(s.peer_closed());
        // The server may still answer a client that closed.
        assert_eq!(s.encrypt(b"reply"), 5);
        assert_eq!(deliver(&s.cipher.split(), &mut c).0, b"reply");
    }

    #[test]
    fn a_failed_session_says_why_once_and_sends_its_alert_and_nothing_more() {
        let (_, mut s) = established_pair();
        let garbage = [0x17, 0x03, 0x03, 0x00, 0x20, 0xde, 0xad].repeat(8);
        let err = s.read(&garbage, |_| {}).unwrap_err();
        assert!(
            matches!(err.reason, TlsError::Protocol(_)),
            "{:?}",
            err.reason
        );
        assert!(s.failed());
        let alert = s.cipher.split();
        assert!(!alert.is_empty(), "the alert");
        assert_eq!(alert[0], 0x17, "an encrypted record");
        // Nothing more: no data, no close_notify, no second failure.
        assert_eq!(s.encrypt(b"after"), 0);
        s.send_close_notify();
        assert!(s.cipher.is_empty());
        s.read(&garbage, |_| panic!("nothing is read")).unwrap();
    }

    #[test]
    fn a_slow_copy_distance_moves_where_the_next_records_go() {
        let buf = vec![0u8; 64 * 1024];
        let copy = &buf[20_000..20_000 + RECORD];
        let at = copy.as_ptr() as usize;
        // The copy's source ended at `end`, 17 bytes before the record's.
        let end_for = |distance: usize| at - distance + RECORD + 17;
        let mut p = Placement::default();
        p.saw(end_for(200), copy);
        assert_eq!(p.skew, 0, "a fast distance");
        p.saw(end_for(11), &copy[..100]);
        assert_eq!(p.skew, 0, "a small copy");
        p.saw(end_for(11), copy);
        assert_eq!(p.skew, Placement::STEP);
        p.saw(end_for(4096 + 63), copy);
        assert_eq!(p.skew, 2 * Placement::STEP);

        // The bytes waiting move to the new front, in order.
        let mut incoming = Incoming::default();
        incoming.push(b"abcdef", 0);
        incoming.discard(2);
        incoming.push(b"gh", 300);
        assert_eq!(incoming.start, 300);
        assert_eq!(&incoming.buf[300..], b"cdefgh");
        incoming.push(b"i", 10);
        assert_eq!(&incoming.buf[10..], b"cdefghi");
        incoming.discard(7);
        assert_eq!(incoming.buf.capacity(), 0, "an empty buffer is given back");
    }

    fn record(len: u16) -> Vec<u8> {
        let mut r = vec![0x17, 0x03, 0x03];
        r.extend_from_slice(&len.to_be_bytes());
        r.resize(5 + len as usize, 0xaa);
        r
    }

    #[test]
    fn whole_records_in_any_pieces_end_at_a_boundary_and_cuts_do_not() {
        let mut stream = record(0);
        stream.extend(record(1));
        stream.extend(record(300));
        stream.extend(record(16_401));
        for piece in [1, 2, 4, 5, 7, 100, 70_000] {
            let mut cursor = RecordCursor::default();
            let mut fed = 0;
            let mut boundaries = Vec::new();
            for chunk in stream.chunks(piece) {
                cursor.feed(chunk);
                fed += chunk.len();
                if cursor.at_boundary() {
                    boundaries.push(fed);
                }
            }
            assert!(cursor.at_boundary(), "piece {piece}");
            // Only ever at the ends of records.
            let ends = [5, 11, 316, stream.len()];
            assert!(
                boundaries.iter().all(|b| ends.contains(b)),
                "{piece}: {boundaries:?}"
            );
        }
        for cut in 1..stream.len() {
            let mut cursor = RecordCursor::default();
            cursor.feed(&stream[..cut]);
            assert_eq!(
                cursor.at_boundary(),
                [5, 11, 316].contains(&cut),
                "cut at {cut}"
            );
        }
    }
}
