//! Certificates made on the spot with rcgen: a CA, and certificates it
//! signs for servers and clients. Shared by `make_certs`, the demo and the
//! tests.
#![allow(dead_code)]

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate and its private key, in PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate authority of our own.
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// What a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

impl Authority {
    /// A new CA named `name` (its common name), with a fresh key.
    pub fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("a key");
        Authority {
            issuer: CertifiedIssuer::self_signed(params, key).expect("a CA certificate"),
        }
    }

    /// The CA's certificate, in PEM: what the other side trusts.
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `names` (DNS names or IP addresses), valid from
    /// 1975 to 4096.
    pub fn issue(&self, role: Role, common_name: &str, names: &[&str]) -> Issued {
        self.issue_valid(role, common_name, names, (1975, 4096))
    }

    /// A certificate valid from the start of year `from` to the start of
    /// year `to` (an expired one: both in the past).
    pub fn issue_valid(
        &self,
        role: Role,
        common_name: &str,
        names: &[&str],
        (from, to): (i32, i32),
    ) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("names");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![match role {
            Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        let key = KeyPair::generate().expect("a key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// Everything a mutual-TLS chat needs: a CA, a server certificate for
/// `localhost`, `127.0.0.1` and `::1`, and a client certificate.
pub struct Kit {
    pub ca: Authority,
    pub server: Issued,
    pub client: Issued,
}

impl Kit {
    pub fn new(client_name: &str) -> Kit {
        let ca = Authority::new("converse example CA");
        let server = ca.issue(
            Role::Server,
            "localhost",
            &["localhost", "127.0.0.1", "::1"],
        );
        let client = ca.issue(Role::Client, client_name, &[client_name]);
        Kit { ca, server, client }
    }
}
