//! A Kubernetes API-server simulator for tests and benchmarks: core/v1 over HTTP/JSON with
//! list + watch (resourceVersions, bookmarks, 410 Expired), selectors, the status subresource
//! and injectable faults; simulated nodes, a filter-and-score scheduler, and a kubelet that runs
//! each pod's command as a local process on its own loopback IP. Clients reach it through
//! kube-rs and a kubeconfig, exactly as they reach a cluster. `docs/k8s-simulator.md` lists
//! what is simulated and what is not.
//!
//! Wiring only; each part has its own module:
//! `store` (objects, versions, history) ← `registry` (verb semantics, GC) ← `api` (HTTP) and
//! `watch` (streams); `scheduler` and `kubelet` are controllers over the store; `faults` and
//! `stats` are read by `api`.

mod api;
mod api_error;
mod events;
mod faults;
mod kubeconfig;
mod kubelet;
mod merge_patch;
mod object;
mod paths;
pub mod quantity;
mod registry;
mod resources;
mod scheduler;
mod selector;
mod stats;
mod store;
mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

pub use faults::Fault;
pub use stats::{Stats, Verb};

use api::ApiServer;
use events::EventRecorder;
use faults::Faults;
use kubelet::{Kubelet, KubeletConfig};
use registry::Registry;
use stats::StatsRecorder;
use store::Store;

/// What to simulate. Durations default to zero so tests run fast; benchmarks set realistic ones.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The cluster's nodes. Default: two nodes of 16 cpu / 64 GiB, no GPU.
    pub nodes: Vec<NodeSpec>,
    /// How long the first pull of an image on a node takes (later pulls hit the node's cache).
    /// Default 0.
    pub image_pull: Duration,
    /// Delay between "Created" and starting the process. Default 0.
    pub container_start: Duration,
    /// How often watch streams with `allowWatchBookmarks=true` get a bookmark. Default 1 s.
    pub bookmark_interval: Duration,
    /// Pod directories, logs and the kubeconfig. Default: a fresh directory under the system
    /// temp dir, removed at shutdown (a directory that already existed is never removed).
    pub root_dir: PathBuf,
    /// Where the API server listens. Default `127.0.0.1:0` (a free port).
    pub listen: SocketAddr,
    /// How many changes the watch history keeps; a watch resuming from an older version gets
    /// 410 Expired. Default 10 000.
    pub watch_history: usize,
    /// The first restart delay of a crashed container (and of a failed image pull); it doubles
    /// per restart up to 32 times this. Default 200 ms (Kubernetes: 10 s).
    pub crash_backoff: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        let unique = format!(
            "edgehub-k8s-sim-{}-{:08x}",
            std::process::id(),
            object::random_u64() as u32
        );
        Self {
            nodes: vec![
                NodeSpec::new("node-1", 16_000, 64 << 30),
                NodeSpec::new("node-2", 16_000, 64 << 30),
            ],
            image_pull: Duration::ZERO,
            container_start: Duration::ZERO,
            bookmark_interval: Duration::from_secs(1),
            root_dir: std::env::temp_dir().join(unique),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            watch_history: 10_000,
            crash_backoff: Duration::from_millis(200),
        }
    }
}

/// One simulated node: its allocatable capacity, labels and taints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSpec {
    pub name: String,
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    /// `nvidia.com/gpu` capacity.
    pub gpus: u64,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

impl NodeSpec {
    pub fn new(name: &str, cpu_millis: u64, memory_bytes: u64) -> Self {
        Self {
            name: name.to_string(),
            cpu_millis,
            memory_bytes,
            gpus: 0,
            labels: BTreeMap::new(),
            taints: Vec::new(),
        }
    }

    pub fn with_gpus(mut self, gpus: u64) -> Self {
        self.gpus = gpus;
        self
    }

    pub fn with_label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    pub fn with_taint(mut self, taint: Taint) -> Self {
        self.taints.push(taint);
        self
    }

    /// The Node object the API serves.
    fn to_object(&self) -> Value {
        let mut labels = self.labels.clone();
        labels
            .entry("kubernetes.io/hostname".into())
            .or_insert_with(|| self.name.clone());
        labels
            .entry("kubernetes.io/os".into())
            .or_insert_with(|| "linux".into());
        labels
            .entry("kubernetes.io/arch".into())
            .or_insert_with(|| "amd64".into());
        let mut capacity = json!({
            "cpu": format!("{}m", self.cpu_millis),
            "memory": quantity::format_units(self.memory_bytes),
            "pods": "110",
        });
        if self.gpus > 0 {
            capacity["nvidia.com/gpu"] = json!(self.gpus.to_string());
        }
        let taints: Vec<Value> = self
            .taints
            .iter()
            .map(|t| {
                let mut taint = json!({"key": t.key, "effect": t.effect.as_str()});
                if let Some(value) = &t.value {
                    taint["value"] = json!(value);
                }
                taint
            })
            .collect();
        let now = object::now();
        json!({
            "metadata": {"name": self.name, "labels": labels},
            "spec": {"taints": taints},
            "status": {
                "capacity": capacity,
                "allocatable": capacity,
                "conditions": [{
                    "type": "Ready", "status": "True", "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": now, "lastTransitionTime": now,
                }],
                "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.name}],
                "nodeInfo": {"kubeletVersion": "v1.33.0-edgehub-sim", "operatingSystem": "linux", "architecture": "amd64", "containerRuntimeVersion": "edgehub-sim://1"},
            },
        })
    }
}

/// A node taint; pods need a matching toleration to land on the node (NoSchedule, NoExecute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: TaintEffect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// A running simulator. Dropping it kills every pod process (and removes a root directory it
/// created); [`Simulator::shutdown`] does the same and waits for it.
pub struct Simulator {
    url: String,
    kubeconfig: PathBuf,
    root_dir: PathBuf,
    owns_root: bool,
    registry: Arc<Registry>,
    faults: Arc<Faults>,
    stats: Arc<StatsRecorder>,
    kubelet: Arc<Kubelet>,
    shutdown: signal::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Simulator {
    /// Starts the API server on `config.listen`, the scheduler and the kubelet, and writes the
    /// kubeconfig (`root_dir/kubeconfig`).
    pub async fn start(config: SimConfig) -> anyhow::Result<Simulator> {
        let owns_root = !config.root_dir.exists();
        std::fs::create_dir_all(&config.root_dir)
            .with_context(|| format!("creating the simulator's root directory {}", config.root_dir.display()))?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding the simulated API server to {}", config.listen))?;
        let url = format!("http://{}", listener.local_addr()?);
        let kubeconfig = config.root_dir.join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig::render(&url))
            .with_context(|| format!("writing {}", kubeconfig.display()))?;

        let store = Arc::new(Store::new(config.watch_history));
        let registry = Arc::new(Registry::new(store));
        for node in &config.nodes {
            registry
                .create(resources::NODES, "", node.to_object())
                .map_err(|e| anyhow::anyhow!("node {:?}: {e}", node.name))?;
        }
        for namespace in ["default", "kube-system"] {
            let _ = registry.create(resources::NAMESPACES, "", json!({"metadata": {"name": namespace}}));
        }
        let faults = Arc::new(Faults::default());
        let stats = Arc::new(StatsRecorder::default());
        let recorder = Arc::new(EventRecorder::new(registry.clone()));
        let (shutdown, shutdown_rx) = signal::channel(false);
        let kubelet = Kubelet::new(
            registry.clone(),
            recorder.clone(),
            KubeletConfig {
                image_pull: config.image_pull,
                container_start: config.container_start,
                crash_backoff: config.crash_backoff,
                root_dir: config.root_dir.clone(),
            },
        );
        let api = Arc::new(ApiServer {
            registry: registry.clone(),
            faults: faults.clone(),
            stats: stats.clone(),
            bookmark_interval: config.bookmark_interval,
            root_dir: config.root_dir.clone(),
            shutdown: shutdown_rx.clone(),
        });
        let tasks = vec![
            tokio::spawn(serve(listener, api, shutdown_rx.clone())),
            tokio::spawn(scheduler::run(registry.clone(), recorder, shutdown_rx.clone())),
            tokio::spawn(kubelet.clone().run(shutdown_rx)),
        ];
        tracing::info!(%url, nodes = config.nodes.len(), "kubernetes simulator started");
        Ok(Simulator {
            url,
            kubeconfig,
            root_dir: config.root_dir,
            owns_root,
            registry,
            faults,
            stats,
            kubelet,
            shutdown,
            tasks,
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// A kubeconfig pointing at [`Simulator::url`], for `KUBECONFIG` or
    /// `kube::Config::from_custom_kubeconfig`.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// Where pod directories and logs are.
    pub fn root_dir(&self) -> &Path {
        &self.root_dir
    }

    /// A kube client built from the kubeconfig, on the caller's runtime.
    ///
    /// # Panics
    /// If the simulator's own kubeconfig cannot be read back (a test-setup failure).
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = kube::config::Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("reading the simulator's kubeconfig {}: {e}", self.kubeconfig.display()));
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("the simulator's kubeconfig is not usable: {e}"));
        kube::Client::try_from(config).unwrap_or_else(|e| panic!("building a kube client for the simulator: {e}"))
    }

    /// Request counts so far.
    pub fn stats(&self) -> Stats {
        self.stats.snapshot()
    }

    /// Injects a fault (see [`Fault`]).
    pub fn inject(&self, fault: Fault) {
        if fault == Fault::ExpireHistory {
            self.registry.store.compact();
        }
        self.faults.arm(&fault);
    }

    /// Kills every pod process and stops serving.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        self.kubelet.shutdown().await;
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = task.await;
        }
        // Drop removes the root directory.
    }
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("url", &self.url)
            .field("root_dir", &self.root_dir)
            .finish_non_exhaustive()
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
        self.kubelet.kill_all_now();
        for task in &self.tasks {
            task.abort();
        }
        if self.owns_root {
            let _ = std::fs::remove_dir_all(&self.root_dir);
        }
    }
}

/// The accept loop: one hyper connection (HTTP/1.1 or h2) per client connection.
async fn serve(listener: TcpListener, api: Arc<ApiServer>, mut shutdown: signal::Receiver<bool>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "simulated API server: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = stream.set_nodelay(true);
        let api = api.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| api.clone().handle(request));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulator_can_be_shared_across_tasks() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Simulator>();
        shareable::<Stats>();
        shareable::<Fault>();
    }

    #[test]
    fn fault_constructors_build_status_faults() {
        let fault = Fault::status(Verb::Create, "pods", 429, 2).with_retry_after(5);
        assert_eq!(
            fault,
            Fault::Status {
                verb: Some(Verb::Create),
                resource: Some("pods".into()),
                code: 429,
                times: 2,
                retry_after: Some(5)
            }
        );
    }
}
