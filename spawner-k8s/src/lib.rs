//! User servers as Kubernetes pods (kube-rs), a warm pool of pre-started pods, and the
//! API-server simulator the tests reach through kube-rs exactly as they would a cluster.
//!
//! This crate does not depend on `hub-core`: the hub adapts the Kubernetes spawner to its `Spawner`
//! trait (`hub-core/src/spawner/kube.rs`), so the `edgehub` binary can carry both spawners.
//!
//! Modules, one job each:
//! - [`names`]: safe, bounded, collision-free object names and label values;
//! - [`render`]: manifests (pod, pool pod, claim, Service, claim patch) as pure functions;
//! - [`status`]: reading a pod's status and events (running? failed for good? progress);
//! - [`api`]: the client-side concurrency limit and retries of API calls;
//! - [`cache`]: the watch-backed caches of pods and events, with their watchdog;
//! - [`liveness`]: the client layer that tells the watchdog a quiet watch from a dead one;
//! - [`pool`]: warm pools, claimed at spawn, refilled from the cache;
//! - [`spawn`]: the spawner itself, wiring the above into start, stop and poll, with `wait`
//!   (waiting on the caches) and `writes` (the API writes of a spawn);
//! - [`sim`]: the API-server simulator the tests run against (`docs/k8s-simulator.md`).

pub mod api;
pub mod cache;
pub mod error;
pub mod liveness;
pub mod names;
pub mod pool;
pub mod render;
pub mod sim;
pub mod spawn;
pub mod status;
mod wait;
mod writes;

pub use error::KubeSpawnError;
pub use spawn::{FoundServer, KubeSpawner, PodPoll, PodRequest, PodStarted, ProgressFn};
