//! TLS (`tls://`, and below `wss://` and NATS where the server requires
//! it; feature `tls`): rustls with the ring provider, driven sans-IO by the
//! connection, the same for every driver.
//!
//! * A client verifies the server's certificate against Mozilla's roots
//!   ([`TlsClient::new`]) or a CA of your own ([`TlsClient::trusting_ca_pem`]),
//!   for the host of the URL it connects to: a DNS name, or an IP address
//!   (`tls://127.0.0.1:8443` checks the certificate's IP addresses).
//! * A server presents a certificate chain and key from PEM
//!   ([`TlsServer::from_pem`], [`TlsServer::from_pem_files`]).
//! * Mutual TLS: a server requires (or accepts) client certificates signed
//!   by a CA ([`TlsServer::require_client_certs`]); a client presents one
//!   ([`TlsClient::with_identity_pem`]); the conversation then knows the
//!   verified peer ([`PeerIdentity`]).
//! * Your own `rustls` configurations are taken as they are
//!   ([`TlsClient::from_rustls`], [`TlsServer::from_rustls`]).
//!
//! Failures say why in one line ([`TlsError`]): unknown issuer, name
//! mismatch, expired, no client certificate, not TLS at all …; settings
//! that cannot be used are refused when given ([`CertificateError`]).

pub(crate) mod error;
pub(crate) mod session;
mod settings;

pub use error::{CertificateError, TlsError};
pub use settings::{PeerIdentity, TlsClient, TlsServer};

/// The server name to verify for `host` (a DNS name, or an IP address,
/// with or without brackets).
pub(crate) fn server_name(
    host: &str,
) -> Result<rustls::pki_types::ServerName<'static>, crate::addr::AddrError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    rustls::pki_types::ServerName::try_from(bare.to_owned())
        .map_err(|_| crate::addr::AddrError::new(host, "not a DNS name or an IP address"))
}
