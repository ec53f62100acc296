//! `--workers N`: N event loops, one per thread, each a single-threaded runtime accepting from
//! the public listener.
//!
//! A connection is accepted, served and closed on one thread: no task migrates, no run queue is
//! shared, and each thread keeps its own idle upstream connections (`upstream::pool`). The
//! workers share the listening socket, as nginx's workers do by default: a worker that is busy
//! is not waiting in `accept`, so new connections go to the others. Measured against a socket
//! per worker (SO_REUSEPORT, where the kernel assigns each connection to a worker by a hash),
//! it served as many requests per second for the same CPU, and it keeps `--max-connections` one
//! cap across workers: with a queue per worker, a connection hashed to a worker at the cap waits
//! although another has room. The first event loop is the caller's, which also serves the admin
//! API and runs the route store; this module runs the others.

use std::future::Future;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::listener::{Listener, WorkerListener};

/// The extra event loops; [`Workers::stop`] ends them.
pub struct Workers {
    running: Vec<(JoinHandle<()>, oneshot::Sender<()>)>,
}

/// Starts a thread per listener, each serving it with `serve` (given the listener, registered
/// in that thread's runtime) until [`Workers::stop`].
pub fn start<S, F>(listeners: Vec<WorkerListener>, serve: S) -> std::io::Result<Workers>
where
    S: Fn(Listener) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + 'static,
{
    let mut running = Vec::with_capacity(listeners.len());
    for (i, listener) in listeners.into_iter().enumerate() {
        let (done, stopped) = oneshot::channel::<()>();
        let serve = serve.clone();
        let thread = std::thread::Builder::new()
            .name(format!("edgeproxy-w{}", i + 1))
            .spawn(move || run(listener, serve, stopped))?;
        running.push((thread, done));
    }
    Ok(Workers { running })
}

fn run<S, F>(listener: WorkerListener, serve: S, stopped: oneshot::Receiver<()>)
where
    S: Fn(Listener) -> F,
    F: Future<Output = ()> + 'static,
{
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start a worker's runtime: {e}");
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = match listener.register() {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("a worker cannot listen: {e}");
                return;
            }
        };
        tokio::task::spawn_local(serve(listener));
        // Connections still open when this returns are closed with the runtime: by then the
        // caller has waited for them to drain.
        let _ = stopped.await;
    });
}

impl Workers {
    /// Ends every worker's event loop (its connections close) and waits for its thread.
    pub async fn stop(self) {
        for (thread, done) in self.running {
            let _ = done.send(());
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}
