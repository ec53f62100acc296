//! The `Spawner`: how a user's server is started, found again and stopped. The hub owns the
//! lifecycle (limits, timeouts, readiness, routes); a spawner only runs servers somewhere.
//!
//! Two implementations: [`local::LocalSpawner`] (processes on this machine) and the Kubernetes
//! one in `spawner-k8s`. A spawner keeps nothing the hub cannot rebuild: what it needs to find a
//! server again after a hub restart is the [`SpawnerState`] it returns, which the hub persists.

pub mod local;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde_json::Value;

use crate::progress::ProgressSink;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Spawner-private state, persisted by the hub (a JSON object; for local processes the pid).
pub type SpawnerState = Value;

/// What a spawner is asked to start.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    pub user: String,
    /// `""` for the default server.
    pub server_name: String,
    /// The server's URL prefix, e.g. `/user/alice/` or `/user/alice/lab2/`.
    pub prefix: String,
    /// JupyterHub's environment contract (`JUPYTERHUB_API_TOKEN`, `JUPYTERHUB_USER`, …).
    pub env: BTreeMap<String, String>,
    /// Options chosen by the user (JupyterHub's `user_options`).
    pub user_options: Value,
}

/// A server that is running (its process or pod exists); the hub checks HTTP readiness next.
#[derive(Debug, Clone, PartialEq)]
pub struct Started {
    /// Where the proxy sends the server's traffic, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    pub state: SpawnerState,
}

/// What `poll` found.
#[derive(Debug, Clone, PartialEq)]
pub enum PollStatus {
    /// Still running, at this URL (it may have moved).
    Running { url: String },
    /// Gone; the exit code when known.
    Exited { code: Option<i32> },
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("the server command could not be started: {0}")]
    Launch(String),
    #[error("the server exited during start-up{}: {detail}", code.map(|c| format!(" with status {c}")).unwrap_or_default())]
    ExitedEarly { code: Option<i32>, detail: String },
    #[error("{0}")]
    Failed(String),
}

pub trait Spawner: Send + Sync + 'static {
    /// Starts a server and returns once it runs (not necessarily answering HTTP yet). Progress
    /// messages go to `progress`; the hub adds its own around them. The hub bounds the call with
    /// its start timeout and calls `stop` with whatever state was recorded if it gives up.
    fn start(&self, request: SpawnRequest, progress: ProgressSink) -> BoxFuture<'static, Result<Started, SpawnError>>;

    /// Stops a server and returns once it is gone.
    fn stop(&self, state: SpawnerState) -> BoxFuture<'static, Result<(), SpawnError>>;

    /// Is the server still there? Used at hub start-up (re-adoption) and periodically.
    fn poll(&self, state: SpawnerState) -> BoxFuture<'static, PollStatus>;

    /// A name for logs and `/hub/api/info`.
    fn kind(&self) -> &'static str;
}
