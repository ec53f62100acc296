//! The byte stream under a client connection of the public listener.

use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::server::TlsStream;

pub enum ClientIo {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<TlsStream<TcpStream>>),
    TlsUnix(Box<TlsStream<UnixStream>>),
}

crate::delegate_async_io!(ClientIo {
    Tcp,
    Unix,
    Tls,
    TlsUnix
});

impl ClientIo {
    /// Whether TLS negotiated HTTP/2 (ALPN `h2`).
    pub fn negotiated_h2(&self) -> bool {
        let alpn = match self {
            ClientIo::Tcp(_) | ClientIo::Unix(_) => None,
            ClientIo::Tls(s) => s.get_ref().1.alpn_protocol(),
            ClientIo::TlsUnix(s) => s.get_ref().1.alpn_protocol(),
        };
        alpn == Some(b"h2")
    }
}
