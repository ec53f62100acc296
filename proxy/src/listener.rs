//! Listening sockets: TCP (dual-stack for `''`, `*` and `::`) or UNIX, and the copies other
//! worker threads accept on (see [`crate::workers`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use config::Listen;
use tokio::net::{TcpListener, TcpSocket, UnixListener};

/// Connections the kernel may hold completed but not yet accepted. A burst of new clients (a
/// lecture's worth of browsers, a load generator opening its pool) beyond this has its handshakes
/// dropped and retried a second later; Linux caps the value at `net.core.somaxconn` (4096 by
/// default since 5.4), as it does for nginx's `backlog=`.
const LISTEN_BACKLOG: u32 = 4096;

pub enum Listener {
    Tcp(TcpListener),
    /// With the socket file to remove when closed (`None` for a worker's copy: the first owns it).
    Unix(UnixListener, Option<std::path::PathBuf>),
}

impl Listener {
    pub async fn bind(listen: &Listen) -> io::Result<Listener> {
        match listen {
            Listen::Tcp { host, port } => Ok(Listener::Tcp(tcp_listener(resolve(host, *port).await?)?)),
            Listen::Unix(path) => {
                remove_stale_socket(path);
                Ok(Listener::Unix(UnixListener::bind(path)?, Some(path.clone())))
            }
        }
    }

    /// This socket for another worker thread, to be registered there (see [`crate::workers`]):
    /// every worker accepts from the one queue.
    pub fn for_worker(&self) -> io::Result<WorkerListener> {
        use std::os::fd::AsFd;
        match self {
            Listener::Tcp(l) => Ok(WorkerListener::Tcp(l.as_fd().try_clone_to_owned()?.into())),
            Listener::Unix(l, _) => Ok(WorkerListener::Unix(l.as_fd().try_clone_to_owned()?.into())),
        }
    }

    /// A listener the caller bound (see [`Prebound`]).
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<Listener> {
        listener.set_nonblocking(true)?;
        Ok(Listener::Tcp(TcpListener::from_std(listener)?))
    }

    /// The bound TCP address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, Some(path)) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A listener on its way to a worker thread, registered with that thread's runtime there.
pub enum WorkerListener {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl WorkerListener {
    /// Must run inside the worker's runtime.
    pub fn register(self) -> io::Result<Listener> {
        match self {
            WorkerListener::Tcp(l) => Listener::from_std(l),
            WorkerListener::Unix(l) => {
                l.set_nonblocking(true)?;
                Ok(Listener::Unix(UnixListener::from_std(l)?, None))
            }
        }
    }
}

fn tcp_listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv6() {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// `''`, `*` and `::` are every interface (one dual-stack socket); `localhost` is 127.0.0.1.
async fn resolve(host: &str, port: u16) -> io::Result<SocketAddr> {
    let host = host.trim_matches(['[', ']']);
    let ip = match host {
        "" | "*" | "::" => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => match host.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                return tokio::net::lookup_host((host, port))
                    .await?
                    .next()
                    .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host} does not resolve")));
            }
        },
    };
    Ok(SocketAddr::new(ip, port))
}

/// A socket file left by a process that died is removed; a live one is left alone (and the bind
/// then fails with "address in use").
fn remove_stale_socket(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::metadata(path)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false);
    if is_socket && std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}
