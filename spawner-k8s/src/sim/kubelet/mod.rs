//! The kubelet of every simulated node: one [`worker::PodWorker`] per pod bound to a node,
//! fed with each new version of its pod object, and the node-level state the workers share
//! (image caches, pod IPs, live process groups).
//!
//! Invariants:
//! - at most one worker per pod uid; a worker ends when its pod is removed;
//! - every pod gets its own loopback address (127.x.y.z; Linux routes all of 127/8 to `lo`),
//!   never reused within a simulator, and chosen so the pod's declared ports are free on it;
//! - when the simulator stops, every process group it started is killed.

mod env;
mod process;
mod volumes;
mod worker;

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::events::EventRecorder;
use super::object;
use super::registry::Registry;
use super::resources;
use process::ProcessGroups;

/// The kubelet's knobs (from `SimConfig`).
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub image_pull: Duration,
    pub container_start: Duration,
    pub crash_backoff: Duration,
    pub root_dir: PathBuf,
}

/// What the pod workers share.
pub struct KubeletShared {
    pub registry: Arc<Registry>,
    pub recorder: Arc<EventRecorder>,
    pub config: KubeletConfig,
    pub processes: ProcessGroups,
    images: Mutex<HashMap<String, HashSet<String>>>,
    ips: Mutex<IpPool>,
}

impl KubeletShared {
    fn image_cached(&self, node: &str, image: &str) -> bool {
        self.images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(node)
            .is_some_and(|i| i.contains(image))
    }

    fn cache_image(&self, node: &str, image: &str) {
        self.images
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(node.to_string())
            .or_default()
            .insert(image.to_string());
    }

    /// A fresh loopback address on which the pod's declared ports are free right now.
    fn allocate_ip(&self, pod: &Value) -> Ipv4Addr {
        let ports: Vec<u16> = pod
            .pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .flat_map(|c| c.get("ports").and_then(Value::as_array).cloned().unwrap_or_default())
            .filter_map(|p| {
                p.get("containerPort")
                    .and_then(Value::as_u64)
                    .and_then(|p| u16::try_from(p).ok())
            })
            .collect();
        let mut pool = self.ips.lock().unwrap_or_else(|p| p.into_inner());
        let mut candidate = pool.next();
        for _ in 0..64 {
            let free = ports
                .iter()
                .all(|&port| std::net::TcpListener::bind((candidate, port)).is_ok());
            if free {
                break;
            }
            candidate = pool.next();
        }
        candidate
    }
}

/// Loopback addresses: a random second octet and a random starting point within it per
/// simulator, then counting up; 127.0.0.0/16 is never used. Simulators in parallel test
/// processes each probe an address before giving it out, but two that probe the same one at
/// the same moment would both get it, so their sequences must not meet. With only the octet
/// random and every simulator starting at .0.1, two simulator tests running at once with the
/// same octet (1 in 224) gave their first pods one address, and a pod's server failed with
/// "address in use" (seen in a CI run).
struct IpPool {
    second: u8,
    next: u32,
}

impl IpPool {
    fn new() -> Self {
        let random = object::random_u64();
        Self {
            second: 16 + (random % 224) as u8,
            next: ((random >> 8) % (254 * 256)) as u32,
        }
    }

    fn next(&mut self) -> Ipv4Addr {
        // 254 hosts per /24, 256 /24s per /16, then move to the next /16.
        let n = self.next;
        self.next += 1;
        let host = (n % 254) as u8 + 1;
        let third = ((n / 254) % 256) as u8;
        let second = self.second.wrapping_add((n / (254 * 256)) as u8).max(1);
        Ipv4Addr::new(127, second, third, host)
    }
}

struct WorkerHandle {
    updates: watch::Sender<Option<Arc<Value>>>,
    task: JoinHandle<()>,
}

pub struct Kubelet {
    shared: Arc<KubeletShared>,
    workers: Mutex<HashMap<String, WorkerHandle>>,
}

impl Kubelet {
    pub fn new(registry: Arc<Registry>, recorder: Arc<EventRecorder>, config: KubeletConfig) -> Arc<Self> {
        Arc::new(Self {
            shared: Arc::new(KubeletShared {
                registry,
                recorder,
                config,
                processes: ProcessGroups::default(),
                images: Mutex::new(HashMap::new()),
                ips: Mutex::new(IpPool::new()),
            }),
            workers: Mutex::new(HashMap::new()),
        })
    }

    /// Follows the store: starts a worker for each newly bound pod and passes every later
    /// version (or its removal) to it.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let store = self.shared.registry.store.clone();
        let mut changes = store.subscribe();
        let mut cursor: Option<u64> = None;
        loop {
            let batch = cursor.map(|c| store.changes_since(c));
            match batch {
                Some(Ok(batch)) => {
                    for change in batch.iter().filter(|c| c.resource == resources::PODS.plural) {
                        let removed = change.kind == super::store::ChangeKind::Deleted;
                        self.observe(&change.object, removed);
                    }
                    cursor = batch.last().map(|c| c.resource_version).or(cursor);
                }
                // First round, or the history moved on without us: resync from a full list.
                None | Some(Err(_)) => {
                    let (pods, version) = store.list(resources::PODS.plural, None);
                    let live: HashSet<String> = pods.iter().map(|p| object::uid(p).to_string()).collect();
                    let stale: Vec<String> = self
                        .lock_workers()
                        .keys()
                        .filter(|uid| !live.contains(*uid))
                        .cloned()
                        .collect();
                    for uid in stale {
                        if let Some(handle) = self.lock_workers().remove(&uid) {
                            handle.updates.send_replace(None);
                        }
                    }
                    for pod in &pods {
                        self.observe(pod, false);
                    }
                    cursor = Some(version);
                }
            }
            tokio::select! {
                _ = changes.changed() => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    fn lock_workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, WorkerHandle>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn observe(&self, pod: &Arc<Value>, removed: bool) {
        let uid = object::uid(pod).to_string();
        let mut workers = self.lock_workers();
        if removed {
            if let Some(handle) = workers.remove(&uid) {
                handle.updates.send_replace(None);
            }
            return;
        }
        if let Some(handle) = workers.get(&uid) {
            handle.updates.send_replace(Some(pod.clone()));
            return;
        }
        let node = object::str_at(pod, "/spec/nodeName");
        if node.is_empty()
            || self
                .shared
                .registry
                .store
                .get(resources::NODES.plural, "", node)
                .is_none()
        {
            return;
        }
        let (tx, rx) = watch::channel(Some(pod.clone()));
        let worker = worker::PodWorker::new(self.shared.clone(), pod.clone(), rx);
        let task = tokio::spawn(worker.run());
        workers.insert(uid, WorkerHandle { updates: tx, task });
    }

    /// Tells every worker its pod is gone (they SIGKILL their processes) and waits for them.
    pub async fn shutdown(&self) {
        let handles: Vec<WorkerHandle> = self.lock_workers().drain().map(|(_, h)| h).collect();
        for handle in &handles {
            handle.updates.send_replace(None);
        }
        for handle in handles {
            if tokio::time::timeout(Duration::from_secs(5), handle.task).await.is_err() {
                tracing::warn!("a simulated pod worker did not stop within 5 s");
            }
        }
        self.shared.processes.kill_all();
    }

    /// SIGKILLs every process group at once, without waiting (for `Drop`).
    pub fn kill_all_now(&self) {
        self.shared.processes.kill_all();
        for (_, handle) in self.lock_workers().drain() {
            handle.task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_addresses_stay_valid_hosts_from_any_starting_point() {
        let mut pool = IpPool {
            second: 239,
            next: 254 * 256 - 1,
        };
        assert_eq!(pool.next(), Ipv4Addr::new(127, 239, 255, 254));
        assert_eq!(pool.next(), Ipv4Addr::new(127, 240, 0, 1), "on into the next /16");
        let starts: std::collections::HashSet<Ipv4Addr> = (0..50).map(|_| IpPool::new().next()).collect();
        assert!(
            starts.len() >= 49,
            "simulators start apart: {} distinct of 50",
            starts.len()
        );
        assert!(starts.iter().all(|ip| ip.octets()[1] >= 16 && ip.octets()[3] != 0));
    }
}
