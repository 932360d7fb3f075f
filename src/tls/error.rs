//! Why TLS failed: in a handshake or a session ([`TlsError`]), or in a
//! certificate, key or CA given to the settings ([`CertificateError`]).

use std::fmt;

/// A certificate, key or CA that cannot be used (unreadable, not PEM, not
/// a certificate, a key that does not match), refused when it is given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct CertificateError {
    /// Which file or text.
    pub what: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Why a TLS conversation failed: one reason, in one line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsError {
    /// The peer's certificate is not signed by a CA this side trusts.
    UnknownIssuer,
    /// The server's certificate is not valid for the name connected to.
    NameMismatch {
        /// The name (or IP address) connected to.
        expected: String,
        /// The names the certificate is valid for.
        presented: Vec<String>,
    },
    /// The peer's certificate has expired.
    Expired,
    /// The peer's certificate is not valid yet.
    NotYetValid,
    /// Another fault of the peer's certificate (as rustls names it).
    BadCertificate(String),
    /// The server requires a client certificate, and the client sent none.
    NoClientCertificate,
    /// The peer refused the handshake with a fatal alert (it does not trust
    /// our certificate, wanted one we did not send …): the alert's name.
    Refused(String),
    /// The bytes are not TLS: plaintext, an HTTP request, garbage.
    NotTls,
    /// The handshake did not finish within the handshake timeout.
    HandshakeTimeout,
    /// The peer closed the connection during the handshake.
    ClosedDuringHandshake,
    /// Any other violation of the protocol (as rustls names it).
    Protocol(String),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::UnknownIssuer => {
                f.write_str("unknown issuer: the certificate is not signed by a CA trusted here")
            }
            TlsError::NameMismatch {
                expected,
                presented,
            } => write!(
                f,
                "name mismatch: the certificate is not valid for {expected} (it is for {})",
                if presented.is_empty() {
                    "no name".to_owned()
                } else {
                    presented.join(", ")
                }
            ),
            TlsError::Expired => f.write_str("the certificate has expired"),
            TlsError::NotYetValid => f.write_str("the certificate is not valid yet"),
            TlsError::BadCertificate(why) => write!(f, "bad certificate: {why}"),
            TlsError::NoClientCertificate => {
                f.write_str("no client certificate: this server requires one")
            }
            TlsError::Refused(alert) => write!(f, "the peer refused the handshake: {alert}"),
            TlsError::NotTls => f.write_str("not TLS: the peer sent plaintext or garbage"),
            TlsError::HandshakeTimeout => f.write_str("the handshake did not finish in time"),
            TlsError::ClosedDuringHandshake => {
                f.write_str("the peer closed the connection during the handshake")
            }
            TlsError::Protocol(why) => write!(f, "protocol error: {why}"),
        }
    }
}

/// A TLS failure inside the crate: the reason, and rustls's error where
/// the reason came from one (it becomes [`crate::Error::Tls`]'s source).
#[derive(Debug)]
pub(crate) struct TlsFailure {
    pub(crate) reason: TlsError,
    pub(crate) source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl TlsFailure {
    /// rustls's error, and the reason it means.
    pub(crate) fn rustls(e: rustls::Error) -> TlsFailure {
        TlsFailure {
            reason: TlsError::from_rustls(&e),
            source: Some(Box::new(e)),
        }
    }

    /// The conversation's error, naming the peer.
    pub(crate) fn at(self, addr: crate::Addr) -> crate::Error {
        crate::Error::Tls {
            addr,
            reason: self.reason,
            source: self.source,
        }
    }
}

impl From<TlsError> for TlsFailure {
    fn from(reason: TlsError) -> TlsFailure {
        TlsFailure {
            reason,
            source: None,
        }
    }
}

impl TlsError {
    /// The reason rustls gave, as one of these.
    pub(crate) fn from_rustls(e: &rustls::Error) -> TlsError {
        use rustls::{AlertDescription, CertificateError, Error as E, InvalidMessage};
        match e {
            E::InvalidCertificate(c) => match c {
                CertificateError::UnknownIssuer => TlsError::UnknownIssuer,
                CertificateError::NotValidForName => TlsError::NameMismatch {
                    expected: String::new(),
                    presented: Vec::new(),
                },
                CertificateError::NotValidForNameContext {
                    expected,
                    presented,
                } => TlsError::NameMismatch {
                    expected: expected.to_str().into_owned(),
                    presented: presented.clone(),
                },
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    TlsError::Expired
                }
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    TlsError::NotYetValid
                }
                other => TlsError::BadCertificate(format!("{other:?}")),
            },
            E::NoCertificatesPresented => TlsError::NoClientCertificate,
            E::AlertReceived(alert) => TlsError::Refused(match alert {
                AlertDescription::CertificateRequired => {
                    "it requires a client certificate (CertificateRequired)".to_owned()
                }
                AlertDescription::UnknownCA => {
                    "it does not trust our certificate's issuer (UnknownCA)".to_owned()
                }
                AlertDescription::BadCertificate => {
                    "it rejected our certificate (BadCertificate)".to_owned()
                }
                AlertDescription::CertificateExpired => {
                    "our certificate has expired (CertificateExpired)".to_owned()
                }
                other => format!("{other:?}"),
            }),
            E::InvalidMessage(
                InvalidMessage::InvalidContentType | InvalidMessage::UnknownProtocolVersion,
            ) => TlsError::NotTls,
            other => TlsError::Protocol(other.to_string()),
        }
    }
}
