//! TLS settings: whom a client trusts, what a server presents, mutual TLS,
//! and the verified identity of the peer.
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
//! mismatch, expired, no client certificate, not TLS at all …

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::CertificateError;

type Result<T, E = CertificateError> = std::result::Result<T, E>;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn bad(what: impl Into<String>, reason: impl fmt::Display) -> CertificateError {
    CertificateError {
        what: what.into(),
        reason: reason.to_string(),
    }
}

/// Reads every certificate in PEM text (`what` names it in errors).
fn certs_pem(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(what, e))?;
    if certs.is_empty() {
        return Err(bad(
            what,
            "no certificate in it (expected -----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(certs)
}

fn key_pem(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| bad(what, e))
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| bad(path.display().to_string(), e))
}

fn roots_pem(pem: &[u8], what: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs_pem(pem, what)? {
        roots.add(cert).map_err(|e| bad(what, e))?;
    }
    Ok(roots)
}

/// What a client trusts and presents. Cheap to clone.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    roots: Option<Arc<RootCertStore>>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("roots", &self.roots.as_ref().map(|r| r.len()))
            .finish()
    }
}

impl Default for TlsClient {
    /// [`TlsClient::new`], made once per process and shared: every
    /// conversation that trusts the built-in roots shares one store.
    fn default() -> Self {
        static SHARED: std::sync::OnceLock<TlsClient> = std::sync::OnceLock::new();
        SHARED.get_or_init(TlsClient::new).clone()
    }
}

impl TlsClient {
    /// Trusts Mozilla's root certificates (the `webpki-roots` crate), as a
    /// browser would; no client certificate.
    pub fn new() -> TlsClient {
        let roots: RootCertStore = webpki_roots::TLS_SERVER_ROOTS.iter().cloned().collect();
        TlsClient::with_roots(Arc::new(roots), None).expect("the built-in roots make a config")
    }

    /// Trusts only the CA certificates in `pem` (PEM text): for servers
    /// whose certificates your own CA signed.
    pub fn trusting_ca_pem(pem: impl AsRef<[u8]>) -> Result<TlsClient> {
        let roots = roots_pem(pem.as_ref(), "the CA")?;
        TlsClient::with_roots(Arc::new(roots), None)
    }

    /// Trusts only the CA certificates in the PEM file at `path`.
    pub fn trusting_ca_file(path: impl AsRef<Path>) -> Result<TlsClient> {
        let path = path.as_ref();
        let roots = roots_pem(&read(path)?, &path.display().to_string())?;
        TlsClient::with_roots(Arc::new(roots), None)
    }

    /// Presents a client certificate (mutual TLS): the chain and the key, in
    /// PEM.
    pub fn with_identity_pem(
        self,
        chain: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
    ) -> Result<TlsClient> {
        let chain = certs_pem(chain.as_ref(), "the client certificate")?;
        let key = key_pem(key.as_ref(), "the client key")?;
        let roots = self.roots.ok_or_else(|| {
            bad(
                "the client certificate",
                "cannot be added to a rustls configuration of your own",
            )
        })?;
        TlsClient::with_roots(roots, Some((chain, key)))
    }

    /// Presents the client certificate in the PEM files `chain` and `key`.
    pub fn with_identity_files(
        self,
        chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsClient> {
        self.with_identity_pem(read(chain.as_ref())?, read(key.as_ref())?)
    }

    /// Your own rustls configuration, as it is (its verifier, its ALPN …).
    pub fn from_rustls(config: Arc<ClientConfig>) -> TlsClient {
        TlsClient {
            config,
            roots: None,
        }
    }

    /// The rustls configuration in use.
    pub fn rustls_config(&self) -> &Arc<ClientConfig> {
        &self.config
    }

    fn with_roots(
        roots: Arc<RootCertStore>,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<TlsClient> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("the TLS versions", e))?
            .with_root_certificates(Arc::clone(&roots));
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad("the client certificate", e))?,
        };
        Ok(TlsClient {
            config: Arc::new(config),
            roots: Some(roots),
        })
    }
}

/// What a server presents, and whether it asks for client certificates.
/// Cheap to clone.
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<ServerConfig>,
    /// The chain and key, kept to add client authentication later.
    identity: Option<Arc<Identity>>,
}

struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsServer")
    }
}

/// Whether a server asks for client certificates.
enum ClientAuth {
    None,
    Required(Arc<RootCertStore>),
    Optional(Arc<RootCertStore>),
}

impl TlsServer {
    /// Presents the certificate chain (end entity first) and private key
    /// in `chain` and `key` (PEM text; PKCS#8, RSA or EC keys).
    pub fn from_pem(chain: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> Result<TlsServer> {
        let chain = certs_pem(chain.as_ref(), "the server certificate")?;
        let key = key_pem(key.as_ref(), "the server key")?;
        TlsServer::build(Arc::new(Identity { chain, key }), ClientAuth::None)
    }

    /// Presents the chain and key in the PEM files at `chain` and `key`.
    pub fn from_pem_files(chain: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<TlsServer> {
        let (chain_path, key_path) = (chain.as_ref(), key.as_ref());
        let chain = certs_pem(&read(chain_path)?, &chain_path.display().to_string())?;
        let key = key_pem(&read(key_path)?, &key_path.display().to_string())?;
        TlsServer::build(Arc::new(Identity { chain, key }), ClientAuth::None)
    }

    /// Mutual TLS: requires every client to present a certificate signed by
    /// a CA in `ca` (PEM); one without is refused in the handshake.
    pub fn require_client_certs(self, ca: impl AsRef<[u8]>) -> Result<TlsServer> {
        let roots = Arc::new(roots_pem(ca.as_ref(), "the client CA")?);
        self.rebuild(ClientAuth::Required(roots))
    }

    /// Mutual TLS, optional: a client may present a certificate (verified
    /// against `ca`) or none; [`PeerIdentity`] says which.
    pub fn accept_client_certs(self, ca: impl AsRef<[u8]>) -> Result<TlsServer> {
        let roots = Arc::new(roots_pem(ca.as_ref(), "the client CA")?);
        self.rebuild(ClientAuth::Optional(roots))
    }

    /// Requires client certificates signed by the CA in the PEM file at
    /// `path`.
    pub fn require_client_certs_file(self, path: impl AsRef<Path>) -> Result<TlsServer> {
        let pem = read(path.as_ref())?;
        self.require_client_certs(pem)
    }

    /// Your own rustls configuration, as it is.
    pub fn from_rustls(config: Arc<ServerConfig>) -> TlsServer {
        TlsServer {
            config,
            identity: None,
        }
    }

    /// The rustls configuration in use.
    pub fn rustls_config(&self) -> &Arc<ServerConfig> {
        &self.config
    }

    fn rebuild(self, auth: ClientAuth) -> Result<TlsServer> {
        let identity = self.identity.ok_or_else(|| {
            bad(
                "client certificates",
                "cannot be required by a rustls configuration of your own",
            )
        })?;
        TlsServer::build(identity, auth)
    }

    fn build(identity: Arc<Identity>, auth: ClientAuth) -> Result<TlsServer> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("the TLS versions", e))?;
        let builder = match auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Required(roots) => {
                let verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                        .build()
                        .map_err(|e| bad("the client CA", e))?;
                builder.with_client_cert_verifier(verifier)
            }
            ClientAuth::Optional(roots) => {
                let verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| bad("the client CA", e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|e| bad("the server certificate and key", e))?;
        Ok(TlsServer {
            config: Arc::new(config),
            identity: Some(identity),
        })
    }
}

/// The verified identity of the peer: its certificate chain (end entity
/// first), as the handshake checked it.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    certificates: Vec<CertificateDer<'static>>,
}

impl fmt::Debug for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerIdentity")
            .field("dns_names", &self.dns_names())
            .finish()
    }
}

impl PeerIdentity {
    pub(crate) fn new(certificates: Vec<CertificateDer<'static>>) -> Option<PeerIdentity> {
        (!certificates.is_empty()).then_some(PeerIdentity { certificates })
    }

    /// The chain the peer presented, end entity first (DER).
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// The DNS names the peer's certificate is valid for (its subject
    /// alternative names of that kind).
    pub fn dns_names(&self) -> Vec<String> {
        match webpki::EndEntityCert::try_from(&self.certificates[0]) {
            Ok(cert) => cert.valid_dns_names().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// `true` when the peer's certificate is valid for `name`: a DNS name
    /// (wildcards as TLS has them) or an IP address, checked the way the
    /// handshake checks a server's name.
    pub fn is_valid_for(&self, name: &str) -> bool {
        let Ok(name) = ServerName::try_from(name.trim_start_matches('[').trim_end_matches(']'))
        else {
            return false;
        };
        match webpki::EndEntityCert::try_from(&self.certificates[0]) {
            Ok(cert) => cert.verify_is_valid_for_subject_name(&name).is_ok(),
            Err(_) => false,
        }
    }
}
