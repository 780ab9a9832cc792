//! A throwaway PKI for the TLS tests, made fresh by every run (rcgen): no private key is
//! checked in. One CA issues the gateway's server certificate and the sources' client
//! certificates; a second, unrelated CA issues a certificate the gateway must refuse.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, date_time_ymd,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate and its key, PEM.
#[derive(Debug, Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A CA that can issue certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca")
    }
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, name.to_owned());
        let issuer = CertifiedIssuer::self_signed(params, key).expect("CA");
        Self { issuer }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn issue(&self, names: &[&str], client: bool, expired: bool) -> Pem {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("x"));
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    pub fn server(&self) -> Pem {
        self.issue(&["localhost", "127.0.0.1"], false, false)
    }

    /// A client certificate whose SAN is `name`.
    pub fn client(&self, name: &str) -> Pem {
        self.issue(&[name], true, false)
    }

    /// A client certificate that expired in 2021.
    pub fn expired_client(&self, name: &str) -> Pem {
        self.issue(&[name], true, true)
    }
}

/// Write the gateway's TLS files into `dir` and return the `[tls]` config section.
pub fn tls_section(ca: &Ca, dir: &Path) -> String {
    let server = ca.server();
    std::fs::write(dir.join("server.pem"), &server.cert).expect("write");
    std::fs::write(dir.join("server.key"), &server.key).expect("write");
    std::fs::write(dir.join("sources-ca.pem"), ca.pem()).expect("write");
    format!(
        "\n[tls]\nlisten = \"127.0.0.1:0\"\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n",
        dir.join("server.pem").display().to_string(),
        dir.join("server.key").display().to_string(),
        dir.join("sources-ca.pem").display().to_string(),
    )
}

/// An HTTPS client trusting `ca`, presenting `identity` when given.
pub fn client(ca: &Ca, identity: Option<&Pem>) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.pem().as_bytes()) {
        roots.add(c.expect("ca pem")).expect("root");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some(pem) => {
            let chain = CertificateDer::pem_slice_iter(pem.cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("chain");
            let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).expect("key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .build()
        .expect("client")
}
