//! The `Spawner` on Kubernetes (kube-rs) and the API-server simulator its tests run against. Not built yet (issue 6).
