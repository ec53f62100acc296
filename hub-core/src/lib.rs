//! The control plane: users, servers, the `Spawner` trait, login, REST API, spawn progress, culling and route reconcile. Not built yet (issue 5).
