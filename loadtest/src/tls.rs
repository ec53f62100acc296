//! TLS for every edgeload client (HTTP, WebSocket, journey, admin API) and for `edgeload serve`.
//!
//! Clients verify the server's certificate against the system's roots, or only against the CA
//! certificates of `--cacert FILE` (as curl does), or not at all with `--insecure`. The client
//! configuration is built once per run and shared: a handshake costs one `TlsConnector::connect`.
//! ALPN is offered per client: `http/1.1`, or `h2` alone for `--http2`, so that an HTTPS run
//! never falls back silently to another protocol than the one asked for.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::error_kind::ErrorKind;

/// ALPN protocol id of HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// ALPN protocol id of HTTP/2 over TLS.
pub const ALPN_H2: &[u8] = b"h2";

/// How clients check servers, from `--insecure` and `--cacert`.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct TlsOptions {
    /// https/wss: accept any server certificate (self-signed, expired, wrong name). For tests only.
    #[arg(long, short = 'k')]
    pub insecure: bool,
    /// https/wss: trust only the CA certificates in this PEM file (a test CA) instead of the
    /// system's roots.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
}

/// Why TLS could not be set up. Each message names the file or setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} from {path}: {why}")]
    File {
        what: &'static str,
        path: String,
        why: String,
    },
    #[error("no trusted root certificates: the system store is empty or unreadable; pass --cacert FILE or --insecure")]
    NoRoots,
    #[error("invalid TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file; at least one.
fn read_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
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
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        what: "private key",
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

/// The server name a client sends (SNI) and checks the certificate against: a DNS name or an IP
/// address (IPv6 literals with or without their URL brackets).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).map_err(|_| TlsError::ServerName(host.to_owned()))
}

/// A client's TLS settings, built once and shared by every connection of a run.
#[derive(Clone)]
pub struct TlsClient {
    connector: tokio_rustls::TlsConnector,
    /// The server must choose one of the ALPN protocols offered (HTTP/2: a server that ignores
    /// ALPN speaks HTTP/1.1).
    alpn_required: bool,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient")
    }
}

impl TlsClient {
    /// A client that offers the `alpn` protocols, in order of preference; with `alpn_required`,
    /// a server that chooses none of them fails the handshake.
    pub fn new(options: &TlsOptions, alpn: &[&[u8]], alpn_required: bool) -> Result<TlsClient, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()?;
        let mut config = if options.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
                .with_no_client_auth()
        } else {
            builder
                .with_root_certificates(roots(options.cacert.as_deref())?)
                .with_no_client_auth()
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(TlsClient {
            alpn_required,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// The TLS handshake on an open TCP connection.
    pub async fn handshake(&self, name: ServerName<'static>, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector.connect(name, tcp).await
    }
}

/// The CA certificates of `cacert`, or the system's roots.
fn roots(cacert: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match cacert {
        Some(path) => {
            for cert in read_certs(path, "CA certificates (--cacert)")? {
                roots.add(cert).map_err(|e| TlsError::File {
                    what: "CA certificates (--cacert)",
                    path: path.display().to_string(),
                    why: e.to_string(),
                })?;
            }
        }
        None => {
            // Unreadable entries of the system store are skipped, as every TLS client does.
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(TlsError::NoRoots);
            }
        }
    }
    Ok(roots)
}

/// `--insecure`: every certificate is accepted; signatures are still checked, so the handshake
/// itself is the real one and costs what it costs with verification.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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

/// Whether an I/O error of a handshake is TLS itself refusing (a certificate not trusted, no
/// common protocol) rather than the connection failing.
pub fn is_tls_failure(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>())
}

/// A server configuration for `edgeload serve --tls-cert --tls-key`, offering `h2` and
/// `http/1.1` by ALPN.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(read_certs(cert, "certificate (--tls-cert)")?, read_key(key)?)?;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// A new client connection, and how long its TLS handshake took.
pub struct Opened {
    pub stream: Stream,
    /// From the TCP connection being established to the end of the TLS handshake; `None` for a
    /// plain connection.
    pub tls_handshake: Option<(Instant, Duration)>,
}

/// Opens a connection to `addr` (TCP_NODELAY on), with a TLS handshake when `tls` names the
/// server. A refused handshake is [`ErrorKind::Tls`]; so is a server that chose no ALPN protocol
/// when one is required.
pub async fn open(addr: SocketAddr, tls: Option<(&TlsClient, &ServerName<'static>)>) -> Result<Opened, ErrorKind> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| ErrorKind::from_connect(&e))?;
    let _ = tcp.set_nodelay(true);
    let Some((client, name)) = tls else {
        return Ok(Opened {
            stream: Stream::Plain(tcp),
            tls_handshake: None,
        });
    };
    let started = Instant::now();
    let stream = client.handshake(name.clone(), tcp).await.map_err(|e| {
        if is_tls_failure(&e) {
            ErrorKind::Tls
        } else {
            ErrorKind::from_io(&e)
        }
    })?;
    let took = started.elapsed();
    let (_, session) = stream.get_ref();
    if client.alpn_required && session.alpn_protocol().is_none() {
        return Err(ErrorKind::Tls);
    }
    Ok(Opened {
        stream: Stream::Tls(Box::new(stream)),
        tls_handshake: Some((started, took)),
    })
}

/// A client connection, plain or encrypted. The plain case stays a bare `TcpStream` underneath,
/// so a plain run pays one branch per call for TLS support.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}
