//! TLS on the switchboard: rustls's connection between a non-blocking
//! socket and the framing engines, driven by readiness. Handshakes are
//! bytes in and bytes out like everything else, so a slow or hostile peer
//! never holds up the serving thread; each one is bounded by its own
//! handshake timer.

use std::io::{self, BufRead, Write};

use socket2::Socket;

use super::ListenerId;
use crate::addr::Addr;
use crate::engine::outbound::Outbound;
use crate::engine::records::RecordCursor;
use crate::error::Error;
use crate::tls::{PeerIdentity, TlsError};
use crate::transport::sockopt;

/// A conversation's TLS session.
pub(super) struct TlsState {
    conn: rustls::Connection,
    /// The handshake is over.
    established: bool,
    /// The peer's `close_notify` has been read.
    peer_closed: bool,
    /// Our `close_notify` has been queued.
    close_sent: bool,
    /// Accepted by this listener and not reported yet: it is, once the
    /// handshake is over.
    listener: Option<ListenerId>,
    identity: Option<PeerIdentity>,
    /// Where the ciphertext stands between records.
    records: RecordCursor,
}

/// What decrypting brought, in order.
pub(super) enum Plain<'a> {
    /// The handshake just finished.
    Established,
    /// Application data.
    Data(&'a [u8]),
}

struct NonBlocking<'a>(&'a Socket);

impl Write for NonBlocking<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        sockopt::send(self.0, buf)
    }
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        sockopt::send_vectored(self.0, bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TlsState {
    /// A server session for a connection just accepted by `listener`.
    pub(super) fn accepted(
        server: &crate::tls::TlsServer,
        listener: ListenerId,
    ) -> Result<TlsState, rustls::Error> {
        let conn = rustls::ServerConnection::new(std::sync::Arc::clone(server.rustls_config()))?;
        Ok(TlsState {
            conn: conn.into(),
            established: false,
            peer_closed: false,
            close_sent: false,
            listener: Some(listener),
            identity: None,
            records: RecordCursor::default(),
        })
    }

    /// A session taken over from a blocking conversation.
    pub(super) fn adopted(
        conn: rustls::Connection,
        established: bool,
        peer_closed: bool,
        identity: Option<PeerIdentity>,
    ) -> TlsState {
        TlsState {
            conn,
            established,
            peer_closed,
            close_sent: false,
            listener: None,
            identity,
            records: RecordCursor::default(),
        }
    }

    /// Feeds ciphertext; hands what it brings to `plain`, in order. Stops
    /// early (returning `Ok`) when `plain` says so with `false`.
    pub(super) fn absorb(
        &mut self,
        mut data: &[u8],
        peer: &Addr,
        mut plain: impl FnMut(Plain<'_>) -> bool,
    ) -> Result<(), Error> {
        self.records.feed(data);
        while !data.is_empty() && !self.peer_closed {
            match self.conn.read_tls(&mut data) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    return Err(self.failure(peer, TlsError::Protocol(e.to_string())));
                }
            }
            if let Err(e) = self.conn.process_new_packets() {
                let reason = match TlsError::from_rustls(&e) {
                    TlsError::NameMismatch {
                        expected,
                        presented,
                    } if expected.is_empty() => TlsError::NameMismatch {
                        expected: peer.to_string(),
                        presented,
                    },
                    other => other,
                };
                return Err(self.failure(peer, reason));
            }
            if !self.established && !self.conn.is_handshaking() {
                self.established = true;
                let certs: Vec<_> = self
                    .conn
                    .peer_certificates()
                    .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                    .unwrap_or_default();
                self.identity = PeerIdentity::new(certs);
                if !plain(Plain::Established) {
                    return Ok(());
                }
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
                        let go_on = plain(Plain::Data(chunk));
                        reader.consume(n);
                        if !go_on {
                            return Ok(());
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => break, // the end without close_notify: seen by the caller
                }
            }
        }
        Ok(())
    }

    fn failure(&mut self, peer: &Addr, reason: TlsError) -> Error {
        Error::Tls {
            addr: peer.clone(),
            reason,
        }
    }

    /// Moves queued plaintext into the session (once the handshake is
    /// over), as far as its buffer takes it.
    pub(super) fn encrypt(&mut self, out: &mut Outbound) -> io::Result<()> {
        if !self.established || self.close_sent {
            return Ok(());
        }
        while !out.is_empty() {
            let n = self.conn.writer().write(out.pending())?;
            if n == 0 {
                break;
            }
            out.advance(n);
        }
        Ok(())
    }

    /// Writes ciphertext without waiting: `Ok(true)` when none is left,
    /// `Ok(false)` when the socket is full.
    pub(super) fn write(&mut self, socket: &Socket) -> io::Result<bool> {
        let mut w = NonBlocking(socket);
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut w) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    pub(super) fn is_established(&self) -> bool {
        self.established
    }

    /// The ciphertext so far ends between two records.
    pub(super) fn at_record_boundary(&self) -> bool {
        self.records.at_boundary()
    }

    pub(super) fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    pub(super) fn close_was_sent(&self) -> bool {
        self.close_sent
    }

    /// The listener that accepted it, until it is reported.
    pub(super) fn pending_listener(&self) -> Option<ListenerId> {
        self.listener
    }

    pub(super) fn clear_listener(&mut self) {
        self.listener = None;
    }

    pub(super) fn identity(&self) -> Option<PeerIdentity> {
        self.identity.clone()
    }

    pub(super) fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Queues our `close_notify` (once).
    pub(super) fn send_close_notify(&mut self) {
        if !self.close_sent {
            self.close_sent = true;
            if self.established {
                self.conn.send_close_notify();
            }
        }
    }
}
