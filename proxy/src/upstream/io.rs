//! The byte stream under an upstream connection: plain TCP, TLS over TCP, or a UNIX socket.
//!
//! An enum rather than a boxed trait object (see `http1::io_enum`).

use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;

pub enum UpstreamIo {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixStream),
}

crate::delegate_async_io!(UpstreamIo { Tcp, Tls, Unix });

/// An upgraded upstream connection: the bytes that arrived behind the `101` head (already read
/// into the response buffer) are read first, then the socket.
pub type Upgraded = crate::http1::Rewind<UpstreamIo>;
