//! edgeproxy embedded as a library, as `edgehub up` runs it: `Proxy::new`, then `server::bind`
//! and `Bound::serve` on the harness runtime, on loopback ports the system picks (port 0, read
//! back from the bound listeners). For what only an embedder can reach, such as the in-process
//! session store; everything else is tested through the binary.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use config::{Listen, ProxyConfig};
use proxy::{Proxy, StartError, server};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct EmbeddedProxy {
    pub proxy: Arc<Proxy>,
    pub port: u16,
    stop: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<Result<(), StartError>>>,
}

impl EmbeddedProxy {
    /// Runs `config` with its public and API listeners moved to loopback port 0. The listeners
    /// are bound (connections queue) when this returns.
    pub fn start(mut config: ProxyConfig) -> EmbeddedProxy {
        let loopback = Listen::Tcp {
            host: "127.0.0.1".into(),
            port: 0,
        };
        config.public = loopback.clone();
        config.api = loopback;
        let proxy = super::block_on(async { Proxy::new(&config) }).expect("Proxy::new refused the config");
        let bound = super::block_on(server::bind(&config)).expect("the embedded proxy binds port 0");
        let port = bound.public_addr().expect("a TCP public listener").port();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = super::spawn(bound.serve(proxy.clone(), async {
            let _ = stopped.await;
        }));
        EmbeddedProxy {
            proxy,
            port,
            stop: Some(stop),
            served: Some(served),
        }
    }

    pub fn public(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for EmbeddedProxy {
    /// Stops the listeners as the embedder would.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = super::block_on(async { tokio::time::timeout(Duration::from_secs(5), served).await });
        }
    }
}
