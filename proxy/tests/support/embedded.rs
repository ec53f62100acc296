//! edgeproxy embedded as a library, as `edgehub up` runs it: `Proxy::new`, then `server::run` on
//! the harness runtime, on free loopback ports. For what only an embedder can reach, such as the
//! in-process session store; everything else is tested through the binary.

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Runs `config` with its public and API listeners moved to free loopback ports, and waits
    /// until the public port accepts connections.
    pub fn start(mut config: ProxyConfig) -> EmbeddedProxy {
        for attempt in 0..3 {
            let port = super::free_port();
            let loopback = |port| Listen::Tcp {
                host: "127.0.0.1".into(),
                port,
            };
            config.public = loopback(port);
            config.api = loopback(super::free_port());
            let proxy = super::block_on(async { Proxy::new(&config) }).expect("Proxy::new refused the config");
            let (stop, stopped) = oneshot::channel::<()>();
            let served = super::runtime().spawn({
                let (proxy, config) = (proxy.clone(), config.clone());
                async move {
                    server::run(proxy, &config, async {
                        let _ = stopped.await;
                    })
                    .await
                }
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return EmbeddedProxy {
                        proxy,
                        port,
                        stop: Some(stop),
                        served: Some(served),
                    };
                }
                if served.is_finished() {
                    let result = super::block_on(served).expect("server::run panicked");
                    // Another process took a port between free_port and the bind: try others.
                    if attempt < 2 && matches!(result, Err(StartError::Bind { .. })) {
                        break;
                    }
                    panic!("the embedded proxy stopped at start: {result:?}");
                }
                assert!(Instant::now() < deadline, "the embedded proxy never listened");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        unreachable!()
    }

    pub fn public(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl Drop for EmbeddedProxy {
    /// Stops the listeners as the embedder would, so the next test's ports are free.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = super::block_on(async { tokio::time::timeout(Duration::from_secs(5), served).await });
        }
    }
}
