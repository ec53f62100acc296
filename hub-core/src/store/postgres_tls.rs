//! TLS to the state database, with libpq's connection parameters and meanings, so that a
//! `state.url` written for `psql` works here too:
//!
//! | `sslmode` | TLS | the server's certificate |
//! | --- | --- | --- |
//! | `disable` | never | — |
//! | `prefer` (default) | when the server offers it | not checked¹ |
//! | `require` | always | not checked¹ |
//! | `verify-ca` | always | chains to `sslrootcert` |
//! | `verify-full` | always | chains to `sslrootcert` and names the host |
//!
//! ¹ As in libpq: encrypted but open to a man in the middle, unless a root certificate is given
//! (`sslrootcert`, or `~/.postgresql/root.crt` when it exists), and then the chain is checked as
//! for `verify-ca`. `sslrootcert=system` takes the system's roots and implies `verify-full`
//! (libpq 16's rule: the public CAs vouch for names, not for a database). `sslcert` and `sslkey`
//! give a client certificate.
//!
//! The Rust client (`tokio-postgres`) knows only `disable`, `prefer` and `require`, and no file
//! parameters, so these are taken out of the URL here, and the checks are rustls's.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ::postgres::Socket;
use ::postgres::config::SslMode as WireMode;
use ::postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use config::{ClientTls, TlsVersions};
use proxy::request_path::percent_decode;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsConnector;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            // `allow` tries plain text first; TLS when the server offers it is as safe and closer.
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }

    /// What the client library is told: it only decides whether TLS is asked for and required.
    pub fn wire(self) -> WireMode {
        match self {
            SslMode::Disable => WireMode::Disable,
            SslMode::Prefer => WireMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => WireMode::Require,
        }
    }
}

/// Where the server's certificate must chain to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RootCert {
    File(PathBuf),
    System,
}

/// The TLS parameters of a `state.url`, taken out of it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsParams {
    mode: Option<SslMode>,
    root_cert: Option<RootCert>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// Splits `sslmode`, `sslrootcert`, `sslcert` and `sslkey` out of a `postgres://` URL's query:
/// the URL without them, for the client library, and the parameters. A `key=value` connection
/// string is returned as it is (the client library reads its `sslmode`).
pub fn split_url(url: &str) -> Result<(String, TlsParams), String> {
    let mut params = TlsParams::default();
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let Some((base, query)) = url.split_once('?').filter(|_| is_url) else {
        return Ok((url.to_owned(), params));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = || {
            percent_decode(value)
                .map(|v| v.into_owned())
                .map_err(|_| format!("{key}: malformed percent-encoding"))
        };
        match key {
            "sslmode" => params.mode = Some(SslMode::parse(&value()?)?),
            "sslrootcert" => {
                params.root_cert = Some(match value()?.as_str() {
                    "system" => RootCert::System,
                    path => RootCert::File(PathBuf::from(path)),
                })
            }
            "sslcert" => params.cert = Some(PathBuf::from(value()?)),
            "sslkey" => params.key = Some(PathBuf::from(value()?)),
            _ => kept.push(pair),
        }
    }
    let rest = match kept.is_empty() {
        true => base.to_owned(),
        false => format!("{base}?{}", kept.join("&")),
    };
    Ok((rest, params))
}

/// libpq's default root certificate, used when it exists and none is named.
fn default_root_cert() -> Option<PathBuf> {
    let path = Path::new(&std::env::var_os("HOME")?).join(".postgresql/root.crt");
    path.is_file().then_some(path)
}

impl TlsParams {
    /// The mode to connect with (from the URL, or `wire` as the client library read it from a
    /// `key=value` string) and the connector that does its checks.
    pub fn connector(&self, wire: WireMode) -> Result<(SslMode, PgTls), String> {
        let mode = self.mode.unwrap_or(match (wire, &self.root_cert) {
            (_, Some(RootCert::System)) => SslMode::VerifyFull,
            (WireMode::Disable, _) => SslMode::Disable,
            (WireMode::Require, _) => SslMode::Require,
            _ => SslMode::Prefer,
        });
        if self.root_cert == Some(RootCert::System) && mode != SslMode::VerifyFull {
            return Err(format!(
                "sslrootcert=system needs sslmode=verify-full (the system's CAs vouch for host names), not {mode:?}"
            ));
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err("sslcert and sslkey go together: give both, or neither".to_owned());
        }
        let root = match &self.root_cert {
            Some(RootCert::File(path)) => Some(path.clone()),
            Some(RootCert::System) => None,
            None => default_root_cert(),
        };
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull)
            && root.is_none()
            && self.root_cert != Some(RootCert::System)
        {
            return Err(format!(
                "sslmode={} needs the CA to check the server with: sslrootcert=/path/to/ca.pem, or sslrootcert=system",
                if mode == SslMode::VerifyCa {
                    "verify-ca"
                } else {
                    "verify-full"
                }
            ));
        }
        if mode == SslMode::Disable {
            return Ok((mode, PgTls(None)));
        }
        let tls = ClientTls {
            ca: root.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            // Without a root certificate, prefer and require encrypt without checking (libpq).
            insecure: root.is_none() && self.root_cert.is_none(),
        };
        let built = match mode {
            SslMode::VerifyFull => proxy::tls::client_config(&tls, TlsVersions::Any),
            _ if tls.insecure => proxy::tls::client_config(&tls, TlsVersions::Any),
            _ => proxy::tls::client_config_any_name(&tls, TlsVersions::Any),
        };
        let config = built.map_err(|e| format!("TLS: {e}"))?;
        Ok((mode, PgTls(Some(config))))
    }
}

/// The client library's TLS hook, on rustls. `None` when `sslmode=disable` (never asked then).
#[derive(Clone)]
pub struct PgTls(Option<Arc<rustls::ClientConfig>>);

impl MakeTlsConnect<Socket> for PgTls {
    type Stream = PgTlsStream;
    type TlsConnect = PgHandshake;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> io::Result<PgHandshake> {
        // A Unix socket has no host name, and its server never offers TLS: a missing name is
        // an error only if a handshake is attempted.
        Ok(PgHandshake {
            config: self.0.clone(),
            name: ServerName::try_from(host.to_owned()).ok(),
        })
    }
}

pub struct PgHandshake {
    config: Option<Arc<rustls::ClientConfig>>,
    name: Option<ServerName<'static>>,
}

impl TlsConnect<Socket> for PgHandshake {
    type Stream = PgTlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            let config = self
                .config
                .ok_or_else(|| io::Error::other("TLS was asked for with sslmode=disable"))?;
            let name = self.name.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "no host name or address to check the server's certificate against",
                )
            })?;
            Ok(PgTlsStream(TlsConnector::from(config).connect(name, socket).await?))
        })
    }
}

/// A TLS session with the database.
pub struct PgTlsStream(tokio_rustls::client::TlsStream<Socket>);

impl TlsStream for PgTlsStream {
    /// `tls-server-end-point` (RFC 5929): a hash of the server's certificate, to which a password
    /// login (`SCRAM-SHA-256-PLUS`) is then bound, so that a man in the middle holding another
    /// certificate cannot relay it. Used as libpq uses it: `channel_binding=prefer` (the default)
    /// when the server offers it, `require` in the URL to insist, `disable` never. None when the
    /// certificate's signature names no hash this knows (RSA-PSS, Ed25519): SCRAM then goes
    /// unbound, as PostgreSQL cannot bind those either.
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        match session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| server_end_point(cert.as_ref()))
        {
            Some(hash) => ChannelBinding::tls_server_end_point(hash),
            None => ChannelBinding::none(),
        }
    }
}

/// RFC 5929 §4.1: the certificate hashed with its signature's hash function, SHA-256 in place of
/// MD5 and SHA-1; `None` for a signature whose hash is not named by its algorithm.
fn server_end_point(der: &[u8]) -> Option<Vec<u8>> {
    // The DER content bytes of the signature algorithms' object identifiers.
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01]; // 1.2.840.113549.1.1
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01]; // 1.2.840.10045.4.1
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03]; // 1.2.840.10045.4.3
    let oid = signature_algorithm(der)?;
    let hash = if oid == ECDSA_SHA1 {
        &ring::digest::SHA256
    } else if let Some(&[last]) = oid.strip_prefix(RSA) {
        match last {
            4 | 5 | 11 => &ring::digest::SHA256, // MD5, SHA-1, SHA-256 with RSA
            12 => &ring::digest::SHA384,
            13 => &ring::digest::SHA512,
            _ => return None, // RSA-PSS (10) carries its hash in parameters
        }
    } else if let Some(&[last]) = oid.strip_prefix(ECDSA_SHA2) {
        match last {
            2 => &ring::digest::SHA256,
            3 => &ring::digest::SHA384,
            4 => &ring::digest::SHA512,
            _ => return None,
        }
    } else {
        return None;
    };
    Some(ring::digest::digest(hash, der).as_ref().to_vec())
}

/// The object identifier of a certificate's `signatureAlgorithm` (RFC 5280 §4.1:
/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier,
/// signatureValue }`), as its DER content bytes.
fn signature_algorithm(der: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    let (certificate, _) = der_element(der, SEQUENCE)?;
    let (_tbs, rest) = der_element(certificate, SEQUENCE)?;
    let (algorithm, _) = der_element(rest, SEQUENCE)?;
    let (oid, _) = der_element(algorithm, OID)?;
    Some(oid)
}

/// The DER element with `tag` at the start of `input`: its content, and what follows it.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    if found != tag {
        return None;
    }
    let (len, rest) = match first {
        short @ 0..0x80 => (short as usize, rest),
        long => {
            let bytes = usize::from(long & 0x7f);
            if bytes == 0 || bytes > 4 || rest.len() < bytes {
                return None;
            }
            let (len, rest) = rest.split_at(bytes);
            (len.iter().fold(0usize, |n, b| n << 8 | usize::from(*b)), rest)
        }
    };
    (rest.len() >= len).then(|| rest.split_at(len))
}

impl AsyncRead for PgTlsStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PgTlsStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_end_point_is_the_certificate_hashed_as_it_was_signed() {
        let certificate = |algorithm: &'static rcgen::SignatureAlgorithm| {
            let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
            let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
            params.self_signed(&key).unwrap().der().to_vec()
        };
        let p256 = certificate(&rcgen::PKCS_ECDSA_P256_SHA256);
        let expected = ring::digest::digest(&ring::digest::SHA256, &p256);
        assert_eq!(server_end_point(&p256).as_deref(), Some(expected.as_ref()));
        let p384 = certificate(&rcgen::PKCS_ECDSA_P384_SHA384);
        let expected = ring::digest::digest(&ring::digest::SHA384, &p384);
        assert_eq!(server_end_point(&p384).as_deref(), Some(expected.as_ref()));
        // Ed25519 names no hash: no binding rather than a wrong one.
        assert_eq!(server_end_point(&certificate(&rcgen::PKCS_ED25519)), None);
        for garbage in [&[][..], &[0x30], &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], &p256[..40]] {
            assert_eq!(server_end_point(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn tls_parameters_leave_the_url_and_the_others_stay() {
        let (url, params) = split_url(
            "postgres://u:p@db:5432/hub?sslmode=verify-full&application_name=x&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(url, "postgres://u:p@db:5432/hub?application_name=x&connect_timeout=3");
        assert_eq!(params.mode, Some(SslMode::VerifyFull));
        assert_eq!(params.root_cert, Some(RootCert::File("/etc/ca.pem".into())));

        let (url, params) = split_url("postgres://db/hub?sslmode=require").unwrap();
        assert_eq!(
            (url.as_str(), params.mode),
            ("postgres://db/hub", Some(SslMode::Require))
        );
        let kv = "host=db sslmode=require";
        assert_eq!(split_url(kv).unwrap(), (kv.to_owned(), TlsParams::default()));
    }

    #[test]
    fn a_mode_or_parameter_that_cannot_be_honoured_is_refused_by_name() {
        let err = split_url("postgres://db/hub?sslmode=verify_full").unwrap_err();
        assert!(err.contains("sslmode=verify_full"), "{err}");

        let (_, params) = split_url("postgres://db/hub?sslrootcert=system&sslmode=require").unwrap();
        let err = params.connector(WireMode::Prefer).err().unwrap();
        assert!(err.contains("verify-full"), "{err}");

        let (_, params) = split_url("postgres://db/hub?sslcert=/c.pem").unwrap();
        assert!(params.connector(WireMode::Prefer).err().unwrap().contains("sslkey"));

        let (_, params) = split_url("postgres://db/hub?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem").unwrap();
        let err = params.connector(WireMode::Prefer).err().unwrap();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }

    #[test]
    fn system_roots_mean_verify_full_and_no_mode_means_prefer() {
        let (_, params) = split_url("postgres://db/hub?sslrootcert=system").unwrap();
        assert_eq!(params.connector(WireMode::Prefer).unwrap().0, SslMode::VerifyFull);
        let (_, params) = split_url("postgres://db/hub").unwrap();
        assert_eq!(params.connector(WireMode::Prefer).unwrap().0, SslMode::Prefer);
        let (_, params) = split_url("postgres://db/hub?sslmode=disable").unwrap();
        let (mode, tls) = params.connector(WireMode::Prefer).unwrap();
        assert_eq!(mode, SslMode::Disable);
        assert!(tls.0.is_none());
        assert_eq!(SslMode::VerifyCa.wire(), WireMode::Require);
    }
}
