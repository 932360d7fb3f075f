//! A TLS session, sans-IO: rustls's connection driven by bytes, with
//! what the connection's rules need to know of it — whether the handshake
//! is over, who the verified peer is, whether the peer's `close_notify`
//! came, and where the ciphertext stands between records (to tell a
//! connection cut inside a record, a message cut short whatever the
//! plaintext shows so far, from one that ended between records).
//!
//! rustls's own API is this shape already (`read_tls`,
//! `process_new_packets`, `write_tls`): nothing here touches a socket.

use std::io::{self, BufRead, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;

use super::error::TlsFailure;
use super::{PeerIdentity, TlsClient, TlsError, TlsServer};

/// What ciphertext brought, in order.
pub(crate) enum Plain<'a> {
    /// The handshake just finished.
    Established,
    /// Application data.
    Data(&'a [u8]),
}

/// See the module docs.
pub(crate) struct TlsSession {
    conn: rustls::Connection,
    /// The server's name, as a client connected to it (for messages).
    server_name: Option<String>,
    established: bool,
    /// The peer's `close_notify` has been read: the authenticated end.
    peer_closed: bool,
    /// Our `close_notify` has been queued.
    close_sent: bool,
    identity: Option<PeerIdentity>,
    records: RecordCursor,
    /// Ciphertext taken out of rustls and not yet written; it goes before
    /// anything else (its front may be partly written).
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

impl TlsSession {
    /// A client session verifying the server for `name` (a DNS name or an
    /// IP address).
    pub(crate) fn client(
        settings: &TlsClient,
        name: ServerName<'static>,
    ) -> Result<TlsSession, TlsFailure> {
        let shown = name.to_str().into_owned();
        let conn = rustls::ClientConnection::new(Arc::clone(settings.rustls_config()), name)
            .map_err(TlsFailure::rustls)?;
        Ok(TlsSession::new(conn.into(), Some(shown)))
    }

    /// A server session presenting `settings`.
    pub(crate) fn server(settings: &TlsServer) -> Result<TlsSession, TlsFailure> {
        let conn = rustls::ServerConnection::new(Arc::clone(settings.rustls_config()))
            .map_err(TlsFailure::rustls)?;
        Ok(TlsSession::new(conn.into(), None))
    }

    fn new(conn: rustls::Connection, server_name: Option<String>) -> TlsSession {
        TlsSession {
            conn,
            server_name,
            established: false,
            peer_closed: false,
            close_sent: false,
            identity: None,
            records: RecordCursor::default(),
            cipher: bytes::BytesMut::new(),
            early: bytes::BytesMut::new(),
        }
    }

    /// Feeds ciphertext and hands what it brings to `plain`, in order.
    /// After the peer's `close_notify` nothing more is read.
    pub(crate) fn read(
        &mut self,
        mut data: &[u8],
        mut plain: impl FnMut(Plain<'_>),
    ) -> Result<(), TlsFailure> {
        self.records.feed(data);
        while !data.is_empty() && !self.peer_closed {
            // As much as rustls's buffer takes (a record and then some),
            // then the records in it, at once.
            let mut took = 0;
            while !data.is_empty() {
                match self.conn.read_tls(&mut data) {
                    Ok(0) => break,
                    Ok(n) => took += n,
                    Err(_) if took > 0 => break,
                    // Nothing taken into an empty buffer: a record too
                    // large, or worse.
                    Err(e) => return Err(TlsError::Protocol(e.to_string()).into()),
                }
            }
            if took == 0 {
                break;
            }
            if let Err(e) = self.conn.process_new_packets() {
                return Err(TlsFailure {
                    reason: self.error(&e),
                    source: Some(Box::new(e)),
                });
            }
            if !self.established && !self.conn.is_handshaking() {
                self.established = true;
                let certs: Vec<_> = self
                    .conn
                    .peer_certificates()
                    .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                    .unwrap_or_default();
                self.identity = PeerIdentity::new(certs);
                plain(Plain::Established);
            }
            loop {
                let mut reader = self.conn.reader();
                match reader.fill_buf() {
                    Ok([]) => {
                        self.peer_closed = true;
                        break;
                    }
                    Ok(chunk) => {
                        let n = chunk.len();
                        plain(Plain::Data(chunk));
                        reader.consume(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    // The end of the bytes without close_notify: the
                    // connection's rules say what that means.
                    Err(_) => break,
                }
            }
        }
        Ok(())
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

    /// Encrypts as much of `plain` as rustls takes now (its buffer is
    /// bounded); returns how much.
    pub(crate) fn encrypt(&mut self, plain: &[u8]) -> usize {
        // Writing to rustls's own buffer cannot fail.
        self.conn.writer().write(plain).unwrap_or(0)
    }

    /// As [`encrypt`](Self::encrypt), from several slices in order, into
    /// records that span them (nothing is copied to join them first).
    pub(crate) fn encrypt_vectored(&mut self, plain: &[io::IoSlice<'_>]) -> usize {
        self.conn.writer().write_vectored(plain).unwrap_or(0)
    }

    /// `true` while rustls has ciphertext to send.
    pub(crate) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Hands ciphertext to `out` (a socket that takes what it can, or a
    /// buffer): as [`Write::write`], `Ok(0)` when there is none.
    pub(crate) fn write_tls(&mut self, out: &mut dyn Write) -> io::Result<usize> {
        self.conn.write_tls(out)
    }

    /// Queues our `close_notify` (once, and only in an established session).
    pub(crate) fn send_close_notify(&mut self) {
        if !self.close_sent {
            self.close_sent = true;
            if self.established {
                self.conn.send_close_notify();
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
