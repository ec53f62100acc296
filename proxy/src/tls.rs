//! TLS settings from PEM files: the public and API listeners (rustls servers, with optional client
//! certificates) and connections to `https` targets (rustls client, optional client certificate,
//! system roots or `--client-ssl-ca`).
//!
//! Encrypted private keys are refused with a clear message: rustls reads only unencrypted PEM, so
//! `CONFIGPROXY_SSL_KEY_PASSPHRASE` cannot be honoured; decrypt the key with
//! `openssl pkey -in enc.key -out plain.key` instead.

use std::path::Path;
use std::sync::Arc;

use config::{ClientTls, ServerTls, TlsVersions};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} from {path}: {why}")]
    File {
        what: &'static str,
        path: String,
        why: String,
    },
    #[error(
        "{path} holds an encrypted private key; edgeproxy reads only unencrypted PEM keys (decrypt it with `openssl pkey -in KEY -out PLAIN`)"
    )]
    EncryptedKey { path: String },
    #[error("invalid TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid client-certificate settings: {0}")]
    Verifier(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

static TLS12_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS12];
static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];

fn versions(v: TlsVersions) -> &'static [&'static rustls::SupportedProtocolVersion] {
    match v {
        TlsVersions::Any => rustls::DEFAULT_VERSIONS,
        TlsVersions::Tls12Only => &TLS12_ONLY,
        TlsVersions::Tls13Only => &TLS13_ONLY,
    }
}

fn certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |why: String| TlsError::File {
        what,
        path: path.display().to_string(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate found".to_owned()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = std::fs::read_to_string(path).map_err(|e| TlsError::File {
        what: "private key",
        path: path.display().to_string(),
        why: e.to_string(),
    })?;
    if text.contains("ENCRYPTED") {
        return Err(TlsError::EncryptedKey {
            path: path.display().to_string(),
        });
    }
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| TlsError::File {
        what: "private key",
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs(path, "CA certificates")? {
        store.add(cert)?;
    }
    Ok(store)
}

/// A server configuration for a listener, advertising `alpn` (e.g. `h2`, `http/1.1`).
pub fn server_config(tls: &ServerTls, v: TlsVersions, alpn: &[&[u8]]) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (Some(key_path), Some(cert_path)) = (&tls.key, &tls.cert) else {
        return Err(TlsError::Verifier(
            "a TLS listener needs both a key and a certificate".to_owned(),
        ));
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider()).with_protocol_versions(versions(v))?;
    let builder = match (&tls.ca, tls.request_cert) {
        (Some(ca), true) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider());
            let verifier = if tls.reject_unauthorized {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| TlsError::Verifier(e.to_string()))?)
        }
        (None, true) => {
            return Err(TlsError::Verifier(
                "requesting client certificates needs a CA file to check them against".to_owned(),
            ));
        }
        (_, false) => builder.with_no_client_auth(),
    };
    let key = key(key_path)?;
    let mut config = builder.with_single_cert(certs(cert_path, "certificate chain")?, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The client configuration for `https` targets.
pub fn client_config(tls: &ClientTls, v: TlsVersions) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider()).with_protocol_versions(versions(v))?;
    let builder = if tls.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        let store = match &tls.ca {
            Some(ca) => roots(ca)?,
            None => {
                let mut store = RootCertStore::empty();
                // Unreadable system certificates are not fatal: https targets with a private CA
                // pass --client-ssl-ca, and public ones fail loudly at connect time.
                let found = rustls_native_certs::load_native_certs();
                store.add_parsable_certificates(found.certs);
                store
            }
        };
        builder.with_root_certificates(store)
    };
    let config = match (&tls.key, &tls.cert) {
        (Some(key_path), Some(cert_path)) => {
            builder.with_client_auth_cert(certs(cert_path, "client certificate chain")?, key(key_path)?)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// Like [`client_config`], but the server's certificate is checked against `tls.ca` (or the
/// system's roots) without its name: what libpq calls `sslmode=verify-ca`, for servers reached at
/// an address their certificate does not name. `tls.insecure` is not read.
pub fn client_config_any_name(tls: &ClientTls, v: TlsVersions) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let store = match &tls.ca {
        Some(ca) => roots(ca)?,
        None => {
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            store
        }
    };
    let chain = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider())
        .build()
        .map_err(|e| TlsError::Verifier(e.to_string()))?;
    let strict = ClientTls {
        insecure: false,
        ..tls.clone()
    };
    let mut config = Arc::unwrap_or_clone(client_config(&strict, v)?);
    config.dangerous().set_certificate_verifier(Arc::new(AnyName(chain)));
    Ok(Arc::new(config))
}

/// The chain and the signatures checked, the name not: [`client_config_any_name`].
#[derive(Debug)]
struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The name is checked last, once the chain is known good: a name error means a trusted
        // certificate issued for another name.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `--insecure`: accept any upstream certificate (signatures are still checked for form).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
