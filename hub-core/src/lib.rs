//! edgehub's control plane: users and their servers, the [`spawner::Spawner`] trait and the local
//! process spawner, login, the JupyterHub-compatible REST API, pages, spawn progress, idle
//! culling and route reconcile. `edgehub up` ([`up`]) runs it with the proxy embedded.
//!
//! Reading order: [`hub`] (the state), [`lifecycle`] (start, stop, adopt), [`web`] (HTTP),
//! [`reconcile`] and [`cull`] (the background loops), [`replicas`] (several hubs on one
//! database), [`store`] (SQLite or PostgreSQL), [`up`] (the wiring).

pub mod builtin_server;
pub mod cull;
pub mod failure_limit;
pub mod http_client;
pub mod hub;
pub mod ldap;
pub mod lifecycle;
pub mod login;
pub mod metrics;
pub mod model;
pub mod pages;
pub mod progress;
pub mod proxy_api;
pub mod reconcile;
pub mod replicas;
pub mod roles;
pub mod scopes;
pub mod services;
pub mod session;
pub mod shares;
pub mod shutdown;
pub mod spawner;
pub mod store;
pub mod tokens;
pub mod up;
pub mod web;
