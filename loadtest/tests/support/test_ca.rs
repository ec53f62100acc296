//! A throwaway certificate authority for TLS tests (rcgen), written as PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

/// A throwaway CA and a server certificate for `localhost` and `127.0.0.1`, as PEM files.
pub struct TestCa {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path) -> TestCa {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "edgeload test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "edgeload test server");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).unwrap();
            path
        };
        TestCa {
            ca: write("ca.pem", ca_cert.pem()),
            cert: write("server.crt", cert.pem()),
            key: write("server.key", key.serialize_pem()),
        }
    }

    pub fn ca(&self) -> &str {
        self.ca.to_str().unwrap()
    }

    /// `edgeload serve`'s TLS configuration with this certificate.
    pub fn serve_config(&self) -> Arc<rustls::ServerConfig> {
        loadtest::tls::server_config(&self.cert, &self.key).unwrap()
    }
}
