//! edgehub's control plane: users and their servers, the [`spawner::Spawner`] trait and the local
//! process spawner, login, the JupyterHub-compatible REST API, pages, spawn progress, idle
//! culling and route reconcile. `edgehub up` runs it with the proxy embedded.

pub mod builtin_server;
pub mod pages;
pub mod progress;
pub mod spawner;
