//! User servers as Kubernetes pods (kube-rs), a warm pool of pre-started pods, and the
//! API-server simulator the tests reach through kube-rs exactly as they would a cluster.
//!
//! This crate does not depend on `hub-core`: the hub adapts the Kubernetes spawner to its `Spawner`
//! trait (`hub-core/src/spawner/kube.rs`), so the `edgehub` binary can carry both spawners.

pub mod sim;
